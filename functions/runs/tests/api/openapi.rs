//! The OpenAPI document served at `/openapi.json` lists exactly `ROUTES`, every `$ref`
//! resolves, and every route in `ROUTES` is really mounted.

use std::collections::BTreeSet;

use reqwest::{Method, StatusCode};
use runwarden_runs::routes::{Access, ROUTES, Route};
use serde_json::Value;
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
async fn openapi_lists_exactly_the_routes(_: PgPoolOptions, options: PgConnectOptions) {
    let app = spawn_app(options).await;
    let response = app
        .client
        .get(app.served.url("/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/json");
    let doc: Value = response.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1."));

    let documented: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
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

    let mut targets = Vec::new();
    refs(&doc, &mut targets);
    for target in targets {
        let pointer = target.strip_prefix('#').expect("local refs only");
        assert!(doc.pointer(pointer).is_some(), "dangling $ref {target}");
    }

    // Every route is mounted: without a token an org route is 401, not 404 or 405.
    let org = runwarden_tenancy::OrgId::new();
    let project = uuid::Uuid::now_v7();
    for Route {
        method,
        path,
        access,
        ..
    } in ROUTES
    {
        let url = app.served.url(
            &path
                .replace("{org}", &org.to_string())
                .replace("{project}", &project.to_string())
                .replace("{run}", &project.to_string())
                .replace("{name}", "screenshot.png"),
        );
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let status = app
            .client
            .request(method.clone(), url)
            .send()
            .await
            .unwrap()
            .status();
        // Org, media, runner and push routes all refuse a caller with no credentials.
        let expected = match access {
            Access::Public => StatusCode::OK,
            Access::Org(_) | Access::Media | Access::Runner | Access::Push | Access::Task => {
                StatusCode::UNAUTHORIZED
            }
            other => panic!("{method} {path}: runs serves no {other:?} route"),
        };
        assert_eq!(status, expected, "{method} {path}");
    }
}
