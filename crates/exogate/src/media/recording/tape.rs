//! A call's audio not yet written, as each side handed it over (the caller's batches, the bot's
//! chunks), each piece with the frame it starts at. The writer thread renders a final stretch of
//! both into stereo frames in one buffer that stays in its cache, and writes that: each byte of
//! audio is read once, after the call handed it over, and never copied in between.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Audio placed further ahead than this is not Exotel's playback (nothing is queued that far).
const MAX_AHEAD_SECS: u64 = 120;

/// The bytes every call's held audio may use together. A disk slower than the calls holds audio
/// up; past this, new audio is dropped (counted) and the file keeps its timing, with a gap.
#[derive(Debug)]
pub(super) struct Budget {
    pub(super) held: AtomicUsize,
    limit: usize,
}

impl Budget {
    pub(super) fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self { held: AtomicUsize::new(0), limit })
    }

    fn take(&self, bytes: usize) -> bool {
        let before = self.held.fetch_add(bytes, Ordering::Relaxed);
        if before + bytes > self.limit {
            self.held.fetch_sub(bytes, Ordering::Relaxed);
            return false;
        }
        true
    }

    fn give(&self, bytes: usize) {
        self.held.fetch_sub(bytes, Ordering::Relaxed);
    }
}

/// PCM16LE that starts at frame `at`; `held` is what the budget counts for it (its allocation).
struct Segment {
    at: u64,
    pcm: Vec<u8>,
    held: usize,
}

impl Segment {
    fn end(&self) -> u64 {
        self.at + (self.pcm.len() / 2) as u64
    }
}

/// Which half of a stereo frame a side's samples go in (byte offset in the 4-byte frame).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Side {
    Caller = 0,
    Bot = 2,
}

/// One call's held audio; frames before `base` are written.
pub(super) struct Tape {
    budget: Arc<Budget>,
    rate: u64,
    base: u64,
    caller: VecDeque<Segment>,
    bot: VecDeque<Segment>,
    /// Where each side's audio ends (frames).
    caller_end: u64,
    bot_end: u64,
    /// Up to here nothing more can arrive.
    pub(super) final_until: u64,
    /// The call ended here.
    pub(super) end: Option<u64>,
    /// The call's agent does not want it recorded after all.
    pub(super) discarded: bool,
    /// The writer is done with this recording (it ended, or could not be written): audio handed
    /// over now is let go at once.
    pub(super) dead: bool,
}

impl Tape {
    pub(super) fn new(rate: u32, budget: Arc<Budget>) -> Self {
        Self {
            budget,
            rate: u64::from(rate),
            base: 0,
            caller: VecDeque::new(),
            bot: VecDeque::new(),
            caller_end: 0,
            bot_end: 0,
            final_until: 0,
            end: None,
            discarded: false,
            dead: false,
        }
    }

    pub(super) fn base(&self) -> u64 {
        self.base
    }

    /// Holds PCM16LE `pcm` for `side` from frame `at`; where two pieces of one side overlap, the
    /// later wins. False if the budget could not hold it (the audio is dropped).
    pub(super) fn place(&mut self, side: Side, at: u64, pcm: Vec<u8>) -> bool {
        let samples = (pcm.len() / 2) as u64;
        if self.dead || samples == 0 || at + samples <= self.base || at > self.base + MAX_AHEAD_SECS * self.rate {
            return true;
        }
        let held = pcm.capacity();
        if !self.budget.take(held) {
            return false;
        }
        let segment = Segment { at, pcm, held };
        let (list, end) = match side {
            Side::Caller => (&mut self.caller, &mut self.caller_end),
            Side::Bot => (&mut self.bot, &mut self.bot_end),
        };
        *end = (*end).max(segment.end());
        list.push_back(segment);
        true
    }

    pub(super) fn caller(&mut self, at: u64, pcm: Vec<u8>, hold: u64) -> bool {
        let end = at + pcm.len() as u64 / 2;
        let placed = self.place(Side::Caller, at, pcm);
        // The caller's stream is the call's clock: what lies a hold behind it is final.
        self.final_until = self.final_until.max(end.saturating_sub(hold));
        placed
    }

    pub(super) fn bot(&mut self, at: u64, now: u64, pcm: Vec<u8>, hold: u64) -> bool {
        let placed = self.place(Side::Bot, at, pcm);
        self.final_until = self.final_until.max(now.saturating_sub(hold));
        placed
    }

    /// Silences the bot's side from frame `from` on (Exotel dropped what it had not played).
    pub(super) fn cut_bot(&mut self, from: u64) {
        let budget = &self.budget;
        self.bot.retain_mut(|s| {
            if s.end() <= from {
                return true;
            }
            if s.at >= from {
                budget.give(s.held);
                return false;
            }
            s.pcm.truncate(((from - s.at) * 2) as usize);
            true
        });
        self.bot_end = self.bot_end.min(from);
    }

    /// Final frames not written yet, once at least `batch` of them have gathered.
    pub(super) fn final_frames(&self, batch: u64) -> Option<u64> {
        let n = self.final_until.saturating_sub(self.base);
        (n >= batch).then_some(n)
    }

    /// How far the call's recording goes once it ended at `at`: as long as the call, silence
    /// included, and at least as long as the caller's audio; bot audio queued past it never
    /// played, so it is cut.
    pub(super) fn close_at(&mut self, at: u64) -> u64 {
        let end = at.max(self.caller_end).max(self.base);
        self.cut_bot(end);
        end
    }

    /// Where the audio handed over so far ends.
    pub(super) fn audio_end(&self) -> u64 {
        self.caller_end.max(self.bot_end)
    }

    /// Renders frames `base..base + n` as the file holds them (16-bit little-endian, caller then
    /// bot) into `out`, lets go of the audio that is now all written, and moves `base` on.
    pub(super) fn render(&mut self, n: u64, out: &mut Vec<u8>) {
        let until = self.base + n;
        out.clear();
        out.resize(n as usize * 4, 0);
        for (list, side) in [(&mut self.caller, Side::Caller), (&mut self.bot, Side::Bot)] {
            for s in list.iter() {
                let from = s.at.max(self.base);
                let to = s.end().min(until);
                if from < to {
                    let src = &s.pcm[((from - s.at) * 2) as usize..((to - s.at) * 2) as usize];
                    let dst = &mut out[((from - self.base) * 4) as usize..((to - self.base) * 4) as usize];
                    put(side, dst, src);
                }
            }
            let budget = &self.budget;
            list.retain(|s| {
                let keep = s.end() > until;
                if !keep {
                    budget.give(s.held);
                }
                keep
            });
        }
        self.base = until;
    }

    /// Lets go of everything held.
    pub(super) fn drop_all(&mut self) {
        for s in self.caller.drain(..).chain(self.bot.drain(..)) {
            self.budget.give(s.held);
        }
    }
}

impl Drop for Tape {
    fn drop(&mut self) {
        self.drop_all();
    }
}

/// Copies samples into one side of each 4-byte frame: a frame read and written whole, with the
/// side known at compile time, so the compiler vectorizes both.
fn put(side: Side, frames: &mut [u8], pcm: &[u8]) {
    match side {
        Side::Caller => put_at::<0>(frames, pcm),
        Side::Bot => put_at::<16>(frames, pcm),
    }
}

fn put_at<const SHIFT: u32>(frames: &mut [u8], pcm: &[u8]) {
    let keep = !(0xFFFF_u32 << SHIFT);
    for (frame, sample) in frames.chunks_exact_mut(4).zip(pcm.chunks_exact(2)) {
        let f = u32::from_le_bytes([frame[0], frame[1], frame[2], frame[3]]);
        let s = u32::from(u16::from_le_bytes([sample[0], sample[1]]));
        frame.copy_from_slice(&((f & keep) | (s << SHIFT)).to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pcm(samples: &[i16]) -> Vec<u8> {
        samples.iter().flat_map(|s| s.to_le_bytes()).collect()
    }

    fn tape() -> Tape {
        Tape::new(8000, Budget::new(1 << 20))
    }

    fn side(frames: &[u8], side: Side) -> Vec<i16> {
        let at = side as usize;
        frames.chunks_exact(4).map(|f| i16::from_le_bytes([f[at], f[at + 1]])).collect()
    }

    fn render(t: &mut Tape, n: u64) -> Vec<u8> {
        let mut out = Vec::new();
        t.render(n, &mut out);
        out
    }

    #[test]
    fn audio_lands_on_its_frames_and_what_is_written_is_left_alone() {
        let mut t = tape();
        t.place(Side::Bot, 2, pcm(&[1, -2, 3]));
        let out = render(&mut t, 5);
        assert_eq!(side(&out, Side::Bot), [0, 0, 1, -2, 3]);
        assert_eq!(side(&out, Side::Caller), [0; 5]);
        // Frames 3..7 arrive at base 5: 3 and 4 are already written.
        t.place(Side::Caller, 3, pcm(&[5, 6, 7, 8]));
        assert_eq!(side(&render(&mut t, 2), Side::Caller), [7, 8]);
        assert!(t.place(Side::Caller, 10_000_000, pcm(&[1])), "too far ahead to be playback: ignored");
        assert!(t.caller.is_empty());
    }

    #[test]
    fn a_piece_spanning_renders_is_split_between_them_and_the_later_of_two_wins() {
        let mut t = tape();
        let long: Vec<i16> = (0..1000).collect();
        t.place(Side::Caller, 100, pcm(&long));
        t.place(Side::Caller, 150, pcm(&[-1; 10]));
        let first = side(&render(&mut t, 600), Side::Caller);
        assert!(first[..100].iter().all(|&s| s == 0));
        assert_eq!(&first[100..150], &long[..50]);
        assert_eq!(&first[150..160], &[-1; 10]);
        assert_eq!(&first[160..], &long[60..500]);
        assert_eq!(t.caller.len(), 1, "the finished piece is let go");
        assert_eq!(side(&render(&mut t, 600), Side::Caller)[..500], long[500..]);
        assert!(t.caller.is_empty());
    }

    #[test]
    fn a_clear_silences_the_bot_from_then_on_and_the_end_cuts_what_never_played() {
        let mut t = tape();
        t.caller(0, pcm(&[100; 4000]), 0);
        t.bot(1000, 1000, pcm(&[-200; 8000]), 0);
        t.cut_bot(3000);
        t.bot(5000, 5000, pcm(&[300; 2000]), 0);
        let end = t.close_at(6000);
        assert_eq!(end, 6000);
        let out = render(&mut t, end);
        let right = side(&out, Side::Bot);
        assert_eq!(
            (right[999], right[1000], right[2999], right[3000], right[4999], right[5000], right[5999]),
            (0, -200, -200, 0, 0, 300, 300)
        );
        assert!(side(&out, Side::Caller)[..4000].iter().all(|&s| s == 100));
        assert!(t.bot.is_empty() && t.caller.is_empty());
    }

    #[test]
    fn the_budget_bounds_held_audio_and_says_what_it_dropped() {
        let budget = Budget::new(4000);
        let mut a = Tape::new(8000, budget.clone());
        let mut roomy = Vec::with_capacity(3000);
        roomy.extend(pcm(&[1; 1000]));
        assert!(a.place(Side::Caller, 0, roomy), "counted by its allocation: 3000 bytes");
        let mut b = Tape::new(8000, budget.clone());
        assert!(!b.place(Side::Caller, 0, pcm(&[1; 1000])), "over the budget");
        render(&mut a, 1000);
        assert!(b.place(Side::Caller, 0, pcm(&[1; 1000])), "the written audio was let go");
        assert!(a.final_frames(1).is_none());
        drop(b);
        assert_eq!(budget.held.load(Ordering::Relaxed), 0);
    }
}
