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
    let status = if db { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (
        status,
        Json(json!({
            "status": if db { "ok" } else { "degraded" },
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
