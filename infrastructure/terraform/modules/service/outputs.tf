output "repository_url" {
  description = "Where the service's images are pushed."
  value       = aws_ecr_repository.this.repository_url
}

output "app_secret_arns" {
  description = "The service's application secrets by short name (empty without any)."
  value       = { for key, secret in aws_secretsmanager_secret.app : key => secret.arn }
}

output "database" {
  description = "The service's database: address, port, name, the master user and its RDS-managed secret (used by the db-bootstrap Job only), and the names of the migration and runtime credentials' secrets; null without one."
  value = var.database == null ? null : {
    address                = module.postgres[0].address
    port                   = module.postgres[0].port
    name                   = module.postgres[0].database_name
    username               = module.postgres[0].username
    master_user_secret_arn = module.postgres[0].master_user_secret_arn
    master_secret_name     = module.postgres[0].credential_secret_names["db-master"]
    migrator_secret_name   = module.postgres[0].credential_secret_names["db-migrator"]
    app_secret_name        = module.postgres[0].credential_secret_names["db-app"]
  }
}

output "secret_arns" {
  description = "Every Secrets Manager secret the service's pods read (for the secret reader's IAM policy)."
  value = concat(
    [for secret in aws_secretsmanager_secret.app : secret.arn],
    var.database == null ? [] : values(module.postgres[0].credential_secret_arns),
  )
}

output "kms_key_arns" {
  description = "Keys that encrypt those secrets."
  value       = compact([aws_kms_key.this.arn, var.database == null ? "" : module.postgres[0].kms_key_arn])
}
