//! The rules Exotel's side applies (or would trip over) when reading a bot's messages
//! (docs/protocol.md §5). Each broken rule is one finding with a stable rule id.

use std::fmt;
use std::time::Duration;

use exotel::OutboundEvent;
use exotel::framer::{ALIGN, MIN_CHUNK};
use exotel::outbound::OutboundError;
use serde::Serialize;
use serde_json::Value;

/// The documented ceiling. `framer::MAX_CHUNK` is the largest *aligned* size under it; a size
/// between the two is only off the grid, not too large.
const MAX_BYTES: usize = 100_000;

/// Stable rule ids: scripts and tests match on these.
pub mod rule {
    pub const BINARY_FRAME: &str = "binary-frame";
    pub const NOT_JSON: &str = "not-json";
    pub const UNKNOWN_EVENT: &str = "unknown-event";
    /// A known event missing a required part (`media.payload`, `mark.name`).
    pub const MALFORMED: &str = "malformed";
    pub const STREAM_SID_MISSING: &str = "stream-sid-missing";
    pub const STREAM_SID_MISMATCH: &str = "stream-sid-mismatch";
    pub const BAD_BASE64: &str = "bad-base64";
    pub const CHUNK_NOT_320_MULTIPLE: &str = "chunk-not-320-multiple";
    pub const CHUNK_TOO_SMALL: &str = "chunk-too-small";
    pub const CHUNK_TOO_LARGE: &str = "chunk-too-large";
    /// The bot's socket went away without a closing handshake (it crashed, or cut the call).
    pub const CONNECTION_LOST: &str = "connection-lost";
    /// The bot closed with a code that says something went wrong (not 1000 or 1001).
    pub const ABNORMAL_CLOSE: &str = "abnormal-close";
}

/// One broken rule, without a time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub rule: &'static str,
    pub detail: String,
}

impl Finding {
    pub(crate) fn new(rule: &'static str, detail: impl Into<String>) -> Self {
        Self { rule, detail: detail.into() }
    }
}

/// A broken rule, timed from the WebSocket handshake.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    #[serde(rename = "at_ms", serialize_with = "crate::report::ser_ms")]
    pub at: Duration,
    pub rule: &'static str,
    pub detail: String,
}

impl Violation {
    pub fn new(at: Duration, finding: Finding) -> Self {
        Self { at, rule: finding.rule, detail: finding.detail }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{:>8.3}s] {}: {}", self.at.as_secs_f64(), self.rule, self.detail)
    }
}

/// A frame as it came off the socket.
#[derive(Debug, Clone, Copy)]
pub enum BotFrame<'a> {
    Text(&'a str),
    Binary(&'a [u8]),
}

/// The event as Exotel would act on it (if it could be read at all), and what was wrong.
#[derive(Debug, Default)]
pub struct Checked {
    pub event: Option<OutboundEvent>,
    pub findings: Vec<Finding>,
}

/// Checks one bot frame against our `stream_sid`.
pub fn check(frame: BotFrame<'_>, our_sid: &str) -> Checked {
    let text = match frame {
        BotFrame::Binary(b) => {
            let detail = format!("{} bytes in a binary frame; Exotel only reads JSON text frames", b.len());
            return Checked { event: None, findings: vec![Finding::new(rule::BINARY_FRAME, detail)] };
        }
        BotFrame::Text(t) => t,
    };
    let fail = |rule, detail: String| Checked { event: None, findings: vec![Finding::new(rule, detail)] };
    let value: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => return fail(rule::NOT_JSON, format!("{e}: {}", crate::error::excerpt(text))),
    };
    let Some(obj) = value.as_object() else {
        return fail(rule::NOT_JSON, format!("JSON but not an object: {}", crate::error::excerpt(text)));
    };
    let Some(event) = obj.get("event").and_then(Value::as_str) else {
        return fail(rule::NOT_JSON, format!("object without an \"event\" string: {}", crate::error::excerpt(text)));
    };
    if !matches!(event, "media" | "mark" | "clear") {
        return fail(rule::UNKNOWN_EVENT, format!("event {event:?}; a bot may only send media, mark, clear"));
    }

    let mut findings = Vec::new();
    match obj.get("stream_sid").or_else(|| obj.get("streamSid")) {
        None => findings.push(Finding::new(rule::STREAM_SID_MISSING, format!("{event} without stream_sid"))),
        Some(Value::String(sid)) if sid == our_sid => {}
        Some(Value::String(sid)) => findings
            .push(Finding::new(rule::STREAM_SID_MISMATCH, format!("{event} for stream {sid:?}, ours is {our_sid:?}"))),
        Some(other) => findings.push(Finding::new(
            rule::STREAM_SID_MISMATCH,
            format!("{event} stream_sid is {other} (not a string), ours is {our_sid:?}"),
        )),
    }

    let event = match OutboundEvent::parse(text) {
        Ok(ev) => {
            if let OutboundEvent::Media { payload, .. } = &ev {
                findings.extend(chunk_findings(payload.len()));
            }
            Some(ev)
        }
        Err(OutboundError::BadBase64(e)) => {
            findings.push(Finding::new(rule::BAD_BASE64, format!("media.payload: {e}")));
            None
        }
        Err(OutboundError::Malformed(what)) => {
            findings.push(Finding::new(rule::MALFORMED, what));
            None
        }
        // Already ruled out above; kept total so a library change can't turn into a silent pass.
        Err(e @ (OutboundError::NotJson(_) | OutboundError::NoEvent)) => {
            findings.push(Finding::new(rule::NOT_JSON, e.to_string()));
            None
        }
        Err(e @ OutboundError::UnknownEvent(_)) => {
            findings.push(Finding::new(rule::UNKNOWN_EVENT, e.to_string()));
            None
        }
    };
    Checked { event, findings }
}

/// Exotel's outbound chunk rules (docs/protocol.md §5.1). One size can break two rules (1000 bytes is
/// both off the 320 grid and under the minimum); each is reported.
pub fn chunk_findings(len: usize) -> Vec<Finding> {
    let mut out = Vec::new();
    if len % ALIGN != 0 {
        out.push(Finding::new(
            rule::CHUNK_NOT_320_MULTIPLE,
            format!("media chunk of {len} bytes is not a multiple of {ALIGN} (Exotel stalls 20 ms on the short tail)"),
        ));
    }
    if len < MIN_CHUNK {
        out.push(Finding::new(rule::CHUNK_TOO_SMALL, format!("media chunk of {len} bytes is under {MIN_CHUNK}")));
    }
    if len > MAX_BYTES {
        out.push(Finding::new(rule::CHUNK_TOO_LARGE, format!("media chunk of {len} bytes is over {MAX_BYTES}")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD as B64;

    const SID: &str = "abc123";

    fn media(sid_field: &str, bytes: usize) -> String {
        format!(r#"{{"event":"media",{sid_field}"media":{{"payload":"{}"}}}}"#, B64.encode(vec![0u8; bytes]))
    }

    fn rules(frame: BotFrame<'_>) -> Vec<&'static str> {
        check(frame, SID).findings.iter().map(|f| f.rule).collect()
    }

    fn text_rules(text: &str) -> Vec<&'static str> {
        rules(BotFrame::Text(text))
    }

    const OK: &[&str] = &[];

    #[test]
    fn legal_messages_pass() {
        let c = check(BotFrame::Text(&media(r#""stream_sid":"abc123","#, 3200)), SID);
        assert!(c.findings.is_empty(), "{:?}", c.findings);
        assert!(matches!(c.event, Some(OutboundEvent::Media { ref payload, .. }) if payload.len() == 3200));
        assert_eq!(text_rules(r#"{"event":"mark","stream_sid":"abc123","mark":{"name":"m"}}"#), OK);
        assert_eq!(text_rules(r#"{"event":"clear","stream_sid":"abc123"}"#), OK);
    }

    #[test]
    fn binary_frame() {
        assert_eq!(rules(BotFrame::Binary(&[0; 3200])), vec![rule::BINARY_FRAME]);
        assert_eq!(text_rules(&media(r#""stream_sid":"abc123","#, 6400)), OK);
    }

    #[test]
    fn not_json() {
        for bad in ["hello", "[1,2]", "\"media\"", r#"{"stream_sid":"abc123"}"#, r#"{"event":5}"#] {
            assert_eq!(text_rules(bad), vec![rule::NOT_JSON], "{bad}");
        }
        assert_eq!(text_rules(r#"{"event":"clear","stream_sid":"abc123"}"#), OK);
    }

    #[test]
    fn unknown_event() {
        for ev in ["stop", "hangup", "start", "dtmf", "Media"] {
            let text = format!(r#"{{"event":"{ev}","stream_sid":"abc123"}}"#);
            assert_eq!(text_rules(&text), vec![rule::UNKNOWN_EVENT], "{ev}");
        }
        assert_eq!(text_rules(r#"{"event":"mark","stream_sid":"abc123","mark":{"name":"x"}}"#), OK);
    }

    #[test]
    fn stream_sid_missing_and_camel_case_accepted() {
        assert_eq!(text_rules(&media("", 3200)), vec![rule::STREAM_SID_MISSING]);
        assert_eq!(text_rules(r#"{"event":"clear"}"#), vec![rule::STREAM_SID_MISSING]);
        assert_eq!(text_rules(&media(r#""streamSid":"abc123","#, 3200)), OK);
    }

    #[test]
    fn stream_sid_mismatch() {
        assert_eq!(text_rules(&media(r#""stream_sid":"other","#, 3200)), vec![rule::STREAM_SID_MISMATCH]);
        assert_eq!(text_rules(&media(r#""streamSid":"other","#, 3200)), vec![rule::STREAM_SID_MISMATCH]);
        assert_eq!(text_rules(&media(r#""stream_sid":42,"#, 3200)), vec![rule::STREAM_SID_MISMATCH]);
        assert_eq!(text_rules(&media(r#""stream_sid":"abc123","#, 3200)), OK);
    }

    #[test]
    fn bad_base64() {
        let c = check(BotFrame::Text(r#"{"event":"media","stream_sid":"abc123","media":{"payload":"%%%"}}"#), SID);
        assert_eq!(c.findings.iter().map(|f| f.rule).collect::<Vec<_>>(), vec![rule::BAD_BASE64]);
        assert!(c.event.is_none());
        assert_eq!(text_rules(&media(r#""stream_sid":"abc123","#, 3520)), OK);
    }

    #[test]
    fn malformed() {
        assert_eq!(text_rules(r#"{"event":"media","stream_sid":"abc123","media":{}}"#), vec![rule::MALFORMED]);
        assert_eq!(text_rules(r#"{"event":"mark","stream_sid":"abc123"}"#), vec![rule::MALFORMED]);
        assert_eq!(text_rules(r#"{"event":"mark","stream_sid":"abc123","mark":{"name":"n"}}"#), OK);
    }

    #[test]
    fn chunk_not_320_multiple() {
        assert_eq!(text_rules(&media(r#""stream_sid":"abc123","#, 4096)), vec![rule::CHUNK_NOT_320_MULTIPLE]);
        assert_eq!(text_rules(&media(r#""stream_sid":"abc123","#, 4160)), OK);
    }

    #[test]
    fn chunk_too_small() {
        assert_eq!(text_rules(&media(r#""stream_sid":"abc123","#, 1600)), vec![rule::CHUNK_TOO_SMALL]);
        assert_eq!(text_rules(&media(r#""stream_sid":"abc123","#, 0)), vec![rule::CHUNK_TOO_SMALL]);
        // Both rules at once.
        assert_eq!(
            text_rules(&media(r#""stream_sid":"abc123","#, 1000)),
            vec![rule::CHUNK_NOT_320_MULTIPLE, rule::CHUNK_TOO_SMALL]
        );
        assert_eq!(text_rules(&media(r#""stream_sid":"abc123","#, 3200)), OK);
    }

    #[test]
    fn chunk_too_large() {
        assert_eq!(text_rules(&media(r#""stream_sid":"abc123","#, 100_160)), vec![rule::CHUNK_TOO_LARGE]);
        assert_eq!(
            text_rules(&media(r#""stream_sid":"abc123","#, 100_001)),
            vec![rule::CHUNK_NOT_320_MULTIPLE, rule::CHUNK_TOO_LARGE]
        );
        assert_eq!(text_rules(&media(r#""stream_sid":"abc123","#, 99_840)), OK);
    }

    #[test]
    fn several_rules_in_one_message() {
        assert_eq!(
            text_rules(&media(r#""stream_sid":"nope","#, 1000)),
            vec![rule::STREAM_SID_MISMATCH, rule::CHUNK_NOT_320_MULTIPLE, rule::CHUNK_TOO_SMALL]
        );
    }

    #[test]
    fn violation_display() {
        let v = Violation::new(Duration::from_millis(1234), Finding::new(rule::CHUNK_TOO_SMALL, "x"));
        assert_eq!(v.to_string(), "[   1.234s] chunk-too-small: x");
    }
}
