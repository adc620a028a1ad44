//! One call's read side, and its set-up: connect, hand the send side to a
//! [`shard`](super::shard) (which sends `connected` and `start`, paces media and ends with
//! `stop`), then read until the server closes. Everything the server sends is validated
//! (cheaply for media), stamps in echoed audio are matched, and `mark`s go straight back through
//! the shard (no playback is modelled). Nothing here aborts the run: how the call went lands in
//! its [`CallTally`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use exotel::event::{MediaFormat, Start};
use exotel::{InboundEvent, OutboundEvent};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, sleep_until, timeout};

use super::Plan;
use super::io::{self, In, Incoming};
use super::shard::{SendEnd, Sender, ShardMsg};
use super::stamp::{Stamp, scan};
use super::stats::{CallTally, Failure, record};
use super::wire::fast_media;
use crate::random_sid;
use crate::validate::{self, BotFrame, rule};

/// How long after `stop` we wait for the server to close.
const CLOSE_WAIT: Duration = Duration::from_secs(2);
/// How long a call whose server went away waits for its shard's counts.
const SHARD_WAIT: Duration = Duration::from_secs(2);
const FROM: &str = "+919876543210";
const TO: &str = "+918047491899";

/// Runs call `index`, whose sending `shard` does. Counts itself live from the handshake to its end.
pub(super) async fn run(plan: Arc<Plan>, index: usize, shard: mpsc::UnboundedSender<ShardMsg>) -> (usize, CallTally) {
    let mut tally = CallTally::default();
    let (input, out) = match io::connect(&plan).await {
        Ok(halves) => halves,
        Err(e) => {
            tally.failure = Some(Failure::Connect(e.to_string()));
            return (index, tally);
        }
    };
    plan.live.fetch_add(1, Ordering::Relaxed);

    let stream_sid = random_sid();
    let call_sid = random_sid();
    let stop_sent = Arc::new(AtomicBool::new(false));
    let (done_tx, done_rx) = oneshot::channel::<SendEnd>();
    let connected = InboundEvent::Connected { protocol: None, version: None }.to_json();
    let sender = Sender {
        index,
        out,
        preamble: vec![connected, start_event(&plan, &stream_sid, &call_sid).to_json()],
        stream_sid: stream_sid.clone(),
        call_sid,
        sequence: 1,
        stop_sent: stop_sent.clone(),
        done: done_tx,
    };
    if shard.send(ShardMsg::Start(Box::new(sender))).is_err() {
        tally.failure = Some(Failure::Send("load generator shard is gone".into()));
    } else {
        let reader = Reader { plan: &plan, index, stream_sid, shard: &shard, decoded: Vec::new(), last_echoed: None };
        if let Err(failure) = reader.run(input, done_rx, &stop_sent, &mut tally).await {
            tally.failure = Some(failure);
        }
    }
    plan.live.fetch_sub(1, Ordering::Relaxed);
    (index, tally)
}

fn start_event(plan: &Plan, stream_sid: &str, call_sid: &str) -> InboundEvent {
    InboundEvent::Start(Start {
        sequence_number: Some(1),
        stream_sid: Some(stream_sid.to_string()),
        call_sid: Some(call_sid.to_string()),
        account_sid: Some(plan.account_sid.clone()),
        from: Some(FROM.into()),
        to: Some(TO.into()),
        custom_parameters: plan.custom_parameters.clone(),
        media_format: MediaFormat {
            encoding: Some("audio/x-raw".into()),
            sample_rate: Some(plan.rate.hz().to_string()),
            bit_rate: Some("16".into()),
            channels: None,
        },
    })
}

struct Reader<'a> {
    plan: &'a Plan,
    index: usize,
    stream_sid: String,
    shard: &'a mpsc::UnboundedSender<ShardMsg>,
    decoded: Vec<u8>,
    /// The highest frame number seen echoed: a frame counts once, at its first echoed block.
    last_echoed: Option<u32>,
}

impl Reader<'_> {
    /// Reads until the server closes (after our `stop`: fine; before: a failure) and collects the
    /// send side's counts.
    async fn run(
        mut self,
        mut input: In,
        mut done_rx: oneshot::Receiver<SendEnd>,
        stop_sent: &AtomicBool,
        t: &mut CallTally,
    ) -> Result<(), Failure> {
        let mut send_end: Option<SendEnd> = None;
        let close_by = sleep_until(Instant::now() + Duration::from_secs(86_400 * 365));
        tokio::pin!(close_by);
        let read_result: Result<(), Failure> = loop {
            tokio::select! {
                biased;
                end = &mut done_rx, if send_end.is_none() => {
                    let end = end.unwrap_or(SendEnd {
                        counts: Default::default(),
                        failure: Some(Failure::Send("load generator shard ended".into())),
                    });
                    let failed = end.failure.is_some();
                    send_end = Some(end);
                    if failed {
                        break Ok(());
                    }
                    // `stop` and our Close are out: give the server a moment to close.
                    close_by.as_mut().reset(Instant::now() + CLOSE_WAIT);
                }
                () = &mut close_by => break Ok(()),
                msg = input.next() => {
                    let stopped = stop_sent.load(Ordering::Acquire);
                    match msg {
                        Ok(Some(Incoming::Close(code, reason))) => {
                            if stopped {
                                break Ok(());
                            }
                            let code = code.map_or("no code".into(), |c| c.to_string());
                            break Err(Failure::ClosedEarly(format!("close {code} {reason:?}")));
                        }
                        Ok(Some(msg)) => self.on_message(msg, t),
                        Ok(None) if stopped => break Ok(()),
                        Ok(None) => break Err(Failure::ClosedEarly("connection ended without a close".into())),
                        Err(_) if stopped => break Ok(()),
                        Err(e) => break Err(Failure::ClosedEarly(e)),
                    }
                }
            }
        };

        // The send side's counts (and its verdict, if it ended first).
        let end = match send_end {
            Some(end) => end,
            None => {
                let _ = self.shard.send(ShardMsg::Gone { index: self.index });
                let lost = SendEnd { counts: Default::default(), failure: None };
                timeout(SHARD_WAIT, done_rx).await.ok().and_then(Result::ok).unwrap_or(lost)
            }
        };
        t.frames_sent += end.counts.frames_sent;
        t.frames_stamped += end.counts.frames_stamped;
        t.frames_sent_total += end.counts.frames_sent_total;
        t.marks_echoed += end.counts.marks_echoed;
        read_result?;
        end.failure.map_or(Ok(()), Err)
    }

    fn on_message(&mut self, msg: Incoming<'_>, t: &mut CallTally) {
        let now_us = self.plan.us(Instant::now());
        let bytes = match msg {
            Incoming::Text(bytes) => bytes,
            Incoming::Binary(b) => {
                for f in validate::check(BotFrame::Binary(b), &self.stream_sid).findings {
                    t.violation(f.rule, || f.detail);
                }
                return;
            }
            Incoming::Ping(payload) => {
                let _ = self.shard.send(ShardMsg::Pong { index: self.index, payload });
                return;
            }
            Incoming::Close(..) | Incoming::Other => return,
        };
        let Ok(text) = std::str::from_utf8(bytes) else {
            t.violation(rule::NOT_JSON, || format!("text frame of {} bytes is not UTF-8", bytes.len()));
            return;
        };
        // Fast path: a media event for our stream with a clean payload. Only the chunk rules are
        // checked; the full validator sees everything else.
        if let Some(b64) = fast_media(text, &self.stream_sid) {
            self.decoded.clear();
            if B64.decode_vec(b64, &mut self.decoded).is_ok() {
                for f in validate::chunk_findings(self.decoded.len()) {
                    t.violation(f.rule, || f.detail);
                }
                self.on_audio(now_us, t);
                return;
            }
        }
        let checked = validate::check(BotFrame::Text(text), &self.stream_sid);
        for f in checked.findings {
            t.violation(f.rule, || f.detail);
        }
        match checked.event {
            Some(OutboundEvent::Media { payload, .. }) => {
                self.decoded = payload;
                self.on_audio(now_us, t);
            }
            Some(OutboundEvent::Mark { name, .. }) => {
                let _ = self.shard.send(ShardMsg::Mark { index: self.index, name });
            }
            Some(OutboundEvent::Clear { .. }) => t.clears_received += 1,
            None => {}
        }
    }

    /// Matches the stamps in a received chunk (in `self.decoded`) to the frames that sent them.
    fn on_audio(&mut self, now_us: u64, t: &mut CallTally) {
        t.chunks_received += 1;
        t.bytes_received += self.decoded.len() as u64;
        let plan = self.plan;
        let me = self.index as u16;
        let (decoded, last_echoed) = (&self.decoded, &mut self.last_echoed);
        plan.hists.with(self.index, |h| {
            let mut newest: Option<Stamp> = None;
            for s in scan(decoded) {
                if s.call != me {
                    t.blocks_foreign += 1;
                    continue;
                }
                if newest.is_none_or(|n| s.frame > n.frame) {
                    newest = Some(s);
                }
                if last_echoed.is_none_or(|l| s.frame > l) {
                    *last_echoed = Some(s.frame);
                    if plan.in_window(s.sent_us) {
                        t.frames_echoed += 1;
                        record(&mut h.echo, now_us.saturating_sub(s.sent_us));
                    }
                }
            }
            if let Some(n) = newest.filter(|n| plan.in_window(n.sent_us)) {
                record(&mut h.newest, now_us.saturating_sub(n.sent_us));
            }
        });
    }
}
