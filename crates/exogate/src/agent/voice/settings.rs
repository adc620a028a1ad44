//! A voice AI agent's settings (`openai-realtime`, `gemini-live`), checked when the agent is saved.

use std::time::Duration;

use serde_json::{Map, Value};
use url::Url;

use crate::agent::{OnFailure, SettingsError};

/// Which provider the agent talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderKind {
    OpenAi,
    Gemini,
}

impl ProviderKind {
    fn default_url(self) -> &'static str {
        match self {
            Self::OpenAi => "wss://api.openai.com/v1/realtime",
            Self::Gemini => {
                "wss://generativelanguage.googleapis.com/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent"
            }
        }
    }

    fn default_model(self) -> &'static str {
        match self {
            Self::OpenAi => "gpt-realtime",
            Self::Gemini => "gemini-2.5-flash-native-audio-preview-12-2025",
        }
    }

    fn default_voice(self) -> &'static str {
        match self {
            Self::OpenAi => "marin",
            Self::Gemini => "Kore",
        }
    }

    /// The header the key travels in (the Gemini key is kept out of the URL, so out of logs).
    fn default_auth_header(self) -> &'static str {
        match self {
            Self::OpenAi => "authorization",
            Self::Gemini => "x-goog-api-key",
        }
    }
}

/// A function the model may call, answered by the user's HTTPS endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookTool {
    pub name: String,
    pub description: String,
    /// JSON Schema of the arguments (an object schema).
    pub parameters: Value,
    pub url: String,
    pub timeout: Duration,
}

#[derive(Clone)]
pub struct VoiceSettings {
    pub provider: ProviderKind,
    pub base_url: String,
    pub model: String,
    pub voice: String,
    pub instructions: String,
    /// Spoken first (as an instruction to the model); `None`: the agent waits for the caller.
    pub greeting: Option<String>,
    pub language: Option<String>,
    /// `audio.input.turn_detection` (OpenAI) or `realtimeInputConfig.automaticActivityDetection`
    /// parameters (Gemini), as given.
    pub turn_detection: Map<String, Value>,
    pub temperature: Option<f64>,
    pub max_call: Option<Duration>,
    /// Caller silent this long (the agent not speaking): nudge the model once, then end politely.
    pub silence: Option<Duration>,
    pub auth_header: String,
    api_key: Option<String>,
    api_key_env: Option<String>,
    pub tools: Vec<WebhookTool>,
    pub tool_secret: Option<String>,
    pub transcription_model: Option<String>,
    pub connect_timeout: Duration,
    /// Where `transfer_call` sends the call when the model names no target.
    pub transfer_to: Option<String>,
}

impl std::fmt::Debug for VoiceSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VoiceSettings")
            .field("provider", &self.provider)
            .field("base_url", &self.base_url)
            .field("model", &self.model)
            .finish_non_exhaustive()
    }
}

const NAME_CHARS: &str = "-_";
const BUILTIN_TOOLS: [&str; 2] = ["end_call", "transfer_call"];

fn err(field: &str, message: impl Into<String>) -> SettingsError {
    SettingsError::new(field, message)
}

fn text(settings: &Value, field: &str, max: usize) -> Result<Option<String>, SettingsError> {
    match settings.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) if s.len() <= max => Ok(Some(s.trim().to_string())),
        Some(Value::String(_)) => Err(err(field, format!("must be at most {max} characters"))),
        Some(_) => Err(err(field, "must be a string")),
    }
}

fn secs(
    settings: &Value,
    field: &str,
    range: std::ops::RangeInclusive<u64>,
) -> Result<Option<Duration>, SettingsError> {
    match settings.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_u64() {
            Some(0) => Ok(None),
            Some(n) if range.contains(&n) => Ok(Some(Duration::from_secs(n))),
            _ => Err(err(field, format!("must be 0 (off) or {}..={} seconds", range.start(), range.end()))),
        },
    }
}

impl VoiceSettings {
    pub fn parse(provider: ProviderKind, settings: &Value) -> Result<Self, SettingsError> {
        if !settings.is_object() {
            return Err(err("settings", "must be an object"));
        }
        let base_url = text(settings, "base_url", 512)?.unwrap_or_else(|| provider.default_url().to_string());
        let parsed = Url::parse(&base_url).map_err(|e| err("base_url", format!("is not a valid URL: {e}")))?;
        if !matches!(parsed.scheme(), "ws" | "wss") || parsed.host_str().is_none_or(str::is_empty) {
            return Err(err("base_url", "must be a ws:// or wss:// URL with a host"));
        }
        let model = text(settings, "model", 128)?.unwrap_or_else(|| provider.default_model().to_string());
        let voice = text(settings, "voice", 64)?.unwrap_or_else(|| provider.default_voice().to_string());
        let instructions = text(settings, "instructions", 32_000)?.unwrap_or_else(|| {
            "You are a helpful assistant on a phone call. Keep your answers short and natural.".to_string()
        });
        let greeting = text(settings, "greeting", 2000)?;
        let language = text(settings, "language", 16)?;
        let turn_detection = match settings.get("turn_detection") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(m)) => check_turn_detection(provider, m)?,
            Some(_) => return Err(err("turn_detection", "must be an object")),
        };
        let temperature = match settings.get("temperature") {
            None | Some(Value::Null) => None,
            Some(v) => match v.as_f64() {
                Some(t) if (0.0..=2.0).contains(&t) => Some(t),
                _ => return Err(err("temperature", "must be a number from 0 to 2")),
            },
        };
        let max_call = secs(settings, "max_call_secs", 10..=14_400)?;
        let silence = secs(settings, "silence_secs", 3..=600)?;
        let auth_header = text(settings, "auth_header", 64)?
            .map(|h| h.to_ascii_lowercase())
            .unwrap_or_else(|| provider.default_auth_header().to_string());
        if axum::http::HeaderName::from_bytes(auth_header.as_bytes()).is_err() {
            return Err(err("auth_header", "is not a valid header name"));
        }
        let api_key = match settings.get("api_key") {
            None | Some(Value::Null) => None,
            Some(Value::String(k)) if !k.trim().is_empty() && k.len() <= 1024 => Some(k.trim().to_string()),
            Some(_) => return Err(err("api_key", "must be a non-empty string")),
        };
        let api_key_env = text(settings, "api_key_env", 128)?;
        if let Some(name) = &api_key_env {
            if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(err("api_key_env", "must be an environment variable name"));
            }
        }
        let tools = match settings.get("tools") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items.iter().enumerate().map(|(i, t)| tool(i, t)).collect::<Result<_, _>>()?,
            Some(_) => return Err(err("tools", "must be an array")),
        };
        let mut names: Vec<&str> = tools.iter().map(|t: &WebhookTool| t.name.as_str()).collect();
        names.sort_unstable();
        if names.windows(2).any(|w| w[0] == w[1]) {
            return Err(err("tools", "two tools have the same name"));
        }
        let tool_secret = match settings.get("tool_secret") {
            None | Some(Value::Null) => None,
            Some(Value::String(k)) if k.len() >= 16 && k.len() <= 256 => Some(k.clone()),
            Some(_) => return Err(err("tool_secret", "must be a string of 16-256 chars")),
        };
        let transcription_model = match settings.get("transcription") {
            Some(Value::Bool(false)) => None,
            None | Some(Value::Null) | Some(Value::Bool(true)) => Some("gpt-4o-mini-transcribe".to_string()),
            Some(Value::String(m)) if !m.is_empty() && m.len() <= 64 => Some(m.clone()),
            Some(_) => return Err(err("transcription", "must be true, false or a transcription model name")),
        };
        let connect_timeout = match settings.get("connect_timeout_ms") {
            None | Some(Value::Null) => Duration::from_secs(5),
            Some(v) => match v.as_u64() {
                Some(ms) if (100..=60_000).contains(&ms) => Duration::from_millis(ms),
                _ => return Err(err("connect_timeout_ms", "must be a number of ms between 100 and 60000")),
            },
        };
        let transfer_to = text(settings, "transfer_to", 128)?;
        OnFailure::parse(settings)?;
        Ok(Self {
            provider,
            base_url,
            model,
            voice,
            instructions,
            greeting,
            language,
            turn_detection,
            temperature,
            max_call,
            silence,
            auth_header,
            api_key,
            api_key_env,
            tools,
            tool_secret,
            transcription_model,
            connect_timeout,
            transfer_to,
        })
    }

    /// The key for this call: the stored one, or the named environment variable's.
    pub fn api_key(&self) -> Result<String, String> {
        if let Some(k) = &self.api_key {
            return Ok(k.clone());
        }
        match &self.api_key_env {
            Some(name) => std::env::var(name).map_err(|_| format!("environment variable {name} is not set")),
            None => Err("settings.api_key (or api_key_env) is not set".to_string()),
        }
    }

    /// How long the provider keeps one session (§0.6, §A9): OpenAI 60 min, Azure OpenAI 30;
    /// Gemini resumes on a new connection, so none.
    pub fn session_cap(&self) -> Option<Duration> {
        if self.provider != ProviderKind::OpenAi {
            return None;
        }
        let host = Url::parse(&self.base_url).ok().and_then(|u| u.host_str().map(str::to_ascii_lowercase));
        let azure = host.is_some_and(|h| h.ends_with(".azure.com"));
        Some(Duration::from_secs(if azure { 30 * 60 } else { 60 * 60 }))
    }

    /// The header carrying the key: `Authorization: Bearer …`, or the key itself in any other
    /// header (Azure's `api-key`, Gemini's `x-goog-api-key`).
    pub fn auth_value(&self, key: &str) -> String {
        if self.auth_header == "authorization" { format!("Bearer {key}") } else { key.to_string() }
    }
}

fn check_turn_detection(provider: ProviderKind, m: &Map<String, Value>) -> Result<Map<String, Value>, SettingsError> {
    let bad = |message: &str| err("turn_detection", message);
    for (k, v) in m {
        let ok = match (provider, k.as_str()) {
            (ProviderKind::OpenAi, "type") => matches!(v.as_str(), Some("server_vad" | "semantic_vad")),
            (ProviderKind::OpenAi, "threshold") => v.as_f64().is_some_and(|t| (0.0..=1.0).contains(&t)),
            (ProviderKind::OpenAi, "prefix_padding_ms" | "silence_duration_ms" | "idle_timeout_ms") => {
                v.as_u64().is_some_and(|n| n <= 60_000)
            }
            (ProviderKind::OpenAi, "eagerness") => matches!(v.as_str(), Some("low" | "medium" | "high" | "auto")),
            (ProviderKind::OpenAi, "create_response" | "interrupt_response") => v.is_boolean(),
            (ProviderKind::Gemini, "start_sensitivity" | "end_sensitivity") => {
                matches!(v.as_str(), Some("high" | "low"))
            }
            (ProviderKind::Gemini, "prefix_padding_ms" | "silence_duration_ms") => {
                v.as_u64().is_some_and(|n| n <= 60_000)
            }
            _ => return Err(bad(&format!("unknown field {k:?} for this provider"))),
        };
        if !ok {
            return Err(bad(&format!("{k}: value out of range")));
        }
    }
    Ok(m.clone())
}

fn tool(i: usize, t: &Value) -> Result<WebhookTool, SettingsError> {
    let field = format!("tools[{i}]");
    let bad = |message: &str| err(&field, message);
    let name = t.get("name").and_then(Value::as_str).unwrap_or_default().to_string();
    if name.is_empty() || name.len() > 64 || !name.chars().all(|c| c.is_ascii_alphanumeric() || NAME_CHARS.contains(c))
    {
        return Err(bad("name must be 1-64 letters, digits, '-' or '_'"));
    }
    if BUILTIN_TOOLS.contains(&name.as_str()) {
        return Err(bad("end_call and transfer_call are built in"));
    }
    let description = t.get("description").and_then(Value::as_str).unwrap_or_default().to_string();
    if description.len() > 1024 {
        return Err(bad("description must be at most 1024 characters"));
    }
    let parameters = match t.get("parameters") {
        None | Some(Value::Null) => serde_json::json!({ "type": "object", "properties": {} }),
        Some(p @ Value::Object(_)) => p.clone(),
        Some(_) => return Err(bad("parameters must be a JSON Schema object")),
    };
    let url = t.get("url").and_then(Value::as_str).unwrap_or_default().to_string();
    let parsed = Url::parse(&url).map_err(|_| bad("url must be an https:// URL"))?;
    let loopback = parsed.host_str().is_some_and(|h| h == "localhost" || h == "127.0.0.1" || h == "[::1]");
    if !(parsed.scheme() == "https" || (parsed.scheme() == "http" && loopback)) {
        return Err(bad("url must be https:// (http:// only to this machine)"));
    }
    let timeout = match t.get("timeout_ms") {
        None | Some(Value::Null) => Duration::from_secs(5),
        Some(v) => match v.as_u64() {
            Some(ms) if (100..=30_000).contains(&ms) => Duration::from_millis(ms),
            _ => return Err(bad("timeout_ms must be 100..=30000")),
        },
    };
    Ok(WebhookTool { name, description, parameters, url, timeout })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_and_checks() {
        let s = VoiceSettings::parse(ProviderKind::OpenAi, &json!({ "api_key": "sk-1" })).unwrap();
        assert_eq!((s.model.as_str(), s.voice.as_str()), ("gpt-realtime", "marin"));
        assert_eq!(s.auth_value("sk-1"), "Bearer sk-1");
        let g = VoiceSettings::parse(ProviderKind::Gemini, &json!({ "api_key_env": "GEMINI_KEY" })).unwrap();
        assert_eq!(g.auth_header, "x-goog-api-key");
        assert_eq!(g.auth_value("k"), "k");
        for (bad, field) in [
            (json!({ "base_url": "https://x" }), "base_url"),
            (json!({ "turn_detection": { "type": "vad" } }), "turn_detection"),
            (json!({ "turn_detection": { "eagerness": "low", "bogus": 1 } }), "turn_detection"),
            (json!({ "temperature": 3 }), "temperature"),
            (json!({ "silence_secs": 1 }), "silence_secs"),
            (json!({ "tools": [{ "name": "end_call", "url": "https://x" }] }), "tools[0]"),
            (json!({ "tools": [{ "name": "t", "url": "http://example.com/t" }] }), "tools[0]"),
            (json!({ "api_key_env": "A-B" }), "api_key_env"),
            (json!({ "on_failure": 1 }), "on_failure"),
        ] {
            let e = VoiceSettings::parse(ProviderKind::OpenAi, &bad).unwrap_err();
            assert_eq!(e.field, field, "{bad}");
        }
        let t = json!({ "tools": [{ "name": "lookup", "url": "http://127.0.0.1:9/t", "timeout_ms": 800 }] });
        let s = VoiceSettings::parse(ProviderKind::OpenAi, &t).unwrap();
        assert_eq!(s.tools[0].timeout, Duration::from_millis(800));
        assert!(s.api_key().is_err());
    }

    #[test]
    fn the_session_cap_is_60_min_on_openai_30_on_azure_none_on_gemini() {
        let cap = |kind, url: &str| VoiceSettings::parse(kind, &json!({ "base_url": url })).unwrap().session_cap();
        assert_eq!(cap(ProviderKind::OpenAi, "wss://api.openai.com/v1/realtime"), Some(Duration::from_secs(3600)));
        let azure = "wss://acme.openai.azure.com/openai/v1/realtime";
        assert_eq!(cap(ProviderKind::OpenAi, azure), Some(Duration::from_secs(1800)));
        assert_eq!(cap(ProviderKind::Gemini, "wss://generativelanguage.googleapis.com/ws/x"), None);
    }
}
