//! End-to-end media tests: the real gateway, driven by the simulator over real sockets.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{TestGateway, assert_echo, speech};
use exogate::agent::{Agent, CallControl, CallInfo, Registry};
use exotel::SampleRate;
use exotel_sim::{AudioSource, CallConfig, Target, run_call};

fn call_to(gw: &TestGateway, rate: SampleRate, audio: AudioSource) -> CallConfig {
    CallConfig {
        target: Target::Ws(gw.ws_url()),
        sample_rate: rate,
        audio,
        idle_tail: Duration::from_millis(800),
        ..CallConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_returns_the_callers_audio_at_every_rate() {
    let gw = TestGateway::start().await;
    let calls = SampleRate::ALL.map(|rate| {
        let cfg = call_to(&gw, rate, AudioSource::Pcm(speech(rate)));
        (cfg.call_sid.clone(), tokio::spawn(run_call(cfg)))
    });
    for (rate, (call_sid, call)) in SampleRate::ALL.into_iter().zip(calls) {
        let report = call.await.unwrap().expect("call runs");
        assert!(report.ok(), "{rate}: violations: {:?}", report.violations);
        assert_eq!(report.sent_pcm, speech(rate));
        assert_echo(&report.sent_pcm, &report.received_pcm);
        let chunk = exotel::FrameSpec::for_rate(rate).bytes();
        assert!(report.chunk_sizes.iter().all(|&c| c == chunk), "{rate}: chunk sizes {:?}", report.chunk_sizes);
        assert!(!report.marks_echoed.is_empty(), "{rate}: the utterance was not marked");
        assert_eq!(report.marks_echoed, report.marks_received);

        let row = gw.call(&call_sid).await;
        assert_eq!(row["status"], "completed");
        assert_eq!(row["sample_rate"], rate.hz());
        assert_eq!(row["agent"], "echo");
        assert_eq!(row["frames_in"], report.frames_sent);
        assert_eq!(row["bytes_in"], report.sent_pcm.len() as u64);
        assert_eq!(row["bytes_out"], report.received_pcm.len() as u64);
        assert_eq!(row["frames_out"], report.media_received);
        assert_eq!(row["stop_reason"], "callended");
        assert_eq!(row["close_code"], 1000);
        assert_eq!(row["bad_messages"], 0);
        assert_eq!(row["marks_played"], report.marks_echoed.len() as u64);
        assert_eq!(row["from_number"], "+919876543210");
        let kinds: Vec<&str> = row["events"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
        assert_eq!(kinds.first(), Some(&"connected"), "{kinds:?}");
        assert!(kinds.contains(&"start") && kinds.contains(&"mark-played") && kinds.contains(&"stop"), "{kinds:?}");
        assert_eq!(kinds.last(), Some(&"end"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hash_clears_playback_and_star_hangs_up_after_queued_audio() {
    let gw = TestGateway::start().await;
    let mut clear = call_to(&gw, SampleRate::Hz8000, AudioSource::Pcm(speech(SampleRate::Hz8000)));
    clear.dtmf = vec![(Duration::from_millis(1500), "#".into())];
    let mut hang = call_to(&gw, SampleRate::Hz16000, AudioSource::Pcm(speech(SampleRate::Hz16000)));
    hang.dtmf = vec![(Duration::from_millis(1000), "*".into())];
    let (clear_sid, hang_sid) = (clear.call_sid.clone(), hang.call_sid.clone());
    let (clear, hang) = tokio::join!(run_call(clear), run_call(hang));

    let clear = clear.expect("clear call runs");
    assert!(clear.ok(), "{:?}", clear.violations);
    assert_eq!(clear.clears_received, 1);
    // The echo agent's held-back partial chunk was dropped: the echo no longer matches the input.
    let n = clear.sent_pcm.len().min(clear.received_pcm.len());
    assert_ne!(clear.received_pcm[..n], clear.sent_pcm[..n], "clear dropped nothing");
    let row = gw.call(&clear_sid).await;
    assert_eq!(row["dtmf"], "#");
    assert_eq!(row["clears"], 1);

    let hang = hang.expect("hang-up call runs");
    assert!(hang.ok(), "{:?}", hang.violations);
    assert!(hang.closed_by_bot, "the bot did not close");
    assert_eq!(hang.close_code, Some(1000));
    assert!(!hang.stop_sent);
    let last_mark = hang.marks_echoed.last().expect("hang-up mark echoed");
    assert!(last_mark.starts_with("hangup-"), "{last_mark}");
    // Everything queued before `*` played in full: nothing was cut.
    assert_eq!(hang.played_pcm, hang.received_pcm);
    assert!(hang.received_pcm.len() >= 16_000 * 2 * 8 / 10, "too little echoed before hang-up");
    common::assert_echo_prefix(&hang.sent_pcm, &hang.received_pcm);
    let row = gw.call(&hang_sid).await;
    assert_eq!(row["stop_reason"], "bot-hangup");
    assert_eq!(row["close_code"], 1000);
    assert_eq!(row["dtmf"], "*");
    assert_eq!(row["status"], "completed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_calls_echo_exactly() {
    let gw = TestGateway::start().await;
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let mut cfg = call_to(&gw, SampleRate::Hz8000, AudioSource::Tone { hz: 300.0 + i as f32 * 10.0, ms: 2000 });
            cfg.custom_parameters = BTreeMap::from([("n".to_string(), i.to_string())]);
            (cfg.call_sid.clone(), tokio::spawn(run_call(cfg)))
        })
        .collect();
    let mut sids = Vec::new();
    for (sid, t) in tasks {
        let r = t.await.unwrap().expect("call runs");
        assert!(r.ok(), "{:?}", r.violations);
        assert_echo(&r.sent_pcm, &r.received_pcm);
        sids.push(sid);
    }
    gw.gw.state.store.flush().await;
    let (_, list) = gw.get_json("/api/calls?status=completed&limit=100").await;
    assert_eq!(list["total"], 50);
    for sid in sids {
        let row = gw.call(&sid).await;
        assert_eq!(row["status"], "completed");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_call_is_already_in_the_log() {
    let gw = TestGateway::start().await;
    let cfg = call_to(&gw, SampleRate::Hz8000, AudioSource::Tone { hz: 440.0, ms: 2500 });
    let sid = cfg.call_sid.clone();
    let call = tokio::spawn(run_call(cfg));
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let row = gw.call(&sid).await;
    assert_eq!(row["status"], "in-progress", "{row}");
    assert!(row["ended_at"].is_null());
    let (_, health) = gw.get_json("/health").await;
    assert_eq!(health["active_calls"], 1);
    assert_eq!(health["database"], true);
    call.await.unwrap().unwrap();
    assert_eq!(gw.call(&sid).await["status"], "completed");
}

/// Speaks 5 s at once (faster than real time, like a TTS burst), marks it, and stops on `#`.
struct Speaker;

impl Agent for Speaker {
    fn on_start(&mut self, call: &CallInfo, ctl: &CallControl) {
        ctl.play(&exotel_sim::tone(440.0, 5000, call.sample_rate)).unwrap();
        ctl.mark("greeting");
    }
    fn on_audio(&mut self, _pcm: &[u8], _ctl: &CallControl) {}
    fn on_dtmf(&mut self, digit: &str, _duration_ms: Option<u64>, ctl: &CallControl) {
        if digit == "#" {
            ctl.clear();
        }
    }
    fn on_mark_played(&mut self, name: &str, _ctl: &CallControl) {
        panic!("the cleared greeting's mark {name} must not be reported as played");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bot_audio_is_paced_with_a_bounded_lead_and_clear_cancels_its_mark() {
    let mut agents = Registry::builtin();
    agents.register("speaker", |_: &CallInfo| Box::new(Speaker) as Box<dyn Agent>);
    let gw = TestGateway::start_full(|_| {}, agents).await;
    let mut cfg = call_to(&gw, SampleRate::Hz8000, AudioSource::Silence { ms: 2500 });
    cfg.custom_parameters = BTreeMap::from([("agentId".to_string(), "speaker".to_string())]);
    cfg.dtmf = vec![(Duration::from_millis(1500), "#".into())];
    let sid = cfg.call_sid.clone();
    let r = run_call(cfg).await.expect("call runs");
    assert!(r.ok(), "{:?}", r.violations);
    assert_eq!(r.clears_received, 1);
    let bytes_per_sec = 16_000;
    // Sent by the clear: 1.5 s of real time, plus the 300 ms lead, plus one 200 ms chunk (+ slack).
    assert!(r.received_pcm.len() >= bytes_per_sec * 3 / 2, "too little audio: {}", r.received_pcm.len());
    assert!(r.received_pcm.len() <= bytes_per_sec * 22 / 10, "burst: {} bytes before clear", r.received_pcm.len());
    assert!(r.played_pcm.len() < r.received_pcm.len(), "clear dropped nothing at Exotel's side");
    assert_eq!(
        r.marks_received,
        Vec::<String>::new(),
        "the greeting's mark was still queued behind audio when cleared"
    );
    let row = gw.call(&sid).await;
    assert_eq!(row["agent"], "speaker");
    assert_eq!(row["clears"], 1);
    assert_eq!(row["marks_played"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_on_the_http_port_with_url_rate_and_unknown_agent_falls_back() {
    let gw = TestGateway::start().await;
    let mut cfg = call_to(&gw, SampleRate::Hz24000, AudioSource::Pcm(speech(SampleRate::Hz24000)));
    // The URL's sample-rate wins over start.media_format, and URL params join the custom parameters.
    cfg.target = Target::Ws(format!("ws://{}/media?sample-rate=24000&locale=ta-IN", gw.gw.http_addr));
    cfg.custom_parameters = BTreeMap::from([("agentId".to_string(), "no-such-agent".to_string())]);
    let sid = cfg.call_sid.clone();
    let r = run_call(cfg).await.expect("call runs");
    assert!(r.ok(), "{:?}", r.violations);
    assert_echo(&r.sent_pcm, &r.received_pcm);
    assert!(r.chunk_sizes.iter().all(|&c| c == 4800), "{:?}", r.chunk_sizes);
    let row = gw.call(&sid).await;
    assert_eq!(row["agent"], "echo");
    assert_eq!(row["sample_rate"], 24000);
    assert_eq!(row["custom_params"]["locale"], "ta-IN");
    assert_eq!(row["custom_params"]["agentId"], "no-such-agent");
}

/// Answers like a bridge or AI agent: from its own task, some time after the call starts, then
/// hangs up from that task once Exotel has played the reply.
struct Remote;

impl Agent for Remote {
    fn on_start(&mut self, call: &CallInfo, ctl: &CallControl) {
        let (ctl, rate) = (ctl.clone(), call.sample_rate);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            ctl.play(&exotel_sim::tone(440.0, 1000, rate)).unwrap();
            ctl.mark("reply");
        });
    }
    fn on_audio(&mut self, _pcm: &[u8], _ctl: &CallControl) {}
    fn on_mark_played(&mut self, name: &str, ctl: &CallControl) {
        if !name.starts_with("reply-") {
            return;
        }
        let ctl = ctl.clone();
        tokio::spawn(async move { ctl.hang_up() });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_speaking_from_its_own_task_is_heard_marked_and_can_hang_up() {
    let mut agents = Registry::builtin();
    agents.register("remote", |_: &CallInfo| Box::new(Remote) as Box<dyn Agent>);
    let gw = TestGateway::start_full(|_| {}, agents).await;
    // The caller is quiet before the agent speaks, so only the agent's own wake-up can send it.
    let mut cfg = call_to(&gw, SampleRate::Hz8000, AudioSource::Silence { ms: 200 });
    cfg.idle_tail = Duration::from_secs(5);
    cfg.custom_parameters = BTreeMap::from([("agentId".to_string(), "remote".to_string())]);
    let sid = cfg.call_sid.clone();
    let r = run_call(cfg).await.expect("call runs");
    assert!(r.ok(), "{:?}", r.violations);
    assert_eq!(r.received_pcm, exotel_sim::tone(440.0, 1000, SampleRate::Hz8000));
    assert_eq!(r.marks_received, ["reply-1", "hangup-2"]);
    assert!(r.closed_by_bot, "the hang-up from the agent's task closed the socket");
    assert_eq!(r.close_code, Some(1000));
    assert!(r.duration < Duration::from_secs(4), "hung up before the caller's stop: {:?}", r.duration);
    let row = gw.call(&sid).await;
    assert_eq!(row["marks_played"], 2);
    assert_eq!(row["stop_reason"], "bot-hangup");
    assert_eq!(row["bot_decision"], "hangup");
}
