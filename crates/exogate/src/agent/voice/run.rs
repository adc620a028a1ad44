//! One AI call: caller audio goes to the provider, the model's audio comes back paced through the
//! call; barge-in clears Exotel at once and tells the model what the caller heard; tools run
//! without stalling the call; transcripts and usage go to the call log; silence, time limits and
//! provider failures end the call the agent's way.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::time::{Instant, sleep_until, timeout};
use tokio_tungstenite::tungstenite::Message;

use super::connect::{self, CLOSE_WAIT, ProviderSocket};
use super::playout::Playout;
use super::provider::{Event, Wire};
use super::settings::VoiceSettings;
use super::tools;
use crate::agent::{CallControl, CallEvent, CallEvents, CallInfo};

/// Unreadable provider messages in a row before it counts as broken.
const GARBAGE_RUN: u32 = 5;
const SEND_TIMEOUT: Duration = Duration::from_secs(5);
/// After `end_call`, `transfer_call` or a polite end: how long the model gets to say goodbye.
const GOODBYE_WAIT: Duration = Duration::from_secs(10);
/// Webhook tools running at once per call; more get an error result at once.
const MAX_TOOLS_IN_FLIGHT: usize = 4;
/// Caller audio per message to the provider.
const FORWARD_MS: usize = 100;
/// Caller audio louder than this (peak, PCM16) counts as the caller speaking.
const VOICE_PEAK: i16 = 1000;

/// How the agent ends the call once its last words have played.
#[derive(Debug, Clone, PartialEq)]
enum Ending {
    HangUp(&'static str),
    Transfer(Option<String>),
}

struct PendingEnd {
    ending: Ending,
    /// Model audio came after the decision: the next finished answer is the goodbye.
    spoke: bool,
    deadline: Instant,
}

type ToolFuture = BoxFuture<'static, (String, String, Value)>;

pub(crate) struct Voice {
    pub ws: ProviderSocket,
    pub wire: Box<dyn Wire>,
    pub settings: Arc<VoiceSettings>,
    pub call: CallInfo,
    pub instructions: String,
    pub http: reqwest::Client,
    /// Events read during setup, handled first.
    pub early: Vec<Event>,
}

struct State {
    v: Voice,
    ctl: CallControl,
    playout: Playout,
    open: bool,
    /// Answers cut by barge-in: their audio still in flight is dropped.
    interrupted: HashSet<String>,
    /// Gemini has no answer ids: after `interrupted`, audio is dropped until the turn ends.
    dropping_turn: bool,
    last_response: Option<String>,
    response_active: bool,
    /// Tool results sent; OpenAI answers only once asked, after the current answer is done.
    respond_after: bool,
    pending_end: Option<PendingEnd>,
    tools: FuturesUnordered<ToolFuture>,
    cancelled_tools: HashSet<String>,
    resume: Option<String>,
    reconnected: bool,
    garbage_run: u32,
    last_voice: Instant,
    nudged: bool,
    max_call_at: Option<Instant>,
    out: Vec<String>,
    /// Caller audio not yet forwarded, and how much makes a message.
    caller: Vec<u8>,
    forward_bytes: usize,
}

pub(crate) async fn run(v: Voice, mut events: CallEvents, ctl: CallControl) {
    let rate = v.call.sample_rate;
    let max_call_at = v.settings.max_call.map(|d| Instant::now() + d);
    let mut s = State {
        playout: Playout::new(rate),
        ctl,
        open: true,
        interrupted: HashSet::new(),
        dropping_turn: false,
        last_response: None,
        response_active: false,
        respond_after: false,
        pending_end: None,
        tools: FuturesUnordered::new(),
        cancelled_tools: HashSet::new(),
        resume: None,
        reconnected: false,
        garbage_run: 0,
        last_voice: Instant::now(),
        nudged: false,
        max_call_at,
        out: Vec::new(),
        caller: Vec::new(),
        forward_bytes: rate.bytes_per_ms() * FORWARD_MS,
        v,
    };
    let early = std::mem::take(&mut s.v.early);
    s.handle(early).await;
    if let Some(greeting) = s.v.settings.greeting.clone() {
        let greeting = super::template::fill(&greeting, &s.v.call);
        let msgs = s.v.wire.speak(&format!("Start the call now by saying this to the caller: {greeting}"));
        s.send_all(msgs).await;
    }
    loop {
        let deadline = s.next_deadline();
        tokio::select! {
            event = events.next() => {
                let Some(event) = event else { break };
                if s.on_call_event(event).await {
                    break;
                }
            }
            msg = s.v.ws.next(), if s.open => s.on_provider(msg).await,
            Some((id, name, output)) = s.tools.next(), if !s.tools.is_empty() => s.tool_done(id, name, output).await,
            () = sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => s.on_timer().await,
        }
    }
}

impl State {
    async fn send(&mut self, text: String) {
        if !self.open {
            return;
        }
        match timeout(SEND_TIMEOUT, self.v.ws.send(Message::text(text))).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => self.lost(format!("provider connection lost: {e}")).await,
            Err(_) => self.lost("provider stopped reading (send timed out)".into()).await,
        }
    }

    async fn send_all(&mut self, msgs: Vec<String>) {
        for m in msgs {
            self.send(m).await;
        }
    }

    /// True when the call is over.
    async fn on_call_event(&mut self, event: CallEvent) -> bool {
        match event {
            CallEvent::Audio(pcm) => {
                if is_voice(&pcm) {
                    self.last_voice = Instant::now();
                    self.nudged = false;
                }
                // Forwarded in ~100 ms messages (the providers' advice is 20–100 ms): a caller
                // sending 20 ms frames costs a fifth of the messages.
                self.caller.extend_from_slice(&pcm);
                if self.caller.len() < self.forward_bytes {
                    return false;
                }
                let mut out = std::mem::take(&mut self.out);
                self.v.wire.audio(&self.caller, &mut out);
                self.caller.clear();
                for text in out.drain(..) {
                    self.send(text).await;
                }
                self.out = out;
            }
            CallEvent::MarkPlayed(name) => self.playout.played(&name, Instant::now()),
            CallEvent::Clear => self.playout.clear(),
            CallEvent::Dtmf(digit, _) => {
                let msgs = self.v.wire.dtmf(&digit);
                self.send_all(msgs).await;
                self.ask_for_answer().await;
            }
            CallEvent::Start(_) => {}
            CallEvent::End(_) => {
                if self.open {
                    self.open = false;
                    let _ = timeout(CLOSE_WAIT, self.v.ws.close(None)).await;
                }
                return true;
            }
        }
        false
    }

    async fn on_provider(&mut self, msg: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>) {
        let text = match &msg {
            Some(Ok(Message::Text(t))) => t.as_str(),
            Some(Ok(Message::Binary(b))) => match std::str::from_utf8(b) {
                Ok(t) => t,
                Err(_) => return self.garbage("binary frame that is not UTF-8 JSON").await,
            },
            Some(Ok(Message::Close(frame))) => return self.lost(connect::closed(frame.as_ref())).await,
            Some(Ok(_)) => return,
            Some(Err(e)) => return self.lost(format!("provider connection lost: {e}")).await,
            None => return self.lost("provider connection lost".into()).await,
        };
        let mut batch = Vec::new();
        match self.v.wire.parse(text, &mut batch) {
            Ok(()) => self.garbage_run = 0,
            Err(e) => return self.garbage(&e).await,
        }
        self.handle(batch).await;
    }

    async fn handle(&mut self, batch: Vec<Event>) {
        for event in batch {
            self.on_event(event).await;
        }
    }

    async fn on_event(&mut self, event: Event) {
        match event {
            Event::Ready => {}
            Event::Audio { item, response, pcm, provider_ms } => {
                if self.dropping_turn || response.as_ref().is_some_and(|r| self.interrupted.contains(r)) {
                    return;
                }
                if response.is_some() {
                    self.last_response = response;
                }
                if let Some(end) = self.pending_end.as_mut() {
                    end.spoke = true;
                }
                let item = item.unwrap_or_else(|| "answer".into());
                if self.playout.play(&self.ctl, &item, &pcm, provider_ms).is_err() {
                    tracing::debug!("model audio beyond the call's playback queue dropped (counted on the call)");
                }
            }
            Event::BargeIn => self.barge_in().await,
            Event::ResponseStarted(id) => {
                self.response_active = true;
                if id.is_some() {
                    self.last_response = id;
                }
            }
            Event::ResponseDone { failed, .. } => {
                self.response_active = false;
                self.dropping_turn = false;
                if let Some(reason) = failed {
                    return self.ctl.fail(format!("provider error: {reason}"));
                }
                if self.respond_after {
                    self.respond_after = false;
                    if let Some(m) = self.v.wire.respond() {
                        self.send(m).await;
                    }
                }
                if self.pending_end.as_ref().is_some_and(|e| e.spoke) {
                    self.finish_end();
                }
            }
            Event::ToolCall { id, name, args } => self.tool_call(id, name, args).await,
            Event::ToolCancelled(ids) => self.cancelled_tools.extend(ids),
            Event::Transcript { speaker, text } => self.ctl.transcript(speaker.as_str(), text),
            Event::Usage(u) => self.ctl.usage(u),
            Event::Warning(w) => {
                tracing::debug!(warning = %w, "provider warning");
                self.ctl.record("provider-warning", json!({ "message": w }));
            }
            Event::Fatal(reason) => self.ctl.fail(format!("provider error: {reason}")),
            Event::Resumable(handle) => self.resume = Some(handle),
            Event::GoAway => self.reconnect().await,
        }
    }

    async fn barge_in(&mut self) {
        self.last_voice = Instant::now();
        self.nudged = false;
        if self.ctl.queued().is_zero() {
            // Nothing is playing (Gemini can report a phantom interruption after its greeting).
            return;
        }
        self.ctl.clear();
        let heard = self.playout.heard(Instant::now());
        let mut detail = json!({});
        if let Some(h) = heard.filter(|h| h.cut) {
            detail = json!({ "item": h.item, "audio_end_ms": h.ms });
            if let Some(m) = self.v.wire.truncate(&h.item, h.ms) {
                self.send(m).await;
            }
        }
        match self.last_response.clone() {
            Some(r) => {
                if self.interrupted.len() > 256 {
                    self.interrupted.clear();
                }
                self.interrupted.insert(r);
            }
            None => self.dropping_turn = true,
        }
        self.v.wire.reset_output();
        self.playout.clear();
        self.ctl.record("barge-in", detail);
    }

    async fn tool_call(&mut self, id: String, name: String, args: Result<Value, String>) {
        let shown = args.as_ref().map(truncate_json).unwrap_or_else(|e| json!({ "error": e }));
        self.ctl.record("tool-call", json!({ "name": name, "arguments": shown }));
        let args = match args {
            Ok(a) => a,
            Err(e) => return self.tool_done(id, name, json!({ "error": e })).await,
        };
        match name.as_str() {
            "end_call" => {
                self.end_after_goodbye(Ending::HangUp("end_call"));
                self.tool_done(
                    id,
                    name,
                    json!({ "ok": true, "note": "Say a short goodbye now; the call ends after it." }),
                )
                .await;
            }
            "transfer_call" => {
                let target = args
                    .get("target")
                    .and_then(Value::as_str)
                    .filter(|t| !t.trim().is_empty())
                    .map(|t| t.trim().chars().take(128).collect())
                    .or_else(|| self.v.settings.transfer_to.clone());
                self.end_after_goodbye(Ending::Transfer(target));
                self.tool_done(id, name, json!({ "ok": true, "note": "Tell the caller they are being transferred." }))
                    .await;
            }
            _ => {
                let Some(tool) = self.v.settings.tools.iter().find(|t| t.name == name).cloned() else {
                    return self.tool_done(id, name.clone(), json!({ "error": format!("no tool named {name}") })).await;
                };
                if self.tools.len() >= MAX_TOOLS_IN_FLIGHT {
                    return self.tool_done(id, name, json!({ "error": "too many tools running; try again" })).await;
                }
                let (client, settings, call) = (self.v.http.clone(), self.v.settings.clone(), call_json(&self.v.call));
                self.tools.push(
                    async move {
                        let out =
                            tools::call_webhook(&client, &tool, args, &call, settings.tool_secret.as_deref()).await;
                        (id, name, out)
                    }
                    .boxed(),
                );
            }
        }
    }

    async fn tool_done(&mut self, id: String, name: String, output: Value) {
        if self.cancelled_tools.remove(&id) {
            return;
        }
        self.ctl.record("tool-result", json!({ "name": name, "output": truncate_json(&output) }));
        let msgs = self.v.wire.tool_result(&id, &name, &output);
        self.send_all(msgs).await;
        self.ask_for_answer().await;
    }

    /// OpenAI answers only when asked, and not while an answer is running: then once it is done.
    async fn ask_for_answer(&mut self) {
        if self.response_active {
            self.respond_after = true;
        } else if let Some(m) = self.v.wire.respond() {
            self.send(m).await;
        }
    }

    fn end_after_goodbye(&mut self, ending: Ending) {
        if self.pending_end.is_none() {
            self.pending_end = Some(PendingEnd { ending, spoke: false, deadline: Instant::now() + GOODBYE_WAIT });
        }
    }

    /// The goodbye has been generated: the call ends once it has played.
    fn finish_end(&mut self) {
        let Some(end) = self.pending_end.take() else { return };
        match end.ending {
            Ending::HangUp(why) => {
                self.ctl.note(format!("agent ended the call ({why})"));
                self.ctl.hang_up();
            }
            Ending::Transfer(target) => {
                self.ctl.note("agent transferred the call");
                self.ctl.transfer_to(target);
            }
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let mut d: Option<Instant> = self.pending_end.as_ref().map(|e| e.deadline);
        let mut consider = |t: Instant| d = Some(d.map_or(t, |d| d.min(t)));
        if self.pending_end.is_none() {
            if let Some(silence) = self.v.settings.silence {
                consider(self.last_voice + silence);
            }
            if let Some(t) = self.max_call_at {
                consider(t);
            }
        }
        d
    }

    async fn on_timer(&mut self) {
        let now = Instant::now();
        if let Some(end) = &self.pending_end {
            if now >= end.deadline {
                self.finish_end();
            }
            return;
        }
        if self.max_call_at.is_some_and(|t| now >= t) {
            self.max_call_at = None;
            self.ctl.record("time-limit", json!({ "max_call_secs": self.v.settings.max_call.map(|d| d.as_secs()) }));
            return self.say_goodbye("The call has reached its time limit. Say a short, polite goodbye now.").await;
        }
        let Some(silence) = self.v.settings.silence else { return };
        // The agent speaking is no silence of the caller's.
        let playing = self.ctl.queued();
        if !playing.is_zero() || self.response_active {
            self.last_voice = now + playing;
            return;
        }
        if now < self.last_voice + silence {
            return;
        }
        self.last_voice = now;
        if !self.nudged {
            self.nudged = true;
            self.ctl.record("silence", json!({ "secs": silence.as_secs(), "action": "nudge" }));
            let msgs =
                self.v.wire.speak("The caller has been silent for a while. Briefly ask whether they are still there.");
            self.send_all(msgs).await;
        } else {
            self.ctl.record("silence", json!({ "secs": silence.as_secs(), "action": "end" }));
            self.say_goodbye("The caller is not responding. Say a short, polite goodbye now.").await;
        }
    }

    async fn say_goodbye(&mut self, instruction: &str) {
        self.end_after_goodbye(Ending::HangUp("polite end"));
        let msgs = self.v.wire.speak(instruction);
        self.send_all(msgs).await;
    }

    async fn garbage(&mut self, reason: &str) {
        self.garbage_run += 1;
        tracing::debug!(reason, "unreadable provider message skipped");
        if self.garbage_run >= GARBAGE_RUN {
            self.open = false;
            self.ctl.fail(format!("provider sent {GARBAGE_RUN} unreadable messages in a row (last: {reason})"));
        }
    }

    /// The provider's connection ended (or is about to, on `goAway`): one new connection per call
    /// (Gemini resumes its session with the latest handle); a second loss fails the agent.
    async fn lost(&mut self, reason: String) {
        self.open = false;
        if self.ctl.end().is_some() {
            return;
        }
        // A refused key or an exhausted quota won't heal by dialing again.
        if self.reconnected || is_final(&reason) {
            return self.ctl.fail(reason);
        }
        tracing::info!(reason = %reason, "provider connection lost; reconnecting once");
        self.ctl.record("provider-lost", json!({ "reason": reason }));
        self.reconnected = true;
        self.reconnect().await;
    }

    /// A new connection, resuming the session where the provider can (Gemini's handle). Planned
    /// ones (`goAway`) don't count against the one reconnect a lost connection gets.
    async fn reconnect(&mut self) {
        let tools = tools::declarations(&self.v.settings);
        let setup = self.v.wire.setup(&self.v.instructions, &tools, self.resume.as_deref());
        match connect::open(&self.v.settings, self.v.wire.as_mut(), setup).await {
            Ok((ws, early)) => {
                let old = std::mem::replace(&mut self.v.ws, ws);
                if self.open {
                    let mut old = old;
                    let _ = timeout(CLOSE_WAIT, old.close(None)).await;
                }
                self.open = true;
                self.response_active = false;
                self.ctl.record("provider-reconnected", json!({ "resumed": self.resume.is_some() }));
                Box::pin(self.handle(early)).await;
            }
            Err(reason) => {
                self.open = false;
                self.ctl.fail(reason);
            }
        }
    }
}

/// Close reasons that mean the provider refuses this agent, not that the connection broke
/// (Gemini: 1007 bad key or request, 1008 unknown model or policy, quota exhaustion).
fn is_final(reason: &str) -> bool {
    let lower = reason.to_ascii_lowercase();
    ["(1007", "(1008", "quota", "resource_exhausted", "api key", "permission"].iter().any(|w| lower.contains(w))
}

fn is_voice(pcm: &[u8]) -> bool {
    pcm.chunks_exact(2).any(|s| i16::from_le_bytes([s[0], s[1]]).unsigned_abs() > VOICE_PEAK as u16)
}

/// What a tool webhook learns about the call.
fn call_json(call: &CallInfo) -> Value {
    json!({
        "call_sid": call.call_sid,
        "stream_sid": call.stream_sid,
        "account_sid": call.account_sid,
        "from": call.from,
        "to": call.to,
        "agent": call.agent_id,
        "custom": call.custom_parameters,
    })
}

/// Tool arguments and answers go on the timeline, shortened.
fn truncate_json(v: &Value) -> Value {
    let text = v.to_string();
    if text.len() <= 2000 {
        return v.clone();
    }
    let cut = (0..=2000).rev().find(|&i| text.is_char_boundary(i)).unwrap_or(0);
    Value::String(format!("{}…", &text[..cut]))
}
