//! Agents serve calls. The media session drives an agent with the call's events; the agent answers
//! through a [`CallControl`], which never blocks. An agent is either a set of callbacks run on the
//! session's task ([`Agent`], cheap: the echo agent) or one async task reading a stream of
//! [`CallEvent`]s ([`task::spawn`], natural for a bridge or an AI pipeline). That task, too, is
//! polled by the session's own task while the call lasts, so a frame passing through it costs no
//! wake-up of another thread.
//!
//! A factory makes the agent from its stored definition ([`AgentSpec`]); making it is async and may
//! fail, and a failure (then or later, through [`CallControl::fail`]) is handled by the agent's
//! `on_failure`: hang up, transfer, or hand the call to another agent.

pub mod bridge;
mod echo;
pub mod sealed;
mod spec;
pub mod task;
pub mod voice;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use exotel::{SampleRate, StopReason};

pub use crate::media::{CallControl, MAX_QUEUED_AUDIO, QueueFull};
pub use spec::{AgentSpec, FailurePrompt, OnFailure, SettingsError, failure_prompt, record_setting};
pub use task::{CallEvent, CallEvents};

/// What an agent knows about its call.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CallInfo {
    pub call_sid: Option<String>,
    pub stream_sid: String,
    pub account_sid: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub custom_parameters: BTreeMap<String, String>,
    pub sample_rate: SampleRate,
    pub agent_id: String,
}

/// Why a call ended, as the agent learns it (exactly once).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndReason {
    /// Exotel sent `stop` (the caller hung up, or the applet ended).
    Stop(StopReason),
    /// Exotel's socket closed or dropped without `stop`.
    Disconnected,
    /// The agent hung up or transferred, and its last audio has played.
    AgentEnded,
    /// The gateway is shutting down and the drain time is over.
    Shutdown,
    /// The agent failed (or panicked) and no fallback took the call over.
    AgentFailed(String),
    /// The socket never sent `start`.
    NoStart,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallEnd {
    pub reason: EndReason,
}

impl CallEnd {
    pub fn new(reason: EndReason) -> Self {
        Self { reason }
    }

    pub fn disconnected() -> Self {
        Self::new(EndReason::Disconnected)
    }
}

/// One call's agent. Every method runs on the call's session task and must return promptly; a
/// panic in one ends only this call (as an agent failure).
pub trait Agent: Send {
    fn on_start(&mut self, _call: &CallInfo, _ctl: &CallControl) {}
    /// Caller audio: PCM16LE mono at the call's rate, any length.
    fn on_audio(&mut self, pcm: &[u8], ctl: &CallControl);
    /// A key the caller pressed, and how long it was held (ms) when Exotel said.
    fn on_dtmf(&mut self, _digit: &str, _duration_ms: Option<u64>, _ctl: &CallControl) {}
    /// Exotel finished playing everything before the mark `name` (as returned by [`CallControl::mark`]).
    fn on_mark_played(&mut self, _name: &str, _ctl: &CallControl) {}
    /// Exotel itself sent `clear`: our queued audio was dropped.
    fn on_clear(&mut self, _ctl: &CallControl) {}
    /// The call is over; called exactly once, whatever the cause.
    fn on_end(&mut self, _end: &CallEnd) {}
    /// Work the agent needs polled besides its callbacks (see [`task::spawn`]). The session takes
    /// it once, polls it on its own task while the call lasts, and then hands what is left of it
    /// to a task of its own (closing a bot's socket may outlive the call).
    fn take_task(&mut self) -> Option<AgentTask> {
        None
    }
}

/// An agent's background work: it must not panic (wrap it as [`task::spawn`] does).
pub type AgentTask = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Why an agent could not be made.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct AgentError(pub String);

pub type AgentFuture = Pin<Box<dyn Future<Output = Result<Box<dyn Agent>, AgentError>> + Send>>;

/// What a factory gets to make one call's agent.
pub struct AgentSetup {
    pub spec: Arc<AgentSpec>,
    /// `None` when the agent is made as soon as the socket is accepted, before `start`
    /// (see [`AgentFactory::early`]); [`Agent::on_start`] brings it.
    pub call: Option<CallInfo>,
    /// The media URL's query parameters (the applet's custom parameters).
    pub query: BTreeMap<String, String>,
    pub ctl: CallControl,
}

/// Makes an agent for each call, and checks an agent definition's settings when it is saved.
pub trait AgentFactory: Send + Sync {
    fn create(&self, setup: AgentSetup) -> AgentFuture;

    /// Checks `settings` when an agent of this kind is created or updated through the API.
    fn validate(&self, _settings: &serde_json::Value) -> Result<(), SettingsError> {
        Ok(())
    }

    /// True if the agent can be made before `start` with only the URL's query: the session then
    /// starts making it as soon as the socket is accepted (a bridge connects to its bot while
    /// Exotel is still to send `start`).
    fn early(&self, _spec: &AgentSpec, _query: &BTreeMap<String, String>) -> bool {
        false
    }
}

/// A synchronous constructor is a factory that never fails.
impl<F> AgentFactory for F
where
    F: Fn(&CallInfo) -> Box<dyn Agent> + Send + Sync,
{
    fn create(&self, setup: AgentSetup) -> AgentFuture {
        let agent = self(&setup.call.unwrap_or_default());
        Box::pin(std::future::ready(Ok(agent)))
    }
}

/// Agent kinds (implementations) by name.
#[derive(Clone)]
pub struct Registry {
    factories: BTreeMap<String, Arc<dyn AgentFactory>>,
}

impl Registry {
    pub fn builtin() -> Self {
        let mut r = Self { factories: BTreeMap::new() };
        r.register("echo", |_: &CallInfo| Box::new(echo::Echo) as Box<dyn Agent>);
        r.register("bridge", bridge::BridgeFactory);
        r.register("openai-realtime", voice::VoiceFactory::new(voice::ProviderKind::OpenAi));
        r.register("gemini-live", voice::VoiceFactory::new(voice::ProviderKind::Gemini));
        r
    }

    pub fn register(&mut self, id: &str, factory: impl AgentFactory + 'static) {
        self.factories.insert(id.to_string(), Arc::new(factory));
    }

    pub fn contains(&self, id: &str) -> bool {
        self.factories.contains_key(id)
    }

    pub fn ids(&self) -> Vec<&str> {
        self.factories.keys().map(String::as_str).collect()
    }

    pub fn get(&self, id: &str) -> Option<Arc<dyn AgentFactory>> {
        self.factories.get(id).cloned()
    }
}
