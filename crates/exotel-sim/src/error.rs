use std::path::PathBuf;
use std::time::Duration;

/// Why a call could not be had at all, or why audio could not be prepared. Anything that goes
/// wrong once the WebSocket is up is not an error: it goes into the [`crate::CallReport`].
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("invalid URL {url}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("invalid call configuration: {0}")]
    Config(String),
    #[error("dynamic URL {url}: request failed: {reason}")]
    DynamicRequest { url: String, reason: String },
    #[error("dynamic URL {url} answered HTTP {status}: {body}")]
    DynamicStatus { url: String, status: u16, body: String },
    #[error("dynamic URL {url} answered 200 without a usable ws:// or wss:// \"url\" ({reason}): {body}")]
    DynamicBody { url: String, reason: String, body: String },
    #[error("could not connect to {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("WebSocket handshake with {url} refused: HTTP {status}: {body}")]
    Handshake { url: String, status: u16, body: String },
    #[error("no WebSocket session with {url} within {timeout:?}")]
    ConnectTimeout { url: String, timeout: Duration },
    #[error("WAV {}: {source}", path.display())]
    Wav {
        path: PathBuf,
        #[source]
        source: hound::Error,
    },
    #[error("audio: {0}")]
    Audio(String),
    /// The fake Exotel's HTTP server could not start.
    #[error("fake Exotel server: {0}")]
    Server(String),
}

/// Bodies from a misbehaving endpoint can be huge; an error message only needs the start.
pub(crate) fn excerpt(body: &str) -> String {
    const MAX: usize = 300;
    match body.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &body[..cut]),
        None => body.to_string(),
    }
}
