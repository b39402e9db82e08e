"""The public edge: TLS 1.2+, Cloud Armor, and the URL map built from the same routing table
as the local front door (shared/frontdoor/routes.json): same paths, same services, nothing
routed for the never-list, the platform-only headers stripped."""

import json
import os
import re
import shutil
import subprocess
import tempfile
from functools import lru_cache
from pathlib import Path

import pytest

from conftest import MODULES, ROOT, dynamic, dynamics, expr, first, load_module, routes

EDGE = MODULES / "edge"


def edge():
    return load_module(EDGE)


# ---- TLS -------------------------------------------------------------------------------------

def test_tls_policy_is_1_2_or_newer_with_a_strong_profile():
    policy = edge().resource("google_compute_ssl_policy", "this").body
    assert policy["min_tls_version"] == "TLS_1_2"
    assert policy["profile"] == "${var.ssl_profile}"
    cond = expr(first(edge().variables()["ssl_profile"]["validation"])["condition"])
    assert cond == 'contains(["MODERN", "RESTRICTED"], var.ssl_profile)'
    proxy = edge().resource("google_compute_target_https_proxy", "this").body
    assert proxy["ssl_policy"] == "${google_compute_ssl_policy.this.id}"


def test_plain_http_only_redirects():
    redirect = edge().resource("google_compute_url_map", "redirect").body
    assert first(redirect["default_url_redirect"])["https_redirect"] is True
    assert "path_matcher" not in redirect and "default_service" not in redirect


def test_load_balancer_is_the_envoy_based_global_one():
    for rtype in ("google_compute_backend_service", "google_compute_global_forwarding_rule"):
        for b in edge().resources(rtype):
            assert b.body["load_balancing_scheme"] == "EXTERNAL_MANAGED", b.address
    neg = edge().resource("google_compute_region_network_endpoint_group", "this").body
    assert neg["network_endpoint_type"] == "SERVERLESS"


# ---- Cloud Armor -----------------------------------------------------------------------------

def armor():
    return edge().resource("google_compute_security_policy", "this").body


def test_every_backend_is_behind_cloud_armor():
    backend = edge().resource("google_compute_backend_service", "this").body
    assert backend["security_policy"] == "${google_compute_security_policy.this.id}"
    assert first(backend["log_config"])["enable"] is True


def test_cloud_armor_limits_each_ip():
    rules = armor()["rule"]
    limited = [r for r in rules if r["action"] in ("rate_based_ban", "throttle")]
    assert len(limited) == 1
    opts = first(limited[0]["rate_limit_options"])
    assert opts["enforce_on_key"] == "IP"
    assert opts["exceed_action"] == "deny(429)"
    assert first(opts["rate_limit_threshold"])["count"] == "${var.rate_limit_per_minute}"


def test_cloud_armor_runs_the_preconfigured_waf_rules():
    waf = edge().locals()["waf_rules"]
    names = set(waf.values())
    for rule in ("sqli-v33-stable", "xss-v33-stable", "lfi-v33-stable", "rfi-v33-stable",
                 "rce-v33-stable", "protocolattack-v33-stable", "scannerdetection-v33-stable"):
        assert rule in names
    dyn = dynamic(armor(), "rule")
    assert dyn["for_each"] == "${local.waf_rules}"
    content = first(dyn["content"])
    assert content["action"] == "deny(403)"
    assert "evaluatePreconfiguredWaf('${rule.value}'" in first(first(content["match"])["expr"])["expression"]
    assert any("evaluatePreconfiguredExpr('cve-canary')" in str(r["match"]) for r in armor()["rule"])


def test_cloud_armor_refuses_the_never_list_first():
    rules = sorted(armor()["rule"], key=lambda r: r["priority"])
    assert rules[0]["action"] == "deny(404)"
    assert first(first(rules[0]["match"])["expr"])["expression"] == "${local.never_expression}"
    assert "module.routes.never_regexes" in edge().locals()["never_expression"]
    assert rules[-1]["priority"] == 2147483647 and rules[-1]["action"] == "allow"


# ---- the URL map, read statically ---------------------------------------------------------------

def url_map():
    return edge().resource("google_compute_url_map", "https").body


def test_url_map_reads_routes_json_only():
    routes_mod = load_module(MODULES / "frontdoor-routes")
    assert routes_mod.locals()["table"] == "${jsondecode(file(var.routes_file))}"
    assert edge().calls()["routes"].body == {"source": "../frontdoor-routes", "routes_file": "${var.routes_file}"}
    platform = load_module(MODULES / "platform")
    assert platform.calls()["edge"].body["routes_file"] == "${local.routes_file}"
    assert platform.locals()["routes_file"] == "${local.repo_root}/shared/frontdoor/routes.json"
    # the local front door compiles in the very same file
    frontdoor = "".join(p.read_text() for p in (ROOT / "shared/frontdoor/src").glob("*.rs"))
    assert 'include_str!("../routes.json")' in frontdoor
    # no path literal of its own in the edge module
    assert not re.search(r'"/v1/', edge().text)


def test_url_map_rules_come_from_the_routing_table():
    matcher = first(url_map()["path_matcher"])
    rules = dynamic(matcher, "route_rules")
    assert rules["for_each"] == "${module.routes.route_rules}"
    content = first(rules["content"])
    assert content["priority"] == "${route_rules.value.priority}"
    assert content["service"] == "${google_compute_backend_service.this[route_rules.value.service].id}"
    match = dynamic(content, "match_rules")
    assert match["for_each"] == "${route_rules.value.path_templates}"
    assert first(match["content"]) == {"path_template_match": "${match_rules.value}"}
    assert "route_rules" not in matcher and "path_rule" not in matcher  # nothing hand-written


def test_url_map_strips_platform_headers():
    header = first(url_map()["header_action"])
    assert header["request_headers_to_remove"] == "${module.routes.strip_request_headers}"
    assert set(routes()["strip_request_headers"]) >= {"x-internal-auth", "x-user-id", "x-org-id"}


def test_unmatched_paths_answer_404_at_the_edge():
    for body in (url_map(), first(url_map()["path_matcher"])):
        action = first(body["default_route_action"])
        abort = first(first(action["fault_injection_policy"])["abort"])
        assert abort == {"http_status": 404, "percentage": 100}
        assert "default_service" not in body


def test_backends_cover_exactly_the_routed_services(platform):
    locals_ = edge().locals()
    assert locals_["backends"] == "${{for s in module.routes.services : s => var.backends[s]}}"
    backends = platform.locals()["frontdoor_backends"]
    assert set(backends) == set(routes()["services"])
    services = platform.locals()["services"]
    for routed, service in backends.items():
        assert services[service]["function"] == routed, (routed, service)


# ---- the URL map, evaluated (terraform console on the provider-free module) --------------------

@lru_cache(maxsize=None)
def evaluated() -> dict:
    terraform = shutil.which("terraform")
    if terraform is None:
        pytest.skip("terraform is not installed: the URL map's rules were checked statically only")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "frontdoor-routes"
        shutil.copytree(MODULES / "frontdoor-routes", work)
        env = dict(os.environ, CHECKPOINT_DISABLE="1", TF_IN_AUTOMATION="1", TF_CLI_CONFIG_FILE="/dev/null")
        query = ('jsonencode({rules = local.route_rules, never = local.table.never, '
                 'never_regexes = local.never_regexes, strip = local.table.strip_request_headers, '
                 'bad = local.bad_patterns, unknown = local.unknown_services})\n')
        out = subprocess.run(
            [terraform, "console", f"-var=routes_file={ROOT / 'shared/frontdoor/routes.json'}"],
            cwd=work, input=query, capture_output=True, text=True, env=env, timeout=60, check=True)
    return json.loads(json.loads(out.stdout.strip().splitlines()[-1]))


def frontdoor_match(path: str) -> str | None:
    """routes.json's semantics (its "format" key): never-list first, then the first route."""
    def matches(pattern: str) -> bool:
        pat = pattern.split("/")[1:]
        seg = path.split("/")[1:]
        if pat and pat[-1] == "**":
            head = pat[:-1]
            return len(seg) >= len(head) and all(p == "*" and s or p == s for p, s in zip(head, seg))
        return len(seg) == len(pat) and all(p == "*" and s or p == s for p, s in zip(pat, seg))
    table = routes()
    if any(matches(p) for p in table["never"]):
        return None
    for r in table["routes"]:
        if matches(r["path"]):
            return r["service"]
    return None


def template_match(template: str, path: str) -> bool:
    """Google's pathTemplateMatch: '*' one segment, a trailing '**' zero or more segments."""
    t = template.split("/")[1:] if template != "/" else []
    s = path.split("/")[1:] if path != "/" else []
    if t and t[-1] == "**":
        head = t[:-1]
        return len(s) >= len(head) and all(a == "*" and b or a == b for a, b in zip(head, s))
    return len(s) == len(t) and all(a == "*" and b or a == b for a, b in zip(t, s))


def url_map_match(path: str) -> str | None:
    for rule in sorted(evaluated()["rules"], key=lambda r: r["priority"]):
        if any(template_match(t, path) for t in rule["path_templates"]):
            return rule["service"]
    return None


def samples(pattern: str) -> list[str]:
    segs = ["org1" if s == "*" else s for s in pattern.split("/")[1:]]
    if segs and segs[-1] == "**":
        base = "/" + "/".join(segs[:-1])
        return [base, base + "/a", base + "/a/b/c"]
    return ["/" + "/".join(segs)]


def test_evaluated_rules_are_routes_json_in_order():
    ev = evaluated()
    assert ev["bad"] == [] and ev["unknown"] == []
    table = routes()
    assert [r["pattern"] for r in ev["rules"]] == [r["path"] for r in table["routes"]]
    assert [r["service"] for r in ev["rules"]] == [r["service"] for r in table["routes"]]
    assert [r["priority"] for r in ev["rules"]] == list(range(1, len(table["routes"]) + 1))
    assert ev["strip"] == table["strip_request_headers"]
    for rule in ev["rules"]:
        assert 1 <= len(rule["path_templates"]) <= 2
        for t in rule["path_templates"]:
            assert t.count("*") <= 5  # Google: at most 5 operators per template


def test_every_route_goes_where_the_front_door_sends_it():
    checked = 0
    for route in routes()["routes"]:
        for path in samples(route["path"]):
            assert url_map_match(path) == frontdoor_match(path), path
            checked += 1
    assert checked >= len(routes()["routes"])


def test_never_list_is_not_routed_and_is_refused_by_cloud_armor():
    regexes = [re.compile(r) for r in evaluated()["never_regexes"]]
    for pattern in routes()["never"]:
        for path in samples(pattern) + [p.replace("org1", "admissions") for p in samples(pattern)]:
            assert url_map_match(path) is None, f"{path} is routed"
            assert frontdoor_match(path) is None
            assert any(r.fullmatch(path) for r in regexes), f"Cloud Armor lets {path} through"
    # and the never regexes refuse nothing public
    for route in routes()["routes"]:
        for path in samples(route["path"]):
            assert not any(r.fullmatch(path) for r in regexes), path


@pytest.mark.parametrize("path", ["/", "/healthz", "/openapi.json", "/v2/me", "/v1/orgs/o/unknown",
                                  "/v1/auth2", "/v1/me/x", "/.well-known/other"])
def test_unrouted_paths_reach_no_function(path):
    assert frontdoor_match(path) is None
    assert url_map_match(path) is None
