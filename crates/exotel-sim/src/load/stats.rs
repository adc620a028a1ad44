//! Counting: latency histograms shared by all calls (sharded so worker threads rarely meet on a
//! lock), each call's own tallies, and the run's [`LoadReport`].

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Latencies are in µs; anything past a minute is recorded as a minute.
const MAX_US: u64 = 60_000_000;
const SHARDS: usize = 8;
/// Error texts kept for the report; the counts are complete.
pub const ERRORS_KEPT: usize = 5;

/// Two significant digits: ±1% is plenty for latencies printed in ms with two decimals, and the
/// counts array stays small (≈18 KiB), which matters when every record is a cache miss.
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_US, 2).expect("static histogram bounds are valid")
}

/// The three distributions, for frames sent inside the steady window.
#[derive(Debug, Clone)]
pub struct Hists {
    /// Per echoed frame: received − sent.
    pub echo: Histogram<u64>,
    /// Per received chunk: received − sent of the newest frame in it.
    pub newest: Histogram<u64>,
    /// Per sent frame: how late we sent it against its schedule.
    pub send_lag: Histogram<u64>,
}

impl Default for Hists {
    fn default() -> Self {
        Self { echo: histogram(), newest: histogram(), send_lag: histogram() }
    }
}

impl Hists {
    fn add(&mut self, other: &Hists) {
        // Same bounds everywhere, so adding cannot fail.
        let _ = self.echo.add(&other.echo);
        let _ = self.newest.add(&other.newest);
        let _ = self.send_lag.add(&other.send_lag);
    }
}

/// [`Hists`] behind a few locks; a call always uses the shard of its index.
#[derive(Debug)]
pub struct SharedHists(Vec<Mutex<Hists>>);

impl Default for SharedHists {
    fn default() -> Self {
        Self((0..SHARDS).map(|_| Mutex::new(Hists::default())).collect())
    }
}

impl SharedHists {
    pub fn with<R>(&self, call: usize, f: impl FnOnce(&mut Hists) -> R) -> R {
        let mut guard = self.0[call % SHARDS].lock().unwrap_or_else(|e| e.into_inner());
        f(&mut guard)
    }

    pub fn merged(&self) -> Hists {
        let mut all = Hists::default();
        for shard in &self.0 {
            all.add(&shard.lock().unwrap_or_else(|e| e.into_inner()));
        }
        all
    }
}

pub fn record(h: &mut Histogram<u64>, us: u64) {
    h.saturating_record(us.clamp(1, MAX_US));
}

/// How a call ended, when it did not end well.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// No WebSocket session (refused, timed out, handshake rejected).
    Connect(String),
    /// The server closed or dropped the connection before we sent `stop`.
    ClosedEarly(String),
    /// A send failed or stalled past its limit.
    Send(String),
}

/// One call's counters; the run adds them up.
#[derive(Debug, Default, Clone)]
pub struct CallTally {
    pub failure: Option<Failure>,
    /// Frames sent in the steady window; those that carried a stamp; those whose stamp came back.
    pub frames_sent: u64,
    pub frames_stamped: u64,
    pub frames_echoed: u64,
    /// Over the whole call.
    pub frames_sent_total: u64,
    pub chunks_received: u64,
    pub bytes_received: u64,
    /// Stamped blocks carrying another call's index: audio crossed between calls.
    pub blocks_foreign: u64,
    pub marks_echoed: u64,
    pub clears_received: u64,
    pub violations: BTreeMap<&'static str, u64>,
    pub violation_examples: Vec<String>,
}

impl CallTally {
    pub fn violation(&mut self, rule: &'static str, detail: impl FnOnce() -> String) {
        *self.violations.entry(rule).or_default() += 1;
        if self.violation_examples.len() < ERRORS_KEPT {
            self.violation_examples.push(format!("{rule}: {}", detail()));
        }
    }

    pub fn ok(&self) -> bool {
        self.failure.is_none() && self.violations.is_empty()
    }
}

/// p50/p90/p99/max in µs over `count` samples (all 0 when there are none).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Percentiles {
    pub count: u64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
}

impl Percentiles {
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        Self {
            count: h.len(),
            p50_us: h.value_at_quantile(0.50),
            p90_us: h.value_at_quantile(0.90),
            p99_us: h.value_at_quantile(0.99),
            max_us: h.max(),
        }
    }

    fn line(&self) -> String {
        if self.count == 0 {
            return "no samples".into();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        format!(
            "p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2} ms  ({} samples)",
            ms(self.p50_us),
            ms(self.p90_us),
            ms(self.p99_us),
            ms(self.max_us),
            self.count
        )
    }
}

/// Failed calls by cause. A call with violations that otherwise ran fine counts under
/// `violations`; a call that also failed counts under its failure only.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FailureCounts {
    pub connect: usize,
    pub closed_early: usize,
    pub send: usize,
    pub violations: usize,
}

/// CPU of a process over the steady window, and its memory.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ProcessUsage {
    /// Average cores busy over the window (1.0 = one core): `user_cores + system_cores`.
    pub cores: f64,
    /// In the process's own code.
    pub user_cores: f64,
    /// In the kernel on its behalf. Over loopback this includes the TCP receive processing of
    /// the peer's sockets for every segment sent (the sender's context runs it).
    pub system_cores: f64,
    /// `cores × 1000 / calls live in the window`.
    pub millicores_per_call: Option<f64>,
    /// VmRSS when the window started and ended.
    pub rss_steady_start_kib: u64,
    pub rss_steady_end_kib: u64,
}

/// The server's figures, when its pid was given.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ServerUsage {
    pub pid: u32,
    #[serde(flatten)]
    pub usage: ProcessUsage,
    /// VmRSS before the first connection.
    pub rss_before_kib: u64,
    /// `(rss_steady_end − rss_before) / calls live in the window`.
    pub rss_per_call_kib: Option<f64>,
}

/// The steady window: every call that connected is live for all of it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Window {
    /// Seconds from the first connection attempt to the window's start.
    pub starts_at_s: f64,
    pub secs: f64,
    pub calls_live_at_start: usize,
    pub calls_live_at_end: usize,
}

impl Window {
    /// The divisor for per-call figures: calls live across the window (the mean of both ends).
    pub fn calls(&self) -> f64 {
        (self.calls_live_at_start + self.calls_live_at_end) as f64 / 2.0
    }
}

/// What `sim load` found. Frame, latency and CPU figures cover the steady window only.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LoadReport {
    /// The WebSocket URL dialled, credentials redacted.
    pub target: String,
    pub calls: usize,
    pub calls_ok: usize,
    pub calls_failed: usize,
    pub failures: FailureCounts,
    /// The first few failure texts.
    pub errors: Vec<String>,
    pub sample_rate: u32,
    pub frame_ms: u32,
    pub ramp_per_sec: f64,
    pub warmup_s: f64,
    pub window: Window,
    pub frames_sent: u64,
    /// Frames that carried at least one stamp (all of them unless a frame is under 320 bytes).
    pub frames_stamped: u64,
    /// Stamped frames whose stamp came back to the call that sent it.
    pub frames_echoed: u64,
    /// `frames_echoed / frames_stamped`.
    pub echo_ratio: f64,
    pub frames_sent_total: u64,
    pub chunks_received_total: u64,
    pub audio_bytes_received_total: u64,
    pub blocks_foreign: u64,
    pub marks_echoed: u64,
    pub clears_received: u64,
    /// Per frame: received − sent.
    pub echo_latency: Percentiles,
    /// Per chunk: received − sent of the newest frame in it.
    pub newest_frame_delay: Percentiles,
    /// Per frame: how far behind schedule we sent it (our own health, not the server's).
    pub send_lag: Percentiles,
    /// Broken Exotel rules (validate.rs rule ids) over the whole run, by rule.
    pub violations: BTreeMap<String, u64>,
    pub violation_examples: Vec<String>,
    pub loadgen: ProcessUsage,
    pub server: Option<ServerUsage>,
    /// Reasons the figures may not describe a steady state (empty when they do).
    pub warnings: Vec<String>,
}

impl LoadReport {
    /// Adds one finished call.
    pub fn add_call(&mut self, index: usize, t: CallTally) {
        match &t.failure {
            None if t.violations.is_empty() => self.calls_ok += 1,
            None => {
                self.calls_failed += 1;
                self.failures.violations += 1;
            }
            Some(f) => {
                self.calls_failed += 1;
                let text = match f {
                    Failure::Connect(e) => {
                        self.failures.connect += 1;
                        format!("connect: {e}")
                    }
                    Failure::ClosedEarly(e) => {
                        self.failures.closed_early += 1;
                        format!("closed before stop: {e}")
                    }
                    Failure::Send(e) => {
                        self.failures.send += 1;
                        format!("send: {e}")
                    }
                };
                if self.errors.len() < ERRORS_KEPT {
                    self.errors.push(format!("call {index}: {text}"));
                }
            }
        }
        self.frames_sent += t.frames_sent;
        self.frames_stamped += t.frames_stamped;
        self.frames_echoed += t.frames_echoed;
        self.frames_sent_total += t.frames_sent_total;
        self.chunks_received_total += t.chunks_received;
        self.audio_bytes_received_total += t.bytes_received;
        self.blocks_foreign += t.blocks_foreign;
        self.marks_echoed += t.marks_echoed;
        self.clears_received += t.clears_received;
        for (rule, n) in t.violations {
            *self.violations.entry(rule.to_string()).or_default() += n;
        }
        for e in t.violation_examples {
            if self.violation_examples.len() < ERRORS_KEPT {
                self.violation_examples.push(format!("call {index}: {e}"));
            }
        }
    }

    pub fn set_latencies(&mut self, h: &Hists) {
        self.echo_latency = Percentiles::of(&h.echo);
        self.newest_frame_delay = Percentiles::of(&h.newest);
        self.send_lag = Percentiles::of(&h.send_lag);
        self.echo_ratio = ratio(self.frames_echoed, self.frames_stamped);
    }

    /// Flags runs whose figures are not a clean steady state: the generator fell behind its
    /// own schedule (it is short of CPU, and its timestamps carry its own queueing), or calls
    /// were still connecting when the window opened.
    pub fn check_steady(&mut self) {
        let frame_us = u64::from(self.frame_ms) * 1000;
        if self.send_lag.p99_us > frame_us {
            self.warnings.push(format!(
                "the load generator fell behind: send lag p99 {:.1} ms is over one frame ({} ms); it is short of \
                 CPU and its latencies include its own queueing (try fewer calls, --threads, or 100 ms frames)",
                self.send_lag.p99_us as f64 / 1000.0,
                self.frame_ms
            ));
        }
        let connected = self.calls - self.failures.connect;
        if self.window.calls_live_at_start < connected
            && self.window.calls_live_at_end > self.window.calls_live_at_start
        {
            self.warnings.push(format!(
                "{} of {connected} calls that connected were not live when the window opened (slow handshakes; a \
                 longer --warmup or slower --ramp helps); per-call figures divide by the mean of {} and {} live calls",
                connected - self.window.calls_live_at_start,
                self.window.calls_live_at_start,
                self.window.calls_live_at_end
            ));
        }
    }

    pub fn violation_count(&self) -> u64 {
        self.violations.values().sum()
    }

    /// Everything went as it should: every call ran, no rule broken.
    pub fn ok(&self) -> bool {
        self.calls_failed == 0 && self.violations.is_empty()
    }

    pub fn summary(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "sim load: {} calls -> {} ({} Hz, {} ms frames, ramp {}/s, warmup {:.1} s)",
            self.calls, self.target, self.sample_rate, self.frame_ms, self.ramp_per_sec, self.warmup_s
        );
        let _ = writeln!(s, "  calls:      {} ok, {} failed {:?}", self.calls_ok, self.calls_failed, self.failures);
        for e in &self.errors {
            let _ = writeln!(s, "              {e}");
        }
        let w = &self.window;
        let _ = writeln!(
            s,
            "  window:     {:.1} s from +{:.1} s; {} calls live at its start, {} at its end",
            w.secs, w.starts_at_s, w.calls_live_at_start, w.calls_live_at_end
        );
        let _ = writeln!(
            s,
            "  frames:     {} sent, {} echoed ({:.2}%), {} foreign blocks, {} marks echoed",
            self.frames_sent,
            self.frames_echoed,
            self.echo_ratio * 100.0,
            self.blocks_foreign,
            self.marks_echoed
        );
        let _ = writeln!(s, "  echo latency:       {}", self.echo_latency.line());
        let _ = writeln!(s, "  newest-frame delay: {}", self.newest_frame_delay.line());
        let _ = writeln!(s, "  send lag (ours):    {}", self.send_lag.line());
        if self.violations.is_empty() {
            let _ = writeln!(s, "  violations: none");
        } else {
            let _ = writeln!(s, "  violations: {:?}", self.violations);
            for e in &self.violation_examples {
                let _ = writeln!(s, "              {e}");
            }
        }
        let mc = |m: Option<f64>| m.map_or("-".into(), |m| format!("{m:.3}"));
        let l = &self.loadgen;
        let _ = writeln!(
            s,
            "  loadgen:    {:.3} cores ({:.3} user + {:.3} system) = {} millicores/call, RSS {} KiB",
            l.cores,
            l.user_cores,
            l.system_cores,
            mc(l.millicores_per_call),
            l.rss_steady_end_kib
        );
        if let Some(sv) = &self.server {
            let _ = writeln!(
                s,
                "  server {}: {:.3} cores ({:.3} user + {:.3} system) = {} millicores/call; RSS {} KiB before, {} -> {} KiB in the window = {} KiB/call",
                sv.pid,
                sv.usage.cores,
                sv.usage.user_cores,
                sv.usage.system_cores,
                mc(sv.usage.millicores_per_call),
                sv.rss_before_kib,
                sv.usage.rss_steady_start_kib,
                sv.usage.rss_steady_end_kib,
                sv.rss_per_call_kib.map_or("-".into(), |k| format!("{k:.1}"))
            );
        }
        for w in &self.warnings {
            let _ = writeln!(s, "  WARNING: {w}");
        }
        s
    }
}

pub fn ratio(num: u64, den: u64) -> f64 {
    if den == 0 { 0.0 } else { num as f64 / den as f64 }
}

impl ProcessUsage {
    /// From CPU readings at both ends of the window, and VmRSS at both ends.
    pub fn new(cores: (f64, f64), calls: f64, rss_start_kib: u64, rss_end_kib: u64) -> Self {
        let (user_cores, system_cores) = cores;
        let total = user_cores + system_cores;
        Self {
            cores: total,
            user_cores,
            system_cores,
            millicores_per_call: millicores_per_call(total, calls),
            rss_steady_start_kib: rss_start_kib,
            rss_steady_end_kib: rss_end_kib,
        }
    }
}

/// `cores × 1000 / calls`, when there were calls.
pub fn millicores_per_call(cores: f64, calls: f64) -> Option<f64> {
    (calls > 0.0).then(|| cores * 1000.0 / calls)
}

/// `(rss_end − rss_before) / calls`, when there were calls.
pub fn rss_per_call_kib(before: u64, end: u64, calls: f64) -> Option<f64> {
    (calls > 0.0).then(|| (end as f64 - before as f64) / calls)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_known_distribution() {
        let mut h = histogram();
        for us in 1..=1000 {
            record(&mut h, us);
        }
        let p = Percentiles::of(&h);
        assert_eq!(p.count, 1000);
        let close = |got: u64, want: u64| (got as f64 - want as f64).abs() / want as f64 <= 0.01;
        for (got, want) in [(p.p50_us, 500), (p.p90_us, 900), (p.p99_us, 990), (p.max_us, 1000)] {
            assert!(close(got, want), "{got} vs {want}: {p:?}");
        }
        // Small values are exact.
        let mut small = histogram();
        for us in [10, 20, 30, 40] {
            record(&mut small, us);
        }
        assert_eq!(Percentiles::of(&small).p50_us, 20);
        assert_eq!(Percentiles::of(&histogram()), Percentiles::default());
        // Out of range values are clamped, not lost.
        record(&mut h, 0);
        record(&mut h, u64::MAX);
        let p = Percentiles::of(&h);
        assert_eq!(p.count, 1002);
        assert!(p.max_us >= MAX_US && p.max_us <= MAX_US + MAX_US / 50, "{}", p.max_us);
    }

    #[test]
    fn shards_merge() {
        let shared = SharedHists::default();
        for call in 0..20 {
            shared.with(call, |h| record(&mut h.echo, 1000 + call as u64));
        }
        let all = shared.merged();
        assert_eq!(all.echo.len(), 20);
        assert_eq!(all.echo.min(), 1000);
        assert_eq!(all.echo.max(), 1019);
    }

    #[test]
    fn per_call_maths() {
        assert_eq!(millicores_per_call(0.3, 1000.0), Some(0.3));
        assert_eq!(millicores_per_call(0.3, 0.0), None);
        assert_eq!(rss_per_call_kib(10_000, 110_000, 1000.0), Some(100.0));
        assert_eq!(rss_per_call_kib(10_000, 9_000, 100.0), Some(-10.0));
        assert_eq!(ratio(95, 100), 0.95);
        assert_eq!(ratio(1, 0), 0.0);
        let w = Window { calls_live_at_start: 100, calls_live_at_end: 98, ..Window::default() };
        assert_eq!(w.calls(), 99.0);
        let u = ProcessUsage::new((0.2, 0.1), 1000.0, 5, 6);
        assert!((u.cores - 0.3).abs() < 1e-12);
        assert!((u.millicores_per_call.unwrap() - 0.3).abs() < 1e-12);
    }

    #[test]
    fn unsteady_runs_are_flagged() {
        let mut r = LoadReport { calls: 10, frame_ms: 20, ..LoadReport::default() };
        r.window = Window { calls_live_at_start: 10, calls_live_at_end: 10, ..Window::default() };
        r.send_lag.p99_us = 19_000;
        r.check_steady();
        assert!(r.warnings.is_empty(), "{:?}", r.warnings);
        r.send_lag.p99_us = 25_000;
        r.window.calls_live_at_start = 7;
        r.check_steady();
        assert_eq!(r.warnings.len(), 2, "{:?}", r.warnings);
        assert!(r.warnings[0].contains("fell behind") && r.warnings[1].starts_with("3 of 10"));
        assert!(r.summary().contains("WARNING: the load generator fell behind"));
    }

    #[test]
    fn tallies_add_up() {
        let mut r = LoadReport { calls: 4, ..LoadReport::default() };
        let ok = CallTally { frames_sent: 10, frames_stamped: 10, frames_echoed: 9, ..CallTally::default() };
        r.add_call(0, ok.clone());
        r.add_call(1, ok);
        let mut bad = CallTally { frames_sent: 5, frames_stamped: 5, frames_echoed: 5, ..CallTally::default() };
        bad.violation("chunk-too-small", || "1600 bytes".into());
        bad.violation("chunk-too-small", || "1600 bytes".into());
        r.add_call(2, bad);
        r.add_call(3, CallTally { failure: Some(Failure::Connect("refused".into())), ..CallTally::default() });
        r.set_latencies(&Hists::default());
        assert_eq!((r.calls_ok, r.calls_failed), (2, 2));
        assert_eq!(r.failures, FailureCounts { connect: 1, violations: 1, ..FailureCounts::default() });
        assert_eq!(r.errors, vec!["call 3: connect: refused".to_string()]);
        assert_eq!((r.frames_sent, r.frames_echoed), (25, 23));
        assert!((r.echo_ratio - 0.92).abs() < 1e-9);
        assert_eq!(r.violations.get("chunk-too-small"), Some(&2));
        assert_eq!(r.violation_count(), 2);
        assert_eq!(r.violation_examples.len(), 2);
        assert!(!r.ok());
        let text = r.summary();
        assert!(text.contains("2 ok, 2 failed"), "{text}");
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["echo_latency"]["p99_us"], 0);
        assert_eq!(json["server"], serde_json::Value::Null);
    }
}
