//! Secrets inside agent settings (a provider's API key, a tool-signing secret, a Twilio auth
//! token): stored encrypted, shown as a mask, given in clear only to the call's agent. Write-only
//! through the API: an update that sends the mask back, or leaves the field out, keeps the value.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Map, Value, json};

use crate::secrets::Secrets;

/// Settings fields that hold secrets.
pub const SECRET_FIELDS: [&str; 4] = ["api_key", "tool_secret", "auth_token", "api_key_secret"];
/// What the API shows for a stored secret.
pub const MASK: &str = "********";

fn sealed_blob(v: &Value) -> Option<&str> {
    v.as_object().filter(|o| o.len() == 1).and_then(|o| o.get("sealed")).and_then(Value::as_str)
}

/// The settings an update stores, in clear, for validation: a secret given as the mask (or not
/// given at all) keeps its stored value; `null` removes it.
pub fn merge(input: &Value, stored: Option<&Value>, secrets: &Secrets) -> anyhow::Result<Value> {
    let mut out = input.clone();
    let Some(map) = out.as_object_mut() else { return Ok(out) };
    for field in SECRET_FIELDS {
        let keep = match map.get(field) {
            None => true,
            Some(Value::String(s)) => s == MASK,
            Some(_) => false,
        };
        if !keep {
            if map.get(field).is_some_and(Value::is_null) {
                map.remove(field);
            }
            continue;
        }
        map.remove(field);
        if let Some(blob) = stored.and_then(|s| s.get(field)).and_then(sealed_blob) {
            map.insert(field.to_string(), Value::String(open_blob(blob, secrets)?));
        }
    }
    Ok(out)
}

/// Clear settings → what is stored: each secret encrypted.
pub fn seal(settings: &Value, secrets: &Secrets) -> anyhow::Result<Value> {
    let mut out = settings.clone();
    if let Some(map) = out.as_object_mut() {
        for field in SECRET_FIELDS {
            if let Some(Value::String(clear)) = map.get(field) {
                let blob = B64.encode(secrets.encrypt(clear)?);
                map.insert(field.to_string(), json!({ "sealed": blob }));
            }
        }
    }
    Ok(out)
}

/// Stored settings → what the call's agent gets. A secret that can't be opened (the secret key
/// changed) is left out, so the agent fails for want of it, saying so.
pub fn open(settings: &Value, secrets: &Secrets) -> Value {
    let mut out = settings.clone();
    if let Some(map) = out.as_object_mut() {
        for field in SECRET_FIELDS {
            let Some(blob) = map.get(field).and_then(sealed_blob).map(str::to_string) else { continue };
            match open_blob(&blob, secrets) {
                Ok(clear) => {
                    map.insert(field.to_string(), Value::String(clear));
                }
                Err(e) => {
                    tracing::warn!(field, error = %e, "a stored agent secret cannot be opened");
                    map.remove(field);
                }
            }
        }
    }
    out
}

/// Stored settings → what the API shows: secrets as the mask.
pub fn mask(settings: &mut Value) {
    if let Some(map) = settings.as_object_mut() {
        mask_map(map);
    }
}

fn mask_map(map: &mut Map<String, Value>) {
    for field in SECRET_FIELDS {
        if let Some(v) = map.get_mut(field) {
            if !v.is_null() {
                *v = Value::String(MASK.into());
            }
        }
    }
}

fn open_blob(blob: &str, secrets: &Secrets) -> anyhow::Result<String> {
    let bytes = B64.decode(blob).map_err(|_| anyhow::anyhow!("a sealed setting is not base64"))?;
    secrets.decrypt(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_sealed_masked_kept_and_opened() {
        let s = Secrets::from_passphrase("k");
        let clear = json!({ "model": "m", "api_key": "sk-live-123" });
        let stored = seal(&clear, &s).unwrap();
        assert!(!stored.to_string().contains("sk-live-123"), "{stored}");
        assert_eq!(open(&stored, &s), clear);
        let mut shown = stored.clone();
        mask(&mut shown);
        assert_eq!(shown["api_key"], MASK);
        // The mask sent back, or the field left out, keeps the stored key; null removes it.
        for input in [json!({ "model": "n", "api_key": MASK }), json!({ "model": "n" })] {
            assert_eq!(merge(&input, Some(&stored), &s).unwrap()["api_key"], "sk-live-123");
        }
        let removed = merge(&json!({ "api_key": null }), Some(&stored), &s).unwrap();
        assert!(removed.get("api_key").is_none());
        let replaced = merge(&json!({ "api_key": "sk-new" }), Some(&stored), &s).unwrap();
        assert_eq!(replaced["api_key"], "sk-new");
        // Another secret key can't open it: the field is left out.
        assert!(open(&stored, &Secrets::from_passphrase("other")).get("api_key").is_none());
    }
}
