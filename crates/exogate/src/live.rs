//! Calls in progress on this gateway, for the console's live page and its hang-up and transfer
//! buttons: who is on the line, which agent, for how long, and how loud each side is now.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use serde::Serialize;
use tokio::time::Instant;

use crate::media::CallControl;

/// More calls than any one gateway carries; past it a call runs unlisted (and is counted).
const MAX_LIVE: usize = 100_000;

/// What an operator asked of a live call.
#[derive(Debug, Clone)]
pub enum Operator {
    HangUp,
    Transfer(Option<String>),
}

pub struct LiveCall {
    pub id: String,
    pub call_sid: Option<String>,
    pub stream_sid: String,
    pub from: Option<String>,
    pub to: Option<String>,
    pub started_at: String,
    pub sample_rate: u32,
    started: Instant,
    agent: Mutex<String>,
    direction: Mutex<&'static str>,
    /// A call we placed has its row from before the stream: the id the call log knows it by.
    row_id: Mutex<Option<String>>,
    /// Peak of the latest frame each way, 0..=32768.
    caller_peak: AtomicU32,
    bot_peak: AtomicU32,
    /// When (ms into the call) the bot's audio sent so far has played out.
    bot_until_ms: AtomicU64,
    frames_in: AtomicU64,
    frames_out: AtomicU64,
    ctl: CallControl,
}

/// One row of `GET /api/live`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LiveView {
    pub id: String,
    pub call_sid: Option<String>,
    pub stream_sid: String,
    pub from: Option<String>,
    pub to: Option<String>,
    pub direction: &'static str,
    pub agent: String,
    pub started_at: String,
    pub duration_ms: u64,
    pub sample_rate: u32,
    /// The latest frame's peak, 0..1.
    pub caller_level: f32,
    pub bot_level: f32,
    pub frames_in: u64,
    pub frames_out: u64,
}

pub struct NewLiveCall {
    pub id: String,
    pub call_sid: Option<String>,
    pub stream_sid: String,
    pub from: Option<String>,
    pub to: Option<String>,
    pub agent: String,
    pub sample_rate: u32,
    /// The call log's id when the stream names it (`callLogId`, from our dynamic URL).
    pub row_id: Option<String>,
}

impl LiveCall {
    pub(crate) fn new(c: NewLiveCall, ctl: CallControl) -> Self {
        Self {
            id: c.id,
            call_sid: c.call_sid,
            stream_sid: c.stream_sid,
            from: c.from,
            to: c.to,
            started_at: crate::store::now_text(),
            sample_rate: c.sample_rate,
            started: Instant::now(),
            agent: Mutex::new(c.agent),
            direction: Mutex::new("incoming"),
            row_id: Mutex::new(c.row_id),
            caller_peak: AtomicU32::new(0),
            bot_peak: AtomicU32::new(0),
            bot_until_ms: AtomicU64::new(0),
            frames_in: AtomicU64::new(0),
            frames_out: AtomicU64::new(0),
            ctl,
        }
    }

    pub fn set_agent(&self, agent: &str) {
        if let Ok(mut a) = self.agent.lock() {
            agent.clone_into(&mut a);
        }
    }

    /// The id the call log knows the call by.
    pub fn set_row_id(&self, row_id: &str) {
        if let Ok(mut r) = self.row_id.lock() {
            *r = Some(row_id.to_string());
        }
    }

    /// A call we placed.
    pub fn set_outbound(&self) {
        if let Ok(mut d) = self.direction.lock() {
            *d = "outbound-api";
        }
    }

    /// An id the call log finds the call by: its row's id once known, else its CallSid or its
    /// stream's sid (`GET /api/calls/{id}` takes either; the session's own id may never be a row's).
    pub fn call_id(&self) -> String {
        self.row_id
            .lock()
            .ok()
            .and_then(|r| r.clone())
            .or_else(|| self.call_sid.clone())
            .unwrap_or_else(|| self.stream_sid.clone())
    }

    pub fn caller_frame(&self, pcm: &[u8]) {
        self.caller_peak.store(peak(pcm), Ordering::Relaxed);
        self.frames_in.fetch_add(1, Ordering::Relaxed);
    }

    /// A chunk of the bot's that Exotel plays until `until`.
    pub fn bot_frame(&self, pcm: &[u8], until: Instant) {
        self.bot_peak.store(peak(pcm), Ordering::Relaxed);
        let until_ms = until.saturating_duration_since(self.started).as_millis() as u64;
        self.bot_until_ms.store(until_ms, Ordering::Relaxed);
        self.frames_out.fetch_add(1, Ordering::Relaxed);
    }

    /// Exotel dropped what it had not played.
    pub fn bot_cleared(&self) {
        self.bot_until_ms.store(0, Ordering::Relaxed);
    }

    pub fn operator(&self, op: Operator) {
        self.ctl.send(crate::media::OutCmd::Operator(op));
    }

    pub fn view(&self) -> LiveView {
        let level = |p: &AtomicU32| p.load(Ordering::Relaxed) as f32 / 32768.0;
        let duration_ms = self.started.elapsed().as_millis() as u64;
        // Once its audio has played out the bot is silent, whatever its last chunk's peak was.
        let bot_playing = duration_ms < self.bot_until_ms.load(Ordering::Relaxed);
        LiveView {
            id: self.call_id(),
            call_sid: self.call_sid.clone(),
            stream_sid: self.stream_sid.clone(),
            from: self.from.clone(),
            to: self.to.clone(),
            direction: self.direction.lock().map_or("incoming", |d| *d),
            agent: self.agent.lock().map(|a| a.clone()).unwrap_or_default(),
            started_at: self.started_at.clone(),
            duration_ms,
            sample_rate: self.sample_rate,
            caller_level: level(&self.caller_peak),
            bot_level: if bot_playing { level(&self.bot_peak) } else { 0.0 },
            frames_in: self.frames_in.load(Ordering::Relaxed),
            frames_out: self.frames_out.load(Ordering::Relaxed),
        }
    }
}

/// A frame's peak, from every fourth sample: a meter, not a measurement.
fn peak(pcm: &[u8]) -> u32 {
    pcm.chunks_exact(8).map(|b| u32::from(i16::from_le_bytes([b[0], b[1]]).unsigned_abs())).max().unwrap_or(0)
}

#[derive(Default)]
pub struct LiveCalls {
    calls: RwLock<HashMap<String, Arc<LiveCall>>>,
    /// Calls that ran unlisted because the map was full.
    pub unlisted: AtomicU64,
}

impl LiveCalls {
    pub fn add(&self, call: Arc<LiveCall>) {
        let Ok(mut calls) = self.calls.write() else { return };
        if calls.len() >= MAX_LIVE {
            self.unlisted.fetch_add(1, Ordering::Relaxed);
            return;
        }
        calls.insert(call.id.clone(), call);
    }

    pub fn remove(&self, id: &str) {
        if let Ok(mut calls) = self.calls.write() {
            calls.remove(id);
        }
    }

    /// By our id, Exotel's CallSid or the stream's sid.
    pub fn find(&self, id: &str) -> Option<Arc<LiveCall>> {
        let calls = self.calls.read().ok()?;
        calls.get(id).cloned().or_else(|| {
            calls
                .values()
                .find(|c| c.call_sid.as_deref() == Some(id) || c.stream_sid == id || c.call_id() == id)
                .cloned()
        })
    }

    /// Newest first.
    pub fn views(&self) -> Vec<LiveView> {
        let mut v: Vec<LiveView> =
            self.calls.read().map(|c| c.values().map(|c| c.view()).collect()).unwrap_or_default();
        v.sort_by(|a, b| a.duration_ms.cmp(&b.duration_ms).then_with(|| a.id.cmp(&b.id)));
        v
    }
}
