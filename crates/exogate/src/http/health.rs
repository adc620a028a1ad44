//! Health endpoints for load balancers and the Exotel dashboard's checks.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use serde_json::{Value, json};

use super::json_body::Reply;
use crate::app::AppState;

/// How the gateway is doing.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct Health {
    status: HealthStatus,
    /// Why it is degraded.
    reason: Option<String>,
    /// Call-log writes dropped since start (the queue was full, or the database refused one for good).
    call_log_writes_dropped: u64,
    version: &'static str,
    uptime_secs: u64,
    active_calls: u64,
    /// Whether the database answers.
    database: bool,
    /// Bot decisions waiting for their Passthru.
    decisions_pending: u64,
    /// Bot decisions dropped because too many waited.
    decisions_dropped: u64,
    /// Console sign-outs forgotten before their cookies expired (more than 100,000 were held).
    sign_outs_forgotten: u64,
    /// Connections and requests turned away since start, by reason.
    #[schema(value_type = Refused)]
    refused: Value,
    #[schema(value_type = AddressTables)]
    address_tables: Value,
}

/// The bounded tables of addresses behind the limits: times one was full and let addresses go,
/// whose counts then started again (see docs/reliability.md, "Limits").
#[derive(Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // Describes `address_tables`, a JSON value shared with /metrics.
pub(crate) struct AddressTables {
    /// A listener's connections-per-second table (CONNS_PER_IP_PER_SEC) was cleared.
    connection_rate_overflows: u64,
    /// Addresses let go from the table of wrong keys (never one that is being refused).
    key_guess_overflows: u64,
}

fn address_tables(app: &AppState) -> Value {
    json!({
        "connection_rate_overflows": app.conn_rate_overflows.load(Ordering::Relaxed),
        "key_guess_overflows": app.key_guesses.overflows.load(Ordering::Relaxed),
    })
}

/// `degraded` while the database does not answer or call-log writes fail (calls keep flowing).
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum HealthStatus {
    Ok,
    Degraded,
}

/// Connections and requests turned away, by reason (what `Refusals::snapshot` counts).
#[derive(Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // Describes `Refusals::snapshot`, a JSON value shared with /metrics.
pub(crate) struct Refused {
    ip_not_allowed: u64,
    bad_credentials: u64,
    bad_token: u64,
    token_for_another_call: u64,
    over_max_calls: u64,
    over_connection_rate: u64,
    bad_host: u64,
    /// Key checks refused to an address that sent too many wrong keys (the API key, METRICS_TOKEN).
    too_many_wrong_keys: u64,
}

#[utoipa::path(get, path = "/health", operation_id = "health", tag = "health", security(()),
    responses((status = 200, description = "Always 200 while the process serves: a gateway whose database is away \
        keeps taking calls (`status: degraded`)", body = Health)))]
pub(crate) async fn health(State(app): State<Arc<AppState>>) -> (StatusCode, Reply<Health>) {
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
        Reply(Health {
            status: if reason.is_none() { HealthStatus::Ok } else { HealthStatus::Degraded },
            reason,
            call_log_writes_dropped: writer.dropped.load(Ordering::Relaxed),
            version: env!("CARGO_PKG_VERSION"),
            uptime_secs: app.started.elapsed().as_secs(),
            active_calls: app.active_calls.load(Ordering::Relaxed) as u64,
            database: db,
            decisions_pending: app.decisions.pending() as u64,
            decisions_dropped: app.decisions.dropped(),
            sign_outs_forgotten: app.signed_out.forgotten.load(Ordering::Relaxed),
            // Connections and requests turned away (auth, ALLOW_IPS, MAX_CALLS, connection rate).
            refused: app.refusals.snapshot(),
            address_tables: address_tables(&app),
        }),
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
#[utoipa::path(get, path = "/metrics", operation_id = "metrics", tag = "health",
    security((), ("metrics_token" = [])),
    responses(
        (status = 200, description = "Counters and gauges in the OpenMetrics text format",
            content_type = "application/openmetrics-text", body = String),
        (status = 401, description = "METRICS_TOKEN is set and was not sent", content_type = "text/plain", body = String),
        (status = 429, description = "Too many wrong keys or tokens from this address: try again after `Retry-After` \
            seconds", body = super::error::ErrorBody),
    ))]
pub(crate) async fn metrics(
    State(app): State<Arc<AppState>>,
    extensions: axum::http::Extensions,
    headers: axum::http::HeaderMap,
) -> axum::response::Response {
    use super::auth::KeyCheck;
    use axum::response::IntoResponse;
    if let Some(token) = &app.config.access.metrics_token {
        let given = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        // A scrape without a token is a scraper not set up yet, not a guess.
        let check = if given.is_empty() {
            KeyCheck::Wrong
        } else {
            super::auth::check_key(&app, &extensions, &headers, given, token)
        };
        match check {
            KeyCheck::Right => {}
            KeyCheck::Wrong => return (StatusCode::UNAUTHORIZED, "metrics token required\n").into_response(),
            KeyCheck::Refused(refused) => return refused,
        }
    }
    let writer = app.store.writer_health();
    // A database that is slow or away leaves the campaigns out (within a second), not the scrape.
    let campaigns = tokio::time::timeout(std::time::Duration::from_secs(1), app.store.unfinished_campaigns_progress())
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    let refused = app.refusals.snapshot();
    let text = app.metrics.render(&crate::metrics::Readings {
        queued: app.store.queued(),
        dropped: writer.dropped.load(Ordering::Relaxed),
        refused: &refused,
        address_tables: &address_tables(&app),
        recordings: app.recordings.as_ref().map(|r| &*r.stats),
        live_unlisted: app.live.unlisted.load(Ordering::Relaxed),
        campaigns: &campaigns,
    });
    ([(axum::http::header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], text)
        .into_response()
}
