//! Several gateways on one PostgreSQL database are one deployment. Runs when
//! `EXOGATE_TEST_POSTGRES` names a server (`.ci/run` sets it); says so and passes otherwise.

mod common;

use std::time::{Duration, Instant};

use common::{TestGateway, assert_echo, speech};
use exotel::SampleRate;
use exotel_sim::{AudioSource, CallConfig, Target, run_call};
use serde_json::json;

fn call(gw: &TestGateway, agent: &str, audio: AudioSource) -> CallConfig {
    let mut cfg = CallConfig {
        target: Target::Ws(gw.ws_url()),
        sample_rate: SampleRate::Hz8000,
        audio,
        idle_tail: Duration::from_millis(800),
        ..CallConfig::default()
    };
    cfg.custom_parameters.insert("agentId".into(), agent.into());
    cfg
}

async fn two_gateways() -> Option<(TestGateway, TestGateway)> {
    if common::postgres_admin_url().is_none() {
        eprintln!("EXOGATE_TEST_POSTGRES is not set: skipping the PostgreSQL tests");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let url = common::test_database(dir.path(), Some("postgres")).await;
    let a = TestGateway::start_with(|c| c.database_url = url.clone()).await;
    let b = TestGateway::start_with(|c| c.database_url = url.clone()).await;
    Some((a, b))
}

async fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_made_on_one_gateway_serves_calls_on_another_and_both_see_the_row() {
    let Some((a, b)) = two_gateways().await else { return };
    a.create_agent("friendly", "echo", json!({})).await;
    // B learns it through NOTIFY, not through its 30 s reload.
    wait_until("gateway B knows the agent", || b.gw.state.agent_exists("friendly")).await;

    let audio = speech(SampleRate::Hz8000);
    let cfg = call(&b, "friendly", AudioSource::Pcm(audio));
    let sid = cfg.call_sid.clone();
    let report = run_call(cfg).await.unwrap();
    assert!(report.ok(), "{:?}", report.violations);
    assert_echo(&report.sent_pcm, &report.received_pcm);
    b.gw.state.store.flush().await;
    // A answers for the call B carried: one call log.
    let row = a.call(&sid).await;
    assert_eq!(row["agent"], "friendly");
    assert_eq!(row["status"], "completed");
    assert_eq!(row["instance_id"], b.gw.state.store.instance());
    assert!(row["bytes_in"].as_i64().unwrap() > 10_000, "{row}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_starting_leaves_the_others_calls_alone() {
    let Some((a, _b)) = two_gateways().await else { return };
    let cfg = call(&a, "echo", AudioSource::Tone { hz: 440.0, ms: 4000 });
    let sid = cfg.call_sid.clone();
    let running = tokio::spawn(run_call(cfg));
    tokio::time::sleep(Duration::from_millis(1200)).await;
    a.gw.state.store.flush().await;
    assert_eq!(a.call(&sid).await["status"], "in-progress");
    // A third gateway starts on the same database while A's call runs: A is alive, so its call is
    // not an orphan.
    let url = a.database_url().to_string();
    let c = TestGateway::start_with(|cfg| cfg.database_url = url.clone()).await;
    assert_eq!(c.gw.state.store.mark_interrupted().await.unwrap(), 0);
    assert_eq!(c.call(&sid).await["status"], "in-progress");
    let report = running.await.unwrap().unwrap();
    assert!(report.ok(), "{:?}", report.violations);
    assert_eq!(a.call(&sid).await["status"], "completed");

    // A call whose gateway is gone (no heartbeat) is an orphan, and the sweep ends it.
    c.gw.state.store.upsert(
        exogate::store::CallKey::call_sid("CA-orphan"),
        exogate::store::CallPatch::new()
            .text("started_at", Some("2026-01-01T00:00:00Z"))
            .text("instance_id", Some("gw-gone"))
            .status(exogate::store::Status::InProgress),
    );
    c.gw.state.store.flush().await;
    assert_eq!(c.gw.state.store.mark_interrupted().await.unwrap(), 1);
    assert_eq!(a.call("CA-orphan").await["status"], "interrupted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passthru_reaching_the_other_gateway_gets_the_bots_decision() {
    let Some((a, b)) = two_gateways().await else { return };
    // A bot that can't be reached, whose fallback is a transfer: the decision is made on A.
    a.create_agent(
        "gone",
        "bridge",
        json!({ "url": "ws://127.0.0.1:9/ws", "connect_timeout_ms": 300, "on_failure": "transfer", "transfer_to": "flow-42" }),
    )
    .await;
    let cfg = call(&a, "gone", AudioSource::Tone { hz: 440.0, ms: 2000 });
    let sid = cfg.call_sid.clone();
    let report = run_call(cfg).await.unwrap();
    assert!(report.closed_by_bot, "{}", report.summary());
    a.gw.state.store.flush().await;
    // Exotel's Passthru after the applet lands on B.
    let no_redirect = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let r = no_redirect.get(b.http_url(&format!("/api/exotel/passthru?CallSid={sid}"))).send().await.unwrap();
    assert_eq!(r.status(), 302);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    assert!(location.contains("decision=transfer") && location.contains("target=flow-42"), "{location}");
    // And a call nobody decided on goes on (200) from either gateway.
    let r = no_redirect.get(b.http_url("/api/exotel/passthru?CallSid=CA-nobody")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}
