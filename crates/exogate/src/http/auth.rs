//! The control plane (placing calls, phones, agents, the call log) requires `Authorization: Bearer
//! <EXOGATE_API_KEY>`. Exotel's webhooks stay open: Exotel can't send our key (the status callback
//! carries its own per-call token instead).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::app::AppState;
use crate::secrets::keys_match;

pub(crate) async fn require_key(State(app): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let Some(expected) = &app.api_key else { return next.run(req).await };
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim);
    match given {
        Some(key) if keys_match(key, &expected.0) => next.run(req).await,
        Some(_) => unauthorized("invalid API key"),
        None => unauthorized("missing API key: send Authorization: Bearer <EXOGATE_API_KEY>"),
    }
}

fn unauthorized(message: &str) -> Response {
    (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, "Bearer")], Json(json!({ "error": message })))
        .into_response()
}
