//! The built-in AI agents (`openai-realtime`, `gemini-live`) end to end: the simulator plays
//! Exotel, the fake provider plays OpenAI or Gemini, and the gateway sits between them.

mod common;

use std::io::Write as _;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use common::{TestGateway, assert_legal, correlation};
use exotel::SampleRate;
use exotel::audio::resample::resample;
use exotel_sim::fake_ai::{AiSession, FakeAi, FakeAiConfig, FakeAiFailure};
use exotel_sim::{AudioSource, CallConfig, CallReport, Target, load_wav, run_call};
use serde_json::{Value, json};

const KEY: &str = "sk-test-0123456789";

fn testdata(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/audio").join(name)
}

/// Speech as the model's answer (so what reaches the caller can be told from a tone).
fn spoken_answer() -> Vec<u8> {
    load_wav(&testdata("caller-order-number-16k.wav"), SampleRate::Hz24000).unwrap()
}

async fn fake(cfg: FakeAiConfig) -> FakeAi {
    FakeAi::start(0, FakeAiConfig { api_key: KEY.into(), ..cfg }).await.expect("fake provider starts")
}

fn settings(ai: &FakeAi, kind: &str, extra: Value) -> Value {
    let url = if kind == "gemini-live" { ai.gemini_url() } else { ai.openai_url() };
    let mut s = json!({ "base_url": url, "api_key": KEY, "instructions": "You are Asha. The caller is {from}, order {custom.order}." });
    if let (Some(s), Some(extra)) = (s.as_object_mut(), extra.as_object()) {
        s.extend(extra.clone());
    }
    s
}

/// A fake provider and a gateway with one agent of `kind` on it.
async fn rig(kind: &str, id: &str, cfg: FakeAiConfig, extra: Value) -> (FakeAi, TestGateway) {
    let ai = fake(cfg).await;
    let gw = TestGateway::start().await;
    gw.create_agent(id, kind, settings(&ai, kind, extra)).await;
    (ai, gw)
}

fn call(gw: &TestGateway, agent: &str, rate: SampleRate, wav: &str) -> CallConfig {
    let mut cfg = CallConfig {
        target: Target::Ws(gw.ws_url()),
        sample_rate: rate,
        audio: AudioSource::Wav(testdata(wav)),
        idle_tail: Duration::from_millis(1500),
        ..CallConfig::default()
    };
    cfg.custom_parameters.insert("agentId".into(), agent.into());
    cfg.custom_parameters.insert("order".into(), "A-17".into());
    cfg
}

/// [`call`] with the caller playing a 440 Hz tone for `ms` (one the fake provider hears at once).
fn tone_call(gw: &TestGateway, agent: &str, rate: SampleRate, ms: u32) -> CallConfig {
    let wav = if rate == SampleRate::Hz8000 { "caller-order-status-8k.wav" } else { "caller-order-number-16k.wav" };
    CallConfig { audio: AudioSource::Tone { hz: 440.0, ms }, ..call(gw, agent, rate, wav) }
}

fn pcm_ms(bytes: usize, rate: SampleRate) -> u64 {
    bytes as u64 / rate.bytes_per_ms() as u64
}

/// One call through an AI agent; returns what the caller saw and what the provider saw.
async fn ai_call(gw: &TestGateway, ai: &FakeAi, cfg: CallConfig) -> (CallReport, AiSession, Value) {
    let call_sid = cfg.call_sid.clone();
    let before = ai.sessions().len();
    let report = run_call(cfg).await.unwrap();
    let sessions = ai.wait_ended(before + 1, Duration::from_secs(10)).await;
    let session = sessions.into_iter().last().expect("the provider saw the call");
    (report, session, gw.call(&call_sid).await)
}

async fn check_conversation(kind: &str, rate: SampleRate, wav: &str, expect_format: &str, expect_rate: u32) {
    let (ai, gw) =
        rig(kind, "asha", FakeAiConfig { answer_pcm24: spoken_answer(), ..FakeAiConfig::default() }, json!({})).await;
    let (report, session, row) = ai_call(&gw, &ai, call(&gw, "asha", rate, wav)).await;

    // The caller's audio reached the provider in the format it was asked for, intact.
    assert!(session.authorized, "{:?}", session.ended);
    assert_eq!((session.audio_format.as_str(), session.audio_rate), (expect_format, expect_rate), "{kind}");
    let sent_at_provider_rate = resample(&report.sent_pcm, rate.hz(), expect_rate).unwrap();
    let heard = &session.audio_in[..session.audio_in.len().min(sent_at_provider_rate.len())];
    assert!(
        heard.len() as u64 >= pcm_ms(sent_at_provider_rate.len(), SampleRate::Hz8000) / 2,
        "most of the audio arrived"
    );
    let c = correlation(&sent_at_provider_rate[..heard.len()], heard, 64);
    assert!(c >= 0.95, "{kind} at {} Hz: the provider heard the caller with correlation {c:.3}", rate.hz());

    // The model's answer reached the caller as legal, paced chunks, and is the answer.
    assert_legal(&report);
    let answer = resample(&spoken_answer(), 24_000, rate.hz()).unwrap();
    let got = pcm_ms(report.received_pcm.len(), rate);
    assert!(got + 100 >= pcm_ms(answer.len(), rate), "{kind}: {got} ms of {} ms arrived", pcm_ms(answer.len(), rate));
    let c = correlation(&answer, &report.received_pcm, 400);
    assert!(c >= 0.9, "{kind}: the caller heard the answer with correlation {c:.3}");

    // The session was set up from the agent's settings, the template filled from the call.
    let setup = session.setup.clone().unwrap();
    let instructions = if kind == "gemini-live" {
        setup["setup"]["systemInstruction"]["parts"][0]["text"].clone()
    } else {
        setup["session"]["instructions"].clone()
    };
    assert_eq!(instructions, "You are Asha. The caller is +919876543210, order A-17.");

    // Both sides' transcripts and the usage are on the call's row and timeline.
    let transcript = row["transcript"].as_array().expect("a transcript");
    let lines: Vec<(&str, &str)> =
        transcript.iter().map(|l| (l["speaker"].as_str().unwrap(), l["text"].as_str().unwrap())).collect();
    assert!(lines.contains(&("caller", "Hi, I have a question.")), "{lines:?}");
    assert!(lines.contains(&("agent", "Hello! How can I help you today?")), "{lines:?}");
    let total = if kind == "gemini-live" { &row["usage"]["totalTokenCount"] } else { &row["usage"]["total_tokens"] };
    assert_eq!(total, 120, "{}", row["usage"]);
    let events = timeline(&gw, &row).await;
    assert!(events.iter().any(|e| e["kind"] == "transcript"), "{events:?}");
    assert_eq!(row["agent"], "asha");
    assert_eq!(row["status"], "completed");
}

async fn timeline(gw: &TestGateway, row: &Value) -> Vec<Value> {
    let (_, detail) = gw.get_json(&format!("/api/calls/{}", row["id"].as_str().unwrap())).await;
    detail["events"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_hears_the_caller_in_mulaw_at_8k_and_answers_through_the_call() {
    check_conversation("openai-realtime", SampleRate::Hz8000, "caller-order-status-8k.wav", "audio/pcmu", 8000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_gets_pcm_at_24k_from_a_16k_call() {
    check_conversation(
        "openai-realtime",
        SampleRate::Hz16000,
        "caller-order-number-16k.wav",
        "audio/pcm;rate=24000",
        24_000,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gemini_hears_the_caller_at_16k_and_answers_through_the_call() {
    check_conversation("gemini-live", SampleRate::Hz8000, "caller-order-status-8k.wav", "audio/pcm;rate=16000", 16_000)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn barge_in_clears_at_once_and_truncates_to_what_the_caller_heard() {
    // A 4 s answer; the caller speaks 1.5 s into it.
    let answer = exotel_sim::tone(300.0, 4000, SampleRate::Hz24000);
    let (ai, gw) = rig(
        "openai-realtime",
        "asha",
        FakeAiConfig {
            answer_pcm24: answer,
            barge_in_after: Some(Duration::from_millis(1500)),
            ..FakeAiConfig::default()
        },
        json!({}),
    )
    .await;
    let cfg = tone_call(&gw, "asha", SampleRate::Hz8000, 6000);
    let (report, session, row) = ai_call(&gw, &ai, cfg).await;
    assert_legal(&report);
    let barge = session.barge_in_at.expect("the fake barged in");
    let clear = *report.clears.first().expect("Exotel got a clear");
    let delay = clear.at.saturating_duration_since(barge);
    assert!(delay <= Duration::from_millis(100), "clear {delay:?} after speech started");
    let heard_ms = pcm_ms(clear.heard_bytes, SampleRate::Hz8000) as i64;
    let truncate = session.truncates.first().expect("a truncate");
    let end_ms = truncate["audio_end_ms"].as_i64().unwrap();
    assert!((end_ms - heard_ms).abs() <= 150, "truncated at {end_ms} ms; the caller had heard {heard_ms} ms");
    assert!((1200..=1800).contains(&end_ms), "{end_ms}");
    assert_eq!(truncate["item_id"], "item_1");
    assert_eq!(truncate["content_index"], 0);
    // The rest of the answer never played.
    let played = pcm_ms(report.played_pcm.len(), SampleRate::Hz8000);
    assert!(played < 2500, "{played} ms of the 4 s answer played");
    let events = timeline(&gw, &row).await;
    assert!(events.iter().any(|e| e["kind"] == "barge-in" && e["detail"]["audio_end_ms"] == end_ms), "{events:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn barge_in_before_any_mark_echo_still_truncates_the_playing_item() {
    // Exotel never echoes: the gateway has no proof the caller heard any of the answer, so the
    // model must be told the caller heard 0 ms of it (not nothing at all).
    let (ai, gw) = rig(
        "openai-realtime",
        "asha",
        FakeAiConfig {
            answer_pcm24: exotel_sim::tone(300.0, 4000, SampleRate::Hz24000),
            barge_in_after: Some(Duration::from_millis(1500)),
            ..FakeAiConfig::default()
        },
        json!({}),
    )
    .await;
    let mut cfg = tone_call(&gw, "asha", SampleRate::Hz8000, 5000);
    cfg.echo_marks = false;
    let (report, session, _) = ai_call(&gw, &ai, cfg).await;
    assert!(!report.clears.is_empty(), "Exotel got a clear");
    let truncate = session.truncates.first().expect("a truncate though no mark came back");
    assert_eq!(truncate["item_id"], "item_1");
    assert_eq!(truncate["audio_end_ms"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn barge_in_before_the_first_delta_drops_the_answer_and_cancels_it_if_asked() {
    // The caller speaks once the answer has started but before its audio: the deltas already
    // in flight belong to a cancelled answer. With `interrupt_response: false` the server would
    // go on generating, so the gateway cancels it (§A5 step 4).
    let (ai, gw) = rig(
        "openai-realtime",
        "asha",
        FakeAiConfig {
            answer_pcm24: exotel_sim::tone(300.0, 2000, SampleRate::Hz24000),
            barge_in_before_audio: true,
            ..FakeAiConfig::default()
        },
        json!({ "turn_detection": { "interrupt_response": false } }),
    )
    .await;
    let cfg = tone_call(&gw, "asha", SampleRate::Hz8000, 4000);
    let (report, session, _) = ai_call(&gw, &ai, cfg).await;
    assert!(session.barge_in_at.is_some());
    let heard = pcm_ms(report.received_pcm.len(), SampleRate::Hz8000);
    assert_eq!(heard, 0, "{heard} ms of the cancelled answer reached the caller");
    let cancel = session.messages.iter().find(|m| m["type"] == "response.cancel").expect("a response.cancel");
    assert_eq!(cancel["response_id"], "resp_1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gemini_barge_in_clears_and_drops_the_rest_of_the_turn() {
    let (ai, gw) = rig(
        "gemini-live",
        "gem",
        FakeAiConfig {
            answer_pcm24: exotel_sim::tone(300.0, 4000, SampleRate::Hz24000),
            barge_in_after: Some(Duration::from_millis(1500)),
            ..FakeAiConfig::default()
        },
        json!({}),
    )
    .await;
    let cfg = tone_call(&gw, "gem", SampleRate::Hz16000, 6000);
    let (report, session, _) = ai_call(&gw, &ai, cfg).await;
    assert_legal(&report);
    let clear = *report.clears.first().expect("Exotel got a clear");
    let delay = clear.at.saturating_duration_since(session.barge_in_at.unwrap());
    assert!(delay <= Duration::from_millis(100), "clear {delay:?} after interrupted");
    assert!(session.truncates.is_empty(), "Gemini has no truncate");
    assert!(pcm_ms(report.played_pcm.len(), SampleRate::Hz16000) < 2500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_call_hangs_up_with_1000_after_the_goodbye_has_played() {
    for kind in ["openai-realtime", "gemini-live"] {
        let (ai, gw) = rig(
            kind,
            "asha",
            FakeAiConfig {
                tool_call: Some(("end_call".into(), json!({ "reason": "caller is done" }))),
                answer_pcm24: exotel_sim::tone(300.0, 1500, SampleRate::Hz24000),
                ..FakeAiConfig::default()
            },
            json!({}),
        )
        .await;
        let cfg = tone_call(&gw, "asha", SampleRate::Hz8000, 8000);
        let (report, session, row) = ai_call(&gw, &ai, cfg).await;
        assert_legal(&report);
        assert!(report.closed_by_bot, "{kind}: the agent hung up: {}", report.summary());
        assert_eq!(report.close_code, Some(1000), "{kind}");
        // The goodbye (1.5 s) played in full before the close.
        let played = pcm_ms(report.played_pcm.len(), SampleRate::Hz8000);
        assert!(played >= 1400, "{kind}: {played} ms of goodbye played");
        assert!(report.duration < Duration::from_secs(7), "{kind}: hung up before the caller's 8 s ran out");
        assert_eq!(session.tool_outputs.len(), 1, "{kind}");
        assert_eq!(row["stop_reason"], "bot-hangup", "{kind}");
        assert_eq!(row["agent_note"], "agent ended the call (end_call)", "{kind}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfer_call_makes_the_passthru_answer_302() {
    let (ai, gw) = rig(
        "openai-realtime",
        "asha",
        FakeAiConfig {
            tool_call: Some(("transfer_call".into(), json!({ "target": "+918047491899" }))),
            answer_pcm24: exotel_sim::tone(300.0, 1000, SampleRate::Hz24000),
            ..FakeAiConfig::default()
        },
        json!({}),
    )
    .await;
    let cfg = tone_call(&gw, "asha", SampleRate::Hz8000, 8000);
    let call_sid = cfg.call_sid.clone();
    let (report, _, row) = ai_call(&gw, &ai, cfg).await;
    assert_eq!(report.close_code, Some(1000));
    assert_eq!(row["bot_decision"], "transfer");
    assert_eq!(row["transfer_to"], "+918047491899");
    let no_redirect = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let r = no_redirect.get(gw.http_url(&format!("/passthru?CallSid={call_sid}"))).send().await.unwrap();
    assert_eq!(r.status(), 302);
}

/// A tool endpoint that records what it got and answers after `delay`.
async fn tool_server(delay: Duration, answer: Value) -> (String, Arc<Mutex<Vec<(Option<String>, Value)>>>) {
    use axum::http::HeaderMap;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let app = axum::Router::new().route(
        "/tool",
        axum::routing::post(move |headers: HeaderMap, body: String| {
            let (record, answer) = (record.clone(), answer.clone());
            async move {
                let sig = headers.get("x-exogate-signature").and_then(|v| v.to_str().ok()).map(str::to_string);
                record.lock().unwrap().push((sig, serde_json::from_str::<Value>(&body).unwrap()));
                tokio::time::sleep(delay).await;
                axum::Json(answer)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/tool", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_tools_answer_reaches_the_model_and_a_slow_one_gives_an_error() {
    let secret = "whsec_test_0123456789abcdef";
    let (fast_url, fast_seen) = tool_server(Duration::ZERO, json!({ "status": "shipped", "eta": "tomorrow" })).await;
    let (slow_url, _) = tool_server(Duration::from_secs(3), json!({ "status": "late" })).await;
    for (url, expect_error) in [(fast_url, false), (slow_url, true)] {
        let ai = fake(FakeAiConfig {
            tool_call: Some(("lookup_order".into(), json!({ "order": "A-17" }))),
            ..FakeAiConfig::default()
        })
        .await;
        let gw = TestGateway::start().await;
        let tool = json!({ "name": "lookup_order", "description": "Order status", "url": url, "timeout_ms": 500,
            "parameters": { "type": "object", "properties": { "order": { "type": "string" } } } });
        gw.create_agent(
            "asha",
            "openai-realtime",
            settings(&ai, "openai-realtime", json!({ "tools": [tool], "tool_secret": secret })),
        )
        .await;
        let cfg = tone_call(&gw, "asha", SampleRate::Hz8000, 4000);
        let (report, session, _) = ai_call(&gw, &ai, cfg).await;
        assert_legal(&report);
        // The tool is declared to the model with the built-ins.
        let names: Vec<&str> = session.setup.as_ref().unwrap()["session"]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["end_call", "transfer_call", "lookup_order"]);
        let output = session.tool_outputs.first().expect("the tool's result went to the model");
        let output: Value = serde_json::from_str(output["output"].as_str().unwrap()).unwrap();
        if expect_error {
            assert!(output["error"].as_str().unwrap().contains("did not answer within 500 ms"), "{output}");
        } else {
            assert_eq!(output, json!({ "status": "shipped", "eta": "tomorrow" }));
        }
        // The model answered after the result (the fake answers response.create with audio).
        assert!(!report.received_pcm.is_empty(), "the model spoke after the tool");
    }
    let seen = fast_seen.lock().unwrap().clone();
    let (sig, body) = seen.first().expect("the webhook was called");
    assert_eq!(body["tool"], "lookup_order");
    assert_eq!(body["arguments"], json!({ "order": "A-17" }));
    assert_eq!(body["call"]["custom"]["order"], "A-17");
    assert!(body["call"]["call_sid"].is_string());
    let sig = sig.as_deref().expect("signed");
    let (t, v1) = sig.split_once(',').unwrap();
    let t: u64 = t.strip_prefix("t=").unwrap().parse().unwrap();
    let expected = exogate::agent::voice::tools::signature(secret, t, body.to_string().as_bytes());
    assert_eq!(format!("t={t},{v1}"), expected, "the signature covers the exact body");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_failures_give_the_fallback_with_the_reason_on_the_call_log() {
    failures_give_the_fallback(&[
        ("openai-realtime", None, true, "refused the API key (HTTP 401)"),
        ("openai-realtime", Some(FakeAiFailure::RateLimit), false, "rate_limit_exceeded"),
        ("openai-realtime", Some(FakeAiFailure::CloseAfter(Duration::from_millis(500))), false, "1011"),
        // At once, with the provider's code and message: not a timeout after connect_timeout.
        (
            "openai-realtime",
            Some(FakeAiFailure::RefuseSetup),
            false,
            "refused the session setup: invalid_value: Invalid value: 'nobody'",
        ),
    ])
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gemini_failures_give_the_fallback_with_the_reason_on_the_call_log() {
    failures_give_the_fallback(&[
        ("gemini-live", None, true, "API key not valid"),
        ("gemini-live", Some(FakeAiFailure::RateLimit), false, "RESOURCE_EXHAUSTED"),
        ("gemini-live", Some(FakeAiFailure::Garbage(Duration::from_millis(300))), false, "unreadable"),
    ])
    .await;
}

/// Each failure gives the echo fallback, with the provider's reason on the call log.
async fn failures_give_the_fallback(cases: &[(&str, Option<FakeAiFailure>, bool, &str)]) {
    let gw = TestGateway::start().await;
    for (i, (kind, failure, bad_key, why)) in cases.iter().cloned().enumerate() {
        let ai = fake(FakeAiConfig {
            failure: failure.clone(),
            answer_after: Duration::from_millis(500),
            ..FakeAiConfig::default()
        })
        .await;
        let id = format!("ai-{i}");
        let mut s = settings(&ai, kind, json!({ "on_failure": "echo" }));
        if bad_key {
            s["api_key"] = json!("sk-wrong");
        }
        gw.create_agent(&id, kind, s).await;
        let cfg = tone_call(&gw, &id, SampleRate::Hz8000, 4000);
        let call_sid = cfg.call_sid.clone();
        let report = run_call(cfg).await.unwrap();
        assert_legal(&report);
        let row = gw.call(&call_sid).await;
        let failure_text = row["agent_failure"].as_str().unwrap_or_default();
        assert!(failure_text.contains(why), "{kind} {failure:?}: {failure_text}");
        assert_eq!(row["agent_fallback"], "agent:echo", "{kind} {failure:?}");
        // The echo agent took the call over: the caller hears their own audio after the failure.
        assert!(report.received_pcm.len() > 8000, "{kind} {failure:?}: the fallback answered");
        if matches!(failure, Some(FakeAiFailure::CloseAfter(_))) {
            // One reconnect, then the second loss fails the agent: no retry storm.
            assert_eq!(ai.sessions().len(), 2, "{kind}: exactly one reconnect");
            let events = timeline(&gw, &row).await;
            assert!(events.iter().any(|e| e["kind"] == "provider-reconnected"), "{events:?}");
        }
    }
}

/// Everything the gateway logs in this test binary.
fn log_capture() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        struct W(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for W {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let sink = buf.clone();
        let _ = tracing_subscriber::fmt()
            .with_env_filter("debug,hyper=info,h2=info,sqlx=warn")
            .with_writer(move || W(sink.clone()))
            .try_init();
        buf
    })
    .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_key_never_appears_in_logs_api_answers_or_the_database() {
    let logs = log_capture();
    let secret_key = "sk-live-SECRET-5f2c9e";
    let ai = FakeAi::start(0, FakeAiConfig { api_key: secret_key.into(), ..FakeAiConfig::default() }).await.unwrap();
    let gw = TestGateway::start().await;
    let mut s = settings(&ai, "openai-realtime", json!({ "tool_secret": "whsec_SECRET_tool_0123" }));
    s["api_key"] = json!(secret_key);
    gw.create_agent("asha", "openai-realtime", s.clone()).await;
    // A call that works, and one whose key is refused (errors are where keys leak).
    let (report, _, _) = ai_call(&gw, &ai, call(&gw, "asha", SampleRate::Hz8000, "caller-order-status-8k.wav")).await;
    assert!(!report.received_pcm.is_empty());
    let mut wrong = s.clone();
    wrong["api_key"] = json!("sk-live-WRONG-77aa01");
    gw.create_agent("wrong", "openai-realtime", wrong).await;
    let _ = run_call(call(&gw, "wrong", SampleRate::Hz8000, "caller-order-status-8k.wav")).await.unwrap();

    let (_, shown) = gw.get_json("/api/agents/asha").await;
    assert_eq!(shown["settings"]["api_key"], "********", "{shown}");
    assert_eq!(shown["settings"]["tool_secret"], "********");
    let (_, list) = gw.get_json("/api/agents").await;
    // Sending the mask back keeps the key: the agent still works.
    let r = gw
        .http
        .put(gw.http_url("/api/agents/asha"))
        .json(&json!({ "settings": shown["settings"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (report, session, _) =
        ai_call(&gw, &ai, call(&gw, "asha", SampleRate::Hz8000, "caller-order-status-8k.wav")).await;
    assert!(session.authorized && !report.received_pcm.is_empty(), "the stored key survived the update");
    gw.gw.state.store.flush().await;

    let mut stored = Vec::new();
    for entry in std::fs::read_dir(gw.dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            stored.extend(std::fs::read(&path).unwrap());
        }
    }
    let logs = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
    for secret in [secret_key, "sk-live-WRONG-77aa01", "whsec_SECRET_tool_0123"] {
        assert!(!logs.contains(secret), "{secret} in the logs");
        assert!(!list.to_string().contains(secret), "{secret} in the API");
        assert!(!stored.windows(secret.len()).any(|w| w == secret.as_bytes()), "{secret} in the database files");
    }
    let _ = std::io::stdout().flush();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_greeting_makes_the_agent_speak_first() {
    for kind in ["openai-realtime", "gemini-live"] {
        // The fake answers caller audio only after 10 s: anything earlier is the greeting.
        let ai = fake(FakeAiConfig { answer_after: Duration::from_secs(10), ..FakeAiConfig::default() }).await;
        let gw = TestGateway::start().await;
        gw.create_agent(
            "asha",
            kind,
            settings(&ai, kind, json!({ "greeting": "Namaste {custom.name}, this is Asha." })),
        )
        .await;
        let mut cfg = call(&gw, "asha", SampleRate::Hz8000, "caller-order-status-8k.wav");
        cfg.custom_parameters.insert("name".into(), "Ravi".into());
        cfg.audio = AudioSource::Silence { ms: 4000 };
        let (report, session, _) = ai_call(&gw, &ai, cfg).await;
        assert_legal(&report);
        let latency = report.first_audio_latency.expect("the agent spoke");
        assert!(latency < Duration::from_secs(3), "{kind}: greeting after {latency:?}");
        let asked = session.messages.iter().any(|m| m.to_string().contains("Namaste Ravi, this is Asha."));
        assert!(asked, "{kind}: {:?}", session.messages);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_response_create_is_sent_again_after_the_running_answer() {
    // The greeting's response.create meets an answer VAD already started (§A6): it is asked
    // again once that answer is done, and the greeting is heard.
    let ai = fake(FakeAiConfig {
        busy_first_create: true,
        answer_after: Duration::from_secs(10),
        ..FakeAiConfig::default()
    })
    .await;
    let gw = TestGateway::start().await;
    gw.create_agent("asha", "openai-realtime", settings(&ai, "openai-realtime", json!({ "greeting": "Namaste." })))
        .await;
    let mut cfg = call(&gw, "asha", SampleRate::Hz8000, "caller-order-status-8k.wav");
    cfg.audio = AudioSource::Silence { ms: 4000 };
    let (report, session, _) = ai_call(&gw, &ai, cfg).await;
    let asks: Vec<&Value> = session
        .messages
        .iter()
        .filter(|m| m["type"] == "response.create" && m.to_string().contains("Namaste."))
        .collect();
    assert_eq!(asks.len(), 2, "refused once, asked again: {:?}", session.messages);
    assert!(report.first_audio_latency.is_some_and(|l| l < Duration::from_secs(3)), "the greeting was heard");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_caller_is_nudged_once_then_the_call_ends_politely() {
    let (ai, gw) = rig(
        "openai-realtime",
        "asha",
        FakeAiConfig {
            answers: 0,
            answer_pcm24: exotel_sim::tone(300.0, 1000, SampleRate::Hz24000),
            ..FakeAiConfig::default()
        },
        json!({ "silence_secs": 3 }),
    )
    .await;
    let mut cfg = call(&gw, "asha", SampleRate::Hz8000, "caller-order-status-8k.wav");
    cfg.audio = AudioSource::Silence { ms: 20_000 };
    let (report, session, row) = ai_call(&gw, &ai, cfg).await;
    assert!(report.closed_by_bot, "{}", report.summary());
    assert_eq!(report.close_code, Some(1000));
    // Nudge (3 s) + 1 s answer + 3 s + goodbye: well before the caller's 20 s.
    assert!(report.duration < Duration::from_secs(15), "{:?}", report.duration);
    let asks: Vec<&Value> = session.messages.iter().filter(|m| m["type"] == "response.create").collect();
    assert_eq!(asks.len(), 2, "a nudge, then a goodbye: {asks:?}");
    assert!(asks[0].to_string().contains("still there"));
    assert!(asks[1].to_string().contains("goodbye"));
    let events = timeline(&gw, &row).await;
    let actions: Vec<&str> =
        events.iter().filter(|e| e["kind"] == "silence").map(|e| e["detail"]["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["nudge", "end"]);
    assert_eq!(row["agent_note"], "agent ended the call (polite end)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gemini_3_greets_with_a_seeded_turn_and_live_text_and_nudges_as_live_text() {
    // §B8: clientContent cuts an answer in progress and starts none on 3.x; the nudge and the
    // goodbye go as realtimeInput.text, the greeting as a seeded turn plus live text " ".
    let (ai, gw) = rig(
        "gemini-live",
        "gem",
        FakeAiConfig {
            answers: 0,
            answer_pcm24: exotel_sim::tone(300.0, 1000, SampleRate::Hz24000),
            ..FakeAiConfig::default()
        },
        json!({ "model": "gemini-3.1-flash-live-preview", "greeting": "Namaste.", "silence_secs": 3 }),
    )
    .await;
    let mut cfg = call(&gw, "gem", SampleRate::Hz8000, "caller-order-status-8k.wav");
    cfg.audio = AudioSource::Silence { ms: 20_000 };
    let (report, session, row) = ai_call(&gw, &ai, cfg).await;
    assert!(report.first_audio_latency.is_some_and(|l| l < Duration::from_secs(3)), "the greeting was heard");
    assert!(report.closed_by_bot, "{}", report.summary());
    let seeded: Vec<&Value> = session.messages.iter().filter(|m| m.get("clientContent").is_some()).collect();
    assert_eq!(seeded.len(), 1, "only the greeting is a seeded turn: {:?}", session.messages);
    assert!(seeded[0].to_string().contains("Namaste."));
    let live: Vec<&str> = session.messages.iter().filter_map(|m| m["realtimeInput"]["text"].as_str()).collect();
    assert_eq!(live.len(), 3, "{live:?}");
    assert_eq!(live[0], " ");
    assert!(live[1].contains("still there") && live[2].contains("goodbye"), "{live:?}");
    assert_eq!(row["agent_note"], "agent ended the call (polite end)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_call_secs_ends_the_call_with_a_goodbye() {
    let (ai, gw) = rig(
        "openai-realtime",
        "asha",
        FakeAiConfig {
            answers: 0,
            answer_pcm24: exotel_sim::tone(300.0, 1000, SampleRate::Hz24000),
            ..FakeAiConfig::default()
        },
        json!({ "max_call_secs": 10 }),
    )
    .await;
    let cfg = tone_call(&gw, "asha", SampleRate::Hz8000, 20_000);
    let (report, session, row) = ai_call(&gw, &ai, cfg).await;
    assert!(report.closed_by_bot && report.close_code == Some(1000), "{}", report.summary());
    assert!(
        report.duration >= Duration::from_secs(10) && report.duration < Duration::from_secs(16),
        "{:?}",
        report.duration
    );
    assert!(session.messages.iter().any(|m| m["type"] == "response.create" && m.to_string().contains("time limit")));
    let events = timeline(&gw, &row).await;
    assert!(events.iter().any(|e| e["kind"] == "time-limit"), "{events:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gemini_goodbye_asked_mid_turn_waits_for_the_turn_and_is_heard() {
    // Gemini streams an answer about as fast as it plays. The time limit (10 s) falls inside the
    // first answer (about 7 s to 12 s, with seconds of slack either side): the goodbye is asked
    // once that turn completes, and the call ends after the goodbye's own audio, not at the end
    // of the turn that was running.
    let answer = exotel_sim::tone(300.0, 5000, SampleRate::Hz24000);
    let (ai, gw) = rig(
        "gemini-live",
        "gem",
        FakeAiConfig {
            answer_pcm24: answer,
            answer_after: Duration::from_millis(7000),
            paced: true,
            ..FakeAiConfig::default()
        },
        json!({ "max_call_secs": 10 }),
    )
    .await;
    let cfg = tone_call(&gw, "gem", SampleRate::Hz8000, 20_000);
    let (report, session, row) = ai_call(&gw, &ai, cfg).await;
    assert!(report.closed_by_bot && report.close_code == Some(1000), "{}", report.summary());
    let live: Vec<&str> = session.messages.iter().filter_map(|m| m["realtimeInput"]["text"].as_str()).collect();
    assert!(live.iter().any(|t| t.contains("time limit")), "{live:?}");
    assert_eq!(session.answers_started.len(), 2, "the answer, then the goodbye");
    let heard = pcm_ms(report.received_pcm.len(), SampleRate::Hz8000);
    assert!(heard >= 9500, "both answers reached the caller, the goodbye too: {heard} ms");
    assert_eq!(row["agent_note"], "agent ended the call (polite end)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_that_goes_away_on_every_connection_is_not_followed_for_ever() {
    // goAway half a second into every connection: one planned move, then the connection is left
    // to close and the one reconnect a lost connection gets applies; the next loss fails the
    // agent (its fallback takes the call) instead of a new connection every half second.
    let (ai, gw) = rig(
        "gemini-live",
        "gem",
        FakeAiConfig {
            go_away_after: Some(Duration::from_millis(500)),
            go_away_time_left: Duration::from_secs(1),
            answers: 0,
            ..FakeAiConfig::default()
        },
        json!({ "on_failure": "echo" }),
    )
    .await;
    let cfg = tone_call(&gw, "gem", SampleRate::Hz8000, 8000);
    let call_sid = cfg.call_sid.clone();
    let report = run_call(cfg).await.unwrap();
    assert_legal(&report);
    let connections = ai.sessions().len();
    assert!(connections <= 3, "{connections} connections in 8 s");
    let row = gw.call(&call_sid).await;
    assert_eq!(row["agent_fallback"], "agent:echo", "{row}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_result_of_a_replaced_connection_is_dropped_not_sent_to_the_new_one() {
    // A webhook tool is running when the connection is replaced (goAway with little time left):
    // its result names a call id the new session never issued (Gemini closes with 1007 for
    // that), so it is dropped and the call goes on.
    // The tool is called 1 s into the first connection and answers 5 s later; the connection is
    // replaced at 3 s: seconds of slack on each side.
    let (url, seen) = tool_server(Duration::from_secs(5), json!({ "status": "shipped" })).await;
    let tool = json!({ "name": "lookup_order", "description": "Order status", "url": url, "timeout_ms": 8000,
        "parameters": { "type": "object", "properties": { "order": { "type": "string" } } } });
    let (ai, gw) = rig(
        "gemini-live",
        "gem",
        FakeAiConfig {
            tool_call: Some(("lookup_order".into(), json!({ "order": "A-17" }))),
            go_away_after: Some(Duration::from_secs(3)),
            go_away_time_left: Duration::from_secs(2),
            ..FakeAiConfig::default()
        },
        json!({ "tools": [tool] }),
    )
    .await;
    let cfg = tone_call(&gw, "gem", SampleRate::Hz8000, 6000);
    let call_sid = cfg.call_sid.clone();
    let report = run_call(cfg).await.unwrap();
    assert_legal(&report);
    assert!(!seen.lock().unwrap().is_empty(), "the tool ran");
    let sessions = ai.wait_ended(2, Duration::from_secs(10)).await;
    assert!(sessions.len() >= 2, "{} connections", sessions.len());
    for s in ai.sessions() {
        for out in &s.tool_outputs {
            let id = out["id"].as_str().unwrap_or_default().to_string();
            assert!(
                s.tool_calls.contains(&id),
                "a result for a call this connection never made: {out} (it made {:?})",
                s.tool_calls
            );
        }
    }
    let row = gw.call(&call_sid).await;
    assert!(row["agent_failure"].is_null(), "{row}");
    let events = timeline(&gw, &row).await;
    assert!(events.iter().any(|e| e["kind"] == "tool-results-dropped"), "{events:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_openai_session_that_expires_ends_the_call_cleanly() {
    // session_expired is the provider's session cap (§A9): the call ends as completed, not as a
    // failure handed to on_failure, and no new session is dialed.
    let (ai, gw) = rig(
        "openai-realtime",
        "asha",
        FakeAiConfig {
            failure: Some(FakeAiFailure::SessionExpired(Duration::from_millis(1500))),
            ..FakeAiConfig::default()
        },
        json!({ "on_failure": "echo" }),
    )
    .await;
    let cfg = tone_call(&gw, "asha", SampleRate::Hz8000, 8000);
    let (report, _, row) = ai_call(&gw, &ai, cfg).await;
    assert!(report.closed_by_bot && report.close_code == Some(1000), "{}", report.summary());
    assert!(report.duration < Duration::from_secs(6), "{:?}", report.duration);
    assert!(row["agent_failure"].is_null(), "{row}");
    assert_eq!(row["stop_reason"], "bot-hangup");
    assert_eq!(row["agent_note"], "provider session reached its maximum length");
    assert_eq!(ai.sessions().len(), 1, "no new session");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gemini_go_away_resumes_the_session_on_a_new_connection() {
    let (ai, gw) = rig(
        "gemini-live",
        "gem",
        FakeAiConfig {
            go_away_after: Some(Duration::from_millis(2500)),
            answers: 2,
            answer_after: Duration::from_millis(1000),
            answer_pcm24: exotel_sim::tone(300.0, 500, SampleRate::Hz24000),
            ..FakeAiConfig::default()
        },
        json!({}),
    )
    .await;
    let cfg = tone_call(&gw, "gem", SampleRate::Hz8000, 6000);
    let call_sid = cfg.call_sid.clone();
    let report = run_call(cfg).await.unwrap();
    assert_legal(&report);
    // Each connection goes away 2.5 s after it starts; every later one resumes the session.
    let sessions = ai.wait_ended(2, Duration::from_secs(10)).await;
    assert!(sessions.len() >= 2, "{} connections", sessions.len());
    for later in &ai.sessions()[1..] {
        let handle = &later.setup.as_ref().unwrap()["setup"]["sessionResumption"]["handle"];
        assert!(
            handle.as_str().is_some_and(|h| h.starts_with("fake-handle-")),
            "resumed with the last handle: {handle}"
        );
    }
    assert!(!ai.sessions()[1].audio_in.is_empty(), "the caller's audio moved to the new connection");
    let row = gw.call(&call_sid).await;
    assert!(row["agent_failure"].is_null(), "{row}");
    let events = timeline(&gw, &row).await;
    assert!(events.iter().any(|e| e["kind"] == "provider-reconnected" && e["detail"]["resumed"] == true), "{events:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gemini_go_away_mid_answer_moves_after_the_turn_with_the_handle_that_covers_it() {
    // goAway (timeLeft 20 s) halfway through a 2 s answer: the rest of the answer is still
    // played, and the move waits for turnComplete and the handle sent after it.
    let (ai, gw) = rig(
        "gemini-live",
        "gem",
        FakeAiConfig {
            go_away_in_answer: true,
            go_away_time_left: Duration::from_secs(20),
            answer_pcm24: exotel_sim::tone(300.0, 2000, SampleRate::Hz24000),
            ..FakeAiConfig::default()
        },
        json!({}),
    )
    .await;
    // 1.5 s of caller audio: one answer (after 1 s), none on the new connection.
    let cfg = tone_call(&gw, "gem", SampleRate::Hz8000, 1500);
    let call_sid = cfg.call_sid.clone();
    let report = run_call(cfg).await.unwrap();
    assert_legal(&report);
    let heard = pcm_ms(report.received_pcm.len(), SampleRate::Hz8000);
    assert!(heard >= 1900, "{heard} ms of the 2 s answer reached the caller");
    let sessions = ai.wait_ended(2, Duration::from_secs(10)).await;
    assert_eq!(sessions.len(), 2, "one move");
    assert_eq!(ai.sessions()[1].answers_ms.len(), 0, "the answer came on the first connection only");
    let resumed = &ai.sessions()[1].setup.clone().unwrap()["setup"]["sessionResumption"]["handle"];
    assert_eq!(resumed, "fake-handle-2", "the handle sent after the answer's turnComplete");
    let row = gw.call(&call_sid).await;
    assert!(row["agent_failure"].is_null(), "{row}");
    let events = timeline(&gw, &row).await;
    assert!(events.iter().any(|e| e["kind"] == "provider-go-away" && e["detail"]["time_left_ms"] == 20_000));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_prompt_plays_before_the_hang_up() {
    let ai = fake(FakeAiConfig::default()).await;
    let gw = TestGateway::start().await;
    let prompt = testdata("tone-440hz-2s-24k.wav");
    let mut s = settings(&ai, "openai-realtime", json!({ "failure_prompt": prompt, "on_failure": "hangup" }));
    s["api_key"] = json!("sk-wrong");
    gw.create_agent("asha", "openai-realtime", s).await;
    let mut cfg = call(&gw, "asha", SampleRate::Hz8000, "caller-order-status-8k.wav");
    cfg.audio = AudioSource::Silence { ms: 8000 };
    let call_sid = cfg.call_sid.clone();
    let report = run_call(cfg).await.unwrap();
    assert_legal(&report);
    assert!(report.closed_by_bot && report.close_code == Some(1000), "{}", report.summary());
    let played = pcm_ms(report.played_pcm.len(), SampleRate::Hz8000);
    assert!((1900..=2300).contains(&played), "{played} ms of the 2 s prompt played");
    let expected = load_wav(&prompt, SampleRate::Hz8000).unwrap();
    assert!(correlation(&expected, &report.played_pcm, 64) > 0.95);
    let row = gw.call(&call_sid).await;
    assert_eq!(row["stop_reason"], "agent-failed");
    // A prompt that isn't a readable WAV is refused when the agent is saved.
    let bad = json!({ "id": "bad", "kind": "openai-realtime", "settings": { "api_key": "k", "failure_prompt": "/nonexistent.wav" } });
    let r = gw.http.post(gw.http_url("/api/agents")).json(&bad).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("failure_prompt"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keypress_reaches_the_model_as_text() {
    for kind in ["openai-realtime", "gemini-live"] {
        let (ai, gw) = rig(kind, "asha", FakeAiConfig { answers: 0, ..FakeAiConfig::default() }, json!({})).await;
        let mut cfg = call(&gw, "asha", SampleRate::Hz8000, "caller-order-status-8k.wav");
        cfg.audio = AudioSource::Silence { ms: 3000 };
        cfg.dtmf = vec![(Duration::from_millis(1000), "5".into())];
        let (_, session, _) = ai_call(&gw, &ai, cfg).await;
        let told = session.messages.iter().any(|m| m.to_string().contains("pressed the key 5"));
        assert!(told, "{kind}: {:?}", session.messages);
        if kind == "openai-realtime" {
            assert!(
                session.messages.iter().any(|m| m["type"] == "response.create"),
                "{kind}: the model was asked to answer"
            );
        }
    }
}
