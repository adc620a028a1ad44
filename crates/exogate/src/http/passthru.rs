//! The Passthru applet: Exotel reports call (and, after a Voicebot applet, stream) details; we merge
//! them into the call log and answer at once. 200 is branch A of the flow.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use exotel::redact::{mask_phone, redact_url};
use serde_json::json;

use super::error::ApiError;
use super::webhook_input::WebhookInput;
use crate::app::{AppState, Decision};
use crate::store::{CallKey, CallPatch, Status};

pub(crate) async fn passthru(State(app): State<Arc<AppState>>, input: WebhookInput) -> Result<Response, ApiError> {
    let d = input.details;
    let Some(call_sid) = d.call_sid.clone() else {
        if input.method == Method::GET {
            return Ok(Json(json!({
                "ok": true,
                "service": "exogate",
                "endpoint": "passthru",
                "version": env!("CARGO_PKG_VERSION"),
                "usage": "Exotel Passthru applet URL; GET with CallSid and call details (Stream[...] after a Voicebot applet)",
            }))
            .into_response());
        }
        return Err(ApiError::bad_request("missing CallSid"));
    };
    let stream = d.stream.clone().unwrap_or_default();
    let stream_url = stream.stream_url.as_deref().map(redact_url);
    let key = CallKey {
        call_sid: Some(call_sid.clone()),
        stream_sid: stream.stream_sid.clone(),
        custom_field: d.custom_field.clone(),
        ..CallKey::default()
    };
    let patch = CallPatch::new()
        .text("from_number", d.from.as_ref())
        .text("to_number", d.to.as_ref())
        .text("direction", d.direction.as_ref())
        .text("call_type", d.call_type.as_ref())
        .text("custom_field", d.custom_field.as_ref())
        .text("recording_url", d.recording_url.as_ref())
        .text("digits", d.digits.as_ref())
        .text("flow_id", d.flow_id.as_ref())
        .text("account_sid", d.account_sid.as_ref())
        .text("stream_status", stream.status.as_ref())
        .text("stream_duration", stream.duration.as_ref())
        .text("stream_disconnected_by", stream.disconnected_by.as_ref())
        .text("stream_recording_url", stream.recording_url.as_ref())
        .text("stream_detailed_status", stream.detailed_status.as_ref())
        .text("stream_error", stream.error.as_ref())
        .text("stream_url", stream_url.as_ref())
        .status(Status::Connecting)
        .passthru_hit();
    app.store.upsert(key.clone(), patch);
    let mut detail = serde_json::to_value(&d).unwrap_or_default();
    if let Some(u) = detail.pointer_mut("/stream/stream_url") {
        *u = json!(stream_url);
    }
    app.store.event(key, "passthru", detail);
    tracing::info!(
        call_sid = %call_sid,
        from = %d.from.as_deref().map(mask_phone).unwrap_or_default(),
        to = %d.to.as_deref().map(mask_phone).unwrap_or_default(),
        stream_status = stream.status.as_deref().unwrap_or("-"),
        disconnected_by = stream.disconnected_by.as_deref().unwrap_or("-"),
        stream_url = stream_url.as_deref().unwrap_or("-"),
        "passthru"
    );
    // The bot's decision picks the flow's branch: 302 (B) to transfer, 200 (A) otherwise.
    let decision = match app
        .take_decision(&call_sid)
        .or_else(|| stream.stream_sid.as_deref().and_then(|s| app.take_decision(s)))
    {
        Some(d) => Some(d),
        None => {
            // Made on another gateway: the call log has it. Only the named stream's, though: a
            // flow with a second Voicebot applet on the same call must not get the first bot's
            // transfer from the row they share.
            let row = match app.store.find_call(&call_sid).await? {
                Some(row) => Some(row),
                None => match stream.stream_sid.as_deref() {
                    Some(s) => app.store.find_call(s).await?,
                    None => None,
                },
            };
            row.filter(|c| match (stream.stream_sid.as_deref(), c.stream_sid.as_deref()) {
                (Some(named), Some(decided)) => named == decided,
                _ => true,
            })
            .and_then(|c| (c.bot_decision.as_deref() == Some("transfer")).then_some(Decision::Transfer(c.transfer_to)))
        }
    };
    if let Some(Decision::Transfer(target)) = decision {
        tracing::info!(call_sid = %call_sid, "passthru: bot asked for a transfer; answering 302");
        let mut location = format!("/api/exotel/passthru?CallSid={}&decision=transfer", urlencode(&call_sid));
        if let Some(t) = &target {
            location.push_str(&format!("&target={}", urlencode(t)));
        }
        return Ok((
            StatusCode::FOUND,
            [(header::LOCATION, location)],
            Json(json!({ "ok": true, "decision": "transfer", "target": target })),
        )
            .into_response());
    }
    Ok(Json(json!({ "ok": true })).into_response())
}

fn urlencode(v: &str) -> String {
    serde_urlencoded::to_string([("", v)]).map(|s| s.trim_start_matches('=').to_string()).unwrap_or_default()
}
