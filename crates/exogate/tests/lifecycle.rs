//! The agent API's guarantees, end to end: a panicking agent ends only its call, failures take the
//! agent's fallback, agents made slowly still get everything the caller said, and an agent written
//! as one async task gets every event and exactly one end.

mod common;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{TestGateway, assert_echo, speech};
use exogate::agent::{
    Agent, AgentError, AgentFactory, AgentFuture, AgentSetup, CallControl, CallEvent, CallInfo, EndReason, Registry,
    task,
};
use exotel::SampleRate;
use exotel_sim::{AudioSource, CallConfig, Target, run_call};
use serde_json::json;

fn call(gw: &TestGateway, agent: &str, audio: AudioSource) -> CallConfig {
    let mut cfg = CallConfig {
        target: Target::Ws(gw.ws_url()),
        sample_rate: SampleRate::Hz8000,
        audio,
        idle_tail: Duration::from_millis(1000),
        ..CallConfig::default()
    };
    cfg.custom_parameters.insert("agentId".into(), agent.into());
    cfg
}

/// Echoes, then panics on the 5th caller frame.
struct Panicky(u32);

impl Agent for Panicky {
    fn on_audio(&mut self, pcm: &[u8], ctl: &CallControl) {
        self.0 += 1;
        assert!(self.0 < 5, "agent bug");
        ctl.play(pcm).unwrap();
    }
}

/// Made after a delay, like a bridge connecting to a slow bot; then echoes.
struct Slow;

impl AgentFactory for Slow {
    fn create(&self, _setup: AgentSetup) -> AgentFuture {
        Box::pin(async {
            tokio::time::sleep(Duration::from_millis(600)).await;
            Ok(Box::new(Echo) as Box<dyn Agent>)
        })
    }
}

struct Echo;

impl Agent for Echo {
    fn on_audio(&mut self, pcm: &[u8], ctl: &CallControl) {
        ctl.play(pcm).unwrap();
    }
}

struct Refuses;

impl AgentFactory for Refuses {
    fn create(&self, _setup: AgentSetup) -> AgentFuture {
        Box::pin(async {
            // Refused only after the caller has started talking.
            tokio::time::sleep(Duration::from_millis(400)).await;
            Err(AgentError("model quota exceeded".into()))
        })
    }
}

/// An agent written as one task: greets, waits for the greeting's mark, records what it saw.
struct Greeter(Arc<Mutex<Vec<String>>>);

impl AgentFactory for Greeter {
    fn create(&self, setup: AgentSetup) -> AgentFuture {
        let seen = self.0.clone();
        Box::pin(async move {
            Ok(task::spawn(&setup.ctl, move |mut events, ctl| async move {
                while let Some(event) = events.next().await {
                    let note = match &event {
                        CallEvent::Start(info) => {
                            ctl.play(&exotel_sim::tone(440.0, 1000, info.sample_rate)).unwrap();
                            let queued = ctl.queued();
                            ctl.mark("greeting");
                            format!("start queued={}", queued >= Duration::from_millis(900))
                        }
                        CallEvent::MarkPlayed(name) => format!("played {name} {}ms", ctl.played().as_millis()),
                        CallEvent::Audio(_) => continue,
                        CallEvent::End(end) => format!("end {:?}", end.reason),
                        other => format!("{other:?}"),
                    };
                    seen.lock().unwrap().push(note);
                }
                seen.lock().unwrap().push("events done".into());
            }))
        })
    }
}

/// A task agent with a bug: it panics on the first caller audio.
struct TaskPanics;

impl AgentFactory for TaskPanics {
    fn create(&self, setup: AgentSetup) -> AgentFuture {
        Box::pin(async move {
            Ok(task::spawn(&setup.ctl, |mut events, _ctl| async move {
                while let Some(e) = events.next().await {
                    assert!(!matches!(e, CallEvent::Audio(_)), "task bug");
                }
            }))
        })
    }
}

fn registry(seen: Arc<Mutex<Vec<String>>>) -> Registry {
    let mut r = Registry::builtin();
    r.register("panicky", |_: &CallInfo| Box::new(Panicky(0)) as Box<dyn Agent>);
    r.register("slow", Slow);
    r.register("refuses", Refuses);
    r.register("greeter", Greeter(seen));
    r.register("task-panics", TaskPanics);
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_agent_ends_only_its_call_and_the_fallback_takes_over() {
    let gw = TestGateway::start_full(|_| {}, registry(Arc::default())).await;
    // Without a fallback: the call is ended properly (hang-up), the row finished.
    let cfg = call(&gw, "panicky", AudioSource::Tone { hz: 440.0, ms: 3000 });
    let sid = cfg.call_sid.clone();
    let report = run_call(cfg).await.unwrap();
    assert!(report.ok(), "{:?}", report.violations);
    assert!(report.closed_by_bot && report.close_code == Some(1000), "{}", report.summary());
    let row = gw.call(&sid).await;
    assert_eq!(row["status"], "completed");
    assert_eq!(row["stop_reason"], "agent-failed");
    assert_eq!(row["agent_failure"], "panicky: agent panicked");
    assert_eq!(row["agent_fallback"], "hangup");
    // The gateway goes on serving. (Not run concurrently: capturing the panic's backtrace in a
    // debug build stalls a worker long enough to gap another call's echo.)
    let other = run_call(call(&gw, "echo", AudioSource::Pcm(speech(SampleRate::Hz8000)))).await.unwrap();
    assert!(other.ok());
    assert_echo(&other.sent_pcm, &other.received_pcm);

    // With `on_failure: echo`, echo serves the rest of the call.
    gw.create_agent("p2", "panicky", json!({"on_failure": "echo"})).await;
    let cfg = call(&gw, "p2", AudioSource::Tone { hz: 440.0, ms: 2000 });
    let sid = cfg.call_sid.clone();
    let report = run_call(cfg).await.unwrap();
    assert!(report.ok(), "{:?}", report.violations);
    assert!(!report.closed_by_bot, "the fallback kept the call up");
    assert!(report.received_pcm.len() >= report.sent_pcm.len() * 8 / 10, "{}", report.received_pcm.len());
    let row = gw.call(&sid).await;
    assert_eq!(row["agent_fallback"], "agent:echo");
    assert_eq!(row["stop_reason"], "callended");
    // A panic on an agent's own task is a failure too.
    let cfg = call(&gw, "task-panics", AudioSource::Tone { hz: 440.0, ms: 3000 });
    let sid = cfg.call_sid.clone();
    let report = run_call(cfg).await.unwrap();
    assert!(report.closed_by_bot && report.close_code == Some(1000), "{}", report.summary());
    assert_eq!(gw.call(&sid).await["agent_failure"], "task-panics: agent task panicked");
    assert_eq!(gw.gw.state.active_calls.load(Ordering::Relaxed), 0, "every call was counted out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_agent_still_hears_everything_and_a_refusal_is_recorded() {
    let gw = TestGateway::start_full(|_| {}, registry(Arc::default())).await;
    let audio = speech(SampleRate::Hz8000);
    let report = run_call(call(&gw, "slow", AudioSource::Pcm(audio.clone()))).await.unwrap();
    assert!(report.ok(), "{:?}", report.violations);
    // The first 600 ms arrived while the agent was being made; it was held, not lost.
    assert_echo(&report.sent_pcm, &report.received_pcm);

    gw.create_agent("r", "refuses", json!({"on_failure": "transfer", "transfer_to": "flow-42"})).await;
    let cfg = call(&gw, "r", AudioSource::Tone { hz: 440.0, ms: 2000 });
    let sid = cfg.call_sid.clone();
    let report = run_call(cfg).await.unwrap();
    assert!(report.closed_by_bot, "{}", report.summary());
    let row = gw.call(&sid).await;
    assert_eq!(row["agent_failure"], "r: model quota exceeded");
    assert_eq!(row["bot_decision"], "transfer");
    assert_eq!(row["transfer_to"], "flow-42");

    // A fallback agent hears what the caller said while the failed one was being made.
    gw.create_agent("r2", "refuses", json!({"on_failure": "echo"})).await;
    let report = run_call(call(&gw, "r2", AudioSource::Pcm(audio))).await.unwrap();
    assert!(report.ok(), "{:?}", report.violations);
    assert_echo(&report.sent_pcm, &report.received_pcm);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_agent_gets_its_events_position_and_exactly_one_end() {
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let gw = TestGateway::start_full(|_| {}, registry(seen.clone())).await;
    let mut cfg = call(&gw, "greeter", AudioSource::Tone { hz: 300.0, ms: 2500 });
    cfg.dtmf.push((Duration::from_millis(1800), "5".into()));
    let report = run_call(cfg).await.unwrap();
    assert!(report.ok(), "{:?}", report.violations);
    for _ in 0..50 {
        if seen.lock().unwrap().last().is_some_and(|l| l == "events done") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen[0], "start queued=true");
    assert!(seen[1].starts_with("played greeting-"), "{seen:?}");
    let played_ms: u64 = seen[1].rsplit(' ').next().unwrap().trim_end_matches("ms").parse().unwrap();
    // 1 s of tone, padded to the 200 ms chunk grid.
    assert!((1000..=1200).contains(&played_ms), "{seen:?}");
    // With the key's duration as Exotel sent it (the simulator: 100 ms).
    assert_eq!(seen[2], "Dtmf(\"5\", Some(100))");
    assert_eq!(seen[3], format!("end {:?}", EndReason::Stop(exotel::StopReason::CallEnded)));
    assert_eq!(seen[4], "events done");
    assert_eq!(seen.len(), 5, "{seen:?}");
}
