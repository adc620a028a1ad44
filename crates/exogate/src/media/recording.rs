//! Call recordings: one stereo WAV per call, the caller on the left and the bot on the right,
//! on the call's clock as Exotel played it. The caller's audio is placed by its position in the
//! stream; the bot's where Exotel started playing it (after what was already queued there), and
//! what a `clear` cut off is silent. Media sessions only hand audio over (a bounded queue, never a
//! wait); one thread writes every call's file, so a slow disk costs recordings, never audio.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use exotel::SampleRate;
use tokio::time::Instant;

use crate::config::RecordingsConfig;

/// Messages waiting for the writer thread, all calls together: a call sends ~20 a second (caller
/// audio in 100 ms batches, the bot's chunks), so this is several seconds for 1,000 calls and
/// under one for 5,000; each holds 0.1–0.2 s of audio (1.6–9.6 KB at the default chunk size).
/// Past it audio is dropped (and counted); the file keeps its timing, with a gap.
const QUEUE: usize = 65_536;
/// The writer thread wakes this often and takes everything queued: senders never wake it (a
/// thread woken per message costs more than the recording itself).
const TICK: Duration = Duration::from_millis(100);
/// Caller audio is handed over in batches this long.
const CALLER_BATCH_MS: u64 = 100;
/// Audio is kept this long behind the call's clock before it is final: caller audio arriving a
/// little late still lands in place (a `clear` only cuts bot audio queued ahead of now).
const HOLD: Duration = Duration::from_millis(500);
/// Final audio is written once this much has gathered: each write costs the file system more
/// than its bytes do (a second of 8 kHz stereo is 32 KB).
const WRITE_BATCH: Duration = Duration::from_secs(1);
/// Audio placed further ahead than this is not Exotel's playback (nothing is queued that far).
const MAX_AHEAD: Duration = Duration::from_secs(120);
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
    Open {
        call: u64,
        path: PathBuf,
        rate: u32,
    },
    Caller {
        call: u64,
        at: u64,
        pcm: Vec<u8>,
    },
    Bot {
        call: u64,
        at: u64,
        now: u64,
        pcm: Vec<u8>,
    },
    Clear {
        call: u64,
        at: u64,
    },
    Close {
        call: u64,
        at: u64,
    },
    /// Answered once everything sent before it is written; with `finish`, every open recording
    /// is ended first (the gateway is stopping).
    Sync {
        reply: SyncSender<()>,
        finish: bool,
    },
    /// The call's agent does not want it recorded after all: the file goes.
    Discard {
        call: u64,
    },
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
        private_dirs(&cfg.dir).with_context(|| format!("cannot create RECORDINGS_DIR {:?}", cfg.dir))?;
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
            batch: Vec::new(),
            batch_at: 0,
            rate: u64::from(rate.hz()),
            started,
            caller_at: None,
            tx: self.tx.clone(),
            closing: self.closing.clone(),
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
    call: u64,
    pub(crate) name: String,
    /// Caller audio not handed over yet, from sample `batch_at`.
    batch: Vec<u8>,
    batch_at: u64,
    rate: u64,
    started: Instant,
    /// Where the next caller frame goes; None before the first (which sets it from the clock:
    /// the caller's audio runs on from when it started arriving).
    caller_at: Option<u64>,
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

    /// The caller's next frame (PCM16LE at the call's rate). Frames follow each other, unless
    /// the stream falls behind the clock (frames Exotel never sent, or skipped as unreadable):
    /// then the next one goes where the clock says, and the gap is silent.
    pub(crate) fn caller(&mut self, pcm: &[u8]) {
        let clock = self.sample_at(Instant::now());
        let behind = self.rate * HOLD.as_millis() as u64 / 2000;
        let at = self.caller_at.map_or(clock, |next| next.max(clock.saturating_sub(behind)));
        self.caller_at = Some(at + pcm.len() as u64 / 2);
        if self.batch.is_empty() {
            self.batch_at = at;
        }
        self.batch.extend_from_slice(pcm);
        if self.batch.len() as u64 >= self.rate * 2 * CALLER_BATCH_MS / 1000 {
            self.send_batch();
        }
    }

    fn send_batch(&mut self) {
        if !self.batch.is_empty() {
            let pcm = std::mem::take(&mut self.batch);
            self.send(Msg::Caller { call: self.call, at: self.batch_at, pcm });
        }
    }

    /// Bot audio Exotel starts playing at `plays_at`.
    pub(crate) fn bot(&self, plays_at: Instant, pcm: Vec<u8>) {
        let (at, now) = (self.sample_at(plays_at), self.sample_at(Instant::now()));
        self.send(Msg::Bot { call: self.call, at, now, pcm });
    }

    /// The call turned out to belong to an agent that is not recorded: the file goes.
    pub(crate) fn discard(self) {
        self.send(Msg::Discard { call: self.call });
        // Its Close follows (on drop) and finds nothing.
    }

    /// Exotel dropped what it had not played yet.
    pub(crate) fn clear(&self) {
        self.send(Msg::Clear { call: self.call, at: self.sample_at(Instant::now()) });
    }
}

impl Drop for CallRecorder {
    fn drop(&mut self) {
        self.send_batch();
        let at = self.sample_at(Instant::now()).max(self.caller_at.unwrap_or(0));
        if self.tx.try_send(Msg::Close { call: self.call, at }).is_err() {
            if let Ok(mut c) = self.closing.lock() {
                c.push((self.call, at));
            }
        }
    }
}

/// Stereo frames not written yet, from the track's `base` on, as they go into the file: 4 bytes
/// each, the caller's sample then the bot's (16-bit little-endian, as Exotel sends them). Audio
/// is copied in once, to its side of each frame, and written out as it lies. Written frames leave
/// from the front by moving `head`; the buffer is compacted once most of it is behind `head`, so
/// every byte is moved at most about once.
#[derive(Default)]
struct Frames {
    buf: Vec<u8>,
    head: usize,
    /// Frames (from `head`) each side has placed audio in.
    caller_len: usize,
    bot_len: usize,
}

const FRAME: usize = 4;
const CALLER: usize = 0;
const BOT: usize = 2;

impl Frames {
    fn len(&self) -> usize {
        (self.buf.len() - self.head) / FRAME
    }

    /// At least `len` frames held (silence added).
    fn extend_to(&mut self, len: usize) {
        if self.len() < len {
            self.buf.resize(self.head + len * FRAME, 0);
        }
    }

    fn frames_mut(&mut self, from: usize, to: usize) -> &mut [u8] {
        &mut self.buf[self.head + from * FRAME..self.head + to * FRAME]
    }

    /// Copies PCM16LE `pcm` into `side` of frames `from..`.
    fn put(&mut self, side: usize, from: usize, pcm: &[u8]) {
        let to = from + pcm.len() / 2;
        self.extend_to(to);
        for (frame, sample) in self.frames_mut(from, to).chunks_exact_mut(FRAME).zip(pcm.chunks_exact(2)) {
            frame[side..side + 2].copy_from_slice(sample);
        }
        let len = if side == CALLER { &mut self.caller_len } else { &mut self.bot_len };
        *len = (*len).max(to);
    }

    /// Silences the bot's side from frame `from` on.
    fn cut_bot(&mut self, from: usize) {
        let to = self.len();
        if from < to {
            for frame in self.frames_mut(from, to).chunks_exact_mut(FRAME) {
                frame[BOT..BOT + 2].fill(0);
            }
        }
        self.bot_len = self.bot_len.min(from);
    }

    /// The first `n` frames, to be written.
    fn front(&self, n: usize) -> &[u8] {
        &self.buf[self.head..self.head + n * FRAME]
    }

    /// The first `n` frames are written.
    fn consume(&mut self, n: usize) {
        let n = n.min(self.len());
        self.head += n * FRAME;
        self.caller_len = self.caller_len.saturating_sub(n);
        self.bot_len = self.bot_len.saturating_sub(n);
        if self.head > self.buf.len() / 2 {
            self.buf.drain(..self.head);
            self.head = 0;
        }
    }
}

/// A call's file being written: frames from `base` on are held.
struct Track {
    file: File,
    part: PathBuf,
    path: PathBuf,
    rate: u64,
    base: u64,
    frames: Frames,
    header_len: u64,
    data_len: u64,
    /// Up to here nothing more can arrive: it is written once a batch has gathered.
    final_until: u64,
}

fn private_file(path: &Path) -> std::io::Result<File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

fn private_dirs(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// The WAV header hound writes for an empty stereo 16-bit file: the sizes in it are patched when
/// the call ends (the data is written straight to the file, a batch at a time).
fn wav_header(rate: u32) -> std::io::Result<Vec<u8>> {
    let spec =
        hound::WavSpec { channels: 2, sample_rate: rate, bits_per_sample: 16, sample_format: hound::SampleFormat::Int };
    let mut header = std::io::Cursor::new(Vec::new());
    hound::WavWriter::new(&mut header, spec).and_then(hound::WavWriter::finalize).map_err(to_io)?;
    Ok(header.into_inner())
}

impl Track {
    fn create(path: PathBuf, rate: u32) -> std::io::Result<Self> {
        use std::io::Write;
        if let Some(dir) = path.parent() {
            private_dirs(dir)?;
        }
        let part = path.with_extension("wav.part");
        let header = wav_header(rate)?;
        // Call audio: readable by the gateway's user only, whatever the umask.
        let mut file = private_file(&part)?;
        file.write_all(&header)?;
        Ok(Self {
            file,
            part,
            path,
            rate: u64::from(rate),
            base: 0,
            frames: Frames::default(),
            header_len: header.len() as u64,
            data_len: 0,
            final_until: 0,
        })
    }

    /// Puts `pcm` on `side` at sample `at` (what is already written is left alone).
    fn place(&mut self, side: usize, at: u64, pcm: &[u8]) {
        let samples = (pcm.len() / 2) as u64;
        let max_ahead = MAX_AHEAD.as_secs() * self.rate;
        if at + samples <= self.base || at > self.base + max_ahead {
            return;
        }
        let skip = self.base.saturating_sub(at);
        self.frames.put(side, (at + skip - self.base) as usize, &pcm[skip as usize * 2..]);
    }

    fn hold(&self) -> u64 {
        HOLD.as_millis() as u64 * self.rate / 1000
    }

    fn caller(&mut self, at: u64, pcm: &[u8]) {
        self.place(CALLER, at, pcm);
        // The caller's stream is the call's clock: what lies a HOLD behind it is final.
        self.final_until = self.final_until.max((at + pcm.len() as u64 / 2).saturating_sub(self.hold()));
    }

    fn bot(&mut self, at: u64, now: u64, pcm: &[u8]) {
        self.place(BOT, at, pcm);
        self.final_until = self.final_until.max(now.saturating_sub(self.hold()));
    }

    /// Writes what can no longer change, once a batch of it has gathered.
    fn write_final(&mut self) -> std::io::Result<()> {
        let batch = WRITE_BATCH.as_millis() as u64 * self.rate / 1000;
        if self.final_until < self.base + batch {
            return Ok(());
        }
        self.write_until(self.final_until)
    }

    fn clear(&mut self, at: u64) {
        self.frames.cut_bot(at.saturating_sub(self.base) as usize);
    }

    /// Writes both channels up to sample `until`.
    fn write_until(&mut self, until: u64) -> std::io::Result<()> {
        use std::io::Write;
        if until <= self.base {
            return Ok(());
        }
        let n = (until - self.base) as usize;
        self.frames.extend_to(n);
        self.file.write_all(self.frames.front(n))?;
        self.data_len += (n * FRAME) as u64;
        self.frames.consume(n);
        self.base = until;
        Ok(())
    }

    /// Everything up to the call's end `at` (as long as the call, silence included; bot audio
    /// queued past it never played), then the sizes in the header, then the file's final name.
    fn finish(mut self, at: u64) -> std::io::Result<()> {
        use std::io::{Seek, SeekFrom, Write};
        let end = at.max(self.base + self.frames.caller_len as u64);
        self.clear(end);
        self.write_until(end)?;
        let data = u32::try_from(self.data_len).map_err(|_| std::io::Error::other("recording over 4 GiB"))?;
        let riff = u32::try_from(self.header_len - 8 + self.data_len).unwrap_or(u32::MAX);
        self.file.seek(SeekFrom::Start(4))?;
        self.file.write_all(&riff.to_le_bytes())?;
        self.file.seek(SeekFrom::Start(self.header_len - 4))?;
        self.file.write_all(&data.to_le_bytes())?;
        self.file.flush()?;
        drop(self.file);
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
        let mut synced = Vec::new();
        loop {
            std::thread::sleep(TICK);
            let mut gone = false;
            loop {
                match self.rx.try_recv() {
                    Ok(Msg::Sync { reply, finish }) => synced.push((reply, finish)),
                    Ok(msg) => self.handle(msg),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        gone = true;
                        break;
                    }
                }
            }
            // Calls whose end found the queue full: every message they sent before it is in.
            let late = self.closing.lock().map(|mut c| std::mem::take(&mut *c)).unwrap_or_default();
            for (call, at) in late {
                self.close(call, at);
            }
            let failed: Vec<u64> = self
                .calls
                .iter_mut()
                .filter_map(|(call, t)| t.write_final().err().map(|e| (*call, e)))
                .map(|(call, e)| {
                    tracing::warn!(error = %e, "recording failed; the call goes on unrecorded");
                    call
                })
                .collect();
            for call in failed {
                self.fail(call);
            }
            // Answered once the queue is empty: everything sent before the question is written.
            for (reply, finish) in synced.drain(..) {
                if finish {
                    self.finish_all();
                }
                let _ = reply.send(());
            }
            if gone {
                self.finish_all();
                return;
            }
        }
    }

    /// The gateway is stopping: what is still open ends where its audio ends, so no file is left
    /// half-written.
    fn finish_all(&mut self) {
        let open: Vec<(u64, u64)> = self
            .calls
            .iter()
            .map(|(call, t)| (*call, t.base + t.frames.caller_len.max(t.frames.bot_len) as u64))
            .collect();
        for (call, at) in open {
            self.close(call, at);
        }
    }

    fn close(&mut self, call: u64, at: u64) {
        let Some(t) = self.calls.remove(&call) else { return };
        let part = t.part.clone();
        match t.finish(at) {
            Ok(()) => {
                self.stats.written.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                self.stats.failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "recording failed at the end of its call");
                let _ = std::fs::remove_file(part);
            }
        }
    }

    /// A recording that can't go on: its file goes, the call doesn't notice.
    fn fail(&mut self, call: u64) {
        self.stats.failed.fetch_add(1, Ordering::Relaxed);
        if let Some(t) = self.calls.remove(&call) {
            let _ = std::fs::remove_file(&t.part);
        }
    }

    fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Open { call, path, rate } => match Track::create(path, rate) {
                Ok(t) => {
                    self.calls.insert(call, t);
                }
                Err(e) => {
                    self.stats.failed.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(error = %e, "recording could not start; the call goes on unrecorded");
                }
            },
            Msg::Caller { call, at, pcm } => {
                if let Some(t) = self.calls.get_mut(&call) {
                    t.caller(at, &pcm);
                }
            }
            Msg::Bot { call, at, now, pcm } => {
                if let Some(t) = self.calls.get_mut(&call) {
                    t.bot(at, now, &pcm);
                }
            }
            Msg::Clear { call, at } => {
                if let Some(t) = self.calls.get_mut(&call) {
                    t.clear(at);
                }
            }
            Msg::Close { call, at } => self.close(call, at),
            Msg::Discard { call } => {
                if let Some(t) = self.calls.remove(&call) {
                    let _ = std::fs::remove_file(&t.part);
                }
            }
            // Taken by the loop.
            Msg::Sync { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{BOT, CALLER, Track};

    fn pcm(samples: &[i16]) -> Vec<u8> {
        samples.iter().flat_map(|s| s.to_le_bytes()).collect()
    }

    fn track(dir: &std::path::Path) -> Track {
        Track::create(dir.join("d/call.wav"), 8000).unwrap()
    }

    fn side(t: &Track, side: usize) -> Vec<i16> {
        let f = &t.frames;
        f.front(f.len()).chunks_exact(4).map(|fr| i16::from_le_bytes([fr[side], fr[side + 1]])).collect()
    }

    #[test]
    fn placing_overwrites_its_span_and_skips_what_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = track(dir.path());
        t.place(BOT, 2, &pcm(&[1, 2, 3]));
        assert_eq!(side(&t, BOT), [0, 0, 1, 2, 3]);
        assert_eq!(side(&t, CALLER), [0; 5]);
        t.write_until(10).unwrap();
        // Samples 8..12 arrive at base 10: 8 and 9 are already written.
        t.place(CALLER, 8, &pcm(&[5, 6, 7, 8]));
        assert_eq!(side(&t, CALLER), [7, 8]);
        t.place(CALLER, 10_000_000, &pcm(&[1]));
        assert_eq!(side(&t, CALLER), [7, 8], "too far ahead to be playback");
    }

    #[test]
    fn a_file_holds_both_channels_aligned_and_cleared_audio_is_silent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d/call.wav");
        let mut t = track(dir.path());
        t.caller(0, &pcm(&[100; 4000]));
        // Queued ahead at 4000 (to 12000), then the clear at 6000 cuts what was not played.
        t.bot(4000, 4000, &pcm(&[-200; 8000]));
        t.clear(6000);
        t.caller(4000, &pcm(&[100; 12000]));
        t.write_final().unwrap();
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
