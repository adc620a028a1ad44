//! Built-in voice AI agents: `openai-realtime` (OpenAI Realtime, GA protocol) and `gemini-live`
//! (Gemini Live). "This prompt, this voice, this number" with the telephony done right: barge-in
//! that tells the model what the caller actually heard, hang-up and transfer as tools, the user's
//! own tools as signed webhooks, transcripts and usage on the call log.

mod connect;
mod gemini;
mod openai;
mod playout;
mod provider;
mod run;
mod settings;
mod template;
pub mod tools;

use std::sync::Arc;

pub use settings::{ProviderKind, VoiceSettings, WebhookTool};

use super::{AgentError, AgentFactory, AgentFuture, AgentSetup, SettingsError};
use provider::Wire;

pub struct VoiceFactory {
    kind: ProviderKind,
    http: reqwest::Client,
}

impl VoiceFactory {
    pub fn new(kind: ProviderKind) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(5))
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        Self { kind, http }
    }
}

impl AgentFactory for VoiceFactory {
    fn create(&self, setup: AgentSetup) -> AgentFuture {
        let (kind, http) = (self.kind, self.http.clone());
        Box::pin(async move {
            let mut settings =
                VoiceSettings::parse(kind, &setup.spec.settings).map_err(|e| AgentError(e.to_string()))?;
            // The agent's own greeting, when its settings name none.
            if settings.greeting.is_none() {
                settings.greeting = setup.spec.greeting.clone().filter(|g| !g.trim().is_empty());
            }
            let settings = Arc::new(settings);
            let mut call = setup.call.clone().unwrap_or_default();
            call.agent_id = setup.spec.id.clone();
            let mut wire: Box<dyn Wire> = match kind {
                ProviderKind::OpenAi => Box::new(openai::OpenAiWire::new(settings.clone(), call.sample_rate)),
                ProviderKind::Gemini => Box::new(gemini::GeminiWire::new(settings.clone(), call.sample_rate)),
            };
            let instructions = template::fill(&settings.instructions, &call);
            let decls = tools::declarations(&settings);
            let msgs = wire.setup(&instructions, &decls, None);
            let (ws, early) = connect::open(&settings, wire.as_mut(), msgs).await.map_err(AgentError)?;
            let voice = run::Voice { ws, wire, settings, call, instructions, http, early };
            Ok(super::task::spawn(&setup.ctl, move |events, ctl| run::run(voice, events, ctl)))
        })
    }

    fn validate(&self, settings: &serde_json::Value) -> Result<(), SettingsError> {
        VoiceSettings::parse(self.kind, settings).map(|_| ())
    }
}
