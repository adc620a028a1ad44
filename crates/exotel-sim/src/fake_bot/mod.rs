//! A fake upstream voice bot: the WebSocket **server** a gateway's bridge dials for each call,
//! speaking either the Exotel Voicebot protocol (docs/protocol.md §4 in, §5 out) or Twilio Media
//! Streams (docs/twilio.md §1 in, §2 out), with a scripted [`Behavior`] (echo in
//! several shapes, marks, a greeting, hang-up, death, garbage, silence). Everything each
//! connection sees and sends is recorded in a [`BotSession`] for tests and benchmarks.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use std::time::Duration;
//! use exotel_sim::fake_bot::{Behavior, BotConfig, BotProtocol, FakeBot};
//! let bot = FakeBot::start(0, BotConfig {
//!     protocol: BotProtocol::Twilio,
//!     behavior: Behavior::EchoWithMarks { every_ms: 500 },
//!     ..BotConfig::default()
//! })
//! .await?;
//! // Point the bridge at bot.url(), play a call, then:
//! let sessions = bot.wait_ended(1, Duration::from_secs(10)).await;
//! # Ok(()) }
//! ```

mod behavior;
pub mod cli;
mod format;
mod responder;
mod session;
mod wire;

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

pub use behavior::Behavior;
pub use format::greeting_audio;

/// Which protocol the bot speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BotProtocol {
    /// Exotel Voicebot: snake_case JSON, PCM16LE at the call's rate.
    #[default]
    Exotel,
    /// Twilio Media Streams: camelCase JSON, μ-law at 8 kHz.
    Twilio,
}

impl FromStr for BotProtocol {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "exotel" => Ok(Self::Exotel),
            "twilio" => Ok(Self::Twilio),
            _ => Err(format!("{s:?}: expected exotel or twilio")),
        }
    }
}

impl fmt::Display for BotProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Exotel => "exotel",
            Self::Twilio => "twilio",
        })
    }
}

#[derive(Debug, Clone, Default)]
pub struct BotConfig {
    pub protocol: BotProtocol,
    pub behavior: Behavior,
    /// Sleep this long after the TCP accept before completing the WebSocket handshake (a
    /// slow-to-accept bot). Default 0.
    pub accept_delay: Duration,
}

/// What one connection saw and did.
#[derive(Clone, Debug, Default)]
pub struct BotSession {
    /// The request target as received (so a test can check URL placeholders were filled).
    pub path_and_query: String,
    /// Request headers, names in lower case, in the order received.
    pub headers: Vec<(String, String)>,
    /// Every JSON text message received, in order (non-JSON text is not kept).
    pub received: Vec<serde_json::Value>,
    /// Caller audio, concatenated: Exotel decoded PCM16LE; Twilio raw μ-law.
    pub audio_in: Vec<u8>,
    /// What the bot sent, in the same units (greeting included).
    pub audio_out: Vec<u8>,
    /// Names of the `mark` events received (the peer's echoes), in order.
    pub marks_echoed: Vec<String>,
    /// `clear` events received from the peer.
    pub clears_received: usize,
    /// How the connection ended; `None` while it is open. `"closed <code>"`: the peer sent a
    /// close frame (1005 if it had no code); `"dropped"`: EOF or a socket error without one;
    /// `"bot-hangup"`: the bot closed with 1000 (its deadline or DTMF `*`); `"bot-died"`: the bot
    /// dropped the connection; `"stop-timeout"`: the peer sent `stop` but never closed, and the
    /// bot closed after waiting; `"handshake-failed: …"`: not a WebSocket upgrade.
    pub ended: Option<String>,
    /// Binary frames received (neither protocol has any).
    pub binary_frames: usize,
}

/// The running bot. Dropping it (or [`FakeBot::shutdown`]) stops the listener and cuts every
/// open connection.
pub struct FakeBot {
    addr: SocketAddr,
    registry: Arc<Registry>,
    accept: JoinHandle<()>,
}

impl FakeBot {
    /// Binds 127.0.0.1:`port` (0 = ephemeral); serves any path; many connections concurrently.
    pub async fn start(port: u16, config: BotConfig) -> std::io::Result<FakeBot> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, port)).await?;
        let addr = listener.local_addr()?;
        let registry = Arc::new(Registry::default());
        let accept = tokio::spawn(accept_loop(listener, Arc::new(config), registry.clone()));
        Ok(FakeBot { addr, registry, accept })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `ws://127.0.0.1:PORT/ws` (any other path works as well).
    pub fn url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// Every connection seen so far, in accept order, open ones included.
    pub fn sessions(&self) -> Vec<BotSession> {
        self.registry.all().iter().map(|s| lock(s).clone()).collect()
    }

    /// Resolves when `n` connections have ended, or when `timeout` passes. Either way returns
    /// the sessions that have ended by then, in accept order.
    pub async fn wait_ended(&self, n: usize, timeout: Duration) -> Vec<BotSession> {
        let mut ended = self.registry.ended.subscribe();
        // A timeout is not an error here: the caller asserts on what it gets.
        let _ = tokio::time::timeout(timeout, ended.wait_for(|count| *count >= n)).await;
        self.sessions().into_iter().filter(|s| s.ended.is_some()).collect()
    }

    /// Stops accepting and cuts every open connection (without close frames).
    pub fn shutdown(self) {
        drop(self);
    }

    /// Ticks once per ended connection (for the command line's log).
    pub(crate) fn ended_watch(&self) -> watch::Receiver<usize> {
        self.registry.ended.subscribe()
    }
}

impl Drop for FakeBot {
    fn drop(&mut self) {
        // The accept task owns the sessions' JoinSet, so aborting it aborts them all.
        self.accept.abort();
    }
}

async fn accept_loop(listener: TcpListener, config: Arc<BotConfig>, registry: Arc<Registry>) {
    let mut sessions = JoinSet::new();
    loop {
        let tcp = match listener.accept().await {
            Ok((tcp, _)) => tcp,
            Err(e) => {
                // Out of file descriptors and the like pass; keep serving rather than die.
                tracing::warn!("fake bot: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Reap finished sessions so the set does not grow with every call of a long run.
        while sessions.try_join_next().is_some() {}
        let _ = tcp.set_nodelay(true);
        let handle = registry.open();
        sessions.spawn(session::serve(tcp, config.clone(), handle));
    }
}

/// Every session's record, shared with the session tasks. Each record has its own lock, so
/// concurrent calls do not contend.
#[derive(Default)]
struct Registry {
    sessions: Mutex<Vec<Arc<Mutex<BotSession>>>>,
    ended: watch::Sender<usize>,
}

impl Registry {
    fn open(self: &Arc<Self>) -> SessionHandle {
        let record = Arc::new(Mutex::new(BotSession::default()));
        lock(&self.sessions).push(record.clone());
        SessionHandle { record, registry: self.clone() }
    }

    fn all(&self) -> Vec<Arc<Mutex<BotSession>>> {
        lock(&self.sessions).clone()
    }
}

/// A session task's hold on its record.
struct SessionHandle {
    record: Arc<Mutex<BotSession>>,
    registry: Arc<Registry>,
}

impl SessionHandle {
    fn update(&self, f: impl FnOnce(&mut BotSession)) {
        f(&mut lock(&self.record));
    }

    fn end(&self, reason: String) {
        self.update(|s| s.ended = Some(reason));
        self.registry.ended.send_modify(|n| *n += 1);
    }
}

/// A panicking session must not take the others' records with it.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
