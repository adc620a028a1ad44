//! The agent's handle on its call ([`CallControl`]) and the queue between the agent and the
//! session's writer. The queue is bounded by playing time: an agent that floods gets
//! [`QueueFull`] and the dropped audio is counted on the call, never held.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::Poll;
use std::time::Duration;

use exotel::{FrameSpec, Framer, SampleRate};
use futures_util::task::AtomicWaker;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::agent::CallEnd;
use crate::app::{Decision, SessionGuard};

/// Agent audio waiting to be sent (not yet at Exotel) is capped at this much playing time.
/// Bots that send a whole reply at once (Twilio's OpenAI sample, Vocode) need tens of seconds.
pub const MAX_QUEUED_AUDIO: Duration = Duration::from_secs(60);

pub(crate) enum OutCmd {
    /// The stream is known: from now on audio can be framed for it.
    Begin { stream_sid: String, rate: SampleRate },
    /// One Exotel-legal chunk of agent audio, and when its newest audio was handed over.
    Chunk(Vec<u8>, Instant),
    /// An utterance began with less than a chunk: the writer starts watching for its end.
    Touch,
    /// A mark after the audio before it; `tail` (an utterance's padded end) goes first.
    Mark { tail: Option<Vec<u8>>, name: String },
    /// Barge-in: Exotel's `clear`, our queue dropped, pending marks cancelled.
    Clear,
    /// Exotel itself sent `clear`: drop our queue without answering.
    DropQueued,
    /// Finish queued audio, mark it, close with 1000 once the mark is echoed (or a timeout).
    /// `drain`: play at most this much of what is queued (the rest is dropped) before closing.
    HangUp { tail: Option<Vec<u8>>, mark: String, drain: Option<Duration> },
    /// Close at once (policy violations, shutdown).
    CloseNow { code: u16, reason: &'static str },
    /// The agent of generation `.0` gave up on the call (its bot died, it could not start): the
    /// session applies its `on_failure`, unless a newer agent has taken over since.
    Failed(u64, String),
    /// Why the agent ended the call, for the call log (e.g. "bot closed its socket (1000)").
    Note(String),
    /// An entry for the call's timeline (a tool call, a barge-in).
    Record(&'static str, serde_json::Value),
    /// A line of the conversation: who spoke (`caller`/`agent`) and what.
    Transcript(&'static str, String),
    /// A provider's token/audio usage for one answer: summed on the call's row.
    Usage(serde_json::Value),
    /// An operator hung up or transferred the call (the console, the API).
    Operator(crate::live::Operator),
}

/// Agent output not yet taken by the session: framed audio and commands, in order.
#[derive(Default)]
pub(crate) struct Outbox {
    framer: Option<Framer>,
    rate: Option<SampleRate>,
    last_audio: Option<Instant>,
    /// Audio went out since the last mark: the utterance still needs its end.
    unmarked: bool,
    /// Marks placed while part of a chunk is held back: they follow the chunk that completes it.
    deferred: Vec<String>,
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

    /// Audio went out since the last mark, and when the last of it came.
    pub(crate) fn open_utterance(&self) -> Option<Option<Instant>> {
        self.unmarked.then_some(self.last_audio)
    }

    /// Commands the session has not taken yet.
    pub(crate) fn has_cmds(&self) -> bool {
        !self.cmds.is_empty()
    }

    /// Ends the utterance: its padded tail (if any) and the marks that waited for it.
    pub(crate) fn end(&mut self) -> (Option<Vec<u8>>, Vec<String>) {
        self.unmarked = false;
        let tail = self.framer.as_mut().and_then(Framer::finish);
        (tail, std::mem::take(&mut self.deferred))
    }

    fn push_end(&mut self, wake: &Wake) {
        let (tail, marks) = self.end();
        let mut tail = tail;
        for name in marks {
            self.push(OutCmd::Mark { tail: tail.take(), name }, wake);
        }
        if let Some(t) = tail {
            let handed = self.last_audio.unwrap_or_else(Instant::now);
            self.push(OutCmd::Chunk(t, handed), wake);
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

/// Where the agent's audio stands, shared between the agent (any task) and the writer.
pub(crate) struct Position {
    base: Instant,
    /// Bytes the agent queued that have not been sent to Exotel yet.
    pub(crate) unsent: AtomicU64,
    /// When Exotel will have played everything sent, as µs after `base` (the writer's estimate).
    pub(crate) play_until_us: AtomicU64,
    /// Bytes of agent audio Exotel confirmed played (through mark echoes).
    pub(crate) played: AtomicU64,
    /// Agent audio refused because the queue was full.
    pub(crate) dropped_out: AtomicU64,
    /// Caller audio an agent task could not keep up with (see [`crate::agent::task`]).
    pub(crate) dropped_in: AtomicU64,
    /// Agent audio writes that were not an Exotel-legal chunk as they came (re-cut into ones).
    pub(crate) recut: AtomicU64,
    /// Messages from the agent's upstream (a bridged bot) skipped as unreadable.
    pub(crate) bad_upstream: AtomicU64,
}

impl Default for Position {
    fn default() -> Self {
        Self {
            base: Instant::now(),
            unsent: AtomicU64::new(0),
            play_until_us: AtomicU64::new(0),
            played: AtomicU64::new(0),
            dropped_out: AtomicU64::new(0),
            dropped_in: AtomicU64::new(0),
            recut: AtomicU64::new(0),
            bad_upstream: AtomicU64::new(0),
        }
    }
}

impl Position {
    pub(crate) fn set_play_until(&self, t: Instant) {
        self.play_until_us.store(t.saturating_duration_since(self.base).as_micros() as u64, Ordering::Relaxed);
    }

    pub(crate) fn sent(&self, bytes: usize) {
        let _ = self.unsent.fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| Some(u.saturating_sub(bytes as u64)));
    }
}

/// The session's side of the queue: one per call, shared with every clone of its [`CallControl`].
pub(crate) struct Shared {
    outbox: Mutex<Outbox>,
    wake: Wake,
    pub(crate) position: Position,
    ended: watch::Sender<Option<CallEnd>>,
    /// Counts the call as live until the session and every holder of its control (an agent's
    /// task closing its bot socket) are done, so shutdown waits for them.
    _alive: Option<SessionGuard>,
}

impl Default for Shared {
    fn default() -> Self {
        Self::new(None)
    }
}

impl Shared {
    pub(crate) fn new(alive: Option<SessionGuard>) -> Self {
        Self {
            outbox: Mutex::default(),
            wake: Wake::default(),
            position: Position::default(),
            ended: watch::Sender::new(None),
            _alive: alive,
        }
    }

    /// Marks the session busy: output queued from now on waits for [`Shared::take`].
    pub(crate) fn enter(&self) {
        if let Ok(mut ob) = self.outbox.lock() {
            ob.busy = true;
        }
    }

    /// Ends a busy spell begun with [`Shared::enter`] without taking anything: true if output is
    /// waiting (the caller must take it); otherwise the session is idle again and the next output
    /// wakes it.
    pub(crate) fn settle(&self) -> bool {
        match self.outbox.lock() {
            Ok(mut ob) if ob.cmds.is_empty() => {
                ob.busy = false;
                false
            }
            _ => true,
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

    /// The call is over: agents that still hold a control can't make the queue grow, and every
    /// [`CallControl::ended`] resolves. The first end given wins.
    pub(crate) fn close(&self, end: CallEnd) {
        if let Ok(mut ob) = self.outbox.lock() {
            ob.closed = true;
            ob.framer = None;
            ob.deferred = Vec::new();
            ob.cmds = VecDeque::new();
        }
        self.ended.send_if_modified(|e| {
            if e.is_none() {
                *e = Some(end);
                true
            } else {
                false
            }
        });
    }

    /// Runs `f` on the outbox under its lock (the writer's idle check must look and act at once).
    pub(crate) fn with_outbox<T>(&self, f: impl FnOnce(&mut Outbox) -> T) -> Option<T> {
        self.outbox.lock().ok().map(|mut ob| f(&mut ob))
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

/// The label of [`CallControl::tracking_mark`]s.
pub(crate) const TRACKING_MARK: &str = "pos";

/// The queue is full (see [`MAX_QUEUED_AUDIO`]): the audio was dropped and counted on the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the call's playback queue is full ({} s of audio); audio dropped", MAX_QUEUED_AUDIO.as_secs())]
pub struct QueueFull;

/// Lets an agent send audio of any length, marks, clear and hang-up, and see how much is queued
/// and played. Cheap to clone; never blocks; after the call has ended every method is a no-op.
#[derive(Clone)]
pub struct CallControl {
    shared: Arc<Shared>,
    marks: Arc<AtomicU64>,
    decision: Arc<DecisionSlot>,
    /// Which of the call's agents holds this control (a fallback agent gets a new one).
    generation: u64,
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
        Self { shared, marks: Arc::new(AtomicU64::new(0)), decision: Arc::default(), generation: 0 }
    }

    /// The control handed to the call's `generation`-th agent.
    pub(crate) fn for_agent(&self, generation: u64) -> Self {
        Self { generation, ..self.clone() }
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// The stream is known: audio from now on is framed for `rate`.
    pub(crate) fn begin(&self, stream_sid: String, rate: SampleRate, chunk_ms: u32) {
        let Ok(mut ob) = self.shared.outbox.lock() else { return };
        ob.framer = Some(Framer::new(FrameSpec::for_duration(rate, chunk_ms)));
        ob.rate = Some(rate);
        ob.push(OutCmd::Begin { stream_sid, rate }, &self.shared.wake);
    }

    /// Drops audio not yet handed to the writer, then sends `cmd` (a clear of some kind).
    pub(crate) fn drop_pending(&self, cmd: OutCmd) {
        let Ok(mut ob) = self.shared.outbox.lock() else { return };
        if let Some(f) = ob.framer.as_mut() {
            self.shared.position.sent(f.pending_len());
            f.clear();
        }
        ob.deferred.clear();
        ob.unmarked = false;
        ob.push(cmd, &self.shared.wake);
    }

    pub(crate) fn on_decision(&self, sink: DecisionSink) {
        let _ = self.decision.sink.set(sink);
    }

    /// True if this decision is the call's (the first, once the call is known).
    pub(crate) fn decide(&self, d: Decision) -> bool {
        if self.decision.made.swap(true, Ordering::AcqRel) {
            return false;
        }
        match self.decision.sink.get() {
            Some(sink) => {
                sink(d);
                true
            }
            None => false,
        }
    }

    /// True once the agent hung up or transferred.
    pub fn decided(&self) -> bool {
        self.decision.made.load(Ordering::Acquire)
    }

    /// Queues PCM16LE mono at the call's rate. It is cut into Exotel-legal chunks and paced.
    /// Before the stream has started (no `start` yet) audio is dropped silently.
    pub fn play(&self, pcm: &[u8]) -> Result<(), QueueFull> {
        if pcm.is_empty() {
            return Ok(());
        }
        let Ok(mut ob) = self.shared.outbox.lock() else { return Ok(()) };
        let wake = &self.shared.wake;
        let Outbox { framer, rate, last_audio, unmarked, deferred, cmds, busy, .. } = &mut *ob;
        let (Some(framer), Some(rate)) = (framer.as_mut(), *rate) else { return Ok(()) };
        let pos = &self.shared.position;
        let cap = MAX_QUEUED_AUDIO.as_millis() as u64 * rate.bytes_per_ms() as u64;
        if pos.unsent.load(Ordering::Acquire) + pcm.len() as u64 > cap {
            pos.dropped_out.fetch_add(pcm.len() as u64, Ordering::Relaxed);
            return Err(QueueFull);
        }
        pos.unsent.fetch_add(pcm.len() as u64, Ordering::AcqRel);
        let now = Instant::now();
        *last_audio = Some(now);
        if !exotel::framer::is_legal_chunk(pcm.len()) {
            pos.recut.fetch_add(1, Ordering::Relaxed);
        }
        let before = cmds.len();
        if !*unmarked {
            *unmarked = true;
            cmds.push_back(OutCmd::Touch);
        }
        framer.push(pcm, |chunk| {
            cmds.push_back(OutCmd::Chunk(chunk, now));
            // Marks placed inside this chunk's audio follow it.
            for name in deferred.drain(..) {
                cmds.push_back(OutCmd::Mark { tail: None, name });
            }
        });
        if cmds.len() > before && !*busy {
            wake.wake();
        }
        Ok(())
    }

    /// Ends the current utterance and marks it. Returns the mark's unique name, which
    /// [`crate::agent::Agent::on_mark_played`] will receive once Exotel has played up to it.
    pub fn mark(&self, label: &str) -> String {
        let name = self.unique(label);
        if let Ok(mut ob) = self.shared.outbox.lock() {
            ob.push_end(&self.shared.wake);
            ob.push(OutCmd::Mark { tail: None, name: name.clone() }, &self.shared.wake);
        }
        name
    }

    /// A [`CallControl::mark_here`] an agent places only to follow playback (every few hundred
    /// ms): it reaches [`crate::agent::Agent::on_mark_played`] and is counted, but is not written
    /// to the call's timeline.
    pub fn tracking_mark(&self) -> String {
        self.mark_here(TRACKING_MARK)
    }

    /// A mark at the current end of queued audio that does not end the utterance: nothing is
    /// padded, so a bot that marks every few milliseconds adds no silence. If part of a chunk is
    /// still held back, the mark follows the chunk that completes it (or the utterance's end).
    pub fn mark_here(&self, label: &str) -> String {
        let name = self.unique(label);
        if let Ok(mut ob) = self.shared.outbox.lock() {
            let holding = ob.framer.as_ref().is_some_and(|f| f.pending_len() > 0);
            if holding {
                ob.deferred.push(name.clone());
            } else {
                ob.push(OutCmd::Mark { tail: None, name: name.clone() }, &self.shared.wake);
            }
        }
        name
    }

    /// Where a [`CallControl::mark_here`] placed now lands: after this many more bytes of audio
    /// (the rest of the chunk being filled; 0 on a chunk boundary).
    pub fn bytes_to_chunk_end(&self) -> usize {
        let Ok(ob) = self.shared.outbox.lock() else { return 0 };
        match ob.framer.as_ref() {
            Some(f) if f.pending_len() > 0 => f.spec().bytes() - f.pending_len(),
            _ => 0,
        }
    }

    /// Stops playback: Exotel drops what it has not started playing, we drop what we hold.
    pub fn clear(&self) {
        self.drop_pending(OutCmd::Clear);
    }

    /// Ends the bot's part of the call once queued audio has played: the socket closes with 1000.
    pub fn hang_up(&self) {
        self.decide(Decision::HangUp);
        self.end_call("hangup", None);
    }

    /// Hangs up soon: at most `drain` of the audio queued now still plays, the rest is dropped.
    /// For hang-ups that Twilio carries out at once (its REST API), where our pacing would
    /// otherwise hold the caller for a whole queued reply.
    pub fn hang_up_draining(&self, drain: Duration) {
        self.decide(Decision::HangUp);
        self.end_call("hangup", Some(drain));
    }

    /// Like [`CallControl::hang_up`], but the Passthru applet after the Voicebot applet then answers
    /// 302, so the flow takes its other branch (e.g. a Connect applet to a human).
    pub fn transfer(&self) {
        self.transfer_to(None);
    }

    /// A transfer with a target (a number or a flow id) that the Passthru answer reports.
    pub fn transfer_to(&self, target: Option<String>) {
        self.decide(Decision::Transfer(target));
        self.end_call("transfer", None);
    }

    /// [`CallControl::transfer_to`], draining at most `drain` of the queued audio first (see
    /// [`CallControl::hang_up_draining`]).
    pub fn transfer_draining(&self, target: Option<String>, drain: Duration) {
        self.decide(Decision::Transfer(target));
        self.end_call("transfer", Some(drain));
    }

    /// Records why the agent is ending the call (e.g. "bot closed its socket (1000)").
    pub fn note(&self, reason: impl Into<String>) {
        self.send(OutCmd::Note(reason.into()));
    }

    /// Adds an entry to the call's timeline.
    pub fn record(&self, kind: &'static str, detail: serde_json::Value) {
        self.send(OutCmd::Record(kind, detail));
    }

    /// A line of the conversation for the call's transcript (`speaker`: `caller` or `agent`).
    pub fn transcript(&self, speaker: &'static str, text: impl Into<String>) {
        self.send(OutCmd::Transcript(speaker, text.into()));
    }

    /// Usage reported by a provider (token counts): numbers are summed into the call's `usage`.
    pub fn usage(&self, usage: serde_json::Value) {
        self.send(OutCmd::Usage(usage));
    }

    /// The agent cannot go on (its bot died, sent garbage, …): the session applies the agent's
    /// `on_failure` (hang up, transfer, or another agent) and records `reason` on the call.
    pub fn fail(&self, reason: impl Into<String>) {
        self.send(OutCmd::Failed(self.generation, reason.into()));
    }

    /// The agent's upstream sent a message it skipped as unreadable: counted in the call's
    /// `bad_messages` (and the gateway's metric) with Exotel's own.
    pub fn count_bad_upstream(&self) {
        self.shared.position.bad_upstream.fetch_add(1, Ordering::Relaxed);
    }

    /// Audio queued and not yet played: what we hold plus what Exotel is still playing.
    pub fn queued(&self) -> Duration {
        let pos = &self.shared.position;
        let rate = self.shared.outbox.lock().ok().and_then(|ob| ob.rate).unwrap_or_default();
        let unsent = Duration::from_micros(rate.duration_us(pos.unsent.load(Ordering::Acquire) as usize));
        let until = pos.base + Duration::from_micros(pos.play_until_us.load(Ordering::Relaxed));
        unsent + until.saturating_duration_since(Instant::now())
    }

    /// Agent audio Exotel has confirmed played (up to the last echoed mark).
    pub fn played(&self) -> Duration {
        let rate = self.shared.outbox.lock().ok().and_then(|ob| ob.rate).unwrap_or_default();
        Duration::from_micros(rate.duration_us(self.shared.position.played.load(Ordering::Relaxed) as usize))
    }

    /// How the call ended, once it has.
    pub fn end(&self) -> Option<CallEnd> {
        self.shared.ended.borrow().clone()
    }

    /// Resolves when the call ends, whatever the cause (Exotel `stop`, a dropped socket, hang-up,
    /// shutdown, a panic in the agent).
    pub async fn ended(&self) -> CallEnd {
        let mut rx = self.shared.ended.subscribe();
        match rx.wait_for(Option::is_some).await {
            Ok(end) => end.clone().unwrap_or_else(CallEnd::disconnected),
            // The session is gone without a word: the call is over all the same.
            Err(_) => CallEnd::disconnected(),
        }
    }

    fn end_call(&self, label: &str, drain: Option<Duration>) {
        let mark = self.unique(label);
        if let Ok(mut ob) = self.shared.outbox.lock() {
            let (mut tail, marks) = ob.end();
            for name in marks {
                ob.push(OutCmd::Mark { tail: tail.take(), name }, &self.shared.wake);
            }
            ob.push(OutCmd::HangUp { tail, mark, drain }, &self.shared.wake);
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

/// A control whose stream has begun at `rate`, with no session behind it (for agents' tests).
#[cfg(test)]
pub(crate) fn test_control(rate: SampleRate) -> CallControl {
    let ctl = CallControl::new(Arc::new(Shared::default()));
    ctl.begin("s".into(), rate, 200);
    ctl
}

#[cfg(test)]
mod tests {
    use super::*;

    fn control() -> CallControl {
        let ctl = CallControl::new(Arc::new(Shared::default()));
        ctl.begin("s".into(), SampleRate::Hz8000, 200);
        ctl
    }

    fn drain(ctl: &CallControl) -> Vec<String> {
        let mut q = VecDeque::new();
        ctl.shared.take(&mut q);
        q.into_iter()
            .filter_map(|c| match c {
                OutCmd::Chunk(c, _) => Some(format!("chunk{}", c.len())),
                OutCmd::Mark { tail, name } => {
                    Some(format!("{}mark:{name}", tail.map_or(String::new(), |_| "tail+".into())))
                }
                _ => None,
            })
            .collect()
    }

    #[test]
    fn mark_here_waits_for_the_chunk_holding_it() {
        let ctl = control();
        ctl.play(&[0; 4000]).unwrap();
        let m = ctl.mark_here("b");
        assert_eq!(drain(&ctl), ["chunk3200"]);
        ctl.play(&[0; 2400]).unwrap();
        assert_eq!(drain(&ctl), ["chunk3200".to_string(), format!("mark:{m}")]);
    }

    #[test]
    fn mark_here_on_a_chunk_boundary_goes_at_once() {
        let ctl = control();
        ctl.play(&[0; 3200]).unwrap();
        let m = ctl.mark_here("b");
        assert_eq!(drain(&ctl), ["chunk3200".to_string(), format!("mark:{m}")]);
    }

    #[test]
    fn deferred_marks_follow_the_padded_tail() {
        let ctl = control();
        ctl.play(&[0; 1000]).unwrap();
        let m = ctl.mark_here("b");
        let end = ctl.mark("end");
        assert_eq!(drain(&ctl), [format!("tail+mark:{m}"), format!("mark:{end}")]);
    }

    #[test]
    fn queue_is_bounded_and_drops_are_counted() {
        let ctl = control();
        let minute = vec![0u8; 60 * 16_000];
        assert_eq!(ctl.play(&minute), Ok(()));
        assert_eq!(ctl.play(&[0; 320]), Err(QueueFull));
        assert_eq!(ctl.shared.position.dropped_out.load(Ordering::Relaxed), 320);
        assert!(ctl.queued() >= Duration::from_secs(59), "{:?}", ctl.queued());
        ctl.clear();
        // The held-back part is dropped at once; the writer drops the rest when it takes the clear.
        assert!(ctl.shared.position.unsent.load(Ordering::Relaxed) <= 60 * 16_000);
    }

    #[tokio::test]
    async fn ended_resolves_once_with_the_first_end() {
        let ctl = control();
        let waiter = tokio::spawn({
            let ctl = ctl.clone();
            async move { ctl.ended().await }
        });
        ctl.shared.close(CallEnd::new(crate::agent::EndReason::Shutdown));
        ctl.shared.close(CallEnd::disconnected());
        assert_eq!(waiter.await.unwrap().reason, crate::agent::EndReason::Shutdown);
        assert_eq!(ctl.end().map(|e| e.reason), Some(crate::agent::EndReason::Shutdown));
        assert_eq!(ctl.play(&[0; 320]), Ok(()), "a closed call accepts and ignores audio");
    }
}
