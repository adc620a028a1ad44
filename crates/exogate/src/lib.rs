//! exogate: one binary between Exotel's Voicebot/Stream applets and voice bots.
//! HTTP webhooks (dynamic URL, Passthru), the bidirectional media WebSocket, agents, and a durable
//! call log.

pub mod access;
pub mod agent;
pub mod app;
pub mod campaign;
pub mod campaign_cli;
pub mod client_cli;
pub mod config;
pub mod dialer;
mod http;
mod ids;
mod listener;
pub mod live;
pub mod media;
pub mod metrics;
pub mod secrets;
pub mod server;
mod shared;
pub mod store;
pub mod tls;

pub use config::{Config, ServeArgs};
pub use server::{Gateway, start};

/// Entry points for `fuzz/`: the parsers behind private routes. Not an API.
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::http::status_callback::fields_of as status_callback_fields;
}
