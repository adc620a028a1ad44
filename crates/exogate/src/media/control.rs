//! The agent's handle on its call, and the commands it queues for the session's writer.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::Poll;
use std::time::Duration;

use exotel::{FrameSpec, Framer, SampleRate};
use futures_util::task::AtomicWaker;
use tokio::time::Instant;

use crate::app::Decision;

pub(crate) enum OutCmd {
    /// The stream is known: from now on audio can be framed for it.
    Begin { stream_sid: String, rate: SampleRate },
    /// One Exotel-legal chunk of agent audio.
    Chunk(Vec<u8>),
    /// An utterance began with less than a chunk: the writer starts watching for its end.
    Touch,
    /// End of an utterance: its padded tail (if any), then the mark.
    Mark { tail: Option<Vec<u8>>, name: String },
    /// Barge-in: Exotel's `clear`, our queue dropped, pending marks cancelled.
    Clear,
    /// Exotel itself sent `clear`: drop our queue without answering.
    DropQueued,
    /// Finish queued audio, mark it, close with 1000 once the mark is echoed (or a timeout).
    HangUp { tail: Option<Vec<u8>>, mark: String },
    /// Close at once (policy violations).
    CloseNow { code: u16, reason: &'static str },
}

/// Marks sent to Exotel and not yet echoed, oldest first, so stale echoes after `clear` are ignored.
#[derive(Default)]
pub(crate) struct MarkBook {
    pending: VecDeque<String>,
}

impl MarkBook {
    pub(crate) fn sent(&mut self, name: &str) {
        self.pending.push_back(name.to_string());
    }

    pub(crate) fn cancel_all(&mut self) {
        self.pending.clear();
    }

    /// True if `name` was pending. Marks before it are implied played (Exotel plays in order).
    pub(crate) fn echoed(&mut self, name: &str) -> bool {
        match self.pending.iter().position(|m| m == name) {
            Some(i) => {
                self.pending.drain(..=i);
                true
            }
            None => false,
        }
    }
}

/// Agent output not yet taken by the session: framed audio and commands, in order.
#[derive(Default)]
pub(crate) struct Outbox {
    framer: Option<Framer>,
    last_audio: Option<Instant>,
    /// Audio went out since the last mark: the utterance still needs its end.
    unmarked: bool,
    cmds: VecDeque<OutCmd>,
    /// The session is handling an event and drains the queue afterwards: no wake-up needed.
    busy: bool,
    /// The call is over: nothing more is queued.
    closed: bool,
}

impl Outbox {
    fn push(&mut self, cmd: OutCmd, wake: &Wake) {
        if self.closed {
            return;
        }
        self.cmds.push_back(cmd);
        if !self.busy {
            wake.wake();
        }
    }
}

/// Wakes the session when an agent queues output from another task. Output queued while the
/// session itself is running (the echo agent, every reply to an event) costs no wake-up at all.
#[derive(Default)]
struct Wake {
    waker: AtomicWaker,
    pending: AtomicBool,
}

impl Wake {
    fn wake(&self) {
        if !self.pending.swap(true, Ordering::AcqRel) {
            self.waker.wake();
        }
    }
}

/// The session's side of the queue: one per call, shared with every clone of its [`CallControl`].
#[derive(Default)]
pub(crate) struct Shared {
    outbox: Mutex<Outbox>,
    wake: Wake,
}

impl Shared {
    /// Marks the session busy: output queued from now on waits for [`Shared::take`].
    pub(crate) fn enter(&self) {
        if let Ok(mut ob) = self.outbox.lock() {
            ob.busy = true;
        }
    }

    /// Takes every queued command into `into` (kept empty between calls, so its buffer is reused)
    /// and marks the session idle again.
    pub(crate) fn take(&self, into: &mut VecDeque<OutCmd>) {
        if let Ok(mut ob) = self.outbox.lock() {
            ob.busy = false;
            std::mem::swap(&mut ob.cmds, into);
        }
    }

    /// The call is over: agents that still hold a control can't make the queue grow.
    pub(crate) fn close(&self) {
        if let Ok(mut ob) = self.outbox.lock() {
            ob.closed = true;
            ob.framer = None;
            ob.cmds = VecDeque::new();
        }
    }

    /// Resolves once an agent on another task has queued output.
    pub(crate) async fn queued(&self) {
        poll_fn(|cx| {
            if self.wake.pending.swap(false, Ordering::AcqRel) {
                return Poll::Ready(());
            }
            self.wake.waker.register(cx.waker());
            if self.wake.pending.swap(false, Ordering::AcqRel) { Poll::Ready(()) } else { Poll::Pending }
        })
        .await
    }
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
    shared: Arc<Shared>,
    marks: Arc<AtomicU64>,
    decision: Arc<DecisionSlot>,
}

pub(crate) type DecisionSink = Box<dyn Fn(Decision) + Send + Sync>;

/// Where the bot's hang-up/transfer decision goes (set once the call is known); first one wins.
#[derive(Default)]
struct DecisionSlot {
    sink: OnceLock<DecisionSink>,
    made: AtomicBool,
}

impl CallControl {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared, marks: Arc::new(AtomicU64::new(0)), decision: Arc::default() }
    }

    /// The stream is known: audio from now on is framed for `rate`.
    pub(crate) fn begin(&self, stream_sid: String, rate: SampleRate, chunk_ms: u32) {
        let Ok(mut ob) = self.shared.outbox.lock() else { return };
        ob.framer = Some(Framer::new(FrameSpec::for_duration(rate, chunk_ms)));
        ob.push(OutCmd::Begin { stream_sid, rate }, &self.shared.wake);
    }

    /// Drops audio not yet handed to the writer, then sends `cmd` (a clear of some kind).
    pub(crate) fn drop_pending(&self, cmd: OutCmd) {
        let Ok(mut ob) = self.shared.outbox.lock() else { return };
        if let Some(f) = ob.framer.as_mut() {
            f.clear();
        }
        ob.unmarked = false;
        ob.push(cmd, &self.shared.wake);
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
        let Ok(mut ob) = self.shared.outbox.lock() else { return };
        let wake = &self.shared.wake;
        let Outbox { framer, last_audio, unmarked, cmds, busy, .. } = &mut *ob;
        let Some(framer) = framer.as_mut() else { return };
        *last_audio = Some(Instant::now());
        let before = cmds.len();
        if !*unmarked {
            *unmarked = true;
            cmds.push_back(OutCmd::Touch);
        }
        framer.push(pcm, |chunk| cmds.push_back(OutCmd::Chunk(chunk)));
        if cmds.len() > before && !*busy {
            wake.wake();
        }
    }

    /// Ends the current utterance and marks it. Returns the mark's unique name, which
    /// [`crate::agent::Agent::on_mark_played`] will receive once Exotel has played up to it.
    pub fn mark(&self, label: &str) -> String {
        let name = self.unique(label);
        if let Ok(mut ob) = self.shared.outbox.lock() {
            let tail = ob.end();
            ob.push(OutCmd::Mark { tail, name: name.clone() }, &self.shared.wake);
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
        if let Ok(mut ob) = self.shared.outbox.lock() {
            let tail = ob.end();
            ob.push(OutCmd::HangUp { tail, mark }, &self.shared.wake);
        }
    }

    pub(crate) fn unique(&self, label: &str) -> String {
        let n = self.marks.fetch_add(1, Ordering::Relaxed) + 1;
        format!("{label}-{n}")
    }

    pub(crate) fn send(&self, cmd: OutCmd) {
        if let Ok(mut ob) = self.shared.outbox.lock() {
            ob.push(cmd, &self.shared.wake);
        }
    }
}

/// The writer's check for an utterance that stopped without a mark: `idle` after the last audio,
/// its tail is padded and handed over.
pub(crate) fn idle_check(shared: &Shared, idle: Duration) -> Idle {
    let Ok(mut ob) = shared.outbox.lock() else { return Idle::Done };
    if !ob.unmarked {
        return Idle::Done;
    }
    if !ob.cmds.is_empty() {
        // Chunks the session has not taken yet come first; the tail must not overtake them.
        return Idle::Until(Instant::now());
    }
    let due = ob.last_audio.map_or_else(Instant::now, |t| t + idle);
    if Instant::now() < due {
        return Idle::Until(due);
    }
    Idle::Ended(ob.end())
}
