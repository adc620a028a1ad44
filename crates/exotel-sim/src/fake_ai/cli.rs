//! `exogate sim ai ...`: the fake OpenAI Realtime / Gemini Live server as a long-running process.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use exotel::SampleRate;

use super::{AiSession, FakeAi, FakeAiConfig, FakeAiFailure};

/// The server could not start (port taken, unreadable WAV, bad arguments).
const EXIT_SETUP: u8 = 2;

#[derive(Debug, Clone, clap::Args)]
pub struct AiArgs {
    /// Port to listen on, on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 9100)]
    pub port: u16,
    /// The API key the fake accepts (never printed).
    #[arg(long, env = "EXOTEL_SIM_AI_KEY", hide_env_values = true, default_value = "sk-fake")]
    pub key: String,
    /// The model's answer from a WAV file (any rate; a 2 s tone when not given).
    #[arg(long, value_name = "PATH")]
    pub answer_wav: Option<PathBuf>,
    /// Answer once this much caller audio has arrived.
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    pub answer_after_ms: u64,
    /// Answers given to caller audio.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub answers: usize,
    /// The caller barges in this long after the first answer's audio starts.
    #[arg(long, value_name = "MS")]
    pub barge_in_ms: Option<u64>,
    /// Instead of the first answer, call a tool: NAME or NAME=JSON_ARGS.
    #[arg(long, value_name = "NAME[=JSON]")]
    pub tool: Option<String>,
    /// rate-limit, close:MS (close 1011 after MS) or garbage:MS (unreadable messages after MS).
    #[arg(long, value_name = "FAILURE")]
    pub fail: Option<String>,
}

impl AiArgs {
    pub fn config(&self) -> Result<FakeAiConfig, String> {
        let mut cfg = FakeAiConfig { api_key: self.key.clone(), ..FakeAiConfig::default() };
        if let Some(path) = &self.answer_wav {
            cfg.answer_pcm24 = crate::load_wav(path, SampleRate::Hz24000).map_err(|e| e.to_string())?;
        }
        cfg.answer_after = Duration::from_millis(self.answer_after_ms);
        cfg.answers = self.answers;
        cfg.barge_in_after = self.barge_in_ms.map(Duration::from_millis);
        if let Some(tool) = &self.tool {
            let (name, args) = tool.split_once('=').unwrap_or((tool, "{}"));
            let args = serde_json::from_str(args).map_err(|e| format!("--tool arguments are not JSON: {e}"))?;
            cfg.tool_call = Some((name.to_string(), args));
        }
        cfg.failure = match self.fail.as_deref() {
            None => None,
            Some("rate-limit") => Some(FakeAiFailure::RateLimit),
            Some(f) => {
                let ms = |s: &str| s.parse::<u64>().map(Duration::from_millis).map_err(|_| format!("bad --fail {f}"));
                match f.split_once(':') {
                    Some(("close", n)) => Some(FakeAiFailure::CloseAfter(ms(n)?)),
                    Some(("garbage", n)) => Some(FakeAiFailure::Garbage(ms(n)?)),
                    _ => return Err(format!("--fail must be rate-limit, close:MS or garbage:MS, not {f}")),
                }
            }
        };
        Ok(cfg)
    }
}

/// Runs until Ctrl-C, one line per ended session on stdout.
pub async fn run_cli(args: AiArgs) -> ExitCode {
    let cfg = match args.config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("exotel-sim: {e}");
            return ExitCode::from(EXIT_SETUP);
        }
    };
    let ai = match FakeAi::start(args.port, cfg).await {
        Ok(ai) => ai,
        Err(e) => {
            eprintln!("exotel-sim: cannot listen on 127.0.0.1:{}: {e}", args.port);
            return ExitCode::from(EXIT_SETUP);
        }
    };
    println!("listening openai {} gemini {}", ai.openai_url(), ai.gemini_url());
    let mut reported = 0;
    let shutdown = tokio::signal::ctrl_c();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            ended = ai.wait_ended(reported + 1, Duration::from_secs(3600)) => {
                for (i, s) in ended.iter().enumerate().skip(reported) {
                    println!("{}", summary(i + 1, s));
                }
                reported = reported.max(ended.len());
            }
        }
    }
    println!("shutting down");
    ExitCode::SUCCESS
}

fn summary(n: usize, s: &AiSession) -> String {
    format!(
        "session {n} {}: {}; caller audio {} ms as {}; {} answers; {} truncates; {} tool results",
        s.protocol,
        s.ended.as_deref().unwrap_or("open"),
        if s.audio_rate > 0 { s.audio_in.len() as u64 * 500 / u64::from(s.audio_rate) } else { 0 },
        if s.audio_format.is_empty() { "-" } else { &s.audio_format },
        s.answers_started.len(),
        s.truncates.len(),
        s.tool_outputs.len(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SimCommand;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(subcommand)]
        cmd: SimCommand,
    }

    fn parse(args: &[&str]) -> Result<FakeAiConfig, String> {
        let cli =
            Cli::try_parse_from(["sim", "ai"].into_iter().chain(args.iter().copied())).map_err(|e| e.to_string())?;
        match cli.cmd {
            SimCommand::Ai(args) => args.config(),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn arguments_become_the_fakes_behaviour() {
        let cfg =
            parse(&["--barge-in-ms", "1500", "--tool", "end_call={\"reason\":\"x\"}", "--fail", "close:800"]).unwrap();
        assert_eq!(cfg.barge_in_after, Some(Duration::from_millis(1500)));
        assert_eq!(cfg.tool_call, Some(("end_call".into(), serde_json::json!({ "reason": "x" }))));
        assert_eq!(cfg.failure, Some(FakeAiFailure::CloseAfter(Duration::from_millis(800))));
        assert_eq!(parse(&["--fail", "rate-limit"]).unwrap().failure, Some(FakeAiFailure::RateLimit));
        assert_eq!(parse(&["--tool", "t"]).unwrap().tool_call, Some(("t".into(), serde_json::json!({}))));
        assert!(parse(&["--fail", "sometimes"]).is_err());
        assert!(parse(&["--tool", "t={bad"]).is_err());
    }
}
