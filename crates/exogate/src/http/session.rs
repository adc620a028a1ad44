//! The console's sign-in: the API key, given once, buys a session cookie (`HttpOnly`,
//! `SameSite=Strict`), so the key never sits in the page. The cookie is signed with a key derived
//! from the API key, so it needs no server-side table, holds across restarts and gateways sharing
//! a database, and dies when the API key changes. Signing out records the session's nonce in the
//! database, so a copy of the cookie is refused from then on. Writes made with the cookie also carry
//! `X-CSRF-Token`, derived from the same session: a page elsewhere can't read it, so it can't
//! forge a write even where a browser would send the cookie.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::extract::State;
use axum::http::{Extensions, HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::auth::KeyCheck;
use super::error::{ApiError, ErrorBody};
use super::json_body::JsonBody;
use crate::app::AppState;
use crate::config::Secret;
use crate::secrets::keys_match;

pub(crate) const COOKIE: &str = "exogate_session";
pub(crate) const CSRF_HEADER: &str = "x-csrf-token";
const LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// A failed sign-in waits this long: guessing keys through the form is slow.
const FAILED_SIGN_IN_DELAY: Duration = Duration::from_millis(500);

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SignIn {
    /// EXOGATE_API_KEY.
    key: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct SessionInfo {
    /// Send it as `X-CSRF-Token` with every write.
    csrf: String,
    /// No API key is configured: the API is open on this machine, nothing to sign in to.
    open: bool,
}

/// A session the cookie proves.
pub(crate) struct Session {
    pub(crate) csrf: String,
    nonce: String,
    /// When the cookie expires (Unix seconds).
    expires: u64,
}

fn mac(api_key: &Secret, purpose: &str, parts: &[&str]) -> String {
    // The key itself is the MAC key: a new API key ends every session.
    let Ok(mut m) = Hmac::<Sha256>::new_from_slice(api_key.0.as_bytes()) else { return String::new() };
    m.update(purpose.as_bytes());
    for p in parts {
        m.update(b"|");
        m.update(p.as_bytes());
    }
    hex::encode(m.finalize().into_bytes())
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn issue(api_key: &Secret) -> (String, Session) {
    let expires = (now_secs() + LIFETIME.as_secs()).to_string();
    let nonce = uuid::Uuid::new_v4().simple().to_string();
    let cookie = format!("{expires}.{nonce}.{}", mac(api_key, "exogate-session", &[&expires, &nonce]));
    let csrf = mac(api_key, "exogate-csrf", &[&nonce]);
    (cookie, Session { csrf, nonce, expires: now_secs() + LIFETIME.as_secs() })
}

/// The session the request's cookie proves, unless it signed out.
pub(crate) fn signed_in(app: &AppState, headers: &HeaderMap, api_key: &Secret) -> Option<Session> {
    from_cookie(headers, api_key).filter(|s| !app.signed_out.contains(&s.nonce))
}

/// Sessions signed out, by nonce, with when their cookies expire. Checked in memory: no database
/// round trip per request, and a database that is away signs nobody out or back in. Filled from
/// the database at start and whenever the caches reload (at once on every gateway after a
/// sign-out on PostgreSQL, through its change notification).
#[derive(Default)]
pub struct SignedOut {
    by_nonce: std::sync::RwLock<std::collections::HashMap<String, u64>>,
    /// Sign-outs forgotten before their cookies expired: the set was full.
    pub forgotten: std::sync::atomic::AtomicU64,
}

/// Far more sign-outs than 12 hours of operators make; each one took a signed-in session.
const MAX_SIGNED_OUT: usize = 100_000;

impl SignedOut {
    fn contains(&self, nonce: &str) -> bool {
        self.by_nonce.read().is_ok_and(|m| m.contains_key(nonce))
    }

    /// Adds sign-outs (nonce, expires at); the expired ones go. When full, those expiring soonest
    /// are forgotten first (counted).
    pub fn add(&self, entries: impl IntoIterator<Item = (String, u64)>) {
        let Ok(mut m) = self.by_nonce.write() else { return };
        let now = now_secs();
        m.retain(|_, expires| *expires > now);
        for (nonce, expires) in entries {
            if expires <= now {
                continue;
            }
            if m.len() >= MAX_SIGNED_OUT && !m.contains_key(&nonce) {
                let soonest = m.iter().min_by_key(|(_, e)| **e).map(|(n, _)| n.clone());
                if let Some(n) = soonest {
                    m.remove(&n);
                    self.forgotten.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
            m.insert(nonce, expires);
        }
    }
}

/// The session the request's cookie proves, if any (signed out or not).
fn from_cookie(headers: &HeaderMap, api_key: &Secret) -> Option<Session> {
    let value = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v)?;
    let mut parts = value.splitn(3, '.');
    let (expires, nonce, sig) = (parts.next()?, parts.next()?, parts.next()?);
    if !keys_match(sig, &mac(api_key, "exogate-session", &[expires, nonce])) {
        return None;
    }
    let expires = expires.parse::<u64>().ok()?;
    if expires <= now_secs() {
        return None;
    }
    Some(Session { csrf: mac(api_key, "exogate-csrf", &[nonce]), nonce: nonce.to_string(), expires })
}

/// A write made with the cookie must carry the session's CSRF token.
pub(crate) fn csrf_ok(method: &Method, headers: &HeaderMap, session: &Session) -> bool {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return true;
    }
    headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()).is_some_and(|t| keys_match(t, &session.csrf))
}

fn cookie_header(app: &AppState, headers: &HeaderMap, value: &str, max_age: u64) -> HeaderValue {
    // Secure where the browser reached us over https (built-in TLS, or a proxy that says so).
    let https = app.config.tls.is_some()
        || headers.get("x-forwarded-proto").is_some_and(|p| p.as_bytes().eq_ignore_ascii_case(b"https"));
    let secure = if https { "; Secure" } else { "" };
    let text = format!("{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}");
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("exogate_session=; Max-Age=0"))
}

/// `GET /api/session`: the CSRF token of the cookie's session; 401 when signed out.
#[utoipa::path(get, path = "/api/session", operation_id = "get_session", tag = "console", security(()),
    responses(
        (status = 200, description = "Signed in (or no API key is set and the Host is local)", body = SessionInfo),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "No API key is set and the Host is not local", body = ErrorBody),
    ))]
pub(crate) async fn show(State(app): State<Arc<AppState>>, headers: HeaderMap) -> Result<Json<SessionInfo>, ApiError> {
    match &app.api_key {
        None if super::auth::host_is_local(&headers) => Ok(Json(SessionInfo { csrf: String::new(), open: true })),
        None => Err(ApiError::new(StatusCode::FORBIDDEN, super::auth::OPEN_ONLY_LOCAL)),
        Some(key) => signed_in(&app, &headers, key)
            .map(|s| Json(SessionInfo { csrf: s.csrf, open: false }))
            .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "not signed in")),
    }
}

/// `POST /api/session` with `{"key": "<EXOGATE_API_KEY>"}`: sets the session cookie.
#[utoipa::path(post, path = "/api/session", operation_id = "sign_in", tag = "console", security(()),
    request_body = SignIn,
    responses(
        (status = 200, description = "Signed in: `Set-Cookie: exogate_session=…; HttpOnly; SameSite=Strict`",
            body = SessionInfo),
        (status = 400, description = "Not a sign-in body", body = ErrorBody),
        (status = 401, description = "Wrong API key", body = ErrorBody),
        (status = 403, description = "No API key is set and the Host is not local", body = ErrorBody),
        (status = 429, description = "Too many wrong keys from this address: try again after `Retry-After` \
            seconds", body = ErrorBody),
    ))]
pub(crate) async fn sign_in(
    State(app): State<Arc<AppState>>,
    extensions: Extensions,
    headers: HeaderMap,
    JsonBody(input): JsonBody<SignIn>,
) -> Result<Response, ApiError> {
    let Some(key) = &app.api_key else {
        return show(State(app.clone()), headers).await.map(IntoResponse::into_response);
    };
    match super::auth::check_key(&app, &extensions, &headers, input.key.trim(), key) {
        KeyCheck::Right => {}
        KeyCheck::Refused(refused) => return Ok(refused),
        KeyCheck::Wrong => {
            tokio::time::sleep(FAILED_SIGN_IN_DELAY).await;
            tracing::warn!("console sign-in refused: wrong API key");
            return Err(ApiError::new(StatusCode::UNAUTHORIZED, "wrong API key"));
        }
    }
    let (cookie, session) = issue(key);
    let set = cookie_header(&app, &headers, &cookie, LIFETIME.as_secs());
    Ok(([(header::SET_COOKIE, set)], Json(SessionInfo { csrf: session.csrf, open: false })).into_response())
}

/// `DELETE /api/session`: signs out. The browser drops the cookie, and the gateway refuses it
/// from now on (a copy of it, too) until it would have expired.
#[utoipa::path(delete, path = "/api/session", operation_id = "sign_out", tag = "console", security(()),
    responses(
        (status = 204, description = "Signed out: the cookie is cleared, and refused from now on by every gateway on \
            the database"),
        (status = 503, description = "Signed out on this gateway (the cookie is cleared and refused here), but the \
            database could not record it for the others: try again", body = ErrorBody),
    ))]
pub(crate) async fn sign_out(State(app): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let clear = [(header::SET_COOKIE, cookie_header(&app, &headers, "", 0))];
    let session = app.api_key.as_ref().and_then(|key| from_cookie(&headers, key));
    if let Some(s) = session {
        app.signed_out.add([(s.nonce.clone(), s.expires)]);
        let expires = i64::try_from(s.expires).unwrap_or(i64::MAX);
        let now = i64::try_from(now_secs()).unwrap_or(i64::MAX);
        let recorded = match app.store.sign_out(&s.nonce, expires, now).await {
            Ok(()) => app.store.notify(crate::shared::CHANNEL).await,
            Err(e) => Err(e),
        };
        if let Err(e) = recorded {
            tracing::warn!(error = %e, "sign-out not recorded in the database; other gateways honour the cookie");
            let message = "signed out on this gateway, but the database could not record it for the others: try again";
            return (clear, ApiError::new(StatusCode::SERVICE_UNAVAILABLE, message)).into_response();
        }
    }
    (StatusCode::NO_CONTENT, clear).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_cookie(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_str(&format!("other=1; {COOKIE}={v}")).unwrap());
        h
    }

    #[test]
    fn a_cookie_proves_its_session_only_under_its_key() {
        let key = Secret("k1".into());
        let (cookie, session) = issue(&key);
        let proved = from_cookie(&with_cookie(&cookie), &key).expect("the cookie proves a session");
        assert_eq!(proved.csrf, session.csrf);
        assert!(from_cookie(&with_cookie(&cookie), &Secret("k2".into())).is_none(), "a new API key ends it");
        let tampered = cookie.replacen('.', "9.", 1);
        assert!(from_cookie(&with_cookie(&tampered), &key).is_none());
        let expired = format!("1.n.{}", mac(&key, "exogate-session", &["1", "n"]));
        assert!(from_cookie(&with_cookie(&expired), &key).is_none());
    }

    #[test]
    fn writes_need_the_csrf_token() {
        let session = Session { csrf: "t".into(), nonce: "n".into(), expires: 0 };
        let mut h = HeaderMap::new();
        assert!(csrf_ok(&Method::GET, &h, &session));
        assert!(!csrf_ok(&Method::POST, &h, &session));
        h.insert(CSRF_HEADER, HeaderValue::from_static("x"));
        assert!(!csrf_ok(&Method::DELETE, &h, &session));
        h.insert(CSRF_HEADER, HeaderValue::from_static("t"));
        assert!(csrf_ok(&Method::POST, &h, &session));
    }
}
