terraform {
  required_version = ">= 1.6.0, < 2.0.0"
  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "~> 7.20"
    }
  }
  # State in a versioned bucket of the same project and region, created once by hand
  # (terraform/README.md, step 1). Supply it at init: terraform init -backend-config=bucket=...
  backend "gcs" {
    prefix = "runwarden"
  }
}

provider "google" {
  project               = var.project_id
  region                = "southamerica-west1"
  user_project_override = true
  billing_project       = var.project_id
  default_labels = {
    app = "runwarden"
  }
}
