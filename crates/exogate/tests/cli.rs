//! The `exogate` binary as users run it: start-up errors, `serve` with no configuration beyond
//! ports, `sim call` against it, and what its logs must never contain.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_exogate");

fn startup_error(args: &[&str], env: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(args)
        .env("DATABASE_URL", format!("sqlite://{}", dir.path().join("x.db").display()))
        .env("HTTP_PORT", "0")
        .env("WS_PORT", "0")
        .env("BIND_ADDR", "127.0.0.1")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success(), "{args:?} {env:?} started");
    let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
    assert_eq!(err.lines().count(), 1, "not one line: {err}");
    err
}

#[test]
fn bad_values_fail_with_one_line_naming_them() {
    assert!(startup_error(&["serve", "--http-port", "abc"], &[]).contains("HTTP_PORT"));
    assert!(startup_error(&["serve"], &[("HTTP_PORT", "70000")]).contains("HTTP_PORT"));
    assert!(startup_error(&["serve"], &[("DEFAULT_AGENT", "nope")]).contains("DEFAULT_AGENT"));
    assert!(startup_error(&["serve"], &[("PUBLIC_WS_URL", "ftp://x")]).contains("PUBLIC_WS_URL"));
    assert!(startup_error(&["serve"], &[("BIND_ADDR", "not-an-ip")]).contains("BIND_ADDR"));
}

struct Server {
    child: Child,
    log: Arc<Mutex<String>>,
    http: String,
    ws: String,
    db: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// The child is killed and waited for by `Server::drop`; on the start-up panic path the test fails anyway.
#[allow(clippy::zombie_processes)]
fn serve(db: &str) -> Server {
    serve_with(db, &[])
}

// See `serve`.
#[allow(clippy::zombie_processes)]
fn serve_with(db: &str, env: &[(&str, &str)]) -> Server {
    let mut child = Command::new(BIN)
        .arg("serve")
        .envs(env.iter().copied())
        .env("HTTP_PORT", "0")
        .env("WS_PORT", "0")
        .env("BIND_ADDR", "127.0.0.1")
        .env("DATABASE_URL", db)
        .env("RUST_LOG", "debug")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = Arc::new(Mutex::new(String::new()));
    let stderr = child.stderr.take().unwrap();
    let sink = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let mut l = sink.lock().unwrap();
            l.push_str(&line);
            l.push('\n');
        }
    });
    let started = Instant::now();
    loop {
        let text = log.lock().unwrap().clone();
        if let Some(line) = text.lines().find(|l| l.contains("exogate listening")) {
            // `name=value` in text logs, `"name":"value"` in JSON ones.
            let field = |name: &str| match line.find(&format!("\"{name}\":\"")) {
                Some(at) => line[at + name.len() + 4..].split('"').next().unwrap().to_string(),
                None => {
                    let at = line.find(&format!("{name}=")).unwrap() + name.len() + 1;
                    line[at..].split_whitespace().next().unwrap().to_string()
                }
            };
            return Server { http: field("http_addr"), ws: field("ws_addr"), child, log, db: db.to_string() };
        }
        assert!(started.elapsed() < Duration::from_secs(20), "server did not start: {text}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn sim(args: &[&str]) -> (bool, String) {
    let out = Command::new(BIN).arg("sim").arg("call").args(args).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

#[test]
fn sim_call_against_serve_reports_zero_violations_and_logs_stay_clean() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(&format!("sqlite://{}", dir.path().join("calls.db").display()));
    let (ok, out) = sim(&["--url", &format!("ws://{}/", server.ws), "--tone", "440", "--duration-ms", "1500"]);
    assert!(ok, "{out}");
    assert!(out.contains("violations: 0"), "{out}");
    let (ok, out) = sim(&[
        "--dynamic",
        &format!("http://{}/voicebot?agentId=echo", server.http),
        "--rate",
        "16000",
        "--tone",
        "300",
        "--duration-ms",
        "1200",
        "--dtmf",
        "600=5",
        "--from",
        "+919876543210",
    ]);
    assert!(ok, "{out}");
    assert!(out.contains("violations: 0"), "{out}");
    let passthru = format!(
        "http://{}/api/exotel/passthru?CallSid=cli-1&From=%2B919876543210&Stream%5BStreamUrl%5D=wss%3A%2F%2FKEY%3ASUPERSECRET%40h.example%2Fmedia%3Ftoken%3DTOPSECRET",
        server.http
    );
    let body = reqwest::blocking_get(&passthru);
    assert!(body.contains("\"ok\":true"), "{body}");
    std::thread::sleep(Duration::from_millis(300));
    let log = server.log.lock().unwrap().clone();
    assert_eq!(log.matches("call started").count(), 2, "{log}");
    assert_eq!(log.matches("call ended").count(), 2, "{log}");
    assert!(log.contains("+91******3210"), "numbers are logged masked: {log}");
    for secret in ["SUPERSECRET", "TOPSECRET", "9876543210"] {
        assert!(!log.contains(secret), "{secret} leaked into the log:\n{log}");
    }
}

#[test]
fn json_logs_carry_the_calls_ids_on_every_line_of_the_call() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve_with(&format!("sqlite://{}", dir.path().join("calls.db").display()), &[("LOG_FORMAT", "json")]);
    let (ok, out) = sim(&[
        "--url",
        &format!("ws://{}/", server.ws),
        "--tone",
        "440",
        "--duration-ms",
        "800",
        "--call-sid",
        "CA-json-1",
    ]);
    assert!(ok, "{out}");
    std::thread::sleep(Duration::from_millis(300));
    let log = server.log.lock().unwrap().clone();
    let records: Vec<serde_json::Value> =
        log.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))).collect();
    let of_call: Vec<&serde_json::Value> = records.iter().filter(|r| r["span"]["name"] == "call").collect();
    let said = |m: &str| of_call.iter().find(|r| r["fields"]["message"] == m).copied();
    for message in ["call started", "call ended"] {
        let r = said(message).unwrap_or_else(|| panic!("no {message:?} line inside the call's span: {log}"));
        assert_eq!(r["span"]["call_sid"], "CA-json-1", "{r}");
        assert!(r["span"]["stream_sid"].as_str().is_some_and(|s| !s.is_empty() && s != "-"), "{r}");
        assert!(r["span"]["call_id"].as_str().is_some_and(|s| s.len() >= 16), "{r}");
    }
    // Every line logged while the call ran carries the same ids.
    let ids: std::collections::BTreeSet<String> = of_call.iter().map(|r| r["span"]["call_id"].to_string()).collect();
    assert_eq!(ids.len(), 1, "one call, one id: {ids:?}");
}

mod reqwest {
    /// A plain HTTP/1.1 GET over a TcpStream: this test runs outside any async runtime.
    pub fn blocking_get(url: &str) -> String {
        use std::io::{Read, Write};
        let rest = url.strip_prefix("http://").unwrap();
        let (host, path) = rest.split_at(rest.find('/').unwrap());
        let mut s = std::net::TcpStream::connect(host).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }
}

#[test]
fn a_call_survives_the_process_being_killed_mid_call() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = serve(&format!("sqlite://{}", dir.path().join("calls.db").display()));
    let ws = format!("ws://{}/", server.ws);
    // Calls that ended before the kill keep their record; the one in the air is marked.
    let done: Vec<String> = (0..3).map(|i| format!("done-{i}")).collect();
    let short: Vec<_> = done
        .iter()
        .map(|sid| {
            let (ws, sid) = (ws.clone(), sid.clone());
            std::thread::spawn(move || {
                sim(&["--url", &ws, "--call-sid", &sid, "--tone", "440", "--duration-ms", "300"])
            })
        })
        .collect();
    let call = std::thread::spawn(move || {
        sim(&["--url", &ws, "--call-sid", "killed-1", "--tone", "440", "--duration-ms", "4000"])
    });
    for s in short {
        let (ok, out) = s.join().unwrap();
        assert!(ok, "{out}");
    }
    std::thread::sleep(Duration::from_millis(1500));
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    let _ = call.join();
    let again = serve(&server.db);
    let page = reqwest::blocking_get(&format!("http://{}/api/calls/killed-1", again.http));
    // The row survived, and the new process knows no session will ever finish it.
    assert!(page.contains("\"status\":\"interrupted\""), "{page}");
    assert!(page.contains("\"stop_reason\":\"process-restarted\""), "{page}");
    assert!(page.contains("\"kind\":\"start\""), "{page}");
    for sid in &done {
        let page = reqwest::blocking_get(&format!("http://{}/api/calls/{sid}", again.http));
        assert!(page.contains("\"status\":\"completed\""), "{page}");
    }
}

#[test]
fn exotel_and_api_secrets_stay_out_of_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let server = serve_with(
        &format!("sqlite://{}", dir.path().join("calls.db").display()),
        &[
            ("EXOGATE_API_KEY", "api-key-SEKRIT-0123456789"),
            ("EXOTEL_SID", "acct"),
            ("EXOTEL_API_KEY", "key"),
            ("EXOTEL_API_TOKEN", "TOKEN-SEKRIT"),
            ("EXOTEL_CALLER_ID", "08047491899"),
            ("EXOTEL_APP_ID", "1"),
            ("EXOTEL_API_URL", &format!("http://{dead}")),
        ],
    );
    let body = r#"{"to":"+919876543210"}"#;
    let out = http_post(&format!("http://{}/api/calls", server.http), body, Some("api-key-SEKRIT-0123456789"));
    assert!(out.contains("unreachable"), "{out}");
    let out = http_post(&format!("http://{}/api/calls", server.http), body, Some("wrong"));
    assert!(out.starts_with("HTTP/1.1 401"), "{out}");
    std::thread::sleep(Duration::from_millis(300));
    let log = server.log.lock().unwrap().clone();
    assert!(log.contains("placing call"), "{log}");
    for secret in ["SEKRIT", "9876543210"] {
        assert!(!log.contains(secret), "{secret} leaked into the log:\n{log}");
    }
}

fn http_post(url: &str, body: &str, bearer: Option<&str>) -> String {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_at(rest.find('/').unwrap());
    let mut s = std::net::TcpStream::connect(host).unwrap();
    let auth = bearer.map(|k| format!("Authorization: Bearer {k}\r\n")).unwrap_or_default();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {host}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn sigterm_drains_active_calls_then_ends_them_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = serve_with(&format!("sqlite://{}", dir.path().join("calls.db").display()), &[("DRAIN_SECS", "3")]);
    let ws = format!("ws://{}/", server.ws);
    let short_ws = ws.clone();
    // One call ends by itself within the drain time, one outlives it.
    let short = std::thread::spawn(move || {
        sim(&["--url", &short_ws, "--call-sid", "drained-1", "--tone", "440", "--duration-ms", "900"])
    });
    let long = std::thread::spawn(move || {
        sim(&["--url", &ws, "--call-sid", "ended-1", "--tone", "440", "--duration-ms", "10000"])
    });
    std::thread::sleep(Duration::from_millis(700));
    let pid = server.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let started = Instant::now();
    let status = server.child.wait().unwrap();
    assert!(status.success(), "exit status {status:?}: {}", server.log.lock().unwrap());
    assert!(started.elapsed() < Duration::from_secs(9), "shutdown took {:?}", started.elapsed());
    let _ = short.join();
    let (_, out) = long.join().unwrap();
    assert!(out.contains("1001"), "the long call was closed with 1001 going away: {out}");
    let log = server.log.lock().unwrap().clone();
    assert!(log.contains("SIGTERM"), "{log}");
    let again = serve(&server.db);
    let drained = reqwest::blocking_get(&format!("http://{}/api/calls/drained-1", again.http));
    assert!(drained.contains("\"status\":\"completed\""), "{drained}");
    assert!(drained.contains("\"stop_reason\":\"callended\""), "{drained}");
    let ended = reqwest::blocking_get(&format!("http://{}/api/calls/ended-1", again.http));
    assert!(ended.contains("\"status\":\"completed\""), "{ended}");
    assert!(ended.contains("\"stop_reason\":\"shutdown\""), "{ended}");
    assert!(ended.contains("\"close_code\":1001"), "{ended}");
}

fn repo_file(name: &str) -> String {
    std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(name)).unwrap()
}

/// `KEY=value` on a line of its own (a unit's `Environment=KEY=value`, or `KEY: value`).
fn setting(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let l = l.trim().trim_start_matches("Environment=");
        l.strip_prefix(&format!("{key}=")).map(|v| v.trim().to_string())
    })
}

#[test]
fn the_render_blueprint_serves_everything_on_its_one_port() {
    let blueprint = repo_file("render.yaml");
    for line in ["healthCheckPath: /health", "startCommand: ./target/release/exogate serve", "runtime: rust"] {
        assert!(blueprint.contains(line), "render.yaml lacks {line:?}");
    }
    // Render waits 30 s after SIGTERM: the drain must fit.
    let drain: u64 = blueprint
        .split("key: DRAIN_SECS")
        .nth(1)
        .and_then(|rest| rest.split('"').nth(1))
        .and_then(|v| v.parse().ok())
        .expect("render.yaml sets DRAIN_SECS");
    assert!(drain < 30, "DRAIN_SECS {drain} does not fit Render's 30 s");
    // Behind Cloudflare and Render's proxy, the client's own address is the one seen.
    let trusted = blueprint
        .split("key: TRUSTED_PROXIES")
        .nth(1)
        .and_then(|rest| rest.split('"').nth(1))
        .map(|v| exogate::access::IpList::parse("TRUSTED_PROXIES", v).expect("render.yaml's TRUSTED_PROXIES parse"))
        .expect("render.yaml sets TRUSTED_PROXIES");
    let mut via = axum::http::HeaderMap::new();
    via.insert("x-forwarded-for", "99.61.165.29, 104.22.17.40".parse().unwrap());
    let peer: std::net::IpAddr = "10.21.157.68".parse().unwrap();
    assert_eq!(exogate::access::client_ip(peer, &via, &trusted), "99.61.165.29".parse::<std::net::IpAddr>().unwrap());
    // One that skips Cloudflare and writes its own header is seen as itself.
    via.insert("x-forwarded-for", "198.51.100.7, 104.22.17.40, 203.0.113.9".parse().unwrap());
    assert_eq!(exogate::access::client_ip(peer, &via, &trusted), "203.0.113.9".parse::<std::net::IpAddr>().unwrap());
    // As Render runs it: one public port, the media URL derived from RENDER_EXTERNAL_URL.
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("calls.db").display());
    let server = serve_with(&db, &[("RENDER_EXTERNAL_URL", "https://exogate-x.onrender.com"), ("DRAIN_SECS", "25")]);
    let answer = reqwest::blocking_get(&format!("http://{}/voicebot?CallSid=CA-render", server.http));
    assert!(answer.contains(r#""url":"wss://exogate-x.onrender.com/media"#), "{answer}");
    let health = reqwest::blocking_get(&format!("http://{}/health", server.http));
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    // Exotel's media socket on the HTTP port itself.
    let (ok, out) = sim(&["--url", &format!("ws://{}/media", server.http), "--tone", "440", "--duration-ms", "1000"]);
    assert!(ok && out.contains("violations: 0"), "{out}");
}

#[test]
fn the_systemd_unit_verifies_and_drains_within_its_stop_timeout() {
    let unit = repo_file("deploy/exogate.service");
    let drain: u64 = setting(&unit, "DRAIN_SECS").and_then(|v| v.parse().ok()).expect("the unit sets DRAIN_SECS");
    let stop: u64 =
        setting(&unit, "TimeoutStopSec").and_then(|v| v.parse().ok()).expect("the unit sets TimeoutStopSec");
    assert!(drain + 10 <= stop, "DRAIN_SECS {drain} leaves no time to end calls within TimeoutStopSec {stop}");
    for directive in ["DynamicUser=yes", "StateDirectory=exogate", "Restart=on-failure", "KillSignal=SIGTERM"] {
        assert!(unit.lines().any(|l| l.trim() == directive), "the unit lacks {directive}");
    }
    let db = setting(&unit, "DATABASE_URL").unwrap();
    assert!(db.starts_with("sqlite:///var/lib/exogate/"), "the call log lives in the state directory: {db}");
    let Ok(check) = Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!("skipped: systemd-analyze is not installed");
        return;
    };
    assert!(check.status.success());
    // `verify` wants ExecStart to exist: the binary under test stands in for /usr/local/bin/exogate.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("exogate.service");
    std::fs::write(&path, unit.replace("/usr/local/bin/exogate", BIN)).unwrap();
    let out = Command::new("systemd-analyze").arg("verify").arg(&path).output().unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    // It exits 0 on unknown keys and bad values; what it prints is the verdict.
    let complaints: Vec<&str> = said.lines().filter(|l| l.contains("exogate.service")).collect();
    assert!(out.status.success() && complaints.is_empty(), "systemd-analyze verify: {said}");
}
