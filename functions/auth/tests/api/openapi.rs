//! The OpenAPI document served at `/openapi.json` against `ROUTES` and the live router:
//! the document lists exactly the routes in `ROUTES`, with the right security, every
//! `$ref` resolves, and every route in `ROUTES` is really mounted.

use std::collections::BTreeSet;

use reqwest::{Method, StatusCode};
use runwarden_auth::config::GoogleConfig;
use runwarden_auth::routes::{Access, ROUTES};
use runwarden_platform::request::TrustedProxyHops;
use serde_json::Value;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::helpers::{TestApp, spawn_app, spawn_app_with};

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "patch", "head", "options", "trace",
];

async fn document(app: &TestApp) -> Value {
    let (status, headers, body) = app.call_raw(Method::GET, "/openapi.json", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "application/json");
    serde_json::from_str(&body).expect("/openapi.json is JSON")
}

/// Every `{"$ref": "#/..."}` in `value`.
fn refs<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(target)) = map.get("$ref") {
                out.push(target);
            }
            map.values().for_each(|v| refs(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn openapi_lists_exactly_the_routes_with_their_security(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = spawn_app(options).await;
    let doc = document(&app).await;
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1."),
        "{}",
        doc["openapi"]
    );
    assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());

    let paths = doc["paths"].as_object().expect("paths");
    let documented: BTreeSet<(String, String)> = paths
        .iter()
        .flat_map(|(path, item)| {
            METHODS
                .iter()
                .filter(|m| item.get(**m).is_some())
                .map(move |m| (m.to_uppercase(), path.clone()))
        })
        .collect();
    let served: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|r| (r.method.to_owned(), r.path.to_owned()))
        .collect();
    assert_eq!(served.len(), ROUTES.len(), "ROUTES has no duplicates");
    assert_eq!(
        documented,
        served,
        "only documented: {:?}; only served: {:?}",
        documented.difference(&served).collect::<Vec<_>>(),
        served.difference(&documented).collect::<Vec<_>>()
    );

    // Public routes need no credentials; every other route needs the bearer scheme.
    assert_eq!(
        doc["components"]["securitySchemes"]["bearerAuth"]["scheme"],
        "bearer"
    );
    for r in ROUTES {
        let (method, path, access) = (r.method, r.path, &r.access);
        let operation = &paths[path][method.to_lowercase()];
        let security = operation.get("security").unwrap_or(&doc["security"]);
        let expected = match access {
            Access::Public => serde_json::json!([]),
            Access::User | Access::Org(_) => serde_json::json!([{"bearerAuth": []}]),
            other => panic!("{method} {path}: auth serves no {other:?} route"),
        };
        assert_eq!(security, &expected, "{method} {path}");
        assert!(operation["operationId"].is_string(), "{method} {path}");
        assert!(
            operation["responses"]
                .as_object()
                .is_some_and(|r| r.keys().any(|s| s.starts_with('2') || s.starts_with('3'))),
            "{method} {path} documents its success"
        );
        // Path parameters are declared for every `{name}` in the path.
        let declared: Vec<String> = paths[path]
            .get("parameters")
            .into_iter()
            .chain(operation.get("parameters"))
            .flat_map(|p| p.as_array().unwrap().iter())
            .map(|p| {
                let p = match p.get("$ref").and_then(Value::as_str) {
                    Some(target) => doc.pointer(&target[1..]).unwrap(),
                    None => p,
                };
                format!(
                    "{}:{}",
                    p["in"].as_str().unwrap(),
                    p["name"].as_str().unwrap()
                )
            })
            .collect();
        for name in path
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
        {
            assert!(
                declared.contains(&format!("path:{name}")),
                "{method} {path} declares {{{name}}}"
            );
        }
    }

    // Every reference resolves.
    let mut targets = Vec::new();
    refs(&doc, &mut targets);
    assert!(!targets.is_empty());
    for target in targets {
        assert!(
            target.starts_with("#/") && doc.pointer(&target[1..]).is_some(),
            "dangling $ref {target}"
        );
    }

    // The error envelope and the members page are described as they are sent.
    let problem = &doc["components"]["schemas"]["Problem"]["properties"];
    for field in ["type", "title", "status", "detail", "code", "retry_after"] {
        assert!(problem.get(field).is_some(), "Problem.{field}");
    }
    let list = &paths["/v1/orgs/{org}/members"]["get"];
    let page = doc
        .pointer("/components/schemas/MemberPage/properties")
        .unwrap();
    assert!(page.get("items").is_some() && page.get("next_cursor").is_some());
    assert_eq!(
        list["responses"]["200"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/MemberPage"
    );
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn every_route_in_routes_is_mounted(_: PgPoolOptions, options: PgConnectOptions) {
    // Google configured (with endpoints nobody listens on) so its routes answer for real
    // instead of 404 `not_configured`; none of the calls below reaches the provider.
    let unreachable = url::Url::parse("http://127.0.0.1:9/").unwrap();
    let google = GoogleConfig {
        client_id: "client".into(),
        client_secret: "secret".into(),
        redirect_url: url::Url::parse("https://runwarden.test/v1/auth/google/callback").unwrap(),
        issuer: runwarden_auth::config::GOOGLE_ISSUER.into(),
        auth_url: unreachable.join("authorize").unwrap(),
        token_url: unreachable.join("token").unwrap(),
        jwks_url: unreachable.join("jwks").unwrap(),
    };
    let app = spawn_app_with(options, Some(google), TrustedProxyHops(1)).await;

    // What the fallback answers for a path nobody mounted.
    let (status, _, fallback) = app
        .call_raw(Method::GET, "/v1/no-such-route", None, None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        serde_json::from_str::<Value>(&fallback).unwrap()["code"],
        "not_found"
    );

    let served: BTreeSet<(&str, &str)> = ROUTES.iter().map(|r| (r.method, r.path)).collect();
    for r in ROUTES {
        let (method, path) = (r.method, r.path);
        // Ids nobody has: without credentials every route must still answer on its own
        // (401, 400, a redirect, ...), never the fallback's 404 or a 405.
        let concrete = path
            .replace("{org}", &uuid::Uuid::new_v4().to_string())
            .replace("{user}", &uuid::Uuid::new_v4().to_string())
            .replace("{token}", &format!("inv_{}", uuid::Uuid::new_v4().simple()));
        let verb = Method::from_bytes(method.as_bytes()).unwrap();
        let body = matches!(method, "POST" | "PATCH").then(|| serde_json::json!({}));
        let (status, _, text) = app.call_raw(verb, &concrete, None, body).await;
        assert!(
            status != StatusCode::NOT_FOUND && status != StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path} is not mounted: {status} {text}"
        );

        // The check can fail: an unmounted sibling answers the fallback...
        // (two more segments, so no `{param}` route can match it).
        let sibling = format!("{concrete}/-/unmounted");
        let (status, _, text) = app.call_raw(Method::GET, &sibling, None, None).await;
        assert_eq!(
            (status, &text),
            (StatusCode::NOT_FOUND, &fallback),
            "{sibling}"
        );
        // ...and a method that ROUTES does not list for the path answers 405.
        for other in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
            if !served.contains(&(other, path)) {
                let (status, _, text) = app
                    .call_raw(
                        Method::from_bytes(other.as_bytes()).unwrap(),
                        &concrete,
                        None,
                        None,
                    )
                    .await;
                assert_eq!(
                    status,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "{other} {path}: {text}"
                );
            }
        }
    }
}
