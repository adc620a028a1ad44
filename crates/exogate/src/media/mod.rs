//! Media sessions: one per Exotel WebSocket. A reader (the session) parses Exotel's events and
//! drives the agent; a writer task alone owns the socket's sending half, frames and paces audio.

mod control;
mod endpoint;
mod session;
mod writer;

pub use control::CallControl;
pub(crate) use endpoint::upgrade;
