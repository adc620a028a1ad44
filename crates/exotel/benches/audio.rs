//! The audio toolkit's cost per 100 ms of a call: G.711 at 8 kHz and streaming resampling.
//! `cargo bench -p exotel --bench audio`. 100 ms of audio is 1e8 ns of real time, so
//! `time / 1e8` is the fraction of one core a stream costs.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use exotel::Resampler;
use exotel::audio::g711;

/// 100 ms of speech-like PCM16LE at `rate`: two tones and a little noise, so no code path is
/// favoured by silence.
fn pcm_100ms(rate: u32) -> Vec<u8> {
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    (0..rate as usize / 10)
        .flat_map(|n| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let t = n as f64 / f64::from(rate);
            let v = 9000.0 * (2.0 * std::f64::consts::PI * 300.0 * t).sin()
                + 4000.0 * (2.0 * std::f64::consts::PI * 1700.0 * t).sin()
                + (seed % 2000) as f64
                - 1000.0;
            (v as i16).to_le_bytes()
        })
        .collect()
}

fn g711(c: &mut Criterion) {
    let mut g = c.benchmark_group("g711_100ms_8k");
    g.throughput(Throughput::Elements(1));
    let pcm = pcm_100ms(8000);
    let mut ulaw = Vec::new();
    g711::ulaw_encode(&pcm, &mut ulaw);
    let mut out = Vec::with_capacity(pcm.len());
    g.bench_function("ulaw_encode", |b| {
        b.iter(|| {
            out.clear();
            g711::ulaw_encode(black_box(&pcm), &mut out);
            black_box(&out);
        })
    });
    g.bench_function("ulaw_decode", |b| {
        b.iter(|| {
            out.clear();
            g711::ulaw_decode(black_box(&ulaw), &mut out);
            black_box(&out);
        })
    });
    g.finish();
}

fn resample(c: &mut Criterion) {
    let mut g = c.benchmark_group("resample_100ms");
    g.throughput(Throughput::Elements(1));
    for (from, to) in [(8000, 16000), (16000, 8000), (24000, 8000), (8000, 24000)] {
        let pcm = pcm_100ms(from);
        // A running stream: state carries from one chunk to the next, as on a call.
        let mut resampler = Resampler::new(from, to).expect("supported rates");
        let mut out = Vec::with_capacity(to as usize / 5 + 64);
        g.bench_function(format!("{}k_to_{}k", from / 1000, to / 1000), |b| {
            b.iter(|| {
                out.clear();
                resampler.process(black_box(&pcm), &mut out);
                black_box(&out);
            })
        });
    }
    g.finish();
}

criterion_group!(benches, g711, resample);
criterion_main!(benches);
