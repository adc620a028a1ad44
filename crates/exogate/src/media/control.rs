//! The agent's handle on its call, and the commands it puts on the writer's queue.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use std::time::Duration;

use exotel::{FrameSpec, Framer, SampleRate};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::app::Decision;

pub(crate) enum OutCmd {
    /// The stream is known: from now on audio can be framed for it.
    Begin {
        stream_sid: String,
        rate: SampleRate,
    },
    /// One Exotel-legal chunk of agent audio.
    Chunk(Vec<u8>),
    /// An utterance began with less than a chunk: the writer starts watching for its end.
    Touch,
    /// End of an utterance: its padded tail (if any), then the mark.
    Mark {
        tail: Option<Vec<u8>>,
        name: String,
    },
    /// Barge-in: Exotel's `clear`, our queue dropped, pending marks cancelled.
    Clear,
    /// Exotel itself sent `clear`: drop our queue without answering.
    DropQueued,
    /// Finish queued audio, mark it, close with 1000 once the mark is echoed (or a timeout).
    HangUp {
        tail: Option<Vec<u8>>,
        mark: String,
    },
    MarkPlayed(String),
    /// Close at once (policy violations).
    CloseNow {
        code: u16,
        reason: &'static str,
    },
    /// The call is over from Exotel's side.
    Shutdown,
}

/// Marks sent to Exotel and not yet echoed, oldest first. Shared by the writer (which sends and
/// cancels them) and the reader (which matches echoes), so stale echoes after `clear` are ignored.
#[derive(Default)]
pub(crate) struct MarkBook {
    pending: Mutex<VecDeque<String>>,
}

impl MarkBook {
    pub(crate) fn sent(&self, name: &str) {
        if let Ok(mut p) = self.pending.lock() {
            p.push_back(name.to_string());
        }
    }

    pub(crate) fn cancel_all(&self) {
        if let Ok(mut p) = self.pending.lock() {
            p.clear();
        }
    }

    /// True if `name` was pending. Marks before it are implied played (Exotel plays in order).
    pub(crate) fn echoed(&self, name: &str) -> bool {
        let Ok(mut p) = self.pending.lock() else { return false };
        match p.iter().position(|m| m == name) {
            Some(i) => {
                p.drain(..=i);
                true
            }
            None => false,
        }
    }
}

/// Agent audio not yet handed to the writer. Framing happens here, on the agent's side, so the
/// writer wakes once per chunk rather than once per caller frame.
#[derive(Default)]
pub(crate) struct Outbox {
    framer: Option<Framer>,
    last_audio: Option<Instant>,
    /// Audio went out since the last mark: the utterance still needs its end.
    unmarked: bool,
}

/// What the writer's idle check found.
pub(crate) enum Idle {
    /// Nothing pending.
    Done,
    /// Audio is still arriving: look again then.
    Until(Instant),
    /// The utterance ended: its padded tail, if any.
    Ended(Option<Vec<u8>>),
}

impl Outbox {
    fn end(&mut self) -> Option<Vec<u8>> {
        self.unmarked = false;
        self.framer.as_mut().and_then(Framer::finish)
    }
}

/// Lets an agent send audio of any length, marks, clear and hang-up. Cheap to clone; never blocks;
/// after the call has ended every method is a no-op.
#[derive(Clone)]
pub struct CallControl {
    tx: mpsc::UnboundedSender<OutCmd>,
    marks: Arc<AtomicU64>,
    decision: Arc<DecisionSlot>,
    outbox: Arc<Mutex<Outbox>>,
}

pub(crate) type DecisionSink = Box<dyn Fn(Decision) + Send + Sync>;

/// Where the bot's hang-up/transfer decision goes (set once the call is known); first one wins.
#[derive(Default)]
struct DecisionSlot {
    sink: OnceLock<DecisionSink>,
    made: AtomicBool,
}

impl CallControl {
    pub(crate) fn new(tx: mpsc::UnboundedSender<OutCmd>) -> Self {
        Self { tx, marks: Arc::new(AtomicU64::new(0)), decision: Arc::default(), outbox: Arc::default() }
    }

    pub(crate) fn outbox(&self) -> Arc<Mutex<Outbox>> {
        self.outbox.clone()
    }

    /// The stream is known: audio from now on is framed for `rate`.
    pub(crate) fn begin(&self, stream_sid: String, rate: SampleRate, chunk_ms: u32) {
        // Commands go out under the outbox lock so their order matches the framer's.
        let Ok(mut ob) = self.outbox.lock() else { return };
        ob.framer = Some(Framer::new(FrameSpec::for_duration(rate, chunk_ms)));
        let _ = self.tx.send(OutCmd::Begin { stream_sid, rate });
    }

    /// Drops audio not yet handed to the writer, then sends `cmd` (a clear of some kind).
    pub(crate) fn drop_pending(&self, cmd: OutCmd) {
        let Ok(mut ob) = self.outbox.lock() else { return };
        if let Some(f) = ob.framer.as_mut() {
            f.clear();
        }
        ob.unmarked = false;
        let _ = self.tx.send(cmd);
    }

    pub(crate) fn on_decision(&self, sink: DecisionSink) {
        let _ = self.decision.sink.set(sink);
    }

    fn decide(&self, d: Decision) {
        if !self.decision.made.swap(true, Ordering::AcqRel) {
            if let Some(sink) = self.decision.sink.get() {
                sink(d);
            }
        }
    }

    /// Queues PCM16LE mono at the call's rate. It is cut into Exotel-legal chunks and paced.
    pub fn play(&self, pcm: &[u8]) {
        if pcm.is_empty() {
            return;
        }
        let Ok(mut ob) = self.outbox.lock() else { return };
        let Outbox { framer, last_audio, unmarked } = &mut *ob;
        let Some(framer) = framer.as_mut() else { return };
        *last_audio = Some(Instant::now());
        if !*unmarked {
            *unmarked = true;
            let _ = self.tx.send(OutCmd::Touch);
        }
        framer.push(pcm, |chunk| {
            let _ = self.tx.send(OutCmd::Chunk(chunk));
        });
    }

    /// Ends the current utterance and marks it. Returns the mark's unique name, which
    /// [`crate::agent::Agent::on_mark_played`] will receive once Exotel has played up to it.
    pub fn mark(&self, label: &str) -> String {
        let name = self.unique(label);
        if let Ok(mut ob) = self.outbox.lock() {
            let tail = ob.end();
            let _ = self.tx.send(OutCmd::Mark { tail, name: name.clone() });
        }
        name
    }

    /// Stops playback: Exotel drops what it has not started playing, we drop what we hold.
    pub fn clear(&self) {
        self.drop_pending(OutCmd::Clear);
    }

    /// Ends the bot's part of the call once queued audio has played: the socket closes with 1000.
    pub fn hang_up(&self) {
        self.decide(Decision::HangUp);
        self.end_call("hangup");
    }

    /// Like [`CallControl::hang_up`], but the Passthru applet after the Voicebot applet then answers
    /// 302, so the flow takes its other branch (e.g. a Connect applet to a human).
    pub fn transfer(&self) {
        self.decide(Decision::Transfer);
        self.end_call("transfer");
    }

    fn end_call(&self, label: &str) {
        let mark = self.unique(label);
        if let Ok(mut ob) = self.outbox.lock() {
            let tail = ob.end();
            let _ = self.tx.send(OutCmd::HangUp { tail, mark });
        }
    }

    pub(crate) fn unique(&self, label: &str) -> String {
        let n = self.marks.fetch_add(1, Ordering::Relaxed) + 1;
        format!("{label}-{n}")
    }

    pub(crate) fn send(&self, cmd: OutCmd) {
        let _ = self.tx.send(cmd);
    }
}

/// The writer's check for an utterance that stopped without a mark: `idle` after the last audio,
/// its tail is padded and handed over.
pub(crate) fn idle_check(outbox: &Mutex<Outbox>, idle: Duration) -> Idle {
    let Ok(mut ob) = outbox.lock() else { return Idle::Done };
    if !ob.unmarked {
        return Idle::Done;
    }
    let due = ob.last_audio.map_or_else(Instant::now, |t| t + idle);
    if Instant::now() < due {
        return Idle::Until(due);
    }
    Idle::Ended(ob.end())
}
