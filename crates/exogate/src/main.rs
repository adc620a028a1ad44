use std::process::ExitCode;

use clap::{Parser, Subcommand};
use exogate::{Config, ServeArgs};

/// exogate: a gateway between Exotel's Voicebot/Stream applets and voice bots.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
// Parsed once per process: the variants' sizes don't matter.
#[allow(clippy::large_enum_variant)]
enum Command {
    /// Runs the gateway: Exotel webhooks and API on HTTP_PORT, media WebSocket on WS_PORT.
    Serve(ServeArgs),
    /// Places an outbound call through a running gateway.
    Call(exogate::client_cli::CallArgs),
    /// Lists recent calls from a running gateway.
    Calls(exogate::client_cli::CallsArgs),
    /// Campaigns on a running gateway: create from a CSV, start, pause, resume, cancel, status, results.
    #[command(subcommand)]
    Campaign(exogate::campaign_cli::CampaignCommand),
    /// Plays Exotel's side against a bot or a deployment, without a phone line.
    #[command(subcommand)]
    Sim(exotel_sim::cli::SimCommand),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            // One line naming the bad value, not clap's multi-line usage dump.
            let text = e.to_string();
            eprintln!("{}", text.lines().next().unwrap_or("error: invalid arguments"));
            return ExitCode::from(2);
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    match std::env::var("LOG_FORMAT").as_deref() {
        // One JSON object per line; a call's lines carry its ids (the `call` span's fields).
        Ok("json") => tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .with_current_span(true)
            // The whole chain too: a line inside a span of an agent's still carries the call's ids.
            .with_span_list(true)
            .with_writer(std::io::stderr)
            .init(),
        Ok("text") | Err(_) => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_writer(std::io::stderr)
            .init(),
        Ok(other) => {
            eprintln!("error: LOG_FORMAT must be text or json, got {other:?}");
            return ExitCode::from(2);
        }
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => match serve(args).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            },
            Command::Sim(cmd) => exotel_sim::cli::run(cmd).await,
            Command::Call(args) => report(exogate::client_cli::call(args).await),
            Command::Calls(args) => report(exogate::client_cli::calls(args).await),
            Command::Campaign(cmd) => report(exogate::campaign_cli::run(cmd).await),
        }
    })
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = Config::from_args(args)?;
    let drain = config.drain;
    let gateway = exogate::start(config).await?;
    let signal = stop_signal().await?;
    tracing::info!(signal, "shutting down: no new calls; active calls drain");
    gateway.shutdown(drain).await;
    tracing::info!("stopped");
    Ok(())
}

/// SIGTERM (what systemd, Render and Kubernetes send on every deploy) or SIGINT.
async fn stop_signal() -> anyhow::Result<&'static str> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r.map(|()| "SIGINT").map_err(Into::into),
            _ = term.recv() => Ok("SIGTERM"),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await?;
        Ok("ctrl-c")
    }
}

fn report(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
