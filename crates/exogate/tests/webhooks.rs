//! Exotel's HTTP applets (dynamic URL, Passthru) and the call-log API, over real HTTP.

mod common;

use std::time::Duration;

use common::{TestGateway, assert_echo};
use exotel::SampleRate;
use exotel_sim::{AudioSource, CallConfig, Target, run_call};
use serde_json::{Value, json};

const AGENTSTREAM_PASSTHRU: &str = "CallSid=CS1&flow_id=voicebot-flow-xyz123&Direction=inbound&From=%2B918888000000&To=%2B912233344455&Stream%5BStreamSID%5D=6f048d2e897a0d2d4029560f3f541947&Stream%5BStatus%5D=completed&Stream%5BDuration%5D=28&Stream%5BRecordingUrl%5D=https%3A%2F%2Frecordings.exotel.com%2Fx.mp3&Stream%5BStreamUrl%5D=wss%3A%2F%2FKEY%3ASECRET%40stream.customer.com%2Fmedia&Stream%5BDisconnectedBy%5D=bot";

async fn body(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn passthru_flat_bracket_form_is_stored() {
    let gw = TestGateway::start().await;
    let r = gw.http.get(gw.http_url(&format!("/api/exotel/passthru?{AGENTSTREAM_PASSTHRU}"))).send().await.unwrap();
    assert_eq!(body(r).await, (200, json!({"ok": true})));
    let row = gw.call("CS1").await;
    assert_eq!(row["from_number"], "+918888000000");
    assert_eq!(row["to_number"], "+912233344455");
    assert_eq!(row["direction"], "inbound");
    assert_eq!(row["flow_id"], "voicebot-flow-xyz123");
    assert_eq!(row["stream_sid"], "6f048d2e897a0d2d4029560f3f541947");
    assert_eq!(row["stream_status"], "completed");
    assert_eq!(row["stream_duration"], "28");
    assert_eq!(row["stream_disconnected_by"], "bot");
    assert_eq!(row["stream_recording_url"], "https://recordings.exotel.com/x.mp3");
    assert_eq!(row["stream_url"], "wss://***@stream.customer.com/media", "credentials must not be stored");
    assert_eq!(row["passthru_count"], 1);
    assert!(!row.to_string().contains("SECRET"));
}

#[tokio::test]
async fn passthru_json_stream_string_post_form_and_post_json() {
    let gw = TestGateway::start().await;
    let stream = r#"{"StreamSID":"62abc","RecordingUrl":"https://recordings.exotel.com/y","Status":"failed","Duration":"3","StreamUrl":"ws://10.32.76.120:5007/media","DisconnectedBy":"user","Error":"3009 failed to establish ws conn","DetailedStatus":"Streaming_call_throttled"}"#;
    let q = serde_urlencoded::to_string([
        ("CallSid", "CS2"),
        ("CallFrom", "09876543210"),
        ("Stream", stream),
        ("digits", "\"42\""),
    ])
    .unwrap();
    let r = gw.http.get(gw.http_url(&format!("/passthru?{q}"))).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let row = gw.call("CS2").await;
    assert_eq!(row["stream_sid"], "62abc");
    assert_eq!(row["stream_status"], "failed");
    assert_eq!(row["stream_error"], "3009 failed to establish ws conn");
    assert_eq!(row["stream_detailed_status"], "Streaming_call_throttled");
    assert_eq!(row["stream_disconnected_by"], "user");
    assert_eq!(row["from_number"], "09876543210");
    assert_eq!(row["digits"], "42");

    let r = gw
        .http
        .post(gw.http_url("/api/exotel/passthru"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("CallSid=CS3&CallType=completed&CustomField=log-9&Stream%5BStatus%5D=completed")
        .send()
        .await
        .unwrap();
    assert_eq!(body(r).await, (200, json!({"ok": true})));
    let row = gw.call("CS3").await;
    assert_eq!((row["call_type"].as_str(), row["custom_field"].as_str()), (Some("completed"), Some("log-9")));

    let r = gw
        .http
        .post(gw.http_url("/api/exotel/passthru"))
        .json(&json!({"CallSid": "CS3", "Stream": {"Duration": "31", "DisconnectedBy": "bot"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let row = gw.call("CS3").await;
    assert_eq!(row["stream_duration"], "31");
    assert_eq!(row["stream_status"], "completed", "earlier fields survive a merge");
    assert_eq!(row["passthru_count"], 2);
    let kinds: Vec<&str> = row["events"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["passthru", "passthru"]);

    // Multipart, JSON sent as text/plain, and a body of a type nobody documented (the query is
    // used): each accepted, as Exotel's format for these requests is not pinned down.
    let form = reqwest::multipart::Form::new()
        .text("CallSid", "CS4")
        .text("CallFrom", "09800000004")
        .text("Stream[StreamSID]", "s-4")
        .text("Stream[Status]", "completed");
    let r = gw.http.post(gw.http_url("/api/exotel/passthru")).multipart(form).send().await.unwrap();
    assert_eq!(body(r).await, (200, json!({"ok": true})));
    let row = gw.call("CS4").await;
    assert_eq!((row["from_number"].as_str(), row["stream_sid"].as_str()), (Some("09800000004"), Some("s-4")));
    assert_eq!(row["stream_status"], "completed");
    let r = gw
        .http
        .post(gw.http_url("/api/exotel/passthru"))
        .header("content-type", "text/plain")
        .body(r#"{"CallSid": "CS5", "CallFrom": "09800000005"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(gw.call("CS5").await["from_number"], "09800000005");
    let r = gw
        .http
        .post(gw.http_url("/api/exotel/passthru?CallSid=CS6&CallFrom=09800000006"))
        .header("content-type", "application/octet-stream")
        .body(vec![0u8, 159, 146, 150])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(gw.call("CS6").await["from_number"], "09800000006");
}

#[tokio::test]
async fn passthru_health_and_bad_requests() {
    let gw = TestGateway::start().await;
    let (status, info) = gw.get_json("/api/exotel/passthru").await;
    assert_eq!(status, 200);
    assert_eq!(info["ok"], true);
    assert_eq!(info["endpoint"], "passthru");
    let r = gw.http.post(gw.http_url("/passthru")).json(&json!({"From": "x"})).send().await.unwrap();
    let (status, v) = body(r).await;
    assert_eq!(status, 400);
    assert!(v["error"].as_str().unwrap().contains("CallSid"), "{v}");
    let r = gw
        .http
        .post(gw.http_url("/passthru"))
        .header("content-type", "application/json")
        .body("{nope")
        .send()
        .await
        .unwrap();
    let (status, v) = body(r).await;
    assert_eq!(status, 400);
    assert!(v["error"].as_str().unwrap().contains("JSON"), "{v}");
    gw.gw.state.store.flush().await;
    let (_, list) = gw.get_json("/api/calls").await;
    assert_eq!(list["total"], 0, "nothing stored from bad requests");
}

#[tokio::test]
async fn dynamic_url_by_get_post_json_and_post_form() {
    let gw = TestGateway::start().await;
    let ws_port = gw.gw.ws_addr.port();
    let want = format!("ws://127.0.0.1:{ws_port}/media?agentId=echo&locale=en-IN");

    let r = gw
        .http
        .get(gw.http_url(
            "/voicebot?agentId=echo&locale=en-IN&CallSid=D1&CallFrom=09800000001&CallTo=08000000002&Direction=incoming",
        ))
        .send()
        .await
        .unwrap();
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
    assert_eq!(body(r).await, (200, json!({ "url": want })));

    let r = gw
        .http
        .post(gw.http_url("/api/v1/exotel/voice/connect"))
        .json(&json!({"CallSid": "D2", "CallFrom": "+919876543210", "CallTo": "+919999999999", "Direction": "outbound-api", "CustomField": "test-call-123", "agentId": "echo", "locale": "en-IN"}))
        .send()
        .await
        .unwrap();
    assert_eq!(body(r).await, (200, json!({ "url": want })));

    let r = gw
        .http
        .post(gw.http_url("/voicebot/connect?sample-rate=16000"))
        .form(&[("CallSid", "D3"), ("From", "+919876543210"), ("sessionId", "s-1")])
        .send()
        .await
        .unwrap();
    let (status, v) = body(r).await;
    assert_eq!(status, 200);
    assert_eq!(v["url"], format!("ws://127.0.0.1:{ws_port}/media?sessionId=s-1&sample-rate=16000"));

    let row = gw.call("D2").await;
    assert_eq!(row["direction"], "outbound-api");
    assert_eq!(row["custom_field"], "test-call-123");
    assert_eq!(row["from_number"], "+919876543210");
    assert_eq!(row["to_number"], "+919999999999");
    assert_eq!(row["custom_params"], json!({"agentId": "echo", "locale": "en-IN"}));
    assert_eq!(row["status"], "connecting");
    let row = gw.call("D1").await;
    assert_eq!(row["from_number"], "09800000001");
    assert_eq!(row["direction"], "incoming");
}

#[tokio::test]
async fn dynamic_url_limits_and_public_url() {
    let gw = TestGateway::start_with(|c| c.public_ws_url = Some("wss://bot.example.com".into())).await;
    // Too many, too long or a bad rate is answered with what fits (a refusal would make Exotel
    // skip the bot), agentId first; the call's timeline names what was left out.
    let (status, v) = gw.get_json("/voicebot?d=4&c=3&b=2&agentId=echo&a=1&CallSid=X").await;
    assert_eq!((status, v), (200, json!({"url": "wss://bot.example.com/media?a=1&agentId=echo&b=2"})));
    let long = "x".repeat(300);
    let (status, v) = gw.get_json(&format!("/voicebot?a={long}&b=2&CallSid=Y")).await;
    assert_eq!((status, v), (200, json!({"url": "wss://bot.example.com/media?b=2"})));
    let (status, v) = gw.get_json("/voicebot?sample-rate=44100&CallSid=Z").await;
    assert_eq!((status, v), (200, json!({"url": "wss://bot.example.com/media"})));
    let (status, v) = gw.get_json("/voicebot?agentId=echo").await;
    assert_eq!((status, v), (200, json!({"url": "wss://bot.example.com/media?agentId=echo"})));
    gw.gw.state.store.flush().await;
    let left_out = |sid: &'static str| {
        let gw = &gw;
        async move {
            let row = gw.call(sid).await;
            let events = row["events"].as_array().cloned().unwrap_or_default();
            let ev = events.into_iter().find(|e| e["kind"] == "voicebot-url").expect("a voicebot-url event");
            ev["detail"]["left_out"].clone()
        }
    };
    assert_eq!(left_out("X").await, json!(["c", "d"]));
    assert_eq!(left_out("Y").await, json!(["a"]));
    assert_eq!(left_out("Z").await, json!(["sample-rate (must be 8000, 16000 or 24000)"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_call_one_row_from_dynamic_url_to_passthru() {
    let gw = TestGateway::start().await;
    let cfg = CallConfig {
        target: Target::Dynamic(gw.http_url("/voicebot?agentId=echo&locale=hi-IN&sample-rate=16000")),
        sample_rate: SampleRate::Hz16000,
        audio: AudioSource::Tone { hz: 500.0, ms: 1500 },
        idle_tail: Duration::from_millis(800),
        ..CallConfig::default()
    };
    let (call_sid, stream_sid) = (cfg.call_sid.clone(), cfg.stream_sid.clone());
    let report = run_call(cfg).await.expect("call runs");
    assert!(report.ok(), "{:?}", report.violations);
    assert_echo(&report.sent_pcm, &report.received_pcm);

    let q = serde_urlencoded::to_string([
        ("CallSid", call_sid.as_str()),
        ("Stream[StreamSID]", stream_sid.as_str()),
        ("Stream[Status]", "completed"),
        ("Stream[DisconnectedBy]", "user"),
        ("Stream[Duration]", "2"),
    ])
    .unwrap();
    let r = gw.http.get(gw.http_url(&format!("/api/exotel/passthru?{q}"))).send().await.unwrap();
    assert_eq!(r.status(), 200);

    gw.gw.state.store.flush().await;
    let (_, list) = gw.get_json("/api/calls").await;
    assert_eq!(list["total"], 1, "{list}");
    let row = gw.call(&stream_sid).await;
    assert_eq!(row["call_sid"], call_sid.as_str());
    assert_eq!(row["direction"], "incoming");
    assert_eq!(row["sample_rate"], 16000);
    assert_eq!(row["custom_params"]["locale"], "hi-IN");
    assert_eq!(row["stream_disconnected_by"], "user");
    assert_eq!(row["status"], "completed", "a late passthru never moves status back");
    assert_eq!(row["bytes_in"], report.sent_pcm.len() as u64);
    let kinds: Vec<&str> = row["events"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds.first(), Some(&"voicebot-url"));
    assert_eq!(kinds.last(), Some(&"passthru"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_reaches_a_passthru_that_names_the_call_by_another_sid_through_its_stream() {
    // That the Passthru's CallSid is the start event's call_sid is not documented (PROTOCOL.md
    // §13.6); Stream[StreamSID] is. Pressing 0 makes the echo agent ask for a transfer.
    let gw = TestGateway::start().await;
    let cfg = CallConfig {
        target: Target::Ws(gw.ws_url()),
        audio: AudioSource::Tone { hz: 440.0, ms: 2000 },
        dtmf: vec![(Duration::from_millis(400), "0".into())],
        idle_tail: Duration::from_millis(800),
        ..CallConfig::default()
    };
    let (call_sid, stream_sid) = (cfg.call_sid.clone(), cfg.stream_sid.clone());
    let report = run_call(cfg).await.expect("call runs");
    assert!(report.closed_by_bot, "the agent hung up to transfer");
    let exotel = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let q =
        serde_urlencoded::to_string([("CallSid", "a-parent-sid"), ("Stream[StreamSID]", stream_sid.as_str())]).unwrap();
    let r = exotel.get(gw.http_url(&format!("/api/exotel/passthru?{q}"))).send().await.unwrap();
    assert_eq!(r.status(), 302);
    // Taken once: a second Passthru for another call gets the default branch.
    let q = serde_urlencoded::to_string([("CallSid", "another-sid"), ("Stream[StreamSID]", "another-stream")]).unwrap();
    let r = exotel.get(gw.http_url(&format!("/api/exotel/passthru?{q}"))).send().await.unwrap();
    assert_eq!(r.status(), 200);
    // Later, the call log answers (as on another gateway), for the stream that decided only: a
    // second Voicebot applet's stream on the same call does not inherit the first bot's transfer.
    gw.gw.state.store.flush().await;
    let passthru = |stream: &str| {
        let q = serde_urlencoded::to_string([("CallSid", call_sid.as_str()), ("Stream[StreamSID]", stream)]).unwrap();
        exotel.get(gw.http_url(&format!("/api/exotel/passthru?{q}"))).send()
    };
    assert_eq!(passthru("a-second-applets-stream").await.unwrap().status(), 200);
    assert_eq!(passthru(&stream_sid).await.unwrap().status(), 302);
}

#[tokio::test]
async fn call_log_api_pages_filters_and_finds_by_any_id() {
    let gw = TestGateway::start().await;
    for i in 0..5 {
        let r =
            gw.http.get(gw.http_url(&format!("/passthru?CallSid=L{i}&Stream[StreamSID]=S{i}"))).send().await.unwrap();
        assert_eq!(r.status(), 200);
        gw.gw.state.store.flush().await;
    }
    let (_, page) = gw.get_json("/api/calls?limit=2").await;
    let sids: Vec<&str> = page["calls"].as_array().unwrap().iter().map(|c| c["call_sid"].as_str().unwrap()).collect();
    assert_eq!(sids, ["L4", "L3"], "newest first");
    assert_eq!(page["total"], 5);
    let (_, page) = gw.get_json("/api/calls?limit=2&page=3").await;
    assert_eq!(page["calls"][0]["call_sid"], "L0");
    let (_, none) = gw.get_json("/api/calls?status=completed").await;
    assert_eq!(none["total"], 0);
    let id = gw.call("L2").await["id"].as_str().unwrap().to_string();
    assert_eq!(gw.call(&id).await["call_sid"], "L2");
    assert_eq!(gw.call("S2").await["call_sid"], "L2");
    let (status, _) = gw.get_json("/api/calls/nope").await;
    assert_eq!(status, 404);
    let (status, v) = gw.get_json("/api/calls?limit=0").await;
    assert_eq!(status, 400);
    assert!(v["error"].as_str().unwrap().contains("limit"));
    let (status, _) = gw.get_json("/api/calls?bogus=1").await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn health_on_both_ports() {
    let gw = TestGateway::start().await;
    let (status, h) = gw.get_json("/health").await;
    assert_eq!(status, 200);
    assert_eq!(h["database"], true);
    assert_eq!(h["active_calls"], 0);
    assert_eq!(h["version"], env!("CARGO_PKG_VERSION"));
    let r = gw.http.get(format!("http://{}/health", gw.gw.ws_addr)).send().await.unwrap();
    assert_eq!(r.status(), 200);
}
