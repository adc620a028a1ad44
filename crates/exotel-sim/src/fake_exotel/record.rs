//! What the fake saw and did: every request, every call, and the one-line events the CLI prints.

use std::fmt;

use exotel::redact::{mask_phone, redact_url};

use super::Script;
use crate::CallReport;

/// One request to the fake's REST API, as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    pub method: String,
    /// As sent, without the query.
    pub path: String,
    /// Decoded query pairs, in order.
    pub query: Vec<(String, String)>,
    /// Lower-case names, in order; `authorization` is kept.
    pub headers: Vec<(String, String)>,
    /// Decoded form fields (urlencoded or multipart), in order.
    pub form: Vec<(String, String)>,
    /// The status answered; `None` while the request is still being handled (a [`Script::Hang`]).
    pub status: Option<u16>,
}

impl RecordedRequest {
    /// The first value of a header (`name` in lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The first value of a form field.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.form.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// How the call reaches the bot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallMode {
    /// `Url=http://my.exotel.com/{sid}/exoml/start_voice/{app_id}`: the flow with the configured
    /// Voicebot (and Passthru) applets.
    Flow { app_id: String },
    /// `StreamUrl` + `StreamType=bidirectional`: straight to the bot, no flow.
    Stream { url: String },
}

/// One call placed through `Calls/connect`, as it stands now.
#[derive(Debug, Clone)]
pub struct FakeCall {
    /// 32 hex characters; also the `call_sid` on the WebSocket and `CallSid` everywhere else.
    pub sid: String,
    /// The customer number (`From`).
    pub from: String,
    /// The `CallerId` sent. Responses and callbacks show the configured ExoPhone instead.
    pub caller_id: String,
    pub mode: CallMode,
    pub custom_field: Option<String>,
    pub status_callback: Option<String>,
    /// `StatusCallbackEvents` as requested (`terminal`, `answered`, `ringing`).
    pub status_callback_events: Vec<String>,
    /// `multipart/form-data` (the default) or `application/json`.
    pub status_callback_content_type: String,
    pub record: bool,
    pub time_limit: Option<u32>,
    pub time_out: Option<u32>,
    pub script: Script,
    /// `in-progress` from the moment it is placed (as the API answer says), then `completed`,
    /// `busy`, `no-answer` or `failed`.
    pub state: String,
    /// `YYYY-MM-DD HH:mm:ss`, IST, like Exotel's.
    pub date_created: String,
    pub date_updated: String,
    pub start_time: String,
    pub end_time: Option<String>,
    /// Seconds connected (the callback's `ConversationDuration`), once ended.
    pub duration: Option<u64>,
    /// A fake URL when `Record=true`, once ended.
    pub recording_url: Option<String>,
    /// The WebSocket URL dialled (from the dynamic URL, the applet, or `StreamUrl`).
    pub ws_url: Option<String>,
    /// The `stream_sid` on the WebSocket (and `Stream[StreamSID]` in the Passthru).
    pub stream_sid: Option<String>,
    /// WebSocket sessions tried: Exotel retries a failed handshake once.
    pub ws_attempts: u32,
    /// Why there was no media leg (dynamic URL failed, handshake refused, ...).
    pub media_error: Option<String>,
    /// The media leg, when a WebSocket session was had.
    pub report: Option<CallReport>,
    /// The Passthru's answer: 200 is branch A, 302 branch B. `None`: no Passthru, or no answer.
    pub passthru_status: Option<u16>,
    pub passthru_error: Option<String>,
    /// Every status-callback attempt: the HTTP status answered (0: no answer, a timeout or a
    /// connection error) and the body exactly as sent.
    pub callbacks_sent: Vec<(u16, String)>,
    /// Played out: the terminal callback (if any) has been delivered or given up on.
    pub done: bool,
}

/// One line of what the fake did, for the CLI. `Display` masks phone numbers and never shows
/// credentials or query strings.
#[derive(Debug, Clone)]
pub enum FakeEvent {
    Request { method: String, path: String, status: u16, from: Option<String>, call_sid: Option<String> },
    CallDone(Box<FakeCall>),
}

impl fmt::Display for FakeEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Request { method, path, status, from, call_sid } => {
                write!(f, "{method} {path} -> {status}")?;
                if let Some(from) = from {
                    write!(f, " From={}", mask_phone(from))?;
                }
                if let Some(sid) = call_sid {
                    write!(f, " Sid={sid}")?;
                }
                Ok(())
            }
            Self::CallDone(call) => {
                write!(f, "call {} to {} ({}): {}", call.sid, mask_phone(&call.from), call.script, call.state)?;
                match &call.mode {
                    CallMode::Flow { app_id } => write!(f, ", flow {app_id}")?,
                    CallMode::Stream { url } => write!(f, ", stream {}", redact_url(url))?,
                }
                if let Some(r) = &call.report {
                    let by = if r.closed_by_bot { "bot" } else { "user" };
                    write!(
                        f,
                        ", media {:.1} s, {} bot chunks, {} violations, ended by {by}",
                        r.duration.as_secs_f64(),
                        r.media_received,
                        r.violations.len()
                    )?;
                }
                if let Some(e) = &call.media_error {
                    write!(f, ", no media: {e}")?;
                }
                match (call.passthru_status, &call.passthru_error) {
                    (Some(s), _) => write!(f, ", passthru {s}")?,
                    (None, Some(e)) => write!(f, ", passthru failed: {e}")?,
                    (None, None) => {}
                }
                if !call.callbacks_sent.is_empty() {
                    let statuses: Vec<String> = call.callbacks_sent.iter().map(|(s, _)| s.to_string()).collect();
                    write!(f, ", callbacks [{}]", statuses.join(" "))?;
                }
                Ok(())
            }
        }
    }
}
