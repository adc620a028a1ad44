//! Audio facts shared by both directions: Exotel streams mono PCM16LE at one of three rates.
//!
//! Bots rarely speak exactly that: speech services hand out 8 kHz G.711 (μ-law in the Americas and
//! Japan, A-law elsewhere) or PCM at 16, 24 or 48 kHz, while the call was negotiated at one rate for
//! its whole life. The conversions live here, next to the rates, so every agent converts the same
//! way instead of each carrying its own codec table and filter: [`g711`] for the companded
//! telephony codecs, [`resample`] for moving PCM between rates without clicks at chunk edges.

use std::fmt;

pub mod g711;
pub mod resample;

/// The three rates Exotel negotiates through the `sample-rate` URL parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SampleRate {
    #[default]
    Hz8000,
    Hz16000,
    Hz24000,
}

impl SampleRate {
    pub const ALL: [SampleRate; 3] = [SampleRate::Hz8000, SampleRate::Hz16000, SampleRate::Hz24000];

    pub fn from_hz(hz: u32) -> Option<Self> {
        match hz {
            8000 => Some(Self::Hz8000),
            16000 => Some(Self::Hz16000),
            24000 => Some(Self::Hz24000),
            _ => None,
        }
    }

    /// Parses `8000`, `"16000"`, `"16kHz"`, `"24000Hz"` (the forms seen in `start.media_format`).
    pub fn parse(text: &str) -> Option<Self> {
        crate::lenient::parse_hz(text).and_then(Self::from_hz)
    }

    pub fn hz(self) -> u32 {
        match self {
            Self::Hz8000 => 8000,
            Self::Hz16000 => 16000,
            Self::Hz24000 => 24000,
        }
    }

    /// PCM16 mono bytes per millisecond: 16, 32 or 48.
    pub fn bytes_per_ms(self) -> usize {
        self.hz() as usize * 2 / 1000
    }

    /// Playing time of `bytes` of PCM16 mono at this rate, in microseconds.
    pub fn duration_us(self, bytes: usize) -> u64 {
        bytes as u64 * 1_000_000 / (self.hz() as u64 * 2)
    }
}

impl fmt::Display for SampleRate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.hz())
    }
}

/// Signal measurements shared by the codec and resampler tests.
#[cfg(test)]
pub(crate) mod testutil {
    use std::path::PathBuf;

    /// Mono PCM16 samples and their rate from `testdata/audio/<name>`.
    pub(crate) fn wav(name: &str) -> (Vec<i16>, u32) {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/audio").join(name);
        let reader = hound::WavReader::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let spec = reader.spec();
        assert_eq!((spec.channels, spec.bits_per_sample), (1, 16), "{name} must be mono PCM16");
        let samples = reader.into_samples::<i16>().collect::<Result<Vec<_>, _>>().unwrap();
        (samples, spec.sample_rate)
    }

    /// The three speech recordings in `testdata/audio`.
    pub(crate) const SPEECH: [&str; 3] =
        ["caller-hindi-bill-8k.wav", "caller-order-status-8k.wav", "caller-order-number-16k.wav"];

    /// `amplitude · sin(2π·freq·n/rate + phase)`, `len` samples, not quantised.
    pub(crate) fn sine(freq: f64, rate: u32, amplitude: f64, phase: f64, len: usize) -> Vec<f64> {
        (0..len)
            .map(|n| amplitude * (2.0 * std::f64::consts::PI * freq * n as f64 / f64::from(rate) + phase).sin())
            .collect()
    }

    /// Rounds to PCM16, saturating.
    pub(crate) fn quantise(x: &[f64]) -> Vec<i16> {
        x.iter().map(|v| v.round().clamp(-32768.0, 32767.0) as i16).collect()
    }

    pub(crate) fn to_le(samples: &[i16]) -> Vec<u8> {
        samples.iter().flat_map(|s| s.to_le_bytes()).collect()
    }

    pub(crate) fn from_le(bytes: &[u8]) -> Vec<i16> {
        assert_eq!(bytes.len() % 2, 0);
        bytes.chunks_exact(2).map(|c| i16::from_le_bytes([c[0], c[1]])).collect()
    }

    pub(crate) fn to_f64(samples: &[i16]) -> Vec<f64> {
        samples.iter().map(|&s| f64::from(s)).collect()
    }

    /// Signal-to-noise ratio in dB of `actual` against `reference` (equal lengths).
    pub(crate) fn snr_db(reference: &[f64], actual: &[f64]) -> f64 {
        assert_eq!(reference.len(), actual.len());
        let signal: f64 = reference.iter().map(|r| r * r).sum();
        let noise: f64 = reference.iter().zip(actual).map(|(r, a)| (r - a) * (r - a)).sum();
        10.0 * (signal / noise.max(f64::MIN_POSITIVE)).log10()
    }

    pub(crate) fn rms(x: &[f64]) -> f64 {
        (x.iter().map(|v| v * v).sum::<f64>() / x.len() as f64).sqrt()
    }
}
