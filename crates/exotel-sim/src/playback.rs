//! The simulated Exotel playback clock: bot audio queues up and plays in real time, a bot `mark`
//! is reached when everything queued before it has played, and `clear` drops what has not
//! started yet. Pure: every method takes the current instant, so tests drive time by hand.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use exotel::SampleRate;

#[derive(Debug)]
enum Queued {
    Audio { start: Instant, end: Instant, pcm: Vec<u8> },
    Mark { name: String, at: Instant },
}

/// What one `clear` removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Cleared {
    pub dropped_chunks: usize,
    pub dropped_bytes: usize,
    /// Marks that sat behind dropped audio; they are never echoed (docs/protocol.md §4.5 leaves
    /// Exotel's behaviour open, and dropping is the choice that catches bots waiting forever).
    pub dropped_marks: Vec<String>,
}

#[derive(Debug)]
pub struct Playback {
    rate: SampleRate,
    queue: VecDeque<Queued>,
    /// Audio that has finished playing, in order.
    played: Vec<u8>,
}

impl Playback {
    pub fn new(rate: SampleRate) -> Self {
        Self { rate, queue: VecDeque::new(), played: Vec::new() }
    }

    /// When the last queued audio stops playing (`None` when nothing is queued).
    pub fn drained_at(&self) -> Option<Instant> {
        self.queue.iter().rev().find_map(|q| match q {
            Queued::Audio { end, .. } => Some(*end),
            Queued::Mark { .. } => None,
        })
    }

    /// Queues a chunk: it starts when the previous one ends, or now if the queue has run dry.
    /// Returns its start and end.
    pub fn push_audio(&mut self, now: Instant, pcm: Vec<u8>) -> (Instant, Instant) {
        let start = self.drained_at().map_or(now, |end| end.max(now));
        let end = start + Duration::from_micros(self.rate.duration_us(pcm.len()));
        self.queue.push_back(Queued::Audio { start, end, pcm });
        (start, end)
    }

    /// Queues a mark; it is reached when all audio queued so far has played (now, if none).
    pub fn push_mark(&mut self, now: Instant, name: String) -> Instant {
        let at = self.drained_at().map_or(now, |end| end.max(now));
        self.queue.push_back(Queued::Mark { name, at });
        at
    }

    /// Moves the clock to `now`: finished audio leaves the queue, and the names of the marks
    /// reached come back in order (the caller echoes them).
    pub fn advance(&mut self, now: Instant) -> Vec<String> {
        let mut reached = Vec::new();
        while let Some(front) = self.queue.front() {
            let due = match front {
                Queued::Audio { end, .. } => *end <= now,
                Queued::Mark { at, .. } => *at <= now,
            };
            if !due {
                break;
            }
            match self.queue.pop_front() {
                Some(Queued::Audio { pcm, .. }) => self.played.extend_from_slice(&pcm),
                Some(Queued::Mark { name, .. }) => reached.push(name),
                None => break,
            }
        }
        reached
    }

    /// Exotel's `clear`: every chunk that has not started by `now` is dropped, with the marks
    /// behind it. The chunk playing now plays out, and a mark right after it is still reached.
    /// Call [`Playback::advance`] first so marks already due are echoed, not judged here.
    pub fn clear(&mut self, now: Instant) -> Cleared {
        let mut cleared = Cleared::default();
        let mut dropping = false;
        self.queue.retain(|q| {
            match q {
                Queued::Audio { start, pcm, .. } if *start > now => {
                    dropping = true;
                    cleared.dropped_chunks += 1;
                    cleared.dropped_bytes += pcm.len();
                }
                Queued::Mark { name, .. } if dropping => cleared.dropped_marks.push(name.clone()),
                _ => return true,
            }
            false
        });
        cleared
    }

    /// Bot audio the caller has heard by `now`: what finished playing, and the part of the
    /// playing chunk up to `now`.
    pub fn heard_bytes(&self, now: Instant) -> usize {
        let playing = self.queue.iter().find_map(|q| match q {
            Queued::Audio { start, end, pcm } if *start <= now => {
                let part = now.saturating_duration_since(*start).as_secs_f64() / (*end - *start).as_secs_f64();
                Some(((pcm.len() as f64 * part.min(1.0)) as usize) & !1)
            }
            _ => None,
        });
        self.played.len() + playing.unwrap_or(0)
    }

    /// The next instant a mark will be reached, so an idle caller still echoes on time.
    pub fn next_mark_at(&self) -> Option<Instant> {
        self.queue.iter().find_map(|q| match q {
            Queued::Mark { at, .. } => Some(*at),
            Queued::Audio { .. } => None,
        })
    }

    pub fn pending_marks(&self) -> usize {
        self.queue.iter().filter(|q| matches!(q, Queued::Mark { .. })).count()
    }

    /// Nothing playing and no mark waiting (as of the last [`Playback::advance`]).
    pub fn is_idle(&self) -> bool {
        self.queue.is_empty()
    }

    /// Everything that was not dropped by `clear`, in order, including audio still queued when
    /// the call ended (the report's `played_pcm`).
    pub fn into_played(self) -> Vec<u8> {
        let mut played = self.played;
        for q in self.queue {
            if let Queued::Audio { pcm, .. } = q {
                played.extend_from_slice(&pcm);
            }
        }
        played
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// `ms` of 8 kHz audio, every byte `fill`.
    fn audio(ms: usize, fill: u8) -> Vec<u8> {
        vec![fill; ms * 16]
    }

    #[test]
    fn chunks_play_back_to_back_and_a_mark_is_reached_after_them() {
        let t0 = Instant::now();
        let mut p = Playback::new(SampleRate::Hz8000);
        assert_eq!(p.push_audio(t0, audio(200, 1)), (t0, t0 + 200 * MS));
        // Arrives while the first plays: queued behind it.
        assert_eq!(p.push_audio(t0 + 50 * MS, audio(200, 2)), (t0 + 200 * MS, t0 + 400 * MS));
        assert_eq!(p.push_mark(t0 + 60 * MS, "m1".into()), t0 + 400 * MS);
        assert_eq!(p.next_mark_at(), Some(t0 + 400 * MS));
        assert_eq!(p.pending_marks(), 1);
        assert!(p.advance(t0 + 399 * MS).is_empty());
        assert_eq!(p.advance(t0 + 400 * MS), vec!["m1".to_string()]);
        assert!(p.is_idle());
        assert_eq!(p.next_mark_at(), None);
        // After a gap, playback restarts at arrival, not at the old end.
        assert_eq!(p.push_audio(t0 + 1000 * MS, audio(100, 3)), (t0 + 1000 * MS, t0 + 1100 * MS));
        assert_eq!(p.drained_at(), Some(t0 + 1100 * MS));
        let played = p.into_played();
        assert_eq!(played.len(), (200 + 200 + 100) * 16);
        assert!(played.starts_with(&audio(200, 1)));
    }

    #[test]
    fn mark_with_nothing_queued_is_reached_at_once() {
        let t0 = Instant::now();
        let mut p = Playback::new(SampleRate::Hz16000);
        assert_eq!(p.push_mark(t0, "now".into()), t0);
        assert_eq!(p.advance(t0), vec!["now".to_string()]);
        // 16 kHz: 3200 bytes is 100 ms.
        assert_eq!(p.push_audio(t0, vec![0; 3200]).1, t0 + 100 * MS);
    }

    #[test]
    fn several_marks_come_out_in_order() {
        let t0 = Instant::now();
        let mut p = Playback::new(SampleRate::Hz8000);
        p.push_audio(t0, audio(200, 1));
        p.push_mark(t0, "a".into());
        p.push_audio(t0, audio(200, 2));
        p.push_mark(t0, "b".into());
        p.push_mark(t0, "c".into());
        assert_eq!(p.advance(t0 + 250 * MS), vec!["a".to_string()]);
        assert_eq!(p.next_mark_at(), Some(t0 + 400 * MS));
        assert_eq!(p.advance(t0 + 2000 * MS), vec!["b".to_string(), "c".to_string()]);
    }

    #[test]
    fn clear_drops_unstarted_chunks_and_their_marks_but_finishes_the_current_one() {
        let t0 = Instant::now();
        let mut p = Playback::new(SampleRate::Hz8000);
        p.push_audio(t0, audio(200, 1)); // plays 0..200
        p.push_mark(t0, "after-first".into()); // reached at 200
        p.push_audio(t0, audio(200, 2)); // 200..400
        p.push_mark(t0, "after-second".into());
        p.push_audio(t0, audio(200, 3)); // 400..600
        p.push_mark(t0, "after-third".into());

        let now = t0 + 100 * MS;
        assert!(p.advance(now).is_empty());
        let cleared = p.clear(now);
        assert_eq!(
            cleared,
            Cleared {
                dropped_chunks: 2,
                dropped_bytes: 2 * 200 * 16,
                dropped_marks: vec!["after-second".into(), "after-third".into()],
            }
        );
        assert_eq!(p.pending_marks(), 1);
        assert_eq!(p.drained_at(), Some(t0 + 200 * MS));
        assert_eq!(p.advance(t0 + 200 * MS), vec!["after-first".to_string()]);
        assert!(p.is_idle());
        // New audio after the clear plays as soon as it comes.
        assert_eq!(p.push_audio(t0 + 300 * MS, audio(200, 4)).0, t0 + 300 * MS);
        let played = p.into_played();
        assert_eq!(played, [audio(200, 1), audio(200, 4)].concat());
    }

    #[test]
    fn clear_between_chunks_and_on_an_empty_queue() {
        let t0 = Instant::now();
        let mut p = Playback::new(SampleRate::Hz8000);
        assert_eq!(p.clear(t0), Cleared::default());
        // Two chunks queued in the future of a clear that lands exactly as the first starts:
        // a chunk whose start is `now` has started, so it stays.
        p.push_audio(t0, audio(200, 1));
        p.push_audio(t0, audio(200, 2));
        p.push_mark(t0, "end".into());
        let cleared = p.clear(t0);
        assert_eq!((cleared.dropped_chunks, cleared.dropped_marks), (1, vec!["end".to_string()]));
        assert_eq!(p.pending_marks(), 0);
        assert_eq!(p.into_played(), audio(200, 1));
    }
}
