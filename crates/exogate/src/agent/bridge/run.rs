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

/// A bot that does not take a message within this is stuck.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);
/// After `stop`, how long the bot gets to answer our close; and how long a bot we give up on
/// gets to take our close frame (one that stopped reading never will).
const CLOSE_WAIT: Duration = Duration::from_secs(1);
/// Bot audio that stops this long ends a reply: the output resampler's held-back tail plays then.
/// Shorter than the writer's idle check (250 ms), so the tail joins the reply before its padding.
/// Not done on every mark: a flush restarts the filter, which would click mid-reply.
const OUTPUT_IDLE: Duration = Duration::from_millis(200);

struct Bridge {
    bot: BotSocket,
    wire: Box<dyn Wire>,
    ctl: CallControl,
    marks: BotMarks,
    /// The bot's socket is still open.
    open: bool,
    /// The bot was sent `start`: only then does it get `stop`.
    started: bool,
    /// Unreadable messages skipped. They never end the call: Pipecat, for one, sends its RTVI
    /// messages (a JSON message per LLM token) over the Twilio and Exotel serializers too.
    bad: u64,
    full_warned: bool,
    /// When the output resampler's tail is due, once the bot's audio has paused.
    flush_at: Option<Instant>,
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
        started: false,
        bad: 0,
        full_warned: false,
        flush_at: None,
        out: Vec::new(),
        pcm: Vec::new(),
    };
    let connected = b.wire.connected();
    b.send(connected).await;
    // Reachable through the emulated Twilio API from `start` until the bridge ends.
    let mut _api: Option<Registered> = None;
    loop {
        let due = b.marks.next_due();
        let flush_at = b.flush_at;
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
            () = sleep_until(flush_at.unwrap_or_else(Instant::now)), if flush_at.is_some() => b.flush_tail(),
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
            Ok(Err(e)) => self.lost(format!("bot connection lost: {e}")).await,
            Err(_) => self.lost("bot stopped reading (send timed out)".into()).await,
        }
    }

    async fn echo(&mut self, name: &str) {
        let text = self.wire.mark(name);
        self.send(text).await;
    }

    /// The bridge gives up on the bot: the call's `on_failure` applies at once, then the bot is
    /// told with a close 1011 rather than left to find a dropped connection (1006). Bounded, as
    /// a bot that stopped reading never takes the frame.
    async fn lost(&mut self, reason: String) {
        if !self.open {
            return;
        }
        self.open = false;
        self.ctl.fail(reason);
        let frame = CloseFrame { code: CloseCode::Error, reason: "exogate gave up on the bot".into() };
        let _ = timeout(CLOSE_WAIT, self.bot.close(Some(frame))).await;
    }

    /// One event of the call; true when the call is over.
    async fn on_event(&mut self, event: CallEvent) -> bool {
        match event {
            CallEvent::Start(info) => {
                let text = self.wire.start(&info);
                self.started = true;
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
                // Marks still pending are not echoed at `stop` (Twilio doesn't either). A bot that
                // never got `start` gets no `stop` either: a call it never heard of just closes.
                if self.open && self.started {
                    let text = self.wire.stop(&end);
                    self.send(text).await;
                }
                if self.open {
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
                        self.play(&pcm);
                        self.flush_at = Some(Instant::now() + OUTPUT_IDLE);
                    }
                    BotMsg::Mark(name) => {
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
                        self.ctl.clear();
                        self.wire.reset_output();
                        self.flush_at = None;
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
                self.flush_tail();
                // Like `<Connect>` ending on Twilio: what is queued plays, then the call moves on.
                self.ctl.note(format!("bot closed its socket ({code})"));
                self.ctl.hang_up();
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => self.lost(format!("bot connection lost: {e}")).await,
            None => self.lost("bot connection lost".into()).await,
        }
    }

    fn play(&mut self, pcm: &[u8]) {
        if self.ctl.play(pcm).is_err() && !self.full_warned {
            self.full_warned = true;
            tracing::warn!("bot sends audio faster than the call can play it; dropping (counted on the call)");
        }
    }

    /// What the output resampler still holds, played (the end of a reply, or of the bot).
    fn flush_tail(&mut self) {
        self.flush_at = None;
        let mut tail = std::mem::take(&mut self.pcm);
        tail.clear();
        self.wire.flush_output(&mut tail);
        self.play(&tail);
        self.pcm = tail;
    }

    /// Skipped and counted, never fatal (docs/twilio.md §2: a bad frame never costs the call).
    fn garbage(&mut self, reason: &str) {
        self.bad += 1;
        self.ctl.count_bad_upstream();
        // Logged at 1, 2, 4, 8…: a bot sending one per LLM token can't flood the log.
        if self.bad.is_power_of_two() {
            tracing::warn!(count = self.bad, reason, "bad message from bot skipped");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::atomic::Ordering;

    use exotel::SampleRate;
    use serde_json::Value;
    use tokio::net::{TcpListener, TcpStream};
    use tokio::sync::mpsc;
    use tokio_tungstenite::WebSocketStream;

    use super::*;
    use crate::agent::task::test_events;
    use crate::agent::{CallEnd, CallInfo, EndReason};
    use crate::media::{OutCmd, test_control};

    /// A bridge over a real socket, with the bot's end of it and the call's control.
    struct Harness {
        events: mpsc::Sender<CallEvent>,
        bot: WebSocketStream<TcpStream>,
        ctl: CallControl,
        bridge: tokio::task::JoinHandle<()>,
    }

    async fn harness(wire: Box<dyn Wire>, rate: SampleRate) -> Harness {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}/", listener.local_addr().unwrap());
        let dial =
            tokio_tungstenite::connect_async_with_config(url, Some(super::super::connect::socket_config()), true);
        let (client, server) =
            tokio::join!(dial, async { tokio_tungstenite::accept_async(listener.accept().await.unwrap().0).await });
        let ctl = test_control(rate);
        let (tx, events) = test_events(&ctl);
        let bridge = tokio::spawn(run(client.unwrap().0, wire, events, ctl.clone(), None));
        Harness { events: tx, bot: server.unwrap(), ctl, bridge }
    }

    fn info(rate: SampleRate) -> CallEvent {
        CallEvent::Start(Box::new(CallInfo {
            call_sid: Some("c1".into()),
            stream_sid: "s1".into(),
            sample_rate: rate,
            ..CallInfo::default()
        }))
    }

    /// The bot's view until the bridge closes: the events it got, and the close code.
    async fn read_to_close(bot: &mut WebSocketStream<TcpStream>) -> (Vec<String>, Option<u16>) {
        let mut events = Vec::new();
        let read = async {
            while let Some(Ok(msg)) = bot.next().await {
                match msg {
                    Message::Text(t) => {
                        let v: Value = serde_json::from_str(t.as_str()).unwrap();
                        events.push(v["event"].as_str().unwrap_or_default().to_string());
                    }
                    Message::Close(f) => return f.map(|f| u16::from(f.code)),
                    _ => {}
                }
            }
            None
        };
        let code = timeout(Duration::from_secs(5), read).await.expect("the bridge closes");
        (events, code)
    }

    fn failures(ctl: &CallControl) -> Vec<String> {
        let mut q = VecDeque::new();
        ctl.shared().take(&mut q);
        q.into_iter().filter_map(|c| if let OutCmd::Failed(_, why) = c { Some(why) } else { None }).collect()
    }

    #[tokio::test]
    async fn unreadable_messages_are_counted_and_never_end_the_call() {
        for wire in [
            Box::new(super::super::twilio_wire::TwilioWire::new(None)) as Box<dyn Wire>,
            Box::new(super::super::exotel_wire::ExotelWire::new(None)),
        ] {
            let mut h = harness(wire, SampleRate::Hz8000).await;
            h.events.send(info(SampleRate::Hz8000)).await.unwrap();
            // What Pipecat sends for every LLM token, and every other kind of junk, 100 times.
            for i in 0..100 {
                let msg = match i % 4 {
                    0 => Message::text(r#"{"label":"rtvi-ai","type":"bot-llm-text","data":{"text":"Hi"}}"#),
                    1 => Message::text(r#"{"event":"hello"}"#),
                    2 => Message::binary(vec![1, 2, 3]),
                    _ => Message::text(r#"{"event":"media","media":{"payload":"!!"}}"#),
                };
                h.bot.send(msg).await.unwrap();
            }
            // Still bridged: a mark with nothing playing is echoed at once.
            h.bot.send(Message::text(r#"{"event":"mark","mark":{"name":"still-here"}}"#)).await.unwrap();
            let echoed = timeout(Duration::from_secs(5), async {
                while let Some(Ok(msg)) = h.bot.next().await {
                    if msg.to_text().is_ok_and(|t| t.contains("still-here")) {
                        return true;
                    }
                }
                false
            })
            .await;
            assert_eq!(echoed, Ok(true));
            assert_eq!(h.ctl.shared().position.bad_upstream.load(Ordering::Relaxed), 100);
            assert!(failures(&h.ctl).is_empty());
            h.events.send(CallEvent::End(CallEnd::new(EndReason::Shutdown))).await.unwrap();
            let (events, code) = read_to_close(&mut h.bot).await;
            assert_eq!((events.last().map(String::as_str), code), (Some("stop"), Some(1000)));
            h.bridge.await.unwrap();
        }
    }

    #[tokio::test]
    async fn a_bot_that_never_got_start_gets_no_stop_just_the_close() {
        let mut h = harness(Box::new(super::super::twilio_wire::TwilioWire::new(None)), SampleRate::Hz8000).await;
        h.events.send(CallEvent::End(CallEnd::new(EndReason::NoStart))).await.unwrap();
        let (events, code) = read_to_close(&mut h.bot).await;
        assert_eq!(events, ["connected"]);
        assert_eq!(code, Some(1000));
        h.bridge.await.unwrap();
    }

    #[tokio::test]
    async fn a_bot_given_up_on_is_closed_with_1011() {
        let h = harness(Box::new(super::super::exotel_wire::ExotelWire::new(None)), SampleRate::Hz8000).await;
        h.events.send(info(SampleRate::Hz8000)).await.unwrap();
        // Over the 4 MiB limit: the bridge can't read the bot any more and gives up on it.
        let huge = format!(r#"{{"event":"media","media":{{"payload":"{}"}}}}"#, "A".repeat(5 << 20));
        let (mut tx, mut rx) = h.bot.split();
        let sending = tokio::spawn(async move {
            let _ = tx.send(Message::text(huge)).await;
        });
        let code = timeout(Duration::from_secs(5), async {
            while let Some(Ok(msg)) = rx.next().await {
                if let Message::Close(f) = msg {
                    return f.map(|f| u16::from(f.code));
                }
            }
            None
        })
        .await
        .expect("the bridge closes");
        assert_eq!(code, Some(1011));
        let why = failures(&h.ctl);
        assert!(why.iter().any(|w| w.contains("connection lost")), "{why:?}");
        sending.abort();
        h.events.send(CallEvent::End(CallEnd::new(EndReason::Shutdown))).await.unwrap();
        h.bridge.await.unwrap();
    }

    #[tokio::test]
    async fn the_resampler_tail_plays_once_the_bots_audio_pauses() {
        let mut h = harness(Box::new(super::super::twilio_wire::TwilioWire::new(None)), SampleRate::Hz16000).await;
        h.events.send(info(SampleRate::Hz16000)).await.unwrap();
        // 20 ms of μ-law: 640 bytes at 16 kHz once the filter's tail is out.
        let payload = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [0x55u8; 160]);
        h.bot.send(Message::text(format!(r#"{{"event":"media","media":{{"payload":"{payload}"}}}}"#))).await.unwrap();
        let unsent = || h.ctl.shared().position.unsent.load(Ordering::Relaxed);
        let deadline = Instant::now() + Duration::from_secs(2);
        while unsent() == 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(unsent() < 640, "the filter holds some back at first: {}", unsent());
        tokio::time::sleep(OUTPUT_IDLE + Duration::from_millis(150)).await;
        assert_eq!(unsent(), 640, "all of it once the bot paused");
        h.events.send(CallEvent::End(CallEnd::new(EndReason::Shutdown))).await.unwrap();
        h.bridge.await.unwrap();
    }
}
