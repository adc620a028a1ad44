//! Call recordings: one stereo WAV per call, the caller on the left and the bot on the right,
//! on the call's clock as Exotel played it. The caller's audio is placed by its position in the
//! stream; the bot's where Exotel started playing it (after what was already queued there), and
//! what a `clear` cut off is silent. Media sessions only hand audio over (a bounded queue, never a
//! wait); one thread writes every call's file, so a slow disk costs recordings, never audio.

use std::collections::HashMap;
use std::fs::File;
use std::io::BufWriter;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use exotel::SampleRate;
use tokio::time::Instant;

use crate::config::RecordingsConfig;

/// Messages waiting for the writer thread, all calls together: ~10 s of 20 ms frames both ways
/// for 100 calls. Past it audio is dropped (and counted); the file keeps its timing, with a gap.
const QUEUE: usize = 16_384;
/// Audio is kept this long before it is written: a `clear` may still cut bot audio queued ahead.
const HOLD: Duration = Duration::from_secs(1);
/// Audio placed further ahead than this is not Exotel's playback (nothing is queued that far).
const MAX_AHEAD: Duration = Duration::from_secs(120);
const FILE_BUFFER: usize = 64 * 1024;
/// A `.part` file this old was left by a crash: its call is long over.
const STALE_PART: Duration = Duration::from_secs(2 * 86_400);

#[derive(Default)]
pub struct RecordingStats {
    pub started: AtomicU64,
    pub written: AtomicU64,
    /// Audio messages the writer could not take in time (the disk is slower than the calls).
    pub dropped: AtomicU64,
    /// Recordings lost to a write error (full disk, permissions).
    pub failed: AtomicU64,
    pub deleted: AtomicU64,
}

enum Msg {
    Open { call: u64, path: PathBuf, rate: u32 },
    Caller { call: u64, at: u64, pcm: Vec<u8> },
    Bot { call: u64, at: u64, now: u64, pcm: Vec<u8> },
    Clear { call: u64, at: u64 },
    Close { call: u64, at: u64 },
}

/// The gateway's recorder: the queue to the writer thread.
pub struct Recordings {
    cfg: RecordingsConfig,
    tx: SyncSender<Msg>,
    /// Calls whose `Close` found the queue full; the thread closes them (one entry per call at
    /// most, so bounded by the calls alive).
    closing: Arc<Mutex<Vec<(u64, u64)>>>,
    next_call: AtomicU64,
    pub stats: Arc<RecordingStats>,
}

impl Recordings {
    /// Starts the writer thread; `dir` is created if missing.
    pub fn start(cfg: RecordingsConfig) -> anyhow::Result<Self> {
        use anyhow::Context;
        std::fs::create_dir_all(&cfg.dir).with_context(|| format!("cannot create RECORDINGS_DIR {:?}", cfg.dir))?;
        let (tx, rx) = sync_channel(QUEUE);
        let stats = Arc::new(RecordingStats::default());
        let closing = Arc::new(Mutex::new(Vec::new()));
        let thread = WriterThread { rx, calls: HashMap::new(), stats: stats.clone(), closing: closing.clone() };
        std::thread::Builder::new()
            .name("exogate-recorder".into())
            .spawn(move || thread.run())
            .context("cannot start the recording thread")?;
        Ok(Self { cfg, tx, closing, next_call: AtomicU64::new(1), stats })
    }

    pub fn dir(&self) -> &Path {
        &self.cfg.dir
    }

    /// Whether a call whose agent says `record` (or nothing) is recorded.
    pub fn wanted(&self, agent_says: Option<bool>) -> bool {
        agent_says.unwrap_or(self.cfg.by_default)
    }

    /// Starts recording a call; its file name (relative to the directory) goes in the call log.
    /// None when the writer can't take it now (counted).
    pub(crate) fn open(&self, call_id: &str, rate: SampleRate, started: Instant) -> Option<CallRecorder> {
        let day = crate::store::now_text().get(..10).unwrap_or("undated").to_string();
        let name = format!("{day}/{call_id}.wav");
        let call = self.next_call.fetch_add(1, Ordering::Relaxed);
        let msg = Msg::Open { call, path: self.cfg.dir.join(&name), rate: rate.hz() };
        if self.tx.try_send(msg).is_err() {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        self.stats.started.fetch_add(1, Ordering::Relaxed);
        Some(CallRecorder {
            call,
            name,
            rate: u64::from(rate.hz()),
            started,
            caller_at: 0,
            tx: self.tx.clone(),
            closing: self.closing.clone(),
            stats: self.stats.clone(),
        })
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
        for day in days.flatten() {
            let Ok(files) = std::fs::read_dir(day.path()) else { continue };
            for file in files.flatten() {
                let path = file.path();
                let part = path.extension() == Some("part".as_ref());
                let expired = if part { Some(STALE_PART) } else { self.cfg.retention };
                if expired.is_some_and(|age| too_old(&path, age)) && std::fs::remove_file(&path).is_ok() {
                    self.stats.deleted.fetch_add(1, Ordering::Relaxed);
                }
            }
            // Only an empty day goes; a day still being written keeps its directory.
            let _ = std::fs::remove_dir(day.path());
        }
    }
}

/// One call's end of the recorder, owned by its media session. Dropping it ends the file.
pub(crate) struct CallRecorder {
    call: u64,
    pub(crate) name: String,
    rate: u64,
    started: Instant,
    /// Caller samples so far: where the next caller frame goes.
    caller_at: u64,
    tx: SyncSender<Msg>,
    closing: Arc<Mutex<Vec<(u64, u64)>>>,
    stats: Arc<RecordingStats>,
}

impl CallRecorder {
    fn sample_at(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.started).as_micros() as u64 * self.rate / 1_000_000
    }

    fn send(&self, msg: Msg) {
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = self.tx.try_send(msg) {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The caller's next frame (PCM16LE at the call's rate).
    pub(crate) fn caller(&mut self, pcm: Vec<u8>) {
        let at = self.caller_at;
        self.caller_at += pcm.len() as u64 / 2;
        self.send(Msg::Caller { call: self.call, at, pcm });
    }

    /// Bot audio Exotel starts playing at `plays_at`.
    pub(crate) fn bot(&self, plays_at: Instant, pcm: Vec<u8>) {
        let (at, now) = (self.sample_at(plays_at), self.sample_at(Instant::now()));
        self.send(Msg::Bot { call: self.call, at, now, pcm });
    }

    /// Exotel dropped what it had not played yet.
    pub(crate) fn clear(&self) {
        self.send(Msg::Clear { call: self.call, at: self.sample_at(Instant::now()) });
    }
}

impl Drop for CallRecorder {
    fn drop(&mut self) {
        let at = self.sample_at(Instant::now()).max(self.caller_at);
        if self.tx.try_send(Msg::Close { call: self.call, at }).is_err() {
            if let Ok(mut c) = self.closing.lock() {
                c.push((self.call, at));
            }
        }
    }
}

/// A call's file being written: samples from `base` on are held, both channels.
struct Track {
    out: hound::WavWriter<BufWriter<File>>,
    part: PathBuf,
    path: PathBuf,
    rate: u64,
    base: u64,
    left: Vec<i16>,
    right: Vec<i16>,
    frame: Vec<i16>,
}

impl Track {
    fn create(path: PathBuf, rate: u32) -> std::io::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let part = path.with_extension("wav.part");
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: rate,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let file = BufWriter::with_capacity(FILE_BUFFER, File::create(&part)?);
        let out = hound::WavWriter::new(file, spec).map_err(to_io)?;
        Ok(Self {
            out,
            part,
            path,
            rate: u64::from(rate),
            base: 0,
            left: Vec::new(),
            right: Vec::new(),
            frame: Vec::new(),
        })
    }

    /// Puts `pcm` on a channel at sample `at` (what is already written is left alone).
    fn place(channel: &mut Vec<i16>, base: u64, at: u64, pcm: &[u8], max_ahead: u64) {
        let samples = pcm.len() / 2;
        let end = at + samples as u64;
        if end <= base || at > base + max_ahead {
            return;
        }
        let skip = base.saturating_sub(at) as usize;
        let offset = (at + skip as u64 - base) as usize;
        let needed = offset + samples - skip;
        if channel.len() < needed {
            channel.resize(needed, 0);
        }
        for (slot, b) in channel[offset..needed].iter_mut().zip(pcm[skip * 2..].chunks_exact(2)) {
            *slot = i16::from_le_bytes([b[0], b[1]]);
        }
    }

    fn max_ahead(&self) -> u64 {
        MAX_AHEAD.as_secs() * self.rate
    }

    fn caller(&mut self, at: u64, pcm: &[u8]) -> std::io::Result<()> {
        let ahead = self.max_ahead();
        Self::place(&mut self.left, self.base, at, pcm, ahead);
        // The caller's stream is the call's clock: what lies a HOLD behind it is final.
        self.write_until((at + pcm.len() as u64 / 2).saturating_sub(HOLD.as_millis() as u64 * self.rate / 1000))
    }

    fn bot(&mut self, at: u64, now: u64, pcm: &[u8]) -> std::io::Result<()> {
        let ahead = self.max_ahead();
        Self::place(&mut self.right, self.base, at, pcm, ahead);
        self.write_until(now.saturating_sub(HOLD.as_millis() as u64 * self.rate / 1000))
    }

    fn clear(&mut self, at: u64) {
        let keep = at.saturating_sub(self.base) as usize;
        self.right.truncate(keep);
    }

    /// Writes both channels up to sample `until`.
    fn write_until(&mut self, until: u64) -> std::io::Result<()> {
        if until <= self.base {
            return Ok(());
        }
        let n = (until - self.base) as usize;
        self.left.resize(self.left.len().max(n), 0);
        self.right.resize(self.right.len().max(n), 0);
        self.frame.clear();
        self.frame.extend(self.left.drain(..n).zip(self.right.drain(..n)).flat_map(|(l, r)| [l, r]));
        let mut w = self.out.get_i16_writer(self.frame.len() as u32);
        for s in &self.frame {
            w.write_sample(*s);
        }
        w.flush().map_err(to_io)?;
        self.base = until;
        Ok(())
    }

    /// Everything up to the call's end (bot audio queued past it never played), then the file.
    fn finish(mut self, at: u64) -> std::io::Result<()> {
        let end = self.base + self.left.len().max(self.right.len().min(at.saturating_sub(self.base) as usize)) as u64;
        self.right.truncate((end - self.base) as usize);
        self.write_until(end)?;
        self.out.finalize().map_err(to_io)?;
        std::fs::rename(&self.part, &self.path)
    }
}

fn to_io(e: hound::Error) -> std::io::Error {
    match e {
        hound::Error::IoError(e) => e,
        other => std::io::Error::other(other.to_string()),
    }
}

struct WriterThread {
    rx: Receiver<Msg>,
    calls: HashMap<u64, Track>,
    stats: Arc<RecordingStats>,
    closing: Arc<Mutex<Vec<(u64, u64)>>>,
}

impl WriterThread {
    fn run(mut self) {
        loop {
            match self.rx.recv_timeout(Duration::from_millis(500)) {
                Ok(msg) => self.handle(msg),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            let late = self.closing.lock().map(|mut c| std::mem::take(&mut *c)).unwrap_or_default();
            for (call, at) in late {
                self.handle(Msg::Close { call, at });
            }
        }
        // The gateway is stopping: end what is open, so no file is left half-written.
        for (_, track) in self.calls.drain() {
            let at = track.base + track.left.len() as u64;
            let _ = track.finish(at);
        }
    }

    fn handle(&mut self, msg: Msg) {
        let (call, result) = match msg {
            Msg::Open { call, path, rate } => match Track::create(path, rate) {
                Ok(t) => {
                    self.calls.insert(call, t);
                    return;
                }
                Err(e) => (call, Err(e)),
            },
            Msg::Caller { call, at, pcm } => (call, self.with(call, |t| t.caller(at, &pcm))),
            Msg::Bot { call, at, now, pcm } => (call, self.with(call, |t| t.bot(at, now, &pcm))),
            Msg::Clear { call, at } => {
                if let Some(t) = self.calls.get_mut(&call) {
                    t.clear(at);
                }
                return;
            }
            Msg::Close { call, at } => match self.calls.remove(&call) {
                Some(t) => {
                    let part = t.part.clone();
                    let done = t.finish(at);
                    if done.is_ok() {
                        self.stats.written.fetch_add(1, Ordering::Relaxed);
                    } else {
                        let _ = std::fs::remove_file(part);
                    }
                    (call, done)
                }
                None => return,
            },
        };
        if let Err(e) = result {
            self.stats.failed.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(error = %e, "recording failed; the call goes on unrecorded");
            if let Some(t) = self.calls.remove(&call) {
                let _ = std::fs::remove_file(&t.part);
            }
        }
    }

    fn with(&mut self, call: u64, f: impl FnOnce(&mut Track) -> std::io::Result<()>) -> std::io::Result<()> {
        self.calls.get_mut(&call).map_or(Ok(()), f)
    }
}

#[cfg(test)]
mod tests {
    use super::Track;

    fn pcm(samples: &[i16]) -> Vec<u8> {
        samples.iter().flat_map(|s| s.to_le_bytes()).collect()
    }

    #[test]
    fn placing_overwrites_its_span_and_skips_what_is_written() {
        let mut ch = Vec::new();
        Track::place(&mut ch, 0, 2, &pcm(&[1, 2, 3]), 100);
        assert_eq!(ch, [0, 0, 1, 2, 3]);
        // Base 10: samples 8..12 arrive; 8 and 9 are already written.
        let mut ch = Vec::new();
        Track::place(&mut ch, 10, 8, &pcm(&[5, 6, 7, 8]), 100);
        assert_eq!(ch, [7, 8]);
        Track::place(&mut ch, 10, 500, &pcm(&[1]), 100);
        assert_eq!(ch, [7, 8], "too far ahead to be playback");
    }

    #[test]
    fn a_file_holds_both_channels_aligned_and_cleared_audio_is_silent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d/call.wav");
        let mut t = Track::create(path.clone(), 8000).unwrap();
        t.caller(0, &pcm(&[100; 4000])).unwrap();
        // Queued ahead at 4000 (to 12000), then the clear at 6000 cuts what was not played.
        t.bot(4000, 4000, &pcm(&[-200; 8000])).unwrap();
        t.clear(6000);
        t.caller(4000, &pcm(&[100; 12000])).unwrap();
        t.finish(16000).unwrap();
        assert!(!dir.path().join("d/call.wav.part").exists());
        let mut r = hound::WavReader::open(&path).unwrap();
        assert_eq!(r.spec().channels, 2);
        let s: Vec<i16> = r.samples::<i16>().map(Result::unwrap).collect();
        assert_eq!(s.len(), 32000);
        let right = |i: usize| s[i * 2 + 1];
        assert!(s.chunks(2).all(|f| f[0] == 100));
        assert_eq!((right(3999), right(4000), right(5999), right(6000)), (0, -200, -200, 0));
    }
}
