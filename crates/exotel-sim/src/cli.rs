//! The command line: `exogate sim call ...`, `exogate sim load ...`, `exogate sim exotel ...` and
//! `exogate sim bot ...` (the `exogate` binary embeds [`SimCommand`]).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::ArgGroup;
use exotel::SampleRate;

pub use crate::fake_bot::cli::BotArgs;
pub use crate::fake_exotel::cli::ExotelArgs;
use crate::{AudioSource, CallConfig, CallReport, LoadConfig, LoadReport, SimError, Target};

/// The call ran and the bot broke no rule.
const EXIT_OK: u8 = 0;
/// The call ran and the bot broke at least one rule.
const EXIT_VIOLATIONS: u8 = 1;
/// The call could not be set up (bad arguments, no session, unwritable recording).
const EXIT_SETUP: u8 = 2;

/// Exotel allows this many custom parameters on the Voicebot applet, in this many characters.
const MAX_CUSTOM_PARAMS: usize = 3;
const MAX_CUSTOM_PARAM_CHARS: usize = 256;

#[derive(Debug, clap::Subcommand)]
pub enum SimCommand {
    /// Plays Exotel for one call against a bot WebSocket: connected, start, caller audio in real
    /// time, DTMF, mark echoes as playback reaches them, stop. Checks everything the bot sends.
    /// Exit code 0: no violations; 1: violations; 2: the call could not be set up.
    Call(CallArgs),
    /// Runs N concurrent simulated Exotel calls against one WebSocket server (ramp, warmup, a
    /// steady window), matches echoed audio to the frames that produced it by stamps in the PCM,
    /// and reports echo latency, newest-frame delay, rule violations, and its own and the
    /// server's CPU and memory per call. Exit code 0: every call ran clean; 1: some failed or
    /// broke a rule; 2: the run could not be set up.
    Load(LoadArgs),
    /// Runs a fake Exotel: the Calls/connect REST API (Basic auth, validation, rate limit), then
    /// plays each call as Exotel would: Voicebot applet (dynamic URL + media leg), Passthru with
    /// Stream[...], status callbacks with retries. Runs until Ctrl-C.
    Exotel(ExotelArgs),
    /// Runs a fake upstream voice bot: a WebSocket server speaking Exotel Voicebot or Twilio
    /// Media Streams that echoes (plain, re-chunked, paced, with marks), greets, hangs up, dies,
    /// sends garbage or hangs, for testing a gateway's bridge. Prints `listening ws://...` and one
    /// line per ended connection; runs until Ctrl-C.
    Bot(BotArgs),
    /// Runs a fake voice AI provider: the OpenAI Realtime API (ws://…/v1/realtime) and the
    /// Gemini Live API on one port, for testing `openai-realtime` and `gemini-live` agents
    /// without the network. It hears the caller, answers with audio and transcripts, and can
    /// barge in, call a tool or fail on request. Runs until Ctrl-C.
    Ai(crate::fake_ai::AiArgs),
}

#[derive(Debug, Clone, clap::Args)]
#[command(group(ArgGroup::new("target").required(true).args(["url", "dynamic"])))]
pub struct CallArgs {
    /// The bot's WebSocket URL (ws:// or wss://; user:pass@ becomes Basic auth, as Exotel does).
    #[arg(long, value_name = "WS_URL")]
    pub url: Option<String>,
    /// An http(s) URL that answers {"url":"ws://..."}, as the applet's dynamic URL.
    #[arg(long, value_name = "HTTP_URL")]
    pub dynamic: Option<String>,
    /// Caller audio from a WAV file (any rate, channels, 8/16/24/32-bit int or 32-bit float).
    #[arg(long, value_name = "PATH", conflicts_with = "tone")]
    pub wav: Option<PathBuf>,
    /// Caller audio: a sine tone at this frequency (the default, at 440 Hz).
    #[arg(long, value_name = "HZ")]
    pub tone: Option<f32>,
    /// Length of the tone.
    #[arg(long, value_name = "MS", default_value_t = 3000, conflicts_with = "wav")]
    pub duration_ms: u32,
    /// Sample rate of the call: 8000, 16000 or 24000 (8k, 16k, 24k also accepted).
    #[arg(long, value_name = "HZ", default_value = "8000", value_parser = parse_rate)]
    pub rate: SampleRate,
    /// Milliseconds of caller audio per media frame (Exotel: 20 or ~100).
    #[arg(long, value_name = "MS", default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub frame_ms: u32,
    /// A DTMF digit at an offset from the first media frame, e.g. 1500=# (repeatable).
    #[arg(long = "dtmf", value_name = "MS=DIGIT", value_parser = parse_dtmf)]
    pub dtmf: Vec<DtmfAt>,
    /// A custom parameter, key=value (repeatable; Exotel allows 3).
    #[arg(long = "param", value_name = "KEY=VALUE", value_parser = parse_param)]
    pub params: Vec<(String, String)>,
    #[arg(long)]
    pub call_sid: Option<String>,
    #[arg(long)]
    pub stream_sid: Option<String>,
    #[arg(long)]
    pub account_sid: Option<String>,
    /// Caller number.
    #[arg(long)]
    pub from: Option<String>,
    /// Called number (the ExoPhone).
    #[arg(long)]
    pub to: Option<String>,
    /// Basic auth for the upgrade, user:pass.
    #[arg(long, value_name = "USER:PASS", env = "EXOTEL_SIM_AUTH", hide_env_values = true)]
    pub auth: Option<String>,
    /// Trust the certificates in this PEM file (a private CA or a self-signed certificate) for
    /// wss:// and https://, besides the public roots.
    #[arg(long, value_name = "PEM")]
    pub ca_cert: Option<PathBuf>,
    /// Write what the caller heard (after clears) as a WAV at the call's rate.
    #[arg(long, value_name = "OUT_WAV")]
    pub record: Option<PathBuf>,
    /// Write every byte of bot audio received (before clears) as a WAV.
    #[arg(long, value_name = "OUT_WAV")]
    pub record_received: Option<PathBuf>,
    /// After the caller's audio: end once the bot has been quiet this long and playback drained.
    #[arg(long, value_name = "MS", default_value_t = 1500)]
    pub idle_tail_ms: u64,
    /// After the caller's audio: end after this long at most.
    #[arg(long, value_name = "MS", default_value_t = 10_000)]
    pub max_tail_ms: u64,
    /// Only close the socket at the end; send no `stop` event.
    #[arg(long)]
    pub no_stop: bool,
    /// The `stop.reason` to send: callended (caller hung up) or stopped (applet ended).
    #[arg(long, value_name = "REASON", default_value = "callended")]
    pub stop_reason: String,
    /// Limit for the dynamic-URL request and for the WebSocket handshake, each.
    #[arg(long, value_name = "MS", default_value_t = 10_000)]
    pub connect_timeout_ms: u64,
    /// Print the report as JSON instead of the summary.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, clap::Args)]
#[command(group(ArgGroup::new("target").required(true).args(["url", "dynamic"])))]
pub struct LoadArgs {
    /// The server's WebSocket URL (ws:// or wss://; user:pass@ becomes Basic auth).
    #[arg(long, value_name = "WS_URL")]
    pub url: Option<String>,
    /// An http(s) URL that answers {"url":"ws://..."}; asked once, every call dials the answer.
    #[arg(long, value_name = "HTTP_URL")]
    pub dynamic: Option<String>,
    /// Concurrent calls.
    #[arg(long, value_name = "N", default_value_t = 100, value_parser = clap::value_parser!(u16).range(1..))]
    pub calls: u16,
    /// New calls per second while ramping up.
    #[arg(long, value_name = "PER_SEC", default_value_t = 200.0)]
    pub ramp: f64,
    /// Length of the steady window (all calls live), in seconds.
    #[arg(long, value_name = "SECS", default_value = "20", value_parser = parse_secs)]
    pub duration: Duration,
    /// From the last call's start to the steady window, in seconds (not measured).
    #[arg(long, value_name = "SECS", default_value = "3", value_parser = parse_secs)]
    pub warmup: Duration,
    /// Milliseconds of caller audio per media frame: 20, or Exotel's documented ~100 (10 or more).
    #[arg(long, value_name = "MS", default_value_t = 20, value_parser = clap::value_parser!(u32).range(10..=1000))]
    pub frame_ms: u32,
    /// Sample rate of the calls: 8000, 16000 or 24000 (8k, 16k, 24k also accepted).
    #[arg(long, value_name = "HZ", default_value = "8000", value_parser = parse_rate)]
    pub rate: SampleRate,
    /// Caller audio from a WAV file, looped (each 320-byte block's first 16 bytes carry a stamp).
    #[arg(long, value_name = "PATH", conflicts_with = "tone")]
    pub wav: Option<PathBuf>,
    /// Caller audio: a looped sine tone at this frequency (the default, at 440 Hz).
    #[arg(long, value_name = "HZ")]
    pub tone: Option<f32>,
    /// The server's process id: its CPU and RSS over the steady window are reported (Linux).
    #[arg(long, value_name = "PID")]
    pub server_pid: Option<u32>,
    /// Worker threads for the load generator (keep it small next to the server on a small box).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub threads: u16,
    /// A custom parameter sent in every start, key=value (repeatable).
    #[arg(long = "param", value_name = "KEY=VALUE", value_parser = parse_param)]
    pub params: Vec<(String, String)>,
    /// Basic auth for each upgrade, user:pass.
    #[arg(long, value_name = "USER:PASS", env = "EXOTEL_SIM_AUTH", hide_env_values = true)]
    pub auth: Option<String>,
    /// Limit for the dynamic-URL request and for each WebSocket handshake.
    #[arg(long, value_name = "MS", default_value_t = 10_000)]
    pub connect_timeout_ms: u64,
    /// Print the report as JSON instead of the summary.
    #[arg(long)]
    pub json: bool,
}

/// `--dtmf 1500=#`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DtmfAt {
    pub offset: Duration,
    pub digit: String,
}

pub async fn run(cmd: SimCommand) -> ExitCode {
    match cmd {
        SimCommand::Call(args) => call(args).await,
        SimCommand::Load(args) => load(args).await,
        SimCommand::Exotel(args) => crate::fake_exotel::cli::run(args).await,
        SimCommand::Bot(args) => crate::fake_bot::cli::run(args).await,
        SimCommand::Ai(args) => crate::fake_ai::run_cli(args).await,
    }
}

async fn call(args: CallArgs) -> ExitCode {
    let (json, record, record_received) = (args.json, args.record.clone(), args.record_received.clone());
    let cfg = match call_config(args) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("exotel-sim: {e:#}");
            return ExitCode::from(EXIT_SETUP);
        }
    };
    let rate = cfg.sample_rate;
    let report = match crate::run_call(cfg).await {
        Ok(report) => report,
        Err(e) => {
            eprintln!("exotel-sim: the call could not be set up: {e}");
            return ExitCode::from(EXIT_SETUP);
        }
    };
    if let Err(e) = print_report(&report, json) {
        eprintln!("exotel-sim: {e:#}");
        return ExitCode::from(EXIT_SETUP);
    }
    let recordings = [(record, &report.played_pcm), (record_received, &report.received_pcm)];
    for (path, pcm) in recordings.into_iter().filter_map(|(path, pcm)| path.map(|p| (p, pcm))) {
        if let Err(e) = crate::write_wav(&path, pcm, rate) {
            eprintln!("exotel-sim: recording not written: {e}");
            return ExitCode::from(EXIT_SETUP);
        }
    }
    ExitCode::from(if report.ok() { EXIT_OK } else { EXIT_VIOLATIONS })
}

async fn load(args: LoadArgs) -> ExitCode {
    let (json, threads) = (args.json, usize::from(args.threads));
    let cfg = match load_config(args) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("exotel-sim: {e:#}");
            return ExitCode::from(EXIT_SETUP);
        }
    };
    let ramp_secs = (cfg.calls.saturating_sub(1)) as f64 / cfg.ramp_per_sec;
    eprintln!(
        "exotel-sim: {} calls over {ramp_secs:.1} s, steady window {:.1} s after a {:.1} s warmup ({} load thread{})",
        cfg.calls,
        cfg.duration.as_secs_f64(),
        cfg.warmup.as_secs_f64(),
        threads,
        if threads == 1 { "" } else { "s" }
    );
    let report = match run_on_own_runtime(cfg, threads).await {
        Ok(report) => report,
        Err(e) => {
            eprintln!("exotel-sim: the load could not run: {e}");
            return ExitCode::from(EXIT_SETUP);
        }
    };
    let printed = if json {
        serde_json::to_string_pretty(&report).map(|text| println!("{text}"))
    } else {
        println!("{}", report.summary());
        Ok(())
    };
    if let Err(e) = printed {
        eprintln!("exotel-sim: report as JSON: {e}");
        return ExitCode::from(EXIT_SETUP);
    }
    ExitCode::from(if report.ok() { EXIT_OK } else { EXIT_VIOLATIONS })
}

/// The load gets a runtime of its own with `threads` workers, so `--threads` bounds what it can
/// take from the server's cores whatever runtime the caller runs.
async fn run_on_own_runtime(cfg: LoadConfig, threads: usize) -> Result<LoadReport, SimError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("sim-load".into())
        .spawn(move || {
            let result = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(threads)
                .thread_name("sim-load-worker")
                .enable_all()
                .build()
                .map_err(|e| SimError::Config(format!("cannot start the load runtime: {e}")))
                .and_then(|rt| rt.block_on(crate::run_load(cfg)));
            let _ = tx.send(result);
        })
        .map_err(|e| SimError::Config(format!("cannot start the load thread: {e}")))?;
    rx.await.map_err(|_| SimError::Config("the load thread died".into()))?
}

/// Turns `sim load` arguments into a run.
pub fn load_config(args: LoadArgs) -> anyhow::Result<LoadConfig> {
    let target = match (args.url, args.dynamic) {
        (Some(url), None) => Target::Ws(url),
        (None, Some(url)) => Target::Dynamic(url),
        _ => bail!("give exactly one of --url and --dynamic"),
    };
    if !(args.ramp.is_finite() && args.ramp > 0.0) {
        bail!("--ramp must be a positive number of calls per second");
    }
    if args.duration.is_zero() {
        bail!("--duration must be more than 0 seconds");
    }
    let defaults = LoadConfig::default();
    let audio = match (args.wav, args.tone) {
        (Some(path), _) => AudioSource::Wav(path),
        (None, Some(hz)) => AudioSource::Tone { hz, ms: 1000 },
        (None, None) => defaults.audio.clone(),
    };
    let custom_parameters: BTreeMap<String, String> = args.params.into_iter().collect();
    warn_about_param_limits(&custom_parameters);
    let basic_auth = match args.auth {
        Some(auth) => {
            let (user, pass) = auth.split_once(':').context("--auth must be user:pass")?;
            Some((user.to_string(), pass.to_string()))
        }
        None => None,
    };
    Ok(LoadConfig {
        target,
        calls: usize::from(args.calls),
        ramp_per_sec: args.ramp,
        duration: args.duration,
        warmup: args.warmup,
        frame_ms: args.frame_ms,
        sample_rate: args.rate,
        audio,
        server_pid: args.server_pid,
        connect_timeout: Duration::from_millis(args.connect_timeout_ms),
        custom_parameters,
        basic_auth,
        ..defaults
    })
}

fn print_report(report: &CallReport, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(report).context("report as JSON")?);
    } else {
        println!("{}", report.summary());
    }
    Ok(())
}

/// Turns the arguments into a call; warnings about Exotel's limits go to stderr.
pub fn call_config(args: CallArgs) -> anyhow::Result<CallConfig> {
    let target = match (args.url, args.dynamic) {
        (Some(url), None) => Target::Ws(url),
        (None, Some(url)) => Target::Dynamic(url),
        _ => bail!("give exactly one of --url and --dynamic"),
    };
    let audio = match (args.wav, args.tone) {
        (Some(path), _) => AudioSource::Wav(path),
        (None, hz) => AudioSource::Tone { hz: hz.unwrap_or(440.0), ms: args.duration_ms },
    };
    let custom_parameters: BTreeMap<String, String> = args.params.into_iter().collect();
    warn_about_param_limits(&custom_parameters);
    let basic_auth = match args.auth {
        Some(auth) => {
            let (user, pass) = auth.split_once(':').context("--auth must be user:pass")?;
            Some((user.to_string(), pass.to_string()))
        }
        None => None,
    };
    let defaults = CallConfig::default();
    Ok(CallConfig {
        target,
        sample_rate: args.rate,
        audio,
        frame_ms: args.frame_ms,
        dtmf: args.dtmf.into_iter().map(|d| (d.offset, d.digit)).collect(),
        call_sid: args.call_sid.unwrap_or(defaults.call_sid),
        stream_sid: args.stream_sid.unwrap_or(defaults.stream_sid),
        account_sid: args.account_sid.unwrap_or(defaults.account_sid),
        from: args.from.unwrap_or(defaults.from),
        to: args.to.unwrap_or(defaults.to),
        custom_parameters,
        basic_auth,
        idle_tail: Duration::from_millis(args.idle_tail_ms),
        max_tail: Duration::from_millis(args.max_tail_ms),
        send_stop: !args.no_stop,
        stop_reason: args.stop_reason,
        connect_timeout: Duration::from_millis(args.connect_timeout_ms),
        inject: defaults.inject,
        put_rate_in_url: defaults.put_rate_in_url,
        echo_marks: defaults.echo_marks,
        ca_cert: args.ca_cert,
    })
}

/// Exotel's limits are warned about, not enforced: testing a bot past them is legitimate.
fn warn_about_param_limits(params: &BTreeMap<String, String>) {
    if params.len() > MAX_CUSTOM_PARAMS {
        eprintln!(
            "exotel-sim: warning: Exotel allows at most {MAX_CUSTOM_PARAMS} custom parameters; sending {} anyway",
            params.len()
        );
    }
    // As they would sit in a query string: k=v joined by &.
    let chars = params.iter().map(|(k, v)| k.len() + v.len() + 1).sum::<usize>() + params.len().saturating_sub(1);
    if chars > MAX_CUSTOM_PARAM_CHARS {
        eprintln!(
            "exotel-sim: warning: custom parameters take {chars} characters; Exotel allows {MAX_CUSTOM_PARAM_CHARS}"
        );
    }
}

pub(crate) fn parse_rate(s: &str) -> Result<SampleRate, String> {
    let t = s.trim().to_ascii_lowercase();
    let t = if t.ends_with('k') { format!("{t}hz") } else { t };
    SampleRate::parse(&t).ok_or_else(|| format!("{s:?}: expected 8000, 16000 or 24000 (or 8k, 16k, 24k)"))
}

fn parse_secs(s: &str) -> Result<Duration, String> {
    let secs: f64 = s.trim().parse().map_err(|_| format!("{s:?}: expected a number of seconds"))?;
    Duration::try_from_secs_f64(secs).map_err(|_| format!("{s:?}: expected a non-negative number of seconds"))
}

fn parse_dtmf(s: &str) -> Result<DtmfAt, String> {
    let (ms, digit) = s.split_once('=').ok_or_else(|| format!("{s:?}: expected OFFSET_MS=DIGIT, e.g. 1500=#"))?;
    let ms: u64 = ms.trim().parse().map_err(|_| format!("{s:?}: {ms:?} is not a number of milliseconds"))?;
    let digit = digit.trim();
    let valid = digit.len() == 1 && digit.chars().all(|c| c.is_ascii_digit() || c == '*' || c == '#');
    if !valid {
        return Err(format!("{s:?}: a DTMF digit is one of 0-9, * or #"));
    }
    Ok(DtmfAt { offset: Duration::from_millis(ms), digit: digit.to_string() })
}

fn parse_param(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("{s:?}: expected key=value")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(subcommand)]
        cmd: SimCommand,
    }

    fn parse(args: &[&str]) -> Result<CallArgs, clap::Error> {
        let cli = Cli::try_parse_from(std::iter::once("sim").chain(args.iter().copied()))?;
        match cli.cmd {
            SimCommand::Call(args) => Ok(args),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn defaults() {
        let cfg = call_config(parse(&["call", "--url", "ws://127.0.0.1:9/m"]).unwrap()).unwrap();
        assert_eq!(cfg.target, Target::Ws("ws://127.0.0.1:9/m".into()));
        assert_eq!(cfg.audio, AudioSource::Tone { hz: 440.0, ms: 3000 });
        assert_eq!(cfg.sample_rate, SampleRate::Hz8000);
        assert_eq!(cfg.frame_ms, 20);
        assert!(cfg.send_stop);
        assert_eq!(cfg.stop_reason, "callended");
        assert_eq!(cfg.idle_tail, Duration::from_millis(1500));
        assert_eq!(cfg.max_tail, Duration::from_secs(10));
    }

    #[test]
    fn everything() {
        let args = parse(&[
            "call",
            "--dynamic",
            "http://127.0.0.1:9/u",
            "--tone",
            "300",
            "--duration-ms",
            "500",
            "--rate",
            "16k",
            "--frame-ms",
            "100",
            "--dtmf",
            "1500=#",
            "--dtmf",
            "0=5",
            "--param",
            "a=1",
            "--param",
            "b=x=y",
            "--call-sid",
            "C",
            "--from",
            "+911",
            "--to",
            "+912",
            "--auth",
            "u:p:q",
            "--idle-tail-ms",
            "200",
            "--max-tail-ms",
            "900",
            "--no-stop",
            "--json",
        ])
        .unwrap();
        assert!(args.json);
        let cfg = call_config(args).unwrap();
        assert_eq!(cfg.target, Target::Dynamic("http://127.0.0.1:9/u".into()));
        assert_eq!(cfg.audio, AudioSource::Tone { hz: 300.0, ms: 500 });
        assert_eq!(cfg.sample_rate, SampleRate::Hz16000);
        assert_eq!(cfg.frame_ms, 100);
        assert_eq!(cfg.dtmf, vec![(Duration::from_millis(1500), "#".into()), (Duration::ZERO, "5".into())]);
        assert_eq!(cfg.custom_parameters.get("b").map(String::as_str), Some("x=y"));
        assert_eq!((cfg.call_sid.as_str(), cfg.from.as_str(), cfg.to.as_str()), ("C", "+911", "+912"));
        assert_eq!(cfg.basic_auth, Some(("u".into(), "p:q".into())));
        assert_eq!((cfg.idle_tail, cfg.max_tail), (Duration::from_millis(200), Duration::from_millis(900)));
        assert!(!cfg.send_stop);
    }

    #[test]
    fn wav_source() {
        let cfg =
            call_config(parse(&["call", "--url", "ws://h/", "--wav", "/x.wav", "--rate", "24000"]).unwrap()).unwrap();
        assert_eq!(cfg.audio, AudioSource::Wav("/x.wav".into()));
        assert_eq!(cfg.sample_rate, SampleRate::Hz24000);
    }

    #[test]
    fn rejects() {
        for bad in [
            &["call"][..],
            &["call", "--url", "ws://h/", "--dynamic", "http://h/"],
            &["call", "--url", "ws://h/", "--wav", "a.wav", "--tone", "300"],
            &["call", "--url", "ws://h/", "--rate", "44100"],
            &["call", "--url", "ws://h/", "--dtmf", "abc=1"],
            &["call", "--url", "ws://h/", "--dtmf", "100=12"],
            &["call", "--url", "ws://h/", "--param", "novalue"],
            &["call", "--url", "ws://h/", "--frame-ms", "0"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?} parsed");
        }
        assert!(call_config(parse(&["call", "--url", "ws://h/", "--auth", "nocolon"]).unwrap()).is_err());
    }

    #[test]
    fn rate_forms() {
        assert_eq!(parse_rate("16k"), Ok(SampleRate::Hz16000));
        assert_eq!(parse_rate("24K"), Ok(SampleRate::Hz24000));
        assert_eq!(parse_rate("8000"), Ok(SampleRate::Hz8000));
        assert_eq!(parse_rate("16kHz"), Ok(SampleRate::Hz16000));
        assert!(parse_rate("22050").is_err());
    }

    fn parse_load(args: &[&str]) -> Result<LoadArgs, clap::Error> {
        let cli = Cli::try_parse_from(["sim", "load"].into_iter().chain(args.iter().copied()))?;
        match cli.cmd {
            SimCommand::Load(args) => Ok(args),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn load_defaults() {
        let args = parse_load(&["--url", "ws://127.0.0.1:9/"]).unwrap();
        assert_eq!((args.threads, args.json), (1, false));
        let cfg = load_config(args).unwrap();
        let d = LoadConfig::default();
        assert_eq!(cfg.target, Target::Ws("ws://127.0.0.1:9/".into()));
        assert_eq!((cfg.calls, cfg.ramp_per_sec, cfg.frame_ms), (100, 200.0, 20));
        assert_eq!((cfg.duration, cfg.warmup), (Duration::from_secs(20), Duration::from_secs(3)));
        assert_eq!((cfg.sample_rate, cfg.server_pid), (SampleRate::Hz8000, None));
        assert_eq!(cfg.audio, d.audio);
    }

    #[test]
    fn load_everything() {
        let args = parse_load(&[
            "--dynamic",
            "http://127.0.0.1:9/u",
            "--calls",
            "5000",
            "--ramp",
            "500",
            "--duration",
            "7.5",
            "--warmup",
            "0",
            "--frame-ms",
            "100",
            "--rate",
            "16k",
            "--tone",
            "300",
            "--server-pid",
            "42",
            "--threads",
            "2",
            "--param",
            "agentId=echo",
            "--auth",
            "u:p",
            "--json",
        ])
        .unwrap();
        assert_eq!((args.threads, args.json), (2, true));
        let cfg = load_config(args).unwrap();
        assert_eq!(cfg.target, Target::Dynamic("http://127.0.0.1:9/u".into()));
        assert_eq!((cfg.calls, cfg.ramp_per_sec, cfg.frame_ms), (5000, 500.0, 100));
        assert_eq!((cfg.duration, cfg.warmup), (Duration::from_millis(7500), Duration::ZERO));
        assert_eq!((cfg.sample_rate, cfg.server_pid), (SampleRate::Hz16000, Some(42)));
        assert_eq!(cfg.audio, AudioSource::Tone { hz: 300.0, ms: 1000 });
        assert_eq!(cfg.custom_parameters.get("agentId").map(String::as_str), Some("echo"));
        assert_eq!(cfg.basic_auth, Some(("u".into(), "p".into())));
    }

    #[test]
    fn load_rejects() {
        for bad in [
            &[][..],
            &["--url", "ws://h/", "--dynamic", "http://h/"],
            &["--url", "ws://h/", "--calls", "0"],
            &["--url", "ws://h/", "--calls", "70000"],
            &["--url", "ws://h/", "--frame-ms", "5"],
            &["--url", "ws://h/", "--duration", "-1"],
            &["--url", "ws://h/", "--duration", "abc"],
            &["--url", "ws://h/", "--threads", "0"],
            &["--url", "ws://h/", "--wav", "a.wav", "--tone", "300"],
        ] {
            assert!(parse_load(bad).is_err(), "{bad:?} parsed");
        }
        for bad in [&["--url", "ws://h/", "--ramp", "0"][..], &["--url", "ws://h/", "--duration", "0"]] {
            assert!(load_config(parse_load(bad).unwrap()).is_err(), "{bad:?} accepted");
        }
    }

    #[tokio::test]
    async fn load_against_nothing_exits_1() {
        // Every call fails to connect: the run completes and says so.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let url = format!("ws://127.0.0.1:{port}/");
        let args =
            parse_load(&["--url", &url, "--calls", "2", "--duration", "0.2", "--warmup", "0", "--json"]).unwrap();
        assert_eq!(run(SimCommand::Load(args)).await, ExitCode::from(EXIT_VIOLATIONS));
        let args = parse_load(&["--url", "http://127.0.0.1:9/", "--duration", "0.2"]).unwrap();
        assert_eq!(run(SimCommand::Load(args)).await, ExitCode::from(EXIT_SETUP), "not a ws URL");
    }

    #[tokio::test]
    async fn unreachable_bot_exits_2() {
        // A port that was just free: nothing listens there.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let url = format!("ws://127.0.0.1:{port}/");
        let args = parse(&["call", "--url", &url, "--duration-ms", "100"]).unwrap();
        assert_eq!(run(SimCommand::Call(args)).await, ExitCode::from(EXIT_SETUP));
    }
}
