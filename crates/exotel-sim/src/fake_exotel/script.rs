//! What the fake network does with a call to a given customer number.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

/// How a call to one customer number goes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Script {
    /// Answered: the media leg is played, then the Passthru (flow mode), then the terminal
    /// status callback `completed`.
    #[default]
    Answer,
    /// No media. `Calls/connect` still answers 200 `in-progress` (as Exotel does); the terminal
    /// callback says `busy`.
    Busy,
    /// As [`Script::Busy`], with `no-answer`.
    NoAnswer,
    /// As [`Script::Busy`], with `failed`.
    Fail,
    /// `Calls/connect` itself answers `status` with a RestException body (and `Retry-After` if
    /// given). No call is placed.
    HttpError { status: u16, retry_after: Option<u64>, message: String },
    /// `Calls/connect` sleeps this long, then answers 500 (Exotel's "could not originate"). No
    /// call is placed: this is for client timeouts and ambiguous outcomes.
    Hang { secs: u64 },
    /// [`Script::Answer`], `Busy`, `NoAnswer` or `Fail`, timed: an unanswered call rings `secs`
    /// before its final status; an answered customer stays on the line `secs` after speaking,
    /// whatever the bot does, then hangs up.
    Timed { outcome: Box<Script>, secs: u64 },
}

impl Script {
    /// The terminal `Status` of a call that never reached the media leg.
    pub(crate) fn unanswered_status(&self) -> Option<&'static str> {
        match self {
            Self::Busy => Some("busy"),
            Self::NoAnswer => Some("no-answer"),
            Self::Fail => Some("failed"),
            Self::Timed { outcome, .. } => outcome.unanswered_status(),
            Self::Answer | Self::HttpError { .. } | Self::Hang { .. } => None,
        }
    }

    /// How long the call rings (unanswered) or the customer stays after speaking (answered), when scripted.
    pub(crate) fn timed(&self) -> Option<std::time::Duration> {
        match self {
            Self::Timed { secs, .. } => Some(std::time::Duration::from_secs(*secs)),
            _ => None,
        }
    }

    /// An HTTP error for `status`, with the standard reason as its message.
    pub fn http_error(status: u16, retry_after: Option<u64>) -> Self {
        let message = axum::http::StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("Error")
            .to_string();
        Self::HttpError { status, retry_after, message }
    }
}

/// The command-line spelling: `answer[:SECS]`, `busy[:SECS]`, `no-answer[:SECS]`, `fail[:SECS]`,
/// `hang[:SECS]`, `http:STATUS[:RETRY_AFTER_SECS[:MESSAGE]]`.
impl FromStr for Script {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let (head, rest) = match t.split_once(':') {
            Some((h, r)) => (h, Some(r)),
            None => (t, None),
        };
        let number = |what: &str, v: &str| -> Result<u64, String> {
            v.trim().parse().map_err(|_| format!("{s:?}: {what} {v:?} is not a whole number"))
        };
        let head = head.to_ascii_lowercase();
        let plain = match head.as_str() {
            "answer" | "answered" => Some(Self::Answer),
            "busy" => Some(Self::Busy),
            "no-answer" | "noanswer" | "no_answer" => Some(Self::NoAnswer),
            "fail" | "failed" => Some(Self::Fail),
            _ => None,
        };
        if let (Some(outcome), Some(secs)) = (plain.clone(), rest) {
            return Ok(Self::Timed { outcome: Box::new(outcome), secs: number("seconds", secs)? });
        }
        match (head.as_str(), rest) {
            ("answer" | "answered", None) => Ok(Self::Answer),
            ("busy", None) => Ok(Self::Busy),
            ("no-answer" | "noanswer" | "no_answer", None) => Ok(Self::NoAnswer),
            ("fail" | "failed", None) => Ok(Self::Fail),
            ("hang", None) => Ok(Self::Hang { secs: 30 }),
            ("hang", Some(secs)) => Ok(Self::Hang { secs: number("seconds", secs)? }),
            ("http", Some(rest)) => {
                let mut parts = rest.splitn(3, ':');
                let status = number("status", parts.next().unwrap_or_default())?;
                let status = u16::try_from(status)
                    .ok()
                    .filter(|s| (400..=599).contains(s))
                    .ok_or_else(|| format!("{s:?}: the status must be 400..=599"))?;
                let retry_after = match parts.next() {
                    Some("") | None => None,
                    Some(v) => Some(number("Retry-After", v)?),
                };
                let mut script = Self::http_error(status, retry_after);
                if let (Some(msg), Self::HttpError { message, .. }) = (parts.next(), &mut script) {
                    *message = msg.to_string();
                }
                Ok(script)
            }
            _ => Err(format!(
                "{s:?}: expected answer, busy, no-answer, fail (each with an optional :SECS), hang[:SECS] or http:STATUS[:RETRY_AFTER[:MESSAGE]]"
            )),
        }
    }
}

impl fmt::Display for Script {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Answer => f.write_str("answer"),
            Self::Busy => f.write_str("busy"),
            Self::NoAnswer => f.write_str("no-answer"),
            Self::Fail => f.write_str("fail"),
            Self::Hang { secs } => write!(f, "hang:{secs}"),
            Self::Timed { outcome, secs } => write!(f, "{outcome}:{secs}"),
            Self::HttpError { status, retry_after, message } => {
                write!(f, "http:{status}:")?;
                if let Some(secs) = retry_after {
                    write!(f, "{secs}")?;
                }
                write!(f, ":{message}")
            }
        }
    }
}

/// Numbers are compared with all whitespace removed: `+91 98765 43210` is `+919876543210`.
pub(crate) fn normalize_number(number: &str) -> String {
    number.chars().filter(|c| !c.is_whitespace()).collect()
}

/// The per-number scripts, keyed by normalized number.
#[derive(Debug, Clone, Default)]
pub(crate) struct ScriptTable {
    by_number: HashMap<String, Script>,
    default: Script,
}

impl ScriptTable {
    pub(crate) fn new(scripts: &HashMap<String, Script>, default: Script) -> Self {
        let by_number = scripts.iter().map(|(k, v)| (normalize_number(k), v.clone())).collect();
        Self { by_number, default }
    }

    pub(crate) fn for_number(&self, from: &str) -> &Script {
        self.by_number.get(&normalize_number(from)).unwrap_or(&self.default)
    }
}

/// `--script NUMBER=SCRIPT`.
pub(crate) fn parse_number_script(s: &str) -> Result<(String, Script), String> {
    let (number, script) =
        s.split_once('=').ok_or_else(|| format!("{s:?}: expected NUMBER=SCRIPT, e.g. +919876543210=busy"))?;
    let number = normalize_number(number);
    if number.is_empty() {
        return Err(format!("{s:?}: the number is empty"));
    }
    Ok((number, script.parse()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_script() {
        assert_eq!("answer".parse(), Ok(Script::Answer));
        assert_eq!("Busy".parse(), Ok(Script::Busy));
        assert_eq!("no-answer".parse(), Ok(Script::NoAnswer));
        assert_eq!("noanswer".parse(), Ok(Script::NoAnswer));
        assert_eq!("failed".parse(), Ok(Script::Fail));
        assert_eq!("hang".parse(), Ok(Script::Hang { secs: 30 }));
        assert_eq!("hang:3".parse(), Ok(Script::Hang { secs: 3 }));
        assert_eq!(
            "http:429:30".parse(),
            Ok(Script::HttpError { status: 429, retry_after: Some(30), message: "Too Many Requests".into() })
        );
        assert_eq!(
            "http:503".parse(),
            Ok(Script::HttpError { status: 503, retry_after: None, message: "Service Unavailable".into() })
        );
        assert_eq!(
            "http:402::Insufficient balance: top up".parse(),
            Ok(Script::HttpError { status: 402, retry_after: None, message: "Insufficient balance: top up".into() })
        );
        assert_eq!("busy:5".parse(), Ok(Script::Timed { outcome: Box::new(Script::Busy), secs: 5 }));
        assert_eq!("answer:30".parse(), Ok(Script::Timed { outcome: Box::new(Script::Answer), secs: 30 }));
        for bad in ["", "ring", "hang:x", "http", "http:200", "http:abc", "http:429:soon", "busy:x", "busy:1:2"] {
            assert!(bad.parse::<Script>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn display_round_trips() {
        for s in [
            Script::Answer,
            Script::Busy,
            Script::NoAnswer,
            Script::Fail,
            Script::Hang { secs: 4 },
            Script::Timed { outcome: Box::new(Script::NoAnswer), secs: 9 },
            Script::Timed { outcome: Box::new(Script::Answer), secs: 2 },
            Script::http_error(429, Some(7)),
            Script::http_error(500, None),
        ] {
            assert_eq!(s.to_string().parse::<Script>(), Ok(s.clone()), "{s}");
        }
    }

    #[test]
    fn table_matches_numbers_without_spaces() {
        let scripts = HashMap::from([("+91 98765 43210".to_string(), Script::Busy), ("0801".into(), Script::Fail)]);
        let table = ScriptTable::new(&scripts, Script::Answer);
        assert_eq!(table.for_number("+919876543210"), &Script::Busy);
        assert_eq!(table.for_number(" +91 9876543210 "), &Script::Busy);
        assert_eq!(table.for_number("08 01"), &Script::Fail);
        assert_eq!(table.for_number("+919876543211"), &Script::Answer);
        assert_eq!(Script::NoAnswer.unanswered_status(), Some("no-answer"));
        assert_eq!(Script::Answer.unanswered_status(), None);
    }

    #[test]
    fn number_script_pairs() {
        assert_eq!(parse_number_script("+91 98765 43210=busy"), Ok(("+919876543210".into(), Script::Busy)));
        assert_eq!(parse_number_script("0801=http:429:5").map(|(n, _)| n), Ok("0801".into()));
        assert!(parse_number_script("busy").is_err());
        assert!(parse_number_script(" =busy").is_err());
        assert!(parse_number_script("0801=nope").is_err());
    }
}
