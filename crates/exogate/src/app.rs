//! State shared by every request and session.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, watch};

use crate::agent::{AgentSpec, Registry};
use crate::config::{Config, Secret};
use crate::secrets::Secrets;
use crate::store::{Phone, Store};

/// What the bot decided about the rest of the call; the Passthru after the Voicebot applet turns
/// `Transfer` into a 302 (the flow's branch B, e.g. a Connect applet to a human).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    HangUp,
    /// With the target (a number or a flow id) the bot named, if any.
    Transfer(Option<String>),
}

impl Decision {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::HangUp => "hangup",
            Self::Transfer(_) => "transfer",
        }
    }

    pub fn target(&self) -> Option<&str> {
        match self {
            Self::Transfer(t) => t.as_deref(),
            Self::HangUp => None,
        }
    }
}

/// A decision waits this long for its Passthru; Stream-mode calls and flows without a Passthru
/// never ask. The call log keeps it after that (the Passthru falls back to it).
const DECISION_TTL: Duration = Duration::from_secs(15 * 60);
/// Keys of decisions held at once (two a call); past it the oldest are dropped (and counted).
const MAX_DECISION_KEYS: usize = 20_000;

/// Calls alive (a media session and the agent tasks holding its control), so shutdown can wait
/// for them: they run outside the servers' tasks.
#[derive(Default)]
pub struct Sessions {
    live: AtomicUsize,
    idle: Notify,
}

impl Sessions {
    pub fn enter(self: &Arc<Self>) -> SessionGuard {
        self.live.fetch_add(1, Ordering::AcqRel);
        SessionGuard(self.clone())
    }

    pub fn live(&self) -> usize {
        self.live.load(Ordering::Acquire)
    }

    /// Resolves when no session is left.
    pub async fn all_done(&self) {
        loop {
            let idle = self.idle.notified();
            if self.live() == 0 {
                return;
            }
            idle.await;
        }
    }
}

pub struct SessionGuard(Arc<Sessions>);

impl Drop for SessionGuard {
    fn drop(&mut self) {
        if self.0.live.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
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
    pub agent_defs: RwLock<HashMap<String, Arc<AgentSpec>>>,
    /// Phone number (last 10 digits) → its default agent.
    pub phone_agents: RwLock<HashMap<String, String>>,
    /// Bot decisions by CallSid, waiting for the Passthru that follows the Voicebot applet.
    pub decisions: Decisions,
    /// Media sessions alive.
    pub sessions: Arc<Sessions>,
    /// Set when the drain time is over: every session ends its call now.
    pub drain: watch::Sender<bool>,
    /// Connections and requests turned away, by reason.
    pub refusals: crate::access::Refusals,
    /// Wrong API keys by address (the key can't be guessed fast).
    pub key_guesses: crate::access::KeyGuesses,
    /// Times a listener's table of connection rates by address was full and cleared.
    pub conn_rate_overflows: Arc<std::sync::atomic::AtomicU64>,
    /// Console sessions signed out before their cookies expired.
    pub signed_out: crate::http::session::SignedOut,
    pub metrics: crate::metrics::Metrics,
    /// Calls in progress here, for the console.
    pub live: crate::live::LiveCalls,
    /// RECORDINGS_DIR's writer, when recordings are on.
    pub recordings: Option<crate::media::recording::Recordings>,
}

impl AppState {
    /// An agent as calls use it: a stored definition, or a built-in kind by its own name.
    pub fn agent_spec(&self, agent_id: &str) -> Option<Arc<AgentSpec>> {
        if let Some(spec) = self.agent_defs.read().ok().and_then(|d| d.get(agent_id).cloned()) {
            return Some(spec);
        }
        self.agents.contains(agent_id).then(|| Arc::new(AgentSpec::builtin(agent_id)))
    }

    pub fn agent_exists(&self, agent_id: &str) -> bool {
        self.agent_defs.read().is_ok_and(|d| d.contains_key(agent_id)) || self.agents.contains(agent_id)
    }

    /// The media endpoint handed to Exotel: PUBLIC_WS_URL (or the one derived from WEBHOOK_BASE_URL),
    /// else `ws://<host of the request>:<media port>` (`wss://` with TLS_CERT); `/media` added when the base has no path.
    pub fn media_url(&self, request_host: Option<&str>) -> String {
        let base = self.config.public_ws_url.clone().unwrap_or_else(|| {
            let host = request_host.map(strip_port).filter(|h| !h.is_empty()).unwrap_or_else(|| "127.0.0.1".into());
            // With TLS built in, the media port speaks only wss.
            let scheme = if self.config.tls.is_some() { "wss" } else { "ws" };
            format!("{scheme}://{host}:{}", self.ws_port)
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
            *d = defs.iter().map(|a| (a.id.clone(), Arc::new(AgentSpec::from_def(a, &self.secrets)))).collect();
        }
        if let Ok(mut p) = self.phone_agents.write() {
            *p = phones
                .into_iter()
                .filter_map(|ph: Phone| ph.default_agent.map(|a| (number_key(&ph.number), a)))
                .collect();
        }
        // Console sign-outs made on any gateway; only added to, never taken from.
        crate::http::session::load_signed_out(self).await;
        Ok(())
    }

    /// After an API write to agents or phones: this gateway's caches, then every other one's.
    pub async fn config_changed(&self) -> anyhow::Result<()> {
        self.reload_caches().await?;
        self.store.notify(crate::shared::CHANNEL).await
    }

    /// The bot's decision, for the Passthru that names the call by any of `keys` (its CallSid,
    /// its stream's SID).
    pub fn decide(&self, keys: &[String], decision: Decision) {
        self.decisions.put(keys, decision, Instant::now());
    }

    pub fn take_decision(&self, key: &str) -> Option<Decision> {
        self.decisions.take(key, Instant::now())
    }
}

/// Decisions waiting for their Passthru, each under the call's keys (its CallSid, its stream's
/// SID): bounded, each kept for [`DECISION_TTL`], the oldest shed first. A hang-up is kept too:
/// it must undo an earlier transfer that the call log still shows.
#[derive(Default)]
pub struct Decisions {
    inner: Mutex<Waiting>,
    dropped: AtomicU64,
}

#[derive(Default)]
struct Waiting {
    by_key: HashMap<String, Entry>,
    /// One key of each decision, oldest first (a key whose entry has since changed is skipped).
    order: VecDeque<(String, Instant)>,
}

struct Entry {
    decision: Decision,
    at: Instant,
    /// The decision's other keys.
    others: Vec<String>,
}

impl Waiting {
    /// Removes the decision under `key` (with its other keys), if it is the one made `at`.
    fn remove_if(&mut self, key: &str, at: Option<Instant>) -> Option<Entry> {
        if at.is_some_and(|at| self.by_key.get(key).is_none_or(|e| e.at != at)) {
            return None;
        }
        let e = self.by_key.remove(key)?;
        for o in &e.others {
            self.by_key.remove(o);
        }
        Some(e)
    }
}

impl Decisions {
    pub fn put(&self, keys: &[String], decision: Decision, now: Instant) {
        let Ok(mut w) = self.inner.lock() else { return };
        let Some(first) = keys.first() else { return };
        for k in keys {
            w.remove_if(k, None);
        }
        while let Some((k, at)) = w.order.front().cloned() {
            let expired = now.saturating_duration_since(at) >= DECISION_TTL;
            if !expired && w.by_key.len() + keys.len() <= MAX_DECISION_KEYS {
                break;
            }
            w.order.pop_front();
            // Still fresh: dropped for room (the call log still has it), and counted.
            if w.remove_if(&k, Some(at)).is_some() && !expired {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        for k in keys {
            let others = keys.iter().filter(|o| *o != k).cloned().collect();
            w.by_key.insert(k.clone(), Entry { decision: decision.clone(), at: now, others });
        }
        w.order.push_back((first.clone(), now));
        // Taken decisions leave their place in the order behind: shed those now and then.
        if w.order.len() > 2 * MAX_DECISION_KEYS {
            let Waiting { by_key, order } = &mut *w;
            order.retain(|(k, at)| by_key.get(k).is_some_and(|e| e.at == *at));
        }
    }

    pub fn take(&self, key: &str, now: Instant) -> Option<Decision> {
        let e = self.inner.lock().ok()?.remove_if(key, None)?;
        (now.saturating_duration_since(e.at) < DECISION_TTL).then_some(e.decision)
    }

    /// Keys waiting.
    pub fn pending(&self) -> usize {
        self.inner.lock().map(|w| w.by_key.len()).unwrap_or(0)
    }

    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions_are_bounded_and_expire() {
        let d = Decisions::default();
        let t0 = Instant::now();
        let to = |n: &str| Decision::Transfer(Some(n.into()));
        for i in 0..MAX_DECISION_KEYS + 5 {
            d.put(&[format!("c{i}")], to("+91"), t0 + Duration::from_millis(i as u64));
        }
        assert_eq!((d.pending(), d.dropped()), (MAX_DECISION_KEYS, 5));
        assert_eq!(d.take("c4", t0), None, "the oldest went first");
        assert_eq!(d.take("c5", t0 + Duration::from_secs(1)), Some(to("+91")));
        // Past the TTL a decision is not used; expired ones are shed as new ones come, uncounted.
        assert_eq!(d.take("c6", t0 + DECISION_TTL + Duration::from_secs(1)), None);
        d.put(&["late".into()], to("+92"), t0 + DECISION_TTL + Duration::from_secs(60));
        assert_eq!((d.pending(), d.dropped()), (1, 5));
        assert_eq!(d.take("late", t0 + DECISION_TTL + Duration::from_secs(61)), Some(to("+92")));
    }

    #[test]
    fn a_decision_under_two_keys_is_taken_once_and_a_hang_up_undoes_a_transfer() {
        let d = Decisions::default();
        let t0 = Instant::now();
        let keys = ["CA1".to_string(), "ST1".to_string()];
        d.put(&keys, Decision::Transfer(None), t0);
        assert_eq!(d.pending(), 2);
        assert_eq!(d.take("ST1", t0), Some(Decision::Transfer(None)));
        assert_eq!((d.take("CA1", t0), d.pending()), (None, 0), "its other key went with it");
        d.put(&keys, Decision::Transfer(None), t0);
        d.put(&keys, Decision::HangUp, t0 + Duration::from_secs(1));
        assert_eq!(d.take("CA1", t0 + Duration::from_secs(2)), Some(Decision::HangUp), "the later decision");
        assert_eq!(d.pending(), 0);
        // A key taken leaves its place in the order; many of them are shed, never piled up.
        for i in 0..3 * MAX_DECISION_KEYS {
            d.put(&[format!("k{i}")], Decision::HangUp, t0);
            d.take(&format!("k{i}"), t0);
        }
        assert!(d.inner.lock().unwrap().order.len() <= 2 * MAX_DECISION_KEYS + 1);
        assert_eq!(d.dropped(), 0);
    }
}
