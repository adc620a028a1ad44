//! The Exotel platform as a library: the Voicebot/Stream WebSocket protocol (both directions),
//! an outbound framer that only ever produces Exotel-legal chunks, webhook (Passthru, dynamic-URL)
//! parsing, and a REST client for placing outbound calls ([`rest`]). No server lives here.
//!
//! Every parser follows docs/protocol.md §4.8: accept every documented spelling, send the documented one.

pub mod audio;
pub mod event;
pub mod framer;
mod lenient;
pub mod outbound;
pub mod redact;
pub mod rest;
pub mod webhook;

pub use audio::SampleRate;
pub use audio::resample::{ResampleError, Resampler};
pub use event::{InboundEvent, MediaFormat, ParseError, Start, StopReason};
pub use framer::{FrameSpec, FrameSpecError, Framer};
pub use outbound::{OutboundEncoder, OutboundEvent};
pub use webhook::{CallDetails, StreamOutcome};
