# One managed PostgreSQL (RDS) for one service: encrypted at rest with its own KMS key, TLS
# required (rds.force_ssl), automated backups, enhanced monitoring, Performance Insights, logs in
# CloudWatch. Three logins, each a Secrets Manager secret of this module (below): the master user
# (db-bootstrap Job only), the migration role and the runtime role. Their passwords are generated
# as ephemeral values and written write-only: never in Terraform's configuration, plan or state.

locals {
  identifier = "${var.name}-${var.environment}"
  family     = "postgres${split(".", var.engine_version)[0]}"
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  region     = data.aws_region.current.name
}

resource "aws_kms_key" "this" {
  description         = "${local.identifier}: RDS storage, Performance Insights, master secret, logs"
  enable_key_rotation = true
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid       = "AccountAdministration"
        Effect    = "Allow"
        Principal = { AWS = "arn:${local.partition}:iam::${local.account_id}:root" }
        Action    = "kms:*"
        Resource  = "*"
      },
      {
        Sid       = "CloudWatchLogs"
        Effect    = "Allow"
        Principal = { Service = "logs.${local.region}.amazonaws.com" }
        Action    = ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"]
        Resource  = "*"
        Condition = {
          ArnLike = {
            "kms:EncryptionContext:aws:logs:arn" = "arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:/aws/rds/instance/${local.identifier}/*"
          }
        }
      },
    ]
  })
}

resource "aws_kms_alias" "this" {
  name          = "alias/${local.identifier}-postgres"
  target_key_id = aws_kms_key.this.key_id
}

resource "aws_db_subnet_group" "this" {
  name        = local.identifier
  description = "${local.identifier}: the service's own data subnets"
  subnet_ids  = var.subnet_ids
}

resource "aws_security_group" "this" {
  name        = "${local.identifier}-postgres"
  description = "${local.identifier}: PostgreSQL, reachable from the cluster only"
  vpc_id      = var.vpc_id
  tags        = { Name = "${local.identifier}-postgres" }
}

resource "aws_vpc_security_group_ingress_rule" "clients" {
  for_each = toset(var.allowed_security_group_ids)

  security_group_id            = aws_security_group.this.id
  description                  = "PostgreSQL from ${each.value}"
  referenced_security_group_id = each.value
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
}

resource "aws_db_parameter_group" "this" {
  name        = "${local.identifier}-${local.family}"
  family      = local.family
  description = "${local.identifier}: TLS only, query and connection logging"

  # Refuse every connection that is not TLS.
  parameter {
    name  = "rds.force_ssl"
    value = "1"
  }
  # Log schema changes and every statement slower than a second (values are never logged).
  parameter {
    name  = "log_statement"
    value = "ddl"
  }
  parameter {
    name  = "log_min_duration_statement"
    value = "1000"
  }
  parameter {
    name  = "log_connections"
    value = "1"
  }
  parameter {
    name  = "log_disconnections"
    value = "1"
  }
  parameter {
    name  = "log_lock_waits"
    value = "1"
  }

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_cloudwatch_log_group" "this" {
  for_each = toset(["postgresql", "upgrade"])

  name              = "/aws/rds/instance/${local.identifier}/${each.key}"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.this.arn
}

resource "aws_iam_role" "monitoring" {
  name = "${local.identifier}-rds-monitoring"
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "monitoring.rds.amazonaws.com" }
      Action    = "sts:AssumeRole"
      Condition = {
        StringEquals = { "aws:SourceAccount" = local.account_id }
      }
    }]
  })
}

resource "aws_iam_role_policy_attachment" "monitoring" {
  role       = aws_iam_role.monitoring.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/service-role/AmazonRDSEnhancedMonitoringRole"
}

resource "aws_db_instance" "this" {
  #checkov:skip=CKV_AWS_157:Multi-AZ is an input: environments/prod sets multi_az = true; dev runs single-AZ to halve its cost and accepts the downtime of a zone failure.
  #checkov:skip=CKV_AWS_293:Deletion protection is an input: environments/prod sets it; dev leaves it off so the environment can be torn down (a final snapshot is still taken).
  identifier     = local.identifier
  engine         = "postgres"
  engine_version = var.engine_version
  instance_class = var.instance_class

  db_name  = var.database_name
  username = var.username
  # Write-only (never in the state), the same ephemeral value as the db-master secret's; a new
  # master_password_version sets a new one in both (docs/deployment.md).
  password_wo                         = ephemeral.aws_secretsmanager_random_password.db["db-master"].random_password
  password_wo_version                 = var.master_password_version
  iam_database_authentication_enabled = true

  allocated_storage     = var.allocated_storage
  max_allocated_storage = var.max_allocated_storage
  storage_type          = "gp3"
  storage_encrypted     = true
  kms_key_id            = aws_kms_key.this.arn

  db_subnet_group_name   = aws_db_subnet_group.this.name
  vpc_security_group_ids = [aws_security_group.this.id]
  publicly_accessible    = false
  multi_az               = var.multi_az
  parameter_group_name   = aws_db_parameter_group.this.name
  ca_cert_identifier     = "rds-ca-rsa2048-g1"

  backup_retention_period   = var.backup_retention_days
  backup_window             = "02:00-03:00"
  maintenance_window        = "sun:03:30-sun:04:30"
  copy_tags_to_snapshot     = true
  delete_automated_backups  = false
  deletion_protection       = var.deletion_protection
  skip_final_snapshot       = false
  final_snapshot_identifier = "${local.identifier}-final"

  auto_minor_version_upgrade  = true
  allow_major_version_upgrade = false
  apply_immediately           = false

  monitoring_interval                   = 30
  monitoring_role_arn                   = aws_iam_role.monitoring.arn
  performance_insights_enabled          = true
  performance_insights_kms_key_id       = aws_kms_key.this.arn
  performance_insights_retention_period = 7
  enabled_cloudwatch_logs_exports       = ["postgresql", "upgrade"]

  depends_on = [aws_cloudwatch_log_group.this, aws_iam_role_policy_attachment.monitoring]
}

# ---- logins ----------------------------------------------------------------------------------
# Each secret holds {"engine", "host", "port", "dbname", "username", "password"} (the layout of
# Secrets Manager's own database secrets):
#
#   db-master    the RDS master user: only the db-bootstrap Job connects as it, to create the
#                roles below and set their passwords. The apps never see it.
#   db-migrator  <db>_migrator: owns the schema; the migration Jobs connect as it (DDL).
#   db-app-a,    <db>_app_a and <db>_app_b: the two runtime logins, DML only (members of the
#   db-app-b     NOLOGIN role <db>_app, which holds the grants), each with its own password.
#   db-app       the runtime login the pods use: a copy of db-app-a or db-app-b. A rotation gives
#                the other one a new password, lets the db-bootstrap Job set it, and only then
#                points db-app at it; the old login stays valid until the next rotation, so no
#                connection ever fails (docs/deployment.md, "Database credentials").
#
# The roles are created in the database by the db-bootstrap Job (infrastructure/kubernetes/base/
# db_bootstrap), run before the migrations: there is no PostgreSQL provider here and the
# database is reachable from the cluster only. Terraform writes each secret once (version 1;
# db-master again with each master_password_version) and leaves rotations to that procedure.

locals {
  logins = {
    "db-master"   = var.username
    "db-migrator" = "${var.database_name}_migrator"
    "db-app-a"    = "${var.database_name}_app_a"
    "db-app-b"    = "${var.database_name}_app_b"
  }
  # db-app starts as a copy of db-app-a.
  secrets = merge({ for key, user in local.logins : key => key }, { "db-app" = "db-app-a" })
}

ephemeral "aws_secretsmanager_random_password" "db" {
  for_each = local.logins

  password_length     = 48
  exclude_punctuation = true
}

resource "aws_secretsmanager_secret" "db" {
  #checkov:skip=CKV2_AWS_57:Rotated by the documented procedures (docs/deployment.md, "Database credentials"): alternating runtime logins set by the db-bootstrap Job, the migration role likewise, the master through master_password_version; a rotation Lambda would need a route from Lambda into the database subnets.
  for_each = local.secrets

  name                    = "foundation/${var.environment}/${var.name}/${each.key}"
  description             = "${local.identifier}: PostgreSQL login ${each.key == "db-app" ? "used by the running service (a copy of db-app-a or db-app-b)" : "${each.key} (${local.logins[each.key]})"}"
  kms_key_id              = aws_kms_key.this.arn
  recovery_window_in_days = 30
}

resource "aws_secretsmanager_secret_version" "db" {
  for_each = local.secrets

  secret_id = aws_secretsmanager_secret.db[each.key].id
  secret_string_wo = jsonencode({
    engine   = "postgres"
    host     = aws_db_instance.this.address
    port     = aws_db_instance.this.port
    dbname   = var.database_name
    username = local.logins[each.value]
    password = ephemeral.aws_secretsmanager_random_password.db[each.value].random_password
  })
  secret_string_wo_version = each.key == "db-master" ? var.master_password_version : 1
}

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_region" "current" {}
