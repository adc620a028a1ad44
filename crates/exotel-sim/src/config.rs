//! What one simulated call looks like: where it goes, what the caller says, and when it ends.

use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};
use std::path::PathBuf;
use std::time::Duration;

use exotel::SampleRate;

use crate::SimError;

/// Where the Voicebot applet points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A `ws://` or `wss://` URL, dialled directly.
    Ws(String),
    /// An `http(s)://` URL that answers `{"url":"ws://..."}` (docs/protocol.md §2.3).
    Dynamic(String),
}

/// What the caller says.
#[derive(Debug, Clone, PartialEq)]
pub enum AudioSource {
    /// Any WAV; converted to mono PCM16 at the call's rate.
    Wav(PathBuf),
    Tone {
        hz: f32,
        ms: u32,
    },
    /// PCM16LE mono already at the call's rate, sent as is.
    Pcm(Vec<u8>),
    Silence {
        ms: u32,
    },
}

impl AudioSource {
    /// The caller PCM for a call at `rate`.
    pub fn render(&self, rate: SampleRate) -> Result<Vec<u8>, SimError> {
        Ok(match self {
            Self::Wav(path) => crate::load_wav(path, rate)?,
            Self::Tone { hz, ms } => crate::tone(*hz, *ms, rate),
            Self::Pcm(pcm) => pcm.clone(),
            Self::Silence { ms } => vec![0; *ms as usize * rate.bytes_per_ms()],
        })
    }
}

/// A raw frame sent as is, for fault-injection tests of the bot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Injected {
    Text(String),
    Binary(Vec<u8>),
}

#[derive(Debug, Clone)]
pub struct CallConfig {
    pub target: Target,
    pub sample_rate: SampleRate,
    pub audio: AudioSource,
    /// Inbound media cadence. Exotel documents ~100 ms; older docs and field notes say 20 ms.
    pub frame_ms: u32,
    /// DTMF digits, each sent at its offset from the first media frame.
    pub dtmf: Vec<(Duration, String)>,
    /// Raw frames, each sent at its offset from the first media frame.
    pub inject: Vec<(Duration, Injected)>,
    pub call_sid: String,
    pub stream_sid: String,
    pub account_sid: String,
    pub from: String,
    pub to: String,
    /// Sent in `start.custom_parameters`, and for [`Target::Dynamic`] on the URL request too.
    pub custom_parameters: BTreeMap<String, String>,
    /// Append `sample-rate=<hz>` to the WebSocket URL when it has none and the rate is not 8000,
    /// as the applet does.
    pub put_rate_in_url: bool,
    /// Sent as `Authorization: Basic` on the upgrade. Userinfo in the WebSocket URL becomes this
    /// header as well, as Exotel does; this field wins when both are given.
    pub basic_auth: Option<(String, String)>,
    /// After the caller's last frame: end once no bot media came for this long, playback has
    /// drained and every mark has been echoed…
    pub idle_tail: Duration,
    /// …or after this long, whichever is first.
    pub max_tail: Duration,
    /// End with `stop` (then close 1000); otherwise only close 1000.
    pub send_stop: bool,
    /// Echo the bot's marks as playback reaches them. Off: a caller whose echoes never come (or
    /// come too late to matter), to test what a bot does before its first echo.
    pub echo_marks: bool,
    pub stop_reason: String,
    /// For the dynamic-URL request and for the WebSocket handshake, each.
    pub connect_timeout: Duration,
    /// A PEM file of certificates trusted besides the public roots (a private CA, a self-signed
    /// certificate) for `wss://` and `https://`.
    pub ca_cert: Option<std::path::PathBuf>,
}

impl Default for CallConfig {
    fn default() -> Self {
        Self {
            target: Target::Ws("ws://127.0.0.1:8765/".into()),
            sample_rate: SampleRate::Hz8000,
            audio: AudioSource::Tone { hz: 440.0, ms: 2000 },
            frame_ms: 20,
            dtmf: Vec::new(),
            inject: Vec::new(),
            call_sid: random_sid(),
            stream_sid: random_sid(),
            account_sid: "exotelsim".into(),
            from: "+919876543210".into(),
            to: "+918047491899".into(),
            custom_parameters: BTreeMap::new(),
            put_rate_in_url: true,
            basic_auth: None,
            idle_tail: Duration::from_millis(1500),
            max_tail: Duration::from_secs(10),
            send_stop: true,
            echo_marks: true,
            stop_reason: "callended".into(),
            connect_timeout: Duration::from_secs(10),
            ca_cert: None,
        }
    }
}

/// 32 hex characters, like Exotel's SIDs. Unique per call, not secret: std's per-process random
/// hasher keys are enough, and spare a dependency.
pub fn random_sid() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    (0..2u8)
        .map(|i| {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u128(nanos);
            h.write_u8(i);
            format!("{:016x}", h.finish())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sids_are_32_hex_and_distinct() {
        let a = random_sid();
        let b = random_sid();
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
        let cfg = CallConfig::default();
        assert_ne!(cfg.call_sid, cfg.stream_sid);
    }

    #[test]
    fn sources_render_at_the_call_rate() {
        assert_eq!(AudioSource::Silence { ms: 100 }.render(SampleRate::Hz24000).unwrap(), vec![0; 4800]);
        assert_eq!(AudioSource::Tone { hz: 440.0, ms: 100 }.render(SampleRate::Hz16000).unwrap().len(), 3200);
        assert_eq!(AudioSource::Pcm(vec![1, 2, 3]).render(SampleRate::Hz8000).unwrap(), vec![1, 2, 3]);
    }
}
