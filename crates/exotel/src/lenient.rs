//! Serde helpers for fields Exotel sends either as JSON strings or as numbers.

use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// Accepts `"12"`, `12`, `12.0`, `"16kHz"`: anything whose leading digits make a number.
pub(crate) fn opt_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Ok(match Option::<Value>::deserialize(d)? {
        Some(Value::Number(n)) => n.as_u64().or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64)),
        Some(Value::String(s)) => leading_u64(&s),
        _ => None,
    })
}

/// Accepts a string, a number or a bool and keeps its text.
pub(crate) fn opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Option::<Value>::deserialize(d)?.and_then(value_text))
}

pub(crate) fn value_text(v: Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

pub(crate) fn leading_u64(s: &str) -> Option<u64> {
    let t = s.trim();
    let end = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    t[..end].parse().ok()
}

/// `8000`, `"8000"`, `"8000Hz"`, `"16kHz"`, `"16 khz"`, `"8.0kHz"` → Hz.
pub(crate) fn parse_hz(s: &str) -> Option<u32> {
    let t = s.trim().to_ascii_lowercase();
    let (num, scale) = match t.strip_suffix("khz") {
        Some(n) => (n.trim(), 1000.0),
        None => (t.strip_suffix("hz").unwrap_or(&t).trim(), 1.0),
    };
    let hz = num.parse::<f64>().ok()? * scale;
    (hz.is_finite() && hz > 0.0 && hz < 1e7).then_some(hz.round() as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hz_forms() {
        assert_eq!(parse_hz("8000"), Some(8000));
        assert_eq!(parse_hz("16kHz"), Some(16000));
        assert_eq!(parse_hz("24000Hz"), Some(24000));
        assert_eq!(parse_hz("8.0 kHz"), Some(8000));
        assert_eq!(parse_hz("fast"), None);
        assert_eq!(leading_u64(" 128kbps"), Some(128));
    }
}
