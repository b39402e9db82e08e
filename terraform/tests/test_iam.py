"""TFX-08 and the issue's IAM invariants: no primitive roles, no project-level secret access,
an own service account for every service and job, grants on the narrowest resource, the
runner with nothing beyond what a run needs, audit logs for every service."""

import re

import pytest

from conftest import (
    ENVS, MODULES, TERRAFORM, all_module_paths, expr, first, load_module,
)

# The only roles any account holds at project level, and why.
PROJECT_ROLE_ALLOWLIST = {
    "roles/cloudsql.client",  # connect through the Auth Proxy (Cloud SQL has no instance IAM)
    "roles/cloudsql.instanceUser",  # log in as an IAM database user (project level only)
    "roles/logging.logWriter",  # Cloud Build's deployer account writes its build logs
}

SECRET_ENV = {
    "AUTH_SIGNING_KEY", "AUTH_NEXT_SIGNING_KEY", "GOOGLE_OAUTH_CLIENT_SECRET", "INTERNAL_AUTH_SECRETS",
    "INTERNAL_AUTH_SECRET", "VAULT_KEKS", "MEDIA_SIGNING_KEY", "SMTP_URL",
}
SECRETISH = re.compile(r"(SECRET|PASSWORD|TOKEN|_KEY$|_KEYS$|KEKS$)")


def tf_text() -> str:
    return "\n".join(p.read_text() for p in sorted(TERRAFORM.rglob("*.tf")))


def test_no_primitive_roles_anywhere():
    text = tf_text()
    for role in ("roles/owner", "roles/editor", "roles/viewer"):
        assert role not in text, f"{role} appears in terraform/"


def test_no_authoritative_project_iam():
    """Bindings/policies at project level would replace grants made outside Terraform and
    invite broad members; only additive members are used."""
    for path in all_module_paths():
        for rtype in ("google_project_iam_binding", "google_project_iam_policy"):
            assert not load_module(path).resources(rtype), f"{path.name} uses {rtype}"


def project_roles():
    for path in all_module_paths():
        for b in load_module(path).resources("google_project_iam_member"):
            role = b.body["role"]
            if role.startswith("roles/"):
                yield path, b, [role]
            else:
                assert expr(role) == "each.value", f"{path.name}/{b.address}: role {role!r}"
                yield path, b, re.findall(r"roles/[A-Za-z.]+", b.body["for_each"])


def test_project_level_roles_are_allowlisted():
    """TFX-08: no project-level roles beyond the allowlist; in particular no secretAccessor,
    tokenCreator, serviceAccountUser, pubsub or storage role at project level."""
    seen = 0
    for path, block, roles in project_roles():
        assert roles, f"{path.name}/{block.address}: cannot tell its roles"
        for role in roles:
            seen += 1
            assert role in PROJECT_ROLE_ALLOWLIST, f"{path.name}/{block.address}: project-level {role}"
    assert seen >= 3


def test_secret_access_is_granted_per_secret_to_the_reader_itself():
    ident = load_module(MODULES / "cloud-run-identity")
    grant = ident.resource("google_secret_manager_secret_iam_member", "this").body
    assert grant["role"] == "roles/secretmanager.secretAccessor"
    assert grant["member"] == "${google_service_account.this.member}"
    assert grant["for_each"] == "${var.secrets}"
    assert grant["secret_id"] == "${each.value}"
    for name in ("cloud-run-service", "cloud-run-job"):
        mod = load_module(MODULES / name)
        # every secret the workload reads, through its own identity
        assert mod.calls()["identity"].body["secrets"] == "${{for k, v in var.secret_env : k => v.secret}}"
        assert not mod.resources("google_secret_manager_secret_iam_member"), name
    # No other module grants secret access.
    for path in all_module_paths():
        if path.name in ("cloud-run-service", "cloud-run-job", "cloud-run-identity"):
            continue
        assert "secretmanager.secretAccessor" not in load_module(path).text, path.name


@pytest.mark.parametrize("module,rtype", [
    ("cloud-run-service", "google_cloud_run_v2_service"),
    ("cloud-run-job", "google_cloud_run_v2_job"),
])
def test_every_service_and_job_runs_as_its_own_account(module, rtype):
    ident = load_module(MODULES / "cloud-run-identity")
    sa = ident.resource("google_service_account", "this").body
    assert sa["account_id"] == "${var.name}"
    assert ident.outputs()["email"]["value"] == "${google_service_account.this.email}"
    # a revision starts only once its account may read its secrets
    assert ident.outputs()["email"]["depends_on"] == ["${google_secret_manager_secret_iam_member.this}"]
    mod = load_module(MODULES / module)
    call = mod.calls()["identity"].body
    assert call["name"] == "${var.name}"
    assert call["kind"] == ("job" if rtype == "google_cloud_run_v2_job" else "service")
    assert not mod.resources("google_service_account"), module
    body = mod.resource(rtype, "this").body
    assert body["name"] == "${var.name}"
    template = first(body["template"])
    if rtype == "google_cloud_run_v2_job":
        template = first(template["template"])
    assert template["service_account"] == "${module.identity.email}"


def test_account_ids_are_distinct(platform):
    """One account per service and job: module names are distinct, so are account ids."""
    names = []
    for c in platform.calls().values():
        if c.body["source"] == "../cloud-run-service":
            # one instance per row of local.services, named after its key
            assert c.body["for_each"] == "${local.services}" and c.body["name"] == "${var.name}-${each.key}"
            names += [f"${{var.name}}-{k}" for k in platform.locals()["services"]]
        elif c.body["source"] == "../cloud-run-job":
            names.append(c.body["name"])
    assert len(names) == 8 and len(set(names)) == len(names), names
    assert all(n.startswith("${var.name}-") for n in names)


def test_no_default_compute_account():
    """CKV_GCP_46 for Cloud Run: no resource names the default compute account."""
    assert "-compute@developer.gserviceaccount.com" not in tf_text()


def test_runner_holds_nothing_beyond_a_run(platform):
    """INT-06: the runner's account has no project role, no database, publishes nothing,
    invokes nothing, and can at most create objects under runs/ in the artifacts bucket (and
    not even that unless runner_direct_upload: it uploads through URLs runs signs)."""
    runner = platform.calls()["runner"].body
    assert "database" not in runner
    assert set(runner["secret_env"]) == {"INTERNAL_AUTH_SECRET"}
    uses = [line for line in platform.text.splitlines() if "module.runner." in line]
    allowed = ("module.runner.service_account", "module.runner.member", "module.runner.id")
    for line in uses:
        assert any(a in line for a in allowed), line
    member_uses = [line.strip() for line in uses if "module.runner.member" in line]
    assert member_uses == ["member     = module.runner.member"], member_uses
    artifacts = platform.calls()["artifacts_bucket"].body
    cond = expr(artifacts["iam_conditional"])
    assert cond.startswith("var.runner_direct_upload ?") and cond.endswith(": {}")
    assert '"roles/storage.objectCreator"' in cond
    assert 'resource.name.startsWith' in cond and '/objects/runs/' in cond
    assert platform.variables()["runner_direct_upload"]["default"] is False
    # The runner's network tag gets the sandbox firewall.
    assert "runwarden-runner" in runner["vpc"]
    net = load_module(MODULES / "network")
    assert net.variables()["sandboxed_tags"]["default"] == ["runwarden-runner"]
    fw = net.resource("google_compute_firewall", "sandbox_no_private_egress").body
    assert fw["direction"] == "EGRESS" and fw["target_tags"] == "${var.sandboxed_tags}"
    assert {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"} <= set(fw["destination_ranges"])


def test_runs_may_only_run_and_cancel_the_runner_job(platform):
    role = platform.resource("google_project_iam_custom_role", "runner_dispatch").body
    assert set(role["permissions"]) == {
        "run.jobs.run", "run.jobs.runWithOverrides", "run.executions.get", "run.executions.cancel"}
    grants = platform.calls()["runner"].body["iam"]
    assert grants["runs-dispatches"] == {
        "member": '${module.service["runs"].member}',
        "role": "${google_project_iam_custom_role.runner_dispatch.id}",
    }
    # granted on the job resource, nowhere else
    job = load_module(MODULES / "cloud-run-job").resource("google_cloud_run_v2_job_iam_member", "this").body
    assert job["name"] == "${google_cloud_run_v2_job.this.name}"
    assert job["for_each"] == "${var.iam}"
    assert platform.text.count("runner_dispatch.id") == 1


def test_runs_signs_urls_with_token_creator_on_itself_only(platform):
    signers = {n for n, s in platform.locals()["services"].items() if s["self_token_creator"] is not False}
    assert signers == {"runs"} and platform.locals()["services"]["runs"]["self_token_creator"] is True
    call = next(c.body for c in platform.calls().values() if c.body["source"] == "../cloud-run-service")
    assert call["self_token_creator"] == "${each.value.self_token_creator}"
    others = [n for n, c in platform.calls().items() if c.body.get("self_token_creator")
              and c.body["source"] != "../cloud-run-service"]
    assert not others
    grant = load_module(MODULES / "cloud-run-service").resource(
        "google_service_account_iam_member", "self_token_creator").body
    assert grant["service_account_id"] == "${module.identity.id}"
    assert grant["member"] == "${module.identity.member}"
    assert grant["role"] == "roles/iam.serviceAccountTokenCreator"
    outputs = load_module(MODULES / "cloud-run-identity").outputs()
    assert outputs["id"]["value"] == "${google_service_account.this.name}"
    assert outputs["member"]["value"] == "${google_service_account.this.member}"


def test_bucket_grants_are_per_bucket_and_never_public(platform):
    artifacts = platform.calls()["artifacts_bucket"].body["iam"]
    assert artifacts == {
        "runs-signs-uploads": {"role": "roles/storage.objectCreator", "member": '${module.service["runs"].member}'},
        "runs-signs-reads": {"role": "roles/storage.objectViewer", "member": '${module.service["runs"].member}'},
    }
    assert "allUsers" not in load_module(MODULES / "storage-bucket").text.replace('"allUsers", "allAuthenticatedUsers"', "")
    for path in all_module_paths():
        for b in load_module(path).resources("google_storage_bucket_iam_member"):
            assert b.body["member"] not in ("allUsers", "allAuthenticatedUsers")


def test_publishers_are_granted_per_topic(platform):
    pubsub = load_module(MODULES / "pubsub")
    grant = pubsub.resource("google_pubsub_topic_iam_member", "publishers").body
    assert grant["role"] == "roles/pubsub.publisher"
    assert "google_pubsub_topic.this" in grant["topic"]
    assert platform.calls()["pubsub"].body["publishers"] == {
        "auth": '${module.service["auth"].member}', "runs": '${module.service["runs"].member}'}


def test_allusers_invoker_only_on_load_balanced_services(platform):
    """TFX-01: allUsers may invoke only services the load balancer fronts, and those accept
    no direct internet traffic (internal-and-load-balancer ingress)."""
    svc = load_module(MODULES / "cloud-run-service")
    grant = svc.resource("google_cloud_run_v2_service_iam_member", "this").body
    assert grant["for_each"] == \
        '${merge(var.iam, var.public ? {public = {role = "roles/run.invoker", member = "allUsers"}} : {})}'
    assert grant["role"] == "${each.value.role}" and grant["member"] == "${each.value.member}"
    # the callers' grants can name neither allUsers nor the label public
    cond = expr(first(svc.variables()["iam"]["validation"])["condition"])
    assert '!contains(["allUsers", "allAuthenticatedUsers"], g.member)' in cond and 'k != "public"' in cond
    assert svc.text.replace('"allUsers", "allAuthenticatedUsers"', "").count('"allUsers"') == 1
    pre = first(svc.resource("google_cloud_run_v2_service", "this").body["lifecycle"])["precondition"]
    assert any('!var.public || var.ingress == "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER"' in p["condition"] for p in pre)
    backends = platform.locals()["frontdoor_backends"]
    fronted = set(backends.values())  # keys of local.services
    assert platform.calls()["edge"].body["backends"] == \
        "${{for r, s in local.frontdoor_backends : r => module.service[s].name}}"
    calls = [c.body for c in platform.calls().values() if c.body["source"] == "../cloud-run-service"]
    assert len(calls) == 1 and calls[0]["for_each"] == "${local.services}"
    assert calls[0]["public"] == "${each.value.public}", "public must come from local.services"
    for name, svc in platform.locals()["services"].items():
        is_public = svc["public"]
        assert is_public is True or is_public is False, f"{name}: public not literal"
        assert is_public == (name in fronted), f"{name}: public={is_public}, behind the LB={name in fronted}"


def test_invoker_iam_is_off_only_where_a_reason_says_why(platform):
    off = platform.locals()["invoker_iam_disabled"]
    assert set(off) == {"quotas"}
    assert len(off["quotas"]) > 60
    call = next(c.body for c in platform.calls().values() if c.body["source"] == "../cloud-run-service")
    assert call["invoker_iam_disabled"] == "${contains(keys(local.invoker_iam_disabled), each.key)}"
    assert call["invoker_iam_disabled_reason"] == '${lookup(local.invoker_iam_disabled, each.key, "")}'
    others = [n for n, c in platform.calls().items() if c.body.get("invoker_iam_disabled") is True]
    assert not others


def test_audit_config_logs_every_service():
    """TFX-08 / CKV2_GCP_5: allServices, ADMIN_READ + DATA_READ + DATA_WRITE, no exemptions."""
    cfg = load_module(MODULES / "project-baseline").resource("google_project_iam_audit_config", "all_services").body
    assert cfg["service"] == "allServices"
    types = {c["log_type"] for c in cfg["audit_log_config"]}
    assert types == {"ADMIN_READ", "DATA_READ", "DATA_WRITE"}
    assert not any("exempted_members" in c for c in cfg["audit_log_config"])


def test_secrets_reach_functions_only_through_secret_manager(platform):
    """TFX-01: secrets only via value_source.secret_key_ref; no secret-looking plain env var."""
    for name, call in platform.calls().items():
        body = call.body
        env = body.get("env", {})
        env_text = env if isinstance(env, str) else " ".join(env)
        for var in SECRET_ENV:
            assert not re.search(rf"\b{var}\b\s*=", env_text) and var not in (env if isinstance(env, dict) else {}), \
                f"{name}: {var} as a plain variable"
        if isinstance(env, dict):
            for var in env:
                if var in ("AUTH_SIGNING_KEY_ID", "MEDIA_SIGNING_KEY_ID", "VAULT_KEK_ACTIVE"):
                    continue
                assert not SECRETISH.search(var), f"{name}: {var} looks secret but is plain"
        for var, ref in body.get("secret_env", {}).items() if isinstance(body.get("secret_env"), dict) else []:
            assert var in SECRET_ENV, f"{name}: unexpected secret {var}"
            assert ref["secret"].startswith("${local.secret["), ref
    # the modules put secret_env only in secret_key_ref
    for module in ("cloud-run-service", "cloud-run-job"):
        mod = load_module(MODULES / module)
        assert len(re.findall(r"for_each\s+=\s+var\.secret_env", mod.text)) == 1  # the env block
        assert "secret_key_ref" in mod.text
        # the grant: through the identity, on the same secrets
        assert mod.calls()["identity"].body["secrets"] == "${{for k, v in var.secret_env : k => v.secret}}"
    assert "value_source" not in load_module(MODULES / "cloud-run-identity").text


def test_secret_values_never_pass_through_terraform():
    text = tf_text()
    assert "google_secret_manager_secret_version" not in text
    assert "random_password" not in text


def test_every_iam_input_has_one_shape():
    """The same `iam` input everywhere (label => role and member, labels static so plans work
    before the members exist), each granted by one additive resource on the module's own
    resource."""
    shaped = {}
    for path in all_module_paths():
        iam = load_module(path).variables().get("iam")
        if iam is not None:
            shaped[path.name] = iam["type"]
    assert {"artifact-registry", "cloud-run-job", "cloud-run-service", "storage-bucket"} <= set(shaped)
    assert set(shaped.values()) == {"${map(object({role = string, member = string}))}"}, shaped
    grants = {
        "artifact-registry": "google_artifact_registry_repository_iam_member",
        "cloud-run-job": "google_cloud_run_v2_job_iam_member",
        "cloud-run-service": "google_cloud_run_v2_service_iam_member",
    }
    for module, rtype in grants.items():
        resources = load_module(MODULES / module).resources(rtype)
        assert [b.labels[1] for b in resources] == ["this"], module
        body = resources[0].body
        assert "var.iam" in body["for_each"], module
        assert body["role"] == "${each.value.role}" and body["member"] == "${each.value.member}", module


def test_cloud_build_deploys_every_service_and_job_and_acts_as_each_account(platform):
    """The deployer gets run.developer on each service and job (inside their modules) and actAs
    on each runtime account, never a project-level run or IAM role."""
    build = "${google_service_account.build.member}"
    svc = next(c.body for c in platform.calls().values() if c.body["source"] == "../cloud-run-service")
    assert '{build-deploys = {role = "roles/run.developer", member = google_service_account.build.member}}' in svc["iam"]
    for job in ("runner", "migrate"):
        assert platform.calls()[job].body["iam"]["build-deploys"] == {"role": "roles/run.developer", "member": build}
    act_as = platform.resource("google_service_account_iam_member", "build_act_as").body
    assert act_as["for_each"] == ("${merge({for k, s in module.service : k => s.service_account}, "
                                  "{runner = module.runner.service_account, migrate = module.migrate.service_account})}")
    assert act_as["role"] == "roles/iam.serviceAccountUser" and act_as["member"] == build
    assert not platform.resources("google_cloud_run_v2_service_iam_member")
    assert not platform.resources("google_cloud_run_v2_job_iam_member")


def test_only_cloud_build_writes_images(platform):
    """Artifact Registry: Cloud Build's account writes; the module grants nothing but
    Artifact Registry roles on the repository itself."""
    assert platform.calls()["registry"].body["iam"] == {
        "build": {"role": "roles/artifactregistry.writer", "member": "${google_service_account.build.member}"}}
    reg = load_module(MODULES / "artifact-registry")
    cond = expr(first(reg.variables()["iam"]["validation"])["condition"])
    assert 'startswith(g.role, "roles/artifactregistry.")' in cond
    grant = reg.resource("google_artifact_registry_repository_iam_member", "this").body
    assert grant["repository"] == "${google_artifact_registry_repository.this.name}"
