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
    let expires = now_secs() + LIFETIME.as_secs();
    let nonce = uuid::Uuid::new_v4().simple().to_string();
    let text = expires.to_string();
    let cookie = format!("{text}.{nonce}.{}", mac(api_key, "exogate-session", &[&text, &nonce]));
    let csrf = mac(api_key, "exogate-csrf", &[&nonce]);
    (cookie, Session { csrf, nonce, expires })
}

/// The session the request's cookie proves, unless it signed out.
pub(crate) fn signed_in(app: &AppState, headers: &HeaderMap, api_key: &Secret) -> Option<Session> {
    from_cookie(headers, api_key).filter(|s| !app.signed_out.contains(&s.nonce))
}

/// Sessions signed out, by nonce, with when their cookies expire. Checked in memory: no database
/// round trip per request, and a database that is away signs nobody out or back in. Filled from
/// the database at start and whenever the caches reload (on PostgreSQL, on every gateway as soon
/// as one announces a sign-out, and every 30 s regardless).
#[derive(Default)]
pub struct SignedOut {
    set: std::sync::RwLock<SignedOutSet>,
    /// Sign-outs forgotten before their cookies expired: the set was full.
    pub forgotten: std::sync::atomic::AtomicU64,
}

#[derive(Default)]
struct SignedOutSet {
    by_nonce: std::collections::HashMap<String, u64>,
    by_expiry: std::collections::BTreeSet<(u64, String)>,
    /// Made here while the database could not record them: written (and announced) once it can.
    unsaved: Vec<(String, u64)>,
}

/// Far more sign-outs than 12 hours of operators make; each one took a signed-in session.
const MAX_SIGNED_OUT: usize = 100_000;
/// How often sign-outs the database could not take are tried again.
pub(crate) const RESAVE_EVERY: Duration = Duration::from_secs(5);

impl SignedOut {
    fn contains(&self, nonce: &str) -> bool {
        self.set.read().is_ok_and(|s| s.by_nonce.contains_key(nonce))
    }

    /// Adds sign-outs (nonce, expires at). The expired ones go; when full, those expiring soonest
    /// are forgotten first (counted).
    pub fn add(&self, entries: impl IntoIterator<Item = (String, u64)>) {
        let Ok(mut s) = self.set.write() else { return };
        let now = now_secs();
        while let Some((expires, nonce)) = s.by_expiry.first().cloned() {
            if expires > now {
                break;
            }
            s.by_expiry.pop_first();
            s.by_nonce.remove(&nonce);
        }
        s.unsaved.retain(|(_, expires)| *expires > now);
        for (nonce, expires) in entries {
            if expires <= now || s.by_nonce.contains_key(&nonce) {
                continue;
            }
            if s.by_nonce.len() >= MAX_SIGNED_OUT {
                if let Some((_, soonest)) = s.by_expiry.pop_first() {
                    s.by_nonce.remove(&soonest);
                    self.forgotten.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
            s.by_expiry.insert((expires, nonce.clone()));
            s.by_nonce.insert(nonce, expires);
        }
    }

    fn unsaved(&self, nonce: String, expires: u64) {
        if let Ok(mut s) = self.set.write() {
            if s.unsaved.len() < MAX_SIGNED_OUT {
                s.unsaved.push((nonce, expires));
            }
        }
    }
}

/// Adds the sign-outs recorded in the database (by any gateway) to the set.
pub(crate) async fn load_signed_out(app: &AppState) {
    match app.store.signed_out(i64::try_from(now_secs()).unwrap_or(i64::MAX)).await {
        Ok(rows) => app.signed_out.add(rows.into_iter().map(|(n, e)| (n, u64::try_from(e).unwrap_or(0)))),
        Err(e) => tracing::warn!(error = %e, "cannot read console sign-outs"),
    }
}

/// Records a sign-out in the database and tells the other gateways.
async fn save(app: &AppState, nonce: &str, expires: u64) -> anyhow::Result<()> {
    let expires = i64::try_from(expires).unwrap_or(i64::MAX);
    let now = i64::try_from(now_secs()).unwrap_or(i64::MAX);
    app.store.sign_out(nonce, expires, now).await?;
    // Recorded: a gateway that misses the announcement reads it at its next reload.
    if let Err(e) = app.store.notify(crate::shared::CHANNEL).await {
        tracing::warn!(error = %e, "sign-out recorded but not announced; other gateways read it within 30 s");
    }
    Ok(())
}

/// Writes the sign-outs the database could not take when they were made, until it takes them.
pub(crate) async fn resave_loop(app: Arc<AppState>) {
    let mut every = tokio::time::interval(RESAVE_EVERY);
    loop {
        every.tick().await;
        let pending = app.signed_out.set.read().map(|s| s.unsaved.clone()).unwrap_or_default();
        for (nonce, expires) in pending {
            if save(&app, &nonce, expires).await.is_err() {
                break;
            }
            if let Ok(mut s) = app.signed_out.set.write() {
                s.unsaved.retain(|(n, _)| *n != nonce);
            }
            tracing::info!("a sign-out the database missed is recorded now");
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
    responses((status = 204, description = "Signed out: the cookie is cleared and refused from now on, here at once \
        and on the other gateways sharing the database as soon as they hear of it (a database that is away takes \
        the sign-out when it is back)")))]
pub(crate) async fn sign_out(State(app): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let clear = [(header::SET_COOKIE, cookie_header(&app, &headers, "", 0))];
    let session = app.api_key.as_ref().and_then(|key| from_cookie(&headers, key));
    if let Some(s) = session {
        app.signed_out.add([(s.nonce.clone(), s.expires)]);
        if let Err(e) = save(&app, &s.nonce, s.expires).await {
            tracing::warn!(error = %e, "sign-out not recorded in the database yet; trying again every 5 s");
            app.signed_out.unsaved(s.nonce, s.expires);
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
