//! The `bridge` agent: puts the user's own bot behind the call. exogate dials the bot's WebSocket
//! (as Exotel or as Twilio would), translates both ways, and fixes what bots get wrong on Exotel:
//! whatever sizes and pace the bot sends, Exotel gets legal chunks paced to real time; marks are
//! echoed when Exotel has played them; `clear` cuts playback within one chunk.

mod connect;
mod exotel_wire;
mod marks;
mod run;
mod settings;
mod twilio_rest;
mod twilio_wire;
mod wire;

use std::collections::BTreeMap;

pub use settings::{BridgeSettings, Protocol};
pub use twilio_rest::{UpdateOutcome, update as update_call};

use super::{AgentError, AgentFactory, AgentFuture, AgentSetup, AgentSpec, SettingsError};
use wire::Wire;

pub struct BridgeFactory;

impl AgentFactory for BridgeFactory {
    fn create(&self, setup: AgentSetup) -> AgentFuture {
        Box::pin(async move {
            let settings = BridgeSettings::parse(&setup.spec.settings).map_err(|e| AgentError(e.to_string()))?;
            let call = setup.call.clone().unwrap_or_default();
            let url = settings::expand(&settings.url, &call, &setup.query)
                .ok_or_else(|| AgentError("bot url has an unclosed placeholder".into()))?;
            let ws = connect::connect(&url, &settings).await?;
            let wire: Box<dyn Wire> = match settings.protocol {
                Protocol::Exotel => Box::new(exotel_wire::ExotelWire::new(settings.sample_rate)),
                Protocol::Twilio => Box::new(twilio_wire::TwilioWire::new(settings.account_sid.clone())),
            };
            let auth = twilio_rest::ApiAuth::from_settings(&settings);
            Ok(super::task::spawn(&setup.ctl, move |events, ctl| run::run(ws, wire, events, ctl, auth)))
        })
    }

    fn validate(&self, settings: &serde_json::Value) -> Result<(), SettingsError> {
        BridgeSettings::parse(settings).map(|_| ())
    }

    fn early(&self, spec: &AgentSpec, query: &BTreeMap<String, String>) -> bool {
        BridgeSettings::parse(&spec.settings).is_ok_and(|s| s.early(query))
    }
}
