//! A fake Exotel: a local HTTP server with the parts of Exotel's REST API a gateway calls
//! (`Calls/connect`, call details, `ActiveStreams`; docs/protocol.md §8), which then plays each call
//! the way Exotel would: the Voicebot applet's dynamic URL (§2.3), the media leg through
//! [`crate::run_call`], the Passthru after it with the `Stream[...]` outcome (§7.2), and the
//! status callbacks with Exotel's retries (§9).
//!
//! ```no_run
//! # async fn demo() -> Result<(), exotel_sim::SimError> {
//! use exotel_sim::fake_exotel::{FakeExotel, FakeExotelConfig};
//! let fake = FakeExotel::start(FakeExotelConfig {
//!     voicebot_url: Some("http://127.0.0.1:8080/exotel/voicebot-url".into()),
//!     ..FakeExotelConfig::default()
//! })
//! .await?;
//! // Point the gateway's EXOTEL_API_URL at fake.base_url(), place a call, then:
//! # let sid = "";
//! let call = fake.wait_call_done(sid, std::time::Duration::from_secs(10)).await;
//! # Ok(()) }
//! ```

mod api;
pub mod cli;
mod form;
mod live;
mod play;
mod record;
mod script;

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use exotel::SampleRate;
use tokio::sync::{broadcast, oneshot, watch};
use tokio::task::{AbortHandle, JoinHandle};

pub use live::{LiveChange, LiveRecord};
pub use record::{CallMode, FakeCall, FakeEvent, RecordedRequest};
pub use script::Script;

use crate::{AudioSource, SimError};

/// How the fake account and its flow are set up.
#[derive(Clone)]
pub struct FakeExotelConfig {
    /// The account SID in every API path.
    pub sid: String,
    /// Basic auth expected on every request; anything else gets 401.
    pub api_key: String,
    pub api_token: String,
    /// The Voicebot applet URL in the (fake) flow: an http(s) dynamic-URL endpoint answering
    /// `{"url":...}`, or a ws(s):// URL used directly.
    pub voicebot_url: Option<String>,
    /// A Passthru applet after the Voicebot applet: a GET with the call details and the
    /// `Stream[...]` outcome. Its status (200/302) is recorded; redirects are not followed.
    pub passthru_url: Option<String>,
    /// What the customer says.
    pub audio: AudioSource,
    pub sample_rate: SampleRate,
    /// `Calls/connect` requests allowed per rolling minute before 429 with `Retry-After` (Exotel:
    /// 200/min). `None`: unlimited.
    pub rate_limit: Option<u32>,
    /// Per customer number (the `From` field, compared with whitespace removed).
    pub scripts: HashMap<String, Script>,
    pub default_script: Script,
    /// The account's ExoPhone: `To` and `PhoneNumberSid` in answers and callbacks.
    pub exophone: String,
    /// Milliseconds of caller audio per media frame.
    pub frame_ms: u32,
    /// DTMF digits the customer presses, each at its offset from the first media frame.
    pub dtmf: Vec<(Duration, String)>,
    /// After the customer's audio: hang up once the bot has been quiet this long (and its audio
    /// has played out)…
    pub idle_tail: Duration,
    /// …or after this long at most.
    pub max_tail: Duration,
}

impl Default for FakeExotelConfig {
    fn default() -> Self {
        Self {
            sid: "exotelsim".into(),
            api_key: "fake-key".into(),
            api_token: "fake-token".into(),
            voicebot_url: None,
            passthru_url: None,
            audio: AudioSource::Tone { hz: 440.0, ms: 1500 },
            sample_rate: SampleRate::Hz8000,
            rate_limit: None,
            scripts: HashMap::new(),
            default_script: Script::Answer,
            exophone: "08047491899".into(),
            frame_ms: 20,
            dtmf: Vec::new(),
            idle_tail: Duration::from_millis(800),
            max_tail: Duration::from_secs(5),
        }
    }
}

/// The token stays out of logs and panics.
impl fmt::Debug for FakeExotelConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeExotelConfig")
            .field("sid", &self.sid)
            .field("api_key", &self.api_key)
            .field("api_token", &"***")
            .field("voicebot_url", &self.voicebot_url.as_deref().map(exotel::redact::redact_url))
            .field("passthru_url", &self.passthru_url.as_deref().map(exotel::redact::redact_url))
            .field("audio", &self.audio)
            .field("sample_rate", &self.sample_rate)
            .field("rate_limit", &self.rate_limit)
            .field("scripts", &self.scripts.len())
            .field("default_script", &self.default_script)
            .field("exophone", &self.exophone)
            .finish_non_exhaustive()
    }
}

/// State shared by the server, the call tasks and the handle.
pub(crate) struct Shared {
    cfg: FakeExotelConfig,
    scripts: script::ScriptTable,
    requests: Mutex<Vec<RecordedRequest>>,
    calls: Mutex<Vec<FakeCall>>,
    /// Bumped on every change to a call, for [`FakeExotel::wait_call_done`].
    version: watch::Sender<u64>,
    limiter: Mutex<api::RateLimiter>,
    /// No redirects: a Passthru's 302 is its answer, not a hop.
    client: reqwest::Client,
    events: broadcast::Sender<FakeEvent>,
    tasks: Mutex<Vec<AbortHandle>>,
    active_streams: AtomicUsize,
    live: Mutex<LiveRecord>,
}

/// A poisoned lock only means a panicking test thread; the data is still good.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    fn record_request(&self, req: RecordedRequest) -> usize {
        let mut requests = lock(&self.requests);
        requests.push(req);
        requests.len() - 1
    }

    fn set_request_status(&self, index: usize, status: u16) {
        if let Some(r) = lock(&self.requests).get_mut(index) {
            r.status = Some(status);
        }
    }

    fn add_call(&self, call: FakeCall) {
        lock(&self.live).placed(&call.caller_id);
        lock(&self.calls).push(call);
        self.version.send_modify(|v| *v += 1);
    }

    fn call(&self, sid: &str) -> Option<FakeCall> {
        lock(&self.calls).iter().find(|c| c.sid == sid).cloned()
    }

    fn update_call(&self, sid: &str, f: impl FnOnce(&mut FakeCall)) {
        if let Some(c) = lock(&self.calls).iter_mut().find(|c| c.sid == sid) {
            f(c);
        }
        self.version.send_modify(|v| *v += 1);
    }

    fn emit(&self, event: FakeEvent) {
        tracing::info!(target: "exotel_sim::fake_exotel", "{event}");
        // Nobody listening is fine.
        let _ = self.events.send(event);
    }

    fn spawn(self: &Arc<Self>, task: impl Future<Output = ()> + Send + 'static) {
        let handle = tokio::spawn(task);
        let mut tasks = lock(&self.tasks);
        tasks.retain(|t| !t.is_finished());
        tasks.push(handle.abort_handle());
    }

    fn active_streams(&self) -> usize {
        self.active_streams.load(Ordering::Relaxed)
    }
}

/// A running fake Exotel. Dropping it stops the server and every call in flight.
pub struct FakeExotel {
    shared: Arc<Shared>,
    addr: SocketAddr,
    server: JoinHandle<()>,
    stop: Option<oneshot::Sender<()>>,
}

impl FakeExotel {
    /// Starts on 127.0.0.1 at a free port.
    pub async fn start(cfg: FakeExotelConfig) -> Result<FakeExotel, SimError> {
        Self::start_on(cfg, SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Starts on `addr` (the CLI's `--port`).
    pub async fn start_on(cfg: FakeExotelConfig, addr: SocketAddr) -> Result<FakeExotel, SimError> {
        for (name, url) in [("voicebot_url", &cfg.voicebot_url), ("passthru_url", &cfg.passthru_url)] {
            if let Some(url) = url {
                let ok = reqwest::Url::parse(url).is_ok_and(|u| {
                    matches!(u.scheme(), "http" | "https")
                        || (name == "voicebot_url" && matches!(u.scheme(), "ws" | "wss"))
                });
                if !ok {
                    return Err(SimError::InvalidUrl {
                        url: exotel::redact::redact_url(url),
                        reason: format!(
                            "{name} must be an http(s) URL{}",
                            if name == "voicebot_url" { " or a ws(s) URL" } else { "" }
                        ),
                    });
                }
            }
        }
        // A bad WAV should fail here, not on every call.
        cfg.audio.render(cfg.sample_rate)?;
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| SimError::Server(format!("HTTP client: {e}")))?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| SimError::Server(format!("cannot listen on {addr}: {e}")))?;
        let addr = listener.local_addr().map_err(|e| SimError::Server(format!("listener address: {e}")))?;
        let shared = Arc::new(Shared {
            scripts: script::ScriptTable::new(&cfg.scripts, cfg.default_script.clone()),
            limiter: Mutex::new(api::RateLimiter::new(cfg.rate_limit)),
            cfg,
            requests: Mutex::default(),
            calls: Mutex::default(),
            version: watch::channel(0).0,
            client,
            events: broadcast::channel(1024).0,
            tasks: Mutex::default(),
            active_streams: AtomicUsize::new(0),
            live: Mutex::new(LiveRecord::new()),
        });
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let app = api::router(shared.clone());
        let server = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
                let _ = stop_rx.await;
            });
            if let Err(e) = serve.await {
                tracing::warn!("fake Exotel server stopped: {e}");
            }
        });
        Ok(FakeExotel { shared, addr, server, stop: Some(stop_tx) })
    }

    /// `http://127.0.0.1:PORT`: what a client uses as its Exotel API base URL.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every request received, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared.requests).clone()
    }

    /// Every call placed, in order, as it stands now.
    pub fn calls(&self) -> Vec<FakeCall> {
        lock(&self.shared.calls).clone()
    }

    pub fn call(&self, sid: &str) -> Option<FakeCall> {
        self.shared.call(sid)
    }

    /// Calls live on the account and per caller id: now, at their peak, and every change.
    pub fn live(&self) -> LiveRecord {
        lock(&self.shared.live).clone()
    }

    /// One line per request answered and per call played out (see [`FakeEvent`]).
    pub fn subscribe(&self) -> broadcast::Receiver<FakeEvent> {
        self.shared.events.subscribe()
    }

    /// Waits until the call has played out and its status callback (if any) was delivered or
    /// given up on. `None` if there is no such call or it is not done within `timeout`.
    pub async fn wait_call_done(&self, sid: &str, timeout: Duration) -> Option<FakeCall> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut changes = self.shared.version.subscribe();
        loop {
            // Marks the current version seen: a change after this check wakes us.
            changes.borrow_and_update();
            if let Some(call) = self.shared.call(sid).filter(|c| c.done) {
                return Some(call);
            }
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => {}
                // Timed out (the sender lives as long as `self`, so the channel cannot close).
                Ok(Err(_)) | Err(_) => return None,
            }
        }
    }

    /// Stops accepting requests (in-flight ones get a second to finish) and ends every call.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if tokio::time::timeout(Duration::from_secs(1), &mut self.server).await.is_err() {
            self.server.abort();
        }
        // Drop aborts the call tasks.
    }
}

impl Drop for FakeExotel {
    fn drop(&mut self) {
        self.server.abort();
        for task in lock(&self.shared.tasks).drain(..) {
            task.abort();
        }
    }
}
