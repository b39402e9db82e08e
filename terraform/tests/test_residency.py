"""DATA-05 and TFX-07: every regional resource in southamerica-west1, and the organization
policy that enforces it (TFX-04/TFX-06 location parts too)."""

import re

import pytest

from conftest import (
    ENVS, MODULES, REGION, ROOT, all_module_paths, expr, first, load_module, module_dirs,
)

# Resource types with a location or region of their own: the attribute(s) that carry it.
REGIONAL = {
    "google_artifact_registry_repository": ["location"],
    "google_cloud_run_v2_job": ["location"],
    "google_cloud_run_v2_job_iam_member": ["location"],
    "google_cloud_run_v2_service": ["location"],
    "google_cloud_run_v2_service_iam_member": ["location"],
    "google_artifact_registry_repository_iam_member": ["location"],
    "google_cloud_scheduler_job": ["region"],
    "google_compute_region_network_endpoint_group": ["region"],
    "google_compute_router": ["region"],
    "google_compute_router_nat": ["region"],
    "google_compute_subnetwork": ["region"],
    "google_kms_key_ring": ["location"],
    "google_sql_database_instance": ["region"],
    "google_storage_bucket": ["location"],
}

# Global by nature (no location to choose) or located by their parent resource.
GLOBAL_OR_PARENTED = {
    # the load balancer: global external Application Load Balancer
    "google_compute_backend_service", "google_compute_global_address",
    "google_compute_global_forwarding_rule", "google_compute_managed_ssl_certificate",
    "google_compute_security_policy", "google_compute_ssl_policy",
    "google_compute_target_http_proxy", "google_compute_target_https_proxy",
    "google_compute_url_map",
    # network: a VPC and its firewall rules are global; the private services range is global
    "google_compute_network", "google_compute_firewall", "google_compute_global_address",
    "google_service_networking_connection",
    # IAM, identities, policies, project settings
    "google_service_account", "google_service_account_iam_member", "google_project_iam_member",
    "google_project_iam_custom_role", "google_project_iam_audit_config", "google_project_service",
    "google_org_policy_policy", "google_logging_project_sink",
    "google_storage_bucket_iam_member", "google_secret_manager_secret_iam_member",
    "google_pubsub_topic_iam_member", "google_pubsub_subscription_iam_member",
    "google_kms_crypto_key_iam_member",
    # located by a parent: key ring, instance, topic
    "google_kms_crypto_key", "google_sql_database", "google_sql_user", "google_pubsub_subscription",
    # located by explicit nested settings checked below
    "google_pubsub_topic",  # message_storage_policy
    "google_secret_manager_secret",  # replication.user_managed.replicas.location
}

REGION_VALUES = {"${var.region}", "${upper(var.region)}", REGION, REGION.upper()}


def every_resource():
    for path in all_module_paths():
        for block in load_module(path).resources():
            yield path, block


def test_every_resource_type_is_classified():
    """A new resource type must be placed in REGIONAL or GLOBAL_OR_PARENTED here, i.e. someone
    decided where its data lives."""
    unknown = sorted({(p.name, b.labels[0]) for p, b in every_resource()
                      if b.labels[0] not in REGIONAL and b.labels[0] not in GLOBAL_OR_PARENTED})
    assert not unknown, f"unclassified resource types (where do they store data?): {unknown}"


@pytest.mark.parametrize("path,block", list(every_resource()), ids=lambda x: getattr(x, "address", getattr(x, "name", "")))
def test_regional_resources_are_in_the_region(path, block):
    for attr in REGIONAL.get(block.labels[0], []):
        assert block.body.get(attr) in REGION_VALUES, \
            f"{path.name}/{block.address}.{attr} = {block.body.get(attr)!r}, not {REGION}"


@pytest.mark.parametrize("path", module_dirs(), ids=lambda p: p.name)
def test_region_variable_only_admits_the_region(path):
    region = load_module(path).variables().get("region")
    if region is None:
        return
    cond = expr(first(region["validation"])["condition"])
    assert cond == f'var.region == "{REGION}"', f"{path.name}: region validation is {cond!r}"


@pytest.mark.parametrize("path", [ENVS / "staging", ENVS / "prod"], ids=lambda p: p.name)
def test_envs_pin_the_region(path):
    env = load_module(path)
    assert env.calls()["platform"].body["region"] == REGION
    provider = [b for b in env.of("provider") if b.labels == ("google",)]
    assert provider and provider[0].body["region"] == REGION


def test_modules_pass_the_region_down():
    """Every module call passes var.region (never a literal elsewhere)."""
    for path in module_dirs():
        for name, call in load_module(path).calls().items():
            callee = load_module((path / call.body["source"]).resolve())
            if "region" in callee.variables():
                assert call.body.get("region") == "${var.region}", f"{path.name}: module {name} region"


def test_org_policy_restricts_resource_locations():
    """TFX-07: gcp.resourceLocations = in:southamerica-west1-locations."""
    base = load_module(MODULES / "project-baseline")
    policy = base.resource("google_org_policy_policy", "resource_locations").body
    assert policy["name"] == "projects/${var.project_id}/policies/gcp.resourceLocations"
    values = first(first(first(policy["spec"])["rules"])["values"])
    assert values["allowed_values"] == ["in:${var.region}-locations"]
    assert base.variables()["enforce_location_policy"]["default"] is True
    for env in ("staging", "prod"):
        call = load_module(ENVS / env).calls()["platform"].body
        assert call.get("enforce_location_policy", True) is True


def test_cloud_sql_backups_stay_in_the_region():
    sql = load_module(MODULES / "cloud-sql").resource("google_sql_database_instance", "this").body
    backup = first(first(sql["settings"])["backup_configuration"])
    assert backup["location"] == "${var.region}"


def test_pubsub_messages_are_stored_only_in_the_region():
    """TFX-04."""
    topic = load_module(MODULES / "pubsub").resource("google_pubsub_topic", "this").body
    policy = first(topic["message_storage_policy"])
    assert policy["allowed_persistence_regions"] == ["${var.region}"]
    assert policy["enforce_in_transit"] is True


def test_secrets_are_replicated_only_to_the_region():
    secret = load_module(MODULES / "secrets").resource("google_secret_manager_secret", "this").body
    managed = first(first(secret["replication"])["user_managed"])
    replicas = managed["replicas"]
    assert len(replicas) == 1 and replicas[0]["location"] == "${var.region}"
    assert "auto" not in first(secret["replication"])


def test_buckets_are_single_region():
    """TFX-06: location = SOUTHAMERICA-WEST1, never a multi-region."""
    for path in all_module_paths():
        for b in load_module(path).resources("google_storage_bucket"):
            assert b.body["location"] == "${upper(var.region)}", f"{path.name}/{b.address}"


def test_images_come_from_the_regional_registry():
    """DATA-05 for Artifact Registry: Cloud Build pushes to and deploys from
    southamerica-west1-docker.pkg.dev only; Terraform's bootstrap image is replaced by the
    first deploy."""
    text = (ROOT / "cloudbuild.yaml").read_text()
    assert re.search(r"^  _REGION: southamerica-west1$", text, re.M)
    assert re.search(r"^  _REGISTRY: \$\{_REGION\}-docker\.pkg\.dev/\$\{PROJECT_ID\}/runwarden$", text, re.M)
    pushed = set(re.findall(r'docker push "([^"]+)"', text))
    assert pushed and all(p.startswith("${_REGISTRY}/") for p in pushed), pushed
    assert load_module(MODULES / "platform").calls()["registry"].body["region"] == "${var.region}"
