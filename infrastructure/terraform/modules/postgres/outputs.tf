output "address" {
  description = "Host name of the instance."
  value       = aws_db_instance.this.address
}

output "port" {
  description = "Port of the instance."
  value       = aws_db_instance.this.port
}

output "database_name" {
  description = "Database name."
  value       = aws_db_instance.this.db_name
}

output "username" {
  description = "Master user name."
  value       = aws_db_instance.this.username
}

output "master_user_secret_arn" {
  description = "Secrets Manager secret holding the master credentials (db-master; the db-bootstrap Job's only)."
  value       = aws_secretsmanager_secret.db["db-master"].arn
}

output "credential_secret_arns" {
  description = "The logins' secrets by short name: db-master, db-migrator, db-app-a, db-app-b, db-app."
  value       = { for key, secret in aws_secretsmanager_secret.db : key => secret.arn }
}

output "credential_secret_names" {
  description = "The same secrets' names, foundation/<env>/<service>/<short name> (what the overlays' ExternalSecrets read)."
  value       = { for key, secret in aws_secretsmanager_secret.db : key => secret.name }
}

output "kms_key_arn" {
  description = "The key that encrypts the instance, its secret and its logs (readers of the secret need kms:Decrypt)."
  value       = aws_kms_key.this.arn
}

output "security_group_id" {
  description = "The instance's security group."
  value       = aws_security_group.this.id
}
