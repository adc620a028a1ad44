//! Interoperability with a real third-party framework: a Pipecat echo bot (tests/interop/,
//! installed by `.ci/pipecat-env.sh`) behind exogate, once with Pipecat's `ExotelFrameSerializer`
//! and once with its `TwilioFrameSerializer`. The simulator plays Exotel.
//!
//! Needs `PIPECAT_PYTHON` (the venv's python; `.ci/run` sets it). Without it these tests say so
//! and pass, so a plain `cargo test` works on a machine without Python.

mod common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{TestGateway, assert_legal, correlation, speech};
use exotel::SampleRate;
use exotel_sim::{AudioSource, CallConfig, Target, run_call};
use serde_json::json;

struct Bot {
    child: Child,
    port: u16,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Drop for Bot {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Bot {
    fn start(serializer: &str) -> Option<Bot> {
        let Ok(python) = std::env::var("PIPECAT_PYTHON") else {
            eprintln!("PIPECAT_PYTHON is not set: skipping the Pipecat interop test (.ci/run sets it)");
            return None;
        };
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/interop/pipecat_echo_bot.py");
        let mut child = Command::new(python)
            .arg(script)
            .args(["--port", "0", "--serializer", serializer, "--log-level", "WARNING"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the Pipecat bot starts");
        let stdout = child.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(port) = line.strip_prefix("READY ") {
                    let _ = ready_tx.send(port.trim().parse::<u16>().unwrap());
                }
                sink.lock().unwrap().push(line);
            }
        });
        let port = ready_rx.recv_timeout(Duration::from_secs(60)).expect("the Pipecat bot says READY");
        Some(Bot { child, port, lines })
    }

    async fn wait_line(&self, prefix: &str) -> String {
        for _ in 0..100 {
            if let Some(l) = self.lines.lock().unwrap().iter().find(|l| l.starts_with(prefix)) {
                return l.clone();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the bot never printed {prefix:?}: {:?}", self.lines.lock().unwrap());
    }
}

async fn bridge(gw: &TestGateway, id: &str, bot: &Bot, protocol: &str) {
    let settings =
        json!({ "url": format!("ws://127.0.0.1:{}/ws", bot.port), "protocol": protocol, "sample_rate": 8000 });
    gw.create_agent(id, "bridge", settings).await;
}

fn call(gw: &TestGateway, agent: &str, audio: AudioSource) -> CallConfig {
    let mut cfg = CallConfig {
        target: Target::Ws(gw.ws_url()),
        sample_rate: SampleRate::Hz8000,
        audio,
        idle_tail: Duration::from_millis(2000),
        ..CallConfig::default()
    };
    cfg.custom_parameters.insert("agentId".into(), agent.into());
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipecat_exotel_serializer_echo_is_byte_exact_and_hangs_up_both_ways() {
    let Some(bot) = Bot::start("exotel") else { return };
    let gw = TestGateway::start().await;
    bridge(&gw, "pipecat", &bot, "exotel").await;

    // Caller hangs up: the bot's echo arrived byte-exact, in legal chunks; the bot's socket closed.
    let audio = speech(SampleRate::Hz8000);
    let report = run_call(call(&gw, "pipecat", AudioSource::Pcm(audio.clone()))).await.unwrap();
    assert_legal(&report);
    // Pipecat holds back its last partial 40 ms (640 bytes) until more audio comes.
    let firm = (audio.len() / 640 - 1) * 640;
    assert!(report.received_pcm.len() >= firm, "{} of {}", report.received_pcm.len(), audio.len());
    assert_eq!(&report.received_pcm[..firm], &audio[..firm], "Pipecat's echo, through exogate, is byte-exact");
    bot.wait_line("END 1").await;

    // Bot hangs up (`*`): its queued audio plays, then Exotel's socket closes with 1000.
    let mut cfg = call(&gw, "pipecat", AudioSource::Tone { hz: 440.0, ms: 6000 });
    cfg.dtmf.push((Duration::from_millis(1500), "*".into()));
    let call_sid = cfg.call_sid.clone();
    let report = run_call(cfg).await.unwrap();
    assert_legal(&report);
    assert!(report.closed_by_bot && report.close_code == Some(1000), "{}", report.summary());
    assert!(report.duration < Duration::from_millis(5900), "{:?}", report.duration);
    let row = gw.call(&call_sid).await;
    assert_eq!(row["agent_note"], "bot closed its socket (1000)");

    // Barge-in (`#`): Pipecat's clear reaches Exotel as `clear`.
    let mut cfg = call(&gw, "pipecat", AudioSource::Tone { hz: 440.0, ms: 3000 });
    cfg.dtmf.push((Duration::from_millis(1000), "#".into()));
    let report = run_call(cfg).await.unwrap();
    assert_legal(&report);
    assert!(report.clears_received >= 1, "{}", report.summary());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipecat_twilio_serializer_runs_on_exotel_unchanged() {
    let Some(bot) = Bot::start("twilio") else { return };
    let gw = TestGateway::start().await;
    bridge(&gw, "pipecat-tw", &bot, "twilio").await;

    let audio = speech(SampleRate::Hz8000);
    let report = run_call(call(&gw, "pipecat-tw", AudioSource::Pcm(audio.clone()))).await.unwrap();
    assert_legal(&report);
    let c = correlation(&audio, &report.received_pcm, 800);
    eprintln!("Pipecat Twilio serializer echo through exogate, after μ-law both ways: correlation {c:.4}");
    assert!(c >= 0.95, "correlation {c}");
    bot.wait_line("END 1").await;

    let mut cfg = call(&gw, "pipecat-tw", AudioSource::Tone { hz: 440.0, ms: 6000 });
    cfg.dtmf.push((Duration::from_millis(1500), "*".into()));
    let report = run_call(cfg).await.unwrap();
    assert_legal(&report);
    assert!(report.closed_by_bot && report.close_code == Some(1000), "{}", report.summary());

    let mut cfg = call(&gw, "pipecat-tw", AudioSource::Tone { hz: 440.0, ms: 3000 });
    cfg.dtmf.push((Duration::from_millis(1000), "#".into()));
    let report = run_call(cfg).await.unwrap();
    assert_legal(&report);
    assert!(report.clears_received >= 1, "{}", report.summary());
}
