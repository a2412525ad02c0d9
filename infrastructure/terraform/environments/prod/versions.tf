terraform {
  # 1.10 brings the S3 backend's native state locking (use_lockfile); 1.11 write-only arguments
  # (database passwords never in the state: modules/service).
  required_version = ">= 1.11.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.100"
    }
  }

  # Partial configuration: bucket, region and kms_key_id come from `terraform init
  # -backend-config=...` with the values bootstrap/ prints (docs/deployment.md), so that no
  # account-specific name is committed. CI runs `terraform init -backend=false`.
  backend "s3" {
    key          = "foundation/prod/terraform.tfstate"
    encrypt      = true
    use_lockfile = true
  }
}

provider "aws" {
  region              = var.region
  allowed_account_ids = var.allowed_account_ids

  default_tags {
    tags = {
      Project     = "foundation"
      Environment = "prod"
      ManagedBy   = "terraform"
    }
  }
}
