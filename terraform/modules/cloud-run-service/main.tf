# One Cloud Run v2 service with its own service account, and every grant that account needs
# made on the narrowest resource: roles on this service (`iam`, e.g. invoker), secret accessor
# on each secret it reads and Cloud SQL's login (cloud-run-identity, shared with the jobs),
# token creator on itself (if it signs URLs).

module "identity" {
  source     = "../cloud-run-identity"
  project_id = var.project_id
  name       = var.name
  kind       = "service"
  env        = var.env
  secrets    = { for k, v in var.secret_env : k => v.secret }
  database = var.database == null ? null : {
    connection_name = var.database.connection_name
    instance        = var.database.instance
    database        = var.database.database
    # The role the migrations created for this function (runwarden_auth, ...); assigned once
    # the migrate job has run (see terraform/README.md, "Database users").
    database_roles = var.database.assign_role ? [var.database.role] : []
    proxy_image    = var.database.proxy_image
  }
}

resource "google_cloud_run_v2_service" "this" {
  project              = var.project_id
  name                 = var.name
  location             = var.region
  ingress              = var.ingress
  deletion_protection  = var.deletion_protection
  invoker_iam_disabled = var.invoker_iam_disabled
  labels               = var.labels

  template {
    # Known once the account may read its secrets (see cloud-run-identity).
    service_account                  = module.identity.email
    execution_environment            = "EXECUTION_ENVIRONMENT_GEN2"
    max_instance_request_concurrency = var.revision.concurrency
    timeout                          = "${var.revision.timeout_seconds}s"

    scaling {
      min_instance_count = var.revision.min_instances
      max_instance_count = var.revision.max_instances
    }

    vpc_access {
      egress = "ALL_TRAFFIC"
      network_interfaces {
        network    = var.vpc.network
        subnetwork = var.vpc.subnetwork
        tags       = var.vpc.tags
      }
    }

    containers {
      name  = "app"
      image = var.image
      ports {
        container_port = 8080
      }
      resources {
        limits = {
          cpu    = var.cpu
          memory = var.memory
        }
        cpu_idle          = !var.cpu_always_allocated
        startup_cpu_boost = true
      }
      dynamic "env" {
        for_each = module.identity.env
        content {
          name  = env.key
          value = env.value
        }
      }
      dynamic "env" {
        for_each = var.secret_env
        content {
          name = env.key
          value_source {
            secret_key_ref {
              secret  = env.value.secret
              version = env.value.version
            }
          }
        }
      }
      startup_probe {
        http_get {
          path = "/healthz"
          port = 8080
        }
        initial_delay_seconds = 0
        period_seconds        = 2
        failure_threshold     = 30
        timeout_seconds       = 1
      }
      dynamic "volume_mounts" {
        for_each = module.identity.proxy == null ? [] : [module.identity.proxy]
        content {
          name       = volume_mounts.value.socket_volume
          mount_path = volume_mounts.value.socket_dir
        }
      }
      depends_on = module.identity.proxy == null ? [] : [module.identity.proxy.name]
    }

    dynamic "containers" {
      for_each = module.identity.proxy == null ? [] : [module.identity.proxy]
      content {
        name  = containers.value.name
        image = containers.value.image
        args  = containers.value.args
        resources {
          limits   = containers.value.limits
          cpu_idle = !var.cpu_always_allocated
        }
        startup_probe {
          http_get {
            path = containers.value.startup_probe.path
            port = containers.value.startup_probe.port
          }
          period_seconds    = containers.value.startup_probe.period_seconds
          failure_threshold = containers.value.startup_probe.failure_threshold
          timeout_seconds   = containers.value.startup_probe.timeout_seconds
        }
        volume_mounts {
          name       = containers.value.socket_volume
          mount_path = containers.value.socket_dir
        }
      }
    }

    dynamic "volumes" {
      for_each = module.identity.proxy == null ? [] : [module.identity.proxy]
      content {
        name = volumes.value.socket_volume
        empty_dir {
          medium     = "MEMORY"
          size_limit = "1Mi"
        }
      }
    }
  }

  lifecycle {
    # Cloud Build deploys new revisions by digest; Terraform must not roll them back.
    ignore_changes = [
      client,
      client_version,
      template[0].containers[0].image,
    ]
    precondition {
      condition     = !var.public || var.ingress == "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER"
      error_message = "A public service must have ingress INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER, so the internet reaches it only through the load balancer."
    }
    precondition {
      condition     = !var.invoker_iam_disabled || length(var.invoker_iam_disabled_reason) > 20
      error_message = "invoker_iam_disabled needs invoker_iam_disabled_reason."
    }
  }
}

# The caller's grants on this service, and for a public service allUsers as invoker (the
# only way anyone anonymous is let in; the precondition above keeps it behind the load balancer).
resource "google_cloud_run_v2_service_iam_member" "this" {
  for_each = merge(var.iam, var.public ? { public = { role = "roles/run.invoker", member = "allUsers" } } : {})
  project  = var.project_id
  location = var.region
  name     = google_cloud_run_v2_service.this.name
  role     = each.value.role
  member   = each.value.member
}

resource "google_service_account_iam_member" "self_token_creator" {
  count              = var.self_token_creator ? 1 : 0
  service_account_id = module.identity.id
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = module.identity.member
}
