//! Dialing the provider and waiting until the session is configured. Refusals become readable
//! reasons for the call log: the key refused, rate-limited, the model unknown, or the provider's
//! own close reason (Gemini reports errors as close frames).

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout_at};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use url::Url;

use super::provider::{Event, Wire};
use super::settings::{ProviderKind, VoiceSettings};

pub(crate) type ProviderSocket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A whole answer may come in one audio delta.
const MAX_MESSAGE: usize = 16 << 20;

/// The URL for this agent: OpenAI takes the model as `?model=`; Gemini names it in `setup`.
pub(crate) fn url(settings: &VoiceSettings) -> Result<Url, String> {
    let mut url = Url::parse(&settings.base_url).map_err(|e| format!("base_url is not usable: {e}"))?;
    if settings.provider == ProviderKind::OpenAi && !url.query_pairs().any(|(k, _)| k == "model") {
        url.query_pairs_mut().append_pair("model", &settings.model);
    }
    Ok(url)
}

/// Opens the socket, sends `setup`, and reads until the provider says the session is ready.
pub(crate) async fn open(
    settings: &VoiceSettings,
    wire: &mut dyn Wire,
    setup: Vec<String>,
) -> Result<(ProviderSocket, Vec<Event>), String> {
    let key = settings.api_key()?;
    let url = url(settings)?;
    let mut request = url.as_str().into_client_request().map_err(|e| format!("base_url is not usable: {e}"))?;
    let value = axum::http::HeaderValue::from_str(&settings.auth_value(&key))
        .map_err(|_| "api_key is not usable in a header".to_string())?;
    let name = axum::http::HeaderName::from_bytes(settings.auth_header.as_bytes())
        .map_err(|_| "auth_header is not a header name".to_string())?;
    request.headers_mut().insert(name, value);
    // tungstenite zero-fills its read buffer on every read: 128 KiB by default, per call.
    let config = WebSocketConfig::default()
        .read_buffer_size(16 * 1024)
        .write_buffer_size(0)
        .max_write_buffer_size(2 * MAX_MESSAGE)
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE));
    let deadline = Instant::now() + settings.connect_timeout;
    let host = url.host_str().unwrap_or_default().to_string();
    let mut ws = match timeout_at(deadline, tokio_tungstenite::connect_async_with_config(request, Some(config), true))
        .await
    {
        Err(_) => return Err(format!("{host} did not accept within {} ms", settings.connect_timeout.as_millis())),
        Ok(Err(tungstenite::Error::Http(resp))) => return Err(refused(resp.status().as_u16(), resp.body().as_deref())),
        Ok(Err(e)) => return Err(format!("cannot connect to {host}: {e}")),
        Ok(Ok((ws, _))) => ws,
    };
    for text in setup {
        ws.send(Message::text(text)).await.map_err(|e| format!("provider connection lost during setup: {e}"))?;
    }
    let mut events = Vec::new();
    loop {
        let msg = match timeout_at(deadline, ws.next()).await {
            Err(_) => return Err(format!("no session from {host} within {} ms", settings.connect_timeout.as_millis())),
            Ok(None) => return Err("the provider closed the connection during setup".into()),
            Ok(Some(Err(e))) => return Err(format!("provider connection lost during setup: {e}")),
            Ok(Some(Ok(m))) => m,
        };
        let text = match &msg {
            Message::Text(t) => t.as_str(),
            Message::Binary(b) => std::str::from_utf8(b).map_err(|_| "the provider sent binary that is not JSON")?,
            Message::Close(frame) => return Err(closed(frame.as_ref())),
            _ => continue,
        };
        let before = events.len();
        wire.parse(text, &mut events).map_err(|e| format!("the provider sent an unreadable message: {e}"))?;
        for e in &events[before..] {
            match e {
                Event::Fatal(reason) => return Err(format!("provider error: {reason}")),
                // Before the session is ready, an error can only be the setup refused (OpenAI
                // applies nothing of a refused session.update): waiting on would only turn the
                // provider's reason into a timeout.
                Event::Warning(reason) => return Err(format!("provider refused the session setup: {reason}")),
                _ => {}
            }
        }
        if let Some(i) = events.iter().position(|e| *e == Event::Ready) {
            events.remove(i);
            return Ok((ws, events));
        }
    }
}

/// An upgrade answered with an HTTP error.
fn refused(status: u16, body: Option<&[u8]>) -> String {
    let what = match status {
        401 => "refused the API key",
        403 => "refused access (no access to the realtime API for this key?)",
        404 => "does not know the model or URL",
        429 => "is rate-limiting",
        _ => "refused the connection",
    };
    let detail = body.map(String::from_utf8_lossy).map(|b| b.chars().take(200).collect::<String>()).unwrap_or_default();
    if detail.trim().is_empty() {
        format!("provider {what} (HTTP {status})")
    } else {
        format!("provider {what} (HTTP {status}): {}", detail.trim())
    }
}

/// The provider's close frame, as a reason.
pub(crate) fn closed(frame: Option<&tungstenite::protocol::CloseFrame>) -> String {
    match frame {
        Some(f) if !f.reason.is_empty() => {
            format!("provider closed the connection ({}: {})", u16::from(f.code), f.reason)
        }
        Some(f) => format!("provider closed the connection ({})", u16::from(f.code)),
        None => "provider closed the connection".into(),
    }
}

/// How long a close handshake with the provider may take at the end of a call.
pub(crate) const CLOSE_WAIT: Duration = Duration::from_secs(1);
