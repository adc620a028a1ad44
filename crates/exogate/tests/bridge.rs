//! Bridge agents end to end: the simulator plays Exotel, the real gateway bridges each call to a
//! fake upstream bot (Exotel or Twilio protocol), over real sockets.

mod common;

use std::time::Duration;

use common::{TestGateway, assert_echo, assert_legal, correlation, speech};
use exotel::SampleRate;
use exotel_sim::fake_bot::{Behavior, BotConfig, BotProtocol, BotSession, FakeBot};
use exotel_sim::{AudioSource, CallConfig, Target, run_call};
use serde_json::{Value, json};

async fn bot(protocol: BotProtocol, behavior: Behavior) -> FakeBot {
    FakeBot::start(0, BotConfig { protocol, behavior, ..BotConfig::default() }).await.expect("bot starts")
}

async fn agent(gw: &TestGateway, id: &str, settings: Value) {
    gw.create_agent(id, "bridge", settings).await;
}

fn call(gw: &TestGateway, agent: &str, rate: SampleRate, audio: AudioSource) -> CallConfig {
    let mut cfg = CallConfig {
        target: Target::Ws(gw.ws_url()),
        sample_rate: rate,
        audio,
        idle_tail: Duration::from_millis(1500),
        ..CallConfig::default()
    };
    cfg.custom_parameters.insert("agentId".into(), agent.into());
    cfg
}

async fn ended(bot: &FakeBot) -> BotSession {
    let sessions = bot.wait_ended(1, Duration::from_secs(10)).await;
    sessions.into_iter().next().expect("the bot's session ended")
}

fn events(s: &BotSession) -> Vec<&str> {
    s.received.iter().filter_map(|v| v["event"].as_str()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exotel_bot_sees_the_real_call_and_its_echo_arrives_byte_exact() {
    let gw = TestGateway::start().await;
    let bot = bot(BotProtocol::Exotel, Behavior::Echo).await;
    let url = format!("ws://{}/ws/{{call_sid}}?lang={{custom.lang}}&from={{from}}", bot.addr());
    agent(&gw, "mybot", json!({ "url": url, "headers": { "Authorization": "Bearer t0k" } })).await;
    let mut cfg = call(&gw, "mybot", SampleRate::Hz8000, AudioSource::Pcm(speech(SampleRate::Hz8000)));
    cfg.custom_parameters.insert("lang".into(), "hi".into());
    let call_sid = cfg.call_sid.clone();
    let report = run_call(cfg).await.expect("call runs");
    assert_legal(&report);
    assert_echo(&report.sent_pcm, &report.received_pcm);

    let s = ended(&bot).await;
    assert_eq!(s.path_and_query, format!("/ws/{call_sid}?lang=hi&from=%2B919876543210"));
    assert!(s.headers.iter().any(|(k, v)| k == "authorization" && v == "Bearer t0k"), "{:?}", s.headers);
    let ev = events(&s);
    assert_eq!(&ev[..2], ["connected", "start"], "{ev:?}");
    assert_eq!(ev.last(), Some(&"stop"), "{ev:?}");
    let start = &s.received[1];
    assert_eq!(start["start"]["call_sid"], call_sid.as_str());
    assert_eq!(start["stream_sid"], start["start"]["stream_sid"]);
    assert_eq!(start["start"]["from"], "+919876543210");
    assert_eq!(start["start"]["custom_parameters"]["lang"], "hi");
    assert_eq!(start["start"]["media_format"]["sample_rate"], "8000");
    assert_eq!(s.received.last().unwrap()["stop"]["reason"], "callended");
    assert_eq!(s.audio_in, report.sent_pcm, "the bot got the caller's audio, unchanged");
    assert_eq!(s.ended.as_deref(), Some("closed 1000"));

    let row = gw.call(&call_sid).await;
    assert_eq!(row["agent"], "mybot");
    assert_eq!(row["status"], "completed");
    assert_eq!(row["stop_reason"], "callended");
    assert_eq!(row["agent_failure"], Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_twilio_bot_runs_unchanged_on_a_16k_call() {
    let gw = TestGateway::start().await;
    let bot = bot(BotProtocol::Twilio, Behavior::Echo).await;
    agent(&gw, "tw", json!({ "url": bot.url(), "protocol": "twilio" })).await;
    let audio = speech(SampleRate::Hz16000);
    let cfg = call(&gw, "tw", SampleRate::Hz16000, AudioSource::Pcm(audio.clone()));
    let call_sid = cfg.call_sid.clone();
    let report = run_call(cfg).await.expect("call runs");
    assert_legal(&report);
    let c = correlation(&report.sent_pcm, &report.received_pcm, 16 * 40);
    eprintln!("twilio 16 kHz echo correlation after μ-law and 16→8→16 kHz: {c:.4}");
    assert!(c >= 0.95, "correlation {c}");

    let s = ended(&bot).await;
    let ev = events(&s);
    assert_eq!(&ev[..2], ["connected", "start"], "{ev:?}");
    assert_eq!(ev.last(), Some(&"stop"), "{ev:?}");
    let start = &s.received[1];
    assert_eq!(start["sequenceNumber"], "1");
    assert_eq!(start["start"]["mediaFormat"], json!({"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}));
    assert_eq!(start["start"]["customParameters"]["from_number"], "+919876543210");
    assert!(start["start"]["callSid"].as_str().unwrap().starts_with("CA"));
    let media: Vec<&Value> = s.received.iter().filter(|v| v["event"] == "media").collect();
    assert!(media.len() > 50);
    for (i, m) in media.iter().enumerate().take(20) {
        assert_eq!(m["media"]["chunk"], (i + 1).to_string());
        assert_eq!(m["media"]["track"], "inbound");
        assert_eq!(m["streamSid"], start["streamSid"]);
    }
    // 8 kHz μ-law, 20 ms frames: about half as many bytes as 16 kHz PCM16 has samples.
    let expected = report.sent_pcm.len() / 4;
    assert!(s.audio_in.len().abs_diff(expected) <= 480, "{} vs {expected}", s.audio_in.len());
    assert_eq!(gw.call(&call_sid).await["agent"], "tw");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whatever_sizes_and_pace_a_bot_sends_exotel_gets_legal_paced_chunks() {
    let gw = TestGateway::start().await;
    let small = bot(BotProtocol::Exotel, Behavior::EchoChunked { bytes: 320 }).await;
    let fast = bot(BotProtocol::Exotel, Behavior::EchoPaced { chunk_ms: 40, speed: 2.0 }).await;
    agent(&gw, "small", json!({ "url": small.url() })).await;
    agent(&gw, "fast", json!({ "url": fast.url() })).await;
    for id in ["small", "fast"] {
        let audio = speech(SampleRate::Hz8000);
        let report = run_call(call(&gw, id, SampleRate::Hz8000, AudioSource::Pcm(audio))).await.unwrap();
        assert_legal(&report);
        // No audio lost, reordered or duplicated (the chunked bot holds back a last partial 320).
        let n = report.sent_pcm.len() / 320 * 320;
        assert_echo(&report.sent_pcm[..n], &report.received_pcm[..report.received_pcm.len().min(n)]);
        assert!(report.received_pcm.len() >= n, "{id}: {} of {n}", report.received_pcm.len());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bot_marks_come_back_in_order_once_played() {
    let gw = TestGateway::start().await;
    for protocol in [BotProtocol::Exotel, BotProtocol::Twilio] {
        let bot = bot(protocol, Behavior::EchoWithMarks { every_ms: 400 }).await;
        let id = format!("marks-{protocol}");
        agent(&gw, &id, json!({ "url": bot.url(), "protocol": protocol.to_string() })).await;
        let report =
            run_call(call(&gw, &id, SampleRate::Hz8000, AudioSource::Tone { hz: 440.0, ms: 2400 })).await.unwrap();
        assert_legal(&report);
        let s = ended(&bot).await;
        let sent: Vec<String> = (1..=s.marks_echoed.len()).map(|n| format!("bot-{n}")).collect();
        assert!(s.marks_echoed.len() >= 4, "{protocol}: echoed {:?}", s.marks_echoed);
        assert_eq!(s.marks_echoed, sent, "{protocol}: in order, each once");
        // The bot's marks reached Exotel as marks of ours, echoed by the simulator after playback.
        assert!(report.marks_echoed.len() >= s.marks_echoed.len(), "{protocol}: {:?}", report.marks_echoed);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bots_clear_cuts_playback_and_resolves_its_marks() {
    let gw = TestGateway::start().await;
    let bot = bot(BotProtocol::Twilio, Behavior::Greeting { ms: 6000 }).await;
    agent(&gw, "greeter", json!({ "url": bot.url(), "protocol": "twilio" })).await;
    let mut cfg = call(&gw, "greeter", SampleRate::Hz8000, AudioSource::Tone { hz: 300.0, ms: 2500 });
    cfg.dtmf.push((Duration::from_millis(1200), "#".into()));
    let report = run_call(cfg).await.unwrap();
    assert!(report.ok(), "{:?}", report.violations);
    assert!(report.clears_received >= 1, "Exotel got the bot's clear");
    // 6 s of greeting were queued; the clear at 1.2 s cut it (plus at most one chunk and the lead).
    let played_ms = report.received_pcm.len() / 16;
    assert!(played_ms < 4000, "{played_ms} ms of greeting played");
    let s = ended(&bot).await;
    assert_eq!(s.marks_echoed.first().map(String::as_str), Some("greeting-done"), "{:?}", s.marks_echoed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bot_closing_its_socket_ends_the_call_after_its_audio() {
    let gw = TestGateway::start().await;
    let bot = bot(BotProtocol::Exotel, Behavior::HangUpAfter { after_ms: 1500 }).await;
    agent(&gw, "bye", json!({ "url": bot.url() })).await;
    let cfg = call(&gw, "bye", SampleRate::Hz8000, AudioSource::Tone { hz: 440.0, ms: 5000 });
    let call_sid = cfg.call_sid.clone();
    let report = run_call(cfg).await.unwrap();
    assert!(report.ok(), "{:?}", report.violations);
    assert!(report.closed_by_bot, "{}", report.summary());
    assert_eq!(report.close_code, Some(1000));
    assert!(report.duration < Duration::from_millis(4500), "{:?}", report.duration);
    assert!(!report.received_pcm.is_empty());
    let row = gw.call(&call_sid).await;
    assert_eq!(row["agent_note"], "bot closed its socket (1000)");
    assert_eq!(row["stop_reason"], "bot-hangup");
    assert_eq!(row["bot_decision"], "hangup");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_bot_hands_the_call_to_the_fallback_agent() {
    let gw = TestGateway::start().await;
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    agent(&gw, "gone", json!({ "url": format!("ws://{dead}/ws"), "on_failure": "echo" })).await;
    let cfg = call(&gw, "gone", SampleRate::Hz8000, AudioSource::Pcm(speech(SampleRate::Hz8000)));
    let call_sid = cfg.call_sid.clone();
    let report = run_call(cfg).await.unwrap();
    assert_legal(&report);
    assert_echo(&report.sent_pcm, &report.received_pcm);
    let row = gw.call(&call_sid).await;
    assert!(row["agent_failure"].as_str().unwrap().contains("cannot connect"), "{}", row["agent_failure"]);
    assert_eq!(row["agent_fallback"], "agent:echo");
    assert_eq!(row["agent"], "gone");
    assert_eq!(row["status"], "completed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_dead_bots_each_get_on_failure() {
    let gw = TestGateway::start().await;
    let slow = FakeBot::start(
        0,
        BotConfig { protocol: BotProtocol::Exotel, behavior: Behavior::Echo, accept_delay: Duration::from_secs(3) },
    )
    .await
    .unwrap();
    let dies = bot(BotProtocol::Exotel, Behavior::DieAfter { after_ms: 800 }).await;
    agent(&gw, "slow", json!({ "url": slow.url(), "connect_timeout_ms": 300 })).await;
    agent(&gw, "dies", json!({ "url": dies.url(), "on_failure": "transfer", "transfer_to": "+918047491899" })).await;
    let cases = [("slow", "did not accept within 300 ms"), ("dies", "connection lost")];
    for (id, why) in cases {
        let cfg = call(&gw, id, SampleRate::Hz8000, AudioSource::Tone { hz: 440.0, ms: 4000 });
        let call_sid = cfg.call_sid.clone();
        let report = run_call(cfg).await.unwrap();
        assert!(report.ok(), "{id}: {:?}", report.violations);
        assert!(report.closed_by_bot, "{id}: the gateway ended its part: {}", report.summary());
        assert_eq!(report.close_code, Some(1000), "{id}");
        let row = gw.call(&call_sid).await;
        let failure = row["agent_failure"].as_str().unwrap_or_default();
        assert!(failure.contains(why), "{id}: {failure}");
        assert_eq!(row["stop_reason"], "agent-failed", "{id}");
    }
    // The dead bot's fallback was a transfer: the Passthru after the applet answers 302 with it.
    let rows = gw.get_json("/api/calls?agent=dies").await.1;
    let row = &rows["calls"][0];
    assert_eq!(row["bot_decision"], "transfer");
    assert_eq!(row["transfer_to"], "+918047491899");
    let no_redirect = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let r = no_redirect
        .get(gw.http_url(&format!("/api/exotel/passthru?CallSid={}", row["call_sid"].as_str().unwrap())))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    assert!(location.contains("target=%2B918047491899"), "{location}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bot_sending_junk_keeps_its_call_and_the_junk_is_counted() {
    let gw = TestGateway::start().await;
    for protocol in [BotProtocol::Twilio, BotProtocol::Exotel] {
        // Non-JSON text, binary frames and unknown events, far more than 20 in a row, then echo.
        let junk = bot(protocol, Behavior::Garbage { count: 60 }).await;
        let id = format!("junk-{protocol}");
        agent(&gw, &id, json!({ "url": junk.url(), "protocol": protocol.to_string() })).await;
        let cfg = call(&gw, &id, SampleRate::Hz8000, AudioSource::Tone { hz: 440.0, ms: 3000 });
        let call_sid = cfg.call_sid.clone();
        let report = run_call(cfg).await.unwrap();
        assert!(report.ok(), "{protocol}: {:?}", report.violations);
        assert!(!report.received_pcm.is_empty(), "{protocol}: the bot's echo still plays");
        let row = gw.call(&call_sid).await;
        assert_eq!(row["agent_failure"], Value::Null, "{protocol}");
        assert_eq!(row["stop_reason"], "callended", "{protocol}");
        assert!(row["bad_messages"].as_i64().unwrap_or_default() >= 60, "{protocol}: {}", row["bad_messages"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exotel_bot_gets_the_dtmf_duration_exotel_sent() {
    let gw = TestGateway::start().await;
    let bot = bot(BotProtocol::Exotel, Behavior::Echo).await;
    agent(&gw, "keys", json!({ "url": bot.url() })).await;
    let mut cfg = call(&gw, "keys", SampleRate::Hz8000, AudioSource::Tone { hz: 440.0, ms: 1500 });
    cfg.dtmf.push((Duration::from_millis(500), "5".into()));
    run_call(cfg).await.unwrap();
    let s = ended(&bot).await;
    let dtmf = s.received.iter().find(|v| v["event"] == "dtmf").expect("the bot got the key");
    // The simulator holds each key 100 ms, and says so as Exotel does.
    assert_eq!(dtmf["dtmf"], json!({"digit": "5", "duration": "100"}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bridge_settings_are_checked_when_saved() {
    let gw = TestGateway::start().await;
    for (settings, field) in [
        (json!({}), "settings.url"),
        (json!({ "url": "http://bot" }), "settings.url"),
        (json!({ "url": "ws://bot/{nope}" }), "settings.url"),
        (json!({ "url": "ws://bot", "protocol": "sip" }), "settings.protocol"),
        (json!({ "url": "ws://bot", "sample_rate": 11025 }), "settings.sample_rate"),
        (json!({ "url": "ws://bot", "on_failure": "nobody" }), "settings.on_failure"),
        (json!({ "url": "ws://bot", "connect_timeout_ms": "soon" }), "settings.connect_timeout_ms"),
    ] {
        let r = gw
            .http
            .post(gw.http_url("/api/agents"))
            .json(&json!({ "id": "b", "kind": "bridge", "settings": settings }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{settings}");
        let body: Value = r.json().await.unwrap();
        assert!(body["error"].as_str().unwrap().starts_with(field), "{settings}: {body}");
    }
    // An update is checked against the merged definition too.
    agent(&gw, "ok", json!({ "url": "ws://bot" })).await;
    let r = gw.http.patch(gw.http_url("/api/agents/ok")).json(&json!({ "settings": {"url": 5} })).send().await.unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_in_the_url_connects_before_start_and_serves_the_call() {
    let gw = TestGateway::start().await;
    let bot = bot(BotProtocol::Exotel, Behavior::Echo).await;
    agent(&gw, "early", json!({ "url": bot.url(), "sample_rate": 8000 })).await;
    // A 16 kHz call to a bot that wants 8 kHz: resampled both ways.
    let mut cfg = call(&gw, "early", SampleRate::Hz16000, AudioSource::Pcm(speech(SampleRate::Hz16000)));
    cfg.custom_parameters.clear();
    cfg.target = Target::Ws(format!("{}media?agentId=early", gw.ws_url()));
    let report = run_call(cfg).await.unwrap();
    assert_legal(&report);
    let c = correlation(&report.sent_pcm, &report.received_pcm, 16 * 40);
    eprintln!("16 kHz call through an 8 kHz Exotel bot: echo correlation {c:.4}");
    assert!(c >= 0.9, "correlation {c}");
    let s = ended(&bot).await;
    assert_eq!(s.received[1]["start"]["media_format"]["sample_rate"], "8000");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_twilio_bot_can_hang_up_through_the_emulated_rest_api() {
    let gw = TestGateway::start().await;
    let bot = bot(BotProtocol::Twilio, Behavior::Echo).await;
    let token = "tok-0123456789abcdef";
    agent(
        &gw,
        "rest",
        json!({ "url": bot.url(), "protocol": "twilio", "account_sid": "AC0000000000000000000000000000beef", "auth_token": token }),
    )
    .await;
    let cfg = call(&gw, "rest", SampleRate::Hz8000, AudioSource::Tone { hz: 440.0, ms: 8000 });
    let exotel_sid = cfg.call_sid.clone();
    let running = tokio::spawn(run_call(cfg));
    // Wait for the bot's `start` to learn the ids it was given, as a bot would.
    let mut start = Value::Null;
    for _ in 0..100 {
        if let Some(s) = bot.sessions().first().and_then(|s| s.received.get(1).cloned()) {
            start = s;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let call_sid = start["start"]["callSid"].as_str().expect("the bot got start").to_string();
    // Twilio signs only over TLS (see the unit test in bridge::connect); this bot is on ws://.
    let headers = &bot.sessions()[0].headers;
    assert!(!headers.iter().any(|(k, _)| k == "x-twilio-signature"), "{headers:?}");
    let account = start["start"]["accountSid"].as_str().unwrap().to_string();
    assert_eq!(account, "AC0000000000000000000000000000beef");
    let url = |sid: &str| gw.http_url(&format!("/2010-04-01/Accounts/{account}/Calls/{sid}.json"));
    let post = |url: String, password: &'static str| {
        gw.http.post(url).basic_auth(&account, Some(password)).form(&[("Status", "completed")]).send()
    };
    let wrong = post(url(&call_sid), "not-the-token-at-all").await.unwrap();
    assert_eq!(wrong.status(), 401);
    assert_eq!(wrong.json::<Value>().await.unwrap()["code"], 20003);
    let unknown = post(url("CA00000000000000000000000000000000"), "tok-0123456789abcdef").await.unwrap();
    assert_eq!(unknown.status(), 404);
    assert_eq!(unknown.json::<Value>().await.unwrap()["code"], 20404);
    let ok = post(url(&call_sid), "tok-0123456789abcdef").await.unwrap();
    assert_eq!(ok.status(), 200);
    let body: Value = ok.json().await.unwrap();
    assert_eq!((body["sid"].as_str(), body["status"].as_str()), (Some(call_sid.as_str()), Some("completed")));

    let report = running.await.unwrap().unwrap();
    assert!(report.closed_by_bot && report.close_code == Some(1000), "{}", report.summary());
    assert!(report.duration < Duration::from_secs(7), "{:?}", report.duration);
    let row = gw.call(&exotel_sid).await;
    assert_eq!(row["agent_note"], "bot ended the call through the Twilio API");
    let s = ended(&bot).await;
    assert_eq!(events(&s).last(), Some(&"stop"), "the bot is told the call ended");
    // The call is gone: the API no longer finds it.
    assert_eq!(post(url(&call_sid), "tok-0123456789abcdef").await.unwrap().status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rest_hang_up_plays_at_most_3_s_of_a_queued_reply() {
    let gw = TestGateway::start().await;
    // 20 s of speech sent at once, as the OpenAI sample and Vocode do.
    let bot = bot(BotProtocol::Twilio, Behavior::Greeting { ms: 20_000 }).await;
    let account = "AC0000000000000000000000000000beef";
    let token = "tok-0123456789abcdef";
    agent(&gw, "rest", json!({ "url": bot.url(), "protocol": "twilio", "account_sid": account, "auth_token": token }))
        .await;
    let cfg = call(&gw, "rest", SampleRate::Hz8000, AudioSource::Tone { hz: 300.0, ms: 20_000 });
    let running = tokio::spawn(run_call(cfg));
    let mut call_sid = None;
    for _ in 0..100 {
        call_sid =
            bot.sessions().first().and_then(|s| s.received.get(1)?["start"]["callSid"].as_str().map(String::from));
        if call_sid.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let call_sid = call_sid.expect("the bot got start");
    // Let the greeting be queued in full before the bot hangs up.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let url = gw.http_url(&format!("/2010-04-01/Accounts/{account}/Calls/{call_sid}.json"));
    let r = gw.http.post(url).basic_auth(account, Some(token)).form(&[("Status", "completed")]).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let report = running.await.unwrap().unwrap();
    assert!(report.closed_by_bot && report.close_code == Some(1000), "{}", report.summary());
    // At 8 kHz PCM16 a second is 16 000 bytes: 0.5 s before the request, then at most 3 s more.
    let played_ms = report.received_pcm.len() / 16;
    assert!((2000..=4000).contains(&played_ms), "{played_ms} ms of the 20 s greeting played");
    assert!(report.duration < Duration::from_secs(8), "{:?}", report.duration);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_waits_for_the_bridge_to_tell_its_bot() {
    let t = TestGateway::start().await;
    let bot = bot(BotProtocol::Exotel, Behavior::Echo).await;
    agent(&t, "b", json!({ "url": bot.url() })).await;
    let running = tokio::spawn(run_call(call(&t, "b", SampleRate::Hz8000, AudioSource::Tone { hz: 440.0, ms: 8000 })));
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let TestGateway { gw, dir: _dir, .. } = t;
    gw.shutdown(Duration::from_millis(200)).await;
    // By the time shutdown returns, the bot has been sent `stop` and its socket closed.
    let s = bot.sessions().into_iter().next().expect("the bot was called");
    assert_eq!(events(&s).last(), Some(&"stop"), "{:?}", events(&s));
    assert_eq!(s.received.last().unwrap()["stop"]["reason"], "stopped");
    assert_eq!(s.ended.as_deref(), Some("closed 1000"));
    let report = running.await.unwrap().unwrap();
    assert_eq!(report.close_code, Some(1001), "{}", report.summary());
}
