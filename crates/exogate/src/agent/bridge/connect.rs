//! Dialing the bot: headers (Twilio's signature for a Twilio bot given its auth token), a connect
//! timeout covering TCP, TLS and the upgrade, and socket buffers sized for telephony audio.

use std::sync::atomic::{AtomicBool, Ordering};

use exotel::redact::redact_url;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::client::Request;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::BridgeSettings;
use super::settings::Protocol;
use crate::agent::AgentError;

pub(crate) type BotSocket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The unsigned-over-ws:// warning was given.
static WARNED_UNSIGNED: AtomicBool = AtomicBool::new(false);

/// Bots may send a whole reply in one message (Twilio allows any size).
const MAX_MESSAGE: usize = 4 << 20;

pub(crate) async fn connect(url: &str, settings: &BridgeSettings) -> Result<BotSocket, AgentError> {
    let shown = redact_url(url);
    let request = handshake(url, settings)?;
    let dial = tokio_tungstenite::connect_async_with_config(request, Some(socket_config()), true);
    match tokio::time::timeout(settings.connect_timeout, dial).await {
        Ok(Ok((ws, _response))) => Ok(ws),
        Ok(Err(e)) => Err(AgentError(format!("cannot connect to bot {shown}: {e}"))),
        Err(_) => {
            Err(AgentError(format!("bot {shown} did not accept within {} ms", settings.connect_timeout.as_millis())))
        }
    }
}

pub(crate) fn socket_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .max_write_buffer_size(2 * MAX_MESSAGE)
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE))
}

/// The upgrade request: the agent's headers, and Twilio's signature where it applies.
fn handshake(url: &str, settings: &BridgeSettings) -> Result<Request, AgentError> {
    let mut request =
        url.into_client_request().map_err(|e| AgentError(format!("bot url {} is not usable: {e}", redact_url(url))))?;
    for (name, value) in &settings.headers {
        // Checked when the agent was saved.
        if let (Ok(n), Ok(v)) =
            (axum::http::HeaderName::from_bytes(name.as_bytes()), axum::http::HeaderValue::from_str(value))
        {
            request.headers_mut().insert(n, v);
        }
    }
    // Twilio signs its handshake, and Twilio bots may check it before they start a model session.
    // Only over TLS, as Twilio only dials wss://: over plain ws:// anyone on the path could take
    // the signature and try tokens against it offline.
    let twilio = settings.protocol == Protocol::Twilio;
    let signed = twilio && url.starts_with("wss://");
    if twilio && !signed && settings.auth_token.is_some() && !WARNED_UNSIGNED.swap(true, Ordering::Relaxed) {
        // Once per process: a bot that checks the signature refuses every call, and this says why.
        tracing::warn!(
            url = %redact_url(url),
            "X-Twilio-Signature left out: the bot's URL is ws://, and a signature sent in clear could be used \
             to guess the auth token offline; use wss:// if the bot checks it"
        );
    }
    if let (true, Some(token)) = (signed, &settings.auth_token) {
        if let Ok(v) = axum::http::HeaderValue::from_str(&twilio_signature(token, url)) {
            request.headers_mut().insert("x-twilio-signature", v);
        }
    }
    Ok(request)
}

/// Twilio's `X-Twilio-Signature` for a GET of `url`: base64 of HMAC-SHA1 over the exact URL, keyed
/// with the account's auth token (a GET has no parameters to append).
pub(crate) fn twilio_signature(auth_token: &str, url: &str) -> String {
    use base64::Engine;
    use hmac::{Hmac, Mac};
    // HMAC takes a key of any length.
    let Ok(mut mac) = Hmac::<sha1::Sha1>::new_from_slice(auth_token.as_bytes()) else { return String::new() };
    mac.update(url.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_twilio_bot_with_a_token_gets_the_signature_over_tls_only() {
        let settings = |url: &str, token: Option<&str>| {
            let mut v = serde_json::json!({ "url": url, "protocol": "twilio", "account_sid": "AC1",
                "headers": { "X-Api-Key": "k" } });
            if let Some(t) = token {
                v["auth_token"] = t.into();
            }
            BridgeSettings::parse(&v).unwrap()
        };
        let url = "wss://bot.example.com/media?call=CA1&x=y";
        let r = handshake(url, &settings(url, Some("tok-0123456789abcdef"))).unwrap();
        assert_eq!(r.headers()["x-twilio-signature"], "qRhDrk8fOSreTHKaEHtVrxSgmj0=");
        assert_eq!(r.headers()["x-api-key"], "k");
        assert!(!handshake(url, &settings(url, None)).unwrap().headers().contains_key("x-twilio-signature"));
        let plain = "ws://bot.example.com/media?call=CA1&x=y";
        let r = handshake(plain, &settings(plain, Some("tok-0123456789abcdef"))).unwrap();
        assert!(!r.headers().contains_key("x-twilio-signature"), "not over plain ws://");
        assert!(WARNED_UNSIGNED.load(Ordering::Relaxed), "and the log says why");
    }

    #[test]
    fn twilio_signature_is_hmac_sha1_of_the_url_as_twilio_computes_it() {
        // Both from Python's hmac module: base64(hmac.new(token, url, sha1).digest()).
        let sig = twilio_signature("tok-0123456789abcdef", "wss://bot.example.com/media?call=CA1&x=y");
        assert_eq!(sig, "qRhDrk8fOSreTHKaEHtVrxSgmj0=");
        assert_eq!(
            twilio_signature("12345", "https://mycompany.com/myapp.php?foo=1&bar=2"),
            "zYQTYrRWXE7LtzbG4PfP7/bkkGo="
        );
    }
}
