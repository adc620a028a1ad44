//! What an AI call costs exogate, against an echo call, and the latency exogate adds between the
//! provider and the caller.
//!
//! `cargo bench -p exogate --bench ai_calls` (knobs: `CALLS` 200, `SECS` 20, `FRAME_MS` 20,
//! `RAMP` 50 calls/s). exogate runs as its own release process (`exogate serve`); this process
//! plays both sides: N simulated Exotel callers and a fake OpenAI Realtime provider that answers
//! at once (1 s of audio after every 2 s of caller audio, sent faster than real time as the real
//! service does). Reported:
//! - exogate's CPU (mcore) and RSS (KiB) per call over the steady window (all N calls live), for
//!   `openai-realtime` calls and for echo calls, and their ratio;
//! - added latency: from the instant the provider starts sending an answer to the instant its
//!   first audio reaches the caller's socket (p50, p99 over every answer of every call).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use exotel::SampleRate;
use exotel_sim::fake_ai::{FakeAi, FakeAiConfig};
use exotel_sim::{AudioSource, CallConfig, CallReport, Target, run_call};

const KEY: &str = "sk-bench";

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// utime + stime of `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let num = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    num(11) + num(12)
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

struct Gateway {
    child: Child,
    http: u16,
    ws: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn gateway() -> Gateway {
    let dir = tempfile::tempdir().expect("tempdir");
    let (http, ws) = (free_port(), free_port());
    let mut child = Command::new(env!("CARGO_BIN_EXE_exogate"))
        .arg("serve")
        .env("HTTP_PORT", http.to_string())
        .env("WS_PORT", ws.to_string())
        .env("BIND_ADDR", "127.0.0.1")
        .env("DATABASE_URL", format!("sqlite://{}", dir.path().join("bench.db").display()))
        .env("CONNS_PER_IP_PER_SEC", "1000000")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("exogate serve starts");
    let client = reqwest::Client::new();
    for _ in 0..200 {
        if client.get(format!("http://127.0.0.1:{http}/health")).send().await.is_ok() {
            return Gateway { child, http, ws, _dir: dir };
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("exogate serve did not come up");
}

struct Run {
    mcore_per_call: f64,
    rss_kib_per_call: f64,
    reports: Vec<(String, CallReport)>,
}

async fn run(gw: &Gateway, agent: &str, calls: u64, secs: u64, frame_ms: u32, ramp: u64) -> Run {
    let idle_rss = rss_kib(gw.child.id());
    let mut tasks = Vec::new();
    for i in 0..calls {
        let mut cfg = CallConfig {
            target: Target::Ws(format!("ws://127.0.0.1:{}/media", gw.ws)),
            sample_rate: SampleRate::Hz8000,
            audio: AudioSource::Tone { hz: 440.0, ms: (secs * 1000 + 4000) as u32 },
            frame_ms,
            idle_tail: Duration::from_millis(500),
            max_tail: Duration::from_secs(3),
            ..CallConfig::default()
        };
        cfg.call_sid = format!("CA-bench-{agent}-{i}");
        cfg.custom_parameters.insert("agentId".into(), agent.into());
        let sid = cfg.call_sid.clone();
        tasks.push(tokio::spawn(async move { (sid, run_call(cfg).await) }));
        tokio::time::sleep(Duration::from_millis(1000 / ramp.max(1))).await;
    }
    // The steady window: every call live.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let pid = gw.child.id();
    let (t0, c0) = (Instant::now(), cpu_ticks(pid));
    tokio::time::sleep(Duration::from_secs(secs.saturating_sub(2).max(1))).await;
    let (t1, c1, rss) = (Instant::now(), cpu_ticks(pid), rss_kib(pid));
    let tick = 100.0; // CLK_TCK on Linux
    let cores = (c1 - c0) as f64 / tick / (t1 - t0).as_secs_f64();
    let mut reports = Vec::new();
    for t in tasks {
        if let Ok((sid, Ok(r))) = t.await {
            reports.push((sid, r));
        }
    }
    Run {
        mcore_per_call: cores * 1000.0 / calls as f64,
        rss_kib_per_call: rss.saturating_sub(idle_rss) as f64 / calls as f64,
        reports,
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    let calls = env("CALLS", 200);
    let secs = env("SECS", 20);
    let frame_ms = env("FRAME_MS", 20) as u32;
    let ramp = env("RAMP", 50);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
    rt.block_on(async {
        let answer = exotel_sim::load_wav(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/audio/caller-order-number-16k.wav"),
            SampleRate::Hz24000,
        )
        .expect("answer audio");
        let one_second = answer[..48_000.min(answer.len())].to_vec();
        let ai = FakeAi::start(
            0,
            FakeAiConfig {
                api_key: KEY.into(),
                answer_pcm24: one_second,
                answer_after: Duration::from_secs(2),
                answers: 10_000,
                ..FakeAiConfig::default()
            },
        )
        .await
        .expect("fake provider");

        // ONLY=ai or ONLY=echo runs one kind of call alone (for profiling exogate).
        let only_ai = std::env::var("ONLY").is_ok_and(|v| v == "ai");
        let echo = if only_ai {
            Run { mcore_per_call: f64::NAN, rss_kib_per_call: f64::NAN, reports: Vec::new() }
        } else {
            let gw = gateway().await;
            let echo = run(&gw, "echo", calls, secs, frame_ms, ramp).await;
            drop(gw);
            echo
        };

        if std::env::var("ONLY").is_ok_and(|v| v == "echo") {
            println!("echo: {:.3} mcore/call, {:.1} KiB/call", echo.mcore_per_call, echo.rss_kib_per_call);
            return;
        }
        let gw = gateway().await;
        let settings =
            serde_json::json!({ "base_url": ai.openai_url(), "api_key": KEY, "instructions": "call {call_sid}." });
        let body = serde_json::json!({ "id": "ai", "kind": "openai-realtime", "settings": settings });
        let made = reqwest::Client::new()
            .post(format!("http://127.0.0.1:{}/api/agents", gw.http))
            .json(&body)
            .send()
            .await
            .expect("create agent");
        assert_eq!(made.status(), 201);
        let ai_run = run(&gw, "ai", calls, secs, frame_ms, ramp).await;
        drop(gw);

        // Each answer's start at the provider → its first audio at the caller.
        let mut latencies = Vec::new();
        let sessions = ai.sessions();
        for (sid, report) in &ai_run.reports {
            let tag = format!("call {sid}.");
            let Some(session) =
                sessions.iter().find(|s| s.setup.as_ref().is_some_and(|v| v.to_string().contains(&tag)))
            else {
                continue;
            };
            for started in &session.answers_started {
                if let Some(at) = report.media_at.iter().find(|t| *t >= started) {
                    latencies.push(*at - *started);
                }
            }
        }
        latencies.sort();
        let ok = |r: &Run| r.reports.iter().filter(|(_, r)| r.violations.is_empty()).count();
        println!(
            "exogate AI calls: {calls} calls, {secs} s, {frame_ms} ms frames at 8 kHz, fake OpenAI Realtime (μ-law)"
        );
        println!();
        println!("| agent | calls clean | mcore/call | RSS KiB/call |");
        println!("|---|---:|---:|---:|");
        for (name, r) in [("echo", &echo), ("openai-realtime", &ai_run)] {
            println!("| {name} | {} / {calls} | {:.3} | {:.1} |", ok(r), r.mcore_per_call, r.rss_kib_per_call);
        }
        println!();
        println!("CPU per AI call / per echo call: {:.2}", ai_run.mcore_per_call / echo.mcore_per_call.max(1e-9));
        println!(
            "provider's first audio → caller: {} answers, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            latencies.len(),
            percentile(&latencies, 0.5).as_secs_f64() * 1000.0,
            percentile(&latencies, 0.99).as_secs_f64() * 1000.0,
            latencies.last().copied().unwrap_or_default().as_secs_f64() * 1000.0
        );
    });
}
