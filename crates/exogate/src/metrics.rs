//! `GET /metrics`: the gateway's counters in the Prometheus (OpenMetrics) text format. Calls by
//! agent and outcome, media each way, marks, clears, bad messages, agent failures; the call log's
//! queue and drops, and refused connections, read when scraped. Labels are agent ids and stop
//! reasons (both bounded: an unknown `agentId` is served by the default agent).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AgentLabel {
    pub agent: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndLabels {
    pub agent: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DirectionLabel {
    pub direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TableLabel {
    pub table: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabels {
    pub agent: String,
    /// The agent's kind: `bridge` (the user's bot), `openai-realtime`, `gemini-live`…
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabel {
    pub operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ContactLabels {
    pub campaign: String,
    pub state: String,
}

/// Counters other parts keep themselves, read when scraped.
pub struct Readings<'a> {
    pub queued: usize,
    pub dropped: u64,
    pub refused: &'a serde_json::Value,
    /// `/health`'s `address_tables`.
    pub address_tables: &'a serde_json::Value,
    pub recordings: Option<&'a crate::media::recording::RecordingStats>,
    pub live_unlisted: u64,
    /// Running campaigns' contacts by state.
    pub campaigns: &'a [(String, Vec<(String, i64)>)],
}

/// What a finished call adds.
pub struct CallTotals<'a> {
    pub agent: &'a str,
    pub outcome: &'a str,
    pub frames_in: u64,
    pub bytes_in: u64,
    pub frames_out: u64,
    pub bytes_out: u64,
    pub marks_sent: u64,
    pub marks_played: u64,
    pub clears: u64,
    pub bad_messages: u64,
    /// Agent audio writes that were not an Exotel-legal chunk, re-cut into legal ones.
    pub recut: u64,
    /// From `start` to the first bot audio sent.
    pub first_audio: Option<std::time::Duration>,
}

/// Seconds: 5 ms … ~10 s.
fn latency_buckets() -> impl Iterator<Item = f64> {
    prometheus_client::metrics::histogram::exponential_buckets(0.005, 2.0, 12)
}

pub struct Metrics {
    registry: Registry,
    calls_started: Family<AgentLabel, Counter>,
    calls_ended: Family<EndLabels, Counter>,
    calls_active: Gauge,
    media_messages: Family<DirectionLabel, Counter>,
    media_bytes: Family<DirectionLabel, Counter>,
    marks: Family<DirectionLabel, Counter>,
    clears: Counter,
    bad_messages: Counter,
    agent_failures: Family<FailureLabels, Counter>,
    recut: Counter,
    first_audio: Histogram,
    newest_frame: Histogram,
    dials: Family<OutcomeLabel, Counter>,
    dial_results: Family<OutcomeLabel, Counter>,
    exotel_api: Family<OperationLabel, Histogram>,
    campaign_contacts: Family<ContactLabels, Gauge>,
    recordings: Family<OutcomeLabel, Counter>,
    recording_held: Gauge,
    live_unlisted: Gauge,
    rendering: std::sync::Mutex<()>,
    write_queue: Gauge,
    writes_dropped: Gauge,
    refused: Family<ReasonLabel, Gauge>,
    address_table_overflows: Family<TableLabel, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("exogate");
        let m = Self {
            calls_started: Family::default(),
            calls_ended: Family::default(),
            calls_active: Gauge::default(),
            media_messages: Family::default(),
            media_bytes: Family::default(),
            marks: Family::default(),
            clears: Counter::default(),
            bad_messages: Counter::default(),
            agent_failures: Family::default(),
            recut: Counter::default(),
            first_audio: Histogram::new(latency_buckets()),
            // Per chunk: from the agent handing over its newest audio to the chunk going out.
            newest_frame: Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(0.0005, 2.0, 14)),
            dials: Family::default(),
            dial_results: Family::default(),
            exotel_api: Family::new_with_constructor(|| Histogram::new(latency_buckets())),
            campaign_contacts: Family::default(),
            recordings: Family::default(),
            recording_held: Gauge::default(),
            live_unlisted: Gauge::default(),
            rendering: std::sync::Mutex::new(()),
            write_queue: Gauge::default(),
            writes_dropped: Gauge::default(),
            refused: Family::default(),
            address_table_overflows: Family::default(),
            registry: Registry::default(),
        };
        registry.register("calls_started", "Calls whose stream started, by agent", m.calls_started.clone());
        registry.register("calls_ended", "Calls ended, by agent and stop reason", m.calls_ended.clone());
        registry.register("calls_active", "Calls in progress", m.calls_active.clone());
        registry.register("media_messages", "Media messages, in (caller) and out (agent)", m.media_messages.clone());
        registry.register("media_bytes", "Decoded audio bytes, in and out", m.media_bytes.clone());
        registry.register("marks", "Marks sent to Exotel (out) and echoed played (in)", m.marks.clone());
        registry.register("clears", "Clears sent to Exotel (barge-in)", m.clears.clone());
        registry.register("bad_messages", "Media messages skipped as unreadable", m.bad_messages.clone());
        registry.register(
            "agent_failures",
            "Agents that failed to start or mid-call (bots, AI providers), by agent and kind",
            m.agent_failures.clone(),
        );
        registry.register("audio_recut", "Agent audio writes re-cut into Exotel-legal chunks", m.recut.clone());
        registry.register(
            "first_audio_seconds",
            "From the stream's start to the first bot audio sent",
            m.first_audio.clone(),
        );
        registry.register(
            "newest_frame_delay_seconds",
            "Per chunk sent: from the agent handing over its newest audio to the chunk going to Exotel",
            m.newest_frame.clone(),
        );
        registry.register(
            "dials",
            "Attempts to place a call: accepted by Exotel, refused by it (its error kind), or not sent (invalid, \
             phone-busy, account-busy)",
            m.dials.clone(),
        );
        registry.register("dial_results", "Placed calls' final status from Exotel", m.dial_results.clone());
        registry.register("exotel_api_seconds", "Exotel REST API request time, by operation", m.exotel_api.clone());
        registry.register(
            "campaign_contacts",
            "Contacts of running and paused campaigns, by state",
            m.campaign_contacts.clone(),
        );
        registry.register("recordings", "Call recordings by outcome", m.recordings.clone());
        registry.register(
            "recording_held_bytes",
            "Call audio held for recordings, waiting to be final or to be written",
            m.recording_held.clone(),
        );
        registry.register(
            "live_calls_unlisted",
            "Calls left off the live page (its map was full)",
            m.live_unlisted.clone(),
        );
        registry.register("call_log_queue", "Call-log writes waiting", m.write_queue.clone());
        registry.register("call_log_writes_dropped", "Call-log writes dropped (queue full)", m.writes_dropped.clone());
        registry.register("refused", "Connections and requests refused, by reason", m.refused.clone());
        registry.register(
            "address_table_overflows",
            "A bounded table of addresses behind a limit was full: connection_rate counts the times it was cleared, \
             key_guess the addresses let go",
            m.address_table_overflows.clone(),
        );
        Self { registry, ..m }
    }
}

impl Metrics {
    pub fn call_started(&self, agent: &str) {
        self.calls_started.get_or_create(&AgentLabel { agent: agent.to_string() }).inc();
        self.calls_active.inc();
    }

    pub fn call_ended(&self, t: &CallTotals<'_>) {
        self.calls_active.dec();
        let labels = EndLabels { agent: t.agent.to_string(), outcome: t.outcome.to_string() };
        self.calls_ended.get_or_create(&labels).inc();
        let count = |family: &Family<DirectionLabel, Counter>, direction, n| {
            family.get_or_create(&DirectionLabel { direction }).inc_by(n);
        };
        count(&self.media_messages, "in", t.frames_in);
        count(&self.media_messages, "out", t.frames_out);
        count(&self.media_bytes, "in", t.bytes_in);
        count(&self.media_bytes, "out", t.bytes_out);
        count(&self.marks, "out", t.marks_sent);
        count(&self.marks, "in", t.marks_played);
        self.clears.inc_by(t.clears);
        self.bad_messages.inc_by(t.bad_messages);
        self.recut.inc_by(t.recut);
        if let Some(d) = t.first_audio {
            self.first_audio.observe(d.as_secs_f64());
        }
    }

    pub fn agent_failed(&self, agent: &str, kind: &str) {
        self.agent_failures.get_or_create(&FailureLabels { agent: agent.to_string(), kind: kind.to_string() }).inc();
    }

    /// The histogram writers observe each chunk's newest-frame delay into.
    pub fn newest_frame(&self) -> Histogram {
        self.newest_frame.clone()
    }

    /// A request to place a call: `accepted`, Exotel's error kind, or why we did not send it.
    pub fn dialed(&self, outcome: &str) {
        self.dials.get_or_create(&OutcomeLabel { outcome: outcome.to_string() }).inc();
    }

    /// A placed call's final status (`completed`, `busy`, `no-answer`, `failed`…).
    pub fn dial_result(&self, status: &str) {
        self.dial_results.get_or_create(&OutcomeLabel { outcome: status.to_string() }).inc();
    }

    pub fn exotel_api(&self, operation: &'static str, took: std::time::Duration) {
        self.exotel_api.get_or_create(&OperationLabel { operation }).observe(took.as_secs_f64());
    }

    /// The text to serve, with the gauges read now.
    pub fn render(&self, r: &Readings<'_>) -> String {
        // Two scrapes at once would clear each other's campaigns mid-encode.
        let _one_at_a_time = self.rendering.lock();
        self.write_queue.set(r.queued as i64);
        self.writes_dropped.set(r.dropped as i64);
        self.live_unlisted.set(r.live_unlisted as i64);
        if let Some(s) = r.recordings {
            use std::sync::atomic::Ordering::Relaxed;
            for (outcome, n) in [
                ("started", &s.started),
                ("written", &s.written),
                ("failed", &s.failed),
                ("audio_dropped", &s.dropped),
                ("deleted_by_retention", &s.deleted),
            ] {
                // The counts live with the recorder; the counter follows them (they only grow).
                let counter = self.recordings.get_or_create(&OutcomeLabel { outcome: outcome.into() });
                counter.inc_by(n.load(Relaxed).saturating_sub(counter.get()));
            }
            self.recording_held.set(s.held_bytes() as i64);
        }
        // Only campaigns running or paused now: finished ones leave the exposition.
        self.campaign_contacts.clear();
        for (campaign, states) in r.campaigns {
            for (state, n) in states {
                let labels = ContactLabels { campaign: campaign.clone(), state: state.clone() };
                self.campaign_contacts.get_or_create(&labels).set(*n);
            }
        }
        if let Some(by_table) = r.address_tables.as_object() {
            for (name, n) in by_table {
                let table = name.strip_suffix("_overflows").unwrap_or(name).to_string();
                self.address_table_overflows.get_or_create(&TableLabel { table }).set(n.as_i64().unwrap_or(0));
            }
        }
        if let Some(by_reason) = r.refused.as_object() {
            for (reason, n) in by_reason {
                let n = n.as_i64().unwrap_or(0);
                self.refused.get_or_create(&ReasonLabel { reason: reason.clone() }).set(n);
            }
        }
        let mut out = String::new();
        // Writing to a String can't fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
