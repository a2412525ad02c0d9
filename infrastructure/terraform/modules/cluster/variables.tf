variable "name" {
  description = "Cluster name, e.g. foundation-prod."
  type        = string
}

variable "kubernetes_version" {
  description = "EKS Kubernetes version (the manifests are validated against 1.30 and later)."
  type        = string
  default     = "1.32"
}

variable "subnet_ids" {
  description = "Private subnets for the control plane's interfaces and the nodes."
  type        = list(string)
}

variable "public_access_cidrs" {
  description = "Operator address ranges allowed to reach the public API endpoint; empty turns the public endpoint off."
  type        = list(string)
  default     = []

  validation {
    condition     = !contains(var.public_access_cidrs, "0.0.0.0/0")
    error_message = "Never open the Kubernetes API to the whole internet."
  }
}

variable "admin_role_arns" {
  description = "IAM roles granted cluster-admin (in addition to the identity that creates the cluster)."
  type        = list(string)
  default     = []
}

variable "node_instance_types" {
  description = "Instance types of the managed node group."
  type        = list(string)
  default     = ["m6i.large"]
}

variable "node_min_size" {
  description = "Fewest nodes (and the initial count)."
  type        = number
  default     = 2
}

variable "node_max_size" {
  description = "Most nodes."
  type        = number
  default     = 6
}

variable "node_disk_size" {
  description = "Root volume size of a node in GiB."
  type        = number
  default     = 50
}

variable "readable_secret_arns" {
  description = "Secrets Manager secrets External Secrets may read (the services' secrets)."
  type        = list(string)
}

variable "readable_secret_kms_key_arns" {
  description = "KMS keys that encrypt those secrets."
  type        = list(string)
}

variable "log_retention_days" {
  description = "How long control-plane logs are kept."
  type        = number
  default     = 365
}
