"""TFX-05 (Cloud SQL), TFX-03 (Pub/Sub subscriptions), TFX-06 (buckets)."""

import re

from conftest import ENVS, MODULES, ROOT, expr, first, load_module, topics


# ---- Cloud SQL (TFX-05, CKV_GCP_6/11/14/60) --------------------------------------------

def sql_instance():
    return load_module(MODULES / "cloud-sql").resource("google_sql_database_instance", "this").body


def test_cloud_sql_has_no_public_ip_and_requires_tls():
    settings = first(sql_instance()["settings"])
    ip = first(settings["ip_configuration"])
    assert ip["ipv4_enabled"] is False
    assert ip["private_network"] == "${var.private_network}"
    assert ip["ssl_mode"] == "TRUSTED_CLIENT_CERTIFICATE_REQUIRED"
    assert "authorized_networks" not in ip


def test_cloud_sql_backs_up_daily_with_point_in_time_recovery():
    backup = first(first(sql_instance()["settings"])["backup_configuration"])
    assert backup["enabled"] is True
    assert backup["point_in_time_recovery_enabled"] is True
    assert backup["location"] == "${var.region}"
    assert first(backup["backup_retention_settings"])["retained_backups"] == "${var.backup_retained_count}"


def test_cloud_sql_deletion_protection_cannot_be_turned_off():
    body = sql_instance()
    assert body["deletion_protection"] == "${var.deletion_protection}"
    assert first(body["settings"])["deletion_protection_enabled"] == "${var.deletion_protection}"
    var = load_module(MODULES / "cloud-sql").variables()["deletion_protection"]
    assert var["default"] is True
    assert expr(first(var["validation"])["condition"]) == "var.deletion_protection"
    platform = load_module(MODULES / "platform")
    assert platform.calls()["sql"].body["deletion_protection"] is True


def test_cloud_sql_is_regional_in_prod():
    assert load_module(ENVS / "prod").calls()["platform"].body["db_availability_type"] == "REGIONAL"
    platform = load_module(MODULES / "platform")
    assert platform.calls()["sql"].body["availability_type"] == "${var.db_availability_type}"


def test_cloud_sql_uses_iam_authentication_and_logs():
    flags = {f["name"]: f["value"] for f in first(sql_instance()["settings"])["database_flags"]}
    assert flags["cloudsql.iam_authentication"] == "on"
    assert flags["log_statement"] == "ddl"  # mod/all would log parameters (personal data)
    assert flags["cloudsql.enable_pgaudit"] == "on"
    assert sql_instance()["database_version"] == "${var.database_version}"
    assert load_module(MODULES / "cloud-sql").variables()["database_version"]["default"] == "POSTGRES_18"


# ---- Pub/Sub (TFX-03) ---------------------------------------------------------------------

def push_sub():
    return load_module(MODULES / "pubsub").resource("google_pubsub_subscription", "push").body


def test_pubsub_is_built_from_topics_json():
    mod = load_module(MODULES / "pubsub")
    assert mod.locals()["table"] == "${jsondecode(file(var.topics_file))}"
    call = load_module(MODULES / "platform").calls()["pubsub"].body
    assert call["topics_file"] == "${local.topics_file}"
    assert load_module(MODULES / "platform").locals()["topics_file"] == "${local.repo_root}/shared/events/topics.json"
    assert load_module(MODULES / "platform").locals()["repo_root"] == "${path.module}/../../.."
    assert (MODULES / "platform" / "../../../shared/events/topics.json").resolve() == ROOT / "shared/events/topics.json"


def test_every_push_subscription_has_an_oidc_token():
    push = first(push_sub()["push_config"])
    oidc = first(push["oidc_token"])
    assert oidc["service_account_email"] == "${google_service_account.push.email}"
    assert oidc["audience"] == "${var.push_audiences[each.value.function]}"
    assert push_sub()["for_each"] == "${local.push}"


def test_push_subscriptions_retry_and_dead_letter():
    sub = push_sub()
    retry = first(sub["retry_policy"])
    assert retry["minimum_backoff"] == "10s" and retry["maximum_backoff"] == "600s"
    dlq = first(sub["dead_letter_policy"])
    assert dlq["max_delivery_attempts"] == "${each.value.max_delivery_attempts}"
    assert first(sub["expiration_policy"])["ttl"] == ""
    assert sub["ack_deadline_seconds"] == "${each.value.ack_deadline_seconds}"
    dead = load_module(MODULES / "pubsub").resource("google_pubsub_subscription", "dead_letter").body
    assert first(dead["expiration_policy"])["ttl"] == ""


def test_topics_json_fits_pubsub_and_the_platform():
    platform = load_module(MODULES / "platform")
    targets = platform.locals()["push_targets"]
    for topic in topics()["topics"]:
        assert topic["dead_letter"]["topic"] and topic["dead_letter"]["subscription"], topic["name"]
        for sub in topic["push_subscriptions"]:
            assert 5 <= sub["max_delivery_attempts"] <= 100, sub["name"]
            assert 10 <= sub["ack_deadline_seconds"] <= 600, sub["name"]
            assert sub["path"].startswith("/push/"), sub["name"]
            assert sub["function"] in targets, f"{sub['name']}: no service for {sub['function']}"
            assert targets[sub["function"]] in platform.locals()["services"]


def test_topics_are_encrypted_and_pushers_may_invoke_consumers():
    topic = load_module(MODULES / "pubsub").resource("google_pubsub_topic", "this").body
    assert topic["kms_key_name"] == "${var.kms_key}"
    platform = load_module(MODULES / "platform")
    call = next(c.body for c in platform.calls().values() if c.body["source"] == "../cloud-run-service")
    assert 'each.value.push_invoker ? {push = {role = "roles/run.invoker", member = module.pubsub.push_member}} : {}' \
        in call["iam"], call["iam"]
    for consumer in set(platform.locals()["push_targets"].values()):
        assert platform.locals()["services"][consumer]["push_invoker"] is True, consumer


# ---- buckets (TFX-06, CKV_GCP_29/62/78/114) --------------------------------------------------

def buckets():
    for path in [MODULES / "storage-bucket", MODULES / "project-baseline"]:
        for b in load_module(path).resources("google_storage_bucket"):
            yield path.name, b.body


def test_buckets_are_uniform_private_versioned_and_aged():
    for name, body in buckets():
        assert body["uniform_bucket_level_access"] is True, name
        assert body["public_access_prevention"] == "enforced", name
        assert "versioning" in body, name
        assert body.get("lifecycle_rule") or body.get("dynamic"), name
        assert body["force_destroy"] in ("${var.force_destroy}",), name


def test_prod_never_force_destroys_buckets_and_locks_audit_logs(prod):
    call = prod.calls()["platform"].body
    assert call["force_destroy_buckets"] is False
    assert call["lock_audit_log_retention"] is True
    base = load_module(MODULES / "project-baseline").resource("google_storage_bucket", "audit_logs").body
    retention = first(base["retention_policy"])
    assert retention["is_locked"] == "${var.lock_audit_log_retention}"
    assert "var.audit_log_retention_days" in retention["retention_period"]


def test_platform_buckets_are_versioned_with_lifecycle_rules(platform):
    calls = platform.calls()
    for name in ("artifacts_bucket", "exports_bucket", "access_logs_bucket", "build_source_bucket"):
        body = calls[name].body
        assert body["versioning"] is True, name
    assert calls["artifacts_bucket"].body["delete_after_days"] == "${var.artifact_retention_days}"
    assert calls["exports_bucket"].body["delete_after_days"] == "${var.export_window_days}"
    assert platform.variables()["export_window_days"]["default"] == 30
    for name in ("artifacts_bucket", "exports_bucket", "build_source_bucket"):
        assert calls[name].body["access_log_bucket"] == "${module.access_logs_bucket.name}"
