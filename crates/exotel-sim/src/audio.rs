//! Caller audio: WAV files of any common layout turned into what Exotel streams (mono PCM16LE at
//! the call's rate), test tones, and WAV writing for recordings.

use std::f64::consts::PI;
use std::path::Path;

use exotel::SampleRate;

use crate::SimError;

/// Reads a WAV file (8/16/24/32-bit integer or 32-bit float, any channel count, any rate) and
/// returns it as mono PCM16LE at `rate`.
pub fn load_wav(path: &Path, rate: SampleRate) -> Result<Vec<u8>, SimError> {
    let wav_err = |source| SimError::Wav { path: path.to_path_buf(), source };
    let reader = hound::WavReader::open(path).map_err(wav_err)?;
    let spec = reader.spec();
    let channels = usize::from(spec.channels);
    if channels == 0 || spec.sample_rate == 0 {
        return Err(SimError::Audio(format!("{}: header says 0 channels or 0 Hz", path.display())));
    }
    let interleaved: Vec<f32> = match (spec.sample_format, spec.bits_per_sample) {
        (hound::SampleFormat::Float, 32) => reader.into_samples::<f32>().collect::<Result<_, _>>().map_err(wav_err)?,
        (hound::SampleFormat::Int, bits @ 8..=32) => {
            let scale = 1.0 / (1u64 << (bits - 1)) as f32;
            reader
                .into_samples::<i32>()
                .map(|s| s.map(|s| s as f32 * scale))
                .collect::<Result<_, _>>()
                .map_err(wav_err)?
        }
        (format, bits) => {
            return Err(SimError::Audio(format!(
                "{}: unsupported WAV sample format {format:?}/{bits} bits",
                path.display()
            )));
        }
    };
    let mono: Vec<f32> =
        interleaved.chunks_exact(channels).map(|frame| frame.iter().sum::<f32>() / channels as f32).collect();
    Ok(to_pcm16(&resample(&mono, spec.sample_rate, rate.hz())))
}

/// A sine tone at half of full scale, with 5 ms fades so it starts and ends without a click.
pub fn tone(hz: f32, ms: u32, rate: SampleRate) -> Vec<u8> {
    let sr = f64::from(rate.hz());
    let n = rate.hz() as usize * ms as usize / 1000;
    let fade = (sr * 0.005) as usize;
    let samples: Vec<f32> = (0..n)
        .map(|i| {
            let edge = i.min(n - 1 - i);
            let gain = if edge < fade { edge as f64 / fade as f64 } else { 1.0 };
            (0.5 * gain * (2.0 * PI * f64::from(hz) * i as f64 / sr).sin()) as f32
        })
        .collect();
    to_pcm16(&samples)
}

/// Writes mono PCM16LE as a WAV file. A trailing odd byte (a bot's framing bug) is dropped rather
/// than failing the recording.
pub fn write_wav(path: &Path, pcm: &[u8], rate: SampleRate) -> Result<(), SimError> {
    let wav_err = |source| SimError::Wav { path: path.to_path_buf(), source };
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: rate.hz(),
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut writer = hound::WavWriter::create(path, spec).map_err(wav_err)?;
    {
        let mut samples = writer.get_i16_writer(u32::try_from(pcm.len() / 2).unwrap_or(u32::MAX));
        for pair in pcm.chunks_exact(2).take(u32::MAX as usize) {
            samples.write_sample(i16::from_le_bytes([pair[0], pair[1]]));
        }
        samples.flush().map_err(wav_err)?;
    }
    writer.finalize().map_err(wav_err)
}

/// The inverse of the read scaling (1/32768), so 16-bit input at its own rate passes bit-exact.
fn to_pcm16(samples: &[f32]) -> Vec<u8> {
    samples.iter().flat_map(|s| ((s * 32768.0).round().clamp(-32768.0, 32767.0) as i16).to_le_bytes()).collect()
}

/// Band-limited (windowed-sinc) rate conversion of mono samples in [-1, 1]. The low-pass sits
/// just under the lower of the two Nyquist frequencies, so downsampling does not fold speech
/// energy into audible aliases. Public for the benchmarks.
pub fn resample(input: &[f32], from: u32, to: u32) -> Vec<f32> {
    if from == to || input.is_empty() {
        return input.to_vec();
    }
    const ZERO_CROSSINGS: f64 = 16.0;
    let out_len = ((input.len() as u64 * u64::from(to) + u64::from(from) / 2) / u64::from(from)) as usize;
    let step = f64::from(from) / f64::from(to);
    let cutoff = (f64::from(to) / f64::from(from)).min(1.0) * 0.95;
    let half = ZERO_CROSSINGS / cutoff;
    let last = input.len() - 1;
    (0..out_len)
        .map(|n| {
            let t = n as f64 * step;
            let lo = (t - half).ceil().max(0.0) as usize;
            let hi = ((t + half).floor() as usize).min(last);
            let mut acc = 0.0f64;
            for (k, &x) in input.iter().enumerate().take(hi + 1).skip(lo) {
                let d = k as f64 - t;
                acc += f64::from(x) * cutoff * sinc(cutoff * d) * blackman(d / half);
            }
            acc as f32
        })
        .collect()
}

fn sinc(x: f64) -> f64 {
    if x.abs() < 1e-12 { 1.0 } else { (PI * x).sin() / (PI * x) }
}

/// Blackman window over [-1, 1].
fn blackman(u: f64) -> f64 {
    if u.abs() >= 1.0 { 0.0 } else { 0.42 + 0.5 * (PI * u).cos() + 0.08 * (2.0 * PI * u).cos() }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Real recordings kept in the repository (copies of the project's shared audio).
    fn shared(name: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/audio").join(name)
    }

    fn wav_secs(path: &Path) -> f64 {
        let r = hound::WavReader::open(path).unwrap();
        f64::from(r.duration()) / f64::from(r.spec().sample_rate)
    }

    fn secs(pcm: &[u8], rate: SampleRate) -> f64 {
        pcm.len() as f64 / (f64::from(rate.hz()) * 2.0)
    }

    fn samples(pcm: &[u8]) -> Vec<i16> {
        pcm.chunks_exact(2).map(|p| i16::from_le_bytes([p[0], p[1]])).collect()
    }

    fn rms(pcm: &[u8]) -> f64 {
        let s = samples(pcm);
        (s.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>() / s.len() as f64).sqrt()
    }

    #[test]
    fn real_files_at_every_rate_keep_their_duration() {
        for (name, native) in [
            ("caller-hindi-bill-8k.wav", SampleRate::Hz8000),
            ("caller-order-number-16k.wav", SampleRate::Hz16000),
            ("caller-order-status-8k.wav", SampleRate::Hz8000),
            ("tone-440hz-2s-24k.wav", SampleRate::Hz24000),
        ] {
            let path = shared(name);
            let want = wav_secs(&path);
            let same = load_wav(&path, native).unwrap();
            // At its own rate the file passes through bit-exact.
            let raw: Vec<u8> = hound::WavReader::open(&path)
                .unwrap()
                .into_samples::<i16>()
                .flat_map(|s| s.unwrap().to_le_bytes())
                .collect();
            assert!(same == raw, "{name} changed at its own rate");
            for rate in SampleRate::ALL {
                let pcm = load_wav(&path, rate).unwrap();
                let got = secs(&pcm, rate);
                assert!((got - want).abs() / want < 0.01, "{name} at {rate}: {got} s vs {want} s");
                assert!(rms(&pcm) > 100.0, "{name} at {rate} is silent");
            }
        }
    }

    #[test]
    fn downsampling_16k_to_8k_and_24k_to_16k() {
        let speech = shared("caller-order-number-16k.wav");
        let pcm = load_wav(&speech, SampleRate::Hz8000).unwrap();
        let want = wav_secs(&speech);
        assert!((secs(&pcm, SampleRate::Hz8000) - want).abs() / want < 0.01);
        // Speech energy survives the low-pass (most of it is well under 4 kHz).
        let orig = load_wav(&speech, SampleRate::Hz16000).unwrap();
        let ratio = rms(&pcm) / rms(&orig);
        assert!((0.7..1.1).contains(&ratio), "rms ratio {ratio}");

        let tone_file = shared("tone-440hz-2s-24k.wav");
        let pcm = load_wav(&tone_file, SampleRate::Hz16000).unwrap();
        assert!((secs(&pcm, SampleRate::Hz16000) - 2.0).abs() / 2.0 < 0.01);
        // Still 440 Hz: count zero crossings over the middle second.
        let s = samples(&pcm);
        let mid = &s[8000..24000];
        let crossings = mid.windows(2).filter(|w| (w[0] < 0) != (w[1] < 0)).count();
        assert!((870..=890).contains(&crossings), "{crossings} crossings");
    }

    #[test]
    fn tone_length_and_level() {
        for rate in SampleRate::ALL {
            let pcm = tone(440.0, 1500, rate);
            assert_eq!(pcm.len(), 1500 * rate.bytes_per_ms());
            let peak = samples(&pcm).iter().map(|s| s.unsigned_abs()).max().unwrap();
            assert!((16000..=16384).contains(&peak), "peak {peak}");
        }
        assert!(tone(440.0, 0, SampleRate::Hz8000).is_empty());
        assert_eq!(tone(1000.0, 1, SampleRate::Hz8000).len(), 16);
    }

    #[test]
    fn write_then_load_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        for rate in SampleRate::ALL {
            let pcm = tone(300.0, 250, rate);
            let path = dir.path().join(format!("t{rate}.wav"));
            write_wav(&path, &pcm, rate).unwrap();
            let spec = hound::WavReader::open(&path).unwrap().spec();
            assert_eq!((spec.channels, spec.sample_rate, spec.bits_per_sample), (1, rate.hz(), 16));
            assert_eq!(load_wav(&path, rate).unwrap(), pcm);
        }
        // An odd trailing byte is dropped, not an error.
        let path = dir.path().join("odd.wav");
        write_wav(&path, &[1, 0, 2], SampleRate::Hz8000).unwrap();
        assert_eq!(load_wav(&path, SampleRate::Hz8000).unwrap(), vec![1, 0]);
    }

    /// Writes one second of a 500 Hz tone in the given layout; the left channel carries the tone,
    /// the right (if any) carries its negation at half level so downmixing is observable.
    fn write_layout(path: &Path, rate: u32, channels: u16, bits: u16, float: bool) {
        let spec = hound::WavSpec {
            channels,
            sample_rate: rate,
            bits_per_sample: bits,
            sample_format: if float { hound::SampleFormat::Float } else { hound::SampleFormat::Int },
        };
        let mut w = hound::WavWriter::create(path, spec).unwrap();
        for i in 0..rate {
            let v = 0.5 * (2.0 * PI * 500.0 * f64::from(i) / f64::from(rate)).sin();
            for ch in 0..channels {
                let v = if ch == 0 { v } else { -v / 2.0 };
                if float {
                    w.write_sample(v as f32).unwrap();
                } else {
                    let full = ((1i64 << (bits - 1)) - 1) as f64;
                    w.write_sample((v * full).round() as i32).unwrap();
                }
            }
        }
        w.finalize().unwrap();
    }

    #[test]
    fn any_bit_depth_and_channel_count() {
        let dir = tempfile::tempdir().unwrap();
        for (bits, float) in [(8, false), (16, false), (24, false), (32, false), (32, true)] {
            for channels in [1u16, 2] {
                for rate in [8000u32, 11025, 44100, 48000] {
                    let path = dir.path().join(format!("{bits}-{float}-{channels}-{rate}.wav"));
                    write_layout(&path, rate, channels, bits, float);
                    let pcm = load_wav(&path, SampleRate::Hz16000).unwrap();
                    let got = secs(&pcm, SampleRate::Hz16000);
                    assert!((got - 1.0).abs() < 0.01, "{path:?}: {got} s");
                    // Mono: 0.5 full scale; stereo (L - L/2)/2: 0.125 full scale.
                    let want_peak = if channels == 1 { 16384.0 } else { 4096.0 };
                    let s = samples(&pcm);
                    let peak = f64::from(s[1000..15000].iter().map(|s| s.unsigned_abs()).max().unwrap());
                    assert!((peak - want_peak).abs() / want_peak < 0.05, "{path:?}: peak {peak} want {want_peak}");
                }
            }
        }
    }

    #[test]
    fn missing_file_is_a_typed_error() {
        let err = load_wav(Path::new("/nonexistent/x.wav"), SampleRate::Hz8000).unwrap_err();
        assert!(matches!(err, SimError::Wav { .. }), "{err}");
    }
}
