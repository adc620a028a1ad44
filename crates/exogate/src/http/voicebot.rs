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
    for (k, v) in &d.extra {
        let lower = k.to_ascii_lowercase();
        if lower == "sample-rate" || lower == "sample_rate" {
            rate = Some(
                SampleRate::parse(v)
                    .ok_or_else(|| ApiError::bad_request(format!("{k} must be 8000, 16000 or 24000, got {v:?}")))?,
            );
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
    if let Some(c) = placed.filter(|c| c.vars.is_some() && c.direction.as_deref() == Some("outbound-api")) {
        if custom.len() < MAX_CUSTOM_PARAMS && !custom.contains_key("callLogId") {
            custom.insert("callLogId".to_string(), c.id);
            if serde_urlencoded::to_string(&custom).map_or(0, |q| q.len()) > MAX_CUSTOM_CHARS {
                custom.remove("callLogId");
            }
        }
    }
    if custom.len() > MAX_CUSTOM_PARAMS {
        let names: Vec<&str> = custom.keys().map(String::as_str).collect();
        return Err(ApiError::bad_request(format!(
            "Exotel allows at most {MAX_CUSTOM_PARAMS} custom parameters; got {}: {}",
            custom.len(),
            names.join(", ")
        )));
    }
    let custom_query = serde_urlencoded::to_string(&custom).unwrap_or_default();
    if custom_query.len() > MAX_CUSTOM_CHARS {
        return Err(ApiError::bad_request(format!(
            "custom parameters take {} characters; Exotel allows at most {MAX_CUSTOM_CHARS}",
            custom_query.len()
        )));
    }
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
        app.store.event(key, "voicebot-url", json!({ "url": shown, "method": input.method.as_str() }));
    }
    tracing::info!(
        call_sid = d.call_sid.as_deref().unwrap_or("-"),
        from = %d.from.as_deref().map(mask_phone).unwrap_or_default(),
        to = %d.to.as_deref().map(mask_phone).unwrap_or_default(),
        direction = d.direction.as_deref().unwrap_or("-"),
        params = custom.len(),
        "voicebot url requested"
    );
    Ok(Json(json!({ "url": url })))
}
