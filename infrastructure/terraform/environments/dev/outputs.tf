# Everything here is an address, a name or an ARN: no credential is ever output. Passwords and
# tokens live in Secrets Manager, and the secret ARNs below say where.

output "cluster_name" {
  description = "EKS cluster: aws eks update-kubeconfig --name <this>."
  value       = module.cluster.name
}

output "external_secrets_role_arn" {
  description = "IAM role External Secrets runs as (EKS Pod Identity, namespace external-secrets)."
  value       = module.cluster.external_secrets_role_arn
}

output "ecr_repository_urls" {
  description = "Per service: its image repository (overlay images[].newName)."
  value       = { for name, service in module.service : name => service.repository_url }
}

output "databases" {
  description = "Per service with data: address, port, database, user, and the Secrets Manager secret (managed by RDS) holding its password."
  value       = { for name, service in module.service : name => service.database if service.database != null }
}

output "app_secret_arns" {
  description = "Per service with application secrets: the Secrets Manager secrets to fill, by short name (docs/deployment.md)."
  value       = { for name, service in module.service : name => service.app_secret_arns if length(service.app_secret_arns) > 0 }
}

output "redis" {
  description = "The shared Redis: primary endpoint, TLS port and the secret holding its AUTH token."
  value = {
    host                  = module.redis.primary_endpoint
    port                  = module.redis.port
    auth_token_secret_arn = module.redis.auth_token_secret_arn
  }
}

output "network_policy_cidrs" {
  description = "Per data store: its address range, for the overlay's NetworkPolicy ipBlocks (auth-database, history-database, stats-database, redis)."
  value       = module.network.data_store_cidrs
}

output "vpc_cidr" {
  description = "The VPC's range: the overlay's TRUSTED_PROXIES (the ingress controller's pods live in it)."
  value       = module.network.vpc_cidr
}
