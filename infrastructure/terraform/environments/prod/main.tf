# Production: three zones with a NAT gateway each, Multi-AZ databases with deletion protection and 30 days of point-in-time recovery, Redis with two replicas and automatic failover.
#
# Per service: its image repository and, for the three services with data, its own PostgreSQL;
# one shared Redis; the VPC; the EKS cluster. outputs.tf lists what the Kubernetes overlay
# (infrastructure/kubernetes/overlays/prod) and the secret set-up consume.

locals {
  name        = "foundation-prod"
  environment = "prod"

  # Kubernetes names. `database` names the service's own PostgreSQL database (null: none).
  services = {
    # `app_secrets`: Secrets Manager secrets for the service's own keys (values set by hand).
    # `generated_settings`: keys of `settings` whose first value Terraform generates.
    gateway           = { database = null, app_secrets = [], generated_settings = [] }
    "auth-service"    = { database = "auth", app_secrets = ["settings", "jwt-keys"], generated_settings = ["LOGIN_DEVICE_COOKIE_SECRET"] }
    "history-service" = { database = "history", app_secrets = [], generated_settings = [] }
    "stats-service"   = { database = "stats", app_secrets = [], generated_settings = [] }
  }

  database_settings = {
    engine_version        = "16"
    instance_class        = "db.m7g.large"
    allocated_storage     = 100
    max_allocated_storage = 1000
    multi_az              = true
    deletion_protection   = true
    backup_retention_days = 30
  }
}

module "network" {
  source = "../../modules/network"

  name               = local.name
  vpc_cidr           = "10.30.0.0/16"
  availability_zones = var.availability_zones
  # Order fixes each store's address range (see modules/network): append only.
  data_stores        = ["auth", "history", "stats", "redis"]
  single_nat_gateway = false
}

module "cluster" {
  source = "../../modules/cluster"

  name                = local.name
  subnet_ids          = module.network.private_subnet_ids
  public_access_cidrs = var.cluster_public_access_cidrs
  admin_role_arns     = var.cluster_admin_role_arns
  node_instance_types = ["m6i.large"]
  node_min_size       = 3
  node_max_size       = 12

  readable_secret_arns = concat(
    flatten([for service in module.service : service.secret_arns]),
    [module.redis.auth_token_secret_arn, module.redis.endpoint_secret_arn],
  )
  readable_secret_kms_key_arns = concat(
    flatten([for service in module.service : service.kms_key_arns]),
    [module.redis.kms_key_arn],
  )
}

module "service" {
  source   = "../../modules/service"
  for_each = local.services

  name        = each.key
  environment = local.environment
  app_secrets = each.value.app_secrets

  generated_settings = each.value.generated_settings

  database                   = each.value.database == null ? null : merge(local.database_settings, { name = each.value.database })
  vpc_id                     = module.network.vpc_id
  database_subnet_ids        = each.value.database == null ? [] : module.network.data_subnet_ids[each.value.database]
  allowed_security_group_ids = [module.cluster.security_group_id]
}

module "redis" {
  source = "../../modules/redis"

  name                       = "foundation"
  environment                = local.environment
  vpc_id                     = module.network.vpc_id
  subnet_ids                 = module.network.data_subnet_ids["redis"]
  allowed_security_group_ids = [module.cluster.security_group_id]
  node_type                  = "cache.m7g.large"
  replicas                   = 2
  snapshot_retention_days    = 7
}
