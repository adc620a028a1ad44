//! What goes on the wire, the cheap way: media events are built from precomputed pieces (no
//! serde), and a bot's media events are read by finding `"payload"` and decoding the string in
//! place. Anything the fast path is unsure about goes to the full validator instead.

use std::fmt::Write;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

/// Builds one call's `media` events: `{"event":"media","sequence_number":"N","stream_sid":"…",
/// "media":{"chunk":"K","timestamp":"T","payload":"…"}}` (docs/protocol.md §4.3, form A).
#[derive(Debug, Clone)]
pub struct MediaEncoder {
    /// `","stream_sid":"<sid>","media":{"chunk":"`
    middle: String,
}

const HEAD: &str = r#"{"event":"media","sequence_number":""#;
const TIMESTAMP: &str = r#"","timestamp":""#;
const PAYLOAD: &str = r#"","payload":""#;
const TAIL: &str = r#""}}"#;

impl MediaEncoder {
    pub fn new(stream_sid: &str) -> Self {
        let sid = serde_json::to_string(stream_sid).unwrap_or_else(|_| "\"\"".into());
        Self { middle: format!(r#"","stream_sid":{sid},"media":{{"chunk":""#) }
    }

    /// Appends the event text for one frame of PCM to `out` (no intermediate string).
    pub fn media_into(&self, out: &mut Vec<u8>, sequence: u64, chunk: u64, timestamp_ms: u64, pcm: &[u8]) {
        use std::io::Write as _;
        out.extend_from_slice(HEAD.as_bytes());
        let _ = write!(out, "{sequence}");
        out.extend_from_slice(self.middle.as_bytes());
        let _ = write!(out, "{chunk}");
        out.extend_from_slice(TIMESTAMP.as_bytes());
        let _ = write!(out, "{timestamp_ms}");
        out.extend_from_slice(PAYLOAD.as_bytes());
        let from = out.len();
        out.resize(from + pcm.len().div_ceil(3) * 4, 0);
        let written = B64.encode_slice(pcm, &mut out[from..]).unwrap_or(0);
        out.truncate(from + written);
        out.extend_from_slice(TAIL.as_bytes());
    }

    /// The event text for one frame of PCM.
    pub fn media(&self, sequence: u64, chunk: u64, timestamp_ms: u64, pcm: &[u8]) -> String {
        let b64_len = pcm.len().div_ceil(3) * 4;
        let mut out =
            String::with_capacity(HEAD.len() + self.middle.len() + TIMESTAMP.len() + PAYLOAD.len() + 64 + b64_len);
        out.push_str(HEAD);
        let _ = write!(out, "{sequence}");
        out.push_str(&self.middle);
        let _ = write!(out, "{chunk}");
        out.push_str(TIMESTAMP);
        let _ = write!(out, "{timestamp_ms}");
        out.push_str(PAYLOAD);
        B64.encode_string(pcm, &mut out);
        out.push_str(TAIL);
        out
    }
}

/// The string value of the first `"key"` in `text` (`"key"`, optional whitespace, `:`, optional
/// whitespace, `"`), up to the next quote. `None` sends the message to the full parser. An escape
/// inside the value is not interpreted: a payload with one fails base64 decoding and goes to the
/// full parser too, and a stream id with one does not match ours.
fn string_value<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let bytes = text.as_bytes();
    let mut from = 0;
    loop {
        let at = from + text[from..].find(key)?;
        let mut i = at + key.len();
        from = i;
        // The key must be a whole JSON string: preceded by a quote, followed by one.
        if at == 0 || bytes[at - 1] != b'"' || bytes.get(i) != Some(&b'"') {
            continue;
        }
        i += 1;
        while bytes.get(i).is_some_and(u8::is_ascii_whitespace) {
            i += 1;
        }
        if bytes.get(i) != Some(&b':') {
            continue;
        }
        i += 1;
        while bytes.get(i).is_some_and(u8::is_ascii_whitespace) {
            i += 1;
        }
        if bytes.get(i) != Some(&b'"') {
            return None;
        }
        let start = i + 1;
        let len = bytes[start..].iter().position(|&b| b == b'"')?;
        return Some(&text[start..start + len]);
    }
}

/// The base64 payload of a `media` event for our stream, when the message is plainly one.
/// `None` means "not sure": the full validator decides (and reports what is wrong).
pub fn fast_media<'a>(text: &'a str, our_sid: &str) -> Option<&'a str> {
    if string_value(text, "event")? != "media" {
        return None;
    }
    let sid = string_value(text, "stream_sid").or_else(|| string_value(text, "streamSid"))?;
    if sid != our_sid {
        return None;
    }
    string_value(text, "payload")
}

#[cfg(test)]
mod tests {
    use super::*;
    use exotel::InboundEvent;

    #[test]
    fn media_event_parses_as_exotel_form_a() {
        let pcm: Vec<u8> = (0..=255).cycle().take(320).collect();
        let text = MediaEncoder::new("sid\"1").media(7, 5, 80, &pcm);
        let InboundEvent::Media(m) = InboundEvent::parse(&text).unwrap() else { panic!("{text}") };
        assert_eq!(m.sequence_number, Some(7));
        assert_eq!(m.stream_sid.as_deref(), Some("sid\"1"));
        assert_eq!((m.chunk, m.timestamp), (Some(5), Some(80)));
        assert_eq!(B64.decode(&m.payload).unwrap(), pcm);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["media"]["timestamp"], "80");
    }

    #[test]
    fn media_into_matches_media() {
        let enc = MediaEncoder::new("abc");
        for len in [0usize, 1, 2, 3, 320, 640, 961] {
            let pcm: Vec<u8> = (0..len).map(|i| (i * 31) as u8).collect();
            let mut out = b"prefix".to_vec();
            enc.media_into(&mut out, 9, 8, 7, &pcm);
            assert_eq!(&out[6..], enc.media(9, 8, 7, &pcm).as_bytes(), "{len}");
        }
    }

    #[test]
    fn fast_path_reads_gateway_and_spaced_forms() {
        let gw = r#"{"event":"media","stream_sid":"abc","sequence_number":"3","media":{"chunk":"1","timestamp":"0","payload":"AAAA"}}"#;
        assert_eq!(fast_media(gw, "abc"), Some("AAAA"));
        let py = r#"{"event": "media", "streamSid": "abc", "media": {"payload": "QUJD"}}"#;
        assert_eq!(fast_media(py, "abc"), Some("QUJD"));
        let payload_first = r#"{"media":{"payload":"QUJD"},"stream_sid":"abc","event":"media"}"#;
        assert_eq!(fast_media(payload_first, "abc"), Some("QUJD"));
    }

    #[test]
    fn fast_path_declines_what_it_cannot_vouch_for() {
        // Wrong or missing stream, other events, escapes, non-string values: the validator decides.
        for text in [
            r#"{"event":"media","stream_sid":"other","media":{"payload":"AAAA"}}"#,
            r#"{"event":"media","media":{"payload":"AAAA"}}"#,
            r#"{"event":"mark","stream_sid":"abc","mark":{"name":"payload"}}"#,
            r#"{"event":"media","stream_sid":"abc","media":{"payload":null}}"#,
            r#"{"event":"media","stream_sid":"abc","media":{}}"#,
            "not json",
        ] {
            assert_eq!(fast_media(text, "abc"), None, "{text}");
        }
        // A key that only appears inside another key's name does not count.
        assert_eq!(string_value(r#"{"xevent":"media","event":"mark"}"#, "event"), Some("mark"));
    }
}
