//! The web console in a real headless Chromium (Debian's, driven by playwright-core from npm;
//! `.ci/browser-env.sh` installs both). The script (tests/browser/console.mjs) signs in, watches a
//! simulated call appear on the live page and go, opens its detail (timeline, recording, waveform),
//! creates an agent and a phone, uploads a campaign with a bad line and runs it against the fake
//! Exotel to 100 %. Screenshots of every page land in SCREENSHOT_DIR (CI keeps them).
//!
//! Needs `PLAYWRIGHT_DIR` (`.ci/run` sets it). Without it the test says so and passes, so a plain
//! `cargo test` works on a machine without Node.js or Chromium.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::TestGateway;
use exogate::config::{RecordingsConfig, Secret};
use exotel_sim::AudioSource;
use exotel_sim::fake_exotel::{FakeExotel, FakeExotelConfig};
use serde_json::Value;

const KEY: &str = "console-test-key-0123456789";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_works_in_a_real_browser() {
    let Ok(playwright) = std::env::var("PLAYWRIGHT_DIR") else {
        eprintln!("PLAYWRIGHT_DIR is not set: skipping the browser test (.ci/run sets it)");
        return;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let base = format!("http://127.0.0.1:{port}");
    let cfg = FakeExotelConfig {
        voicebot_url: Some(format!("{base}/voicebot")),
        passthru_url: Some(format!("{base}/api/exotel/passthru")),
        audio: AudioSource::Tone { hz: 440.0, ms: 1500 },
        idle_tail: Duration::from_millis(300),
        ..FakeExotelConfig::default()
    };
    let (sid, api_key, token) = (cfg.sid.clone(), cfg.api_key.clone(), cfg.api_token.clone());
    let fake = FakeExotel::start(cfg).await.expect("fake exotel");
    let recordings = tempfile::tempdir().unwrap();
    let (rec_dir, fake_url) = (recordings.path().to_path_buf(), fake.base_url());
    let gw = TestGateway::start_with(move |c| {
        c.http_port = port;
        c.api_key = Some(Secret(KEY.into()));
        c.secret_key = Some(Secret("callback-secret".into()));
        c.public_base_url = Some(base.clone());
        c.recordings = Some(RecordingsConfig { dir: rec_dir, by_default: true, retention: None });
        c.exotel = common::fake_exotel_env(sid, api_key, token, fake_url);
    })
    .await;

    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let screenshots = std::env::var_os("SCREENSHOT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest.join("../../target/console-screenshots"));
    std::fs::create_dir_all(&screenshots).unwrap();
    let script = manifest.join("tests/browser/console.mjs");
    let http = gw.http_url("");
    let dynamic = gw.http_url("/voicebot?agentId=echo");
    let run = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(script)
            .env("PLAYWRIGHT_DIR", playwright)
            .env("EXOGATE_URL", http)
            .env("EXOGATE_API_KEY", KEY)
            .env("EXOGATE_BIN", env!("CARGO_BIN_EXE_exogate"))
            .env("EXOGATE_DYNAMIC_URL", dynamic)
            .env("SCREENSHOT_DIR", &screenshots)
            .env("CAMPAIGN_AGENT", "echo")
            .output()
            .expect("node runs")
    });
    let out = tokio::time::timeout(Duration::from_secs(240), run).await.expect("the browser test ends").unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && stdout.contains("BROWSER OK"), "the browser test failed");

    // What the browser did is in the database.
    let get = |path: &'static str| {
        let r = gw.http.get(gw.http_url(path)).bearer_auth(KEY).send();
        async move { r.await.unwrap().json::<Value>().await.unwrap() }
    };
    let agent = get("/api/agents/console-echo").await;
    assert_eq!(agent["kind"], "echo", "{agent}");
    let phones = get("/api/phones").await;
    let phone = &phones.as_array().or(phones["phones"].as_array()).expect("a phone list")[0];
    assert!(!phone.to_string().contains("-secret"), "the phone's token is never shown: {phone}");
    let campaigns = get("/api/campaigns").await;
    let list = campaigns.as_array().or(campaigns["campaigns"].as_array()).expect("a campaign list").clone();
    assert!(list.iter().any(|c| c["status"] == "completed"), "a campaign ran to the end: {campaigns}");
    gw.gw.state.store.flush().await;
    let calls = get("/api/calls?limit=500").await;
    let recorded = calls["calls"].as_array().unwrap().iter().filter(|c| c["direction"] != "outbound-api").count();
    assert!(recorded >= 1, "the simulated inbound call is in the log");
}
