//! The agent's handle on its call, and the commands it puts on the writer's queue.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use crate::app::Decision;

use exotel::SampleRate;
use tokio::sync::mpsc;

pub(crate) enum OutCmd {
    /// The stream is known: from now on audio can be framed for it.
    Begin {
        stream_sid: String,
        rate: SampleRate,
    },
    Audio(Vec<u8>),
    /// End the utterance (pad its tail) and mark it.
    Mark(String),
    /// Barge-in: Exotel's `clear`, our queue dropped, pending marks cancelled.
    Clear,
    /// Exotel itself sent `clear`: drop our queue without answering.
    DropQueued,
    /// Finish queued audio, mark it, close with 1000 once the mark is echoed (or a timeout).
    HangUp {
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

/// Lets an agent send audio of any length, marks, clear and hang-up. Cheap to clone; never blocks;
/// after the call has ended every method is a no-op.
#[derive(Clone)]
pub struct CallControl {
    tx: mpsc::UnboundedSender<OutCmd>,
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
    pub(crate) fn new(tx: mpsc::UnboundedSender<OutCmd>) -> Self {
        Self { tx, marks: Arc::new(AtomicU64::new(0)), decision: Arc::default() }
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
    pub fn play(&self, pcm: Vec<u8>) {
        if !pcm.is_empty() {
            let _ = self.tx.send(OutCmd::Audio(pcm));
        }
    }

    /// Ends the current utterance and marks it. Returns the mark's unique name, which
    /// [`crate::agent::Agent::on_mark_played`] will receive once Exotel has played up to it.
    pub fn mark(&self, label: &str) -> String {
        let name = self.unique(label);
        let _ = self.tx.send(OutCmd::Mark(name.clone()));
        name
    }

    /// Stops playback: Exotel drops what it has not started playing, we drop what we hold.
    pub fn clear(&self) {
        let _ = self.tx.send(OutCmd::Clear);
    }

    /// Ends the bot's part of the call once queued audio has played: the socket closes with 1000.
    pub fn hang_up(&self) {
        self.decide(Decision::HangUp);
        let mark = self.unique("hangup");
        let _ = self.tx.send(OutCmd::HangUp { mark });
    }

    /// Like [`CallControl::hang_up`], but the Passthru applet after the Voicebot applet then answers
    /// 302, so the flow takes its other branch (e.g. a Connect applet to a human).
    pub fn transfer(&self) {
        self.decide(Decision::Transfer);
        let mark = self.unique("transfer");
        let _ = self.tx.send(OutCmd::HangUp { mark });
    }

    pub(crate) fn unique(&self, label: &str) -> String {
        let n = self.marks.fetch_add(1, Ordering::Relaxed) + 1;
        format!("{label}-{n}")
    }

    pub(crate) fn send(&self, cmd: OutCmd) {
        let _ = self.tx.send(cmd);
    }
}
