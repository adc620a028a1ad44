//! The bot's output decisions, free of sockets and clocks it does not own: given the caller's
//! audio and the current time, what to send. The session feeds it and sends what comes out;
//! hang-up and death deadlines belong to the session, not here.

use std::time::Duration;

use tokio::time::Instant;

use super::Behavior;
use super::format::Format;

/// One thing to send, before protocol encoding.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Out {
    Media(Vec<u8>),
    Mark(String),
    Clear,
    /// Garbage: text that is not JSON.
    Text(String),
    /// Garbage: a binary frame.
    Binary(Vec<u8>),
    /// Garbage: JSON with an event neither protocol has.
    UnknownEvent(usize),
}

pub(super) struct Responder {
    behavior: Behavior,
    format: Format,
    /// Caller audio not yet echoed (chunked and paced echo).
    pending: Vec<u8>,
    /// Bytes echoed so far, for mark positions.
    echoed: usize,
    marks_sent: usize,
    pace: Option<Pace>,
}

/// Paced echo's clock: one chunk per `period`, each due at its slot.
struct Pace {
    chunk: usize,
    period: Duration,
    /// A partial chunk goes out after the caller has been quiet this long.
    quiet: Duration,
    next_slot: Instant,
    last_audio: Instant,
}

impl Responder {
    pub(super) fn new(behavior: Behavior, format: Format, now: Instant) -> Self {
        let pace = match behavior {
            Behavior::EchoPaced { chunk_ms, speed } => {
                let chunk_ms = chunk_ms.max(1);
                // A nonsense speed from a library caller plays at real time instead of dividing by 0.
                let speed = if speed.is_finite() && speed > 0.0 { f64::from(speed) } else { 1.0 };
                Some(Pace {
                    chunk: chunk_ms as usize * format.bytes_per_ms(),
                    period: Duration::from_secs_f64(f64::from(chunk_ms) / 1000.0 / speed),
                    quiet: Duration::from_millis(u64::from(chunk_ms)),
                    next_slot: now,
                    last_audio: now,
                })
            }
            _ => None,
        };
        Self { behavior, format, pending: Vec::new(), echoed: 0, marks_sent: 0, pace }
    }

    /// What the bot sends as soon as it has the stream id.
    pub(super) fn on_start(&mut self) -> Vec<Out> {
        match self.behavior {
            Behavior::Greeting { ms } => {
                let tone = self.format.tone(ms);
                let mut outs: Vec<Out> =
                    tone.chunks(self.format.greeting_chunk()).map(|c| Out::Media(c.to_vec())).collect();
                outs.push(Out::Mark("greeting-done".into()));
                outs
            }
            Behavior::Garbage { count } => (0..count)
                .map(|i| match i % 3 {
                    0 => Out::Text(format!("fake-bot garbage {i}: this is not JSON {{")),
                    1 => Out::Binary(format!("fake-bot binary {i}").into_bytes()),
                    _ => Out::UnknownEvent(i),
                })
                .collect(),
            _ => Vec::new(),
        }
    }

    pub(super) fn on_audio(&mut self, audio: &[u8], now: Instant) -> Vec<Out> {
        if audio.is_empty() {
            return Vec::new();
        }
        match self.behavior {
            Behavior::EchoChunked { bytes } => {
                let bytes = bytes.max(1);
                self.pending.extend_from_slice(audio);
                let whole = self.pending.len() / bytes * bytes;
                let outs = self.pending[..whole].chunks(bytes).map(|c| Out::Media(c.to_vec())).collect();
                self.pending.drain(..whole);
                outs
            }
            Behavior::EchoPaced { .. } => {
                self.pending.extend_from_slice(audio);
                if let Some(pace) = &mut self.pace {
                    pace.last_audio = now;
                }
                self.on_wake(now)
            }
            Behavior::EchoWithMarks { every_ms } => self.echo_with_marks(audio, every_ms),
            Behavior::Silent => Vec::new(),
            _ => vec![Out::Media(audio.to_vec())],
        }
    }

    /// Splits the echo at every `every_ms` boundary so each mark follows exactly that much audio.
    fn echo_with_marks(&mut self, audio: &[u8], every_ms: u32) -> Vec<Out> {
        let every = every_ms as usize * self.format.bytes_per_ms();
        if every == 0 {
            return vec![Out::Media(audio.to_vec())];
        }
        let mut outs = Vec::new();
        let mut rest = audio;
        while !rest.is_empty() {
            let take = (every - self.echoed % every).min(rest.len());
            outs.push(Out::Media(rest[..take].to_vec()));
            self.echoed += take;
            rest = &rest[take..];
            if self.echoed % every == 0 {
                self.marks_sent += 1;
                outs.push(Out::Mark(format!("bot-{}", self.marks_sent)));
            }
        }
        outs
    }

    /// The bot sent `clear` (or was told to flush): audio it was holding back is dropped, as a
    /// bot cancelling its reply would.
    pub(super) fn on_clear(&mut self) {
        self.pending.clear();
    }

    /// When [`Responder::on_wake`] has something to send, if ever.
    pub(super) fn next_wake(&self) -> Option<Instant> {
        let pace = self.pace.as_ref()?;
        if self.pending.is_empty() {
            None
        } else if self.pending.len() >= pace.chunk {
            Some(pace.next_slot)
        } else {
            Some(pace.next_slot.max(pace.last_audio + pace.quiet))
        }
    }

    pub(super) fn on_wake(&mut self, now: Instant) -> Vec<Out> {
        let mut outs = Vec::new();
        while self.next_wake().is_some_and(|at| at <= now) {
            let Some(pace) = &mut self.pace else { break };
            // Slightly late (a busy box) catches up to keep the average pace; after an idle gap
            // the clock restarts at now rather than bursting out the missed slots.
            let slot = if now.saturating_duration_since(pace.next_slot) > pace.period { now } else { pace.next_slot };
            pace.next_slot = slot + pace.period;
            let n = self.pending.len().min(pace.chunk);
            outs.push(Out::Media(self.pending.drain(..n).collect()));
        }
        outs
    }
}

#[cfg(test)]
mod tests {
    use exotel::SampleRate;

    use super::*;

    const PCM8K: Format = Format::Pcm16(SampleRate::Hz8000);

    fn media_sizes(outs: &[Out]) -> Vec<usize> {
        outs.iter()
            .filter_map(|o| match o {
                Out::Media(m) => Some(m.len()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn echo_is_one_for_one() {
        let now = Instant::now();
        let mut r = Responder::new(Behavior::Echo, PCM8K, now);
        assert!(r.on_start().is_empty());
        assert_eq!(r.on_audio(&[1, 2, 3], now), vec![Out::Media(vec![1, 2, 3])]);
        assert!(r.on_audio(&[], now).is_empty());
        assert_eq!(r.next_wake(), None);
    }

    #[test]
    fn chunked_recuts() {
        let now = Instant::now();
        let mut r = Responder::new(Behavior::EchoChunked { bytes: 320 }, PCM8K, now);
        assert!(r.on_audio(&[7; 200], now).is_empty());
        assert_eq!(media_sizes(&r.on_audio(&[7; 500], now)), vec![320, 320]);
        assert_eq!(media_sizes(&r.on_audio(&[7; 1000], now)), vec![320, 320, 320]);
        r.on_clear();
        assert!(r.on_audio(&[7; 300], now).is_empty(), "the 100 byte tail was dropped by clear");
    }

    #[test]
    fn marks_sit_on_boundaries() {
        let now = Instant::now();
        // 50 ms at 8 kHz μ-law = 400 bytes; 160-byte frames cross boundaries mid-frame.
        let mut r = Responder::new(Behavior::EchoWithMarks { every_ms: 50 }, Format::Mulaw8k, now);
        let mut outs = Vec::new();
        for _ in 0..10 {
            outs.extend(r.on_audio(&[0; 160], now));
        }
        let mut pos = 0;
        let mut marks = Vec::new();
        for o in &outs {
            match o {
                Out::Media(m) => pos += m.len(),
                Out::Mark(name) => marks.push((name.clone(), pos)),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(pos, 1600);
        assert_eq!(
            marks,
            vec![("bot-1".into(), 400), ("bot-2".into(), 800), ("bot-3".into(), 1200), ("bot-4".into(), 1600)]
        );
    }

    #[test]
    fn greeting_then_mark() {
        let now = Instant::now();
        let mut r = Responder::new(Behavior::Greeting { ms: 500 }, Format::Pcm16(SampleRate::Hz16000), now);
        let outs = r.on_start();
        assert_eq!(media_sizes(&outs), vec![3200; 5]);
        assert_eq!(outs.last(), Some(&Out::Mark("greeting-done".into())));
        assert_eq!(r.on_audio(&[1; 320], now), vec![Out::Media(vec![1; 320])]);
    }

    #[test]
    fn garbage_cycles() {
        let mut r = Responder::new(Behavior::Garbage { count: 10 }, PCM8K, Instant::now());
        let outs = r.on_start();
        assert_eq!(outs.len(), 10);
        assert_eq!(outs.iter().filter(|o| matches!(o, Out::Text(_))).count(), 4);
        assert_eq!(outs.iter().filter(|o| matches!(o, Out::Binary(_))).count(), 3);
        assert_eq!(outs.iter().filter(|o| matches!(o, Out::UnknownEvent(_))).count(), 3);
    }

    #[test]
    fn paced_keeps_its_slots() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        // 40 ms μ-law chunks (320 bytes) at 2×: one every 20 ms.
        let mut r = Responder::new(Behavior::EchoPaced { chunk_ms: 40, speed: 2.0 }, Format::Mulaw8k, t0);
        assert_eq!(media_sizes(&r.on_audio(&[0; 1000], t0)), vec![320], "the first chunk goes at once");
        assert_eq!(r.next_wake(), Some(t0 + ms(20)));
        assert!(r.on_wake(t0 + ms(19)).is_empty());
        assert_eq!(media_sizes(&r.on_wake(t0 + ms(20))), vec![320]);
        // 5 ms late: still on the 20 ms grid.
        assert_eq!(media_sizes(&r.on_wake(t0 + ms(45))), vec![320]);
        assert_eq!(r.next_wake(), Some(t0 + ms(60)), "the 40-byte tail waits for the caller's quiet");
        assert_eq!(r.next_wake().map(|_| r.pending.len()), Some(40));
        assert!(r.on_wake(t0 + ms(39)).is_empty());
        assert_eq!(media_sizes(&r.on_wake(t0 + ms(60))), vec![40]);
        assert_eq!(r.next_wake(), None);
        // After an idle gap the clock restarts: no burst of missed slots.
        assert_eq!(media_sizes(&r.on_audio(&[0; 960], t0 + ms(1000))), vec![320]);
        assert_eq!(r.next_wake(), Some(t0 + ms(1020)));
    }

    #[test]
    fn paced_survives_nonsense_speed() {
        let t0 = Instant::now();
        let mut r = Responder::new(Behavior::EchoPaced { chunk_ms: 0, speed: f32::NAN }, PCM8K, t0);
        assert_eq!(media_sizes(&r.on_audio(&[0; 64], t0)), vec![16]);
        assert_eq!(r.next_wake(), Some(t0 + Duration::from_millis(1)));
    }
}
