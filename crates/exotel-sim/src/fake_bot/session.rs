//! One connection: the (possibly delayed) handshake, then one loop that reads the peer, answers
//! through the [`Responder`], keeps the hang-up/death deadline, and records everything.

use std::sync::Arc;
use std::time::Duration;

use exotel::SampleRate;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, sleep_until, timeout};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use super::format::Format;
use super::responder::{Out, Responder};
use super::wire::{self, Encoder, Inbound};
use super::{Behavior, BotConfig, BotProtocol, SessionHandle};

type Ws = WebSocketStream<TcpStream>;
/// What one read of the socket gives.
type Incoming = Option<Result<Message, WsError>>;

/// After the bot closes, how long it keeps reading for the peer's close reply (and records).
const CLOSE_GRACE: Duration = Duration::from_secs(5);
/// After `stop`, how long the bot waits for the peer to close (Exotel and Twilio both close
/// right after `stop`).
const STOP_GRACE: Duration = Duration::from_secs(10);
/// After dying, how long the dead bot's socket swallows the peer's in-flight bytes, so the
/// kernel ends it with a FIN (a clean EOF) rather than a reset for unread data.
const DIE_LINGER: Duration = Duration::from_secs(2);
/// No close code in the peer's close frame (RFC 6455 §7.4.1).
const NO_STATUS: u16 = 1005;

// tungstenite's upgrade callback fixes the (large) error type; nothing here can shrink it.
#[allow(clippy::result_large_err)]
pub(super) async fn serve(tcp: TcpStream, config: Arc<BotConfig>, handle: SessionHandle) {
    if !config.accept_delay.is_zero() {
        tokio::time::sleep(config.accept_delay).await;
    }
    let (mut target, mut headers) = (String::new(), Vec::new());
    let upgraded = tokio_tungstenite::accept_hdr_async(tcp, |req: &Request, resp: Response| {
        target = req.uri().to_string();
        headers = req
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_ascii_lowercase(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect();
        Ok(resp)
    })
    .await;
    let ws = match upgraded {
        Ok(ws) => ws,
        Err(e) => return handle.end(format!("handshake-failed: {e}")),
    };
    handle.update(|s| {
        s.path_and_query = target;
        s.headers = headers;
    });
    if config.behavior == Behavior::Silent {
        // Hold the socket, unread, until the bot shuts down (which aborts this task).
        let _held = ws;
        return std::future::pending().await;
    }
    let reason = Conversation::new(&config, &handle).run(ws).await;
    handle.end(reason);
}

/// How the read loop goes on after one step.
enum Next {
    Continue,
    HangUp,
    Die,
    /// The peer is done with the call (`stop`); wait for its close.
    Stopped,
    Ended(String),
}

struct Conversation<'a> {
    protocol: BotProtocol,
    behavior: Behavior,
    handle: &'a SessionHandle,
    /// Set by `start`: the stream's encoder and the behavior's state.
    live: Option<(Encoder, Responder)>,
    /// Hang-up or death time, counted from `start`.
    deadline: Option<(Instant, Next)>,
}

/// The stream id for a `start` that carries none (older Exotel docs show such a `start`).
const FALLBACK_SID: &str = "fake-bot-stream";

impl<'a> Conversation<'a> {
    fn new(config: &BotConfig, handle: &'a SessionHandle) -> Self {
        Self { protocol: config.protocol, behavior: config.behavior.clone(), handle, live: None, deadline: None }
    }

    async fn run(mut self, mut ws: Ws) -> String {
        loop {
            let wake = self.next_wake();
            let step = tokio::select! {
                msg = ws.next() => self.on_message(msg, &mut ws).await,
                () = sleep_until_opt(wake) => self.on_timer(&mut ws).await,
            };
            match step {
                Next::Continue => {}
                Next::HangUp => return self.hang_up(ws).await,
                Next::Die => return self.die(ws).await,
                Next::Stopped => return self.after_stop(ws).await,
                Next::Ended(reason) => return reason,
            }
        }
    }

    /// After `stop` the bot sends nothing more; it records until the peer closes.
    async fn after_stop(&self, mut ws: Ws) -> String {
        let give_up = Instant::now() + STOP_GRACE;
        loop {
            let Ok(msg) = tokio::time::timeout_at(give_up, ws.next()).await else {
                let _ = timeout(CLOSE_GRACE, ws.close(Some(normal_close("stop without close")))).await;
                return "stop-timeout".into();
            };
            if let Some(reason) = self.on_peer_end(&msg, &mut ws).await {
                return reason;
            }
            if let Some(Ok(msg)) = msg {
                self.record(&msg);
            }
        }
    }

    fn next_wake(&self) -> Option<Instant> {
        let paced = self.live.as_ref().and_then(|(_, responder)| responder.next_wake());
        let deadline = self.deadline.as_ref().map(|(at, _)| *at);
        match (paced, deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    async fn on_timer(&mut self, ws: &mut Ws) -> Next {
        let now = Instant::now();
        if self.deadline.as_ref().is_some_and(|(at, _)| *at <= now) {
            if let Some((_, next)) = self.deadline.take() {
                return next;
            }
        }
        let outs = self.live.as_mut().map(|(_, responder)| responder.on_wake(now)).unwrap_or_default();
        self.send(ws, outs).await
    }

    async fn on_message(&mut self, msg: Incoming, ws: &mut Ws) -> Next {
        if let Some(reason) = self.on_peer_end(&msg, ws).await {
            return Next::Ended(reason);
        }
        let Some(Ok(msg)) = msg else { return Next::Continue };
        let Some(inbound) = self.record(&msg) else { return Next::Continue };
        let now = Instant::now();
        let mut outs = Vec::new();
        match inbound {
            Inbound::Start { stream_sid, rate } if self.live.is_none() => {
                let sid = stream_sid.unwrap_or_else(|| FALLBACK_SID.into());
                let rate = rate.or_else(|| self.rate_from_url()).unwrap_or_default();
                let format = Format::new(self.protocol, rate);
                let mut responder = Responder::new(self.behavior.clone(), format, now);
                outs = responder.on_start();
                self.live = Some((Encoder::new(self.protocol, &sid, format.bytes_per_ms()), responder));
                self.deadline = match self.behavior {
                    Behavior::HangUpAfter { after_ms } => Some((now + Duration::from_millis(after_ms), Next::HangUp)),
                    Behavior::DieAfter { after_ms } => Some((now + Duration::from_millis(after_ms), Next::Die)),
                    _ => None,
                };
            }
            Inbound::Media(audio) => {
                if let Some((_, responder)) = &mut self.live {
                    outs = responder.on_audio(&audio, now);
                }
            }
            Inbound::Dtmf(digit) if digit == "*" => return Next::HangUp,
            Inbound::Dtmf(digit) if digit == "#" => {
                if let Some((_, responder)) = &mut self.live {
                    responder.on_clear();
                    outs.push(Out::Clear);
                }
            }
            Inbound::Clear => {
                if let Some((_, responder)) = &mut self.live {
                    responder.on_clear();
                }
            }
            Inbound::Stop => return Next::Stopped,
            _ => {}
        }
        self.send(ws, outs).await
    }

    /// The peer closed or the socket broke: the session's end reason, after closing our side.
    async fn on_peer_end(&self, msg: &Incoming, ws: &mut Ws) -> Option<String> {
        match msg {
            None | Some(Err(_)) => Some("dropped".into()),
            Some(Ok(Message::Close(frame))) => {
                let code = frame.as_ref().map_or(NO_STATUS, |f| u16::from(f.code));
                // tungstenite queued the close reply on reading the frame; the sink's close
                // sends it (the inherent `close` would refuse: it writes a new close frame).
                let _ = timeout(CLOSE_GRACE, SinkExt::close(ws)).await;
                Some(format!("closed {code}"))
            }
            Some(Ok(_)) => None,
        }
    }

    /// Records one message; returns what it means if it is JSON text.
    fn record(&self, msg: &Message) -> Option<Inbound> {
        match msg {
            Message::Text(text) => {
                let (value, inbound) = wire::parse(self.protocol, text.as_str())?;
                self.handle.update(|s| {
                    s.received.push(value);
                    match &inbound {
                        Inbound::Media(audio) => s.audio_in.extend_from_slice(audio),
                        Inbound::Mark(name) => s.marks_echoed.push(name.clone()),
                        Inbound::Clear => s.clears_received += 1,
                        _ => {}
                    }
                });
                Some(inbound)
            }
            Message::Binary(_) => {
                self.handle.update(|s| s.binary_frames += 1);
                None
            }
            _ => None,
        }
    }

    /// Exotel's `sample-rate` URL parameter, for a `start` that names no rate.
    fn rate_from_url(&self) -> Option<SampleRate> {
        let target = super::lock(&self.handle.record).path_and_query.clone();
        let (_, query) = target.split_once('?')?;
        query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .find_map(|(k, v)| (k == "sample-rate" || k == "sample_rate").then(|| SampleRate::parse(v)).flatten())
    }

    async fn send(&mut self, ws: &mut Ws, outs: Vec<Out>) -> Next {
        let Some((encoder, _)) = &mut self.live else { return Next::Continue };
        if outs.is_empty() {
            return Next::Continue;
        }
        let mut sent_audio = Vec::new();
        for out in outs {
            let msg = match out {
                Out::Media(audio) => {
                    let text = encoder.media(&audio);
                    sent_audio.extend_from_slice(&audio);
                    Message::text(text)
                }
                Out::Mark(name) => Message::text(encoder.mark(&name)),
                Out::Clear => Message::text(encoder.clear()),
                Out::Text(text) => Message::text(text),
                Out::Binary(bytes) => Message::binary(bytes),
                Out::UnknownEvent(n) => Message::text(encoder.unknown_event(n)),
            };
            // Batched: one flush for a greeting's many chunks.
            if ws.feed(msg).await.is_err() {
                return Next::Ended("dropped".into());
            }
        }
        if !sent_audio.is_empty() {
            self.handle.update(|s| s.audio_out.extend_from_slice(&sent_audio));
        }
        if ws.flush().await.is_err() {
            return Next::Ended("dropped".into());
        }
        Next::Continue
    }

    /// The bot ends the call: close 1000, then keep recording until the peer's reply.
    async fn hang_up(&self, mut ws: Ws) -> String {
        if ws.send(Message::Close(Some(normal_close("bot hang-up")))).await.is_ok() {
            let _ = timeout(CLOSE_GRACE, async {
                while let Some(Ok(msg)) = ws.next().await {
                    self.record(&msg);
                }
            })
            .await;
        }
        "bot-hangup".into()
    }

    /// The bot dies mid-call: FIN without a close frame, then nothing.
    async fn die(&self, mut ws: Ws) -> String {
        let tcp = ws.get_mut();
        let _ = tcp.shutdown().await;
        let mut sink = [0u8; 8192];
        let _ = timeout(DIE_LINGER, async { while matches!(tcp.read(&mut sink).await, Ok(n) if n > 0) {} }).await;
        "bot-died".into()
    }
}

fn normal_close(reason: &'static str) -> CloseFrame {
    CloseFrame { code: CloseCode::Normal, reason: reason.into() }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => sleep_until(at).await,
        None => std::future::pending().await,
    }
}
