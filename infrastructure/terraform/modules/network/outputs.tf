output "vpc_id" {
  description = "The VPC."
  value       = aws_vpc.this.id
}

output "vpc_cidr" {
  description = "The VPC's address range."
  value       = aws_vpc.this.cidr_block
}

output "private_subnet_ids" {
  description = "Subnets for the cluster's nodes and pods, one per zone."
  value       = aws_subnet.private[*].id
}

output "public_subnet_ids" {
  description = "Subnets for internet-facing load balancers, one per zone."
  value       = aws_subnet.public[*].id
}

output "data_subnet_ids" {
  description = "Per data store: its subnets, one per zone."
  value = {
    for store in var.data_stores : store => [
      for key, subnet in aws_subnet.data : subnet.id if local.data_subnets[key].store == store
    ]
  }
}

output "data_store_cidrs" {
  description = "Per data store: the one address range all its subnets sit in (for NetworkPolicy ipBlocks)."
  value       = local.data_store_cidrs
}
