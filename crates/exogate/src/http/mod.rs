//! HTTP routes: Exotel's applet webhooks, the call-log API, health, and the media upgrade.

mod calls;
mod error;
mod health;
mod passthru;
mod voicebot;
mod webhook_input;

use std::sync::Arc;

use axum::Router;
use axum::routing::get;

use crate::app::AppState;

pub(crate) fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/health", get(health::health))
        .route("/api/exotel/passthru", get(passthru::passthru).post(passthru::passthru))
        .route("/passthru", get(passthru::passthru).post(passthru::passthru))
        .route("/voicebot", get(voicebot::dynamic_url).post(voicebot::dynamic_url))
        .route("/voicebot/connect", get(voicebot::dynamic_url).post(voicebot::dynamic_url))
        .route("/api/v1/exotel/voice/connect", get(voicebot::dynamic_url).post(voicebot::dynamic_url))
        .route("/api/calls", get(calls::list))
        .route("/api/calls/{id}", get(calls::show))
        .route("/media", get(crate::media::upgrade))
        .with_state(state)
}

/// The media port: WebSocket at any path (Exotel's sample config uses a bare `ws://host:8765`).
pub(crate) fn ws_port_router(state: Arc<AppState>) -> Router {
    Router::new().route("/health", get(health::ws_health)).fallback(get(crate::media::upgrade)).with_state(state)
}
