//! State shared by every request and session.

use std::sync::atomic::AtomicUsize;
use std::time::Instant;

use crate::agent::Registry;
use crate::config::Config;
use crate::store::Store;

pub struct AppState {
    pub config: Config,
    pub store: Store,
    pub agents: Registry,
    /// The media port actually bound (WS_PORT may be 0).
    pub ws_port: u16,
    pub active_calls: AtomicUsize,
    pub started: Instant,
}
