//! Twilio's call-update API, emulated for bridged Twilio bots (docs/twilio.md §4): a bot that
//! ends its call with `POST /2010-04-01/Accounts/{AC}/Calls/{CA}.json` and `Status=completed`
//! (Pipecat's `TwilioFrameSerializer` with `base_url` pointing at exogate) hangs up an Exotel
//! call. Only agents with `settings.auth_token` or an API key (`api_key_sid`, `api_key_secret`)
//! accept it; calls are found while they are live.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use crate::agent::CallControl;

/// What Twilio does at once (hang up, run new TwiML) waits here for at most this much of the audio
/// queued at the request: a goodbye the caller would have heard on Twilio still plays, a whole
/// queued reply does not (docs/twilio.md §4).
pub(crate) const REST_DRAIN: Duration = Duration::from_secs(3);

struct Entry {
    /// The registration that made this entry (see [`Registered`]).
    owner: u64,
    account_sid: String,
    auth: ApiAuth,
    ctl: CallControl,
    /// Wrong credentials sent for this call.
    wrong: u32,
}

static NEXT_OWNER: AtomicU64 = AtomicU64::new(1);

/// The credentials a bridged bot may call the API with: Basic `AccountSid:AuthToken`, or an API
/// key `SK…:secret` (Twilio's other documented form) for the same account.
#[derive(Clone, Default)]
pub(crate) struct ApiAuth {
    pub(crate) auth_token: Option<String>,
    pub(crate) api_key: Option<(String, String)>,
}

impl ApiAuth {
    /// `None` when the agent has neither: its calls are not reachable through the API.
    pub(crate) fn from_settings(s: &super::BridgeSettings) -> Option<Self> {
        let auth = Self { auth_token: s.auth_token.clone(), api_key: s.api_key.clone() };
        (auth.auth_token.is_some() || auth.api_key.is_some()).then_some(auth)
    }

    fn accepts(&self, account_sid: &str, user: &str, password: &str) -> bool {
        let by_token =
            user == account_sid && self.auth_token.as_deref().is_some_and(|t| crate::secrets::keys_match(password, t));
        let by_key = self
            .api_key
            .as_ref()
            .is_some_and(|(sid, secret)| user == sid && crate::secrets::keys_match(password, secret));
        by_token || by_key
    }
}

/// Wrong credentials one call takes before its API stops answering for it (429): a CallSid is no
/// secret (the bot, the call log and Exotel's callbacks all carry it), so the token is what
/// guards the call, and it can't be guessed through one. Counted per call, not per address, so
/// nobody sharing the bot's address can stop its hang-ups.
pub const MAX_WRONG_PER_CALL: u32 = 10;

/// Live bridged Twilio calls by their `CA…` sid. One entry per live call, removed when its bridge
/// ends, so it is bounded by the calls in progress.
static CALLS: LazyLock<Mutex<HashMap<String, Entry>>> = LazyLock::new(Mutex::default);

/// Keeps the call reachable through the API while the bridge runs.
pub(crate) struct Registered {
    call_sid: String,
    owner: u64,
}

impl Drop for Registered {
    /// Removes the entry only if it is still this registration's: a fallback agent bridging the
    /// same call registers the same CallSid, and the first bridge ending must not unregister it.
    fn drop(&mut self) {
        if let Ok(mut calls) = CALLS.lock() {
            if calls.get(&self.call_sid).is_some_and(|e| e.owner == self.owner) {
                calls.remove(&self.call_sid);
            }
        }
    }
}

pub(crate) fn register(call_sid: &str, account_sid: &str, auth: &ApiAuth, ctl: &CallControl) -> Registered {
    let owner = NEXT_OWNER.fetch_add(1, Ordering::Relaxed);
    if let Ok(mut calls) = CALLS.lock() {
        calls.insert(
            call_sid.to_string(),
            Entry { owner, account_sid: account_sid.into(), auth: auth.clone(), ctl: ctl.clone(), wrong: 0 },
        );
    }
    Registered { call_sid: call_sid.to_string(), owner }
}

/// What a TwiML update asks for.
#[derive(Debug, PartialEq, Eq)]
enum Verb {
    Hangup,
    /// `<Dial>`, with its target: a `<Number>`, `<Sip>` or `<Client>` inside, else its own text.
    Dial(Option<String>),
    /// `<Dial>` around a noun Exotel has no counterpart for (`<Conference>`, `<Queue>`): refused,
    /// not carried out as a transfer to somewhere else.
    DialUnsupported(String),
}

/// The first `<Hangup>` or `<Dial>` in document order. Verbs that only play something (`<Say>`,
/// `<Play>`, `<Pause>`) can't be carried out on Exotel and are passed over.
fn first_verb(twiml: &str) -> Option<Verb> {
    let mut rest = twiml;
    while let Some(open) = rest.find('<') {
        rest = &rest[open + 1..];
        let name_len = rest.find(|c: char| !c.is_ascii_alphanumeric()).unwrap_or(rest.len());
        match &rest[..name_len] {
            "Hangup" => return Some(Verb::Hangup),
            "Dial" => {
                let after = &rest[name_len..];
                return Some(match unsupported_noun(after) {
                    Some(noun) => Verb::DialUnsupported(noun),
                    None => Verb::Dial(dial_target(after)),
                });
            }
            _ => {}
        }
    }
    None
}

/// `rest`: what follows `<Dial`; the first element inside it that is not a `<Number>`, `<Sip>`
/// or `<Client>`.
fn unsupported_noun(rest: &str) -> Option<String> {
    let (attrs, after) = rest.split_once('>')?;
    if attrs.trim_end().ends_with('/') {
        return None;
    }
    let body = after.split_once("</Dial").map_or(after, |(b, _)| b);
    body.split('<').skip(1).find_map(|tag| {
        let name_len = tag.find(|c: char| !c.is_ascii_alphanumeric()).unwrap_or(tag.len());
        let name = &tag[..name_len];
        (!name.is_empty() && !["Number", "Sip", "Client"].contains(&name)).then(|| name.to_string())
    })
}

/// `rest`: what follows `<Dial`. A target longer than a number or SIP address is refused.
fn dial_target(rest: &str) -> Option<String> {
    let (attrs, after) = rest.split_once('>')?;
    if attrs.trim_end().ends_with('/') {
        return None;
    }
    let body = after.split_once("</Dial").map_or(after, |(b, _)| b);
    let nested = ["<Number", "<Sip", "<Client"].iter().find_map(|noun| {
        let (_, tail) = body.split_once(noun)?;
        // `<Number>` or `<Number attr=…>`, not `<NumberSomething>`.
        tail.starts_with(['>', ' ', '\t', '\r', '\n']).then_some(())?;
        let (_, text) = tail.split_once('>')?;
        Some(text.split('<').next().unwrap_or_default())
    });
    let text = nested.unwrap_or_else(|| body.split('<').next().unwrap_or_default());
    Some(unescape_xml(text.trim())).filter(|s| !s.is_empty() && s.len() <= 128)
}

/// XML's character references in a text node (`sip:a@x?h=1&amp;k=2`, `&#43;91…`); one that is
/// not well formed is left as written.
fn unescape_xml(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        let decoded = rest.find(';').filter(|&end| end <= 10).and_then(|end| {
            let c = match &rest[1..end] {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                n => {
                    let code = match n.strip_prefix("#x").or_else(|| n.strip_prefix("#X")) {
                        Some(hex) => u32::from_str_radix(hex, 16).ok(),
                        None => n.strip_prefix('#').and_then(|d| d.parse().ok()),
                    };
                    code.and_then(char::from_u32)
                }
            }?;
            Some((c, end))
        });
        match decoded {
            Some((c, end)) => {
                out.push(c);
                rest = &rest[end + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// What the API answers.
#[derive(Debug, PartialEq, Eq)]
pub enum UpdateOutcome {
    /// 200 with the call's resource; the status it now has.
    Done(&'static str),
    /// 401, Twilio's code 20003.
    Unauthorized,
    /// 429, Twilio's code 20429: too many wrong credentials for this call.
    TooManyWrong,
    /// 404, Twilio's code 20404.
    NotFound,
    /// 400 with a message.
    Invalid(String),
}

/// A call update: `status` (`completed`/`canceled`) or `twiml` (`<Hangup/>`, `<Dial>target</Dial>`).
pub fn update(
    account_sid: &str,
    call_sid: &str,
    user: &str,
    password: &str,
    status: Option<&str>,
    twiml: Option<&str>,
) -> UpdateOutcome {
    let Ok(mut calls) = CALLS.lock() else { return UpdateOutcome::NotFound };
    let Some(entry) = calls.get_mut(call_sid) else { return UpdateOutcome::NotFound };
    if entry.wrong >= MAX_WRONG_PER_CALL {
        return UpdateOutcome::TooManyWrong;
    }
    let authorized = account_sid == entry.account_sid && entry.auth.accepts(&entry.account_sid, user, password);
    if !authorized {
        entry.wrong += 1;
        return UpdateOutcome::Unauthorized;
    }
    match (status.map(str::to_ascii_lowercase).as_deref(), twiml) {
        (Some("completed"), _) => {
            entry.ctl.note("bot ended the call through the Twilio API");
            entry.ctl.hang_up_draining(REST_DRAIN);
            UpdateOutcome::Done("completed")
        }
        // Twilio ignores `canceled` on a call in progress.
        (Some("canceled"), _) => UpdateOutcome::Done("in-progress"),
        (Some(other), _) => UpdateOutcome::Invalid(format!("Status {other:?} is not completed or canceled")),
        (None, Some(t)) => match first_verb(t) {
            Some(Verb::Hangup) => {
                entry.ctl.note("bot ended the call through the Twilio API (<Hangup/>)");
                entry.ctl.hang_up_draining(REST_DRAIN);
                UpdateOutcome::Done("completed")
            }
            Some(Verb::Dial(target)) => {
                entry.ctl.note("bot transferred the call through the Twilio API (<Dial>)");
                entry.ctl.transfer_draining(target, REST_DRAIN);
                UpdateOutcome::Done("completed")
            }
            Some(Verb::DialUnsupported(noun)) => UpdateOutcome::Invalid(format!(
                "<Dial><{noun}> can't be carried out on Exotel: dial a <Number>, <Sip> or <Client>"
            )),
            None => UpdateOutcome::Invalid("only <Hangup/> and <Dial> TwiML are supported".into()),
        },
        (None, None) => UpdateOutcome::Invalid("nothing to update: send Status or Twiml".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(t: &str) -> ApiAuth {
        ApiAuth { auth_token: Some(t.into()), api_key: None }
    }

    #[test]
    fn an_api_key_of_the_account_is_accepted_beside_the_token() {
        let ctl = crate::media::test_control(exotel::SampleRate::Hz8000);
        let key = Some(("SK0123".to_string(), "key-secret-0123456789".to_string()));
        let _a = register(
            "CAtest-api-key",
            "AC1",
            &ApiAuth { auth_token: Some("tok-0123456789abcdef".into()), api_key: key },
            &ctl,
        );
        let try_as =
            |account, user, password| update(account, "CAtest-api-key", user, password, Some("canceled"), None);
        assert_eq!(try_as("AC1", "SK0123", "key-secret-0123456789"), UpdateOutcome::Done("in-progress"));
        assert_eq!(try_as("AC1", "AC1", "tok-0123456789abcdef"), UpdateOutcome::Done("in-progress"));
        assert_eq!(
            try_as("AC2", "SK0123", "key-secret-0123456789"),
            UpdateOutcome::Unauthorized,
            "another account's path"
        );
        assert_eq!(
            try_as("AC1", "SK0123", "tok-0123456789abcdef"),
            UpdateOutcome::Unauthorized,
            "the token is not the key's secret"
        );
        assert_eq!(
            try_as("AC1", "AC1", "key-secret-0123456789"),
            UpdateOutcome::Unauthorized,
            "nor the secret the token"
        );
    }

    #[test]
    fn twiml_acts_on_the_first_verb_and_dials_the_number_inside() {
        let dial = |t: &str| Some(Verb::Dial(Some(t.to_string())));
        for (twiml, want) in [
            ("<Response><Dial><Number>+918047491899</Number></Dial></Response>", dial("+918047491899")),
            (
                "<Response><Dial callerId=\"+91\">\n  <Number statusCallback=\"x\"> +918047491899 </Number>\n</Dial></Response>",
                dial("+918047491899"),
            ),
            ("<Response><Dial><Sip>sip:agent@pbx.example</Sip></Dial></Response>", dial("sip:agent@pbx.example")),
            ("<Response><Dial><Client>support</Client></Dial></Response>", dial("support")),
            ("<Response><Dial> +918047491899 </Dial></Response>", dial("+918047491899")),
            ("<?xml version=\"1.0\"?><Response><Dial>+918047491899</Dial><Hangup/></Response>", dial("+918047491899")),
            ("<Response><Say>Bye</Say><Hangup/><Dial>+918047491899</Dial></Response>", Some(Verb::Hangup)),
            ("<Response><Hangup></Hangup></Response>", Some(Verb::Hangup)),
            ("<Response><Dial/></Response>", Some(Verb::Dial(None))),
            ("<Response><Dial><Number></Number></Dial></Response>", Some(Verb::Dial(None))),
            ("<Response><Say>Hello</Say></Response>", None),
            (
                "<Response><Dial><Sip>sip:agent@pbx.example?x-a=1&amp;x-b=2</Sip></Dial></Response>",
                dial("sip:agent@pbx.example?x-a=1&x-b=2"),
            ),
            ("<Response><Dial>&#43;91 &#x38;047 &bogus; & 1</Dial></Response>", dial("+91 8047 &bogus; & 1")),
            (
                "<Response><Dial><Conference>room-1</Conference></Dial></Response>",
                Some(Verb::DialUnsupported("Conference".into())),
            ),
            ("<Response><Dial>\n<Queue>support</Queue></Dial></Response>", Some(Verb::DialUnsupported("Queue".into()))),
            ("<Response><Dialog/></Response>", None),
        ] {
            assert_eq!(first_verb(twiml), want, "{twiml}");
        }
    }

    #[test]
    fn a_call_re_registered_stays_registered_when_the_first_registration_ends() {
        let ctl = crate::media::test_control(exotel::SampleRate::Hz8000);
        let first = register("CAtest-fallback", "AC1", &token("tok-0123456789abcdef"), &ctl);
        let second = register("CAtest-fallback", "AC1", &token("tok-0123456789abcdef"), &ctl);
        drop(first);
        let update = || update("AC1", "CAtest-fallback", "AC1", "tok-0123456789abcdef", Some("canceled"), None);
        assert_eq!(update(), UpdateOutcome::Done("in-progress"), "the fallback's entry is still there");
        drop(second);
        assert_eq!(update(), UpdateOutcome::NotFound);
    }

    #[test]
    fn a_call_takes_ten_wrong_tokens_then_refuses_even_the_right_one_and_others_are_untouched() {
        let ctl = crate::media::test_control(exotel::SampleRate::Hz8000);
        let _a = register("CAtest-guessed", "AC1", &token("tok-0123456789abcdef"), &ctl);
        let _b = register("CAtest-other", "AC1", &token("tok-0123456789abcdef"), &ctl);
        let try_a = |password| update("AC1", "CAtest-guessed", "AC1", password, Some("canceled"), None);
        for _ in 0..MAX_WRONG_PER_CALL {
            assert_eq!(try_a("wrong-token-00000000"), UpdateOutcome::Unauthorized);
        }
        assert_eq!(try_a("tok-0123456789abcdef"), UpdateOutcome::TooManyWrong);
        let other = update("AC1", "CAtest-other", "AC1", "tok-0123456789abcdef", Some("canceled"), None);
        assert_eq!(other, UpdateOutcome::Done("in-progress"), "another call's count is its own");
    }
}
