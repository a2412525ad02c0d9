variable "name" {
  description = "Name prefix, e.g. foundation."
  type        = string
}

variable "environment" {
  description = "dev or prod."
  type        = string
}

variable "vpc_id" {
  description = "The VPC."
  type        = string
}

variable "subnet_ids" {
  description = "Redis's own data subnets (at least two zones)."
  type        = list(string)
}

variable "allowed_security_group_ids" {
  description = "Security groups whose members may connect (the cluster's)."
  type        = list(string)
}

variable "engine_version" {
  description = "Redis OSS version: the 7.0 line, as docker-compose.yml (redis:7.0.x) and the Nix dev shell run."
  type        = string
  default     = "7.0"
}

variable "parameter_group_name" {
  description = "Parameter group (must match the engine's major version)."
  type        = string
  default     = "default.redis7"
}

variable "node_type" {
  description = "ElastiCache node type."
  type        = string
  default     = "cache.t4g.small"
}

variable "replicas" {
  description = "Read replicas; one or more enables automatic failover and Multi-AZ (prod)."
  type        = number
  default     = 1
}

variable "snapshot_retention_days" {
  description = "Days of daily snapshots."
  type        = number
  default     = 7

  validation {
    condition     = var.snapshot_retention_days >= 1
    error_message = "Keep at least one day of snapshots."
  }
}

variable "log_retention_days" {
  description = "How long the slow log is kept."
  type        = number
  default     = 365
}
