//! Configuration: flags and env vars (clap), optionally a TOML file (`--config`); flag/env beats
//! file beats default. Every value is checked at start-up so a bad one fails with a line naming it.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Deserialize;

use crate::access::{BasicCredentials, IpList};

/// `exogate serve` options. Each can also be set in the TOML file under its snake_case name.
#[derive(clap::Args, Debug, Default, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServeArgs {
    /// TOML file with any of the options below (snake_case keys)
    #[arg(long, env = "EXOGATE_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,

    /// HTTP port: webhooks, API, health, /media [default: 8080]
    #[arg(long, env = "HTTP_PORT")]
    pub http_port: Option<u16>,

    /// Media WebSocket port, any path; /health answers 200 [default: 8765]
    #[arg(long, env = "WS_PORT")]
    pub ws_port: Option<u16>,

    /// Address both servers bind to [default: 0.0.0.0]
    #[arg(long, env = "BIND_ADDR")]
    pub bind_addr: Option<IpAddr>,

    /// Call-log database, created if missing [default: sqlite://exogate.db]
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,

    /// ws:// or wss:// base handed to Exotel by the dynamic-URL endpoint [default: from WEBHOOK_BASE_URL or
    /// RENDER_EXTERNAL_URL with http→ws, https→wss; else ws://<request host>:WS_PORT]
    #[arg(long, env = "PUBLIC_WS_URL")]
    pub public_ws_url: Option<String>,

    /// Public http(s) base of this gateway (the seed deployment's name)
    #[arg(long, env = "WEBHOOK_BASE_URL")]
    pub webhook_base_url: Option<String>,

    /// Public URL Render assigns; used like WEBHOOK_BASE_URL when that is unset
    #[arg(long, env = "RENDER_EXTERNAL_URL")]
    pub render_external_url: Option<String>,

    /// Agent for calls whose `agentId` custom parameter is absent or unknown [default: echo]
    #[arg(long, env = "DEFAULT_AGENT")]
    pub default_agent: Option<String>,

    /// Outbound audio per chunk in ms, rounded to Exotel's 320-byte grid, never under 3200 bytes [default: 100]
    #[arg(long, env = "OUT_CHUNK_MS")]
    pub out_chunk_ms: Option<u32>,

    /// How far outbound audio may run ahead of real time, in ms [default: 300]
    #[arg(long, env = "PLAYBACK_LEAD_MS")]
    pub playback_lead_ms: Option<u32>,

    /// Seconds a media socket may wait for `start` before it is closed with 1008 [default: 10]
    #[arg(long, env = "START_TIMEOUT_SECS")]
    pub start_timeout_secs: Option<f64>,

    /// On SIGTERM/SIGINT, seconds active calls may run before they are ended [default: 30]
    #[arg(long, env = "DRAIN_SECS")]
    pub drain_secs: Option<u64>,

    /// Campaign calls live at once per Exotel account, across campaigns and gateways [default: 200]
    #[arg(long, env = "EXOTEL_MAX_CONCURRENT")]
    pub exotel_max_concurrent: Option<i64>,

    /// Campaign dials per minute per Exotel account (Exotel's own limit is 200) [default: 200]
    #[arg(long, env = "EXOTEL_CALLS_PER_MINUTE")]
    pub exotel_calls_per_minute: Option<i64>,

    /// Bearer key for the control-plane API (/call, /api/...). Without it on a non-loopback bind, a random
    /// key is generated into exogate.api-key beside the database
    #[arg(long, env = "EXOGATE_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,

    /// Secret that encrypts phone tokens at rest and signs status-callback URLs [default: random, kept in
    /// exogate.secret beside the database]
    #[arg(long, env = "EXOGATE_SECRET_KEY", hide_env_values = true)]
    pub secret_key: Option<String>,

    /// Default phone's Exotel API key (used when no phone is given or configured)
    #[arg(long, env = "EXOTEL_API_KEY")]
    pub exotel_api_key: Option<String>,

    /// Default phone's Exotel API token
    #[arg(long, env = "EXOTEL_API_TOKEN", hide_env_values = true)]
    pub exotel_api_token: Option<String>,

    /// Default phone's Exotel account SID
    #[arg(long, env = "EXOTEL_SID")]
    pub exotel_sid: Option<String>,

    /// Exotel API host: api.exotel.com (Singapore) or api.in.exotel.com (Mumbai) [default: api.exotel.com]
    #[arg(long, env = "EXOTEL_SUBDOMAIN")]
    pub exotel_subdomain: Option<String>,

    /// Default phone's flow (app) id holding the Voicebot applet
    #[arg(long, env = "EXOTEL_APP_ID")]
    pub exotel_app_id: Option<String>,

    /// Default phone's ExoPhone, shown to the callee
    #[arg(long, env = "EXOTEL_CALLER_ID")]
    pub exotel_caller_id: Option<String>,

    /// Full Exotel API base URL override (tests, the simulator's fake Exotel)
    #[arg(long, env = "EXOTEL_API_URL")]
    pub exotel_api_url: Option<String>,

    /// user:password that media WebSocket upgrades must present as HTTP Basic (write them into the
    /// applet URL as wss://user:password@host/…; Exotel sends them as the Authorization header)
    #[arg(long, env = "MEDIA_BASIC_AUTH", hide_env_values = true)]
    pub media_basic_auth: Option<String>,

    /// Media sockets must carry the signed, expiring per-call token (`t`) that the dynamic-URL
    /// endpoint and placed calls' StreamUrl hand out [default: false]
    #[arg(long, env = "MEDIA_REQUIRE_TOKEN")]
    pub media_require_token: Option<bool>,

    /// Addresses (CIDRs or IPs, comma-separated) allowed to open media sockets and call the Exotel
    /// webhooks (dynamic URL, Passthru) [default: any]
    #[arg(long, env = "ALLOW_IPS")]
    pub allow_ips: Option<String>,

    /// Proxies (CIDRs or IPs) whose X-Forwarded-For is believed for the client address [default: none]
    #[arg(long, env = "TRUSTED_PROXIES")]
    pub trusted_proxies: Option<String>,

    /// Shared secret the Exotel webhooks (dynamic URL, Passthru) must carry: the `secret` query
    /// parameter or the Basic-auth password
    #[arg(long, env = "WEBHOOK_SECRET", hide_env_values = true)]
    pub webhook_secret: Option<String>,

    /// `GET /metrics` requires `Authorization: Bearer <this>` [default: open]
    #[arg(long, env = "METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<String>,

    /// Calls live at once; beyond it a media socket is closed with 1013 and the dynamic-URL
    /// endpoint answers 503 [default: unlimited]
    #[arg(long, env = "MAX_CALLS")]
    pub max_calls: Option<usize>,

    /// Longest call in seconds; then it is ended properly (Exotel's own cap is 60 min) [default: 3600]
    #[arg(long, env = "MAX_CALL_SECS")]
    pub max_call_secs: Option<u64>,

    /// Seconds a media socket may go without a message before the call is ended [default: 30]
    #[arg(long, env = "IDLE_SECS")]
    pub idle_secs: Option<u64>,

    /// Seconds a client has to send its request headers (and the TLS handshake) [default: 10]
    #[arg(long, env = "HEADER_TIMEOUT_SECS")]
    pub header_timeout_secs: Option<u64>,

    /// New connections per client address per second, on each port [default: 50]
    #[arg(long, env = "CONNS_PER_IP_PER_SEC")]
    pub conns_per_ip_per_sec: Option<u32>,

    /// Directory for call recordings (stereo WAV: caller left, bot right); unset: no recordings
    #[arg(long, env = "RECORDINGS_DIR")]
    pub recordings_dir: Option<PathBuf>,

    /// With RECORDINGS_DIR: record every call unless its agent says `"record": false`; with
    /// false, only calls whose agent says `"record": true` [default: true]
    #[arg(long, env = "RECORD_CALLS")]
    pub record_calls: Option<bool>,

    /// Recordings older than this many days are deleted (checked hourly); 0 keeps them [default: 0]
    #[arg(long, env = "RECORDINGS_RETENTION_DAYS")]
    pub recordings_retention_days: Option<u32>,

    /// PEM certificate chain: serve https/wss on both ports (reloaded when the file changes)
    #[arg(long, env = "TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key for TLS_CERT
    #[arg(long, env = "TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

/// Who may connect (see `crate::access`).
#[derive(Debug, Clone, Default)]
pub struct Access {
    pub media_basic: Option<BasicCredentials>,
    pub media_require_token: bool,
    pub allow_ips: IpList,
    pub trusted_proxies: IpList,
    pub webhook_secret: Option<Secret>,
    pub metrics_token: Option<Secret>,
}

/// Limits on what one peer or call may take.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_calls: Option<usize>,
    pub max_call: Duration,
    pub idle: Duration,
    pub header_timeout: Duration,
    pub conns_per_ip_per_sec: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_calls: None,
            max_call: Duration::from_secs(3600),
            idle: Duration::from_secs(30),
            header_timeout: Duration::from_secs(10),
            conns_per_ip_per_sec: 50,
        }
    }
}

/// Certificate and key files for built-in TLS.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A value that must never be printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// The Exotel account from the `EXOTEL_*` variables: the default phone when none is configured.
#[derive(Debug, Clone, Default)]
pub struct ExotelEnv {
    pub api_key: Option<String>,
    pub api_token: Option<Secret>,
    pub sid: Option<String>,
    pub subdomain: Option<String>,
    pub app_id: Option<String>,
    pub caller_id: Option<String>,
    pub api_url: Option<String>,
}

/// The resolved configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub http_port: u16,
    pub ws_port: u16,
    pub bind_addr: IpAddr,
    pub database_url: String,
    /// Without the trailing slash.
    pub public_ws_url: Option<String>,
    pub default_agent: String,
    pub out_chunk_ms: u32,
    pub playback_lead: Duration,
    pub start_timeout: Duration,
    /// How long shutdown lets active calls run.
    pub drain: Duration,
    /// Per Exotel account, for campaign dials: calls live at once, and dials per minute.
    pub account_max_concurrent: i64,
    pub account_calls_per_minute: i64,
    /// Public http(s) base (WEBHOOK_BASE_URL or RENDER_EXTERNAL_URL), for callback URLs.
    pub public_base_url: Option<String>,
    pub api_key: Option<Secret>,
    pub secret_key: Option<Secret>,
    pub exotel: ExotelEnv,
    pub access: Access,
    pub limits: Limits,
    pub tls: Option<TlsFiles>,
    pub recordings: Option<RecordingsConfig>,
}

/// Where and which calls are recorded.
#[derive(Debug, Clone)]
pub struct RecordingsConfig {
    pub dir: PathBuf,
    /// Calls whose agent says nothing are recorded.
    pub by_default: bool,
    /// None: kept for ever.
    pub retention: Option<Duration>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            http_port: 8080,
            ws_port: 8765,
            bind_addr: IpAddr::from([0, 0, 0, 0]),
            database_url: "sqlite://exogate.db".into(),
            public_ws_url: None,
            default_agent: "echo".into(),
            out_chunk_ms: 100,
            playback_lead: Duration::from_millis(300),
            start_timeout: Duration::from_secs(10),
            drain: Duration::from_secs(30),
            account_max_concurrent: 200,
            account_calls_per_minute: 200,
            public_base_url: None,
            api_key: None,
            secret_key: None,
            exotel: ExotelEnv::default(),
            access: Access::default(),
            limits: Limits::default(),
            tls: None,
            recordings: None,
        }
    }
}

impl Config {
    pub fn from_args(args: ServeArgs) -> anyhow::Result<Self> {
        let file = match &args.config {
            Some(path) => {
                let text = std::fs::read_to_string(path).with_context(|| format!("cannot read --config {path:?}"))?;
                toml::from_str::<ServeArgs>(&text)
                    .map_err(|e| anyhow::anyhow!("invalid --config {path:?}: {}", e.message()))?
            }
            None => ServeArgs::default(),
        };
        macro_rules! pick {
            ($f:ident) => {
                args.$f.clone().or(file.$f.clone())
            };
        }
        let d = Config::default();
        let public_base = pick!(webhook_base_url).or(pick!(render_external_url));
        let public_ws_url = match pick!(public_ws_url) {
            Some(u) => Some(check_ws_url("PUBLIC_WS_URL", &u)?),
            None => match &public_base {
                Some(base) => Some(http_to_ws(base)?),
                None => None,
            },
        };
        let api_key = pick!(api_key).filter(|k| !k.is_empty());
        if api_key.as_ref().is_some_and(|k| k.len() < 16) {
            bail!("EXOGATE_API_KEY must be at least 16 characters");
        }
        let exotel = ExotelEnv {
            api_key: pick!(exotel_api_key).filter(|v| !v.is_empty()),
            api_token: pick!(exotel_api_token).filter(|v| !v.is_empty()).map(Secret),
            sid: pick!(exotel_sid).filter(|v| !v.is_empty()),
            subdomain: pick!(exotel_subdomain).filter(|v| !v.is_empty()),
            app_id: pick!(exotel_app_id).filter(|v| !v.is_empty()),
            caller_id: pick!(exotel_caller_id).filter(|v| !v.is_empty()),
            api_url: pick!(exotel_api_url).filter(|v| !v.is_empty()),
        };
        if let Some(u) = &exotel.api_url {
            if !(u.starts_with("http://") || u.starts_with("https://")) {
                bail!("EXOTEL_API_URL must start with http:// or https://, got {:?}", exotel::redact::redact_url(u));
            }
        }
        let start_timeout = pick!(start_timeout_secs).unwrap_or(d.start_timeout.as_secs_f64());
        if !(start_timeout > 0.0 && start_timeout <= 3600.0) {
            bail!("START_TIMEOUT_SECS must be between 0 and 3600 seconds, got {start_timeout}");
        }
        let account_max_concurrent = pick!(exotel_max_concurrent).unwrap_or(d.account_max_concurrent);
        let account_calls_per_minute = pick!(exotel_calls_per_minute).unwrap_or(d.account_calls_per_minute);
        if account_max_concurrent < 1 || account_calls_per_minute < 1 {
            bail!("EXOTEL_MAX_CONCURRENT and EXOTEL_CALLS_PER_MINUTE must be at least 1");
        }
        let drain_secs = pick!(drain_secs).unwrap_or(d.drain.as_secs());
        if drain_secs > 3600 {
            bail!("DRAIN_SECS must be at most 3600, got {drain_secs}");
        }
        let out_chunk_ms = pick!(out_chunk_ms).unwrap_or(d.out_chunk_ms);
        if !(20..=6000).contains(&out_chunk_ms) {
            bail!("OUT_CHUNK_MS must be between 20 and 6000, got {out_chunk_ms}");
        }
        let database_url = pick!(database_url).unwrap_or(d.database_url);
        match crate::store::Backend::of(&database_url) {
            None => bail!(
                "DATABASE_URL must be sqlite:… (e.g. sqlite://exogate.db) or postgres://…, got {:?}",
                exotel::redact::redact_url(&database_url)
            ),
            // Every gateway on the database must decrypt the phones' tokens and verify each
            // other's signed callback URLs: one secret for all, not one generated per machine.
            Some(crate::store::Backend::Postgres) if pick!(secret_key).is_none() => {
                bail!("EXOGATE_SECRET_KEY is required with a PostgreSQL DATABASE_URL (all gateways on it share it)")
            }
            Some(_) => {}
        }
        let default_agent = pick!(default_agent).unwrap_or(d.default_agent);
        if !crate::agent::Registry::builtin().contains(&default_agent) {
            bail!(
                "DEFAULT_AGENT {default_agent:?} is not a known agent (known: {})",
                crate::agent::Registry::builtin().ids().join(", ")
            );
        }
        let nonempty = |v: Option<String>| v.filter(|v| !v.trim().is_empty());
        let access = Access {
            media_basic: nonempty(pick!(media_basic_auth))
                .map(|v| BasicCredentials::parse("MEDIA_BASIC_AUTH", &v))
                .transpose()?,
            media_require_token: pick!(media_require_token).unwrap_or(false),
            allow_ips: IpList::parse("ALLOW_IPS", &pick!(allow_ips).unwrap_or_default())?,
            trusted_proxies: IpList::parse("TRUSTED_PROXIES", &pick!(trusted_proxies).unwrap_or_default())?,
            webhook_secret: nonempty(pick!(webhook_secret)).map(Secret),
            metrics_token: nonempty(pick!(metrics_token)).map(Secret),
        };
        let dl = Limits::default();
        let limits = Limits {
            max_calls: pick!(max_calls),
            max_call: Duration::from_secs(pick!(max_call_secs).unwrap_or(dl.max_call.as_secs())),
            idle: Duration::from_secs(pick!(idle_secs).unwrap_or(dl.idle.as_secs())),
            header_timeout: Duration::from_secs(pick!(header_timeout_secs).unwrap_or(dl.header_timeout.as_secs())),
            conns_per_ip_per_sec: pick!(conns_per_ip_per_sec).unwrap_or(dl.conns_per_ip_per_sec),
        };
        if limits.max_call.is_zero() || limits.idle.is_zero() || limits.header_timeout.is_zero() {
            bail!("MAX_CALL_SECS, IDLE_SECS and HEADER_TIMEOUT_SECS must be at least 1");
        }
        if limits.conns_per_ip_per_sec == 0 {
            bail!("CONNS_PER_IP_PER_SEC must be at least 1");
        }
        let tls = match (pick!(tls_cert), pick!(tls_key)) {
            (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
            (None, None) => None,
            _ => bail!("TLS_CERT and TLS_KEY go together"),
        };
        let retention_days = pick!(recordings_retention_days).unwrap_or(0);
        let recordings = pick!(recordings_dir).filter(|d| !d.as_os_str().is_empty()).map(|dir| RecordingsConfig {
            dir,
            by_default: pick!(record_calls).unwrap_or(true),
            retention: (retention_days > 0).then(|| Duration::from_secs(u64::from(retention_days) * 86_400)),
        });
        Ok(Self {
            http_port: pick!(http_port).unwrap_or(d.http_port),
            ws_port: pick!(ws_port).unwrap_or(d.ws_port),
            bind_addr: pick!(bind_addr).unwrap_or(d.bind_addr),
            database_url,
            public_ws_url,
            default_agent,
            out_chunk_ms,
            playback_lead: Duration::from_millis(pick!(playback_lead_ms).unwrap_or(300) as u64),
            start_timeout: Duration::from_secs_f64(start_timeout),
            drain: Duration::from_secs(drain_secs),
            account_max_concurrent,
            account_calls_per_minute,
            public_base_url: public_base.map(|b| b.trim().trim_end_matches('/').to_string()),
            api_key: api_key.map(Secret),
            secret_key: pick!(secret_key).filter(|k| !k.is_empty()).map(Secret),
            exotel,
            access,
            limits,
            tls,
            recordings,
        })
    }
}

fn check_ws_url(name: &str, url: &str) -> anyhow::Result<String> {
    let u = url.trim().trim_end_matches('/');
    if !(u.starts_with("ws://") || u.starts_with("wss://")) || u.len() <= "wss://".len() {
        bail!("{name} must start with ws:// or wss://, got {:?}", exotel::redact::redact_url(url));
    }
    Ok(u.to_string())
}

/// `https://x.example.com` → `wss://x.example.com`; `http://` → `ws://`.
fn http_to_ws(base: &str) -> anyhow::Result<String> {
    let b = base.trim().trim_end_matches('/');
    let ws = if let Some(rest) = b.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if let Some(rest) = b.strip_prefix("http://") {
        format!("ws://{rest}")
    } else {
        bail!(
            "WEBHOOK_BASE_URL/RENDER_EXTERNAL_URL must start with http:// or https://, got {:?}",
            exotel::redact::redact_url(base)
        );
    };
    check_ws_url("WEBHOOK_BASE_URL", &ws)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derives_ws_url() {
        let c = Config::from_args(ServeArgs {
            webhook_base_url: Some("https://bot.example.com/".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(c.public_ws_url.as_deref(), Some("wss://bot.example.com"));
        let c = Config::from_args(ServeArgs {
            render_external_url: Some("http://a.onrender.com".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(c.public_ws_url.as_deref(), Some("ws://a.onrender.com"));
        let c = Config::from_args(ServeArgs {
            public_ws_url: Some("wss://media.example.com/x/".into()),
            webhook_base_url: Some("https://bot.example.com".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(c.public_ws_url.as_deref(), Some("wss://media.example.com/x"));
    }

    #[test]
    fn bad_values_name_themselves() {
        let e =
            Config::from_args(ServeArgs { public_ws_url: Some("http://x".into()), ..Default::default() }).unwrap_err();
        assert!(e.to_string().contains("PUBLIC_WS_URL"), "{e}");
        let e = Config::from_args(ServeArgs { default_agent: Some("nope".into()), ..Default::default() }).unwrap_err();
        assert!(e.to_string().contains("DEFAULT_AGENT"), "{e}");
        let e =
            Config::from_args(ServeArgs { database_url: Some("mysql://x".into()), ..Default::default() }).unwrap_err();
        assert!(e.to_string().contains("DATABASE_URL"), "{e}");
        let e =
            Config::from_args(ServeArgs { database_url: Some("postgres://u:pw@h/db".into()), ..Default::default() })
                .unwrap_err();
        assert!(e.to_string().contains("EXOGATE_SECRET_KEY"), "{e}");
        assert!(!e.to_string().contains("pw"), "{e}");
    }

    #[test]
    fn toml_file_and_precedence() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("exogate.toml");
        std::fs::write(&path, "http_port = 9000\nws_port = 9001\ndefault_agent = \"echo\"\n").unwrap();
        let c = Config::from_args(ServeArgs { config: Some(path.clone()), ws_port: Some(7000), ..Default::default() })
            .unwrap();
        assert_eq!((c.http_port, c.ws_port), (9000, 7000));
        std::fs::write(&path, "htp_port = 1\n").unwrap();
        let e = Config::from_args(ServeArgs { config: Some(path), ..Default::default() }).unwrap_err();
        assert!(e.to_string().contains("htp_port"), "{e}");
    }
}
