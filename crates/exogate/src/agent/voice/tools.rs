//! Tools the model may call: `end_call` and `transfer_call` built in, the user's own as HTTPS
//! webhooks. A webhook gets JSON (the tool, its arguments, the call's ids and variables), signed
//! with HMAC-SHA256 when `tool_secret` is set; its JSON answer goes back to the model. A slow or
//! failing webhook gives the model an error result, never a stuck call.

use std::time::{SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use super::provider::ToolDecl;
use super::settings::{VoiceSettings, WebhookTool};

/// A webhook answer larger than this is not given to the model.
const MAX_ANSWER: usize = 64 * 1024;
/// Header with `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`.
pub const SIGNATURE_HEADER: &str = "x-exogate-signature";

/// Every tool the model is told about.
pub fn declarations(settings: &VoiceSettings) -> Vec<ToolDecl> {
    let mut tools = vec![
        ToolDecl {
            name: "end_call".into(),
            description: "End the phone call. Say a short goodbye first; the call ends once it has been heard.".into(),
            parameters: json!({
                "type": "object",
                "properties": { "reason": { "type": "string", "description": "Why the call is ending." } },
            }),
        },
        ToolDecl {
            name: "transfer_call".into(),
            description: "Transfer the caller to a human or another number. Tell the caller first.".into(),
            parameters: json!({
                "type": "object",
                "properties": {
                    "target": { "type": "string", "description": "Number or queue to transfer to, if known." },
                    "reason": { "type": "string" },
                },
            }),
        },
    ];
    tools.extend(settings.tools.iter().map(|t| ToolDecl {
        name: t.name.clone(),
        description: t.description.clone(),
        parameters: t.parameters.clone(),
    }));
    tools
}

/// `t=…,v1=…` for `body`, so the endpoint can check the call came from this gateway (and when).
pub fn signature(secret: &str, unix: u64, body: &[u8]) -> String {
    // HMAC takes keys of any length.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).unwrap_or_else(|_| unreachable!());
    mac.update(unix.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("t={unix},v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// Calls the tool's webhook; the result is what the model gets (an `error` object on failure).
pub async fn call_webhook(
    client: &reqwest::Client,
    tool: &WebhookTool,
    args: Value,
    call: &Value,
    secret: Option<&str>,
) -> Value {
    let body = json!({ "tool": tool.name, "arguments": args, "call": call }).to_string();
    let mut req = client.post(&tool.url).header("content-type", "application/json").timeout(tool.timeout);
    if let Some(secret) = secret {
        let unix = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        req = req.header(SIGNATURE_HEADER, signature(secret, unix, body.as_bytes()));
    }
    let fail = |message: String| {
        tracing::warn!(tool = %tool.name, error = %message, "tool webhook failed");
        json!({ "error": message })
    };
    let answer = async {
        let mut resp = req.body(body).send().await?;
        let status = resp.status();
        let mut bytes = Vec::new();
        while let Some(chunk) = resp.chunk().await? {
            if bytes.len() + chunk.len() > MAX_ANSWER {
                return Ok((status, None));
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok::<_, reqwest::Error>((status, Some(bytes)))
    };
    match answer.await {
        Err(e) if e.is_timeout() => fail(format!("the tool did not answer within {} ms", tool.timeout.as_millis())),
        Err(e) => fail(format!("the tool could not be reached: {}", e.without_url())),
        Ok((_, None)) => fail(format!("the tool's answer is larger than {MAX_ANSWER} bytes")),
        Ok((status, Some(_))) if !status.is_success() => fail(format!("the tool answered HTTP {}", status.as_u16())),
        Ok((_, Some(bytes))) => match serde_json::from_slice::<Value>(&bytes) {
            Ok(v) => v,
            Err(_) => json!({ "result": String::from_utf8_lossy(&bytes) }),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_stripe_style_hmac() {
        let sig = signature("whsec_0123456789abcdef", 1_700_000_000, b"{}");
        let (t, v1) = sig.split_once(',').unwrap();
        assert_eq!(t, "t=1700000000");
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(b"whsec_0123456789abcdef").unwrap();
        mac.update(b"1700000000.{}");
        assert_eq!(v1, format!("v1={}", hex::encode(mac.finalize().into_bytes())));
    }
}
