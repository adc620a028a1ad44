//! `exogate call` and `exogate calls`: the control-plane API from the command line.

use anyhow::{Context, bail};
use serde_json::{Value, json};

/// Where the gateway is and how to authenticate.
#[derive(clap::Args, Debug, Clone)]
pub struct Remote {
    /// Gateway base URL
    #[arg(long, env = "EXOGATE_URL", default_value = "http://127.0.0.1:8080")]
    pub gateway: String,
    /// Control-plane API key (else read from ./exogate.api-key if present)
    #[arg(long, env = "EXOGATE_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
}

#[derive(clap::Args, Debug)]
pub struct CallArgs {
    /// Number to call, e.g. +919876543210
    pub to: String,
    /// Agent id to serve the call
    #[arg(long)]
    pub agent: Option<String>,
    /// Phone (id or number) to call from
    #[arg(long)]
    pub phone: Option<String>,
    /// flow (the phone's Voicebot flow) or stream (Connect Voice AI, straight to our media endpoint)
    #[arg(long, default_value = "flow")]
    pub mode: String,
    /// Your tracking value, passed to Exotel as CustomField
    #[arg(long)]
    pub custom_field: Option<String>,
    /// Maximum call length in seconds (≤ 14400)
    #[arg(long)]
    pub time_limit: Option<u32>,
    #[command(flatten)]
    pub remote: Remote,
}

#[derive(clap::Args, Debug)]
pub struct CallsArgs {
    #[arg(long)]
    pub status: Option<String>,
    #[arg(long)]
    pub phone: Option<String>,
    #[arg(long)]
    pub agent: Option<String>,
    #[arg(long, default_value_t = 20)]
    pub limit: u32,
    /// Print the JSON instead of a table
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub remote: Remote,
}

impl Remote {
    pub(crate) fn key(&self) -> Option<String> {
        self.api_key.clone().or_else(|| std::fs::read_to_string("exogate.api-key").ok().map(|k| k.trim().to_string()))
    }

    pub(crate) async fn send(&self, req: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        let (status, body) = self.send_raw(req).await?;
        if !status.is_success() {
            let msg = body.get("error").and_then(Value::as_str).unwrap_or("request failed");
            bail!("{status}: {msg}");
        }
        Ok(body)
    }

    /// The answer whatever its status, with its JSON body.
    pub(crate) async fn send_raw(&self, req: reqwest::RequestBuilder) -> anyhow::Result<(reqwest::StatusCode, Value)> {
        let req = match self.key() {
            Some(k) => req.bearer_auth(k),
            None => req,
        };
        let resp = req.send().await.with_context(|| format!("cannot reach the gateway at {}", self.gateway))?;
        let status = resp.status();
        Ok((status, resp.json().await.unwrap_or(Value::Null)))
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{}", self.gateway.trim_end_matches('/'), path)
    }
}

pub async fn call(args: CallArgs) -> anyhow::Result<()> {
    let body = json!({
        "to": args.to, "agent": args.agent, "phone": args.phone, "mode": args.mode,
        "custom_field": args.custom_field, "time_limit": args.time_limit,
    });
    let http = reqwest::Client::new();
    let v = args.remote.send(http.post(args.remote.url("/api/calls")).json(&body)).await?;
    let c = &v["call"];
    println!(
        "placed call {} (Exotel sid {}), status {}, agent {}",
        c["id"].as_str().unwrap_or("?"),
        c["sid"].as_str().unwrap_or("?"),
        c["status"].as_str().unwrap_or("?"),
        c["agent"].as_str().unwrap_or("?")
    );
    Ok(())
}

pub async fn calls(args: CallsArgs) -> anyhow::Result<()> {
    let mut query = vec![("limit", args.limit.to_string())];
    for (k, v) in [("status", &args.status), ("phone", &args.phone), ("agent", &args.agent)] {
        if let Some(v) = v {
            query.push((k, v.clone()));
        }
    }
    let http = reqwest::Client::new();
    let v = args.remote.send(http.get(args.remote.url("/api/calls")).query(&query)).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!(
        "{:<20} {:<12} {:<13} {:<16} {:<10} {:>8}  call_sid",
        "created", "status", "direction", "from", "agent", "secs"
    );
    for c in v["calls"].as_array().into_iter().flatten() {
        let s = |k: &str| c[k].as_str().unwrap_or("-").to_string();
        let secs = c["duration_ms"].as_i64().map(|ms| format!("{:.1}", ms as f64 / 1000.0));
        println!(
            "{:<20} {:<12} {:<13} {:<16} {:<10} {:>8}  {}",
            s("created_at").chars().take(19).collect::<String>(),
            s("status"),
            s("direction"),
            exotel::redact::mask_phone(&s("from_number")),
            s("agent"),
            secs.unwrap_or_else(|| "-".into()),
            s("call_sid")
        );
    }
    println!("{} of {} calls", v["calls"].as_array().map_or(0, Vec::len), v["total"]);
    Ok(())
}
