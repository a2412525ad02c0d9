# Everything one service owns in the cloud: its image repository, a Secrets Manager secret for
# its own application secrets (values are put there by people, never by Terraform), and, when it
# has a database, its own PostgreSQL (modules/postgres).

locals {
  identifier = "${var.name}-${var.environment}"
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
}

resource "aws_kms_key" "this" {
  description         = "${local.identifier}: image repository and application secrets"
  enable_key_rotation = true
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Sid       = "AccountAdministration"
      Effect    = "Allow"
      Principal = { AWS = "arn:${local.partition}:iam::${local.account_id}:root" }
      Action    = "kms:*"
      Resource  = "*"
    }]
  })
}

resource "aws_kms_alias" "this" {
  name          = "alias/${local.identifier}"
  target_key_id = aws_kms_key.this.key_id
}

# ---- image repository ----------------------------------------------------------------------

# foundation/<env>/<service>: dev and prod images never share a repository, even in one account.
resource "aws_ecr_repository" "this" {
  name                 = "foundation/${var.environment}/${var.name}"
  image_tag_mutability = "IMMUTABLE"
  force_delete         = false

  image_scanning_configuration {
    scan_on_push = true
  }

  encryption_configuration {
    encryption_type = "KMS"
    kms_key         = aws_kms_key.this.arn
  }
}

resource "aws_ecr_lifecycle_policy" "this" {
  repository = aws_ecr_repository.this.name
  policy = jsonencode({
    rules = [
      {
        rulePriority = 1
        description  = "Drop untagged images after 7 days"
        selection = {
          tagStatus   = "untagged"
          countType   = "sinceImagePushed"
          countUnit   = "days"
          countNumber = 7
        }
        action = { type = "expire" }
      },
      {
        rulePriority = 2
        description  = "Keep the newest ${var.images_to_keep} images"
        selection = {
          tagStatus   = "any"
          countType   = "imageCountMoreThan"
          countNumber = var.images_to_keep
        }
        action = { type = "expire" }
      },
    ]
  })
}

# ---- application secrets (keys, OAuth credentials): containers only ---------------------------
# Terraform creates the secrets, never their values: the platform team puts those in
# (docs/deployment.md), so no key or client secret passes through Terraform's state.

resource "aws_secretsmanager_secret" "app" {
  #checkov:skip=CKV2_AWS_57:These hold application keys (JWT signing keys, OAuth-token encryption keys, OAuth client secrets) that are rotated with the application's own overlapping-validity procedure (rotate-keys, reencrypt-oauth-tokens; docs/deployment.md), which a rotation Lambda cannot do.
  for_each = toset(var.app_secrets)

  name                    = "foundation/${var.environment}/${var.name}/${each.key}"
  description             = "${local.identifier}: ${each.key} (JSON object; values are set by the platform team)"
  kms_key_id              = aws_kms_key.this.arn
  recovery_window_in_days = 30
}

# Settings Terraform can generate itself (e.g. auth-service's LOGIN_DEVICE_COOKIE_SECRET, which
# production requires) go into the `settings` secret's first version, write-only: never in the
# plan or the state. People add the other keys (OAuth) to that JSON later (docs/deployment.md).
ephemeral "aws_secretsmanager_random_password" "settings" {
  for_each = toset(var.generated_settings)

  password_length     = 48
  exclude_punctuation = true
}

resource "aws_secretsmanager_secret_version" "settings" {
  count = length(var.generated_settings) > 0 ? 1 : 0

  secret_id                = aws_secretsmanager_secret.app["settings"].id
  secret_string_wo         = jsonencode({ for key in var.generated_settings : key => ephemeral.aws_secretsmanager_random_password.settings[key].random_password })
  secret_string_wo_version = 1
}

# ---- the service's own database ---------------------------------------------------------------

module "postgres" {
  source = "../postgres"
  count  = var.database == null ? 0 : 1

  name                       = var.name
  environment                = var.environment
  vpc_id                     = var.vpc_id
  subnet_ids                 = var.database_subnet_ids
  allowed_security_group_ids = var.allowed_security_group_ids

  database_name         = var.database.name
  username              = var.database.name
  engine_version        = var.database.engine_version
  instance_class        = var.database.instance_class
  allocated_storage     = var.database.allocated_storage
  max_allocated_storage = var.database.max_allocated_storage
  multi_az              = var.database.multi_az
  deletion_protection   = var.database.deletion_protection
  backup_retention_days = var.database.backup_retention_days

  master_password_version = var.master_password_version
}

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
