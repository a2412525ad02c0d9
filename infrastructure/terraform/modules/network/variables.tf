variable "name" {
  description = "Name prefix for every resource, e.g. foundation-prod."
  type        = string
}

variable "vpc_cidr" {
  description = "The VPC's address range: a /16 (see the address plan in main.tf)."
  type        = string

  validation {
    condition     = can(cidrhost(var.vpc_cidr, 0)) && endswith(var.vpc_cidr, "/16")
    error_message = "The VPC range must be an IPv4 /16, e.g. 10.20.0.0/16."
  }
}

variable "availability_zones" {
  description = "Two or three availability zones of the region."
  type        = list(string)

  validation {
    condition     = length(var.availability_zones) >= 2 && length(var.availability_zones) <= 3
    error_message = "Use two or three availability zones."
  }
}

variable "data_stores" {
  description = "Data stores that get their own subnets, in a fixed order (the order decides the ranges: append only)."
  type        = list(string)

  validation {
    condition     = length(var.data_stores) <= 150
    error_message = "At most 150 data stores fit the address plan."
  }
}

variable "single_nat_gateway" {
  description = "One NAT gateway for all zones (cheaper, for dev) instead of one per zone."
  type        = bool
  default     = false
}

variable "log_retention_days" {
  description = "How long VPC flow logs are kept."
  type        = number
  default     = 365
}
