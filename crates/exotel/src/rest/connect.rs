//! The `Calls/connect` request (docs/protocol.md §8.2): call a number, then run a flow (mode A) or stream
//! straight to a bot WebSocket (mode B, "Connect Voice AI").

use reqwest::Url;

use super::RestError;

/// Exotel's cap on `TimeLimit` (4 h).
pub const MAX_TIME_LIMIT: u32 = 14_400;
/// Exotel's cap on `TimeOut` (1 min, "mandated by TRAI").
pub const MAX_TIME_OUT: u32 = 60;
/// Exotel's cap on `CustomField`, in characters.
pub const MAX_CUSTOM_FIELD: usize = 128;
/// `StreamUrl`, query included, must be shorter than this.
pub const MAX_STREAM_URL: usize = 600;
/// Exotel's cap on `StreamName`, in characters.
pub const MAX_STREAM_NAME: usize = 32;

/// What Exotel runs once the customer's leg is up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallTarget {
    /// An App Bazaar flow (holding the Voicebot applet): sent as
    /// `Url=http://my.exotel.com/{sid}/exoml/start_voice/{app_id}`.
    Flow { app_id: String },
    /// A bidirectional stream straight to the bot: `StreamUrl` + `StreamType=bidirectional`.
    Stream { stream_url: String },
}

/// When Exotel POSTs to `StatusCallback`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StatusCallbackEvent {
    Terminal,
    Answered,
    Ringing,
}

impl StatusCallbackEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Terminal => "terminal",
            Self::Answered => "answered",
            Self::Ringing => "ringing",
        }
    }
}

/// The body format of status callbacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallbackContentType {
    Multipart,
    Json,
}

impl CallbackContentType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Multipart => "multipart/form-data",
            Self::Json => "application/json",
        }
    }
}

/// `single` (both parties merged) or `dual` (one channel each).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordingChannels {
    Single,
    Dual,
}

impl RecordingChannels {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Single => "single",
            Self::Dual => "dual",
        }
    }
}

/// One outbound call. Build with [`ConnectRequest::new`], then set the optional fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectRequest {
    /// The number to call (the customer).
    pub from: String,
    /// The ExoPhone shown to the customer.
    pub caller_id: String,
    pub target: CallTarget,
    /// e.g. `trans`.
    pub call_type: Option<String>,
    /// Maximum call length in seconds, 1..=14400.
    pub time_limit: Option<u32>,
    /// Ring timeout in seconds, 1..=60.
    pub time_out: Option<u32>,
    /// http(s) URL Exotel POSTs the call status to (§9).
    pub status_callback: Option<String>,
    pub status_callback_events: Vec<StatusCallbackEvent>,
    pub status_callback_content_type: Option<CallbackContentType>,
    /// Echoed back in Passthru and the terminal status callback; ≤ 128 characters.
    pub custom_field: Option<String>,
    pub record: Option<bool>,
    pub recording_channels: Option<RecordingChannels>,
    /// Stream label, ≤ 32 characters; stream mode only.
    pub stream_name: Option<String>,
}

impl ConnectRequest {
    pub fn new(from: impl Into<String>, caller_id: impl Into<String>, target: CallTarget) -> Self {
        Self {
            from: from.into(),
            caller_id: caller_id.into(),
            target,
            call_type: None,
            time_limit: None,
            time_out: None,
            status_callback: None,
            status_callback_events: Vec::new(),
            status_callback_content_type: None,
            custom_field: None,
            record: None,
            recording_channels: None,
            stream_name: None,
        }
    }

    /// Checks what Exotel documents, so a bad request fails here rather than as a 400. Errors name
    /// the parameter as Exotel does (`From`, `TimeLimit`, …) and never echo the value.
    pub fn validate(&self) -> Result<(), RestError> {
        check_phone("From", &self.from)?;
        check_phone("CallerId", &self.caller_id)?;
        match &self.target {
            CallTarget::Flow { app_id } => {
                let id = app_id.trim();
                if id.is_empty() {
                    return Err(RestError::invalid("Url", "the flow app_id is empty"));
                }
                if !id.chars().all(is_unreserved) {
                    return Err(RestError::invalid(
                        "Url",
                        "the flow app_id may only hold letters, digits, '-', '_', '.', '~'",
                    ));
                }
                if self.stream_name.is_some() {
                    return Err(RestError::invalid("StreamName", "only valid with a StreamUrl target"));
                }
            }
            CallTarget::Stream { stream_url } => {
                check_url("StreamUrl", stream_url, &["ws", "wss"])?;
                if stream_url.trim().len() >= MAX_STREAM_URL {
                    return Err(RestError::invalid(
                        "StreamUrl",
                        format!("must be shorter than {MAX_STREAM_URL} characters, query included"),
                    ));
                }
            }
        }
        if self.call_type.as_deref().is_some_and(|t| t.trim().is_empty()) {
            return Err(RestError::invalid("CallType", "is empty"));
        }
        if let Some(t) = self.time_limit {
            if !(1..=MAX_TIME_LIMIT).contains(&t) {
                return Err(RestError::invalid("TimeLimit", format!("must be 1..={MAX_TIME_LIMIT} seconds, got {t}")));
            }
        }
        if let Some(t) = self.time_out {
            if !(1..=MAX_TIME_OUT).contains(&t) {
                return Err(RestError::invalid("TimeOut", format!("must be 1..={MAX_TIME_OUT} seconds, got {t}")));
            }
        }
        if let Some(url) = &self.status_callback {
            check_url("StatusCallback", url, &["http", "https"])?;
        }
        if let Some(f) = &self.custom_field {
            let n = f.chars().count();
            if n > MAX_CUSTOM_FIELD {
                return Err(RestError::invalid(
                    "CustomField",
                    format!("at most {MAX_CUSTOM_FIELD} characters, got {n}"),
                ));
            }
        }
        if let Some(name) = &self.stream_name {
            let n = name.chars().count();
            if name.trim().is_empty() {
                return Err(RestError::invalid("StreamName", "is empty"));
            }
            if n > MAX_STREAM_NAME {
                return Err(RestError::invalid("StreamName", format!("at most {MAX_STREAM_NAME} characters, got {n}")));
            }
        }
        Ok(())
    }

    /// The form fields, in Exotel's spelling; unset optionals are left out. Phone numbers are sent
    /// trimmed, without spaces or dashes. `StreamName` is only sent in stream mode.
    pub fn form(&self, account_sid: &str) -> Vec<(String, String)> {
        let mut f: Vec<(String, String)> = Vec::new();
        let mut add = |k: &str, v: String| f.push((k.to_string(), v));
        add("From", normalize_phone(&self.from));
        add("CallerId", normalize_phone(&self.caller_id));
        let stream_mode = match &self.target {
            CallTarget::Flow { app_id } => {
                add("Url", format!("http://my.exotel.com/{}/exoml/start_voice/{}", account_sid.trim(), app_id.trim()));
                false
            }
            CallTarget::Stream { stream_url } => {
                add("StreamUrl", stream_url.trim().to_string());
                add("StreamType", "bidirectional".to_string());
                true
            }
        };
        if let Some(t) = &self.call_type {
            add("CallType", t.trim().to_string());
        }
        if let Some(t) = self.time_limit {
            add("TimeLimit", t.to_string());
        }
        if let Some(t) = self.time_out {
            add("TimeOut", t.to_string());
        }
        if let Some(url) = &self.status_callback {
            add("StatusCallback", url.trim().to_string());
        }
        for (i, e) in self.status_callback_events.iter().enumerate() {
            add(&format!("StatusCallbackEvents[{i}]"), e.as_str().to_string());
        }
        if let Some(c) = self.status_callback_content_type {
            add("StatusCallbackContentType", c.as_str().to_string());
        }
        if let Some(c) = &self.custom_field {
            add("CustomField", c.clone());
        }
        if let Some(r) = self.record {
            add("Record", r.to_string());
        }
        if let Some(c) = self.recording_channels {
            add("RecordingChannels", c.as_str().to_string());
        }
        if let (true, Some(name)) = (stream_mode, &self.stream_name) {
            add("StreamName", name.trim().to_string());
        }
        f
    }
}

/// Digits, an optional leading `+`, spaces and dashes tolerated; 6–16 digits.
fn check_phone(field: &'static str, value: &str) -> Result<(), RestError> {
    let v = value.trim();
    if v.is_empty() {
        return Err(RestError::invalid(field, "is empty"));
    }
    let body = v.strip_prefix('+').unwrap_or(v);
    if !body.chars().all(|c| c.is_ascii_digit() || c == ' ' || c == '-') {
        return Err(RestError::invalid(
            field,
            "must be a phone number: digits, an optional leading '+', spaces or dashes",
        ));
    }
    let digits = body.chars().filter(char::is_ascii_digit).count();
    if !(6..=16).contains(&digits) {
        return Err(RestError::invalid(field, format!("must have 6 to 16 digits, has {digits}")));
    }
    Ok(())
}

fn normalize_phone(v: &str) -> String {
    v.trim().chars().filter(|c| !matches!(c, ' ' | '-')).collect()
}

fn check_url(field: &'static str, value: &str, schemes: &[&str]) -> Result<(), RestError> {
    let want = || schemes.iter().map(|s| format!("{s}://")).collect::<Vec<_>>().join(" or ");
    let url = Url::parse(value.trim()).map_err(|e| RestError::invalid(field, format!("not a valid URL ({e})")))?;
    if !schemes.contains(&url.scheme()) {
        return Err(RestError::invalid(field, format!("must start with {}", want())));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(RestError::invalid(field, "has no host"));
    }
    Ok(())
}

/// RFC 3986 unreserved characters: safe in a URL path segment as they are.
fn is_unreserved(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '~')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow() -> ConnectRequest {
        ConnectRequest::new("+919876543210", "08047112233", CallTarget::Flow { app_id: "123456".into() })
    }

    fn stream() -> ConnectRequest {
        ConnectRequest::new(
            "09876543210",
            "08047112233",
            CallTarget::Stream { stream_url: "wss://bot.example.com/media?sample-rate=16000".into() },
        )
    }

    fn field_of(r: &ConnectRequest) -> Option<&'static str> {
        r.validate().err().map(|e| {
            assert_eq!(e.kind(), "invalid");
            e.field().unwrap()
        })
    }

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn minimal_requests_are_valid() {
        assert_eq!(flow().validate(), Ok(()));
        assert_eq!(stream().validate(), Ok(()));
    }

    #[test]
    fn phone_rules() {
        for (value, ok) in [
            ("+91 98765-43210", true),
            ("080 4711 2233", true),
            ("123456", true),
            ("1234567890123456", true),
            ("", false),
            ("   ", false),
            ("12345", false),
            ("12345678901234567", false),
            ("+", false),
            ("98765x43210", false),
            ("(080) 4711", false),
            ("++919876543210", false),
            ("91+9876543210", false),
        ] {
            let mut r = flow();
            r.from = value.into();
            assert_eq!(field_of(&r), (!ok).then_some("From"), "From={value:?}");
            let mut r = flow();
            r.caller_id = value.into();
            assert_eq!(field_of(&r), (!ok).then_some("CallerId"), "CallerId={value:?}");
        }
    }

    #[test]
    fn target_rules() {
        for (app_id, ok) in [
            ("123456", true),
            ("my-flow_1.2~", true),
            ("", false),
            (" ", false),
            ("a/b", false),
            ("a b", false),
            ("é", false),
        ] {
            let r = ConnectRequest::new("09876543210", "08047112233", CallTarget::Flow { app_id: app_id.into() });
            assert_eq!(field_of(&r), (!ok).then_some("Url"), "{app_id:?}");
        }
        let long_query = format!("wss://bot.example.com/m?t={}", "a".repeat(600 - 26));
        assert_eq!(long_query.len(), 600);
        for (url, ok) in [
            ("ws://10.0.0.1:5007/media".to_string(), true),
            ("wss://bot.example.com/media?sample-rate=8000".to_string(), true),
            (long_query[..599].to_string(), true),
            (long_query, false),
            ("https://bot.example.com/media".to_string(), false),
            ("bot.example.com/media".to_string(), false),
            ("".to_string(), false),
            ("wss://".to_string(), false),
        ] {
            let r = ConnectRequest::new("09876543210", "08047112233", CallTarget::Stream { stream_url: url.clone() });
            assert_eq!(field_of(&r), (!ok).then_some("StreamUrl"), "{url:?}");
        }
    }

    #[test]
    fn numeric_limits() {
        for (v, ok) in [(0, false), (1, true), (14_400, true), (14_401, false)] {
            let mut r = flow();
            r.time_limit = Some(v);
            assert_eq!(field_of(&r), (!ok).then_some("TimeLimit"), "{v}");
        }
        for (v, ok) in [(0, false), (1, true), (60, true), (61, false)] {
            let mut r = flow();
            r.time_out = Some(v);
            assert_eq!(field_of(&r), (!ok).then_some("TimeOut"), "{v}");
        }
    }

    #[test]
    fn optional_text_rules() {
        for (url, ok) in [
            ("https://gw.example.com/exotel/status?tok=x", true),
            ("http://10.0.0.1:8080/s", true),
            ("ftp://gw.example.com/s", false),
            ("wss://gw.example.com/s", false),
            ("/status", false),
            ("", false),
        ] {
            let mut r = flow();
            r.status_callback = Some(url.into());
            assert_eq!(field_of(&r), (!ok).then_some("StatusCallback"), "{url:?}");
        }
        for (n, ok) in [(0, true), (128, true), (129, false)] {
            let mut r = flow();
            r.custom_field = Some("é".repeat(n));
            assert_eq!(field_of(&r), (!ok).then_some("CustomField"), "{n}");
        }
        for (name, ok) in [("bot-1", true), (&*"n".repeat(32), true), (&*"n".repeat(33), false), ("", false)] {
            let mut r = stream();
            r.stream_name = Some(name.into());
            assert_eq!(field_of(&r), (!ok).then_some("StreamName"), "{name:?}");
        }
        let mut r = flow();
        r.stream_name = Some("bot-1".into());
        assert_eq!(field_of(&r), Some("StreamName"));
        let mut r = flow();
        r.call_type = Some(" ".into());
        assert_eq!(field_of(&r), Some("CallType"));
    }

    #[test]
    fn reasons_never_echo_the_number() {
        let mut r = flow();
        r.from = "98765x43210".into();
        assert!(!r.validate().unwrap_err().to_string().contains("98765"));
    }

    #[test]
    fn form_flow_minimal() {
        assert_eq!(
            flow().form("acme1"),
            pairs(&[
                ("From", "+919876543210"),
                ("CallerId", "08047112233"),
                ("Url", "http://my.exotel.com/acme1/exoml/start_voice/123456"),
            ])
        );
    }

    #[test]
    fn form_flow_every_optional() {
        let mut r = flow();
        r.from = " +91 98765-43210 ".into();
        r.call_type = Some("trans".into());
        r.time_limit = Some(3600);
        r.time_out = Some(30);
        r.status_callback = Some("https://gw.example.com/exotel/status?tok=abc".into());
        r.status_callback_events = vec![StatusCallbackEvent::Terminal, StatusCallbackEvent::Answered];
        r.status_callback_content_type = Some(CallbackContentType::Json);
        r.custom_field = Some("campaign=7;contact=42".into());
        r.record = Some(true);
        r.recording_channels = Some(RecordingChannels::Dual);
        r.stream_name = Some("ignored in flow mode".into());
        assert_eq!(
            r.form("acme1"),
            pairs(&[
                ("From", "+919876543210"),
                ("CallerId", "08047112233"),
                ("Url", "http://my.exotel.com/acme1/exoml/start_voice/123456"),
                ("CallType", "trans"),
                ("TimeLimit", "3600"),
                ("TimeOut", "30"),
                ("StatusCallback", "https://gw.example.com/exotel/status?tok=abc"),
                ("StatusCallbackEvents[0]", "terminal"),
                ("StatusCallbackEvents[1]", "answered"),
                ("StatusCallbackContentType", "application/json"),
                ("CustomField", "campaign=7;contact=42"),
                ("Record", "true"),
                ("RecordingChannels", "dual"),
            ])
        );
    }

    #[test]
    fn form_stream_every_optional() {
        let mut r = stream();
        r.call_type = Some("trans".into());
        r.time_limit = Some(14_400);
        r.time_out = Some(60);
        r.status_callback = Some("http://gw.example.com/s".into());
        r.status_callback_events =
            vec![StatusCallbackEvent::Ringing, StatusCallbackEvent::Answered, StatusCallbackEvent::Terminal];
        r.status_callback_content_type = Some(CallbackContentType::Multipart);
        r.custom_field = Some("c".into());
        r.record = Some(false);
        r.recording_channels = Some(RecordingChannels::Single);
        r.stream_name = Some("riya".into());
        assert_eq!(r.validate(), Ok(()));
        assert_eq!(
            r.form("acme1"),
            pairs(&[
                ("From", "09876543210"),
                ("CallerId", "08047112233"),
                ("StreamUrl", "wss://bot.example.com/media?sample-rate=16000"),
                ("StreamType", "bidirectional"),
                ("CallType", "trans"),
                ("TimeLimit", "14400"),
                ("TimeOut", "60"),
                ("StatusCallback", "http://gw.example.com/s"),
                ("StatusCallbackEvents[0]", "ringing"),
                ("StatusCallbackEvents[1]", "answered"),
                ("StatusCallbackEvents[2]", "terminal"),
                ("StatusCallbackContentType", "multipart/form-data"),
                ("CustomField", "c"),
                ("Record", "false"),
                ("RecordingChannels", "single"),
                ("StreamName", "riya"),
            ])
        );
    }
}
