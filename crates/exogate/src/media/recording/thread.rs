//! The writer thread: every tick it renders what is final on each call's tape onto the call's
//! stereo frames waiting for the disk, and appends those to the call's file a batch at a time; a
//! call that ended is written to its end and its file completed.

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
    /// Rendered frames not written yet. Audio is rendered soon after it is final (while it is
    /// still in cache) and written in large batches (cheaper per byte for the file system).
    staged: Vec<u8>,
}

pub(super) struct WriterThread {
    rx: Receiver<Msg>,
    calls: Vec<Recording>,
    stats: Arc<RecordingStats>,
}

impl WriterThread {
    pub(super) fn new(rx: Receiver<Msg>, stats: Arc<RecordingStats>) -> Self {
        Self { rx, calls: Vec::new(), stats }
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
            let batch = if self.stats.held_bytes() > HELD_LIMIT / 2 { 1 } else { WRITE_BATCH as usize };
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
            Ok(file) => self.calls.push(Recording { tape, file, staged: Vec::new() }),
            Err(e) => {
                self.stats.failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "recording could not start; the call goes on unrecorded");
                give_up(&tape);
            }
        }
    }

    /// Renders what one call has final (under the tape's lock: memory only) and writes a batch
    /// once one has gathered (outside it: the disk may be slow); a call that ended is written to
    /// its end and swapped out of the list, which is why the list is walked backwards.
    fn serve(&mut self, i: usize, batch: usize) {
        loop {
            let call = &mut self.calls[i];
            let (rendered_all, ended) = {
                let mut t = lock(&call.tape);
                if t.discarded {
                    drop(t);
                    return self.drop_call(i);
                }
                let until = match t.end {
                    Some(at) => t.close_at(at),
                    None => t.final_until.max(t.base()),
                };
                let room = (WRITE_MAX as usize).saturating_sub(call.staged.len()) / 4;
                let n = (until - t.base()).min(room as u64);
                if n > 0 {
                    t.render(n, &mut call.staged);
                    self.stats.budget.add(n as usize * 4);
                }
                (t.base() >= until, t.end.is_some())
            };
            if call.staged.len() >= batch || ended || !rendered_all {
                let written = call.file.append(&call.staged);
                self.stats.budget.give(call.staged.len());
                call.staged.clear();
                match written {
                    Ok(true) => {}
                    // Full: the rest of the call is not kept, the file is completed at its end.
                    Ok(false) => {
                        let mut t = lock(&call.tape);
                        t.dead = true;
                        t.drop_all();
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "recording failed; the call goes on unrecorded");
                        self.stats.failed.fetch_add(1, Ordering::Relaxed);
                        return self.drop_call(i);
                    }
                }
            }
            if !rendered_all {
                continue;
            }
            if ended {
                let call = self.calls.swap_remove(i);
                give_up(&call.tape);
                match call.file.finish() {
                    Ok(()) => self.stats.written.fetch_add(1, Ordering::Relaxed),
                    Err(e) => {
                        tracing::warn!(error = %e, "recording failed at the end of its call");
                        self.stats.failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
            return;
        }
    }

    /// A recording that goes unwritten (discarded, or the disk failed): its file goes.
    fn drop_call(&mut self, i: usize) {
        let call = self.calls.swap_remove(i);
        give_up(&call.tape);
        self.stats.budget.give(call.staged.len());
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
