//! The fake upstream bot driven by a plain tokio-tungstenite client, for both protocols: what
//! it echoes (bytes, chunk sizes, mark positions), what it sends on its own (greeting, garbage,
//! clear, close), how connections end, and what it records. Timing asserts are lower bounds
//! only, with generous ceilings, so a busy 2-core box cannot fail them.

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use exotel::SampleRate;
use exotel_sim::fake_bot::{Behavior, BotConfig, BotProtocol, BotSession, FakeBot, greeting_audio};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Ceiling for anything that should happen promptly.
const WAIT: Duration = Duration::from_secs(10);
const SID: &str = "6f048d2e897a0d2d4029560f3f541947";
const TWILIO_SID: &str = "MZ6f048d2e897a0d2d4029560f3f541947";

// ---------------------------------------------------------------- helpers

async fn bot(protocol: BotProtocol, behavior: Behavior) -> FakeBot {
    FakeBot::start(0, BotConfig { protocol, behavior, ..BotConfig::default() }).await.unwrap()
}

async fn connect(url: &str) -> Client {
    tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url)).await.expect("handshake in time").unwrap().0
}

fn text(v: Value) -> Message {
    Message::text(v.to_string())
}

fn start(protocol: BotProtocol, rate: Option<u32>) -> Message {
    match protocol {
        BotProtocol::Exotel => {
            let mut start = json!({"stream_sid": SID, "call_sid": "c1", "account_sid": "acct", "from": "09876543210",
                                   "to": "08047491899", "custom_parameters": {}});
            if let Some(rate) = rate {
                start["media_format"] = json!({"encoding": "raw", "sample_rate": rate.to_string(), "bit_rate": "128"});
            }
            text(json!({"event": "start", "sequence_number": "1", "stream_sid": SID, "start": start}))
        }
        BotProtocol::Twilio => text(json!({
            "event": "start", "sequenceNumber": "1", "streamSid": TWILIO_SID,
            "start": {"accountSid": "AC1", "streamSid": TWILIO_SID, "callSid": "CA1", "tracks": ["inbound"],
                      "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                      "customParameters": {}}
        })),
    }
}

fn connected(protocol: BotProtocol) -> Message {
    match protocol {
        BotProtocol::Exotel => text(json!({"event": "connected"})),
        BotProtocol::Twilio => text(json!({"event": "connected", "protocol": "Call", "version": "1.0.0"})),
    }
}

fn media(protocol: BotProtocol, audio: &[u8]) -> Message {
    match protocol {
        BotProtocol::Exotel => text(
            json!({"event": "media", "stream_sid": SID, "media": {"chunk": "1", "timestamp": "0", "payload": B64.encode(audio)}}),
        ),
        BotProtocol::Twilio => text(json!({"event": "media", "streamSid": TWILIO_SID,
                                           "media": {"track": "inbound", "chunk": "1", "timestamp": "0", "payload": B64.encode(audio)}})),
    }
}

fn dtmf(protocol: BotProtocol, digit: &str) -> Message {
    match protocol {
        BotProtocol::Exotel => {
            text(json!({"event": "dtmf", "stream_sid": SID, "dtmf": {"digit": digit, "duration": "100"}}))
        }
        BotProtocol::Twilio => {
            text(json!({"event": "dtmf", "streamSid": TWILIO_SID, "dtmf": {"track": "inbound_track", "digit": digit}}))
        }
    }
}

fn stop(protocol: BotProtocol) -> Message {
    match protocol {
        BotProtocol::Exotel => text(json!({"event": "stop", "stream_sid": SID, "stop": {"reason": "callended"}})),
        BotProtocol::Twilio => text(json!({"event": "stop", "streamSid": TWILIO_SID, "stop": {"callSid": "CA1"}})),
    }
}

fn sid_key(protocol: BotProtocol) -> (&'static str, &'static str) {
    match protocol {
        BotProtocol::Exotel => ("stream_sid", SID),
        BotProtocol::Twilio => ("streamSid", TWILIO_SID),
    }
}

/// Distinct bytes per frame, so a reordered or re-cut echo cannot pass for the original.
fn frame(i: usize, len: usize) -> Vec<u8> {
    (0..len).map(|j| (i * 31 + j * 7) as u8).collect()
}

async fn recv(ws: &mut Client) -> Message {
    tokio::time::timeout(WAIT, ws.next()).await.expect("a message in time").expect("socket open").unwrap()
}

async fn recv_json(ws: &mut Client) -> Value {
    match recv(ws).await {
        Message::Text(t) => serde_json::from_str(t.as_str()).unwrap(),
        other => panic!("expected JSON text, got {other:?}"),
    }
}

fn payload(v: &Value) -> Vec<u8> {
    assert_eq!(v["event"], "media", "{v}");
    B64.decode(v["media"]["payload"].as_str().unwrap()).unwrap()
}

/// Closes from the client side and reads until the bot's close reply, which must come.
async fn close(mut ws: Client) {
    ws.close(Some(CloseFrame { code: CloseCode::Normal, reason: "done".into() })).await.unwrap();
    let replied = tokio::time::timeout(WAIT, async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(_))) => return true,
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return false,
            }
        }
    })
    .await;
    assert_eq!(replied.ok(), Some(true), "the bot answers a close with a close");
    assert!(tokio::time::timeout(WAIT, ws.next()).await.unwrap().is_none());
}

async fn one_ended(bot: &FakeBot) -> BotSession {
    let ended = bot.wait_ended(1, WAIT).await;
    assert_eq!(ended.len(), 1, "{:?}", bot.sessions());
    ended.into_iter().next().unwrap()
}

/// Reads until `want` audio bytes have arrived; returns every JSON message read.
async fn read_audio(ws: &mut Client, want: usize) -> Vec<Value> {
    let (mut got, mut msgs) = (0, Vec::new());
    while got < want {
        let v = recv_json(ws).await;
        if v["event"] == "media" {
            got += payload(&v).len();
        }
        msgs.push(v);
    }
    msgs
}

// ---------------------------------------------------------------- echo

#[tokio::test]
async fn exotel_echo_is_one_for_one_and_everything_is_recorded() {
    let bot = bot(BotProtocol::Exotel, Behavior::Echo).await;
    let mut req = format!("ws://{}/bot/C42?agentId=riya&sample-rate=8000", bot.addr()).into_client_request().unwrap();
    req.headers_mut().insert("Authorization", "Bearer t0ken".parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();

    ws.send(connected(BotProtocol::Exotel)).await.unwrap();
    ws.send(start(BotProtocol::Exotel, Some(8000))).await.unwrap();
    let frames: Vec<Vec<u8>> = (0..10).map(|i| frame(i, 320)).collect();
    for (i, f) in frames.iter().enumerate() {
        ws.send(media(BotProtocol::Exotel, f)).await.unwrap();
        let v = recv_json(&mut ws).await;
        assert_eq!(payload(&v), *f, "frame {i}");
        assert_eq!(v["stream_sid"], SID);
        // The documented form: the bot's own counters, timestamp = ms of bot audio before it.
        assert_eq!(v["media"]["timestamp"], (i * 20).to_string());
        assert_eq!(v["sequence_number"], (i + 1).to_string());
    }
    ws.send(text(json!({"event": "mark", "stream_sid": SID, "mark": {"name": "m1"}}))).await.unwrap();
    ws.send(text(json!({"event": "clear", "stream_sid": SID}))).await.unwrap();
    ws.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
    ws.send(Message::text("not json")).await.unwrap();
    ws.send(stop(BotProtocol::Exotel)).await.unwrap();
    close(ws).await;

    let s = one_ended(&bot).await;
    assert_eq!(s.ended.as_deref(), Some("closed 1000"));
    assert_eq!(s.path_and_query, "/bot/C42?agentId=riya&sample-rate=8000");
    assert!(s.headers.contains(&("authorization".into(), "Bearer t0ken".into())), "{:?}", s.headers);
    assert!(s.headers.iter().any(|(k, v)| k == "host" && v == &bot.addr().to_string()));
    let events: Vec<&str> = s.received.iter().map(|v| v["event"].as_str().unwrap()).collect();
    let mut want = vec!["connected", "start"];
    want.extend(["media"; 10]);
    want.extend(["mark", "clear", "stop"]);
    assert_eq!(events, want, "non-JSON text is not kept");
    assert_eq!(s.audio_in, frames.concat());
    assert_eq!(s.audio_out, frames.concat());
    assert_eq!(s.marks_echoed, ["m1"]);
    assert_eq!((s.clears_received, s.binary_frames), (1, 1));
    assert_eq!(bot.sessions().len(), 1);
}

#[tokio::test]
async fn twilio_echo_has_twilio_shape() {
    let bot = bot(BotProtocol::Twilio, Behavior::Echo).await;
    let mut ws = connect(&bot.url()).await;
    ws.send(connected(BotProtocol::Twilio)).await.unwrap();
    ws.send(start(BotProtocol::Twilio, None)).await.unwrap();
    let frames: Vec<Vec<u8>> = (0..5).map(|i| frame(i, 160)).collect();
    for f in &frames {
        ws.send(media(BotProtocol::Twilio, f)).await.unwrap();
        let v = recv_json(&mut ws).await;
        assert_eq!(v, json!({"event": "media", "streamSid": TWILIO_SID, "media": {"payload": B64.encode(f)}}));
    }
    ws.send(text(json!({"event": "mark", "streamSid": TWILIO_SID, "sequenceNumber": "9", "mark": {"name": "x"}})))
        .await
        .unwrap();
    ws.send(stop(BotProtocol::Twilio)).await.unwrap();
    close(ws).await;

    let s = one_ended(&bot).await;
    assert_eq!(s.ended.as_deref(), Some("closed 1000"));
    assert_eq!(s.path_and_query, "/ws");
    assert_eq!((s.audio_in.clone(), s.audio_out.clone()), (frames.concat(), frames.concat()));
    assert_eq!(s.marks_echoed, ["x"]);
    assert_eq!(s.received.len(), 2 + 5 + 2);
}

#[tokio::test]
async fn chunked_recuts_into_exact_sizes() {
    let bot = bot(BotProtocol::Exotel, Behavior::EchoChunked { bytes: 320 }).await;
    let mut ws = connect(&bot.url()).await;
    ws.send(start(BotProtocol::Exotel, Some(8000))).await.unwrap();
    // 8 × 200 + 100 = 1700 bytes in: five 320-byte messages out, the 100-byte tail held.
    let sent: Vec<u8> = (0..9).flat_map(|i| frame(i, if i < 8 { 200 } else { 100 })).collect();
    for i in 0..9 {
        ws.send(media(BotProtocol::Exotel, &sent[i * 200..((i + 1) * 200).min(sent.len())])).await.unwrap();
    }
    let msgs = read_audio(&mut ws, 1600).await;
    let sizes: Vec<usize> = msgs.iter().map(|v| payload(v).len()).collect();
    assert_eq!(sizes, [320; 5]);
    let echoed: Vec<u8> = msgs.iter().flat_map(payload).collect();
    assert_eq!(echoed, sent[..1600]);
    ws.send(stop(BotProtocol::Exotel)).await.unwrap();
    close(ws).await;

    let s = one_ended(&bot).await;
    assert_eq!(s.audio_in, sent);
    assert_eq!(s.audio_out, sent[..1600], "a partial chunk is never sent");
}

#[tokio::test]
async fn paced_sends_40ms_chunks_at_twice_real_time() {
    let bot = bot(BotProtocol::Twilio, Behavior::EchoPaced { chunk_ms: 40, speed: 2.0 }).await;
    let mut ws = connect(&bot.url()).await;
    ws.send(start(BotProtocol::Twilio, None)).await.unwrap();
    // One second of μ-law in 20 ms frames, all at once, plus an 80-byte tail.
    let frames: Vec<Vec<u8>> = (0..51).map(|i| frame(i, if i < 50 { 160 } else { 80 })).collect();
    let t0 = Instant::now();
    for f in &frames {
        ws.send(media(BotProtocol::Twilio, f)).await.unwrap();
    }
    let msgs = read_audio(&mut ws, 8080).await;
    let elapsed = t0.elapsed();
    let sizes: Vec<usize> = msgs.iter().map(|v| payload(v).len()).collect();
    let mut want = vec![320; 25];
    want.push(80);
    assert_eq!(sizes, want, "40 ms of μ-law per message; the tail after the caller's quiet");
    assert_eq!(msgs.iter().flat_map(payload).collect::<Vec<u8>>(), frames.concat());
    // 25 chunks at one per 20 ms: the last full one no earlier than 480 ms after the first.
    assert!(elapsed >= Duration::from_millis(480), "paced, not dumped: {elapsed:?}");
    assert!(elapsed < WAIT, "{elapsed:?}");
    drop(ws);
    assert_eq!(one_ended(&bot).await.ended.as_deref(), Some("dropped"));
}

// ---------------------------------------------------------------- marks and greeting

/// Audio bytes sent before each mark, and the mark names, from the messages in order.
fn mark_positions(msgs: &[Value]) -> Vec<(String, usize)> {
    let mut pos = 0;
    let mut marks = Vec::new();
    for v in msgs {
        match v["event"].as_str() {
            Some("media") => pos += payload(v).len(),
            Some("mark") => marks.push((v["mark"]["name"].as_str().unwrap().to_string(), pos)),
            other => panic!("unexpected {other:?}"),
        }
    }
    marks
}

#[tokio::test]
async fn marks_sit_at_every_interval_of_echoed_audio() {
    // (protocol, rate, frame bytes, frames, bytes per 100 ms): 30 ms frames at 8 kHz cross the
    // boundaries mid-frame; 16 kHz checks the rate is taken from start; Twilio is 8 B/ms.
    for (protocol, rate, frame_len, n, per_mark) in [
        (BotProtocol::Exotel, 8000, 480, 14, 1600),
        (BotProtocol::Exotel, 16000, 640, 10, 3200),
        (BotProtocol::Twilio, 8000, 160, 17, 800),
    ] {
        let bot = bot(protocol, Behavior::EchoWithMarks { every_ms: 100 }).await;
        let mut ws = connect(&bot.url()).await;
        ws.send(start(protocol, Some(rate))).await.unwrap();
        let frames: Vec<Vec<u8>> = (0..n).map(|i| frame(i, frame_len)).collect();
        for f in &frames {
            ws.send(media(protocol, f)).await.unwrap();
        }
        let total = frame_len * n;
        let mut msgs = read_audio(&mut ws, total).await;
        if total % per_mark == 0 {
            msgs.push(recv_json(&mut ws).await);
        }
        let (key, sid) = sid_key(protocol);
        assert!(msgs.iter().all(|v| v[key] == sid), "{protocol:?}");
        let want: Vec<(String, usize)> = (1..=total / per_mark).map(|k| (format!("bot-{k}"), k * per_mark)).collect();
        assert_eq!(mark_positions(&msgs), want, "{protocol:?} at {rate}");
        let echoed: Vec<u8> = msgs.iter().filter(|v| v["event"] == "media").flat_map(payload).collect();
        assert_eq!(echoed, frames.concat());
        close(ws).await;
        assert_eq!(one_ended(&bot).await.ended.as_deref(), Some("closed 1000"));
    }
}

#[tokio::test]
async fn greeting_then_mark_then_echo() {
    for (protocol, rate, chunk) in [(BotProtocol::Exotel, 16000, 3200), (BotProtocol::Twilio, 8000, 160)] {
        let bot = bot(protocol, Behavior::Greeting { ms: 500 }).await;
        let mut ws = connect(&bot.url()).await;
        ws.send(start(protocol, Some(rate))).await.unwrap();
        let tone = greeting_audio(protocol, SampleRate::from_hz(rate).unwrap(), 500);
        assert_eq!(tone.len(), if protocol == BotProtocol::Exotel { 16_000 } else { 4000 });
        let msgs = read_audio(&mut ws, tone.len()).await;
        assert!(msgs.iter().all(|v| payload(v).len() == chunk), "{protocol:?}");
        assert_eq!(msgs.iter().flat_map(payload).collect::<Vec<u8>>(), tone);
        let mark = recv_json(&mut ws).await;
        let (key, sid) = sid_key(protocol);
        assert_eq!((mark["event"].as_str(), mark["mark"]["name"].as_str()), (Some("mark"), Some("greeting-done")));
        assert_eq!(mark[key], sid);
        let f = frame(1, 320);
        ws.send(media(protocol, &f)).await.unwrap();
        assert_eq!(payload(&recv_json(&mut ws).await), f);
        close(ws).await;
        let s = one_ended(&bot).await;
        assert_eq!(s.audio_out, [tone, f].concat());
    }
}

#[tokio::test]
async fn exotel_rate_falls_back_to_the_url() {
    let bot = bot(BotProtocol::Exotel, Behavior::Greeting { ms: 100 }).await;
    let mut ws = connect(&format!("{}?sample-rate=24000", bot.url())).await;
    ws.send(start(BotProtocol::Exotel, None)).await.unwrap();
    // 100 ms at 24 kHz is 4800 bytes: one legal chunk, then the mark.
    assert_eq!(payload(&recv_json(&mut ws).await).len(), 4800);
    assert_eq!(recv_json(&mut ws).await["mark"]["name"], "greeting-done");
    close(ws).await;
}

// ---------------------------------------------------------------- garbage, DTMF

#[tokio::test]
async fn garbage_comes_in_the_three_kinds_then_echo() {
    for protocol in [BotProtocol::Exotel, BotProtocol::Twilio] {
        let bot = bot(protocol, Behavior::Garbage { count: 10 }).await;
        let mut ws = connect(&bot.url()).await;
        ws.send(start(protocol, Some(8000))).await.unwrap();
        let (key, sid) = sid_key(protocol);
        let (mut not_json, mut binary, mut unknown) = (0, 0, 0);
        for _ in 0..10 {
            match recv(&mut ws).await {
                Message::Binary(_) => binary += 1,
                Message::Text(t) => match serde_json::from_str::<Value>(t.as_str()) {
                    Err(_) => not_json += 1,
                    Ok(v) => {
                        assert!(!["media", "mark", "clear"].contains(&v["event"].as_str().unwrap()), "{v}");
                        assert_eq!(v[key], sid);
                        unknown += 1;
                    }
                },
                other => panic!("{other:?}"),
            }
        }
        assert_eq!((not_json, binary, unknown), (4, 3, 3), "{protocol:?}");
        let f = frame(3, 160);
        ws.send(media(protocol, &f)).await.unwrap();
        assert_eq!(payload(&recv_json(&mut ws).await), f, "echo after the garbage");
        close(ws).await;
        assert_eq!(one_ended(&bot).await.audio_out, f);
    }
}

#[tokio::test]
async fn dtmf_hash_clears_and_star_hangs_up() {
    for protocol in [BotProtocol::Exotel, BotProtocol::Twilio] {
        let bot = bot(protocol, Behavior::EchoWithMarks { every_ms: 1000 }).await;
        let mut ws = connect(&bot.url()).await;
        ws.send(start(protocol, Some(8000))).await.unwrap();
        ws.send(dtmf(protocol, "5")).await.unwrap();
        ws.send(dtmf(protocol, "#")).await.unwrap();
        let clear = recv_json(&mut ws).await;
        let (key, sid) = sid_key(protocol);
        assert_eq!((clear["event"].as_str(), clear[key].as_str()), (Some("clear"), Some(sid)), "{protocol:?}");
        ws.send(dtmf(protocol, "*")).await.unwrap();
        match recv(&mut ws).await {
            Message::Close(Some(frame)) => assert_eq!(frame.code, CloseCode::Normal),
            other => panic!("expected close 1000, got {other:?}"),
        }
        // tungstenite answers the close; the stream then ends.
        assert!(tokio::time::timeout(WAIT, ws.next()).await.unwrap().is_none());
        let s = one_ended(&bot).await;
        assert_eq!(s.ended.as_deref(), Some("bot-hangup"));
        assert_eq!(s.received.len(), 4);
    }
}

// ---------------------------------------------------------------- endings

#[tokio::test]
async fn hangup_after_closes_1000_after_start() {
    let bot = bot(BotProtocol::Exotel, Behavior::HangUpAfter { after_ms: 300 }).await;
    let mut ws = connect(&bot.url()).await;
    ws.send(start(BotProtocol::Exotel, Some(8000))).await.unwrap();
    let t0 = Instant::now();
    let f = frame(0, 320);
    ws.send(media(BotProtocol::Exotel, &f)).await.unwrap();
    assert_eq!(payload(&recv_json(&mut ws).await), f, "echo until the hang-up");
    match recv(&mut ws).await {
        Message::Close(Some(frame)) => assert_eq!(frame.code, CloseCode::Normal),
        other => panic!("expected close 1000, got {other:?}"),
    }
    assert!(t0.elapsed() >= Duration::from_millis(300), "{:?}", t0.elapsed());
    assert!(tokio::time::timeout(WAIT, ws.next()).await.unwrap().is_none());
    assert_eq!(one_ended(&bot).await.ended.as_deref(), Some("bot-hangup"));
}

#[tokio::test]
async fn die_after_drops_the_connection_without_a_close_frame() {
    let bot = bot(BotProtocol::Twilio, Behavior::DieAfter { after_ms: 300 }).await;
    let ws = connect(&bot.url()).await;
    let (mut tx, mut rx) = ws.split();
    tx.send(start(BotProtocol::Twilio, None)).await.unwrap();
    let t0 = Instant::now();
    // The caller keeps talking through the death, as a live call would.
    let talker = tokio::spawn(async move {
        for i in 0.. {
            if tx.send(media(BotProtocol::Twilio, &frame(i, 160))).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    let mut echoes = 0;
    let end = tokio::time::timeout(WAIT, async {
        loop {
            match rx.next().await {
                Some(Ok(Message::Text(_))) => echoes += 1,
                Some(Ok(Message::Close(frame))) => panic!("a dead bot sent a close frame: {frame:?}"),
                Some(Ok(other)) => panic!("{other:?}"),
                Some(Err(e)) => return Some(e),
                None => return None,
            }
        }
    })
    .await
    .expect("the connection ends");
    let elapsed = t0.elapsed();
    assert!(elapsed >= Duration::from_millis(300), "{elapsed:?}");
    assert!(echoes > 0, "it echoed before dying");
    // EOF without a closing handshake (or, at worst, a reset): never a clean close.
    match end {
        None | Some(WsError::Protocol(_)) | Some(WsError::Io(_)) => {}
        Some(other) => panic!("unexpected end: {other:?}"),
    }
    talker.abort();
    assert_eq!(one_ended(&bot).await.ended.as_deref(), Some("bot-died"));
}

#[tokio::test]
async fn peer_drop_and_stop_are_recorded() {
    let bot = bot(BotProtocol::Exotel, Behavior::Echo).await;
    let mut ws = connect(&bot.url()).await;
    ws.send(start(BotProtocol::Exotel, Some(8000))).await.unwrap();
    drop(ws);
    assert_eq!(one_ended(&bot).await.ended.as_deref(), Some("dropped"));

    // After stop the bot sends nothing, even for more media, and closes when the peer does.
    let bot = self::bot(BotProtocol::Exotel, Behavior::Echo).await;
    let mut ws = connect(&bot.url()).await;
    ws.send(start(BotProtocol::Exotel, Some(8000))).await.unwrap();
    ws.send(stop(BotProtocol::Exotel)).await.unwrap();
    ws.send(media(BotProtocol::Exotel, &frame(0, 320))).await.unwrap();
    ws.close(Some(CloseFrame { code: CloseCode::Away, reason: "".into() })).await.unwrap();
    match tokio::time::timeout(WAIT, ws.next()).await.unwrap() {
        Some(Ok(Message::Close(Some(frame)))) => assert_eq!(frame.code, CloseCode::Away, "the close echoed"),
        other => panic!("the bot answered after stop, or did not close: {other:?}"),
    }
    let s = one_ended(&bot).await;
    assert_eq!(s.ended.as_deref(), Some("closed 1001"));
    assert_eq!((s.audio_in.len(), s.audio_out.len(), s.received.len()), (320, 0, 3));
}

#[tokio::test]
async fn silent_bot_never_answers_until_shut_down() {
    let bot = bot(BotProtocol::Twilio, Behavior::Silent).await;
    let mut ws = connect(&bot.url()).await;
    ws.send(start(BotProtocol::Twilio, None)).await.unwrap();
    ws.send(media(BotProtocol::Twilio, &frame(0, 160))).await.unwrap();
    ws.send(dtmf(BotProtocol::Twilio, "*")).await.unwrap();
    assert!(tokio::time::timeout(Duration::from_millis(500), ws.next()).await.is_err(), "silence");
    let s = bot.sessions();
    assert_eq!(s.len(), 1);
    assert_eq!((s[0].ended.as_deref(), s[0].received.len()), (None, 0), "never read");
    assert!(bot.wait_ended(1, Duration::from_millis(50)).await.is_empty());
    bot.shutdown();
    // Shutting down cuts the connection.
    let end = tokio::time::timeout(WAIT, ws.next()).await.expect("cut on shutdown");
    assert!(!matches!(end, Some(Ok(Message::Text(_)))), "{end:?}");
}

#[tokio::test]
async fn accept_delay_delays_the_handshake() {
    let delay = Duration::from_millis(600);
    let bot = FakeBot::start(0, BotConfig { accept_delay: delay, ..BotConfig::default() }).await.unwrap();
    let t0 = Instant::now();
    let mut ws = connect(&bot.url()).await;
    assert!(t0.elapsed() >= delay, "{:?}", t0.elapsed());
    // And the bot works normally afterwards.
    ws.send(start(BotProtocol::Exotel, Some(8000))).await.unwrap();
    ws.send(media(BotProtocol::Exotel, &frame(0, 320))).await.unwrap();
    assert_eq!(payload(&recv_json(&mut ws).await), frame(0, 320));
    close(ws).await;
}

#[tokio::test]
async fn not_a_websocket_is_recorded_as_a_failed_handshake() {
    let bot = bot(BotProtocol::Exotel, Behavior::Echo).await;
    let mut tcp = TcpStream::connect(bot.addr()).await.unwrap();
    tcp.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(WAIT, tcp.read_to_end(&mut answer)).await;
    let s = one_ended(&bot).await;
    assert!(s.ended.as_deref().is_some_and(|e| e.starts_with("handshake-failed")), "{:?}", s.ended);
}

#[tokio::test]
async fn concurrent_calls_are_kept_apart() {
    let bot = bot(BotProtocol::Exotel, Behavior::EchoChunked { bytes: 320 }).await;
    let calls = (0..8).map(|call| {
        let url = format!("{}?call={call}", bot.url());
        async move {
            let mut ws = connect(&url).await;
            ws.send(start(BotProtocol::Exotel, Some(8000))).await.unwrap();
            let audio: Vec<u8> = (0..5).flat_map(|i| frame(call * 10 + i, 320)).collect();
            for f in audio.chunks(320) {
                ws.send(media(BotProtocol::Exotel, f)).await.unwrap();
            }
            let echoed: Vec<u8> = read_audio(&mut ws, audio.len()).await.iter().flat_map(payload).collect();
            assert_eq!(echoed, audio, "call {call}");
            close(ws).await;
            audio
        }
    });
    let audios = futures_util::future::join_all(calls).await;
    let ended = bot.wait_ended(8, WAIT).await;
    assert_eq!(ended.len(), 8);
    for s in ended {
        let call: usize = s.path_and_query.rsplit('=').next().unwrap().parse().unwrap();
        assert_eq!((&s.audio_in, &s.audio_out), (&audios[call], &audios[call]));
    }
}

#[tokio::test]
async fn stop_without_close_times_out_and_the_bot_closes() {
    let bot = bot(BotProtocol::Twilio, Behavior::Echo).await;
    let mut ws = connect(&bot.url()).await;
    ws.send(start(BotProtocol::Twilio, None)).await.unwrap();
    ws.send(stop(BotProtocol::Twilio)).await.unwrap();
    let t0 = Instant::now();
    // The bot waits 10 s for the peer's close after `stop`, then closes with 1000 itself.
    match tokio::time::timeout(WAIT * 2, ws.next()).await.unwrap() {
        Some(Ok(Message::Close(Some(frame)))) => assert_eq!(frame.code, CloseCode::Normal),
        other => panic!("expected close 1000, got {other:?}"),
    }
    assert!(t0.elapsed() >= Duration::from_secs(9), "{:?}", t0.elapsed());
    let s = one_ended(&bot).await;
    assert_eq!(s.ended.as_deref(), Some("stop-timeout"));
}
