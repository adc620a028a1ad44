//! The WebSocket upgrade: reads the sample rate and custom parameters off the URL.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use exotel::SampleRate;

use super::session::{self, MediaParams};
use crate::app::AppState;

/// Exotel's chunks are ≤ 100 kB; a message over 1 MiB is abuse and closes the socket with 1009.
pub(crate) const MAX_MESSAGE: usize = 1 << 20;
/// Socket reads in pieces sized for telephony audio (a 100 ms, 24 kHz media message is ~6.5 kB),
/// not tungstenite's 128 KiB default, which would cost 128 KiB per call.
const READ_BUFFER: usize = 2 * 1024;
/// Bounds what a peer that stops reading can make us hold.
const MAX_WRITE_BUFFER: usize = 2 * MAX_MESSAGE;

pub(crate) async fn upgrade(
    State(app): State<Arc<AppState>>,
    Query(query): Query<Vec<(String, String)>>,
    ws: WebSocketUpgrade,
) -> Response {
    let mut rate = None;
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
        } else {
            query_params.insert(k, v);
        }
    }
    let params = MediaParams { rate, query_params };
    // Counted from the upgrade on, so shutdown waits for the session too.
    let guard = app.sessions.enter();
    ws.max_message_size(MAX_MESSAGE)
        .max_frame_size(MAX_MESSAGE)
        .read_buffer_size(READ_BUFFER)
        // Each message is written when sent: the writer already paces and sends one at a time.
        .write_buffer_size(0)
        .max_write_buffer_size(MAX_WRITE_BUFFER)
        .on_upgrade(move |socket| session::run(socket, params, app, guard))
}
