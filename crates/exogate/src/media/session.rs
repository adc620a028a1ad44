//! A media session: one task per Exotel WebSocket. It parses Exotel's events, keeps the call's
//! counters, drives the agent, hands the agent's output to the writer, and writes the call log.
//! Bad input is counted and skipped, never fatal.

use std::collections::{BTreeMap, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::Poll;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use exotel::event::{Dtmf, Media, Start, Stop};
use exotel::redact::mask_phone;
use exotel::{InboundEvent, SampleRate};
use futures_util::future::{BoxFuture, OptionFuture};
use futures_util::{FutureExt, StreamExt};
use serde_json::json;
use tokio::time::{Instant, sleep_until, timeout};
use tracing::Instrument;
use tracing::field::Empty;

use super::control::{CallControl, OutCmd, Shared, TRACKING_MARK};
use super::conversation::Conversation;
use super::writer::{Writer, WriterConfig};
use crate::access::{Refusals, TokenCall};
use crate::agent::{Agent, AgentFuture, AgentSetup, AgentSpec, AgentTask, CallEnd, CallInfo, EndReason, OnFailure};
use crate::app::{AppState, Decision, SessionGuard};
use crate::live::{LiveCall, NewLiveCall, Operator};
use crate::store::{CallKey, CallPatch, CallRow, Status};

/// Timeline entries per call for bad input; the count keeps going, the log stays small.
const BAD_EVENTS_RECORDED: u64 = 10;
/// Timeline entries per call in all (a caller pressing keys 200,000 times): past it they are
/// counted, not written.
const MAX_TIMELINE: u64 = 1000;
/// Digits kept in the call's `dtmf` column.
const MAX_DTMF_CHARS: usize = 256;
/// Caller events (DTMF, clears) held for an agent still being made, besides the audio backlog.
const MAX_HELD_EVENTS: usize = 1000;
const CLOSE_HANDSHAKE_WAIT: Duration = Duration::from_secs(2);
/// Caller audio held for an agent still being made (a bridge connecting to its bot); beyond it
/// audio is dropped and counted. 10 s at 24 kHz.
const BACKLOG_BYTES: usize = 480_000;
/// How long a call's start waits for its row (a call we placed: its agent and variables).
const PLACED_LOOKUP_WAIT: Duration = Duration::from_secs(2);
/// Fallbacks chained per call (agent A fails → B fails → C): past this the call hangs up.
const MAX_FALLBACKS: u8 = 2;

/// What the upgrade request said.
pub(crate) struct MediaParams {
    pub rate: Option<SampleRate>,
    /// Query parameters other than the sample rate: the applet's custom parameters.
    pub query_params: BTreeMap<String, String>,
    /// The call the URL's signed token was issued for (MEDIA_REQUIRE_TOKEN).
    pub token: Option<TokenCall>,
}

struct Active {
    info: CallInfo,
    key: CallKey,
    started: Instant,
}

/// The call's agent, from being made to being done.
enum Slot {
    None,
    Making { spec: Arc<AgentSpec>, fut: AgentFuture },
    Ready { spec: Arc<AgentSpec>, agent: Box<dyn Agent>, started: bool },
}

/// Caller events that reached the session while the agent was still being made.
enum Held {
    Audio(Vec<u8>),
    Dtmf(String, Option<u64>),
    Clear,
}

struct Session {
    app: Arc<AppState>,
    params: MediaParams,
    ctl: CallControl,
    /// The current agent's control (a fallback agent gets a fresh generation).
    agent_ctl: CallControl,
    generation: u64,
    writer: Writer,
    local_id: String,
    active: Option<Active>,
    slot: Slot,
    /// The current agent's background work (a bridge's loop), polled by this task.
    task: Option<AgentTask>,
    held: VecDeque<Held>,
    held_bytes: usize,
    /// Agents made so far for this call beyond the first (fallbacks).
    fallbacks: u8,
    /// A failure before `start`: applied once the stream exists.
    failed_early: Option<OnFailure>,
    /// The failed agent's `failure_prompt`, played when its failure is applied.
    failure_prompt: Option<Arc<crate::agent::FailurePrompt>>,
    agent_failure: Option<String>,
    fallback: Option<String>,
    agent_note: Option<String>,
    /// The agent failed and nothing took the call over.
    failed_for_good: bool,
    shutdown: bool,
    exotel_stop: Option<exotel::StopReason>,
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
    /// Reading the call's row after `start`: a call we placed has its agent and variables there.
    /// The agent starts once it is read.
    lookup: Option<BoxFuture<'static, Option<CallRow>>>,
    /// The socket died under us (no close frame): nothing to close, and the call log says 1006.
    peer_gone: bool,
    /// When the last message arrived, for IDLE_SECS.
    last_message: Instant,
    /// Timeline entries written, and those past [`MAX_TIMELINE`] left out.
    recorded: u64,
    unrecorded: u64,
    conversation: Conversation,
    /// The call's entry on the live page.
    live: Option<Arc<LiveCall>>,
}

pub(crate) async fn run(mut ws: WebSocket, params: MediaParams, app: Arc<AppState>, alive: SessionGuard) {
    let shared = Arc::new(Shared::new(Some(alive)));
    let mut writer = Writer::new(WriterConfig { lead: app.config.playback_lead });
    writer.delays = Some(app.metrics.newest_frame());
    let ctl = CallControl::new(shared.clone());
    let mut s = Session {
        agent_ctl: ctl.clone(),
        ctl,
        generation: 0,
        writer,
        local_id: crate::ids::call_id(),
        app,
        params,
        active: None,
        slot: Slot::None,
        task: None,
        held: VecDeque::new(),
        held_bytes: 0,
        fallbacks: 0,
        failed_early: None,
        failure_prompt: None,
        agent_failure: None,
        fallback: None,
        agent_note: None,
        failed_for_good: false,
        shutdown: false,
        exotel_stop: None,
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
        lookup: None,
        peer_gone: false,
        last_message: Instant::now(),
        recorded: 0,
        unrecorded: 0,
        conversation: Conversation::default(),
        live: None,
    };
    // Even on a bug in the session itself, agents on other tasks learn that the call is over
    // and can't fill a queue nobody drains.
    let _closed = CloseOnDrop(shared.clone());
    // Every line logged for this call carries its ids (LOG_FORMAT=json puts them in each record).
    let span = tracing::info_span!("call", call_id = %s.local_id, call_sid = Empty, stream_sid = Empty);
    s.make_early_agent();
    if AssertUnwindSafe(s.serve(&mut ws, &shared).instrument(span.clone())).catch_unwind().await.is_err() {
        tracing::error!(parent: &span, call_id = %s.local_id, "media session panicked; ending the call");
        s.stop_reason.get_or_insert_with(|| "internal-error".into());
    }
    let _in_call = span.enter();
    s.finish(&shared);
}

struct CloseOnDrop(Arc<Shared>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.close(CallEnd::disconnected());
    }
}

impl Session {
    /// The call's one task: reads Exotel's events, hands the agent's output to the writer, and
    /// wakes for pacing. One task owning the whole socket costs one wake-up per inbound message.
    async fn serve(&mut self, ws: &mut WebSocket, shared: &Shared) {
        let opened = Instant::now();
        let start_deadline = opened + self.app.config.start_timeout;
        let limits = self.app.config.limits.clone();
        // Moved only when it fires (a quiet socket is rare), not on every message.
        let mut idle_deadline = opened + limits.idle;
        let end_deadline = opened + limits.max_call;
        let timer = sleep_until(start_deadline);
        tokio::pin!(timer);
        let mut cmds = VecDeque::new();
        let mut ended = false;
        let mut drain = self.app.drain.subscribe();
        loop {
            shared.take(&mut cmds);
            for cmd in cmds.drain(..) {
                match cmd {
                    // Only the current agent's failure counts: a retired one may report late.
                    OutCmd::Failed(generation, reason)
                        if generation == self.generation && !matches!(self.slot, Slot::None) =>
                    {
                        self.agent_failed(reason)
                    }
                    OutCmd::Failed(..) => {}
                    OutCmd::Note(note) => {
                        self.record("agent-note", json!({ "note": note }));
                        self.agent_note = Some(note);
                    }
                    OutCmd::Record(kind, detail) => self.record(kind, detail),
                    OutCmd::Transcript(speaker, text) => {
                        let at_ms = self.active.as_ref().map_or(0, |a| a.started.elapsed().as_millis() as u64);
                        if self.conversation.line(at_ms, speaker, &text) {
                            self.record("transcript", json!({ "speaker": speaker, "text": text }));
                        }
                    }
                    OutCmd::Usage(report) => self.conversation.usage(&report),
                    OutCmd::Operator(op) => self.operator(op),
                    cmd => self.writer.handle(ws, cmd, &shared.position).await,
                }
            }
            if ended {
                if !self.peer_gone {
                    self.writer.close(ws, 1000, "call ended").await;
                }
                return;
            }
            self.writer.pump(ws, &shared.position).await;
            if self.writer.done {
                break;
            }
            let mut wake = self.writer.next_wake();
            if self.active.is_none() {
                wake = Some(wake.map_or(start_deadline, |w| w.min(start_deadline)));
            }
            let guard_deadline = idle_deadline.min(end_deadline);
            wake = Some(wake.map_or(guard_deadline, |w| w.min(guard_deadline)));
            if let Some(t) = wake {
                // One timer per call, moved rather than re-created on every wake.
                if timer.deadline() != t {
                    timer.as_mut().reset(t);
                }
            }
            tokio::select! {
                msg = ws.next() => {
                    shared.enter();
                    self.last_message = Instant::now();
                    ended = self.on_message(msg);
                }
                () = shared.queued() => {}
                Some(made) = OptionFuture::from(match &mut self.slot {
                    Slot::Making { fut, .. } => Some(AssertUnwindSafe(fut).catch_unwind()),
                    _ => None,
                }) => {
                    shared.enter();
                    let made = made.unwrap_or_else(|_| Err(crate::agent::AgentError("agent panicked while starting".into())));
                    self.agent_made(made);
                }
                Some(row) = OptionFuture::from(self.lookup.as_mut()) => {
                    shared.enter();
                    self.lookup = None;
                    self.placed(row);
                }
                polled = poll_task(&mut self.task, shared) => match polled {
                    TaskPoll::Output => {}
                    TaskPoll::Done => self.task = None,
                    TaskPoll::Panicked => {
                        self.task = None;
                        self.agent_failed("agent task panicked".into());
                    }
                },
                _ = drain.wait_for(|now| *now), if !self.shutdown => {
                    // The drain time is over: end the call properly.
                    self.shutdown = true;
                    self.stop_reason.get_or_insert_with(|| "shutdown".into());
                    shared.enter();
                    self.ctl.send(OutCmd::CloseNow { code: 1001, reason: "gateway shutting down" });
                    ended = true;
                }
                () = &mut timer, if wake.is_some() => {
                    let now = Instant::now();
                    if self.active.is_none() && now >= start_deadline {
                        self.stop_reason = Some("no-start".into());
                        shared.enter();
                        self.ctl.send(OutCmd::CloseNow { code: 1008, reason: "no start event" });
                        ended = true;
                    } else if now >= end_deadline {
                        // MAX_CALL_SECS: ended like a hang-up, so Exotel's flow moves on.
                        self.stop_reason = Some("max-duration".into());
                        shared.enter();
                        self.ctl.send(OutCmd::CloseNow { code: 1000, reason: "maximum call duration" });
                        ended = true;
                    } else if now >= idle_deadline {
                        if now >= self.last_message + limits.idle {
                            self.stop_reason = Some("idle-timeout".into());
                            shared.enter();
                            self.ctl.send(OutCmd::CloseNow { code: 1000, reason: "no media" });
                            ended = true;
                        } else {
                            idle_deadline = self.last_message + limits.idle;
                        }
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
        let Some(msg) = msg else {
            self.peer_gone = true;
            return true;
        };
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
                    self.peer_gone = true;
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
                // Saturating: the number is Exotel's, and may be anything.
                if seq > last.saturating_add(1) {
                    self.seq_gaps = self.seq_gaps.saturating_add(seq - last - 1);
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
                self.deliver(Held::Clear);
            }
            // Events added later (`silence` is one, PROTOCOL.md §4.7) are not mistakes: ignored,
            // and not counted as bad messages.
            InboundEvent::Unknown { event } => {
                let shown: String = event.chars().take(40).collect();
                tracing::debug!(event = %shown, "unknown Exotel event ignored");
            }
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
        let reference = custom.get("callLogId").cloned().or_else(|| start.call_sid.clone());
        let token_ok = match &self.params.token {
            None | Some(TokenCall::Any) => true,
            // Some documented start forms carry no call_sid (PROTOCOL.md §4.2): only a different
            // call is refused.
            Some(TokenCall::Sid(sid)) => start.call_sid.as_deref().is_none_or(|c| c == sid),
            Some(TokenCall::Ours(id)) => custom.get("callLogId") == Some(id),
        };
        if !token_ok {
            return self.refuse_token_call();
        }
        let agent_id = match &self.slot {
            Slot::Making { spec, .. } | Slot::Ready { spec, .. } => spec.id.clone(),
            Slot::None => self.choose_agent(&custom, start.to.as_deref()),
        };
        let info = CallInfo {
            call_sid: start.call_sid.clone(),
            stream_sid: stream_sid.clone(),
            account_sid: start.account_sid.clone(),
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
        let span = tracing::Span::current();
        span.record("call_sid", start.call_sid.as_deref().unwrap_or("-"));
        span.record("stream_sid", stream_sid.as_str());
        let recording = self.start_recording(&agent_id, rate);
        let live = Arc::new(LiveCall::new(
            NewLiveCall {
                id: self.local_id.clone(),
                call_sid: start.call_sid.clone(),
                stream_sid: stream_sid.clone(),
                from: start.from.clone(),
                to: start.to.clone(),
                agent: agent_id.clone(),
                sample_rate: rate.hz(),
                row_id: info.custom_parameters.get("callLogId").cloned(),
            },
            self.ctl.clone(),
        ));
        self.writer.taps.live = Some(live.clone());
        self.live = Some(live);
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
                .text("instance_id", Some(self.app.store.instance()))
                .text("recording", recording)
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
        self.app.metrics.call_started(&agent_id);
        tracing::info!(
            call_sid = start.call_sid.as_deref().unwrap_or("-"),
            stream_sid = %stream_sid,
            agent = %agent_id,
            from = %start.from.as_deref().map(mask_phone).unwrap_or_default(),
            to = %start.to.as_deref().map(mask_phone).unwrap_or_default(),
            rate = rate.hz(),
            "call started"
        );
        let decision_stream_sid = stream_sid.clone();
        self.ctl.begin(stream_sid, rate, self.app.config.out_chunk_ms);
        let (app, decision_key, call_sid) = (self.app.clone(), key.clone(), start.call_sid.clone());
        self.ctl.on_decision(Box::new(move |d: Decision| {
            let target = d.target().map(str::to_string);
            app.store.upsert(
                decision_key.clone(),
                CallPatch::new().text("bot_decision", Some(d.as_str())).text("transfer_to", target.clone()),
            );
            app.store.event(decision_key.clone(), "decision", json!({ "decision": d.as_str(), "target": target }));
            // The Passthru that follows names the call by CallSid and the stream by
            // Stream[StreamSID]; that the CallSid is the start event's is not documented
            // (PROTOCOL.md §13.6), so the decision waits under both.
            let keys: Vec<String> = call_sid.iter().chain([&decision_stream_sid]).cloned().collect();
            app.decide(&keys, d);
        }));
        self.active = Some(Active { info, key, started: Instant::now() });
        if let Some(plan) = self.failed_early.take() {
            self.list_live();
            self.apply_failure(plan);
            return;
        }
        if let Some(reference) = reference {
            // Listed live once the call's row is known, so its id is the call log's.
            let app = self.app.clone();
            self.lookup = Some(Box::pin(async move {
                timeout(PLACED_LOOKUP_WAIT, app.store.find_call(&reference)).await.ok().and_then(Result::ok).flatten()
            }));
            return;
        }
        self.list_live();
        self.begin_agent();
    }

    fn list_live(&self) {
        if let Some(live) = &self.live {
            self.app.live.add(live.clone());
        }
    }

    /// Recording on (RECORDINGS_DIR) and wanted for this agent: the file's name for the call log.
    fn start_recording(&mut self, agent_id: &str, rate: SampleRate) -> Option<String> {
        let recordings = self.app.recordings.as_ref()?;
        let says = self.app.agent_spec(agent_id).and_then(|s| s.record);
        if !recordings.wanted(says) {
            return None;
        }
        let rec = recordings.open(&self.local_id, rate, Instant::now())?;
        let name = rec.name.clone();
        self.writer.taps.rec = Some(rec);
        Some(name)
    }

    /// An operator hung up or transferred the call: it ends now, whatever is playing.
    fn operator(&mut self, op: Operator) {
        if self.active.is_none() || self.writer.done {
            return;
        }
        let (reason, decision) = match op {
            Operator::HangUp => ("operator-hangup", Decision::HangUp),
            Operator::Transfer(target) => ("operator-transfer", Decision::Transfer(target)),
        };
        let target = decision.target().map(str::to_string);
        // The agent may have decided already, or the call has no Passthru to tell: then a
        // transfer is only a hang-up, and the log says so.
        let took = self.ctl.decide(decision);
        tracing::info!(action = reason, decision_taken = took, "call ended by an operator");
        self.record("operator", json!({ "action": reason, "target": target, "decision_taken": took }));
        self.stop_reason.get_or_insert_with(|| reason.into());
        self.ctl.send(OutCmd::CloseNow { code: 1000, reason: "ended by an operator" });
    }

    /// MEDIA_REQUIRE_TOKEN: the URL's token names another call than this stream's.
    fn refuse_token_call(&mut self) {
        Refusals::count(&self.app.refusals.token_call);
        tracing::warn!(call_id = %self.local_id, "media token was issued for another call");
        self.bad_input("token-for-another-call", json!({}));
        self.stop_reason = Some("token-for-another-call".into());
        self.ctl.send(OutCmd::CloseNow { code: 1008, reason: "token issued for another call" });
    }

    /// The call's row, read after `start`. A call we placed brings its variables (a campaign
    /// contact's columns) into the agent's call info, and its agent when the flow's applet URL
    /// named none.
    fn placed(&mut self, row: Option<CallRow>) {
        // Whatever the call, the live page names it by its row.
        if let (Some(r), Some(live)) = (&row, &self.live) {
            live.set_row_id(&r.id);
        }
        self.list_live();
        let row = row.filter(|r| r.direction.as_deref() == Some("outbound-api"));
        // A StreamUrl token names our call id; once Exotel has named the call, the stream must be it.
        if let (Some(TokenCall::Ours(_)), Some(r), Some(a)) = (&self.params.token, &row, &self.active) {
            if r.call_sid.is_some() && a.info.call_sid.is_some() && r.call_sid != a.info.call_sid {
                return self.refuse_token_call();
            }
        }
        if let (Some(row), Some(active)) = (row, self.active.as_mut()) {
            if let Some(live) = &self.live {
                live.set_outbound();
            }
            let custom = &mut active.info.custom_parameters;
            let requested = custom.keys().any(|k| k.eq_ignore_ascii_case("agentId"));
            let vars: BTreeMap<String, String> =
                row.vars.as_deref().and_then(|v| serde_json::from_str(v).ok()).unwrap_or_default();
            let mut patch = CallPatch::new();
            if !vars.is_empty() {
                for (k, v) in vars {
                    custom.entry(k).or_insert(v);
                }
                patch = patch.json("custom_params", &json!(custom));
            }
            let agent = row.agent.filter(|a| *a != active.info.agent_id && self.app.agent_exists(a));
            if let Some(agent) = agent.filter(|_| !requested && matches!(self.slot, Slot::None)) {
                patch = patch.text("agent", Some(&agent));
                if let Some(live) = &self.live {
                    live.set_agent(&agent);
                }
                // The call's real agent may not want it recorded (consent): the file goes.
                let says = self.app.agent_spec(&agent).and_then(|s| s.record);
                if self.app.recordings.as_ref().is_some_and(|r| !r.wanted(says)) {
                    if let Some(rec) = self.writer.taps.rec.take() {
                        rec.discard();
                        patch = patch.text("recording", None::<String>);
                    }
                }
                active.info.agent_id = agent;
            }
            self.app.store.upsert(active.key.clone(), patch);
        }
        self.begin_agent();
    }

    fn begin_agent(&mut self) {
        if matches!(self.slot, Slot::None) {
            let agent_id = self.active.as_ref().map(|a| a.info.agent_id.clone()).unwrap_or_default();
            let spec = self.app.agent_spec(&agent_id).unwrap_or_else(|| Arc::new(AgentSpec::builtin("echo")));
            self.make_agent(spec);
        }
        self.start_agent();
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

    /// A known `agentId` in the URL whose kind can start before `start` (a bridge): start making
    /// it now, so its connection overlaps Exotel's wait for `start`.
    fn make_early_agent(&mut self) {
        let query = &self.params.query_params;
        let Some(id) = query.iter().find(|(k, _)| k.eq_ignore_ascii_case("agentId")).map(|(_, v)| v.clone()) else {
            return;
        };
        let Some(spec) = self.app.agent_spec(&id) else { return };
        let early = self.app.agents.get(&spec.kind).is_some_and(|f| f.early(&spec, query));
        if early {
            self.make_agent(spec);
        }
    }

    fn make_agent(&mut self, spec: Arc<AgentSpec>) {
        let Some(factory) = self.app.agents.get(&spec.kind) else {
            self.agent_failed(format!("agent kind {:?} is not available", spec.kind));
            return;
        };
        self.generation += 1;
        self.agent_ctl = self.ctl.for_agent(self.generation);
        let setup = AgentSetup {
            spec: spec.clone(),
            call: self.active.as_ref().map(|a| a.info.clone()),
            query: self.params.query_params.clone(),
            ctl: self.agent_ctl.clone(),
        };
        let mut fut = match std::panic::catch_unwind(AssertUnwindSafe(|| factory.create(setup))) {
            Ok(f) => f,
            Err(_) => return self.agent_failed("agent panicked while starting".into()),
        };
        // Synchronous agents (echo) are ready at once: no trip through the select loop.
        match AssertUnwindSafe(&mut fut).catch_unwind().now_or_never() {
            Some(Ok(made)) => {
                self.slot = Slot::Making { spec, fut: Box::pin(std::future::pending()) };
                self.agent_made(made);
            }
            Some(Err(_)) => self.agent_failed("agent panicked while starting".into()),
            None => self.slot = Slot::Making { spec, fut },
        }
    }

    fn agent_made(&mut self, made: Result<Box<dyn Agent>, crate::agent::AgentError>) {
        let spec = match std::mem::replace(&mut self.slot, Slot::None) {
            Slot::Making { spec, .. } => spec,
            other => {
                self.slot = other;
                return;
            }
        };
        match made {
            Ok(mut agent) => {
                self.release_task();
                self.task = agent.take_task();
                self.slot = Slot::Ready { spec, agent, started: false };
                self.start_agent();
            }
            Err(e) => {
                self.slot = Slot::Making { spec, fut: Box::pin(std::future::pending()) };
                self.agent_failed(e.0);
            }
        }
    }

    /// Once both the agent and the stream exist: `on_start`, then what the caller said meanwhile.
    fn start_agent(&mut self) {
        if self.lookup.is_some() {
            return;
        }
        let Some(info) = self.active.as_ref().map(|a| a.info.clone()) else { return };
        let Slot::Ready { started, .. } = &mut self.slot else { return };
        if *started {
            return;
        }
        *started = true;
        self.with_agent(|agent, ctl| agent.on_start(&info, ctl));
        while let Some(h) = self.held.pop_front() {
            self.deliver(h);
        }
        self.held_bytes = 0;
    }

    /// Hands a caller event to the agent, or holds it while the agent is being made (or the
    /// call's row is being read).
    fn deliver(&mut self, event: Held) {
        let waiting = match &self.slot {
            Slot::Ready { started: true, .. } => false,
            Slot::Ready { .. } | Slot::Making { .. } => true,
            Slot::None => self.lookup.is_some(),
        };
        if waiting {
            match &event {
                Held::Audio(pcm) if self.held_bytes + pcm.len() > BACKLOG_BYTES => {
                    self.ctl.shared().position.dropped_in.fetch_add(pcm.len() as u64, Ordering::Relaxed);
                    return;
                }
                Held::Audio(pcm) => self.held_bytes += pcm.len(),
                _ if self.held.len() >= MAX_HELD_EVENTS => return,
                _ => {}
            }
            self.held.push_back(event);
            return;
        }
        if matches!(self.slot, Slot::None) {
            return;
        }
        match event {
            Held::Audio(pcm) => self.with_agent(|a, ctl| a.on_audio(&pcm, ctl)),
            Held::Dtmf(d, ms) => self.with_agent(|a, ctl| a.on_dtmf(&d, ms, ctl)),
            Held::Clear => self.with_agent(|a, ctl| a.on_clear(ctl)),
        }
    }

    /// The session no longer polls the agent's task: what is left of it (answering `on_end`)
    /// runs on a task of its own.
    fn release_task(&mut self) {
        if let Some(task) = self.task.take() {
            tokio::spawn(task.instrument(tracing::Span::current()));
        }
    }

    /// Runs an agent callback; a panic in it is an agent failure, not the end of the session.
    fn with_agent(&mut self, f: impl FnOnce(&mut dyn Agent, &CallControl)) {
        let Slot::Ready { agent, .. } = &mut self.slot else { return };
        let ctl = &self.agent_ctl;
        if std::panic::catch_unwind(AssertUnwindSafe(|| f(agent.as_mut(), ctl))).is_err() {
            self.agent_failed("agent panicked".into());
        }
    }

    /// The agent could not be made or gave up: record why, tell it its part is over, and apply
    /// its `on_failure`.
    fn agent_failed(&mut self, reason: String) {
        let spec = match std::mem::replace(&mut self.slot, Slot::None) {
            Slot::Ready { spec, mut agent, .. } => {
                let end = CallEnd::new(EndReason::AgentFailed(reason.clone()));
                let _ = std::panic::catch_unwind(AssertUnwindSafe(|| agent.on_end(&end)));
                self.release_task();
                Some(spec)
            }
            Slot::Making { spec, .. } => Some(spec),
            Slot::None => None,
        };
        let agent_id = spec.as_ref().map_or("-", |s| s.id.as_str()).to_string();
        let kind = spec.as_ref().map_or("-", |s| s.kind.as_str()).to_string();
        self.failure_prompt = spec.as_ref().and_then(|s| s.failure_prompt.clone());
        let mut plan = spec.map(|s| s.on_failure.clone()).unwrap_or_default();
        if self.fallbacks >= MAX_FALLBACKS && matches!(plan, OnFailure::Agent(_)) {
            plan = OnFailure::HangUp;
        }
        tracing::warn!(call_id = %self.local_id, agent = %agent_id, reason = %reason, fallback = %plan.describe(), "agent failed");
        self.app.metrics.agent_failed(&agent_id, &kind);
        self.record("agent-failed", json!({ "agent": agent_id, "reason": reason, "fallback": plan.describe() }));
        self.agent_failure = Some(format!("{agent_id}: {reason}"));
        self.fallback = Some(plan.describe());
        if self.active.is_none() {
            self.failed_early = Some(plan);
            return;
        }
        self.apply_failure(plan);
    }

    fn apply_failure(&mut self, plan: OnFailure) {
        if !matches!(plan, OnFailure::Agent(_)) {
            // Nobody will hear it. (A fallback agent does: it gets what the caller said meanwhile.)
            self.held.clear();
            self.held_bytes = 0;
        }
        match plan {
            OnFailure::HangUp => {
                self.failed_for_good = true;
                self.play_failure_prompt();
                self.ctl.hang_up();
            }
            OnFailure::Transfer(target) => {
                self.failed_for_good = true;
                self.play_failure_prompt();
                self.ctl.transfer_to(target);
            }
            OnFailure::Agent(id) => match self.app.agent_spec(&id) {
                Some(spec) => {
                    self.fallbacks += 1;
                    if let Some(a) = self.active.as_mut() {
                        a.info.agent_id = id.clone();
                    }
                    if let Some(live) = &self.live {
                        live.set_agent(&id);
                    }
                    self.make_agent(spec);
                }
                None => {
                    self.record("agent-failed", json!({ "agent": id, "reason": "fallback agent does not exist" }));
                    self.failed_for_good = true;
                    self.ctl.hang_up();
                }
            },
        }
    }

    /// The failed agent's apology, in place of whatever it left queued.
    fn play_failure_prompt(&mut self) {
        let (Some(prompt), Some(active)) = (self.failure_prompt.take(), self.active.as_ref()) else { return };
        self.ctl.clear();
        let _ = self.ctl.play(prompt.pcm(active.info.sample_rate));
        self.record("failure-prompt", json!({ "path": prompt.path().display().to_string() }));
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
        if let Some(live) = &self.live {
            live.caller_frame(&pcm);
        }
        if let Some(rec) = self.writer.taps.rec.as_mut() {
            rec.caller(&pcm);
        }
        if let Slot::Ready { agent, started: true, .. } = &mut self.slot {
            // The hot path: no copy, no queue.
            let ctl = &self.agent_ctl;
            if std::panic::catch_unwind(AssertUnwindSafe(|| agent.on_audio(&pcm, ctl))).is_err() {
                self.agent_failed("agent panicked".into());
            }
            return;
        }
        self.deliver(Held::Audio(pcm));
    }

    fn on_dtmf(&mut self, dtmf: Dtmf) {
        if self.dtmf.len() + dtmf.digit.len() <= MAX_DTMF_CHARS {
            self.dtmf.push_str(&dtmf.digit);
        }
        self.record("dtmf", json!({ "digit": dtmf.digit, "duration_ms": dtmf.duration_ms }));
        self.deliver(Held::Dtmf(dtmf.digit, dtmf.duration_ms));
    }

    fn on_mark(&mut self, name: &str) {
        if !self.writer.mark_echoed(name, &self.ctl.shared().position) {
            // Cancelled by a clear, or not ours: nothing to tell the agent.
            self.record("mark-stale", json!({ "name": name }));
            return;
        }
        self.marks_played += 1;
        // Playback-tracking marks come every few hundred ms: counted, not logged one by one.
        if !name.strip_prefix(TRACKING_MARK).is_some_and(|rest| rest.starts_with('-')) {
            self.record("mark-played", json!({ "name": name }));
        }
        self.with_agent(|a, ctl| a.on_mark_played(name, ctl));
    }

    fn on_stop(&mut self, stop: Stop) {
        self.stop_reason = Some(stop.reason.as_str().to_string());
        self.record("stop", json!({ "reason": stop.reason.as_str() }));
        self.exotel_stop = Some(stop.reason);
    }

    fn record(&mut self, kind: &'static str, detail: serde_json::Value) {
        if self.recorded >= MAX_TIMELINE {
            self.unrecorded += 1;
            return;
        }
        self.recorded += 1;
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

    /// How the call ended, as the agent is told.
    fn end(&self) -> CallEnd {
        let reason = if let Some(r) = &self.exotel_stop {
            EndReason::Stop(r.clone())
        } else if self.shutdown {
            EndReason::Shutdown
        } else if self.active.is_none() {
            EndReason::NoStart
        } else if self.failed_for_good {
            EndReason::AgentFailed(self.agent_failure.clone().unwrap_or_default())
        } else if self.writer.stats.hung_up {
            EndReason::AgentEnded
        } else {
            EndReason::Disconnected
        };
        CallEnd::new(reason)
    }

    fn finish(mut self, shared: &Shared) {
        let end = self.end();
        if let Slot::Ready { agent, .. } = &mut self.slot {
            if std::panic::catch_unwind(AssertUnwindSafe(|| agent.on_end(&end))).is_err() {
                tracing::warn!(call_id = %self.local_id, "agent panicked in on_end");
            }
        }
        self.slot = Slot::None;
        self.release_task();
        shared.close(end);
        // The recording ends with the call.
        self.writer.taps = Default::default();
        if self.live.take().is_some() {
            self.app.live.remove(&self.local_id);
        }
        let pos = &shared.position;
        // Exotel's unreadable messages and the agent's upstream's (a bridged bot's) alike.
        let bad = self.bad + pos.bad_upstream.load(Ordering::Relaxed);
        let w = &self.writer.stats;
        let close_code = w.close_code.or(self.peer_close).unwrap_or(1006);
        let stop_reason = self
            .stop_reason
            .or(self.failed_for_good.then(|| "agent-failed".to_string()))
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
        let count = |v: u64| (v > 0).then_some(v as i64);
        let (transcript, usage) = self.conversation.columns();
        if self.active.is_some() {
            self.app.metrics.call_ended(&crate::metrics::CallTotals {
                agent: &agent,
                outcome: &stop_reason,
                frames_in: self.frames_in,
                bytes_in: self.bytes_in,
                frames_out: w.frames_out,
                bytes_out: w.bytes_out,
                marks_sent: w.marks_sent,
                marks_played: self.marks_played,
                clears: w.clears,
                bad_messages: bad,
                recut: pos.recut.load(Ordering::Relaxed),
                first_audio: w
                    .first_frame_at
                    .zip(self.active.as_ref())
                    .map(|(t, a)| t.saturating_duration_since(a.started)),
            });
        }
        self.app.store.event(
            key.clone(),
            "end",
            json!({ "close_code": close_code, "reason": stop_reason, "timeline_entries_left_out": self.unrecorded }),
        );
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
                .int("bad_messages", Some(bad as i64))
                .int("seq_gaps", Some(self.seq_gaps as i64))
                .int("dropped_in_bytes", count(pos.dropped_in.load(Ordering::Relaxed)))
                .int("dropped_out_bytes", count(pos.dropped_out.load(Ordering::Relaxed)))
                .text("agent_failure", self.agent_failure.as_ref())
                .text("agent_fallback", self.fallback.as_ref())
                .text("agent_note", self.agent_note.as_ref())
                .text("transcript", transcript.as_ref())
                .text("usage", usage.as_ref())
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
            bad_messages = bad,
            "call ended"
        );
    }
}

enum TaskPoll {
    /// The task queued output: the session sends it, then polls the task again.
    Output,
    Done,
    Panicked,
}

/// Polls the agent's task as one more thing the session waits on (never ready without a task).
/// Output the task queues while polled wakes nobody: the session is here, and takes it next.
fn poll_task<'a>(task: &'a mut Option<AgentTask>, shared: &'a Shared) -> impl Future<Output = TaskPoll> + 'a {
    std::future::poll_fn(move |cx| {
        let Some(t) = task.as_mut() else { return Poll::Pending };
        shared.enter();
        match std::panic::catch_unwind(AssertUnwindSafe(|| t.as_mut().poll(cx))) {
            Ok(Poll::Ready(())) => Poll::Ready(TaskPoll::Done),
            Err(_) => Poll::Ready(TaskPoll::Panicked),
            Ok(Poll::Pending) if shared.settle() => Poll::Ready(TaskPoll::Output),
            Ok(Poll::Pending) => Poll::Pending,
        }
    })
}

fn is_too_big(e: &axum::Error) -> bool {
    // tungstenite's capacity errors: "Space limit exceeded: Message too long: …"
    let text = e.to_string();
    text.contains("Space limit exceeded") || text.contains("too long")
}
