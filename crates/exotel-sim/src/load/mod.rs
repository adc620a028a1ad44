//! `sim load`: many simulated Exotel calls at once against one WebSocket server, measuring what
//! the server costs and how fast it echoes, while staying cheap itself.
//!
//! # Timeline
//!
//! Call `i` is dialled at `epoch + i / ramp_per_sec`. Every call streams media from its own
//! `start` until one shared *media end*, so calls dialled early simply run longer. The **steady
//! window** starts `warmup` after the last call was due to be dialled and lasts `duration`; every
//! call that connected within `warmup` of its turn is live for the whole window, and the window
//! is the only span that counts: frames *sent* in it are the ones whose echoes, latencies and
//! send lag are recorded, and CPU and RSS are read from /proc at its two ends. Media goes on for
//! `drain` after the window so the last window frames' echoes arrive, then each call sends
//! `stop` and closes with 1000.
//!
//! ```text
//!  ramp (N / ramp_per_sec) | warmup |======= steady window (duration) =======| drain | stop
//! ```
//!
//! # Cost
//!
//! Sending is done by one *shard* task per worker thread, each holding the send halves of its
//! calls and a heap of their next frame times: one timer per shard instead of one per call, and
//! each call keeps its own phase so frames are spread over the frame period as real calls' are.
//! A frame is copied from the looped audio, stamped ([`stamp`]), base64-encoded straight into the
//! frame buffer behind room for the WebSocket header ([`wire`]), masked in place and written with
//! one non-blocking `write` ([`ws`]: the generator's own minimal client for `ws://`, which owns
//! the two socket halves separately, so sending and reading never share a lock). Each call has a
//! reader task that only wakes when the server sends something; a received media event is not
//! parsed into a JSON value: its payload string is found and decoded in place. `wss://` goes
//! through tungstenite instead (more per frame, but TLS).
//!
//! Measured on a 2-core VM against `exogate serve` at 1000 calls × 20 ms: ~0.2 cores of the
//! generator's own code and ~0.29 cores of kernel time (≈0.5 millicores per call). Over
//! loopback the kernel time of a `write` includes the receiving socket's TCP processing, so part
//! of what the server would pay on a real network is charged here; the report shows user and
//! system time apart. A shard's wake-ups cost a fixed ~0.04 cores even for a handful of calls,
//! so per-call figures of the generator only mean something from a few hundred calls up.
//!
//! Its timestamps are taken when its tasks run: when it is short of CPU, its own queueing shows
//! up in the latencies, and the report says so (`send_lag`, `warnings`).

mod conn;
mod io;
pub mod proc;
mod shard;
pub mod stamp;
pub mod stats;
pub mod wire;
pub mod ws;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use exotel::SampleRate;
use exotel::redact::redact_url;
use reqwest::Url;
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep_until};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

pub use stats::{FailureCounts, LoadReport, Percentiles, ProcessUsage, ServerUsage, Window};

use self::proc::{CpuSample, Pid, cores_between, rss_kib};
use self::stats::{SharedHists, rss_per_call_kib};
use crate::call::{prepare_ws_url, resolve_dynamic};
use crate::{AudioSource, CallConfig, SimError, Target};

/// The stamp carries the call index in 16 bits.
pub const MAX_CALLS: usize = u16::MAX as usize;

/// A load run. [`Default`] gives 100 calls of a looped 440 Hz tone at 8 kHz in 20 ms frames,
/// ramped at 200 calls/s, 3 s warmup, a 20 s steady window.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// The WebSocket URL, or a dynamic-URL endpoint, resolved once: every call dials the URL it
    /// returned, query included (so a per-call token in it is shared by all calls).
    pub target: Target,
    pub calls: usize,
    /// New calls per second during the ramp.
    pub ramp_per_sec: f64,
    /// The steady window's length.
    pub duration: Duration,
    /// From the last call's dial time to the window's start.
    pub warmup: Duration,
    /// Inbound cadence: 20 (older docs, field notes) or 100 (Exotel's documented ~100 ms); any
    /// value from 10 up.
    pub frame_ms: u32,
    pub sample_rate: SampleRate,
    /// The caller's audio, looped; every 320-byte block gets a stamp over its first 16 bytes.
    pub audio: AudioSource,
    /// The server's process, for its CPU and RSS over the window (Linux /proc).
    pub server_pid: Option<u32>,
    /// Media continues this long after the window so its last frames' echoes arrive.
    pub drain: Duration,
    /// For the dynamic-URL request and for each WebSocket handshake.
    pub connect_timeout: Duration,
    /// Sent in every `start.custom_parameters` (and on the dynamic-URL request).
    pub custom_parameters: BTreeMap<String, String>,
    /// `Authorization: Basic` on each upgrade (userinfo in the URL does the same).
    pub basic_auth: Option<(String, String)>,
}

impl Default for LoadConfig {
    fn default() -> Self {
        Self {
            target: Target::Ws("ws://127.0.0.1:8765/".into()),
            calls: 100,
            ramp_per_sec: 200.0,
            duration: Duration::from_secs(20),
            warmup: Duration::from_secs(3),
            frame_ms: 20,
            sample_rate: SampleRate::Hz8000,
            audio: AudioSource::Tone { hz: 440.0, ms: 1000 },
            server_pid: None,
            drain: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(10),
            custom_parameters: BTreeMap::new(),
            basic_auth: None,
        }
    }
}

impl LoadConfig {
    fn check(&self) -> Result<(), SimError> {
        let bad = |m: String| Err(SimError::Config(m));
        if self.calls == 0 || self.calls > MAX_CALLS {
            return bad(format!("calls must be 1..={MAX_CALLS}, got {}", self.calls));
        }
        if !(self.ramp_per_sec.is_finite() && self.ramp_per_sec > 0.0) {
            return bad(format!("ramp must be a positive number of calls per second, got {}", self.ramp_per_sec));
        }
        if self.frame_ms < 10 {
            return bad(format!("frame_ms must be at least 10, got {}", self.frame_ms));
        }
        if self.duration.is_zero() {
            return bad("the steady window (duration) must be longer than 0".into());
        }
        Ok(())
    }

    fn frame_bytes(&self) -> usize {
        self.frame_ms as usize * self.sample_rate.bytes_per_ms()
    }
}

/// Everything the calls share: where to dial, what to send, the clock and the counters.
struct Plan {
    url: Url,
    redacted: String,
    auth: Option<(String, String)>,
    connect_timeout: Duration,
    /// For `wss://` (tungstenite) only.
    ws_config: WebSocketConfig,
    use_tungstenite: bool,
    account_sid: String,
    custom_parameters: BTreeMap<String, String>,
    rate: SampleRate,
    frame_ms: u32,
    frame: Duration,
    frame_bytes: usize,
    /// The caller audio, a whole number of frames long.
    audio: Vec<u8>,
    /// Stamps' times count from here.
    epoch: Instant,
    /// The steady window in µs since `epoch`: `[start, end)`.
    window_us: (u64, u64),
    media_end: Instant,
    hists: SharedHists,
    live: AtomicUsize,
}

impl Plan {
    fn us(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.epoch).as_micros() as u64
    }

    fn in_window(&self, us: u64) -> bool {
        (self.window_us.0..self.window_us.1).contains(&us)
    }
}

/// Audio looped to a whole number of frames (at least one).
fn loop_audio(mut pcm: Vec<u8>, frame_bytes: usize) -> Vec<u8> {
    if pcm.len() < frame_bytes {
        pcm.resize(frame_bytes, 0);
    }
    pcm.truncate(pcm.len() / frame_bytes * frame_bytes);
    pcm
}

/// Readings at one end of the window.
struct Reading {
    live: usize,
    own_cpu: Option<CpuSample>,
    own_rss: u64,
    server_cpu: Option<CpuSample>,
    server_rss: Option<u64>,
}

fn read_now(plan: &Plan, server: Option<Pid>) -> Reading {
    Reading {
        live: plan.live.load(Ordering::Relaxed),
        own_cpu: CpuSample::take(Pid::SelfProc).ok(),
        own_rss: rss_kib(Pid::SelfProc).unwrap_or(0),
        server_cpu: server.and_then(|p| CpuSample::take(p).ok()),
        server_rss: server.and_then(|p| rss_kib(p).ok()),
    }
}

/// Runs the whole load. `Err` only for a configuration that cannot run (bad audio, bad URL,
/// a dynamic URL that does not answer, an unreadable server pid); failed calls are counted.
pub async fn run_load(cfg: LoadConfig) -> Result<LoadReport, SimError> {
    run(cfg, false).await
}

/// `tungstenite_for_ws`: use the tungstenite path (normally `wss://` only) for `ws://` too.
async fn run(cfg: LoadConfig, tungstenite_for_ws: bool) -> Result<LoadReport, SimError> {
    cfg.check()?;
    let frame_bytes = cfg.frame_bytes();
    let audio = loop_audio(cfg.audio.render(cfg.sample_rate)?, frame_bytes);

    let call_cfg = CallConfig {
        target: cfg.target.clone(),
        sample_rate: cfg.sample_rate,
        custom_parameters: cfg.custom_parameters.clone(),
        basic_auth: cfg.basic_auth.clone(),
        connect_timeout: cfg.connect_timeout,
        ..CallConfig::default()
    };
    let ws_url = match &cfg.target {
        Target::Ws(url) => url.clone(),
        Target::Dynamic(url) => resolve_dynamic(&call_cfg, url, None).await?,
    };
    let (url, auth) = prepare_ws_url(&ws_url, &call_cfg)?;

    let server = cfg.server_pid.map(Pid::Other);
    let server_rss_before = match server {
        Some(pid) => Some(rss_kib(pid).map_err(|e| SimError::Config(format!("server pid {pid:?}: {e}")))?),
        None => None,
    };

    let gap = Duration::from_secs_f64(1.0 / cfg.ramp_per_sec);
    let epoch = Instant::now();
    let last_dial = epoch + gap.mul_f64((cfg.calls - 1) as f64);
    let window_start = last_dial + cfg.warmup;
    let window_end = window_start + cfg.duration;
    let us = |t: Instant| t.saturating_duration_since(epoch).as_micros() as u64;
    let use_tungstenite = tungstenite_for_ws || url.scheme() != "ws";
    let plan = Arc::new(Plan {
        redacted: redact_url(url.as_str()),
        url,
        auth,
        connect_timeout: cfg.connect_timeout,
        // Small buffers: a few thousand sockets each holding 128 KiB would dwarf the server.
        // Each frame is written as soon as it is queued.
        ws_config: WebSocketConfig::default().read_buffer_size(8 * 1024).write_buffer_size(0),
        use_tungstenite,
        account_sid: call_cfg.account_sid.clone(),
        custom_parameters: cfg.custom_parameters.clone(),
        rate: cfg.sample_rate,
        frame_ms: cfg.frame_ms,
        frame: Duration::from_millis(u64::from(cfg.frame_ms)),
        frame_bytes,
        audio,
        epoch,
        window_us: (us(window_start), us(window_end)),
        media_end: window_end + cfg.drain,
        hists: SharedHists::default(),
        live: AtomicUsize::new(0),
    });

    let sampler = {
        let plan = plan.clone();
        tokio::spawn(async move {
            sleep_until(window_start).await;
            let start = read_now(&plan, server);
            sleep_until(window_end).await;
            let end = read_now(&plan, server);
            (start, end)
        })
    };

    // One sending shard per worker thread: the runtime's threads bound the generator's CPU.
    let shards = tokio::runtime::Handle::current().metrics().num_workers().clamp(1, cfg.calls);
    let mut shard_tx = Vec::with_capacity(shards);
    let mut shard_tasks = Vec::with_capacity(shards);
    for n in 0..shards {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let shard = shard::Shard::new(plan.clone(), rx, n, shards, cfg.calls);
        // Unconstrained: a shard polls hundreds of sockets per wake-up and must not be told to
        // yield half-way by the cooperative budget (it would look like back-pressure).
        shard_tasks.push(tokio::spawn(tokio::task::unconstrained(shard.run())));
        shard_tx.push(tx);
    }

    let mut calls = JoinSet::new();
    for i in 0..cfg.calls {
        sleep_until(epoch + gap.mul_f64(i as f64)).await;
        calls.spawn(conn::run(plan.clone(), i, shard_tx[i % shards].clone()));
    }
    // Shards end once every call has ended and dropped its handle.
    drop(shard_tx);
    let mut report = LoadReport {
        target: plan.redacted.clone(),
        calls: cfg.calls,
        sample_rate: cfg.sample_rate.hz(),
        frame_ms: cfg.frame_ms,
        ramp_per_sec: cfg.ramp_per_sec,
        warmup_s: cfg.warmup.as_secs_f64(),
        ..LoadReport::default()
    };
    while let Some(done) = calls.join_next().await {
        match done {
            Ok((index, tally)) => report.add_call(index, tally),
            Err(e) => {
                // A panicking call is a bug here, not the server's doing; still counted.
                let tally = stats::CallTally {
                    failure: Some(stats::Failure::Send(format!("load generator task failed: {e}"))),
                    ..Default::default()
                };
                report.add_call(usize::MAX, tally);
            }
        }
    }
    for task in shard_tasks {
        // A shard only ends after its calls; its send-lag histogram is merged on the way out.
        let _ = task.await;
    }
    report.set_latencies(&plan.hists.merged());

    let (start, end) = sampler.await.map_err(|e| SimError::Config(format!("window sampler failed: {e}")))?;
    report.window = Window {
        starts_at_s: window_start.duration_since(epoch).as_secs_f64(),
        secs: cfg.duration.as_secs_f64(),
        calls_live_at_start: start.live,
        calls_live_at_end: end.live,
    };
    report.check_steady();
    let calls_in_window = report.window.calls();
    if let (Some(a), Some(b)) = (start.own_cpu, end.own_cpu) {
        report.loadgen = ProcessUsage::new(cores_between(a, b), calls_in_window, start.own_rss, end.own_rss);
    }
    if let (Some(pid), Some(before)) = (cfg.server_pid, server_rss_before) {
        match (start.server_cpu, end.server_cpu, start.server_rss, end.server_rss) {
            (Some(a), Some(b), Some(rss_a), Some(rss_b)) => {
                report.server = Some(ServerUsage {
                    pid,
                    usage: ProcessUsage::new(cores_between(a, b), calls_in_window, rss_a, rss_b),
                    rss_before_kib: before,
                    rss_per_call_kib: rss_per_call_kib(before, rss_b, calls_in_window),
                });
            }
            _ => report.errors.push(format!("server pid {pid}: /proc no longer readable in the window (did it exit?)")),
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audio_loops_in_whole_frames() {
        assert_eq!(loop_audio(vec![1; 1000], 320).len(), 960);
        assert_eq!(loop_audio(vec![1; 100], 320), [vec![1; 100], vec![0; 220]].concat());
        assert_eq!(loop_audio(Vec::new(), 640).len(), 640);
    }

    /// The `wss://` path (tungstenite), exercised over plain ws:// against a tiny echo bot.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tungstenite_path_echoes_and_marks() {
        use base64::Engine;
        use base64::engine::general_purpose::STANDARD as B64;
        use futures_util::{SinkExt, StreamExt};
        use tokio_tungstenite::tungstenite::Message;

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}/", listener.local_addr().unwrap());
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                tcp.set_nodelay(true).unwrap();
                tokio::spawn(async move {
                    let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
                    let (mut sid, mut pending, mut n) = (String::new(), Vec::new(), 0);
                    while let Some(Ok(Message::Text(t))) = ws.next().await {
                        let v: serde_json::Value = serde_json::from_str(t.as_str()).unwrap();
                        match v["event"].as_str() {
                            Some("start") => sid = v["stream_sid"].as_str().unwrap().to_string(),
                            Some("media") => {
                                pending.extend(B64.decode(v["media"]["payload"].as_str().unwrap()).unwrap());
                                while pending.len() >= 3200 {
                                    let pcm: Vec<u8> = pending.drain(..3200).collect();
                                    let m = serde_json::json!({"event":"media","stream_sid":sid,"media":{"payload":B64.encode(&pcm)}});
                                    ws.send(Message::Text(m.to_string().into())).await.unwrap();
                                    n += 1;
                                    let mark = serde_json::json!({"event":"mark","stream_sid":sid,"mark":{"name":format!("m{n}")}});
                                    ws.send(Message::Text(mark.to_string().into())).await.unwrap();
                                }
                            }
                            Some("stop") => break,
                            _ => {}
                        }
                    }
                    let _ = ws.close(None).await;
                });
            }
        });
        let cfg = LoadConfig {
            target: Target::Ws(url),
            calls: 3,
            duration: Duration::from_secs(1),
            warmup: Duration::from_millis(300),
            drain: Duration::from_millis(500),
            ..LoadConfig::default()
        };
        let r = run(cfg, true).await.unwrap();
        assert_eq!((r.calls_ok, r.calls_failed), (3, 0), "{:?} {:?}", r.errors, r.violation_examples);
        assert!(r.echo_ratio >= 0.9, "{}", r.echo_ratio);
        assert!(r.marks_echoed >= 3, "{}", r.marks_echoed);
        assert!(r.newest_frame_delay.count > 0);
    }

    #[test]
    fn config_checks() {
        assert!(LoadConfig::default().check().is_ok());
        for bad in [
            LoadConfig { calls: 0, ..LoadConfig::default() },
            LoadConfig { calls: MAX_CALLS + 1, ..LoadConfig::default() },
            LoadConfig { ramp_per_sec: 0.0, ..LoadConfig::default() },
            LoadConfig { ramp_per_sec: f64::NAN, ..LoadConfig::default() },
            LoadConfig { frame_ms: 5, ..LoadConfig::default() },
            LoadConfig { duration: Duration::ZERO, ..LoadConfig::default() },
        ] {
            assert!(matches!(bad.check(), Err(SimError::Config(_))), "{bad:?}");
        }
        let c = LoadConfig { frame_ms: 20, sample_rate: SampleRate::Hz24000, ..LoadConfig::default() };
        assert_eq!(c.frame_bytes(), 960);
    }
}
