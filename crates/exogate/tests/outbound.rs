//! Outbound calls and the control plane, end to end against the simulator's fake Exotel over real
//! sockets: REST request → media session → Passthru → status callback → one call-log row.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use base64::Engine;
use common::{TestGateway, assert_echo};
use exogate::config::Secret;
use exotel_sim::AudioSource;
use exotel_sim::fake_exotel::{FakeCall, FakeExotel, FakeExotelConfig, Script};
use serde_json::{Value, json};

const KEY: &str = "test-api-key-0123456789";

struct Rig {
    gw: TestGateway,
    fake: FakeExotel,
}

/// A gateway whose default phone (EXOTEL_*) points at a fake Exotel that plays each call back into it.
async fn rig(tweak: impl FnOnce(&mut FakeExotelConfig)) -> Rig {
    let port = free_port();
    let gw_http = format!("http://127.0.0.1:{port}");
    let mut cfg = FakeExotelConfig {
        voicebot_url: Some(format!("{gw_http}/voicebot")),
        passthru_url: Some(format!("{gw_http}/api/exotel/passthru")),
        audio: AudioSource::Tone { hz: 440.0, ms: 1200 },
        idle_tail: Duration::from_millis(700),
        ..FakeExotelConfig::default()
    };
    tweak(&mut cfg);
    let (sid, key, token) = (cfg.sid.clone(), cfg.api_key.clone(), cfg.api_token.clone());
    let fake = FakeExotel::start(cfg).await.expect("fake exotel");
    let base = fake.base_url();
    let gw = TestGateway::start_with(|c| {
        c.http_port = port;
        c.api_key = Some(Secret(KEY.into()));
        c.secret_key = Some(Secret("callback-secret".into()));
        c.exotel = common::fake_exotel_env(sid, key, token, base);
    })
    .await;
    Rig { gw, fake }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Rig {
    async fn post(&self, path: &str, body: Value) -> (u16, Value, reqwest::header::HeaderMap) {
        let r = self.gw.http.post(self.gw.http_url(path)).bearer_auth(KEY).json(&body).send().await.unwrap();
        let (status, headers) = (r.status().as_u16(), r.headers().clone());
        (status, r.json().await.unwrap_or(Value::Null), headers)
    }

    async fn get(&self, path: &str) -> Value {
        self.gw.gw.state.store.flush().await;
        let r = self.gw.http.get(self.gw.http_url(path)).bearer_auth(KEY).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        r.json().await.unwrap()
    }

    async fn done(&self, sid: &str) -> FakeCall {
        let call = self.fake.wait_call_done(sid, Duration::from_secs(20)).await.expect("call plays out");
        // The callback's writes are queued; let them land.
        self.gw.gw.state.store.flush().await;
        call
    }

    fn connect_requests(&self) -> Vec<exotel_sim::fake_exotel::RecordedRequest> {
        self.fake.requests().into_iter().filter(|r| r.path.contains("/Calls/connect")).collect()
    }
}

fn kinds(row: &Value) -> Vec<String> {
    row["events"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap().to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_call_contract_flows_through_exotel_to_one_completed_row() {
    let rig = rig(|_| {}).await;
    let (status, body, _) = rig.post("/call", json!({"to": "+919876543210", "callLogId": "log-1"})).await;
    assert_eq!(status, 201, "{body}");
    let id = body["call"]["id"].as_str().unwrap().to_string();
    let sid = body["call"]["sid"].as_str().unwrap().to_string();

    let reqs = rig.connect_requests();
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/v1/Accounts/exotelsim/Calls/connect.json");
    let basic = base64::engine::general_purpose::STANDARD.encode("fake-key:fake-token");
    assert_eq!(r.header("authorization"), Some(format!("Basic {basic}").as_str()));
    assert_eq!(r.field("From"), Some("+919876543210"));
    assert_eq!(r.field("CallerId"), Some("08047491899"));
    assert_eq!(r.field("Url"), Some("http://my.exotel.com/exotelsim/exoml/start_voice/4321"));
    assert_eq!(r.field("CustomField"), Some("log-1"));
    assert_eq!(r.field("CallType"), Some("trans"));
    assert_eq!(r.field("StatusCallbackEvents[0]"), Some("terminal"));
    assert_eq!(r.field("StatusCallbackContentType"), Some("application/json"));
    let cb = r.field("StatusCallback").unwrap();
    assert!(cb.contains(&format!("/api/exotel/status?call={id}&tok=")), "{cb}");

    let call = rig.done(&sid).await;
    let report = call.report.as_ref().expect("media leg ran");
    assert!(report.ok(), "{:?}", report.violations);
    assert_echo(&report.sent_pcm, &report.received_pcm);
    assert_eq!(call.passthru_status, Some(200));
    assert!(call.callbacks_sent.iter().any(|(s, _)| *s == 200), "{:?}", call.callbacks_sent);

    let list = rig.get("/api/calls").await;
    assert_eq!(list["total"], 1, "one call, one row: {list}");
    let row = rig.get(&format!("/api/calls/{id}")).await;
    assert_eq!(row["call_sid"], sid.as_str());
    assert_eq!(row["status"], "completed");
    assert_eq!(row["exotel_status"], "completed");
    assert_eq!(row["direction"], "outbound-api");
    assert_eq!(row["custom_field"], "log-1");
    assert_eq!(row["mode"], "flow");
    assert_eq!(row["agent"], "echo");
    assert_eq!(row["stream_status"], "completed");
    assert_eq!(row["bytes_in"], report.sent_pcm.len() as u64);
    assert!(row["conversation_duration"].as_i64().is_some(), "{row}");
    let k = kinds(&row);
    for want in ["exotel-accepted", "voicebot-url", "start", "end", "passthru", "status-callback"] {
        assert!(k.iter().any(|x| x == want), "{want} missing from {k:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_mode_connects_exotel_straight_to_our_media_endpoint() {
    let rig = rig(|_| {}).await;
    let (status, body, _) = rig
        .post("/api/calls", json!({"to": "09876543210", "mode": "stream", "agent": "echo", "time_limit": 600}))
        .await;
    assert_eq!(status, 201, "{body}");
    let id = body["call"]["id"].as_str().unwrap();
    let sid = body["call"]["sid"].as_str().unwrap();
    let r = &rig.connect_requests()[0];
    let stream_url = r.field("StreamUrl").unwrap();
    let ws_port = rig.gw.gw.ws_addr.port();
    assert_eq!(stream_url, format!("ws://127.0.0.1:{ws_port}/media?agentId=echo&callLogId={id}"));
    assert_eq!(r.field("StreamType"), Some("bidirectional"));
    assert_eq!(r.field("TimeLimit"), Some("600"));
    assert_eq!(r.field("Url"), None);
    let call = rig.done(sid).await;
    assert!(call.report.as_ref().unwrap().ok());
    let row = rig.get(&format!("/api/calls/{id}")).await;
    assert_eq!(row["status"], "completed");
    assert_eq!(row["mode"], "stream");
    assert!(row["frames_in"].as_u64().unwrap() > 0);
    assert_eq!(rig.get("/api/calls").await["total"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_no_answer_and_failed_end_as_such() {
    let rig = rig(|c| {
        c.scripts = HashMap::from([
            ("+919800000001".to_string(), Script::Busy),
            ("+919800000002".to_string(), Script::NoAnswer),
            ("+919800000003".to_string(), Script::Fail),
        ]);
    })
    .await;
    for (n, want) in [(1, "busy"), (2, "no-answer"), (3, "failed")] {
        let (status, body, _) = rig.post("/api/calls", json!({"to": format!("+91980000000{n}")})).await;
        assert_eq!(status, 201, "{body}");
        let call = rig.done(body["call"]["sid"].as_str().unwrap()).await;
        assert!(call.report.is_none(), "no media for {want}");
        let row = rig.get(&format!("/api/calls/{}", body["call"]["id"].as_str().unwrap())).await;
        assert_eq!(row["status"], want, "{row}");
        assert!(row["frames_in"].is_null());
    }
    let busy = rig.get("/api/calls?status=busy").await;
    assert_eq!(busy["total"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exotel_errors_are_typed_and_never_retried() {
    let rig = rig(|c| {
        c.scripts = HashMap::from([
            (
                "+919800000429".to_string(),
                Script::HttpError { status: 429, retry_after: Some(7), message: "Too Many Requests".into() },
            ),
            (
                "+919800000500".to_string(),
                Script::HttpError { status: 500, retry_after: None, message: "cannot originate".into() },
            ),
            (
                "+919800000400".to_string(),
                Script::HttpError { status: 400, retry_after: None, message: "From number is invalid".into() },
            ),
        ]);
    })
    .await;
    let (status, body, headers) = rig.post("/api/calls", json!({"to": "+919800000429"})).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["kind"], "rate_limited");
    assert_eq!(headers["retry-after"], "7");
    assert_eq!(body["placed"], "no");
    assert_eq!(rig.connect_requests().len(), 1, "a 429 is not retried");
    let row = rig.get(&format!("/api/calls/{}", body["id"].as_str().unwrap())).await;
    assert_eq!(row["status"], "failed");
    assert_eq!(row["error_kind"], "rate_limited");

    let (status, body, _) = rig.post("/api/calls", json!({"to": "+919800000500"})).await;
    assert_eq!(status, 504, "{body}");
    assert_eq!(body["kind"], "ambiguous");
    assert_eq!(body["placed"], "unknown");
    assert_eq!(rig.connect_requests().len(), 2, "a 500 is not retried");
    let row = rig.get(&format!("/api/calls/{}", body["id"].as_str().unwrap())).await;
    assert_eq!(row["status"], "queued", "an ambiguous call stays open for reconciliation");
    assert_eq!(row["error_kind"], "ambiguous");

    let (status, body, _) = rig.post("/api/calls", json!({"to": "+919800000400"})).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["kind"], "bad_request");
    assert!(body["error"].as_str().unwrap().contains("From number is invalid"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_exotel_credentials_and_per_phone_credentials() {
    // The fake accepts only the phone's own credentials, not the EXOTEL_* defaults.
    let rig = rig(|c| {
        c.api_key = "phone-key".into();
        c.api_token = "phone-token-secret".into();
    })
    .await;
    // The rig's env default uses the fake's credentials; break them by pointing a phone elsewhere.
    let (status, body, _) = rig
        .post(
            "/api/phones",
            json!({"id": "wrong", "number": "+918000000001", "sid": "exotelsim", "api_key": "nope", "api_token": "bad-token", "app_id": "4321"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, body, _) = rig.post("/api/calls", json!({"to": "+919876543210", "phone": "wrong"})).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["kind"], "unauthorized");

    let (status, body, _) = rig
        .post(
            "/api/phones",
            json!({"id": "mumbai", "number": "+918000000002", "sid": "exotelsim", "api_key": "phone-key", "api_token": "phone-token-secret", "app_id": "777", "max_concurrent": 1}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert!(body.get("api_token").is_none() && body["has_token"] == true, "{body}");
    let (status, body, _) = rig.post("/api/calls", json!({"to": "+919876543210", "phone": "mumbai"})).await;
    assert_eq!(status, 201, "{body}");
    let r = rig.connect_requests().into_iter().last().unwrap();
    let basic = base64::engine::general_purpose::STANDARD.encode("phone-key:phone-token-secret");
    assert_eq!(r.header("authorization"), Some(format!("Basic {basic}").as_str()));
    assert_eq!(r.field("CallerId"), Some("+918000000002"));
    assert_eq!(r.field("Url"), Some("http://my.exotel.com/exotelsim/exoml/start_voice/777"));
    // max_concurrent 1: a second call while the first is live is refused before Exotel is asked.
    let before = rig.connect_requests().len();
    let (status, busy, _) = rig.post("/api/calls", json!({"to": "+919876543211", "phone": "+918000000002"})).await;
    assert_eq!(status, 429, "{busy}");
    assert_eq!(rig.connect_requests().len(), before);
    rig.done(body["call"]["sid"].as_str().unwrap()).await;
    let row = rig.get(&format!("/api/calls/{}", body["call"]["id"].as_str().unwrap())).await;
    assert_eq!(row["phone_id"], "mumbai");

    // The token is nowhere: not in the API, not in the database file.
    let phones = rig.get("/api/phones").await.to_string();
    assert!(!phones.contains("phone-token-secret") && !phones.contains("bad-token"), "{phones}");
    let stored: Vec<Vec<u8>> = if rig.gw.database_url().starts_with("postgres") {
        // What PostgreSQL holds: every phone column, as bytes.
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(rig.gw.database_url()).await.unwrap();
        let rows: Vec<(Vec<u8>, String, String)> =
            sqlx::query_as("SELECT api_token_enc, api_key, number FROM phones").fetch_all(&pool).await.unwrap();
        assert!(!rows.is_empty());
        rows.into_iter().map(|(enc, key, number)| [enc, key.into_bytes(), number.into_bytes()].concat()).collect()
    } else {
        let db = std::fs::read(rig.gw.dir.path().join("calls.db")).unwrap();
        let wal = std::fs::read(rig.gw.dir.path().join("calls.db-wal")).unwrap_or_default();
        vec![db, wal]
    };
    for bytes in stored {
        assert!(!bytes.windows(18).any(|w| w == b"phone-token-secret"), "token stored in clear");
    }
    let filtered = rig.get("/api/calls?phone=mumbai").await;
    assert_eq!(filtered["total"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_and_missing_keys_store_nothing() {
    let rig = rig(|_| {}).await;
    let http = &rig.gw.http;
    for (path, body, want) in [
        ("/call", "{not json", "JSON"),
        ("/call", "{}", "to"),
        ("/api/calls", r#"{"to": 5}"#, "to"),
        ("/api/calls", r#"{"to": "+919876543210", "time_limit": 20000}"#, "TimeLimit"),
        ("/api/calls", r#"{"to": "+919876543210", "mode": "carrier-pigeon"}"#, "mode"),
        ("/api/calls", r#"{"to": "hello"}"#, "to"),
        ("/api/calls", r#"{"to": "+919876543210", "agent": "nobody"}"#, "agent"),
        (
            "/api/calls",
            r#"{"to": "+919876543210", "custom_field": "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}"#,
            "CustomField",
        ),
        ("/api/phones", r#"{"number": "+918000000009"}"#, "account_sid"),
        ("/api/agents", r#"{"kind": "echo"}"#, "id"),
        ("/api/agents", r#"{"id": "x", "kind": "nope"}"#, "kind"),
    ] {
        let r = http
            .post(rig.gw.http_url(path))
            .bearer_auth(KEY)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{path} {body}");
        let v: Value = r.json().await.unwrap();
        let msg = v["error"].as_str().unwrap_or_default();
        assert!(msg.contains(want), "{path} {body}: {msg:?} should name {want}");
    }
    for auth in [None, Some("wrong-key-wrong-key")] {
        let mut req = http.post(rig.gw.http_url("/call")).json(&json!({"to": "+919876543210"}));
        if let Some(k) = auth {
            req = req.bearer_auth(k);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 401);
        let r = http.get(rig.gw.http_url("/api/calls")).send().await.unwrap();
        assert_eq!(r.status(), 401);
    }
    assert_eq!(rig.connect_requests().len(), 0, "nothing reached Exotel");
    assert_eq!(rig.get("/api/calls").await["total"], 0, "nothing stored");
    assert_eq!(rig.get("/api/phones").await["phones"].as_array().unwrap().len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_callbacks_need_their_token_accept_every_encoding_and_are_idempotent() {
    let rig = rig(|c| c.default_script = Script::Busy).await;
    let (_, body, _) = rig.post("/api/calls", json!({"to": "+919876543210"})).await;
    let id = body["call"]["id"].as_str().unwrap().to_string();
    let sid = body["call"]["sid"].as_str().unwrap().to_string();
    rig.done(&sid).await;
    let before = rig.get(&format!("/api/calls/{id}")).await;
    assert_eq!(before["status"], "busy");

    let forged = rig.gw.http_url(&format!("/api/exotel/status?call={id}&tok=00ff"));
    let r = rig.gw.http.post(&forged).json(&json!({"CallSid": sid, "Status": "completed"})).send().await.unwrap();
    assert_eq!(r.status(), 403);
    let r = rig
        .gw
        .http
        .post(rig.gw.http_url(&format!("/api/exotel/status?call={id}")))
        .json(&json!({"Status": "completed"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let after = rig.get(&format!("/api/calls/{id}")).await;
    assert_eq!(after["status"], "busy", "a forged callback changes nothing");
    assert_eq!(kinds(&after), kinds(&before));

    // A real token, as the gateway signs it, for a fresh call row.
    let (_, body, _) = rig.post("/api/calls", json!({"to": "+919876543299"})).await;
    let id2 = body["call"]["id"].as_str().unwrap().to_string();
    rig.done(body["call"]["sid"].as_str().unwrap()).await;
    let tok = rig.gw.gw.state.secrets.sign("status", &id2);
    let url = rig.gw.http_url(&format!("/api/exotel/status?call={id2}&tok={tok}"));
    let form = reqwest::multipart::Form::new()
        .text("CallSid", "x")
        .text("Status", "in-progress")
        .text("EventType", "answered")
        .text("RecordingUrl", "https://recordings.exotel.com/r.mp3");
    let r = rig.gw.http.post(&url).multipart(form).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = rig
        .gw
        .http
        .post(&url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("CallSid=x&Status=completed&EventType=terminal&ConversationDuration=42&Legs%5B0%5D%5BStatus%5D=completed&Legs%5B0%5D%5BOnCallDuration%5D=44")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let dup = rig
        .gw
        .http
        .post(&url)
        .json(&json!({"CallSid": "x", "Status": "completed", "EventType": "terminal", "ConversationDuration": 99}))
        .send()
        .await
        .unwrap();
    assert_eq!(dup.json::<Value>().await.unwrap()["duplicate"], true);
    // JSON nulls are absent fields, not the text "null" over what an earlier callback said.
    let r = rig
        .gw
        .http
        .post(&url)
        .json(&json!({"CallSid": "x", "Status": "completed", "EventType": "summary", "RecordingUrl": null, "ConversationDuration": null}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let row = rig.get(&format!("/api/calls/{id2}")).await;
    assert_eq!(row["recording_url"], "https://recordings.exotel.com/r.mp3");
    assert_eq!(row["conversation_duration"], 42, "the retry did not apply twice");
    assert_eq!(row["legs"][0]["OnCallDuration"], "44");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pressing_zero_transfers_and_passthru_answers_302() {
    let rig = rig(|c| {
        c.dtmf = vec![(Duration::from_millis(400), "0".into())];
        c.audio = AudioSource::Tone { hz: 440.0, ms: 2000 };
    })
    .await;
    let (_, body, _) = rig.post("/api/calls", json!({"to": "+919876543210"})).await;
    let call = rig.done(body["call"]["sid"].as_str().unwrap()).await;
    let report = call.report.as_ref().unwrap();
    assert!(report.closed_by_bot && report.close_code == Some(1000), "{:?}", report.close_code);
    assert_eq!(call.passthru_status, Some(302));
    let row = rig.get(&format!("/api/calls/{}", body["call"]["id"].as_str().unwrap())).await;
    assert_eq!(row["bot_decision"], "transfer");
    assert_eq!(row["stop_reason"], "bot-hangup");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_crud_select_the_agent_and_phones_default_agent() {
    let rig = rig(|_| {}).await;
    let (status, body, _) = rig
        .post(
            "/api/agents",
            json!({"id": "riya", "kind": "echo", "greeting": "Namaste", "settings": {"voice": "hi-IN"}}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["settings"]["voice"], "hi-IN");
    let (status, _, _) = rig.post("/api/agents", json!({"id": "riya"})).await;
    assert_eq!(status, 409);
    let (status, body, _) = rig.post("/api/calls", json!({"to": "+919876543210", "agent": "riya"})).await;
    assert_eq!(status, 201, "{body}");
    rig.done(body["call"]["sid"].as_str().unwrap()).await;
    let row = rig.get(&format!("/api/calls/{}", body["call"]["id"].as_str().unwrap())).await;
    assert_eq!(row["agent"], "riya", "{row}");
    assert_eq!(rig.get("/api/calls?agent=riya").await["total"], 1);
    assert_eq!(rig.get("/api/calls?direction=outbound-api&since=2020-01-01").await["total"], 1);
    assert_eq!(rig.get("/api/calls?until=2020-01-01").await["total"], 0);
    let agents = rig.get("/api/agents").await;
    assert_eq!(agents["agents"][0]["id"], "riya");
    let r = rig.gw.http.delete(rig.gw.http_url("/api/agents/riya")).bearer_auth(KEY).send().await.unwrap();
    assert_eq!(r.status(), 204);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_reconciles_from_exotels_call_details() {
    let rig = rig(|_| {}).await;
    let (_, body, _) = rig.post("/api/calls", json!({"to": "+919876543210"})).await;
    let (id, sid) =
        (body["call"]["id"].as_str().unwrap().to_string(), body["call"]["sid"].as_str().unwrap().to_string());
    rig.done(&sid).await;
    let (status, row, _) = rig.post(&format!("/api/calls/{id}/refresh"), json!({})).await;
    assert_eq!(status, 200, "{row}");
    assert_eq!(row["exotel_status"], "completed");
    let details =
        rig.fake.requests().into_iter().find(|r| r.method == "GET" && r.path.contains(&sid)).expect("details asked");
    assert_eq!(details.path, format!("/v1/Accounts/exotelsim/Calls/{sid}.json"));
    let (status, _, _) = rig.post("/api/calls/nope/refresh", json!({})).await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_call_and_calls_use_the_api() {
    let rig = rig(|_| {}).await;
    let gateway = rig.gw.http_url("");
    let run = |args: Vec<String>, key: Option<&'static str>| {
        let gateway = gateway.clone();
        tokio::task::spawn_blocking(move || {
            let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_exogate"));
            cmd.args(&args).env("EXOGATE_URL", gateway).env_remove("EXOGATE_API_KEY");
            if let Some(k) = key {
                cmd.env("EXOGATE_API_KEY", k);
            }
            let out = cmd.output().unwrap();
            (
                out.status.success(),
                format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
            )
        })
    };
    let (ok, out) =
        run(vec!["call".into(), "+919876543210".into(), "--agent".into(), "echo".into()], Some(KEY)).await.unwrap();
    assert!(ok, "{out}");
    assert!(out.contains("placed call"), "{out}");
    let sid = rig.connect_requests().len();
    assert_eq!(sid, 1);
    let call = rig.fake.calls().pop().unwrap();
    rig.done(&call.sid).await;
    let (ok, out) = run(vec!["calls".into()], Some(KEY)).await.unwrap();
    assert!(ok, "{out}");
    assert!(out.contains("completed") && out.contains(&call.sid) && out.contains("+91******3210"), "{out}");
    assert!(!out.contains("9876543210"), "numbers are masked in the table: {out}");
    let (ok, out) = run(vec!["calls".into()], None).await.unwrap();
    assert!(!ok && out.contains("401"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exophones_default_agent_serves_its_inbound_calls() {
    let rig = rig(|_| {}).await;
    let (status, _, _) = rig.post("/api/agents", json!({"id": "riya", "kind": "echo"})).await;
    assert_eq!(status, 201);
    let (status, body, _) = rig
        .post("/api/phones", json!({"id": "blr", "number": "08047491800", "sid": "s", "api_key": "k", "api_token": "t", "default_agent": "riya"}))
        .await;
    assert_eq!(status, 201, "{body}");
    // Exotel writes the ExoPhone as CallTo; any spelling of the number matches.
    let (status, v) = rig.gw.get_json("/voicebot?CallSid=in-1&CallFrom=09800000001&CallTo=%2B918047491800").await;
    assert_eq!(status, 200);
    assert!(v["url"].as_str().unwrap().ends_with("/media?agentId=riya"), "{v}");
    let (_, v) = rig.gw.get_json("/voicebot?CallSid=in-2&CallTo=08047491899").await;
    assert!(v["url"].as_str().unwrap().ends_with("/media"), "{v}");
}
