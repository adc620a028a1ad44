//! Campaigns end to end: CSV in through the API, dials against the simulator's fake Exotel with
//! scripted outcomes per number, limits asserted on the fake's own record of live calls.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::TestGateway;
use exogate::config::Secret;
use exotel_sim::AudioSource;
use exotel_sim::fake_exotel::{FakeExotel, FakeExotelConfig, Script};
use serde_json::{Value, json};

const KEY: &str = "campaign-test-key-0123456789";

struct Rig {
    gw: TestGateway,
    fake: FakeExotel,
}

async fn rig(scripts: HashMap<String, Script>) -> Rig {
    rig_with(scripts, |_| {}).await
}

/// A rig whose gateway's configuration `tweak` changes last.
async fn rig_with(scripts: HashMap<String, Script>, tweak: impl FnOnce(&mut exogate::Config)) -> Rig {
    rig_both(scripts, |_| {}, tweak).await
}

/// A rig whose fake Exotel's configuration `tweak` changes last.
async fn rig_fake(scripts: HashMap<String, Script>, tweak: impl FnOnce(&mut FakeExotelConfig)) -> Rig {
    rig_both(scripts, tweak, |_| {}).await
}

async fn rig_both(
    scripts: HashMap<String, Script>,
    fake_tweak: impl FnOnce(&mut FakeExotelConfig),
    tweak: impl FnOnce(&mut exogate::Config),
) -> Rig {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let gw_http = format!("http://127.0.0.1:{port}");
    let mut cfg = FakeExotelConfig {
        voicebot_url: Some(format!("{gw_http}/voicebot")),
        passthru_url: Some(format!("{gw_http}/api/exotel/passthru")),
        audio: AudioSource::Tone { hz: 440.0, ms: 400 },
        idle_tail: Duration::from_millis(300),
        scripts,
        ..FakeExotelConfig::default()
    };
    fake_tweak(&mut cfg);
    let (sid, key, token) = (cfg.sid.clone(), cfg.api_key.clone(), cfg.api_token.clone());
    let fake = FakeExotel::start(cfg).await.expect("fake exotel");
    let base = fake.base_url();
    let gw = TestGateway::start_with(|c| {
        c.http_port = port;
        c.api_key = Some(Secret(KEY.into()));
        c.secret_key = Some(Secret("callback-secret".into()));
        c.public_base_url = Some(gw_http.clone());
        c.exotel = common::fake_exotel_env(sid, key, token, base);
        tweak(c);
    })
    .await;
    Rig { gw, fake }
}

impl Rig {
    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self.gw.http.post(self.gw.http_url(path)).bearer_auth(KEY).json(&body).send().await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    /// `/metrics` as `series → value`.
    async fn metrics(&self) -> HashMap<String, f64> {
        let text = self.gw.http.get(self.gw.http_url("/metrics")).send().await.unwrap().text().await.unwrap();
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.rsplit_once(' ').map(|(k, v)| (k.to_string(), v.parse().unwrap_or(f64::NAN))))
            .collect()
    }

    async fn get(&self, path: &str) -> Value {
        self.gw.gw.state.store.flush().await;
        let r = self.gw.http.get(self.gw.http_url(path)).bearer_auth(KEY).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        r.json().await.unwrap()
    }

    async fn create(&self, body: Value) -> String {
        let (status, v) = self.post("/api/campaigns", body).await;
        assert_eq!(status, 201, "{v}");
        assert_eq!(v["campaign"]["status"], "draft");
        v["campaign"]["id"].as_str().unwrap().to_string()
    }

    async fn campaign(&self, id: &str) -> Value {
        self.get(&format!("/api/campaigns/{id}")).await["campaign"].clone()
    }

    /// `results.csv`, which must answer 200.
    async fn results(&self, id: &str) -> String {
        let url = self.gw.http_url(&format!("/api/campaigns/{id}/results.csv"));
        let r = self.gw.http.get(url).bearer_auth(KEY).send().await.unwrap();
        assert_eq!(r.status(), 200);
        r.text().await.unwrap()
    }

    async fn wait_status(&self, id: &str, status: &str, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let c = self.campaign(id).await;
            if c["status"] == status {
                return c;
            }
            assert!(Instant::now() < deadline, "campaign never became {status}: {c}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn number(i: usize) -> String {
    format!("98{:08}", i)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_dials_everyone_within_its_limits_and_retries_by_outcome() {
    // 200 contacts: 10 answer, 80 busy, 80 don't answer, 30 fail, spread through the list (a run
    // of failures would trip the circuit breaker, which has its own test).
    let mut scripts = HashMap::new();
    let mut csv = String::from("name,phone,due\n");
    for i in 0..200 {
        let script = match i % 20 {
            0 => Script::Answer,
            1..=3 => Script::Fail,
            n if n % 2 == 0 => Script::Busy,
            _ => Script::NoAnswer,
        };
        scripts.insert(format!("+91{}", number(i)), script);
        csv.push_str(&format!("Customer {i},{},{}\n", number(i), 100 + i));
    }
    // 360 dials: above the account's default 200 per minute, which has a test of its own.
    let rig = rig_with(scripts, |c| c.account_calls_per_minute = 5000).await;
    let id = rig
        .create(json!({
            "name": "reminders",
            "agent": "echo",
            "csv": csv,
            "max_concurrent": 8,
            "calls_per_minute": 5000,
            "window": { "start": "00:00", "end": "23:59", "days": ["mon","tue","wed","thu","fri","sat","sun"], "timezone": "Asia/Kolkata" },
            "retry": { "busy": { "after_secs": 1, "max_attempts": 2 }, "no-answer": { "after_secs": 2, "max_attempts": 2 } }
        }))
        .await;
    let c = rig.campaign(&id).await;
    assert_eq!(c["progress"]["total"], 200);
    assert_eq!(c["progress"]["pending"], 200);
    assert!(rig.fake.calls().is_empty(), "a draft dials nobody");

    let (status, started) = rig.post(&format!("/api/campaigns/{id}/start"), json!({})).await;
    assert_eq!(status, 200, "{started}");
    let (status, again) = rig.post(&format!("/api/campaigns/{id}/start"), json!({})).await;
    assert_eq!(status, 409, "{again}");
    // A running campaign's contacts are on /metrics, by state.
    let m = rig.metrics().await;
    let contacts: f64 = m
        .iter()
        .filter(|(k, _)| k.starts_with(&format!("exogate_campaign_contacts{{campaign=\"{id}\"")))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(contacts, 200.0, "{m:?}");
    let done = rig.wait_status(&id, "completed", Duration::from_secs(120)).await;
    let p = &done["progress"];
    assert_eq!(
        (p["completed"].as_i64(), p["exhausted"].as_i64(), p["failed"].as_i64()),
        (Some(10), Some(160), Some(30)),
        "{p}"
    );
    assert_eq!(p["pending"], 0);

    // Exotel's side: never more than 8 live calls, and the limit was used.
    let live = rig.fake.live();
    assert!(live.account_peak <= 8, "peak {} live calls", live.account_peak);
    assert!(live.account_peak >= 4, "peak {} live calls: the campaign hardly ran in parallel", live.account_peak);
    assert_eq!(live.account_live, 0);
    // The same record over HTTP, as `exogate sim exotel` users read it.
    let http_live: Value = rig
        .gw
        .http
        .get(format!("{}/v1/Accounts/exotelsim/_sim/live", rig.fake.base_url()))
        .basic_auth("fake-key", Some("fake-token"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(http_live["account_peak"], live.account_peak);
    assert_eq!(http_live["caller_peak"]["08047491899"], live.account_peak, "{http_live}");
    // Every dial: one for the answered and the failed, two for busy and no-answer (retried once).
    let calls = rig.fake.calls();
    assert_eq!(calls.len(), 10 + 160 + 160 + 30);
    let mut per_number: HashMap<String, usize> = HashMap::new();
    for call in &calls {
        *per_number.entry(call.from.replace(' ', "")).or_default() += 1;
    }
    assert_eq!(per_number[&format!("+91{}", number(0))], 1, "answered");
    assert_eq!(per_number[&format!("+91{}", number(4))], 2, "busy");
    assert_eq!(per_number[&format!("+91{}", number(5))], 2, "no answer");
    assert_eq!(per_number[&format!("+91{}", number(1))], 1, "failed, not retried");

    // Each contact's attempts are linked to call-log rows; a retry comes after its delay.
    let contacts = rig.get(&format!("/api/campaigns/{id}/contacts?state=exhausted&limit=1000")).await;
    let contacts = contacts["contacts"].as_array().unwrap();
    assert_eq!(contacts.len(), 160);
    for c in contacts.iter().take(5) {
        assert_eq!(c["attempts"], 2, "{c}");
        let row = rig.get(&format!("/api/calls/{}", c["last_call_id"].as_str().unwrap())).await;
        assert_eq!(row["campaign_id"], id.as_str());
        assert_eq!(row["status"], c["last_outcome"]);
    }
    // A retry comes after its delay: busy after 1 s, no-answer after 2 s (from the first dial's
    // creation, which is earlier than its end).
    let filter = exogate::store::CallFilter { limit: 1000, ..Default::default() };
    let (rows, _) = rig.gw.gw.state.store.list_calls(&filter).await.unwrap();
    let created = |n: usize| {
        let want = format!("+91{}", number(n));
        let mut at: Vec<time::OffsetDateTime> = rows
            .iter()
            .filter(|r| r.from_number.as_deref() == Some(want.as_str()))
            .map(|r| {
                time::OffsetDateTime::parse(&r.created_at, &time::format_description::well_known::Rfc3339).unwrap()
            })
            .collect();
        at.sort();
        at
    };
    for (n, delay) in [(4, 1.0), (24, 1.0), (5, 2.0), (25, 2.0)] {
        let at = created(n);
        assert_eq!(at.len(), 2, "contact {n}");
        let gap = (at[1] - at[0]).as_seconds_f64();
        assert!(gap >= delay, "contact {n} redialed after {gap:.2} s, before its {delay} s delay");
    }

    // The results: each contact's columns, attempts and outcome.
    let text = rig.results(&id).await;
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("name,phone,due,state,attempts,outcome,last_call_id"));
    let first = lines.next().unwrap();
    assert!(first.starts_with("Customer 0,+919800000000,100,completed,1,completed,"), "{first}");
    assert_eq!(text.lines().count(), 201);

    // /metrics: every dial, its Exotel request time, and each call's final status.
    let m = rig.metrics().await;
    assert_eq!(m[r#"exogate_dials_total{outcome="accepted"}"#], 360.0);
    assert_eq!(m[r#"exogate_exotel_api_seconds_count{operation="connect"}"#], 360.0);
    for (status, n) in [("completed", 10.0), ("busy", 160.0), ("no-answer", 160.0), ("failed", 30.0)] {
        assert_eq!(m[&format!(r#"exogate_dial_results_total{{outcome="{status}"}}"#)], n, "{status}");
    }
    assert!(!m.keys().any(|k| k.starts_with("exogate_campaign_contacts{")), "a finished campaign leaves /metrics");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_limit_and_the_window_hold_calls_back() {
    let scripts = (0..8).map(|i| (format!("+91{}", number(i)), Script::Busy)).collect();
    let rig = rig(scripts).await;
    let csv: String =
        std::iter::once("phone\n".to_string()).chain((0..8).map(|i| format!("{}\n", number(i)))).collect();
    let id = rig
        .create(json!({ "agent": "echo", "csv": csv, "max_concurrent": 10, "calls_per_minute": 3,
            "window": { "start": "00:00", "end": "23:59", "days": ["mon","tue","wed","thu","fri","sat","sun"] } }))
        .await;
    rig.post(&format!("/api/campaigns/{id}/start"), json!({})).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(rig.fake.calls().len(), 3, "3 per minute");
    let c = rig.campaign(&id).await;
    assert_eq!(c["status"], "running");
    assert_eq!(c["progress"]["pending"], 5);

    // A window that is shut now: nothing is dialed, everything waits.
    let now = jiff::Zoned::now().with_time_zone(jiff::tz::TimeZone::get("Asia/Kolkata").unwrap());
    let today = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"][now.weekday().to_monday_zero_offset() as usize];
    let other_days: Vec<&str> =
        ["mon", "tue", "wed", "thu", "fri", "sat", "sun"].into_iter().filter(|d| *d != today).collect();
    let shut = rig
        .create(json!({ "agent": "echo", "csv": format!("phone\n{}\n", number(50)),
            "window": { "start": "00:00", "end": "23:59", "days": other_days, "timezone": "Asia/Kolkata" } }))
        .await;
    let (status, _) = rig.post(&format!("/api/campaigns/{shut}/start"), json!({})).await;
    assert_eq!(status, 200);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(rig.fake.calls().iter().all(|c| !c.from.contains(&number(50)[2..])), "dialed outside its window");
    assert_eq!(rig.campaign(&shut).await["progress"]["pending"], 1);

    // Pause lets nothing new start; cancel ends it.
    assert_eq!(rig.post(&format!("/api/campaigns/{id}/pause"), json!({})).await.0, 200);
    assert_eq!(rig.campaign(&id).await["status"], "paused");
    assert_eq!(rig.post(&format!("/api/campaigns/{id}/cancel"), json!({})).await.0, 200);
    assert_eq!(rig.post(&format!("/api/campaigns/{id}/resume"), json!({})).await.0, 409);
    // The five never dialed say so, in the progress and in the results.
    let c = rig.campaign(&id).await;
    assert_eq!((c["progress"]["pending"].as_i64(), c["progress"]["cancelled"].as_i64()), (Some(0), Some(5)), "{c}");
    let results = rig.results(&id).await;
    assert_eq!(results.lines().filter(|l| l.contains(",cancelled,")).count(), 5, "{results}");
    // A call still in the air when it was cancelled, whose outcome would have earned another try,
    // gets none.
    let store = &rig.gw.gw.state.store;
    store.settle_contact(&id, 0, "retry-scheduled", Some("2026-01-01T00:00:00Z"), Some("busy"), false).await.unwrap();
    let c = rig.campaign(&id).await;
    assert_eq!(
        (c["progress"]["retry_scheduled"].as_i64(), c["progress"]["cancelled"].as_i64()),
        (Some(0), Some(6)),
        "{c}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn most_dials_failing_pauses_the_campaign_with_a_reason() {
    let scripts = (0..30).map(|i| (format!("+91{}", number(i)), Script::Fail)).collect();
    let rig = rig(scripts).await;
    let csv: String =
        std::iter::once("phone\n".to_string()).chain((0..30).map(|i| format!("{}\n", number(i)))).collect();
    let id = rig
        .create(json!({ "agent": "echo", "csv": csv, "max_concurrent": 5, "calls_per_minute": 5000,
            "window": { "start": "00:00", "end": "23:59" } }))
        .await;
    rig.post(&format!("/api/campaigns/{id}/start"), json!({})).await;
    let c = rig.wait_status(&id, "paused", Duration::from_secs(60)).await;
    assert!(c["status_reason"].as_str().unwrap().contains("circuit breaker"), "{c}");
    let dialed = rig.fake.calls().len();
    assert!((20..30).contains(&dialed), "{dialed} dials before the breaker");
    assert!(c["progress"]["pending"].as_i64().unwrap() > 0, "{c}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_files_and_bad_rules_import_nothing() {
    let rig = rig(HashMap::new()).await;
    let cases = [
        (json!({ "agent": "echo", "csv": "name,city\nAsha,Pune\n" }), "no phone column"),
        (json!({ "agent": "echo", "csv": "" }), "empty"),
        (json!({ "agent": "echo", "csv": "phone\nabc\n12\n" }), "no usable contacts"),
        (
            json!({ "agent": "echo", "csv": "phone\n9876543210\n", "window": { "timezone": "Mars/Olympus" } }),
            "window.timezone",
        ),
        (
            json!({ "agent": "echo", "csv": "phone\n9876543210\n", "window": { "start": "21:00", "end": "09:00" } }),
            "window.end",
        ),
        (
            json!({ "agent": "echo", "csv": "phone\n9876543210\n", "retry": { "completed": { "after_secs": 1, "max_attempts": 2 } } }),
            "retry.completed",
        ),
        (json!({ "agent": "nobody", "csv": "phone\n9876543210\n" }), "not a known agent"),
    ];
    for (body, why) in cases {
        let (status, v) = rig.post("/api/campaigns", body).await;
        assert_eq!(status, 400, "{why}: {v}");
        assert!(v["error"].as_str().unwrap_or_default().contains(why), "{why}: {v}");
    }
    let (status, v) = rig.post("/api/campaigns", json!({ "agent": "echo", "csv": "phone\nabc\n12\n" })).await;
    assert_eq!(status, 400);
    assert_eq!(v["errors"].as_array().map(Vec::len), Some(2), "{v}");
    assert_eq!(v["errors"][0]["line"], 2);

    // Multipart with Latin-1 bytes and a 1 MiB line: per-line errors.
    let mut file = b"phone,name\n9876543210,Jos\xe9\n9123456789,".to_vec();
    file.extend(std::iter::repeat_n(b'x', 1 << 20));
    file.extend(b"\n");
    let form = reqwest::multipart::Form::new()
        .text("agent", "echo")
        .part("file", reqwest::multipart::Part::bytes(file).file_name("contacts.csv"));
    let r = rig.gw.http.post(rig.gw.http_url("/api/campaigns")).bearer_auth(KEY).multipart(form).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    let lines: Vec<i64> = v["errors"].as_array().unwrap().iter().map(|e| e["line"].as_i64().unwrap()).collect();
    assert_eq!(lines, [2, 3], "{v}");
    assert_eq!(rig.get("/api/campaigns").await["campaigns"], json!([]), "nothing was imported");

    // A good file through multipart, with a rejected line reported and the rest imported.
    let form =
        reqwest::multipart::Form::new().text("agent", "echo").text("name", "upload").text("max_concurrent", "2").part(
            "file",
            reqwest::multipart::Part::bytes(
                b"\xEF\xBB\xBFnumber,plan\n98765 43210,gold\nbad,x\n9876543210,dup\n".to_vec(),
            ),
        );
    let r = rig.gw.http.post(rig.gw.http_url("/api/campaigns")).bearer_auth(KEY).multipart(form).send().await.unwrap();
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["campaign"]["contacts"], 1, "{v}");
    assert_eq!(v["campaign"]["max_concurrent"], 2);
    let rejected: Vec<i64> =
        v["campaign"]["rejected"].as_array().unwrap().iter().map(|e| e["line"].as_i64().unwrap()).collect();
    assert_eq!(rejected, [3, 4]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_on_one_database_share_a_campaign_and_its_limits() {
    if common::postgres_admin_url().is_none() {
        eprintln!("EXOGATE_TEST_POSTGRES is not set: skipping");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let url = common::test_database(dir.path(), Some("postgres")).await;
    // One fake Exotel account; both gateways dial through it, each from its own process state.
    let a = rig_with(HashMap::new(), |c| c.database_url = url.clone()).await;
    let b = TestGateway::start_with(|c| {
        c.database_url = url.clone();
        c.api_key = Some(Secret(KEY.into()));
        c.secret_key = Some(Secret("callback-secret".into()));
        c.public_base_url = a.gw.gw.state.config.public_base_url.clone();
        c.exotel = a.gw.gw.state.config.exotel.clone();
    })
    .await;
    let csv: String =
        std::iter::once("phone\n".to_string()).chain((0..40).map(|i| format!("{}\n", number(i)))).collect();
    let id = a
        .create(json!({ "agent": "echo", "csv": csv, "max_concurrent": 6, "calls_per_minute": 5000,
            "window": { "start": "00:00", "end": "23:59" } }))
        .await;
    // Started through B: A's dialer sees it in the database too.
    let r = b.http.post(b.http_url(&format!("/api/campaigns/{id}/start"))).bearer_auth(KEY).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let done = a.wait_status(&id, "completed", Duration::from_secs(120)).await;
    assert_eq!(done["progress"]["completed"], 40, "{done}");
    let calls = a.fake.calls();
    let mut numbers: Vec<String> = calls.iter().map(|c| c.from.replace(' ', "")).collect();
    numbers.sort();
    numbers.dedup();
    assert_eq!((calls.len(), numbers.len()), (40, 40), "every contact dialed exactly once");
    let live = a.fake.live();
    assert!(live.account_peak <= 6, "peak {} live calls across two gateways", live.account_peak);
    assert!(live.account_peak >= 3, "peak {}", live.account_peak);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_account_limits_hold_across_campaigns() {
    let rig = rig_with(HashMap::new(), |c| {
        c.account_max_concurrent = 4;
        c.account_calls_per_minute = 20;
    })
    .await;
    let mut ids = Vec::new();
    for batch in 0..2 {
        let csv: String = std::iter::once("phone\n".to_string())
            .chain((0..12).map(|i| format!("{}\n", number(batch * 100 + i))))
            .collect();
        let id = rig
            .create(json!({ "agent": "echo", "csv": csv, "max_concurrent": 5, "calls_per_minute": 5000,
                "window": { "start": "00:00", "end": "23:59" } }))
            .await;
        rig.post(&format!("/api/campaigns/{id}/start"), json!({})).await;
        ids.push(id);
    }
    // Answered calls last about a second, 4 at a time: 20 dials take ~5 s, then the minute's
    // budget is spent.
    let deadline = Instant::now() + Duration::from_secs(40);
    while rig.fake.calls().len() < 20 {
        assert!(Instant::now() < deadline, "only {} dials", rig.fake.calls().len());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(rig.fake.calls().len(), 20, "20 dials a minute on the account, across both campaigns");
    let live = rig.fake.live();
    assert!(live.account_peak <= 4, "peak {} live calls on a 4-call account", live.account_peak);
    assert!(live.account_peak >= 3, "peak {}", live.account_peak);
    let mut pending = 0;
    for id in &ids {
        pending += rig.campaign(id).await["progress"]["pending"].as_i64().unwrap();
    }
    assert_eq!(pending, 4);
}

/// The real binary, killed with SIGKILL mid-campaign and started again on the same database.
struct Process(std::process::Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_gateway(port: u16, db: &str, fake: &FakeExotel) -> Process {
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_exogate"))
        .arg("serve")
        .env("HTTP_PORT", port.to_string())
        .env("WS_PORT", "0")
        .env("BIND_ADDR", "127.0.0.1")
        .env("DATABASE_URL", db)
        .env("EXOGATE_SECRET_KEY", "callback-secret")
        .env("WEBHOOK_BASE_URL", format!("http://127.0.0.1:{port}"))
        .env("EXOTEL_API_KEY", "fake-key")
        .env("EXOTEL_API_TOKEN", "fake-token")
        .env("EXOTEL_SID", "exotelsim")
        .env("EXOTEL_APP_ID", "4321")
        .env("EXOTEL_CALLER_ID", "08047491899")
        .env("EXOTEL_API_URL", fake.base_url())
        .env("EXOTEL_CALLS_PER_MINUTE", "5000")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("exogate starts");
    Process(child)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_placed_through_the_api_share_the_account_limits_with_campaigns() {
    let rig = rig_both(
        HashMap::new(),
        |f| f.default_script = "answer:2".parse().unwrap(),
        |c| {
            c.account_max_concurrent = 2;
            c.account_calls_per_minute = 5;
        },
    )
    .await;
    let call = |i: usize| json!({ "to": format!("+91{}", number(900 + i)) });
    for i in 0..2 {
        let (status, body) = rig.post("/api/calls", call(i)).await;
        assert_eq!(status, 201, "{body}");
    }
    let (status, body) = rig.post("/api/calls", call(2)).await;
    assert_eq!(status, 429, "{body}");
    assert!(body["error"].as_str().unwrap().contains("2 concurrent calls"), "{body}");

    // A campaign on the same account waits for the API's calls to end: never more than 2 live.
    let csv = format!("phone\n{}\n{}\n{}\n", number(1), number(2), number(3));
    let window = json!({ "start": "00:00", "end": "23:59" });
    let id = rig.create(json!({ "agent": "echo", "csv": csv, "max_concurrent": 5, "window": window })).await;
    rig.post(&format!("/api/campaigns/{id}/start"), json!({})).await;
    rig.wait_status(&id, "completed", Duration::from_secs(60)).await;
    assert_eq!(rig.fake.calls().len(), 5);
    let live = rig.fake.live();
    assert_eq!(live.account_peak, 2, "API calls and the campaign's together");

    // Five dials this minute: the sixth waits, and is told how long.
    let r = rig.gw.http.post(rig.gw.http_url("/api/calls")).bearer_auth(KEY).json(&call(3)).send().await.unwrap();
    assert_eq!(r.status(), 429);
    let wait: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "Retry-After {wait}");
    let body: Value = r.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("5 calls per minute"), "{body}");
    assert_eq!(rig.fake.calls().len(), 5, "refused calls never reach Exotel");
}

async fn wait_http(http: &reqwest::Client, url: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while http.get(url).send().await.is_err() {
        assert!(Instant::now() < deadline, "{url} never answered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_killed_mid_campaign_resumes_it_without_dialing_anyone_twice() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let base = format!("http://127.0.0.1:{port}");
    let fake = FakeExotel::start(FakeExotelConfig {
        voicebot_url: Some(format!("{base}/voicebot")),
        audio: AudioSource::Tone { hz: 440.0, ms: 1500 },
        idle_tail: Duration::from_millis(300),
        ..FakeExotelConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let which = std::env::var("EXOGATE_TEST_DATABASE").ok();
    let db = common::test_database(dir.path(), which.as_deref()).await;
    let http = reqwest::Client::new();
    let first = spawn_gateway(port, &db, &fake);
    wait_http(&http, &format!("{base}/health")).await;

    let csv: String =
        std::iter::once("phone\n".to_string()).chain((0..30).map(|i| format!("{}\n", number(i)))).collect();
    let body = json!({ "agent": "echo", "csv": csv, "max_concurrent": 5, "calls_per_minute": 5000,
        "window": { "start": "00:00", "end": "23:59" } });
    let r = http.post(format!("{base}/api/campaigns")).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 201);
    let id = r.json::<Value>().await.unwrap()["campaign"]["id"].as_str().unwrap().to_string();
    http.post(format!("{base}/api/campaigns/{id}/start")).send().await.unwrap();

    let deadline = Instant::now() + Duration::from_secs(30);
    while fake.calls().len() < 8 {
        assert!(Instant::now() < deadline, "only {} dials", fake.calls().len());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(first); // SIGKILL: no drain, calls in flight, their callbacks lost.
    let dialed_before = fake.calls().len();

    let _second = spawn_gateway(port, &db, &fake);
    wait_http(&http, &format!("{base}/health")).await;
    let deadline = Instant::now() + Duration::from_secs(90);
    let done = loop {
        let c: Value = http.get(format!("{base}/api/campaigns/{id}")).send().await.unwrap().json().await.unwrap();
        if c["campaign"]["status"] == "completed" {
            break c;
        }
        assert!(Instant::now() < deadline, "not resumed to completion: {c}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let calls = fake.calls();
    let mut numbers: Vec<String> = calls.iter().map(|c| c.from.replace(' ', "")).collect();
    numbers.sort();
    numbers.dedup();
    assert_eq!(numbers.len(), calls.len(), "a contact dialed twice ({dialed_before} dials before the kill)");
    // Every contact was dialed and completed, except one the kill caught between writing its call
    // and Exotel receiving it: that outcome is unknown, so it is not redialed blindly.
    let p = &done["campaign"]["progress"];
    let completed = p["completed"].as_i64().unwrap();
    assert_eq!(completed, calls.len() as i64, "{done}");
    assert_eq!(completed + p["failed"].as_i64().unwrap(), 30, "{done}");
    let failed = http.get(format!("{base}/api/campaigns/{id}/contacts?state=failed")).send().await.unwrap();
    let failed: Value = failed.json().await.unwrap();
    for c in failed["contacts"].as_array().unwrap() {
        assert_eq!(c["last_outcome"], "ambiguous-dial", "{c}");
    }
    assert!(calls.len() >= 29, "{} dials", calls.len());
    assert!(fake.live().account_peak <= 5);
}

/// Runs the binary off the runtime's threads (the gateway it talks to runs on them).
async fn cli(args: Vec<String>) -> (bool, String, String) {
    tokio::task::spawn_blocking(move || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_exogate")).args(&args).output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    })
    .await
    .unwrap()
}

fn words(text: &str) -> Vec<String> {
    text.split_whitespace().map(String::from).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_line_runs_a_campaign() {
    let scripts = (0..4).map(|i| (format!("+91{}", number(i)), Script::Busy)).collect();
    let rig = rig(scripts).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("list.csv");
    let csv = format!("name,mobile\nA,{}\nB,{}\nC,{}\nD,{}\nE,oops\n", number(0), number(1), number(2), number(3));
    std::fs::write(&file, csv).unwrap();
    let remote = format!(" --gateway {} --api-key {KEY}", rig.gw.http_url(""));
    let file = file.display().to_string();

    let create =
        format!("campaign create {file} --agent echo --window-start 00:00 --window-end 23:59 --retry busy:1:2");
    let (ok, out, err) = cli(words(&(create + &remote))).await;
    assert!(ok, "{out}{err}");
    assert!(out.contains("4 contacts, 1 lines rejected") && out.contains("line 6"), "{out}");
    let id = out.split_whitespace().nth(2).unwrap().to_string();
    for (cmd, want) in
        [(format!("campaign start {id}"), "is running"), (format!("campaign status {id} --watch"), "completed")]
    {
        let (ok, out, err) = cli(words(&(cmd + &remote))).await;
        assert!(ok && out.contains(want), "{out}{err}");
    }
    let results = dir.path().join("results.csv");
    let (ok, out, err) = cli(words(&(format!("campaign results {id} -o {}", results.display()) + &remote))).await;
    assert!(ok, "{out}{err}");
    let text = std::fs::read_to_string(&results).unwrap();
    assert_eq!(text.lines().next(), Some("name,mobile,state,attempts,outcome,last_call_id"));
    assert!(text.lines().nth(1).unwrap().starts_with("A,+919800000000,exhausted,2,busy,"), "{text}");

    // A file that can't be imported: the reason, and a failing exit.
    std::fs::write(&file, "name,city\nA,Pune\n").unwrap();
    let (ok, _, err) = cli(words(&(format!("campaign create {file} --agent echo") + &remote))).await;
    assert!(!ok && err.contains("no phone column"), "{err}");
}

/// How the fake's call reaches the media socket in [`a_contacts_columns_reach_its_call`].
#[derive(Debug, Clone, Copy)]
enum Path {
    /// Connect Voice AI: `StreamUrl` to our media endpoint (no flow app id).
    Stream,
    /// The flow's Voicebot applet asks our dynamic-URL endpoint.
    DynamicUrl,
    /// The flow's Voicebot applet has our media URL written in: only Exotel's ids reach us.
    FixedUrl,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contacts_columns_reach_its_call() {
    for path in [Path::Stream, Path::DynamicUrl, Path::FixedUrl] {
        let ws_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let rig = rig_both(
            HashMap::new(),
            |f| {
                if let Path::FixedUrl = path {
                    f.voicebot_url = Some(format!("ws://127.0.0.1:{ws_port}/"));
                }
            },
            |c| {
                c.ws_port = ws_port;
                if let Path::Stream = path {
                    c.exotel.app_id = None;
                }
            },
        )
        .await;
        // Not the default agent: a fixed applet URL names none, so the call's own must be found.
        let made = rig.post("/api/agents", json!({ "id": "collector", "kind": "echo" })).await;
        assert_eq!(made.0, 201, "{made:?}");
        let csv = format!("phone,name,due\n{},Asha,₹1200\n", number(7));
        let window = json!({ "start": "00:00", "end": "23:59" });
        let id = rig.create(json!({ "agent": "collector", "csv": csv, "window": window })).await;
        rig.post(&format!("/api/campaigns/{id}/start"), json!({})).await;
        rig.wait_status(&id, "completed", Duration::from_secs(60)).await;
        let contacts = rig.get(&format!("/api/campaigns/{id}/contacts")).await;
        let call_id = contacts["contacts"][0]["last_call_id"].as_str().unwrap().to_string();
        rig.gw.gw.state.store.flush().await;
        let row = rig.get(&format!("/api/calls/{call_id}")).await;
        assert_eq!(row["mode"], if let Path::Stream = path { "stream" } else { "flow" }, "{path:?}");
        assert_eq!(
            (row["status"].as_str(), row["frames_in"].as_i64()),
            (Some("completed"), Some(20)),
            "{path:?} {row}"
        );
        assert_eq!(row["vars"], json!({ "name": "Asha", "due": "₹1200" }), "{path:?}");
        // What the agent was given at `start` (its call info), as the call log keeps it.
        assert_eq!(row["custom_params"]["name"], "Asha", "{path:?} {row}");
        assert_eq!(row["custom_params"]["due"], "₹1200", "{path:?} {row}");
        assert_eq!(row["agent"], "collector", "{path:?} {row}");
        // Exotel got the variables too, in CustomField, with our id to find the call by.
        let placed = rig.fake.calls().pop().unwrap();
        let field: Value = serde_json::from_str(placed.custom_field.as_deref().unwrap()).unwrap();
        assert_eq!(field, json!({ "call_id": call_id, "name": "Asha", "due": "₹1200" }), "{path:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pausing_lets_calls_in_flight_finish_and_dials_nobody_new() {
    let rig = rig(HashMap::new()).await;
    let csv: String =
        std::iter::once("phone\n".to_string()).chain((0..6).map(|i| format!("{}\n", number(i)))).collect();
    let id = rig
        .create(
            json!({ "agent": "echo", "csv": csv, "max_concurrent": 2, "window": { "start": "00:00", "end": "23:59" } }),
        )
        .await;
    rig.post(&format!("/api/campaigns/{id}/start"), json!({})).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while rig.fake.calls().is_empty() {
        assert!(Instant::now() < deadline, "nothing dialed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(rig.post(&format!("/api/campaigns/{id}/pause"), json!({})).await.0, 200);
    // Contacts claimed before the pause are still dialed (their dials were already on the way):
    // count once those have reached Exotel, then nothing more may come.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let dialed = rig.fake.calls().len();
    // The answered calls take about a second; give them time to end and their callbacks to land.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let c = rig.campaign(&id).await;
    assert_eq!(c["status"], "paused");
    assert_eq!(rig.fake.calls().len(), dialed, "nobody new dialed while paused");
    assert_eq!((c["progress"]["dialing"].as_i64(), c["progress"]["in_progress"].as_i64()), (Some(0), Some(0)), "{c}");
    assert_eq!(c["progress"]["completed"].as_i64(), Some(dialed as i64), "{c}");

    assert_eq!(rig.post(&format!("/api/campaigns/{id}/resume"), json!({})).await.0, 200);
    let done = rig.wait_status(&id, "completed", Duration::from_secs(60)).await;
    assert_eq!(done["progress"]["completed"], 6);
    assert_eq!(rig.fake.calls().len(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exotels_429_backs_the_account_off_and_loses_no_contact() {
    // The fake account takes 5 calls a minute; the campaign's own limits are far above that.
    let scripts = (0..8).map(|i| (format!("+91{}", number(i)), Script::Busy)).collect();
    let rig = rig_fake(scripts, |f| f.rate_limit = Some(5)).await;
    let csv: String =
        std::iter::once("phone\n".to_string()).chain((0..8).map(|i| format!("{}\n", number(i)))).collect();
    let id = rig
        .create(json!({ "agent": "echo", "csv": csv, "max_concurrent": 20, "calls_per_minute": 5000,
            "window": { "start": "00:00", "end": "23:59" } }))
        .await;
    rig.post(&format!("/api/campaigns/{id}/start"), json!({})).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let connects: Vec<u16> =
        rig.fake.requests().iter().filter(|r| r.path.contains("/Calls/connect")).filter_map(|r| r.status).collect();
    let refused = connects.iter().filter(|s| **s == 429).count();
    assert_eq!(rig.fake.calls().len(), 5, "{connects:?}");
    assert_eq!(refused, 3, "one refusal per contact over the limit, then the account waits: {connects:?}");
    // The refused contacts are waiting, their attempt not counted.
    let pending = rig.get(&format!("/api/campaigns/{id}/contacts?state=pending")).await;
    let pending = pending["contacts"].as_array().unwrap();
    assert_eq!(pending.len(), 3);
    assert!(pending.iter().all(|c| c["attempts"] == 0), "{pending:?}");
}
