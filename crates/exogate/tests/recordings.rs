//! Call recordings: a simulated call's WAV has the caller on the left and the bot on the right,
//! each where the simulated Exotel sent or played it; the API serves it with range requests;
//! agents opt in or out; retention deletes old files; a broken disk never touches the call.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::{TestGateway, assert_echo, speech};
use exogate::config::{RecordingsConfig, Secret};
use exotel::SampleRate;
use exotel_sim::{AudioSource, CallConfig, CallReport, Target, run_call};
use serde_json::json;

const KEY: &str = "recordings-test-key";

async fn gateway(dir: &Path, by_default: bool) -> TestGateway {
    let dir = dir.to_path_buf();
    TestGateway::start_with(move |c| {
        c.api_key = Some(Secret(KEY.into()));
        c.recordings = Some(RecordingsConfig { dir, by_default, retention: Some(Duration::from_secs(86_400)) });
    })
    .await
}

async fn speech_call(gw: &TestGateway, agent: Option<&str>) -> CallReport {
    let rate = SampleRate::Hz8000;
    let url = match agent {
        Some(a) => format!("{}?agentId={a}", gw.ws_url()),
        None => gw.ws_url(),
    };
    let cfg = CallConfig {
        target: Target::Ws(url),
        sample_rate: rate,
        audio: AudioSource::Pcm(speech(rate)),
        idle_tail: Duration::from_millis(1200),
        ..CallConfig::default()
    };
    let report = run_call(cfg).await.expect("the call runs");
    assert!(report.ok(), "{}", report.summary());
    report
}

/// GET with the key; the recording once its file is complete (it is written off the call's path).
async fn recording(gw: &TestGateway, call: &str) -> (u16, Vec<u8>) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        gw.gw.state.store.flush().await;
        let r =
            gw.http.get(gw.http_url(&format!("/api/calls/{call}/recording"))).bearer_auth(KEY).send().await.unwrap();
        let status = r.status().as_u16();
        let body = r.bytes().await.unwrap().to_vec();
        if status == 200 || Instant::now() > deadline {
            return (status, body);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn channels(wav: &[u8]) -> (u32, Vec<f64>, Vec<f64>) {
    let mut r = hound::WavReader::new(std::io::Cursor::new(wav)).expect("a WAV file");
    let spec = r.spec();
    assert_eq!((spec.channels, spec.bits_per_sample), (2, 16));
    let s: Vec<i16> = r.samples::<i16>().map(Result::unwrap).collect();
    let left = s.iter().step_by(2).map(|&v| v as f64).collect();
    let right = s.iter().skip(1).step_by(2).map(|&v| v as f64).collect();
    (spec.sample_rate, left, right)
}

fn samples(pcm: &[u8]) -> Vec<f64> {
    pcm.chunks_exact(2).map(|c| i16::from_le_bytes([c[0], c[1]]) as f64).collect()
}

/// The lag (in samples, `got` later than `want` when positive) with the best normalised
/// correlation within ±`max_lag`, and that correlation.
fn best_lag(want: &[f64], got: &[f64], max_lag: i64) -> (i64, f64) {
    (-max_lag..=max_lag)
        .map(|lag| {
            let (mut ab, mut aa, mut bb) = (0.0, 0.0, 0.0);
            for (i, &a) in want.iter().enumerate() {
                let j = i as i64 + lag;
                if j < 0 || j >= got.len() as i64 {
                    continue;
                }
                let b = got[j as usize];
                ab += a * b;
                aa += a * a;
                bb += b * b;
            }
            (lag, ab / (aa.sqrt() * bb.sqrt()).max(1.0))
        })
        .fold((0, f64::MIN), |best, x| if x.1 > best.1 { x } else { best })
}

/// The bot's audio chunks where the simulated Exotel played them: each starts when it arrives,
/// or when the one before it ends; the clock starts at the first caller frame. Silent chunks
/// (an utterance's padding) are left out: they match anywhere.
fn played_chunks(report: &CallReport, rate: u32) -> Vec<(usize, Vec<f64>)> {
    let t0 = report.first_frame_at.expect("the caller sent audio");
    let pcm = samples(&report.received_pcm);
    let (mut taken, mut end, mut out) = (0usize, 0usize, Vec::new());
    for (size, at) in report.chunk_sizes.iter().zip(&report.media_at) {
        let n = size / 2;
        let arrived = (at.saturating_duration_since(t0).as_secs_f64() * rate as f64) as usize;
        let start = arrived.max(end);
        let chunk = pcm[taken..taken + n].to_vec();
        if chunk.iter().filter(|s| **s != 0.0).count() > n / 2 {
            out.push((start, chunk));
        }
        taken += n;
        end = start + n;
    }
    out
}

/// Where `chunk` best matches `track` near `start` (±`max_lag` samples), and how well.
fn chunk_offset(chunk: &[f64], track: &[f64], start: usize, max_lag: i64) -> (i64, f64) {
    (-max_lag..=max_lag)
        .filter(|lag| start as i64 + lag >= 0 && start as i64 + lag + chunk.len() as i64 <= track.len() as i64)
        .map(|lag| {
            let at = (start as i64 + lag) as usize;
            let (mut ab, mut aa, mut bb) = (0.0, 0.0, 0.0);
            for (a, b) in chunk.iter().zip(&track[at..at + chunk.len()]) {
                ab += a * b;
                aa += a * a;
                bb += b * b;
            }
            (lag, ab / (aa.sqrt() * bb.sqrt()).max(1.0))
        })
        .fold((0, f64::MIN), |best, x| if x.1 > best.1 { x } else { best })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_calls_recording_has_the_caller_left_and_the_echo_right_where_exotel_played_them() {
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(dir.path(), true).await;
    let report = speech_call(&gw, None).await;
    assert_echo(&report.sent_pcm, &report.received_pcm);
    let id = sid_of(&gw).await;
    let r = gw.http.get(gw.http_url(&format!("/api/calls/{id}"))).bearer_auth(KEY).send().await.unwrap();
    let call: serde_json::Value = r.json().await.unwrap();
    let (status, wav) = recording(&gw, &id).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&wav));
    let (rate, left, right) = channels(&wav);
    assert_eq!(rate, 8000);
    let ms20 = 160;

    // The caller: from the first frame on, at the offsets the simulator sent it.
    let (lag, corr) = best_lag(&samples(&report.sent_pcm), &left, 1600);
    assert!(lag.abs() <= ms20, "caller channel is {lag} samples off (corr {corr:.3})");
    assert!(corr > 0.99, "caller channel correlation {corr:.3}");
    // The bot: each echoed chunk where the simulated Exotel played it.
    let placed = played_chunks(&report, rate);
    assert!(placed.len() >= 10, "{} chunks", placed.len());
    for (start, chunk) in &placed {
        let (lag, corr) = chunk_offset(chunk, &right, *start, 400);
        assert!(lag.abs() <= ms20, "a chunk played at sample {start} is recorded {lag} samples off");
        assert!(corr > 0.99, "the chunk at sample {start} is not the bot's audio (corr {corr:.3})");
    }
    // The echo arrives after the caller spoke: the right channel is the left one, later.
    let (echo_lag, _) = best_lag(&left, &right, 8000);
    assert!(echo_lag > 0, "the echo plays after the caller's words ({echo_lag})");
    // As long as the call, give or take the tail.
    let call_ms = call["duration_ms"].as_i64().unwrap() as f64;
    let wav_ms = left.len() as f64 / 8.0;
    assert!((wav_ms - call_ms).abs() < 300.0, "{wav_ms} ms of recording for a {call_ms} ms call");

    // A player seeks with ranges.
    let r = gw
        .http
        .get(gw.http_url(&format!("/api/calls/{id}/recording")))
        .bearer_auth(KEY)
        .header("range", "bytes=44-1043")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.headers()["content-type"], "audio/wav");
    let total = wav.len();
    assert_eq!(r.headers()["content-range"].to_str().unwrap(), format!("bytes 44-1043/{total}"));
    assert_eq!(r.bytes().await.unwrap().as_ref(), &wav[44..1044]);
    // The key (or the console's session) is required.
    let r = gw.http.get(gw.http_url(&format!("/api/calls/{id}/recording"))).send().await.unwrap();
    assert_eq!(r.status(), 401);
    // The file is in a day directory under RECORDINGS_DIR, named for the call.
    let name = gw.gw.state.store.find_call(&id).await.unwrap().unwrap().recording.unwrap();
    assert!(name.ends_with(".wav") && name.contains('/'), "{name}");
    assert_eq!(std::fs::read(dir.path().join(&name)).unwrap(), wav);
    assert_eq!(gw.gw.state.recordings.as_ref().unwrap().stats.written.load(Ordering::Relaxed), 1);
}

/// The id of the only call in the log.
async fn sid_of(gw: &TestGateway) -> String {
    gw.gw.state.store.flush().await;
    let r = gw.http.get(gw.http_url("/api/calls")).bearer_auth(KEY).send().await.unwrap();
    let v: serde_json::Value = r.json().await.unwrap();
    v["calls"][0]["id"].as_str().expect("a call in the log").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_opt_in_or_out_of_recording() {
    let dir = tempfile::tempdir().unwrap();
    // RECORD_CALLS=false: only agents that ask are recorded.
    let gw = gateway(dir.path(), false).await;
    for (id, record) in [("rec-on", json!(true)), ("rec-default", json!(null))] {
        let body = json!({ "id": id, "kind": "echo", "settings": { "record": record } });
        let r = gw.http.post(gw.http_url("/api/agents")).bearer_auth(KEY).json(&body).send().await.unwrap();
        assert_eq!(r.status(), 201);
    }
    let r = gw
        .http
        .post(gw.http_url("/api/agents"))
        .bearer_auth(KEY)
        .json(&json!({ "id": "bad", "kind": "echo", "settings": { "record": "yes" } }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "record must be true or false");
    speech_call(&gw, Some("rec-on")).await;
    speech_call(&gw, Some("rec-default")).await;
    gw.gw.state.store.flush().await;
    let r = gw.http.get(gw.http_url("/api/calls")).bearer_auth(KEY).send().await.unwrap();
    let calls: serde_json::Value = r.json().await.unwrap();
    let id_of = |agent: &str| {
        calls["calls"].as_array().unwrap().iter().find(|c| c["agent"] == agent).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (status, wav) = recording(&gw, &id_of("rec-on")).await;
    assert_eq!(status, 200);
    assert!(channels(&wav).1.iter().any(|&s| s != 0.0));
    let r = gw
        .http
        .get(gw.http_url(&format!("/api/calls/{}/recording", id_of("rec-default"))))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(files(dir.path()).len(), 1);
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for day in std::fs::read_dir(dir).unwrap().flatten() {
        if day.path().is_dir() {
            out.extend(std::fs::read_dir(day.path()).unwrap().flatten().map(|f| f.path()));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_old_recordings_and_crash_leftovers() {
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(dir.path(), true).await;
    let day = dir.path().join("2026-01-01");
    std::fs::create_dir_all(&day).unwrap();
    let old = std::time::SystemTime::now() - Duration::from_secs(3 * 86_400);
    for name in ["old.wav", "crashed.wav.part"] {
        let f = std::fs::File::create(day.join(name)).unwrap();
        f.set_modified(old).unwrap();
    }
    let fresh = day.join("fresh.wav");
    std::fs::write(&fresh, b"RIFF").unwrap();
    gw.gw.state.recordings.as_ref().unwrap().sweep();
    assert_eq!(files(dir.path()), vec![fresh], "only the recording within the retention is left");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recording_that_cannot_be_written_leaves_the_call_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(dir.path(), true).await;
    // Today's directory can't be made: a file has its name.
    let today = time::OffsetDateTime::now_utc().date().to_string();
    std::fs::write(dir.path().join(today), b"in the way").unwrap();
    let report = speech_call(&gw, None).await;
    assert_echo(&report.sent_pcm, &report.received_pcm);
    let stats = &gw.gw.state.recordings.as_ref().unwrap().stats;
    let deadline = Instant::now() + Duration::from_secs(5);
    while stats.failed.load(Ordering::Relaxed) == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(stats.failed.load(Ordering::Relaxed), 1);
    let metrics = gw.http.get(gw.http_url("/metrics")).bearer_auth(KEY).send().await.unwrap().text().await.unwrap();
    for line in [
        "exogate_recordings_total{outcome=\"started\"} 1",
        "exogate_recordings_total{outcome=\"failed\"} 1",
        "exogate_recordings_total{outcome=\"written\"} 0",
        // The call's audio was let go with its recording.
        "exogate_recording_held_bytes 0",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in:\n{metrics}");
    }
    let id = sid_of(&gw).await;
    let (status, _) = recording(&gw, &id).await;
    assert_eq!(status, 404);
}
