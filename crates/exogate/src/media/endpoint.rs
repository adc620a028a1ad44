//! The WebSocket upgrade: who may connect (address, Basic credentials, the per-call token, the
//! call limit), then the sample rate and custom parameters off the URL.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::ws::{CloseFrame, Message, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use exotel::SampleRate;

use super::session::{self, MediaParams};
use crate::access::{Refusals, client_ip, verify_media_token};
use crate::app::AppState;

/// Query parameters a media URL may carry, and their total size: Exotel passes at most 3 custom
/// parameters in 256 characters; the rest is ours (sample rate, token).
const MAX_QUERY_PARAMS: usize = 16;
const MAX_QUERY_CHARS: usize = 2048;

/// Exotel's chunks are ≤ 100 kB; a message over 1 MiB is abuse and closes the socket with 1009.
pub(crate) const MAX_MESSAGE: usize = 1 << 20;
/// Socket reads in pieces sized for telephony audio (a 100 ms, 24 kHz media message is ~6.5 kB),
/// not tungstenite's 128 KiB default, which would cost 128 KiB per call.
const READ_BUFFER: usize = 2 * 1024;
/// Bounds what a peer that stops reading can make us hold.
const MAX_WRITE_BUFFER: usize = 2 * MAX_MESSAGE;

pub(crate) async fn upgrade(
    State(app): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Query(query): Query<Vec<(String, String)>>,
    ws: WebSocketUpgrade,
) -> Response {
    let access = &app.config.access;
    let client = client_ip(peer.ip(), &headers, &access.trusted_proxies);
    if !access.allow_ips.allows(client) {
        Refusals::count(&app.refusals.ip);
        tracing::warn!(%client, "media socket refused: address not in ALLOW_IPS");
        return (StatusCode::FORBIDDEN, "address not allowed\n").into_response();
    }
    if let Some(creds) = &access.media_basic {
        if !creds.check(&headers) {
            Refusals::count(&app.refusals.auth);
            tracing::warn!(%client, "media socket refused: missing or wrong Basic credentials");
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Basic realm=\"exogate media\"")],
                "Basic credentials required\n",
            )
                .into_response();
        }
    }
    let query_chars: usize = query.iter().map(|(k, v)| k.len() + v.len() + 2).sum();
    if query.len() > MAX_QUERY_PARAMS || query_chars > MAX_QUERY_CHARS {
        return (
            StatusCode::BAD_REQUEST,
            format!("at most {MAX_QUERY_PARAMS} query parameters in {MAX_QUERY_CHARS} characters\n"),
        )
            .into_response();
    }
    let mut rate = None;
    let mut token = None;
    let mut query_params = BTreeMap::new();
    for (k, v) in query {
        if k.eq_ignore_ascii_case("sample-rate") || k.eq_ignore_ascii_case("sample_rate") {
            match SampleRate::parse(&v) {
                Some(r) => rate = Some(r),
                None => {
                    return (StatusCode::BAD_REQUEST, format!("{k} must be 8000, 16000 or 24000, got {v:?}\n"))
                        .into_response();
                }
            }
        } else if k == "t" {
            token = Some(v);
        } else {
            query_params.insert(k, v);
        }
    }
    let token = match (access.media_require_token, token) {
        (false, _) => None,
        (true, None) => return refuse_token(&app, client, "token required"),
        (true, Some(t)) => match verify_media_token(&app.secrets, &t) {
            Ok(call) => Some(call),
            Err(e) => return refuse_token(&app, client, e.as_str()),
        },
    };
    let params = MediaParams { rate, query_params, token };
    let over = app.config.limits.max_calls.is_some_and(|max| app.sessions.live() >= max);
    // Counted from the upgrade on, so shutdown waits for the session too.
    let guard = app.sessions.enter();
    let ws = ws
        .max_message_size(MAX_MESSAGE)
        .max_frame_size(MAX_MESSAGE)
        .read_buffer_size(READ_BUFFER)
        // Each message is written when sent: the writer already paces and sends one at a time.
        .write_buffer_size(0)
        .max_write_buffer_size(MAX_WRITE_BUFFER);
    if over {
        // Exotel's side learns it at once, with the code that says "try again later".
        Refusals::count(&app.refusals.capacity);
        tracing::warn!(%client, max = app.config.limits.max_calls, "media socket refused: MAX_CALLS reached");
        return ws.on_upgrade(move |mut socket| async move {
            let frame = CloseFrame { code: 1013, reason: "try again later".into() };
            let _ = socket.send(Message::Close(Some(frame))).await;
            drop(guard);
        });
    }
    ws.on_upgrade(move |socket| session::run(socket, params, app, guard))
}

fn refuse_token(app: &AppState, client: std::net::IpAddr, why: &str) -> Response {
    Refusals::count(&app.refusals.token);
    tracing::warn!(%client, reason = why, "media socket refused: MEDIA_REQUIRE_TOKEN");
    (StatusCode::UNAUTHORIZED, format!("{why}\n")).into_response()
}
