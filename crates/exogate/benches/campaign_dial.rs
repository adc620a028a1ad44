//! How fast the campaign dialer schedules: a campaign of N contacts with limits set high, against
//! the simulator's fake Exotel on loopback (every number busy, so calls end at once), timed from
//! `start` until every contact has been dialed and until the campaign has completed.
//! `cargo bench -p exogate --bench campaign_dial` (SQLite), or on PostgreSQL with
//! `BENCH_DATABASE_URL=postgres://…/an_empty_database EXOGATE_SECRET_KEY=x cargo bench -p exogate --bench campaign_dial`

use std::time::{Duration, Instant};

use exogate::config::{ExotelEnv, Secret};
use exotel_sim::fake_exotel::{FakeExotel, FakeExotelConfig, Script};
use serde_json::{Value, json};

const CONTACTS: usize = 2000;

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    rt.block_on(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let database_url = std::env::var("BENCH_DATABASE_URL")
            .unwrap_or_else(|_| format!("sqlite://{}", dir.path().join("bench.db").display()));
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("addr").port();
        let base = format!("http://127.0.0.1:{port}");
        let fake = FakeExotel::start(FakeExotelConfig { default_script: Script::Busy, ..FakeExotelConfig::default() })
            .await
            .expect("fake exotel");
        let config = exogate::Config {
            http_port: port,
            ws_port: 0,
            bind_addr: [127, 0, 0, 1].into(),
            database_url,
            public_base_url: Some(base.clone()),
            secret_key: Some(Secret("bench".into())),
            account_max_concurrent: 100_000,
            account_calls_per_minute: 1_000_000,
            exotel: ExotelEnv {
                api_key: Some("fake-key".into()),
                api_token: Some(Secret("fake-token".into())),
                sid: Some("exotelsim".into()),
                subdomain: None,
                app_id: Some("4321".into()),
                caller_id: Some("08047491899".into()),
                api_url: Some(fake.base_url()),
            },
            ..exogate::Config::default()
        };
        let gw = exogate::start(config).await.expect("gateway");
        let http = reqwest::Client::new();
        let mut csv = String::from("phone,name\n");
        for i in 0..CONTACTS {
            csv.push_str(&format!("97{i:08},n{i}\n"));
        }
        let created = Instant::now();
        let r = http
            .post(format!("{base}/api/campaigns"))
            .json(&json!({ "agent": "echo", "csv": csv, "max_concurrent": 1000, "calls_per_minute": 10000,
                "window": { "start": "00:00", "end": "23:59" } }))
            .send()
            .await
            .expect("create");
        let body: Value = r.json().await.expect("json");
        let id = body["campaign"]["id"].as_str().expect("campaign id").to_string();
        let import = created.elapsed();
        let started = Instant::now();
        http.post(format!("{base}/api/campaigns/{id}/start")).send().await.expect("start");
        let mut all_dialed = None;
        loop {
            if all_dialed.is_none() && fake.calls().len() >= CONTACTS {
                all_dialed = Some(started.elapsed());
            }
            let c: Value =
                http.get(format!("{base}/api/campaigns/{id}")).send().await.expect("get").json().await.expect("json");
            if c["campaign"]["status"] == "completed" {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "not done after {:?}, {} dials at the fake: {c}",
                started.elapsed(),
                fake.calls().len()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let done = started.elapsed();
        let dialed = all_dialed.unwrap_or(done);
        println!(
            "campaign_dial/{CONTACTS}_contacts: import {:.0} ms; every contact dialed in {:.2} s = {:.0} dials/s \
             ({:.2} ms per dial); completed in {:.2} s; peak {} calls live at the fake",
            import.as_secs_f64() * 1e3,
            dialed.as_secs_f64(),
            CONTACTS as f64 / dialed.as_secs_f64(),
            dialed.as_secs_f64() * 1e3 / CONTACTS as f64,
            done.as_secs_f64(),
            fake.live().account_peak
        );
        gw.shutdown(Duration::from_secs(1)).await;
    });
}
