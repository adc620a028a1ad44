//! Twilio Media Streams towards a bot (docs/twilio.md): exogate plays Twilio's part, so a bot
//! written for Twilio runs on Exotel unchanged. The bot always gets μ-law 8 kHz in 20 ms frames;
//! its μ-law (any size) is decoded and resampled to the call's rate.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use exotel::SampleRate;
use exotel::audio::g711;
use exotel::audio::resample::Resampler;
use exotel::outbound::decode_base64_lenient;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use super::wire::{BotMsg, Wire, media_payload};
use crate::agent::{CallEnd, CallInfo};

/// 20 ms of μ-law at 8 kHz: Twilio's inbound frame.
const FRAME: usize = 160;
/// Exotel audio that stops for longer than this moves the timestamp on by the gap, so the bot's
/// clock (`media.timestamp`, which bots use to time barge-in) keeps pace with the wall clock.
const GAP_MS: u64 = 100;

pub(crate) struct TwilioWire {
    account_sid: Option<String>,
    stream_sid: String,
    call_sid: String,
    seq: u64,
    chunk: u64,
    /// Media position in ms (the next frame's timestamp).
    position_ms: u64,
    began: Option<Instant>,
    to_bot: Option<Resampler>,
    from_bot: Option<Resampler>,
    /// μ-law waiting to fill a 160-byte frame.
    pending: Vec<u8>,
    scratch: Vec<u8>,
    /// The bot's μ-law, from base64.
    ulaw: Vec<u8>,
    decoded: Vec<u8>,
}

/// `MZ`/`CA`/`AC` + 32 hex, as Twilio's ids look: Exotel's 32-hex sids are kept (so they can be
/// read back), anything else is hashed.
pub(crate) fn twilio_sid(prefix: &str, value: &str) -> String {
    let hex32 = value.len() == 32 && value.bytes().all(|b| b.is_ascii_hexdigit());
    if hex32 {
        return format!("{prefix}{}", value.to_ascii_lowercase());
    }
    let digest = Sha256::digest(value.as_bytes());
    format!("{prefix}{}", &hex::encode(digest)[..32])
}

impl TwilioWire {
    pub(crate) fn new(account_sid: Option<String>) -> Self {
        Self {
            account_sid,
            stream_sid: String::new(),
            call_sid: String::new(),
            seq: 0,
            chunk: 0,
            position_ms: 0,
            began: None,
            to_bot: None,
            from_bot: None,
            pending: Vec::with_capacity(FRAME),
            scratch: Vec::new(),
            ulaw: Vec::new(),
            decoded: Vec::new(),
        }
    }

    fn next_seq(&mut self) -> String {
        self.seq += 1;
        self.seq.to_string()
    }

    fn account(&self) -> String {
        self.account_sid.clone().unwrap_or_default()
    }
}

impl Wire for TwilioWire {
    fn connected(&mut self) -> String {
        json!({"event": "connected", "protocol": "Call", "version": "1.0.0"}).to_string()
    }

    fn start(&mut self, call: &CallInfo) -> String {
        self.stream_sid = twilio_sid("MZ", &call.stream_sid);
        self.call_sid = twilio_sid("CA", call.call_sid.as_deref().unwrap_or(&call.stream_sid));
        if self.account_sid.is_none() {
            self.account_sid = Some(twilio_sid("AC", call.account_sid.as_deref().unwrap_or("exogate")));
        }
        if call.sample_rate != SampleRate::Hz8000 {
            self.to_bot = Resampler::new(call.sample_rate.hz(), 8000).ok();
            self.from_bot = Resampler::new(8000, call.sample_rate.hz()).ok();
        }
        self.began = Some(Instant::now());
        // Twilio's start has no numbers: Pipecat's convention carries them as parameters.
        let mut params: serde_json::Map<String, Value> =
            call.custom_parameters.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect();
        if let Some(f) = &call.from {
            params.entry("from_number").or_insert_with(|| Value::String(f.clone()));
        }
        if let Some(t) = &call.to {
            params.entry("to_number").or_insert_with(|| Value::String(t.clone()));
        }
        let seq = self.next_seq();
        json!({
            "event": "start",
            "sequenceNumber": seq,
            "start": {
                "accountSid": self.account(),
                "streamSid": self.stream_sid,
                "callSid": self.call_sid,
                "tracks": ["inbound"],
                "customParameters": params,
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
            },
            "streamSid": self.stream_sid,
        })
        .to_string()
    }

    fn audio(&mut self, pcm: &[u8], out: &mut Vec<String>) {
        if let Some(began) = self.began {
            let wall = began.elapsed().as_millis() as u64;
            let queued_ms = self.pending.len() as u64 / 8;
            if wall > self.position_ms + queued_ms + GAP_MS {
                self.position_ms = wall.saturating_sub(queued_ms);
            }
        }
        let pcm8 = match self.to_bot.as_mut() {
            Some(r) => {
                self.scratch.clear();
                r.process(pcm, &mut self.scratch);
                &self.scratch[..]
            }
            None => pcm,
        };
        g711::ulaw_encode(pcm8, &mut self.pending);
        let mut start = 0;
        while self.pending.len() - start >= FRAME {
            let frame = &self.pending[start..start + FRAME];
            self.seq += 1;
            self.chunk += 1;
            out.push(media_json(self.seq, &self.stream_sid, self.chunk, self.position_ms, frame));
            self.position_ms += 20;
            start += FRAME;
        }
        self.pending.drain(..start);
    }

    fn dtmf(&mut self, digit: &str, _duration_ms: Option<u64>) -> String {
        // Twilio's dtmf has no duration.
        let seq = self.next_seq();
        json!({"event": "dtmf", "streamSid": self.stream_sid, "sequenceNumber": seq,
               "dtmf": {"track": "inbound_track", "digit": digit}})
        .to_string()
    }

    fn mark(&mut self, name: &str) -> String {
        let seq = self.next_seq();
        json!({"event": "mark", "sequenceNumber": seq, "streamSid": self.stream_sid, "mark": {"name": name}})
            .to_string()
    }

    fn exotel_clear(&mut self) -> Option<String> {
        // Twilio has no inbound `clear`; pending marks are echoed instead (the bridge does it).
        None
    }

    fn stop(&mut self, _end: &CallEnd) -> String {
        let seq = self.next_seq();
        json!({"event": "stop", "sequenceNumber": seq, "streamSid": self.stream_sid,
               "stop": {"accountSid": self.account(), "callSid": self.call_sid}})
        .to_string()
    }

    fn parse(&mut self, text: &str, pcm_out: &mut Vec<u8>) -> BotMsg {
        // Media, the bot's every message, is read without building a JSON tree.
        if let Some(payload) = media_payload(text) {
            return self.media(&payload, pcm_out);
        }
        let Ok(v) = serde_json::from_str::<Value>(text) else { return BotMsg::Bad("not JSON".into()) };
        let Some(event) = v.get("event").and_then(Value::as_str) else { return BotMsg::Bad("no event".into()) };
        match event {
            "media" => {
                let Some(payload) = v.pointer("/media/payload").and_then(Value::as_str) else {
                    return BotMsg::Bad("media without media.payload".into());
                };
                self.media(payload, pcm_out)
            }
            "mark" => match v.pointer("/mark/name").and_then(Value::as_str) {
                Some(name) => BotMsg::Mark(name.to_string()),
                None => BotMsg::Bad("mark without mark.name".into()),
            },
            "clear" => BotMsg::Clear,
            other => BotMsg::Bad(format!("unknown event {other:?}")),
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

    fn twilio_ids(&self) -> Option<(String, String)> {
        (!self.call_sid.is_empty()).then(|| (self.call_sid.clone(), self.account()))
    }
}

impl TwilioWire {
    /// A media payload (base64 μ-law at 8 kHz) appended to `pcm_out` as PCM16 at the call's rate.
    fn media(&mut self, payload: &str, pcm_out: &mut Vec<u8>) -> BotMsg {
        self.ulaw.clear();
        // Python bots often send `base64.encodebytes` output (line-wrapped) or unpadded base64.
        if decode_base64_lenient(payload, &mut self.ulaw).is_err() {
            return BotMsg::Bad("payload is not base64".into());
        }
        if self.ulaw.is_empty() {
            return BotMsg::Bad("empty payload".into());
        }
        match self.from_bot.as_mut() {
            Some(r) => {
                self.decoded.clear();
                g711::ulaw_decode(&self.ulaw, &mut self.decoded);
                r.process(&self.decoded, pcm_out);
            }
            None => g711::ulaw_decode(&self.ulaw, pcm_out),
        }
        BotMsg::Media
    }
}

/// Twilio's media event, written directly (the hot path). Every scalar but the payload's is a
/// string, as Twilio sends them.
fn media_json(seq: u64, stream_sid: &str, chunk: u64, timestamp: u64, ulaw: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(ulaw.len().div_ceil(3) * 4 + 160 + stream_sid.len());
    // Writing to a String cannot fail.
    let _ = write!(out, r#"{{"event":"media","sequenceNumber":"{seq}","#);
    let _ = write!(out, r#""media":{{"track":"inbound","chunk":"{chunk}","timestamp":"{timestamp}","payload":""#);
    B64.encode_string(ulaw, &mut out);
    out.push_str(r#""},"streamSid":""#);
    // Our own MZ + hex id: nothing to escape.
    out.push_str(stream_sid);
    out.push_str("\"}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(rate: SampleRate) -> CallInfo {
        CallInfo {
            call_sid: Some("6f048d2e897a0d2d4029560f3f541947".into()),
            stream_sid: "80bfbec2d78bbbf10fb851f4fa165211".into(),
            account_sid: Some("exotelt".into()),
            from: Some("09876543210".into()),
            to: Some("08047491899".into()),
            custom_parameters: [("lang".to_string(), "hi".to_string())].into(),
            sample_rate: rate,
            agent_id: "bot".into(),
        }
    }

    #[tokio::test]
    async fn start_is_twilio_shaped() {
        let mut w = TwilioWire::new(None);
        let v: Value = serde_json::from_str(&w.start(&call(SampleRate::Hz8000))).unwrap();
        assert_eq!(v["event"], "start");
        assert_eq!(v["sequenceNumber"], "1");
        assert_eq!(v["streamSid"], "MZ80bfbec2d78bbbf10fb851f4fa165211");
        assert_eq!(v["start"]["streamSid"], v["streamSid"]);
        assert_eq!(v["start"]["callSid"], "CA6f048d2e897a0d2d4029560f3f541947");
        assert!(v["start"]["accountSid"].as_str().unwrap().starts_with("AC"));
        assert_eq!(v["start"]["accountSid"].as_str().unwrap().len(), 34);
        assert_eq!(v["start"]["mediaFormat"], json!({"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}));
        assert_eq!(
            v["start"]["customParameters"],
            json!({"lang": "hi", "from_number": "09876543210", "to_number": "08047491899"})
        );
        assert_eq!(v["start"]["tracks"], json!(["inbound"]));
    }

    #[tokio::test]
    async fn caller_audio_becomes_20ms_ulaw_frames() {
        let mut w = TwilioWire::new(Some("AC1".into()));
        w.start(&call(SampleRate::Hz16000));
        let mut out = Vec::new();
        // 100 ms at 16 kHz → 5 frames of 160 μ-law bytes (the resampler may hold a few samples).
        w.audio(&vec![0u8; 3200], &mut out);
        w.audio(&vec![0u8; 3200], &mut out);
        assert!((9..=10).contains(&out.len()), "{}", out.len());
        for (i, m) in out.iter().enumerate() {
            let v: Value = serde_json::from_str(m).unwrap();
            assert_eq!(v["media"]["track"], "inbound");
            assert_eq!(v["media"]["chunk"], (i + 1).to_string());
            assert_eq!(v["media"]["timestamp"], (i * 20).to_string());
            assert_eq!(v["sequenceNumber"], (i + 2).to_string());
            assert_eq!(B64.decode(v["media"]["payload"].as_str().unwrap()).unwrap().len(), 160);
        }
    }

    #[test]
    fn bot_messages_are_read_leniently() {
        let mut w = TwilioWire::new(None);
        let mut pcm = Vec::new();
        // Any size, μ-law silence (0xFF) decodes to PCM zeros; a missing streamSid is fine.
        assert!(matches!(w.parse(r#"{"event":"media","media":{"payload":"//8="}}"#, &mut pcm), BotMsg::Media));
        assert_eq!(pcm, [0, 0, 0, 0]);
        assert!(
            matches!(w.parse(r#"{"event":"mark","streamSid":"MZ1","mark":{"name":"a"}}"#, &mut pcm), BotMsg::Mark(n) if n == "a")
        );
        assert!(matches!(w.parse(r#"{"event":"clear","streamSid":"MZ1"}"#, &mut pcm), BotMsg::Clear));
        assert!(matches!(w.parse(r#"{"event":"mark","mark":{}}"#, &mut pcm), BotMsg::Bad(_)));
        assert!(matches!(w.parse(r#"{"event":"hello"}"#, &mut pcm), BotMsg::Bad(_)));
        assert!(matches!(w.parse("garbage", &mut pcm), BotMsg::Bad(_)));
    }

    #[test]
    fn media_reads_the_same_in_place_and_through_the_parser() {
        for rate in [SampleRate::Hz8000, SampleRate::Hz16000] {
            let (mut fast, mut full) = (TwilioWire::new(None), TwilioWire::new(None));
            fast.start(&call(rate));
            full.start(&call(rate));
            let payload = B64.encode((0..160u32).map(|i| (i * 13) as u8).collect::<Vec<_>>());
            // The first reads in place; the second, with `event` twice (the last counts), does not.
            let in_place = format!(r#"{{"event":"media","streamSid":"MZ1","media":{{"payload":"{payload}"}}}}"#);
            let parsed = format!(r#"{{"event":"mark","event":"media","media":{{"payload":"{payload}"}}}}"#);
            let (mut a, mut b) = (Vec::new(), Vec::new());
            for _ in 0..3 {
                assert!(matches!(fast.parse(&in_place, &mut a), BotMsg::Media));
                assert!(matches!(full.parse(&parsed, &mut b), BotMsg::Media));
            }
            assert!(!a.is_empty());
            assert_eq!(a, b, "{rate:?}");
        }
        let mut w = TwilioWire::new(None);
        let mut pcm = Vec::new();
        for (text, why) in [
            (r#"{"event":"media","media":{"payload":"!!"}}"#, "payload is not base64"),
            (r#"{"event":"media","media":{"payload":""}}"#, "empty payload"),
        ] {
            let BotMsg::Bad(reason) = w.parse(text, &mut pcm) else { panic!("{text}") };
            assert_eq!(reason, why);
        }
        assert!(pcm.is_empty());
    }

    #[test]
    fn unpadded_and_line_wrapped_payloads_play() {
        let ulaw: Vec<u8> = (0..100u32).map(|i| (i * 7) as u8).collect();
        let padded = B64.encode(&ulaw);
        let mut want = Vec::new();
        g711::ulaw_decode(&ulaw, &mut want);
        // `base64.encodebytes` wraps every 76 characters and ends with a newline (JSON-escaped here).
        let wrapped =
            padded.as_bytes().chunks(76).map(|c| std::str::from_utf8(c).unwrap()).collect::<Vec<_>>().join("\\n");
        for payload in [padded.trim_end_matches('=').to_string(), format!("{wrapped}\\n")] {
            let mut w = TwilioWire::new(None);
            let mut pcm = Vec::new();
            let text = format!(r#"{{"event":"media","media":{{"payload":"{payload}"}}}}"#);
            assert!(matches!(w.parse(&text, &mut pcm), BotMsg::Media), "{payload}");
            assert_eq!(pcm, want, "{payload}");
        }
    }

    #[tokio::test]
    async fn media_json_is_twilios_shape() {
        let mut w = TwilioWire::new(None);
        w.start(&call(SampleRate::Hz8000));
        let mut out = Vec::new();
        w.audio(&[0u8; 320], &mut out);
        let v: Value = serde_json::from_str(&out[0]).unwrap();
        assert_eq!(
            v,
            json!({"event": "media", "sequenceNumber": "2", "streamSid": "MZ80bfbec2d78bbbf10fb851f4fa165211",
                "media": {"track": "inbound", "chunk": "1", "timestamp": "0", "payload": B64.encode([0xFFu8; 160])}})
        );
    }

    #[test]
    fn sids() {
        assert_eq!(twilio_sid("MZ", "80BFBEC2D78BBBF10FB851F4FA165211"), "MZ80bfbec2d78bbbf10fb851f4fa165211");
        let hashed = twilio_sid("CA", "not-hex");
        assert_eq!(hashed.len(), 34);
        assert_eq!(hashed, twilio_sid("CA", "not-hex"));
    }
}
