//! Agents serve calls. The media session drives an agent with the call's events; the agent answers
//! through a [`CallControl`], which never blocks. Agents that need I/O spawn their own tasks and
//! keep a clone of the control.

mod echo;

use std::collections::BTreeMap;
use std::sync::Arc;

use exotel::{SampleRate, StopReason};

pub use crate::media::CallControl;

/// What an agent knows about its call.
#[derive(Debug, Clone)]
pub struct CallInfo {
    pub call_sid: Option<String>,
    pub stream_sid: String,
    pub from: Option<String>,
    pub to: Option<String>,
    pub custom_parameters: BTreeMap<String, String>,
    pub sample_rate: SampleRate,
    pub agent_id: String,
}

/// One call's agent. Every method runs on the call's session task and must return promptly.
pub trait Agent: Send {
    fn on_start(&mut self, _call: &CallInfo, _ctl: &CallControl) {}
    /// Caller audio: PCM16LE mono at the call's rate, any length.
    fn on_audio(&mut self, pcm: &[u8], ctl: &CallControl);
    fn on_dtmf(&mut self, _digit: &str, _ctl: &CallControl) {}
    /// Exotel finished playing everything before the mark `name` (as returned by [`CallControl::mark`]).
    fn on_mark_played(&mut self, _name: &str, _ctl: &CallControl) {}
    fn on_stop(&mut self, _reason: &StopReason) {}
}

/// Makes an agent for each call.
pub trait AgentFactory: Send + Sync {
    fn create(&self, call: &CallInfo) -> Box<dyn Agent>;
}

impl<F> AgentFactory for F
where
    F: Fn(&CallInfo) -> Box<dyn Agent> + Send + Sync,
{
    fn create(&self, call: &CallInfo) -> Box<dyn Agent> {
        self(call)
    }
}

/// Agent ids to factories.
#[derive(Clone)]
pub struct Registry {
    factories: BTreeMap<String, Arc<dyn AgentFactory>>,
}

impl Registry {
    pub fn builtin() -> Self {
        let mut r = Self { factories: BTreeMap::new() };
        r.register("echo", |_: &CallInfo| Box::new(echo::Echo) as Box<dyn Agent>);
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
