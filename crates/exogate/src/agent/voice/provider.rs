//! What a voice AI provider's wire must translate, both ways, so one call loop serves them all.

use serde_json::Value;

/// Who spoke a transcript line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Speaker {
    Caller,
    Agent,
}

impl Speaker {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Caller => "caller",
            Self::Agent => "agent",
        }
    }
}

/// A tool the model may call.
#[derive(Debug, Clone)]
pub struct ToolDecl {
    pub name: String,
    pub description: String,
    pub parameters: Value,
}

/// What the provider said, read.
#[derive(Debug, PartialEq)]
pub enum Event {
    /// The session is configured (`session.updated`, `setupComplete`).
    Ready,
    /// Model audio, already at the call's rate. `item` is the provider's id for the spoken item
    /// (OpenAI), `response` the answer it belongs to.
    Audio {
        item: Option<String>,
        response: Option<String>,
        pcm: Vec<u8>,
        provider_ms: f64,
    },
    /// The caller started speaking over the model (or the model was interrupted).
    BargeIn,
    /// A response started (OpenAI `response.created`).
    ResponseStarted(Option<String>),
    /// The model finished an answer (`response.done`, `turnComplete`); `failed` carries the
    /// provider's reason when the answer failed (rate limit, quota).
    ResponseDone {
        response: Option<String>,
        failed: Option<String>,
    },
    /// OpenAI refused a `response.create`: an answer is already running.
    ResponseBusy,
    ToolCall {
        id: String,
        name: String,
        args: Result<Value, String>,
    },
    ToolCancelled(Vec<String>),
    Transcript {
        speaker: Speaker,
        text: String,
    },
    Usage(Value),
    /// A provider error that leaves the session up (logged and recorded).
    Warning(String),
    /// A provider error that ends the session (a refused key, a quota).
    Fatal(String),
    /// The provider's session reached its maximum length (OpenAI `session_expired`): the
    /// conversation is over, not broken.
    Expired(String),
    /// Gemini: a handle to resume the session on a new connection.
    Resumable(String),
    /// Gemini: the connection will close soon, in this long if the provider said.
    GoAway(Option<std::time::Duration>),
}

/// One provider's protocol. Outgoing messages are JSON texts.
pub trait Wire: Send {
    /// Sent as soon as the socket opens, to configure the session.
    fn setup(&mut self, instructions: &str, tools: &[ToolDecl], resume: Option<&str>) -> Vec<String>;
    /// The model speaks, told what to say (mid-call: a nudge, a goodbye).
    fn speak(&mut self, instruction: &str) -> Vec<String>;
    /// The model speaks first, at the start of the call.
    fn greet(&mut self, instruction: &str) -> Vec<String> {
        self.speak(instruction)
    }
    /// Caller audio (PCM16LE at the call's rate) → messages.
    fn audio(&mut self, pcm: &[u8], out: &mut Vec<String>);
    /// One message from the provider → events. Text and binary frames are both JSON.
    fn parse(&mut self, text: &str, out: &mut Vec<Event>) -> Result<(), String>;
    /// The caller heard `ms` of `item`: the model forgets the rest (OpenAI only).
    fn truncate(&mut self, _item: &str, _ms: u64) -> Option<String> {
        None
    }
    /// Barge-in during `response`: stop it, where the provider would not by itself (OpenAI with
    /// `interrupt_response: false`).
    fn cancel(&mut self, _response: &str) -> Option<String> {
        None
    }
    /// A tool's result; `then_respond` on OpenAI asks for the model's next answer.
    fn tool_result(&mut self, id: &str, name: &str, output: &Value) -> Vec<String>;
    /// OpenAI: after tool results, the model answers only when asked.
    fn respond(&mut self) -> Option<String> {
        None
    }
    /// After barge-in: model audio still in flight for the interrupted answer is dropped.
    fn reset_output(&mut self);
    /// The caller pressed a key: the model is told, as text from the caller.
    fn dtmf(&mut self, digit: &str) -> Vec<String>;
}
