//! How much of each of the model's spoken items the caller has actually heard: marks placed in
//! the call's audio (one where an item starts, then every [`MARK_EVERY`]) come back from Exotel as
//! it plays them; between two echoes the position advances with the clock, capped at the next
//! mark. This, not what was sent, is what barge-in reports to the model.

use std::collections::VecDeque;
use std::time::Duration;

use exotel::SampleRate;
use tokio::time::Instant;

use crate::agent::{CallControl, QueueFull};

/// Audio between two marks: the played position is exact at each echo.
pub(crate) const MARK_EVERY: Duration = Duration::from_millis(200);
/// Marks a call may have outstanding; past it the oldest are forgotten (a peer that never echoes).
const MAX_MARKS: usize = 4096;

struct Item {
    id: String,
    /// Call-rate bytes queued for the caller.
    queued: u64,
    /// Milliseconds of the provider's own audio received (what truncation may not exceed).
    received_ms: f64,
}

struct Mark {
    name: String,
    item: String,
    at: u64,
}

/// The caller's position in one item: played up to `bytes` of it when the echo came `at`.
struct Anchor {
    item: String,
    bytes: u64,
    at: Instant,
}

/// What the caller heard of the item playing at barge-in.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Heard {
    pub item: String,
    pub ms: u64,
    /// The item had more audio than that.
    pub cut: bool,
}

pub(crate) struct Playout {
    bytes_per_ms: u64,
    every: u64,
    items: VecDeque<Item>,
    marks: VecDeque<Mark>,
    anchor: Option<Anchor>,
    since_mark: u64,
}

impl Playout {
    pub(crate) fn new(rate: SampleRate) -> Self {
        let bytes_per_ms = rate.bytes_per_ms() as u64;
        Self {
            bytes_per_ms,
            every: bytes_per_ms * MARK_EVERY.as_millis() as u64,
            items: VecDeque::new(),
            marks: VecDeque::new(),
            anchor: None,
            since_mark: 0,
        }
    }

    fn mark(&mut self, ctl: &CallControl, item: &str, at: u64) {
        if self.marks.len() >= MAX_MARKS {
            self.marks.pop_front();
        }
        // A mark follows the chunk being filled: it lands where that chunk ends.
        let at = at + ctl.bytes_to_chunk_end() as u64;
        let name = ctl.tracking_mark();
        self.marks.push_back(Mark { name, item: item.to_string(), at });
    }

    /// Plays `pcm` (call rate) of `item`, marking the item's start and every [`MARK_EVERY`].
    pub(crate) fn play(
        &mut self,
        ctl: &CallControl,
        item: &str,
        pcm: &[u8],
        provider_ms: f64,
    ) -> Result<(), QueueFull> {
        if self.items.back().is_none_or(|i| i.id != item) {
            self.mark(ctl, item, 0);
            self.since_mark = 0;
            // Items before the one playing are done with once an echo passes them.
            if self.items.len() >= 64 {
                self.items.pop_front();
            }
            self.items.push_back(Item { id: item.to_string(), queued: 0, received_ms: 0.0 });
        }
        let played = ctl.play(pcm);
        let Some(cur) = self.items.back_mut() else { return played };
        cur.received_ms += provider_ms;
        if played.is_ok() {
            cur.queued += pcm.len() as u64;
            self.since_mark += pcm.len() as u64;
        }
        let at = cur.queued;
        if self.since_mark >= self.every {
            self.since_mark = 0;
            self.mark(ctl, item, at);
        }
        played
    }

    /// Exotel played up to our mark `name`.
    pub(crate) fn played(&mut self, name: &str, now: Instant) {
        let Some(i) = self.marks.iter().position(|m| m.name == name) else { return };
        let mut passed = self.marks.drain(..=i);
        if let Some(m) = passed.next_back() {
            self.anchor = Some(Anchor { item: m.item, bytes: m.at, at: now });
        }
    }

    /// The item playing now and how much of it the caller has heard; `None` when no audio is
    /// queued. Until an item's own mark has come back its position is 0: the echo is the only
    /// proof the caller heard any of it, and a truncate at 0 still tells the model the rest
    /// (or all) of that item was never heard, which saying nothing would not.
    ///
    /// `unplayed`: the audio queued and not yet played ([`CallControl::queued`]), which tells
    /// which item is playing when no echo has come since the last clear (a peer that does not
    /// echo marks would otherwise leave the first item of the call "playing" for ever).
    pub(crate) fn heard(&self, now: Instant, unplayed: Duration) -> Option<Heard> {
        let anchored = self.anchor.as_ref().and_then(|a| Some((a, self.items.iter().position(|i| i.id == a.item)?)));
        let Some((a, at)) = anchored else {
            let total: u64 = self.items.iter().map(|i| i.queued).sum();
            let mut played = total.saturating_sub(unplayed.as_millis() as u64 * self.bytes_per_ms);
            let playing = self.items.iter().find(|i| {
                let here = played < i.queued;
                played = played.saturating_sub(i.queued);
                here
            });
            return playing.or(self.items.back()).map(|i| Self::of(i, 0));
        };
        let item = &self.items[at];
        // Up to the next mark in the same item, or the item's end: past either, an echo would tell.
        let cap = self.marks.iter().find(|m| m.item == a.item).map_or(item.queued, |m| m.at);
        let elapsed = now.saturating_duration_since(a.at).as_millis() as u64 * self.bytes_per_ms;
        let bytes = (a.bytes + elapsed).min(cap).min(item.queued);
        // The anchored item has played out and a later one is queued: that one is playing, its
        // start not yet confirmed.
        if bytes >= item.queued {
            if let Some(next) = self.items.get(at + 1) {
                return Some(Self::of(next, 0));
            }
        }
        Some(Self::of(item, bytes / self.bytes_per_ms))
    }

    fn of(item: &Item, ms: u64) -> Heard {
        let ms = ms.min(item.received_ms as u64);
        Heard { item: item.id.clone(), ms, cut: (ms as f64) + 1.0 < item.received_ms }
    }

    /// Barge-in or Exotel's clear: what was queued will never play.
    pub(crate) fn clear(&mut self) {
        self.items.clear();
        self.marks.clear();
        self.anchor = None;
        self.since_mark = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::test_control;

    #[tokio::test(start_paused = true)]
    async fn the_heard_position_follows_echoed_marks_and_the_clock() {
        let ctl = test_control(SampleRate::Hz8000);
        let mut p = Playout::new(SampleRate::Hz8000);
        // 1 s of item "a" in 100 ms deltas: a start mark, then one every 200 ms.
        for _ in 0..10 {
            p.play(&ctl, "a", &[0u8; 1600], 100.0).unwrap();
        }
        assert_eq!(p.marks.len(), 6);
        // Before any echo: the first item, heard for 0 ms (so a barge-in still truncates it).
        let h = p.heard(Instant::now(), Duration::from_secs(1)).unwrap();
        assert_eq!((h.item.as_str(), h.ms, h.cut), ("a", 0, true));
        let start = p.marks[0].name.clone();
        let t0 = Instant::now();
        p.played(&start, t0);
        // 350 ms later, with no further echo: the clock says 350, capped at the next mark (200).
        assert_eq!(p.heard(t0 + Duration::from_millis(350), Duration::ZERO).map(|h| h.ms), Some(200));
        let second = p.marks[0].name.clone();
        p.played(&second, t0 + Duration::from_millis(200));
        let h = p.heard(t0 + Duration::from_millis(350), Duration::ZERO).unwrap();
        assert_eq!((h.item.as_str(), h.ms, h.cut), ("a", 350, true));
        // A new item restarts the position.
        p.play(&ctl, "b", &[0u8; 1600], 100.0).unwrap();
        let b_start = p.marks.iter().find(|m| m.item == "b").unwrap().name.clone();
        p.played(&b_start, t0 + Duration::from_secs(1));
        let h = p.heard(t0 + Duration::from_millis(1050), Duration::ZERO).unwrap();
        assert_eq!((h.item.as_str(), h.ms), ("b", 50));
        p.clear();
        assert_eq!(p.heard(t0 + Duration::from_secs(2), Duration::ZERO), None);
    }

    #[tokio::test(start_paused = true)]
    async fn an_item_with_no_echo_yet_is_the_one_playing_at_0_ms() {
        let ctl = test_control(SampleRate::Hz8000);
        let mut p = Playout::new(SampleRate::Hz8000);
        let t0 = Instant::now();
        // After a clear, a new answer with no echo yet: it is what a barge-in truncates.
        p.play(&ctl, "a", &[0u8; 1600], 100.0).unwrap();
        ctl.clear();
        p.clear();
        p.play(&ctl, "b", &[0u8; 3200], 200.0).unwrap();
        let h = p.heard(t0 + Duration::from_secs(1), Duration::from_millis(200)).unwrap();
        assert_eq!((h.item.as_str(), h.ms, h.cut), ("b", 0, true));
        // "c" queued behind "b"; "b"'s start echoed. While "b" plays, it is the one...
        p.play(&ctl, "c", &[0u8; 1600], 100.0).unwrap();
        let b_start = p.marks.iter().find(|m| m.item == "b").unwrap().name.clone();
        p.played(&b_start, t0);
        let h = p.heard(t0 + Duration::from_millis(100), Duration::ZERO).unwrap();
        assert_eq!((h.item.as_str(), h.ms, h.cut), ("b", 100, true));
        // ...and once the clock has taken it to its end, "c" is playing, its start not yet
        // echoed: "c" at 0 is truncated, not "b" (heard in full: nothing to cut there).
        let h = p.heard(t0 + Duration::from_millis(500), Duration::ZERO).unwrap();
        assert_eq!((h.item.as_str(), h.ms, h.cut), ("c", 0, true));
    }

    #[tokio::test(start_paused = true)]
    async fn with_no_echo_at_all_the_queue_tells_which_item_is_playing() {
        let ctl = test_control(SampleRate::Hz8000);
        let mut p = Playout::new(SampleRate::Hz8000);
        // Two answers of 1 s each, and a peer that never echoes a mark.
        p.play(&ctl, "a", &[0u8; 16_000], 1000.0).unwrap();
        p.play(&ctl, "b", &[0u8; 16_000], 1000.0).unwrap();
        let now = Instant::now();
        let playing = |unplayed_ms| p.heard(now, Duration::from_millis(unplayed_ms)).map(|h| h.item);
        assert_eq!(playing(1500).as_deref(), Some("a"), "half of a played");
        assert_eq!(playing(500).as_deref(), Some("b"), "a played in full: b is playing, not a");
        assert_eq!(playing(0).as_deref(), Some("b"));
    }
}
