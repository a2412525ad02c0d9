variable "region" {
  description = "AWS region."
  type        = string
  default     = "eu-west-1"
}

variable "availability_zones" {
  description = "Zones to spread over, named explicitly so that the set never changes by itself (must belong to var.region)."
  type        = list(string)
  default     = ["eu-west-1a", "eu-west-1b", "eu-west-1c"]
}

variable "allowed_account_ids" {
  description = "The AWS account(s) this environment may be applied to: a guard against the wrong credentials."
  type        = list(string)
}

variable "cluster_public_access_cidrs" {
  description = "Operator address ranges allowed to reach the Kubernetes API's public endpoint; empty keeps it private."
  type        = list(string)
  default     = []
}

variable "cluster_admin_role_arns" {
  description = "IAM roles (e.g. the platform team's SSO role, the CD pipeline's role) granted cluster-admin."
  type        = list(string)
  default     = []
}
