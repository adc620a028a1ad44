//! Call details Exotel sends to HTTP applets: Passthru (flat keys, `Stream[Key]` bracket keys, or a
//! single JSON string under `Stream`) and the Voicebot dynamic-URL request (docs/protocol.md §2.3, §7).
//! Keys are matched case-insensitively; unknown keys are kept (they are the applet's custom parameters).

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use crate::lenient::value_text;

/// Everything a webhook said about a call. Empty values count as absent.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CallDetails {
    pub call_sid: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub direction: Option<String>,
    pub call_type: Option<String>,
    pub call_status: Option<String>,
    pub created: Option<String>,
    pub start_time: Option<String>,
    pub end_time: Option<String>,
    pub current_time: Option<String>,
    pub dial_call_duration: Option<String>,
    pub dial_call_status: Option<String>,
    pub dial_whom_number: Option<String>,
    /// Gather digits, with the surrounding double quotes Exotel adds stripped.
    pub digits: Option<String>,
    pub custom_field: Option<String>,
    pub recording_url: Option<String>,
    pub flow_id: Option<String>,
    pub tenant_id: Option<String>,
    pub account_sid: Option<String>,
    /// The Voicebot/Stream outcome, when this Passthru follows such an applet.
    pub stream: Option<StreamOutcome>,
    /// Keys we don't know, verbatim: on a dynamic-URL request these are the applet's custom parameters.
    pub extra: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct StreamOutcome {
    pub stream_sid: Option<String>,
    pub status: Option<String>,
    pub duration: Option<String>,
    pub recording_url: Option<String>,
    /// The URL Exotel dialled; may hold credentials, never log it raw.
    pub stream_url: Option<String>,
    pub disconnected_by: Option<String>,
    pub error: Option<String>,
    pub detailed_status: Option<String>,
    pub disposition: Option<String>,
}

impl CallDetails {
    /// From query-string or form pairs, in order; a later value for a key wins.
    pub fn from_pairs<K: AsRef<str>, V: AsRef<str>>(pairs: impl IntoIterator<Item = (K, V)>) -> Self {
        let mut d = Self::default();
        for (k, v) in pairs {
            d.set(k.as_ref(), v.as_ref());
        }
        d
    }

    /// From a JSON object body. A nested `Stream` object is read like the bracket keys.
    pub fn from_json(value: &Value) -> Self {
        let mut d = Self::default();
        if let Some(obj) = value.as_object() {
            for (k, v) in obj {
                match v {
                    Value::Object(inner) if k.eq_ignore_ascii_case("stream") => {
                        for (ik, iv) in inner {
                            if let Some(text) = value_text(iv.clone()) {
                                d.set_stream(ik, &text);
                            }
                        }
                    }
                    other => {
                        if let Some(text) = value_text(other.clone()) {
                            d.set(k, &text);
                        }
                    }
                }
            }
        }
        d
    }

    /// Merges one key. Unknown keys land in `extra`.
    pub fn set(&mut self, key: &str, value: &str) {
        let key = key.trim();
        let value = value.trim();
        if let Some(inner) = bracket_key(key) {
            self.set_stream(inner, value);
            return;
        }
        if key.eq_ignore_ascii_case("stream") {
            // The single-JSON-string form: Stream={"StreamSID":…,"Status":…}
            if let Ok(Value::Object(obj)) = serde_json::from_str::<Value>(value) {
                for (k, v) in obj {
                    if let Some(text) = value_text(v) {
                        self.set_stream(&k, &text);
                    }
                }
            } else if !value.is_empty() {
                self.extra.insert(key.to_string(), value.to_string());
            }
            return;
        }
        if value.is_empty() {
            return;
        }
        let v = Some(value.to_string());
        match key.to_ascii_lowercase().as_str() {
            "callsid" | "call_sid" => self.call_sid = v,
            "from" | "callfrom" => self.from = v,
            "to" | "callto" => self.to = v,
            "direction" => self.direction = v,
            "calltype" => self.call_type = v,
            "callstatus" | "status" => self.call_status = v,
            "created" | "datecreated" => self.created = v,
            "starttime" => self.start_time = v,
            "endtime" => self.end_time = v,
            "currenttime" => self.current_time = v,
            "dialcallduration" => self.dial_call_duration = v,
            "dialcallstatus" => self.dial_call_status = v,
            "dialwhomnumber" => self.dial_whom_number = v,
            "digits" => self.digits = Some(strip_quotes(value).to_string()).filter(|d| !d.is_empty()),
            "customfield" | "custom_field" => self.custom_field = v,
            "recordingurl" => self.recording_url = v,
            "flow_id" | "flowid" => self.flow_id = v,
            "tenant_id" | "tenantid" => self.tenant_id = v,
            "accountsid" | "account_sid" => self.account_sid = v,
            // AgentStream's POST variant (§7.2 conflict) sends stream fields flat.
            "streamsid" | "stream_sid" => self.stream_mut().stream_sid = v,
            "streamurl" => self.stream_mut().stream_url = v,
            _ => {
                self.extra.insert(key.to_string(), value.to_string());
            }
        }
    }

    fn stream_mut(&mut self) -> &mut StreamOutcome {
        self.stream.get_or_insert_with(StreamOutcome::default)
    }

    fn set_stream(&mut self, key: &str, value: &str) {
        let value = value.trim();
        if value.is_empty() {
            return;
        }
        let v = Some(value.to_string());
        let s = self.stream_mut();
        match key.trim().to_ascii_lowercase().as_str() {
            "streamsid" | "stream_sid" | "sid" => s.stream_sid = v,
            "status" => s.status = v,
            "duration" => s.duration = v,
            "recordingurl" => s.recording_url = v,
            "streamurl" | "url" => s.stream_url = v,
            "disconnectedby" => s.disconnected_by = v,
            "error" => s.error = v,
            "detailedstatus" => s.detailed_status = v,
            "disposition" => s.disposition = v,
            other => {
                let k = format!("Stream[{other}]");
                self.extra.insert(k, value.to_string());
            }
        }
    }
}

/// `Stream[Status]` → `Status` (also tolerates `stream[status]`).
fn bracket_key(key: &str) -> Option<&str> {
    let open = key.find('[')?;
    let inner = key[open + 1..].strip_suffix(']')?;
    key[..open].eq_ignore_ascii_case("stream").then_some(inner)
}

fn strip_quotes(v: &str) -> &str {
    v.trim().trim_matches('"')
}

#[cfg(test)]
mod tests {
    use super::*;

    const AGENTSTREAM_EXAMPLE: &str = "CallSid=56b1234567abcdef89abcdef12345678&flow_id=voicebot-flow-xyz123&Direction=inbound&From=%2B918888000000&To=%2B912233344455&Stream%5BStreamSID%5D=6f048d2e897a0d2d4029560f3f541947&Stream%5BStatus%5D=completed&Stream%5BDuration%5D=28&Stream%5BRecordingUrl%5D=https%3A%2F%2Frecordings.exotel.com%2Fexotelrecordings%2Fexotelt%2F6f048d2e897a0d2d4029560f3f541947.mp3&Stream%5BStreamUrl%5D=wss%3A%2F%2Fstream.customer.com%2Fmedia&Stream%5BDisconnectedBy%5D=bot";

    fn parse_query(q: &str) -> CallDetails {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(q).unwrap();
        CallDetails::from_pairs(pairs)
    }

    #[test]
    fn passthru_bracket_form() {
        let d = parse_query(AGENTSTREAM_EXAMPLE);
        assert_eq!(d.call_sid.as_deref(), Some("56b1234567abcdef89abcdef12345678"));
        assert_eq!(d.from.as_deref(), Some("+918888000000"));
        assert_eq!(d.to.as_deref(), Some("+912233344455"));
        assert_eq!(d.direction.as_deref(), Some("inbound"));
        assert_eq!(d.flow_id.as_deref(), Some("voicebot-flow-xyz123"));
        let s = d.stream.unwrap();
        assert_eq!(s.stream_sid.as_deref(), Some("6f048d2e897a0d2d4029560f3f541947"));
        assert_eq!(s.status.as_deref(), Some("completed"));
        assert_eq!(s.duration.as_deref(), Some("28"));
        assert_eq!(s.disconnected_by.as_deref(), Some("bot"));
        assert_eq!(s.stream_url.as_deref(), Some("wss://stream.customer.com/media"));
        assert!(s.recording_url.unwrap().ends_with(".mp3"));
        assert!(d.extra.is_empty());
    }

    #[test]
    fn passthru_json_string_form() {
        let d = CallDetails::from_pairs([
            ("CallSid", "c1"),
            (
                "Stream",
                r#"{"StreamSID":"62xxx","RecordingUrl":"https://recordings.exotel.com/x","Status":"completed","Duration":"28","StreamUrl":"ws://10.32.76.120:5007/media","DisconnectedBy":"user"}"#,
            ),
        ]);
        let s = d.stream.unwrap();
        assert_eq!(s.stream_sid.as_deref(), Some("62xxx"));
        assert_eq!(s.disconnected_by.as_deref(), Some("user"));
        assert_eq!(s.duration.as_deref(), Some("28"));
    }

    #[test]
    fn classic_passthru_fields() {
        let d = parse_query(
            "CallSid=c2&CallFrom=09876543210&CallTo=08047491899&digits=%22123%22&CallType=completed&CurrentTime=2024-01-01+10%3A00%3A00&CustomField=log-7&DialWhomNumber=0999&RecordingUrl=https%3A%2F%2Fr%2Fa.mp3&EndTime=1970-01-01+05%3A30%3A00",
        );
        assert_eq!(d.from.as_deref(), Some("09876543210"));
        assert_eq!(d.to.as_deref(), Some("08047491899"));
        assert_eq!(d.digits.as_deref(), Some("123"));
        assert_eq!(d.call_type.as_deref(), Some("completed"));
        assert_eq!(d.current_time.as_deref(), Some("2024-01-01 10:00:00"));
        assert_eq!(d.custom_field.as_deref(), Some("log-7"));
        assert_eq!(d.dial_whom_number.as_deref(), Some("0999"));
        assert_eq!(d.recording_url.as_deref(), Some("https://r/a.mp3"));
        assert!(d.stream.is_none());
    }

    #[test]
    fn json_body_with_nested_stream_and_custom_params() {
        let v: Value = serde_json::from_str(r#"{"CallSid":"c3","CallFrom":"+919876543210","Direction":"outbound-api","CustomField":"test-call-123","agentId":"riya","Stream":{"Status":"failed","Error":"3009 failed","DetailedStatus":"Streaming_call_throttled"},"n":5}"#).unwrap();
        let d = CallDetails::from_json(&v);
        assert_eq!(d.call_sid.as_deref(), Some("c3"));
        assert_eq!(d.custom_field.as_deref(), Some("test-call-123"));
        assert_eq!(d.extra.get("agentId").map(String::as_str), Some("riya"));
        assert_eq!(d.extra.get("n").map(String::as_str), Some("5"));
        let s = d.stream.unwrap();
        assert_eq!(s.detailed_status.as_deref(), Some("Streaming_call_throttled"));
        assert_eq!(s.error.as_deref(), Some("3009 failed"));
    }

    #[test]
    fn empty_values_and_case() {
        let d = CallDetails::from_pairs([("callsid", "x"), ("From", ""), ("digits", "\"\"")]);
        assert_eq!(d.call_sid.as_deref(), Some("x"));
        assert_eq!(d.from, None);
        assert_eq!(d.digits, None);
    }

    // The property `fuzz/fuzz_targets/webhook.rs` checks at length, kept in CI.
    mod never_panics {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn on_any_pairs(pairs in prop::collection::vec((
                prop_oneof![Just("Stream[Duration]".to_string()), Just("CallSid".to_string()), Just("Legs".to_string()), ".{0,12}"],
                ".{0,24}",
            ), 0..20)) {
                let mut d = CallDetails::from_pairs(pairs.clone());
                for (k, v) in &pairs {
                    d.set(k, v);
                }
                let json: serde_json::Map<String, Value> = pairs.into_iter().map(|(k, v)| (k, Value::from(v))).collect();
                let _ = CallDetails::from_json(&Value::Object(json));
            }
        }
    }
}
