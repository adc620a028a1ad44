//! Turns PCM of any length into Exotel-legal outbound chunks (docs/protocol.md §5.1): every chunk a
//! multiple of 320 bytes and within 3200..=100000 bytes. Only an utterance's tail is padded.

use crate::SampleRate;

pub const ALIGN: usize = 320;
pub const MIN_CHUNK: usize = 3200;
/// The largest multiple of 320 that is ≤ 100 000 bytes.
pub const MAX_CHUNK: usize = 100_000 / ALIGN * ALIGN;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameSpecError {
    #[error("chunk size {0} bytes is outside Exotel's 3200..=100000 bytes")]
    OutOfRange(usize),
}

/// The size of full chunks. Always legal by construction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameSpec {
    bytes: usize,
}

impl FrameSpec {
    /// About 100 ms of audio on the 320-byte grid, never under 3200 bytes:
    /// 3200 B (200 ms) at 8 kHz, 3200 B at 16 kHz, 4800 B at 24 kHz.
    pub fn for_rate(rate: SampleRate) -> Self {
        Self::for_duration(rate, 100)
    }

    /// `ms` of audio rounded down to the 320-byte grid and clamped into the legal range.
    pub fn for_duration(rate: SampleRate, ms: u32) -> Self {
        let raw = rate.bytes_per_ms() * ms as usize;
        Self { bytes: (raw / ALIGN * ALIGN).clamp(MIN_CHUNK, MAX_CHUNK) }
    }

    /// An exact size; rounded down to the 320 grid, rejected if outside the legal range.
    pub fn with_bytes(bytes: usize) -> Result<Self, FrameSpecError> {
        let aligned = bytes / ALIGN * ALIGN;
        if (MIN_CHUNK..=MAX_CHUNK).contains(&aligned) {
            Ok(Self { bytes: aligned })
        } else {
            Err(FrameSpecError::OutOfRange(bytes))
        }
    }

    pub fn bytes(self) -> usize {
        self.bytes
    }
}

/// Whether a decoded outbound payload obeys Exotel's chunk rules.
pub fn is_legal_chunk(len: usize) -> bool {
    len % ALIGN == 0 && (MIN_CHUNK..=MAX_CHUNK).contains(&len)
}

/// The size an utterance tail of `len` bytes is padded to: the 320 grid, at least 3200.
pub fn padded_len(len: usize) -> usize {
    len.div_ceil(ALIGN).max(1) * ALIGN
}

/// Accumulates PCM and hands out full chunks; [`Framer::finish`] pads and returns the tail.
#[derive(Debug, Clone)]
pub struct Framer {
    spec: FrameSpec,
    pending: Vec<u8>,
}

impl Framer {
    pub fn new(spec: FrameSpec) -> Self {
        Self { spec, pending: Vec::new() }
    }

    pub fn spec(&self) -> FrameSpec {
        self.spec
    }

    /// Bytes held back until a chunk fills (always < one chunk).
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Adds PCM; calls `emit` with each full chunk, in order.
    pub fn push(&mut self, mut pcm: &[u8], mut emit: impl FnMut(Vec<u8>)) {
        let size = self.spec.bytes;
        if !self.pending.is_empty() {
            let take = (size - self.pending.len()).min(pcm.len());
            self.pending.extend_from_slice(&pcm[..take]);
            pcm = &pcm[take..];
            if self.pending.len() < size {
                return;
            }
            emit(std::mem::replace(&mut self.pending, Vec::with_capacity(size)));
        }
        while pcm.len() >= size {
            let (chunk, rest) = pcm.split_at(size);
            emit(chunk.to_vec());
            pcm = rest;
        }
        self.pending.extend_from_slice(pcm);
    }

    /// Ends the utterance: the held-back tail, zero-padded to the 320 grid and to ≥ 3200 bytes.
    pub fn finish(&mut self) -> Option<Vec<u8>> {
        if self.pending.is_empty() {
            return None;
        }
        let mut tail = std::mem::take(&mut self.pending);
        tail.resize(padded_len(tail.len()).max(MIN_CHUNK), 0);
        Some(tail)
    }

    /// Drops the held-back tail (barge-in).
    pub fn clear(&mut self) {
        self.pending.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn default_sizes() {
        assert_eq!(FrameSpec::for_rate(SampleRate::Hz8000).bytes(), 3200);
        assert_eq!(FrameSpec::for_rate(SampleRate::Hz16000).bytes(), 3200);
        assert_eq!(FrameSpec::for_rate(SampleRate::Hz24000).bytes(), 4800);
        assert_eq!(FrameSpec::for_duration(SampleRate::Hz24000, 10_000).bytes(), 99_840);
        assert_eq!(FrameSpec::with_bytes(6500).unwrap().bytes(), 6400);
        assert!(FrameSpec::with_bytes(1600).is_err());
        assert!(FrameSpec::with_bytes(100_001).is_ok());
        assert!(FrameSpec::with_bytes(200_000).is_err());
        assert_eq!(MAX_CHUNK, 99_840);
    }

    #[test]
    fn tail_padding() {
        let mut f = Framer::new(FrameSpec::for_rate(SampleRate::Hz8000));
        let mut out = vec![];
        f.push(&[1u8; 3300], |c| out.push(c));
        assert_eq!(out.len(), 1);
        let tail = f.finish().unwrap();
        assert_eq!(tail.len(), 3200);
        assert!(tail[..100].iter().all(|&b| b == 1) && tail[100..].iter().all(|&b| b == 0));
        assert_eq!(f.finish(), None);
        let mut f = Framer::new(FrameSpec::with_bytes(6400).unwrap());
        f.push(&[1u8; 4000], |_| panic!("no full chunk yet"));
        assert_eq!(f.finish().unwrap().len(), 4160);
    }

    proptest! {
        #[test]
        fn no_byte_lost_reordered_or_duplicated(
            pieces in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..9000), 0..20),
            spec_bytes in 3200usize..20000,
        ) {
            let spec = FrameSpec::with_bytes(spec_bytes).unwrap();
            let mut f = Framer::new(spec);
            let mut chunks = vec![];
            for p in &pieces {
                f.push(p, |c| chunks.push(c));
            }
            let full = chunks.len();
            chunks.extend(f.finish());
            let input: Vec<u8> = pieces.concat();
            let output: Vec<u8> = chunks.concat();
            prop_assert!(chunks.iter().all(|c| is_legal_chunk(c.len())));
            prop_assert!(chunks[..full].iter().all(|c| c.len() == spec.bytes()));
            prop_assert_eq!(&output[..input.len()], &input[..]);
            prop_assert!(output[input.len()..].iter().all(|&b| b == 0));
            prop_assert!(output.len() - input.len() < MIN_CHUNK);
        }
    }
}
