output "repository_url" {
  description = "Where the service's images are pushed."
  value       = aws_ecr_repository.this.repository_url
}

output "app_secret_arns" {
  description = "The service's application secrets by short name (empty without any)."
  value       = { for key, secret in aws_secretsmanager_secret.app : key => secret.arn }
}

output "database" {
  description = "The service's database: address, port, name, user and the Secrets Manager secret with its password; null without one."
  value = var.database == null ? null : {
    address                = module.postgres[0].address
    port                   = module.postgres[0].port
    name                   = module.postgres[0].database_name
    username               = module.postgres[0].username
    master_user_secret_arn = module.postgres[0].master_user_secret_arn
  }
}

output "secret_arns" {
  description = "Every Secrets Manager secret the service's pods read (for the secret reader's IAM policy)."
  value = concat(
    [for secret in aws_secretsmanager_secret.app : secret.arn],
    var.database == null ? [] : [module.postgres[0].master_user_secret_arn],
  )
}

output "kms_key_arns" {
  description = "Keys that encrypt those secrets."
  value       = compact([aws_kms_key.this.arn, var.database == null ? "" : module.postgres[0].kms_key_arn])
}
