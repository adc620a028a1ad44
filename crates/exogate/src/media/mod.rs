//! Media sessions: one task per Exotel WebSocket. The session parses Exotel's events and drives
//! the agent; its writer frames and paces the agent's audio onto the same socket.

mod control;
mod conversation;
mod endpoint;
pub(crate) mod recording;
mod session;
mod writer;

pub(crate) use control::OutCmd;
#[cfg(test)]
pub(crate) use control::test_control;
pub use control::{CallControl, MAX_QUEUED_AUDIO, QueueFull};
pub(crate) use endpoint::upgrade;
