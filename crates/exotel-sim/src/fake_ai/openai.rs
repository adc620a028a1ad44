//! The OpenAI Realtime API's side (GA): `session.created`, `session.update` checked as the real
//! service checks it (`session.type` required, `temperature` refused), audio appended and heard,
//! answers as `response.*` events, barge-in as `input_audio_buffer.speech_started`, tools as
//! `function_call` items, truncation acknowledged.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use exotel::audio::g711::ulaw_decode;
use futures_util::SinkExt;
use serde_json::{Value, json};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use super::{Due, FakeAiConfig, FakeAiFailure, Schedule, SessionHandle, Side, Ws, answer_chunks, close, drive};

struct Fake<'a> {
    cfg: &'a FakeAiConfig,
    h: &'a SessionHandle,
    ulaw: bool,
    configured: bool,
    schedule: Schedule,
    caller_ms: f64,
    answers_left: usize,
    responses: u64,
    tool_called: bool,
    failed: bool,
    busy_sent: bool,
}

pub(super) async fn serve(mut ws: Ws, cfg: &FakeAiConfig, h: &SessionHandle) -> String {
    let mut f = Fake {
        cfg,
        h,
        ulaw: false,
        configured: false,
        schedule: Schedule::default(),
        caller_ms: 0.0,
        answers_left: cfg.answers,
        responses: 0,
        tool_called: false,
        failed: false,
        busy_sent: false,
    };
    let created = json!({ "type": "session.created", "event_id": "event_0", "session": { "type": "realtime", "id": "sess_fake" } });
    if send(&mut ws, created).await.is_err() {
        return "dropped".into();
    }
    drive(ws, &mut f).await
}

async fn send(ws: &mut Ws, v: Value) -> Result<(), String> {
    ws.send(Message::text(v.to_string())).await.map_err(|_| "dropped".to_string())
}

impl Side for Fake<'_> {
    fn next_wake(&self) -> Option<Instant> {
        self.schedule.next_wake(self.cfg)
    }

    async fn on_timer(&mut self, ws: &mut Ws) -> Result<(), String> {
        for due in self.schedule.due(self.cfg, self.h, Instant::now()) {
            match due {
                Due::BargeIn => {
                    let item = format!("item_user_{}", self.responses);
                    let started =
                        json!({ "type": "input_audio_buffer.speech_started", "audio_start_ms": 0, "item_id": item });
                    send(ws, started).await?;
                }
                Due::Close => return Err(close(ws, 1011, "internal server error").await),
                Due::Expire => {
                    let err = json!({ "type": "error", "error": { "type": "invalid_request_error", "code": "session_expired", "message": "Your session hit the maximum duration of 60 minutes." } });
                    send(ws, err).await?;
                    return Err(close(ws, 1000, "").await);
                }
                Due::Garbage => {
                    ws.send(Message::text("}{ not an event")).await.map_err(|_| "dropped".to_string())?;
                }
            }
        }
        Ok(())
    }

    async fn on_client(&mut self, ws: &mut Ws, text: &str) -> Result<(), String> {
        let Ok(v) = serde_json::from_str::<Value>(text) else {
            let err = json!({ "type": "error", "error": { "type": "invalid_request_error", "code": "invalid_json", "message": "not JSON" } });
            return send(ws, err).await;
        };
        let kind = v["type"].as_str().unwrap_or_default().to_string();
        if kind == "input_audio_buffer.append" {
            return self.on_audio(ws, &v).await;
        }
        self.h.update(|s| s.messages.push(v.clone()));
        match kind.as_str() {
            "session.update" => self.on_session_update(ws, &v).await,
            "response.create" if self.cfg.busy_first_create && !self.busy_sent => {
                self.busy_sent = true;
                let running = "resp_vad";
                send(ws, json!({ "type": "response.created", "response": { "id": running, "status": "in_progress" } }))
                    .await?;
                let err = json!({ "type": "error", "error": { "type": "invalid_request_error", "code": "conversation_already_has_active_response", "message": "Conversation already has an active response in progress: resp_vad. Wait until the response is finished before creating a new one.", "event_id": v["event_id"] } });
                send(ws, err).await?;
                send(ws, json!({ "type": "response.done", "response": { "id": running, "status": "completed", "output": [] } })).await
            }
            "response.create" => self.respond(ws).await,
            "conversation.item.create" => {
                if v["item"]["type"] == "function_call_output" {
                    self.h.update(|s| s.tool_outputs.push(v["item"].clone()));
                }
                send(ws, json!({ "type": "conversation.item.added", "item": v["item"] })).await
            }
            "conversation.item.truncate" => {
                self.h.update(|s| s.truncates.push(v.clone()));
                let ack = json!({ "type": "conversation.item.truncated", "item_id": v["item_id"], "content_index": v["content_index"], "audio_end_ms": v["audio_end_ms"] });
                send(ws, ack).await
            }
            "response.cancel" => {
                let err = json!({ "type": "error", "error": { "type": "invalid_request_error", "code": "response_cancel_not_active", "message": "no active response" } });
                send(ws, err).await
            }
            _ => Ok(()),
        }
    }
}

impl Fake<'_> {
    async fn on_session_update(&mut self, ws: &mut Ws, v: &Value) -> Result<(), String> {
        let session = &v["session"];
        let error = |code: &str, param: &str, message: &str| json!({ "type": "error", "error": { "type": "invalid_request_error", "code": code, "param": param, "message": message, "event_id": v["event_id"] } });
        if session["type"] != "realtime" {
            let e = error("missing_required_parameter", "session.type", "Missing required parameter: 'session.type'.");
            return send(ws, e).await;
        }
        if self.cfg.failure == Some(FakeAiFailure::RefuseSetup) {
            let e = error(
                "invalid_value",
                "session.audio.output.voice",
                "Invalid value: 'nobody'. Supported values are: 'alloy', 'marin' and 'cedar'.",
            );
            return send(ws, e).await;
        }
        if session.get("temperature").is_some() {
            return send(
                ws,
                error("unknown_parameter", "session.temperature", "Unknown parameter: 'session.temperature'."),
            )
            .await;
        }
        let format = &session["audio"]["input"]["format"];
        self.ulaw = format["type"] == "audio/pcmu";
        let (name, rate) =
            if self.ulaw { ("audio/pcmu".to_string(), 8000) } else { ("audio/pcm;rate=24000".to_string(), 24_000) };
        let first = !self.configured;
        self.h.update(|s| {
            if first {
                s.setup = Some(v.clone());
            }
            s.audio_format = name;
            s.audio_rate = rate;
        });
        self.configured = true;
        self.schedule.ready_at.get_or_insert_with(Instant::now);
        send(ws, json!({ "type": "session.updated", "session": session })).await
    }

    async fn on_audio(&mut self, ws: &mut Ws, v: &Value) -> Result<(), String> {
        let Some(raw) = v["audio"].as_str().and_then(|a| B64.decode(a).ok()) else {
            let err = json!({ "type": "error", "error": { "type": "invalid_request_error", "code": "invalid_value", "message": "audio is not base64" } });
            return send(ws, err).await;
        };
        let (pcm, ms) = if self.ulaw {
            let mut pcm = Vec::with_capacity(raw.len() * 2);
            ulaw_decode(&raw, &mut pcm);
            (pcm, raw.len() as f64 / 8.0)
        } else {
            let ms = raw.len() as f64 / 48.0;
            (raw, ms)
        };
        self.h.update(|s| {
            s.audio_in.extend_from_slice(&pcm);
            s.audio_messages += 1;
        });
        self.caller_ms += ms;
        if self.answers_left > 0 && self.caller_ms >= self.cfg.answer_after.as_millis() as f64 {
            self.answers_left -= 1;
            self.caller_ms = 0.0;
            let user_item = format!("item_user_{}", self.responses + 1);
            for e in [
                json!({ "type": "input_audio_buffer.speech_started", "audio_start_ms": 0, "item_id": user_item }),
                json!({ "type": "input_audio_buffer.speech_stopped", "audio_end_ms": 900, "item_id": user_item }),
                json!({ "type": "input_audio_buffer.committed", "item_id": user_item }),
                json!({ "type": "conversation.item.input_audio_transcription.completed", "item_id": user_item, "content_index": 0, "transcript": self.cfg.caller_transcript }),
            ] {
                send(ws, e).await?;
            }
            self.respond(ws).await?;
        }
        Ok(())
    }

    /// One answer: a tool call (once, if configured), else audio with its transcript.
    async fn respond(&mut self, ws: &mut Ws) -> Result<(), String> {
        self.responses += 1;
        let n = self.responses;
        let (rid, iid) = (format!("resp_{n}"), format!("item_{n}"));
        send(ws, json!({ "type": "response.created", "response": { "id": rid, "status": "in_progress" } })).await?;
        if self.cfg.failure == Some(FakeAiFailure::RateLimit) && !self.failed {
            self.failed = true;
            let details = json!({ "type": "failed", "error": { "type": "requests", "code": "rate_limit_exceeded", "message": "Rate limit reached for requests" } });
            return send(ws, json!({ "type": "response.done", "response": { "id": rid, "status": "failed", "status_details": details, "output": [] } })).await;
        }
        if let (Some((name, args)), false) = (&self.cfg.tool_call, self.tool_called) {
            self.tool_called = true;
            let call_id = format!("call_{n}");
            let item = json!({ "id": iid, "type": "function_call", "status": "in_progress", "call_id": call_id, "name": name, "arguments": "" });
            send(
                ws,
                json!({ "type": "response.output_item.added", "response_id": rid, "output_index": 0, "item": item }),
            )
            .await?;
            let arguments = args.to_string();
            send(ws, json!({ "type": "response.function_call_arguments.delta", "response_id": rid, "item_id": iid, "output_index": 0, "call_id": call_id, "delta": arguments })).await?;
            send(ws, json!({ "type": "response.function_call_arguments.done", "response_id": rid, "item_id": iid, "output_index": 0, "call_id": call_id, "name": name, "arguments": arguments })).await?;
            let done = json!({ "id": iid, "type": "function_call", "status": "completed", "call_id": call_id, "name": name, "arguments": arguments });
            send(
                ws,
                json!({ "type": "response.output_item.done", "response_id": rid, "output_index": 0, "item": done }),
            )
            .await?;
            return send(
                ws,
                json!({ "type": "response.done", "response": { "id": rid, "status": "completed", "usage": usage() } }),
            )
            .await;
        }
        let item = json!({ "id": iid, "type": "message", "role": "assistant", "status": "in_progress", "content": [] });
        send(ws, json!({ "type": "response.output_item.added", "response_id": rid, "output_index": 0, "item": item }))
            .await?;
        let early_barge = self.cfg.barge_in_before_audio && n == 1;
        if early_barge {
            let started = json!({ "type": "input_audio_buffer.speech_started", "audio_start_ms": 0, "item_id": "item_user_barge" });
            send(ws, started).await?;
            self.h.update(|s| s.barge_in_at = Some(std::time::Instant::now()));
        }
        let chunks = answer_chunks(self.cfg, self.ulaw);
        let per_ms = if self.ulaw { 8 } else { 48 };
        let total: usize = chunks.iter().map(Vec::len).sum();
        let first = Instant::now();
        self.h.update(|s| {
            s.answers_started.push(std::time::Instant::now());
            s.answers_ms.push((total / per_ms) as u64);
        });
        for (i, chunk) in chunks.iter().enumerate() {
            let half = chunks.len() / 2;
            if i == half {
                let text: String =
                    self.cfg.agent_transcript.chars().take(self.cfg.agent_transcript.len() / 2).collect();
                send(ws, json!({ "type": "response.output_audio_transcript.delta", "response_id": rid, "item_id": iid, "delta": text })).await?;
            }
            let delta = json!({ "type": "response.output_audio.delta", "response_id": rid, "item_id": iid, "output_index": 0, "content_index": 0, "delta": B64.encode(chunk) });
            send(ws, delta).await?;
        }
        send(ws, json!({ "type": "response.output_audio.done", "response_id": rid, "item_id": iid })).await?;
        send(ws, json!({ "type": "response.output_audio_transcript.done", "response_id": rid, "item_id": iid, "transcript": self.cfg.agent_transcript })).await?;
        let status = if early_barge {
            json!({ "status": "cancelled", "status_details": { "type": "cancelled", "reason": "turn_detected" } })
        } else {
            json!({ "status": "completed" })
        };
        let mut done = json!({ "id": rid, "usage": usage() });
        if let (Some(d), Some(st)) = (done.as_object_mut(), status.as_object()) {
            d.extend(st.clone());
        }
        send(ws, json!({ "type": "response.done", "response": done })).await?;
        self.schedule.answered(self.cfg, first);
        Ok(())
    }
}

fn usage() -> Value {
    json!({
        "total_tokens": 120, "input_tokens": 70, "output_tokens": 50,
        "input_token_details": { "audio_tokens": 60, "text_tokens": 10, "cached_tokens": 0 },
        "output_token_details": { "audio_tokens": 45, "text_tokens": 5 },
    })
}
