//! Starting and stopping the two listeners: HTTP (webhooks, API, /media) and the media WebSocket port.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Instant;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::agent::Registry;
use crate::app::AppState;
use crate::config::{Config, Secret};
use crate::secrets::Secrets;
use crate::store::Store;

/// A running gateway.
pub struct Gateway {
    pub http_addr: SocketAddr,
    pub ws_addr: SocketAddr,
    pub state: Arc<AppState>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<std::io::Result<()>>>,
}

/// Opens the database and binds both ports (port 0 picks a free one).
pub async fn start(config: Config) -> anyhow::Result<Gateway> {
    start_with_agents(config, Registry::builtin()).await
}

pub async fn start_with_agents(config: Config, agents: Registry) -> anyhow::Result<Gateway> {
    let store = Store::open(&config.database_url).await?;
    let http = TcpListener::bind((config.bind_addr, config.http_port))
        .await
        .with_context(|| format!("cannot bind HTTP_PORT {} on {}", config.http_port, config.bind_addr))?;
    let ws = TcpListener::bind((config.bind_addr, config.ws_port))
        .await
        .with_context(|| format!("cannot bind WS_PORT {} on {}", config.ws_port, config.bind_addr))?;
    let ws_port = ws.local_addr()?.port();
    let dir = crate::secrets::data_dir(&config.database_url);
    let api_key = match (&config.api_key, config.bind_addr.is_loopback()) {
        (Some(k), _) => Some(k.clone()),
        (None, true) => None,
        (None, false) => {
            let path = dir.join("exogate.api-key");
            let key = crate::secrets::read_or_create(&path, "API key")?;
            tracing::warn!(path = %path.display(), "EXOGATE_API_KEY is not set on a public bind: the control-plane API requires the key in this file");
            Some(Secret(key))
        }
    };
    let secrets = match &config.secret_key {
        Some(k) => Secrets::from_passphrase(&k.0),
        None => Secrets::from_file(&dir.join("exogate.secret"))?,
    };
    let recordings = config.recordings.clone().map(crate::media::recording::Recordings::start).transpose()?;
    let state = Arc::new(AppState {
        recordings,
        live: Default::default(),
        config,
        store,
        agents,
        ws_port,
        active_calls: AtomicUsize::new(0),
        started: Instant::now(),
        api_key,
        secrets,
        agent_defs: Default::default(),
        phone_agents: Default::default(),
        decisions: Default::default(),
        sessions: Default::default(),
        drain: watch::Sender::new(false),
        refusals: Default::default(),
        key_guesses: Default::default(),
        conn_rate_overflows: Default::default(),
        signed_out: Default::default(),
        metrics: Default::default(),
    });
    state.reload_caches().await?;
    // Heartbeats only matter where other gateways read them; a SQLite file has one gateway.
    let shared_db = state.store.backend() == crate::store::Backend::Postgres;
    if shared_db {
        state.store.heartbeat().await.context("cannot register this gateway in the database")?;
    }
    let interrupted = state.store.mark_interrupted().await.context("cannot mark interrupted calls")?;
    if interrupted > 0 {
        tracing::warn!(calls = interrupted, "calls left in progress by a previous process marked interrupted");
    }
    if shared_db {
        tokio::spawn(crate::shared::heartbeat_loop(state.clone()));
        tokio::spawn(crate::shared::follow_changes(state.clone()));
    }
    tokio::spawn(crate::dialer::reconcile_loop(state.clone()));
    tokio::spawn(crate::campaign::runner::run(state.clone()));
    tokio::spawn(crate::http::session::resave_loop(state.clone()));
    if state.recordings.is_some() {
        tokio::spawn(sweep_recordings(state.clone()));
    }
    let tls = match &state.config.tls {
        Some(files) => {
            let tls = crate::tls::Tls::load(files)?;
            tokio::spawn(tls.clone().watch());
            Some(tls)
        }
        None => None,
    };
    let (stop, stopped) = watch::channel(false);
    let serve = |listener: TcpListener, router: axum::Router| {
        tokio::spawn(crate::listener::serve(listener, router, state.clone(), tls.clone(), stopped.clone()))
    };
    let http_addr = http.local_addr()?;
    let ws_addr = ws.local_addr()?;
    let tasks =
        vec![serve(http, crate::http::router(state.clone())), serve(ws, crate::http::ws_port_router(state.clone()))];
    tracing::info!(%http_addr, %ws_addr, database = %exotel::redact::redact_url(&state.config.database_url), "exogate listening");
    Ok(Gateway { http_addr, ws_addr, state, stop, tasks })
}

/// Recordings past RECORDINGS_RETENTION_DAYS go, at start and hourly (off the runtime's threads:
/// a directory walk blocks).
async fn sweep_recordings(state: Arc<AppState>) {
    let mut every = tokio::time::interval(std::time::Duration::from_secs(3600));
    loop {
        every.tick().await;
        let s = state.clone();
        let _ = tokio::task::spawn_blocking(move || {
            if let Some(r) = &s.recordings {
                r.sweep();
            }
        })
        .await;
    }
}

/// After the drain, how long sessions get to close their sockets and write their rows.
const END_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

impl Gateway {
    /// Stops accepting new connections, lets active calls run for up to `drain`, then ends the
    /// rest properly (the agent is told, the socket closes with 1001, the row is finished) and
    /// flushes the call log.
    pub async fn shutdown(self, drain: std::time::Duration) {
        let _ = self.stop.send(true);
        let sessions = self.state.sessions.clone();
        let live = sessions.live();
        if live > 0 {
            tracing::info!(calls = live, drain_secs = drain.as_secs(), "draining active calls");
        }
        if tokio::time::timeout(drain, sessions.all_done()).await.is_err() {
            tracing::info!(calls = sessions.live(), "drain time over; ending the remaining calls");
            let _ = self.state.drain.send(true);
            let _ = tokio::time::timeout(END_GRACE, sessions.all_done()).await;
        }
        let _ = tokio::time::timeout(END_GRACE, futures_util::future::join_all(self.tasks)).await;
        self.state.store.flush().await;
        // The calls' recordings are complete files before the process goes.
        let state = self.state.clone();
        let finished =
            tokio::task::spawn_blocking(move || state.recordings.as_ref().is_none_or(|r| r.finish(END_GRACE)));
        if !finished.await.unwrap_or(false) {
            tracing::warn!("recordings were still being written at exit; the last ones may be incomplete");
        }
    }
}
