//! The OpenAPI document served at `/openapi.json` against `ROUTES` and the live router:
//! the document lists exactly the routes in `ROUTES`, with the right security, every `$ref`
//! resolves, and every route in `ROUTES` is really mounted.

use std::collections::BTreeSet;

use reqwest::{Method, StatusCode};
use runwarden_audit::routes::{Access, ROUTES, Route};
use serde_json::{Value, json};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::helpers::spawn_app;

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "patch", "head", "options", "trace",
];

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
    let (status, headers, body) = app.get_raw("/openapi.json", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "application/json");
    let doc: Value = serde_json::from_str(&body).unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1."));
    assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());

    let paths = doc["paths"].as_object().unwrap();
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
    assert_eq!(documented, served);

    for Route {
        method,
        path,
        access,
        ..
    } in ROUTES
    {
        let operation = &paths[*path][method.to_lowercase()];
        let security = operation.get("security").unwrap_or(&doc["security"]);
        let expected = match access {
            Access::Public => json!([]),
            Access::Push => json!([{"pushOidc": []}, {"pushToken": []}]),
            Access::Org(_) => json!([{"bearerAuth": []}]),
            other => panic!("{method} {path}: audit serves no {other:?} route"),
        };
        assert_eq!(security, &expected, "{method} {path}");
        assert!(operation["operationId"].is_string(), "{method} {path}");
        assert!(
            operation["responses"]
                .as_object()
                .is_some_and(|r| r.keys().any(|s| s.starts_with('2'))),
            "{method} {path} documents its success"
        );
        let declared: Vec<String> = paths[*path]
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
                "{method} {path}"
            );
        }
    }

    let mut targets = Vec::new();
    refs(&doc, &mut targets);
    assert!(!targets.is_empty());
    for target in targets {
        assert!(
            target.starts_with("#/") && doc.pointer(&target[1..]).is_some(),
            "dangling $ref {target}"
        );
    }

    // The record schema names exactly the fields a record has.
    let record = doc.pointer("/components/schemas/AuditRecord").unwrap();
    let documented: BTreeSet<&str> = record["properties"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let sample = serde_json::to_value(runwarden_audit::chain::Record {
        org_id: runwarden_tenancy::OrgId::new(),
        seq: 1,
        event_id: uuid::Uuid::nil(),
        time: chrono::Utc::now(),
        created_at: chrono::Utc::now(),
        actor: runwarden_audit::chain::RecordActor {
            kind: "user".into(),
            id: None,
        },
        action: "a.b".into(),
        target: runwarden_audit::chain::RecordTarget {
            kind: "t".into(),
            id: "i".into(),
        },
        outcome: "success".into(),
        request_id: None,
        ip: None,
        user_agent: None,
        details: Value::Null,
        prev_hash: [0; 32],
        hash: [0; 32],
    })
    .unwrap();
    let actual: BTreeSet<&str> = sample
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(documented, actual);
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn every_route_in_routes_is_mounted(_: PgPoolOptions, options: PgConnectOptions) {
    let app = spawn_app(options).await;
    let (status, _, fallback) = app.get_raw("/v1/no-such-route", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let served: BTreeSet<(&str, &str)> = ROUTES.iter().map(|r| (r.method, r.path)).collect();
    for Route {
        method,
        path,
        access,
        ..
    } in ROUTES
    {
        let concrete = path.replace("{org}", &uuid::Uuid::new_v4().to_string());
        let verb = Method::from_bytes(method.as_bytes()).unwrap();
        let response = app
            .client
            .request(verb, app.url(&concrete))
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        let status = response.status();
        let expected = match access {
            Access::Public => StatusCode::OK,
            Access::Push | Access::Org(_) => StatusCode::UNAUTHORIZED,
            other => panic!("{method} {path}: audit serves no {other:?} route"),
        };
        assert_eq!(status, expected, "{method} {path}");

        let sibling = format!("{concrete}/-/unmounted");
        let (status, _, text) = app.get_raw(&sibling, None).await;
        assert_eq!(
            (status, &text),
            (StatusCode::NOT_FOUND, &fallback),
            "{sibling}"
        );
        for other in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
            if !served.contains(&(other, *path)) {
                let response = app
                    .client
                    .request(
                        Method::from_bytes(other.as_bytes()).unwrap(),
                        app.url(&concrete),
                    )
                    .send()
                    .await
                    .unwrap();
                assert_eq!(
                    response.status(),
                    StatusCode::METHOD_NOT_ALLOWED,
                    "{other} {path}"
                );
            }
        }
    }
    // Other topics have no push route.
    let response = app
        .client
        .post(app.url("/push/other-topic?token=x"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}
