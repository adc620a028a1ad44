//! The per-message work of a media session: parse Exotel's event, decode its audio, frame and
//! encode the bot's reply. `cargo bench -p exotel --bench hot_path`.

use std::hint::black_box;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use exotel::{FrameSpec, Framer, InboundEvent, OutboundEncoder, SampleRate};

fn media_event(rate: SampleRate, ms: usize) -> (String, Vec<u8>) {
    let pcm: Vec<u8> = (0..rate.bytes_per_ms() * ms).map(|i| (i * 7 % 251) as u8).collect();
    let text = format!(
        r#"{{"event":"media","sequence_number":"42","stream_sid":"6f048d2e897a0d2d4029560f3f541947","media":{{"chunk":"41","timestamp":"820","payload":"{}"}}}}"#,
        B64.encode(&pcm)
    );
    (text, pcm)
}

fn inbound(c: &mut Criterion) {
    let mut g = c.benchmark_group("inbound");
    for (rate, ms) in
        [(SampleRate::Hz8000, 20), (SampleRate::Hz8000, 100), (SampleRate::Hz16000, 100), (SampleRate::Hz24000, 100)]
    {
        let (text, pcm) = media_event(rate, ms);
        g.throughput(Throughput::Elements(1));
        g.bench_function(format!("parse_media_{}k_{ms}ms", rate.hz() / 1000), |b| {
            b.iter(|| black_box(InboundEvent::parse(black_box(&text)).ok()))
        });
        let b64 = B64.encode(&pcm);
        g.bench_function(format!("base64_decode_{}k_{ms}ms", rate.hz() / 1000), |b| {
            b.iter(|| black_box(B64.decode(black_box(b64.as_bytes())).ok()))
        });
    }
    g.finish();
}

fn outbound(c: &mut Criterion) {
    let mut g = c.benchmark_group("outbound");
    for rate in SampleRate::ALL {
        let k = rate.hz() / 1000;
        // The gateway's default: 100 ms chunks (OUT_CHUNK_MS), fed by 20 ms of agent audio at a time.
        let spec = FrameSpec::for_duration(rate, 100);
        let frame_20ms = vec![3u8; rate.bytes_per_ms() * 20];
        g.throughput(Throughput::Elements(50));
        g.bench_function(format!("frame_1s_of_20ms_{k}k"), |b| {
            b.iter(|| {
                let mut f = Framer::new(spec);
                let mut n = 0;
                for _ in 0..50 {
                    f.push(black_box(&frame_20ms), |chunk| n += chunk.len());
                }
                black_box(n)
            })
        });
        let mut enc = OutboundEncoder::new("6f048d2e897a0d2d4029560f3f541947");
        // Everything the outbound side does with one second of a call's audio: frame and encode.
        g.bench_function(format!("frame_and_encode_1s_{k}k"), |b| {
            b.iter(|| {
                let mut f = Framer::new(spec);
                let mut bytes = 0;
                for i in 0..50 {
                    f.push(black_box(&frame_20ms), |chunk| bytes += enc.media(&chunk, i * 20).len());
                }
                black_box(bytes)
            })
        });
        let chunk = vec![5u8; spec.bytes()];
        g.throughput(Throughput::Elements(1));
        g.bench_function(format!("encode_media_chunk_{k}k_{}B", spec.bytes()), |b| {
            b.iter(|| black_box(enc.media(black_box(&chunk), 820)))
        });
        g.bench_function(format!("base64_encode_{k}k_{}B", spec.bytes()), |b| {
            b.iter(|| black_box(B64.encode(black_box(&chunk))))
        });
    }
    g.finish();
}

criterion_group!(benches, inbound, outbound);
criterion_main!(benches);
