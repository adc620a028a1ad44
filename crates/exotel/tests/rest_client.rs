//! `exotel::rest::Client` against a tiny fake Exotel on 127.0.0.1.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use base64::Engine;
use exotel::rest::{
    Account, CallTarget, CallbackContentType, Client, ConnectRequest, RecordingChannels, RestError, StatusCallbackEvent,
};

const SID: &str = "acme1";
const KEY: &str = "key-4f1c2b";
const TOKEN: &str = "tok-9a8b7c6d5e4f-SECRET";

const DOC_JSON: &str = r#"{
  "Call": {
    "Sid": "80bfbec2d78bbbf10fb851f4fa165211",
    "ParentCallSid": null,
    "DateCreated": "2017-03-03 12:30:24",
    "DateUpdated": "2017-03-03 12:30:27",
    "AccountSid": "acme1",
    "To": "0XXXXX40682",
    "From": "09876543210",
    "PhoneNumberSid": "0XXXXXX4890",
    "Status": "in-progress",
    "StartTime": "2017-03-03 12:30:27",
    "EndTime": null,
    "Duration": null,
    "Price": null,
    "Direction": "outbound-api",
    "AnsweredBy": null,
    "ForwardedFrom": null,
    "CallerName": null,
    "Uri": "/v1/Accounts/acme1/Calls.json/80bfbec2d78bbbf10fb851f4fa165211",
    "RecordingUrl": null
  }
}"#;

const DOC_XML: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<TwilioResponse>
  <Call>
    <Sid>5c0e4a9b1f2d3e4f5a6b7c8d9e0f1a2b</Sid>
    <ParentCallSid/>
    <DateCreated>2017-03-03 12:30:24</DateCreated>
    <AccountSid>acme1</AccountSid>
    <To>0XXXXX40682</To>
    <From>09876543210</From>
    <Status>queued</Status>
    <Duration>0</Duration>
    <Direction>outbound-api</Direction>
    <RecordingUrl/>
  </Call>
</TwilioResponse>"#;

#[derive(Clone, Debug)]
struct Seen {
    method: String,
    path: String,
    authorization: Option<String>,
    content_type: Option<String>,
    body: String,
}

#[derive(Clone)]
struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
    delay: Duration,
}

impl Reply {
    fn new(status: u16, body: &str) -> Self {
        Self { status, headers: Vec::new(), body: body.to_string(), delay: Duration::ZERO }
    }

    fn header(mut self, name: &'static str, value: &str) -> Self {
        self.headers.push((name, value.to_string()));
        self
    }
}

struct Fake {
    base: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Fake {
    async fn start(reply: Reply) -> Self {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let app = Router::new().fallback(move |req: Request| {
            let log = log.clone();
            let reply = reply.clone();
            async move {
                let (parts, body) = req.into_parts();
                let body = axum::body::to_bytes(body, 1 << 20).await.unwrap();
                let header = |name: &str| parts.headers.get(name).map(|v| v.to_str().unwrap().to_string());
                log.lock().unwrap().push(Seen {
                    method: parts.method.to_string(),
                    path: parts.uri.path().to_string(),
                    authorization: header("authorization"),
                    content_type: header("content-type"),
                    body: String::from_utf8(body.to_vec()).unwrap(),
                });
                tokio::time::sleep(reply.delay).await;
                let mut response = Response::builder().status(reply.status);
                for (name, value) in &reply.headers {
                    response = response.header(*name, value);
                }
                response.body(Body::from(reply.body)).unwrap()
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { base: format!("http://{addr}"), seen }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn client(&self) -> Client {
        Client::new(account(&self.base)).unwrap()
    }
}

fn account(base: &str) -> Account {
    Account { base_url: Some(base.to_string()), ..Account::new(SID, KEY, TOKEN) }
}

fn flow_request() -> ConnectRequest {
    let mut r = ConnectRequest::new("+919876543210", "08047112233", CallTarget::Flow { app_id: "765432".into() });
    r.call_type = Some("trans".into());
    r.time_limit = Some(1800);
    r.time_out = Some(45);
    r.status_callback = Some("https://gw.example.com/exotel/status?tok=h1".into());
    r.status_callback_events = vec![StatusCallbackEvent::Terminal, StatusCallbackEvent::Answered];
    r.status_callback_content_type = Some(CallbackContentType::Json);
    r.custom_field = Some("campaign=7&contact=42".into());
    r.record = Some(true);
    r.recording_channels = Some(RecordingChannels::Dual);
    r
}

fn stream_request() -> ConnectRequest {
    let mut r = ConnectRequest::new(
        "09876543210",
        "08047112233",
        CallTarget::Stream { stream_url: "wss://bot.example.com/media?sample-rate=16000&t=abc".into() },
    );
    r.stream_name = Some("riya".into());
    r
}

fn expected_auth() -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{KEY}:{TOKEN}")))
}

/// One POST to `Calls/connect.json`, Basic auth, urlencoded form equal to `req.form(SID)`.
fn assert_single_connect(fake: &Fake, req: &ConnectRequest) {
    let seen = fake.seen();
    assert_eq!(seen.len(), 1, "expected exactly one request, got {seen:#?}");
    let s = &seen[0];
    assert_eq!(s.method, "POST");
    assert_eq!(s.path, format!("/v1/Accounts/{SID}/Calls/connect.json"));
    assert_eq!(s.authorization.as_deref(), Some(expected_auth().as_str()));
    assert_eq!(s.content_type.as_deref(), Some("application/x-www-form-urlencoded"));
    let form: Vec<(String, String)> = serde_urlencoded::from_str(&s.body).unwrap();
    assert_eq!(form, req.form(SID));
}

/// The token must not leak through Display or Debug.
fn assert_clean(e: &RestError) {
    let shown = format!("{e} | {e:?}");
    assert!(!shown.contains(TOKEN), "token leaked: {shown}");
}

async fn connect_err(reply: Reply) -> (RestError, Fake) {
    let fake = Fake::start(reply).await;
    let req = flow_request();
    let err = fake.client().connect(&req).await.unwrap_err();
    assert_single_connect(&fake, &req);
    assert_clean(&err);
    (err, fake)
}

#[tokio::test]
async fn connect_flow_with_documented_json() {
    let fake = Fake::start(Reply::new(200, DOC_JSON).header("content-type", "application/json")).await;
    let req = flow_request();
    let call = fake.client().connect(&req).await.unwrap();
    assert_single_connect(&fake, &req);
    assert_eq!(call.sid, "80bfbec2d78bbbf10fb851f4fa165211");
    assert_eq!(call.status.as_deref(), Some("in-progress"));
    assert_eq!(call.direction.as_deref(), Some("outbound-api"));
    assert_eq!(call.from.as_deref(), Some("09876543210"));
    assert_eq!(call.phone_number_sid.as_deref(), Some("0XXXXXX4890"));
    assert_eq!(call.date_created.as_deref(), Some("2017-03-03 12:30:24"));
    assert_eq!((call.end_time, call.duration, call.price, call.parent_call_sid), (None, None, None, None));

    // The exact wire form.
    let form: Vec<(String, String)> = serde_urlencoded::from_str(&fake.seen()[0].body).unwrap();
    let keys: Vec<&str> = form.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        [
            "From",
            "CallerId",
            "Url",
            "CallType",
            "TimeLimit",
            "TimeOut",
            "StatusCallback",
            "StatusCallbackEvents[0]",
            "StatusCallbackEvents[1]",
            "StatusCallbackContentType",
            "CustomField",
            "Record",
            "RecordingChannels",
        ]
    );
    assert_eq!(form[2].1, "http://my.exotel.com/acme1/exoml/start_voice/765432");
    assert_eq!(form[10].1, "campaign=7&contact=42");
}

#[tokio::test]
async fn connect_stream_with_xml_answer() {
    let fake = Fake::start(Reply::new(200, DOC_XML).header("content-type", "application/xml")).await;
    let req = stream_request();
    let call = fake.client().connect(&req).await.unwrap();
    assert_single_connect(&fake, &req);
    assert_eq!(call.sid, "5c0e4a9b1f2d3e4f5a6b7c8d9e0f1a2b");
    assert_eq!(call.status.as_deref(), Some("queued"));
    assert_eq!(call.duration, Some(0));
    let form: Vec<(String, String)> = serde_urlencoded::from_str(&fake.seen()[0].body).unwrap();
    assert!(form.contains(&("StreamUrl".into(), "wss://bot.example.com/media?sample-rate=16000&t=abc".into())));
    assert!(form.contains(&("StreamType".into(), "bidirectional".into())));
    assert!(form.contains(&("StreamName".into(), "riya".into())));
}

#[tokio::test]
async fn bad_request_surfaces_rest_exception() {
    let body = r#"{"RestException":{"Status":400,"Message":"From number 9876543210 is invalid","Code":34001}}"#;
    let (err, _) = connect_err(Reply::new(400, body)).await;
    assert_eq!(err, RestError::BadRequest { message: "From number 9876543210 is invalid".into(), code: Some(34001) });
    assert_eq!((err.kind(), err.http_status()), ("bad_request", Some(400)));
    assert!(err.to_string().contains("From number 9876543210 is invalid"));
}

#[tokio::test]
async fn client_errors_by_status() {
    let xml401 = "<TwilioResponse><RestException><Status>401</Status><Message>Authentication is required to view this resource.</Message></RestException></TwilioResponse>";
    let (err, _) = connect_err(Reply::new(401, xml401)).await;
    assert_eq!(err, RestError::Unauthorized { message: "Authentication is required to view this resource.".into() });

    let (err, _) =
        connect_err(Reply::new(402, r#"{"RestException":{"Status":402,"Message":"Insufficient balance"}}"#)).await;
    assert_eq!(err, RestError::PaymentRequired { message: "Insufficient balance".into() });

    let (err, _) = connect_err(Reply::new(403, "Account suspended")).await;
    assert_eq!(err, RestError::Forbidden { message: "Account suspended".into() });

    let (err, _) = connect_err(Reply::new(404, "")).await;
    assert_eq!(err, RestError::NotFound { message: "Not Found".into() });

    let (err, _) = connect_err(Reply::new(409, "conflict")).await;
    assert_eq!(err, RestError::Unexpected { status: 409, message: "conflict".into() });
    assert_eq!(err.kind(), "unexpected");
}

#[tokio::test]
async fn rate_limited_honours_retry_after_and_does_not_retry() {
    let body = r#"{"RestException":{"Status":429,"Message":"Too Many Requests"}}"#;
    let (err, fake) = connect_err(Reply::new(429, body).header("retry-after", "7")).await;
    assert_eq!(
        err,
        RestError::RateLimited { retry_after: Some(Duration::from_secs(7)), message: "Too Many Requests".into() }
    );
    assert_eq!(fake.seen().len(), 1);
    assert_eq!((err.kind(), err.http_status()), ("rate_limited", Some(429)));

    let (err, _) = connect_err(Reply::new(429, "")).await;
    assert_eq!(err, RestError::RateLimited { retry_after: None, message: "Too Many Requests".into() });
}

#[tokio::test]
async fn server_errors_are_ambiguous_and_not_retried() {
    for status in [500, 502, 503, 504] {
        let (err, fake) = connect_err(Reply::new(status, "upstream could not originate")).await;
        assert_eq!(err, RestError::Ambiguous { status: Some(status), message: "upstream could not originate".into() });
        assert_eq!(fake.seen().len(), 1, "{status}");
        assert_eq!((err.kind(), err.http_status()), ("ambiguous", Some(status)));
    }
}

#[tokio::test]
async fn timeout_after_sending_is_ambiguous() {
    let fake = Fake::start(Reply { delay: Duration::from_secs(5), ..Reply::new(200, DOC_JSON) }).await;
    let client = Client::with_timeout(account(&fake.base), Duration::from_millis(400)).unwrap();
    let req = flow_request();
    let started = std::time::Instant::now();
    let err = client.connect(&req).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(matches!(err, RestError::Ambiguous { status: None, .. }), "{err:?}");
    assert_single_connect(&fake, &req);
    assert_clean(&err);
}

#[tokio::test]
async fn closed_port_is_unreachable() {
    let addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let client = Client::new(account(&format!("http://{addr}"))).unwrap();
    let err = client.connect(&flow_request()).await.unwrap_err();
    assert!(matches!(err, RestError::Unreachable { .. }), "{err:?}");
    assert_eq!((err.kind(), err.http_status()), ("unreachable", None));
    assert_clean(&err);
}

#[tokio::test]
async fn success_without_sid_is_ambiguous() {
    for body in ["{}", "", r#"{"Call":{"Status":"queued"}}"#, "<TwilioResponse/>"] {
        let (err, _) = connect_err(Reply::new(200, body)).await;
        assert!(matches!(err, RestError::Ambiguous { status: Some(200), .. }), "{body:?}: {err:?}");
    }
    // "HTTP 200 with an error body" (§8.4): still ambiguous, with Exotel's message.
    let (err, _) =
        connect_err(Reply::new(200, r#"{"RestException":{"Status":400,"Message":"Invalid CallerId"}}"#)).await;
    let RestError::Ambiguous { status: Some(200), message } = &err else { panic!("{err:?}") };
    assert!(message.contains("Invalid CallerId"), "{message}");
}

#[tokio::test]
async fn token_echoed_by_the_server_is_scrubbed() {
    let body = format!(r#"{{"RestException":{{"Status":401,"Message":"bad token {TOKEN}"}}}}"#);
    let (err, _) = connect_err(Reply::new(401, &body)).await;
    assert_eq!(err, RestError::Unauthorized { message: "bad token ***".into() });
    let (err, _) = connect_err(Reply::new(200, &format!("oops {TOKEN}"))).await;
    assert!(matches!(err, RestError::Ambiguous { .. }));
}

#[tokio::test]
async fn invalid_request_is_never_sent() {
    let fake = Fake::start(Reply::new(200, DOC_JSON)).await;
    let mut req = flow_request();
    req.time_limit = Some(20_000);
    let err = fake.client().connect(&req).await.unwrap_err();
    assert_eq!((err.kind(), err.field()), ("invalid", Some("TimeLimit")));
    assert!(fake.seen().is_empty());
    assert_clean(&err);
}

#[tokio::test]
async fn call_details_gets_the_call() {
    let fake = Fake::start(Reply::new(200, DOC_JSON)).await;
    let call = fake.client().call_details("80bfbec2d78bbbf10fb851f4fa165211").await.unwrap();
    assert_eq!(call.sid, "80bfbec2d78bbbf10fb851f4fa165211");
    let seen = fake.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, "GET");
    assert_eq!(seen[0].path, "/v1/Accounts/acme1/Calls/80bfbec2d78bbbf10fb851f4fa165211.json");
    assert_eq!(seen[0].authorization.as_deref(), Some(expected_auth().as_str()));
    assert_eq!(seen[0].body, "");
}

#[tokio::test]
async fn call_details_escapes_the_sid_and_maps_errors() {
    let fake = Fake::start(Reply::new(404, r#"{"RestException":{"Status":404,"Message":"Call not found"}}"#)).await;
    let err = fake.client().call_details("a/b c?d").await.unwrap_err();
    assert_eq!(err, RestError::NotFound { message: "Call not found".into() });
    assert_eq!(fake.seen()[0].path, "/v1/Accounts/acme1/Calls/a%2Fb%20c%3Fd.json");
    assert_clean(&err);

    let err = fake.client().call_details("  ").await.unwrap_err();
    assert_eq!(err.field(), Some("CallSid"));
    assert_eq!(fake.seen().len(), 1);
}

#[tokio::test]
async fn base_url_with_a_path_prefix() {
    let fake = Fake::start(Reply::new(200, DOC_JSON)).await;
    let client = Client::new(account(&format!("{}/exotel/", fake.base))).unwrap();
    client.connect(&stream_request()).await.unwrap();
    assert_eq!(fake.seen()[0].path, "/exotel/v1/Accounts/acme1/Calls/connect.json");
}

#[test]
fn account_debug_and_client_debug_hide_the_token() {
    let a = account("http://127.0.0.1:4010");
    let shown = format!("{a:?} {a:#?}");
    assert!(!shown.contains(TOKEN), "{shown}");
    assert!(shown.contains("***"));
    let client = Client::new(a).unwrap();
    assert!(!format!("{client:?}").contains(TOKEN));
    assert_eq!(client.account().api_base(), "http://127.0.0.1:4010");
}

#[test]
fn unusable_account_is_refused() {
    let err = Client::new(Account::new(SID, KEY, "")).unwrap_err();
    assert_eq!(err.field(), Some("ApiToken"));
    let err =
        Client::new(Account { base_url: Some(format!("http://{KEY}:{TOKEN}@h")), ..Account::new(SID, KEY, TOKEN) })
            .unwrap_err();
    assert_eq!(err.field(), Some("BaseUrl"));
    assert_clean(&err);
}
