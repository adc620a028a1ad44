//! The outbound framer: whatever pieces of audio arrive, every chunk is legal for Exotel, and the
//! audio comes out whole, in order, padded only at the end.
#![no_main]

use exotel::framer::{FrameSpec, Framer, MIN_CHUNK, is_legal_chunk};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let spec_bytes = 3200 + usize::from(u16::from_le_bytes([data[0], data[1]])) % 97_000;
    let Ok(spec) = FrameSpec::with_bytes(spec_bytes) else { return };
    let mut framer = Framer::new(spec);
    let mut chunks = Vec::new();
    let mut input = Vec::new();
    // The rest is cut into pieces whose lengths the data itself chooses.
    let mut rest = &data[2..];
    while let Some((&len, tail)) = rest.split_first() {
        let take = (usize::from(len) * 37).min(tail.len());
        framer.push(&tail[..take], |c| chunks.push(c));
        input.extend_from_slice(&tail[..take]);
        rest = &tail[take..];
    }
    chunks.extend(framer.finish());
    let output: Vec<u8> = chunks.concat();
    assert!(chunks.iter().all(|c| is_legal_chunk(c.len())));
    assert_eq!(&output[..input.len()], &input[..]);
    assert!(output[input.len()..].iter().all(|&b| b == 0));
    assert!(output.len() - input.len() < MIN_CHUNK);
});
