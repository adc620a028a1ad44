//! Plays Exotel's side of one Voicebot call against any bot WebSocket: `connected`, `start`,
//! caller audio in real time, DTMF, mark echoes when the simulated playback reaches them, and
//! `stop`. Everything the bot sends is checked against Exotel's rules (docs/protocol.md §5) and
//! lands in a [`CallReport`].
//!
//! [`load`] runs many such calls at once against one server, cheaply, and measures the server's
//! CPU, memory and echo delay.
//!
//! [`fake_exotel`] goes one level up: a fake Exotel REST API (`Calls/connect`) that plays each
//! placed call the way Exotel would, for testing a gateway end to end.
//!
//! [`fake_bot`] is the other end: a fake upstream voice bot (a WebSocket server speaking Exotel
//! Voicebot or Twilio Media Streams) for testing a gateway's bridge to the user's own bot.

mod audio;
mod call;
pub mod cli;
mod config;
mod error;
pub mod fake_ai;
pub mod fake_bot;
pub mod fake_exotel;
pub mod load;
pub mod playback;
mod report;
pub use report::ClearSeen;
mod tls;
pub mod validate;

pub use audio::{load_wav, resample, tone, write_wav};
pub use call::run_call;
pub use cli::{CallArgs, SimCommand};
pub use config::{AudioSource, CallConfig, Injected, Target, random_sid};
pub use error::SimError;
pub use load::{LoadConfig, LoadReport, run_load};
pub use report::CallReport;
pub use validate::Violation;
