//! Placing calls: `POST /call` (the seed deployment's contract) and `POST /api/calls`.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::error::ApiError;
use super::json_body::JsonBody;
use crate::app::AppState;
use crate::dialer::{self, Dial, DialError, Mode};

/// `{"to": "+91…", "callLogId": "…"}`
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SeedCall {
    to: String,
    #[serde(rename = "callLogId")]
    call_log_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewCall {
    to: String,
    phone: Option<String>,
    agent: Option<String>,
    #[serde(alias = "callLogId")]
    custom_field: Option<String>,
    #[serde(default)]
    mode: Mode,
    time_limit: Option<u32>,
    time_out: Option<u32>,
    record: Option<bool>,
}

pub(crate) async fn seed_call(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<SeedCall>,
) -> Response {
    let dial = Dial { to: body.to, custom_field: body.call_log_id, ..Dial::default() };
    answer(dialer::place(&app, dial, host(&headers)).await)
}

pub(crate) async fn create(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<NewCall>,
) -> Response {
    let dial = Dial {
        to: body.to,
        phone: body.phone,
        agent: body.agent,
        custom_field: body.custom_field,
        mode: body.mode,
        time_limit: body.time_limit,
        time_out: body.time_out,
        record: body.record,
        ..Dial::default()
    };
    answer(dialer::place(&app, dial, host(&headers)).await)
}

/// `POST /api/calls/{id}/refresh`: the call's state as Exotel has it now.
pub(crate) async fn refresh(
    State(app): State<Arc<AppState>>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Response {
    match dialer::reconcile(&app, &id).await {
        Ok(row) => Json(json!(row)).into_response(),
        Err(e) => answer(Err(e)),
    }
}

fn host(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::HOST).and_then(|h| h.to_str().ok())
}

fn answer(result: Result<dialer::Placed, DialError>) -> Response {
    match result {
        Ok(placed) => (StatusCode::CREATED, Json(json!({ "ok": true, "call": placed }))).into_response(),
        Err(DialError::Invalid(m)) => ApiError::bad_request(m).into_response(),
        Err(DialError::NotFound(m)) => ApiError::not_found(m).into_response(),
        Err(e @ DialError::Busy { .. }) => ApiError::new(StatusCode::TOO_MANY_REQUESTS, e.to_string()).into_response(),
        Err(DialError::AccountBusy { message, retry_after }) => {
            let mut resp = ApiError::new(StatusCode::TOO_MANY_REQUESTS, message).into_response();
            if let Some(v) = retry_after.and_then(|s| s.to_string().parse().ok()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
            resp
        }
        Err(DialError::Internal(e)) => ApiError::from(e).into_response(),
        Err(DialError::Exotel { id, source }) => {
            use exotel::rest::RestError as E;
            let status = match &source {
                E::Invalid { .. } => StatusCode::BAD_REQUEST,
                E::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
                E::Ambiguous { .. } => StatusCode::GATEWAY_TIMEOUT,
                _ => StatusCode::BAD_GATEWAY,
            };
            let retry_after = match &source {
                E::RateLimited { retry_after: Some(d), .. } => Some(d.as_secs().max(1)),
                _ => None,
            };
            let body = json!({
                "ok": false,
                "id": id,
                "error": source.to_string(),
                "kind": source.kind(),
                "field": source.field(),
                "exotel_status": source.http_status(),
                "placed": if matches!(source, E::Ambiguous { .. }) { "unknown" } else { "no" },
                "retry_after": retry_after,
            });
            let mut resp = (status, Json(body)).into_response();
            if let Some(secs) = retry_after {
                if let Ok(v) = secs.to_string().parse() {
                    resp.headers_mut().insert(header::RETRY_AFTER, v);
                }
            }
            resp
        }
    }
}
