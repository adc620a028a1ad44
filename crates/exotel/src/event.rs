//! Events Exotel sends to the bot (docs/protocol.md §4), parsed leniently, and composed in the
//! documented form (for simulators).

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::SampleRate;
use crate::lenient::{opt_string, opt_u64, value_text};

#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("not JSON: {0}")]
    NotJson(#[source] serde_json::Error),
    #[error("JSON without an \"event\" field")]
    NoEvent,
    #[error("malformed {event} event: {source}")]
    Malformed {
        event: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{event} event without {field}")]
    Missing { event: &'static str, field: &'static str },
}

/// One message from Exotel. Unknown events are not errors: they come back as [`InboundEvent::Unknown`].
#[derive(Debug, Clone, PartialEq)]
pub enum InboundEvent {
    Connected {
        protocol: Option<String>,
        version: Option<String>,
    },
    Start(Start),
    Media(Media),
    Dtmf(Dtmf),
    Mark(Mark),
    Stop(Stop),
    /// Not documented as inbound, but Exotel's own bridges flush playback on it (§4.7).
    Clear {
        stream_sid: Option<String>,
    },
    Unknown {
        event: String,
    },
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Start {
    pub sequence_number: Option<u64>,
    pub stream_sid: Option<String>,
    pub call_sid: Option<String>,
    pub account_sid: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub custom_parameters: BTreeMap<String, String>,
    pub media_format: MediaFormat,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct MediaFormat {
    pub encoding: Option<String>,
    /// As sent; may be anything. Use [`MediaFormat::rate`] for a valid rate.
    pub sample_rate: Option<String>,
    pub bit_rate: Option<String>,
    pub channels: Option<u64>,
}

impl MediaFormat {
    pub fn rate(&self) -> Option<SampleRate> {
        self.sample_rate.as_deref().and_then(SampleRate::parse)
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Media {
    pub sequence_number: Option<u64>,
    pub stream_sid: Option<String>,
    pub chunk: Option<u64>,
    pub timestamp: Option<u64>,
    /// Base64 PCM16LE, not yet decoded: decoding is the caller's choice (and its error to count).
    pub payload: String,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Dtmf {
    pub sequence_number: Option<u64>,
    pub stream_sid: Option<String>,
    pub digit: String,
    pub duration_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Mark {
    pub sequence_number: Option<u64>,
    pub stream_sid: Option<String>,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Stop {
    pub sequence_number: Option<u64>,
    pub stream_sid: Option<String>,
    pub call_sid: Option<String>,
    pub account_sid: Option<String>,
    pub reason: StopReason,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum StopReason {
    /// The caller hung up.
    CallEnded,
    /// The applet ended.
    Stopped,
    /// Any other reason (e.g. the older `caller_hangup`): treated as ended.
    Other(String),
    #[default]
    Unspecified,
}

impl StopReason {
    pub fn parse(s: Option<&str>) -> Self {
        match s.map(str::trim) {
            None | Some("") => Self::Unspecified,
            Some(r) if r.eq_ignore_ascii_case("callended") => Self::CallEnded,
            Some(r) if r.eq_ignore_ascii_case("stopped") => Self::Stopped,
            Some(r) => Self::Other(r.to_string()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Self::CallEnded => "callended",
            Self::Stopped => "stopped",
            Self::Other(r) => r,
            Self::Unspecified => "unspecified",
        }
    }
}

// ---- wire shapes (lenient) ----

#[derive(Deserialize)]
struct RawEnvelope<'a> {
    #[serde(borrow, alias = "Event")]
    event: Option<Cow<'a, str>>,
    #[serde(default, alias = "sequenceNumber", deserialize_with = "opt_u64")]
    sequence_number: Option<u64>,
    #[serde(default, alias = "streamSid", deserialize_with = "opt_string")]
    stream_sid: Option<String>,
    start: Option<RawStart>,
    media: Option<RawMedia>,
    dtmf: Option<RawDtmf>,
    #[serde(default, deserialize_with = "opt_string")]
    digit: Option<String>,
    mark: Option<RawMark>,
    stop: Option<RawStop>,
    #[serde(default, deserialize_with = "opt_string")]
    protocol: Option<String>,
    #[serde(default, deserialize_with = "opt_string")]
    version: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawStart {
    #[serde(alias = "streamSid", deserialize_with = "opt_string")]
    stream_sid: Option<String>,
    #[serde(alias = "callSid", deserialize_with = "opt_string")]
    call_sid: Option<String>,
    #[serde(alias = "accountSid", deserialize_with = "opt_string")]
    account_sid: Option<String>,
    #[serde(deserialize_with = "opt_string")]
    from: Option<String>,
    #[serde(alias = "to ", deserialize_with = "opt_string")]
    to: Option<String>,
    #[serde(alias = "customParameters")]
    custom_parameters: Option<Value>,
    #[serde(alias = "mediaFormat")]
    media_format: Option<RawMediaFormat>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawMediaFormat {
    #[serde(deserialize_with = "opt_string")]
    encoding: Option<String>,
    #[serde(alias = "sampleRate", deserialize_with = "opt_string")]
    sample_rate: Option<String>,
    #[serde(alias = "bitRate", deserialize_with = "opt_string")]
    bit_rate: Option<String>,
    #[serde(deserialize_with = "opt_u64")]
    channels: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawMedia {
    #[serde(deserialize_with = "opt_u64")]
    chunk: Option<u64>,
    #[serde(deserialize_with = "opt_u64")]
    timestamp: Option<u64>,
    payload: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawDtmf {
    #[serde(deserialize_with = "opt_string")]
    digit: Option<String>,
    #[serde(deserialize_with = "opt_u64")]
    duration: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawMark {
    #[serde(deserialize_with = "opt_string")]
    name: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawStop {
    #[serde(alias = "callSid", deserialize_with = "opt_string")]
    call_sid: Option<String>,
    #[serde(alias = "accountSid", deserialize_with = "opt_string")]
    account_sid: Option<String>,
    #[serde(deserialize_with = "opt_string")]
    reason: Option<String>,
}

/// Each documented field's other spelling, as the `alias`es above take them.
const ALIASES: [(&str, &str); 9] = [
    ("event", "Event"),
    ("sequence_number", "sequenceNumber"),
    ("stream_sid", "streamSid"),
    ("call_sid", "callSid"),
    ("account_sid", "accountSid"),
    ("custom_parameters", "customParameters"),
    ("media_format", "mediaFormat"),
    ("sample_rate", "sampleRate"),
    ("bit_rate", "bitRate"),
];

/// `value` with the other spelling dropped wherever both spellings of a field are present (the
/// custom parameters, the caller's own data, are left as sent); `None` if nothing was doubled.
fn without_doubled_aliases(mut value: Value) -> Option<Value> {
    fn walk(v: &mut Value, changed: &mut bool) {
        let Value::Object(map) = v else { return };
        for (canonical, alias) in ALIASES {
            if map.contains_key(canonical) && map.remove(alias).is_some() {
                *changed = true;
            }
        }
        if map.contains_key("to") && map.remove("to ").is_some() {
            *changed = true;
        }
        for (k, child) in map.iter_mut() {
            if k != "custom_parameters" && k != "customParameters" {
                walk(child, changed);
            }
        }
    }
    let mut changed = false;
    walk(&mut value, &mut changed);
    changed.then_some(value)
}

const KNOWN: [&str; 7] = ["connected", "start", "media", "dtmf", "mark", "stop", "clear"];

impl InboundEvent {
    /// Parses one text frame from Exotel.
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        match serde_json::from_str::<RawEnvelope<'_>>(text) {
            Ok(raw) => Self::from_raw(raw),
            // A shape we can't read: if the event is one we don't know, that's fine; otherwise it's malformed.
            Err(source) => {
                let value: Value = serde_json::from_str(text).map_err(ParseError::NotJson)?;
                let event = value
                    .get("event")
                    .or_else(|| value.get("Event"))
                    .and_then(Value::as_str)
                    .ok_or(ParseError::NoEvent)?
                    .to_string();
                if KNOWN.contains(&event.as_str()) {
                    // Both spellings of one field (PROTOCOL.md §4.8 documents each) make serde
                    // refuse the whole object as a duplicate: the documented spelling wins.
                    match without_doubled_aliases(value) {
                        // Read from the tree itself: the payload is not copied again.
                        Some(clean) => match RawEnvelope::deserialize(&clean) {
                            Ok(raw) => Self::from_raw(raw),
                            Err(_) => Err(ParseError::Malformed { event, source }),
                        },
                        None => Err(ParseError::Malformed { event, source }),
                    }
                } else {
                    Ok(Self::Unknown { event })
                }
            }
        }
    }

    fn from_raw(raw: RawEnvelope<'_>) -> Result<Self, ParseError> {
        let event = raw.event.ok_or(ParseError::NoEvent)?;
        let seq = raw.sequence_number;
        let top_sid = raw.stream_sid;
        Ok(match &*event {
            "connected" => Self::Connected { protocol: raw.protocol, version: raw.version },
            "start" => {
                let s = raw.start.unwrap_or_default();
                let mf = s.media_format.unwrap_or_default();
                Self::Start(Start {
                    sequence_number: seq,
                    stream_sid: top_sid.or(s.stream_sid),
                    call_sid: s.call_sid,
                    account_sid: s.account_sid,
                    from: s.from,
                    to: s.to,
                    custom_parameters: custom_params(s.custom_parameters),
                    media_format: MediaFormat {
                        encoding: mf.encoding,
                        sample_rate: mf.sample_rate,
                        bit_rate: mf.bit_rate,
                        channels: mf.channels,
                    },
                })
            }
            "media" => {
                let m = raw.media.ok_or(ParseError::Missing { event: "media", field: "media" })?;
                Self::Media(Media {
                    sequence_number: seq,
                    stream_sid: top_sid,
                    chunk: m.chunk,
                    timestamp: m.timestamp,
                    payload: m.payload.ok_or(ParseError::Missing { event: "media", field: "media.payload" })?,
                })
            }
            "dtmf" => {
                let d = raw.dtmf.unwrap_or_default();
                let digit = d.digit.or(raw.digit).ok_or(ParseError::Missing { event: "dtmf", field: "digit" })?;
                Self::Dtmf(Dtmf { sequence_number: seq, stream_sid: top_sid, digit, duration_ms: d.duration })
            }
            "mark" => {
                let name =
                    raw.mark.and_then(|m| m.name).ok_or(ParseError::Missing { event: "mark", field: "mark.name" })?;
                Self::Mark(Mark { sequence_number: seq, stream_sid: top_sid, name })
            }
            "stop" => {
                let s = raw.stop.unwrap_or_default();
                Self::Stop(Stop {
                    sequence_number: seq,
                    stream_sid: top_sid,
                    call_sid: s.call_sid,
                    account_sid: s.account_sid,
                    reason: StopReason::parse(s.reason.as_deref()),
                })
            }
            "clear" => Self::Clear { stream_sid: top_sid },
            _ => Self::Unknown { event: event.into_owned() },
        })
    }

    pub fn name(&self) -> &str {
        match self {
            Self::Connected { .. } => "connected",
            Self::Start(_) => "start",
            Self::Media(_) => "media",
            Self::Dtmf(_) => "dtmf",
            Self::Mark(_) => "mark",
            Self::Stop(_) => "stop",
            Self::Clear { .. } => "clear",
            Self::Unknown { event } => event,
        }
    }

    pub fn sequence_number(&self) -> Option<u64> {
        match self {
            Self::Start(e) => e.sequence_number,
            Self::Media(e) => e.sequence_number,
            Self::Dtmf(e) => e.sequence_number,
            Self::Mark(e) => e.sequence_number,
            Self::Stop(e) => e.sequence_number,
            _ => None,
        }
    }

    /// The documented wire form (EX-WSP form A: snake_case, numbers as strings), as Exotel sends it.
    pub fn to_json(&self) -> String {
        fn seq(v: &mut Map<String, Value>, n: Option<u64>) {
            if let Some(n) = n {
                v.insert("sequence_number".into(), Value::String(n.to_string()));
            }
        }
        fn sid(v: &mut Map<String, Value>, s: &Option<String>) {
            if let Some(s) = s {
                v.insert("stream_sid".into(), Value::String(s.clone()));
            }
        }
        let opt_str = |n: Option<u64>| n.map(|n| Value::String(n.to_string())).unwrap_or(Value::Null);
        let mut v = Map::new();
        v.insert("event".into(), Value::String(self.name().to_string()));
        match self {
            Self::Connected { protocol, version } => {
                if let Some(p) = protocol {
                    v.insert("protocol".into(), json!(p));
                }
                if let Some(ver) = version {
                    v.insert("version".into(), json!(ver));
                }
            }
            Self::Start(s) => {
                seq(&mut v, s.sequence_number);
                sid(&mut v, &s.stream_sid);
                let mut mf = Map::new();
                for (k, val) in [
                    ("encoding", &s.media_format.encoding),
                    ("sample_rate", &s.media_format.sample_rate),
                    ("bit_rate", &s.media_format.bit_rate),
                ] {
                    if let Some(val) = val {
                        mf.insert(k.into(), json!(val));
                    }
                }
                v.insert(
                    "start".into(),
                    json!({
                        "stream_sid": s.stream_sid, "call_sid": s.call_sid, "account_sid": s.account_sid,
                        "from": s.from, "to": s.to, "custom_parameters": s.custom_parameters,
                        "media_format": mf,
                    }),
                );
            }
            Self::Media(m) => {
                seq(&mut v, m.sequence_number);
                sid(&mut v, &m.stream_sid);
                v.insert(
                    "media".into(),
                    json!({"chunk": opt_str(m.chunk), "timestamp": opt_str(m.timestamp), "payload": m.payload}),
                );
            }
            Self::Dtmf(d) => {
                seq(&mut v, d.sequence_number);
                sid(&mut v, &d.stream_sid);
                let mut dtmf = Map::new();
                dtmf.insert("digit".into(), json!(d.digit));
                // Left out when unknown: a bot reading `duration` as a number string gets no null.
                if let Some(ms) = d.duration_ms {
                    dtmf.insert("duration".into(), json!(ms.to_string()));
                }
                v.insert("dtmf".into(), Value::Object(dtmf));
            }
            Self::Mark(m) => {
                seq(&mut v, m.sequence_number);
                sid(&mut v, &m.stream_sid);
                v.insert("mark".into(), json!({"name": m.name}));
            }
            Self::Stop(s) => {
                seq(&mut v, s.sequence_number);
                sid(&mut v, &s.stream_sid);
                v.insert(
                    "stop".into(),
                    json!({"call_sid": s.call_sid, "account_sid": s.account_sid, "reason": s.reason.as_str()}),
                );
            }
            Self::Clear { stream_sid } => sid(&mut v, stream_sid),
            Self::Unknown { .. } => {}
        }
        Value::Object(v).to_string()
    }
}

fn custom_params(v: Option<Value>) -> BTreeMap<String, String> {
    match v {
        Some(Value::Object(map)) => map.into_iter().filter_map(|(k, v)| value_text(v).map(|v| (k, v))).collect(),
        // The beta page's comma-separated `k=v` list (§2.2), should it ever appear.
        Some(Value::String(s)) => s
            .split(',')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .filter(|(k, _)| !k.is_empty())
            .collect(),
        _ => BTreeMap::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const START_A: &str = r#"{"event":"start","sequence_number":"1","stream_sid":"MZxxxxxxxxxxxxxxxxxxxxxxxx","start":{"stream_sid":"MZxxxxxxxxxxxxxxxxxxxxxxxx","call_sid":"CAxxxxxxxxxxxxxxxxxxxxxxxx","account_sid":"ACxxxxxxxxxxxxxxxxxxxxxxxx","from":"+919876543210","to":"+918047491899","custom_parameters":{"key1":"value1"},"media_format":{"encoding":"audio/x-raw","sample_rate":"8000","bit_rate":"16"}}}"#;
    const START_B: &str = r#"{"event":"start","sequence_number":1,"stream_sid":"<stream_sid>","start":{"stream_sid":"<stream_sid>","call_sid":"<call_sid>","account_sid":"<account_sid>","from":"+919876543210","to":"+911234567890","custom_parameters":{"key1":"value1","key2":"value2"},"media_format":{"encoding":"raw","sample_rate":"8000","bit_rate":"128"}}}"#;
    const START_C: &str = r#"{"event":"start","sequence_number":"1","stream_sid":"<sid>","start":{"stream_sid":"<sid>","call_sid":"<call>","account_sid":"<acct>","from":"+91XXXXXXXXXX","to":"+1800XXXXXXX","custom_parameters":{},"media_format":{"encoding":"base64","sample_rate":"8000","bit_rate":"128kbps"}}}"#;

    fn start(text: &str) -> Start {
        match InboundEvent::parse(text).unwrap() {
            InboundEvent::Start(s) => s,
            other => panic!("not a start: {other:?}"),
        }
    }

    #[test]
    fn start_form_a() {
        let s = start(START_A);
        assert_eq!(s.sequence_number, Some(1));
        assert_eq!(s.stream_sid.as_deref(), Some("MZxxxxxxxxxxxxxxxxxxxxxxxx"));
        assert_eq!(s.call_sid.as_deref(), Some("CAxxxxxxxxxxxxxxxxxxxxxxxx"));
        assert_eq!(s.account_sid.as_deref(), Some("ACxxxxxxxxxxxxxxxxxxxxxxxx"));
        assert_eq!(s.from.as_deref(), Some("+919876543210"));
        assert_eq!(s.to.as_deref(), Some("+918047491899"));
        assert_eq!(s.custom_parameters.get("key1").map(String::as_str), Some("value1"));
        assert_eq!(s.media_format.rate(), Some(SampleRate::Hz8000));
        assert_eq!(s.media_format.encoding.as_deref(), Some("audio/x-raw"));
    }

    #[test]
    fn start_form_b_numbers() {
        let s = start(START_B);
        assert_eq!(s.sequence_number, Some(1));
        assert_eq!(s.stream_sid.as_deref(), Some("<stream_sid>"));
        assert_eq!(s.custom_parameters.len(), 2);
        assert_eq!(s.media_format.bit_rate.as_deref(), Some("128"));
    }

    #[test]
    fn start_form_c_empty_params() {
        let s = start(START_C);
        assert!(s.custom_parameters.is_empty());
        assert_eq!(s.call_sid.as_deref(), Some("<call>"));
        assert_eq!(s.media_format.bit_rate.as_deref(), Some("128kbps"));
        assert_eq!(s.media_format.rate(), Some(SampleRate::Hz8000));
    }

    #[test]
    fn start_camel_case_and_sid_only_inside() {
        let s = start(
            r#"{"event":"start","sequenceNumber":2,"start":{"streamSid":"S1","callSid":"C1","accountSid":"A1","customParameters":{"agentId":"riya","n":5},"mediaFormat":{"encoding":"linear16","sample_rate":"16kHz","bit_rate":16}}}"#,
        );
        assert_eq!(s.sequence_number, Some(2));
        assert_eq!(s.stream_sid.as_deref(), Some("S1"));
        assert_eq!(s.call_sid.as_deref(), Some("C1"));
        assert_eq!(s.account_sid.as_deref(), Some("A1"));
        assert_eq!(s.custom_parameters.get("n").map(String::as_str), Some("5"));
        assert_eq!(s.media_format.rate(), Some(SampleRate::Hz16000));
    }

    #[test]
    fn both_spellings_of_a_field_still_parse_and_the_documented_one_wins() {
        let s = start(
            r#"{"event":"start","sequence_number":"1","sequenceNumber":"9","stream_sid":"S1","streamSid":"S9","start":{"call_sid":"C1","callSid":"C9","customParameters":{"call_sid":"x","callSid":"y"},"media_format":{"sample_rate":"16000","sampleRate":"8000"},"mediaFormat":{}}}"#,
        );
        assert_eq!(
            (s.sequence_number, s.stream_sid.as_deref(), s.call_sid.as_deref()),
            (Some(1), Some("S1"), Some("C1"))
        );
        assert_eq!(s.media_format.rate(), Some(SampleRate::Hz16000));
        assert_eq!(s.custom_parameters.len(), 2, "the caller's own parameters are left as sent");
        let m = InboundEvent::parse(
            r#"{"event":"media","stream_sid":"S1","streamSid":"S1","media":{"chunk":1,"timestamp":"20","payload":"AAA="}}"#,
        );
        assert!(matches!(m, Ok(InboundEvent::Media(_))), "{m:?}");
        assert!(matches!(
            InboundEvent::parse(r#"{"event":"start","stream_sid":"S","streamSid":"S","start":"not an object"}"#),
            Err(ParseError::Malformed { .. })
        ));
    }

    #[test]
    fn start_integer_rate_and_no_sid() {
        let s = start(r#"{"event":"start","start":{"media_format":{"sample_rate":24000}}}"#);
        assert_eq!(s.stream_sid, None);
        assert_eq!(s.media_format.rate(), Some(SampleRate::Hz24000));
    }

    #[test]
    fn media_both_forms() {
        let a = InboundEvent::parse(r#"{"event":"media","sequence_number":"3","stream_sid":"MZ1","media":{"chunk":"2","timestamp":"200","payload":"AAA="}}"#).unwrap();
        let b = InboundEvent::parse(r#"{"event":"media","sequence_number":3,"streamSid":"MZ1","media":{"chunk":2,"timestamp":"10","payload":"AAA="}}"#).unwrap();
        let InboundEvent::Media(a) = a else { panic!() };
        let InboundEvent::Media(b) = b else { panic!() };
        assert_eq!((a.sequence_number, a.chunk, a.timestamp), (Some(3), Some(2), Some(200)));
        assert_eq!((b.sequence_number, b.chunk, b.timestamp), (Some(3), Some(2), Some(10)));
        assert_eq!(a.stream_sid, b.stream_sid);
        assert_eq!(a.payload, "AAA=");
    }

    #[test]
    fn media_without_payload_is_malformed() {
        assert!(matches!(
            InboundEvent::parse(r#"{"event":"media","media":{"chunk":1}}"#),
            Err(ParseError::Missing { field: "media.payload", .. })
        ));
        assert!(matches!(
            InboundEvent::parse(r#"{"event":"media","media":"oops"}"#),
            Err(ParseError::Malformed { .. })
        ));
    }

    #[test]
    fn dtmf_nested_and_flat() {
        let InboundEvent::Dtmf(d) = InboundEvent::parse(
            r#"{"event":"dtmf","sequence_number":"7","stream_sid":"MZ1","dtmf":{"digit":"5","duration":"100"}}"#,
        )
        .unwrap() else {
            panic!()
        };
        assert_eq!((d.digit.as_str(), d.duration_ms, d.sequence_number), ("5", Some(100), Some(7)));
        let InboundEvent::Dtmf(d) = InboundEvent::parse(r##"{"event":"dtmf","digit":"#"}"##).unwrap() else { panic!() };
        assert_eq!(d.digit, "#");
        let InboundEvent::Dtmf(d) =
            InboundEvent::parse(r#"{"event":"dtmf","sequence_number":1,"dtmf":{"duration":"200","digit":5}}"#).unwrap()
        else {
            panic!()
        };
        assert_eq!(d.digit, "5");
    }

    #[test]
    fn mark_echo() {
        let InboundEvent::Mark(m) = InboundEvent::parse(
            r#"{"event":"mark","sequence_number":"15","stream_sid":"MZ1","mark":{"name":"my-label"}}"#,
        )
        .unwrap() else {
            panic!()
        };
        assert_eq!(m.name, "my-label");
        assert_eq!(m.sequence_number, Some(15));
    }

    #[test]
    fn stop_reasons() {
        for (reason, want) in [
            ("callended", StopReason::CallEnded),
            ("stopped", StopReason::Stopped),
            ("caller_hangup", StopReason::Other("caller_hangup".into())),
        ] {
            let text = format!(
                r#"{{"event":"stop","sequence_number":"20","stream_sid":"MZ1","stop":{{"call_sid":"CA1","account_sid":"AC1","reason":"{reason}"}}}}"#
            );
            let InboundEvent::Stop(s) = InboundEvent::parse(&text).unwrap() else { panic!() };
            assert_eq!(s.reason, want);
            assert_eq!(s.call_sid.as_deref(), Some("CA1"));
        }
        let InboundEvent::Stop(s) = InboundEvent::parse(r#"{"event":"stop"}"#).unwrap() else { panic!() };
        assert_eq!(s.reason, StopReason::Unspecified);
    }

    #[test]
    fn connected_variants_and_unknown() {
        assert_eq!(
            InboundEvent::parse(r#"{"event":"connected"}"#).unwrap(),
            InboundEvent::Connected { protocol: None, version: None }
        );
        let c =
            InboundEvent::parse(r#"{"event":"connected","protocol":"Exotel Media Stream","version":"1.0.0"}"#).unwrap();
        assert_eq!(
            c,
            InboundEvent::Connected { protocol: Some("Exotel Media Stream".into()), version: Some("1.0.0".into()) }
        );
        assert_eq!(
            InboundEvent::parse(r#"{"event":"silence","start":42}"#).unwrap(),
            InboundEvent::Unknown { event: "silence".into() }
        );
        assert_eq!(
            InboundEvent::parse(r#"{"event":"clear","stream_sid":"x"}"#).unwrap(),
            InboundEvent::Clear { stream_sid: Some("x".into()) }
        );
        assert!(matches!(InboundEvent::parse("not json"), Err(ParseError::NotJson(_))));
        assert!(matches!(InboundEvent::parse(r#"{"foo":1}"#), Err(ParseError::NoEvent)));
    }

    #[test]
    fn compose_round_trips() {
        let events = [
            InboundEvent::Connected { protocol: None, version: None },
            InboundEvent::Start(start(START_A)),
            InboundEvent::Media(Media {
                sequence_number: Some(3),
                stream_sid: Some("s".into()),
                chunk: Some(2),
                timestamp: Some(40),
                payload: "AAAA".into(),
            }),
            InboundEvent::Dtmf(Dtmf {
                sequence_number: Some(4),
                stream_sid: Some("s".into()),
                digit: "#".into(),
                duration_ms: Some(100),
            }),
            InboundEvent::Mark(Mark { sequence_number: Some(5), stream_sid: Some("s".into()), name: "m1".into() }),
            InboundEvent::Stop(Stop {
                sequence_number: Some(6),
                stream_sid: Some("s".into()),
                call_sid: Some("c".into()),
                account_sid: None,
                reason: StopReason::CallEnded,
            }),
        ];
        for e in events {
            assert_eq!(InboundEvent::parse(&e.to_json()).unwrap(), e);
        }
    }

    #[test]
    fn dtmf_duration_is_a_string_when_known_and_left_out_when_not() {
        let dtmf = |duration_ms| {
            let e = InboundEvent::Dtmf(Dtmf { digit: "5".into(), duration_ms, ..Dtmf::default() });
            serde_json::from_str::<Value>(&e.to_json()).unwrap()["dtmf"].clone()
        };
        assert_eq!(dtmf(Some(100)), json!({"digit": "5", "duration": "100"}));
        assert_eq!(dtmf(None), json!({"digit": "5"}));
    }

    // The property `fuzz/fuzz_targets/stream_event.rs` checks at length, kept in CI: any text, and
    // any event-shaped JSON with fields of the wrong types, parses or is refused without a panic.
    mod never_panics {
        use super::super::*;
        use proptest::prelude::*;

        fn json_value() -> impl Strategy<Value = serde_json::Value> {
            let leaf = prop_oneof![
                Just(serde_json::Value::Null),
                any::<bool>().prop_map(serde_json::Value::from),
                any::<i64>().prop_map(serde_json::Value::from),
                any::<f64>().prop_map(serde_json::Value::from),
                ".{0,12}".prop_map(serde_json::Value::from),
            ];
            leaf.prop_recursive(3, 24, 6, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
                    prop::collection::btree_map(
                        prop_oneof![
                            Just("event".to_string()),
                            Just("start".to_string()),
                            Just("media".to_string()),
                            Just("payload".to_string()),
                            Just("sample_rate".to_string()),
                            Just("custom_parameters".to_string()),
                            Just("sequence_number".to_string()),
                            ".{0,8}",
                        ],
                        inner,
                        0..5
                    )
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
                ]
            })
        }

        proptest! {
            #[test]
            fn on_any_text(text in ".{0,300}") {
                let _ = InboundEvent::parse(&text);
            }

            #[test]
            fn on_any_event_shaped_json(
                event in prop_oneof![Just("start"), Just("media"), Just("dtmf"), Just("mark"), Just("stop"), Just("clear"), Just("connected")],
                body in json_value(),
                inner in json_value(),
            ) {
                let mut v = serde_json::json!({ "event": event, "stream_sid": "s" });
                v[event] = inner;
                v["extra"] = body;
                let _ = InboundEvent::parse(&v.to_string());
            }
        }
    }
}
