//! Placing calls: `POST /call` (the seed deployment's contract) and `POST /api/calls`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::error::{ApiError, ErrorBody};
use super::json_body::{JsonBody, Reply};
use crate::app::AppState;
use crate::dialer::{self, Dial, DialError, Mode};
use crate::store::CallRow;

/// `{"to": "+91…", "callLogId": "…"}`
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SeedCall {
    /// The number to call: digits with an optional leading `+` (6-16 digits; spaces, dashes).
    #[schema(pattern = r"^\+?[ -]*([0-9][ -]*){6,16}$", example = "+919876543210")]
    to: String,
    /// Our id for the call (its `CustomField`); one is made if absent.
    #[serde(rename = "callLogId")]
    #[schema(max_length = 128)]
    call_log_id: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewCall {
    /// The number to call: digits with an optional leading `+` (6-16 digits; spaces, dashes).
    #[schema(pattern = r"^\+?[ -]*([0-9][ -]*){6,16}$", example = "+919876543210")]
    to: String,
    /// The phone (id or number) to call from; the `EXOTEL_*` default phone, or the only phone, if absent.
    phone: Option<String>,
    /// The agent for the call; the phone's default agent, or `DEFAULT_AGENT`, if absent.
    #[schema(example = "echo")]
    agent: Option<String>,
    /// Exotel's `CustomField` (also accepted as `callLogId`); our call id if absent.
    #[serde(alias = "callLogId")]
    #[schema(max_length = 128)]
    custom_field: Option<String>,
    #[serde(default)]
    mode: Mode,
    /// Seconds the call may last (Exotel's `TimeLimit`).
    #[schema(minimum = 1, maximum = 14400)]
    time_limit: Option<u32>,
    /// Seconds to ring (Exotel's `TimeOut`).
    #[schema(minimum = 1, maximum = 60)]
    time_out: Option<u32>,
    /// Record the call on Exotel's side.
    record: Option<bool>,
}

/// A call placed: Exotel has it.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct Placement {
    /// Always true.
    ok: bool,
    call: dialer::Placed,
}

/// Whether a call Exotel answered an error for may exist anyway.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum PlacedState {
    /// Exotel refused it: no call.
    No,
    /// Exotel's answer was lost (5xx, timeout): the call may exist. Never retried; `refresh` tells.
    Unknown,
}

/// Exotel answered a call (or its details) with an error, or could not be reached.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct DialFailure {
    /// Always false.
    ok: bool,
    /// Our id of the call (its row in the call log records the failure).
    id: String,
    error: String,
    /// `invalid` (the request failed the client's own check), `bad_request`, `unauthorized`,
    /// `payment_required`, `forbidden`, `not_found`, `rate_limited`, `ambiguous`, `unreachable`,
    /// `unexpected`.
    kind: String,
    /// The request field at fault, for `invalid`.
    field: Option<String>,
    /// Exotel's HTTP status, when it answered.
    exotel_status: Option<u16>,
    placed: PlacedState,
    /// Seconds to wait (also the `Retry-After` header), for `rate_limited`.
    retry_after: Option<u64>,
}

/// Our own refusal (`ErrorBody`) or Exotel's (`DialFailure`).
#[derive(Serialize, utoipa::ToSchema)]
#[serde(untagged)]
#[allow(dead_code)] // Describes the answers `answer` writes as either.
pub(crate) enum DialRefusal {
    Ours(ErrorBody),
    Exotel(DialFailure),
}

/// The seed deployment's contract: places a call from the default phone with the default agent.
#[utoipa::path(post, path = "/call", operation_id = "seed_call", tag = "calls", request_body = SeedCall,
    responses(
        (status = 201, description = "Exotel accepted the call", body = Placement,
            links(("get_call" = (operation_id = "get_call", parameters(("id" = "$response.body#/call/id")))), ("refresh_call" = (operation_id = "refresh_call", parameters(("id" = "$response.body#/call/id")))))),
        (status = 400, description = "Our validation (naming the field), or Exotel's 400", body = DialRefusal),
        (status = 404, description = "No such phone", body = ErrorBody),
        (status = 429, description = "A phone's or the account's limit, or Exotel's rate limit",
            body = DialRefusal, headers(("Retry-After" = u64, description = "Seconds to wait, when known"))),
        (status = 502, description = "Exotel refused the call or could not be reached", body = DialFailure),
        (status = 504, description = "Exotel's answer was lost: the call may exist (`placed: unknown`)", body = DialFailure),
    ))]
pub(crate) async fn seed_call(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<SeedCall>,
) -> Response {
    let dial = Dial { to: body.to, custom_field: body.call_log_id, ..Dial::default() };
    answer(dialer::place(&app, dial, host(&headers)).await)
}

/// Places a call through Exotel's `Calls/connect`: the call's row is written first (`queued`).
#[utoipa::path(post, path = "/api/calls", operation_id = "create_call", tag = "calls", request_body = NewCall,
    responses(
        (status = 201, description = "Exotel accepted the call", body = Placement,
            links(("get_call" = (operation_id = "get_call", parameters(("id" = "$response.body#/call/id")))), ("refresh_call" = (operation_id = "refresh_call", parameters(("id" = "$response.body#/call/id")))))),
        (status = 400, description = "Our validation (naming the field; also: no phone to call from), or Exotel's 400",
            body = DialRefusal),
        (status = 404, description = "No such phone", body = ErrorBody),
        (status = 429, description = "A phone's or the account's limit, or Exotel's rate limit",
            body = DialRefusal, headers(("Retry-After" = u64, description = "Seconds to wait, when known"))),
        (status = 502, description = "Exotel refused the call or could not be reached", body = DialFailure),
        (status = 504, description = "Exotel's answer was lost: the call may exist (`placed: unknown`)", body = DialFailure),
    ))]
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
#[utoipa::path(post, path = "/api/calls/{id}/refresh", operation_id = "refresh_call", tag = "calls",
    params(("id" = String, Path, description = "Our id, Exotel's CallSid or the stream_sid")),
    responses(
        (status = 200, description = "The call, reconciled with Exotel's call details", body = CallRow),
        (status = 400, description = "The call has no Exotel CallSid yet, or no phone to ask with; or Exotel's 400",
            body = DialRefusal),
        (status = 404, description = "No such call (or its phone is gone)", body = ErrorBody),
        (status = 429, description = "Exotel's rate limit", body = DialRefusal,
            headers(("Retry-After" = u64, description = "Seconds to wait, when known"))),
        (status = 502, description = "Exotel refused or could not be reached", body = DialFailure),
        (status = 504, description = "Exotel's answer was lost", body = DialFailure),
    ))]
pub(crate) async fn refresh(
    State(app): State<Arc<AppState>>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Response {
    match dialer::reconcile(&app, &id).await {
        Ok(row) => Reply(row).into_response(),
        Err(e) => answer(Err(e)),
    }
}

fn host(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::HOST).and_then(|h| h.to_str().ok())
}

fn answer(result: Result<dialer::Placed, DialError>) -> Response {
    match result {
        Ok(placed) => (StatusCode::CREATED, Reply(Placement { ok: true, call: placed })).into_response(),
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
            let body = DialFailure {
                ok: false,
                id,
                error: source.to_string(),
                kind: source.kind().to_string(),
                field: source.field().map(String::from),
                exotel_status: source.http_status(),
                placed: if matches!(source, E::Ambiguous { .. }) { PlacedState::Unknown } else { PlacedState::No },
                retry_after,
            };
            let mut resp = (status, Reply(body)).into_response();
            if let Some(secs) = retry_after {
                if let Ok(v) = secs.to_string().parse() {
                    resp.headers_mut().insert(header::RETRY_AFTER, v);
                }
            }
            resp
        }
    }
}
