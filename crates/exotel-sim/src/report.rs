//! What one simulated call saw, and its human summary.

use std::fmt::Write;
use std::time::Duration;

use exotel::SampleRate;
use serde::{Serialize, Serializer};

use crate::validate::Violation;

/// How many violations the summary lists before it only counts.
const LISTED_VIOLATIONS: usize = 20;

/// One `clear` as the simulated caller saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClearSeen {
    pub at: std::time::Instant,
    /// Bytes of bot audio (at the call's rate) heard before the clear, the playing chunk's part
    /// included.
    pub heard_bytes: usize,
}

#[derive(Debug, Clone, Default)]
pub struct CallReport {
    /// Redacted: no credentials, no query.
    pub ws_url: String,
    pub sample_rate: SampleRate,
    /// Exactly the caller PCM sent in media frames, concatenated.
    pub sent_pcm: Vec<u8>,
    pub frames_sent: u64,
    /// Every bot media payload, decoded, in arrival order (including audio later cleared).
    pub received_pcm: Vec<u8>,
    /// What the simulated caller heard: received minus what `clear` dropped before it played.
    pub played_pcm: Vec<u8>,
    pub media_received: u64,
    /// Decoded size of each bot media message.
    pub chunk_sizes: Vec<usize>,
    /// When each bot media message arrived.
    pub media_at: Vec<std::time::Instant>,
    pub marks_received: Vec<String>,
    /// Marks echoed back when playback reached them.
    pub marks_echoed: Vec<String>,
    pub clears_received: u64,
    /// Each `clear`: when it arrived and how much bot audio the caller had heard by then.
    pub clears: Vec<ClearSeen>,
    /// When the first caller media frame went out: the call's clock starts there.
    pub first_frame_at: Option<std::time::Instant>,
    /// First media frame sent → first bot media received.
    pub first_audio_latency: Option<Duration>,
    pub violations: Vec<Violation>,
    pub close_code: Option<u16>,
    pub close_reason: String,
    /// The bot closed (or dropped) the socket before we sent `stop`.
    pub closed_by_bot: bool,
    pub stop_sent: bool,
    /// From the WebSocket handshake to the end of the closing handshake.
    pub duration: Duration,
}

impl CallReport {
    /// No rule was broken.
    pub fn ok(&self) -> bool {
        self.violations.is_empty()
    }

    fn ms_of(&self, bytes: usize) -> u64 {
        self.sample_rate.duration_us(bytes) / 1000
    }

    pub fn summary(&self) -> String {
        let mut s = String::new();
        let rate = self.sample_rate;
        let _ = writeln!(s, "target:           {}", self.ws_url);
        let _ = writeln!(s, "rate:             {} Hz", rate.hz());
        let _ = writeln!(
            s,
            "caller audio:     {} frames, {} bytes ({} ms)",
            self.frames_sent,
            self.sent_pcm.len(),
            self.ms_of(self.sent_pcm.len())
        );
        let _ = writeln!(
            s,
            "bot media:        {} messages, {} bytes ({} ms); played {} bytes ({} ms)",
            self.media_received,
            self.received_pcm.len(),
            self.ms_of(self.received_pcm.len()),
            self.played_pcm.len(),
            self.ms_of(self.played_pcm.len())
        );
        match (self.chunk_sizes.iter().min(), self.chunk_sizes.iter().max()) {
            (Some(min), Some(max)) => {
                let _ = writeln!(s, "chunk size:       min {min} / max {max} bytes");
            }
            _ => {
                let _ = writeln!(s, "chunk size:       -");
            }
        }
        match self.first_audio_latency {
            Some(d) => {
                let _ = writeln!(s, "first bot audio:  {} ms after the first caller frame", d.as_millis());
            }
            None => {
                let _ = writeln!(s, "first bot audio:  never");
            }
        }
        let _ = writeln!(
            s,
            "marks:            {} sent by bot / {} echoed",
            self.marks_received.len(),
            self.marks_echoed.len()
        );
        let _ = writeln!(s, "clears:           {}", self.clears_received);
        let who = if self.closed_by_bot {
            "closed by the bot"
        } else if self.stop_sent {
            "closed by us after stop"
        } else {
            "closed by us (no stop sent)"
        };
        let code = self.close_code.map_or_else(|| "none".to_string(), |c| c.to_string());
        let reason = if self.close_reason.is_empty() { String::new() } else { format!(" ({})", self.close_reason) };
        let _ = writeln!(s, "close:            code {code}, {who}{reason}");
        let _ = writeln!(s, "duration:         {:.2} s", self.duration.as_secs_f64());
        for v in self.violations.iter().take(LISTED_VIOLATIONS) {
            let _ = writeln!(s, "  {v}");
        }
        if self.violations.len() > LISTED_VIOLATIONS {
            let _ = writeln!(s, "  … and {} more", self.violations.len() - LISTED_VIOLATIONS);
        }
        let _ = write!(s, "violations: {}", self.violations.len());
        s
    }
}

/// The JSON form: everything but the PCM itself, whose sizes stand in for it.
#[derive(Serialize)]
struct ReportJson<'a> {
    ws_url: &'a str,
    sample_rate: u32,
    frames_sent: u64,
    sent_bytes: usize,
    media_received: u64,
    received_bytes: usize,
    played_bytes: usize,
    chunk_sizes: &'a [usize],
    marks_received: &'a [String],
    marks_echoed: &'a [String],
    clears_received: u64,
    #[serde(serialize_with = "ser_opt_ms")]
    first_audio_latency_ms: Option<Duration>,
    violations: &'a [Violation],
    close_code: Option<u16>,
    close_reason: &'a str,
    closed_by_bot: bool,
    stop_sent: bool,
    #[serde(serialize_with = "ser_ms")]
    duration_ms: Duration,
    ok: bool,
}

impl Serialize for CallReport {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        ReportJson {
            ws_url: &self.ws_url,
            sample_rate: self.sample_rate.hz(),
            frames_sent: self.frames_sent,
            sent_bytes: self.sent_pcm.len(),
            media_received: self.media_received,
            received_bytes: self.received_pcm.len(),
            played_bytes: self.played_pcm.len(),
            chunk_sizes: &self.chunk_sizes,
            marks_received: &self.marks_received,
            marks_echoed: &self.marks_echoed,
            clears_received: self.clears_received,
            first_audio_latency_ms: self.first_audio_latency,
            violations: &self.violations,
            close_code: self.close_code,
            close_reason: &self.close_reason,
            closed_by_bot: self.closed_by_bot,
            stop_sent: self.stop_sent,
            duration_ms: self.duration,
            ok: self.ok(),
        }
        .serialize(serializer)
    }
}

/// Durations as fractional milliseconds: readable, and precise enough for latency.
pub(crate) fn ser_ms<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64() * 1000.0)
}

fn ser_opt_ms<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => ser_ms(d, s),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::{Finding, rule};

    fn sample() -> CallReport {
        CallReport {
            ws_url: "ws://127.0.0.1:1/media".into(),
            sample_rate: SampleRate::Hz8000,
            sent_pcm: vec![0; 32000],
            frames_sent: 100,
            received_pcm: vec![0; 6400],
            played_pcm: vec![0; 3200],
            media_received: 2,
            chunk_sizes: vec![3200, 3200],
            media_at: Vec::new(),
            marks_received: vec!["a".into(), "b".into()],
            marks_echoed: vec!["a".into()],
            clears_received: 1,
            clears: Vec::new(),
            first_frame_at: None,
            first_audio_latency: Some(Duration::from_millis(250)),
            violations: vec![],
            close_code: Some(1000),
            close_reason: String::new(),
            closed_by_bot: false,
            stop_sent: true,
            duration: Duration::from_millis(2500),
        }
    }

    #[test]
    fn summary_lines() {
        let r = sample();
        let s = r.summary();
        for want in [
            "target:           ws://127.0.0.1:1/media",
            "rate:             8000 Hz",
            "caller audio:     100 frames, 32000 bytes (2000 ms)",
            "bot media:        2 messages, 6400 bytes (400 ms); played 3200 bytes (200 ms)",
            "chunk size:       min 3200 / max 3200 bytes",
            "first bot audio:  250 ms after the first caller frame",
            "marks:            2 sent by bot / 1 echoed",
            "clears:           1",
            "close:            code 1000, closed by us after stop",
            "duration:         2.50 s",
        ] {
            assert!(s.contains(want), "missing {want:?} in\n{s}");
        }
        assert!(s.ends_with("violations: 0"));
        assert!(r.ok());
    }

    #[test]
    fn summary_caps_the_violation_list() {
        let mut r = sample();
        r.violations = (0..25)
            .map(|i| {
                Violation::new(
                    Duration::from_millis(i),
                    Finding { rule: rule::CHUNK_TOO_SMALL, detail: format!("n{i}") },
                )
            })
            .collect();
        let s = r.summary();
        assert!(s.contains("chunk-too-small: n19"));
        assert!(!s.contains("chunk-too-small: n20"));
        assert!(s.contains("… and 5 more"));
        assert!(s.ends_with("violations: 25"));
        assert!(!r.ok());
    }

    #[test]
    fn json_leaves_out_pcm() {
        let v = serde_json::to_value(sample()).unwrap();
        assert_eq!(v["sample_rate"], 8000);
        assert_eq!(v["sent_bytes"], 32000);
        assert_eq!(v["first_audio_latency_ms"], 250.0);
        assert_eq!(v["ok"], true);
        assert!(v.get("sent_pcm").is_none() && v.get("received_pcm").is_none() && v.get("played_pcm").is_none());
    }
}
