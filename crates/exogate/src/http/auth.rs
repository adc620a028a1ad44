//! The control plane (placing calls, phones, agents, the call log) requires `Authorization: Bearer
//! <EXOGATE_API_KEY>`. Exotel can't send our key: its webhooks (dynamic URL, Passthru) are guarded
//! by ALLOW_IPS and WEBHOOK_SECRET instead, and the status callback carries its own per-call token.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::extract::{ConnectInfo, MatchedPath, RawPathParams, Request, State};
use axum::http::{Extensions, HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::access::{Refusals, basic_auth, client_ip};
use crate::app::AppState;
use crate::config::Secret;
use crate::secrets::keys_match;

/// Exotel's applet webhooks: the address must be allowed (ALLOW_IPS), and WEBHOOK_SECRET given in
/// the path (`/s/<secret>/passthru`), as the `secret` query parameter or as the Basic-auth password.
pub(crate) async fn require_exotel(
    State(app): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    params: RawPathParams,
    req: Request,
    next: Next,
) -> Response {
    let access = &app.config.access;
    let client = client_ip(peer.ip(), req.headers(), &access.trusted_proxies);
    // The route's pattern, never the path itself: that may hold the secret.
    let route = req.extensions().get::<MatchedPath>().map_or("", MatchedPath::as_str).to_string();
    if !access.allow_ips.allows(client) {
        Refusals::count(&app.refusals.ip);
        tracing::warn!(%client, route, "webhook refused: address not in ALLOW_IPS");
        return (StatusCode::FORBIDDEN, Json(json!({ "error": "address not allowed" }))).into_response();
    }
    if let Some(secret) = &access.webhook_secret {
        let in_query = serde_urlencoded::from_str::<Vec<(String, String)>>(req.uri().query().unwrap_or_default())
            .unwrap_or_default()
            .into_iter()
            .any(|(k, v)| k == "secret" && keys_match(&v, &secret.0));
        let in_basic = basic_auth(req.headers()).is_some_and(|(_, password)| keys_match(&password, &secret.0));
        let in_path = params.iter().any(|(k, v)| k == "secret" && keys_match(v, &secret.0));
        if !(in_query || in_basic || in_path) {
            Refusals::count(&app.refusals.auth);
            tracing::warn!(%client, route, "webhook refused: WEBHOOK_SECRET missing or wrong");
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Basic realm=\"exogate webhooks\"")],
                Json(json!({ "error": "webhook secret required" })),
            )
                .into_response();
        }
    }
    next.run(req).await
}

pub(crate) const OPEN_ONLY_LOCAL: &str =
    "without EXOGATE_API_KEY the API answers only Host localhost, 127.0.0.1 or [::1]";

/// Open only to this machine: a web page elsewhere that points its own name at 127.0.0.1 (DNS
/// rebinding) sends its own Host, and is refused.
pub(crate) fn host_is_local(headers: &axum::http::HeaderMap) -> bool {
    is_local_host(headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost"))
}

/// The control plane: `Authorization: Bearer <key>`, or the console's session cookie (whose
/// writes carry `X-CSRF-Token`).
pub(crate) async fn require_key(State(app): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    // A browser tells where a request comes from; a write from another site's page is refused
    // whatever it carries (a form post needs no CORS preflight, and the open mode has no key).
    let write = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if write && from_another_site(req.headers()) {
        Refusals::count(&app.refusals.auth);
        tracing::warn!("control-plane write refused: sent by another site's page");
        return (StatusCode::FORBIDDEN, Json(json!({ "error": "cross-site request refused" }))).into_response();
    }
    let Some(expected) = &app.api_key else {
        if !host_is_local(req.headers()) {
            Refusals::count(&app.refusals.host);
            tracing::warn!("control-plane request refused: no API key is set and the Host is not local");
            return (StatusCode::FORBIDDEN, Json(json!({ "error": OPEN_ONLY_LOCAL }))).into_response();
        }
        return next.run(req).await;
    };
    // A proxy's own Basic auth may sit in Authorization: only a Bearer key takes the cookie's place.
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.get(..7).is_some_and(|p| p.eq_ignore_ascii_case("bearer ")));
    if !bearer {
        if let Some(session) = super::session::signed_in(&app, req.headers(), expected) {
            if !super::session::csrf_ok(req.method(), req.headers(), &session) {
                Refusals::count(&app.refusals.auth);
                let message = "a write with the session cookie needs its X-CSRF-Token header";
                return (StatusCode::FORBIDDEN, Json(json!({ "error": message }))).into_response();
            }
            return next.run(req).await;
        }
    }
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim);
    let Some(key) = given else {
        return unauthorized("missing API key: send Authorization: Bearer <EXOGATE_API_KEY>");
    };
    match check_key(&app, req.extensions(), req.headers(), key, expected) {
        KeyCheck::Right => next.run(req).await,
        KeyCheck::Wrong => unauthorized("invalid API key"),
        KeyCheck::Refused(refused) => refused,
    }
}

pub(crate) enum KeyCheck {
    Right,
    Wrong,
    /// Not looked at: the address sent too many wrong keys lately (429).
    Refused(Response),
}

/// Whether `given` is `expected`, the one way every key and token a client sends is checked (the
/// API key in the API's header or the console's sign-in, METRICS_TOKEN): an address that sent too
/// many wrong ones lately gets 429 before its key is even looked at, and a wrong one counts
/// against its address.
pub(crate) fn check_key(
    app: &AppState,
    extensions: &Extensions,
    headers: &HeaderMap,
    given: &str,
    expected: &Secret,
) -> KeyCheck {
    let client = match may_guess(app, extensions, headers) {
        Ok(client) => client,
        Err(secs) => return KeyCheck::Refused(too_many_guesses(secs)),
    };
    if keys_match(given, &expected.0) {
        return KeyCheck::Right;
    }
    wrong_guess(app, client);
    KeyCheck::Wrong
}

/// The address a request's key is counted against (None for a router driven without a socket, in
/// tests), or, when it sent too many wrong keys lately, how many seconds it must wait (counted as
/// a refusal).
fn may_guess(app: &AppState, extensions: &Extensions, headers: &HeaderMap) -> Result<Option<IpAddr>, u64> {
    let client = extensions
        .get::<ConnectInfo<std::net::SocketAddr>>()
        .map(|ConnectInfo(peer)| client_ip(peer.ip(), headers, &app.config.access.trusted_proxies));
    if let Some(Err(wait)) = client.map(|ip| app.key_guesses.may_try(ip, Instant::now())) {
        Refusals::count(&app.refusals.key_guesses);
        // Rounded up: a client that waits exactly this long is let in.
        return Err((wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1));
    }
    Ok(client)
}

/// A wrong key from `client` (see [`may_guess`]).
fn wrong_guess(app: &AppState, client: Option<IpAddr>) {
    if let Some(ip) = client {
        app.key_guesses.failed(ip, Instant::now());
    }
}

/// 429 with `Retry-After` and a JSON error.
fn too_many_guesses(secs: u64) -> Response {
    let message = format!("too many wrong keys from this address: try again in {secs} s");
    let headers = [(header::RETRY_AFTER, secs.to_string())];
    (StatusCode::TOO_MANY_REQUESTS, headers, Json(json!({ "error": message }))).into_response()
}

fn unauthorized(message: &str) -> Response {
    (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, "Bearer")], Json(json!({ "error": message })))
        .into_response()
}

/// `Sec-Fetch-Site` (every current browser sends it) says another site; from a browser without
/// it, `Origin` names another host than the one asked (`X-Forwarded-Host` behind a proxy that
/// rewrites `Host`). Clients that are not browsers send neither.
fn from_another_site(headers: &axum::http::HeaderMap) -> bool {
    let text = |name| headers.get(name).and_then(|v: &axum::http::HeaderValue| v.to_str().ok());
    match text("sec-fetch-site") {
        Some("cross-site" | "same-site") => return true,
        Some(_) => return false,
        None => {}
    }
    let asked = [text("host"), text("x-forwarded-host")];
    match text("origin") {
        Some("null") => true,
        Some(origin) => origin
            .split_once("://")
            .is_none_or(|(_, h)| !asked.iter().flatten().any(|a| h.eq_ignore_ascii_case(a.trim()))),
        None => false,
    }
}

/// `localhost`, `127.0.0.1`, `[::1]` (with any port).
fn is_local_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(h, port)| if port.parse::<u16>().is_ok() { h } else { host }),
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::is_local_host;

    #[test]
    fn writes_from_another_site_are_told_apart() {
        use axum::http::{HeaderMap, HeaderValue};
        let h = |pairs: &[(&'static str, &'static str)]| {
            let mut m = HeaderMap::new();
            for (k, v) in pairs {
                m.insert(*k, HeaderValue::from_static(v));
            }
            m
        };
        assert!(!super::from_another_site(&h(&[("host", "gw:8080")])), "curl");
        assert!(!super::from_another_site(&h(&[("host", "gw:8080"), ("origin", "https://gw:8080")])));
        assert!(!super::from_another_site(&h(&[
            ("sec-fetch-site", "same-origin"),
            ("origin", "http://gw:8080"),
            ("host", "gw:8080")
        ])));
        assert!(super::from_another_site(&h(&[("host", "127.0.0.1:8080"), ("origin", "https://evil.example")])));
        assert!(super::from_another_site(&h(&[("host", "gw"), ("sec-fetch-site", "cross-site")])));
        assert!(super::from_another_site(&h(&[("host", "gw"), ("origin", "null")])));
        // Behind a proxy that rewrites Host: the browser's own word, or the forwarded host.
        let proxied = [("origin", "https://gw.example"), ("host", "127.0.0.1:8080")];
        assert!(!super::from_another_site(&h(&[proxied[0], proxied[1], ("sec-fetch-site", "same-origin")])));
        assert!(!super::from_another_site(&h(&[proxied[0], proxied[1], ("x-forwarded-host", "gw.example")])));
        assert!(super::from_another_site(&h(&proxied)));
    }

    #[test]
    fn local_hosts() {
        for ok in ["localhost", "LOCALHOST:8080", "127.0.0.1", "127.0.0.1:8080", "[::1]", "[::1]:80", "127.3.4.5"] {
            assert!(is_local_host(ok), "{ok}");
        }
        for bad in ["evil.example", "evil.example:8080", "localhost.evil.example", "10.0.0.1", "[2001:db8::1]:80", ""] {
            assert!(!is_local_host(bad), "{bad}");
        }
    }
}
