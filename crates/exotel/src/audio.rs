//! Audio facts shared by both directions: Exotel streams mono PCM16LE at one of three rates.

use std::fmt;

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
