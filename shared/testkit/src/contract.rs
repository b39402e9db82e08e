//! The OpenAPI contract, checked the same way for every function: [`Spec`] validates each
//! JSON response the tests get against the schema documented for its operation and status
//! (through [`Api`], the callers' one way to send a request), and [`check_document`] /
//! [`check_mounted`] compare the document with the function's route table and its live
//! router, in both directions.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use reqwest::header::HeaderMap;
use reqwest::{Method, RequestBuilder, StatusCode};
use runwarden_tenancy::routes::{Access, Route};
use serde_json::{Value, json};

use crate::Served;

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "patch", "head", "options", "trace",
];

/// A function's OpenAPI document, with a compiled validator per (operation, status, media
/// type) the tests have met.
pub struct Spec {
    doc: Value,
    validators: Mutex<HashMap<String, Arc<jsonschema::Validator>>>,
}

impl Spec {
    /// The document as the function embeds it (`routes::OPENAPI`).
    pub fn parse(text: &str) -> Arc<Self> {
        Arc::new(Self {
            doc: serde_json::from_str(text).expect("the OpenAPI document is JSON"),
            validators: Mutex::default(),
        })
    }

    pub fn doc(&self) -> &Value {
        &self.doc
    }

    /// The documented path template `path` (no query) falls under, and its operation.
    pub fn operation(&self, method: &Method, path: &str) -> Option<(&str, &Value)> {
        let path = path.split('?').next().unwrap_or_default();
        let method = method.as_str().to_ascii_lowercase();
        self.doc["paths"]
            .as_object()?
            .iter()
            .filter(|(template, _)| matches_template(template, path))
            // A literal segment wins over a `{param}` one (`/export` over `/{id}`).
            .min_by_key(|(template, _)| template.matches('{').count())
            .and_then(|(template, item)| Some((template.as_str(), item.get(&method)?)))
    }

    /// `value`, or what its `$ref` points at.
    pub fn resolve<'a>(&'a self, value: &'a Value) -> &'a Value {
        match value.get("$ref").and_then(Value::as_str) {
            Some(target) => self
                .doc
                .pointer(target.strip_prefix('#').expect("local $ref"))
                .unwrap_or_else(|| panic!("dangling $ref {target}")),
            None => value,
        }
    }

    /// Panics unless a response of a documented operation is documented: its status (or
    /// `default`), its media type, and a JSON body valid against the schema. Paths the
    /// document does not know (the tests' probes of unmounted paths) are not checked.
    pub fn check_response(
        &self,
        method: &Method,
        path: &str,
        status: StatusCode,
        headers: &HeaderMap,
        text: &str,
    ) {
        let Some((template, operation)) = self.operation(method, path) else {
            return;
        };
        let what = format!("{method} {template} answered {status}");
        let responses = &operation["responses"];
        let (key, response) = match responses.get(status.as_str()) {
            Some(r) => (status.as_str().to_owned(), r),
            None => (
                "default".to_owned(),
                responses
                    .get("default")
                    .unwrap_or_else(|| panic!("{what}, which its document does not list")),
            ),
        };
        let response = self.resolve(response);
        let media = headers
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or_default().trim().to_owned());
        let content = response.get("content").and_then(Value::as_object);
        let (Some(media), Some(content)) = (media, content) else {
            return;
        };
        if text.is_empty() {
            return;
        }
        let Some(described) = content.get(&media) else {
            panic!(
                "{what} as {media}, documented as {:?}",
                content.keys().collect::<Vec<_>>()
            );
        };
        if !(media == "application/json" || media.ends_with("+json")) {
            return;
        }
        let Some(schema) = described.get("schema") else {
            return;
        };
        let body: Value = serde_json::from_str(text)
            .unwrap_or_else(|e| panic!("{what} with a {media} body that is not JSON: {e}"));
        let validator = self.validator(&format!("{method} {template} {key} {media}"), schema);
        let errors: Vec<String> = validator
            .iter_errors(&body)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{what}; the body does not match its documented schema: {errors:#?}\n{body:#}"
        );
    }

    fn validator(&self, key: &str, schema: &Value) -> Arc<jsonschema::Validator> {
        let mut validators = self.validators.lock().unwrap();
        validators
            .entry(key.to_owned())
            .or_insert_with(|| {
                // The schema with the document's components beside it, so that its
                // `#/components/...` references resolve.
                let root = json!({
                    "$schema": "https://json-schema.org/draft/2020-12/schema",
                    "components": self.doc["components"],
                    "allOf": [schema],
                });
                Arc::new(
                    jsonschema::draft202012::new(&root)
                        .unwrap_or_else(|e| panic!("the schema of {key} compiles: {e}")),
                )
            })
            .clone()
    }
}

fn matches_template(template: &str, path: &str) -> bool {
    let (t, p): (Vec<&str>, Vec<&str>) = (template.split('/').collect(), path.split('/').collect());
    t.len() == p.len()
        && t.iter()
            .zip(&p)
            .all(|(t, p)| (t.starts_with('{') && t.ends_with('}') && !p.is_empty()) || t == p)
}

/// A response as the tests read it: status, headers, text, and the text as JSON (`Null`
/// when empty or not JSON).
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub text: String,
    pub body: Value,
}

/// A caller of one served function whose every response is checked against its document.
#[derive(Clone)]
pub struct Api {
    base: String,
    pub client: reqwest::Client,
    pub spec: Arc<Spec>,
}

impl Api {
    pub fn new(served: &Served, client: reqwest::Client, spec: &str) -> Self {
        Self {
            base: served.url(""),
            client,
            spec: Spec::parse(spec),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends `method path` as `build` finishes it (headers, body), checks the response
    /// against the document, and reads it.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        build: impl FnOnce(RequestBuilder) -> RequestBuilder,
    ) -> Reply {
        let response = build(self.client.request(method.clone(), self.url(path)))
            .send()
            .await
            .unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        self.spec
            .check_response(&method, path, status, &headers, &text);
        Reply {
            status,
            headers,
            body: serde_json::from_str(&text).unwrap_or(Value::Null),
            text,
        }
    }

    /// `method path` with an optional bearer token and JSON body.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        bearer: Option<&str>,
        body: Option<&Value>,
    ) -> Reply {
        self.send(method, path, |mut request| {
            if let Some(token) = bearer {
                request = request.bearer_auth(token);
            }
            if let Some(body) = body {
                request = request.json(body);
            }
            request
        })
        .await
    }

    /// The document the function serves at `/openapi.json`: the embedded one, as JSON.
    pub async fn document(&self) -> Value {
        let reply = self.call(Method::GET, "/openapi.json", None, None).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.headers["content-type"], "application/json");
        assert_eq!(&reply.body, self.spec.doc(), "served as embedded");
        reply.body
    }
}

/// One route of a function's table, as the contract sees it.
#[derive(Debug, Clone)]
pub struct Documented {
    pub method: &'static str,
    pub path: &'static str,
    /// The OpenAPI security requirement the route must declare (`[]` when public).
    pub security: Value,
    /// Org-scoped: the least role it needs (the 403 and 404 answers are then documented).
    pub org_role: Option<runwarden_tenancy::Role>,
}

impl Documented {
    pub fn is_public(&self) -> bool {
        self.security == json!([])
    }
}

/// A function's route table as the contract sees it: each access kind's one security
/// requirement. A runner route bound to a run (`{run}` in its path) needs the runner token
/// besides the internal secret; the exchange's credential is the ticket in its body.
pub fn table(routes: &[Route]) -> Vec<Documented> {
    routes
        .iter()
        .map(|r| Documented {
            method: r.method,
            path: r.path,
            security: match r.access {
                Access::Public => security::public(),
                Access::User | Access::Org(_) => security::bearer(),
                Access::Internal => security::internal(),
                Access::Runner if r.params().any(|p| p == "run") => security::runner(),
                Access::Runner => security::internal(),
                Access::Push | Access::Task => security::push(),
                Access::Media => security::media(),
            },
            org_role: r.access.org_role(),
        })
        .collect()
}

/// The security requirements of the functions' access kinds, one spelling for all.
pub mod security {
    use serde_json::{Value, json};

    pub fn public() -> Value {
        json!([])
    }
    pub fn bearer() -> Value {
        json!([{"bearerAuth": []}])
    }
    pub fn push() -> Value {
        json!([{"pushOidc": []}, {"pushToken": []}])
    }
    pub fn internal() -> Value {
        json!([{"internalAuth": []}])
    }
    pub fn runner() -> Value {
        json!([{"internalAuth": [], "runnerToken": []}])
    }
    pub fn media() -> Value {
        json!([{"mediaToken": []}])
    }
}

/// The document's schema `name` lists exactly the fields of `sample` (a value of the Rust
/// type it describes, serialized).
pub fn assert_schema_fields(doc: &Value, name: &str, sample: &Value) {
    let keys = |v: &Value| -> BTreeSet<String> {
        v.as_object()
            .unwrap_or_else(|| panic!("{name}: an object"))
            .keys()
            .cloned()
            .collect()
    };
    let schema = doc
        .pointer(&format!("/components/schemas/{name}/properties"))
        .unwrap_or_else(|| panic!("schema {name}"));
    assert_eq!(keys(schema), keys(sample), "schema {name}");
}

/// Every `{"$ref": ...}` in `value`.
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

/// The document against the route table: exactly the same routes; each with its security,
/// a unique operation id, a documented success, every path parameter declared (and none
/// that the path lacks), and its problem answers documented as `application/problem+json`
/// (401 when it needs credentials, 404 when org-scoped, 403 when it needs more than a
/// viewer); every `$ref` resolves. Returns the document.
pub async fn check_document(api: &Api, routes: &[Route]) -> Value {
    let routes = &table(routes);
    let doc = api.document().await;
    let spec = &api.spec;
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
    let served: BTreeSet<(String, String)> = routes
        .iter()
        .map(|r| (r.method.to_owned(), r.path.to_owned()))
        .collect();
    assert_eq!(served.len(), routes.len(), "ROUTES has no duplicates");
    assert_eq!(
        documented,
        served,
        "only documented: {:?}; only in ROUTES: {:?}",
        documented.difference(&served).collect::<Vec<_>>(),
        served.difference(&documented).collect::<Vec<_>>()
    );

    let mut operation_ids = BTreeSet::new();
    for r in routes {
        let what = format!("{} {}", r.method, r.path);
        let operation = &paths[r.path][r.method.to_lowercase()];
        let security = operation.get("security").unwrap_or(&doc["security"]);
        assert_eq!(security, &r.security, "{what}: security");
        let id = operation["operationId"]
            .as_str()
            .unwrap_or_else(|| panic!("{what}: operationId"));
        assert!(
            operation_ids.insert(id.to_owned()),
            "{what}: operationId {id} is unique"
        );

        let responses = operation["responses"]
            .as_object()
            .unwrap_or_else(|| panic!("{what}: responses"));
        assert!(
            responses
                .keys()
                .any(|s| s.starts_with('2') || s.starts_with('3')),
            "{what} documents its success"
        );
        for (status, response) in responses {
            if status.starts_with('4') || status.starts_with('5') {
                let content = spec.resolve(response).get("content");
                assert!(
                    content
                        .and_then(|c| c.get("application/problem+json"))
                        .is_some(),
                    "{what}: {status} is documented as application/problem+json"
                );
            }
        }
        let mut problems = Vec::new();
        if !r.is_public() {
            problems.push("401");
        }
        if let Some(role) = r.org_role {
            problems.push("404");
            if role > runwarden_tenancy::Role::Viewer {
                problems.push("403");
            }
        }
        for status in problems {
            assert!(responses.contains_key(status), "{what} documents {status}");
        }

        let declared: BTreeSet<String> = paths[r.path]
            .get("parameters")
            .into_iter()
            .chain(operation.get("parameters"))
            .flat_map(|p| p.as_array().unwrap().iter())
            .map(|p| spec.resolve(p))
            .filter(|p| p["in"] == "path")
            .map(|p| p["name"].as_str().unwrap().to_owned())
            .collect();
        let in_path: BTreeSet<String> = r
            .path
            .split('/')
            .filter_map(|s| Some(s.strip_prefix('{')?.strip_suffix('}')?.to_owned()))
            .collect();
        assert_eq!(declared, in_path, "{what}: path parameters");
    }

    let mut targets = Vec::new();
    refs(&doc, &mut targets);
    for target in targets {
        assert!(
            target.starts_with("#/") && doc.pointer(&target[1..]).is_some(),
            "dangling $ref {target}"
        );
    }
    doc
}

/// The live router against the route table, in both directions: without credentials each
/// route answers on its own (401 unless public; never the fallback's 404 nor a 405), a
/// method the table does not list for a path answers 405, an unmounted sibling answers the
/// fallback; and every path the function's source mounts (`.route("...")`, scheduler tasks
/// `tasks::route("name", ...)`, and as many `/push/` routes as `push::route(` calls) is in
/// the table, but for exactly the paths in `unlisted` (a function's known gaps, each to be
/// closed). `sample` gives a value for each path parameter; `src` is the function's `src/`
/// directory (`concat!(env!("CARGO_MANIFEST_DIR"), "/src")`).
pub async fn check_mounted(
    api: &Api,
    routes: &[Route],
    src: &str,
    unlisted: &[&str],
    sample: impl Fn(&str) -> String,
) {
    let routes = &table(routes);
    let fallback = api.call(Method::GET, "/v1/no-such-route", None, None).await;
    assert_eq!(fallback.status, StatusCode::NOT_FOUND);
    assert_eq!(fallback.body["code"], "not_found");

    let table: BTreeSet<(&str, &str)> = routes.iter().map(|r| (r.method, r.path)).collect();
    for r in routes {
        let concrete = r
            .path
            .split('/')
            .map(
                |s| match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                    Some(name) => sample(name),
                    None => s.to_owned(),
                },
            )
            .collect::<Vec<_>>()
            .join("/");
        let method = Method::from_bytes(r.method.as_bytes()).unwrap();
        let body = matches!(r.method, "POST" | "PUT" | "PATCH").then(|| json!({}));
        let reply = api.call(method, &concrete, None, body.as_ref()).await;
        let what = format!("{} {}: {} {}", r.method, r.path, reply.status, reply.text);
        if r.is_public() {
            assert!(
                reply.status != StatusCode::METHOD_NOT_ALLOWED
                    && (reply.status, &reply.text) != (StatusCode::NOT_FOUND, &fallback.text),
                "{what}: not mounted"
            );
        } else {
            assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{what}");
        }

        // Two more segments, so that no `{param}` route can match.
        let sibling = format!("{concrete}/-/unmounted");
        let reply = api.call(Method::GET, &sibling, None, None).await;
        assert_eq!(
            (reply.status, &reply.text),
            (StatusCode::NOT_FOUND, &fallback.text),
            "{sibling}"
        );
        for other in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
            if !table.contains(&(other, r.path)) {
                let reply = api
                    .call(
                        Method::from_bytes(other.as_bytes()).unwrap(),
                        &concrete,
                        None,
                        None,
                    )
                    .await;
                assert_eq!(
                    reply.status,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "{other} {}: {}",
                    r.path,
                    reply.text
                );
            }
        }
    }

    // What the source mounts, and the platform's health check, table or not.
    let listed: BTreeSet<&str> = routes.iter().map(|r| r.path).collect();
    let source = source_of(std::path::Path::new(src));
    let mut mounted: BTreeSet<String> = literals_after(&source, ".route(")
        .into_iter()
        .filter(|p| p.starts_with('/'))
        .chain(
            literals_after(&source, "tasks::route(")
                .into_iter()
                .map(|name| format!("/internal/tasks/{name}")),
        )
        .collect();
    let health = api.call(Method::GET, "/healthz", None, None).await;
    if health.status == StatusCode::OK {
        mounted.insert("/healthz".to_owned());
    }
    let missing: BTreeSet<&str> = mounted
        .iter()
        .map(String::as_str)
        .filter(|p| !listed.contains(p))
        .collect();
    assert_eq!(
        missing,
        unlisted.iter().copied().collect::<BTreeSet<_>>(),
        "served but not in ROUTES (nor in the document)"
    );
    let pushes = source.matches("push::route(").count();
    let listed_pushes = listed.iter().filter(|p| p.starts_with("/push/")).count();
    assert_eq!(
        pushes, listed_pushes,
        "every push route the source mounts is in ROUTES"
    );
    let unknown_topic = api
        .call(Method::POST, "/push/no-such-topic", None, Some(&json!({})))
        .await;
    assert_eq!(
        unknown_topic.status,
        StatusCode::NOT_FOUND,
        "other topics have no route"
    );
}

/// A sample for every path parameter: an id nobody has.
pub fn any_id(_name: &str) -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Every `.rs` file under `dir`, concatenated, with comments left out.
fn source_of(dir: &std::path::Path) -> String {
    let mut out = String::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{dir:?}: {e}")) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                for line in std::fs::read_to_string(&path).unwrap().lines() {
                    if !line.trim_start().starts_with("//") {
                        out.push_str(line);
                        out.push('\n');
                    }
                }
            }
        }
    }
    out
}

/// The string literal that opens the argument list after each `call` in `source`.
fn literals_after(source: &str, call: &str) -> Vec<String> {
    source
        .match_indices(call)
        .filter_map(|(at, _)| {
            let rest = source[at + call.len()..].trim_start();
            let rest = rest.strip_prefix('"')?;
            Some(rest[..rest.find('"')?].to_owned())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = r##"{
        "openapi": "3.1.0",
        "paths": {"/v1/orgs/{org}/things": {"get": {"responses": {
            "200": {"description": "ok", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Page"}}}},
            "default": {"$ref": "#/components/responses/Problem"}
        }}}},
        "components": {
            "schemas": {
                "Page": {"type": "object", "required": ["items"], "properties": {"items": {"type": "array", "items": {"type": "string"}}}},
                "Problem": {"type": "object", "required": ["status"], "properties": {"status": {"type": "integer"}}}
            },
            "responses": {"Problem": {"description": "problem", "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}}
        }
    }"##;

    fn check(status: u16, media: &str, body: &str) {
        let spec = Spec::parse(DOC);
        let mut headers = HeaderMap::new();
        headers.insert(reqwest::header::CONTENT_TYPE, media.parse().unwrap());
        spec.check_response(
            &Method::GET,
            "/v1/orgs/x/things?limit=1",
            StatusCode::from_u16(status).unwrap(),
            &headers,
            body,
        );
    }

    #[test]
    fn documented_bodies_pass() {
        check(200, "application/json", r#"{"items": ["a"]}"#);
        check(404, "application/problem+json", r#"{"status": 404}"#);
        // Paths the document does not know are not checked.
        Spec::parse(DOC).check_response(
            &Method::GET,
            "/elsewhere",
            StatusCode::OK,
            &HeaderMap::new(),
            "x",
        );
    }

    #[test]
    #[should_panic(expected = "does not match its documented schema")]
    fn a_body_off_its_schema_fails() {
        check(200, "application/json", r#"{"items": [1]}"#);
    }

    #[test]
    #[should_panic(expected = "does not match its documented schema")]
    fn a_problem_off_its_schema_fails() {
        check(500, "application/problem+json", r#"{"title": "x"}"#);
    }

    #[test]
    #[should_panic(expected = "documented as")]
    fn an_undocumented_media_type_fails() {
        check(200, "text/plain", "items");
    }

    #[test]
    fn templates_match_by_segment() {
        assert!(matches_template("/v1/orgs/{org}", "/v1/orgs/abc"));
        assert!(!matches_template("/v1/orgs/{org}", "/v1/orgs/abc/x"));
        assert!(!matches_template("/v1/orgs/{org}", "/v1/orgs/"));
    }
}
