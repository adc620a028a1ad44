//! The bridge's one task per call: the call's events go to the bot, the bot's messages come back
//! as audio, marks and clears on the call.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::time::{Instant, sleep_until, timeout};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use super::connect::BotSocket;
use super::marks::{BotMarks, FALLBACK};
use super::twilio_rest::{ApiAuth, Registered, register};
use super::wire::{BotMsg, Wire};
use crate::agent::{CallControl, CallEvent, CallEvents};

/// Unreadable messages in a row before the bot counts as broken.
const GARBAGE_RUN: u32 = 20;
/// A bot that does not take a message within this is stuck.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);
/// After `stop`, how long the bot gets to answer our close.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

struct Bridge {
    bot: BotSocket,
    wire: Box<dyn Wire>,
    ctl: CallControl,
    marks: BotMarks,
    /// The bot's socket is still open.
    open: bool,
    bad: u64,
    bad_run: u32,
    full_warned: bool,
    out: Vec<String>,
    pcm: Vec<u8>,
}

pub(crate) async fn run(
    bot: BotSocket,
    wire: Box<dyn Wire>,
    mut events: CallEvents,
    ctl: CallControl,
    api_auth: Option<ApiAuth>,
) {
    let mut b = Bridge {
        bot,
        wire,
        ctl,
        marks: BotMarks::default(),
        open: true,
        bad: 0,
        bad_run: 0,
        full_warned: false,
        out: Vec::new(),
        pcm: Vec::new(),
    };
    let connected = b.wire.connected();
    b.send(connected).await;
    // Reachable through the emulated Twilio API from `start` until the bridge ends.
    let mut _api: Option<Registered> = None;
    loop {
        let due = b.marks.next_due();
        tokio::select! {
            event = events.next() => {
                let Some(event) = event else { break };
                let start = matches!(event, CallEvent::Start(_));
                if b.on_event(event).await {
                    break;
                }
                if let (true, Some(auth), Some((call_sid, account))) = (start, &api_auth, b.wire.twilio_ids()) {
                    _api = Some(register(&call_sid, &account, auth, &b.ctl));
                }
            }
            msg = b.bot.next(), if b.open => b.on_bot(msg).await,
            () = sleep_until(due.unwrap_or_else(Instant::now)), if due.is_some() => {
                for name in b.marks.overdue(Instant::now()) {
                    b.echo(&name).await;
                }
            }
        }
    }
    if b.bad > 0 || b.marks.forced > 0 {
        tracing::debug!(bad_messages = b.bad, marks_forced = b.marks.forced, "bridge ended");
    }
}

impl Bridge {
    async fn send(&mut self, text: String) {
        if !self.open {
            return;
        }
        match timeout(SEND_TIMEOUT, self.bot.send(Message::text(text))).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => self.lost(format!("bot connection lost: {e}")),
            Err(_) => self.lost("bot stopped reading (send timed out)".into()),
        }
    }

    async fn echo(&mut self, name: &str) {
        let text = self.wire.mark(name);
        self.send(text).await;
    }

    fn lost(&mut self, reason: String) {
        if self.open {
            self.open = false;
            self.ctl.fail(reason);
        }
    }

    /// One event of the call; true when the call is over.
    async fn on_event(&mut self, event: CallEvent) -> bool {
        match event {
            CallEvent::Start(info) => {
                let text = self.wire.start(&info);
                self.send(text).await;
            }
            CallEvent::Audio(pcm) => {
                let mut out = std::mem::take(&mut self.out);
                self.wire.audio(&pcm, &mut out);
                for text in out.drain(..) {
                    self.send(text).await;
                }
                self.out = out;
            }
            CallEvent::Dtmf(digit, duration_ms) => {
                let text = self.wire.dtmf(&digit, duration_ms);
                self.send(text).await;
            }
            CallEvent::MarkPlayed(ours) => {
                for name in self.marks.played(&ours) {
                    self.echo(&name).await;
                }
            }
            CallEvent::Clear => {
                if let Some(text) = self.wire.exotel_clear() {
                    self.send(text).await;
                }
                for name in self.marks.all() {
                    self.echo(&name).await;
                }
            }
            CallEvent::End(end) => {
                if self.open {
                    // Marks still pending are not echoed at `stop` (Twilio doesn't either).
                    let text = self.wire.stop(&end);
                    self.send(text).await;
                    let frame = CloseFrame { code: CloseCode::Normal, reason: "call ended".into() };
                    // Our close, then the bot's reply, so the handshake completes (bounded).
                    let _ = timeout(CLOSE_WAIT, async {
                        let _ = self.bot.close(Some(frame)).await;
                        while let Some(Ok(_)) = self.bot.next().await {}
                    })
                    .await;
                    self.open = false;
                }
                return true;
            }
        }
        false
    }

    async fn on_bot(&mut self, msg: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>) {
        match msg {
            Some(Ok(Message::Text(text))) => {
                self.pcm.clear();
                let mut pcm = std::mem::take(&mut self.pcm);
                let parsed = self.wire.parse(text.as_str(), &mut pcm);
                match parsed {
                    BotMsg::Media => {
                        self.bad_run = 0;
                        self.play(&pcm);
                    }
                    BotMsg::Mark(name) => {
                        self.bad_run = 0;
                        let queued = self.ctl.queued();
                        if self.marks.is_empty() && queued.is_zero() {
                            // Nothing is playing: the mark is reached now.
                            self.echo(&name).await;
                        } else {
                            let ours = self.ctl.mark_here("bot");
                            for early in self.marks.push(name, ours, Instant::now() + queued + FALLBACK) {
                                self.echo(&early).await;
                            }
                        }
                    }
                    BotMsg::Clear => {
                        self.bad_run = 0;
                        self.ctl.clear();
                        self.wire.reset_output();
                        for name in self.marks.all() {
                            self.echo(&name).await;
                        }
                    }
                    BotMsg::Bad(reason) => self.garbage(&reason),
                }
                self.pcm = pcm;
            }
            Some(Ok(Message::Binary(b))) => self.garbage(&format!("binary frame of {} bytes", b.len())),
            Some(Ok(Message::Close(frame))) => {
                self.open = false;
                let code = frame.as_ref().map_or(1005, |f| u16::from(f.code));
                // Send tungstenite's queued reply: the stream's own `close` would refuse now.
                let _ = timeout(CLOSE_WAIT, SinkExt::close(&mut self.bot)).await;
                let mut tail = Vec::new();
                self.wire.flush_output(&mut tail);
                self.play(&tail);
                // Like `<Connect>` ending on Twilio: what is queued plays, then the call moves on.
                self.ctl.note(format!("bot closed its socket ({code})"));
                self.ctl.hang_up();
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => self.lost(format!("bot connection lost: {e}")),
            None => self.lost("bot connection lost".into()),
        }
    }

    fn play(&mut self, pcm: &[u8]) {
        if self.ctl.play(pcm).is_err() && !self.full_warned {
            self.full_warned = true;
            tracing::warn!("bot sends audio faster than the call can play it; dropping (counted on the call)");
        }
    }

    fn garbage(&mut self, reason: &str) {
        self.bad += 1;
        self.bad_run += 1;
        if self.bad.is_power_of_two() {
            tracing::warn!(count = self.bad, reason, "bad message from bot skipped");
        }
        if self.bad_run >= GARBAGE_RUN {
            self.lost(format!("bot sent {GARBAGE_RUN} unreadable messages in a row (last: {reason})"));
        }
    }
}
