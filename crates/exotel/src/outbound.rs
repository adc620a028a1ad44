//! Messages the bot sends to Exotel (docs/protocol.md §5): composed in the documented form, and parsed
//! (leniently, reporting what deviates) for simulators that check a bot.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::Value;

/// Composes the bot's messages for one stream. Keeps the per-stream counters the recommended form
/// carries (`sequence_number`, `media.chunk`, `media.timestamp`) and the JSON-escaped `stream_sid`.
#[derive(Debug, Clone)]
pub struct OutboundEncoder {
    sid_json: String,
    sequence: u64,
    chunk: u64,
}

impl OutboundEncoder {
    pub fn new(stream_sid: &str) -> Self {
        // A String always serialises; the fallback is unreachable but keeps this panic-free.
        let sid_json = serde_json::to_string(stream_sid).unwrap_or_else(|_| "\"\"".into());
        Self { sid_json, sequence: 0, chunk: 0 }
    }

    fn next_seq(&mut self) -> u64 {
        self.sequence += 1;
        self.sequence
    }

    /// `{"event":"media","stream_sid":…,"sequence_number":"N","media":{"chunk":"K","timestamp":"T","payload":…}}`.
    /// `pcm` must already be a legal chunk (see [`crate::Framer`]); `timestamp_ms` is ms since our stream start.
    pub fn media(&mut self, pcm: &[u8], timestamp_ms: u64) -> String {
        let seq = self.next_seq();
        self.chunk += 1;
        let mut out = String::with_capacity(pcm.len() * 4 / 3 + 160);
        out.push_str(r#"{"event":"media","stream_sid":"#);
        out.push_str(&self.sid_json);
        out.push_str(r#","sequence_number":""#);
        push_u64(&mut out, seq);
        out.push_str(r#"","media":{"chunk":""#);
        push_u64(&mut out, self.chunk);
        out.push_str(r#"","timestamp":""#);
        push_u64(&mut out, timestamp_ms);
        out.push_str(r#"","payload":""#);
        B64.encode_string(pcm, &mut out);
        out.push_str("\"}}");
        out
    }

    pub fn mark(&mut self, name: &str) -> String {
        let seq = self.next_seq();
        let name = serde_json::to_string(name).unwrap_or_else(|_| "\"\"".into());
        format!(
            r#"{{"event":"mark","stream_sid":{},"sequence_number":"{seq}","mark":{{"name":{name}}}}}"#,
            self.sid_json
        )
    }

    pub fn clear(&mut self) -> String {
        let seq = self.next_seq();
        format!(r#"{{"event":"clear","stream_sid":{},"sequence_number":"{seq}"}}"#, self.sid_json)
    }
}

fn push_u64(out: &mut String, n: u64) {
    use std::fmt::Write;
    let _ = write!(out, "{n}");
}

/// A bot message as Exotel would read it, with what deviates from the documented form.
#[derive(Debug, Clone, PartialEq)]
pub enum OutboundEvent {
    Media { stream_sid: Option<String>, payload: Vec<u8> },
    Mark { stream_sid: Option<String>, name: String },
    Clear { stream_sid: Option<String> },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutboundError {
    #[error("not a JSON object: {0}")]
    NotJson(String),
    #[error("no \"event\" field")]
    NoEvent,
    #[error("event {0:?} is not one a bot may send (media, mark, clear)")]
    UnknownEvent(String),
    #[error("{0}")]
    Malformed(&'static str),
    #[error("payload is not valid base64: {0}")]
    BadBase64(String),
}

/// Base64 as bots write it: padded or not, and with line breaks or spaces inside (Python's
/// `base64.encodebytes` wraps every 76 characters). The common, clean payload decodes in one pass;
/// only a payload that fails is scanned for whitespace and decoded again without it.
pub fn decode_base64_lenient(payload: &str, out: &mut Vec<u8>) -> Result<(), base64::DecodeError> {
    let start = out.len();
    let first = LENIENT.decode_vec(payload, out);
    let Err(e) = first else { return Ok(()) };
    out.truncate(start);
    if !payload.bytes().any(|b| b.is_ascii_whitespace()) {
        return Err(e);
    }
    let compact: String = payload.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    LENIENT.decode_vec(compact.as_bytes(), out).inspect_err(|_| out.truncate(start))
}

/// The standard alphabet, with or without `=` padding.
const LENIENT: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new()
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
);

impl OutboundEvent {
    /// Reads a bot message as Exotel's documented form has it (standard, padded base64).
    pub fn parse(text: &str) -> Result<Self, OutboundError> {
        Self::parse_with(text, false)
    }

    /// Like [`OutboundEvent::parse`], but takes unpadded or line-wrapped base64 too: for a gateway
    /// that plays what a bot meant rather than judging how it wrote it.
    pub fn parse_lenient(text: &str) -> Result<Self, OutboundError> {
        Self::parse_with(text, true)
    }

    fn parse_with(text: &str, lenient: bool) -> Result<Self, OutboundError> {
        let v: Value = serde_json::from_str(text).map_err(|e| OutboundError::NotJson(e.to_string()))?;
        let obj = v.as_object().ok_or_else(|| OutboundError::NotJson("not an object".into()))?;
        let event = obj.get("event").and_then(Value::as_str).ok_or(OutboundError::NoEvent)?;
        let stream_sid =
            obj.get("stream_sid").or_else(|| obj.get("streamSid")).and_then(Value::as_str).map(str::to_string);
        match event {
            "media" => {
                let payload = obj
                    .get("media")
                    .and_then(|m| m.get("payload"))
                    .and_then(Value::as_str)
                    .ok_or(OutboundError::Malformed("media without media.payload string"))?;
                let payload = if lenient {
                    let mut out = Vec::new();
                    decode_base64_lenient(payload, &mut out).map(|()| out)
                } else {
                    B64.decode(payload)
                };
                let payload = payload.map_err(|e| OutboundError::BadBase64(e.to_string()))?;
                Ok(Self::Media { stream_sid, payload })
            }
            "mark" => {
                let name = obj
                    .get("mark")
                    .and_then(|m| m.get("name"))
                    .and_then(Value::as_str)
                    .ok_or(OutboundError::Malformed("mark without mark.name string"))?;
                Ok(Self::Mark { stream_sid, name: name.to_string() })
            }
            "clear" => Ok(Self::Clear { stream_sid }),
            other => Err(OutboundError::UnknownEvent(other.to_string())),
        }
    }

    pub fn stream_sid(&self) -> Option<&str> {
        match self {
            Self::Media { stream_sid, .. } | Self::Mark { stream_sid, .. } | Self::Clear { stream_sid } => {
                stream_sid.as_deref()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_is_documented_form() {
        let mut enc = OutboundEncoder::new("MZ\"1");
        let text = enc.media(&[1, 2, 3, 4], 200);
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["event"], "media");
        assert_eq!(v["stream_sid"], "MZ\"1");
        assert_eq!(v["sequence_number"], "1");
        assert_eq!(v["media"]["chunk"], "1");
        assert_eq!(v["media"]["timestamp"], "200");
        assert_eq!(v["media"]["payload"], "AQIDBA==");
        assert_eq!(
            OutboundEvent::parse(&text).unwrap(),
            OutboundEvent::Media { stream_sid: Some("MZ\"1".into()), payload: vec![1, 2, 3, 4] }
        );
    }

    #[test]
    fn mark_and_clear() {
        let mut enc = OutboundEncoder::new("s");
        let m: Value = serde_json::from_str(&enc.mark("utt-1")).unwrap();
        assert_eq!(m["mark"]["name"], "utt-1");
        assert_eq!(m["sequence_number"], "1");
        let c: Value = serde_json::from_str(&enc.clear()).unwrap();
        assert_eq!(c["event"], "clear");
        assert_eq!(c["stream_sid"], "s");
        assert_eq!(c["sequence_number"], "2");
    }

    #[test]
    fn parse_rejects() {
        assert_eq!(OutboundEvent::parse(r#"{"event":"stop"}"#), Err(OutboundError::UnknownEvent("stop".into())));
        assert!(matches!(
            OutboundEvent::parse(r#"{"event":"media","media":{"payload":"!!"}}"#),
            Err(OutboundError::BadBase64(_))
        ));
        assert_eq!(
            OutboundEvent::parse(r#"{"streamSid":"a","event":"clear"}"#),
            Ok(OutboundEvent::Clear { stream_sid: Some("a".into()) })
        );
    }

    #[test]
    fn lenient_base64_takes_what_python_and_unpadded_encoders_write() {
        // base64.encodebytes(bytes(range(60))): wrapped at 76 characters, with a final newline.
        let wrapped = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4\nOTo7\n";
        let expected: Vec<u8> = (0..60).collect();
        for (payload, want) in [
            (wrapped, &expected[..]),
            ("AQID", &[1, 2, 3][..]),
            ("AQIDBA", &[1, 2, 3, 4][..]),
            ("AQIDBA==", &[1, 2, 3, 4][..]),
            (" AQ ID\r\nBA= = ", &[1, 2, 3, 4][..]),
        ] {
            let mut out = vec![9];
            decode_base64_lenient(payload, &mut out).unwrap_or_else(|e| panic!("{payload:?}: {e}"));
            assert_eq!(&out[1..], want, "{payload:?}");
        }
        let mut out = vec![9];
        assert!(decode_base64_lenient("!!", &mut out).is_err());
        assert!(decode_base64_lenient("AQ\nI!", &mut out).is_err());
        assert_eq!(out, [9], "nothing is left behind by a failed decode");
        let json = r#"{"event":"media","media":{"payload":"AQIDBA\n"}}"#;
        assert!(
            matches!(OutboundEvent::parse(json), Err(OutboundError::BadBase64(_))),
            "the documented form is strict"
        );
        assert_eq!(
            OutboundEvent::parse_lenient(json),
            Ok(OutboundEvent::Media { stream_sid: None, payload: vec![1, 2, 3, 4] })
        );
    }
}
