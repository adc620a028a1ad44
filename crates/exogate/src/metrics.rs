//! `GET /metrics`: the gateway's counters in the Prometheus (OpenMetrics) text format. Calls by
//! agent and outcome, media each way, marks, clears, bad messages, agent failures; the call log's
//! queue and drops, and refused connections, read when scraped. Labels are agent ids and stop
//! reasons (both bounded: an unknown `agentId` is served by the default agent).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
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
    agent_failures: Family<AgentLabel, Counter>,
    write_queue: Gauge,
    writes_dropped: Gauge,
    refused: Family<ReasonLabel, Gauge>,
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
            write_queue: Gauge::default(),
            writes_dropped: Gauge::default(),
            refused: Family::default(),
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
        registry.register("agent_failures", "Agents that failed to start or mid-call", m.agent_failures.clone());
        registry.register("call_log_queue", "Call-log writes waiting", m.write_queue.clone());
        registry.register("call_log_writes_dropped", "Call-log writes dropped (queue full)", m.writes_dropped.clone());
        registry.register("refused", "Connections and requests refused, by reason", m.refused.clone());
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
    }

    pub fn agent_failed(&self, agent: &str) {
        self.agent_failures.get_or_create(&AgentLabel { agent: agent.to_string() }).inc();
    }

    /// The text to serve, with the gauges read now.
    pub fn render(&self, queued: usize, dropped: u64, refused: &serde_json::Value) -> String {
        self.write_queue.set(queued as i64);
        self.writes_dropped.set(dropped as i64);
        if let Some(by_reason) = refused.as_object() {
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
