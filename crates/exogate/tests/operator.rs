//! An operator ends a live call through the API (the console's buttons): it leaves `/api/live`,
//! the socket closes with 1000, and a transfer makes the Passthru after the applet answer 302.

mod common;

use std::time::Duration;

use common::TestGateway;
use exotel::SampleRate;
use exotel_sim::{AudioSource, CallConfig, Target, run_call};
use serde_json::{Value, json};

async fn live(gw: &TestGateway) -> Vec<Value> {
    let (status, v) = gw.get_json("/api/live").await;
    assert_eq!(status, 200, "{v}");
    v["calls"].as_array().cloned().unwrap_or_default()
}

/// Runs a 20 s call in the background and waits for it on the live page.
async fn live_call(gw: &TestGateway, sid: &str) -> (tokio::task::JoinHandle<exotel_sim::CallReport>, Value) {
    let cfg = CallConfig {
        target: Target::Dynamic(gw.http_url("/voicebot?agentId=echo")),
        call_sid: sid.into(),
        sample_rate: SampleRate::Hz8000,
        audio: AudioSource::Tone { hz: 440.0, ms: 20_000 },
        ..CallConfig::default()
    };
    let call = tokio::spawn(async move { run_call(cfg).await.expect("the call runs") });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(c) = live(gw).await.into_iter().find(|c| c["call_sid"] == sid) {
            return (call, c);
        }
        assert!(tokio::time::Instant::now() < deadline, "the call never showed on /api/live");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_hangs_up_or_transfers_a_live_call() {
    let gw = TestGateway::start().await;

    let (call, entry) = live_call(&gw, "CA-op-hangup").await;
    // The live page's id finds the call in the call log.
    let id = entry["id"].as_str().unwrap().to_string();
    assert_eq!(gw.call(&id).await["call_sid"], "CA-op-hangup");
    assert_eq!(entry["agent"], "echo");
    let r = gw.http.post(gw.http_url(&format!("/api/calls/{id}/hangup"))).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let report = tokio::time::timeout(Duration::from_secs(10), call).await.expect("the call ends").unwrap();
    assert!(report.closed_by_bot && report.close_code == Some(1000), "{}", report.summary());
    assert!(report.duration < Duration::from_secs(15), "ended by the operator, not by the tone's end");
    assert!(live(&gw).await.is_empty());
    let row = gw.call(&id).await;
    assert_eq!(row["stop_reason"], "operator-hangup");
    assert_eq!(row["bot_decision"], "hangup");

    let (call, entry) = live_call(&gw, "CA-op-transfer").await;
    let id = entry["id"].as_str().unwrap().to_string();
    let r = gw
        .http
        .post(gw.http_url(&format!("/api/calls/{id}/transfer")))
        .json(&json!({ "to": "+918000000009" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let report = tokio::time::timeout(Duration::from_secs(10), call).await.expect("the call ends").unwrap();
    assert_eq!(report.close_code, Some(1000));
    // Exotel's Passthru after the Voicebot applet: the transfer branch.
    // As Exotel sees it: the 302 itself, not where it leads.
    let no_redirects = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let r = no_redirects.get(gw.http_url("/api/exotel/passthru?CallSid=CA-op-transfer")).send().await.unwrap();
    assert_eq!(r.status(), 302);
    let row = gw.call(&id).await;
    assert_eq!(row["stop_reason"], "operator-transfer");
    assert_eq!(row["transfer_to"], "+918000000009");
    let operator = row["events"].as_array().unwrap().iter().find(|e| e["kind"] == "operator").cloned().unwrap();
    assert_eq!(operator["detail"]["decision_taken"], true, "{operator}");

    // A call that is not live here.
    let r = gw.http.post(gw.http_url("/api/calls/nope/hangup")).send().await.unwrap();
    assert_eq!(r.status(), 404);
}
