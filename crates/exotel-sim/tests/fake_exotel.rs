//! The fake Exotel end to end: a gateway stub written here (dynamic URL, Passthru, status
//! callbacks) and an echo bot behind it, calls placed with reqwest as a gateway would.
//! Everything binds 127.0.0.1 only.

// tungstenite's upgrade callback fixes the (large) error type; nothing here can shrink it.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::header::{CONTENT_TYPE, LOCATION, RETRY_AFTER};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use exotel_sim::AudioSource;
use exotel_sim::fake_exotel::{CallMode, FakeCall, FakeExotel, FakeExotelConfig, Script};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response as WsResponse};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

type Pairs = Vec<(String, String)>;

const DONE_WITHIN: Duration = Duration::from_secs(8);
const EXOPHONE: &str = "08047491899";
const CUSTOMER: &str = "+919876543210";

fn get_pair<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

// ---------------------------------------------------------------- the bot

/// Echoes the caller's audio in 3200-byte chunks, each followed by a mark, and closes 1000 on
/// `stop`. On `/hangup` it closes by itself after ten media frames (the bot ending the call).
async fn echo_bot(listener: TcpListener) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else { return };
        tokio::spawn(async move {
            let mut path = String::new();
            let ws = tokio_tungstenite::accept_hdr_async(tcp, |req: &Request, resp: WsResponse| {
                path = req.uri().path().to_string();
                Ok(resp)
            })
            .await;
            let Ok(ws) = ws else { return };
            let (mut tx, mut rx) = ws.split();
            let (mut sid, mut pending, mut frames, mut n) = (String::new(), Vec::new(), 0, 0);
            while let Some(Ok(Message::Text(text))) = rx.next().await {
                let Ok(v) = serde_json::from_str::<Value>(text.as_str()) else { continue };
                match v["event"].as_str() {
                    Some("start") => sid = v["stream_sid"].as_str().unwrap_or_default().to_string(),
                    Some("media") => {
                        use base64::Engine;
                        let b64 = base64::engine::general_purpose::STANDARD;
                        pending.extend(b64.decode(v["media"]["payload"].as_str().unwrap_or_default()).unwrap());
                        frames += 1;
                        while pending.len() >= 3200 {
                            let chunk: Vec<u8> = pending.drain(..3200).collect();
                            n += 1;
                            let media =
                                json!({"event":"media","stream_sid":sid,"media":{"payload":b64.encode(&chunk)}});
                            let mark = json!({"event":"mark","stream_sid":sid,"mark":{"name":format!("m{n}")}});
                            let _ = tx.send(Message::Text(media.to_string().into())).await;
                            let _ = tx.send(Message::Text(mark.to_string().into())).await;
                        }
                        if path == "/hangup" && frames == 10 {
                            let close = CloseFrame { code: CloseCode::Normal, reason: "bye".into() };
                            let _ = tx.send(Message::Close(Some(close))).await;
                        }
                    }
                    Some("stop") => {
                        let close = CloseFrame { code: CloseCode::Normal, reason: "stop".into() };
                        let _ = tx.send(Message::Close(Some(close))).await;
                    }
                    _ => {}
                }
            }
        });
    }
}

// ---------------------------------------------------------------- the gateway stub

#[derive(Debug, Default)]
struct GwLog {
    /// Query and the `Exotel-Version` header of each dynamic-URL request.
    voicebot: Vec<(Pairs, Option<String>)>,
    passthru: Vec<Pairs>,
    /// Path, content type, body.
    callbacks: Vec<(String, String, String)>,
    /// The Passthru answers 302 (transfer) for this call, 200 for any other.
    transfer_sid: Option<String>,
    flaky_hits: u32,
}

#[derive(Clone)]
struct Gw {
    log: Arc<Mutex<GwLog>>,
    bot: String,
}

struct Gateway {
    url: String,
    bot: String,
    log: Arc<Mutex<GwLog>>,
}

impl Gateway {
    async fn start() -> Gateway {
        let bot_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let bot = format!("ws://{}", bot_listener.local_addr().unwrap());
        tokio::spawn(echo_bot(bot_listener));
        let log = Arc::new(Mutex::new(GwLog::default()));
        let app = Router::new()
            .route("/voicebot", get(voicebot))
            .route("/voicebot-broken", get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "down") }))
            .route("/passthru", get(passthru))
            .route("/cb", post(callback))
            .route("/cb/flaky", post(callback))
            .with_state(Gw { log: log.clone(), bot: bot.clone() });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Gateway { url, bot, log }
    }

    fn log(&self) -> std::sync::MutexGuard<'_, GwLog> {
        self.log.lock().unwrap()
    }

    /// The callbacks one call received: content type and parsed fields (JSON or multipart).
    fn callbacks_for(&self, sid: &str) -> Vec<(String, String, Value)> {
        self.log()
            .callbacks
            .iter()
            .map(|(path, ct, body)| (path.clone(), ct.clone(), parse_callback(ct, body)))
            .filter(|(_, _, v)| v["CallSid"] == sid)
            .collect()
    }
}

async fn voicebot(State(gw): State<Gw>, Query(q): Query<Pairs>, headers: HeaderMap) -> Response {
    let version = headers.get("exotel-version").map(|v| v.to_str().unwrap().to_string());
    let path = if get_pair(&q, "CustomField") == Some("hangup") { "hangup" } else { "media" };
    gw.log.lock().unwrap().voicebot.push((q, version));
    axum::Json(json!({ "url": format!("{}/{path}", gw.bot) })).into_response()
}

async fn passthru(State(gw): State<Gw>, Query(q): Query<Pairs>) -> Response {
    let mut log = gw.log.lock().unwrap();
    let transfer = log.transfer_sid.is_some() && log.transfer_sid.as_deref() == get_pair(&q, "CallSid");
    log.passthru.push(q);
    if transfer {
        (StatusCode::FOUND, [(LOCATION, "http://127.0.0.1:9/never-followed")]).into_response()
    } else {
        StatusCode::OK.into_response()
    }
}

async fn callback(State(gw): State<Gw>, uri: axum::http::Uri, headers: HeaderMap, body: String) -> Response {
    let ct = headers.get(CONTENT_TYPE).map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    let mut log = gw.log.lock().unwrap();
    log.callbacks.push((uri.path().to_string(), ct, body));
    if uri.path() == "/cb/flaky" {
        log.flaky_hits += 1;
        if log.flaky_hits == 1 {
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
    }
    StatusCode::OK.into_response()
}

/// A JSON body as is; a multipart body as an object of strings (written independently of the
/// crate's own parser, as a cross-check).
fn parse_callback(content_type: &str, body: &str) -> Value {
    if content_type.starts_with("application/json") {
        return serde_json::from_str(body).unwrap();
    }
    let boundary = content_type.split("boundary=").nth(1).expect("multipart without boundary");
    let mut map = serde_json::Map::new();
    for part in body.split(&format!("--{boundary}")) {
        let Some((head, value)) = part.split_once("\r\n\r\n") else { continue };
        let name = head.split("name=\"").nth(1).and_then(|r| r.split('"').next()).unwrap();
        map.insert(name.to_string(), Value::String(value.strip_suffix("\r\n").unwrap_or(value).to_string()));
    }
    Value::Object(map)
}

// ---------------------------------------------------------------- helpers

fn flow_url(sid: &str) -> String {
    format!("http://my.exotel.com/{sid}/exoml/start_voice/4242")
}

fn quick(cfg: FakeExotelConfig) -> FakeExotelConfig {
    FakeExotelConfig {
        audio: AudioSource::Tone { hz: 440.0, ms: 1000 },
        idle_tail: Duration::from_millis(500),
        max_tail: Duration::from_secs(3),
        ..cfg
    }
}

async fn place(fake: &FakeExotel, path_tail: &str, form: &[(&str, &str)]) -> reqwest::Response {
    place_as(fake, "fake-key", "fake-token", path_tail, form).await
}

async fn place_as(
    fake: &FakeExotel,
    key: &str,
    token: &str,
    path_tail: &str,
    form: &[(&str, &str)],
) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}/v1/Accounts/exotelsim/Calls/{path_tail}", fake.base_url()))
        .basic_auth(key, Some(token))
        .form(form)
        .send()
        .await
        .unwrap()
}

async fn sid_of(resp: reqwest::Response) -> String {
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    let sid = v["Call"]["Sid"].as_str().unwrap().to_string();
    assert_eq!(sid.len(), 32);
    assert!(sid.chars().all(|c| c.is_ascii_hexdigit()));
    sid
}

async fn done(fake: &FakeExotel, sid: &str) -> FakeCall {
    fake.wait_call_done(sid, DONE_WITHIN).await.expect("call not done in time")
}

async fn rest_exception(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["RestException"]["Status"], status, "{v}");
    (status, v["RestException"].clone())
}

// ---------------------------------------------------------------- tests

#[tokio::test]
async fn flow_call_resolves_the_dynamic_url_plays_the_bot_and_reports() {
    let t0 = Instant::now();
    let gw = Gateway::start().await;
    let fake = FakeExotel::start(quick(FakeExotelConfig {
        voicebot_url: Some(format!("{}/voicebot", gw.url)),
        passthru_url: Some(format!("{}/passthru", gw.url)),
        ..FakeExotelConfig::default()
    }))
    .await
    .unwrap();
    let cb = format!("{}/cb?token=abc", gw.url);
    let resp = place(
        &fake,
        "connect.json",
        &[
            ("From", CUSTOMER),
            ("CallerId", EXOPHONE),
            ("Url", &flow_url("exotelsim")),
            ("CallType", "trans"),
            ("CustomField", "order-42"),
            ("StatusCallback", &cb),
            ("StatusCallbackEvents[0]", "terminal"),
            ("StatusCallbackEvents[1]", "answered"),
            ("Record", "true"),
        ],
    )
    .await;
    assert_eq!(resp.headers()[CONTENT_TYPE], "application/json");
    let v: Value = resp.json().await.unwrap();
    let c = &v["Call"];
    let sid = c["Sid"].as_str().unwrap().to_string();
    assert_eq!(sid.len(), 32);
    assert_eq!(c["Status"], "in-progress");
    assert_eq!(c["Direction"], "outbound-api");
    assert_eq!(c["AccountSid"], "exotelsim");
    assert_eq!(c["From"], CUSTOMER);
    assert_eq!(c["To"], EXOPHONE);
    assert_eq!(c["PhoneNumberSid"], EXOPHONE);
    assert_eq!(c["ParentCallSid"], Value::Null);
    assert_eq!(c["Uri"], format!("/v1/Accounts/exotelsim/Calls/{sid}.json"));

    // While the media leg runs, it counts as an active stream.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let active = reqwest::Client::new()
        .get(format!("{}/v1/Accounts/exotelsim/ActiveStreams", fake.base_url()))
        .basic_auth("fake-key", Some("fake-token"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(active.contains("<ActiveStreamCount>1</ActiveStreamCount>"), "{active}");
    assert!(active.contains("<ThrottleLimit>"), "{active}");

    let call = done(&fake, &sid).await;
    assert_eq!(call.state, "completed");
    assert_eq!(call.mode, CallMode::Flow { app_id: "4242".into() });
    assert_eq!(call.custom_field.as_deref(), Some("order-42"));

    // The dynamic URL: a GET with the call details and Exotel-Version.
    let (q, version) = gw.log().voicebot[0].clone();
    assert_eq!(version.as_deref(), Some("1.0"));
    assert_eq!(get_pair(&q, "CallSid"), Some(sid.as_str()));
    assert_eq!(get_pair(&q, "CallFrom"), Some(CUSTOMER));
    assert_eq!(get_pair(&q, "CallTo"), Some(EXOPHONE));
    assert_eq!(get_pair(&q, "From"), Some(CUSTOMER));
    assert_eq!(get_pair(&q, "To"), Some(EXOPHONE));
    assert_eq!(get_pair(&q, "Direction"), Some("outbound-api"));
    assert_eq!(get_pair(&q, "CustomField"), Some("order-42"));

    // The media leg: the bot's returned URL, a clean report.
    assert_eq!(call.ws_url.as_deref(), Some(format!("{}/media", gw.bot).as_str()));
    let report = call.report.as_ref().expect("media leg");
    assert!(report.ok(), "{}", report.summary());
    assert!(report.frames_sent > 0 && report.media_received > 0);
    assert!(!report.closed_by_bot);
    assert!(call.media_error.is_none());

    // The Passthru: call details plus the Stream[...] outcome; 200 recorded.
    assert_eq!(call.passthru_status, Some(200));
    let p = gw.log().passthru[0].clone();
    assert_eq!(get_pair(&p, "CallSid"), Some(sid.as_str()));
    assert_eq!(get_pair(&p, "CallFrom"), Some(CUSTOMER));
    assert_eq!(get_pair(&p, "Direction"), Some("outbound-api"));
    assert_eq!(get_pair(&p, "CustomField"), Some("order-42"));
    assert_eq!(get_pair(&p, "flow_id"), Some("4242"));
    assert_eq!(get_pair(&p, "CurrentTime").map(str::len), Some(19));
    assert_eq!(get_pair(&p, "Stream[StreamSID]"), call.stream_sid.as_deref());
    assert_eq!(get_pair(&p, "Stream[Status]"), Some("completed"));
    assert_eq!(get_pair(&p, "Stream[DisconnectedBy]"), Some("user"));
    assert_eq!(get_pair(&p, "Stream[StreamUrl]"), call.ws_url.as_deref());
    assert!(get_pair(&p, "Stream[Duration]").unwrap().parse::<u64>().unwrap() >= 1);
    assert!(get_pair(&p, "Stream[RecordingUrl]").unwrap().ends_with(".mp3"));
    assert_eq!(get_pair(&p, "Stream[Error]"), None);

    // Callbacks: answered, then terminal; multipart by default.
    assert_eq!(call.callbacks_sent.iter().map(|(s, _)| *s).collect::<Vec<_>>(), [200, 200]);
    let cbs = gw.callbacks_for(&sid);
    assert_eq!(cbs.len(), 2);
    assert!(cbs.iter().all(|(path, ct, _)| path == "/cb" && ct.starts_with("multipart/form-data; boundary=")));
    let answered = &cbs[0].2;
    assert_eq!(answered["EventType"], "answered");
    assert_eq!(answered["Status"], "in-progress");
    let t = &cbs[1].2;
    assert_eq!(t["EventType"], "terminal");
    assert_eq!(t["Status"], "completed");
    assert_eq!(t["CustomField"], "order-42");
    assert_eq!(t["From"], CUSTOMER);
    assert_eq!(t["To"], EXOPHONE);
    assert_eq!(t["PhoneNumberSid"], EXOPHONE);
    assert_eq!(t["Direction"], "outbound-api");
    assert!(t["RecordingUrl"].as_str().unwrap().ends_with(".mp3"));
    assert_eq!(t["DateUpdated"].as_str().map(str::len), Some(19));
    let secs: u64 = t["ConversationDuration"].as_str().unwrap().parse().unwrap();
    assert!(secs >= 1);
    let legs: Value = serde_json::from_str(t["Legs"].as_str().unwrap()).unwrap();
    assert_eq!(legs[0]["Status"], "completed");
    assert_eq!(legs[0]["OnCallDuration"], secs);

    // Call details, JSON and XML.
    let details = |ext: &'static str| {
        let url = format!("{}/v1/Accounts/exotelsim/Calls/{sid}{ext}", fake.base_url());
        async move { reqwest::Client::new().get(url).basic_auth("fake-key", Some("fake-token")).send().await.unwrap() }
    };
    let v: Value = details(".json").await.json().await.unwrap();
    assert_eq!(v["Call"]["Status"], "completed");
    assert_eq!(v["Call"]["Duration"], secs);
    assert!(v["Call"]["EndTime"].is_string());
    assert!(v["Call"]["RecordingUrl"].as_str().unwrap().ends_with(".mp3"));
    let xml = details("").await.text().await.unwrap();
    assert!(xml.contains(&format!("<Sid>{sid}</Sid>")) && xml.contains("<Status>completed</Status>"), "{xml}");

    // Every request to the fake is recorded, credentials included.
    let reqs = fake.requests();
    assert_eq!(reqs[0].method, "POST");
    assert_eq!(reqs[0].path, "/v1/Accounts/exotelsim/Calls/connect.json");
    assert_eq!(reqs[0].field("CustomField"), Some("order-42"));
    assert!(reqs[0].header("authorization").unwrap().starts_with("Basic "));
    assert_eq!(reqs[0].status, Some(200));
    fake.shutdown().await;
    assert!(t0.elapsed() < Duration::from_secs(6), "{:?}", t0.elapsed());
}

#[tokio::test]
async fn bot_hangup_takes_the_302_branch_and_a_failed_callback_is_retried() {
    let gw = Gateway::start().await;
    let fake = FakeExotel::start(quick(FakeExotelConfig {
        voicebot_url: Some(format!("{}/voicebot", gw.url)),
        passthru_url: Some(format!("{}/passthru", gw.url)),
        ..FakeExotelConfig::default()
    }))
    .await
    .unwrap();
    let cb = format!("{}/cb/flaky", gw.url);
    let form = [
        ("From", "09876543210"),
        ("CallerId", EXOPHONE),
        ("Url", &flow_url("exotelsim")),
        ("CustomField", "hangup"),
        ("StatusCallback", &cb),
        ("StatusCallbackContentType", "application/json"),
        ("StatusCallbackEvents[]", "terminal"),
    ];
    let sid = sid_of(place(&fake, "connect.json", &form).await).await;
    gw.log().transfer_sid = Some(sid.clone());
    let call = done(&fake, &sid).await;

    let report = call.report.as_ref().unwrap();
    assert!(report.closed_by_bot, "{}", report.summary());
    assert_eq!(call.passthru_status, Some(302), "the redirect is an answer, not a hop");
    let p = gw.log().passthru[0].clone();
    assert_eq!(get_pair(&p, "Stream[DisconnectedBy]"), Some("bot"));
    assert_eq!(get_pair(&p, "Stream[Status]"), Some("completed"));

    // 503 first, then delivered: the same body twice.
    assert_eq!(call.callbacks_sent.iter().map(|(s, _)| *s).collect::<Vec<_>>(), [503, 200]);
    assert_eq!(call.callbacks_sent[0].1, call.callbacks_sent[1].1);
    let cbs = gw.callbacks_for(&sid);
    assert_eq!(cbs.len(), 2);
    let (_, ct, body) = &cbs[1];
    assert_eq!(ct, "application/json");
    assert_eq!(body["EventType"], "terminal");
    assert_eq!(body["Status"], "completed");
    assert_eq!(body["CustomField"], "hangup");
    assert_eq!(body["RecordingUrl"], Value::Null);
    assert!(body["ConversationDuration"].as_u64().unwrap() >= 1);
    assert_eq!(body["Legs"][0]["AnsweredBy"], "Human");
    assert_eq!(body, &serde_json::from_str::<Value>(&call.callbacks_sent[1].1).unwrap());
    fake.shutdown().await;
}

#[tokio::test]
async fn stream_mode_goes_straight_to_the_bot() {
    let gw = Gateway::start().await;
    let fake = FakeExotel::start(quick(FakeExotelConfig {
        voicebot_url: Some(format!("{}/voicebot", gw.url)),
        passthru_url: Some(format!("{}/passthru", gw.url)),
        ..FakeExotelConfig::default()
    }))
    .await
    .unwrap();
    let stream_url = format!("{}/media?token=t1", gw.bot);
    let cb = format!("{}/cb", gw.url);
    let form = [
        ("From", CUSTOMER),
        ("CallerId", EXOPHONE),
        ("StreamUrl", &stream_url),
        ("StreamType", "bidirectional"),
        ("StatusCallback", &cb),
        ("StatusCallbackContentType", "application/json"),
    ];
    let sid = sid_of(place(&fake, "connect.json", &form).await).await;
    let call = done(&fake, &sid).await;
    assert_eq!(call.mode, CallMode::Stream { url: stream_url.clone() });
    assert_eq!(call.ws_url.as_deref(), Some(stream_url.as_str()));
    assert!(call.report.as_ref().unwrap().ok());
    assert!(gw.log().voicebot.is_empty(), "no dynamic URL in stream mode");
    assert!(gw.log().passthru.is_empty(), "no Passthru in stream mode");
    assert_eq!(call.passthru_status, None);
    // No StatusCallbackEvents: the four default fields only.
    let cbs = gw.callbacks_for(&sid);
    assert_eq!(cbs.len(), 1);
    let body = cbs[0].2.as_object().unwrap();
    let mut keys: Vec<&str> = body.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["CallSid", "DateUpdated", "RecordingUrl", "Status"]);
    assert_eq!(body["Status"], "completed");
    fake.shutdown().await;
}

#[tokio::test]
async fn unanswered_calls_post_their_status_without_media() {
    let gw = Gateway::start().await;
    let scripts = HashMap::from([
        ("+91 90000 00001".to_string(), Script::Busy),
        ("+919000000002".to_string(), Script::NoAnswer),
        ("+919000000003".to_string(), Script::Fail),
    ]);
    let fake = FakeExotel::start(quick(FakeExotelConfig {
        voicebot_url: Some(format!("{}/voicebot", gw.url)),
        passthru_url: Some(format!("{}/passthru", gw.url)),
        scripts,
        ..FakeExotelConfig::default()
    }))
    .await
    .unwrap();
    let cb = format!("{}/cb", gw.url);
    let url = flow_url("exotelsim");
    for (number, status) in [("+919000000001", "busy"), ("+919000000002", "no-answer"), ("+919000000003", "failed")] {
        let form = [
            ("From", number),
            ("CallerId", EXOPHONE),
            ("Url", url.as_str()),
            ("StatusCallback", &cb),
            ("StatusCallbackEvents[0]", "terminal"),
            ("CustomField", "c1"),
        ];
        let resp = place(&fake, "connect.json", &form).await;
        let sid = sid_of(resp).await;
        let call = done(&fake, &sid).await;
        assert_eq!(call.state, status);
        assert!(call.report.is_none() && call.ws_url.is_none() && call.passthru_status.is_none());
        let cbs = gw.callbacks_for(&sid);
        assert_eq!(cbs.len(), 1, "{status}");
        let body = &cbs[0].2;
        assert_eq!(body["Status"], status);
        assert_eq!(body["EventType"], "terminal");
        assert_eq!(body["ConversationDuration"], "0");
        assert_eq!(body["CustomField"], "c1");
        let legs: Value = serde_json::from_str(body["Legs"].as_str().unwrap()).unwrap();
        assert_eq!(legs[0]["Status"], status);
        assert_eq!(legs[0]["AnsweredBy"], "NA");
    }
    assert!(gw.log().voicebot.is_empty() && gw.log().passthru.is_empty());
    fake.shutdown().await;
}

#[tokio::test]
async fn timed_scripts_ring_and_hold_the_line_that_long() {
    let gw = Gateway::start().await;
    let scripts = HashMap::from([
        ("+919000000001".to_string(), "no-answer:1".parse().unwrap()),
        ("+919000000002".to_string(), "answer:3".parse().unwrap()),
    ]);
    let fake = FakeExotel::start(quick(FakeExotelConfig {
        voicebot_url: Some(format!("{}/voicebot", gw.url)),
        scripts,
        ..FakeExotelConfig::default()
    }))
    .await
    .unwrap();
    let url = flow_url("exotelsim");
    let mut took = Vec::new();
    for number in ["+919000000001", "+919000000002", CUSTOMER] {
        let form = [("From", number), ("CallerId", EXOPHONE), ("Url", url.as_str())];
        let t = Instant::now();
        let sid = sid_of(place(&fake, "connect.json", &form).await).await;
        let call = done(&fake, &sid).await;
        took.push(t.elapsed());
        assert_eq!(call.state, if number.ends_with('1') { "no-answer" } else { "completed" }, "{number}");
    }
    // Lower bounds only (a sleep never ends early): the timed calls last their scripted time
    // (the held one 3 s after speaking, the untimed one 0.5 s after the bot goes quiet).
    assert!(took[0] >= Duration::from_secs(1), "rang {:?}", took[0]);
    assert!(took[1] >= took[2] + Duration::from_secs(1), "held {:?}, untimed {:?}", took[1], took[2]);
    fake.shutdown().await;
}

#[tokio::test]
async fn a_dynamic_url_failure_reaches_the_passthru_as_a_failed_stream() {
    let gw = Gateway::start().await;
    let fake = FakeExotel::start(quick(FakeExotelConfig {
        voicebot_url: Some(format!("{}/voicebot-broken", gw.url)),
        passthru_url: Some(format!("{}/passthru", gw.url)),
        ..FakeExotelConfig::default()
    }))
    .await
    .unwrap();
    let url = flow_url("exotelsim");
    let sid =
        sid_of(place(&fake, "connect.json", &[("From", CUSTOMER), ("CallerId", EXOPHONE), ("Url", &url)]).await).await;
    let call = done(&fake, &sid).await;
    assert_eq!(call.state, "completed");
    assert!(call.report.is_none());
    assert!(call.media_error.as_deref().unwrap().contains("HTTP 500"), "{:?}", call.media_error);
    assert_eq!(call.passthru_status, Some(200));
    let p = gw.log().passthru[0].clone();
    assert_eq!(get_pair(&p, "Stream[Status]"), Some("failed"));
    assert_eq!(get_pair(&p, "Stream[DisconnectedBy]"), Some("NA"));
    assert!(get_pair(&p, "Stream[Error]").unwrap().contains("HTTP 500"));
    assert!(call.callbacks_sent.is_empty(), "no StatusCallback was asked for");
    fake.shutdown().await;
}

#[tokio::test]
async fn rejections_look_like_exotels() {
    let scripts = HashMap::from([
        ("+919000000429".to_string(), Script::http_error(429, Some(30))),
        (
            "+919000000402".to_string(),
            Script::HttpError { status: 402, retry_after: None, message: "Low balance".into() },
        ),
    ]);
    let fake =
        FakeExotel::start(FakeExotelConfig { scripts, default_script: Script::Busy, ..FakeExotelConfig::default() })
            .await
            .unwrap();
    let url = flow_url("exotelsim");
    let ok = [("From", CUSTOMER), ("CallerId", EXOPHONE), ("Url", url.as_str())];

    let (status, e) = rest_exception(place_as(&fake, "fake-key", "wrong", "connect.json", &ok).await).await;
    assert_eq!(status, 401);
    assert!(e["Message"].as_str().unwrap().contains("Authentication"));

    let no_caller_id = [("From", CUSTOMER), ("Url", url.as_str())];
    let (status, e) = rest_exception(place(&fake, "connect.json", &no_caller_id).await).await;
    assert_eq!(status, 400);
    assert!(e["Message"].as_str().unwrap().contains("CallerId"), "{e}");

    let long = "x".repeat(129);
    let mut too_long = ok.to_vec();
    too_long.push(("CustomField", &long));
    let (status, e) = rest_exception(place(&fake, "connect.json", &too_long).await).await;
    assert_eq!(status, 400);
    assert!(e["Message"].as_str().unwrap().contains("CustomField"), "{e}");

    let limited = [("From", "+91 90000 00429"), ("CallerId", EXOPHONE), ("Url", url.as_str())];
    let resp = place(&fake, "connect.json", &limited).await;
    assert_eq!(resp.headers()[RETRY_AFTER], "30");
    assert_eq!(rest_exception(resp).await.0, 429);
    let broke = [("From", "+919000000402"), ("CallerId", EXOPHONE), ("Url", url.as_str())];
    let (status, e) = rest_exception(place(&fake, "connect.json", &broke).await).await;
    assert_eq!((status, e["Message"].as_str()), (402, Some("Low balance")));

    // Another account's path.
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/Accounts/someoneelse/Calls/connect.json", fake.base_url()))
        .basic_auth("fake-key", Some("fake-token"))
        .form(&ok)
        .send()
        .await
        .unwrap();
    assert_eq!(rest_exception(resp).await.0, 404);
    // An unknown call.
    let resp = reqwest::Client::new()
        .get(format!("{}/v1/Accounts/exotelsim/Calls/{}.json", fake.base_url(), "0".repeat(32)))
        .basic_auth("fake-key", Some("fake-token"))
        .send()
        .await
        .unwrap();
    assert_eq!(rest_exception(resp).await.0, 404);

    // None of those placed a call.
    assert!(fake.calls().is_empty());

    // Without .json: XML, for answers and errors alike.
    let resp = place(&fake, "connect", &ok).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()[CONTENT_TYPE].to_str().unwrap().contains("xml"));
    let xml = resp.text().await.unwrap();
    assert!(xml.starts_with("<?xml"), "{xml}");
    assert!(xml.contains("<TwilioResponse>") && xml.contains("<Status>in-progress</Status>"), "{xml}");
    let sid = xml.split("<Sid>").nth(1).and_then(|r| r.split("</Sid>").next()).unwrap();
    assert_eq!(sid.len(), 32);
    assert!(xml.contains(&format!("<Uri>/v1/Accounts/exotelsim/Calls/{sid}</Uri>")), "{xml}");
    let resp = place(&fake, "connect", &no_caller_id).await;
    assert_eq!(resp.status(), 400);
    let xml = resp.text().await.unwrap();
    assert!(xml.contains("<RestException>") && xml.contains("CallerId"), "{xml}");
    assert_eq!(fake.calls().len(), 1);

    let statuses: Vec<Option<u16>> = fake.requests().iter().map(|r| r.status).collect();
    let want = [401, 400, 400, 429, 402, 404, 404, 200, 400].map(Some);
    assert_eq!(statuses, want);
    fake.shutdown().await;
}

#[tokio::test]
async fn the_rate_limit_answers_429_with_retry_after() {
    let fake = FakeExotel::start(FakeExotelConfig {
        rate_limit: Some(2),
        default_script: Script::Busy,
        ..FakeExotelConfig::default()
    })
    .await
    .unwrap();
    let url = flow_url("exotelsim");
    let ok = [("From", CUSTOMER), ("CallerId", EXOPHONE), ("Url", url.as_str())];
    for _ in 0..2 {
        assert_eq!(place(&fake, "connect.json", &ok).await.status(), 200);
    }
    let resp = place(&fake, "connect.json", &ok).await;
    let retry: u64 = resp.headers()[RETRY_AFTER].to_str().unwrap().parse().unwrap();
    assert!((58..=60).contains(&retry), "{retry}");
    assert_eq!(rest_exception(resp).await.0, 429);
    assert_eq!(fake.calls().len(), 2);
    fake.shutdown().await;
}

#[tokio::test]
async fn a_hanging_connect_answers_500_late() {
    let scripts = HashMap::from([(CUSTOMER.to_string(), Script::Hang { secs: 1 })]);
    let fake = FakeExotel::start(FakeExotelConfig { scripts, ..FakeExotelConfig::default() }).await.unwrap();
    let url = flow_url("exotelsim");
    let base = fake.base_url();
    let started = Instant::now();
    let pending = tokio::spawn(async move {
        reqwest::Client::new()
            .post(format!("{base}/v1/Accounts/exotelsim/Calls/connect.json"))
            .basic_auth("fake-key", Some("fake-token"))
            .form(&[("From", CUSTOMER), ("CallerId", EXOPHONE), ("Url", url.as_str())])
            .send()
            .await
            .unwrap()
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(fake.requests().len(), 1);
    assert_eq!(fake.requests()[0].status, None, "still in flight");
    let resp = pending.await.unwrap();
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!(rest_exception(resp).await.0, 500);
    assert_eq!(fake.requests()[0].status, Some(500));
    assert!(fake.calls().is_empty());
    fake.shutdown().await;
}

#[tokio::test]
async fn multipart_requests_are_accepted_too() {
    let gw = Gateway::start().await;
    let fake = FakeExotel::start(FakeExotelConfig { default_script: Script::NoAnswer, ..FakeExotelConfig::default() })
        .await
        .unwrap();
    let cb = format!("{}/cb", gw.url);
    let fields = [
        ("From", CUSTOMER),
        ("CallerId", EXOPHONE),
        ("Url", &flow_url("exotelsim")),
        ("StatusCallback", &cb),
        ("CustomField", "mp"),
    ];
    let mut body = String::new();
    for (k, v) in fields {
        body.push_str(&format!("--XB\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n"));
    }
    body.push_str("--XB--\r\n");
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/Accounts/exotelsim/Calls/connect.json", fake.base_url()))
        .basic_auth("fake-key", Some("fake-token"))
        .header(CONTENT_TYPE, "multipart/form-data; boundary=XB")
        .body(body)
        .send()
        .await
        .unwrap();
    let sid = sid_of(resp).await;
    let call = done(&fake, &sid).await;
    assert_eq!((call.from.as_str(), call.custom_field.as_deref()), (CUSTOMER, Some("mp")));
    assert_eq!(call.state, "no-answer");
    // The default callback: four fields, multipart.
    let cbs = gw.callbacks_for(&sid);
    assert_eq!(cbs.len(), 1);
    assert_eq!(cbs[0].2["Status"], "no-answer");
    assert_eq!(cbs[0].2["RecordingUrl"], "");
    assert!(cbs[0].2.get("EventType").is_none());
    fake.shutdown().await;
}

#[tokio::test]
async fn a_ws_voicebot_url_is_dialled_directly_and_a_dead_one_is_tried_twice() {
    let gw = Gateway::start().await;
    let fake = FakeExotel::start(quick(FakeExotelConfig {
        voicebot_url: Some(format!("{}/media", gw.bot)),
        ..FakeExotelConfig::default()
    }))
    .await
    .unwrap();
    let url = flow_url("exotelsim");
    let form = [("From", CUSTOMER), ("CallerId", EXOPHONE), ("Url", url.as_str())];
    let sid = sid_of(place(&fake, "connect.json", &form).await).await;

    // Nothing listens on this port: the handshake fails, is retried once, and the call goes on.
    let dead_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dead = FakeExotel::start(FakeExotelConfig {
        voicebot_url: Some(format!("ws://127.0.0.1:{dead_port}/media")),
        passthru_url: Some(format!("{}/passthru", gw.url)),
        ..FakeExotelConfig::default()
    })
    .await
    .unwrap();
    let dead_sid = sid_of(place(&dead, "connect.json", &form).await).await;
    let dead_call = done(&dead, &dead_sid).await;
    assert_eq!(dead_call.ws_attempts, 2);
    assert!(dead_call.report.is_none());
    assert!(dead_call.media_error.is_some());
    let p = gw.log().passthru[0].clone();
    assert_eq!(get_pair(&p, "Stream[Status]"), Some("failed"));
    assert_eq!(get_pair(&p, "Stream[StreamUrl]"), Some(format!("ws://127.0.0.1:{dead_port}/media").as_str()));

    let call = done(&fake, &sid).await;
    assert_eq!(call.ws_attempts, 1);
    assert!(call.report.as_ref().unwrap().ok());
    assert!(gw.log().voicebot.is_empty(), "a ws:// applet URL needs no dynamic-URL request");
    assert_eq!(call.passthru_status, None, "no Passthru configured");
    assert!(fake.calls().len() == 1 && dead.calls().len() == 1);
    fake.shutdown().await;
    dead.shutdown().await;
}

#[tokio::test]
async fn events_are_one_masked_line_each() {
    let fake = FakeExotel::start(FakeExotelConfig { default_script: Script::Busy, ..FakeExotelConfig::default() })
        .await
        .unwrap();
    let mut events = fake.subscribe();
    let url = flow_url("exotelsim");
    let sid =
        sid_of(place(&fake, "connect.json", &[("From", CUSTOMER), ("CallerId", EXOPHONE), ("Url", &url)]).await).await;
    let request = events.recv().await.unwrap().to_string();
    assert_eq!(request, format!("POST /v1/Accounts/exotelsim/Calls/connect.json -> 200 From=+91******3210 Sid={sid}"));
    let done_line = tokio::time::timeout(DONE_WITHIN, events.recv()).await.unwrap().unwrap().to_string();
    assert!(done_line.starts_with(&format!("call {sid} to +91******3210 (busy): busy")), "{done_line}");
    assert!(!done_line.contains(CUSTOMER) && !request.contains("fake-token"));
    fake.shutdown().await;
}
