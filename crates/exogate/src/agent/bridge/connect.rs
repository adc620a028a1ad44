//! Dialing the bot: headers, a connect timeout covering TCP, TLS and the upgrade, and socket
//! buffers sized for telephony audio.

use exotel::redact::redact_url;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::BridgeSettings;
use crate::agent::AgentError;

pub(crate) type BotSocket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Bots may send a whole reply in one message (Twilio allows any size).
const MAX_MESSAGE: usize = 4 << 20;

pub(crate) async fn connect(url: &str, settings: &BridgeSettings) -> Result<BotSocket, AgentError> {
    let shown = redact_url(url);
    let mut request =
        url.into_client_request().map_err(|e| AgentError(format!("bot url {shown} is not usable: {e}")))?;
    for (name, value) in &settings.headers {
        // Checked when the agent was saved.
        if let (Ok(n), Ok(v)) =
            (axum::http::HeaderName::from_bytes(name.as_bytes()), axum::http::HeaderValue::from_str(value))
        {
            request.headers_mut().insert(n, v);
        }
    }
    let config = WebSocketConfig::default()
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .max_write_buffer_size(2 * MAX_MESSAGE)
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE));
    let dial = tokio_tungstenite::connect_async_with_config(request, Some(config), true);
    match tokio::time::timeout(settings.connect_timeout, dial).await {
        Ok(Ok((ws, _response))) => Ok(ws),
        Ok(Err(e)) => Err(AgentError(format!("cannot connect to bot {shown}: {e}"))),
        Err(_) => {
            Err(AgentError(format!("bot {shown} did not accept within {} ms", settings.connect_timeout.as_millis())))
        }
    }
}
