//! The OpenAI Realtime API, GA protocol (`session.type: "realtime"`), with the beta event names
//! still accepted when reading. An 8 kHz call speaks G.711 μ-law both ways (no resampling, as the
//! API takes no 8 kHz PCM); 16 and 24 kHz calls speak PCM16 at 24 kHz.
//! See shared/providers/VOICE-AI-PROVIDERS.md §A.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use exotel::SampleRate;
use exotel::audio::g711::{ulaw_decode, ulaw_encode};
use exotel::audio::resample::Resampler;
use serde_json::{Map, Value, json};

use super::provider::{Event, Speaker, ToolDecl, Wire};
use super::settings::VoiceSettings;

/// Error codes after which the session can't go on.
const FATAL_CODES: [&str; 5] =
    ["invalid_api_key", "insufficient_quota", "rate_limit_exceeded", "beta_api_shape_disabled", "model_not_found"];

pub struct OpenAiWire {
    settings: Arc<VoiceSettings>,
    rate: SampleRate,
    /// Call rate → 24 kHz and back, for 16 kHz calls; `None` where no resampling is needed.
    up: Option<Resampler>,
    down: Option<Resampler>,
    instructions: String,
    buf: Vec<u8>,
    /// Function calls announced by `response.output_item.added`, by `call_id`: their names, for
    /// a `.done` that lacks one.
    calls: HashMap<String, String>,
    /// Calls already handed on: `function_call_arguments.done` and `output_item.done` both
    /// carry a finished call, and it runs once.
    called: VecDeque<String>,
}

/// Remembered call ids, a bound for a peer that never finishes its calls.
const MAX_CALLS: usize = 64;

impl OpenAiWire {
    pub fn new(settings: Arc<VoiceSettings>, rate: SampleRate) -> Self {
        let (up, down) = match rate {
            SampleRate::Hz16000 => (Resampler::new(16_000, 24_000).ok(), Resampler::new(24_000, 16_000).ok()),
            _ => (None, None),
        };
        Self {
            settings,
            rate,
            up,
            down,
            instructions: String::new(),
            buf: Vec::new(),
            calls: HashMap::new(),
            called: VecDeque::new(),
        }
    }

    fn ulaw(&self) -> bool {
        self.rate == SampleRate::Hz8000
    }

    fn format(&self) -> Value {
        if self.ulaw() { json!({ "type": "audio/pcmu" }) } else { json!({ "type": "audio/pcm", "rate": 24000 }) }
    }

    /// Provider bytes → milliseconds of audio.
    fn ms(&self, bytes: usize) -> f64 {
        if self.ulaw() { bytes as f64 / 8.0 } else { bytes as f64 / 48.0 }
    }

    fn turn_detection(&self) -> Value {
        let mut td: Map<String, Value> = self.settings.turn_detection.clone();
        td.entry("type").or_insert_with(|| json!("server_vad"));
        // Stated, not left to defaults the docs don't give: barge-in needs both.
        td.entry("create_response").or_insert(json!(true));
        td.entry("interrupt_response").or_insert(json!(true));
        if td.get("type").and_then(Value::as_str) == Some("semantic_vad") {
            for k in ["threshold", "prefix_padding_ms", "silence_duration_ms", "idle_timeout_ms"] {
                td.remove(k);
            }
        } else {
            td.remove("eagerness");
        }
        Value::Object(td)
    }
}

impl OpenAiWire {
    /// A finished function call, from `.arguments.done` or `output_item.done`, whichever first.
    fn call_done(&mut self, call_id: Option<&str>, name: Option<&str>, arguments: Option<&str>, out: &mut Vec<Event>) {
        let id = call_id.unwrap_or_default().to_string();
        if !id.is_empty() && self.called.contains(&id) {
            return;
        }
        let known = self.calls.remove(&id);
        let name = name.filter(|n| !n.is_empty()).map(str::to_string).or(known).unwrap_or_default();
        if !id.is_empty() {
            if self.called.len() >= MAX_CALLS {
                self.called.pop_front();
            }
            self.called.push_back(id.clone());
        }
        let args = match arguments {
            Some(a) if a.trim().is_empty() => Ok(json!({})),
            Some(a) => serde_json::from_str(a).map_err(|e| format!("arguments are not JSON: {e}")),
            None => Ok(json!({})),
        };
        out.push(Event::ToolCall { id, name, args });
    }
}

fn function(t: &ToolDecl) -> Value {
    json!({ "type": "function", "name": t.name, "description": t.description, "parameters": t.parameters })
}

impl Wire for OpenAiWire {
    fn setup(&mut self, instructions: &str, tools: &[ToolDecl], _resume: Option<&str>) -> Vec<String> {
        self.instructions = instructions.to_string();
        let mut input = json!({ "format": self.format(), "turn_detection": self.turn_detection() });
        if let Some(model) = &self.settings.transcription_model {
            let mut t = json!({ "model": model });
            if let Some(lang) = &self.settings.language {
                // ISO-639-1: "en-IN" → "en".
                t["language"] = json!(lang.split(['-', '_']).next().unwrap_or(lang));
            }
            input["transcription"] = t;
        }
        // No `temperature`: the GA API refuses the whole update for it.
        let session = json!({
            "type": "realtime",
            "instructions": instructions,
            "output_modalities": ["audio"],
            "audio": { "input": input, "output": { "format": self.format(), "voice": self.settings.voice } },
            "tools": tools.iter().map(function).collect::<Vec<_>>(),
            "tool_choice": "auto",
        });
        vec![json!({ "type": "session.update", "event_id": "exogate-setup", "session": session }).to_string()]
    }

    fn speak(&mut self, instruction: &str) -> Vec<String> {
        // A response's instructions replace the session's: the persona goes with them.
        let instructions = format!("{}\n\n{instruction}", self.instructions);
        vec![json!({ "type": "response.create", "response": { "instructions": instructions } }).to_string()]
    }

    fn audio(&mut self, pcm: &[u8], out: &mut Vec<String>) {
        self.buf.clear();
        let ulaw = self.ulaw();
        match (&mut self.up, ulaw) {
            (_, true) => ulaw_encode(pcm, &mut self.buf),
            (Some(up), false) => up.process(pcm, &mut self.buf),
            (None, false) => self.buf.extend_from_slice(pcm),
        }
        if self.buf.is_empty() {
            return;
        }
        out.push(format!(r#"{{"type":"input_audio_buffer.append","audio":"{}"}}"#, B64.encode(&self.buf)));
    }

    fn parse(&mut self, text: &str, out: &mut Vec<Event>) -> Result<(), String> {
        let v: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
        let Some(kind) = v.get("type").and_then(Value::as_str) else {
            return Err("an event without a type".into());
        };
        let s = |key: &str| v.get(key).and_then(Value::as_str).map(str::to_string);
        match kind {
            "session.updated" => out.push(Event::Ready),
            "response.created" => out.push(Event::ResponseStarted(v["response"]["id"].as_str().map(str::to_string))),
            "response.output_audio.delta" | "response.audio.delta" => {
                let Some(delta) = v.get("delta").and_then(Value::as_str) else {
                    return Err("audio delta without a delta".into());
                };
                let raw = B64.decode(delta).map_err(|_| "audio delta is not base64".to_string())?;
                let mut pcm = Vec::with_capacity(raw.len() * 2);
                let ulaw = self.ulaw();
                match (&mut self.down, ulaw) {
                    (_, true) => ulaw_decode(&raw, &mut pcm),
                    (Some(down), false) => down.process(&raw, &mut pcm),
                    (None, false) => pcm.extend_from_slice(&raw),
                }
                out.push(Event::Audio {
                    item: s("item_id"),
                    response: s("response_id"),
                    pcm,
                    provider_ms: self.ms(raw.len()),
                });
            }
            "input_audio_buffer.speech_started" => out.push(Event::BargeIn),
            "response.done" => {
                let r = &v["response"];
                let failed = (r["status"].as_str() == Some("failed")).then(|| {
                    let e = &r["status_details"]["error"];
                    let code = e["code"].as_str().or(e["type"].as_str()).unwrap_or("failed");
                    match e["message"].as_str() {
                        Some(m) => format!("{code}: {m}"),
                        None => code.to_string(),
                    }
                });
                if let Some(usage) = r.get("usage").filter(|u| u.is_object()) {
                    out.push(Event::Usage(usage.clone()));
                }
                out.push(Event::ResponseDone { response: r["id"].as_str().map(str::to_string), failed });
            }
            "response.output_item.added" if v["item"]["type"] == "function_call" => {
                let item = &v["item"];
                if let (Some(id), Some(name)) = (item["call_id"].as_str(), item["name"].as_str()) {
                    if self.calls.len() >= MAX_CALLS {
                        self.calls.clear();
                    }
                    self.calls.insert(id.to_string(), name.to_string());
                }
            }
            "response.function_call_arguments.done" => {
                let args = v.get("arguments").and_then(Value::as_str);
                self.call_done(v["call_id"].as_str(), v["name"].as_str(), args, out);
            }
            "response.output_item.done" if v["item"]["type"] == "function_call" => {
                let item = &v["item"];
                self.call_done(item["call_id"].as_str(), item["name"].as_str(), item["arguments"].as_str(), out);
            }
            "conversation.item.input_audio_transcription.completed" => {
                if let Some(t) = s("transcript").filter(|t| !t.trim().is_empty()) {
                    out.push(Event::Transcript { speaker: Speaker::Caller, text: t.trim().to_string() });
                }
            }
            "conversation.item.input_audio_transcription.failed" => {
                // The model still heard the caller; only the call log misses the line.
                let e = &v["error"];
                let why = e["message"].as_str().or(e["code"].as_str()).unwrap_or("no reason given");
                out.push(Event::Warning(format!("caller transcription failed: {why}")));
            }
            "response.output_audio_transcript.done" | "response.audio_transcript.done" => {
                if let Some(t) = s("transcript").filter(|t| !t.trim().is_empty()) {
                    out.push(Event::Transcript { speaker: Speaker::Agent, text: t.trim().to_string() });
                }
            }
            "error" => {
                let e = &v["error"];
                let code = e["code"].as_str().unwrap_or_default();
                let message = e["message"].as_str().unwrap_or_default();
                let text = format!("{}{}{message}", code, if code.is_empty() { "" } else { ": " });
                out.push(if FATAL_CODES.contains(&code) {
                    Event::Fatal(text)
                } else if code == "session_expired" {
                    Event::Expired(text)
                } else if code == "conversation_already_has_active_response" {
                    Event::ResponseBusy
                } else {
                    Event::Warning(text)
                });
            }
            _ => {}
        }
        Ok(())
    }

    fn truncate(&mut self, item: &str, ms: u64) -> Option<String> {
        Some(
            json!({ "type": "conversation.item.truncate", "item_id": item, "content_index": 0, "audio_end_ms": ms })
                .to_string(),
        )
    }

    fn cancel(&mut self, response: &str) -> Option<String> {
        // §A5 step 4: with `interrupt_response` true the server cancels by itself.
        let interrupts = self.settings.turn_detection.get("interrupt_response").and_then(Value::as_bool);
        (interrupts == Some(false)).then(|| json!({ "type": "response.cancel", "response_id": response }).to_string())
    }

    fn tool_result(&mut self, id: &str, _name: &str, output: &Value) -> Vec<String> {
        let item = json!({ "type": "function_call_output", "call_id": id, "output": output.to_string() });
        vec![json!({ "type": "conversation.item.create", "item": item }).to_string()]
    }

    fn respond(&mut self) -> Option<String> {
        Some(json!({ "type": "response.create" }).to_string())
    }

    fn dtmf(&mut self, digit: &str) -> Vec<String> {
        let text = format!("[The caller pressed the key {digit} on their phone.]");
        let item = json!({ "type": "message", "role": "user", "content": [{ "type": "input_text", "text": text }] });
        vec![json!({ "type": "conversation.item.create", "item": item }).to_string()]
    }

    fn reset_output(&mut self) {
        if let Some(d) = self.down.as_mut() {
            d.reset();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::voice::settings::ProviderKind;

    fn wire(rate: SampleRate) -> OpenAiWire {
        let s = VoiceSettings::parse(ProviderKind::OpenAi, &json!({ "api_key": "k", "language": "en-IN" })).unwrap();
        OpenAiWire::new(Arc::new(s), rate)
    }

    #[test]
    fn an_8k_call_is_mulaw_both_ways_and_the_setup_is_ga() {
        let mut w = wire(SampleRate::Hz8000);
        let setup: Value = serde_json::from_str(&w.setup("Be brief.", &[], None)[0]).unwrap();
        let session = &setup["session"];
        assert_eq!(session["type"], "realtime");
        assert_eq!(session["audio"]["input"]["format"]["type"], "audio/pcmu");
        assert_eq!(session["audio"]["output"]["voice"], "marin");
        assert_eq!(session["audio"]["input"]["transcription"]["language"], "en");
        assert_eq!(session["audio"]["input"]["turn_detection"]["interrupt_response"], true);
        assert!(session.get("temperature").is_none());
        let mut out = Vec::new();
        w.audio(&[0u8; 320], &mut out);
        let append: Value = serde_json::from_str(&out[0]).unwrap();
        assert_eq!(B64.decode(append["audio"].as_str().unwrap()).unwrap().len(), 160, "one byte per sample");
        let mut events = Vec::new();
        let delta = json!({ "type": "response.audio.delta", "item_id": "i1", "response_id": "r1", "delta": B64.encode([0xffu8; 80]) });
        w.parse(&delta.to_string(), &mut events).unwrap();
        match &events[0] {
            Event::Audio { item, pcm, provider_ms, .. } => {
                assert_eq!(item.as_deref(), Some("i1"));
                assert_eq!((pcm.len(), *provider_ms), (160, 10.0));
            }
            e => panic!("{e:?}"),
        }
    }

    #[test]
    fn events_are_read_in_both_namings() {
        let mut w = wire(SampleRate::Hz24000);
        let mut ev = Vec::new();
        for e in [
            json!({ "type": "session.updated" }),
            json!({ "type": "input_audio_buffer.speech_started", "audio_start_ms": 10 }),
            json!({ "type": "response.function_call_arguments.done", "call_id": "c1", "name": "end_call", "arguments": "{\"reason\":\"done\"}" }),
            json!({ "type": "response.function_call_arguments.done", "call_id": "c2", "name": "x", "arguments": "{bad" }),
            json!({ "type": "response.output_audio_transcript.done", "transcript": "Hello there" }),
            json!({ "type": "conversation.item.input_audio_transcription.completed", "transcript": " hi " }),
            json!({ "type": "response.done", "response": { "id": "r1", "status": "failed", "status_details": { "error": { "code": "rate_limit_exceeded", "message": "slow down" } }, "usage": { "total_tokens": 5 } } }),
            json!({ "type": "error", "error": { "code": "invalid_api_key", "message": "bad key" } }),
            json!({ "type": "error", "error": { "code": "response_cancel_not_active", "message": "none" } }),
            json!({ "type": "error", "error": { "code": "conversation_already_has_active_response", "message": "busy" } }),
            json!({ "type": "error", "error": { "code": "session_expired", "message": "Your session hit the maximum duration of 60 minutes." } }),
            json!({ "type": "conversation.item.input_audio_transcription.failed", "item_id": "u1", "error": { "code": "audio_unintelligible", "message": "could not transcribe" } }),
            json!({ "type": "rate_limits.updated", "rate_limits": [{ "name": "tokens", "limit": 1000, "remaining": 900 }] }),
        ] {
            w.parse(&e.to_string(), &mut ev).unwrap();
        }
        assert_eq!(ev[0], Event::Ready);
        assert_eq!(ev[1], Event::BargeIn);
        assert_eq!(
            ev[2],
            Event::ToolCall { id: "c1".into(), name: "end_call".into(), args: Ok(json!({"reason": "done"})) }
        );
        assert!(matches!(&ev[3], Event::ToolCall { args: Err(_), .. }));
        assert_eq!(ev[4], Event::Transcript { speaker: Speaker::Agent, text: "Hello there".into() });
        assert_eq!(ev[5], Event::Transcript { speaker: Speaker::Caller, text: "hi".into() });
        assert_eq!(ev[6], Event::Usage(json!({ "total_tokens": 5 })));
        assert_eq!(
            ev[7],
            Event::ResponseDone { response: Some("r1".into()), failed: Some("rate_limit_exceeded: slow down".into()) }
        );
        assert!(matches!(&ev[8], Event::Fatal(m) if m.contains("bad key")));
        assert!(matches!(&ev[9], Event::Warning(_)));
        assert_eq!(ev[10], Event::ResponseBusy);
        assert!(matches!(&ev[11], Event::Expired(m) if m.starts_with("session_expired")));
        assert_eq!(ev[12], Event::Warning("caller transcription failed: could not transcribe".into()));
        assert_eq!(ev.len(), 13, "rate_limits.updated is read and ignored");
        assert!(w.parse("garbage", &mut ev).is_err());
    }

    #[test]
    fn a_function_call_runs_once_with_its_name_from_wherever_it_came() {
        let mut w = wire(SampleRate::Hz8000);
        let mut ev = Vec::new();
        for e in [
            // The name only in output_item.added; .done without one, then output_item.done.
            json!({ "type": "response.output_item.added", "item": { "id": "i1", "type": "function_call", "call_id": "c1", "name": "end_call", "arguments": "" } }),
            json!({ "type": "response.function_call_arguments.done", "call_id": "c1", "arguments": "{}" }),
            json!({ "type": "response.output_item.done", "item": { "type": "function_call", "call_id": "c1", "name": "end_call", "arguments": "{}" } }),
            // Only output_item.done.
            json!({ "type": "response.output_item.done", "item": { "type": "function_call", "call_id": "c2", "name": "lookup", "arguments": "{\"n\":1}" } }),
            json!({ "type": "response.output_item.done", "item": { "type": "message", "id": "i3" } }),
        ] {
            w.parse(&e.to_string(), &mut ev).unwrap();
        }
        assert_eq!(
            ev,
            [
                Event::ToolCall { id: "c1".into(), name: "end_call".into(), args: Ok(json!({})) },
                Event::ToolCall { id: "c2".into(), name: "lookup".into(), args: Ok(json!({ "n": 1 })) },
            ]
        );
    }
}
