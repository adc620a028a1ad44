//! HTTP routes: Exotel's applet webhooks, the call-log API, health, and the media upgrade.

mod agents;
mod auth;
mod calls;
mod campaigns;
mod console;
mod error;
mod health;
mod json_body;
mod live;
mod openapi;
mod outbound;
mod passthru;
mod phones;
mod recording;
pub(crate) mod session;
pub(crate) mod status_callback;
mod twilio_api;
mod voicebot;
mod webhook_input;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware::from_fn_with_state;
use axum::routing::{get, post};
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

use crate::app::AppState;

/// Exotel's webhooks carry a few fields: a body beyond this is not Exotel.
const WEBHOOK_BODY: usize = 64 * 1024;
/// Control-plane JSON (agents, phones, calls); campaign uploads have their own, larger limit.
const API_BODY: usize = 1024 * 1024;

/// The control plane: every route here needs the API key (`auth::require_key`) and is in
/// `/api/openapi.json`. Add a route with `routes!(module::handler, …)`, one call per path (the
/// handlers of a path together), each handler annotated with `#[utoipa::path(method, path = "…",
/// operation_id = "…", tag = "…", params(…), request_body = …, responses(…))]`: the annotation's
/// path and method are what gets routed, so the document and the routing table can't differ.
/// List the statuses the handler itself answers, each with its body's type (`ErrorBody` for an
/// `ApiError`); what every route here may answer (401 and 403 from the key check, 500, and 503
/// with the database away) and the bearer security requirement are added to each operation by
/// `openapi::key_protected`.
fn control_routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::default()
        .routes(routes!(outbound::seed_call))
        .routes(routes!(calls::list, outbound::create))
        .routes(routes!(calls::show))
        .routes(routes!(outbound::refresh))
        .routes(routes!(phones::list, phones::create))
        .routes(routes!(phones::show, phones::put, phones::patch, phones::delete))
        .routes(routes!(campaigns::list, campaigns::create).layer(DefaultBodyLimit::max(campaigns::MAX_UPLOAD)))
        .routes(routes!(campaigns::show))
        .routes(routes!(campaigns::contacts))
        .routes(routes!(campaigns::results))
        .routes(routes!(campaigns::act))
        .routes(routes!(agents::list, agents::create))
        .routes(routes!(agents::show, agents::put, agents::patch, agents::delete))
        .routes(routes!(live::list))
        .routes(routes!(live::hang_up))
        .routes(routes!(live::transfer))
        .routes(routes!(recording::get))
}

/// Open to anyone (no key): health, metrics (METRICS_TOKEN guards it when set), this document.
fn public_routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::default()
        .routes(routes!(health::health))
        .routes(routes!(health::metrics))
        .routes(routes!(openapi::openapi_json))
        .routes(routes!(session::show, session::sign_in, session::sign_out).layer(DefaultBodyLimit::max(WEBHOOK_BODY)))
}

/// `/api/openapi.json`: the operations of [`control_routes`] and [`public_routes`].
fn document() -> utoipa::openapi::OpenApi {
    let mut control = control_routes().into_openapi();
    openapi::key_protected(&mut control);
    openapi::document([control, public_routes().into_openapi()])
}

pub(crate) fn router(state: Arc<AppState>) -> Router {
    let (control, _) = control_routes()
        .route_layer(from_fn_with_state(state.clone(), auth::require_key))
        .layer(DefaultBodyLimit::max(API_BODY))
        .split_for_parts();
    let (public, _) = public_routes().split_for_parts();
    let exotel = Router::new()
        .route("/api/exotel/passthru", get(passthru::passthru).post(passthru::passthru))
        .route("/passthru", get(passthru::passthru).post(passthru::passthru))
        .route("/voicebot", get(voicebot::dynamic_url).post(voicebot::dynamic_url))
        .route("/voicebot/connect", get(voicebot::dynamic_url).post(voicebot::dynamic_url))
        .route("/api/v1/exotel/voice/connect", get(voicebot::dynamic_url).post(voicebot::dynamic_url))
        .route_layer(from_fn_with_state(state.clone(), auth::require_exotel))
        .layer(DefaultBodyLimit::max(WEBHOOK_BODY));
    // The console's files (its API is the control plane's, signed in through `/api/session`).
    let console = Router::new()
        .route("/", get(console::index))
        .route("/console/app.js", get(console::app_js))
        .route("/console/app.css", get(console::app_css));
    Router::new()
        .merge(control)
        .merge(public)
        .merge(console)
        // WEBHOOK_SECRET may also travel in the path, for flows whose URL field keeps no query.
        .nest("/s/{secret}", exotel.clone())
        .merge(exotel)
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
