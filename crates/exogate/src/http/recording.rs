//! `GET /api/calls/{id}/recording`: the call's stereo WAV (caller left, bot right), with range
//! requests so a player can seek.

use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use tower::ServiceExt;
use tower_http::services::ServeFile;

use super::error::{ApiError, ErrorBody};
use crate::app::AppState;
use crate::store::CallRow;

/// The URL the API gives for a call's recording.
pub(crate) fn url(call_id: &str) -> String {
    format!("/api/calls/{call_id}/recording")
}

/// The call's recording file, once it is complete: none while it is being written (the call is
/// live, or its last second is being flushed), or when recordings are off.
pub(crate) async fn complete_file(app: &AppState, call: &CallRow) -> Option<PathBuf> {
    let path = app.recordings.as_ref()?.path_of(call.recording.as_deref()?)?;
    tokio::fs::try_exists(&path).await.unwrap_or(false).then_some(path)
}

#[utoipa::path(get, path = "/api/calls/{id}/recording", operation_id = "get_recording", tag = "calls",
    params(
        ("id" = String, Path, description = "Our id, Exotel's CallSid or the stream_sid"),
        ("range" = Option<String>, Header, description = "`bytes=first-last`: part of the file"),
    ),
    responses(
        (status = 200, description = "The whole recording: stereo 16-bit PCM, caller left, bot right",
            content_type = "audio/wav", body = Vec<u8>),
        (status = 206, description = "The range asked for", content_type = "audio/wav", body = Vec<u8>),
        (status = 404, description = "No such call, no recording, or one still being written", body = ErrorBody),
        (status = 416, description = "The range is outside the file"),
    ))]
pub(crate) async fn get(
    State(app): State<Arc<AppState>>,
    Path(id): Path<String>,
    req: Request,
) -> Result<Response, ApiError> {
    let call = app.store.find_call(&id).await?.ok_or_else(|| ApiError::not_found(format!("no call {id:?}")))?;
    let path =
        complete_file(&app, &call).await.ok_or_else(|| ApiError::not_found(format!("call {id:?} has no recording")))?;
    let mut res = ServeFile::new_with_mime(&path, &"audio/wav".parse().map_err(anyhow::Error::from)?)
        .oneshot(req)
        .await
        .map_err(|e| anyhow::anyhow!("cannot read the recording: {e}"))?
        .into_response();
    let file = format!("attachment; filename=\"{}.wav\"", call.id);
    if let Ok(v) = HeaderValue::from_str(&file) {
        res.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    // Call audio stays out of the browser's cache (a shared operator PC).
    res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(res)
}
