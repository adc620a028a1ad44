//! Fake voice AI providers: the OpenAI Realtime API (GA) and the Gemini Live API, played from
//! their public documentation, so a gateway's AI agents can be tested without the network. The
//! fake "hears" the caller (every audio byte is kept, decoded, with its format and rate), answers
//! with audio and transcripts faster than real time as the real services do, raises barge-in
//! mid-answer, calls a tool, and fails on request (a refused key, a rate limit, a dropped
//! connection, garbage).
//!
//! One server serves both: a path containing `BidiGenerateContent` is Gemini, anything else
//! OpenAI (`/v1/realtime?model=…`).

mod cli;
mod gemini;
mod openai;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use exotel::audio::g711::ulaw_encode;
use exotel::audio::resample::resample;
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};

pub use cli::{AiArgs, run_cli};

/// The Gemini Live WebSocket path.
pub const GEMINI_PATH: &str = "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent";

/// How a session goes wrong, on request.
#[derive(Debug, Clone, PartialEq)]
pub enum FakeAiFailure {
    /// The first answer fails: OpenAI `response.done` with `rate_limit_exceeded`; Gemini closes
    /// with 1011 `RESOURCE_EXHAUSTED`.
    RateLimit,
    /// The connection is closed (1011) this long after the session is ready.
    CloseAfter(Duration),
    /// Unreadable messages, starting this long after the session is ready.
    Garbage(Duration),
    /// OpenAI: the session hits its maximum length this long after it is ready: an `error`
    /// with code `session_expired`, then a close (Gemini: a close 1000).
    SessionExpired(Duration),
    /// OpenAI: `session.update` is answered with an `error` (`invalid_value`) and nothing is
    /// applied, as the real service does with a field it refuses.
    RefuseSetup,
}

#[derive(Debug, Clone)]
pub struct FakeAiConfig {
    /// The key the fake accepts (OpenAI: `Authorization: Bearer` or `api-key`; Gemini:
    /// `x-goog-api-key` or `?key=`). Any other is refused as the real service does.
    pub api_key: String,
    /// The model's answer: PCM16LE mono at 24 kHz (converted to μ-law 8 kHz when the session asks).
    pub answer_pcm24: Vec<u8>,
    /// Answer once this much caller audio has arrived since the last answer.
    pub answer_after: Duration,
    /// Answers given to caller audio (answers asked for by the client come on top).
    pub answers: usize,
    /// Size of each audio message of an answer.
    pub delta_ms: u32,
    /// Caller barge-in this long after an answer's first audio went out (first answer only).
    pub barge_in_after: Option<Duration>,
    /// OpenAI: the first answer is interrupted before any of its audio went out:
    /// `speech_started` right after `response.created`, then the deltas already in flight, then
    /// a cancelled `response.done`.
    pub barge_in_before_audio: bool,
    /// OpenAI: the client's first `response.create` finds an answer already running (VAD
    /// started it): refused with `conversation_already_has_active_response`, then that answer
    /// ends with `response.done`.
    pub busy_first_create: bool,
    /// Instead of the first answer: call this tool with these arguments; answer after its result.
    pub tool_call: Option<(String, Value)>,
    pub failure: Option<FakeAiFailure>,
    /// Gemini: `goAway` this long after the session is ready, then a close 2 s later (the
    /// connection's time is up; the client should resume on a new one).
    pub go_away_after: Option<Duration>,
    /// Gemini: `goAway` halfway through the first answer's audio instead (the rest and
    /// `turnComplete` follow on the same connection).
    pub go_away_in_answer: bool,
    /// Gemini: the `timeLeft` a `goAway` announces; the connection closes when it has passed.
    pub go_away_time_left: Duration,
    /// Gemini: each answer's audio is sent as it would play (one delta per `delta_ms`), as the
    /// real service streams, instead of as fast as the socket takes it.
    pub paced: bool,
    pub agent_transcript: String,
    pub caller_transcript: String,
}

impl Default for FakeAiConfig {
    fn default() -> Self {
        Self {
            api_key: "sk-fake".into(),
            answer_pcm24: crate::tone(330.0, 2000, exotel::SampleRate::Hz24000),
            answer_after: Duration::from_millis(1000),
            answers: 1,
            delta_ms: 100,
            barge_in_after: None,
            barge_in_before_audio: false,
            busy_first_create: false,
            tool_call: None,
            failure: None,
            go_away_after: None,
            go_away_in_answer: false,
            go_away_time_left: Duration::from_secs(2),
            paced: false,
            agent_transcript: "Hello! How can I help you today?".into(),
            caller_transcript: "Hi, I have a question.".into(),
        }
    }
}

/// What one connection did.
#[derive(Debug, Clone, Default)]
pub struct AiSession {
    /// `openai` or `gemini`.
    pub protocol: String,
    pub path_and_query: String,
    /// The key was accepted.
    pub authorized: bool,
    /// `session.update` (OpenAI, the first one) or `setup` (Gemini), as received.
    pub setup: Option<Value>,
    /// Every client message but audio, in order.
    pub messages: Vec<Value>,
    /// The caller's audio as heard: PCM16LE at `audio_rate` (μ-law decoded).
    pub audio_in: Vec<u8>,
    /// The format the audio came in: `audio/pcmu`, `audio/pcm;rate=24000`, `audio/pcm;rate=16000`.
    pub audio_format: String,
    pub audio_rate: u32,
    pub audio_messages: usize,
    /// When each answer's first audio was sent.
    pub answers_started: Vec<Instant>,
    /// Answers' audio sent, in milliseconds each.
    pub answers_ms: Vec<u64>,
    pub barge_in_at: Option<Instant>,
    pub truncates: Vec<Value>,
    pub tool_outputs: Vec<Value>,
    /// Gemini: the ids of the tool calls this connection made (unique across connections).
    pub tool_calls: Vec<String>,
    /// Why the session ended: `client-closed`, `dropped`, `refused: …`, `fake-closed: …`.
    pub ended: Option<String>,
}

/// The running fake. Dropping it stops the listener and cuts every connection.
pub struct FakeAi {
    addr: SocketAddr,
    registry: Arc<Registry>,
    accept: JoinHandle<()>,
}

#[derive(Default)]
struct Registry {
    sessions: Mutex<Vec<Arc<Mutex<AiSession>>>>,
    ended: watch::Sender<usize>,
}

pub(crate) struct SessionHandle {
    record: Arc<Mutex<AiSession>>,
    registry: Arc<Registry>,
}

impl SessionHandle {
    pub(crate) fn update(&self, f: impl FnOnce(&mut AiSession)) {
        f(&mut lock(&self.record));
    }

    pub(crate) fn end(&self, reason: impl Into<String>) {
        let reason = reason.into();
        self.update(|s| {
            s.ended.get_or_insert(reason);
        });
        self.registry.ended.send_modify(|n| *n += 1);
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl FakeAi {
    /// Binds 127.0.0.1:`port` (0 = ephemeral).
    pub async fn start(port: u16, config: FakeAiConfig) -> std::io::Result<FakeAi> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, port)).await?;
        let addr = listener.local_addr()?;
        let registry = Arc::new(Registry::default());
        let accept = tokio::spawn(accept_loop(listener, Arc::new(config), registry.clone()));
        Ok(FakeAi { addr, registry, accept })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The `base_url` for an `openai-realtime` agent.
    pub fn openai_url(&self) -> String {
        format!("ws://{}/v1/realtime", self.addr)
    }

    /// The `base_url` for a `gemini-live` agent.
    pub fn gemini_url(&self) -> String {
        format!("ws://{}{GEMINI_PATH}", self.addr)
    }

    pub fn sessions(&self) -> Vec<AiSession> {
        lock(&self.registry.sessions).iter().map(|s| lock(s).clone()).collect()
    }

    /// The sessions ended once `n` have, or when `timeout` passes.
    pub async fn wait_ended(&self, n: usize, timeout: Duration) -> Vec<AiSession> {
        let mut ended = self.registry.ended.subscribe();
        let _ = tokio::time::timeout(timeout, ended.wait_for(|count| *count >= n)).await;
        self.sessions().into_iter().filter(|s| s.ended.is_some()).collect()
    }
}

impl Drop for FakeAi {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn accept_loop(listener: TcpListener, config: Arc<FakeAiConfig>, registry: Arc<Registry>) {
    let mut sessions = JoinSet::new();
    loop {
        let tcp = match listener.accept().await {
            Ok((tcp, _)) => tcp,
            Err(e) => {
                tracing::warn!("fake AI: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        while sessions.try_join_next().is_some() {}
        let _ = tcp.set_nodelay(true);
        let record = Arc::new(Mutex::new(AiSession::default()));
        lock(&registry.sessions).push(record.clone());
        let handle = SessionHandle { record, registry: registry.clone() };
        sessions.spawn(serve(tcp, config.clone(), handle));
    }
}

pub(crate) type Ws = WebSocketStream<TcpStream>;

// tungstenite's upgrade callback fixes the (large) error type.
#[allow(clippy::result_large_err)]
async fn serve(tcp: TcpStream, config: Arc<FakeAiConfig>, handle: SessionHandle) {
    let mut seen = (String::new(), false, false);
    let key = config.api_key.clone();
    let upgraded = tokio_tungstenite::accept_hdr_async(tcp, |req: &Request, resp: Response| {
        let target = req.uri().to_string();
        let gemini = req.uri().path().contains("BidiGenerateContent");
        let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or_default();
        let given = if gemini {
            let query_key = req
                .uri()
                .query()
                .and_then(|q| serde_urlencoded::from_str::<Vec<(String, String)>>(q).ok())
                .and_then(|pairs| pairs.into_iter().find(|(k, _)| k == "key").map(|(_, v)| v));
            query_key.unwrap_or_else(|| header("x-goog-api-key").to_string())
        } else {
            let bearer = header("authorization").strip_prefix("Bearer ").unwrap_or_default();
            if bearer.is_empty() { header("api-key").to_string() } else { bearer.to_string() }
        };
        let authorized = given == key;
        seen = (target, gemini, authorized);
        // OpenAI refuses a bad key at the upgrade; Gemini accepts it and closes after `setup`.
        if !gemini && !authorized {
            let body = r#"{"error":{"message":"Incorrect API key provided.","type":"invalid_request_error","code":"invalid_api_key"}}"#;
            let mut refusal = ErrorResponse::new(Some(body.to_string()));
            *refusal.status_mut() = tokio_tungstenite::tungstenite::http::StatusCode::UNAUTHORIZED;
            return Err(refusal);
        }
        Ok(resp)
    })
    .await;
    let (target, gemini, authorized) = seen;
    handle.update(|s| {
        s.path_and_query = target;
        s.protocol = if gemini { "gemini" } else { "openai" }.into();
        s.authorized = authorized;
    });
    let ws = match upgraded {
        Ok(ws) => ws,
        Err(e) => return handle.end(format!("refused: {e}")),
    };
    let reason = if gemini {
        gemini::serve(ws, &config, &handle, authorized).await
    } else {
        openai::serve(ws, &config, &handle).await
    };
    handle.end(reason);
}

/// The answer in 24 kHz PCM or 8 kHz μ-law, cut into `delta_ms` messages.
pub(crate) fn answer_chunks(config: &FakeAiConfig, ulaw: bool) -> Vec<Vec<u8>> {
    let (bytes, per_ms) = if ulaw {
        let pcm8 = resample(&config.answer_pcm24, 24_000, 8_000).unwrap_or_default();
        let mut out = Vec::with_capacity(pcm8.len() / 2);
        ulaw_encode(&pcm8, &mut out);
        (out, 8)
    } else {
        (config.answer_pcm24.clone(), 48)
    };
    let size = (config.delta_ms.max(1) as usize * per_ms).max(1);
    bytes.chunks(size).map(<[u8]>::to_vec).collect()
}

/// One protocol's side of a session, run by [`drive`].
pub(crate) trait Side {
    /// The next scheduled event (barge-in, failure, `goAway`), if any.
    fn next_wake(&self) -> Option<tokio::time::Instant>;
    /// A client message; `Err` ends the session with that reason.
    async fn on_client(&mut self, ws: &mut Ws, text: &str) -> Result<(), String>;
    async fn on_timer(&mut self, ws: &mut Ws) -> Result<(), String>;
}

/// Reads the client and keeps the schedule until either ends the session; returns why.
pub(crate) async fn drive(mut ws: Ws, side: &mut impl Side) -> String {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    loop {
        let wake = side.next_wake();
        let step = tokio::select! {
            msg = ws.next() => match msg {
                None | Some(Err(_)) => Err("dropped".to_string()),
                Some(Ok(Message::Close(_))) => Err("client-closed".to_string()),
                Some(Ok(Message::Text(t))) => side.on_client(&mut ws, t.as_str()).await,
                Some(Ok(_)) => Ok(()),
            },
            () = tokio::time::sleep_until(wake.unwrap_or_else(tokio::time::Instant::now)), if wake.is_some() => {
                side.on_timer(&mut ws).await
            }
        };
        if let Err(reason) = step {
            return reason;
        }
    }
}

/// Read until the client's close reply after ours: dropping the socket over unread audio would
/// reset it, and the client would see a reset instead of the close frame.
pub(crate) async fn close(ws: &mut Ws, code: u16, reason: &str) -> String {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::protocol::CloseFrame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
    let frame = CloseFrame { code: CloseCode::from(code), reason: reason.to_string().into() };
    let _ = ws.close(Some(frame)).await;
    let _ = tokio::time::timeout(Duration::from_secs(2), async { while let Some(Ok(_)) = ws.next().await {} }).await;
    format!("fake-closed: {code} {reason}")
}

/// Unreadable messages sent for [`FakeAiFailure::Garbage`], 10 ms apart.
const GARBAGE_MESSAGES: u32 = 10;

/// What a session has scheduled, the same for both protocols: the barge-in and the failure.
#[derive(Default)]
pub(crate) struct Schedule {
    pub(crate) ready_at: Option<tokio::time::Instant>,
    pub(crate) barge_at: Option<tokio::time::Instant>,
    barged: bool,
    garbage_sent: u32,
}

/// What is due now.
pub(crate) enum Due {
    BargeIn,
    Close,
    Expire,
    Garbage,
}

impl Schedule {
    /// After an answer whose first audio went out at `first`: the barge-in, once per session.
    pub(crate) fn answered(&mut self, cfg: &FakeAiConfig, first: tokio::time::Instant) {
        if let (Some(after), None) = (cfg.barge_in_after, self.barge_at) {
            self.barge_at = Some(first + after);
        }
    }

    pub(crate) fn next_wake(&self, cfg: &FakeAiConfig) -> Option<tokio::time::Instant> {
        let barge = self.barge_at.filter(|_| !self.barged);
        let failure = match (&cfg.failure, self.ready_at) {
            (Some(FakeAiFailure::CloseAfter(d) | FakeAiFailure::SessionExpired(d)), Some(r)) => Some(r + *d),
            (Some(FakeAiFailure::Garbage(d)), Some(r)) if self.garbage_sent < GARBAGE_MESSAGES => {
                Some(r + *d + Duration::from_millis(10 * u64::from(self.garbage_sent)))
            }
            _ => None,
        };
        earliest(barge, failure)
    }

    /// What is due at `now`, in order; the session sends its protocol's messages for each.
    pub(crate) fn due(&mut self, cfg: &FakeAiConfig, h: &SessionHandle, now: tokio::time::Instant) -> Vec<Due> {
        let mut due = Vec::new();
        if self.barge_at.is_some_and(|at| !self.barged && now >= at) {
            self.barged = true;
            h.update(|s| s.barge_in_at = Some(Instant::now()));
            due.push(Due::BargeIn);
        }
        match (&cfg.failure, self.ready_at) {
            (Some(FakeAiFailure::CloseAfter(d)), Some(r)) if now >= r + *d => due.push(Due::Close),
            (Some(FakeAiFailure::SessionExpired(d)), Some(r)) if now >= r + *d => due.push(Due::Expire),
            (Some(FakeAiFailure::Garbage(d)), Some(r)) if now >= r + *d && self.garbage_sent < GARBAGE_MESSAGES => {
                self.garbage_sent += 1;
                due.push(Due::Garbage);
            }
            _ => {}
        }
        due
    }
}

pub(crate) fn earliest(
    a: Option<tokio::time::Instant>,
    b: Option<tokio::time::Instant>,
) -> Option<tokio::time::Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}
