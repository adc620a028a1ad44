//! `exogate sim bot ...`: the fake bot as a long-running process.

use std::process::ExitCode;
use std::time::Duration;

use super::{Behavior, BotConfig, BotProtocol, BotSession, FakeBot};

/// The bot could not start (port taken).
const EXIT_SETUP: u8 = 2;

#[derive(Debug, Clone, clap::Args)]
pub struct BotArgs {
    /// Port to listen on, on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 9000)]
    pub port: u16,
    /// The protocol the bot speaks: exotel (Voicebot, PCM16) or twilio (Media Streams, μ-law).
    #[arg(long, value_name = "exotel|twilio")]
    pub protocol: BotProtocol,
    /// echo, chunked:BYTES, paced:CHUNK_MS:SPEED, marks:EVERY_MS, greeting:MS, hangup:AFTER_MS,
    /// die:AFTER_MS, garbage:COUNT or silent. In all but silent, DTMF # sends clear and * hangs up.
    #[arg(long, value_name = "BEHAVIOR", default_value = "echo")]
    pub behavior: Behavior,
    /// Wait this long after accepting a connection before completing the WebSocket handshake.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub accept_delay_ms: u64,
}

impl BotArgs {
    pub fn config(&self) -> BotConfig {
        BotConfig {
            protocol: self.protocol,
            behavior: self.behavior.clone(),
            accept_delay: Duration::from_millis(self.accept_delay_ms),
        }
    }
}

/// Runs until Ctrl-C, one line per ended connection on stdout.
pub async fn run(args: BotArgs) -> ExitCode {
    let bot = match FakeBot::start(args.port, args.config()).await {
        Ok(bot) => bot,
        Err(e) => {
            eprintln!("exotel-sim: cannot listen on 127.0.0.1:{}: {e}", args.port);
            return ExitCode::from(EXIT_SETUP);
        }
    };
    println!("listening {} ({} protocol, behavior {})", bot.url(), args.protocol, args.behavior);
    let mut ended = bot.ended_watch();
    let mut reported = Vec::new();
    let shutdown = tokio::signal::ctrl_c();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            changed = ended.changed() => {
                if changed.is_err() {
                    break;
                }
                report_new(&bot.sessions(), &mut reported);
            }
        }
    }
    println!("shutting down");
    bot.shutdown();
    ExitCode::SUCCESS
}

/// Prints the sessions that ended since the last call; `reported[i]` remembers session i.
fn report_new(sessions: &[BotSession], reported: &mut Vec<bool>) {
    reported.resize(sessions.len(), false);
    for (i, s) in sessions.iter().enumerate() {
        if let (Some(reason), false) = (&s.ended, reported[i]) {
            reported[i] = true;
            println!("{}", summary(i + 1, s, reason));
        }
    }
}

fn summary(n: usize, s: &BotSession, reason: &str) -> String {
    let mut line = format!(
        "session {n} {}: {reason}; in {} B, out {} B; {} messages",
        if s.path_and_query.is_empty() { "-" } else { &s.path_and_query },
        s.audio_in.len(),
        s.audio_out.len(),
        s.received.len()
    );
    if !s.marks_echoed.is_empty() {
        line.push_str(&format!(", {} marks echoed", s.marks_echoed.len()));
    }
    if s.clears_received > 0 {
        line.push_str(&format!(", {} clears", s.clears_received));
    }
    if s.binary_frames > 0 {
        line.push_str(&format!(", {} binary frames", s.binary_frames));
    }
    line
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

    fn parse(args: &[&str]) -> Result<BotArgs, clap::Error> {
        let cli = Cli::try_parse_from(["sim", "bot"].into_iter().chain(args.iter().copied()))?;
        match cli.cmd {
            SimCommand::Bot(args) => Ok(args),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn defaults() {
        let args = parse(&["--protocol", "exotel"]).unwrap();
        assert_eq!(args.port, 9000);
        let cfg = args.config();
        assert_eq!(
            (cfg.protocol, cfg.behavior, cfg.accept_delay),
            (BotProtocol::Exotel, Behavior::Echo, Duration::ZERO)
        );
    }

    #[test]
    fn everything() {
        let args =
            parse(&["--port", "0", "--protocol", "twilio", "--behavior", "paced:40:2", "--accept-delay-ms", "250"])
                .unwrap();
        assert_eq!(args.port, 0);
        let cfg = args.config();
        assert_eq!(cfg.protocol, BotProtocol::Twilio);
        assert_eq!(cfg.behavior, Behavior::EchoPaced { chunk_ms: 40, speed: 2.0 });
        assert_eq!(cfg.accept_delay, Duration::from_millis(250));
    }

    #[test]
    fn rejects() {
        for bad in [
            &[][..],
            &["--protocol", "sip"],
            &["--protocol", "exotel", "--behavior", "chunked:0"],
            &["--protocol", "exotel", "--behavior", "loud"],
            &["--protocol", "exotel", "--accept-delay-ms", "-1"],
            &["--protocol", "exotel", "--port", "70000"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn summary_lines() {
        let s = BotSession {
            path_and_query: "/ws?a=1".into(),
            audio_in: vec![0; 320],
            audio_out: vec![0; 640],
            marks_echoed: vec!["bot-1".into()],
            ..BotSession::default()
        };
        assert_eq!(
            summary(2, &s, "closed 1000"),
            "session 2 /ws?a=1: closed 1000; in 320 B, out 640 B; 0 messages, 1 marks echoed"
        );
        let mut reported = Vec::new();
        report_new(&[s.clone(), BotSession { ended: Some("dropped".into()), ..s }], &mut reported);
        assert_eq!(reported, vec![false, true]);
    }

    #[tokio::test]
    async fn port_in_use_exits_2() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port().to_string();
        let args = parse(&["--protocol", "exotel", "--port", &port]).unwrap();
        assert_eq!(run(args).await, ExitCode::from(EXIT_SETUP));
    }
}
