//! `exogate campaign …`: campaigns on a running gateway from the command line.

use std::io::Write as _;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::client_cli::Remote;

#[derive(clap::Subcommand, Debug)]
pub enum CampaignCommand {
    /// Creates a campaign (a draft) from a CSV file with a phone column.
    Create(Box<CreateArgs>),
    /// Starts dialing a draft.
    Start(IdArgs),
    /// Stops starting new calls; calls in flight finish.
    Pause(IdArgs),
    Resume(IdArgs),
    /// Ends the campaign: nobody else is dialed.
    Cancel(IdArgs),
    /// Shows progress (with --watch, a live bar until the campaign ends).
    Status(StatusArgs),
    /// Writes the results as CSV: each contact's columns, attempts, outcome and last call.
    Results(ResultsArgs),
}

#[derive(clap::Args, Debug)]
pub struct CreateArgs {
    /// CSV file; UTF-8, a header line, a column named phone, number or to (or --phone-column)
    pub file: std::path::PathBuf,
    /// Agent that serves each call
    #[arg(long)]
    pub agent: String,
    /// Phone (id or number) to call from [default: the gateway's EXOTEL_* phone]
    #[arg(long)]
    pub phone: Option<String>,
    #[arg(long)]
    pub name: Option<String>,
    /// The column holding the numbers, when it is not named phone, number or to
    #[arg(long)]
    pub phone_column: Option<String>,
    /// Calls live at once [default: 10]
    #[arg(long)]
    pub max_concurrent: Option<i64>,
    /// Dials per minute [default: 200]
    #[arg(long)]
    pub calls_per_minute: Option<i64>,
    /// Calling window start, HH:MM in --timezone [default: 09:00]
    #[arg(long)]
    pub window_start: Option<String>,
    /// Calling window end, HH:MM [default: 21:00]
    #[arg(long)]
    pub window_end: Option<String>,
    /// Days allowed, e.g. mon,tue,wed,thu,fri [default: every day]
    #[arg(long, value_delimiter = ',')]
    pub days: Vec<String>,
    /// IANA time zone of the window [default: Asia/Kolkata]
    #[arg(long)]
    pub timezone: Option<String>,
    /// Retry an outcome: OUTCOME:AFTER_SECS:MAX_ATTEMPTS, e.g. busy:300:3 (repeatable)
    #[arg(long)]
    pub retry: Vec<String>,
    #[command(flatten)]
    pub remote: Remote,
}

#[derive(clap::Args, Debug)]
pub struct IdArgs {
    pub id: String,
    #[command(flatten)]
    pub remote: Remote,
}

#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    pub id: String,
    /// Redraw until the campaign is completed, cancelled or paused
    #[arg(long)]
    pub watch: bool,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub remote: Remote,
}

#[derive(clap::Args, Debug)]
pub struct ResultsArgs {
    pub id: String,
    /// Write here instead of standard output
    #[arg(long, short)]
    pub output: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub remote: Remote,
}

pub async fn run(cmd: CampaignCommand) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    match cmd {
        CampaignCommand::Create(a) => create(&http, *a).await,
        CampaignCommand::Start(a) => act(&http, a, "start").await,
        CampaignCommand::Pause(a) => act(&http, a, "pause").await,
        CampaignCommand::Resume(a) => act(&http, a, "resume").await,
        CampaignCommand::Cancel(a) => act(&http, a, "cancel").await,
        CampaignCommand::Status(a) => status(&http, a).await,
        CampaignCommand::Results(a) => results(&http, a).await,
    }
}

/// `busy:300:3` → ("busy", {"after_secs": 300, "max_attempts": 3}).
fn parse_retry(spec: &str) -> anyhow::Result<(String, Value)> {
    let parts: Vec<&str> = spec.split(':').collect();
    let [outcome, after, max] = parts.as_slice() else {
        bail!("--retry {spec:?}: expected OUTCOME:AFTER_SECS:MAX_ATTEMPTS, e.g. busy:300:3");
    };
    let after: u64 = after.parse().with_context(|| format!("--retry {spec:?}: AFTER_SECS is not a number"))?;
    let max: u32 = max.parse().with_context(|| format!("--retry {spec:?}: MAX_ATTEMPTS is not a number"))?;
    Ok((outcome.to_string(), json!({ "after_secs": after, "max_attempts": max })))
}

async fn create(http: &reqwest::Client, a: CreateArgs) -> anyhow::Result<()> {
    let bytes = std::fs::read(&a.file).with_context(|| format!("cannot read {}", a.file.display()))?;
    let file_name =
        a.file.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_else(|| "contacts.csv".into());
    let mut form = reqwest::multipart::Form::new()
        .text("agent", a.agent.clone())
        .part("file", reqwest::multipart::Part::bytes(bytes).file_name(file_name.clone()));
    let texts = [
        ("name", a.name.clone().or(Some(file_name))),
        ("phone", a.phone.clone()),
        ("phone_column", a.phone_column.clone()),
        ("max_concurrent", a.max_concurrent.map(|n| n.to_string())),
        ("calls_per_minute", a.calls_per_minute.map(|n| n.to_string())),
    ];
    for (k, v) in texts {
        if let Some(v) = v {
            form = form.text(k, v);
        }
    }
    if a.window_start.is_some() || a.window_end.is_some() || !a.days.is_empty() || a.timezone.is_some() {
        let mut w = serde_json::Map::new();
        for (k, v) in [("start", &a.window_start), ("end", &a.window_end), ("timezone", &a.timezone)] {
            if let Some(v) = v {
                w.insert(k.into(), json!(v));
            }
        }
        if !a.days.is_empty() {
            w.insert("days".into(), json!(a.days));
        }
        form = form.text("window", Value::Object(w).to_string());
    }
    if !a.retry.is_empty() {
        let mut r = serde_json::Map::new();
        for spec in &a.retry {
            let (outcome, rule) = parse_retry(spec)?;
            r.insert(outcome, rule);
        }
        form = form.text("retry", Value::Object(r).to_string());
    }
    let (status, body) = a.remote.send_raw(http.post(a.remote.url("/api/campaigns")).multipart(form)).await?;
    if !status.is_success() {
        let mut msg = format!("{status}: {}", body["error"].as_str().unwrap_or("request failed"));
        for e in body["errors"].as_array().into_iter().flatten().take(20) {
            let line = e["line"].as_i64().unwrap_or(0);
            let reason = e["reason"].as_str().unwrap_or("");
            msg.push_str(&if line > 0 { format!("\n  line {line}: {reason}") } else { format!("\n  {reason}") });
        }
        bail!("{msg}");
    }
    let c = &body["campaign"];
    println!(
        "created campaign {} ({} contacts, {} lines rejected); start it with: exogate campaign start {}",
        c["id"].as_str().unwrap_or("?"),
        c["contacts"],
        c["rejected_total"],
        c["id"].as_str().unwrap_or("?")
    );
    for e in c["rejected"].as_array().into_iter().flatten().take(20) {
        println!("  line {}: {}", e["line"], e["reason"].as_str().unwrap_or(""));
    }
    Ok(())
}

async fn act(http: &reqwest::Client, a: IdArgs, action: &str) -> anyhow::Result<()> {
    let v = a.remote.send(http.post(a.remote.url(&format!("/api/campaigns/{}/{action}", a.id)))).await?;
    println!("campaign {} is {}", a.id, v["campaign"]["status"].as_str().unwrap_or("?"));
    Ok(())
}

/// One line: status, a bar of finished contacts, and the counts.
fn status_line(c: &Value) -> String {
    let p = &c["progress"];
    let n = |k: &str| p[k].as_i64().unwrap_or(0);
    let total = n("total").max(1);
    let finished = n("completed") + n("failed") + n("exhausted") + n("cancelled");
    let width = 30;
    let filled = (finished * width / total) as usize;
    format!(
        "{:<10} [{}{}] {finished}/{} done · {} dialing · {} in progress · {} to retry · {} pending · completed {} failed {} exhausted {} cancelled {}{}",
        c["status"].as_str().unwrap_or("?"),
        "#".repeat(filled),
        "-".repeat(width as usize - filled),
        n("total"),
        n("dialing"),
        n("in_progress"),
        n("retry_scheduled"),
        n("pending"),
        n("completed"),
        n("failed"),
        n("exhausted"),
        n("cancelled"),
        c["status_reason"].as_str().map(|r| format!(" ({r})")).unwrap_or_default(),
    )
}

async fn status(http: &reqwest::Client, a: StatusArgs) -> anyhow::Result<()> {
    let url = a.remote.url(&format!("/api/campaigns/{}", a.id));
    loop {
        let v = a.remote.send(http.get(&url)).await?;
        let c = &v["campaign"];
        if a.json {
            println!("{}", serde_json::to_string_pretty(c)?);
        } else if a.watch {
            print!("\r{}\x1b[K", status_line(c));
            std::io::stdout().flush()?;
        } else {
            println!("{}", status_line(c));
        }
        let over = matches!(c["status"].as_str(), Some("completed" | "cancelled" | "paused" | "draft"));
        if !a.watch || over {
            if a.watch {
                println!();
            }
            return Ok(());
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn results(http: &reqwest::Client, a: ResultsArgs) -> anyhow::Result<()> {
    let mut req = http.get(a.remote.url(&format!("/api/campaigns/{}/results.csv", a.id)));
    if let Some(k) = a.remote.key() {
        req = req.bearer_auth(k);
    }
    let resp = req.send().await.with_context(|| format!("cannot reach the gateway at {}", a.remote.gateway))?;
    if !resp.status().is_success() {
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        bail!("{status}: {}", body["error"].as_str().unwrap_or("request failed"));
    }
    let bytes = resp.bytes().await?;
    match a.output {
        Some(path) => {
            std::fs::write(&path, &bytes).with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!("wrote {}", path.display());
        }
        None => std::io::stdout().write_all(&bytes)?,
    }
    Ok(())
}
