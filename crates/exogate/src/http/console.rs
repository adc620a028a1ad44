//! The web console: three files built into the binary, served at `/` (nothing fetched from
//! elsewhere, so it works offline and behind any firewall). It speaks the same API as everyone
//! else, signed in with a session cookie (see `session`).

use axum::http::{HeaderName, HeaderValue, header};
use axum::response::IntoResponse;

const INDEX: &str = include_str!("../../console/index.html");
const APP_JS: &str = include_str!("../../console/app.js");
const APP_CSS: &str = include_str!("../../console/app.css");

/// Only our own scripts and styles; audio and the waveform come from our origin.
const CSP: &str = "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; style-src 'self'; \
                   script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

fn page(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    let headers: [(HeaderName, HeaderValue); 5] = [
        (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
        (header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP)),
        (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
        (header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")),
        // Built into the binary: a new version is a new process, so the browser asks each time.
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
    ];
    (headers, body)
}

pub(crate) async fn index() -> impl IntoResponse {
    page("text/html; charset=utf-8", INDEX)
}

pub(crate) async fn app_js() -> impl IntoResponse {
    page("text/javascript; charset=utf-8", APP_JS)
}

pub(crate) async fn app_css() -> impl IntoResponse {
    page("text/css; charset=utf-8", APP_CSS)
}
