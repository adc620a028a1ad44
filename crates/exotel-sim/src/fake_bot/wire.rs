//! The two wire protocols, reduced to what the bot acts on. Exotel is read with the `exotel`
//! crate's lenient parser and written with its documented encoder (docs/protocol.md §4, §5); Twilio
//! is read and written by hand in its camelCase form (docs/twilio.md §1, §2).

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use exotel::{InboundEvent, OutboundEncoder, SampleRate};
use serde_json::{Value, json};

use super::BotProtocol;

/// One message from the bot's peer (the gateway), in protocol-neutral terms.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Inbound {
    Start {
        stream_sid: Option<String>,
        rate: Option<SampleRate>,
    },
    /// Decoded payload: PCM16LE (Exotel) or μ-law (Twilio).
    Media(Vec<u8>),
    Dtmf(String),
    Mark(String),
    Clear,
    Stop,
    /// `connected`, unknown events, and known ones we cannot read (e.g. bad base64): recorded
    /// in `received`, otherwise ignored, as a lenient bot would.
    Other,
}

/// Parses one text frame: `None` if it is not JSON at all.
pub(super) fn parse(protocol: BotProtocol, text: &str) -> Option<(Value, Inbound)> {
    let value: Value = serde_json::from_str(text).ok()?;
    let inbound = match protocol {
        BotProtocol::Exotel => exotel_inbound(text),
        BotProtocol::Twilio => twilio_inbound(&value),
    };
    Some((value, inbound))
}

fn exotel_inbound(text: &str) -> Inbound {
    match InboundEvent::parse(text) {
        // The parser already takes the top-level `stream_sid`, else `start.stream_sid`.
        Ok(InboundEvent::Start(s)) => Inbound::Start { rate: s.media_format.rate(), stream_sid: s.stream_sid },
        Ok(InboundEvent::Media(m)) => B64.decode(m.payload.as_bytes()).map_or(Inbound::Other, Inbound::Media),
        Ok(InboundEvent::Dtmf(d)) => Inbound::Dtmf(d.digit),
        Ok(InboundEvent::Mark(m)) => Inbound::Mark(m.name),
        Ok(InboundEvent::Clear { .. }) => Inbound::Clear,
        Ok(InboundEvent::Stop(_)) => Inbound::Stop,
        Ok(InboundEvent::Connected { .. } | InboundEvent::Unknown { .. }) | Err(_) => Inbound::Other,
    }
}

fn twilio_inbound(v: &Value) -> Inbound {
    let text = |section: &str, key: &str| v.get(section).and_then(|s| s.get(key)).and_then(Value::as_str);
    match v.get("event").and_then(Value::as_str) {
        Some("start") => {
            let sid = text("start", "streamSid").or_else(|| v.get("streamSid").and_then(Value::as_str));
            // Twilio is always μ-law 8 kHz; mediaFormat is not consulted.
            Inbound::Start { stream_sid: sid.map(str::to_string), rate: None }
        }
        Some("media") => match text("media", "payload").map(|p| B64.decode(p.as_bytes())) {
            Some(Ok(audio)) => Inbound::Media(audio),
            _ => Inbound::Other,
        },
        Some("dtmf") => text("dtmf", "digit").map_or(Inbound::Other, |d| Inbound::Dtmf(d.to_string())),
        Some("mark") => text("mark", "name").map_or(Inbound::Other, |n| Inbound::Mark(n.to_string())),
        // Not a Twilio event, but a gateway flushing the bot is worth recording either way.
        Some("clear") => Inbound::Clear,
        Some("stop") => Inbound::Stop,
        _ => Inbound::Other,
    }
}

/// Composes the bot's messages for one stream, with the stream id learnt from `start`.
pub(super) enum Encoder {
    Exotel { encoder: OutboundEncoder, stream_sid: String, bytes_per_ms: usize, sent_bytes: usize },
    Twilio { stream_sid: String },
}

impl Encoder {
    pub(super) fn new(protocol: BotProtocol, stream_sid: &str, bytes_per_ms: usize) -> Self {
        match protocol {
            BotProtocol::Exotel => Self::Exotel {
                encoder: OutboundEncoder::new(stream_sid),
                stream_sid: stream_sid.to_string(),
                bytes_per_ms: bytes_per_ms.max(1),
                sent_bytes: 0,
            },
            BotProtocol::Twilio => Self::Twilio { stream_sid: stream_sid.to_string() },
        }
    }

    pub(super) fn media(&mut self, audio: &[u8]) -> String {
        match self {
            Self::Exotel { encoder, bytes_per_ms, sent_bytes, .. } => {
                // media.timestamp: ms of bot audio before this chunk, the bot's own stream clock.
                let timestamp_ms = (*sent_bytes / *bytes_per_ms) as u64;
                *sent_bytes += audio.len();
                encoder.media(audio, timestamp_ms)
            }
            Self::Twilio { stream_sid } => {
                json!({"event": "media", "streamSid": stream_sid, "media": {"payload": B64.encode(audio)}}).to_string()
            }
        }
    }

    pub(super) fn mark(&mut self, name: &str) -> String {
        match self {
            Self::Exotel { encoder, .. } => encoder.mark(name),
            Self::Twilio { stream_sid } => {
                json!({"event": "mark", "streamSid": stream_sid, "mark": {"name": name}}).to_string()
            }
        }
    }

    pub(super) fn clear(&mut self) -> String {
        match self {
            Self::Exotel { encoder, .. } => encoder.clear(),
            Self::Twilio { stream_sid } => json!({"event": "clear", "streamSid": stream_sid}).to_string(),
        }
    }

    /// Well-formed JSON with an event neither protocol has.
    pub(super) fn unknown_event(&self, n: usize) -> String {
        match self {
            Self::Exotel { stream_sid, .. } => {
                json!({"event": "fake-bot-garbage", "stream_sid": stream_sid, "n": n}).to_string()
            }
            Self::Twilio { stream_sid } => {
                json!({"event": "fake-bot-garbage", "streamSid": stream_sid, "n": n}).to_string()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exotel_start_forms() {
        let top = r#"{"event":"start","stream_sid":"S1","start":{"media_format":{"sample_rate":"16000"}}}"#;
        assert_eq!(
            parse(BotProtocol::Exotel, top).map(|p| p.1),
            Some(Inbound::Start { stream_sid: Some("S1".into()), rate: Some(SampleRate::Hz16000) })
        );
        let inner = r#"{"event":"start","start":{"stream_sid":"S2"}}"#;
        assert_eq!(
            parse(BotProtocol::Exotel, inner).map(|p| p.1),
            Some(Inbound::Start { stream_sid: Some("S2".into()), rate: None })
        );
    }

    #[test]
    fn twilio_start_forms() {
        let inner = r#"{"event":"start","start":{"streamSid":"MZ1","callSid":"CA1"}}"#;
        assert_eq!(
            parse(BotProtocol::Twilio, inner).map(|p| p.1),
            Some(Inbound::Start { stream_sid: Some("MZ1".into()), rate: None })
        );
        let top = r#"{"event":"start","streamSid":"MZ2","start":{}}"#;
        assert_eq!(
            parse(BotProtocol::Twilio, top).map(|p| p.1),
            Some(Inbound::Start { stream_sid: Some("MZ2".into()), rate: None })
        );
    }

    #[test]
    fn events() {
        let cases = [
            (BotProtocol::Exotel, r#"{"event":"media","media":{"payload":"AAEC"}}"#, Inbound::Media(vec![0, 1, 2])),
            (BotProtocol::Twilio, r#"{"event":"media","media":{"payload":"AAEC"}}"#, Inbound::Media(vec![0, 1, 2])),
            (BotProtocol::Exotel, r#"{"event":"media","media":{"payload":"!!"}}"#, Inbound::Other),
            (BotProtocol::Exotel, r##"{"event":"dtmf","dtmf":{"digit":"#"}}"##, Inbound::Dtmf("#".into())),
            (BotProtocol::Twilio, r#"{"event":"dtmf","dtmf":{"digit":"*"}}"#, Inbound::Dtmf("*".into())),
            (BotProtocol::Exotel, r#"{"event":"mark","mark":{"name":"a"}}"#, Inbound::Mark("a".into())),
            (BotProtocol::Twilio, r#"{"event":"mark","mark":{"name":"b"}}"#, Inbound::Mark("b".into())),
            (BotProtocol::Exotel, r#"{"event":"stop","stop":{"reason":"callended"}}"#, Inbound::Stop),
            (BotProtocol::Twilio, r#"{"event":"stop","stop":{}}"#, Inbound::Stop),
            (BotProtocol::Exotel, r#"{"event":"clear"}"#, Inbound::Clear),
            (BotProtocol::Twilio, r#"{"event":"connected","protocol":"Call"}"#, Inbound::Other),
            (BotProtocol::Exotel, r#"{"event":"whatever"}"#, Inbound::Other),
        ];
        for (protocol, text, want) in cases {
            assert_eq!(parse(protocol, text).map(|p| p.1), Some(want), "{protocol:?} {text}");
        }
        assert!(parse(BotProtocol::Exotel, "not json").is_none());
    }

    #[test]
    fn twilio_messages() {
        let mut enc = Encoder::new(BotProtocol::Twilio, "MZ9", 8);
        let v: Value = serde_json::from_str(&enc.media(&[0xFF, 0x7F])).unwrap_or_default();
        assert_eq!(v, json!({"event":"media","streamSid":"MZ9","media":{"payload":"/38="}}));
        let v: Value = serde_json::from_str(&enc.mark("m")).unwrap_or_default();
        assert_eq!(v, json!({"event":"mark","streamSid":"MZ9","mark":{"name":"m"}}));
        let v: Value = serde_json::from_str(&enc.clear()).unwrap_or_default();
        assert_eq!(v, json!({"event":"clear","streamSid":"MZ9"}));
    }

    #[test]
    fn exotel_messages() {
        let mut enc = Encoder::new(BotProtocol::Exotel, "S", 16);
        let _ = enc.media(&[0; 3200]);
        let v: Value = serde_json::from_str(&enc.media(&[0; 320])).unwrap_or_default();
        assert_eq!((v["event"].as_str(), v["stream_sid"].as_str()), (Some("media"), Some("S")));
        assert_eq!(v["media"]["timestamp"].as_str(), Some("200"), "after 200 ms of audio");
        let v: Value = serde_json::from_str(&enc.mark("m")).unwrap_or_default();
        assert_eq!((v["mark"]["name"].as_str(), v["stream_sid"].as_str()), (Some("m"), Some("S")));
    }
}
