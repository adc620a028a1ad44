//! The Exotel protocol towards a bot: the bot sees exactly what Exotel would send it (documented
//! form A: snake_case, numbers as strings), at the rate it asked for.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use exotel::audio::resample::Resampler;
use exotel::event::{Dtmf, Mark, Start, Stop};
use exotel::outbound::decode_base64_lenient;
use exotel::{InboundEvent, MediaFormat, OutboundEvent, SampleRate, StopReason};

use super::wire::{BotMsg, Wire, media_payload};
use crate::agent::{CallEnd, CallInfo, EndReason};

pub(crate) struct ExotelWire {
    bot_rate: Option<SampleRate>,
    stream_sid: String,
    /// `stream_sid` as a JSON string (quoted, escaped), for every media event.
    sid_json: String,
    call_sid: Option<String>,
    account_sid: Option<String>,
    seq: u64,
    chunk: u64,
    /// Caller audio forwarded, in bytes at the bot's rate (for `media.timestamp`).
    forwarded: u64,
    rate: SampleRate,
    to_bot: Option<Resampler>,
    from_bot: Option<Resampler>,
    scratch: Vec<u8>,
    /// The bot's audio, decoded, before resampling.
    decoded: Vec<u8>,
}

impl ExotelWire {
    pub(crate) fn new(bot_rate: Option<SampleRate>) -> Self {
        Self {
            bot_rate,
            stream_sid: String::new(),
            sid_json: "\"\"".into(),
            call_sid: None,
            account_sid: None,
            seq: 0,
            chunk: 0,
            forwarded: 0,
            rate: SampleRate::default(),
            to_bot: None,
            from_bot: None,
            scratch: Vec::new(),
            decoded: Vec::new(),
        }
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }
}

impl Wire for ExotelWire {
    fn connected(&mut self) -> String {
        InboundEvent::Connected { protocol: None, version: None }.to_json()
    }

    fn start(&mut self, call: &CallInfo) -> String {
        let bot_rate = self.bot_rate.unwrap_or(call.sample_rate);
        self.rate = bot_rate;
        self.stream_sid = call.stream_sid.clone();
        self.sid_json = serde_json::to_string(&self.stream_sid).unwrap_or_else(|_| "\"\"".into());
        self.call_sid = call.call_sid.clone();
        self.account_sid = call.account_sid.clone();
        if bot_rate != call.sample_rate {
            self.to_bot = Resampler::new(call.sample_rate.hz(), bot_rate.hz()).ok();
            self.from_bot = Resampler::new(bot_rate.hz(), call.sample_rate.hz()).ok();
        }
        let seq = self.next_seq();
        InboundEvent::Start(Start {
            sequence_number: Some(seq),
            stream_sid: Some(call.stream_sid.clone()),
            call_sid: call.call_sid.clone(),
            account_sid: call.account_sid.clone(),
            from: call.from.clone(),
            to: call.to.clone(),
            custom_parameters: call.custom_parameters.clone(),
            media_format: MediaFormat {
                encoding: Some("audio/x-raw".into()),
                sample_rate: Some(bot_rate.hz().to_string()),
                bit_rate: Some("16".into()),
                channels: None,
            },
        })
        .to_json()
    }

    fn audio(&mut self, pcm: &[u8], out: &mut Vec<String>) {
        let pcm = match self.to_bot.as_mut() {
            Some(r) => {
                self.scratch.clear();
                r.process(pcm, &mut self.scratch);
                &self.scratch[..]
            }
            None => pcm,
        };
        if pcm.is_empty() {
            return;
        }
        self.seq += 1;
        let seq = self.seq;
        self.chunk += 1;
        let timestamp = self.forwarded / self.rate.bytes_per_ms() as u64;
        self.forwarded += pcm.len() as u64;
        out.push(media_json(seq, &self.sid_json, self.chunk, timestamp, pcm));
    }

    fn dtmf(&mut self, digit: &str, duration_ms: Option<u64>) -> String {
        let seq = self.next_seq();
        InboundEvent::Dtmf(Dtmf {
            sequence_number: Some(seq),
            stream_sid: Some(self.stream_sid.clone()),
            digit: digit.to_string(),
            duration_ms,
        })
        .to_json()
    }

    fn mark(&mut self, name: &str) -> String {
        let seq = self.next_seq();
        InboundEvent::Mark(Mark {
            sequence_number: Some(seq),
            stream_sid: Some(self.stream_sid.clone()),
            name: name.into(),
        })
        .to_json()
    }

    fn exotel_clear(&mut self) -> Option<String> {
        Some(InboundEvent::Clear { stream_sid: Some(self.stream_sid.clone()) }.to_json())
    }

    fn stop(&mut self, end: &CallEnd) -> String {
        let reason = match &end.reason {
            EndReason::Stop(r) => r.clone(),
            // Exotel's `stopped`: the applet ended for a reason other than the caller hanging up.
            _ => StopReason::Stopped,
        };
        let seq = self.next_seq();
        InboundEvent::Stop(Stop {
            sequence_number: Some(seq),
            stream_sid: Some(self.stream_sid.clone()),
            call_sid: self.call_sid.clone(),
            account_sid: self.account_sid.clone(),
            reason,
        })
        .to_json()
    }

    fn parse(&mut self, text: &str, pcm_out: &mut Vec<u8>) -> BotMsg {
        // Media, the bot's every message: the payload is decoded where it lies, into a buffer
        // kept for the call. Anything else (and a payload that is not base64, so the error is
        // the parser's own) goes through the full parser.
        if let Some(payload) = media_payload(text) {
            if self.media(&payload, pcm_out) {
                return BotMsg::Media;
            }
        }
        match OutboundEvent::parse_lenient(text) {
            Ok(OutboundEvent::Media { payload, .. }) => {
                // PCM16 has two bytes a sample: an odd byte is dropped, not shifted into the next.
                let even = &payload[..payload.len() & !1];
                match self.from_bot.as_mut() {
                    Some(r) => r.process(even, pcm_out),
                    None => pcm_out.extend_from_slice(even),
                }
                BotMsg::Media
            }
            Ok(OutboundEvent::Mark { name, .. }) => BotMsg::Mark(name),
            Ok(OutboundEvent::Clear { .. }) => BotMsg::Clear,
            Err(e) => BotMsg::Bad(e.to_string()),
        }
    }

    fn flush_output(&mut self, pcm_out: &mut Vec<u8>) {
        if let Some(r) = self.from_bot.as_mut() {
            r.flush(pcm_out);
        }
    }

    fn reset_output(&mut self) {
        if let Some(r) = self.from_bot.as_mut() {
            r.reset();
        }
    }
}

impl ExotelWire {
    /// A media payload (base64 PCM16 at the bot's rate) appended to `pcm_out` at the call's
    /// rate; false, with nothing appended, if it is not base64.
    fn media(&mut self, payload: &str, pcm_out: &mut Vec<u8>) -> bool {
        match self.from_bot.as_mut() {
            None => {
                let start = pcm_out.len();
                // Unpadded and line-wrapped (Python's `encodebytes`) base64 are taken too.
                if decode_base64_lenient(payload, pcm_out).is_err() {
                    pcm_out.truncate(start);
                    return false;
                }
                // PCM16 has two bytes a sample: an odd byte is dropped, not shifted into the next.
                let even = (pcm_out.len() - start) & !1;
                pcm_out.truncate(start + even);
            }
            Some(r) => {
                self.decoded.clear();
                if decode_base64_lenient(payload, &mut self.decoded).is_err() {
                    return false;
                }
                let even = self.decoded.len() & !1;
                r.process(&self.decoded[..even], pcm_out);
            }
        }
        true
    }
}

/// The media event, written directly: it is the bridge's hot path. `sid_json` is the stream id
/// as a JSON string.
fn media_json(seq: u64, sid_json: &str, chunk: u64, timestamp: u64, pcm: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(pcm.len().div_ceil(3) * 4 + 160 + sid_json.len());
    // Writing to a String cannot fail.
    let _ = write!(out, r#"{{"event":"media","sequence_number":"{seq}","stream_sid":{sid_json},"#);
    let _ = write!(out, r#""media":{{"chunk":"{chunk}","timestamp":"{timestamp}","payload":""#);
    B64.encode_string(pcm, &mut out);
    out.push_str("\"}}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use exotel::event::Media;

    fn call() -> CallInfo {
        CallInfo {
            call_sid: Some("c1".into()),
            stream_sid: "s1".into(),
            account_sid: Some("acme".into()),
            from: Some("09876543210".into()),
            to: Some("08047491899".into()),
            custom_parameters: [("lang".to_string(), "hi".to_string())].into(),
            sample_rate: SampleRate::Hz8000,
            agent_id: "bot".into(),
        }
    }

    #[test]
    fn the_bot_reads_what_exotel_would_send() {
        let mut w = ExotelWire::new(None);
        let start = InboundEvent::parse(&w.start(&call())).unwrap();
        let InboundEvent::Start(s) = start else { panic!("{start:?}") };
        assert_eq!(s.stream_sid.as_deref(), Some("s1"));
        assert_eq!(s.call_sid.as_deref(), Some("c1"));
        assert_eq!(s.from.as_deref(), Some("09876543210"));
        assert_eq!(s.custom_parameters["lang"], "hi");
        assert_eq!(s.media_format.rate(), Some(SampleRate::Hz8000));
        let mut out = Vec::new();
        w.audio(&[1, 0, 2, 0], &mut out);
        w.audio(&[3, 0], &mut out);
        let InboundEvent::Media(Media { payload, chunk, timestamp, sequence_number, .. }) =
            InboundEvent::parse(&out[1]).unwrap()
        else {
            panic!()
        };
        assert_eq!(B64.decode(payload).unwrap(), [3, 0]);
        assert_eq!((sequence_number, chunk, timestamp), (Some(3), Some(2), Some(0)));
        let dtmf: serde_json::Value = serde_json::from_str(&w.dtmf("5", Some(100))).unwrap();
        assert_eq!(dtmf["dtmf"], serde_json::json!({"digit": "5", "duration": "100"}), "as Exotel sends it");
        let stop = w.stop(&CallEnd::new(EndReason::Stop(StopReason::CallEnded)));
        assert!(matches!(
            InboundEvent::parse(&stop).unwrap(),
            InboundEvent::Stop(Stop { reason: StopReason::CallEnded, .. })
        ));
        let mut pcm = Vec::new();
        assert!(matches!(
            w.parse(r#"{"event":"media","stream_sid":"x","media":{"payload":"AQID"}}"#, &mut pcm),
            BotMsg::Media
        ));
        assert_eq!(pcm, [1, 2], "odd trailing byte dropped");
        assert!(matches!(w.parse("nope", &mut pcm), BotMsg::Bad(_)));
    }

    #[test]
    fn media_reads_the_same_in_place_and_through_the_parser() {
        for bot_rate in [None, Some(SampleRate::Hz16000)] {
            let (mut fast, mut full) = (ExotelWire::new(bot_rate), ExotelWire::new(bot_rate));
            fast.start(&call());
            full.start(&call());
            let payload = B64.encode((0..640u32).map(|i| (i * 7) as u8).collect::<Vec<_>>());
            // The first reads in place; the second, with `media` twice (the last counts), does not.
            let in_place = format!(r#"{{"event":"media","stream_sid":"s1","media":{{"payload":"{payload}"}}}}"#);
            let parsed =
                format!(r#"{{"event":"media","media":{{"payload":"AAAA"}},"media":{{"payload":"{payload}"}}}}"#);
            let (mut a, mut b) = (Vec::new(), Vec::new());
            for _ in 0..3 {
                assert!(matches!(fast.parse(&in_place, &mut a), BotMsg::Media));
                assert!(matches!(full.parse(&parsed, &mut b), BotMsg::Media));
            }
            assert!(!a.is_empty());
            assert_eq!(a, b, "bot rate {bot_rate:?}");
        }
        let mut w = ExotelWire::new(None);
        let mut pcm = Vec::new();
        let BotMsg::Bad(reason) = w.parse(r#"{"event":"media","media":{"payload":"!!"}}"#, &mut pcm) else { panic!() };
        assert!(reason.contains("base64"), "{reason}");
        assert!(pcm.is_empty());
    }

    #[test]
    fn unpadded_and_line_wrapped_payloads_play_in_place_and_through_the_parser() {
        let pcm: Vec<u8> = (0..200u32).map(|i| (i * 3) as u8).collect();
        let padded = B64.encode(&pcm);
        let wrapped =
            padded.as_bytes().chunks(76).map(|c| std::str::from_utf8(c).unwrap()).collect::<Vec<_>>().join("\\n");
        for payload in [padded.trim_end_matches('=').to_string(), format!("{wrapped}\\n")] {
            // In place, and with `media` twice so the full parser reads it.
            for text in [
                format!(r#"{{"event":"media","media":{{"payload":"{payload}"}}}}"#),
                format!(r#"{{"event":"media","media":{{"payload":""}},"media":{{"payload":"{payload}"}}}}"#),
            ] {
                let mut w = ExotelWire::new(None);
                w.start(&call());
                let mut out = Vec::new();
                assert!(matches!(w.parse(&text, &mut out), BotMsg::Media), "{text}");
                assert_eq!(out, pcm, "{text}");
            }
        }
    }

    #[test]
    fn media_json_is_exotels_shape() {
        let mut w = ExotelWire::new(None);
        w.start(&CallInfo { stream_sid: "s\"1".into(), ..call() });
        let mut out = Vec::new();
        w.audio(&[1, 0, 2, 0], &mut out);
        let v: serde_json::Value = serde_json::from_str(&out[0]).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"event": "media", "sequence_number": "2", "stream_sid": "s\"1",
                "media": {"chunk": "1", "timestamp": "0", "payload": "AQACAA=="}})
        );
    }
}
