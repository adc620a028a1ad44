//! A media session: one task per Exotel WebSocket. It parses Exotel's events, keeps the call's
//! counters, drives the agent, hands the agent's output to the writer, and writes the call log.
//! Bad input is counted and skipped, never fatal.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use exotel::event::{Dtmf, Media, Start, Stop};
use exotel::redact::mask_phone;
use exotel::{InboundEvent, SampleRate};
use futures_util::StreamExt;
use serde_json::json;
use tokio::time::{Instant, sleep_until, timeout};

use super::control::{CallControl, OutCmd, Shared};
use super::writer::{Writer, WriterConfig};
use crate::agent::{Agent, CallInfo};
use crate::app::{AppState, Decision};
use crate::store::{CallKey, CallPatch, Status};

/// Timeline entries per call for bad input; the count keeps going, the log stays small.
const BAD_EVENTS_RECORDED: u64 = 10;
const CLOSE_HANDSHAKE_WAIT: Duration = Duration::from_secs(2);

/// What the upgrade request said.
pub(crate) struct MediaParams {
    pub rate: Option<SampleRate>,
    /// Query parameters other than the sample rate: the applet's custom parameters.
    pub query_params: BTreeMap<String, String>,
}

struct Active {
    info: CallInfo,
    agent: Box<dyn Agent>,
    key: CallKey,
    started: Instant,
}

struct Session {
    app: Arc<AppState>,
    params: MediaParams,
    ctl: CallControl,
    writer: Writer,
    local_id: String,
    active: Option<Active>,
    frames_in: u64,
    bytes_in: u64,
    bad: u64,
    seq_gaps: u64,
    last_seq: Option<u64>,
    dtmf: String,
    marks_played: u64,
    stop_reason: Option<String>,
    peer_close: Option<u16>,
    too_big: bool,
    /// Timeline entries from before `start`, written once the call has a row.
    early_events: Vec<(&'static str, serde_json::Value)>,
}

pub(crate) async fn run(mut ws: WebSocket, params: MediaParams, app: Arc<AppState>) {
    let shared = Arc::new(Shared::default());
    let writer = Writer::new(WriterConfig { lead: app.config.playback_lead });
    let mut s = Session {
        ctl: CallControl::new(shared.clone()),
        writer,
        local_id: crate::ids::call_id(),
        app,
        params,
        active: None,
        frames_in: 0,
        bytes_in: 0,
        bad: 0,
        seq_gaps: 0,
        last_seq: None,
        dtmf: String::new(),
        marks_played: 0,
        stop_reason: None,
        peer_close: None,
        too_big: false,
        early_events: Vec::new(),
    };
    // Also on a panic in an agent: agents on other tasks must not fill a queue nobody drains.
    let _closed = CloseOnDrop(shared.clone());
    s.serve(&mut ws, &shared).await;
    s.finish();
}

struct CloseOnDrop(Arc<Shared>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.close();
    }
}

impl Session {
    /// The call's one task: reads Exotel's events, hands the agent's output to the writer, and
    /// wakes for pacing. One task owning the whole socket costs one wake-up per inbound message.
    async fn serve(&mut self, ws: &mut WebSocket, shared: &Shared) {
        let start_deadline = Instant::now() + self.app.config.start_timeout;
        let timer = sleep_until(start_deadline);
        tokio::pin!(timer);
        let mut cmds = VecDeque::new();
        let mut ended = false;
        loop {
            shared.take(&mut cmds);
            for cmd in cmds.drain(..) {
                self.writer.handle(ws, cmd).await;
            }
            if ended {
                self.writer.close(ws, 1000, "call ended").await;
                return;
            }
            self.writer.pump(ws).await;
            if self.writer.done {
                break;
            }
            let mut wake = self.writer.next_wake();
            if self.active.is_none() {
                wake = Some(wake.map_or(start_deadline, |w| w.min(start_deadline)));
            }
            if let Some(t) = wake {
                // One timer per call, moved rather than re-created on every wake.
                if timer.deadline() != t {
                    timer.as_mut().reset(t);
                }
            }
            tokio::select! {
                msg = ws.next() => {
                    shared.enter();
                    ended = self.on_message(msg);
                }
                () = shared.queued() => {}
                () = &mut timer, if wake.is_some() => {
                    if self.active.is_none() && Instant::now() >= start_deadline {
                        self.stop_reason = Some("no-start".into());
                        shared.enter();
                        self.ctl.send(OutCmd::CloseNow { code: 1008, reason: "no start event" });
                        ended = true;
                    } else {
                        self.writer.on_timer(shared);
                    }
                }
            }
        }
        // We closed (hang-up): let Exotel's close reply arrive so the handshake completes.
        let _ = timeout(CLOSE_HANDSHAKE_WAIT, async {
            while let Some(Ok(msg)) = ws.next().await {
                if let Message::Close(frame) = msg {
                    self.peer_close = Some(frame.map_or(1005, |f| f.code));
                    break;
                }
            }
        })
        .await;
    }

    /// Handles one message off the socket; true when the call is over.
    fn on_message(&mut self, msg: Option<Result<Message, axum::Error>>) -> bool {
        let Some(msg) = msg else { return true };
        match msg {
            Ok(Message::Text(text)) => return self.on_text(text.as_str()),
            Ok(Message::Binary(b)) => self.bad_input("binary-frame", json!({ "bytes": b.len() })),
            Ok(Message::Close(frame)) => {
                self.peer_close = Some(frame.map_or(1005, |f| f.code));
                return true;
            }
            Ok(Message::Ping(_) | Message::Pong(_)) => {}
            Err(e) => {
                if is_too_big(&e) {
                    self.too_big = true;
                    self.bad_input("message-too-big", json!({ "error": e.to_string() }));
                    self.ctl.send(OutCmd::CloseNow { code: 1009, reason: "message over 1 MiB" });
                } else {
                    tracing::debug!(error = %e, "media socket read failed");
                }
                return true;
            }
        }
        false
    }

    /// Handles one text frame; true when the call is over.
    fn on_text(&mut self, text: &str) -> bool {
        let event = match InboundEvent::parse(text) {
            Ok(e) => e,
            Err(e) => {
                let kind = match e {
                    exotel::ParseError::NotJson(_) => "not-json",
                    _ => "malformed-event",
                };
                self.bad_input(kind, json!({ "error": e.to_string() }));
                return false;
            }
        };
        if let Some(seq) = event.sequence_number() {
            if let Some(last) = self.last_seq {
                if seq > last + 1 {
                    self.seq_gaps += seq - last - 1;
                }
            }
            self.last_seq = Some(self.last_seq.map_or(seq, |l| l.max(seq)));
        }
        match event {
            InboundEvent::Connected { .. } => self.record("connected", json!({})),
            InboundEvent::Start(start) => self.on_start(start),
            InboundEvent::Media(media) => self.on_media(media),
            InboundEvent::Dtmf(dtmf) => self.on_dtmf(dtmf),
            InboundEvent::Mark(mark) => self.on_mark(&mark.name),
            InboundEvent::Stop(stop) => {
                self.on_stop(stop);
                return true;
            }
            InboundEvent::Clear { .. } => {
                self.ctl.drop_pending(OutCmd::DropQueued);
                self.record("clear-from-exotel", json!({}));
            }
            InboundEvent::Unknown { event } => self.bad_input("unknown-event", json!({ "event": event })),
        }
        false
    }

    fn on_start(&mut self, start: Start) {
        if self.active.is_some() {
            self.bad_input("duplicate-start", json!({}));
            return;
        }
        let rate = self.params.rate.or(start.media_format.rate()).unwrap_or_default();
        let stream_sid = start.stream_sid.clone().unwrap_or_else(crate::ids::stream_sid);
        let mut custom = self.params.query_params.clone();
        custom.extend(start.custom_parameters.clone());
        let agent_id = self.choose_agent(&custom, start.to.as_deref());
        let info = CallInfo {
            call_sid: start.call_sid.clone(),
            stream_sid: stream_sid.clone(),
            from: start.from.clone(),
            to: start.to.clone(),
            custom_parameters: custom,
            sample_rate: rate,
            agent_id: agent_id.clone(),
        };
        let key = CallKey {
            id: Some(self.local_id.clone()),
            call_sid: start.call_sid.clone(),
            stream_sid: Some(stream_sid.clone()),
            custom_field: info.custom_parameters.get("callLogId").cloned(),
        };
        let custom_json = json!(info.custom_parameters);
        self.app.store.upsert(
            key.clone(),
            CallPatch::new()
                .text("stream_sid", Some(&stream_sid))
                .text("account_sid", start.account_sid.as_ref())
                .text("from_number", start.from.as_ref())
                .text("to_number", start.to.as_ref())
                .json("custom_params", &custom_json)
                .text("agent", Some(&agent_id))
                .int("sample_rate", Some(rate.hz() as i64))
                .text("started_at", Some(crate::store::now_text()))
                .status(Status::InProgress),
        );
        for (kind, detail) in self.early_events.drain(..) {
            self.app.store.event(key.clone(), kind, detail);
        }
        self.app.store.event(
            key.clone(),
            "start",
            json!({ "sample_rate": rate.hz(), "agent": agent_id, "custom_parameters": custom_json }),
        );
        self.app.active_calls.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            call_sid = start.call_sid.as_deref().unwrap_or("-"),
            stream_sid = %stream_sid,
            agent = %agent_id,
            from = %start.from.as_deref().map(mask_phone).unwrap_or_default(),
            to = %start.to.as_deref().map(mask_phone).unwrap_or_default(),
            rate = rate.hz(),
            "call started"
        );
        self.ctl.begin(stream_sid, rate, self.app.config.out_chunk_ms);
        let (app, decision_key, call_sid) = (self.app.clone(), key.clone(), start.call_sid.clone());
        self.ctl.on_decision(Box::new(move |d: Decision| {
            if let Some(sid) = &call_sid {
                app.decide(sid, d);
            }
            app.store.upsert(decision_key.clone(), CallPatch::new().text("bot_decision", Some(d.as_str())));
            app.store.event(decision_key.clone(), "decision", json!({ "decision": d.as_str() }));
        }));
        let kind = self.app.agent_kind(&agent_id).unwrap_or_else(|| self.app.config.default_agent.clone());
        let factory = self.app.agents.get(&kind).or_else(|| self.app.agents.get(&self.app.config.default_agent));
        let Some(factory) = factory else { return };
        let mut agent = factory.create(&info);
        agent.on_start(&info, &self.ctl);
        self.active = Some(Active { info, agent, key, started: Instant::now() });
    }

    /// `agentId` custom parameter, else the called phone's default agent, else DEFAULT_AGENT.
    fn choose_agent(&self, custom: &BTreeMap<String, String>, to: Option<&str>) -> String {
        let requested = custom.iter().find(|(k, _)| k.eq_ignore_ascii_case("agentId")).map(|(_, v)| v.clone());
        match requested {
            Some(id) if self.app.agent_exists(&id) => return id,
            Some(id) => {
                tracing::warn!(agent = %id, default = %self.app.config.default_agent, "unknown agent requested; using the default");
            }
            None => {}
        }
        to.and_then(|n| self.app.phone_default_agent(n))
            .filter(|a| self.app.agent_exists(a))
            .unwrap_or_else(|| self.app.config.default_agent.clone())
    }

    fn on_media(&mut self, media: Media) {
        if self.active.is_none() {
            self.bad_input("media-before-start", json!({}));
            return;
        }
        let pcm = match B64.decode(media.payload.as_bytes()) {
            Ok(p) => p,
            Err(e) => return self.bad_input("invalid-base64", json!({ "error": e.to_string() })),
        };
        if pcm.len() % 2 != 0 {
            return self.bad_input("odd-length-pcm", json!({ "bytes": pcm.len() }));
        }
        self.frames_in += 1;
        self.bytes_in += pcm.len() as u64;
        if let Some(a) = self.active.as_mut() {
            a.agent.on_audio(&pcm, &self.ctl);
        }
    }

    fn on_dtmf(&mut self, dtmf: Dtmf) {
        self.dtmf.push_str(&dtmf.digit);
        self.record("dtmf", json!({ "digit": dtmf.digit, "duration_ms": dtmf.duration_ms }));
        if let Some(a) = self.active.as_mut() {
            a.agent.on_dtmf(&dtmf.digit, &self.ctl);
        }
    }

    fn on_mark(&mut self, name: &str) {
        if !self.writer.book.echoed(name) {
            // Cancelled by a clear, or not ours: nothing to tell the agent.
            self.record("mark-stale", json!({ "name": name }));
            return;
        }
        self.marks_played += 1;
        self.writer.mark_played(name.to_string());
        self.record("mark-played", json!({ "name": name }));
        if let Some(a) = self.active.as_mut() {
            a.agent.on_mark_played(name, &self.ctl);
        }
    }

    fn on_stop(&mut self, stop: Stop) {
        self.stop_reason = Some(stop.reason.as_str().to_string());
        self.record("stop", json!({ "reason": stop.reason.as_str() }));
        if let Some(a) = self.active.as_mut() {
            a.agent.on_stop(&stop.reason);
        }
    }

    fn record(&mut self, kind: &'static str, detail: serde_json::Value) {
        match &self.active {
            Some(a) => self.app.store.event(a.key.clone(), kind, detail),
            None => self.early_events.push((kind, detail)),
        }
    }

    fn bad_input(&mut self, kind: &'static str, detail: serde_json::Value) {
        self.bad += 1;
        let stream_sid = self.active.as_ref().map(|a| a.info.stream_sid.as_str()).unwrap_or("-");
        // Logged at 1, 2, 4, 8…: a flood can't flood the log.
        if self.bad.is_power_of_two() {
            tracing::warn!(stream_sid, kind, count = self.bad, %detail, "bad media message skipped");
        }
        if self.bad <= BAD_EVENTS_RECORDED {
            self.record("bad-message", json!({ "kind": kind, "detail": detail }));
        }
    }

    fn finish(self) {
        let w = &self.writer.stats;
        let close_code = w.close_code.or(self.peer_close).unwrap_or(1006);
        let stop_reason = self
            .stop_reason
            .or(w.hung_up.then(|| "bot-hangup".to_string()))
            .unwrap_or_else(|| if self.too_big { "message-too-big" } else { "disconnected" }.to_string());
        let (key, status, duration_ms, agent, call_sid, stream_sid) = match &self.active {
            Some(a) => {
                self.app.active_calls.fetch_sub(1, Ordering::Relaxed);
                (
                    a.key.clone(),
                    Status::Completed,
                    Some(a.started.elapsed().as_millis() as i64),
                    a.info.agent_id.clone(),
                    a.info.call_sid.clone(),
                    a.info.stream_sid.clone(),
                )
            }
            None => {
                // Never became a call; keep a row only if there is something to learn from it.
                if self.bad == 0 && self.early_events.is_empty() && w.close_code.is_none() {
                    return;
                }
                let key = CallKey { id: Some(self.local_id.clone()), ..CallKey::default() };
                for (kind, detail) in self.early_events {
                    self.app.store.event(key.clone(), kind, detail);
                }
                (key, Status::Failed, None, String::new(), None, String::new())
            }
        };
        self.app.store.event(key.clone(), "end", json!({ "close_code": close_code, "reason": stop_reason }));
        self.app.store.upsert(
            key,
            CallPatch::new()
                .text("ended_at", Some(crate::store::now_text()))
                .int("duration_ms", duration_ms)
                .int("frames_in", Some(self.frames_in as i64))
                .int("bytes_in", Some(self.bytes_in as i64))
                .int("frames_out", Some(w.frames_out as i64))
                .int("bytes_out", Some(w.bytes_out as i64))
                .int("marks_sent", Some(w.marks_sent as i64))
                .int("marks_played", Some(self.marks_played as i64))
                .int("clears", Some(w.clears as i64))
                .text("dtmf", Some(self.dtmf).filter(|d| !d.is_empty()))
                .text("stop_reason", Some(&stop_reason))
                .int("close_code", Some(close_code as i64))
                .int("bad_messages", Some(self.bad as i64))
                .int("seq_gaps", Some(self.seq_gaps as i64))
                .status(status),
        );
        tracing::info!(
            call_sid = call_sid.as_deref().unwrap_or("-"),
            stream_sid = if stream_sid.is_empty() { "-" } else { &stream_sid },
            agent = if agent.is_empty() { "-" } else { &agent },
            duration_ms = duration_ms.unwrap_or(0),
            close_code,
            reason = %stop_reason,
            frames_in = self.frames_in,
            frames_out = w.frames_out,
            bad_messages = self.bad,
            "call ended"
        );
    }
}

fn is_too_big(e: &axum::Error) -> bool {
    // tungstenite's capacity errors: "Space limit exceeded: Message too long: …"
    let text = e.to_string();
    text.contains("Space limit exceeded") || text.contains("too long")
}
