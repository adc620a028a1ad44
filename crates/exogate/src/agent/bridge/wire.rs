//! What a bot protocol must translate, both ways.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, Visitor};

use crate::agent::{CallEnd, CallInfo};

/// A message from the bot, read.
pub(crate) enum BotMsg {
    /// Audio, appended to the caller's buffer at the call's rate.
    Media,
    Mark(String),
    Clear,
    /// Unreadable or not one a bot may send: counted, skipped.
    Bad(String),
}

pub(crate) trait Wire: Send {
    /// Sent as soon as the bot's socket opens.
    fn connected(&mut self) -> String;
    fn start(&mut self, call: &CallInfo) -> String;
    /// Caller audio (PCM16LE at the call's rate) → zero or more messages.
    fn audio(&mut self, pcm: &[u8], out: &mut Vec<String>);
    /// A key the caller pressed; `duration_ms` when Exotel gave it.
    fn dtmf(&mut self, digit: &str, duration_ms: Option<u64>) -> String;
    /// The echo of one of the bot's marks.
    fn mark(&mut self, name: &str) -> String;
    /// Exotel's own `clear`, if the protocol has it.
    fn exotel_clear(&mut self) -> Option<String>;
    fn stop(&mut self, end: &CallEnd) -> String;
    fn parse(&mut self, text: &str, pcm_out: &mut Vec<u8>) -> BotMsg;
    /// Before a mark or the end: what the output resampler still holds.
    fn flush_output(&mut self, pcm_out: &mut Vec<u8>);
    /// After the bot's `clear`: the output resampler must not play cancelled speech.
    fn reset_output(&mut self);
    /// Twilio protocol, after `start`: the `(callSid, accountSid)` the bot was given.
    fn twilio_ids(&self) -> Option<(String, String)> {
        None
    }
}

/// The base64 payload of a bot's media event, borrowed from the text: the message a bot sends
/// every 20–100 ms, read without building a JSON tree. `None` for anything else, and for any
/// media event of an odd shape (a repeated key, `media` not an object, …): the protocol's full
/// parser then reads it, so what is accepted and what is reported stays the same.
pub(crate) fn media_payload(text: &str) -> Option<Cow<'_, str>> {
    let peek: Peek<'_> = serde_json::from_str(text).ok()?;
    if peek.event.as_deref() == Some("media") { peek.payload } else { None }
}

/// `{"event": …, "media": {"payload": …}}`, other keys skipped. Objects only (a derived
/// `Deserialize` would take an array too), each key at most once.
struct Peek<'a> {
    event: Option<Cow<'a, str>>,
    payload: Option<Cow<'a, str>>,
}

impl<'de> Deserialize<'de> for Peek<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Top;
        impl<'de> Visitor<'de> for Top {
            type Value = Peek<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an event object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let (mut event, mut media) = (None, None);
                while let Some(Text(key)) = map.next_key()? {
                    match key.as_ref() {
                        "event" if event.is_none() => event = Some(map.next_value::<Text<'de>>()?.0),
                        "media" if media.is_none() => media = Some(map.next_value::<PayloadOf<'de>>()?.0),
                        "event" | "media" => return Err(de::Error::custom("repeated key")),
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(Peek { event, payload: media })
            }
        }
        d.deserialize_map(Top)
    }
}

/// `{"payload": "…"}`, other keys skipped; an object without one is an error.
struct PayloadOf<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for PayloadOf<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Media;
        impl<'de> Visitor<'de> for Media {
            type Value = PayloadOf<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a media object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut payload = None;
                while let Some(Text(key)) = map.next_key()? {
                    if key == "payload" {
                        if payload.is_some() {
                            return Err(de::Error::custom("repeated key"));
                        }
                        payload = Some(map.next_value::<Text<'de>>()?.0);
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                payload.map(PayloadOf).ok_or_else(|| de::Error::missing_field("payload"))
            }
        }
        d.deserialize_map(Media)
    }
}

/// A JSON string, borrowed from the text unless it has escapes (serde's own `Cow` always copies).
struct Text<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Str;
        impl<'de> Visitor<'de> for Str {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_string())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }
        d.deserialize_str(Str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// What the full parsers take as a media payload: a JSON object whose `event` is "media"
    /// and whose `media.payload` is a string.
    fn by_value(text: &str) -> Option<String> {
        let v: Value = serde_json::from_str(text).ok()?;
        let obj = v.as_object()?;
        (obj.get("event")?.as_str()? == "media").then_some(())?;
        Some(obj.get("media")?.as_object()?.get("payload")?.as_str()?.to_string())
    }

    #[test]
    fn media_payload_is_found_in_place() {
        let text = r#"{"event":"media","stream_sid":"s","media":{"chunk":"1","payload":"AQID"}}"#;
        assert!(matches!(media_payload(text), Some(Cow::Borrowed("AQID"))));
        // Twilio's shape, keys in any order, an escaped slash.
        let twilio = r#"{"streamSid":"MZ1","media":{"payload":"a\/b="},"event":"media"}"#;
        assert_eq!(media_payload(twilio).as_deref(), Some("a/b="));
    }

    #[test]
    fn anything_else_is_left_to_the_full_parser() {
        for text in [
            r#"{"event":"mark","mark":{"name":"a"}}"#,
            r#"{"event":"clear","media":{"payload":"AQID"}}"#,
            r#"{"event":"media"}"#,
            r#"{"event":"media","media":null}"#,
            r#"{"event":"media","media":{}}"#,
            r#"{"event":"media","media":{"payload":1}}"#,
            r#"{"event":"media","media":["AQID"]}"#,
            r#"["media",{"payload":"AQID"}]"#,
            r#"{"event":"media","media":{"payload":"AQID","payload":"AAAA"}}"#,
            r#"{"event":"media","event":"mark","media":{"payload":"AQID"}}"#,
            r#"{"event":"media","media":{"payload":"AQID"}} trailing"#,
            "not json",
        ] {
            assert_eq!(media_payload(text), None, "{text}");
        }
    }

    #[test]
    fn agrees_with_the_full_parsers_when_it_answers() {
        for text in [
            r#"{"event":"media","media":{"payload":"AQID"}}"#,
            r#"{"media":{"track":"outbound","payload":""},"event":"media","extra":[1,{"a":null}]}"#,
            r#" {"event" : "media" , "media" : { "payload" : "QUJD" } } "#,
        ] {
            assert_eq!(media_payload(text).map(Cow::into_owned), by_value(text), "{text}");
        }
    }
}
