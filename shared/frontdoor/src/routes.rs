//! The routing table (`routes.json`) and the path matcher.
//!
//! The same JSON file is read by Terraform's URL map in production, so the format is kept
//! small and declarative; see the `format` key in the file for the rules.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde::Deserialize;

/// The routing table, verbatim. Terraform reads the same file.
pub const ROUTES_JSON: &str = include_str!("../routes.json");

/// Where one upstream service lives locally.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    /// Environment variable holding the service's base URL.
    pub env: String,
    /// Base URL used when that variable is unset.
    pub local: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTable {
    #[allow(dead_code)]
    format: String,
    services: BTreeMap<String, ServiceSpec>,
    never: Vec<String>,
    #[serde(default)]
    strip_request_headers: Vec<String>,
    routes: Vec<RawRoute>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    path: String,
    service: String,
}

/// One segment of a pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Literal(String),
    /// `*`: exactly one non-empty segment.
    One,
}

/// A parsed path pattern such as `/v1/orgs/*/members/**`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    raw: String,
    segs: Vec<Seg>,
    /// Trailing `/**`: the path itself and anything below it.
    rest: bool,
}

impl Pattern {
    /// Parses a pattern; errors name the pattern and what is wrong with it.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let Some(body) = raw.strip_prefix('/') else {
            return Err(format!("pattern {raw:?} must start with '/'"));
        };
        let mut parts: Vec<&str> = body.split('/').collect();
        let rest = parts.last() == Some(&"**");
        if rest {
            parts.pop();
        }
        let mut segs = Vec::with_capacity(parts.len());
        for part in parts {
            match part {
                "" => return Err(format!("pattern {raw:?} has an empty segment")),
                "*" => segs.push(Seg::One),
                "**" => return Err(format!("pattern {raw:?}: '**' is allowed only at the end")),
                "." | ".." => return Err(format!("pattern {raw:?} has a dot segment")),
                lit if lit.contains('*') => {
                    return Err(format!("pattern {raw:?}: '*' must be a whole segment"));
                }
                lit => segs.push(Seg::Literal(lit.to_owned())),
            }
        }
        if segs.is_empty() && !rest {
            return Err(format!("pattern {raw:?} matches only '/'"));
        }
        Ok(Self {
            raw: raw.to_owned(),
            segs,
            rest,
        })
    }

    /// The pattern as written in `routes.json` (safe to log: it carries no ids or tokens).
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    fn matches(&self, path: &[&str]) -> bool {
        if path.len() < self.segs.len() || (!self.rest && path.len() != self.segs.len()) {
            return false;
        }
        self.segs.iter().zip(path).all(|(seg, got)| match seg {
            Seg::Literal(lit) => lit == got,
            Seg::One => !got.is_empty(),
        })
    }
}

/// A route: a pattern and the service it goes to.
#[derive(Debug, Clone)]
pub struct Route {
    pattern: Pattern,
    service: String,
}

impl Route {
    pub fn pattern(&self) -> &Pattern {
        &self.pattern
    }

    pub fn service(&self) -> &str {
        &self.service
    }
}

/// Why a path is not routed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// Dot segments (also percent-encoded), empty segments (`//`), encoded slashes or
    /// backslashes: refused with 400 before any matching, so no upstream ever has to
    /// normalise a path the front door routed differently.
    Malformed(&'static str),
    /// Matched a `never` pattern (`/internal/**`, `/push/**`): 404, like an unknown path.
    Refused,
    /// No route: 404.
    Unmatched,
}

/// The parsed routing table.
#[derive(Debug, Clone)]
pub struct RouteTable {
    services: BTreeMap<String, ServiceSpec>,
    never: Vec<Pattern>,
    strip_request_headers: Vec<http::HeaderName>,
    routes: Vec<Route>,
}

impl RouteTable {
    /// Parses and validates a table in the `routes.json` format.
    pub fn parse(json: &str) -> Result<Self, String> {
        let raw: RawTable =
            serde_json::from_str(json).map_err(|e| format!("routes.json is invalid: {e}"))?;
        if raw.services.is_empty() {
            return Err("routes.json names no services".into());
        }
        let never = raw
            .never
            .iter()
            .map(|p| Pattern::parse(p))
            .collect::<Result<Vec<_>, _>>()?;
        let strip_request_headers = raw
            .strip_request_headers
            .iter()
            .map(|name| {
                http::HeaderName::from_bytes(name.as_bytes())
                    .ok()
                    .filter(|h| h.as_str() == name)
                    .ok_or_else(|| {
                        format!("strip_request_headers: {name:?} is not a lowercase header name")
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut routes = Vec::with_capacity(raw.routes.len());
        for r in raw.routes {
            if !raw.services.contains_key(&r.service) {
                return Err(format!(
                    "route {:?} names unknown service {:?}",
                    r.path, r.service
                ));
            }
            routes.push(Route {
                pattern: Pattern::parse(&r.path)?,
                service: r.service,
            });
        }
        Ok(Self {
            services: raw.services,
            never,
            strip_request_headers,
            routes,
        })
    }

    /// The table compiled into this crate from `routes.json`.
    pub fn builtin() -> &'static RouteTable {
        static TABLE: OnceLock<RouteTable> = OnceLock::new();
        TABLE.get_or_init(|| {
            // Validated by a unit test, so this cannot fail in a tested build.
            RouteTable::parse(ROUTES_JSON).expect("shared/frontdoor/routes.json is valid")
        })
    }

    pub fn services(&self) -> &BTreeMap<String, ServiceSpec> {
        &self.services
    }

    /// Headers only the platform sets (INT-03): removed from every public request.
    pub fn strip_request_headers(&self) -> &[http::HeaderName] {
        &self.strip_request_headers
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// Decides where a request path (the raw, still percent-encoded path of the URI,
    /// without the query) goes.
    pub fn route(&self, path: &str) -> Result<&Route, Rejection> {
        let segs = split_path(path)?;
        if self.never.iter().any(|p| p.matches(&segs)) {
            return Err(Rejection::Refused);
        }
        self.routes
            .iter()
            .find(|r| r.pattern.matches(&segs))
            .ok_or(Rejection::Unmatched)
    }
}

/// Splits a raw path into segments, refusing anything an upstream might normalise into a
/// different path than the one matched here.
fn split_path(path: &str) -> Result<Vec<&str>, Rejection> {
    let Some(body) = path.strip_prefix('/') else {
        return Err(Rejection::Malformed("the path must start with '/'"));
    };
    if path.bytes().any(|b| b == b'\\' || b.is_ascii_control()) {
        return Err(Rejection::Malformed(
            "the path contains a backslash or a control character",
        ));
    }
    let segs: Vec<&str> = body.split('/').collect();
    let last = segs.len() - 1;
    for (i, seg) in segs.iter().enumerate() {
        if seg.is_empty() {
            if i == last {
                // "/" or a trailing slash: well-formed, but no route ends in a slash.
                return Err(Rejection::Unmatched);
            }
            return Err(Rejection::Malformed(
                "the path contains an empty segment ('//')",
            ));
        }
        if seg.contains('%') {
            let lower = seg.to_ascii_lowercase();
            if lower.contains("%2f") || lower.contains("%5c") {
                return Err(Rejection::Malformed("the path contains an encoded slash"));
            }
            if lower.contains("%00") {
                return Err(Rejection::Malformed("the path contains an encoded NUL"));
            }
        }
        let decoded_dots = seg.to_ascii_lowercase().replace("%2e", ".");
        if decoded_dots == "." || decoded_dots == ".." {
            return Err(Rejection::Malformed(
                "the path contains a '.' or '..' segment",
            ));
        }
    }
    Ok(segs)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every path in `paths` gets `expected` from the built-in table.
    fn expect(paths: &[&str], expected: Result<&'static str, Rejection>) {
        for p in paths {
            assert_eq!(service(p), expected, "{p}");
        }
    }

    fn service(path: &str) -> Result<&'static str, Rejection> {
        RouteTable::builtin().route(path).map(|r| r.service())
    }

    #[test]
    fn builtin_table_is_valid_and_names_the_four_services() {
        let t = RouteTable::parse(ROUTES_JSON).unwrap();
        let names: Vec<&str> = t.services().keys().map(String::as_str).collect();
        assert_eq!(names, ["audit", "auth", "quotas", "runs"]);
        assert_eq!(t.services()["auth"].env, "AUTH_URL");
        assert_eq!(t.services()["runs"].local, "http://127.0.0.1:8082");
        assert_eq!(t.services()["quotas"].env, "QUOTAS_URL");
        assert_eq!(t.services()["audit"].local, "http://127.0.0.1:8084");
    }

    #[test]
    fn auth_routes() {
        expect(
            &[
                "/v1/auth",
                "/v1/auth/signup",
                "/v1/auth/login",
                "/v1/auth/refresh",
                "/v1/auth/logout",
                "/v1/auth/google/start",
                "/v1/auth/google/callback",
                "/v1/me",
                "/v1/me/sessions",
                "/v1/me/sessions/0190a3c4-0000-7000-8000-000000000000",
                "/.well-known/jwks.json",
                "/v1/orgs",
                "/v1/orgs/org_1",
                "/v1/orgs/org_1/members",
                "/v1/orgs/org_1/members/user_1",
                "/v1/orgs/org_1/members/user_1/sessions",
                "/v1/orgs/org_1/invitations",
                "/v1/orgs/org_1/invitations/inv_1",
                "/v1/invitations/tok/accept",
                "/v1/invitations",
            ],
            Ok("auth"),
        );
    }

    #[test]
    fn runs_routes() {
        expect(
            &[
                "/v1/orgs/o/projects",
                "/v1/orgs/o/projects/p",
                "/v1/orgs/o/projects/p/secrets",
                "/v1/orgs/o/projects/p/secrets/API_KEY",
                "/v1/orgs/o/projects/p/runs",
                "/v1/orgs/o/runs",
                "/v1/orgs/o/runs/r",
                "/v1/orgs/o/runs/r/cancel",
                "/v1/orgs/o/runs/r/media-token",
                "/v1/media/runs/r/events",
                "/v1/media/runs/r/artifacts/video.mp4",
            ],
            Ok("runs"),
        );
    }

    #[test]
    fn quotas_and_audit_routes() {
        assert_eq!(service("/v1/orgs/o/usage"), Ok("quotas"));
        expect(
            &[
                "/v1/orgs/o/audit-events",
                "/v1/orgs/o/audit-events/export",
                "/v1/orgs/o/audit-events/verify",
            ],
            Ok("audit"),
        );
    }

    #[test]
    fn exact_routes_do_not_match_below_themselves() {
        expect(
            &[
                "/v1/me/x",
                "/v1/me/sessions/s/x",
                "/.well-known/jwks.json/x",
                "/v1/orgs/o/usage/x",
                "/v1/orgs/o/unknown",
                "/v1/orgs/o/unknown/x",
            ],
            Err(Rejection::Unmatched),
        );
    }

    #[test]
    fn internal_and_push_are_never_routed() {
        expect(
            &[
                "/internal",
                "/internal/x",
                "/internal/admission/reserve",
                "/push",
                "/push/audit-events",
                "/push/run-finished/x",
            ],
            Err(Rejection::Refused),
        );
    }

    #[test]
    fn no_route_can_reach_internal_or_push_even_without_the_never_list() {
        let t = RouteTable::builtin();
        for r in t.routes() {
            match r.pattern().segs.first() {
                Some(Seg::Literal(first)) => {
                    assert!(first != "internal" && first != "push", "{r:?}");
                }
                other => panic!(
                    "route {:?} must start with a literal, not {other:?}",
                    r.pattern().as_str()
                ),
            }
        }
        let never: Vec<&str> = t.never.iter().map(Pattern::as_str).collect();
        assert_eq!(never, ["/internal/**", "/push/**"]);
        let stripped: Vec<&str> = t
            .strip_request_headers()
            .iter()
            .map(|h| h.as_str())
            .collect();
        assert_eq!(stripped, ["x-internal-auth", "x-user-id", "x-org-id"]);
    }

    #[test]
    fn unmatched_paths_are_not_routed() {
        expect(
            &[
                "/",
                "/healthz",
                "/openapi.json",
                "/v1",
                "/v2/me",
                "/V1/ME",
                "/v1/me/",
                "/v1/orgs/",
                "/v1/mediax",
                "/v1/authx/login",
                "/.well-known/openid-configuration",
            ],
            Err(Rejection::Unmatched),
        );
    }

    #[test]
    fn dot_segments_and_empty_segments_are_malformed() {
        for p in [
            "/v1/orgs/x/members/../../internal",
            "/v1/orgs/x/members/../../../internal/x",
            "/v1/auth/../../internal/x",
            "/v1/orgs/x/runs/./r",
            "/v1/orgs/..",
            "/v1/orgs/%2e%2e",
            "/v1/orgs/x/members/%2E%2E/%2e%2E/internal",
            "/v1/orgs/x/members/.%2e/internal",
            "/v1/orgs/x/members/%2e",
            "/v1//me",
            "//v1/me",
            "//internal/x",
            "/v1/orgs//members",
            "/v1/orgs/x%2F..%2F..%2Finternal",
            "/v1/orgs/x%2fmembers",
            "/v1/orgs/x%5cmembers",
            "/v1/orgs/x\\..\\internal",
            "/v1/orgs/x%00",
            "v1/me",
            "",
        ] {
            assert!(
                matches!(service(p), Err(Rejection::Malformed(_))),
                "{p} -> {:?}",
                service(p)
            );
        }
    }

    #[test]
    fn percent_encoded_segments_that_are_not_dots_still_route() {
        assert_eq!(service("/v1/orgs/o%20x/members"), Ok("auth"));
        assert_eq!(service("/v1/invitations/a%2Eb/accept"), Ok("auth"));
    }

    #[test]
    fn first_match_wins_and_never_beats_routes() {
        let t = RouteTable::parse(
            r#"{"format":"","services":{"a":{"env":"A","local":"http://a"},"b":{"env":"B","local":"http://b"}},
                "never":["/x/secret/**"],
                "routes":[{"path":"/x/**","service":"a"},{"path":"/x/y","service":"b"}]}"#,
        )
        .unwrap();
        assert_eq!(t.route("/x/y").map(|r| r.service()), Ok("a"));
        assert_eq!(t.route("/x/secret/z").unwrap_err(), Rejection::Refused);
        assert_eq!(t.route("/x/secret").unwrap_err(), Rejection::Refused);
    }

    #[test]
    fn invalid_tables_are_refused() {
        let cases = [
            (
                r#"{"format":"","services":{},"never":[],"routes":[]}"#,
                "no services",
            ),
            (
                r#"{"format":"","services":{"a":{"env":"A","local":"http://a"}},"never":[],"routes":[{"path":"/x","service":"b"}]}"#,
                "unknown service",
            ),
            (
                r#"{"format":"","services":{"a":{"env":"A","local":"http://a"}},"never":[],"routes":[{"path":"/x/**/y","service":"a"}]}"#,
                "only at the end",
            ),
            (
                r#"{"format":"","services":{"a":{"env":"A","local":"http://a"}},"never":[],"routes":[{"path":"/x/a*","service":"a"}]}"#,
                "whole segment",
            ),
            (
                r#"{"format":"","services":{"a":{"env":"A","local":"http://a"}},"never":[],"routes":[{"path":"x","service":"a"}]}"#,
                "start with",
            ),
            (
                r#"{"format":"","services":{"a":{"env":"A","local":"http://a"}},"never":[],"routes":[{"path":"/x//y","service":"a"}]}"#,
                "empty segment",
            ),
            (
                r#"{"format":"","services":{"a":{"env":"A","local":"http://a"}},"never":[],"routes":[{"path":"/x","service":"a","extra":1}]}"#,
                "unknown field",
            ),
        ];
        for (json, want) in cases {
            let err = RouteTable::parse(json).unwrap_err();
            assert!(err.contains(want), "{want}: {err}");
        }
    }

    #[test]
    fn double_star_pattern_matches_itself_and_below_but_not_siblings() {
        let p = Pattern::parse("/v1/orgs/*/members/**").unwrap();
        assert!(p.matches(&["v1", "orgs", "o", "members"]));
        assert!(p.matches(&["v1", "orgs", "o", "members", "u", "x"]));
        assert!(!p.matches(&["v1", "orgs", "o"]));
        assert!(!p.matches(&["v1", "orgs", "o", "membersx"]));
        assert!(!p.matches(&["v1", "orgs", "", "members"]));
        assert_eq!(p.as_str(), "/v1/orgs/*/members/**");
    }
}
