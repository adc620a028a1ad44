//! Call recordings: one stereo WAV per call, the caller on the left and the bot on the right,
//! on the call's clock as Exotel played it. The caller's audio is placed by its position in the
//! stream; the bot's where Exotel started playing it (after what was already queued there), and
//! what a `clear` cut off is silent.
//!
//! A session hands its audio to its call's [`tape`] (the caller's in 200 ms batches, the bot's
//! chunks as they are; a short lock that the disk never holds); one thread ([`thread`]) renders what is final on every call's
//! tape into stereo frames a batch at a time and appends it to the call's [`file`], so a slow disk
//! costs recordings, never audio.

mod file;
mod tape;
mod thread;

use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use exotel::SampleRate;
use tokio::time::Instant;

use crate::config::RecordingsConfig;
use tape::{Budget, Tape};

/// Calls starting and shutdown questions waiting for the writer thread (it takes them every tick).
const CONTROL_QUEUE: usize = 4096;
/// The writer thread wakes this often and takes what is final: sessions never wake it (a thread
/// woken per frame costs more than the recording itself).
const TICK: Duration = Duration::from_millis(100);
/// Audio is kept this long behind the call's clock before it is final: caller audio arriving a
/// little late still lands in place (a `clear` only cuts bot audio queued ahead of now).
const HOLD: Duration = Duration::from_millis(500);
/// Caller audio is handed to the tape in batches this long (well under HOLD, so it is there
/// before it is final).
const CALLER_BATCH_MS: u64 = 200;
/// Final audio is written once this many bytes of it have gathered (8 s at 8 kHz, 2.7 s at
/// 24 kHz): the file system's cost per write and per page both fall with larger writes, and audio
/// read long after it arrived costs about the same as audio read soon after (measured:
/// `bench/recordings.sh`, docs/performance.md).
const WRITE_BATCH: u64 = 256 << 10;
/// At most this much is rendered for one write (a writer that fell behind catches up in pieces).
const WRITE_MAX: u64 = 1 << 20;
/// Audio held for every call together, waiting to be final or for the disk (see
/// [`tape::Budget`]). Past half of it, final audio is written without waiting for a batch.
const HELD_LIMIT: usize = 1 << 30;
/// A `.part` file this old was left by a crash: its call is long over.
const STALE_PART: Duration = Duration::from_secs(2 * 86_400);

pub struct RecordingStats {
    pub started: AtomicU64,
    pub written: AtomicU64,
    /// Audio that could not be held (the disk is slower than the calls, past the budget).
    pub dropped: AtomicU64,
    /// Recordings lost to a write error (full disk, permissions).
    pub failed: AtomicU64,
    pub deleted: AtomicU64,
    budget: Arc<Budget>,
}

impl RecordingStats {
    /// Bytes of audio held now, waiting to be final or to be written.
    pub fn held_bytes(&self) -> usize {
        self.budget.held.load(Ordering::Relaxed)
    }
}

enum Msg {
    Open {
        tape: Arc<Mutex<Tape>>,
        path: PathBuf,
        rate: u32,
    },
    /// Answered once everything handed over before it is written; with `finish`, every open
    /// recording is ended first (the gateway is stopping).
    Sync {
        reply: SyncSender<()>,
        finish: bool,
    },
}

fn lock(tape: &Mutex<Tape>) -> MutexGuard<'_, Tape> {
    // Nothing panics while holding it; if something did, the tape is still whole enough to write.
    tape.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The gateway's recorder: the writer thread and the way to it.
pub struct Recordings {
    cfg: RecordingsConfig,
    tx: SyncSender<Msg>,
    pub stats: Arc<RecordingStats>,
}

impl Recordings {
    /// Starts the writer thread; `dir` is created if missing.
    pub fn start(cfg: RecordingsConfig) -> anyhow::Result<Self> {
        use anyhow::Context;
        file::private_dirs(&cfg.dir).with_context(|| format!("cannot create RECORDINGS_DIR {:?}", cfg.dir))?;
        let (tx, rx) = sync_channel(CONTROL_QUEUE);
        let stats = Arc::new(RecordingStats {
            started: AtomicU64::new(0),
            written: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            deleted: AtomicU64::new(0),
            budget: Budget::new(HELD_LIMIT),
        });
        let thread = thread::WriterThread::new(rx, stats.clone());
        std::thread::Builder::new()
            .name("exogate-recorder".into())
            .spawn(move || thread.run())
            .context("cannot start the recording thread")?;
        Ok(Self { cfg, tx, stats })
    }

    pub fn dir(&self) -> &Path {
        &self.cfg.dir
    }

    /// Whether a call whose agent says `record` (or nothing) is recorded.
    pub fn wanted(&self, agent_says: Option<bool>) -> bool {
        agent_says.unwrap_or(self.cfg.by_default)
    }

    /// Starts recording a call; its file name (relative to the directory) goes in the call log.
    /// None when the writer can't take it now (counted as failed).
    pub(crate) fn open(&self, call_id: &str, rate: SampleRate, started: Instant) -> Option<CallRecorder> {
        let day = crate::store::now_text().get(..10).unwrap_or("undated").to_string();
        let name = format!("{day}/{call_id}.wav");
        let tape = Arc::new(Mutex::new(Tape::new(rate.hz(), self.stats.budget.clone())));
        let msg = Msg::Open { tape: tape.clone(), path: self.cfg.dir.join(&name), rate: rate.hz() };
        if self.tx.try_send(msg).is_err() {
            self.stats.failed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        self.stats.started.fetch_add(1, Ordering::Relaxed);
        let rate = u64::from(rate.hz());
        let hold = HOLD.as_millis() as u64 * rate / 1000;
        Some(CallRecorder {
            name,
            tape,
            rate,
            hold,
            started,
            caller_at: None,
            batch: Vec::new(),
            batch_at: 0,
            stats: self.stats.clone(),
        })
    }

    /// Waits (up to `wait`) until everything handed over so far is written, then ends whatever
    /// recording is still open: every recording is a complete file. For shutdown; blocks, so call
    /// it off the runtime's threads. False if the writer did not finish in time.
    pub fn finish(&self, wait: Duration) -> bool {
        let (done, finished) = sync_channel(1);
        let deadline = std::time::Instant::now() + wait;
        let mut msg = Msg::Sync { reply: done, finish: true };
        loop {
            match self.tx.try_send(msg) {
                Ok(()) => break,
                Err(TrySendError::Full(m)) if std::time::Instant::now() < deadline => {
                    msg = m;
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(_) => return false,
            }
        }
        finished.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now())).is_ok()
    }

    /// The file behind a stored name, if the name is one of ours (a relative path, no `..`).
    pub fn path_of(&self, name: &str) -> Option<PathBuf> {
        let rel = Path::new(name);
        let ours =
            rel.components().all(|c| matches!(c, Component::Normal(_))) && rel.extension() == Some("wav".as_ref());
        ours.then(|| self.cfg.dir.join(rel))
    }

    /// Deletes recordings past the retention (whole days), and `.part` files a crash left.
    pub fn sweep(&self) {
        let Ok(days) = std::fs::read_dir(&self.cfg.dir) else { return };
        let now = std::time::SystemTime::now();
        let too_old = |path: &Path, age: Duration| {
            std::fs::metadata(path)
                .and_then(|m| m.modified())
                .is_ok_and(|t| now.duration_since(t).is_ok_and(|a| a > age))
        };
        // Only what we write: `YYYY-MM-DD/<id>.wav` and `.wav.part`; today's directory may be
        // getting its first file this instant.
        let today = crate::store::now_text().get(..10).unwrap_or_default().to_string();
        let is_day = |name: &str| {
            name.len() == 10
                && name.bytes().enumerate().all(|(i, b)| if i == 4 || i == 7 { b == b'-' } else { b.is_ascii_digit() })
        };
        for day in days.flatten() {
            let name = day.file_name().to_string_lossy().into_owned();
            if !is_day(&name) || name == today {
                continue;
            }
            let Ok(files) = std::fs::read_dir(day.path()) else { continue };
            for file in files.flatten() {
                let path = file.path();
                let file_name = file.file_name().to_string_lossy().into_owned();
                let part = file_name.ends_with(".wav.part");
                if !part && !file_name.ends_with(".wav") {
                    continue;
                }
                let expired = if part { Some(STALE_PART) } else { self.cfg.retention };
                if expired.is_some_and(|age| too_old(&path, age)) && std::fs::remove_file(&path).is_ok() {
                    self.stats.deleted.fetch_add(1, Ordering::Relaxed);
                }
            }
            // Only an empty day untouched for a while goes (remove_dir refuses a full one): a
            // directory made a moment ago may be getting its first file.
            if too_old(&day.path(), STALE_PART) {
                let _ = std::fs::remove_dir(day.path());
            }
        }
    }
}

/// One call's end of the recorder, owned by its media session. Dropping it ends the file.
pub(crate) struct CallRecorder {
    pub(crate) name: String,
    tape: Arc<Mutex<Tape>>,
    rate: u64,
    /// HOLD in frames.
    hold: u64,
    started: Instant,
    /// Where the next caller frame goes; None before the first (which sets it from the clock:
    /// the caller's audio runs on from when it started arriving).
    caller_at: Option<u64>,
    /// Caller audio not handed over yet, from frame `batch_at`: the tape is shared with the
    /// writer thread, so it is touched a few times a second, not once per frame.
    batch: Vec<u8>,
    batch_at: u64,
    stats: Arc<RecordingStats>,
}

impl CallRecorder {
    fn sample_at(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.started).as_micros() as u64 * self.rate / 1_000_000
    }

    fn count(&self, placed: bool) {
        if !placed {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The caller's next frame (PCM16LE at the call's rate). Frames follow each other, unless
    /// the stream falls behind the clock (frames Exotel never sent, or skipped as unreadable):
    /// then the next one goes where the clock says, and the gap is silent.
    pub(crate) fn caller(&mut self, pcm: &[u8]) {
        let clock = self.sample_at(Instant::now());
        let at = self.caller_at.map_or(clock, |next| next.max(clock.saturating_sub(self.hold / 2)));
        self.caller_at = Some(at + pcm.len() as u64 / 2);
        if at != self.batch_at + self.batch.len() as u64 / 2 {
            self.hand_over();
            self.batch_at = at;
        }
        let full = (self.rate * 2 * CALLER_BATCH_MS / 1000) as usize;
        if self.batch.capacity() == 0 {
            self.batch.reserve_exact(full.max(pcm.len()));
        }
        self.batch.extend_from_slice(pcm);
        if self.batch.len() >= full {
            self.hand_over();
        }
    }

    fn hand_over(&mut self) {
        if !self.batch.is_empty() {
            let pcm = std::mem::take(&mut self.batch);
            let at = self.batch_at;
            self.batch_at += pcm.len() as u64 / 2;
            let placed = lock(&self.tape).caller(at, pcm, self.hold);
            self.count(placed);
        }
    }

    /// Bot audio Exotel starts playing at `plays_at`.
    pub(crate) fn bot(&self, plays_at: Instant, pcm: Vec<u8>) {
        let (at, now) = (self.sample_at(plays_at), self.sample_at(Instant::now()));
        let placed = lock(&self.tape).bot(at, now, pcm, self.hold);
        self.count(placed);
    }

    /// The call turned out to belong to an agent that is not recorded: the file goes.
    pub(crate) fn discard(self) {
        lock(&self.tape).discarded = true;
    }

    /// Exotel dropped what it had not played yet.
    pub(crate) fn clear(&self) {
        let now = self.sample_at(Instant::now());
        lock(&self.tape).cut_bot(now);
    }
}

impl Drop for CallRecorder {
    fn drop(&mut self) {
        self.hand_over();
        let at = self.sample_at(Instant::now()).max(self.caller_at.unwrap_or(0));
        lock(&self.tape).end = Some(at);
    }
}
