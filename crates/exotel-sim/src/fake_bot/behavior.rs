//! What the fake bot does with a call, and its command-line spelling (`chunked:320`,
//! `paced:40:2`, …), which `Display` writes back the same way.

use std::fmt;
use std::str::FromStr;

/// How the fake bot answers once it has seen `start`. In every behavior but [`Behavior::Silent`],
/// DTMF `#` makes it send `clear` and DTMF `*` makes it close the socket with 1000.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Behavior {
    /// Echo caller audio back as it arrives, one message per received media message (Exotel's
    /// own echo sample shape when inbound is 320-byte frames).
    #[default]
    Echo,
    /// Echo re-cut into messages of `bytes` payload bytes each (e.g. 320), sent as soon as
    /// available. A tail shorter than `bytes` waits for more audio and is never sent alone.
    EchoChunked { bytes: usize },
    /// Buffer the caller's audio and send it back in bursts at `speed`× real time with
    /// `chunk_ms` messages (Pipecat-like: 40 ms at 2×). A partial chunk goes out once the caller
    /// has been quiet for `chunk_ms`.
    EchoPaced { chunk_ms: u32, speed: f32 },
    /// After every `every_ms` of echoed audio, send a mark named "bot-N" (N = 1, 2, …). An echo
    /// that crosses a boundary is split there, so each mark sits exactly on its boundary.
    EchoWithMarks { every_ms: u32 },
    /// Send `ms` of a 440 Hz tone (PCM16 at the rate from `start` for Exotel, μ-law 8 kHz for
    /// Twilio) as fast as possible, then a mark "greeting-done", then echo.
    Greeting { ms: u32 },
    /// Echo, and close the socket (close frame 1000) `after_ms` after `start`.
    HangUpAfter { after_ms: u64 },
    /// Echo, then drop the TCP connection without a close frame `after_ms` after `start`
    /// (mid-call death).
    DieAfter { after_ms: u64 },
    /// After `start`, send `count` garbage messages cycling through non-JSON text, a binary
    /// frame and JSON with an unknown event (so 10 is 4 text, 3 binary, 3 unknown), then echo.
    Garbage { count: usize },
    /// Accept the socket but never send anything and never read (a hung bot). DTMF cannot
    /// reach it.
    Silent,
}

/// Pipecat's output: 40 ms chunks at about 2× real time (docs/twilio.md §2).
const PACED_DEFAULT: (u32, f32) = (40, 2.0);

impl FromStr for Behavior {
    type Err = String;

    /// `echo`, `chunked:BYTES`, `paced[:CHUNK_MS[:SPEED]]`, `marks:EVERY_MS`, `greeting:MS`,
    /// `hangup:AFTER_MS`, `die:AFTER_MS`, `garbage:COUNT`, `silent`.
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let mut parts = s.split(':');
        let name = parts.next().unwrap_or_default().to_ascii_lowercase();
        let args: Vec<&str> = parts.collect();
        let arity = |min: usize, max: usize| -> Result<(), String> {
            if args.len() < min || args.len() > max {
                Err(format!("{s:?}: {name} takes {}", if max == 0 { "no argument".into() } else { usage(&name) }))
            } else {
                Ok(())
            }
        };
        let behavior = match name.as_str() {
            "echo" => arity(0, 0).map(|()| Self::Echo)?,
            "silent" => arity(0, 0).map(|()| Self::Silent)?,
            "chunked" => {
                arity(1, 1)?;
                Self::EchoChunked { bytes: positive(s, args[0])? }
            }
            "paced" => {
                arity(0, 2)?;
                let chunk_ms = args.first().map_or(Ok(PACED_DEFAULT.0), |a| positive(s, a))?;
                let speed = match args.get(1) {
                    Some(a) => a.trim().parse::<f32>().map_err(|_| format!("{s:?}: {a:?} is not a speed"))?,
                    None => PACED_DEFAULT.1,
                };
                if !(speed.is_finite() && speed > 0.0) {
                    return Err(format!("{s:?}: the speed must be a positive number"));
                }
                Self::EchoPaced { chunk_ms, speed }
            }
            "marks" => {
                arity(1, 1)?;
                Self::EchoWithMarks { every_ms: positive(s, args[0])? }
            }
            "greeting" => {
                arity(1, 1)?;
                Self::Greeting { ms: number(s, args[0])? }
            }
            "hangup" => {
                arity(1, 1)?;
                Self::HangUpAfter { after_ms: number(s, args[0])? }
            }
            "die" => {
                arity(1, 1)?;
                Self::DieAfter { after_ms: number(s, args[0])? }
            }
            "garbage" => {
                arity(1, 1)?;
                Self::Garbage { count: number(s, args[0])? }
            }
            _ => {
                return Err(format!(
                    "{s:?}: expected echo, chunked:BYTES, paced:CHUNK_MS:SPEED, marks:EVERY_MS, greeting:MS, \
                     hangup:AFTER_MS, die:AFTER_MS, garbage:COUNT or silent"
                ));
            }
        };
        Ok(behavior)
    }
}

fn usage(name: &str) -> String {
    match name {
        "chunked" => "a byte count, chunked:BYTES".into(),
        "paced" => "paced[:CHUNK_MS[:SPEED]]".into(),
        "marks" => "marks:EVERY_MS".into(),
        "greeting" => "greeting:MS".into(),
        "hangup" | "die" => format!("{name}:AFTER_MS"),
        "garbage" => "garbage:COUNT".into(),
        _ => "arguments".into(),
    }
}

fn number<T: FromStr>(whole: &str, arg: &str) -> Result<T, String> {
    arg.trim().parse().map_err(|_| format!("{whole:?}: {arg:?} is not a whole number"))
}

/// A zero chunk, mark interval or chunk length would make the bot loop or never answer.
fn positive<T: FromStr + PartialOrd + Default>(whole: &str, arg: &str) -> Result<T, String> {
    let n: T = number(whole, arg)?;
    if n > T::default() { Ok(n) } else { Err(format!("{whole:?}: {arg:?} must be more than 0")) }
}

impl fmt::Display for Behavior {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Echo => write!(f, "echo"),
            Self::EchoChunked { bytes } => write!(f, "chunked:{bytes}"),
            Self::EchoPaced { chunk_ms, speed } => write!(f, "paced:{chunk_ms}:{speed}"),
            Self::EchoWithMarks { every_ms } => write!(f, "marks:{every_ms}"),
            Self::Greeting { ms } => write!(f, "greeting:{ms}"),
            Self::HangUpAfter { after_ms } => write!(f, "hangup:{after_ms}"),
            Self::DieAfter { after_ms } => write!(f, "die:{after_ms}"),
            Self::Garbage { count } => write!(f, "garbage:{count}"),
            Self::Silent => write!(f, "silent"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_round_trips() {
        for (text, behavior) in [
            ("echo", Behavior::Echo),
            ("chunked:320", Behavior::EchoChunked { bytes: 320 }),
            ("paced:40:2", Behavior::EchoPaced { chunk_ms: 40, speed: 2.0 }),
            ("paced:20:1.5", Behavior::EchoPaced { chunk_ms: 20, speed: 1.5 }),
            ("marks:500", Behavior::EchoWithMarks { every_ms: 500 }),
            ("greeting:2000", Behavior::Greeting { ms: 2000 }),
            ("hangup:3000", Behavior::HangUpAfter { after_ms: 3000 }),
            ("die:3000", Behavior::DieAfter { after_ms: 3000 }),
            ("garbage:10", Behavior::Garbage { count: 10 }),
            ("silent", Behavior::Silent),
        ] {
            assert_eq!(text.parse::<Behavior>(), Ok(behavior.clone()), "{text}");
            assert_eq!(behavior.to_string(), text);
        }
    }

    #[test]
    fn lenient_spellings() {
        assert_eq!("paced".parse(), Ok(Behavior::EchoPaced { chunk_ms: 40, speed: 2.0 }));
        assert_eq!("paced:20".parse(), Ok(Behavior::EchoPaced { chunk_ms: 20, speed: 2.0 }));
        assert_eq!(" Echo ".parse(), Ok(Behavior::Echo));
        assert_eq!("greeting:0".parse(), Ok(Behavior::Greeting { ms: 0 }));
    }

    #[test]
    fn rejects() {
        for bad in [
            "",
            "loud",
            "echo:1",
            "chunked",
            "chunked:0",
            "chunked:-1",
            "chunked:1:2",
            "paced:0",
            "paced:40:0",
            "paced:40:-2",
            "paced:40:nan",
            "paced:40:inf",
            "paced:40:2:1",
            "marks:0",
            "greeting:x",
            "hangup",
            "die:1.5",
            "garbage:",
            "silent:1",
        ] {
            assert!(bad.parse::<Behavior>().is_err(), "{bad:?} parsed");
        }
    }
}
