//! An agent's stored definition as the call sees it: kind, settings, greeting, and what to do
//! when the agent fails.

use serde_json::Value;

use crate::secrets::Secrets;
use crate::store::AgentDef;

/// A bad setting: the API answers 400 naming `field`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("settings.{field}: {message}")]
pub struct SettingsError {
    pub field: String,
    pub message: String,
}

impl SettingsError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }
}

/// What happens to the call when its agent cannot be made or fails mid-call.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum OnFailure {
    /// End the bot's part: queued audio plays, the socket closes with 1000.
    #[default]
    HangUp,
    /// End it as a transfer: the Passthru after the applet answers 302 (with the target, if any).
    Transfer(Option<String>),
    /// Hand the call to another agent.
    Agent(String),
}

impl OnFailure {
    /// `settings.on_failure`: `"hangup"`, `"transfer"` (target from `settings.transfer_to`), or
    /// another agent's id.
    pub fn parse(settings: &Value) -> Result<Self, SettingsError> {
        let target = match settings.get("transfer_to") {
            None | Some(Value::Null) => None,
            Some(Value::String(t)) if !t.trim().is_empty() && t.len() <= 128 => Some(t.trim().to_string()),
            Some(_) => return Err(SettingsError::new("transfer_to", "must be a number or flow id (1-128 chars)")),
        };
        Ok(match settings.get("on_failure") {
            None | Some(Value::Null) => Self::HangUp,
            Some(Value::String(s)) => match s.trim() {
                "hangup" | "hang_up" | "hang-up" => Self::HangUp,
                "transfer" => Self::Transfer(target),
                "" => return Err(SettingsError::new("on_failure", "must not be empty")),
                id if id.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) && id.len() <= 64 => {
                    Self::Agent(id.to_string())
                }
                _ => return Err(SettingsError::new("on_failure", "must be \"hangup\", \"transfer\" or an agent id")),
            },
            Some(_) => return Err(SettingsError::new("on_failure", "must be a string")),
        })
    }

    pub fn describe(&self) -> String {
        match self {
            Self::HangUp => "hangup".into(),
            Self::Transfer(None) => "transfer".into(),
            Self::Transfer(Some(t)) => format!("transfer:{t}"),
            Self::Agent(a) => format!("agent:{a}"),
        }
    }
}

/// A failed agent's apology ("sorry, we are having trouble…"), played to the caller before its
/// call hangs up or transfers: `settings.failure_prompt`, a WAV file on the gateway's host of at
/// most 30 s. Decoded once per agent definition at each call rate, so a failure storm costs no
/// disk reads on the calls' tasks.
pub struct FailurePrompt {
    path: std::path::PathBuf,
    /// PCM16 at 8, 16 and 24 kHz.
    pcm: [Vec<u8>; 3],
}

impl FailurePrompt {
    pub fn pcm(&self, rate: exotel::SampleRate) -> &[u8] {
        match rate {
            exotel::SampleRate::Hz8000 => &self.pcm[0],
            exotel::SampleRate::Hz16000 => &self.pcm[1],
            exotel::SampleRate::Hz24000 => &self.pcm[2],
        }
    }

    pub fn path(&self) -> &std::path::Path {
        &self.path
    }
}

/// `settings.failure_prompt`, read and checked (when the agent is saved, and when definitions
/// are loaded).
pub fn failure_prompt(settings: &Value) -> Result<Option<FailurePrompt>, SettingsError> {
    let path = match settings.get("failure_prompt") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(p)) if !p.trim().is_empty() => std::path::PathBuf::from(p.trim()),
        Some(_) => return Err(SettingsError::new("failure_prompt", "must be the path of a WAV file")),
    };
    let load = |rate| {
        exotel_sim::load_wav(&path, rate)
            .map_err(|e| SettingsError::new("failure_prompt", format!("cannot be read: {e}")))
    };
    let pcm8 = load(exotel::SampleRate::Hz8000)?;
    if pcm8.len() > 30 * 16_000 {
        return Err(SettingsError::new("failure_prompt", "must be at most 30 s long"));
    }
    let pcm = [pcm8, load(exotel::SampleRate::Hz16000)?, load(exotel::SampleRate::Hz24000)?];
    Ok(Some(FailurePrompt { path, pcm }))
}

/// One agent as a call uses it. Its settings hold secrets in clear: never logged (no `Debug`
/// of them).
#[derive(Clone, Default)]
pub struct AgentSpec {
    /// What `agentId` names.
    pub id: String,
    /// The implementation (a registry key).
    pub kind: String,
    pub settings: Value,
    pub greeting: Option<String>,
    pub on_failure: OnFailure,
    /// Played before a failed call hangs up or transfers (see [`failure_prompt`]).
    pub failure_prompt: Option<std::sync::Arc<FailurePrompt>>,
    /// `settings.record`: this agent's calls are (true) or are not (false) recorded; None
    /// leaves it to RECORD_CALLS.
    pub record: Option<bool>,
}

/// `settings.record`, if given, is true or false.
pub fn record_setting(settings: &Value) -> Result<Option<bool>, SettingsError> {
    match settings.get("record") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(SettingsError::new("record", "must be true or false")),
    }
}

impl std::fmt::Debug for AgentSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentSpec").field("id", &self.id).field("kind", &self.kind).finish_non_exhaustive()
    }
}

impl AgentSpec {
    /// A built-in kind used by its own name, with no stored definition.
    pub fn builtin(kind: &str) -> Self {
        Self { id: kind.into(), kind: kind.into(), settings: Value::Object(Default::default()), ..Self::default() }
    }

    /// From a stored definition; settings were validated when it was saved, so a bad one here
    /// (edited in the database by hand) falls back to the defaults.
    pub fn from_def(def: &AgentDef, secrets: &Secrets) -> Self {
        let stored: Value = serde_json::from_str(&def.settings).unwrap_or_else(|_| Value::Object(Default::default()));
        let settings = super::sealed::open(&stored, secrets);
        let on_failure = OnFailure::parse(&settings).unwrap_or_default();
        let record = record_setting(&settings).unwrap_or_default();
        // Checked when saved; a file gone or broken since is left out, with a warning.
        let failure_prompt = match failure_prompt(&settings) {
            Ok(prompt) => prompt.map(std::sync::Arc::new),
            Err(e) => {
                tracing::warn!(agent = %def.id, error = %e, "failure prompt left out");
                None
            }
        };
        Self {
            id: def.id.clone(),
            kind: def.kind.clone(),
            settings,
            greeting: def.greeting.clone(),
            on_failure,
            failure_prompt,
            record,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn on_failure_forms() {
        assert_eq!(OnFailure::parse(&json!({})), Ok(OnFailure::HangUp));
        assert_eq!(OnFailure::parse(&json!({"on_failure": "hangup"})), Ok(OnFailure::HangUp));
        assert_eq!(
            OnFailure::parse(&json!({"on_failure": "transfer", "transfer_to": "+919876543210"})),
            Ok(OnFailure::Transfer(Some("+919876543210".into())))
        );
        assert_eq!(OnFailure::parse(&json!({"on_failure": "echo"})), Ok(OnFailure::Agent("echo".into())));
        assert_eq!(OnFailure::parse(&json!({"on_failure": 3})).unwrap_err().field, "on_failure");
        assert_eq!(OnFailure::parse(&json!({"on_failure": "a b"})).unwrap_err().field, "on_failure");
        assert_eq!(OnFailure::parse(&json!({"transfer_to": 7})).unwrap_err().field, "transfer_to");
    }
}
