//! `run_load` against small bots written here: a well-behaved echo bot (3200-byte chunks, a mark
//! every few chunks), one that breaks Exotel's chunk rules, and one that hangs up early.
//! Everything binds 127.0.0.1 only.

// tungstenite's upgrade callback fixes the (large) error type; nothing here can shrink it.
#![allow(clippy::result_large_err)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use exotel::SampleRate;
use exotel_sim::validate::rule;
use exotel_sim::{AudioSource, LoadConfig, Target, run_load};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};

/// How a bot answers.
#[derive(Debug, Clone, Copy)]
enum Bot {
    /// Echoes in 3200-byte chunks, a mark after every 5th chunk; closes 1000 on `stop`.
    Echo,
    /// Echoes in 1600-byte chunks under someone else's stream_sid.
    RuleBreaker,
    /// Echoes, but closes the socket 300 ms into the call.
    HangsUpEarly,
}

#[derive(Debug, Default)]
struct BotLog {
    /// The upgrade request targets, as the bot saw them.
    paths: std::sync::Mutex<Vec<String>>,
    calls: AtomicU64,
    marks_sent: AtomicU64,
    marks_echoed: AtomicU64,
    stops: AtomicU64,
}

async fn serve(bot: Bot) -> (String, Arc<BotLog>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/media", listener.local_addr().unwrap());
    let log = Arc::new(BotLog::default());
    let shared = log.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let log = shared.clone();
            // Nagle plus delayed ACKs would hold back the second of two quick chunks by ~40 ms.
            tcp.set_nodelay(true).unwrap();
            tokio::spawn(async move {
                let mut path = String::new();
                let upgrade = tokio_tungstenite::accept_hdr_async(tcp, |req: &Request, resp: Response| {
                    path = req.uri().to_string();
                    Ok(resp)
                });
                if let Ok(ws) = upgrade.await {
                    log.paths.lock().unwrap().push(path);
                    log.calls.fetch_add(1, Ordering::Relaxed);
                    one_call(ws, bot, &log).await;
                }
            });
        }
    });
    (url, log)
}

async fn one_call(ws: tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>, bot: Bot, log: &BotLog) {
    let (mut tx, mut rx) = ws.split();
    let (chunk, sid_override) = match bot {
        Bot::RuleBreaker => (1600, Some("not-yours")),
        Bot::Echo | Bot::HangsUpEarly => (3200, None),
    };
    let began = Instant::now();
    let mut sid = String::new();
    let mut pending = Vec::new();
    let mut chunks = 0u64;
    while let Some(Ok(msg)) = rx.next().await {
        let Message::Text(text) = msg else { continue };
        let v: Value = serde_json::from_str(text.as_str()).unwrap();
        match v["event"].as_str() {
            Some("start") => sid = v["start"]["stream_sid"].as_str().unwrap().to_string(),
            Some("media") => {
                pending.extend(B64.decode(v["media"]["payload"].as_str().unwrap()).unwrap());
                let to = sid_override.unwrap_or(&sid);
                while pending.len() >= chunk {
                    let pcm: Vec<u8> = pending.drain(..chunk).collect();
                    let out = json!({"event":"media","stream_sid":to,"media":{"payload":B64.encode(&pcm)}});
                    tx.send(Message::Text(out.to_string().into())).await.unwrap();
                    chunks += 1;
                    if chunks % 5 == 0 {
                        let mark = json!({"event":"mark","stream_sid":to,"mark":{"name":format!("m{chunks}")}});
                        tx.send(Message::Text(mark.to_string().into())).await.unwrap();
                        log.marks_sent.fetch_add(1, Ordering::Relaxed);
                    }
                }
                if matches!(bot, Bot::HangsUpEarly) && began.elapsed() > Duration::from_millis(300) {
                    let _ = tx.send(Message::Close(None)).await;
                    return;
                }
            }
            Some("mark") => {
                assert!(v["mark"]["name"].as_str().unwrap().starts_with('m'));
                log.marks_echoed.fetch_add(1, Ordering::Relaxed);
            }
            Some("stop") => {
                log.stops.fetch_add(1, Ordering::Relaxed);
                let _ = tx.send(Message::Close(None)).await;
            }
            _ => {}
        }
    }
}

fn config(url: String, calls: usize) -> LoadConfig {
    LoadConfig {
        target: Target::Ws(url),
        calls,
        ramp_per_sec: 200.0,
        duration: Duration::from_secs(2),
        warmup: Duration::from_millis(500),
        drain: Duration::from_millis(700),
        server_pid: Some(std::process::id()),
        ..LoadConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_calls_against_an_echo_bot() {
    let (url, log) = serve(Bot::Echo).await;
    let began = Instant::now();
    let r = run_load(config(url, 20)).await.unwrap();
    assert!(began.elapsed() < Duration::from_secs(8), "took {:?}", began.elapsed());
    println!("{}", r.summary());

    assert_eq!((r.calls_ok, r.calls_failed), (20, 0), "{:?}", r.errors);
    assert!(r.violations.is_empty(), "{:?}", r.violation_examples);
    assert_eq!((r.window.calls_live_at_start, r.window.calls_live_at_end), (20, 20));
    // 2 s of 20 ms frames per call.
    assert!((1900..=2100).contains(&r.frames_sent), "{} frames", r.frames_sent);
    assert_eq!(r.frames_stamped, r.frames_sent);
    assert!(r.echo_ratio >= 0.95, "echo ratio {}", r.echo_ratio);
    assert_eq!(r.blocks_foreign, 0);
    // A frame waits for its 3200-byte chunk (200 ms at 8 kHz) to fill, then comes straight back.
    let e = r.echo_latency;
    assert_eq!(e.count, r.frames_echoed);
    assert!((60_000..=160_000).contains(&e.p50_us), "{e:?}");
    assert!(e.max_us < 400_000, "{e:?}");
    // The newest frame in a chunk is the one that completed it: only the bot's own delay.
    let n = r.newest_frame_delay;
    assert!(n.count >= 180, "{n:?}");
    assert!(n.p50_us < 20_000 && n.p99_us < 100_000, "{n:?}");
    assert!(r.send_lag.p99_us < 50_000, "{:?}", r.send_lag);
    // Marks are echoed at once; every call ended with stop.
    assert!(r.marks_echoed > 0);
    assert_eq!(r.marks_echoed, log.marks_echoed.load(Ordering::Relaxed));
    assert_eq!(log.stops.load(Ordering::Relaxed), 20);
    // CPU and memory figures are there (the "server" is this very process here).
    assert!(r.loadgen.millicores_per_call.is_some() && r.loadgen.rss_steady_end_kib > 0);
    let server = r.server.as_ref().unwrap();
    assert!(server.usage.rss_steady_end_kib > 0 && server.rss_per_call_kib.is_some());
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["calls_ok"], 20);
    assert!(json["newest_frame_delay"]["p99_us"].as_u64().unwrap() > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_breaking_bot_at_16k_100ms_frames() {
    let (url, _log) = serve(Bot::RuleBreaker).await;
    let cfg = LoadConfig {
        frame_ms: 100,
        sample_rate: SampleRate::Hz16000,
        audio: AudioSource::Silence { ms: 300 },
        server_pid: None,
        ..config(url, 4)
    };
    let r = run_load(cfg).await.unwrap();
    println!("{}", r.summary());
    assert_eq!(r.calls_ok, 0);
    assert_eq!(r.failures.violations, 4);
    let by_rule: BTreeMap<&str, u64> = r.violations.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    assert!(by_rule[rule::CHUNK_TOO_SMALL] > 0, "{by_rule:?}");
    assert!(by_rule[rule::STREAM_SID_MISMATCH] > 0, "{by_rule:?}");
    // Each 100 ms frame at 16 kHz is 3200 bytes = 10 stamped blocks; echoed in halves, the
    // audio still matches (to its call, whatever stream_sid the bot claims).
    assert!(r.echo_ratio >= 0.9, "{}", r.echo_ratio);
    assert!(r.server.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_hang_ups_and_refused_connections_are_counted() {
    let (url, _log) = serve(Bot::HangsUpEarly).await;
    let short = |url: String| LoadConfig { server_pid: None, duration: Duration::from_millis(500), ..config(url, 3) };
    let r = run_load(short(url)).await.unwrap();
    assert_eq!((r.calls_ok, r.failures.closed_early), (0, 3), "{r:?}");
    assert!(r.errors[0].contains("closed before stop"), "{:?}", r.errors);

    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let r = run_load(short(format!("ws://127.0.0.1:{port}/"))).await.unwrap();
    assert_eq!((r.calls_failed, r.failures.connect), (3, 3));
    assert_eq!(r.errors.len(), 3);
    assert_eq!(r.echo_ratio, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamic_url_is_asked_once_and_its_query_kept() {
    use axum::extract::Query;
    use axum::routing::get;

    let (ws_url, log) = serve(Bot::Echo).await;
    let asked = Arc::new(AtomicU64::new(0));
    let counter = asked.clone();
    let app = axum::Router::new().route(
        "/voicebot",
        get(move |Query(q): Query<BTreeMap<String, String>>| {
            counter.fetch_add(1, Ordering::Relaxed);
            assert!(q.contains_key("CallSid"), "{q:?}");
            let url = format!("{ws_url}?agentId=echo&sample-rate=16000");
            async move { axum::Json(json!({ "url": url })) }
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = format!("http://{}/voicebot", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let cfg = LoadConfig {
        target: Target::Dynamic(http),
        sample_rate: SampleRate::Hz16000,
        server_pid: None,
        duration: Duration::from_secs(1),
        ..config(String::new(), 3)
    };
    let r = run_load(cfg).await.unwrap();
    assert_eq!(r.calls_ok, 3, "{:?}", r.errors);
    assert_eq!(asked.load(Ordering::Relaxed), 1, "resolved once for all calls");
    let paths = log.paths.lock().unwrap().clone();
    assert_eq!(paths, vec!["/media?agentId=echo&sample-rate=16000".to_string(); 3]);
    assert!(r.echo_ratio >= 0.9, "{}", r.echo_ratio);
}
