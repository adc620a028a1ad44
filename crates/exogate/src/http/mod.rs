//! HTTP routes: Exotel's applet webhooks, the call-log API, health, and the media upgrade.

mod agents;
mod auth;
mod calls;
mod campaigns;
mod error;
mod health;
mod json_body;
mod outbound;
mod passthru;
mod phones;
pub(crate) mod status_callback;
mod twilio_api;
mod voicebot;
mod webhook_input;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware::from_fn_with_state;
use axum::routing::{get, post};

use crate::app::AppState;

/// Exotel's webhooks carry a few fields: a body beyond this is not Exotel.
const WEBHOOK_BODY: usize = 64 * 1024;
/// Control-plane JSON (agents, phones, calls); campaign uploads have their own, larger limit.
const API_BODY: usize = 1024 * 1024;

pub(crate) fn router(state: Arc<AppState>) -> Router {
    let control = Router::new()
        .route("/call", post(outbound::seed_call))
        .route("/api/calls", get(calls::list).post(outbound::create))
        .route("/api/calls/{id}", get(calls::show))
        .route("/api/calls/{id}/refresh", post(outbound::refresh))
        .route("/api/phones", get(phones::list).post(phones::create))
        .route("/api/phones/{id}", get(phones::show).put(phones::update).patch(phones::update).delete(phones::delete))
        .route(
            "/api/campaigns",
            get(campaigns::list).post(campaigns::create).layer(DefaultBodyLimit::max(campaigns::MAX_UPLOAD)),
        )
        .route("/api/campaigns/{id}", get(campaigns::show))
        .route("/api/campaigns/{id}/contacts", get(campaigns::contacts))
        .route("/api/campaigns/{id}/results.csv", get(campaigns::results))
        .route("/api/campaigns/{id}/{action}", post(campaigns::act))
        .route("/api/agents", get(agents::list).post(agents::create))
        .route("/api/agents/{id}", get(agents::show).put(agents::update).patch(agents::update).delete(agents::delete))
        .route_layer(from_fn_with_state(state.clone(), auth::require_key))
        .layer(DefaultBodyLimit::max(API_BODY));
    let exotel = Router::new()
        .route("/api/exotel/passthru", get(passthru::passthru).post(passthru::passthru))
        .route("/passthru", get(passthru::passthru).post(passthru::passthru))
        .route("/voicebot", get(voicebot::dynamic_url).post(voicebot::dynamic_url))
        .route("/voicebot/connect", get(voicebot::dynamic_url).post(voicebot::dynamic_url))
        .route("/api/v1/exotel/voice/connect", get(voicebot::dynamic_url).post(voicebot::dynamic_url))
        .route_layer(from_fn_with_state(state.clone(), auth::require_exotel))
        .layer(DefaultBodyLimit::max(WEBHOOK_BODY));
    Router::new()
        .merge(control)
        // WEBHOOK_SECRET may also travel in the path, for flows whose URL field keeps no query.
        .nest("/s/{secret}", exotel.clone())
        .merge(exotel)
        .route("/health", get(health::health))
        .route("/metrics", get(health::metrics))
        .route("/api/exotel/status", post(status_callback::status_callback).layer(DefaultBodyLimit::max(WEBHOOK_BODY)))
        .route("/media", get(crate::media::upgrade))
        // Bridged Twilio bots hang up through Twilio's REST API, pointed at us (their auth: Basic).
        .route("/2010-04-01/Accounts/{account}/Calls/{call}", post(twilio_api::update))
        .with_state(state)
}

/// The media port: WebSocket at any path (Exotel's sample config uses a bare `ws://host:8765`).
pub(crate) fn ws_port_router(state: Arc<AppState>) -> Router {
    Router::new().route("/health", get(health::ws_health)).fallback(get(crate::media::upgrade)).with_state(state)
}
