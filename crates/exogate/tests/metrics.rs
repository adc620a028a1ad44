//! `GET /metrics` counts exactly what happened: a known sequence of calls against the counters,
//! checked against the call log's own rows.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{TestGateway, connect, start_json};
use exogate::config::Secret;
use exotel::SampleRate;
use exotel_sim::{AudioSource, CallConfig, Target, run_call};
use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message;

/// `name{labels} value` lines of the exposition, by series.
async fn scrape(gw: &TestGateway, token: Option<&str>) -> (u16, BTreeMap<String, f64>) {
    let mut req = gw.http.get(gw.http_url("/metrics"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    let series = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.rsplit_once(' ').map(|(k, v)| (k.to_string(), v.parse().unwrap_or(f64::NAN))))
        .collect();
    (status, series)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_a_known_sequence_of_calls_exactly() {
    let gw = TestGateway::start_with(|c| c.access.metrics_token = Some(Secret("metrics-token-0123".into()))).await;
    let (status, _) = scrape(&gw, None).await;
    assert_eq!(status, 401, "the token is required once set");
    // Two echo calls from the simulator, one socket that sends garbage then stops.
    let mut sids = Vec::new();
    for i in 0..2 {
        let cfg = CallConfig {
            target: Target::Ws(gw.ws_url()),
            sample_rate: SampleRate::Hz8000,
            audio: AudioSource::Tone { hz: 440.0, ms: 1000 + 500 * i },
            idle_tail: Duration::from_millis(800),
            ..CallConfig::default()
        };
        sids.push(cfg.call_sid.clone());
        let report = run_call(cfg).await.unwrap();
        assert!(report.ok(), "{}", report.summary());
    }
    let mut ws = connect(&gw).await;
    ws.send(Message::text(start_json("CA-garbage", "st-garbage"))).await.unwrap();
    ws.send(Message::text("not json at all")).await.unwrap();
    ws.send(Message::text(r#"{"event":"stop","stop":{"reason":"callended"}}"#)).await.unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(5), futures_util::StreamExt::next(&mut ws)).await;
    sids.push("CA-garbage".into());
    drop(ws);

    // Every call's row is written when it ends: wait for all three, then compare.
    let mut rows = Vec::new();
    for sid in &sids {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let row = gw.call(sid).await;
            if row["ended_at"].is_string() {
                rows.push(row);
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "{sid} never ended");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let (status, m) = scrape(&gw, Some("metrics-token-0123")).await;
    assert_eq!(status, 200);
    let get = |k: &str| m.get(k).copied().unwrap_or_else(|| panic!("no series {k}: {m:?}"));
    let sum = |field: &str| rows.iter().map(|r| r[field].as_f64().unwrap_or(0.0)).sum::<f64>();
    assert_eq!(get(r#"exogate_calls_started_total{agent="echo"}"#), 3.0);
    assert_eq!(get("exogate_calls_active"), 0.0);
    let mut by_outcome: BTreeMap<String, f64> = BTreeMap::new();
    for r in &rows {
        *by_outcome.entry(r["stop_reason"].as_str().unwrap().to_string()).or_default() += 1.0;
    }
    for (outcome, n) in by_outcome {
        assert_eq!(get(&format!(r#"exogate_calls_ended_total{{agent="echo",outcome="{outcome}"}}"#)), n, "{outcome}");
    }
    assert_eq!(get(r#"exogate_media_messages_total{direction="in"}"#), sum("frames_in"));
    assert_eq!(get(r#"exogate_media_messages_total{direction="out"}"#), sum("frames_out"));
    assert_eq!(get(r#"exogate_media_bytes_total{direction="in"}"#), sum("bytes_in"));
    assert_eq!(get(r#"exogate_media_bytes_total{direction="out"}"#), sum("bytes_out"));
    assert_eq!(get(r#"exogate_marks_total{direction="out"}"#), sum("marks_sent"));
    assert_eq!(get(r#"exogate_marks_total{direction="in"}"#), sum("marks_played"));
    assert_eq!(get("exogate_bad_messages_total"), 1.0);
    assert!(sum("frames_in") > 50.0 && sum("bytes_out") > 16_000.0, "the calls carried audio");
    assert_eq!(get("exogate_call_log_writes_dropped"), 0.0);
    // Echo hands back each 20 ms caller frame as it comes: every one is re-cut into legal chunks.
    assert_eq!(get("exogate_audio_recut_total"), sum("frames_in"), "one re-cut per echoed caller frame");
    // A first-audio time for each call that got bot audio, a newest-frame delay for each chunk.
    let with_audio = rows.iter().filter(|r| r["frames_out"].as_f64().unwrap_or(0.0) > 0.0).count() as f64;
    assert_eq!(get("exogate_first_audio_seconds_count"), with_audio);
    assert_eq!(get("exogate_newest_frame_delay_seconds_count"), sum("frames_out"));
    // Echo adds next to nothing beyond the pacing: the mean newest-frame delay is well under 100 ms.
    let mean = get("exogate_newest_frame_delay_seconds_sum") / sum("frames_out");
    assert!(mean < 0.1, "mean newest-frame delay {mean} s");
    assert_eq!(get("exogate_live_calls_unlisted"), 0.0);
}
