//! The audio units of each protocol: Exotel carries PCM16LE at the call's rate, Twilio μ-law at
//! 8 kHz (docs/twilio.md §5). The bot echoes bytes untouched, so only the greeting tone
//! and the byte/millisecond maths need to know which.

use exotel::SampleRate;

use super::BotProtocol;

/// The greeting's pitch.
const GREETING_HZ: f32 = 440.0;
/// Exotel's smallest legal chunk and its grid (docs/protocol.md §5.1).
const EXOTEL_MIN_CHUNK: usize = 3200;
const EXOTEL_GRID: usize = 320;
/// Twilio's own cadence: 20 ms frames (docs/twilio.md §3).
const TWILIO_FRAME: usize = 160;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Format {
    Pcm16(SampleRate),
    Mulaw8k,
}

impl Format {
    pub(super) fn new(protocol: BotProtocol, rate: SampleRate) -> Self {
        match protocol {
            BotProtocol::Exotel => Self::Pcm16(rate),
            BotProtocol::Twilio => Self::Mulaw8k,
        }
    }

    pub(super) fn bytes_per_ms(self) -> usize {
        match self {
            Self::Pcm16(rate) => rate.bytes_per_ms(),
            Self::Mulaw8k => 8,
        }
    }

    /// The greeting's message size: a legal Exotel chunk (100 ms, at least 3200 bytes, on the
    /// 320-byte grid), so a bridge in front of the bot sees what a well-behaved Exotel bot sends;
    /// for Twilio, the 20 ms frames Twilio itself uses.
    pub(super) fn greeting_chunk(self) -> usize {
        match self {
            Self::Pcm16(rate) => (rate.bytes_per_ms() * 100).max(EXOTEL_MIN_CHUNK) / EXOTEL_GRID * EXOTEL_GRID,
            Self::Mulaw8k => TWILIO_FRAME,
        }
    }

    pub(super) fn tone(self, ms: u32) -> Vec<u8> {
        match self {
            Self::Pcm16(rate) => crate::tone(GREETING_HZ, ms, rate),
            Self::Mulaw8k => {
                let pcm = crate::tone(GREETING_HZ, ms, SampleRate::Hz8000);
                pcm.chunks_exact(2).map(|s| linear_to_ulaw(i16::from_le_bytes([s[0], s[1]]))).collect()
            }
        }
    }
}

/// The exact audio a [`super::Behavior::Greeting`] bot sends before its `greeting-done` mark:
/// for Exotel PCM16LE at `rate`, for Twilio μ-law at 8 kHz (`rate` is ignored).
pub fn greeting_audio(protocol: BotProtocol, rate: SampleRate, ms: u32) -> Vec<u8> {
    Format::new(protocol, rate).tone(ms)
}

/// G.711 μ-law, the full-16-bit form of the Sun reference (docs/twilio.md §5).
pub(super) fn linear_to_ulaw(sample: i16) -> u8 {
    const BIAS: i32 = 0x84;
    const CLIP: i32 = 32635;
    const SEG_END: [i32; 8] = [0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF, 0x3FFF, 0x7FFF];
    let x = i32::from(sample);
    let sign = if x < 0 { 0x80 } else { 0 };
    // In i32, so |-32768| does not overflow; the clip keeps m within the last segment.
    let m = x.abs().min(CLIP) + BIAS;
    let exp = SEG_END.iter().position(|&end| m <= end).unwrap_or(7) as i32;
    let mant = (m >> (exp + 3)) & 0x0F;
    !((sign | (exp << 4) | mant) as u8)
}

#[cfg(test)]
pub(super) fn ulaw_to_linear(byte: u8) -> i16 {
    const BIAS: i32 = 0x84;
    let u = !byte;
    let exp = i32::from((u >> 4) & 7);
    let mant = i32::from(u & 0x0F);
    let m = ((mant << 3) + BIAS) << exp;
    (if u & 0x80 != 0 { BIAS - m } else { m - BIAS }) as i16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulaw_known_codes() {
        assert_eq!(linear_to_ulaw(0), 0xFF);
        assert_eq!(linear_to_ulaw(i16::MAX), 0x80);
        assert_eq!(linear_to_ulaw(i16::MIN), 0x00);
        assert_eq!(ulaw_to_linear(0xFF), 0);
        assert_eq!(ulaw_to_linear(0x7F), 0);
        assert_eq!(ulaw_to_linear(0x80), 32124);
        assert_eq!(ulaw_to_linear(0x00), -32124);
        // Every code decodes and re-encodes to itself (−0, 0x7F, re-encodes as +0).
        for code in 0..=255u8 {
            let back = linear_to_ulaw(ulaw_to_linear(code));
            assert!(back == code || (code == 0x7F && back == 0xFF), "{code:#x} -> {back:#x}");
        }
    }

    #[test]
    fn ulaw_error_is_small() {
        for x in (i16::MIN..=i16::MAX).step_by(7) {
            let y = ulaw_to_linear(linear_to_ulaw(x));
            let err = (i32::from(x) - i32::from(y)).abs();
            // The step at the top segment is 1024; the clip adds up to 643 at the extremes.
            assert!(err <= 1024 || i32::from(x).abs() > 32124, "{x} -> {y}");
        }
    }

    #[test]
    fn units() {
        assert_eq!(Format::Pcm16(SampleRate::Hz8000).bytes_per_ms(), 16);
        assert_eq!(Format::Pcm16(SampleRate::Hz24000).bytes_per_ms(), 48);
        assert_eq!(Format::Mulaw8k.bytes_per_ms(), 8);
        assert_eq!(Format::Pcm16(SampleRate::Hz8000).greeting_chunk(), 3200);
        assert_eq!(Format::Pcm16(SampleRate::Hz16000).greeting_chunk(), 3200);
        assert_eq!(Format::Pcm16(SampleRate::Hz24000).greeting_chunk(), 4800);
        assert_eq!(Format::Mulaw8k.greeting_chunk(), 160);
    }

    #[test]
    fn tones() {
        assert_eq!(greeting_audio(BotProtocol::Exotel, SampleRate::Hz16000, 500).len(), 16_000);
        let ulaw = greeting_audio(BotProtocol::Twilio, SampleRate::Hz24000, 500);
        assert_eq!(ulaw.len(), 4000);
        let loud = ulaw.iter().map(|&b| i32::from(ulaw_to_linear(b)).abs()).max().unwrap_or(0);
        assert!((14_000..=18_000).contains(&loud), "half scale, got {loud}");
        assert!(greeting_audio(BotProtocol::Exotel, SampleRate::Hz8000, 0).is_empty());
    }
}
