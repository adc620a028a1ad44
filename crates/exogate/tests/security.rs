//! Who may connect, and the limits on what a connection may take: Basic auth, per-call tokens,
//! address allow-lists behind proxies, the webhook secret, MAX_CALLS, idle and duration limits,
//! header deadlines and the connection rate. Over real sockets against a real gateway.

mod common;

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use common::{TestGateway, assert_echo, close_code, media_json, start_json};
use exogate::access::{BasicCredentials, IpList};
use exogate::config::Secret;
use exotel::SampleRate;
use exotel_sim::{AudioSource, CallConfig, Target, run_call};
use futures_util::SinkExt;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

fn call(target: Target) -> CallConfig {
    CallConfig {
        target,
        sample_rate: SampleRate::Hz8000,
        audio: AudioSource::Tone { hz: 440.0, ms: 600 },
        idle_tail: Duration::from_millis(500),
        ..CallConfig::default()
    }
}

/// The HTTP status a refused upgrade answered, or `None` when the socket opened.
async fn upgrade_status(url: &str, headers: &[(&str, &str)]) -> Option<u16> {
    let mut req = url.into_client_request().unwrap();
    for (k, v) in headers {
        let name = axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap();
        req.headers_mut().insert(name, v.parse().unwrap());
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok(_) => None,
        Err(WsError::Http(resp)) => Some(resp.status().as_u16()),
        Err(e) => panic!("upgrade failed without an HTTP answer: {e}"),
    }
}

async fn refused(gw: &TestGateway) -> Value {
    gw.get_json("/health").await.1["refused"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_sockets_need_the_basic_credentials() {
    let gw = TestGateway::start_with(|c| {
        c.access.media_basic = Some(BasicCredentials { user: "exotel".into(), password: "pa ss:w0rd".into() });
    })
    .await;
    let url = gw.ws_url();
    assert_eq!(upgrade_status(&url, &[]).await, Some(401));
    let wrong = format!("Basic {}", B64.encode("exotel:nope"));
    assert_eq!(upgrade_status(&url, &[("authorization", &wrong)]).await, Some(401));
    // Written into the URL as Exotel's applet takes it; sent as the Authorization header.
    let with_creds = url.replace("ws://", "ws://exotel:pa%20ss%3Aw0rd@");
    let report = run_call(call(Target::Ws(with_creds))).await.unwrap();
    assert!(report.ok(), "{}", report.summary());
    assert_echo(&report.sent_pcm, &report.received_pcm);
    assert_eq!(refused(&gw).await["bad_credentials"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_media_token_opens_only_its_own_call() {
    let gw = TestGateway::start_with(|c| c.access.media_require_token = true).await;
    // The whole path: the dynamic URL hands out a token for the call; the stream uses it.
    let report = run_call(call(Target::Dynamic(gw.http_url("/voicebot")))).await.unwrap();
    assert!(report.ok(), "{}", report.summary());
    assert_echo(&report.sent_pcm, &report.received_pcm);

    let (status, body) = gw.get_json("/voicebot?CallSid=CA-one&From=%2B919800000001").await;
    assert_eq!(status, 200, "{body}");
    let url = body["url"].as_str().unwrap().to_string();
    let token = url.split("t=").nth(1).expect("the URL carries a token").to_string();
    // Without it, or with it altered: refused before the upgrade.
    assert_eq!(upgrade_status(&gw.ws_url(), &[]).await, Some(401));
    let flipped = if token.ends_with('0') { '1' } else { '0' };
    let forged = format!("{}?t={}{flipped}", gw.ws_url(), &token[..token.len() - 1]);
    assert_eq!(upgrade_status(&forged, &[]).await, Some(401));
    let other = format!("{}?t=sCA-two{}", gw.ws_url(), &token[token.find('.').unwrap()..]);
    assert_eq!(upgrade_status(&other, &[]).await, Some(401), "a token's call can't be swapped");
    // The right URL, used by a stream of another call: closed with 1008.
    let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str()).await.unwrap();
    ws.send(Message::text(start_json("CA-two", "st-two"))).await.unwrap();
    assert_eq!(close_code(&mut ws).await, Some(1008));
    // And by its own call: served.
    let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str()).await.unwrap();
    ws.send(Message::text(start_json("CA-one", "st-one"))).await.unwrap();
    ws.send(Message::text(media_json(2, &[1u8; 3200]))).await.unwrap();
    ws.send(Message::text(r#"{"event":"stop","stop":{"reason":"callended"}}"#)).await.unwrap();
    assert_eq!(close_code(&mut ws).await, Some(1000));
    // A start of a documented form with no call_sid (PROTOCOL.md §4.2) names no other call.
    let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str()).await.unwrap();
    ws.send(Message::text(r#"{"event":"start","stream_sid":"st-bare","start":{"stream_sid":"st-bare"}}"#))
        .await
        .unwrap();
    ws.send(Message::text(media_json(2, &[1u8; 3200]))).await.unwrap();
    ws.send(Message::text(r#"{"event":"stop","stop":{"reason":"callended"}}"#)).await.unwrap();
    assert_eq!(close_code(&mut ws).await, Some(1000));
    gw.gw.state.store.flush().await;
    assert_eq!(gw.call("st-bare").await["frames_in"], 1);
    let one = gw.call("CA-one").await;
    assert_eq!(one["frames_in"], 1, "{one}");
    // The call log keeps the URL without its token.
    assert!(!one.to_string().contains(&token[token.len() - 20..]), "{one}");
    let r = refused(&gw).await;
    assert_eq!((r["bad_token"].as_u64(), r["token_for_another_call"].as_u64()), (Some(3), Some(1)), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_allowed_addresses_and_forwarded_for_only_from_trusted_proxies() {
    let allow = IpList::parse("ALLOW_IPS", "10.0.0.0/8").unwrap();
    let direct = TestGateway::start_with(|c| c.access.allow_ips = allow.clone()).await;
    // 127.0.0.1 is not allowed, and an X-Forwarded-For from an untrusted peer proves nothing.
    for headers in [&[][..], &[("x-forwarded-for", "10.1.2.3")][..]] {
        assert_eq!(upgrade_status(&direct.ws_url(), headers).await, Some(403));
        let mut req = direct.http.get(direct.http_url("/voicebot?CallSid=CA1"));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        assert_eq!(req.send().await.unwrap().status(), 403);
    }
    assert_eq!(refused(&direct).await["ip_not_allowed"], 4);

    let proxied = TestGateway::start_with(|c| {
        c.access.allow_ips = allow.clone();
        c.access.trusted_proxies = IpList::parse("TRUSTED_PROXIES", "127.0.0.1").unwrap();
    })
    .await;
    // Behind the trusted proxy: the hop it saw decides, whatever the client wrote before it.
    let via = |hops: &str| vec![("x-forwarded-for".to_string(), hops.to_string())];
    for (hops, allowed) in [("10.1.2.3", true), ("192.0.2.1", false), ("10.1.2.3, 192.0.2.1", false)] {
        let headers = via(hops);
        let pairs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let status = upgrade_status(&proxied.ws_url(), &pairs).await;
        assert_eq!(status, if allowed { None } else { Some(403) }, "{hops}");
        let r = proxied.http.get(proxied.http_url("/voicebot?CallSid=CA2")).header("x-forwarded-for", hops);
        assert_eq!(r.send().await.unwrap().status(), if allowed { 200 } else { 403 }, "{hops}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_that_keeps_sending_wrong_api_keys_is_stopped_however_it_sends_them() {
    const KEY: &str = "right-key-0123456789";
    let gw = TestGateway::start_with(|c| {
        c.api_key = Some(Secret(KEY.into()));
        c.access.trusted_proxies = IpList::parse("TRUSTED_PROXIES", "127.0.0.1").unwrap();
    })
    .await;
    let list = |key: &str, from: &str| {
        gw.http.get(gw.http_url("/api/calls")).bearer_auth(key).header("x-forwarded-for", from).send()
    };
    let sign_in = |key: &str, from: &str| {
        let body = serde_json::json!({ "key": key });
        gw.http.post(gw.http_url("/api/session")).header("x-forwarded-for", from).json(&body).send()
    };
    let guesser = "192.0.2.9";
    // The console's form and the API's header draw on one allowance.
    assert_eq!(sign_in("wrong", guesser).await.unwrap().status(), 401);
    for i in 1..exogate::access::MAX_KEY_GUESSES {
        assert_eq!(list(&format!("wrong-{i}"), guesser).await.unwrap().status(), 401, "guess {i}");
    }
    // Now even the right key is not looked at from there: a guesser learns nothing more.
    let refused_key = list(KEY, guesser).await.unwrap();
    assert_eq!(refused_key.status(), 429);
    let wait: u64 = refused_key.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((590..=600).contains(&wait), "the rest of the ten-minute window: {wait}");
    let body: Value = refused_key.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("too many wrong keys"), "{body}");
    assert_eq!(sign_in(KEY, guesser).await.unwrap().status(), 429);
    // Another address, and the right key, are served as ever.
    let other = list(KEY, "192.0.2.10").await.unwrap();
    assert_eq!(other.status(), 200);
    assert!(other.json::<Value>().await.unwrap()["calls"].is_array());
    assert_eq!(sign_in(KEY, "192.0.2.10").await.unwrap().status(), 200);
    assert_eq!(refused(&gw).await["too_many_wrong_keys"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exotel_webhooks_need_the_webhook_secret() {
    let gw = TestGateway::start_with(|c| c.access.webhook_secret = Some(Secret("hook-s3cret".into()))).await;
    for path in ["/voicebot?CallSid=CA1", "/api/exotel/passthru?CallSid=CA1", "/voicebot?CallSid=CA1&secret=wrong"] {
        let r = gw.http.get(gw.http_url(path)).send().await.unwrap();
        assert_eq!(r.status(), 401, "{path}");
    }
    let (status, body) = gw.get_json("/voicebot?CallSid=CA1&secret=hook-s3cret&greeting=hi").await;
    assert_eq!(status, 200, "{body}");
    let url = body["url"].as_str().unwrap();
    assert!(url.contains("greeting=hi") && !url.contains("secret"), "the secret is no call parameter: {url}");
    let r = gw.http.get(gw.http_url("/api/exotel/passthru?CallSid=CA1")).basic_auth("exotel", Some("hook-s3cret"));
    assert_eq!(r.send().await.unwrap().status(), 200);
    // In the path, for URL fields that keep no query.
    let (status, body) = gw.get_json("/s/hook-s3cret/voicebot?CallSid=CA1&greeting=hi").await;
    assert_eq!(status, 200, "{body}");
    assert!(!body["url"].as_str().unwrap().contains("s3cret"), "{body}");
    for path in ["/s/hook-s3cret/passthru?CallSid=CA1", "/s/hook-s3cret/api/exotel/passthru?CallSid=CA1"] {
        assert_eq!(gw.http.get(gw.http_url(path)).send().await.unwrap().status(), 200, "{path}");
    }
    let r = gw.http.get(gw.http_url("/s/wrong/passthru?CallSid=CA1")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    // The media socket is not a webhook: it has its own guards.
    let report = run_call(call(Target::Ws(gw.ws_url()))).await.unwrap();
    assert!(report.ok(), "{}", report.summary());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_calls_turns_the_next_call_away() {
    let gw = TestGateway::start_with(|c| c.limits.max_calls = Some(1)).await;
    let (mut first, _) = tokio_tungstenite::connect_async(gw.ws_url()).await.unwrap();
    first.send(Message::text(start_json("CA-first", "st-first"))).await.unwrap();
    let (mut second, _) = tokio_tungstenite::connect_async(gw.ws_url()).await.unwrap();
    assert_eq!(close_code(&mut second).await, Some(1013));
    let (status, _) = gw.get_json("/voicebot?CallSid=CA-third").await;
    assert_eq!(status, 503, "the flow falls through to its next applet");
    first.send(Message::text(r#"{"event":"stop","stop":{"reason":"callended"}}"#)).await.unwrap();
    assert_eq!(close_code(&mut first).await, Some(1000));
    drop(first);
    // Room again once the first call is over.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while gw.gw.state.sessions.live() > 0 {
        assert!(tokio::time::Instant::now() < deadline, "the first call never ended");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let report = run_call(call(Target::Ws(gw.ws_url()))).await.unwrap();
    assert!(report.ok(), "{}", report.summary());
    assert_eq!(refused(&gw).await["over_max_calls"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_sockets_and_endless_calls_are_ended() {
    let gw = TestGateway::start_with(|c| {
        c.limits.idle = Duration::from_secs(1);
        c.limits.max_call = Duration::from_secs(3);
    })
    .await;
    // A caller that sent `start` and then nothing.
    let (mut quiet, _) = tokio_tungstenite::connect_async(gw.ws_url()).await.unwrap();
    quiet.send(Message::text(start_json("CA-quiet", "st-quiet"))).await.unwrap();
    assert_eq!(close_code(&mut quiet).await, Some(1000));
    // A caller that keeps talking past MAX_CALL_SECS.
    let mut long = call(Target::Ws(gw.ws_url()));
    long.audio = AudioSource::Tone { hz: 440.0, ms: 8000 };
    let report = run_call(long).await.unwrap();
    assert!(report.closed_by_bot, "{}", report.summary());
    assert!(report.duration < Duration::from_secs(7), "ended at {:?}", report.duration);
    gw.gw.state.store.flush().await;
    assert_eq!(gw.call("CA-quiet").await["stop_reason"], "idle-timeout");
    let (_, list) = gw.get_json("/api/calls?limit=10").await;
    let reasons: Vec<&str> =
        list["calls"].as_array().unwrap().iter().filter_map(|c| c["stop_reason"].as_str()).collect();
    assert!(reasons.contains(&"max-duration"), "{reasons:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abrupt_disconnect_is_recorded_as_1006() {
    let gw = TestGateway::start().await;
    let (mut ws, _) = tokio_tungstenite::connect_async(gw.ws_url()).await.unwrap();
    ws.send(Message::text(start_json("CA-cut", "st-cut"))).await.unwrap();
    ws.send(Message::text(media_json(2, &[0u8; 320]))).await.unwrap();
    // The TCP connection goes without a close frame.
    drop(ws);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        gw.gw.state.store.flush().await;
        let (_, row) = gw.get_json("/api/calls/CA-cut").await;
        if row["status"] == "completed" {
            assert_eq!((row["close_code"].as_i64(), row["stop_reason"].as_str()), (Some(1006), Some("disconnected")));
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{row}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// True when the server closed the connection (EOF) within `within`.
async fn closed_within(conn: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let read = async {
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => return true,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(within, read).await.unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_and_slow_connections_are_dropped_and_health_still_answers() {
    let gw = TestGateway::start_with(|c| c.limits.header_timeout = Duration::from_secs(1)).await;
    let mut silent = Vec::new();
    for addr in [gw.gw.http_addr, gw.gw.ws_addr].iter().cycle().take(40) {
        silent.push(TcpStream::connect(addr).await.unwrap());
    }
    // Slowloris: a request line, then headers that never end.
    let mut slow = TcpStream::connect(gw.gw.http_addr).await.unwrap();
    slow.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let (status, _) = gw.get_json("/health").await;
    assert_eq!(status, 200);
    assert!(closed_within(&mut slow, Duration::from_secs(5)).await, "a slow header is cut off");
    for conn in &mut silent {
        assert!(closed_within(conn, Duration::from_secs(5)).await, "a silent connection is closed");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_opening_connections_too_fast_is_turned_away() {
    let gw = TestGateway::start_with(|c| c.limits.conns_per_ip_per_sec = 5).await;
    let (mut answered, mut told) = (0, 0);
    let began = std::time::Instant::now();
    for _ in 0..20 {
        let mut conn = TcpStream::connect(gw.gw.http_addr).await.unwrap();
        let _ = conn.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
        let mut text = String::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), conn.read_to_string(&mut text)).await;
        if text.starts_with("HTTP/1.1 200") {
            answered += 1;
        } else if text.starts_with("HTTP/1.1 429") {
            // Shaped as every API error (an ErrorBody), as the OpenAPI document says.
            let (head, body) = text.split_once("\r\n\r\n").unwrap_or_default();
            assert!(head.contains("Content-Type: application/json") && head.contains("Retry-After: 1"), "{head}");
            let body: Value = serde_json::from_str(body).expect("a JSON body");
            assert!(body["error"].as_str().is_some_and(|e| e.contains("too many new connections")), "{body}");
            told += 1;
        }
    }
    // 5 a second: in E seconds of tries at most floor(E) + 1 one-second windows began, however
    // slow this machine is today.
    let windows = began.elapsed().as_secs() + 1;
    assert!((5..=5 * windows).contains(&answered), "{answered} of 20 answered in {windows} windows");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let refused = refused(&gw).await["over_connection_rate"].as_u64().unwrap();
    assert_eq!(refused, 20 - answered);
    // Each refused client is told why: its connection is closed only after reading what it sent
    // (closing over unread bytes would reset it, and the reset can destroy the answer).
    assert_eq!(told, 20 - answered, "every refused client is told 429");
}

/// A self-signed certificate for 127.0.0.1 written to `dir`; returns its DER for the client.
fn write_cert(dir: &std::path::Path) -> rustls::pki_types::CertificateDer<'static> {
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    // Written beside, then renamed: the gateway never reads half a file.
    for (name, pem) in [("cert.pem", cert.cert.pem()), ("key.pem", cert.key_pair.serialize_pem())] {
        std::fs::write(dir.join(format!("{name}.new")), pem).unwrap();
        std::fs::rename(dir.join(format!("{name}.new")), dir.join(name)).unwrap();
    }
    cert.cert.der().clone()
}

fn trusting(cert: &rustls::pki_types::CertificateDer<'static>) -> std::sync::Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.clone()).unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    std::sync::Arc::new(config)
}

async fn wss(url: &str, cert: &rustls::pki_types::CertificateDer<'static>) -> Result<common::Ws, WsError> {
    let connector = tokio_tungstenite::Connector::Rustls(trusting(cert));
    Ok(tokio_tungstenite::connect_async_tls_with_config(url, None, false, Some(connector)).await?.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_serves_wss_and_a_renewed_certificate_without_dropping_calls() {
    let dir = tempfile::tempdir().unwrap();
    let first = write_cert(dir.path());
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let gw = TestGateway::start_with(|c| c.tls = Some(exogate::config::TlsFiles { cert, key })).await;
    let url = format!("wss://127.0.0.1:{}/", gw.gw.ws_addr.port());

    // A call over wss, echoed; it stays up across the certificate swap below.
    let mut ws = wss(&url, &first).await.expect("wss with the first certificate");
    ws.send(Message::text(start_json("CA-tls", "st-tls"))).await.unwrap();
    let pcm: Vec<u8> = (0..3200u32).map(|i| (i % 251) as u8).collect();
    ws.send(Message::text(media_json(2, &pcm))).await.unwrap();
    let echoed = next_media(&mut ws).await;
    assert_eq!(echoed, pcm);
    // Plain HTTP on a TLS port gets nowhere; https answers.
    assert!(gw.http.get(format!("http://{}/health", gw.gw.http_addr)).send().await.is_err());

    std::thread::sleep(Duration::from_millis(1100)); // a new modification time, on any filesystem
    let second = write_cert(dir.path());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        if wss(&url, &second).await.is_ok() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the renewed certificate was never served");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(wss(&url, &first).await.is_err(), "new connections get the new certificate");
    // The call opened under the old certificate still flows.
    ws.send(Message::text(media_json(3, &pcm))).await.unwrap();
    assert_eq!(next_media(&mut ws).await, pcm);
    let https = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_der(second.as_ref()).unwrap())
        .build()
        .unwrap();
    let health = https.get(format!("https://127.0.0.1:{}/health", gw.gw.http_addr.port())).send().await.unwrap();
    assert_eq!(health.status(), 200);

    // What a user runs against a deployment with a private certificate: the simulator, through
    // the dynamic URL over https and the media socket over wss, trusting the file.
    let mut cfg = call(Target::Dynamic(format!("https://127.0.0.1:{}/voicebot", gw.gw.http_addr.port())));
    cfg.ca_cert = Some(dir.path().join("cert.pem"));
    let report = run_call(cfg.clone()).await.unwrap();
    assert!(report.ok(), "{}", report.summary());
    assert_echo(&report.sent_pcm, &report.received_pcm);
    cfg.ca_cert = None;
    assert!(run_call(cfg).await.is_err(), "an unknown certificate is not trusted");
}

/// The next `media` payload the gateway sends, decoded.
async fn next_media(ws: &mut common::Ws) -> Vec<u8> {
    use futures_util::StreamExt;
    let wait = async {
        while let Some(Ok(msg)) = ws.next().await {
            if let Message::Text(t) = msg {
                let v: Value = serde_json::from_str(&t).unwrap();
                if v["event"] == "media" {
                    return B64.decode(v["media"]["payload"].as_str().unwrap()).unwrap();
                }
            }
        }
        panic!("socket ended before any media");
    };
    tokio::time::timeout(Duration::from_secs(10), wait).await.expect("echo in time")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_open_control_plane_answers_only_local_hosts_and_the_database_is_private() {
    let gw = TestGateway::start().await;
    // No API key on a loopback bind: open to this machine, not to a rebinding web page.
    let r = gw.http.get(gw.http_url("/api/calls")).header("host", "evil.example:8080").send().await.unwrap();
    assert_eq!(r.status(), 403);
    let r = gw.http.get(gw.http_url("/api/calls")).header("host", "localhost:8080").send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(refused(&gw).await["bad_host"], 1);
    #[cfg(unix)]
    if gw.database_url().starts_with("sqlite") {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(gw.dir.path().join("calls.db")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the call log is the owner's alone");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_takes_no_writes_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("calls.db");
    let gw = exogate::server::start(exogate::Config {
        http_port: 0,
        ws_port: 0,
        bind_addr: [127, 0, 0, 1].into(),
        database_url: format!("sqlite://{}", path.display()),
        ..exogate::Config::default()
    })
    .await
    .unwrap();
    gw.shutdown(Duration::ZERO).await;
    let read_only = exogate::Config {
        http_port: 0,
        ws_port: 0,
        bind_addr: [127, 0, 0, 1].into(),
        database_url: format!("sqlite://{}?mode=ro", path.display()),
        ..exogate::Config::default()
    };
    let e = exogate::server::start(read_only).await.err().expect("a read-only database is refused");
    assert!(format!("{e:#}").contains("does not take writes"), "{e:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_make_one_and_overwrite_nothing() {
    let gw = TestGateway::start().await;
    let post = |path: &'static str, body: Value| {
        let (http, url) = (gw.http.clone(), gw.http_url(path));
        async move {
            let r = http.post(url).json(&body).send().await.unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let agents =
        (0..12).map(|i| post("/api/agents", serde_json::json!({ "id": "shared", "greeting": format!("g{i}") })));
    let answers = futures_util::future::join_all(agents).await;
    let won: Vec<&Value> = answers.iter().filter(|(s, _)| *s == 201).map(|(_, b)| b).collect();
    assert_eq!(won.len(), 1, "{answers:?}");
    assert!(answers.iter().all(|(s, _)| *s == 201 || *s == 409), "{answers:?}");
    let (_, stored) = gw.get_json("/api/agents/shared").await;
    assert_eq!(stored["greeting"], won[0]["greeting"], "the winner's agent stands");

    let phones = (0..12).map(|i| {
        post(
            "/api/phones",
            serde_json::json!({ "id": format!("p{i}"), "number": "08047491899", "account_sid": "acct",
                "api_key": "key", "api_token": "token" }),
        )
    });
    let answers = futures_util::future::join_all(phones).await;
    assert_eq!(answers.iter().filter(|(s, _)| *s == 201).count(), 1, "{answers:?}");
    assert!(answers.iter().all(|(s, _)| *s == 201 || *s == 409), "{answers:?}");
    let (_, list) = gw.get_json("/api/phones").await;
    assert_eq!(list["phones"].as_array().map(Vec::len), Some(1), "{list}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_console_session_that_signed_out_is_refused_even_from_a_copy_of_its_cookie() {
    const KEY: &str = "right-key-0123456789";
    let gw = TestGateway::start_with(|c| c.api_key = Some(Secret(KEY.into()))).await;
    let sign_in = || gw.http.post(gw.http_url("/api/session")).json(&serde_json::json!({ "key": KEY })).send();
    let signed = sign_in().await.unwrap();
    assert_eq!(signed.status(), 200);
    let set = signed.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict"), "{set}");
    let cookie = set.split(';').next().unwrap().to_string();
    let csrf = signed.json::<Value>().await.unwrap()["csrf"].as_str().unwrap().to_string();
    let get = |path: &str, cookie: &str| gw.http.get(gw.http_url(path)).header("cookie", cookie).send();
    let delete_agent = |cookie: &str, csrf: Option<&str>| {
        let r = gw.http.delete(gw.http_url("/api/agents/no-such-agent")).header("cookie", cookie);
        match csrf {
            Some(t) => r.header("x-csrf-token", t),
            None => r,
        }
        .send()
    };

    let calls = get("/api/calls", &cookie).await.unwrap();
    assert_eq!(calls.status(), 200);
    assert!(calls.json::<Value>().await.unwrap()["calls"].is_array());
    assert_eq!(delete_agent(&cookie, None).await.unwrap().status(), 403, "a write needs the CSRF token");
    assert_eq!(delete_agent(&cookie, Some(&csrf)).await.unwrap().status(), 404, "let through: no such agent");

    let out = gw.http.delete(gw.http_url("/api/session")).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(out.status(), 204);
    assert!(out.headers()["set-cookie"].to_str().unwrap().contains("Max-Age=0"));
    // Someone who copied the cookie before the sign-out gets nothing with it.
    assert_eq!(get("/api/calls", &cookie).await.unwrap().status(), 401);
    assert_eq!(get("/api/session", &cookie).await.unwrap().status(), 401);
    assert_eq!(delete_agent(&cookie, Some(&csrf)).await.unwrap().status(), 401);
    // Signing out again with it changes nothing; a new sign-in is a new session.
    let again = gw.http.delete(gw.http_url("/api/session")).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(again.status(), 204);
    let fresh = sign_in().await.unwrap();
    let fresh_cookie = fresh.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
    assert_ne!(fresh_cookie, cookie);
    assert_eq!(get("/api/calls", &fresh_cookie).await.unwrap().status(), 200);
    assert_eq!(get("/api/calls", &cookie).await.unwrap().status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_metrics_tokens_count_as_wrong_keys_and_a_scrape_without_one_does_not() {
    const TOKEN: &str = "metrics-token-0123";
    let gw = TestGateway::start_with(|c| {
        c.access.metrics_token = Some(Secret(TOKEN.into()));
        c.access.trusted_proxies = IpList::parse("TRUSTED_PROXIES", "127.0.0.1").unwrap();
    })
    .await;
    let scrape = |token: Option<&str>, from: &str| {
        let r = gw.http.get(gw.http_url("/metrics")).header("x-forwarded-for", from);
        match token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
        .send()
    };
    // A scraper not given the token yet is not guessing.
    for _ in 0..exogate::access::MAX_KEY_GUESSES + 2 {
        assert_eq!(scrape(None, "192.0.2.51").await.unwrap().status(), 401);
    }
    assert_eq!(scrape(Some(TOKEN), "192.0.2.51").await.unwrap().status(), 200);
    for i in 0..exogate::access::MAX_KEY_GUESSES {
        assert_eq!(scrape(Some("wrong-token"), "192.0.2.50").await.unwrap().status(), 401, "guess {i}");
    }
    let stopped = scrape(Some(TOKEN), "192.0.2.50").await.unwrap();
    assert_eq!(stopped.status(), 429);
    assert!(stopped.headers().contains_key("retry-after"));
    let text = scrape(Some(TOKEN), "192.0.2.52").await.unwrap().text().await.unwrap();
    for series in [
        r#"exogate_refused{reason="too_many_wrong_keys"} 1"#,
        r#"exogate_address_table_overflows{table="key_guess"} 0"#,
        r#"exogate_address_table_overflows{table="connection_rate"} 0"#,
    ] {
        assert!(text.lines().any(|l| l == series), "{series} in:\n{text}");
    }
    let health: Value = gw.http.get(gw.http_url("/health")).send().await.unwrap().json().await.unwrap();
    assert_eq!(
        health["address_tables"],
        serde_json::json!({ "connection_rate_overflows": 0, "key_guess_overflows": 0 })
    );
}
