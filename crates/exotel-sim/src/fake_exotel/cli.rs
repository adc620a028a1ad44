//! `exogate sim exotel ...`: the fake Exotel as a long-running process.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use exotel::SampleRate;
use exotel::redact::redact_url;
use tokio::sync::broadcast::error::RecvError;

use super::{FakeExotel, FakeExotelConfig, Script};
use crate::AudioSource;

/// The server could not start (bad arguments, port taken, unreadable WAV).
const EXIT_SETUP: u8 = 2;

#[derive(Debug, Clone, clap::Args)]
pub struct ExotelArgs {
    /// Port to listen on.
    #[arg(long, default_value_t = 4010)]
    pub port: u16,
    /// Address to listen on.
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    pub bind: IpAddr,
    /// Account SID: the {sid} in /v1/Accounts/{sid}/...
    #[arg(long, default_value = "exotelsim")]
    pub sid: String,
    /// API key expected in Basic auth.
    #[arg(long, default_value = "fake-key")]
    pub key: String,
    /// API token expected in Basic auth (never printed).
    #[arg(
        long,
        env = "EXOTEL_SIM_TOKEN",
        hide_env_values = true,
        default_value = "fake-token",
        hide_default_value = true
    )]
    pub token: String,
    /// The flow's Voicebot applet URL: http(s) dynamic URL answering {"url":...}, or ws(s)://.
    #[arg(long, value_name = "URL")]
    pub voicebot_url: Option<String>,
    /// A Passthru applet after the Voicebot applet (GET; 200 and 302 are recorded, not followed).
    #[arg(long, value_name = "URL")]
    pub passthru_url: Option<String>,
    /// The customer's audio from a WAV file.
    #[arg(long, value_name = "PATH", conflicts_with = "tone")]
    pub wav: Option<PathBuf>,
    /// The customer's audio: a tone at this frequency (the default, at 440 Hz).
    #[arg(long, value_name = "HZ")]
    pub tone: Option<f32>,
    /// Length of the tone.
    #[arg(long, value_name = "MS", default_value_t = 1500, conflicts_with = "wav")]
    pub duration_ms: u32,
    /// Sample rate of the media leg: 8000, 16000 or 24000 (8k, 16k, 24k also accepted).
    #[arg(long, value_name = "HZ", default_value = "8000", value_parser = crate::cli::parse_rate)]
    pub rate: SampleRate,
    /// A script for one customer number, NUMBER=SCRIPT (repeatable). SCRIPT: answer, busy,
    /// no-answer, fail (each with :SECS: ring that long, or for answer stay on the line that long
    /// after speaking), hang[:SECS], http:STATUS[:RETRY_AFTER[:MESSAGE]].
    #[arg(long = "script", value_name = "NUMBER=SCRIPT", value_parser = super::script::parse_number_script)]
    pub scripts: Vec<(String, Script)>,
    /// The script for every other number.
    #[arg(long, value_name = "SCRIPT", default_value = "answer")]
    pub default_script: Script,
    /// Calls/connect requests allowed per minute before 429 (Exotel: 200). Unlimited if absent.
    #[arg(long, value_name = "N")]
    pub rate_limit: Option<u32>,
    /// The account's ExoPhone (To / PhoneNumberSid).
    #[arg(long, default_value = "08047491899")]
    pub exophone: String,
    /// Milliseconds of customer audio per media frame.
    #[arg(long, value_name = "MS", default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub frame_ms: u32,
    /// After the customer's audio: hang up once the bot has been quiet this long.
    #[arg(long, value_name = "MS", default_value_t = 800)]
    pub idle_tail_ms: u64,
    /// After the customer's audio: hang up after this long at most.
    #[arg(long, value_name = "MS", default_value_t = 5000)]
    pub max_tail_ms: u64,
}

impl ExotelArgs {
    pub fn config(&self) -> FakeExotelConfig {
        let audio = match (&self.wav, self.tone) {
            (Some(path), _) => AudioSource::Wav(path.clone()),
            (None, hz) => AudioSource::Tone { hz: hz.unwrap_or(440.0), ms: self.duration_ms },
        };
        FakeExotelConfig {
            sid: self.sid.clone(),
            api_key: self.key.clone(),
            api_token: self.token.clone(),
            voicebot_url: self.voicebot_url.clone(),
            passthru_url: self.passthru_url.clone(),
            audio,
            sample_rate: self.rate,
            rate_limit: self.rate_limit,
            scripts: self.scripts.iter().cloned().collect::<HashMap<_, _>>(),
            default_script: self.default_script.clone(),
            exophone: self.exophone.clone(),
            frame_ms: self.frame_ms,
            dtmf: Vec::new(),
            idle_tail: Duration::from_millis(self.idle_tail_ms),
            max_tail: Duration::from_millis(self.max_tail_ms),
        }
    }
}

/// Runs until Ctrl-C, one line per request and per finished call on stdout.
pub async fn run(args: ExotelArgs) -> ExitCode {
    let cfg = args.config();
    let fake = match FakeExotel::start_on(cfg, SocketAddr::new(args.bind, args.port)).await {
        Ok(fake) => fake,
        Err(e) => {
            eprintln!("exotel-sim: {e}");
            return ExitCode::from(EXIT_SETUP);
        }
    };
    let mut events = fake.subscribe();
    println!("fake Exotel listening on {} (account {}, key {})", fake.base_url(), args.sid, args.key);
    println!(
        "  POST {0}/v1/Accounts/{1}/Calls/connect.json   GET {0}/v1/Accounts/{1}/Calls/<Sid>.json",
        fake.base_url(),
        args.sid
    );
    let show = |u: &Option<String>| u.as_deref().map_or_else(|| "(none)".to_string(), redact_url);
    println!("  voicebot applet: {}; passthru: {}", show(&args.voicebot_url), show(&args.passthru_url));
    let shutdown = tokio::signal::ctrl_c();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            event = events.recv() => match event {
                Ok(event) => println!("{event}"),
                Err(RecvError::Lagged(n)) => println!("({n} lines skipped)"),
                Err(RecvError::Closed) => break,
            },
        }
    }
    println!("shutting down");
    fake.shutdown().await;
    ExitCode::SUCCESS
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

    fn parse(args: &[&str]) -> Result<ExotelArgs, clap::Error> {
        let cli = Cli::try_parse_from(std::iter::once("sim").chain(args.iter().copied()))?;
        match cli.cmd {
            SimCommand::Exotel(args) => Ok(args),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn defaults() {
        let cfg = parse(&["exotel"]).unwrap().config();
        let d = FakeExotelConfig::default();
        assert_eq!((cfg.sid, cfg.api_key, cfg.api_token), (d.sid, d.api_key, d.api_token));
        assert_eq!(cfg.audio, AudioSource::Tone { hz: 440.0, ms: 1500 });
        assert_eq!(cfg.exophone, "08047491899");
        assert_eq!(cfg.default_script, Script::Answer);
        assert!(cfg.scripts.is_empty() && cfg.rate_limit.is_none() && cfg.voicebot_url.is_none());
    }

    #[test]
    fn everything() {
        let args = parse(&[
            "exotel",
            "--port",
            "4999",
            "--sid",
            "acme",
            "--key",
            "k",
            "--token",
            "t",
            "--voicebot-url",
            "http://127.0.0.1:8080/vb",
            "--passthru-url",
            "http://127.0.0.1:8080/pt",
            "--tone",
            "300",
            "--duration-ms",
            "900",
            "--rate",
            "16k",
            "--script",
            "+91 98765 43210=busy",
            "--script",
            "0801=http:429:30",
            "--default-script",
            "no-answer",
            "--rate-limit",
            "200",
        ])
        .unwrap();
        assert_eq!(args.port, 4999);
        let cfg = args.config();
        assert_eq!((cfg.sid.as_str(), cfg.api_key.as_str(), cfg.api_token.as_str()), ("acme", "k", "t"));
        assert_eq!(cfg.audio, AudioSource::Tone { hz: 300.0, ms: 900 });
        assert_eq!(cfg.sample_rate, SampleRate::Hz16000);
        assert_eq!(cfg.scripts.get("+919876543210"), Some(&Script::Busy));
        assert_eq!(cfg.scripts.get("0801"), Some(&Script::http_error(429, Some(30))));
        assert_eq!(cfg.default_script, Script::NoAnswer);
        assert_eq!(cfg.rate_limit, Some(200));
        // The token never shows in Debug output.
        assert!(!format!("{cfg:?}").contains("\"t\""));
    }

    #[test]
    fn wav_and_rejects() {
        assert_eq!(parse(&["exotel", "--wav", "/x.wav"]).unwrap().config().audio, AudioSource::Wav("/x.wav".into()));
        for bad in [
            &["exotel", "--wav", "a.wav", "--tone", "300"][..],
            &["exotel", "--script", "busy"],
            &["exotel", "--script", "0801=ring"],
            &["exotel", "--default-script", "x"],
            &["exotel", "--rate", "44100"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[tokio::test]
    async fn port_in_use_exits_2() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port().to_string();
        let args = parse(&["exotel", "--port", &port]).unwrap();
        assert_eq!(run(args).await, ExitCode::from(EXIT_SETUP));
    }
}
