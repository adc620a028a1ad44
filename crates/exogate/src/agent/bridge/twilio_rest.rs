//! Twilio's call-update API, emulated for bridged Twilio bots (docs/twilio.md §4): a bot that
//! ends its call with `POST /2010-04-01/Accounts/{AC}/Calls/{CA}.json` and `Status=completed`
//! (Pipecat's `TwilioFrameSerializer` with `base_url` pointing at exogate) hangs up an Exotel
//! call. Only agents with `settings.auth_token` accept it; calls are found while they are live.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

use crate::agent::CallControl;

struct Entry {
    account_sid: String,
    auth_token: String,
    ctl: CallControl,
    /// Wrong credentials sent for this call.
    wrong: u32,
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
pub(crate) struct Registered(String);

impl Drop for Registered {
    fn drop(&mut self) {
        if let Ok(mut calls) = CALLS.lock() {
            calls.remove(&self.0);
        }
    }
}

pub(crate) fn register(call_sid: &str, account_sid: &str, auth_token: &str, ctl: &CallControl) -> Registered {
    if let Ok(mut calls) = CALLS.lock() {
        calls.insert(
            call_sid.to_string(),
            Entry { account_sid: account_sid.into(), auth_token: auth_token.into(), ctl: ctl.clone(), wrong: 0 },
        );
    }
    Registered(call_sid.to_string())
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
    let authorized = user == entry.account_sid
        && account_sid == entry.account_sid
        && crate::secrets::keys_match(password, &entry.auth_token);
    if !authorized {
        entry.wrong += 1;
        return UpdateOutcome::Unauthorized;
    }
    match (status.map(str::to_ascii_lowercase).as_deref(), twiml) {
        (Some("completed"), _) => {
            entry.ctl.note("bot ended the call through the Twilio API");
            entry.ctl.hang_up();
            UpdateOutcome::Done("completed")
        }
        // Twilio ignores `canceled` on a call in progress.
        (Some("canceled"), _) => UpdateOutcome::Done("in-progress"),
        (Some(other), _) => UpdateOutcome::Invalid(format!("Status {other:?} is not completed or canceled")),
        (None, Some(t)) if t.contains("<Hangup") => {
            entry.ctl.note("bot ended the call through the Twilio API (<Hangup/>)");
            entry.ctl.hang_up();
            UpdateOutcome::Done("completed")
        }
        (None, Some(t)) if t.contains("<Dial") => {
            let target = t
                .split_once("<Dial")
                .and_then(|(_, rest)| rest.split_once('>'))
                .and_then(|(_, rest)| rest.split_once('<'))
                .map(|(inner, _)| inner.trim().to_string())
                .filter(|s| !s.is_empty() && s.len() <= 128);
            entry.ctl.note("bot transferred the call through the Twilio API (<Dial>)");
            entry.ctl.transfer_to(target);
            UpdateOutcome::Done("completed")
        }
        (None, Some(_)) => UpdateOutcome::Invalid("only <Hangup/> and <Dial> TwiML are supported".into()),
        (None, None) => UpdateOutcome::Invalid("nothing to update: send Status or Twiml".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_takes_ten_wrong_tokens_then_refuses_even_the_right_one_and_others_are_untouched() {
        let ctl = crate::media::test_control(exotel::SampleRate::Hz8000);
        let _a = register("CAtest-guessed", "AC1", "tok-0123456789abcdef", &ctl);
        let _b = register("CAtest-other", "AC1", "tok-0123456789abcdef", &ctl);
        let try_a = |password| update("AC1", "CAtest-guessed", "AC1", password, Some("canceled"), None);
        for _ in 0..MAX_WRONG_PER_CALL {
            assert_eq!(try_a("wrong-token-00000000"), UpdateOutcome::Unauthorized);
        }
        assert_eq!(try_a("tok-0123456789abcdef"), UpdateOutcome::TooManyWrong);
        let other = update("AC1", "CAtest-other", "AC1", "tok-0123456789abcdef", Some("canceled"), None);
        assert_eq!(other, UpdateOutcome::Done("in-progress"), "another call's count is its own");
    }
}
