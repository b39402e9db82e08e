# Runwarden in one project: the composition the envs instantiate. Every module below makes its
# own grants on the narrowest resource; this file says who needs what.

locals {
  repo_root   = "${path.module}/../../.."
  routes_file = "${local.repo_root}/shared/frontdoor/routes.json"
  topics_file = "${local.repo_root}/shared/events/topics.json"

  project_number = module.baseline.project_number
  # Cloud Run's deterministic URLs (https://SERVICE-PROJECT_NUMBER.REGION.run.app): known
  # before the services exist, so a service can be told its own URL and its peers'.
  url = { for k in keys(local.services) : k => "https://${var.name}-${k}-${local.project_number}.${var.region}.run.app" }

  # The deployed services, one row each (module.service is made from this table). quotas and
  # audit are internal-only (runs, Pub/Sub and Scheduler reach them); their public routes
  # (/v1/orgs/*/usage, /v1/orgs/*/audit-events/**) are served by twins of the same image
  # (quotas-edge, audit-edge) that only the load balancer reaches, so internal-only ingress and
  # the routing table both hold. See README.md. push_invoker: the push account (which the
  # scheduler uses too) may invoke it; self_token_creator: it signs V4 URLs.
  services = {
    auth        = { function = "auth", ingress = "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER", public = true, min_instances = var.min_instances.auth, push_invoker = true, self_token_creator = false }
    runs        = { function = "runs", ingress = "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER", public = true, min_instances = var.min_instances.runs, push_invoker = true, self_token_creator = true }
    quotas      = { function = "quotas", ingress = "INGRESS_TRAFFIC_INTERNAL_ONLY", public = false, min_instances = var.min_instances.quotas, push_invoker = true, self_token_creator = false }
    quotas-edge = { function = "quotas", ingress = "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER", public = true, min_instances = 0, push_invoker = false, self_token_creator = false }
    audit       = { function = "audit", ingress = "INGRESS_TRAFFIC_INTERNAL_ONLY", public = false, min_instances = var.min_instances.audit, push_invoker = true, self_token_creator = false }
    audit-edge  = { function = "audit", ingress = "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER", public = true, min_instances = 0, push_invoker = false, self_token_creator = false }
  }

  # Service => why Cloud Run's invoker IAM check is off, and what guards it instead.
  invoker_iam_disabled = {
    quotas = "runs calls /internal/admissions with X-Internal-Auth but no Google ID token yet; ingress is internal-only (VPC, Pub/Sub and Scheduler of this project), /internal/ needs the shared secret and /push/ verifies Pub/Sub's OIDC token itself."
  }

  # routes.json service => the service (key of local.services) the load balancer sends it to.
  frontdoor_backends = { auth = "auth", runs = "runs", quotas = "quotas-edge", audit = "audit-edge" }

  # topics.json push_subscriptions[].function => the service its pushes go to.
  push_targets = { audit = "audit", quotas = "quotas", runs = "runs" }

  vpc = {
    network    = module.network.network
    subnetwork = module.network.subnetwork
  }

  database = {
    connection_name = module.sql.connection_name
    instance        = module.sql.instance
    database        = module.sql.database
    assign_role     = var.assign_database_roles
    proxy_image     = var.sql_proxy_image
  }

  secret = module.secrets.ids
  labels = { app = "runwarden", env = var.environment }

  # Behind the load balancer X-Forwarded-For ends "<client>, <load balancer>": the client is
  # the second entry from the right. Called directly, Google's front end appends one entry.
  lb_hops       = "2"
  internal_hops = "1"

  jwks_url = "${local.url.auth}/.well-known/jwks.json"

  push_env = {
    PUSH_SERVICE_ACCOUNT = module.pubsub.push_service_account
  }

  # Service => its own variables, besides what every service gets (push_env, its
  # TRUSTED_PROXY_HOPS and PUSH_AUDIENCE: see module.service). Secrets go in
  # service_secret_env, never here.
  service_env = {
    auth = merge(
      {
        AUTH_SIGNING_KEY_ID = var.auth_signing_key_id
        PUBSUB_PROJECT      = var.project_id
        # Mail: the sender address and the base of the links in mails (verification).
        MAIL_FROM      = var.mail_from
        PUBLIC_APP_URL = "https://${var.domains[0]}"
      },
      # Key rotation (terraform/README.md): the next key, published before it signs, and
      # the public halves of the keys that signed before, published until retired.
      var.auth_next_signing_key_id == "" ? {} : {
        AUTH_NEXT_SIGNING_KEY_ID = var.auth_next_signing_key_id
      },
      var.auth_previous_jwks == "" ? {} : {
        AUTH_PREVIOUS_JWKS = var.auth_previous_jwks
      },
      var.google_oauth_client_id == "" ? {} : {
        GOOGLE_OAUTH_CLIENT_ID    = var.google_oauth_client_id
        GOOGLE_OAUTH_REDIRECT_URL = "https://${var.domains[0]}/v1/auth/google/callback"
      },
    )
    runs = {
      AUTH_JWKS_URL        = local.jwks_url
      QUOTAS_URL           = local.url.quotas
      PUBSUB_PROJECT       = var.project_id
      RUNS_AGENTS          = var.runs_agents
      RUNNER_JOB           = "projects/${var.project_id}/locations/${var.region}/jobs/${var.name}-runner"
      RUNNER_RUNS_URL      = local.url.runs
      VAULT_KEK_ACTIVE     = var.vault_kek_active
      MEDIA_SIGNING_KEY_ID = var.media_signing_key_id
      ARTIFACTS_BUCKET     = "${var.project_id}-${var.name}-artifacts"
    }
    quotas      = { AUTH_JWKS_URL = local.jwks_url }
    quotas-edge = { AUTH_JWKS_URL = local.jwks_url }
    audit       = { AUTH_JWKS_URL = local.jwks_url }
    audit-edge  = { AUTH_JWKS_URL = local.jwks_url }
  }

  # Service => environment variable => the secret it is read from. quotas-edge gets a value
  # nobody else holds, so the twin's /internal/ routes accept no caller.
  service_secret_env = {
    auth = merge(
      {
        AUTH_SIGNING_KEY = {
          secret  = local.secret["auth-signing-key"]
          version = var.auth_signing_key_version
        }
        # The SMTP relay's URL with its credentials (SendGrid, Mailgun, Workspace relay).
        SMTP_URL = { secret = local.secret["smtp-url"] }
      },
      var.auth_next_signing_key_id == "" ? {} : {
        AUTH_NEXT_SIGNING_KEY = {
          secret  = local.secret["auth-next-signing-key"]
          version = var.auth_next_signing_key_version
        }
      },
      var.google_oauth_client_id == "" ? {} : {
        GOOGLE_OAUTH_CLIENT_SECRET = { secret = local.secret["google-oauth-client-secret"] }
      },
    )
    runs = {
      INTERNAL_AUTH_SECRETS = { secret = local.secret["internal-auth"] }
      VAULT_KEKS            = { secret = local.secret["vault-keks"] }
      MEDIA_SIGNING_KEY     = { secret = local.secret["media-signing-key"] }
    }
    quotas      = { INTERNAL_AUTH_SECRETS = { secret = local.secret["internal-auth"] } }
    quotas-edge = { INTERNAL_AUTH_SECRETS = { secret = local.secret["quotas-edge-internal-auth"] } }
    audit       = {}
    audit-edge  = {}
  }
}

module "baseline" {
  source                   = "../project-baseline"
  project_id               = var.project_id
  region                   = var.region
  name                     = var.name
  enforce_location_policy  = var.enforce_location_policy
  lock_audit_log_retention = var.lock_audit_log_retention
  force_destroy            = var.force_destroy_buckets
}

module "network" {
  source     = "../network"
  project_id = var.project_id
  region     = var.region
  name       = var.name
  depends_on = [module.baseline]
}

module "kms" {
  source     = "../kms"
  project_id = var.project_id
  region     = var.region
  name       = var.name
  keys = {
    pubsub            = { encrypters_decrypters = ["serviceAccount:service-${local.project_number}@gcp-sa-pubsub.iam.gserviceaccount.com"] }
    artifact-registry = { encrypters_decrypters = ["serviceAccount:service-${local.project_number}@gcp-sa-artifactregistry.iam.gserviceaccount.com"] }
  }
  depends_on = [module.baseline]
}

module "sql" {
  source                = "../cloud-sql"
  project_id            = var.project_id
  region                = var.region
  name                  = "${var.name}-pg"
  tier                  = var.db_tier
  availability_type     = var.db_availability_type
  private_network       = module.network.network
  backup_retained_count = var.db_backup_retained_count
  max_connections       = var.db_max_connections
  deletion_protection   = true
  depends_on            = [module.network]
}

module "registry" {
  source     = "../artifact-registry"
  project_id = var.project_id
  region     = var.region
  name       = "runwarden"
  kms_key    = module.kms.keys["artifact-registry"]
  iam = {
    build = { role = "roles/artifactregistry.writer", member = google_service_account.build.member }
  }
  depends_on = [module.baseline]
}

# Secret containers; values are added with gcloud (terraform/README.md), never through
# Terraform. Each consumer below grants itself access to exactly the secrets it reads.
module "secrets" {
  source     = "../secrets"
  project_id = var.project_id
  region     = var.region
  secrets = merge(
    {
      auth-signing-key          = "auth: Ed25519 PKCS#8 PEM that signs access JWTs (AUTH_SIGNING_KEY)"
      auth-next-signing-key     = "auth: the Ed25519 PKCS#8 PEM that signs after the next rotation, published ahead (AUTH_NEXT_SIGNING_KEY)"
      smtp-url                  = "auth: the SMTP relay URL with its credentials, e.g. smtps://apikey:KEY@smtp.sendgrid.net:465 (SMTP_URL)"
      vault-keks                = "runs: the vault's key-encryption keys, v1:<base64>[,v2:...] (VAULT_KEKS)"
      media-signing-key         = "runs: Ed25519 PKCS#8 PEM that signs media tokens (MEDIA_SIGNING_KEY)"
      internal-auth             = "runs and quotas: X-Internal-Auth secrets, one or two during a rotation (INTERNAL_AUTH_SECRETS)"
      runner-internal-auth      = "runner: the one X-Internal-Auth value it sends to runs (INTERNAL_AUTH_SECRET)"
      quotas-edge-internal-auth = "quotas-edge: a random value nobody else holds, so the edge twin's /internal/ routes accept no caller"
    },
    var.google_oauth_client_id == "" ? {} : {
      google-oauth-client-secret = "auth: Google sign-in OAuth client secret (GOOGLE_OAUTH_CLIENT_SECRET)"
    },
  )
  depends_on = [module.baseline]
}

# ---- buckets ------------------------------------------------------------------------------

module "access_logs_bucket" {
  source        = "../storage-bucket"
  project_id    = var.project_id
  region        = var.region
  name          = "${var.project_id}-${var.name}-access-logs"
  versioning    = true
  force_destroy = var.force_destroy_buckets
  # Usage logs are only read for investigations; a year is plenty.
  delete_after_days = 365
  iam = {
    # Cloud Storage writes usage logs as this group.
    usage-logs = { role = "roles/storage.objectCreator", member = "group:cloud-storage-analytics@google.com" }
  }
  labels     = local.labels
  depends_on = [module.baseline]
}

module "artifacts_bucket" {
  source            = "../storage-bucket"
  project_id        = var.project_id
  region            = var.region
  name              = "${var.project_id}-${var.name}-artifacts"
  versioning        = true
  noncurrent_days   = 7
  delete_after_days = var.artifact_retention_days
  access_log_bucket = module.access_logs_bucket.name
  force_destroy     = var.force_destroy_buckets
  iam = {
    # runs signs the runner's upload URLs (PUT) and the media URLs (GET): a V4 signed URL
    # carries its signer's permissions.
    runs-signs-uploads = { role = "roles/storage.objectCreator", member = module.service["runs"].member }
    runs-signs-reads   = { role = "roles/storage.objectViewer", member = module.service["runs"].member }
  }
  iam_conditional = var.runner_direct_upload ? {
    runner-uploads = {
      role       = "roles/storage.objectCreator"
      member     = module.runner.member
      title      = "runs-prefix-only"
      expression = "resource.name.startsWith(\"projects/_/buckets/${var.project_id}-${var.name}-artifacts/objects/runs/\")"
    }
  } : {}
  labels = local.labels
}

module "exports_bucket" {
  source     = "../storage-bucket"
  project_id = var.project_id
  region     = var.region
  name       = "${var.project_id}-${var.name}-exports"
  # Versioning guards an archive against overwrite during its window; a version deleted at the
  # end of the window is gone a day later.
  versioning        = true
  noncurrent_days   = 1
  delete_after_days = var.export_window_days
  access_log_bucket = module.access_logs_bucket.name
  force_destroy     = var.force_destroy_buckets
  # No function writes exports yet (org termination exports arrive with retention); grant
  # the writer here, on this bucket, when one does.
  iam    = {}
  labels = local.labels
}

# Source uploads of `gcloud builds submit` (the default gs://PROJECT_cloudbuild bucket would be
# multi-regional, which the location policy refuses). Triggers do not need it.
module "build_source_bucket" {
  source            = "../storage-bucket"
  project_id        = var.project_id
  region            = var.region
  name              = "${var.project_id}-${var.name}-build-source"
  versioning        = true
  noncurrent_days   = 1
  delete_after_days = 7
  access_log_bucket = module.access_logs_bucket.name
  force_destroy     = var.force_destroy_buckets
  iam = {
    build-reads = { role = "roles/storage.objectViewer", member = google_service_account.build.member }
  }
  labels = local.labels
}

# ---- services -----------------------------------------------------------------------------

module "service" {
  source                      = "../cloud-run-service"
  for_each                    = local.services
  project_id                  = var.project_id
  region                      = var.region
  name                        = "${var.name}-${each.key}"
  image                       = var.bootstrap_image
  ingress                     = each.value.ingress
  public                      = each.value.public
  invoker_iam_disabled        = contains(keys(local.invoker_iam_disabled), each.key)
  invoker_iam_disabled_reason = lookup(local.invoker_iam_disabled, each.key, "")
  vpc                         = local.vpc
  revision                    = { min_instances = each.value.min_instances, max_instances = var.max_instances }
  self_token_creator          = each.value.self_token_creator
  deletion_protection         = var.deletion_protection
  labels                      = local.labels
  database                    = merge(local.database, { role = "runwarden_${each.value.function}" })
  # Cloud Build deploys every service, as it does the jobs; the push account (which the
  # scheduler uses too) invokes the push consumers.
  iam = merge(
    { build-deploys = { role = "roles/run.developer", member = google_service_account.build.member } },
    each.value.push_invoker ? { push = { role = "roles/run.invoker", member = module.pubsub.push_member } } : {},
  )
  env = merge(
    local.push_env,
    {
      # Behind the load balancer or not (see lb_hops).
      TRUSTED_PROXY_HOPS = each.value.ingress == "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER" ? local.lb_hops : local.internal_hops
      # Pushes and scheduled tasks carry a token for the service's own URL (auth's
      # retention-purge task too); no subscription pushes to the -edge twins, so pushes
      # there would fail this check.
      PUSH_AUDIENCE = local.url[each.key]
    },
    local.service_env[each.key],
  )
  secret_env = local.service_secret_env[each.key]
}

# ---- jobs ---------------------------------------------------------------------------------

# What runs may do to the runner job, and nothing more: start an execution with per-run
# overrides (run id, runs' URL, ticket, timeout), read it and cancel it.
resource "google_project_iam_custom_role" "runner_dispatch" {
  project     = var.project_id
  role_id     = "runwardenRunnerDispatch"
  title       = "Runwarden runner dispatch"
  description = "Start runner executions with overrides and cancel them; granted on the runner job only."
  permissions = [
    "run.executions.cancel",
    "run.executions.get",
    "run.jobs.run",
    "run.jobs.runWithOverrides",
  ]
}

module "runner" {
  source     = "../cloud-run-job"
  project_id = var.project_id
  region     = var.region
  name       = "${var.name}-runner"
  image      = var.bootstrap_image
  # The firewall denies this tag every private destination: agents reach the internet and
  # runs' URL, never Cloud SQL or other workloads in the VPC.
  vpc                 = merge(local.vpc, { tags = ["runwarden-runner"] })
  timeout_seconds     = var.runner_timeout_seconds
  max_retries         = 0
  cpu                 = "2"
  memory              = "2Gi"
  deletion_protection = var.deletion_protection
  labels              = local.labels
  env = {
    RUNS_URL = local.url.runs
  }
  secret_env = {
    INTERNAL_AUTH_SECRET = { secret = local.secret["runner-internal-auth"] }
  }
  iam = {
    runs-dispatches = { role = google_project_iam_custom_role.runner_dispatch.id, member = module.service["runs"].member }
    build-deploys   = { role = "roles/run.developer", member = google_service_account.build.member }
  }
}

module "migrate" {
  source              = "../cloud-run-job"
  project_id          = var.project_id
  region              = var.region
  name                = "${var.name}-migrate"
  image               = var.bootstrap_image
  vpc                 = local.vpc
  timeout_seconds     = 900
  max_retries         = 0
  deletion_protection = var.deletion_protection
  labels              = local.labels
  # The migration owner: creates the database roles and owns every table (so row-level
  # security never exempts a runtime role).
  database = {
    connection_name = module.sql.connection_name
    instance        = module.sql.instance
    database        = module.sql.database
    database_roles  = ["cloudsqlsuperuser"]
    proxy_image     = var.sql_proxy_image
  }
  iam = {
    build-deploys = { role = "roles/run.developer", member = google_service_account.build.member }
  }
}

# ---- events, edge, schedules --------------------------------------------------------------

module "pubsub" {
  source         = "../pubsub"
  project_id     = var.project_id
  project_number = local.project_number
  region         = var.region
  name           = var.name
  topics_file    = local.topics_file
  kms_key        = module.kms.keys.pubsub
  push_endpoints = { for f, s in local.push_targets : f => local.url[s] }
  push_audiences = { for f, s in local.push_targets : f => local.url[s] }
  # Both run an outbox relay, and a relay publishes whatever pending row it claims.
  publishers = { auth = module.service["auth"].member, runs = module.service["runs"].member }
}

module "edge" {
  source                = "../edge"
  project_id            = var.project_id
  region                = var.region
  name                  = var.name
  domains               = var.domains
  routes_file           = local.routes_file
  backends              = { for r, s in local.frontdoor_backends : r => module.service[s].name }
  waf_preview           = var.waf_preview
  rate_limit_per_minute = var.rate_limit_per_minute
  depends_on            = [module.baseline]
}

module "scheduler" {
  source     = "../scheduler"
  project_id = var.project_id
  region     = var.region
  name       = var.name
  # The functions authenticate scheduled tasks exactly like pushes: the push account's
  # OIDC token for the service's URL.
  oidc_service_account_email = module.pubsub.push_service_account
  jobs = {
    outbox-relay-sweep = { url = local.url.runs, path = "/internal/tasks/relay-sweep", schedule = "* * * * *", paused = !var.scheduler_endpoints_ready }
    run-reaper         = { url = local.url.runs, path = "/internal/tasks/reap", schedule = "* * * * *", paused = !var.scheduler_endpoints_ready }
    reservation-reaper = { url = local.url.quotas, path = "/internal/tasks/reap", schedule = "*/5 * * * *", paused = !var.scheduler_endpoints_ready }
    retention-purge    = { url = local.url.auth, path = "/internal/tasks/retention-purge", schedule = "17 3 * * *", paused = !var.scheduler_endpoints_ready }
  }
  depends_on = [module.baseline]
}

# ---- Cloud Build's deployer account --------------------------------------------------------

resource "google_service_account" "build" {
  project      = var.project_id
  account_id   = "${var.name}-build"
  display_name = "Cloud Build deployer"
  description  = "Runs cloudbuild.yaml: pushes images to the regional repository, runs the migrate job, deploys revisions by digest."
}

# Cloud Build with a user-managed account must be allowed to write its build logs.
resource "google_project_iam_member" "build_logs" {
  project = var.project_id
  role    = "roles/logging.logWriter"
  member  = google_service_account.build.member
}

# Deploying a revision that runs as a service account needs actAs on that account: granted on
# each runtime account, never on the project.
resource "google_service_account_iam_member" "build_act_as" {
  for_each = merge(
    { for k, s in module.service : k => s.service_account },
    { runner = module.runner.service_account, migrate = module.migrate.service_account },
  )
  service_account_id = "projects/${var.project_id}/serviceAccounts/${each.value}"
  role               = "roles/iam.serviceAccountUser"
  member             = google_service_account.build.member
}
