//! The `Call` resource Exotel answers with (docs/protocol.md §8.3): JSON `{"Call":{…}}` (any key casing,
//! also snake_case), or the XML `<TwilioResponse><Call>…</Call></TwilioResponse>`.

use serde::Serialize;
use serde_json::Value;

use super::xml;
use crate::lenient::{leading_u64, value_text};

/// One call as Exotel describes it. Empty values count as absent. `Duration`, `Price` and `EndTime`
/// are filled in asynchronously, about two minutes after the call ends.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CallResource {
    pub sid: String,
    pub parent_call_sid: Option<String>,
    pub status: Option<String>,
    pub direction: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub phone_number_sid: Option<String>,
    pub start_time: Option<String>,
    pub end_time: Option<String>,
    /// Seconds; Exotel sends it as a number or a string.
    pub duration: Option<u64>,
    pub price: Option<String>,
    pub recording_url: Option<String>,
    pub date_created: Option<String>,
    pub date_updated: Option<String>,
}

impl CallResource {
    /// Any answer body: XML if it starts with `<`, JSON otherwise. `None` unless it names a call `Sid`.
    pub fn parse(body: &str) -> Option<Self> {
        let body = body.trim_start_matches('\u{feff}').trim_start();
        if body.starts_with('<') { Self::from_xml(body) } else { Self::from_json(&serde_json::from_str(body).ok()?) }
    }

    /// `{"Call":{"Sid":…}}`, `{"call":{"sid":…}}`, or a bare call object.
    pub fn from_json(value: &Value) -> Option<Self> {
        let obj = value.as_object()?;
        let call = match obj.iter().find(|(k, _)| k.eq_ignore_ascii_case("call")) {
            Some((_, inner)) => inner.as_object()?,
            None => obj,
        };
        Self::from_fields(call.iter().filter_map(|(k, v)| match v {
            Value::Object(_) | Value::Array(_) => None,
            scalar => Some((k.as_str(), value_text(scalar.clone())?)),
        }))
    }

    /// `<TwilioResponse><Call><Sid>…</Sid>…</Call></TwilioResponse>`.
    pub fn from_xml(body: &str) -> Option<Self> {
        let children = xml::children(body, "Call")?;
        Self::from_fields(children.iter().map(|(k, v)| (k.as_str(), v.clone())))
    }

    fn from_fields<'a>(fields: impl Iterator<Item = (&'a str, String)>) -> Option<Self> {
        let mut c = Self::default();
        for (key, value) in fields {
            let value = value.trim();
            if value.is_empty() {
                continue;
            }
            let v = Some(value.to_string());
            match key.to_ascii_lowercase().replace('_', "").as_str() {
                "sid" | "callsid" => c.sid = value.to_string(),
                "parentcallsid" => c.parent_call_sid = v,
                "status" => c.status = v,
                "direction" => c.direction = v,
                "from" => c.from = v,
                "to" => c.to = v,
                "phonenumbersid" => c.phone_number_sid = v,
                "starttime" => c.start_time = v,
                "endtime" => c.end_time = v,
                "duration" => c.duration = leading_u64(value),
                "price" => c.price = v,
                "recordingurl" => c.recording_url = v,
                "datecreated" => c.date_created = v,
                "dateupdated" => c.date_updated = v,
                _ => {}
            }
        }
        (!c.sid.is_empty()).then_some(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// docs/protocol.md §8.3, verbatim.
    const DOC_JSON: &str = r#"{
  "Call": {
    "Sid": "80bfbec2d78bbbf10fb851f4fa165211",
    "ParentCallSid": null,
    "DateCreated": "2017-03-03 12:30:24",
    "DateUpdated": "2017-03-03 12:30:27",
    "AccountSid": "your_sid",
    "To": "0XXXXX40682",
    "From": "09876543210",
    "PhoneNumberSid": "0XXXXXX4890",
    "Status": "in-progress",
    "StartTime": "2017-03-03 12:30:27",
    "EndTime": null,
    "Duration": null,
    "Price": null,
    "Direction": "outbound-api",
    "AnsweredBy": null,
    "ForwardedFrom": null,
    "CallerName": null,
    "Uri": "/v1/Accounts/your_sid/Calls.json/80bfbec2d78bbbf10fb851f4fa165211",
    "RecordingUrl": null
  }
}"#;

    const DOC_XML: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<TwilioResponse>
  <Call>
    <Sid>80bfbec2d78bbbf10fb851f4fa165211</Sid>
    <ParentCallSid/>
    <DateCreated>2017-03-03 12:30:24</DateCreated>
    <DateUpdated>2017-03-03 12:30:27</DateUpdated>
    <AccountSid>your_sid</AccountSid>
    <To>0XXXXX40682</To>
    <From>09876543210</From>
    <PhoneNumberSid>0XXXXXX4890</PhoneNumberSid>
    <Status>in-progress</Status>
    <StartTime>2017-03-03 12:30:27</StartTime>
    <EndTime/>
    <Duration/>
    <Price/>
    <Direction>outbound-api</Direction>
    <AnsweredBy/>
    <ForwardedFrom/>
    <CallerName/>
    <Uri>/v1/Accounts/your_sid/Calls/80bfbec2d78bbbf10fb851f4fa165211</Uri>
    <RecordingUrl/>
  </Call>
</TwilioResponse>"#;

    fn documented() -> CallResource {
        CallResource {
            sid: "80bfbec2d78bbbf10fb851f4fa165211".into(),
            parent_call_sid: None,
            status: Some("in-progress".into()),
            direction: Some("outbound-api".into()),
            from: Some("09876543210".into()),
            to: Some("0XXXXX40682".into()),
            phone_number_sid: Some("0XXXXXX4890".into()),
            start_time: Some("2017-03-03 12:30:27".into()),
            end_time: None,
            duration: None,
            price: None,
            recording_url: None,
            date_created: Some("2017-03-03 12:30:24".into()),
            date_updated: Some("2017-03-03 12:30:27".into()),
        }
    }

    #[test]
    fn documented_json() {
        assert_eq!(CallResource::parse(DOC_JSON), Some(documented()));
    }

    #[test]
    fn documented_xml() {
        assert_eq!(CallResource::parse(DOC_XML), Some(documented()));
    }

    #[test]
    fn lowercase_and_snake_case() {
        let c = CallResource::parse(
            r#"{"call":{"sid":"abc","status":"completed","duration":"42","parent_call_sid":"p1","recordingurl":"https://r/x.mp3","price":0.5}}"#,
        )
        .unwrap();
        assert_eq!(c.sid, "abc");
        assert_eq!(c.status.as_deref(), Some("completed"));
        assert_eq!(c.duration, Some(42));
        assert_eq!(c.parent_call_sid.as_deref(), Some("p1"));
        assert_eq!(c.recording_url.as_deref(), Some("https://r/x.mp3"));
        assert_eq!(c.price.as_deref(), Some("0.5"));
    }

    #[test]
    fn duration_as_number_or_string() {
        assert_eq!(CallResource::parse(r#"{"Call":{"Sid":"a","Duration":17}}"#).unwrap().duration, Some(17));
        assert_eq!(CallResource::parse(r#"{"Call":{"Sid":"a","Duration":"17"}}"#).unwrap().duration, Some(17));
        assert_eq!(CallResource::parse(r#"{"Call":{"Sid":"a","Duration":""}}"#).unwrap().duration, None);
        let x = "<TwilioResponse><Call><Sid>a</Sid><Duration>9</Duration></Call></TwilioResponse>";
        assert_eq!(CallResource::parse(x).unwrap().duration, Some(9));
    }

    #[test]
    fn no_sid_no_call() {
        for body in [
            "{}",
            r#"{"Call":{}}"#,
            r#"{"Call":{"Sid":""}}"#,
            r#"{"Call":{"Sid":null,"Status":"queued"}}"#,
            r#"{"Call":"x"}"#,
            r#"{"RestException":{"Status":400,"Message":"bad"}}"#,
            "[]",
            "",
            "OK",
            "<TwilioResponse><Call><Sid/></Call></TwilioResponse>",
            "<TwilioResponse><RestException><Message>x</Message></RestException></TwilioResponse>",
        ] {
            assert_eq!(CallResource::parse(body), None, "{body}");
        }
        assert_eq!(CallResource::parse(r#"{"Sid":"bare"}"#).unwrap().sid, "bare");
    }
}
