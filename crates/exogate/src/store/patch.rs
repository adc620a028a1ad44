//! What a write says: which call (by any of its ids) and which fields change.

use serde_json::Value;

/// Identifies a call by whatever is known so far. Resolution order: CallSid, then stream_sid,
/// then our own id; a call with none of them stored yet gets a new row with `id`.
#[derive(Debug, Clone, Default)]
pub struct CallKey {
    pub id: Option<String>,
    pub call_sid: Option<String>,
    pub stream_sid: Option<String>,
}

impl CallKey {
    pub fn call_sid(sid: impl Into<String>) -> Self {
        Self { call_sid: Some(sid.into()), ..Self::default() }
    }
}

/// Call status. It only moves forward: a late Passthru never turns a completed call back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Announced by the dynamic-URL request or Passthru; no media yet.
    Connecting,
    InProgress,
    Completed,
    /// A WebSocket that never became a call (no `start`, or rejected).
    Failed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connecting => "connecting",
            Self::InProgress => "in-progress",
            Self::Completed => "completed",
            Self::Failed => "failed",
        }
    }

    pub(crate) fn rank(text: &str) -> u8 {
        match text {
            "connecting" => 1,
            "in-progress" => 2,
            "completed" | "failed" => 3,
            _ => 0,
        }
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
