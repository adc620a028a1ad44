//! Serde helpers for fields Exotel sends either as JSON strings or as numbers.

use std::fmt;

use serde::de::{IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// Accepts `"12"`, `12`, `12.0`, `"16kHz"`: anything whose leading digits make a number.
/// Read in place: every media event has three such fields, and none of them allocates.
pub(crate) fn opt_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    d.deserialize_option(LenientU64)
}

struct LenientU64;

impl<'de> Visitor<'de> for LenientU64 {
    type Value = Option<u64>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a number, or a string starting with one")
    }
    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Some(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(u64::try_from(v).ok())
    }
    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok((v >= 0.0).then_some(v as u64))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(leading_u64(v))
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(None)
    }
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

    #[derive(Deserialize)]
    struct N {
        #[serde(default, deserialize_with = "opt_u64")]
        n: Option<u64>,
    }

    #[test]
    fn u64_forms() {
        let n = |json: &str| serde_json::from_str::<N>(json).map(|v| v.n).map_err(|e| e.to_string());
        assert_eq!(n(r#"{"n": 12}"#), Ok(Some(12)));
        assert_eq!(n(r#"{"n": "12"}"#), Ok(Some(12)));
        assert_eq!(n(r#"{"n": "16kHz"}"#), Ok(Some(16)));
        assert_eq!(n(r#"{"n": 12.7}"#), Ok(Some(12)));
        assert_eq!(n(r#"{"n": "12\u0030"}"#), Ok(Some(120)));
        for none in [r#"{}"#, r#"{"n": null}"#, r#"{"n": -3}"#, r#"{"n": -0.5}"#, r#"{"n": true}"#, r#"{"n": "x"}"#] {
            assert_eq!(n(none), Ok(None), "{none}");
        }
        assert_eq!(n(r#"{"n": [1, {"a": 2}]}"#), Ok(None));
        assert_eq!(n(r#"{"n": {"a": [3]}}"#), Ok(None));
    }
}
