//! Frame stamps: every 320-byte block of a call's caller audio starts with 16 bytes saying whose
//! it is, which frame carried it and when that frame was sent, so echoed audio can be matched to
//! the frame that produced it without any per-call bookkeeping on the receive side.
//!
//! Layout (little-endian): magic `A5 5A` · call index `u16` · frame number `u32` · send time `u64`
//! (µs since the run's epoch). Blocks are counted over the call's whole byte stream, so a frame
//! that is not a multiple of 320 bytes (10 ms at 8 kHz is 160) still stamps every block whose
//! start it carries; at 16/24 kHz a 20 ms frame carries 2/3 blocks, all stamped with its number.
//! A block that does not start with the magic (the zero padding of a chunk's tail) is skipped.

/// Exotel's outbound alignment, and the unit servers re-chunk our audio in.
pub const BLOCK: usize = 320;
/// Bytes of each block the stamp overwrites. Frames are multiples of 16 bytes at every rate, so
/// a stamp never straddles two frames.
pub const STAMP_LEN: usize = 16;
/// Nonzero, so a zero-padded block is never read as a stamp.
pub const MAGIC: [u8; 2] = [0xA5, 0x5A];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// The call's index in the run (at most 65 535 calls).
    pub call: u16,
    /// The frame's number within its call, from 0.
    pub frame: u32,
    /// When the frame was sent, in µs since the run's epoch.
    pub sent_us: u64,
}

impl Stamp {
    /// Writes the stamp into the first [`STAMP_LEN`] bytes of `out`.
    pub fn write(&self, out: &mut [u8]) {
        out[0..2].copy_from_slice(&MAGIC);
        out[2..4].copy_from_slice(&self.call.to_le_bytes());
        out[4..8].copy_from_slice(&self.frame.to_le_bytes());
        out[8..16].copy_from_slice(&self.sent_us.to_le_bytes());
    }

    /// The stamp at the start of `block`, if it has one.
    pub fn read(block: &[u8]) -> Option<Self> {
        let b = block.get(..STAMP_LEN)?;
        if b[0..2] != MAGIC {
            return None;
        }
        Some(Self {
            call: u16::from_le_bytes([b[2], b[3]]),
            frame: u32::from_le_bytes([b[4], b[5], b[6], b[7]]),
            sent_us: u64::from_le_bytes([b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]]),
        })
    }
}

/// Stamps every block that starts inside `frame`, whose first byte sits at `stream_offset` in
/// the call's byte stream. Returns how many blocks were stamped (0 when a short frame falls
/// entirely inside a block another frame started).
pub fn stamp_frame(frame: &mut [u8], stream_offset: u64, stamp: Stamp) -> usize {
    let into_block = (stream_offset % BLOCK as u64) as usize;
    let mut pos = if into_block == 0 { 0 } else { BLOCK - into_block };
    let mut n = 0;
    while pos + STAMP_LEN <= frame.len() {
        stamp.write(&mut frame[pos..]);
        n += 1;
        pos += BLOCK;
    }
    n
}

/// The stamps in a received chunk, block by block (padding blocks skipped).
pub fn scan(payload: &[u8]) -> impl Iterator<Item = Stamp> + '_ {
    payload.chunks(BLOCK).filter_map(Stamp::read)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Stamp = Stamp { call: 513, frame: 70_000, sent_us: 1 << 40 };

    #[test]
    fn round_trip() {
        let mut block = [7u8; BLOCK];
        S.write(&mut block);
        assert_eq!(Stamp::read(&block), Some(S));
        assert_eq!(&block[STAMP_LEN..], &[7u8; BLOCK - STAMP_LEN][..], "audio after the stamp untouched");
        assert_eq!(Stamp::read(&block[..STAMP_LEN - 1]), None, "too short");
        assert_eq!(Stamp::read(&[0u8; BLOCK]), None, "padding");
    }

    #[test]
    fn one_block_per_20ms_frame_at_8k() {
        let mut f = vec![1u8; 320];
        assert_eq!(stamp_frame(&mut f, 320 * 9, S), 1);
        assert_eq!(Stamp::read(&f), Some(S));
    }

    #[test]
    fn multi_block_frames_at_16k_and_24k() {
        for (bytes, blocks) in [(640, 2), (960, 3), (3200, 10), (4800, 15)] {
            let mut f = vec![1u8; bytes];
            assert_eq!(stamp_frame(&mut f, bytes as u64 * 4, S), blocks, "{bytes}");
            let got: Vec<Stamp> = scan(&f).collect();
            assert_eq!(got, vec![S; blocks]);
        }
    }

    #[test]
    fn short_frames_stamp_only_the_blocks_they_start() {
        // 10 ms at 8 kHz: 160 bytes, every other frame starts a block.
        let mut stream = Vec::new();
        let mut stamped = Vec::new();
        for k in 0..6u32 {
            let mut f = vec![1u8; 160];
            let st = Stamp { frame: k, ..S };
            stamped.push(stamp_frame(&mut f, u64::from(k) * 160, st));
            stream.extend(f);
        }
        assert_eq!(stamped, vec![1, 0, 1, 0, 1, 0]);
        let frames: Vec<u32> = scan(&stream).map(|s| s.frame).collect();
        assert_eq!(frames, vec![0, 2, 4]);
        // 10 ms at 24 kHz: 480 bytes; the second frame (bytes 480..960) starts only block 640.
        let mut f = vec![1u8; 480];
        assert_eq!(stamp_frame(&mut f, 480, S), 1);
        assert_eq!(Stamp::read(&f[160..]), Some(S));
    }

    #[test]
    fn echoed_chunk_with_zero_padded_tail() {
        // 7 stamped blocks then 3 blocks of zero padding: a 3200-byte chunk ending an utterance.
        let mut chunk = vec![0u8; 3200];
        for k in 0..7u32 {
            Stamp { frame: k, ..S }.write(&mut chunk[k as usize * BLOCK..]);
        }
        let frames: Vec<u32> = scan(&chunk).map(|s| s.frame).collect();
        assert_eq!(frames, (0..7).collect::<Vec<_>>());
        // A chunk that is not a 320 multiple: the partial last block still reads if long enough.
        assert_eq!(scan(&chunk[..3200 - 320 + 8]).count(), 7);
    }
}
