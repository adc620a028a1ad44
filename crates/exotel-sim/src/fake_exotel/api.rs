//! The REST side: routing, Basic auth, `Calls/connect` validation, rate limiting, and answers in
//! JSON (`.json` paths) or Twilio-style XML (docs/protocol.md §8).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Map, Value, json};

use super::form::{self, field};
use super::record::{CallMode, FakeCall, FakeEvent, RecordedRequest};
use super::{Script, Shared, lock, play};

/// Requests are small forms; anything bigger is a client bug.
const MAX_BODY: usize = 1 << 20;
const MAX_TIME_LIMIT: u32 = 14_400;
const MAX_TIME_OUT: u32 = 60;
const MAX_CUSTOM_FIELD: usize = 128;
/// `StreamUrl`, query included, must be shorter than this.
const MAX_STREAM_URL: usize = 600;
const THROTTLE_LIMIT: usize = 100;
/// RestException codes: Exotel's are undocumented beyond one sighting (34001, an invalid From).
const CODE_INVALID: u32 = 34001;
const CODE_MISSING: u32 = 34002;

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new().fallback(handle).with_state(shared)
}

/// Every request lands here: recorded first, then routed by hand (the paths are few, and a pure
/// router is easy to test).
async fn handle(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY).await else {
        return StatusCode::PAYLOAD_TOO_LARGE.into_response();
    };
    let content_type = parts.headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok());
    let form = form::parse_body(content_type, &bytes);
    let record = RecordedRequest {
        method: parts.method.to_string(),
        path: path.clone(),
        query: parts.uri.query().map(|q| form::parse_urlencoded(q.as_bytes())).unwrap_or_default(),
        headers: parts
            .headers
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect(),
        form: form.clone(),
        status: None,
    };
    let index = shared.record_request(record);
    let (response, call_sid) = dispatch(&shared, &parts.method, &parts.headers, &path, &form).await;
    let status = response.status().as_u16();
    shared.set_request_status(index, status);
    let from = field(&form, "From").map(str::to_string);
    shared.emit(FakeEvent::Request { method: parts.method.to_string(), path, status, from, call_sid });
    response
}

async fn dispatch(
    shared: &Arc<Shared>,
    method: &Method,
    headers: &HeaderMap,
    path: &str,
    form: &[(String, String)],
) -> (Response, Option<String>) {
    let cfg = &shared.cfg;
    let fmt = Format::of(path);
    if !authorized(headers, &cfg.api_key, &cfg.api_token) {
        return (fmt.error(StatusCode::UNAUTHORIZED, "Authentication failed", None), None);
    }
    match route(method, path, &cfg.sid) {
        Route::Connect { format } => connect(shared, format, form).await,
        Route::CallDetails { call_sid, format } => match shared.call(&call_sid) {
            Some(call) => (format.ok(call_document(&call, &cfg.sid, &cfg.exophone, format)), None),
            None => (format.error(StatusCode::NOT_FOUND, &format!("Call {call_sid} not found"), None), None),
        },
        Route::ActiveStreams => (active_streams(shared.active_streams()), None),
        Route::SimLive => (sim_live(&lock(&shared.live)), None),
        Route::WrongAccount(sid) => (fmt.error(StatusCode::NOT_FOUND, &format!("Account {sid} not found"), None), None),
        Route::MethodNotAllowed => (fmt.error(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed", None), None),
        Route::NotFound => (fmt.error(StatusCode::NOT_FOUND, "The requested resource was not found", None), None),
    }
}

/// Calls live on the account and per caller id, now and at their peak, and the last changes: what
/// a test of a dialer's limits asserts, from Exotel's side of the wire.
fn sim_live(live: &super::LiveRecord) -> Response {
    let changes: Vec<serde_json::Value> = live
        .changes
        .iter()
        .rev()
        .take(1000)
        .rev()
        .map(|c| {
            serde_json::json!({ "at_ms": c.at.as_millis() as u64, "caller_id": c.caller_id,
                "account_live": c.account_live, "caller_live": c.caller_live })
        })
        .collect();
    axum::Json(serde_json::json!({
        "account_live": live.account_live,
        "account_peak": live.account_peak,
        "caller_live": live.caller_live,
        "caller_peak": live.caller_peak,
        "changes": changes,
        "changes_total": live.changes.len() as u64 + live.changes_dropped,
    }))
    .into_response()
}

async fn connect(shared: &Arc<Shared>, format: Format, form: &[(String, String)]) -> (Response, Option<String>) {
    let cfg = &shared.cfg;
    if let Err(retry_after) = lock(&shared.limiter).admit(Instant::now()) {
        let mut resp = format.error(
            StatusCode::TOO_MANY_REQUESTS,
            "Too Many Requests: the Calls API rate limit for this account was exceeded",
            None,
        );
        resp.headers_mut().insert(RETRY_AFTER, HeaderValue::from(retry_after));
        return (resp, None);
    }
    let req = match validate_connect(form, &cfg.sid) {
        Ok(req) => req,
        Err(e) => return (format.error(StatusCode::BAD_REQUEST, &e.message, Some(e.code)), None),
    };
    let script = shared.scripts.for_number(&req.from).clone();
    match &script {
        Script::HttpError { status, retry_after, message } => {
            let code = StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut resp = format.error(code, message, None);
            if let Some(secs) = retry_after {
                resp.headers_mut().insert(RETRY_AFTER, HeaderValue::from(*secs));
            }
            return (resp, None);
        }
        Script::Hang { secs } => {
            tokio::time::sleep(Duration::from_secs(*secs)).await;
            let msg = "Internal Server Error: the call could not be originated";
            return (format.error(StatusCode::INTERNAL_SERVER_ERROR, msg, None), None);
        }
        Script::Answer | Script::Busy | Script::NoAnswer | Script::Fail | Script::Timed { .. } => {}
    }
    let now = play::now_ist();
    let call = FakeCall {
        sid: crate::random_sid(),
        from: req.from,
        caller_id: req.caller_id,
        mode: req.mode,
        custom_field: req.custom_field,
        status_callback: req.status_callback,
        status_callback_events: req.events,
        status_callback_content_type: req.callback_content_type,
        record: req.record,
        time_limit: req.time_limit,
        time_out: req.time_out,
        script,
        state: "in-progress".into(),
        date_created: now.clone(),
        date_updated: now.clone(),
        start_time: now,
        end_time: None,
        duration: None,
        recording_url: None,
        ws_url: None,
        stream_sid: None,
        ws_attempts: 0,
        media_error: None,
        report: None,
        passthru_status: None,
        passthru_error: None,
        callbacks_sent: Vec::new(),
        done: false,
    };
    let sid = call.sid.clone();
    let body = call_document(&call, &cfg.sid, &cfg.exophone, format);
    shared.add_call(call);
    shared.spawn(play::play(shared.clone(), sid.clone()));
    (format.ok(body), Some(sid))
}

/// Which answer format a path asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Json,
    Xml,
}

impl Format {
    fn of(path: &str) -> Self {
        if path.ends_with(".json") { Self::Json } else { Self::Xml }
    }

    fn ok(self, doc: Doc) -> Response {
        match self {
            Self::Json => json_response(StatusCode::OK, &doc.to_json()),
            Self::Xml => xml_response(StatusCode::OK, &doc.to_xml()),
        }
    }

    /// `{"RestException":{"Status":..,"Message":..,"Code":..}}`, or the XML twin.
    fn error(self, status: StatusCode, message: &str, code: Option<u32>) -> Response {
        let mut doc = Doc::new("RestException");
        doc.num("Status", u64::from(status.as_u16()));
        doc.str("Message", message);
        if let Some(code) = code {
            doc.num("Code", u64::from(code));
        }
        match self {
            Self::Json => json_response(status, &doc.to_json()),
            Self::Xml => xml_response(status, &doc.to_xml()),
        }
    }
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    (status, [(CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

fn xml_response(status: StatusCode, body: &str) -> Response {
    (status, [(CONTENT_TYPE, "application/xml")], Body::from(body.to_string())).into_response()
}

/// One value in an answer document.
#[derive(Debug, Clone)]
enum Val {
    Null,
    Str(String),
    Num(u64),
}

/// An ordered, flat document under one root element: renders as `{"Root":{...}}` or
/// `<TwilioResponse><Root>...</Root></TwilioResponse>`.
#[derive(Debug, Clone)]
pub(crate) struct Doc {
    root: &'static str,
    fields: Vec<(&'static str, Val)>,
}

impl Doc {
    fn new(root: &'static str) -> Self {
        Self { root, fields: Vec::new() }
    }

    fn str(&mut self, k: &'static str, v: &str) {
        self.fields.push((k, Val::Str(v.to_string())));
    }

    fn num(&mut self, k: &'static str, v: u64) {
        self.fields.push((k, Val::Num(v)));
    }

    fn opt(&mut self, k: &'static str, v: Option<&str>) {
        self.fields.push((k, v.map_or(Val::Null, |v| Val::Str(v.to_string()))));
    }

    fn to_json(&self) -> Value {
        let inner: Map<String, Value> = self
            .fields
            .iter()
            .map(|(k, v)| {
                let v = match v {
                    Val::Null => Value::Null,
                    Val::Str(s) => Value::String(s.clone()),
                    Val::Num(n) => json!(n),
                };
                (k.to_string(), v)
            })
            .collect();
        let mut outer = Map::new();
        outer.insert(self.root.to_string(), Value::Object(inner));
        Value::Object(outer)
    }

    fn to_xml(&self) -> String {
        let mut s = format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<TwilioResponse>\n  <{}>\n", self.root);
        for (k, v) in &self.fields {
            match v {
                Val::Null => s.push_str(&format!("    <{k}/>\n")),
                Val::Str(t) => s.push_str(&format!("    <{k}>{}</{k}>\n", xml_escape(t))),
                Val::Num(n) => s.push_str(&format!("    <{k}>{n}</{k}>\n")),
            }
        }
        s.push_str(&format!("  </{}>\n</TwilioResponse>\n", self.root));
        s
    }
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&apos;")
}

/// The `Call` resource as `Calls/connect` and the call-details API show it (docs/protocol.md §8.3).
fn call_document(call: &FakeCall, account: &str, exophone: &str, format: Format) -> Doc {
    let mut d = Doc::new("Call");
    d.str("Sid", &call.sid);
    d.opt("ParentCallSid", None);
    d.str("DateCreated", &call.date_created);
    d.str("DateUpdated", &call.date_updated);
    d.str("AccountSid", account);
    d.str("To", exophone);
    d.str("From", &call.from);
    d.str("PhoneNumberSid", exophone);
    d.str("Status", &call.state);
    d.str("StartTime", &call.start_time);
    d.opt("EndTime", call.end_time.as_deref());
    match call.duration {
        Some(secs) => d.num("Duration", secs),
        None => d.opt("Duration", None),
    }
    d.opt("Price", None);
    d.str("Direction", "outbound-api");
    d.opt("AnsweredBy", None);
    d.opt("ForwardedFrom", None);
    d.opt("CallerName", None);
    let ext = if format == Format::Json { ".json" } else { "" };
    d.str("Uri", &format!("/v1/Accounts/{account}/Calls/{}{ext}", call.sid));
    d.opt("RecordingUrl", call.recording_url.as_deref());
    d
}

/// docs/protocol.md §2.4: XML only.
fn active_streams(active: usize) -> Response {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<TwilioResponse>\n  <Stream>\n    \
         <ActiveStreamCount>{active}</ActiveStreamCount>\n    <ThrottleLimit>{THROTTLE_LIMIT}</ThrottleLimit>\n  \
         </Stream>\n</TwilioResponse>\n"
    );
    xml_response(StatusCode::OK, &body)
}

fn authorized(headers: &HeaderMap, key: &str, token: &str) -> bool {
    let Some(value) = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let Some((scheme, encoded)) = value.trim().split_once(' ') else {
        return false;
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return false;
    }
    let Ok(decoded) = B64.decode(encoded.trim()) else {
        return false;
    };
    decoded == format!("{key}:{token}").as_bytes()
}

/// Where a request goes. Paths are case-sensitive, as documented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Route {
    Connect {
        format: Format,
    },
    CallDetails {
        call_sid: String,
        format: Format,
    },
    ActiveStreams,
    /// The simulator's own record of live calls (not an Exotel API): `GET …/_sim/live`.
    SimLive,
    /// A well-formed path for another account.
    WrongAccount(String),
    MethodNotAllowed,
    NotFound,
}

pub(crate) fn route(method: &Method, path: &str, account: &str) -> Route {
    let Some(rest) = path.strip_prefix("/v1/Accounts/") else {
        return Route::NotFound;
    };
    let segments: Vec<&str> = rest.split('/').collect();
    let (sid, resource) = match segments.as_slice() {
        [sid, resource @ ..] if !sid.is_empty() => (*sid, resource),
        _ => return Route::NotFound,
    };
    let found = match resource {
        ["Calls", "connect" | "connect.json"] => {
            if method != Method::POST {
                return Route::MethodNotAllowed;
            }
            Route::Connect { format: Format::of(path) }
        }
        // Only GET: a POST here is a misspelt `connect` (paths are case-sensitive).
        ["Calls", call] if method == Method::GET && !call.is_empty() && call.strip_suffix(".json") != Some("") => {
            let call_sid = call.strip_suffix(".json").unwrap_or(call).to_string();
            Route::CallDetails { call_sid, format: Format::of(path) }
        }
        ["ActiveStreams"] => {
            if method != Method::GET {
                return Route::MethodNotAllowed;
            }
            Route::ActiveStreams
        }
        ["_sim", "live"] => {
            if method != Method::GET {
                return Route::MethodNotAllowed;
            }
            Route::SimLive
        }
        _ => return Route::NotFound,
    };
    if sid != account { Route::WrongAccount(sid.to_string()) } else { found }
}

/// A 400: the message names the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Invalid {
    pub message: String,
    pub code: u32,
}

fn missing(msg: impl Into<String>) -> Invalid {
    Invalid { message: msg.into(), code: CODE_MISSING }
}

fn invalid(msg: impl Into<String>) -> Invalid {
    Invalid { message: msg.into(), code: CODE_INVALID }
}

/// A `Calls/connect` request that passed validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConnectRequest {
    pub from: String,
    pub caller_id: String,
    pub mode: CallMode,
    pub custom_field: Option<String>,
    pub status_callback: Option<String>,
    pub events: Vec<String>,
    pub callback_content_type: String,
    pub record: bool,
    pub time_limit: Option<u32>,
    pub time_out: Option<u32>,
}

/// Exotel's checks on `Calls/connect` (docs/protocol.md §8.2), strict on names: PascalCase only.
pub(crate) fn validate_connect(form: &[(String, String)], account: &str) -> Result<ConnectRequest, Invalid> {
    let from = field(form, "From").ok_or_else(|| missing("From is required"))?;
    check_number("From", from)?;
    let caller_id = field(form, "CallerId").ok_or_else(|| missing("CallerId is required"))?;
    check_number("CallerId", caller_id)?;
    let mode = match (field(form, "Url"), field(form, "StreamUrl")) {
        (Some(_), Some(_)) => return Err(invalid("Url and StreamUrl are exclusive: give one")),
        (None, None) => return Err(missing("Url is required (or StreamUrl with StreamType=bidirectional)")),
        (Some(url), None) => CallMode::Flow { app_id: flow_app_id(url, account)? },
        (None, Some(url)) => {
            check_stream_url(url)?;
            match field(form, "StreamType") {
                Some("bidirectional") => {}
                Some(other) => {
                    return Err(invalid(format!("StreamType {other:?} is not supported: use bidirectional")));
                }
                None => return Err(missing("StreamType is required with StreamUrl (bidirectional)")),
            }
            CallMode::Stream { url: url.to_string() }
        }
    };
    let time_limit = bounded(form, "TimeLimit", MAX_TIME_LIMIT)?;
    let time_out = bounded(form, "TimeOut", MAX_TIME_OUT)?;
    let custom_field = field(form, "CustomField").map(str::to_string);
    if custom_field.as_ref().is_some_and(|c| c.chars().count() > MAX_CUSTOM_FIELD) {
        return Err(invalid(format!("CustomField is longer than {MAX_CUSTOM_FIELD} characters")));
    }
    let status_callback = field(form, "StatusCallback").map(str::to_string);
    let web_url =
        |url: &str| reqwest::Url::parse(url).is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.has_host());
    if status_callback.as_deref().is_some_and(|url| !web_url(url)) {
        return Err(invalid("StatusCallback must be an http(s) URL"));
    }
    let callback_content_type = match field(form, "StatusCallbackContentType") {
        None => "multipart/form-data".to_string(),
        Some(ct @ ("multipart/form-data" | "application/json")) => ct.to_string(),
        Some(other) => {
            return Err(invalid(format!(
                "StatusCallbackContentType {other:?}: use multipart/form-data or application/json"
            )));
        }
    };
    let mut events: Vec<String> = Vec::new();
    for (k, v) in form {
        let is_events = k == "StatusCallbackEvents"
            || k.strip_prefix("StatusCallbackEvents[")
                .and_then(|r| r.strip_suffix(']'))
                .is_some_and(|i| i.chars().all(|c| c.is_ascii_digit()));
        if !is_events {
            continue;
        }
        for event in v.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            if !matches!(event, "terminal" | "answered" | "ringing") {
                return Err(invalid(format!(
                    "StatusCallbackEvents: {event:?} is not one of terminal, answered, ringing"
                )));
            }
            if !events.iter().any(|e| e == event) {
                events.push(event.to_string());
            }
        }
    }
    let record = match field(form, "Record").map(str::to_ascii_lowercase).as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return Err(invalid("Record must be true or false")),
    };
    Ok(ConnectRequest {
        from: from.to_string(),
        caller_id: caller_id.to_string(),
        mode,
        custom_field,
        status_callback,
        events,
        callback_content_type,
        record,
        time_limit,
        time_out,
    })
}

/// E.164 or a national form: an optional `+`, then 7 to 15 digits (spaces and dashes ignored).
fn check_number(name: &str, number: &str) -> Result<(), Invalid> {
    let digits: String = number.chars().filter(|c| !matches!(c, ' ' | '-')).collect();
    let digits = digits.strip_prefix('+').unwrap_or(&digits);
    if (7..=15).contains(&digits.len()) && digits.chars().all(|c| c.is_ascii_digit()) {
        Ok(())
    } else {
        Err(invalid(format!("{name} is not a valid phone number")))
    }
}

/// `http(s)://my.exotel.com/{sid}/exoml/start_voice/{app_id}` (or `my.exotel.in`), or the legacy
/// `http://my.exotel.in/exoml/start/{app_id}`. "Custom external URLs are not supported."
fn flow_app_id(url: &str, account: &str) -> Result<String, Invalid> {
    let bad = || invalid(format!("Url must be http://my.exotel.com/{account}/exoml/start_voice/<app_id>"));
    let rest = url.strip_prefix("http://").or_else(|| url.strip_prefix("https://")).ok_or_else(bad)?;
    let rest = rest.split(['?', '#']).next().unwrap_or_default();
    let (host, path) = rest.split_once('/').ok_or_else(bad)?;
    if !matches!(host, "my.exotel.com" | "my.exotel.in") {
        return Err(bad());
    }
    let valid_id = |id: &str| !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    match path.trim_end_matches('/').split('/').collect::<Vec<_>>().as_slice() {
        [sid, "exoml", "start_voice", app] if valid_id(app) => {
            if *sid == account {
                Ok(app.to_string())
            } else {
                Err(invalid(format!("Url: flow of account {sid}, not {account}")))
            }
        }
        ["exoml", "start", app] if valid_id(app) => Ok(app.to_string()),
        _ => Err(bad()),
    }
}

fn check_stream_url(url: &str) -> Result<(), Invalid> {
    if url.chars().count() >= MAX_STREAM_URL {
        return Err(invalid(format!("StreamUrl must be shorter than {MAX_STREAM_URL} characters")));
    }
    if reqwest::Url::parse(url).is_ok_and(|u| matches!(u.scheme(), "ws" | "wss") && u.has_host()) {
        Ok(())
    } else {
        Err(invalid("StreamUrl must be a ws:// or wss:// URL"))
    }
}

/// An optional whole number of seconds in `1..=max`.
fn bounded(form: &[(String, String)], name: &str, max: u32) -> Result<Option<u32>, Invalid> {
    let Some(raw) = field(form, name) else { return Ok(None) };
    match raw.parse::<u32>() {
        Ok(n) if (1..=max).contains(&n) => Ok(Some(n)),
        _ => Err(invalid(format!("{name} must be a whole number of seconds from 1 to {max}"))),
    }
}

/// A rolling one-minute window over admitted `Calls/connect` requests.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    per_minute: Option<u32>,
    admitted: VecDeque<Instant>,
}

const WINDOW: Duration = Duration::from_secs(60);

impl RateLimiter {
    pub(crate) fn new(per_minute: Option<u32>) -> Self {
        Self { per_minute, admitted: VecDeque::new() }
    }

    /// `Err(retry_after_secs)` when the window is full; rejected requests do not count.
    pub(crate) fn admit(&mut self, now: Instant) -> Result<(), u64> {
        let Some(limit) = self.per_minute else { return Ok(()) };
        while self.admitted.front().is_some_and(|t| now.duration_since(*t) >= WINDOW) {
            self.admitted.pop_front();
        }
        if self.admitted.len() < limit as usize {
            self.admitted.push_back(now);
            return Ok(());
        }
        let oldest = self.admitted.front().copied().unwrap_or(now);
        let wait = WINDOW.saturating_sub(now.duration_since(oldest));
        Err(wait.as_secs() + u64::from(wait.subsec_nanos() > 0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    const FLOW: &str = "http://my.exotel.com/acme/exoml/start_voice/12345";

    fn base() -> Vec<(String, String)> {
        form(&[("From", "+91 98765 43210"), ("CallerId", "08047491899"), ("Url", FLOW)])
    }

    fn with(extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut f = base();
        f.extend(form(extra));
        f
    }

    fn err(f: &[(String, String)]) -> String {
        validate_connect(f, "acme").unwrap_err().message
    }

    #[test]
    fn routes() {
        let post = Method::POST;
        let get = Method::GET;
        assert_eq!(
            route(&post, "/v1/Accounts/acme/Calls/connect.json", "acme"),
            Route::Connect { format: Format::Json }
        );
        assert_eq!(route(&post, "/v1/Accounts/acme/Calls/connect", "acme"), Route::Connect { format: Format::Xml });
        assert_eq!(
            route(&get, "/v1/Accounts/acme/Calls/abc.json", "acme"),
            Route::CallDetails { call_sid: "abc".into(), format: Format::Json }
        );
        assert_eq!(
            route(&get, "/v1/Accounts/acme/Calls/abc", "acme"),
            Route::CallDetails { call_sid: "abc".into(), format: Format::Xml }
        );
        assert_eq!(route(&get, "/v1/Accounts/acme/ActiveStreams", "acme"), Route::ActiveStreams);
        assert_eq!(route(&get, "/v1/Accounts/acme/_sim/live", "acme"), Route::SimLive);
        assert_eq!(route(&post, "/v1/Accounts/other/Calls/connect.json", "acme"), Route::WrongAccount("other".into()));
        assert_eq!(route(&get, "/v1/Accounts/acme/Calls/connect.json", "acme"), Route::MethodNotAllowed);
        assert_eq!(route(&post, "/v1/Accounts/acme/Calls/abc.json", "acme"), Route::NotFound);
        assert_eq!(route(&post, "/v1/Accounts/acme/ActiveStreams", "acme"), Route::MethodNotAllowed);
        for nf in [
            "/v1/accounts/acme/calls/connect.json",
            "/v1/Accounts/acme/Calls/Connect.json",
            "/v1/Accounts//Calls/connect",
            "/v1/Accounts/acme/Calls/",
            "/v1/Accounts/acme/Calls/.json",
            "/v1/Accounts/acme/activestreams",
            "/v2/Accounts/acme/Calls/connect",
            "/",
        ] {
            assert_eq!(route(&post, nf, "acme"), Route::NotFound, "{nf}");
        }
    }

    #[test]
    fn a_flow_call() {
        let req = validate_connect(
            &with(&[
                ("CustomField", "order-1"),
                ("TimeLimit", "14400"),
                ("TimeOut", "60"),
                ("StatusCallback", "https://gw.example.com/cb?t=1"),
                ("StatusCallbackEvents[0]", "terminal"),
                ("StatusCallbackEvents[1]", "answered"),
                ("StatusCallbackEvents[]", "terminal"),
                ("StatusCallbackContentType", "application/json"),
                ("Record", "true"),
                ("CallType", "trans"),
                ("Unknown", "ignored"),
            ]),
            "acme",
        )
        .unwrap();
        assert_eq!(req.from, "+91 98765 43210");
        assert_eq!(req.mode, CallMode::Flow { app_id: "12345".into() });
        assert_eq!(req.custom_field.as_deref(), Some("order-1"));
        assert_eq!((req.time_limit, req.time_out), (Some(14400), Some(60)));
        assert_eq!(req.events, vec!["terminal", "answered"]);
        assert_eq!(req.callback_content_type, "application/json");
        assert!(req.record);
        let plain = validate_connect(&base(), "acme").unwrap();
        assert_eq!(plain.callback_content_type, "multipart/form-data");
        assert!(plain.events.is_empty() && !plain.record && plain.status_callback.is_none());
    }

    #[test]
    fn flow_url_forms() {
        for (url, app) in [
            ("https://my.exotel.com/acme/exoml/start_voice/987", "987"),
            ("http://my.exotel.in/acme/exoml/start_voice/987/", "987"),
            ("http://my.exotel.in/exoml/start/55", "55"),
        ] {
            assert_eq!(flow_app_id(url, "acme").unwrap(), app, "{url}");
        }
        for url in [
            "http://evil.example.com/acme/exoml/start_voice/1",
            "ftp://my.exotel.com/acme/exoml/start_voice/1",
            "http://my.exotel.com/acme/exoml/start_voice/",
            "http://my.exotel.com/acme/exoml/start_voice/1/2",
            "http://my.exotel.com/other/exoml/start_voice/1",
            "my.exotel.com/acme/exoml/start_voice/1",
        ] {
            assert!(flow_app_id(url, "acme").unwrap_err().message.starts_with("Url"), "{url}");
        }
    }

    #[test]
    fn a_stream_call() {
        let mut f = form(&[
            ("From", "09876543210"),
            ("CallerId", "08047491899"),
            ("StreamUrl", "wss://bot.example.com/media?sample-rate=16000"),
            ("StreamType", "bidirectional"),
        ]);
        let req = validate_connect(&f, "acme").unwrap();
        assert_eq!(req.mode, CallMode::Stream { url: "wss://bot.example.com/media?sample-rate=16000".into() });
        f[3].1 = "unidirectional".into();
        assert!(err(&f).starts_with("StreamType"));
        f.pop();
        assert!(err(&f).starts_with("StreamType"));
        let long = format!("wss://bot.example.com/{}", "a".repeat(600));
        let f = form(&[
            ("From", "0987654321"),
            ("CallerId", "0804749189"),
            ("StreamUrl", &long),
            ("StreamType", "bidirectional"),
        ]);
        assert!(err(&f).starts_with("StreamUrl"));
        let f = form(&[
            ("From", "0987654321"),
            ("CallerId", "0804749189"),
            ("StreamUrl", "https://x/"),
            ("StreamType", "bidirectional"),
        ]);
        assert!(err(&f).starts_with("StreamUrl"));
    }

    #[test]
    fn every_violation_names_its_field() {
        let cases: Vec<(Vec<(String, String)>, &str)> = vec![
            (form(&[("CallerId", "08047491899"), ("Url", FLOW)]), "From"),
            (form(&[("From", "  "), ("CallerId", "08047491899"), ("Url", FLOW)]), "From"),
            (form(&[("From", "abc"), ("CallerId", "08047491899"), ("Url", FLOW)]), "From"),
            (form(&[("From", "09876543210"), ("Url", FLOW)]), "CallerId"),
            (form(&[("From", "09876543210"), ("CallerId", "08047491899")]), "Url"),
            (with(&[("StreamUrl", "wss://b/"), ("StreamType", "bidirectional")]), "Url and StreamUrl"),
            (with(&[("TimeLimit", "14401")]), "TimeLimit"),
            (with(&[("TimeLimit", "0")]), "TimeLimit"),
            (with(&[("TimeOut", "61")]), "TimeOut"),
            (with(&[("TimeOut", "ten")]), "TimeOut"),
            (with(&[("CustomField", &"x".repeat(129))]), "CustomField"),
            (with(&[("StatusCallback", "not a url")]), "StatusCallback"),
            (with(&[("StatusCallbackContentType", "text/xml")]), "StatusCallbackContentType"),
            (with(&[("StatusCallbackEvents[0]", "completed")]), "StatusCallbackEvents"),
            (with(&[("Record", "yes")]), "Record"),
        ];
        for (f, name) in cases {
            let msg = err(&f);
            assert!(msg.starts_with(name), "{msg:?} should name {name}");
        }
        // Exactly 128 characters (not bytes) is fine.
        assert!(validate_connect(&with(&[("CustomField", &"é".repeat(128))]), "acme").is_ok());
    }

    #[test]
    fn basic_auth() {
        let mut h = HeaderMap::new();
        assert!(!authorized(&h, "k", "t"));
        h.insert(AUTHORIZATION, HeaderValue::from_str(&format!("Basic {}", B64.encode("k:t"))).unwrap());
        assert!(authorized(&h, "k", "t"));
        assert!(!authorized(&h, "k", "T"));
        h.insert(AUTHORIZATION, HeaderValue::from_str(&format!("Bearer {}", B64.encode("k:t"))).unwrap());
        assert!(!authorized(&h, "k", "t"));
        h.insert(AUTHORIZATION, HeaderValue::from_static("Basic !!!"));
        assert!(!authorized(&h, "k", "t"));
    }

    #[test]
    fn rate_limiter_rolls() {
        let t0 = Instant::now();
        let mut rl = RateLimiter::new(Some(2));
        assert_eq!(rl.admit(t0), Ok(()));
        assert_eq!(rl.admit(t0 + Duration::from_secs(10)), Ok(()));
        assert_eq!(rl.admit(t0 + Duration::from_secs(20)), Err(40));
        assert_eq!(rl.admit(t0 + Duration::from_millis(59_500)), Err(1));
        assert_eq!(rl.admit(t0 + Duration::from_secs(60)), Ok(()));
        assert_eq!(rl.admit(t0 + Duration::from_secs(61)), Err(9));
        let mut free = RateLimiter::new(None);
        assert!((0..1000).all(|_| free.admit(t0).is_ok()));
    }

    #[test]
    fn documents_render_both_ways() {
        let mut d = Doc::new("RestException");
        d.num("Status", 400);
        d.str("Message", "From <x> & \"y\"");
        d.opt("Code", None);
        assert_eq!(d.to_json(), json!({"RestException":{"Status":400,"Message":"From <x> & \"y\"","Code":null}}));
        let xml = d.to_xml();
        assert!(xml.contains("<TwilioResponse>\n  <RestException>\n    <Status>400</Status>"), "{xml}");
        assert!(xml.contains("<Message>From &lt;x&gt; &amp; &quot;y&quot;</Message>"), "{xml}");
        assert!(xml.contains("<Code/>"), "{xml}");
    }
}
