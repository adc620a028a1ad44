//! `GET /api/openapi.json`: an OpenAPI 3.1 document naming every control-plane route with its
//! methods, whose security is what the router enforces, and whose schemas real answers (of a
//! call placed through the fake Exotel, phones, agents, campaigns, errors) validate against.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::TestGateway;
use exogate::config::Secret;
use exotel_sim::AudioSource;
use exotel_sim::fake_exotel::{FakeExotel, FakeExotelConfig};
use serde_json::{Value, json};

const KEY: &str = "test-api-key-0123456789";

/// The key-protected routes of `http::control_routes` (mod.rs), with their methods.
const CONTROL: &[(&str, &[&str])] = &[
    ("/call", &["post"]),
    ("/api/calls", &["get", "post"]),
    ("/api/calls/{id}", &["get"]),
    ("/api/calls/{id}/refresh", &["post"]),
    ("/api/phones", &["get", "post"]),
    ("/api/phones/{id}", &["get", "put", "patch", "delete"]),
    ("/api/campaigns", &["get", "post"]),
    ("/api/campaigns/{id}", &["get"]),
    ("/api/campaigns/{id}/contacts", &["get"]),
    ("/api/campaigns/{id}/results.csv", &["get"]),
    ("/api/campaigns/{id}/{action}", &["post"]),
    ("/api/agents", &["get", "post"]),
    ("/api/agents/{id}", &["get", "put", "patch", "delete"]),
    ("/api/live", &["get"]),
    ("/api/calls/{id}/hangup", &["post"]),
    ("/api/calls/{id}/transfer", &["post"]),
    ("/api/calls/{id}/recording", &["get"]),
];
/// `http::public_routes`: no key.
const PUBLIC: &[(&str, &[&str])] = &[
    ("/health", &["get"]),
    ("/metrics", &["get"]),
    ("/api/openapi.json", &["get"]),
    ("/api/session", &["get", "post", "delete"]),
];

/// The document, and validation of answers against it.
struct Spec(Value);

impl Spec {
    async fn fetch(gw: &TestGateway) -> Self {
        // No key: the document is public.
        let r = gw.http.get(gw.http_url("/api/openapi.json")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "application/json");
        Self(r.json().await.expect("the document is JSON"))
    }

    fn operation(&self, method: &str, path: &str) -> &Value {
        self.0["paths"].get(path).and_then(|p| p.get(method)).unwrap_or_else(|| panic!("{method} {path} undocumented"))
    }

    /// Checks an answer against the operation's documented status, content type and schema.
    fn check(&self, method: &str, path: &str, status: u16, content_type: &str, body: &Value) {
        let op = self.operation(method, path);
        let answer = op["responses"]
            .get(status.to_string())
            .unwrap_or_else(|| panic!("{method} {path} answered {status}, which is not documented: {body}"));
        let media = content_type.split(';').next().unwrap_or_default().trim();
        let Some(schema) = answer.get("content").and_then(|c| c.get(media)).map(|c| &c["schema"]) else {
            assert!(
                answer.get("content").is_none() && media.is_empty(),
                "{method} {path} {status}: {media} undocumented"
            );
            return;
        };
        if media != "application/json" {
            return;
        }
        // The answer's schema with the document's components beside it, so its `$ref`s resolve.
        let resource = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "components": self.0["components"],
            "allOf": [schema],
        });
        let url = "http://exogate.test/answer.json";
        let mut compiler = boon::Compiler::new();
        compiler.add_resource(url, resource).unwrap();
        let mut schemas = boon::Schemas::new();
        let index = compiler.compile(url, &mut schemas).unwrap_or_else(|e| panic!("{method} {path} {status}: {e:#}"));
        if let Err(e) = schemas.validate(body, index) {
            panic!("{method} {path} {status}: the answer does not fit its schema: {e:#}\n{body:#}");
        }
    }
}

/// Sends a request (with the key unless told otherwise) and checks the answer against the document.
async fn call(
    gw: &TestGateway,
    spec: &Spec,
    method: &str,
    template: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let url = gw.http_url(path);
    let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
    let mut req = gw.http.request(m, url).bearer_auth(KEY);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let content_type = r.headers().get("content-type").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    let text = r.text().await.unwrap();
    let value = if content_type.starts_with("application/json") {
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{method} {path}: {e}: {text}"))
    } else {
        Value::String(text)
    };
    spec.check(method, template, status, &content_type, &value);
    (status, value)
}

fn methods(item: &Value) -> BTreeSet<String> {
    let verbs = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];
    item.as_object().unwrap().keys().filter(|k| verbs.contains(&k.as_str())).cloned().collect()
}

fn refs(v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(o) => {
            if let Some(Value::String(r)) = o.get("$ref") {
                out.insert(r.clone());
            }
            o.values().for_each(|x| refs(x, out));
        }
        Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
        _ => {}
    }
}

#[tokio::test]
async fn document_is_openapi_3_1_naming_every_route_as_routed() {
    let gw = TestGateway::start_with(|c| c.api_key = Some(Secret(KEY.into()))).await;
    let spec = Spec::fetch(&gw).await;
    let doc = &spec.0;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1."), "{}", doc["openapi"]);
    assert_eq!(doc["info"]["title"], "exogate");
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"],
        json!({"type": "http", "scheme": "bearer",
        "description": doc["components"]["securitySchemes"]["bearer"]["description"]})
    );

    let expected: BTreeMap<&str, &[&str]> = CONTROL.iter().chain(PUBLIC).copied().collect();
    let paths = doc["paths"].as_object().unwrap();
    assert_eq!(paths.keys().map(String::as_str).collect::<BTreeSet<_>>(), expected.keys().copied().collect());
    let mut operation_ids = BTreeSet::new();
    for (path, item) in paths {
        let want: BTreeSet<String> = expected[path.as_str()].iter().map(|m| m.to_string()).collect();
        assert_eq!(methods(item), want, "{path}");
        let placeholders: BTreeSet<&str> =
            path.split('/').filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}'))).collect();
        for method in &want {
            let op = &item[method];
            assert!(
                operation_ids.insert(op["operationId"].as_str().unwrap().to_string()),
                "{method} {path}: id reused"
            );
            let declared: BTreeSet<&str> = op["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["in"] == "path")
                .inspect(|p| assert_eq!(p["required"], true, "{method} {path}"))
                .map(|p| p["name"].as_str().unwrap())
                .collect();
            assert_eq!(declared, placeholders, "{method} {path}: path parameters");
            let security = &op["security"];
            if CONTROL.iter().any(|(p, _)| p == path) {
                // The key, or the console's session cookie.
                assert_eq!(security, &json!([{"bearer": []}, {"session": []}]), "{method} {path}");
                for status in ["401", "403", "429", "500", "503"] {
                    assert!(op["responses"].get(status).is_some(), "{method} {path}: {status} undocumented");
                }
            } else {
                assert_eq!(security[0], json!({}), "{method} {path} needs no key");
            }
        }
    }
    // Links name operations that exist, in OpenAPI's spelling.
    for item in paths.values() {
        for op in methods(item).iter().map(|m| &item[m]) {
            for answer in op["responses"].as_object().unwrap().values() {
                for (name, link) in answer["links"].as_object().into_iter().flatten() {
                    let target = link["operationId"].as_str().unwrap_or_else(|| panic!("link {name}: {link}"));
                    assert!(operation_ids.contains(target), "link {name} names no operation");
                }
            }
        }
    }
    let mut all = BTreeSet::new();
    refs(doc, &mut all);
    for r in &all {
        let name = r.strip_prefix("#/components/schemas/").unwrap_or_else(|| panic!("{r}"));
        assert!(doc["components"]["schemas"].get(name).is_some(), "{r} does not resolve");
    }

    // What the document says about keys is what the router does: every control operation answers
    // 401 without the key, and with it reaches its handler (no router 404/405), whose answer to a
    // request about nothing (an unknown id, an empty body) is documented and fits its schema.
    for (path, verbs) in CONTROL {
        let concrete = path.replace("{id}", "nothing").replace("{action}", "start");
        for method in *verbs {
            let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let r = gw.http.request(m, gw.http_url(&concrete)).json(&json!({})).send().await.unwrap();
            let status = r.status().as_u16();
            let content_type = r.headers()["content-type"].to_str().unwrap().to_string();
            spec.check(method, path, status, &content_type, &r.json().await.unwrap());
            assert_eq!(status, 401, "{method} {concrete} without the key");
            let body = (*method != "get" && *method != "delete").then(|| json!({}));
            let (status, v) = call(&gw, &spec, method, path, &concrete, body).await;
            assert!(v.is_object() && (status != 404 || v["error"].is_string()), "{method} {concrete}: {status} {v}");
        }
    }
    for (path, _) in PUBLIC {
        let r = gw.http.get(gw.http_url(path)).send().await.unwrap();
        let (status, content_type) = (r.status().as_u16(), r.headers()["content-type"].to_str().unwrap().to_string());
        let body = if content_type.starts_with("application/json") { r.json().await.unwrap() } else { Value::Null };
        spec.check("get", path, status, &content_type, &body);
        // Signed out, the session says so; the rest answer anyone.
        let want = if *path == "/api/session" { 401 } else { 200 };
        assert_eq!(status, want, "{path}");
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_answers_fit_their_schemas() {
    // A call placed through a fake Exotel that plays it back into the gateway: a full row.
    let port = free_port();
    let cfg = FakeExotelConfig {
        voicebot_url: Some(format!("http://127.0.0.1:{port}/voicebot")),
        passthru_url: Some(format!("http://127.0.0.1:{port}/api/exotel/passthru")),
        audio: AudioSource::Tone { hz: 440.0, ms: 600 },
        idle_tail: Duration::from_millis(500),
        ..FakeExotelConfig::default()
    };
    let (sid, key, token) = (cfg.sid.clone(), cfg.api_key.clone(), cfg.api_token.clone());
    let fake = FakeExotel::start(cfg).await.expect("fake exotel");
    let base = fake.base_url();
    let gw = TestGateway::start_with(|c| {
        c.http_port = port;
        c.api_key = Some(Secret(KEY.into()));
        c.exotel = common::fake_exotel_env(sid, key, token, base);
    })
    .await;
    let spec = Spec::fetch(&gw).await;
    let spec = &spec;

    let (status, placed) =
        call(&gw, spec, "post", "/api/calls", "/api/calls", Some(json!({"to": "+919876543210"}))).await;
    assert_eq!(status, 201, "{placed}");
    let id = placed["call"]["id"].as_str().unwrap().to_string();
    let call_sid = placed["call"]["sid"].as_str().unwrap().to_string();
    fake.wait_call_done(&call_sid, Duration::from_secs(20)).await.expect("the call plays out");
    gw.gw.state.store.flush().await;
    let (status, list) = call(&gw, spec, "get", "/api/calls", "/api/calls", None).await;
    assert_eq!((status, list["total"].as_i64()), (200, Some(1)), "{list}");
    let (status, row) = call(&gw, spec, "get", "/api/calls/{id}", &format!("/api/calls/{id}"), None).await;
    assert_eq!(status, 200);
    assert!(row["events"].as_array().is_some_and(|e| e.len() > 3), "{row}");
    let (status, _) =
        call(&gw, spec, "post", "/api/calls/{id}/refresh", &format!("/api/calls/{id}/refresh"), None).await;
    assert_eq!(status, 200);
    // Bad filters are documented 400s, not overflows or panics (found by fuzzing).
    for query in ["limit=0", "page=9223372036854775807", "since=9999-12-31T23:59:59-23:59", "offset=-1", "page=x"] {
        let (status, _) = call(&gw, spec, "get", "/api/calls", &format!("/api/calls?{query}"), None).await;
        assert_eq!(status, 400, "{query}");
    }
    // Exotel refuses: its answer is relayed (a 502 with the kind).
    let refused = json!({"to": "+919876543210", "phone": "p1"});
    let phone = json!({"id": "p1", "number": "+918047000001", "sid": "other", "api_key": "k", "api_token": "t"});
    let (status, _) = call(&gw, spec, "post", "/api/phones", "/api/phones", Some(phone.clone())).await;
    assert_eq!(status, 201);
    let (status, v) = call(&gw, spec, "post", "/api/calls", "/api/calls", Some(refused)).await;
    assert_eq!((status, v["ok"].as_bool(), v["placed"].as_str()), (502, Some(false), Some("no")), "{v}");
    let (status, _) = call(&gw, spec, "post", "/api/phones", "/api/phones", Some(phone)).await;
    assert_eq!(status, 409);
    let (status, _) = call(&gw, spec, "get", "/api/phones", "/api/phones", None).await;
    assert_eq!(status, 200);
    // A second phone may not take the first one's number (the database's unique key says so).
    let other = json!({"id": "p2", "number": "+918047000002", "sid": "other", "api_key": "k", "api_token": "t"});
    let (status, _) = call(&gw, spec, "post", "/api/phones", "/api/phones", Some(other)).await;
    assert_eq!(status, 201);
    let taken = Some(json!({"number": "+918047000001"}));
    let (status, _) = call(&gw, spec, "put", "/api/phones/{id}", "/api/phones/p2", taken).await;
    assert_eq!(status, 409);
    let (status, _) = call(&gw, spec, "patch", "/api/phones/{id}", "/api/phones/p2", Some(json!({"sid": "a b"}))).await;
    assert_eq!(status, 400, "an account SID Exotel's URLs can't hold");
    let change = Some(json!({"max_concurrent": 2}));
    let (status, _) = call(&gw, spec, "patch", "/api/phones/{id}", "/api/phones/p1", change).await;
    assert_eq!(status, 200);

    let bridge = json!({"id": "bot", "kind": "bridge", "settings": {"url": "ws://127.0.0.1:9/bot"}, "greeting": "hi"});
    let (status, _) = call(&gw, spec, "post", "/api/agents", "/api/agents", Some(bridge)).await;
    assert_eq!(status, 201);
    let (status, _) = call(&gw, spec, "get", "/api/agents", "/api/agents", None).await;
    assert_eq!(status, 200);
    let (status, _) =
        call(&gw, spec, "put", "/api/agents/{id}", "/api/agents/bot", Some(json!({"greeting": "hello"}))).await;
    assert_eq!(status, 200);

    let csv = "phone,name\n+919800000001,Asha\nnot-a-number,Ravi\n+919800000001,Asha again\n";
    let new =
        json!({"name": "c", "agent": "echo", "csv": csv, "retry": {"busy": {"after_secs": 60, "max_attempts": 2}}});
    let (status, created) = call(&gw, spec, "post", "/api/campaigns", "/api/campaigns", Some(new)).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["campaign"]["rejected_total"], 2);
    let cid = created["campaign"]["id"].as_str().unwrap().to_string();
    let (status, _) = call(&gw, spec, "get", "/api/campaigns", "/api/campaigns", None).await;
    assert_eq!(status, 200);
    let contacts = format!("/api/campaigns/{cid}/contacts?state=pending");
    let (status, _) = call(&gw, spec, "get", "/api/campaigns/{id}/contacts", &contacts, None).await;
    assert_eq!(status, 200);
    for query in ["limit=many", "offset=9223372036854775808", "state=gone"] {
        let contacts = format!("/api/campaigns/{cid}/contacts?{query}");
        let (status, _) = call(&gw, spec, "get", "/api/campaigns/{id}/contacts", &contacts, None).await;
        assert_eq!(status, 400, "{query}");
    }
    let results = format!("/api/campaigns/{cid}/results.csv");
    let (status, text) = call(&gw, spec, "get", "/api/campaigns/{id}/results.csv", &results, None).await;
    assert_eq!(status, 200);
    assert!(text.as_str().unwrap().starts_with("phone,name,state"), "{text}");
    // No public URL for Exotel's status callbacks here: a campaign can't start.
    let (status, _) =
        call(&gw, spec, "post", "/api/campaigns/{id}/{action}", &format!("/api/campaigns/{cid}/start"), None).await;
    assert_eq!(status, 409);
    let (status, v) =
        call(&gw, spec, "post", "/api/campaigns/{id}/{action}", &format!("/api/campaigns/{cid}/cancel"), None).await;
    assert_eq!((status, v["campaign"]["status"].as_str()), (200, Some("cancelled")));
    let bad = json!({"agent": "echo", "csv": "name\nAsha\n"});
    let (status, v) = call(&gw, spec, "post", "/api/campaigns", "/api/campaigns", Some(bad)).await;
    assert_eq!(status, 400, "{v}");

    let (status, _) = call(&gw, spec, "delete", "/api/agents/{id}", "/api/agents/bot", None).await;
    assert_eq!(status, 204);
    let (status, _) = call(&gw, spec, "delete", "/api/phones/{id}", "/api/phones/p1", None).await;
    assert_eq!(status, 204);
    let (status, _) = call(&gw, spec, "get", "/health", "/health", None).await;
    assert_eq!(status, 200);
}
