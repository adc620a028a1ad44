//! State shared by every request and session.

use std::collections::HashMap;
use std::sync::atomic::AtomicUsize;
use std::sync::{Mutex, RwLock};
use std::time::Instant;

use crate::agent::Registry;
use crate::config::{Config, Secret};
use crate::secrets::Secrets;
use crate::store::{AgentDef, Phone, Store};

/// What the bot decided about the rest of the call; the Passthru after the Voicebot applet turns
/// `Transfer` into a 302 (the flow's branch B, e.g. a Connect applet to a human).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    HangUp,
    Transfer,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HangUp => "hangup",
            Self::Transfer => "transfer",
        }
    }
}

pub struct AppState {
    pub config: Config,
    pub store: Store,
    pub agents: Registry,
    /// The media port actually bound (WS_PORT may be 0).
    pub ws_port: u16,
    pub active_calls: AtomicUsize,
    pub started: Instant,
    /// None: the control plane is open (loopback bind without a key).
    pub api_key: Option<Secret>,
    pub secrets: Secrets,
    /// Agent definitions from the database, by id; read on every call start, so kept in memory.
    pub agent_defs: RwLock<HashMap<String, AgentDef>>,
    /// Phone number (last 10 digits) → its default agent.
    pub phone_agents: RwLock<HashMap<String, String>>,
    /// Bot decisions by CallSid, waiting for the Passthru that follows the Voicebot applet.
    pub decisions: Mutex<HashMap<String, Decision>>,
}

impl AppState {
    /// The implementation id (a registry key) for an agent id, if the agent exists.
    pub fn agent_kind(&self, agent_id: &str) -> Option<String> {
        if let Some(kind) = self.agent_defs.read().ok().and_then(|d| d.get(agent_id).map(|a| a.kind.clone())) {
            return Some(kind);
        }
        self.agents.contains(agent_id).then(|| agent_id.to_string())
    }

    pub fn agent_exists(&self, agent_id: &str) -> bool {
        self.agent_kind(agent_id).is_some()
    }

    /// The media endpoint handed to Exotel: PUBLIC_WS_URL (or the one derived from WEBHOOK_BASE_URL),
    /// else `ws://<host of the request>:<media port>`; `/media` added when the base has no path.
    pub fn media_url(&self, request_host: Option<&str>) -> String {
        let base = self.config.public_ws_url.clone().unwrap_or_else(|| {
            let host = request_host.map(strip_port).filter(|h| !h.is_empty()).unwrap_or_else(|| "127.0.0.1".into());
            format!("ws://{host}:{}", self.ws_port)
        });
        let after_scheme = base.split_once("://").map_or(base.as_str(), |(_, r)| r);
        if after_scheme.contains('/') { base } else { format!("{base}/media") }
    }

    pub fn phone_default_agent(&self, number: &str) -> Option<String> {
        self.phone_agents.read().ok()?.get(&number_key(number)).cloned()
    }

    pub async fn reload_caches(&self) -> anyhow::Result<()> {
        let defs = self.store.agents().await?;
        let phones = self.store.phones().await?;
        if let Ok(mut d) = self.agent_defs.write() {
            *d = defs.into_iter().map(|a| (a.id.clone(), a)).collect();
        }
        if let Ok(mut p) = self.phone_agents.write() {
            *p = phones
                .into_iter()
                .filter_map(|ph: Phone| ph.default_agent.map(|a| (number_key(&ph.number), a)))
                .collect();
        }
        Ok(())
    }

    pub fn decide(&self, call_sid: &str, decision: Decision) {
        if let Ok(mut d) = self.decisions.lock() {
            d.insert(call_sid.to_string(), decision);
        }
    }

    pub fn take_decision(&self, call_sid: &str) -> Option<Decision> {
        self.decisions.lock().ok()?.remove(call_sid)
    }
}

/// `host:8080` → `host`; `[::1]:8080` → `[::1]`.
fn strip_port(host: &str) -> String {
    if let Some(end) = host.find(']') {
        return host[..=end].to_string();
    }
    host.split(':').next().unwrap_or_default().to_string()
}

/// Numbers compared by their last 10 digits: `+919876543210`, `09876543210` and `9876543210` match.
pub fn number_key(number: &str) -> String {
    let digits: Vec<char> = number.chars().filter(char::is_ascii_digit).collect();
    digits[digits.len().saturating_sub(10)..].iter().collect()
}
