//! Whole calls against small bots written here: a well-behaved echo bot, a rule-breaking bot, a
//! bot that hangs up, one that barges in with `clear`, one that drops the connection, and the
//! dynamic-URL endpoint in front of them. Everything binds 127.0.0.1 only.

// tungstenite's upgrade callback fixes the (large) error type; nothing here can shrink it.
#![allow(clippy::result_large_err)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use exotel::SampleRate;
use exotel_sim::validate::rule;
use exotel_sim::{AudioSource, CallConfig, CallReport, Injected, SimError, Target, run_call, tone};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

type Ws = WebSocketStream<TcpStream>;

/// Generous: no test call is longer than ~3 s.
const CALL_LIMIT: Duration = Duration::from_secs(15);

async fn listen() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    (listener, format!("127.0.0.1:{port}"))
}

/// What the bot saw on the upgrade request.
#[derive(Debug, Default, Clone)]
struct Upgrade {
    uri: String,
    authorization: Option<String>,
}

async fn accept(listener: &TcpListener) -> (Ws, Upgrade) {
    let (tcp, _) = listener.accept().await.unwrap();
    let mut seen = Upgrade::default();
    let ws = tokio_tungstenite::accept_hdr_async(tcp, |req: &Request, resp: Response| {
        seen.uri = req.uri().to_string();
        seen.authorization = req.headers().get("authorization").map(|v| v.to_str().unwrap().to_string());
        Ok(resp)
    })
    .await
    .unwrap();
    (ws, seen)
}

fn media(sid: &str, pcm: &[u8]) -> Message {
    Message::Text(json!({"event":"media","stream_sid":sid,"media":{"payload":B64.encode(pcm)}}).to_string().into())
}

fn mark(sid: &str, name: &str) -> Message {
    Message::Text(json!({"event":"mark","stream_sid":sid,"mark":{"name":name}}).to_string().into())
}

fn close_1000(reason: &str) -> Message {
    Message::Close(Some(CloseFrame { code: CloseCode::Normal, reason: reason.into() }))
}

fn parse(msg: &Message) -> Option<Value> {
    match msg {
        Message::Text(t) => serde_json::from_str(t.as_str()).ok(),
        _ => None,
    }
}

/// Everything the echo bot received, with when, and when it sent each mark.
#[derive(Debug, Default)]
struct EchoLog {
    upgrade: Upgrade,
    received: Vec<(Instant, Value)>,
    marks_sent: BTreeMap<String, Instant>,
}

/// Buffers the caller's PCM and returns it in 3200-byte chunks, each followed by a mark; closes
/// 1000 when it gets `stop`.
async fn echo_bot(listener: TcpListener) -> EchoLog {
    let (ws, upgrade) = accept(&listener).await;
    let (mut tx, mut rx) = ws.split();
    let mut log = EchoLog { upgrade, ..EchoLog::default() };
    let mut sid = String::new();
    let mut pending = Vec::new();
    let mut n = 0;
    while let Some(Ok(msg)) = rx.next().await {
        let Some(v) = parse(&msg) else { continue };
        log.received.push((Instant::now(), v.clone()));
        match v["event"].as_str() {
            Some("start") => sid = v["stream_sid"].as_str().unwrap().to_string(),
            Some("media") => {
                pending.extend(B64.decode(v["media"]["payload"].as_str().unwrap()).unwrap());
                while pending.len() >= 3200 {
                    let chunk: Vec<u8> = pending.drain(..3200).collect();
                    n += 1;
                    let name = format!("chunk-{n}");
                    tx.send(media(&sid, &chunk)).await.unwrap();
                    tx.send(mark(&sid, &name)).await.unwrap();
                    log.marks_sent.insert(name, Instant::now());
                }
            }
            Some("stop") => {
                let _ = tx.send(close_1000("stop received")).await;
            }
            _ => {}
        }
    }
    log
}

fn events(log: &EchoLog) -> Vec<&Value> {
    log.received.iter().map(|(_, v)| v).collect()
}

async fn call(cfg: CallConfig) -> Result<CallReport, SimError> {
    tokio::time::timeout(CALL_LIMIT, run_call(cfg)).await.expect("call ran past its limit")
}

fn quick(target: String) -> CallConfig {
    CallConfig {
        target: Target::Ws(target),
        idle_tail: Duration::from_millis(300),
        max_tail: Duration::from_secs(3),
        ..CallConfig::default()
    }
}

fn rules(report: &CallReport) -> Vec<&'static str> {
    report.violations.iter().map(|v| v.rule).collect()
}

#[tokio::test]
async fn echo_bot_hears_itself_and_every_mark_is_echoed_after_its_audio() {
    let (listener, addr) = listen().await;
    let bot = tokio::spawn(echo_bot(listener));
    let mut cfg = quick(format!("ws://{addr}/media"));
    cfg.audio = AudioSource::Tone { hz: 440.0, ms: 2000 };
    cfg.custom_parameters.insert("lang".into(), "hi".into());
    cfg.dtmf = vec![(Duration::from_millis(500), "#".into())];
    cfg.inject = vec![(Duration::from_millis(100), Injected::Text(r#"{"event":"silence"}"#.into()))];
    let report = call(cfg.clone()).await.unwrap();
    let log = bot.await.unwrap();
    println!("{}", report.summary());

    assert!(report.ok(), "{:?}", report.violations);
    assert_eq!(report.sent_pcm, tone(440.0, 2000, SampleRate::Hz8000));
    assert_eq!(report.frames_sent, 100);
    assert!(report.received_pcm.starts_with(&report.sent_pcm));
    assert_eq!(report.received_pcm.len(), 32000);
    assert_eq!(report.played_pcm, report.received_pcm);
    assert_eq!(report.chunk_sizes, vec![3200; 10]);
    let names: Vec<String> = (1..=10).map(|n| format!("chunk-{n}")).collect();
    assert_eq!(report.marks_received, names);
    assert_eq!(report.marks_echoed, names);
    assert!(report.stop_sent && !report.closed_by_bot);
    assert_eq!(report.close_code, Some(1000));
    // The bot needs 200 ms of caller audio before it can answer.
    let latency = report.first_audio_latency.unwrap();
    assert!(latency >= Duration::from_millis(150) && latency < Duration::from_secs(1), "{latency:?}");
    assert!(report.duration < Duration::from_secs(5), "{:?}", report.duration);

    // What the bot received is Exotel's documented sequence.
    let ev = events(&log);
    assert_eq!(log.upgrade.uri, "/media", "8 kHz puts nothing in the URL");
    assert_eq!(ev[0], &json!({"event":"connected"}));
    let start = ev[1];
    assert_eq!(start["event"], "start");
    assert_eq!(start["sequence_number"], "1");
    assert_eq!(start["stream_sid"], cfg.stream_sid.as_str());
    assert_eq!(start["start"]["stream_sid"], cfg.stream_sid.as_str());
    assert_eq!(start["start"]["call_sid"], cfg.call_sid.as_str());
    assert_eq!(start["start"]["account_sid"], "exotelsim");
    assert_eq!(start["start"]["from"], "+919876543210");
    assert_eq!(start["start"]["to"], "+918047491899");
    assert_eq!(start["start"]["custom_parameters"], json!({"lang":"hi"}));
    assert_eq!(start["start"]["media_format"], json!({"encoding":"audio/x-raw","sample_rate":"8000","bit_rate":"16"}));
    let last = ev.last().unwrap();
    assert_eq!(last["event"], "stop");
    assert_eq!(last["stop"], json!({"call_sid":cfg.call_sid,"account_sid":"exotelsim","reason":"callended"}));

    // Sequence numbers rise by one across every event we numbered.
    let seqs: Vec<u64> = ev.iter().filter_map(|v| v["sequence_number"].as_str()).map(|s| s.parse().unwrap()).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    let media: Vec<&&Value> = ev.iter().filter(|v| v["event"] == "media").collect();
    assert_eq!(media.len(), 100);
    for (i, m) in media.iter().enumerate() {
        assert_eq!(m["media"]["chunk"], (i + 1).to_string());
        assert_eq!(m["media"]["timestamp"], (i * 20).to_string());
        assert_eq!(m["stream_sid"], cfg.stream_sid.as_str());
    }
    // Frames are paced in real time: 100 frames of 20 ms span ~1.98 s.
    let media_times: Vec<Instant> =
        log.received.iter().filter(|(_, v)| v["event"] == "media").map(|(t, _)| *t).collect();
    let span = media_times[99] - media_times[0];
    assert!(span >= Duration::from_millis(1900) && span < Duration::from_millis(2600), "{span:?}");
    let dtmf: Vec<&&Value> = ev.iter().filter(|v| v["event"] == "dtmf").collect();
    assert_eq!(dtmf.len(), 1);
    assert_eq!(dtmf[0]["dtmf"], json!({"digit":"#","duration":"100"}));
    assert_eq!(dtmf[0]["stream_sid"], cfg.stream_sid.as_str());
    assert!(ev.iter().any(|v| v["event"] == "silence"), "the injected frame arrived");

    // Each mark comes back once its 200 ms chunk has played, not before.
    let echoes: Vec<&(Instant, Value)> = log.received.iter().filter(|(_, v)| v["event"] == "mark").collect();
    assert_eq!(echoes.len(), 10);
    for (at, v) in echoes {
        let name = v["mark"]["name"].as_str().unwrap();
        assert_eq!(v["stream_sid"], cfg.stream_sid.as_str());
        let delay = *at - log.marks_sent[name];
        assert!(delay >= Duration::from_millis(150), "{name} echoed after {delay:?}");
    }
}

#[tokio::test]
async fn sixteen_khz_wav_with_url_credentials() {
    let (listener, addr) = listen().await;
    let bot = tokio::spawn(echo_bot(listener));
    let wav = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/audio/tone-440hz-2s-24k.wav");
    let mut cfg = quick(format!("ws://KEY:T%40KEN@{addr}/media?agent=riya"));
    cfg.sample_rate = SampleRate::Hz16000;
    cfg.frame_ms = 100;
    cfg.audio = AudioSource::Wav(wav);
    let report = call(cfg).await.unwrap();
    let log = bot.await.unwrap();

    assert!(report.ok(), "{:?}", report.violations);
    assert_eq!(report.sent_pcm.len(), 64000);
    assert_eq!(report.frames_sent, 20);
    assert!(report.received_pcm.starts_with(&report.sent_pcm));
    assert_eq!(report.marks_echoed.len(), 20);
    assert_eq!(report.ws_url, format!("ws://{addr}/media"));
    assert_eq!(log.upgrade.uri, "/media?agent=riya&sample-rate=16000");
    assert_eq!(log.upgrade.authorization.as_deref(), Some(format!("Basic {}", B64.encode("KEY:T@KEN")).as_str()));
    assert_eq!(events(&log)[1]["start"]["media_format"]["sample_rate"], "16000");
}

#[tokio::test]
async fn rule_breaking_bot_gets_every_violation_reported() {
    let (listener, addr) = listen().await;
    let bot = tokio::spawn(async move {
        let (mut ws, _) = accept(&listener).await;
        let mut sid = String::new();
        while let Some(Ok(msg)) = ws.next().await {
            let Some(v) = parse(&msg) else { continue };
            match v["event"].as_str() {
                Some("start") => {
                    sid = v["stream_sid"].as_str().unwrap().to_string();
                    ws.send(media(&sid, &[0; 1000])).await.unwrap();
                    ws.send(media("not-our-stream", &[0; 3200])).await.unwrap();
                    ws.send(Message::Binary(vec![0u8; 320].into())).await.unwrap();
                    ws.send(Message::Text(json!({"event":"hangup","stream_sid":sid}).to_string().into()))
                        .await
                        .unwrap();
                    ws.send(Message::Text("not json".into())).await.unwrap();
                    ws.send(media(&sid, &[0; 3200])).await.unwrap();
                }
                Some("stop") => {
                    // After stop, Exotel no longer cares: none of this is a violation.
                    let _ = ws.send(media(&sid, &[0; 10])).await;
                    let _ = ws.send(mark("whatever", "late")).await;
                    let _ = ws.send(close_1000("")).await;
                }
                _ => {}
            }
        }
    });
    let mut cfg = quick(format!("ws://{addr}/"));
    cfg.audio = AudioSource::Silence { ms: 400 };
    let report = call(cfg).await.unwrap();
    bot.await.unwrap();
    println!("{}", report.summary());

    assert_eq!(
        rules(&report),
        vec![
            rule::CHUNK_NOT_320_MULTIPLE,
            rule::CHUNK_TOO_SMALL,
            rule::STREAM_SID_MISMATCH,
            rule::BINARY_FRAME,
            rule::UNKNOWN_EVENT,
            rule::NOT_JSON,
        ]
    );
    assert!(!report.ok());
    assert_eq!(report.chunk_sizes, vec![1000, 3200, 3200]);
    assert!(report.marks_received.is_empty());
    assert!(report.stop_sent);
    assert!(report.summary().ends_with("violations: 6"));
}

#[tokio::test]
async fn bot_hang_up_ends_the_call_without_stop() {
    let (listener, addr) = listen().await;
    let bot = tokio::spawn(async move {
        let (mut ws, _) = accept(&listener).await;
        let mut sid = String::new();
        let mut frames = 0;
        let mut saw_stop = false;
        while let Some(Ok(msg)) = ws.next().await {
            let Some(v) = parse(&msg) else { continue };
            match v["event"].as_str() {
                Some("start") => sid = v["stream_sid"].as_str().unwrap().to_string(),
                Some("media") => {
                    frames += 1;
                    if frames == 10 {
                        ws.send(media(&sid, &[0; 3200])).await.unwrap();
                        ws.send(close_1000("transfer")).await.unwrap();
                    }
                }
                Some("stop") => saw_stop = true,
                _ => {}
            }
        }
        saw_stop
    });
    let mut cfg = quick(format!("ws://{addr}/"));
    cfg.audio = AudioSource::Tone { hz: 300.0, ms: 3000 };
    let report = call(cfg).await.unwrap();
    let saw_stop = bot.await.unwrap();

    assert!(report.ok(), "{:?}", report.violations);
    assert!(report.closed_by_bot && !report.stop_sent && !saw_stop);
    assert_eq!(report.close_code, Some(1000));
    assert_eq!(report.close_reason, "transfer");
    assert!(report.frames_sent < 50, "kept sending after the hang-up: {}", report.frames_sent);
    assert_eq!(report.media_received, 1);
    assert!(report.duration < Duration::from_secs(2));
    assert!(report.summary().contains("closed by the bot"));
}

#[tokio::test]
async fn clear_drops_queued_audio_and_its_mark() {
    let (listener, addr) = listen().await;
    let bot = tokio::spawn(async move {
        let (mut ws, _) = accept(&listener).await;
        while let Some(Ok(msg)) = ws.next().await {
            let Some(v) = parse(&msg) else { continue };
            match v["event"].as_str() {
                Some("start") => {
                    let sid = v["stream_sid"].as_str().unwrap().to_string();
                    // One second of speech in five 200 ms chunks, then a mark.
                    for fill in 1..=5u8 {
                        ws.send(media(&sid, &[fill; 3200])).await.unwrap();
                    }
                    ws.send(mark(&sid, "greeting-done")).await.unwrap();
                    // Barge-in while chunk 2 (200–400 ms) is playing.
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    ws.send(Message::Text(json!({"event":"clear","stream_sid":sid}).to_string().into())).await.unwrap();
                    ws.send(media(&sid, &[9; 3200])).await.unwrap();
                    ws.send(mark(&sid, "answer-done")).await.unwrap();
                }
                Some("stop") => {
                    let _ = ws.send(close_1000("")).await;
                }
                _ => {}
            }
        }
    });
    let mut cfg = quick(format!("ws://{addr}/"));
    cfg.audio = AudioSource::Silence { ms: 600 };
    let report = call(cfg).await.unwrap();
    bot.await.unwrap();

    assert!(report.ok(), "{:?}", report.violations);
    assert_eq!(report.clears_received, 1);
    assert_eq!(report.received_pcm.len(), 6 * 3200);
    assert_eq!(report.played_pcm, [[1u8; 3200], [2; 3200], [9; 3200]].concat());
    assert_eq!(report.marks_received, vec!["greeting-done", "answer-done"]);
    assert_eq!(report.marks_echoed, vec!["answer-done"]);
}

#[tokio::test]
async fn a_bot_that_vanishes_or_fails_is_a_violation() {
    // Gone without a closing handshake 5 ms after `start`, like a crashed bot; or closed with 1011.
    for close in [None, Some(1011u16)] {
        let (listener, addr) = listen().await;
        let bot = tokio::spawn(async move {
            let (mut ws, _) = accept(&listener).await;
            while let Some(Ok(msg)) = ws.next().await {
                if parse(&msg).is_some_and(|v| v["event"] == "start") {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    if let Some(code) = close {
                        let frame = CloseFrame { code: CloseCode::from(code), reason: "bot error".into() };
                        let _ = ws.close(Some(frame)).await;
                    }
                    return;
                }
            }
        });
        let mut cfg = quick(format!("ws://{addr}/"));
        cfg.audio = AudioSource::Silence { ms: 1000 };
        let report = call(cfg).await.unwrap();
        bot.await.unwrap();
        assert!(report.closed_by_bot && !report.stop_sent);
        let rules: Vec<&str> = report.violations.iter().map(|v| v.rule).collect();
        let want = if close.is_some() { rule::ABNORMAL_CLOSE } else { rule::CONNECTION_LOST };
        assert_eq!(rules, [want], "{}", report.summary());
        assert!(!report.ok(), "`exogate sim call` exits 1");
    }
}

#[tokio::test]
async fn refused_handshake_and_closed_port_are_errors() {
    let (listener, addr) = listen().await;
    let bot = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let refused = tokio_tungstenite::accept_hdr_async(tcp, |_: &Request, _: Response| {
            let mut resp = ErrorResponse::new(Some("bad credentials".into()));
            *resp.status_mut() = StatusCode::UNAUTHORIZED;
            Err(resp)
        })
        .await;
        assert!(refused.is_err());
    });
    let err = call(quick(format!("ws://{addr}/"))).await.unwrap_err();
    bot.await.unwrap();
    assert!(matches!(err, SimError::Handshake { status: 401, .. }), "{err}");

    let (listener, addr) = listen().await;
    drop(listener);
    let err = call(quick(format!("ws://{addr}/"))).await.unwrap_err();
    assert!(matches!(err, SimError::Connect { .. }), "{err}");
}

/// A one-request HTTP server: answers `status` with `body`, returns the request line.
fn http_once(listener: TcpListener, status: &'static str, body: String) -> JoinHandle<String> {
    tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        let mut req = Vec::new();
        let mut buf = [0u8; 4096];
        while !req.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = tcp.read(&mut buf).await.unwrap();
            assert!(n > 0, "request cut short");
            req.extend_from_slice(&buf[..n]);
        }
        let resp = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        tcp.write_all(resp.as_bytes()).await.unwrap();
        tcp.shutdown().await.unwrap();
        String::from_utf8_lossy(&req).lines().next().unwrap_or_default().to_string()
    })
}

#[tokio::test]
async fn dynamic_url_gets_call_details_and_routes_the_call() {
    let (ws_listener, ws_addr) = listen().await;
    let bot = tokio::spawn(echo_bot(ws_listener));
    let (http_listener, http_addr) = listen().await;
    let http = http_once(http_listener, "200 OK", json!({"url": format!("ws://{ws_addr}/routed?t=abc")}).to_string());

    let mut cfg = quick(String::new());
    cfg.target = Target::Dynamic(format!("http://{http_addr}/bootstrap?tenant=acme"));
    cfg.call_sid = "c0ffee".into();
    cfg.custom_parameters.insert("campaign".into(), "7".into());
    cfg.audio = AudioSource::Tone { hz: 440.0, ms: 400 };
    let report = call(cfg).await.unwrap();
    let request_line = http.await.unwrap();
    let log = bot.await.unwrap();

    assert!(report.ok(), "{:?}", report.violations);
    assert!(request_line.starts_with("GET /bootstrap?tenant=acme&CallSid=c0ffee&"), "{request_line}");
    for part in [
        "CallFrom=%2B919876543210",
        "CallTo=%2B918047491899",
        "From=%2B91",
        "To=%2B91",
        "Direction=incoming",
        "campaign=7",
    ] {
        assert!(request_line.contains(part), "{part} missing in {request_line}");
    }
    assert_eq!(log.upgrade.uri, "/routed?t=abc");
    assert_eq!(report.ws_url, format!("ws://{ws_addr}/routed"));
    assert_eq!(events(&log)[1]["start"]["custom_parameters"], json!({"campaign":"7"}));
}

#[tokio::test]
async fn dynamic_url_failures_are_errors() {
    let (listener, addr) = listen().await;
    let http = http_once(listener, "500 Internal Server Error", r#"{"error":"db down"}"#.into());
    let mut cfg = quick(String::new());
    cfg.target = Target::Dynamic(format!("http://{addr}/bootstrap"));
    let err = call(cfg.clone()).await.unwrap_err();
    http.await.unwrap();
    assert!(matches!(&err, SimError::DynamicStatus { status: 500, body, .. } if body.contains("db down")), "{err}");

    let (listener, addr) = listen().await;
    let http = http_once(listener, "200 OK", r#"{"url":"https://not-a-websocket"}"#.into());
    cfg.target = Target::Dynamic(format!("http://{addr}/bootstrap"));
    let err = call(cfg).await.unwrap_err();
    http.await.unwrap();
    assert!(matches!(err, SimError::DynamicBody { .. }), "{err}");
}

#[derive(clap::Parser)]
struct Cli {
    #[command(subcommand)]
    cmd: exotel_sim::SimCommand,
}

fn sim(args: &[&str]) -> exotel_sim::SimCommand {
    use clap::Parser;
    Cli::try_parse_from(std::iter::once("sim").chain(args.iter().copied())).unwrap().cmd
}

#[tokio::test]
async fn cli_exit_codes_and_recordings() {
    use std::process::ExitCode;
    let dir = tempfile::tempdir().unwrap();
    let played = dir.path().join("played.wav");
    let received = dir.path().join("received.wav");

    let (listener, addr) = listen().await;
    let bot = tokio::spawn(echo_bot(listener));
    let url = format!("ws://{addr}/");
    let cmd = sim(&[
        "call",
        "--url",
        &url,
        "--tone",
        "500",
        "--duration-ms",
        "400",
        "--rate",
        "16k",
        "--idle-tail-ms",
        "200",
        "--record",
        played.to_str().unwrap(),
        "--record-received",
        received.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(exotel_sim::cli::run(cmd).await, ExitCode::from(0));
    bot.await.unwrap();
    for path in [&played, &received] {
        let wav = hound::WavReader::open(path).unwrap();
        assert_eq!(wav.spec().sample_rate, 16000);
        // 400 ms at 16 kHz: 12800 bytes, echoed as four 3200-byte chunks.
        assert_eq!(wav.len(), 6400);
    }

    let (listener, addr) = listen().await;
    let bot = tokio::spawn(async move {
        let (mut ws, _) = accept(&listener).await;
        while let Some(Ok(msg)) = ws.next().await {
            if parse(&msg).is_some_and(|v| v["event"] == "start") {
                ws.send(media("someone-else", &[0; 3200])).await.unwrap();
            }
        }
    });
    let url = format!("ws://{addr}/");
    let cmd = sim(&["call", "--url", &url, "--duration-ms", "200", "--idle-tail-ms", "100"]);
    assert_eq!(exotel_sim::cli::run(cmd).await, ExitCode::from(1));
    bot.await.unwrap();
}
