output "name" {
  description = "Cluster name (aws eks update-kubeconfig --name ...)."
  value       = aws_eks_cluster.this.name
}

output "endpoint" {
  description = "API server endpoint."
  value       = aws_eks_cluster.this.endpoint
}

output "security_group_id" {
  description = "The cluster security group, carried by every node and so by every pod: the data stores admit it."
  value       = aws_eks_cluster.this.vpc_config[0].cluster_security_group_id
}

output "external_secrets_role_arn" {
  description = "IAM role that External Secrets (namespace external-secrets, service account external-secrets) runs as."
  value       = aws_iam_role.external_secrets.arn
}
