//! `/api/live`: the calls in progress on this gateway, and an operator's hang-up or transfer.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};

use super::error::{ApiError, ErrorBody};
use crate::app::AppState;
use crate::live::{LiveView, Operator};

/// Calls in progress on this gateway, newest first.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct LiveList {
    calls: Vec<LiveView>,
}

/// What was asked of a live call; it ends within moments (its row then says how).
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct Acted {
    /// The call log's id of the call.
    id: String,
    /// `hangup` or `transfer`.
    action: &'static str,
}

#[derive(Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct TransferInput {
    /// A number or flow id for the Passthru answer to report.
    to: Option<String>,
}

/// `GET /api/live`: calls whose media runs here now (another gateway's calls are on its own page).
#[utoipa::path(get, path = "/api/live", operation_id = "live_calls", tag = "calls",
    responses((status = 200, description = "Calls in progress on this gateway", body = LiveList)))]
pub(crate) async fn list(State(app): State<Arc<AppState>>) -> Json<LiveList> {
    Json(LiveList { calls: app.live.views() })
}

fn live_call(app: &AppState, id: &str) -> Result<Arc<crate::live::LiveCall>, ApiError> {
    app.live.find(id).ok_or_else(|| ApiError::not_found(format!("no call {id:?} in progress on this gateway")))
}

/// `POST /api/calls/{id}/hangup`: ends the call now (the socket closes with 1000).
#[utoipa::path(post, path = "/api/calls/{id}/hangup", operation_id = "hang_up_call", tag = "calls",
    params(("id" = String, Path, description = "Our id, Exotel's CallSid or the stream_sid")),
    responses(
        (status = 200, description = "The call is being ended", body = Acted),
        (status = 404, description = "No such call in progress on this gateway", body = ErrorBody),
    ))]
pub(crate) async fn hang_up(State(app): State<Arc<AppState>>, Path(id): Path<String>) -> Result<Json<Acted>, ApiError> {
    let call = live_call(&app, &id)?;
    call.operator(Operator::HangUp);
    Ok(Json(Acted { id: call.call_id(), action: "hangup" }))
}

/// `POST /api/calls/{id}/transfer` with `{"to": …}` (optional): ends the stream so the flow's
/// Passthru answers 302 and takes its transfer branch.
#[utoipa::path(post, path = "/api/calls/{id}/transfer", operation_id = "transfer_call", tag = "calls",
    params(("id" = String, Path, description = "Our id, Exotel's CallSid or the stream_sid")),
    request_body(content = Option<TransferInput>, description = "Optional: where to (reported by the Passthru answer)"),
    responses(
        (status = 200, description = "The call is being transferred", body = Acted),
        (status = 400, description = "A bad body, named", body = ErrorBody),
        (status = 404, description = "No such call in progress on this gateway", body = ErrorBody),
    ))]
pub(crate) async fn transfer(
    State(app): State<Arc<AppState>>,
    Path(id): Path<String>,
    body: Result<Option<Json<TransferInput>>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Acted>, ApiError> {
    let body = body.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let to = body.and_then(|Json(b)| b.to).map(|t| t.trim().to_string()).filter(|t| !t.is_empty());
    if to.as_ref().is_some_and(|t| t.len() > 128) {
        return Err(ApiError::bad_request("to: at most 128 characters"));
    }
    let call = live_call(&app, &id)?;
    call.operator(Operator::Transfer(to));
    Ok(Json(Acted { id: call.call_id(), action: "transfer" }))
}
