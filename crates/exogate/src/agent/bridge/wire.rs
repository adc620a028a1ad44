//! What a bot protocol must translate, both ways.

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
    fn dtmf(&mut self, digit: &str) -> String;
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
