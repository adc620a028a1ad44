//! The Gemini Live API's side: `setup` first (a bad key is closed with 1007 after it, as the
//! real service does), `setupComplete`, caller audio heard at the rate its `mimeType` names,
//! answers as `serverContent` (audio parts at 24 kHz, transcriptions, `turnComplete`), barge-in
//! as `interrupted`, tools as `toolCall`. Server messages go out as binary frames of JSON.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use futures_util::SinkExt;
use serde_json::{Value, json};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use super::{
    Due, FakeAiConfig, FakeAiFailure, Schedule, SessionHandle, Side, Ws, answer_chunks, close, drive, earliest,
};

struct Fake<'a> {
    cfg: &'a FakeAiConfig,
    h: &'a SessionHandle,
    /// The key was accepted at the upgrade (Gemini refuses it only after `setup`).
    authorized: bool,
    schedule: Schedule,
    caller_ms: f64,
    answers_left: usize,
    tool_called: bool,
    went_away: Option<Instant>,
    handles: u32,
    /// A 3.x model: a `clientContent` turn waits for live text before it is answered.
    gemini3: bool,
    seeded: bool,
}

pub(super) async fn serve(ws: Ws, cfg: &FakeAiConfig, h: &SessionHandle, authorized: bool) -> String {
    let mut f = Fake {
        cfg,
        h,
        authorized,
        schedule: Schedule::default(),
        caller_ms: 0.0,
        answers_left: cfg.answers,
        tool_called: false,
        went_away: None,
        handles: 0,
        gemini3: false,
        seeded: false,
    };
    drive(ws, &mut f).await
}

async fn send(ws: &mut Ws, v: Value) -> Result<(), String> {
    ws.send(Message::binary(v.to_string().into_bytes())).await.map_err(|_| "dropped".to_string())
}

impl Side for Fake<'_> {
    fn next_wake(&self) -> Option<Instant> {
        let go_away = match (self.went_away, self.cfg.go_away_after, self.schedule.ready_at) {
            (Some(at), _, _) => Some(at + self.cfg.go_away_time_left),
            (None, Some(d), Some(r)) => Some(r + d),
            _ => None,
        };
        earliest(self.schedule.next_wake(self.cfg), go_away)
    }

    async fn on_timer(&mut self, ws: &mut Ws) -> Result<(), String> {
        let now = Instant::now();
        for due in self.schedule.due(self.cfg, self.h, now) {
            match due {
                Due::BargeIn => {
                    send(ws, json!({ "serverContent": { "interrupted": true } })).await?;
                    send(ws, json!({ "serverContent": { "turnComplete": true } })).await?;
                }
                Due::Close => return Err(close(ws, 1011, "Internal error encountered.").await),
                Due::Expire => return Err(close(ws, 1000, "session time is up").await),
                Due::Garbage => {
                    ws.send(Message::binary(b"\x00\x01 not json".to_vec())).await.map_err(|_| "dropped".to_string())?;
                }
            }
        }
        match (self.went_away, self.cfg.go_away_after, self.schedule.ready_at) {
            (Some(at), _, _) if now >= at + self.cfg.go_away_time_left => {
                return Err(close(ws, 1000, "session time is up").await);
            }
            (None, Some(d), Some(r)) if now >= r + d => self.go_away(ws).await?,
            _ => {}
        }
        Ok(())
    }

    async fn on_client(&mut self, ws: &mut Ws, text: &str) -> Result<(), String> {
        let Ok(v) = serde_json::from_str::<Value>(text) else {
            return Err(close(ws, 1007, "Request contains an invalid argument.").await);
        };
        if self.schedule.ready_at.is_none() {
            let Some(setup) = v.get("setup") else {
                return Err(close(ws, 1007, "The first message must be setup.").await);
            };
            if !self.authorized {
                return Err(close(ws, 1007, "API key not valid. Please pass a valid API key.").await);
            }
            if !setup["model"].as_str().is_some_and(|m| m.starts_with("models/")) {
                return Err(close(ws, 1008, "models/? is not found for API version v1beta").await);
            }
            self.gemini3 = setup["model"].as_str().is_some_and(|m| m.starts_with("models/gemini-3"));
            self.h.update(|s| s.setup = Some(v.clone()));
            self.schedule.ready_at = Some(Instant::now());
            send(ws, json!({ "setupComplete": {} })).await?;
            if setup["sessionResumption"].is_object() {
                self.new_handle(ws).await?;
            }
            return Ok(());
        }
        if let Some(input) = v.get("realtimeInput") {
            let chunks: Vec<&Value> = match (input.get("audio"), input.get("mediaChunks").and_then(Value::as_array)) {
                (Some(a), _) => vec![a],
                (None, Some(list)) => list.iter().collect(),
                _ => Vec::new(),
            };
            for chunk in chunks {
                self.on_audio(ws, chunk).await?;
            }
            if chunks_is_other(input) {
                self.h.update(|s| s.messages.push(v.clone()));
            }
            // Live text is answered; blank text only starts a seeded turn (3.x).
            if let Some(text) = input["text"].as_str() {
                if !text.trim().is_empty() || std::mem::take(&mut self.seeded) {
                    return self.answer(ws).await;
                }
            }
            return Ok(());
        }
        self.h.update(|s| s.messages.push(v.clone()));
        if v.get("clientContent").is_some() {
            if self.gemini3 {
                self.seeded = true;
                return Ok(());
            }
            return self.answer(ws).await;
        }
        if let Some(responses) = v["toolResponse"]["functionResponses"].as_array() {
            self.h.update(|s| s.tool_outputs.extend(responses.iter().cloned()));
            // A blocking function: the model goes on by itself.
            return self.answer(ws).await;
        }
        Ok(())
    }
}

impl Fake<'_> {
    async fn go_away(&mut self, ws: &mut Ws) -> Result<(), String> {
        self.went_away = Some(Instant::now());
        let left = format!("{}s", self.cfg.go_away_time_left.as_secs_f64());
        send(ws, json!({ "goAway": { "timeLeft": left } })).await
    }

    async fn new_handle(&mut self, ws: &mut Ws) -> Result<(), String> {
        self.handles += 1;
        let update = json!({ "newHandle": format!("fake-handle-{}", self.handles), "resumable": true });
        send(ws, json!({ "sessionResumptionUpdate": update })).await
    }

    async fn on_audio(&mut self, ws: &mut Ws, chunk: &Value) -> Result<(), String> {
        let mime = chunk["mimeType"].as_str().unwrap_or_default().to_string();
        let rate: u32 = mime.split("rate=").nth(1).and_then(|r| r.parse().ok()).unwrap_or(16_000);
        let Some(pcm) = chunk["data"].as_str().and_then(|d| B64.decode(d).ok()) else {
            return Err(close(ws, 1007, "Invalid audio data.").await);
        };
        let ms = pcm.len() as f64 / (f64::from(rate) / 500.0);
        self.h.update(|s| {
            s.audio_in.extend_from_slice(&pcm);
            s.audio_messages += 1;
            s.audio_format = mime;
            s.audio_rate = rate;
        });
        self.caller_ms += ms;
        if self.answers_left > 0 && self.caller_ms >= self.cfg.answer_after.as_millis() as f64 {
            self.answers_left -= 1;
            self.caller_ms = 0.0;
            send(ws, json!({ "serverContent": { "inputTranscription": { "text": self.cfg.caller_transcript } } }))
                .await?;
            self.answer(ws).await?;
        }
        Ok(())
    }

    async fn answer(&mut self, ws: &mut Ws) -> Result<(), String> {
        if self.cfg.failure == Some(FakeAiFailure::RateLimit) {
            let reason = "You exceeded your current quota. RESOURCE_EXHAUSTED";
            return Err(close(ws, 1011, reason).await);
        }
        if let (Some((name, args)), false) = (&self.cfg.tool_call, self.tool_called) {
            self.tool_called = true;
            // Unique across connections, as the real service's: a result names its connection.
            static NEXT_CALL: AtomicU64 = AtomicU64::new(1);
            let id = format!("function-call-{}", NEXT_CALL.fetch_add(1, Ordering::Relaxed));
            self.h.update(|s| s.tool_calls.push(id.clone()));
            let call = json!({ "id": id, "name": name, "args": args });
            return send(ws, json!({ "toolCall": { "functionCalls": [call] } })).await;
        }
        let chunks = answer_chunks(self.cfg, false);
        let total: usize = chunks.iter().map(Vec::len).sum();
        let first = Instant::now();
        self.h.update(|s| {
            s.answers_started.push(std::time::Instant::now());
            s.answers_ms.push((total / 48) as u64);
        });
        for (i, chunk) in chunks.iter().enumerate() {
            if self.cfg.go_away_in_answer && self.went_away.is_none() && i == chunks.len() / 2 {
                self.go_away(ws).await?;
            }
            let part = json!({ "inlineData": { "mimeType": "audio/pcm;rate=24000", "data": B64.encode(chunk) } });
            send(ws, json!({ "serverContent": { "modelTurn": { "role": "model", "parts": [part] } } })).await?;
            if self.cfg.paced {
                tokio::time::sleep(Duration::from_millis(u64::from(self.cfg.delta_ms))).await;
            }
        }
        send(ws, json!({ "serverContent": { "outputTranscription": { "text": self.cfg.agent_transcript } } })).await?;
        send(ws, json!({ "serverContent": { "generationComplete": true } })).await?;
        let usage = json!({ "promptTokenCount": 70, "responseTokenCount": 50, "totalTokenCount": 120 });
        send(ws, json!({ "serverContent": { "turnComplete": true }, "usageMetadata": usage })).await?;
        self.new_handle(ws).await?;
        self.schedule.answered(self.cfg, first);
        Ok(())
    }
}

/// `realtimeInput` carrying something other than audio (text, `audioStreamEnd`).
fn chunks_is_other(input: &Value) -> bool {
    input.as_object().is_some_and(|o| o.keys().any(|k| k != "audio" && k != "mediaChunks"))
}
