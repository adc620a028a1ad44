//! Shared by the end-to-end tests: a real gateway on ephemeral ports with its own database (a
//! SQLite file, or a fresh PostgreSQL database with `EXOGATE_TEST_DATABASE=postgres`).
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use exogate::{Config, Gateway};
use exotel::SampleRate;
use futures_util::StreamExt;
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio_tungstenite::tungstenite::Message;

pub struct TestGateway {
    pub gw: Gateway,
    pub dir: TempDir,
    pub http: reqwest::Client,
}

impl TestGateway {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> Self {
        Self::start_full(tweak, exogate::agent::Registry::builtin()).await
    }

    pub async fn start_full(tweak: impl FnOnce(&mut Config), agents: exogate::agent::Registry) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = Config {
            http_port: 0,
            ws_port: 0,
            bind_addr: [127, 0, 0, 1].into(),
            database_url: test_database(dir.path(), std::env::var("EXOGATE_TEST_DATABASE").ok().as_deref()).await,
            start_timeout: Duration::from_millis(800),
            ..Config::default()
        };
        if config.database_url.starts_with("postgres") {
            config.secret_key = Some(exogate::config::Secret("test-secret".into()));
        }
        tweak(&mut config);
        let gw = exogate::server::start_with_agents(config, agents).await.expect("gateway starts");
        Self { gw, dir, http: reqwest::Client::new() }
    }

    pub fn database_url(&self) -> &str {
        &self.gw.state.config.database_url
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/", self.gw.ws_addr)
    }

    pub fn http_url(&self, path: &str) -> String {
        format!("http://{}{}", self.gw.http_addr, path)
    }

    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        let r = self.http.get(self.http_url(path)).send().await.expect("GET");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Creates an agent through the API (201 or the test fails).
    pub async fn create_agent(&self, id: &str, kind: &str, settings: Value) {
        let body = serde_json::json!({ "id": id, "kind": kind, "settings": settings });
        let r = self.http.post(self.http_url("/api/agents")).json(&body).send().await.expect("POST /api/agents");
        let status = r.status();
        assert_eq!(status, 201, "{}", r.text().await.unwrap_or_default());
    }

    /// The call as the API shows it, after every queued write is committed.
    pub async fn call(&self, id: &str) -> Value {
        self.gw.state.store.flush().await;
        let (status, v) = self.get_json(&format!("/api/calls/{id}")).await;
        assert_eq!(status, 200, "GET /api/calls/{id}: {v}");
        v
    }
}

/// The default phone (EXOTEL_*) of a gateway that dials the simulator's fake Exotel at `api_url`
/// with the fake's account.
pub fn fake_exotel_env(sid: String, api_key: String, api_token: String, api_url: String) -> exogate::config::ExotelEnv {
    exogate::config::ExotelEnv {
        api_key: Some(api_key),
        api_token: Some(exogate::config::Secret(api_token)),
        sid: Some(sid),
        subdomain: None,
        app_id: Some("4321".into()),
        caller_id: Some("08047491899".into()),
        api_url: Some(api_url),
    }
}

/// A real speech or tone recording from the repository's `testdata/audio`, at `rate`.
pub fn speech(rate: SampleRate) -> Vec<u8> {
    let name = match rate {
        SampleRate::Hz8000 => "caller-order-status-8k.wav",
        SampleRate::Hz16000 => "caller-order-number-16k.wav",
        SampleRate::Hz24000 => "tone-440hz-2s-24k.wav",
    };
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/audio").join(name);
    exotel_sim::load_wav(&path, rate).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Asserts the bot's audio is the caller's audio, in order, then at most one chunk of zero padding.
pub fn assert_echo(sent: &[u8], received: &[u8]) {
    assert!(received.len() >= sent.len(), "echoed {} bytes of {}", received.len(), sent.len());
    let first_diff = sent.iter().zip(received).position(|(a, b)| a != b);
    assert_eq!(first_diff, None, "echo differs from sent audio at byte {first_diff:?}");
    let pad = &received[sent.len()..];
    assert!(pad.len() < 100_000, "too much padding: {}", pad.len());
    assert!(pad.iter().all(|&b| b == 0), "padding is not silence");
}

/// Asserts the bot's audio is a prefix of the caller's audio (the call ended early), whose last
/// chunk may be zero-padded.
pub fn assert_echo_prefix(sent: &[u8], received: &[u8]) {
    let firm = received.len().saturating_sub(4800).min(sent.len());
    assert_eq!(&received[..firm], &sent[..firm], "echo differs from sent audio");
    for (i, &b) in received.iter().enumerate().skip(firm) {
        assert!(b == 0 || sent.get(i) == Some(&b), "byte {i} is neither the caller's audio nor padding");
    }
}

/// Normalised cross-correlation of two PCM16LE signals at the best lag up to `max_lag` samples
/// (resamplers and bots add a little delay).
pub fn correlation(a: &[u8], b: &[u8], max_lag: usize) -> f64 {
    let s = |x: &[u8]| x.chunks_exact(2).map(|c| i16::from_le_bytes([c[0], c[1]]) as f64).collect::<Vec<_>>();
    let (a, b) = (s(a), s(b));
    (0..max_lag)
        .map(|lag| {
            let n = a.len().min(b.len().saturating_sub(lag));
            let (mut ab, mut aa, mut bb) = (0.0, 0.0, 0.0);
            for i in 0..n {
                ab += a[i] * b[i + lag];
                aa += a[i] * a[i];
                bb += b[i + lag] * b[i + lag];
            }
            ab / (aa.sqrt() * bb.sqrt()).max(1.0)
        })
        .fold(0.0, f64::max)
}

/// No rule broken, and every chunk Exotel got is legal: a multiple of 320 bytes, 3200..=100000.
pub fn assert_legal(report: &exotel_sim::CallReport) {
    assert!(report.ok(), "violations: {:?}", report.violations);
    assert!(
        report.chunk_sizes.iter().all(|&c| c % 320 == 0 && (3200..=100_000).contains(&c)),
        "chunk sizes {:?}",
        report.chunk_sizes
    );
}

/// The PostgreSQL server tests may use (`.ci/run` sets it): a URL to a database the tests can
/// create databases from.
pub fn postgres_admin_url() -> Option<String> {
    std::env::var("EXOGATE_TEST_POSTGRES").ok().filter(|u| !u.is_empty())
}

/// A database URL for one test: a SQLite file in `dir`, or with `which = Some("postgres")` a
/// PostgreSQL database made for this test alone (named `exogate_test_…`; `.ci/run` drops old ones).
pub async fn test_database(dir: &std::path::Path, which: Option<&str>) -> String {
    if which != Some("postgres") {
        return format!("sqlite://{}", dir.join("calls.db").display());
    }
    let admin = postgres_admin_url().expect("EXOGATE_TEST_POSTGRES must name a PostgreSQL server for postgres tests");
    use sqlx::Connection as _;
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let name = format!(
        "exogate_test_{}_{}_{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0)
    );
    let mut conn = sqlx::PgConnection::connect(&admin).await.expect("connect to EXOGATE_TEST_POSTGRES");
    sqlx::Executor::execute(&mut conn, format!("CREATE DATABASE {name}").as_str()).await.expect("create test database");
    let _ = conn.close().await;
    let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b).to_string();
    format!("{base}/{name}")
}

/// Raw media sockets, for what the simulator won't send.
pub type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub async fn connect(gw: &TestGateway) -> Ws {
    tokio_tungstenite::connect_async(gw.ws_url()).await.expect("connect").0
}

pub fn start_json(call_sid: &str, stream_sid: &str) -> String {
    json!({"event":"start","sequence_number":"1","stream_sid":stream_sid,"start":{"stream_sid":stream_sid,"call_sid":call_sid,
        "account_sid":"acct","from":"+919800000001","to":"+918000000002","custom_parameters":{},
        "media_format":{"encoding":"audio/x-raw","sample_rate":"8000","bit_rate":"16"}}})
    .to_string()
}

pub fn media_json(seq: u64, pcm: &[u8]) -> String {
    json!({"event":"media","sequence_number":seq.to_string(),"stream_sid":"s","media":{"chunk":"1","timestamp":"0","payload":B64.encode(pcm)}})
        .to_string()
}

/// Reads until the server closes; returns the close code.
pub async fn close_code(ws: &mut Ws) -> Option<u16> {
    let wait = async {
        while let Some(msg) = ws.next().await {
            match msg {
                Ok(Message::Close(f)) => return f.map(|f| u16::from(f.code)),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
        None
    };
    tokio::time::timeout(Duration::from_secs(10), wait).await.expect("server closes in time")
}
