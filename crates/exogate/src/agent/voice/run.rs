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
/// Before the provider's session cap (OpenAI 60 min, Azure 30): time for a goodbye.
const SESSION_MARGIN: Duration = Duration::from_secs(60);
/// After `goAway`, switch connections this long before the old one's time is up.
const GO_AWAY_MARGIN: Duration = Duration::from_secs(3);
/// `goAway` without a readable `timeLeft`: the doc's "about 60 s", less a good margin.
const GO_AWAY_DEFAULT: Duration = Duration::from_secs(30);
/// A `goAway` this soon after the last planned move is not followed by another.
const MIN_SWITCH_GAP: Duration = Duration::from_secs(30);
/// After a turn completes, how long to wait for the handle that covers it before switching.
const HANDLE_WAIT: Duration = Duration::from_millis(500);
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

/// A request for the model's next answer (OpenAI `response.create`, or Gemini text).
#[derive(Debug, Clone, PartialEq)]
struct Ask {
    msgs: Vec<String>,
    /// Instructions for what to say (greeting, nudge, goodbye), not only "answer now".
    speech: bool,
}

/// OpenAI runs one answer at a time: a `response.create` while one runs is refused with
/// `conversation_already_has_active_response` (§A6). An ask made then, or refused so, waits for
/// that answer's `response.done`. Gemini reports no answer starting: its turn's first audio counts
/// as one, and `turnComplete` as its end.
#[derive(Debug, Default)]
struct Asks {
    active: bool,
    deferred: Option<Ask>,
    /// The last ask sent, to send again if it is refused.
    last: Option<Ask>,
}

impl Asks {
    /// What to send now, if anything.
    fn ask(&mut self, ask: Ask) -> Option<Vec<String>> {
        if self.active {
            self.defer(ask);
            return None;
        }
        self.last = Some(ask.clone());
        Some(ask.msgs)
    }

    fn defer(&mut self, ask: Ask) {
        // Words to say (a goodbye) win over a bare "answer now", which they include.
        if ask.speech || !self.deferred.as_ref().is_some_and(|d| d.speech) {
            self.deferred = Some(ask);
        }
    }

    fn started(&mut self) {
        self.active = true;
    }

    /// The last ask was refused: an answer is running after all (VAD started one).
    fn busy(&mut self) {
        self.active = true;
        if let Some(ask) = self.last.take() {
            self.defer(ask);
        }
    }

    /// The running answer is over: the ask that waited for it, to send now.
    fn done(&mut self) -> Option<Vec<String>> {
        self.active = false;
        let ask = self.deferred.take()?;
        self.ask(ask)
    }
}

/// A planned move to a new connection (Gemini `goAway`, §B9).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Switch {
    /// Switch by then whatever is going on: the old connection's time is nearly up.
    deadline: Instant,
    /// A turn completed with no tool running: switch at the next resumption handle (it covers
    /// that turn) or soon after.
    between_turns: Option<Instant>,
}

impl Switch {
    fn new(now: Instant, time_left: Option<Duration>) -> Self {
        let left = time_left.unwrap_or(GO_AWAY_DEFAULT);
        Self { deadline: now + left.saturating_sub(GO_AWAY_MARGIN), between_turns: None }
    }

    fn at(&self) -> Instant {
        self.between_turns.map_or(self.deadline, |t| t.min(self.deadline))
    }
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
    /// Model audio came since the last finished answer (a turn is in progress).
    turn_audio: bool,
    last_response: Option<String>,
    asks: Asks,
    pending_end: Option<PendingEnd>,
    tools: FuturesUnordered<ToolFuture>,
    cancelled_tools: HashSet<String>,
    /// Webhook tools running, by call id (at most [`MAX_TOOLS_IN_FLIGHT`]).
    tools_in_flight: HashSet<String>,
    resume: Option<String>,
    /// Gemini said the connection ends soon: switch by then, between turns if one comes.
    switch: Option<Switch>,
    /// When the last planned switch was made.
    switched_at: Option<Instant>,
    /// The call is being hung up with nothing more to say (the goodbye was said, or the
    /// provider's session expired).
    hanging_up: bool,
    reconnected: bool,
    garbage_run: u32,
    last_voice: Instant,
    nudged: bool,
    max_call_at: Option<Instant>,
    /// The provider's session ends soon after: the call ends politely first.
    session_end_at: Option<Instant>,
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
        turn_audio: false,
        last_response: None,
        asks: Asks::default(),
        pending_end: None,
        tools: FuturesUnordered::new(),
        cancelled_tools: HashSet::new(),
        tools_in_flight: HashSet::new(),
        resume: None,
        switch: None,
        switched_at: None,
        hanging_up: false,
        reconnected: false,
        garbage_run: 0,
        last_voice: Instant::now(),
        nudged: false,
        max_call_at,
        session_end_at: None,
        out: Vec::new(),
        caller: Vec::new(),
        forward_bytes: rate.bytes_per_ms() * FORWARD_MS,
        v,
    };
    s.session_end_at = s.session_limit();
    let early = std::mem::take(&mut s.v.early);
    s.handle(early).await;
    if let Some(greeting) = s.v.settings.greeting.clone() {
        let greeting = super::template::fill(&greeting, &s.v.call);
        let msgs = s.v.wire.greet(&format!("Start the call now by saying this to the caller: {greeting}"));
        s.ask(Ask { msgs, speech: true }).await;
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
        // After the whole message: a handle later in it is one to resume with.
        if self.switch.is_some_and(|sw| sw.at() <= Instant::now()) {
            self.planned_switch().await;
        }
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
                self.turn_audio = true;
                if let Some(sw) = self.switch.as_mut() {
                    sw.between_turns = None;
                }
                if response.is_some() {
                    self.last_response = response;
                } else {
                    // Gemini reports no answer starting: its audio is the sign. An ask made now
                    // (a goodbye) waits for the turn to complete, or that turn's end would be
                    // taken for the goodbye's and the call hung up before it is spoken.
                    self.asks.started();
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
                self.asks.started();
                if id.is_some() {
                    self.last_response = id;
                }
            }
            Event::ResponseDone { failed, .. } => {
                self.dropping_turn = false;
                self.turn_audio = false;
                if let Some(sw) = self.switch.as_mut() {
                    if self.tools.is_empty() && sw.between_turns.is_none() {
                        sw.between_turns = Some(Instant::now() + HANDLE_WAIT);
                    }
                }
                let next = self.asks.done();
                if let Some(reason) = failed {
                    return self.ctl.fail(format!("provider error: {reason}"));
                }
                if let Some(msgs) = next {
                    // The answer asked for comes after this one: that is the goodbye, if any.
                    if let Some(end) = self.pending_end.as_mut() {
                        end.spoke = false;
                    }
                    return self.send_all(msgs).await;
                }
                if self.pending_end.as_ref().is_some_and(|e| e.spoke) {
                    self.finish_end();
                }
            }
            Event::ResponseBusy => self.asks.busy(),
            Event::ToolCall { id, name, args } => self.tool_call(id, name, args).await,
            Event::ToolCancelled(ids) => {
                // Only ids still running: the set stays as small as the tools in flight.
                let running: Vec<String> = ids.into_iter().filter(|i| self.tools_in_flight.contains(i)).collect();
                self.cancelled_tools.extend(running);
            }
            Event::Transcript { speaker, text } => self.ctl.transcript(speaker.as_str(), text),
            Event::Usage(u) => self.ctl.usage(u),
            Event::Warning(w) => {
                tracing::debug!(warning = %w, "provider warning");
                self.ctl.record("provider-warning", json!({ "message": w }));
            }
            Event::Fatal(reason) => self.ctl.fail(format!("provider error: {reason}")),
            Event::Expired(reason) => {
                // The cap came before our goodbye (a clock behind the provider's): the call
                // ends as completed, not as an agent failure, and no new session is dialed.
                self.ctl.record("session-limit", json!({ "reason": reason }));
                self.open = false;
                let _ = timeout(CLOSE_WAIT, self.v.ws.close(None)).await;
                self.pending_end = None;
                // Nothing more to say: no timer may start a goodbye during the last audio.
                self.hanging_up = true;
                self.ctl.note("provider session reached its maximum length");
                self.ctl.hang_up();
            }
            Event::Resumable(handle) => {
                self.resume = Some(handle);
                if let Some(sw) = self.switch.as_mut().filter(|sw| sw.between_turns.is_some()) {
                    // The handle covering the finished turn: nothing is lost by moving now.
                    sw.between_turns = Some(Instant::now());
                }
            }
            Event::GoAway(left) => {
                // A provider that sends goAway on every new connection at once would have us
                // move for the rest of the call: within MIN_SWITCH_GAP of the last move the
                // connection is left to close, and the one reconnect a lost one gets applies.
                let recent = self.switched_at.is_some_and(|t| t.elapsed() < MIN_SWITCH_GAP);
                if self.switch.is_none() && !recent {
                    self.ctl.record("provider-go-away", json!({ "time_left_ms": left.map(|d| d.as_millis() as u64) }));
                    // Not at once: that would cut the answer being spoken. Between turns, or
                    // just before the time is up.
                    self.switch = Some(Switch::new(Instant::now(), left));
                }
            }
        }
    }

    async fn barge_in(&mut self) {
        self.last_voice = Instant::now();
        self.nudged = false;
        let unplayed = self.ctl.queued();
        let playing = !unplayed.is_zero();
        // An answer still being generated is cut too, queued audio or not: its deltas already in
        // flight must not play.
        if !playing && !self.asks.active && !self.turn_audio {
            // Nothing playing or coming (Gemini can report a phantom interruption after its greeting).
            return;
        }
        if playing {
            self.ctl.clear();
        }
        // Only audio still playing is truncated: with nothing queued the caller heard every item
        // in full (an answer still being generated has none yet).
        let heard = if playing { self.playout.heard(Instant::now(), unplayed) } else { None };
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
                if self.asks.active {
                    // With `interrupt_response: false` the provider keeps generating unless told.
                    if let Some(m) = self.v.wire.cancel(&r) {
                        self.send(m).await;
                    }
                }
                self.interrupted.insert(r);
            }
            // Gemini has no ids: drop the rest of a turn still coming. A finished turn only had
            // its queued audio to clear, and the next one must not be dropped.
            None => self.dropping_turn = self.turn_audio,
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
                self.tools_in_flight.insert(id.clone());
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
        self.tools_in_flight.remove(&id);
        if self.cancelled_tools.remove(&id) {
            return;
        }
        self.ctl.record("tool-result", json!({ "name": name, "output": truncate_json(&output) }));
        let msgs = self.v.wire.tool_result(&id, &name, &output);
        self.send_all(msgs).await;
        self.ask_for_answer().await;
    }

    /// OpenAI answers only when asked (after tool results, a key press).
    async fn ask_for_answer(&mut self) {
        if let Some(m) = self.v.wire.respond() {
            self.ask(Ask { msgs: vec![m], speech: false }).await;
        }
    }

    async fn ask(&mut self, ask: Ask) {
        if let Some(msgs) = self.asks.ask(ask) {
            self.send_all(msgs).await;
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
        // The goodbye is said: no time limit or silence may ask for another while it plays.
        self.hanging_up = true;
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
        if self.hanging_up {
            return None;
        }
        let mut d: Option<Instant> = self.pending_end.as_ref().map(|e| e.deadline);
        let mut consider = |t: Instant| d = Some(d.map_or(t, |d| d.min(t)));
        if let Some(sw) = &self.switch {
            consider(sw.at());
        }
        if self.pending_end.is_none() {
            if let Some(silence) = self.v.settings.silence {
                consider(self.last_voice + silence);
            }
            if let Some(t) = self.max_call_at {
                consider(t);
            }
            if let Some(t) = self.session_end_at {
                consider(t);
            }
        }
        d
    }

    async fn on_timer(&mut self) {
        if self.hanging_up {
            return;
        }
        let now = Instant::now();
        if self.switch.is_some_and(|sw| sw.at() <= now) {
            return self.planned_switch().await;
        }
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
        if self.session_end_at.is_some_and(|t| now >= t) {
            self.session_end_at = None;
            let cap = self.v.settings.session_cap().map(|d| d.as_secs() / 60);
            self.ctl.record("session-limit", json!({ "session_cap_mins": cap }));
            return self.say_goodbye("The call has reached its time limit. Say a short, polite goodbye now.").await;
        }
        let Some(silence) = self.v.settings.silence else { return };
        // The agent speaking is no silence of the caller's.
        let playing = self.ctl.queued();
        if !playing.is_zero() || self.asks.active {
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
            self.ask(Ask { msgs, speech: true }).await;
        } else {
            self.ctl.record("silence", json!({ "secs": silence.as_secs(), "action": "end" }));
            self.say_goodbye("The caller is not responding. Say a short, polite goodbye now.").await;
        }
    }

    async fn say_goodbye(&mut self, instruction: &str) {
        self.end_after_goodbye(Ending::HangUp("polite end"));
        // Through the same queue as every ask: sent now, an answer already running would
        // refuse it.
        let msgs = self.v.wire.speak(instruction);
        self.ask(Ask { msgs, speech: true }).await;
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
        if self.switch.is_some() && !is_final(&reason) {
            // The connection went as announced, before we moved: the planned move, now.
            return self.planned_switch().await;
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

    /// When to say goodbye before the provider's session cap.
    fn session_limit(&self) -> Option<Instant> {
        let cap = self.v.settings.session_cap()?;
        Some(Instant::now() + cap.saturating_sub(SESSION_MARGIN))
    }

    /// The move `goAway` asked for; it does not count as the one reconnect a lost connection gets.
    async fn planned_switch(&mut self) {
        self.switch = None;
        self.switched_at = Some(Instant::now());
        Box::pin(self.reconnect()).await;
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
                // A new OpenAI session, a new cap (it has none of the old one's context either).
                if self.session_end_at.is_some() {
                    self.session_end_at = self.session_limit();
                }
                // Tool calls of the old connection: their results would name ids the new one
                // never issued (Gemini closes with 1007 for that, §B6), so they are dropped.
                if !self.tools_in_flight.is_empty() {
                    let ids: Vec<String> = self.tools_in_flight.iter().cloned().collect();
                    self.ctl.record(
                        "tool-results-dropped",
                        json!({ "ids": ids, "reason": "provider connection replaced" }),
                    );
                    self.cancelled_tools.extend(ids);
                }
                // No turn is in progress on a new connection.
                self.turn_audio = false;
                self.dropping_turn = false;
                // Nothing runs on a new connection: what waited for an answer to end goes now.
                if let Some(msgs) = self.asks.done() {
                    // As after an answer's end: audio from here on is the goodbye's, if any.
                    if let Some(end) = self.pending_end.as_mut() {
                        end.spoke = false;
                    }
                    Box::pin(self.send_all(msgs)).await;
                }
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
/// (Gemini: 1007 bad key or request, quota exhaustion). Gemini's 1008 is classified by its
/// reason (§B9): an unknown model or a disabled API is final, but 1008 is reportedly also
/// routine session expiry, which a resumed connection outlives.
fn is_final(reason: &str) -> bool {
    let lower = reason.to_ascii_lowercase();
    let refused = ["not found", "not supported", "disabled", "denied", "billing"];
    ["(1007", "quota", "resource_exhausted", "api key", "permission"].iter().any(|w| lower.contains(w))
        || (lower.contains("(1008") && refused.iter().any(|w| lower.contains(w)))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(text: &str, speech: bool) -> Ask {
        Ask { msgs: vec![text.to_string()], speech }
    }

    #[test]
    fn an_ask_waits_for_the_running_answer_and_a_refused_one_is_sent_again() {
        let mut a = Asks::default();
        assert_eq!(a.ask(ask("greet", true)), Some(vec!["greet".to_string()]));
        // VAD started an answer first: the greeting was refused, and goes after that answer.
        a.busy();
        assert_eq!(a.ask(ask("respond", false)), None, "nothing while an answer runs");
        assert_eq!(a.done(), Some(vec!["greet".to_string()]), "the greeting, not the bare ask it covers");
        assert_eq!(a.done(), None);
        // The time-limit goodbye while an answer runs: after it, and it wins over a bare ask.
        a.started();
        assert_eq!(a.ask(ask("goodbye", true)), None);
        assert_eq!(a.ask(ask("respond", false)), None);
        assert_eq!(a.done(), Some(vec!["goodbye".to_string()]));
        a.started();
        assert_eq!(a.ask(ask("respond", false)), None);
        assert_eq!(a.done(), Some(vec!["respond".to_string()]));
    }

    #[test]
    fn a_gemini_1008_is_final_only_when_its_reason_is_a_refusal() {
        let closed = |reason: &str| format!("provider closed the connection ({reason})");
        assert!(is_final(&closed("1008: models/x is not found for API version v1beta, or is not supported")));
        assert!(is_final(&closed("1008: Generative Language API has not been used in project 1 or it is disabled")));
        assert!(!is_final(&closed("1008: session expired")), "expiry: the one reconnect may resume it");
        assert!(is_final(&closed("1007: API key not valid. Please pass a valid API key.")));
        assert!(!is_final(&closed("1011: Internal error encountered.")));
    }
}
