//! Bad input on one socket never disturbs a healthy call beside it, and every bad socket still
//! leaves its record.

mod common;

use std::time::Duration;

use common::{TestGateway, assert_echo, close_code, connect, media_json, start_json};
use exotel::SampleRate;
use exotel_sim::{AudioSource, CallConfig, Target, run_call};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

fn healthy(gw: &TestGateway) -> CallConfig {
    CallConfig {
        target: Target::Ws(gw.ws_url()),
        sample_rate: SampleRate::Hz8000,
        audio: AudioSource::Tone { hz: 440.0, ms: 3000 },
        idle_tail: Duration::from_millis(800),
        ..CallConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_is_counted_and_skipped_while_a_healthy_call_runs() {
    let gw = TestGateway::start().await;
    let good = healthy(&gw);
    let good_sid = good.call_sid.clone();
    let good_call = tokio::spawn(run_call(good));

    let mut ws = connect(&gw).await;
    ws.send(Message::text(r#"{"event":"connected"}"#)).await.unwrap();
    ws.send(Message::text(start_json("bad-call-1", "bad-stream-1"))).await.unwrap();
    ws.send(Message::text("this is not json")).await.unwrap();
    ws.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
    ws.send(Message::text(r#"{"event":"silence","level":3}"#)).await.unwrap();
    ws.send(Message::text(r#"{"event":"media","sequence_number":"2","media":{"payload":"@@not base64@@"}}"#))
        .await
        .unwrap();
    ws.send(Message::text(media_json(3, &[1, 2, 3]))).await.unwrap();
    let valid: Vec<u8> = (0..3200u32).map(|i| (i % 251) as u8).collect();
    ws.send(Message::text(media_json(4, &valid))).await.unwrap();
    // The valid audio still comes back, in a legal chunk.
    let echoed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => {
                    if let Ok(exotel::OutboundEvent::Media { payload, .. }) = exotel::OutboundEvent::parse(&t) {
                        return payload;
                    }
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    })
    .await
    .expect("echo of the valid frame");
    assert_eq!(echoed, valid);
    ws.send(Message::text(r#"{"event":"stop","stream_sid":"bad-stream-1","stop":{"reason":"callended"}}"#))
        .await
        .unwrap();
    assert_eq!(close_code(&mut ws).await, Some(1000));

    let report = good_call.await.unwrap().expect("healthy call runs");
    assert!(report.ok(), "{:?}", report.violations);
    assert_echo(&report.sent_pcm, &report.received_pcm);
    assert_eq!(gw.call(&good_sid).await["bad_messages"], 0);

    let row = gw.call("bad-call-1").await;
    // An unknown event (Exotel adds them, e.g. `silence`) is ignored, not a bad message.
    assert_eq!(row["bad_messages"], 4, "{row}");
    assert_eq!(row["frames_in"], 1);
    assert_eq!(row["bytes_in"], 3200);
    assert_eq!(row["seq_gaps"], 0);
    assert_eq!(row["status"], "completed");
    let bad: Vec<String> = row["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "bad-message")
        .map(|e| e["detail"]["kind"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(bad, ["not-json", "binary-frame", "invalid-base64", "odd-length-pcm"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_message_closes_1009_and_silence_closes_1008() {
    let gw = TestGateway::start().await;
    let good = healthy(&gw);
    let good_call = tokio::spawn(run_call(good));

    let mut big = connect(&gw).await;
    big.send(Message::text(start_json("big-call", "big-stream"))).await.unwrap();
    let huge = media_json(2, &vec![0u8; 900_000]);
    assert!(huge.len() > 1 << 20);
    let _ = big.send(Message::text(huge)).await;
    assert_eq!(close_code(&mut big).await, Some(1009));

    let mut mute = connect(&gw).await;
    mute.send(Message::text(r#"{"event":"connected"}"#)).await.unwrap();
    assert_eq!(close_code(&mut mute).await, Some(u16::from(CloseCode::Policy)));

    let report = good_call.await.unwrap().expect("healthy call runs");
    assert!(report.ok(), "{:?}", report.violations);
    assert_echo(&report.sent_pcm, &report.received_pcm);

    let row = gw.call("big-call").await;
    assert_eq!(row["close_code"], 1009);
    assert_eq!(row["stop_reason"], "message-too-big");
    assert_eq!(row["status"], "completed");

    gw.gw.state.store.flush().await;
    let (_, failed) = gw.get_json("/api/calls?status=failed").await;
    let rows = failed["calls"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{failed}");
    assert_eq!(rows[0]["close_code"], 1008);
    assert_eq!(rows[0]["stop_reason"], "no-start");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequence_gaps_are_counted() {
    let gw = TestGateway::start().await;
    let mut ws = connect(&gw).await;
    ws.send(Message::text(start_json("gap-call", "gap-stream"))).await.unwrap();
    for seq in [2u64, 3, 7, 8, 20] {
        ws.send(Message::text(media_json(seq, &[0u8; 320]))).await.unwrap();
    }
    ws.send(Message::text(r#"{"event":"stop","sequence_number":"21","stop":{"reason":"stopped"}}"#)).await.unwrap();
    close_code(&mut ws).await;
    let row = gw.call("gap-stream").await;
    assert_eq!(row["seq_gaps"], 3 + 11);
    assert_eq!(row["stop_reason"], "stopped");
    assert_eq!(row["frames_in"], 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keypress_flood_is_counted_not_stored() {
    let gw = TestGateway::start().await;
    let mut ws = connect(&gw).await;
    ws.send(Message::text(start_json("CA-keys", "st-keys"))).await.unwrap();
    for i in 0..5000u64 {
        let dtmf =
            format!(r#"{{"event":"dtmf","sequence_number":"{}","dtmf":{{"digit":"5","duration":"40"}}}}"#, i + 2);
        ws.send(Message::text(dtmf)).await.unwrap();
    }
    ws.send(Message::text(r#"{"event":"stop","stop":{"reason":"callended"}}"#)).await.unwrap();
    assert_eq!(close_code(&mut ws).await, Some(1000));
    gw.gw.state.store.flush().await;
    let row = gw.call("CA-keys").await;
    let events = row["events"].as_array().unwrap();
    assert!(events.len() <= 1005, "{} timeline entries", events.len());
    assert_eq!(row["dtmf"].as_str().unwrap().len(), 256);
    let end = events.iter().find(|e| e["kind"] == "end").expect("the end is always recorded");
    assert!(end["detail"]["timeline_entries_left_out"].as_u64().unwrap() >= 4000, "{end}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_calls_facts_are_not_rewritten() {
    let gw = TestGateway::start().await;
    let mut cfg = healthy(&gw);
    cfg.call_sid = "CA-done".into();
    cfg.audio = AudioSource::Tone { hz: 440.0, ms: 400 };
    let report = run_call(cfg).await.unwrap();
    assert!(report.ok(), "{}", report.summary());
    gw.gw.state.store.flush().await;
    let before = gw.call("CA-done").await;
    assert_eq!(before["status"], "completed");
    // Someone who learned the CallSid replays a Passthru and opens another stream with it.
    let forged = "/api/exotel/passthru?CallSid=CA-done&CallFrom=%2B910000000000&Direction=outbound-dial";
    assert_eq!(gw.get_json(forged).await.0, 200);
    let mut ws = connect(&gw).await;
    let start = start_json("CA-done", "st-forged").replace("+919800000001", "+910000000000");
    ws.send(Message::text(start)).await.unwrap();
    ws.send(Message::text(media_json(2, &[7u8; 320]))).await.unwrap();
    ws.send(Message::text(r#"{"event":"stop","stop":{"reason":"callended"}}"#)).await.unwrap();
    assert_eq!(close_code(&mut ws).await, Some(1000));
    gw.gw.state.store.flush().await;
    let after = gw.call("CA-done").await;
    // What was recorded stands (a later Passthru may only fill what the stream didn't know).
    for field in ["from_number", "to_number", "frames_in", "bytes_in", "started_at", "ended_at", "stream_sid", "agent"]
    {
        assert!(!before[field].is_null(), "{field}");
        assert_eq!(after[field], before[field], "{field}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_flow_through_a_database_outage_and_their_rows_arrive_after() {
    let Some(admin) = common::postgres_admin_url() else {
        eprintln!("skipped: EXOGATE_TEST_POSTGRES is not set");
        return;
    };
    use sqlx::Connection as _;
    let dir = tempfile::tempdir().unwrap();
    let url = common::test_database(dir.path(), Some("postgres")).await;
    let db = url.rsplit_once('/').unwrap().1.to_string();
    let gw = TestGateway::start_with(|c| {
        c.database_url = url.clone();
        c.secret_key = Some(exogate::config::Secret("outage-secret".into()));
    })
    .await;
    let mut admin = sqlx::PgConnection::connect(&admin).await.unwrap();
    let mut set_connections = async |allow: bool| {
        sqlx::Executor::execute(&mut admin, format!("ALTER DATABASE {db} ALLOW_CONNECTIONS {allow}").as_str())
            .await
            .unwrap();
        if !allow {
            let kill = format!("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{db}'");
            sqlx::Executor::execute(&mut admin, kill.as_str()).await.unwrap();
        }
    };
    set_connections(false).await;
    // The database is gone: calls still get their audio, and health says why it is degraded.
    let mut cfg = healthy(&gw);
    cfg.call_sid = "CA-outage".into();
    let report = run_call(cfg).await.unwrap();
    assert!(report.ok(), "{}", report.summary());
    assert_echo(&report.sent_pcm, &report.received_pcm);
    let (status, health) = gw.get_json("/health").await;
    assert_eq!((status, health["status"].as_str()), (200, Some("degraded")), "{health}");
    assert!(health["reason"].as_str().is_some(), "{health}");
    let (status, body) = gw.get_json("/api/calls").await;
    assert_eq!(status, 503, "the control plane says the database is away: {body}");

    set_connections(true).await;
    // Back: the held rows are written; nothing was lost.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (_, health) = gw.get_json("/health").await;
        if health["status"] == "ok" {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never recovered: {health}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    gw.gw.state.store.flush().await;
    let row = gw.call("CA-outage").await;
    assert_eq!((row["status"].as_str(), row["frames_in"].as_i64()), (Some("completed"), Some(150)), "{row}");
    assert_eq!(health_dropped(&gw).await, 0);
}

/// Waits (up to 30 s) for `/health` to say `ok` again, with no call-log write dropped meanwhile.
async fn recovered_with_nothing_dropped(gw: &TestGateway) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (_, health) = gw.get_json("/health").await;
        if health["status"] == "ok" {
            assert_eq!(health["call_log_writes_dropped"], 0, "{health}");
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "never recovered: {health}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn health_dropped(gw: &TestGateway) -> u64 {
    gw.get_json("/health").await.1["call_log_writes_dropped"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_faster_than_real_time_fills_a_bounded_queue_and_the_rest_is_counted() {
    let gw = TestGateway::start().await;
    let mut ws = connect(&gw).await;
    ws.send(Message::text(start_json("CA-fast", "st-fast"))).await.unwrap();
    let frame = vec![3u8; 16_000];
    ws.send(Message::text(media_json(2, &frame))).await.unwrap();
    // Once the echo plays, 99 s more of 8 kHz audio at once; its playback queue holds 60 s.
    let first = async {
        while let Some(Ok(msg)) = ws.next().await {
            if msg.to_text().is_ok_and(|t| t.contains("\"media\"")) {
                return;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), first).await.expect("the echo starts");
    for seq in 1..100u64 {
        ws.send(Message::text(media_json(seq + 2, &frame))).await.unwrap();
    }
    ws.send(Message::text(r#"{"event":"stop","stop":{"reason":"callended"}}"#)).await.unwrap();
    assert_eq!(close_code(&mut ws).await, Some(1000));
    gw.gw.state.store.flush().await;
    let row = gw.call("CA-fast").await;
    assert_eq!(row["bytes_in"], 1_600_000);
    let dropped = row["dropped_out_bytes"].as_i64().unwrap_or(0);
    assert!(dropped >= 500_000, "at least 40 s of the 100 s could not be queued: {row}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_queries_and_bodies_are_refused() {
    let gw = TestGateway::start().await;
    let query: String = (0..300).map(|i| format!("p{i}=v&")).collect();
    let url = format!("{}?{query}", gw.ws_url());
    match tokio_tungstenite::connect_async(url.as_str()).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 400),
        other => panic!("300 query parameters were accepted: {:?}", other.map(|_| ())),
    }
    let body = format!("CallSid=CA-big&pad={}", "x".repeat(100 * 1024));
    let r = gw
        .http
        .post(gw.http_url("/api/exotel/passthru"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413, "a webhook body over 64 KiB");
    let (status, _) = gw.get_json("/api/calls/CA-big").await;
    assert_eq!(status, 404, "nothing stored");
}

/// Makes files immutable (`chattr +i`, which stops even root) until dropped.
struct Immutable(Vec<std::path::PathBuf>);

impl Immutable {
    fn set(paths: &[std::path::PathBuf]) -> Option<Self> {
        for p in paths {
            let ok = std::process::Command::new("chattr").arg("+i").arg(p).status().is_ok_and(|s| s.success());
            if !ok {
                drop(Immutable(paths.to_vec()));
                return None;
            }
        }
        Some(Immutable(paths.to_vec()))
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = std::process::Command::new("chattr").arg("-i").arg(p).status();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_flow_while_the_sqlite_file_cannot_be_written_and_their_rows_arrive_after() {
    let gw = TestGateway::start().await;
    if !gw.database_url().starts_with("sqlite") {
        return;
    }
    let files = ["calls.db", "calls.db-wal"].map(|f| gw.dir.path().join(f));
    let Some(frozen) = Immutable::set(&files) else {
        eprintln!("skipped: chattr +i is not available here (needs root and a filesystem that supports it)");
        return;
    };
    let mut cfg = healthy(&gw);
    cfg.call_sid = "CA-frozen".into();
    let report = run_call(cfg).await.unwrap();
    assert!(report.ok(), "{}", report.summary());
    assert_echo(&report.sent_pcm, &report.received_pcm);
    let (_, health) = gw.get_json("/health").await;
    assert_eq!(health["status"], "degraded", "{health}");
    let r = gw.http.post(gw.http_url("/api/agents")).json(&serde_json::json!({ "id": "never" })).send().await.unwrap();
    assert_eq!(r.status(), 503, "an agent that can't be stored is not 201");

    drop(frozen);
    recovered_with_nothing_dropped(&gw).await;
    gw.gw.state.store.flush().await;
    let row = gw.call("CA-frozen").await;
    assert_eq!((row["status"].as_str(), row["frames_in"].as_i64()), (Some("completed"), Some(150)), "{row}");
    assert_eq!(gw.get_json("/api/agents/never").await.0, 404);
}

/// A small tmpfs (`mount`, which needs root) that is unmounted when dropped.
struct SmallDisk(tempfile::TempDir);

impl SmallDisk {
    fn mount(bytes: u64) -> Option<Self> {
        let dir = tempfile::tempdir().ok()?;
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(dir.path())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(Self(dir))
    }

    /// Writes a file until the disk is full; removing it frees the space again.
    fn fill(&self) -> std::path::PathBuf {
        use std::io::Write as _;
        let path = self.0.path().join("filler");
        let mut f = std::fs::File::create(&path).unwrap();
        let block = vec![0u8; 4096];
        while f.write_all(&block).is_ok() {}
        let _ = f.sync_all();
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(self.0.path()).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_flow_while_the_disk_is_full_and_their_rows_arrive_after() {
    let Some(disk) = SmallDisk::mount(16 << 20) else {
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    };
    let url = format!("sqlite://{}", disk.0.path().join("calls.db").display());
    let gw = TestGateway::start_with(|c| c.database_url = url.clone()).await;
    // SQLite keeps its WAL index in memory, not in a mapped `-shm` file: a full or unwritable
    // disk under a mapping would kill the process with SIGBUS.
    assert!(!disk.0.path().join("calls.db-shm").exists(), "no -shm file to map");
    let filler = disk.fill();
    let mut calls = Vec::new();
    for i in 0..3 {
        let mut cfg = healthy(&gw);
        cfg.call_sid = format!("CA-full-{i}");
        calls.push(tokio::spawn(run_call(cfg)));
    }
    for call in calls {
        let report = call.await.unwrap().unwrap();
        assert!(report.ok(), "{}", report.summary());
        assert_echo(&report.sent_pcm, &report.received_pcm);
    }
    // The rows can't be written yet: held, and health says why.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (status, health) = gw.get_json("/health").await;
        if health["status"] == "degraded" {
            assert_eq!(status, 200);
            assert!(health["reason"].as_str().is_some_and(|r| !r.is_empty()), "{health}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "a full disk never showed: {health}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    std::fs::remove_file(filler).unwrap();
    recovered_with_nothing_dropped(&gw).await;
    for i in 0..3 {
        let row = gw.call(&format!("CA-full-{i}")).await;
        assert_eq!((row["status"].as_str(), row["frames_in"].as_i64()), (Some("completed"), Some(150)), "{row}");
    }
    drop(gw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_console_sign_out_reaches_every_gateway_and_holds_through_a_database_outage() {
    let Some(admin) = common::postgres_admin_url() else {
        eprintln!("skipped: EXOGATE_TEST_POSTGRES is not set");
        return;
    };
    use sqlx::Connection as _;
    const KEY: &str = "right-key-0123456789";
    let dir = tempfile::tempdir().unwrap();
    let url = common::test_database(dir.path(), Some("postgres")).await;
    let db = url.rsplit_once('/').unwrap().1.to_string();
    let start = || {
        TestGateway::start_with(|c| {
            c.database_url = url.clone();
            c.api_key = Some(exogate::config::Secret(KEY.into()));
        })
    };
    let (one, two) = (start().await, start().await);
    let sign_in = async |gw: &TestGateway| {
        let r =
            gw.http.post(gw.http_url("/api/session")).json(&serde_json::json!({ "key": KEY })).send().await.unwrap();
        assert_eq!(r.status(), 200);
        r.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string()
    };
    let live = async |gw: &TestGateway, cookie: &str| {
        gw.http.get(gw.http_url("/api/live")).header("cookie", cookie).send().await.unwrap().status().as_u16()
    };
    let sign_out = async |gw: &TestGateway, cookie: &str| {
        gw.http.delete(gw.http_url("/api/session")).header("cookie", cookie).send().await.unwrap().status().as_u16()
    };
    // The cookie is the API key's, so it is good on both gateways; signed out on one, it is
    // refused by the other as soon as that one hears of it.
    let (a, b) = (sign_in(&one).await, sign_in(&one).await);
    assert_eq!((live(&one, &a).await, live(&two, &a).await), (200, 200));
    assert_eq!(sign_out(&one, &a).await, 204);
    assert_eq!(live(&one, &a).await, 401);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while live(&two, &a).await != 401 {
        assert!(tokio::time::Instant::now() < deadline, "the other gateway still honours a signed-out cookie");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The database goes away: nobody is signed out or back in by it.
    let mut admin = sqlx::PgConnection::connect(&admin).await.unwrap();
    for sql in [
        format!("ALTER DATABASE {db} ALLOW_CONNECTIONS false"),
        format!("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{db}'"),
    ] {
        sqlx::Executor::execute(&mut admin, sql.as_str()).await.unwrap();
    }
    assert_eq!((live(&two, &a).await, live(&two, &b).await), (401, 200));
    // A sign-out the database can't take holds where it was made at once, and reaches the other
    // gateway once the database is back.
    assert_eq!(sign_out(&two, &b).await, 204);
    assert_eq!((live(&two, &b).await, live(&one, &b).await), (401, 200));
    sqlx::Executor::execute(&mut admin, format!("ALTER DATABASE {db} ALLOW_CONNECTIONS true").as_str()).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while live(&one, &b).await != 401 {
        assert!(tokio::time::Instant::now() < deadline, "the sign-out never reached the other gateway");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
