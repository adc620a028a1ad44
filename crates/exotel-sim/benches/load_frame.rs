//! The load generator's per-frame work, to show it is small next to the socket write it feeds:
//! building one stamped media frame as it goes on the wire (copy the audio, stamp it, base64 it
//! into the JSON behind header room, mask it into a WebSocket frame), and reading one echoed
//! 3200-byte chunk (find the payload, decode it, match its stamps).

use std::hint::black_box;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use exotel_sim::load::stamp::{BLOCK, Stamp, scan, stamp_frame};
use exotel_sim::load::wire::{MediaEncoder, fast_media};
use exotel_sim::load::ws::{HEADROOM, MaskKeys, OP_TEXT, frame_in_place};

const SID: &str = "6f048d2e897a0d2d4029560f3f541947";

fn send_side(c: &mut Criterion) {
    let mut g = c.benchmark_group("build_media_frame");
    // 20 ms at 8, 16 and 24 kHz; 100 ms at 8 kHz.
    for bytes in [320usize, 640, 960, 1600] {
        let audio: Vec<u8> = (0..bytes * 50).map(|i| (i * 7) as u8).collect();
        let enc = MediaEncoder::new(SID);
        let mut scratch = vec![0u8; bytes];
        let mut wire = Vec::with_capacity(4096);
        let mut keys = MaskKeys::new(1);
        let mut k = 0u32;
        g.bench_with_input(BenchmarkId::from_parameter(bytes), &bytes, |b, &bytes| {
            b.iter(|| {
                let from = (k as usize * bytes) % audio.len();
                scratch.copy_from_slice(&audio[from..from + bytes]);
                let st = Stamp { call: 7, frame: k, sent_us: u64::from(k) * 20_000 };
                stamp_frame(&mut scratch, u64::from(k) * bytes as u64, st);
                k = k.wrapping_add(1);
                wire.clear();
                wire.resize(HEADROOM, 0);
                enc.media_into(&mut wire, u64::from(k), u64::from(k), u64::from(k) * 20, &scratch);
                let start = frame_in_place(&mut wire, OP_TEXT, keys.next_key());
                black_box(&wire[start..]);
            })
        });
    }
    g.finish();
}

fn receive_side(c: &mut Criterion) {
    let mut chunk = vec![0u8; 3200];
    for (i, block) in chunk.chunks_mut(BLOCK).enumerate() {
        Stamp { call: 7, frame: i as u32, sent_us: i as u64 * 20_000 }.write(block);
    }
    let text = format!(
        r#"{{"event":"media","stream_sid":"{SID}","sequence_number":"9","media":{{"chunk":"9","timestamp":"1800","payload":"{}"}}}}"#,
        B64.encode(&chunk)
    );
    let mut decoded = Vec::with_capacity(4096);
    c.bench_function("read_echoed_chunk_3200", |b| {
        b.iter(|| {
            let b64 = fast_media(black_box(&text), SID).expect("fast path");
            decoded.clear();
            B64.decode_vec(b64, &mut decoded).expect("base64");
            black_box(scan(&decoded).map(|s| s.frame).max())
        })
    });
}

criterion_group!(benches, send_side, receive_side);
criterion_main!(benches);
