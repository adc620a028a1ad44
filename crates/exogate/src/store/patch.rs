//! What a write says: which call (by any of its ids) and which fields change.

use serde_json::Value;

/// Identifies a call by whatever is known so far. Resolution order: CallSid, then stream_sid,
/// then our own id; a call with none of them stored yet gets a new row with `id`.
#[derive(Debug, Clone, Default)]
pub struct CallKey {
    pub id: Option<String>,
    pub call_sid: Option<String>,
    pub stream_sid: Option<String>,
    /// Exotel's `CustomField` / the `callLogId` parameter: our id for calls we placed.
    pub custom_field: Option<String>,
}

impl CallKey {
    pub fn call_sid(sid: impl Into<String>) -> Self {
        Self { call_sid: Some(sid.into()), ..Self::default() }
    }
}

/// Call status. It only moves forward: a late Passthru never turns a completed call back; a final
/// status from Exotel's callback may still replace the one our media session recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Created by our API, not yet accepted by Exotel.
    Queued,
    /// Announced by the dynamic-URL request or Passthru; no media yet.
    Connecting,
    Ringing,
    InProgress,
    Completed,
    /// Failed to place or connect (also: a WebSocket that never sent `start`).
    Failed,
    Busy,
    NoAnswer,
    Canceled,
    /// Left in progress by a process that was killed; marked when the next one starts.
    Interrupted,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Connecting => "connecting",
            Self::Ringing => "ringing",
            Self::InProgress => "in-progress",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Busy => "busy",
            Self::NoAnswer => "no-answer",
            Self::Canceled => "canceled",
            Self::Interrupted => "interrupted",
        }
    }

    /// Exotel's status words (REST, callbacks, Passthru `CallStatus`).
    pub fn from_exotel(text: &str) -> Option<Self> {
        Some(match text.trim().to_ascii_lowercase().as_str() {
            "queued" => Self::Queued,
            "ringing" => Self::Ringing,
            "in-progress" | "answered" | "in_progress" => Self::InProgress,
            "completed" => Self::Completed,
            "failed" => Self::Failed,
            "busy" => Self::Busy,
            "no-answer" | "no_answer" | "noanswer" => Self::NoAnswer,
            "canceled" | "cancelled" => Self::Canceled,
            _ => return None,
        })
    }

    pub(crate) fn rank(text: &str) -> u8 {
        match text {
            "queued" | "connecting" => 1,
            "ringing" => 2,
            "in-progress" => 3,
            "completed" | "failed" | "busy" | "no-answer" | "canceled" | "interrupted" => 4,
            _ => 0,
        }
    }

    /// The call is over (its row's facts are settled).
    pub(crate) fn is_final(text: &str) -> bool {
        Self::rank(text) == 4
    }
}

#[derive(Debug, Clone)]
pub(crate) enum SqlValue {
    Text(String),
    Int(i64),
}

/// Columns to set. Column names are compile-time constants, never input.
#[derive(Debug, Clone, Default)]
pub struct CallPatch {
    pub(crate) fields: Vec<(&'static str, SqlValue)>,
    pub(crate) status: Option<Status>,
    pub(crate) passthru_hit: bool,
}

impl CallPatch {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn text(mut self, column: &'static str, value: Option<impl Into<String>>) -> Self {
        if let Some(v) = value {
            self.fields.push((column, SqlValue::Text(v.into())));
        }
        self
    }

    pub fn int(mut self, column: &'static str, value: Option<i64>) -> Self {
        if let Some(v) = value {
            self.fields.push((column, SqlValue::Int(v)));
        }
        self
    }

    pub fn json(self, column: &'static str, value: &Value) -> Self {
        self.text(column, Some(value.to_string()))
    }

    pub fn status(mut self, status: Status) -> Self {
        self.status = Some(status);
        self
    }

    pub fn passthru_hit(mut self) -> Self {
        self.passthru_hit = true;
        self
    }
}
