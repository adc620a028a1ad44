//! How fast the console's pages load with a big call log: 100,000 calls (each with its timeline)
//! in the database, then each page's requests timed as the browser makes them: the page's files,
//! the session check, and its API reads (the call log's first and a deep page, each filter, a
//! call's detail, the live calls, agents, phones, campaigns).
//!
//! `cargo bench -p exogate --bench console` (SQLite); with
//! `BENCH_POSTGRES=postgres://postgres@127.0.0.1:5432/postgres` it also runs on a fresh
//! PostgreSQL database made for it (and dropped after). `CALLS` changes the log's size.

use std::time::{Duration, Instant};

use exogate::Config;
use exogate::config::Secret;
use exogate::store::{CallKey, CallPatch, Status};
use serde_json::json;

const KEY: &str = "console-bench-key";
const RUNS: usize = 30;

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    rt.block_on(async {
        let calls: usize = std::env::var("CALLS").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);
        let dir = tempfile::tempdir().expect("tempdir");
        bench("sqlite", &format!("sqlite://{}", dir.path().join("console.db").display()), calls).await;
        if let Ok(admin) = std::env::var("BENCH_POSTGRES") {
            let name = "exogate_bench_console";
            let psql = |sql: String| std::process::Command::new("psql").arg(&admin).arg("-qc").arg(sql).status();
            let _ = psql(format!("DROP DATABASE IF EXISTS {name}"));
            psql(format!("CREATE DATABASE {name}")).expect("psql");
            let url = match admin.rsplit_once('/') {
                Some((base, _)) => format!("{base}/{name}"),
                None => panic!("BENCH_POSTGRES must end in /database"),
            };
            bench("postgres", &url, calls).await;
            let _ = psql(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
        }
    });
}

async fn bench(db: &str, url: &str, calls: usize) {
    let config = Config {
        http_port: 0,
        ws_port: 0,
        bind_addr: [127, 0, 0, 1].into(),
        database_url: url.to_string(),
        api_key: Some(Secret(KEY.into())),
        secret_key: Some(Secret("bench".into())),
        ..Config::default()
    };
    let gw = exogate::server::start(config).await.expect("gateway");
    let store = &gw.state.store;
    let seeded = Instant::now();
    let agents = ["echo", "sales-bot", "support-bot", "collections"];
    let statuses = [Status::Completed, Status::Completed, Status::Completed, Status::Failed, Status::Busy];
    for i in 0..calls {
        let key = CallKey { id: Some(format!("c{i:07}")), call_sid: Some(format!("sid{i:07}")), ..CallKey::default() };
        store.upsert(
            key.clone(),
            CallPatch::new()
                .text("from_number", Some(format!("+9198{:08}", i % 5000)))
                .text("to_number", Some("08047491899"))
                .text("agent", Some(agents[i % agents.len()]))
                .text("direction", Some(if i % 3 == 0 { "outbound-api" } else { "inbound" }))
                .int("sample_rate", Some(8000))
                .status(Status::InProgress),
        );
        store.event(key.clone(), "start", json!({ "sample_rate": 8000 }));
        store.event(key.clone(), "mark-played", json!({ "name": "utt-1" }));
        store.event(key.clone(), "end", json!({ "close_code": 1000, "reason": "callended" }));
        store.upsert(
            key,
            CallPatch::new()
                .int("frames_in", Some(300))
                .int("duration_ms", Some(30_000))
                .text("stop_reason", Some("callended"))
                .status(statuses[i % statuses.len()]),
        );
        if i % 5000 == 4999 {
            store.flush().await;
        }
    }
    store.flush().await;
    eprintln!("{db}: {calls} calls seeded in {:.1} s", seeded.elapsed().as_secs_f64());

    let http = reqwest::Client::new();
    let base = format!("http://{}", gw.http_addr);
    // Signed in as the browser is: the session cookie, not the key.
    let signed_in =
        http.post(format!("{base}/api/session")).json(&json!({ "key": KEY })).send().await.expect("sign in");
    let cookie =
        signed_in.headers()["set-cookie"].to_str().expect("cookie").split(';').next().expect("cookie").to_string();
    let get = |path: String| {
        let req = http.get(format!("{base}{path}")).header("cookie", &cookie);
        async move {
            let r = req.send().await.expect("GET");
            assert!(r.status().is_success(), "{path}: {}", r.status());
            r.bytes().await.expect("body").len()
        }
    };
    let shell = ["/", "/console/app.js", "/console/app.css", "/api/session"];
    let mid = format!("c{:07}", calls / 2);
    let pages: Vec<(&str, Vec<String>)> = vec![
        ("call log, first page", vec!["/api/calls?limit=50".into()]),
        ("call log, page 1000 (offset)", vec![format!("/api/calls?limit=50&offset={}", calls.saturating_sub(100))]),
        ("call log, by status", vec!["/api/calls?status=failed&limit=50".into()]),
        ("call log, by agent", vec!["/api/calls?agent=collections&limit=50".into()]),
        ("call log, by direction", vec!["/api/calls?direction=inbound&limit=50".into()]),
        ("call log, by date", vec!["/api/calls?since=2020-01-01&until=2100-01-01&limit=50".into()]),
        ("call detail", vec![format!("/api/calls/{mid}")]),
        ("live calls", vec!["/api/live".into()]),
        ("agents + phones + campaigns", vec!["/api/agents".into(), "/api/phones".into(), "/api/campaigns".into()]),
    ];
    println!("\n{db}, {calls} calls in the log: page load (shell + the page's API reads), {RUNS} runs");
    println!("| page | p50 ms | p95 ms | max ms |");
    println!("|---|---:|---:|---:|");
    for (name, reads) in &pages {
        let mut took = Vec::with_capacity(RUNS);
        for _ in 0..RUNS {
            let t = Instant::now();
            // The browser fetches the shell's files in parallel, then the page's reads.
            futures_util::future::join_all(shell.iter().map(|p| get(p.to_string()))).await;
            futures_util::future::join_all(reads.iter().map(|p| get(p.clone()))).await;
            took.push(t.elapsed());
        }
        took.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let p95 = took[(RUNS * 95 / 100).min(RUNS - 1)];
        println!("| {name} | {:.1} | {:.1} | {:.1} |", ms(took[RUNS / 2]), ms(p95), ms(took[RUNS - 1]));
    }
    gw.shutdown(Duration::from_secs(1)).await;
}
