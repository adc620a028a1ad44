//! Playing one placed call the way Exotel does: ring, the Voicebot applet (dynamic URL, then the
//! media leg through [`crate::run_call`]), the Passthru after it, then the status callbacks.
//! Timing is realistic in order, short in length.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::http::header::CONTENT_TYPE;
use exotel::redact::redact_url;
use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::format_description::BorrowedFormatItem;
use time::macros::{format_description, offset};

use super::Shared;
use super::form::build_multipart;
use super::record::{CallMode, FakeCall, FakeEvent};
use crate::{CallConfig, CallReport, SimError, Target, random_sid, run_call};

/// From `Calls/connect` to the customer picking up.
const RING: Duration = Duration::from_millis(100);
/// From `Calls/connect` to giving up on a busy / unanswered / failed number.
const UNANSWERED_AFTER: Duration = Duration::from_millis(200);
const DYNAMIC_URL_TIMEOUT: Duration = Duration::from_secs(5);
/// Exotel retries a failed WebSocket handshake once (docs/protocol.md §2.4).
const WS_ATTEMPTS: u32 = 2;
const WS_RETRY_DELAY: Duration = Duration::from_millis(200);
const PASSTHRU_TIMEOUT: Duration = Duration::from_secs(5);
/// Exotel waits 15 s for a callback's answer; the fake is impatient.
const CALLBACK_TIMEOUT: Duration = Duration::from_secs(3);
/// The first try and Exotel's "up to 2" retries.
const CALLBACK_ATTEMPTS: usize = 3;
const CALLBACK_RETRY_DELAY: Duration = Duration::from_millis(200);
const DIRECTION: &str = "outbound-api";

const IST_FORMAT: &[BorrowedFormatItem<'static>] = format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");

/// Exotel's timestamps: `YYYY-MM-DD HH:mm:ss`, India time.
pub(crate) fn now_ist() -> String {
    OffsetDateTime::now_utc().to_offset(offset!(+5:30)).format(IST_FORMAT).unwrap_or_default()
}

/// Whole seconds, rounded up: a call that connected lasted at least a second.
fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// Plays the call to its end; the call is `done` afterwards.
pub(crate) async fn play(shared: Arc<Shared>, sid: String) {
    let Some(call) = shared.call(&sid) else { return };
    match call.script.unanswered_status() {
        Some(status) => {
            tokio::time::sleep(call.script.timed().unwrap_or(UNANSWERED_AFTER)).await;
            let now = now_ist();
            shared.update_call(&sid, |c| {
                c.state = status.to_string();
                c.end_time = Some(now.clone());
                c.date_updated = now;
                c.duration = Some(0);
            });
        }
        None => answered(&shared, &call).await,
    }
    // Over on the network, before its callback says so.
    super::lock(&shared.live).ended(&call.caller_id);
    if call.status_callback.is_some() {
        send_callback(&shared, &sid, CallbackEvent::Terminal).await;
    }
    shared.update_call(&sid, |c| c.done = true);
    if let Some(call) = shared.call(&sid) {
        shared.emit(FakeEvent::CallDone(Box::new(call)));
    }
}

/// What the Passthru hears about the Voicebot applet.
struct StreamOutcome {
    stream_sid: String,
    ws_url: Option<String>,
    result: Result<CallReport, String>,
}

async fn answered(shared: &Arc<Shared>, call: &FakeCall) {
    let sid = call.sid.as_str();
    tokio::time::sleep(RING).await;
    let answered_at = Instant::now();
    let now = now_ist();
    shared.update_call(sid, |c| {
        c.start_time = now.clone();
        c.date_updated = now;
    });
    // The recording exists from the start; it shows up in the Passthru and the callback.
    let recording_url =
        call.record.then(|| format!("https://recordings.exotel.com/exotelrecordings/{}/{sid}.mp3", shared.cfg.sid));

    let wants_answered = call.status_callback.is_some() && call.status_callback_events.iter().any(|e| e == "answered");
    let answered_callback = async {
        if wants_answered {
            send_callback(shared, sid, CallbackEvent::Answered).await;
        }
    };
    let (outcome, ()) = tokio::join!(voicebot_applet(shared, call), answered_callback);

    match &outcome.result {
        Ok(report) => {
            let report = report.clone();
            shared.update_call(sid, |c| c.report = Some(report));
        }
        Err(e) => {
            let e = e.clone();
            shared.update_call(sid, |c| c.media_error = Some(e));
        }
    }
    if let (CallMode::Flow { app_id }, Some(url)) = (&call.mode, &shared.cfg.passthru_url) {
        let answer = passthru(shared, call, url, app_id, &outcome, recording_url.as_deref()).await;
        shared.update_call(sid, |c| match answer {
            Ok(status) => c.passthru_status = Some(status),
            Err(e) => c.passthru_error = Some(e),
        });
    }
    let now = now_ist();
    let duration = ceil_secs(answered_at.elapsed());
    shared.update_call(sid, |c| {
        c.state = "completed".into();
        c.end_time = Some(now.clone());
        c.date_updated = now;
        c.duration = Some(duration);
        c.recording_url = recording_url;
    });
}

/// The Voicebot applet (flow mode) or the direct stream: find the WebSocket URL, then play the
/// media leg against it.
async fn voicebot_applet(shared: &Arc<Shared>, call: &FakeCall) -> StreamOutcome {
    let stream_sid = random_sid();
    let ws_url = match &call.mode {
        CallMode::Flow { .. } => resolve_voicebot(shared, call).await,
        CallMode::Stream { url } => Ok(url.clone()),
    };
    let ws_url = match ws_url {
        Ok(url) => url,
        Err(e) => return StreamOutcome { stream_sid, ws_url: None, result: Err(e) },
    };
    let (url, ssid) = (ws_url.clone(), stream_sid.clone());
    shared.update_call(&call.sid, |c| {
        c.ws_url = Some(url);
        c.stream_sid = Some(ssid);
    });
    let result = media_leg(shared, call, &ws_url, &stream_sid).await;
    StreamOutcome { stream_sid, ws_url: Some(ws_url), result }
}

/// The applet's URL, dialled directly when ws(s)://, otherwise asked for `{"url":...}` with the
/// call details a URL applet sends (docs/protocol.md §2.3).
async fn resolve_voicebot(shared: &Shared, call: &FakeCall) -> Result<String, String> {
    let cfg = &shared.cfg;
    let Some(url) = &cfg.voicebot_url else {
        return Err("the flow has no Voicebot applet URL (voicebot_url is not set)".into());
    };
    let redacted = redact_url(url);
    if url.starts_with("ws://") || url.starts_with("wss://") {
        return Ok(url.clone());
    }
    let mut query = vec![
        ("CallSid", call.sid.as_str()),
        ("CallFrom", call.from.as_str()),
        ("CallTo", cfg.exophone.as_str()),
        ("From", call.from.as_str()),
        ("To", cfg.exophone.as_str()),
        ("Direction", DIRECTION),
    ];
    if let Some(cf) = &call.custom_field {
        query.push(("CustomField", cf));
    }
    let response = shared
        .client
        .get(url)
        .query(&query)
        .header("Exotel-Version", "1.0")
        .timeout(DYNAMIC_URL_TIMEOUT)
        .send()
        .await
        .map_err(|e| format!("dynamic URL {redacted}: {}", e.without_url()))?;
    let status = response.status().as_u16();
    let body = response.text().await.map_err(|e| format!("dynamic URL {redacted}: {}", e.without_url()))?;
    if status != 200 {
        return Err(format!("dynamic URL {redacted} answered HTTP {status}"));
    }
    let ws = serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|v| v.get("url").and_then(Value::as_str).map(str::to_string))
        .ok_or_else(|| format!("dynamic URL {redacted} answered without a JSON \"url\""))?;
    if !(ws.starts_with("ws://") || ws.starts_with("wss://")) {
        return Err(format!("dynamic URL {redacted} answered a url that is not ws:// or wss://"));
    }
    Ok(ws)
}

/// Counts a WebSocket session in `ActiveStreams` for as long as it lives, even if the call task
/// is aborted.
struct ActiveStream<'a>(&'a Shared);

impl<'a> ActiveStream<'a> {
    fn new(shared: &'a Shared) -> Self {
        shared.active_streams.fetch_add(1, Ordering::Relaxed);
        Self(shared)
    }
}

impl Drop for ActiveStream<'_> {
    fn drop(&mut self) {
        self.0.active_streams.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn media_leg(shared: &Shared, call: &FakeCall, ws_url: &str, stream_sid: &str) -> Result<CallReport, String> {
    let cfg = &shared.cfg;
    let call_cfg = CallConfig {
        target: Target::Ws(ws_url.to_string()),
        sample_rate: cfg.sample_rate,
        audio: cfg.audio.clone(),
        frame_ms: cfg.frame_ms,
        dtmf: cfg.dtmf.clone(),
        call_sid: call.sid.clone(),
        stream_sid: stream_sid.to_string(),
        account_sid: cfg.sid.clone(),
        from: call.from.clone(),
        to: cfg.exophone.clone(),
        // A timed answer: the customer holds the line that long, whatever the bot does.
        idle_tail: call.script.timed().unwrap_or(cfg.idle_tail),
        max_tail: call.script.timed().unwrap_or(cfg.max_tail),
        ..CallConfig::default()
    };
    let mut attempt = 0;
    loop {
        attempt += 1;
        shared.update_call(&call.sid, |c| c.ws_attempts = attempt);
        let result = {
            let _active = ActiveStream::new(shared);
            run_call(call_cfg.clone()).await
        };
        match result {
            Ok(report) => return Ok(report),
            Err(SimError::Connect { .. } | SimError::Handshake { .. } | SimError::ConnectTimeout { .. })
                if attempt < WS_ATTEMPTS =>
            {
                tokio::time::sleep(WS_RETRY_DELAY).await;
            }
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// The Passthru applet after the Voicebot applet: a GET with the call details and the
/// `Stream[...]` outcome (docs/protocol.md §7.2). The answer's status is the branch taken.
async fn passthru(
    shared: &Shared,
    call: &FakeCall,
    url: &str,
    app_id: &str,
    outcome: &StreamOutcome,
    recording_url: Option<&str>,
) -> Result<u16, String> {
    let cfg = &shared.cfg;
    let start_time = shared.call(&call.sid).map_or_else(|| call.start_time.clone(), |c| c.start_time);
    let mut q: Vec<(&str, String)> = vec![
        ("CallSid", call.sid.clone()),
        ("CallFrom", call.from.clone()),
        ("CallTo", cfg.exophone.clone()),
        ("From", call.from.clone()),
        ("To", cfg.exophone.clone()),
        ("Direction", DIRECTION.into()),
        ("Created", call.date_created.clone()),
        ("StartTime", start_time),
        ("CurrentTime", now_ist()),
        ("flow_id", app_id.into()),
    ];
    if let Some(cf) = &call.custom_field {
        q.push(("CustomField", cf.clone()));
    }
    q.push(("Stream[StreamSID]", outcome.stream_sid.clone()));
    match &outcome.result {
        Ok(report) => {
            q.push(("Stream[Status]", "completed".into()));
            q.push(("Stream[Duration]", ceil_secs(report.duration).to_string()));
            q.push(("Stream[DisconnectedBy]", if report.closed_by_bot { "bot" } else { "user" }.into()));
        }
        Err(e) => {
            q.push(("Stream[Status]", "failed".into()));
            q.push(("Stream[Duration]", "0".into()));
            q.push(("Stream[DisconnectedBy]", "NA".into()));
            q.push(("Stream[Error]", format!("3009 failed to establish ws conn: {e}")));
        }
    }
    if let Some(ws) = &outcome.ws_url {
        q.push(("Stream[StreamUrl]", ws.clone()));
    }
    if let Some(rec) = recording_url {
        q.push(("Stream[RecordingUrl]", rec.to_string()));
    }
    let response = shared
        .client
        .get(url)
        .query(&q)
        .timeout(PASSTHRU_TIMEOUT)
        .send()
        .await
        .map_err(|e| format!("Passthru {}: {}", redact_url(url), e.without_url()))?;
    Ok(response.status().as_u16())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CallbackEvent {
    Answered,
    Terminal,
}

/// One callback field value: how it looks differs between the JSON and multipart bodies.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum CbVal {
    Str(String),
    /// `null` in JSON, empty in multipart.
    Null,
    Int(u64),
    /// Inline in JSON, a JSON string in multipart.
    Json(Value),
}

fn opt(v: Option<&str>) -> CbVal {
    v.map_or(CbVal::Null, |s| CbVal::Str(s.to_string()))
}

/// The fields of a status callback (docs/protocol.md §9): the four defaults always, the rest when the
/// request asked for `StatusCallbackEvents`.
pub(crate) fn callback_fields(call: &FakeCall, exophone: &str, event: CallbackEvent) -> Vec<(&'static str, CbVal)> {
    let terminal = event == CallbackEvent::Terminal;
    let status = if terminal { call.state.as_str() } else { "in-progress" };
    let mut f = vec![
        ("CallSid", CbVal::Str(call.sid.clone())),
        ("Status", CbVal::Str(status.to_string())),
        ("DateUpdated", CbVal::Str(call.date_updated.clone())),
        ("RecordingUrl", if terminal { opt(call.recording_url.as_deref()) } else { CbVal::Null }),
    ];
    if call.status_callback_events.is_empty() {
        return f;
    }
    let duration = if terminal { call.duration.unwrap_or(0) } else { 0 };
    let answered = call.script.unanswered_status().is_none();
    f.extend([
        ("EventType", CbVal::Str(if terminal { "terminal" } else { "answered" }.into())),
        ("DateCreated", CbVal::Str(call.date_created.clone())),
        ("StartTime", CbVal::Str(call.start_time.clone())),
        ("EndTime", if terminal { opt(call.end_time.as_deref()) } else { CbVal::Null }),
        ("To", CbVal::Str(exophone.to_string())),
        ("From", CbVal::Str(call.from.clone())),
        ("PhoneNumberSid", CbVal::Str(exophone.to_string())),
        ("ConversationDuration", CbVal::Int(duration)),
        ("Direction", CbVal::Str(DIRECTION.into())),
    ]);
    // "CustomField ... only via the 'terminal' StatusCallbackEvent."
    if terminal {
        f.push(("CustomField", opt(call.custom_field.as_deref())));
    }
    let leg_status = if terminal { Value::String(call.state.clone()) } else { Value::Null };
    let answered_by = if answered { "Human" } else { "NA" };
    f.push((
        "Legs",
        CbVal::Json(json!([{ "OnCallDuration": duration, "Status": leg_status, "AnsweredBy": answered_by }])),
    ));
    f
}

/// The body and its content type, exactly as sent.
pub(crate) fn render_callback(fields: &[(&'static str, CbVal)], json_body: bool, boundary: &str) -> (String, String) {
    if json_body {
        let map: Map<String, Value> = fields
            .iter()
            .map(|(k, v)| {
                let v = match v {
                    CbVal::Str(s) => Value::String(s.clone()),
                    CbVal::Null => Value::Null,
                    CbVal::Int(n) => json!(n),
                    CbVal::Json(j) => j.clone(),
                };
                (k.to_string(), v)
            })
            .collect();
        ("application/json".into(), Value::Object(map).to_string())
    } else {
        let text: Vec<(String, String)> = fields
            .iter()
            .map(|(k, v)| {
                let v = match v {
                    CbVal::Str(s) => s.clone(),
                    CbVal::Null => String::new(),
                    CbVal::Int(n) => n.to_string(),
                    CbVal::Json(j) => j.to_string(),
                };
                (k.to_string(), v)
            })
            .collect();
        build_multipart(&text, boundary)
    }
}

/// POSTs one callback, retrying a non-2xx answer or no answer up to twice; records every attempt.
async fn send_callback(shared: &Shared, sid: &str, event: CallbackEvent) {
    let Some(call) = shared.call(sid) else { return };
    let Some(url) = call.status_callback.clone() else { return };
    let fields = callback_fields(&call, &shared.cfg.exophone, event);
    let json_body = call.status_callback_content_type == "application/json";
    let boundary = format!("------------------------exotelsim{}", &random_sid()[..16]);
    let (content_type, body) = render_callback(&fields, json_body, &boundary);
    for attempt in 0..CALLBACK_ATTEMPTS {
        if attempt > 0 {
            tokio::time::sleep(CALLBACK_RETRY_DELAY).await;
        }
        let sent = shared
            .client
            .post(&url)
            .header(CONTENT_TYPE, content_type.as_str())
            .body(body.clone())
            .timeout(CALLBACK_TIMEOUT)
            .send()
            .await;
        let status = match sent {
            Ok(response) => response.status().as_u16(),
            Err(e) => {
                tracing::debug!(url = %redact_url(&url), "status callback not delivered: {}", e.without_url());
                0
            }
        };
        let recorded = body.clone();
        shared.update_call(sid, |c| c.callbacks_sent.push((status, recorded)));
        if (200..300).contains(&status) {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake_exotel::Script;
    use crate::fake_exotel::form::parse_multipart;

    fn call() -> FakeCall {
        FakeCall {
            sid: "a".repeat(32),
            from: "+919876543210".into(),
            caller_id: "08047491899".into(),
            mode: CallMode::Flow { app_id: "1".into() },
            custom_field: Some("order-7".into()),
            status_callback: Some("http://127.0.0.1:9/cb".into()),
            status_callback_events: vec!["terminal".into()],
            status_callback_content_type: "multipart/form-data".into(),
            record: false,
            time_limit: None,
            time_out: None,
            script: Script::Answer,
            state: "completed".into(),
            date_created: "2025-01-01 10:00:00".into(),
            date_updated: "2025-01-01 10:00:09".into(),
            start_time: "2025-01-01 10:00:01".into(),
            end_time: Some("2025-01-01 10:00:09".into()),
            duration: Some(8),
            recording_url: None,
            ws_url: None,
            stream_sid: None,
            ws_attempts: 1,
            media_error: None,
            report: None,
            passthru_status: None,
            passthru_error: None,
            callbacks_sent: Vec::new(),
            done: false,
        }
    }

    #[test]
    fn ist_timestamps() {
        let t = now_ist();
        assert_eq!(t.len(), 19, "{t}");
        assert_eq!(&t[4..5], "-");
        assert_eq!(&t[10..11], " ");
        assert_eq!(ceil_secs(Duration::from_millis(1)), 1);
        assert_eq!(ceil_secs(Duration::from_secs(2)), 2);
    }

    #[test]
    fn default_fields_only_without_events() {
        let mut c = call();
        c.status_callback_events.clear();
        let names: Vec<&str> = callback_fields(&c, "0804", CallbackEvent::Terminal).iter().map(|(k, _)| *k).collect();
        assert_eq!(names, ["CallSid", "Status", "DateUpdated", "RecordingUrl"]);
    }

    #[test]
    fn terminal_json_body() {
        let fields = callback_fields(&call(), "08047491899", CallbackEvent::Terminal);
        let (ct, body) = render_callback(&fields, true, "");
        assert_eq!(ct, "application/json");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["EventType"], "terminal");
        assert_eq!(v["Status"], "completed");
        assert_eq!(v["ConversationDuration"], 8);
        assert_eq!(v["RecordingUrl"], Value::Null);
        assert_eq!(v["CustomField"], "order-7");
        assert_eq!(v["To"], "08047491899");
        assert_eq!(v["Direction"], "outbound-api");
        assert_eq!(v["Legs"], json!([{"OnCallDuration": 8, "Status": "completed", "AnsweredBy": "Human"}]));
    }

    #[test]
    fn busy_multipart_body() {
        let mut c = call();
        c.script = Script::Busy;
        c.state = "busy".into();
        c.duration = Some(0);
        c.custom_field = None;
        let fields = callback_fields(&c, "08047491899", CallbackEvent::Terminal);
        let (ct, body) = render_callback(&fields, false, "BB");
        let form = parse_multipart(&ct, body.as_bytes()).unwrap();
        let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("Status"), Some("busy"));
        assert_eq!(get("ConversationDuration"), Some("0"));
        assert_eq!(get("CustomField"), Some(""));
        assert_eq!(get("RecordingUrl"), Some(""));
        let legs: Value = serde_json::from_str(get("Legs").unwrap()).unwrap();
        assert_eq!(legs, json!([{"OnCallDuration": 0, "Status": "busy", "AnsweredBy": "NA"}]));
    }

    #[test]
    fn answered_event() {
        let mut c = call();
        c.status_callback_events = vec!["answered".into()];
        let fields = callback_fields(&c, "0804", CallbackEvent::Answered);
        let get = |k: &str| fields.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone());
        assert_eq!(get("EventType"), Some(CbVal::Str("answered".into())));
        assert_eq!(get("Status"), Some(CbVal::Str("in-progress".into())));
        assert_eq!(get("EndTime"), Some(CbVal::Null));
        assert_eq!(get("CustomField"), None);
    }
}
