variable "name" {
  description = "Service name as in Kubernetes, e.g. auth-service."
  type        = string
}

variable "environment" {
  description = "dev or prod."
  type        = string
}

variable "images_to_keep" {
  description = "Images kept in the repository (older ones expire)."
  type        = number
  default     = 50
}

variable "app_secrets" {
  description = "Secrets Manager secrets to create for the service's own application secrets, by short name (e.g. settings, jwt-keys)."
  type        = list(string)
  default     = []
}

variable "generated_settings" {
  description = "Keys of the `settings` secret whose first values Terraform generates (48 random letters and digits each), e.g. LOGIN_DEVICE_COOKIE_SECRET."
  type        = list(string)
  default     = []

  validation {
    condition     = length(var.generated_settings) == 0 || contains(var.app_secrets, "settings")
    error_message = "generated_settings needs a \"settings\" entry in app_secrets."
  }
}

variable "database" {
  description = "The service's own PostgreSQL, or null for none."
  type = object({
    name                  = string
    engine_version        = string
    instance_class        = string
    allocated_storage     = number
    max_allocated_storage = number
    multi_az              = bool
    deletion_protection   = bool
    backup_retention_days = number
  })
  default = null
}

variable "vpc_id" {
  description = "The VPC (only used with a database)."
  type        = string
  default     = null
}

variable "database_subnet_ids" {
  description = "The database's own subnets (only used with a database)."
  type        = list(string)
  default     = []
}

variable "allowed_security_group_ids" {
  description = "Security groups that may reach the database (the cluster's)."
  type        = list(string)
  default     = []
}

variable "master_password_version" {
  description = "Bump to give the database's master user a new password (modules/postgres)."
  type        = number
  default     = 1
}
