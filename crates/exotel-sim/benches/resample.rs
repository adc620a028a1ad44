//! The simulator's resampler (audio.rs, used to bring WAV caller audio to the call's rate) on
//! one second of speech-band audio. The time per iteration is the CPU one call would spend per
//! second of audio if this ran on a call's hot path: 1 ms/iteration = 1 millicore per call.
//! (exogate itself does not resample: Exotel and the bot agree on the rate.)

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use exotel_sim::resample;

/// One second of a 300 Hz + 1.1 kHz mix at `rate`, in [-1, 1].
fn second_of_audio(rate: u32) -> Vec<f32> {
    (0..rate)
        .map(|i| {
            let t = f64::from(i) / f64::from(rate);
            (0.4 * (2.0 * std::f64::consts::PI * 300.0 * t).sin()
                + 0.3 * (2.0 * std::f64::consts::PI * 1100.0 * t).sin()) as f32
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("resample_1s_per_call");
    g.sample_size(10).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(3));
    for (from, to) in [(8000, 16000), (16000, 8000), (24000, 8000), (48000, 16000)] {
        let input = second_of_audio(from);
        g.throughput(Throughput::Elements(u64::from(from)));
        g.bench_with_input(BenchmarkId::from_parameter(format!("{from}to{to}")), &input, |b, input| {
            b.iter(|| resample(black_box(input), from, to))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
