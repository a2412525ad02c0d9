output "primary_endpoint" {
  description = "Host name of the primary (follows failover)."
  value       = aws_elasticache_replication_group.this.primary_endpoint_address
}

output "port" {
  description = "Port (TLS)."
  value       = aws_elasticache_replication_group.this.port
}

output "auth_token_secret_arn" {
  description = "Secrets Manager secret holding the AUTH token (the token itself is never output)."
  value       = aws_secretsmanager_secret.auth_token.arn
}

output "kms_key_arn" {
  description = "The key that encrypts the data and the AUTH token secret (readers of the secret need kms:Decrypt)."
  value       = aws_kms_key.this.arn
}

output "security_group_id" {
  description = "Redis's security group."
  value       = aws_security_group.this.id
}

output "endpoint_secret_arn" {
  description = "Secrets Manager secret holding {host, port} (read by External Secrets to build REDIS_URL)."
  value       = aws_secretsmanager_secret.endpoint.arn
}
