//! An agent written as one async task: the session's callbacks become a bounded stream of
//! [`CallEvent`]s, and the task answers through its [`CallControl`]. A bridge or an AI pipeline is
//! then a plain loop over `events.next()` and its own sockets.
//!
//! The session polls the task on its own task while the call lasts: caller audio reaches the task,
//! and the task's answer reaches the caller, with no wake-up of another thread in between. When the
//! session is done, what is left of the task (telling a bot `stop`, closing its socket) runs on a
//! task of its own.
//!
//! The stream is bounded: a task that falls behind loses caller audio (counted on the call as
//! `dropped_in`), never the session's memory. The end of the call always arrives, as the last
//! event, even when the queue was full.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures_util::FutureExt;
use tokio::sync::mpsc;

use super::{Agent, AgentTask, CallControl, CallEnd, CallInfo};

/// Events queued for a task before caller audio is dropped: ~25 s of Exotel's 100 ms frames.
pub const EVENT_QUEUE: usize = 256;

/// What happens on the call, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum CallEvent {
    /// Boxed: the call's details are large and come once; every queue slot is sized by the largest event.
    Start(Box<CallInfo>),
    /// Caller audio: PCM16LE mono at the call's rate.
    Audio(Vec<u8>),
    /// A key, and how long it was held in ms (when Exotel said).
    Dtmf(String, Option<u64>),
    /// Exotel played everything before this mark (a name [`CallControl::mark`] returned).
    MarkPlayed(String),
    /// Exotel itself sent `clear`.
    Clear,
    /// The last event.
    End(CallEnd),
}

// Queue blocks are sized by the largest event: keep events small (the big one is boxed).
const _: () = assert!(std::mem::size_of::<CallEvent>() <= 48);

/// The task's side: the call's events, then `None` after [`CallEvent::End`].
pub struct CallEvents {
    rx: mpsc::Receiver<CallEvent>,
    ctl: CallControl,
    done: bool,
}

impl CallEvents {
    pub async fn next(&mut self) -> Option<CallEvent> {
        if self.done {
            return None;
        }
        let event = tokio::select! {
            biased;
            e = self.rx.recv() => e,
            end = self.ctl.ended() => {
                // Deliver what was queued before the end, then the end itself.
                match self.rx.try_recv() {
                    Ok(e) => Some(e),
                    Err(_) => Some(CallEvent::End(end)),
                }
            }
        };
        let event = match event {
            Some(e) => e,
            None => CallEvent::End(self.ctl.ended().await),
        };
        if matches!(event, CallEvent::End(_)) {
            self.done = true;
        }
        Some(event)
    }
}

/// The session's side: forwards callbacks into the task's queue.
struct Forwarder {
    tx: mpsc::Sender<CallEvent>,
    ctl: CallControl,
    /// Set once the session is done with this agent: its task ending is then no failure.
    retired: Arc<AtomicBool>,
    /// The task's body, until the session takes it to poll.
    task: Option<AgentTask>,
}

impl Drop for Forwarder {
    /// A forwarder nobody polled (used outside a media session) still runs its task.
    fn drop(&mut self) {
        if let (Some(task), Ok(rt)) = (self.task.take(), tokio::runtime::Handle::try_current()) {
            rt.spawn(task);
        }
    }
}

impl Forwarder {
    fn forward(&self, event: CallEvent) {
        if let Err(mpsc::error::TrySendError::Full(e)) = self.tx.try_send(event) {
            let pos = &self.ctl.shared().position;
            match e {
                CallEvent::Audio(pcm) => {
                    pos.dropped_in.fetch_add(pcm.len() as u64, Ordering::Relaxed);
                }
                other => {
                    tracing::warn!(event = ?std::mem::discriminant(&other), "agent task is not keeping up; event dropped")
                }
            }
        }
    }
}

impl Agent for Forwarder {
    fn on_start(&mut self, call: &CallInfo, _ctl: &CallControl) {
        self.forward(CallEvent::Start(Box::new(call.clone())));
    }
    fn on_audio(&mut self, pcm: &[u8], _ctl: &CallControl) {
        self.forward(CallEvent::Audio(pcm.to_vec()));
    }
    fn on_dtmf(&mut self, digit: &str, duration_ms: Option<u64>, _ctl: &CallControl) {
        self.forward(CallEvent::Dtmf(digit.to_string(), duration_ms));
    }
    fn on_mark_played(&mut self, name: &str, _ctl: &CallControl) {
        self.forward(CallEvent::MarkPlayed(name.to_string()));
    }
    fn on_clear(&mut self, _ctl: &CallControl) {
        self.forward(CallEvent::Clear);
    }
    fn on_end(&mut self, end: &CallEnd) {
        self.retired.store(true, Ordering::Release);
        // If the queue is full the task still gets the end through `ctl.ended()`.
        let _ = self.tx.try_send(CallEvent::End(end.clone()));
    }
    fn take_task(&mut self) -> Option<AgentTask> {
        self.task.take()
    }
}

/// A task's event queue with no session behind it (for agents' tests): send events through the
/// sender as the session would.
#[cfg(test)]
pub(crate) fn test_events(ctl: &CallControl) -> (mpsc::Sender<CallEvent>, CallEvents) {
    let (tx, rx) = mpsc::channel(EVENT_QUEUE);
    (tx, CallEvents { rx, ctl: ctl.clone(), done: false })
}

/// Runs `body` as the call's agent: an async task fed the call's events. If the task returns (or
/// panics) while the call is still up and it has neither hung up nor transferred, that is an agent
/// failure: the session applies `on_failure`.
pub fn spawn<F, Fut>(ctl: &CallControl, body: F) -> Box<dyn Agent>
where
    F: FnOnce(CallEvents, CallControl) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(EVENT_QUEUE);
    let events = CallEvents { rx, ctl: ctl.clone(), done: false };
    let fut = body(events, ctl.clone());
    let watch = ctl.clone();
    let retired = Arc::new(AtomicBool::new(false));
    let done = retired.clone();
    let task = Box::pin(async move {
        let outcome = AssertUnwindSafe(fut).catch_unwind().await;
        if !done.load(Ordering::Acquire) && watch.end().is_none() && !watch.decided() {
            watch.fail(if outcome.is_err() { "agent task panicked" } else { "agent task ended" });
        }
    });
    Box::new(Forwarder { tx, ctl: ctl.clone(), retired, task: Some(task) })
}
