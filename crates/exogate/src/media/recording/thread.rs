//! The writer thread: every tick it renders what is final on each call's tape and appends it to
//! the call's file; a call that ended is written to its end and its file completed.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError};
use std::sync::{Arc, Mutex};

use super::file::WavFile;
use super::tape::Tape;
use super::{HELD_LIMIT, Msg, RecordingStats, TICK, WRITE_BATCH, WRITE_MAX, lock};

struct Recording {
    tape: Arc<Mutex<Tape>>,
    file: WavFile,
}

pub(super) struct WriterThread {
    rx: Receiver<Msg>,
    calls: Vec<Recording>,
    stats: Arc<RecordingStats>,
    /// Stereo frames on their way to a file: one buffer for every call, so it stays in cache.
    frames: Vec<u8>,
}

/// What a tick does with one call.
enum Step {
    /// Frames rendered (more may follow at once: `more`).
    Write {
        more: bool,
    },
    /// The call's last frames rendered.
    End,
    Discard,
    Wait,
}

impl WriterThread {
    pub(super) fn new(rx: Receiver<Msg>, stats: Arc<RecordingStats>) -> Self {
        Self { rx, calls: Vec::new(), stats, frames: Vec::with_capacity(WRITE_MAX as usize) }
    }

    pub(super) fn run(mut self) {
        let mut synced: Vec<(SyncSender<()>, bool)> = Vec::new();
        loop {
            std::thread::sleep(TICK);
            let mut gone = false;
            loop {
                match self.rx.try_recv() {
                    Ok(Msg::Open { tape, path, rate }) => self.open(tape, path, rate),
                    Ok(Msg::Sync { reply, finish }) => synced.push((reply, finish)),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        gone = true;
                        break;
                    }
                }
            }
            // The gateway is stopping: what is still open ends where its audio ends, so no file
            // is left half-written.
            if gone || synced.iter().any(|(_, finish)| *finish) {
                for call in &self.calls {
                    let mut t = lock(&call.tape);
                    if t.end.is_none() {
                        t.end = Some(t.audio_end());
                    }
                }
            }
            // Batches keep the disk's cost down; when audio piles up (many calls, a slow disk),
            // whatever is final goes at once instead.
            let batch = if self.stats.held_bytes() > HELD_LIMIT / 2 { 1 } else { WRITE_BATCH / 4 };
            for i in (0..self.calls.len()).rev() {
                self.serve(i, batch);
            }
            for (reply, _) in synced.drain(..) {
                let _ = reply.send(());
            }
            if gone {
                return;
            }
        }
    }

    fn open(&mut self, tape: Arc<Mutex<Tape>>, path: PathBuf, rate: u32) {
        match WavFile::create(path, rate) {
            Ok(file) => self.calls.push(Recording { tape, file }),
            Err(e) => {
                self.stats.failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "recording could not start; the call goes on unrecorded");
                give_up(&tape);
            }
        }
    }

    /// Renders under the tape's lock (memory only), writes outside it (the disk may be slow).
    fn step(&mut self, i: usize, batch: u64) -> Step {
        let mut t = lock(&self.calls[i].tape);
        if t.discarded {
            return Step::Discard;
        }
        // A call that ended is written to its end; one going on, once a batch is final.
        let (n, ended) = match t.end {
            Some(at) => {
                let end = t.close_at(at);
                (end - t.base(), true)
            }
            None => match t.final_frames(batch) {
                Some(n) => (n, false),
                None => return Step::Wait,
            },
        };
        t.render(n.min(WRITE_MAX / 4), &mut self.frames);
        let more = n > WRITE_MAX / 4;
        if ended && !more { Step::End } else { Step::Write { more } }
    }

    /// Writes what one call has final (all of it if it ended; swapped out of the list once done,
    /// which is why the list is walked backwards).
    fn serve(&mut self, i: usize, batch: u64) {
        loop {
            match self.step(i, batch) {
                Step::Wait => return,
                Step::Write { more } => {
                    let call = &mut self.calls[i];
                    match call.file.append(&self.frames) {
                        Ok(true) if more => continue,
                        Ok(true) => return,
                        // Full: the rest of the call is not kept, the file is completed at its end.
                        Ok(false) => {
                            let mut t = lock(&call.tape);
                            t.dead = true;
                            t.drop_all();
                            return;
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "recording failed; the call goes on unrecorded");
                            self.stats.failed.fetch_add(1, Ordering::Relaxed);
                            return self.drop_call(i);
                        }
                    }
                }
                Step::End => {
                    let mut call = self.calls.swap_remove(i);
                    give_up(&call.tape);
                    let done = match call.file.append(&self.frames) {
                        Ok(_) => call.file.finish(),
                        Err(e) => {
                            call.file.remove();
                            Err(e)
                        }
                    };
                    match done {
                        Ok(()) => self.stats.written.fetch_add(1, Ordering::Relaxed),
                        Err(e) => {
                            tracing::warn!(error = %e, "recording failed at the end of its call");
                            self.stats.failed.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                    return;
                }
                Step::Discard => return self.drop_call(i),
            }
        }
    }

    /// A recording that goes unwritten (discarded, or the disk failed): its file goes.
    fn drop_call(&mut self, i: usize) {
        let call = self.calls.swap_remove(i);
        give_up(&call.tape);
        call.file.remove();
    }
}

/// The writer is done with this tape: the session stops handing audio to it, and what it holds
/// is let go.
fn give_up(tape: &Mutex<Tape>) {
    let mut t = lock(tape);
    t.dead = true;
    t.drop_all();
}
