//! A bridge agent's settings, checked when the agent is saved, and its URL placeholders.

use std::collections::BTreeMap;
use std::time::Duration;

use exotel::SampleRate;
use serde_json::Value;

use crate::agent::{CallInfo, SettingsError};

/// Which protocol the bot speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// Exotel's Voicebot protocol: the bot sees exactly what Exotel would send it.
    Exotel,
    /// Twilio Media Streams: μ-law 8 kHz, camelCase, Twilio's mark and clear rules.
    Twilio,
}

#[derive(Debug, Clone)]
pub struct BridgeSettings {
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub protocol: Protocol,
    /// The rate the bot wants (Exotel protocol only); `None`: the call's.
    pub sample_rate: Option<SampleRate>,
    pub connect_timeout: Duration,
    /// Twilio protocol: the `accountSid` the bot sees.
    pub account_sid: Option<String>,
    /// Twilio protocol: the bot may end its call through Twilio's REST API pointed at exogate,
    /// with Basic auth `account_sid:auth_token`.
    pub auth_token: Option<String>,
    /// Twilio protocol: `(api_key_sid, api_key_secret)`, accepted by that API beside the token.
    pub api_key: Option<(String, String)>,
}

const PLACEHOLDERS: [&str; 4] = ["call_sid", "stream_sid", "from", "to"];

impl BridgeSettings {
    pub fn parse(settings: &Value) -> Result<Self, SettingsError> {
        fn err(field: &str, message: impl Into<String>) -> SettingsError {
            SettingsError::new(field, message)
        }
        let url = match settings.get("url") {
            Some(Value::String(u)) => u.trim().to_string(),
            Some(_) => return Err(err("url", "must be a string")),
            None => return Err(err("url", "is required (the bot's ws:// or wss:// URL)")),
        };
        if !(url.starts_with("ws://") || url.starts_with("wss://")) {
            return Err(err("url", "must start with ws:// or wss://"));
        }
        check_placeholders(&url)?;
        let sample = expand(&url, &CallInfo::default(), &BTreeMap::new()).unwrap_or_default();
        let parsed = url::Url::parse(&sample).map_err(|e| err("url", format!("is not a valid URL: {e}")))?;
        if parsed.host_str().is_none_or(str::is_empty) {
            return Err(err("url", "has no host"));
        }
        let mut headers = Vec::new();
        match settings.get("headers") {
            None | Some(Value::Null) => {}
            Some(Value::Object(map)) => {
                for (k, v) in map {
                    let Value::String(v) = v else {
                        return Err(err("headers", format!("{k}: value must be a string")));
                    };
                    if axum::http::HeaderName::from_bytes(k.as_bytes()).is_err() {
                        return Err(err("headers", format!("{k:?} is not a valid header name")));
                    }
                    if axum::http::HeaderValue::from_str(v).is_err() {
                        return Err(err("headers", format!("{k}: value is not a valid header value")));
                    }
                    headers.push((k.clone(), v.clone()));
                }
            }
            Some(_) => return Err(err("headers", "must be an object of name → value strings")),
        }
        let protocol = match settings.get("protocol").and_then(Value::as_str) {
            None if settings.get("protocol").is_none() => Protocol::Exotel,
            Some("exotel") => Protocol::Exotel,
            Some("twilio") => Protocol::Twilio,
            _ => return Err(err("protocol", "must be \"exotel\" or \"twilio\"")),
        };
        let sample_rate = match settings.get("sample_rate") {
            None | Some(Value::Null) => None,
            Some(v) => {
                let text = match v {
                    Value::Number(n) => n.to_string(),
                    Value::String(s) => s.clone(),
                    _ => String::new(),
                };
                let rate =
                    SampleRate::parse(&text).ok_or_else(|| err("sample_rate", "must be 8000, 16000 or 24000"))?;
                if protocol == Protocol::Twilio && rate != SampleRate::Hz8000 {
                    return Err(err("sample_rate", "Twilio bots always get 8000 Hz μ-law"));
                }
                Some(rate)
            }
        };
        let connect_timeout = match settings.get("connect_timeout_ms") {
            None | Some(Value::Null) => Duration::from_millis(3000),
            Some(v) => match v.as_u64() {
                Some(ms) if (100..=60_000).contains(&ms) => Duration::from_millis(ms),
                _ => return Err(err("connect_timeout_ms", "must be a number of ms between 100 and 60000")),
            },
        };
        let account_sid = match settings.get("account_sid") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if !s.is_empty() && s.len() <= 64 => Some(s.clone()),
            Some(_) => return Err(err("account_sid", "must be a string of 1-64 chars")),
        };
        let auth_token = match settings.get("auth_token") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.len() >= 16 && s.len() <= 256 => Some(s.clone()),
            Some(_) => return Err(err("auth_token", "must be a string of 16-256 chars")),
        };
        if auth_token.is_some() && (protocol != Protocol::Twilio || account_sid.is_none()) {
            return Err(err("auth_token", "needs protocol \"twilio\" and an account_sid (the API's user name)"));
        }
        let api_key_sid = match settings.get("api_key_sid") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.starts_with("SK") && s.len() <= 64 => Some(s.clone()),
            Some(_) => return Err(err("api_key_sid", "must be a Twilio API key sid (SK…, up to 64 chars)")),
        };
        let api_key_secret = match settings.get("api_key_secret") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.len() >= 16 && s.len() <= 256 => Some(s.clone()),
            Some(_) => return Err(err("api_key_secret", "must be a string of 16-256 chars")),
        };
        let api_key = match (api_key_sid, api_key_secret) {
            (None, None) => None,
            (Some(sid), Some(secret)) => Some((sid, secret)),
            (None, Some(_)) => return Err(err("api_key_sid", "is needed with api_key_secret")),
            (Some(_), None) => return Err(err("api_key_secret", "is needed with api_key_sid")),
        };
        if api_key.is_some() && (protocol != Protocol::Twilio || account_sid.is_none()) {
            return Err(err("api_key_sid", "needs protocol \"twilio\" and an account_sid (the key's account)"));
        }
        crate::agent::OnFailure::parse(settings)?;
        Ok(Self { url, headers, protocol, sample_rate, connect_timeout, account_sid, auth_token, api_key })
    }

    /// True if the URL can be filled from the socket's query alone (no `start` fields needed).
    pub fn early(&self, query: &BTreeMap<String, String>) -> bool {
        names(&self.url).all(|n| n.strip_prefix("custom.").is_some_and(|c| query.contains_key(c)))
    }
}

fn names(url: &str) -> impl Iterator<Item = &str> {
    url.split('{').skip(1).filter_map(|rest| rest.split_once('}').map(|(name, _)| name))
}

fn check_placeholders(url: &str) -> Result<(), SettingsError> {
    for name in names(url) {
        let known = PLACEHOLDERS.contains(&name)
            || name.strip_prefix("custom.").is_some_and(|c| !c.is_empty() && !c.contains(['{', '}']));
        if !known {
            return Err(SettingsError::new(
                "url",
                format!(
                    "unknown placeholder {{{name}}} (known: {{call_sid}}, {{stream_sid}}, {{from}}, {{to}}, {{custom.NAME}})"
                ),
            ));
        }
    }
    if url.matches('{').count() != url.matches('}').count() {
        return Err(SettingsError::new("url", "has an unclosed placeholder"));
    }
    Ok(())
}

/// Fills the placeholders (percent-encoded; missing values become empty).
pub fn expand(url: &str, call: &CallInfo, query: &BTreeMap<String, String>) -> Option<String> {
    let mut out = String::with_capacity(url.len() + 64);
    let mut rest = url;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let (name, after) = rest[open + 1..].split_once('}')?;
        let value = match name {
            "call_sid" => call.call_sid.clone(),
            "stream_sid" => Some(call.stream_sid.clone()),
            "from" => call.from.clone(),
            "to" => call.to.clone(),
            _ => name
                .strip_prefix("custom.")
                .and_then(|c| call.custom_parameters.get(c).or_else(|| query.get(c)).cloned()),
        };
        out.extend(url::form_urlencoded::byte_serialize(value.unwrap_or_default().as_bytes()));
        rest = after;
    }
    out.push_str(rest);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn validates_each_field_by_name() {
        let field = |v: Value| BridgeSettings::parse(&v).unwrap_err().field;
        assert_eq!(field(json!({})), "url");
        assert_eq!(field(json!({"url": "http://bot"})), "url");
        assert_eq!(field(json!({"url": "ws://bot/{nope}"})), "url");
        assert_eq!(field(json!({"url": "ws://bot", "protocol": "sip"})), "protocol");
        assert_eq!(field(json!({"url": "ws://bot", "sample_rate": 44100})), "sample_rate");
        assert_eq!(field(json!({"url": "ws://bot", "protocol": "twilio", "sample_rate": 16000})), "sample_rate");
        assert_eq!(field(json!({"url": "ws://bot", "connect_timeout_ms": 5})), "connect_timeout_ms");
        assert_eq!(field(json!({"url": "ws://bot", "headers": {"Authorization": 3}})), "headers");
        assert_eq!(field(json!({"url": "ws://bot", "on_failure": 3})), "on_failure");
        let tw = |extra: Value| {
            let mut v = json!({"url": "ws://bot", "protocol": "twilio", "account_sid": "AC1"});
            v.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            v
        };
        assert_eq!(field(tw(json!({"api_key_sid": "AK1", "api_key_secret": "s-0123456789abcdef"}))), "api_key_sid");
        assert_eq!(field(tw(json!({"api_key_sid": "SK1"}))), "api_key_secret");
        assert_eq!(field(tw(json!({"api_key_secret": "s-0123456789abcdef"}))), "api_key_sid");
        let keyed = BridgeSettings::parse(&tw(json!({"api_key_sid": "SK1", "api_key_secret": "s-0123456789abcdef"})));
        assert_eq!(keyed.unwrap().api_key, Some(("SK1".into(), "s-0123456789abcdef".into())));
        let ok = BridgeSettings::parse(&json!({
            "url": "wss://bot.example/ws/{call_sid}?from={from}&lang={custom.lang}",
            "headers": {"Authorization": "Bearer x"}, "protocol": "twilio", "connect_timeout_ms": 500
        }))
        .unwrap();
        assert_eq!(ok.protocol, Protocol::Twilio);
        assert_eq!(ok.connect_timeout, Duration::from_millis(500));
    }

    #[test]
    fn placeholders_are_filled_and_encoded() {
        let call = CallInfo {
            call_sid: Some("abc".into()),
            stream_sid: "s1".into(),
            from: Some("+91 98".into()),
            custom_parameters: [("lang".to_string(), "hi&en".to_string())].into(),
            ..CallInfo::default()
        };
        let url = "ws://b/{call_sid}/{stream_sid}?from={from}&to={to}&l={custom.lang}";
        assert_eq!(expand(url, &call, &BTreeMap::new()).unwrap(), "ws://b/abc/s1?from=%2B91+98&to=&l=hi%26en");
    }

    #[test]
    fn early_only_when_the_query_fills_the_url() {
        let s = |u: &str| BridgeSettings::parse(&json!({ "url": u })).unwrap();
        let q: BTreeMap<String, String> = [("lang".to_string(), "hi".to_string())].into();
        assert!(s("ws://b/ws").early(&q));
        assert!(s("ws://b/ws?l={custom.lang}").early(&q));
        assert!(!s("ws://b/ws?l={custom.other}").early(&q));
        assert!(!s("ws://b/{call_sid}").early(&q));
    }
}
