//! What can go wrong talking to Exotel, sorted by the one question a dialler has to answer:
//! *could the call have been placed?* Only [`RestError::Ambiguous`] says "maybe" (docs/protocol.md §8.1, §8.4).

use std::time::{Duration, SystemTime};

use serde_json::Value;

use super::xml;
use crate::lenient::value_text;

/// Longest slice of a raw error body we keep.
const RAW_BODY_LIMIT: usize = 300;

/// An Exotel REST failure. Display and Debug never contain the API token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RestError {
    /// Our own validation refused the request; nothing was sent. `field` is Exotel's parameter name.
    #[error("invalid {field}: {reason} (nothing sent)")]
    Invalid { field: &'static str, reason: String },
    /// HTTP 400: missing or bad parameters. `message` is `RestException.Message` when Exotel sent one.
    #[error("Exotel rejected the request (HTTP 400{}): {message}", code.map(|c| format!(", code {c}")).unwrap_or_default())]
    BadRequest { message: String, code: Option<i64> },
    /// HTTP 401: wrong API key or token.
    #[error("Exotel rejected the credentials (HTTP 401): {message}")]
    Unauthorized { message: String },
    /// HTTP 402: not on the plan, or usage limits / balance exhausted.
    #[error("Exotel plan or balance limit (HTTP 402): {message}")]
    PaymentRequired { message: String },
    /// HTTP 403: account suspended or feature not enabled.
    #[error("Exotel forbade the request (HTTP 403): {message}")]
    Forbidden { message: String },
    /// HTTP 404: unknown account, call or path.
    #[error("Exotel found no such resource (HTTP 404): {message}")]
    NotFound { message: String },
    /// HTTP 429: 200 requests/min per account (§8.5). The call was not placed; retrying later is safe.
    #[error("Exotel rate limit (HTTP 429{}): {message}", retry_after.map(|d| format!(", retry after {} s", d.as_secs())).unwrap_or_default())]
    RateLimited { retry_after: Option<Duration>, message: String },
    /// 500/502/503/504, a timeout or broken connection after the request went out, or a 2xx without
    /// `Call.Sid`: the call MAY have been placed. Never retry blindly; reconcile via call details or
    /// the status callback.
    #[error("outcome unknown ({}), the call may have been placed: {message}", status.map_or_else(|| "no HTTP answer".to_string(), |s| format!("HTTP {s}")))]
    Ambiguous { status: Option<u16>, message: String },
    /// The connection could not be made (DNS, TCP, TLS); nothing was sent, so the call was definitely not placed.
    #[error("Exotel unreachable, nothing sent: {message}")]
    Unreachable { message: String },
    /// Any other HTTP status.
    #[error("unexpected HTTP {status} from Exotel: {message}")]
    Unexpected { status: u16, message: String },
}

impl RestError {
    /// A stable, snake_case name for metrics, logs and database columns.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Invalid { .. } => "invalid",
            Self::BadRequest { .. } => "bad_request",
            Self::Unauthorized { .. } => "unauthorized",
            Self::PaymentRequired { .. } => "payment_required",
            Self::Forbidden { .. } => "forbidden",
            Self::NotFound { .. } => "not_found",
            Self::RateLimited { .. } => "rate_limited",
            Self::Ambiguous { .. } => "ambiguous",
            Self::Unreachable { .. } => "unreachable",
            Self::Unexpected { .. } => "unexpected",
        }
    }

    /// The HTTP status Exotel answered with, if it answered.
    pub fn http_status(&self) -> Option<u16> {
        match self {
            Self::Invalid { .. } | Self::Unreachable { .. } => None,
            Self::BadRequest { .. } => Some(400),
            Self::Unauthorized { .. } => Some(401),
            Self::PaymentRequired { .. } => Some(402),
            Self::Forbidden { .. } => Some(403),
            Self::NotFound { .. } => Some(404),
            Self::RateLimited { .. } => Some(429),
            Self::Ambiguous { status, .. } => *status,
            Self::Unexpected { status, .. } => Some(*status),
        }
    }

    /// The offending parameter of an [`RestError::Invalid`].
    pub fn field(&self) -> Option<&'static str> {
        match self {
            Self::Invalid { field, .. } => Some(field),
            _ => None,
        }
    }

    pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Self::Invalid { field, reason: reason.into() }
    }

    /// Maps a non-2xx answer.
    pub(crate) fn from_response(status: u16, retry_after: Option<Duration>, body: &str) -> Self {
        let ErrorBody { message, code } = ErrorBody::parse(body);
        let message = message.unwrap_or_else(|| fallback_message(status, body));
        match status {
            400 => Self::BadRequest { message, code },
            401 => Self::Unauthorized { message },
            402 => Self::PaymentRequired { message },
            403 => Self::Forbidden { message },
            404 => Self::NotFound { message },
            429 => Self::RateLimited { retry_after, message },
            500 | 502 | 503 | 504 => Self::Ambiguous { status: Some(status), message },
            _ => Self::Unexpected { status, message },
        }
    }

    /// Replaces every occurrence of `secret` in the messages with `***`.
    pub(crate) fn scrubbed(self, secret: &str) -> Self {
        if secret.is_empty() {
            return self;
        }
        let s = |m: String| if m.contains(secret) { m.replace(secret, "***") } else { m };
        match self {
            Self::Invalid { field, reason } => Self::Invalid { field, reason: s(reason) },
            Self::BadRequest { message, code } => Self::BadRequest { message: s(message), code },
            Self::Unauthorized { message } => Self::Unauthorized { message: s(message) },
            Self::PaymentRequired { message } => Self::PaymentRequired { message: s(message) },
            Self::Forbidden { message } => Self::Forbidden { message: s(message) },
            Self::NotFound { message } => Self::NotFound { message: s(message) },
            Self::RateLimited { retry_after, message } => Self::RateLimited { retry_after, message: s(message) },
            Self::Ambiguous { status, message } => Self::Ambiguous { status, message: s(message) },
            Self::Unreachable { message } => Self::Unreachable { message: s(message) },
            Self::Unexpected { status, message } => Self::Unexpected { status, message: s(message) },
        }
    }
}

/// `RestException` (JSON or XML), or the v2 `{"response":{"error":{…}}}` shape (§8.4, §8.5).
#[derive(Debug, Default, PartialEq)]
pub(crate) struct ErrorBody {
    pub message: Option<String>,
    pub code: Option<i64>,
}

impl ErrorBody {
    pub(crate) fn parse(body: &str) -> Self {
        let trimmed = body.trim_start_matches('\u{feff}').trim();
        if trimmed.starts_with('<') {
            let Some(children) = xml::children(trimmed, "RestException") else { return Self::default() };
            let get = |name: &str| {
                children.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.trim().to_string())
            };
            return Self {
                message: get("Message").filter(|m| !m.is_empty()),
                code: get("Code").and_then(|c| c.parse().ok()),
            };
        }
        match serde_json::from_str::<Value>(trimmed) {
            Ok(v) => Self::from_json(&v),
            Err(_) => Self::default(),
        }
    }

    fn from_json(v: &Value) -> Self {
        if let Some(exc) = get_ci(v, "RestException") {
            return Self { message: text(get_ci(exc, "Message")), code: get_ci(exc, "Code").and_then(as_i64) };
        }
        // Legs/ExoML v2: {"http_code":429,"response":{"error":{"code":"rate_limit_exceeded","description":"…"}}}
        if let Some(err) = get_ci(v, "response").and_then(|r| get_ci(r, "error")) {
            let message = text(get_ci(err, "message"))
                .or_else(|| text(get_ci(err, "description")))
                .or_else(|| text(get_ci(err, "code")));
            return Self { message, code: None };
        }
        Self { message: text(get_ci(v, "message")), code: get_ci(v, "code").and_then(as_i64) }
    }
}

fn get_ci<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.as_object()?.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v)
}

fn text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::Object(_) | Value::Array(_) => None,
        other => value_text(other.clone()).map(|s| s.trim().to_string()).filter(|s| !s.is_empty()),
    }
}

fn as_i64(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// The raw body (truncated), or the status' reason phrase when the body is empty.
fn fallback_message(status: u16, body: &str) -> String {
    let raw = body.trim();
    if raw.is_empty() {
        let reason = reqwest::StatusCode::from_u16(status).ok().and_then(|s| s.canonical_reason());
        return reason.unwrap_or("no body").to_string();
    }
    truncate(raw, RAW_BODY_LIMIT)
}

/// At most `max` characters, with `…` appended when something was cut.
pub(crate) fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.to_string(),
    }
}

/// The longest wait a `Retry-After` is taken at: Exotel's limits are per minute, and a caller
/// adding a far larger one to an `Instant` would panic.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// `Retry-After: 7` or `Retry-After: Wed, 21 Oct 2015 07:28:00 GMT` (a date in the past means
/// "now"), at most [`MAX_RETRY_AFTER`].
pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let v = value.trim();
    let wait = match v.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => httpdate::parse_http_date(v).ok()?.duration_since(now).unwrap_or(Duration::ZERO),
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_rest_exception() {
        let b =
            ErrorBody::parse(r#"{"RestException":{"Status":400,"Message":"From number 123 is invalid","Code":34001}}"#);
        assert_eq!(b, ErrorBody { message: Some("From number 123 is invalid".into()), code: Some(34001) });
        let b = ErrorBody::parse(
            r#"{"restexception":{"status":"401","message":"Authentication required","code":"20003"}}"#,
        );
        assert_eq!(b, ErrorBody { message: Some("Authentication required".into()), code: Some(20003) });
        let b = ErrorBody::parse(r#"{"RestException":{"Status":403,"Message":"Forbidden"}}"#);
        assert_eq!(b.code, None);
    }

    #[test]
    fn xml_rest_exception() {
        let b = ErrorBody::parse(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<TwilioResponse>\n  <RestException>\n    <Status>400</Status>\n    <Message>CallerId &amp; From are required</Message>\n    <Code>34001</Code>\n  </RestException>\n</TwilioResponse>",
        );
        assert_eq!(b, ErrorBody { message: Some("CallerId & From are required".into()), code: Some(34001) });
        let b = ErrorBody::parse(
            "<TwilioResponse><RestException><Status>404</Status><Message/></RestException></TwilioResponse>",
        );
        assert_eq!(b, ErrorBody::default());
    }

    #[test]
    fn v2_rate_limit_shape() {
        let b = ErrorBody::parse(
            r#"{"request_id":"r1","http_code":429,"response":{"error":{"code":"rate_limit_exceeded","description":"Too many requests"}}}"#,
        );
        assert_eq!(b.message.as_deref(), Some("Too many requests"));
    }

    #[test]
    fn unparseable_bodies_fall_back_to_raw() {
        assert_eq!(ErrorBody::parse("Service Unavailable"), ErrorBody::default());
        assert_eq!(ErrorBody::parse("<html><body>502</body></html>"), ErrorBody::default());
        let e = RestError::from_response(502, None, "<html><body>Bad gateway</body></html>");
        assert_eq!(
            e,
            RestError::Ambiguous { status: Some(502), message: "<html><body>Bad gateway</body></html>".into() }
        );
        let long = "x".repeat(1000);
        let RestError::Unexpected { status: 409, message } = RestError::from_response(409, None, &long) else {
            panic!()
        };
        assert_eq!(message.chars().count(), 301);
        assert!(message.ends_with('…'));
        let e = RestError::from_response(401, None, "");
        assert_eq!(e, RestError::Unauthorized { message: "Unauthorized".into() });
    }

    #[test]
    fn status_mapping() {
        let body = r#"{"RestException":{"Status":400,"Message":"m","Code":7}}"#;
        let cases: [(u16, &str); 11] = [
            (400, "bad_request"),
            (401, "unauthorized"),
            (402, "payment_required"),
            (403, "forbidden"),
            (404, "not_found"),
            (429, "rate_limited"),
            (500, "ambiguous"),
            (502, "ambiguous"),
            (503, "ambiguous"),
            (504, "ambiguous"),
            (409, "unexpected"),
        ];
        for (status, kind) in cases {
            let e = RestError::from_response(status, None, body);
            assert_eq!(e.kind(), kind, "{status}");
            assert_eq!(e.http_status(), Some(status));
            assert!(e.to_string().contains(": m"), "{e}");
        }
        assert_eq!(
            RestError::from_response(400, None, body),
            RestError::BadRequest { message: "m".into(), code: Some(7) }
        );
        let e = RestError::invalid("TimeLimit", "too long");
        assert_eq!((e.kind(), e.field(), e.http_status()), ("invalid", Some("TimeLimit"), None));
        assert_eq!(e.to_string(), "invalid TimeLimit: too long (nothing sent)");
    }

    #[test]
    fn retry_after_forms() {
        let now = httpdate::parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT").unwrap();
        assert_eq!(parse_retry_after(" 7 ", now), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after("18446744073709551615", now), Some(MAX_RETRY_AFTER));
        assert_eq!(parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT", now), Some(MAX_RETRY_AFTER));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now), Some(Duration::from_secs(30)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
        let e = RestError::RateLimited { retry_after: Some(Duration::from_secs(7)), message: "slow down".into() };
        assert_eq!(e.to_string(), "Exotel rate limit (HTTP 429, retry after 7 s): slow down");
    }

    #[test]
    fn scrub_removes_secret() {
        let e = RestError::BadRequest { message: "token s3cr3t-tok is bad; s3cr3t-tok".into(), code: None };
        let e = e.scrubbed("s3cr3t-tok");
        assert!(!e.to_string().contains("s3cr3t-tok"));
        assert!(!format!("{e:?}").contains("s3cr3t-tok"));
        assert_eq!(truncate("äöü", 2), "äö…");
    }
}
