//! How many calls per second the call log absorbs: each call is what a media session writes (a
//! start upsert, timeline events, an end upsert), queued without waiting, then flushed.
//! `cargo bench -p exogate --bench call_log` (SQLite), or on PostgreSQL with
//! `BENCH_DATABASE_URL=postgres://…/an_empty_database cargo bench -p exogate --bench call_log`

use std::time::Instant;

use exogate::store::{CallKey, CallPatch, Status, Store};
use serde_json::json;

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    rt.block_on(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = std::env::var("BENCH_DATABASE_URL")
            .unwrap_or_else(|_| format!("sqlite://{}", dir.path().join("bench.db").display()));
        let store = Store::open(&url).await.expect("store");
        for calls in [1_000usize, 10_000] {
            let started = Instant::now();
            for i in 0..calls {
                let key = CallKey {
                    id: Some(format!("bench-{calls}-{i}")),
                    call_sid: Some(format!("sid-{calls}-{i}")),
                    stream_sid: Some(format!("stream-{calls}-{i}")),
                    custom_field: None,
                };
                store.upsert(
                    key.clone(),
                    CallPatch::new()
                        .text("from_number", Some("+919876543210"))
                        .text("agent", Some("echo"))
                        .int("sample_rate", Some(8000))
                        .status(Status::InProgress),
                );
                store.event(key.clone(), "start", json!({ "sample_rate": 8000 }));
                store.event(key.clone(), "mark-played", json!({ "name": "utt-1" }));
                store.event(key.clone(), "stop", json!({ "reason": "callended" }));
                store.upsert(
                    key,
                    CallPatch::new()
                        .int("frames_in", Some(1500))
                        .int("bytes_in", Some(480_000))
                        .status(Status::Completed),
                );
            }
            let queued = started.elapsed();
            store.flush().await;
            let total = started.elapsed();
            println!(
                "call_log/{calls}_calls: {:.0} calls/s, {:.1} µs per call (5 writes), enqueue {:.2} µs per call",
                calls as f64 / total.as_secs_f64(),
                total.as_secs_f64() * 1e6 / calls as f64,
                queued.as_secs_f64() * 1e6 / calls as f64
            );
        }
    });
}
