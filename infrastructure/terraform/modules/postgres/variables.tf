variable "name" {
  description = "The service the database belongs to, e.g. auth."
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
  description = "The service's own data subnets (at least two zones)."
  type        = list(string)
}

variable "allowed_security_group_ids" {
  description = "Security groups whose members may connect (the cluster's)."
  type        = list(string)
}

variable "engine_version" {
  description = "PostgreSQL version: a major version (RDS takes its default minor and upgrades minors automatically) or major.minor."
  type        = string
  default     = "16"

  validation {
    condition     = tonumber(split(".", var.engine_version)[0]) >= 15
    error_message = "The engine version must be PostgreSQL 15 or newer."
  }
}

variable "instance_class" {
  description = "RDS instance class."
  type        = string
  default     = "db.t4g.micro"
}

variable "database_name" {
  description = "The database to create (the service's DATABASE_URL path)."
  type        = string
}

variable "username" {
  description = "The master user, which owns the database and runs the migrations."
  type        = string
}

variable "allocated_storage" {
  description = "Initial storage in GiB."
  type        = number
  default     = 20
}

variable "max_allocated_storage" {
  description = "Storage autoscaling ceiling in GiB."
  type        = number
  default     = 100
}

variable "multi_az" {
  description = "A synchronous standby in a second zone (prod)."
  type        = bool
  default     = true
}

variable "deletion_protection" {
  description = "Refuse deletion of the instance (prod)."
  type        = bool
  default     = true
}

variable "backup_retention_days" {
  description = "Days of automated backups (point-in-time recovery window)."
  type        = number
  default     = 14

  validation {
    condition     = var.backup_retention_days >= 7
    error_message = "Keep at least seven days of backups."
  }
}

variable "log_retention_days" {
  description = "How long the database's CloudWatch logs are kept."
  type        = number
  default     = 365
}

variable "master_password_version" {
  description = "Bump to give the master user a new password (written write-only to the instance and to its db-master secret)."
  type        = number
  default     = 1
}
