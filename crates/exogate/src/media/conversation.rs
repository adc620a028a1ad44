//! What an AI agent's call said and cost: transcript lines and the provider's usage, kept for the
//! call's row. Bounded: a 60-minute call can't grow the session without limit.

use serde_json::{Map, Value, json};

/// Transcript text kept per call; later lines are counted, not kept.
const MAX_TRANSCRIPT_BYTES: usize = 256 * 1024;

#[derive(Default)]
pub(crate) struct Conversation {
    lines: Vec<Value>,
    bytes: usize,
    left_out: u64,
    usage: Map<String, Value>,
}

impl Conversation {
    /// Keeps one line; false when the transcript is full (the line is counted instead).
    pub(crate) fn line(&mut self, at_ms: u64, speaker: &str, text: &str) -> bool {
        if self.bytes + text.len() > MAX_TRANSCRIPT_BYTES {
            self.left_out += 1;
            return false;
        }
        self.bytes += text.len();
        self.lines.push(json!({ "at_ms": at_ms, "speaker": speaker, "text": text }));
        true
    }

    /// Adds a provider's usage report: numbers are summed, nested objects merged.
    pub(crate) fn usage(&mut self, report: &Value) {
        if let Some(obj) = report.as_object() {
            add(&mut self.usage, obj, 0);
        }
    }

    /// The row's `transcript` and `usage` columns, as JSON text (None when empty), once the call
    /// is over: the lines are moved out, not copied.
    pub(crate) fn columns(&mut self) -> (Option<String>, Option<String>) {
        let mut lines = std::mem::take(&mut self.lines);
        if self.left_out > 0 && !lines.is_empty() {
            lines.push(json!({ "speaker": "exogate", "text": format!("{} more lines left out", self.left_out) }));
        }
        let transcript = (!lines.is_empty()).then(|| Value::Array(lines).to_string());
        let usage = (!self.usage.is_empty()).then(|| Value::Object(std::mem::take(&mut self.usage)).to_string());
        (transcript, usage)
    }
}

fn add(acc: &mut Map<String, Value>, report: &Map<String, Value>, depth: u8) {
    // Providers' usage objects are two or three levels deep; anything deeper is not usage.
    if depth > 4 {
        return;
    }
    for (k, v) in report {
        match v {
            Value::Number(n) => {
                let sum = acc.get(k).and_then(Value::as_f64).unwrap_or(0.0) + n.as_f64().unwrap_or(0.0);
                let sum = if sum.fract() == 0.0 && sum.abs() < 9e15 { json!(sum as i64) } else { json!(sum) };
                acc.insert(k.clone(), sum);
            }
            Value::Object(inner) => {
                let slot = acc.entry(k.clone()).or_insert_with(|| Value::Object(Map::new()));
                if let Some(m) = slot.as_object_mut() {
                    add(m, inner, depth + 1);
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_is_summed_and_the_transcript_bounded() {
        let mut c = Conversation::default();
        c.usage(&json!({ "total_tokens": 10, "input_token_details": { "audio_tokens": 4 }, "id": "x" }));
        c.usage(&json!({ "total_tokens": 5, "input_token_details": { "audio_tokens": 1, "text_tokens": 2 } }));
        let (_, usage) = c.columns();
        let usage: Value = serde_json::from_str(&usage.unwrap()).unwrap();
        assert_eq!(
            usage,
            json!({ "total_tokens": 15, "input_token_details": { "audio_tokens": 5, "text_tokens": 2 } })
        );
        assert!(c.line(10, "caller", "hello"));
        let big = "x".repeat(MAX_TRANSCRIPT_BYTES);
        assert!(!c.line(20, "agent", &big));
        let (transcript, _) = c.columns();
        let t: Value = serde_json::from_str(&transcript.unwrap()).unwrap();
        assert_eq!(t[0], json!({ "at_ms": 10, "speaker": "caller", "text": "hello" }));
        assert_eq!(t[1]["text"], "1 more lines left out");
    }
}
