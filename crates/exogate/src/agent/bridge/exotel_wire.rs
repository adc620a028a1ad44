//! The Exotel protocol towards a bot: the bot sees exactly what Exotel would send it (documented
//! form A: snake_case, numbers as strings), at the rate it asked for.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use exotel::audio::resample::Resampler;
use exotel::event::{Dtmf, Mark, Start, Stop};
use exotel::{InboundEvent, MediaFormat, OutboundEvent, SampleRate, StopReason};

use super::wire::{BotMsg, Wire};
use crate::agent::{CallEnd, CallInfo, EndReason};

pub(crate) struct ExotelWire {
    bot_rate: Option<SampleRate>,
    stream_sid: String,
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
}

impl ExotelWire {
    pub(crate) fn new(bot_rate: Option<SampleRate>) -> Self {
        Self {
            bot_rate,
            stream_sid: String::new(),
            call_sid: None,
            account_sid: None,
            seq: 0,
            chunk: 0,
            forwarded: 0,
            rate: SampleRate::default(),
            to_bot: None,
            from_bot: None,
            scratch: Vec::new(),
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
        out.push(media_json(seq, &self.stream_sid, self.chunk, timestamp, pcm));
    }

    fn dtmf(&mut self, digit: &str) -> String {
        let seq = self.next_seq();
        InboundEvent::Dtmf(Dtmf {
            sequence_number: Some(seq),
            stream_sid: Some(self.stream_sid.clone()),
            digit: digit.to_string(),
            duration_ms: None,
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
        match OutboundEvent::parse(text) {
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

/// The media event, written directly: it is the bridge's hot path.
fn media_json(seq: u64, stream_sid: &str, chunk: u64, timestamp: u64, pcm: &[u8]) -> String {
    let sid = serde_json::to_string(stream_sid).unwrap_or_else(|_| "\"\"".into());
    let mut out = String::with_capacity(pcm.len() * 4 / 3 + 160);
    out.push_str(r#"{"event":"media","sequence_number":""#);
    out.push_str(&seq.to_string());
    out.push_str(r#"","stream_sid":"#);
    out.push_str(&sid);
    out.push_str(r#","media":{"chunk":""#);
    out.push_str(&chunk.to_string());
    out.push_str(r#"","timestamp":""#);
    out.push_str(&timestamp.to_string());
    out.push_str(r#"","payload":""#);
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
}
