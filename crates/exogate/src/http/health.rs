//! Health endpoints for load balancers and the Exotel dashboard's checks.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::app::AppState;

pub(crate) async fn health(State(app): State<Arc<AppState>>) -> (StatusCode, Json<Value>) {
    let db = app.store.ping().await;
    let writer = app.store.writer_health();
    let failing = writer.failing();
    let reason = match (&failing, db) {
        (Some(why), _) => Some(format!("call-log writes failing: {why}")),
        (None, false) => Some("the database does not answer".to_string()),
        (None, true) => None,
    };
    // Calls keep flowing while the database is away (their rows wait in the bounded queue): the
    // gateway is degraded, not out of service, and a load balancer should keep sending calls.
    let status = StatusCode::OK;
    (
        status,
        Json(json!({
            "status": if reason.is_none() { "ok" } else { "degraded" },
            "reason": reason,
            "call_log_writes_dropped": writer.dropped.load(Ordering::Relaxed),
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_secs": app.started.elapsed().as_secs(),
            "active_calls": app.active_calls.load(Ordering::Relaxed),
            "database": db,
            // Bot decisions waiting for their Passthru, and those dropped because too many waited.
            "decisions_pending": app.decisions.pending(),
            "decisions_dropped": app.decisions.dropped(),
            // Connections and requests turned away (auth, ALLOW_IPS, MAX_CALLS, connection rate).
            "refused": app.refusals.snapshot(),
        })),
    )
}

pub(crate) async fn ws_health(State(app): State<Arc<AppState>>) -> Json<Value> {
    Json(json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "active_calls": app.active_calls.load(Ordering::Relaxed),
    }))
}

/// Prometheus text (OpenMetrics). Open unless METRICS_TOKEN is set: then `Bearer <token>`.
pub(crate) async fn metrics(
    State(app): State<Arc<AppState>>,
    headers: axum::http::HeaderMap,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    if let Some(token) = &app.config.access.metrics_token {
        let given = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        if !crate::secrets::keys_match(given, &token.0) {
            return (StatusCode::UNAUTHORIZED, "metrics token required\n").into_response();
        }
    }
    let writer = app.store.writer_health();
    let text = app.metrics.render(app.store.queued(), writer.dropped.load(Ordering::Relaxed), &app.refusals.snapshot());
    ([(axum::http::header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], text)
        .into_response()
}
