//! The bot's marks, each anchored to a mark of ours in the call's audio. Echoed to the bot exactly
//! once and in order: when Exotel has played up to the anchor, at once on `clear` (what Twilio
//! does, and what keeps an Exotel bot from waiting for a mark that can no longer come), or after
//! a fallback time (Exotel's echo timing is not documented).

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

/// How long past its audio's expected end a mark waits for Exotel's echo.
pub(crate) const FALLBACK: Duration = Duration::from_secs(2);
/// Marks a bot may have pending; beyond it the oldest are echoed early (and counted).
pub(crate) const MAX_PENDING: usize = 4096;

struct Pending {
    bot: String,
    ours: String,
    due: Instant,
}

#[derive(Default)]
pub(crate) struct BotMarks {
    pending: VecDeque<Pending>,
    pub(crate) forced: u64,
}

impl BotMarks {
    pub(crate) fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Anchors `bot` at our mark `ours`; returns marks echoed early because too many are pending.
    pub(crate) fn push(&mut self, bot: String, ours: String, due: Instant) -> Vec<String> {
        let mut early = Vec::new();
        while self.pending.len() >= MAX_PENDING {
            if let Some(p) = self.pending.pop_front() {
                self.forced += 1;
                early.push(p.bot);
            }
        }
        self.pending.push_back(Pending { bot, ours, due });
        early
    }

    /// Exotel played up to our mark `ours`: the bot's marks up to it, in order.
    pub(crate) fn played(&mut self, ours: &str) -> Vec<String> {
        match self.pending.iter().position(|p| p.ours == ours) {
            Some(i) => self.pending.drain(..=i).map(|p| p.bot).collect(),
            None => Vec::new(),
        }
    }

    /// Everything pending, in order (on `clear`, and at the end).
    pub(crate) fn all(&mut self) -> Vec<String> {
        self.pending.drain(..).map(|p| p.bot).collect()
    }

    pub(crate) fn next_due(&self) -> Option<Instant> {
        self.pending.front().map(|p| p.due)
    }

    /// Marks whose echo is overdue, with every mark before them.
    pub(crate) fn overdue(&mut self, now: Instant) -> Vec<String> {
        match self.pending.iter().rposition(|p| p.due <= now) {
            Some(i) => {
                self.forced += i as u64 + 1;
                self.pending.drain(..=i).map(|p| p.bot).collect()
            }
            None => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echoes_in_order_exactly_once() {
        let t = Instant::now();
        let mut m = BotMarks::default();
        m.push("a".into(), "m-1".into(), t + FALLBACK);
        m.push("b".into(), "m-2".into(), t + FALLBACK);
        m.push("c".into(), "m-3".into(), t + FALLBACK);
        assert_eq!(m.played("m-2"), ["a", "b"]);
        assert!(m.played("m-2").is_empty());
        assert_eq!(m.all(), ["c"]);
        assert!(m.is_empty());
    }

    #[test]
    fn overdue_marks_go_with_those_before_them() {
        let t = Instant::now();
        let mut m = BotMarks::default();
        m.push("a".into(), "m-1".into(), t + Duration::from_secs(5));
        m.push("b".into(), "m-2".into(), t + Duration::from_secs(1));
        m.push("c".into(), "m-3".into(), t + Duration::from_secs(9));
        assert!(m.overdue(t).is_empty());
        assert_eq!(m.overdue(t + Duration::from_secs(2)), ["a", "b"]);
        assert_eq!(m.forced, 2);
        assert_eq!(m.next_due(), Some(t + Duration::from_secs(9)));
    }
}
