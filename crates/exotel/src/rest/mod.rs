//! A small client for Exotel's Voice v1 REST API (docs/protocol.md §8): place an outbound call with
//! `Calls/connect`, and read a call back with `Calls/{sid}`.
//!
//! Errors answer the question a dialler cares about: was the call placed? [`RestError::Ambiguous`] is
//! the only "maybe"; everything else means it was not. Nothing here retries on its own.

mod account;
mod call;
mod client;
mod connect;
mod error;
mod xml;

pub use account::Account;
pub use call::CallResource;
pub use client::Client;
pub use connect::{
    CallTarget, CallbackContentType, ConnectRequest, MAX_CUSTOM_FIELD, MAX_STREAM_NAME, MAX_STREAM_URL, MAX_TIME_LIMIT,
    MAX_TIME_OUT, RecordingChannels, StatusCallbackEvent,
};
pub use error::RestError;
