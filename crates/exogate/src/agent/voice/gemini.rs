//! The Gemini Live API (`BidiGenerateContent`): `setup` first, caller audio as PCM16 at 16 kHz,
//! model audio as PCM16 at 24 kHz. Server messages arrive as binary frames holding JSON; errors
//! arrive as close frames. See shared/providers/VOICE-AI-PROVIDERS.md §B.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use exotel::SampleRate;
use exotel::audio::resample::Resampler;
use serde_json::{Map, Value, json};

use super::provider::{Event, Speaker, ToolDecl, Wire};
use super::settings::VoiceSettings;

const INPUT_HZ: u32 = 16_000;
const OUTPUT_HZ: u32 = 24_000;

pub struct GeminiWire {
    settings: Arc<VoiceSettings>,
    up: Option<Resampler>,
    down: Option<Resampler>,
    buf: Vec<u8>,
    /// Gemini has no item ids: each model turn gets one of ours, for playout tracking.
    turn: u64,
    caller_text: String,
    agent_text: String,
}

impl GeminiWire {
    pub fn new(settings: Arc<VoiceSettings>, rate: SampleRate) -> Self {
        Self {
            settings,
            up: Resampler::new(rate.hz(), INPUT_HZ).ok(),
            down: Resampler::new(OUTPUT_HZ, rate.hz()).ok(),
            buf: Vec::new(),
            turn: 1,
            caller_text: String::new(),
            agent_text: String::new(),
        }
    }

    fn flush_caller(&mut self, out: &mut Vec<Event>) {
        let text = std::mem::take(&mut self.caller_text);
        if !text.trim().is_empty() {
            out.push(Event::Transcript { speaker: Speaker::Caller, text: text.trim().to_string() });
        }
    }

    fn flush_agent(&mut self, out: &mut Vec<Event>) {
        let text = std::mem::take(&mut self.agent_text);
        if !text.trim().is_empty() {
            out.push(Event::Transcript { speaker: Speaker::Agent, text: text.trim().to_string() });
        }
    }

    fn activity_detection(&self) -> Value {
        let td = &self.settings.turn_detection;
        let mut aad = Map::new();
        aad.insert("disabled".into(), json!(false));
        if let Some(s) = td.get("start_sensitivity").and_then(Value::as_str) {
            aad.insert("startOfSpeechSensitivity".into(), json!(format!("START_SENSITIVITY_{}", s.to_uppercase())));
        }
        if let Some(s) = td.get("end_sensitivity").and_then(Value::as_str) {
            aad.insert("endOfSpeechSensitivity".into(), json!(format!("END_SENSITIVITY_{}", s.to_uppercase())));
        }
        if let Some(ms) = td.get("prefix_padding_ms") {
            aad.insert("prefixPaddingMs".into(), ms.clone());
        }
        if let Some(ms) = td.get("silence_duration_ms") {
            aad.insert("silenceDurationMs".into(), ms.clone());
        }
        Value::Object(aad)
    }
}

impl Wire for GeminiWire {
    fn setup(&mut self, instructions: &str, tools: &[ToolDecl], resume: Option<&str>) -> Vec<String> {
        let s = &self.settings;
        let model = if s.model.starts_with("models/") { s.model.clone() } else { format!("models/{}", s.model) };
        let mut speech = json!({ "voiceConfig": { "prebuiltVoiceConfig": { "voiceName": s.voice } } });
        if let Some(lang) = &s.language {
            speech["languageCode"] = json!(lang);
        }
        let mut generation = json!({ "responseModalities": ["AUDIO"], "speechConfig": speech });
        if let Some(t) = s.temperature {
            generation["temperature"] = json!(t);
        }
        let declarations: Vec<Value> = tools
            .iter()
            .map(|t| json!({ "name": t.name, "description": t.description, "parametersJsonSchema": t.parameters }))
            .collect();
        let mut resumption = json!({});
        if let Some(handle) = resume {
            resumption["handle"] = json!(handle);
        }
        let setup = json!({
            "model": model,
            "generationConfig": generation,
            "systemInstruction": { "parts": [{ "text": instructions }] },
            "tools": [{ "functionDeclarations": declarations }],
            "realtimeInputConfig": {
                "automaticActivityDetection": self.activity_detection(),
                "activityHandling": "START_OF_ACTIVITY_INTERRUPTS",
            },
            "inputAudioTranscription": {},
            "outputAudioTranscription": {},
            "sessionResumption": resumption,
            // Audio-only sessions stop at 15 minutes without it.
            "contextWindowCompression": { "slidingWindow": {} },
        });
        vec![json!({ "setup": setup }).to_string()]
    }

    fn speak(&mut self, instruction: &str) -> Vec<String> {
        // Live text: `clientContent` would cut an answer in progress, and on 3.x models it
        // starts no answer by itself (§B8).
        vec![json!({ "realtimeInput": { "text": instruction } }).to_string()]
    }

    fn greet(&mut self, instruction: &str) -> Vec<String> {
        // A seeded user turn, as §B8 and Exotel's bridge do at the start of a call.
        let turn = json!({ "role": "user", "parts": [{ "text": instruction }] });
        let mut msgs = vec![json!({ "clientContent": { "turns": [turn], "turnComplete": true } }).to_string()];
        // Gemini 3.x starts no inference on that turn alone; pipecat adds live text " ".
        let model = self.settings.model.trim_start_matches("models/");
        if model.starts_with("gemini-3") {
            msgs.push(json!({ "realtimeInput": { "text": " " } }).to_string());
        }
        msgs
    }

    fn audio(&mut self, pcm: &[u8], out: &mut Vec<String>) {
        self.buf.clear();
        match self.up.as_mut() {
            Some(up) => up.process(pcm, &mut self.buf),
            None => self.buf.extend_from_slice(pcm),
        }
        if self.buf.is_empty() {
            return;
        }
        out.push(format!(
            r#"{{"realtimeInput":{{"audio":{{"mimeType":"audio/pcm;rate={INPUT_HZ}","data":"{}"}}}}}}"#,
            B64.encode(&self.buf)
        ));
    }

    fn parse(&mut self, text: &str, out: &mut Vec<Event>) -> Result<(), String> {
        let v: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
        let Some(msg) = v.as_object() else { return Err("a message that is not an object".into()) };
        if msg.contains_key("setupComplete") {
            out.push(Event::Ready);
        }
        if let Some(sc) = msg.get("serverContent") {
            // pipecat's order: interrupted, audio, transcriptions, turn end.
            if sc["interrupted"].as_bool() == Some(true) {
                self.flush_agent(out);
                out.push(Event::BargeIn);
            }
            if let Some(parts) = sc["modelTurn"]["parts"].as_array() {
                for part in parts {
                    let inline = &part["inlineData"];
                    let audio = inline["mimeType"].as_str().is_some_and(|m| m.starts_with("audio/pcm"));
                    let Some(data) = inline["data"].as_str().filter(|_| audio) else { continue };
                    let raw = B64.decode(data).map_err(|_| "model audio is not base64".to_string())?;
                    self.flush_caller(out);
                    let mut pcm = Vec::with_capacity(raw.len());
                    match self.down.as_mut() {
                        Some(d) => d.process(&raw, &mut pcm),
                        None => pcm.extend_from_slice(&raw),
                    }
                    let provider_ms = raw.len() as f64 / (OUTPUT_HZ as f64 / 500.0);
                    out.push(Event::Audio {
                        item: Some(format!("turn-{}", self.turn)),
                        response: None,
                        pcm,
                        provider_ms,
                    });
                }
            }
            if let Some(t) = sc["inputTranscription"]["text"].as_str() {
                self.caller_text.push_str(t);
            }
            if let Some(t) = sc["outputTranscription"]["text"].as_str() {
                self.agent_text.push_str(t);
            }
            if sc["turnComplete"].as_bool() == Some(true) {
                self.flush_caller(out);
                self.flush_agent(out);
                out.push(Event::ResponseDone { response: Some(format!("turn-{}", self.turn)), failed: None });
                self.turn += 1;
            }
        }
        if let Some(calls) = msg.get("toolCall").and_then(|t| t["functionCalls"].as_array()) {
            for c in calls {
                let args = match c.get("args") {
                    None | Some(Value::Null) => Ok(json!({})),
                    Some(a @ Value::Object(_)) => Ok(a.clone()),
                    Some(_) => Err("args is not an object".to_string()),
                };
                out.push(Event::ToolCall {
                    id: c["id"].as_str().unwrap_or_default().to_string(),
                    name: c["name"].as_str().unwrap_or_default().to_string(),
                    args,
                });
            }
        }
        if let Some(ids) = msg.get("toolCallCancellation").and_then(|t| t["ids"].as_array()) {
            out.push(Event::ToolCancelled(ids.iter().filter_map(Value::as_str).map(str::to_string).collect()));
        }
        if let Some(update) = msg.get("sessionResumptionUpdate") {
            // Not resumable (mid-answer, tools running): that handle would not restore the
            // session; the last resumable one stays.
            let resumable = update["resumable"].as_bool() != Some(false);
            if let Some(handle) = update["newHandle"].as_str().filter(|h| !h.is_empty() && resumable) {
                out.push(Event::Resumable(handle.to_string()));
            }
        }
        if let Some(go) = msg.get("goAway") {
            out.push(Event::GoAway(go["timeLeft"].as_str().and_then(duration)));
        }
        if let Some(usage) = msg.get("usageMetadata").filter(|u| u.is_object()) {
            out.push(Event::Usage(usage.clone()));
        }
        Ok(())
    }

    fn tool_result(&mut self, id: &str, name: &str, output: &Value) -> Vec<String> {
        // `response` must be an object: `output`, or `error` when the tool failed.
        let response = match output.get("error") {
            Some(e) if output.as_object().is_some_and(|o| o.len() == 1) => json!({ "error": e }),
            _ => json!({ "output": output }),
        };
        let r = json!({ "id": id, "name": name, "response": response });
        vec![json!({ "toolResponse": { "functionResponses": [r] } }).to_string()]
    }

    fn dtmf(&mut self, digit: &str) -> Vec<String> {
        // Live text, not `clientContent`, which would cut an answer in progress.
        let text = format!("[The caller pressed the key {digit} on their phone.]");
        vec![json!({ "realtimeInput": { "text": text } }).to_string()]
    }

    fn reset_output(&mut self) {
        if let Some(d) = self.down.as_mut() {
            d.reset();
        }
    }
}

/// A protobuf Duration in JSON: seconds with an `s`, e.g. `"50s"`, `"1.5s"`.
fn duration(text: &str) -> Option<std::time::Duration> {
    let secs: f64 = text.trim().strip_suffix('s')?.parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| std::time::Duration::from_secs_f64(secs.min(86_400.0)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::voice::settings::ProviderKind;

    fn wire() -> GeminiWire {
        let s = VoiceSettings::parse(ProviderKind::Gemini, &json!({ "api_key": "k", "temperature": 0.4 })).unwrap();
        GeminiWire::new(Arc::new(s), SampleRate::Hz8000)
    }

    #[test]
    fn setup_and_audio_follow_the_live_api() {
        let mut w = wire();
        let tools =
            [ToolDecl { name: "end_call".into(), description: "d".into(), parameters: json!({"type": "object"}) }];
        let setup: Value = serde_json::from_str(&w.setup("Be brief.", &tools, Some("h1"))[0]).unwrap();
        let s = &setup["setup"];
        assert_eq!(s["model"], "models/gemini-2.5-flash-native-audio-preview-12-2025");
        assert_eq!(s["generationConfig"]["temperature"], 0.4);
        assert_eq!(s["systemInstruction"]["parts"][0]["text"], "Be brief.");
        assert_eq!(s["tools"][0]["functionDeclarations"][0]["name"], "end_call");
        assert_eq!(s["sessionResumption"]["handle"], "h1");
        let mut out = Vec::new();
        w.audio(&vec![0u8; 3200], &mut out); // 200 ms at 8 kHz
        let m: Value = serde_json::from_str(&out[0]).unwrap();
        assert_eq!(m["realtimeInput"]["audio"]["mimeType"], "audio/pcm;rate=16000");
        let sent = B64.decode(m["realtimeInput"]["audio"]["data"].as_str().unwrap()).unwrap().len();
        // ×2, less what the resampler holds back (one 10 ms block and its 5 ms delay).
        assert!((5600..=6400).contains(&sent), "{sent}");
    }

    #[test]
    fn server_messages_become_events() {
        let mut w = wire();
        let mut ev = Vec::new();
        let audio = B64.encode(vec![0u8; 4800]); // 100 ms at 24 kHz
        for m in [
            json!({ "setupComplete": {} }),
            json!({ "serverContent": { "inputTranscription": { "text": "hel" } } }),
            json!({ "serverContent": { "inputTranscription": { "text": "lo" } } }),
            json!({ "serverContent": { "modelTurn": { "parts": [{ "inlineData": { "mimeType": "audio/pcm;rate=24000", "data": audio } }, { "text": "x" }] } } }),
            json!({ "serverContent": { "outputTranscription": { "text": "Hi!" }, "turnComplete": true }, "usageMetadata": { "totalTokenCount": 9 } }),
            json!({ "serverContent": { "interrupted": true } }),
            json!({ "toolCall": { "functionCalls": [{ "id": "f1", "name": "end_call", "args": { "reason": "bye" } }] } }),
            json!({ "sessionResumptionUpdate": { "newHandle": "h2", "resumable": true } }),
            json!({ "goAway": { "timeLeft": "50s" } }),
        ] {
            w.parse(&m.to_string(), &mut ev).unwrap();
        }
        assert_eq!(ev[0], Event::Ready);
        assert_eq!(ev[1], Event::Transcript { speaker: Speaker::Caller, text: "hello".into() });
        assert!(
            matches!(&ev[2], Event::Audio { item: Some(i), provider_ms, .. } if i == "turn-1" && *provider_ms == 100.0)
        );
        assert_eq!(ev[3], Event::Transcript { speaker: Speaker::Agent, text: "Hi!".into() });
        assert_eq!(ev[4], Event::ResponseDone { response: Some("turn-1".into()), failed: None });
        assert_eq!(ev[5], Event::Usage(json!({ "totalTokenCount": 9 })));
        assert_eq!(ev[6], Event::BargeIn);
        assert!(matches!(&ev[7], Event::ToolCall { id, args: Ok(_), .. } if id == "f1"));
        assert_eq!(ev[8], Event::Resumable("h2".into()));
        assert_eq!(ev[9], Event::GoAway(Some(std::time::Duration::from_secs(50))));
        let r: Value = serde_json::from_str(&w.tool_result("f1", "end_call", &json!({ "ok": true }))[0]).unwrap();
        assert_eq!(r["toolResponse"]["functionResponses"][0]["response"]["output"]["ok"], true);
    }

    #[test]
    fn go_away_carries_its_time_and_a_handle_not_resumable_is_not_taken() {
        let mut w = wire();
        let mut ev = Vec::new();
        for m in [
            json!({ "sessionResumptionUpdate": { "newHandle": "h-busy", "resumable": false } }),
            json!({ "sessionResumptionUpdate": { "newHandle": "", "resumable": false } }),
            json!({ "sessionResumptionUpdate": { "newHandle": "h-ok", "resumable": true } }),
            json!({ "goAway": { "timeLeft": "1.5s" } }),
            json!({ "goAway": {} }),
        ] {
            w.parse(&m.to_string(), &mut ev).unwrap();
        }
        assert_eq!(
            ev,
            [
                Event::Resumable("h-ok".into()),
                Event::GoAway(Some(std::time::Duration::from_millis(1500))),
                Event::GoAway(None),
            ]
        );
        assert_eq!(duration("bad"), None);
    }

    #[test]
    fn the_greeting_is_a_seeded_turn_and_later_words_are_live_text() {
        let mut w = wire();
        let greet: Vec<Value> = w.greet("Say hi.").iter().map(|m| serde_json::from_str(m).unwrap()).collect();
        assert_eq!(greet.len(), 1, "2.5: the seeded turn alone starts the answer");
        assert_eq!(greet[0]["clientContent"]["turns"][0]["parts"][0]["text"], "Say hi.");
        let nudge: Value = serde_json::from_str(&w.speak("Still there?")[0]).unwrap();
        assert_eq!(nudge, json!({ "realtimeInput": { "text": "Still there?" } }));
        let s = VoiceSettings::parse(
            ProviderKind::Gemini,
            &json!({ "api_key": "k", "model": "gemini-3.1-flash-live-preview" }),
        )
        .unwrap();
        let mut w3 = GeminiWire::new(Arc::new(s), SampleRate::Hz8000);
        let greet: Vec<Value> = w3.greet("Say hi.").iter().map(|m| serde_json::from_str(m).unwrap()).collect();
        assert_eq!(greet[1], json!({ "realtimeInput": { "text": " " } }), "3.x needs live text to start");
    }
}
