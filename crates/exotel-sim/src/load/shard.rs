//! The send side of many calls in one task: a heap of per-call deadlines, one timer for the
//! lot. Each call keeps its own phase (frames are spread over the frame period as real calls'
//! are), but the runtime handles one wake-up per millisecond per shard instead of one per frame,
//! and sending never touches a socket's read side.
//!
//! Writes never wait: a socket that cannot take a frame right now keeps it queued and is retried
//! every millisecond until it can, or fails the call after [`SEND_TIMEOUT`].

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use exotel::InboundEvent;
use exotel::event::{Mark, Stop, StopReason};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, sleep_until};

use super::Plan;
use super::io::Out;
use super::stamp::{Stamp, stamp_frame};
use super::stats::{Failure, Hists, record};
use super::wire::MediaEncoder;
use super::ws::{HEADROOM, MaskKeys};

/// A call whose socket has taken nothing for this long has failed.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);
/// Retry period for a call with unsent data.
const RETRY: Duration = Duration::from_millis(1);

/// What the send side counted, handed back to the call when it ends.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct SendCounts {
    /// In the steady window.
    pub frames_sent: u64,
    pub frames_stamped: u64,
    pub frames_sent_total: u64,
    pub marks_echoed: u64,
}

/// How the send side ended: `failure` is `None` once `stop` and the Close went out.
#[derive(Debug)]
pub(super) struct SendEnd {
    pub counts: SendCounts,
    pub failure: Option<Failure>,
}

/// One call's send side, handed over by the call once its socket is up.
pub(super) struct Sender {
    pub index: usize,
    pub out: Out,
    /// `connected` and `start`, sent first.
    pub preamble: Vec<String>,
    pub stream_sid: String,
    pub call_sid: String,
    /// The last `sequence_number` used.
    pub sequence: u64,
    /// Set just before `stop` is queued: from then on a close by the server is the normal end.
    pub stop_sent: Arc<AtomicBool>,
    pub done: oneshot::Sender<SendEnd>,
}

pub(super) enum ShardMsg {
    Start(Box<Sender>),
    /// The server sent a mark: echo it now.
    Mark {
        index: usize,
        name: String,
    },
    /// The server pinged (our own client only; tungstenite answers its pings itself).
    Pong {
        index: usize,
        payload: Vec<u8>,
    },
    /// The call's read side has ended (the server went away): stop sending.
    Gone {
        index: usize,
    },
}

struct Live {
    s: Sender,
    encoder: MediaEncoder,
    frame: u32,
    counts: SendCounts,
    stalled_since: Option<Instant>,
    /// `stop` is queued (a local copy of `s.stop_sent`, which lives on the reader's cache line).
    stopped: bool,
    /// The Close is queued.
    closing: bool,
}

impl Live {
    fn next_seq(&mut self) -> Option<u64> {
        self.s.sequence += 1;
        Some(self.s.sequence)
    }
}

/// What to send.
enum Item {
    Text(String),
    Close,
    Pong(Vec<u8>),
}

pub(super) struct Shard {
    plan: Arc<Plan>,
    rx: mpsc::UnboundedReceiver<ShardMsg>,
    /// Calls of this shard by `index / shards`.
    calls: Vec<Option<Live>>,
    shards: usize,
    /// Calls handed over and not yet ended.
    live: usize,
    /// (next frame due, slot). Entries of ended calls are skipped when they come up.
    due: BinaryHeap<Reverse<(Instant, usize)>>,
    /// Slots with unsent data.
    stalled: Vec<usize>,
    /// Buffers reused for every frame: frames are built and written one at a time.
    pcm: Vec<u8>,
    wire: Vec<u8>,
    keys: MaskKeys,
    send_lag: Hists,
}

impl Shard {
    pub(super) fn new(
        plan: Arc<Plan>,
        rx: mpsc::UnboundedReceiver<ShardMsg>,
        shard: usize,
        shards: usize,
        calls: usize,
    ) -> Self {
        let pcm = vec![0; plan.frame_bytes];
        let seed = plan.epoch.elapsed().as_nanos() as u64 ^ (shard as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        Self {
            plan,
            rx,
            calls: (0..calls.div_ceil(shards)).map(|_| None).collect(),
            shards,
            live: 0,
            due: BinaryHeap::new(),
            stalled: Vec::new(),
            pcm,
            wire: Vec::with_capacity(4096),
            keys: MaskKeys::new(seed),
            send_lag: Hists::default(),
        }
    }

    fn slot(&self, index: usize) -> usize {
        index / self.shards
    }

    /// Runs until every call has been handed over and has ended.
    pub(super) async fn run(mut self) {
        let mut armed = Instant::now();
        let sleep = sleep_until(armed);
        tokio::pin!(sleep);
        let mut open = true;
        loop {
            if !open && self.live == 0 {
                break;
            }
            let next = self.due.peek().map(|Reverse((at, _))| *at);
            let retry = (!self.stalled.is_empty()).then(|| Instant::now() + RETRY);
            let wake = match (next, retry) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            // Re-arming costs a timer-wheel update: only when the deadline moved.
            if let Some(wake) = wake.filter(|w| *w != armed) {
                armed = wake;
                sleep.as_mut().reset(wake);
            }
            tokio::select! {
                biased;
                msg = self.rx.recv(), if open => match msg {
                    Some(msg) => self.on_msg(msg),
                    None => open = false,
                },
                () = &mut sleep, if wake.is_some() => self.tick(),
            }
        }
        let lag = std::mem::take(&mut self.send_lag);
        self.plan.hists.with(0, |h| {
            let _ = h.send_lag.add(&lag.send_lag);
        });
    }

    fn on_msg(&mut self, msg: ShardMsg) {
        let now = Instant::now();
        match msg {
            ShardMsg::Start(s) => {
                let slot = self.slot(s.index);
                let mut live = Live {
                    encoder: MediaEncoder::new(&s.stream_sid),
                    s: *s,
                    frame: 0,
                    counts: SendCounts::default(),
                    stalled_since: None,
                    stopped: false,
                    closing: false,
                };
                let preamble = std::mem::take(&mut live.s.preamble);
                self.calls[slot] = Some(live);
                self.live += 1;
                for text in preamble {
                    self.send(slot, Item::Text(text), now);
                }
                // The first frame right after `start`; the call's phase is set from here on.
                self.due.push(Reverse((now, slot)));
            }
            ShardMsg::Mark { index, name } => {
                let slot = self.slot(index);
                let Some(live) = self.calls[slot].as_mut() else { return };
                if live.stopped {
                    return;
                }
                let echo = InboundEvent::Mark(Mark {
                    sequence_number: live.next_seq(),
                    stream_sid: Some(live.s.stream_sid.clone()),
                    name,
                });
                live.counts.marks_echoed += 1;
                self.send(slot, Item::Text(echo.to_json()), now);
            }
            ShardMsg::Pong { index, payload } => self.send(self.slot(index), Item::Pong(payload), now),
            ShardMsg::Gone { index } => {
                let slot = self.slot(index);
                self.end(slot, Some(Failure::ClosedEarly("read side ended".into())));
            }
        }
    }

    fn tick(&mut self) {
        let now = Instant::now();
        for slot in std::mem::take(&mut self.stalled) {
            self.flush(slot, now);
        }
        let media_end = self.plan.media_end;
        while let Some(&Reverse((at, slot))) = self.due.peek() {
            if at > now {
                break;
            }
            self.due.pop();
            if self.calls[slot].is_none() {
                continue;
            }
            if at >= media_end {
                self.stop(slot, now);
                continue;
            }
            // A late tick sends every frame that is due (catching up, not dropping audio).
            self.send_media(slot, at, now);
            self.due.push(Reverse((at + self.plan.frame, slot)));
        }
    }

    /// Sends the next media event of the call in `slot`, stamped and counted. The JSON is
    /// written straight into the frame buffer behind room for the header.
    fn send_media(&mut self, slot: usize, scheduled: Instant, now: Instant) {
        let plan = &*self.plan;
        let Some(live) = self.calls[slot].as_mut() else { return };
        let k = live.frame;
        let bytes = plan.frame_bytes;
        let from = (k as usize * bytes) % plan.audio.len();
        self.pcm.copy_from_slice(&plan.audio[from..from + bytes]);
        let sent_us = plan.us(now);
        let stamp = Stamp { call: live.s.index as u16, frame: k, sent_us };
        let stamps = stamp_frame(&mut self.pcm, u64::from(k) * bytes as u64, stamp);
        let seq = live.next_seq().unwrap_or_default();
        self.wire.clear();
        self.wire.resize(HEADROOM, 0);
        let timestamp = u64::from(k) * u64::from(plan.frame_ms);
        live.encoder.media_into(&mut self.wire, seq, u64::from(k) + 1, timestamp, &self.pcm);
        live.frame += 1;
        live.counts.frames_sent_total += 1;
        if plan.in_window(sent_us) {
            live.counts.frames_sent += 1;
            live.counts.frames_stamped += u64::from(stamps > 0);
            record(&mut self.send_lag.send_lag, now.saturating_duration_since(scheduled).as_micros() as u64);
        }
        let sent = live.s.out.text_in_place(&mut self.wire, &mut self.keys);
        self.after_write(slot, sent, now);
    }

    /// `stop`, then Close 1000; the call's read side waits for the server's close.
    fn stop(&mut self, slot: usize, now: Instant) {
        let Some(live) = self.calls[slot].as_mut() else { return };
        let stop = InboundEvent::Stop(Stop {
            sequence_number: live.next_seq(),
            stream_sid: Some(live.s.stream_sid.clone()),
            call_sid: Some(live.s.call_sid.clone()),
            account_sid: Some(self.plan.account_sid.clone()),
            reason: StopReason::CallEnded,
        });
        live.stopped = true;
        live.s.stop_sent.store(true, Ordering::Release);
        self.send(slot, Item::Text(stop.to_json()), now);
        self.send(slot, Item::Close, now);
    }

    fn send(&mut self, slot: usize, item: Item, now: Instant) {
        let Some(live) = self.calls[slot].as_mut() else { return };
        let (keys, wire) = (&mut self.keys, &mut self.wire);
        let sent = match item {
            Item::Text(text) => live.s.out.text(text, keys, wire),
            Item::Close => {
                live.closing = true;
                live.s.out.close(keys, wire)
            }
            Item::Pong(payload) => live.s.out.pong(&payload, keys, wire),
        };
        self.after_write(slot, sent, now);
    }

    fn flush(&mut self, slot: usize, now: Instant) {
        let Some(live) = self.calls[slot].as_mut() else { return };
        let sent = live.s.out.retry();
        self.after_write(slot, sent, now);
    }

    /// Bookkeeping after a write attempt: a stalled call is retried every tick, a failed one
    /// ends, a stopped one whose last bytes are out is done.
    fn after_write(&mut self, slot: usize, sent: Result<bool, String>, now: Instant) {
        let Some(live) = self.calls[slot].as_mut() else { return };
        let stopped = live.stopped;
        match sent {
            Ok(true) => {
                live.stalled_since = None;
                if live.closing {
                    // `stop` and the Close are out: this call's send side is done.
                    self.end(slot, None);
                }
            }
            Ok(false) => {
                let since = *live.stalled_since.get_or_insert(now);
                if now.saturating_duration_since(since) > SEND_TIMEOUT {
                    let why = format!("the socket took nothing for {} s", SEND_TIMEOUT.as_secs());
                    self.end(slot, Some(Failure::Send(why)));
                } else if !self.stalled.contains(&slot) {
                    self.stalled.push(slot);
                }
            }
            // After our stop the server may close first; that is the normal end.
            Err(_) if stopped => self.end(slot, None),
            Err(e) => self.end(slot, Some(Failure::ClosedEarly(format!("send failed: {e}")))),
        }
    }

    fn end(&mut self, slot: usize, failure: Option<Failure>) {
        if let Some(live) = self.calls[slot].take() {
            self.live -= 1;
            let _ = live.s.done.send(SendEnd { counts: live.counts, failure });
        }
    }
}
