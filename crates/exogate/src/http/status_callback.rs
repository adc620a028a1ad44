//! Exotel's StatusCallback: multipart (the default), urlencoded or JSON; authenticated by the
//! per-call HMAC token we put in the URL; idempotent, since Exotel retries up to twice.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, Multipart, Query, Request, State};
use axum::http::{StatusCode, header};
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::ApiError;
use crate::app::AppState;
use crate::store::{CallKey, CallPatch, Status};

#[derive(Deserialize)]
pub(crate) struct Token {
    call: Option<String>,
    tok: Option<String>,
}

pub(crate) async fn status_callback(
    State(app): State<Arc<AppState>>,
    Query(t): Query<Token>,
    req: Request,
) -> Result<Json<Value>, ApiError> {
    let (Some(call_id), Some(tok)) = (t.call, t.tok) else {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "missing callback token"));
    };
    if !app.secrets.verify("status", &call_id, &tok) {
        tracing::warn!(call = %call_id, "status callback with a bad token rejected");
        return Err(ApiError::new(StatusCode::FORBIDDEN, "invalid callback token"));
    }
    let fields = read_fields(req).await?;
    let get = |k: &str| fields.iter().find(|(name, _)| name.eq_ignore_ascii_case(k)).map(|(_, v)| v.clone());
    let status_text = get("Status").ok_or_else(|| ApiError::bad_request("missing field `Status`"))?;
    let event = get("EventType").unwrap_or_else(|| "terminal".into());
    let call =
        app.store.find_call(&call_id).await?.ok_or_else(|| ApiError::not_found(format!("no call {call_id:?}")))?;
    if !app.store.first_delivery(&call.id, &format!("{event}:{status_text}")).await? {
        return Ok(Json(json!({ "ok": true, "duplicate": true })));
    }
    let status = if event.eq_ignore_ascii_case("answered") {
        Some(Status::InProgress)
    } else {
        Status::from_exotel(&status_text)
    };
    let legs = get("Legs").and_then(|l| serde_json::from_str::<Value>(&l).ok());
    let duration = get("ConversationDuration").and_then(|d| d.trim().parse::<i64>().ok());
    let key = CallKey { id: Some(call.id.clone()), ..CallKey::default() };
    let mut patch = CallPatch::new()
        .text("exotel_status", Some(&status_text))
        .int("conversation_duration", duration)
        .text("recording_url", get("RecordingUrl").filter(|u| !u.is_empty()));
    if call.call_sid.is_none() {
        patch = patch.text("call_sid", get("CallSid"));
    }
    if let Some(l) = &legs {
        patch = patch.json("legs", l);
    }
    if let Some(s) = status {
        patch = patch.status(s);
    }
    if !event.eq_ignore_ascii_case("answered") {
        // Exotel's own words, bounded by its few statuses (anything else is "other").
        let known = ["completed", "busy", "no-answer", "failed", "canceled"];
        let s = status_text.to_ascii_lowercase();
        app.metrics.dial_result(if known.contains(&s.as_str()) { &s } else { "other" });
    }
    app.store.upsert(key.clone(), patch);
    app.store.event(
        key,
        "status-callback",
        json!({ "event": event, "status": status_text, "duration": duration, "legs": legs }),
    );
    tracing::info!(call = %call.id, event = %event, status = %status_text, "status callback");
    Ok(Json(json!({ "ok": true })))
}

/// [`read_fields`] on raw bytes, for the fuzzer: the parse a callback body goes through.
pub async fn fields_of(content_type: &str, body: Vec<u8>) -> Option<Vec<(String, String)>> {
    let req = axum::http::Request::builder()
        .header(header::CONTENT_TYPE, content_type)
        .body(axum::body::Body::from(body))
        .ok()?;
    read_fields(req).await.ok()
}

/// The callback's fields as text; `Legs` stays JSON text whatever the content type.
async fn read_fields(req: Request) -> Result<Vec<(String, String)>, ApiError> {
    let content_type =
        req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_ascii_lowercase();
    if content_type.starts_with("multipart/form-data") {
        let mut mp = Multipart::from_request(req, &())
            .await
            .map_err(|e| ApiError::bad_request(format!("bad multipart body: {}", e.body_text())))?;
        let mut out = Vec::new();
        while let Some(field) = mp
            .next_field()
            .await
            .map_err(|e| ApiError::bad_request(format!("bad multipart body: {}", e.body_text())))?
        {
            let name = field.name().unwrap_or_default().to_string();
            let text = field.text().await.map_err(|e| ApiError::bad_request(format!("bad multipart field: {e}")))?;
            out.push((name, text));
        }
        return Ok(legs_from_brackets(out));
    }
    let body = Bytes::from_request(req, &()).await.map_err(|e| ApiError::new(e.status(), e.body_text()))?;
    if content_type.contains("json") || body.trim_ascii_start().starts_with(b"{") {
        let v: Value =
            serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("body is not valid JSON: {e}")))?;
        let obj = v.as_object().ok_or_else(|| ApiError::bad_request("JSON body must be an object"))?;
        // A JSON null is an absent field (Exotel sends `"RecordingUrl": null` for an unrecorded
        // call), not the text "null".
        return Ok(obj
            .iter()
            .filter_map(|(k, v)| match v {
                Value::Null => None,
                Value::String(s) => Some((k.clone(), s.clone())),
                other => Some((k.clone(), other.to_string())),
            })
            .collect());
    }
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(&body)
        .map_err(|e| ApiError::bad_request(format!("form body is not URL-encoded: {e}")))?;
    Ok(legs_from_brackets(pairs))
}

/// Form encodings may send `Legs[0][Status]=completed`; gather those into the JSON `Legs` array.
fn legs_from_brackets(fields: Vec<(String, String)>) -> Vec<(String, String)> {
    let mut legs: BTreeMap<usize, serde_json::Map<String, Value>> = BTreeMap::new();
    let mut out = Vec::new();
    for (k, v) in fields {
        let parsed = k
            .strip_prefix("Legs[")
            .and_then(|r| r.split_once("]["))
            .and_then(|(i, rest)| Some((i.parse::<usize>().ok()?, rest.strip_suffix(']')?.to_string())));
        match parsed {
            Some((i, field)) => {
                legs.entry(i).or_default().insert(field, Value::String(v));
            }
            None => out.push((k, v)),
        }
    }
    if !legs.is_empty() && !out.iter().any(|(k, _)| k == "Legs") {
        let arr: Vec<Value> = legs.into_values().map(Value::Object).collect();
        out.push(("Legs".into(), Value::Array(arr).to_string()));
    }
    out
}
