//! The Voicebot applet's dynamic URL: Exotel asks where to stream this call; we answer
//! `{"url": "<ws base>/media?<custom params>"}` and record the call.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::http::header::HOST;
use exotel::SampleRate;
use exotel::redact::mask_phone;
use serde_json::{Value, json};

use super::error::ApiError;
use super::webhook_input::WebhookInput;
use crate::access::{MEDIA_TOKEN_TTL, TokenCall, media_token};
use crate::app::AppState;
use crate::store::{CallKey, CallPatch, Status};

/// Exotel's limits on the applet's custom parameters (docs/protocol.md §2.2).
const MAX_CUSTOM_PARAMS: usize = 3;
const MAX_CUSTOM_CHARS: usize = 256;

/// The custom parameters that fit Exotel's limits, `agentId` first and `callLogId` last, and the
/// names of those that did not. Too many or too long is answered with what fits, not refused:
/// Exotel may add keys nobody documented (PROTOCOL.md §2.3), and a refusal would make it skip the
/// bot for every call.
fn fit_custom(
    mut custom: BTreeMap<String, String>,
    call_log_id: Option<String>,
) -> (BTreeMap<String, String>, Vec<String>) {
    let agent = custom.keys().find(|k| k.eq_ignore_ascii_case("agentId")).cloned();
    let mut order: Vec<(String, String)> = Vec::with_capacity(custom.len() + 1);
    if let Some(k) = agent {
        if let Some(v) = custom.remove(&k) {
            order.push((k, v));
        }
    }
    order.extend(custom);
    let with_log_id = call_log_id.is_some();
    order.extend(call_log_id.map(|id| ("callLogId".to_string(), id)));
    let mut kept = BTreeMap::new();
    let mut left_out = Vec::new();
    for (k, v) in order {
        let fits = kept.len() < MAX_CUSTOM_PARAMS && {
            let mut trial = kept.clone();
            trial.insert(k.clone(), v.clone());
            serde_urlencoded::to_string(&trial).map_or(usize::MAX, |q| q.len()) <= MAX_CUSTOM_CHARS
        };
        if fits {
            kept.insert(k, v);
        } else if !(with_log_id && k == "callLogId") {
            // Our own id finding no room is not the caller's loss: the call still runs.
            left_out.push(k);
        }
    }
    (kept, left_out)
}

/// Call-detail keys Exotel adds to applet requests that `CallDetails` keeps as extras; they are
/// not the applet's custom parameters.
const EXOTEL_KEYS: &[&str] = &[
    "eventtype",
    "datecreated",
    "dateupdated",
    "phonenumbersid",
    "forwardedfrom",
    "processstatus",
    "outgoingphonenumber",
    "legs",
    "answeredby",
    "callername",
    "price",
    "duration",
    "uri",
    "parentcallsid",
];

pub(crate) async fn dynamic_url(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    input: WebhookInput,
) -> Result<Json<Value>, ApiError> {
    if app.config.limits.max_calls.is_some_and(|max| app.sessions.live() >= max) {
        // 503 lets the flow fall through to its next applet instead of a socket closed with 1013.
        crate::access::Refusals::count(&app.refusals.capacity);
        return Err(ApiError::new(axum::http::StatusCode::SERVICE_UNAVAILABLE, "MAX_CALLS reached; try again later"));
    }
    let d = input.details;
    let mut custom = BTreeMap::new();
    let mut rate = None;
    let mut left_out = Vec::new();
    for (k, v) in &d.extra {
        let lower = k.to_ascii_lowercase();
        if lower == "sample-rate" || lower == "sample_rate" {
            // A refusal would make Exotel skip the bot: the stream falls back to the start
            // event's rate instead, and the call's timeline says why.
            rate = SampleRate::parse(v);
            if rate.is_none() {
                left_out.push(format!("{k} (must be 8000, 16000 or 24000)"));
            }
        } else if !EXOTEL_KEYS.contains(&lower.as_str()) && !lower.starts_with("stream[") {
            custom.insert(k.clone(), v.clone());
        }
    }
    // The call's agent rides along: a call we placed knows its agent; an ExoPhone may have a default.
    let reference = d.custom_field.as_deref().map(crate::dialer::custom_field_ref);
    let placed = match reference.as_deref().or(d.call_sid.as_deref()) {
        Some(reference) => app.store.find_call(reference).await?,
        None => None,
    };
    if !custom.keys().any(|k| k.eq_ignore_ascii_case("agentId")) {
        let agent = placed.as_ref().and_then(|c| c.agent.clone());
        if let Some(agent) = agent.or_else(|| d.to.as_deref().and_then(|to| app.phone_default_agent(to))) {
            custom.insert("agentId".to_string(), agent);
        }
    }
    // A call we placed with variables: our id lets the media session find them (when there is room).
    let call_log_id = placed
        .filter(|c| c.vars.is_some() && c.direction.as_deref() == Some("outbound-api"))
        .map(|c| c.id)
        .filter(|_| !custom.contains_key("callLogId"));
    let (custom, dropped) = fit_custom(custom, call_log_id);
    left_out.extend(dropped);
    let custom_query = serde_urlencoded::to_string(&custom).unwrap_or_default();
    let mut pairs: Vec<String> = (!custom_query.is_empty()).then_some(custom_query).into_iter().collect();
    if let Some(r) = rate {
        pairs.push(format!("sample-rate={}", r.hz()));
    }
    let base = app.media_url(headers.get(HOST).and_then(|h| h.to_str().ok()));
    let with = |pairs: &[String]| if pairs.is_empty() { base.clone() } else { format!("{base}?{}", pairs.join("&")) };
    // The call log keeps the URL without its token (a credential).
    let shown = with(&pairs);
    if app.config.access.media_require_token {
        let call = d.call_sid.clone().map_or(TokenCall::Any, TokenCall::Sid);
        pairs.push(format!("t={}", media_token(&app.secrets, &call, MEDIA_TOKEN_TTL)));
    }
    let url = with(&pairs);

    if let Some(call_sid) = &d.call_sid {
        let key =
            CallKey { call_sid: Some(call_sid.clone()), custom_field: d.custom_field.clone(), ..CallKey::default() };
        app.store.upsert(
            key.clone(),
            CallPatch::new()
                .text("from_number", d.from.as_ref())
                .text("to_number", d.to.as_ref())
                .text("direction", d.direction.as_ref())
                .text("custom_field", d.custom_field.as_ref())
                .text("flow_id", d.flow_id.as_ref())
                .json("custom_params", &json!(custom))
                .status(Status::Connecting),
        );
        app.store.event(
            key,
            "voicebot-url",
            json!({ "url": shown, "method": input.method.as_str(), "left_out": left_out }),
        );
    }
    tracing::info!(
        call_sid = d.call_sid.as_deref().unwrap_or("-"),
        from = %d.from.as_deref().map(mask_phone).unwrap_or_default(),
        to = %d.to.as_deref().map(mask_phone).unwrap_or_default(),
        direction = d.direction.as_deref().unwrap_or("-"),
        params = custom.len(),
        "voicebot url requested"
    );
    if !left_out.is_empty() {
        tracing::warn!(
            call_sid = d.call_sid.as_deref().unwrap_or("-"),
            left_out = %left_out.join(", "),
            "voicebot url: parameters left out of the stream URL (Exotel passes at most {MAX_CUSTOM_PARAMS}, {MAX_CUSTOM_CHARS} characters)"
        );
    }
    Ok(Json(json!({ "url": url })))
}
