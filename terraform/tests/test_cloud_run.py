"""TFX-01 (services), TFX-02 (jobs), INT-02 (internal ingress) and the functions' wiring."""

import re

from conftest import ENVS, MODULES, ROOT, expr, first, functions, load_module, migration_roles

SERVICE_FUNCTIONS = {"auth", "runs", "quotas", "audit"}


def service_call(platform):
    """The one call of cloud-run-service: one instance per row of local.services."""
    calls = [c.body for c in platform.calls().values() if c.body["source"] == "../cloud-run-service"]
    assert len(calls) == 1, "services are made from local.services by one for_each call"
    assert calls[0]["for_each"] == "${local.services}"
    return calls[0]


def service_env(platform, name):
    """Every plain variable service `name` gets, as text: the call's common env and its row of
    local.service_env."""
    return re.sub(r"\s+", " ", str(service_call(platform)["env"]) + " " + str(platform.locals()["service_env"][name]))


def service_secret_env(platform, name):
    return platform.locals()["service_secret_env"][name]


def job_calls(platform):
    return {n: c.body for n, c in platform.calls().items() if c.body["source"] == "../cloud-run-job"}


def test_quotas_and_audit_are_internal_only(platform):
    """INT-02 / the issue: quotas and audit accept internal traffic only."""
    services = platform.locals()["services"]
    assert services["quotas"]["ingress"] == "INGRESS_TRAFFIC_INTERNAL_ONLY"
    assert services["audit"]["ingress"] == "INGRESS_TRAFFIC_INTERNAL_ONLY"
    assert services["quotas"]["public"] is False and services["audit"]["public"] is False
    call = service_call(platform)
    assert call["ingress"] == "${each.value.ingress}"
    assert call["public"] == "${each.value.public}"


def test_nothing_accepts_direct_internet_traffic(platform):
    """Public traffic enters only through the load balancer: no INGRESS_TRAFFIC_ALL anywhere,
    and the module refuses it."""
    for path in list(MODULES.iterdir()) + list(ENVS.iterdir()):
        if path.is_dir():
            assert "INGRESS_TRAFFIC_ALL" not in load_module(path).text.replace(
                "INGRESS_TRAFFIC_ALL is not offered", ""), path.name
    for svc in platform.locals()["services"].values():
        assert svc["ingress"] in ("INGRESS_TRAFFIC_INTERNAL_ONLY", "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER")
    cond = expr(first(load_module(MODULES / "cloud-run-service").variables()["ingress"]["validation"])["condition"])
    assert "INGRESS_TRAFFIC_ALL" not in cond


def test_every_service_function_is_deployed(platform):
    """Every function directory that is a service has a Cloud Run service; the runner is a
    job. A new function directory fails this until it is wired here."""
    deployed = {s["function"] for s in platform.locals()["services"].values()}
    jobs = set(job_calls(platform))
    for f in functions():
        assert f in deployed or f in jobs, f"functions/{f} is neither a service nor a job in modules/platform"
    assert SERVICE_FUNCTIONS <= deployed
    assert {"runner", "migrate"} <= jobs


def test_service_names_match_the_services_map(platform):
    """Each service is named <prefix>-<its key in local.services>, and every table keyed by
    service names exactly those services."""
    call = service_call(platform)
    assert call["name"] == "${var.name}-${each.key}"
    services = set(platform.locals()["services"])
    assert set(platform.locals()["service_env"]) == services
    assert set(platform.locals()["service_secret_env"]) == services
    assert set(platform.locals()["invoker_iam_disabled"]) <= services


def test_services_scale_within_bounds():
    """TFX-01: max_instance_count always set (and bounded, REL-20)."""
    svc = load_module(MODULES / "cloud-run-service")
    template = first(svc.resource("google_cloud_run_v2_service", "this").body["template"])
    scaling = first(template["scaling"])
    assert scaling["max_instance_count"] == "${var.revision.max_instances}"
    cond = expr(first(svc.variables()["revision"]["validation"])["condition"])
    assert "var.revision.max_instances <= 100" in cond
    assert "max_instances = optional(number, 10)" in svc.variables()["revision"]["type"]


def test_connection_budget_fits_the_database(platform, prod, staging):
    """REL-20: services x max instances x pool (10) + migrations < max_connections."""
    services = len(platform.locals()["services"])
    assert platform.calls()["service"].body["revision"]["max_instances"] == "${var.max_instances}"
    for env in (prod, staging):
        max_instances = env.calls()["platform"].body["max_instances"]
        max_connections = platform.variables()["db_max_connections"]["default"]
        assert services * max_instances * 10 + 10 <= max_connections, (env.path.name, max_instances)


def test_prod_protects_services_from_deletion(prod):
    """TFX-01: deletion_protection on in prod."""
    assert prod.calls()["platform"].body["deletion_protection"] is True
    svc = load_module(MODULES / "cloud-run-service").resource("google_cloud_run_v2_service", "this").body
    assert svc["deletion_protection"] == "${var.deletion_protection}"
    job = load_module(MODULES / "cloud-run-job").resource("google_cloud_run_v2_job", "this").body
    assert job["deletion_protection"] == "${var.deletion_protection}"


def test_terraform_never_rolls_back_deployed_images():
    svc = load_module(MODULES / "cloud-run-service").resource("google_cloud_run_v2_service", "this").body
    assert "${template[0].containers[0].image}" in first(svc["lifecycle"])["ignore_changes"]
    assert first(first(svc["template"])["containers"])["name"] == "app"
    job = load_module(MODULES / "cloud-run-job").resource("google_cloud_run_v2_job", "this").body
    assert "${template[0].template[0].containers[0].image}" in first(job["lifecycle"])["ignore_changes"]


def test_runner_job(platform):
    """TFX-02: timeout bounded by the largest plan cap plus grace, no retries (single-use
    ticket), own account, granted per resource only."""
    runner = job_calls(platform)["runner"]
    assert runner["timeout_seconds"] == "${var.runner_timeout_seconds}"
    assert runner["max_retries"] == 0
    cond = expr(first(platform.variables()["runner_timeout_seconds"]["validation"])["condition"])
    assert "<= 86400" in cond
    assert runner["env"] == {"RUNS_URL": "${local.url.runs}"}
    # runs names the same job it may run
    runs_env = platform.locals()["service_env"]["runs"]
    assert runs_env["RUNNER_JOB"] == "projects/${var.project_id}/locations/${var.region}/jobs/${var.name}-runner"
    assert runner["name"] == "${var.name}-runner"


def test_runner_reaches_runs_over_https_inside_the_platform(platform):
    """The runner needs https in production and reaches runs' /internal/runner/ routes through
    the VPC (runs' run.app URL), never through the load balancer, which does not route them."""
    url = platform.locals()["url"]
    assert url.startswith("${{for k in keys(local.services) : k => \"https://${var.name}-${k}-${local.project_number}.${var.region}.run.app\"}}")
    job = load_module(MODULES / "cloud-run-job").resource("google_cloud_run_v2_job", "this").body
    vpc = first(first(first(job["template"])["template"])["vpc_access"])
    assert vpc["egress"] == "ALL_TRAFFIC"


def test_every_function_database_role_is_a_migration_role(platform):
    """One IAM database user per service, mapped to a role the migrations create, and every
    runtime role of the migrations used by its function's services."""
    roles = set(migration_roles())
    db = service_call(platform).get("database")
    assert db == '${merge(local.database, {role = "runwarden_${each.value.function}"})}', db
    services = platform.locals()["services"]
    used = {name: f"runwarden_{svc['function']}" for name, svc in services.items()}
    assert set(used.values()) == roles, (used, roles)
    # the IAM database user is made by cloud-run-identity, with the role the service passes
    user = load_module(MODULES / "cloud-run-identity").resource("google_sql_user", "this").body
    assert user["type"] == "CLOUD_IAM_SERVICE_ACCOUNT"
    assert user["database_roles"] == "${var.database.database_roles}"
    assert user["name"] == "${local.db_user}"
    call = load_module(MODULES / "cloud-run-service").calls()["identity"].body
    assert "database_roles = var.database.assign_role ? [var.database.role] : []" in call["database"]


def test_database_url_uses_the_proxy_socket_without_password():
    ident = load_module(MODULES / "cloud-run-identity")
    db_env = ident.locals()["db_env"]
    assert "postgres://${urlencode(local.db_user)}@/${var.database.database}?host=/cloudsql/${var.database.connection_name}" in db_env
    assert "local.db_env" in ident.locals()["env"]
    proxy = ident.locals()["proxy"]
    assert '"--auto-iam-authn"' in proxy and '"--private-ip"' in proxy and '"--unix-socket=/cloudsql"' in proxy
    assert 'socket_dir = "/cloudsql"' in proxy
    # services and jobs take the environment and the proxy from it, and build neither themselves
    for module in ("cloud-run-service", "cloud-run-job"):
        mod = load_module(MODULES / module)
        assert mod.calls()["identity"].body["source"] == "../cloud-run-identity"
        assert "postgres://" not in mod.text and "--auto-iam-authn" not in mod.text, module
        assert re.search(r"for_each\s+=\s+module\.identity\.env\b", mod.text), module
        assert mod.text.count("for_each = module.identity.proxy == null ? [] : [module.identity.proxy]") == 3, module


def test_background_loops_keep_an_instance(platform):
    """The outbox relays (auth, runs) and reapers (runs, quotas) run inside the process: those
    services keep CPU and at least one instance, or events would wait for the next request."""
    mins = platform.variables()["min_instances"]["default"]
    assert mins["auth"] >= 1 and mins["runs"] >= 1 and mins["quotas"] >= 1
    assert load_module(MODULES / "cloud-run-service").variables()["cpu_always_allocated"]["default"] is True


def test_push_consumers_know_their_audience_and_pusher(platform):
    env = re.sub(r"\s+", " ", service_call(platform)["env"])
    assert "local.push_env" in env
    # every service (the push consumers runs, quotas and audit among them) its own URL
    assert "PUSH_AUDIENCE = local.url[each.key]" in env
    assert {"runs", "quotas", "audit"} <= set(platform.locals()["services"])
    assert platform.locals()["push_env"] == {"PUSH_SERVICE_ACCOUNT": "${module.pubsub.push_service_account}"}


def test_functions_config_vars_are_set(platform):
    """Every variable a function requires in production is set on its service (read from the
    functions' config.rs: required_var / required_secret)."""
    assert service_call(platform)["secret_env"] == "${local.service_secret_env[each.key]}"
    for fn in SERVICE_FUNCTIONS:
        src = (ROOT / "functions" / fn / "src" / "config.rs").read_text()
        required = set(re.findall(r'required_(?:var|secret)\("([A-Z_]+)"\)', src))
        required.discard("DATABASE_URL")  # set by the module from `database`
        names = [n for n, s in platform.locals()["services"].items() if s["function"] == fn]
        assert names, fn
        for name in names:
            text = service_env(platform, name) + str(service_secret_env(platform, name))
            for var in required:
                assert var in text, f"{name} ({fn}) does not set {var}"


def test_runner_timeout_is_the_largest_plan_cap_plus_grace(platform):
    """TFX-02: the job's own timeout is no longer than the largest wall-clock cap of any plan
    plus runs' grace (each execution gets its run's cap plus grace as an override)."""
    sql = (ROOT / "shared/store/migrations/20261125000008_quotas.sql").read_text()
    rows = re.findall(r"\('(\w+)',\s*(\d+),\s*(\d+),\s*(\d+),\s*(\d+),", sql)
    assert rows, "plans not found in the quotas migration"
    largest_cap = max(int(r[4]) for r in rows)
    config = (ROOT / "functions/runs/src/config.rs").read_text()
    grace = int(re.search(r'var_parsed\("RUNNER_GRACE_SECS", (\d+)\)', config).group(1))
    assert platform.variables()["runner_timeout_seconds"]["default"] == largest_cap + grace
