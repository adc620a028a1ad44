//! Streaming sample-rate conversion of mono PCM16LE between 8, 16, 24 and 48 kHz.
//!
//! A call's rate is fixed when Exotel connects, but the bot's speech services are not: STT
//! wants 16 kHz, TTS voices come at 24 or 48 kHz, a telephony leg is 8 kHz. Audio arrives and
//! leaves in small frames on a live call, so conversion has to be streaming (filter state and a
//! partial block carried from one frame to the next, or every frame edge clicks), it has to add
//! little delay, and it has to be cheap enough to run per call on a small box.
//!
//! # Why `rubato::Fft`
//!
//! Every supported rate is a multiple of 8 kHz, so every ratio is a small fixed fraction (at
//! most 6:1). That is the case rubato's *synchronous* FFT resampler is built for: it low-passes
//! each input block with a windowed-sinc filter by FFT, then changes the rate exactly by
//! truncating or zero-extending the spectrum, and overlap-adds the blocks. There is no ratio
//! estimate to drift and no interpolation between oversampled sinc tables (the asynchronous sinc
//! resampler's cost, which buys the ability to change the ratio mid-stream, something never
//! needed here). Its cost per sample grows only with the logarithm of the block.
//!
//! The FFT block is the processing block: 10 ms of input (80 samples at 8 kHz, 480 at 48 kHz),
//! so the filter is 10 ms long and the algorithmic delay is half of it, 5 ms, in every
//! direction. Anti-aliasing is mostly done by the spectrum truncation itself (a tone just above
//! the lower Nyquist frequency comes out as digital silence); the window decides how far the
//! passband reaches and how much the block-wise processing leaks. With a filter this short
//! rubato's default (Blackman-Harris²) starts rolling off at 3 kHz, 5 dB down at 3.3 kHz, which
//! cuts into the 300–3400 Hz telephone band, and an 8→16→8 round trip of speech scores only
//! 18 dB SNR. Hann and Hann² reach further but leak: spurious tones at −50 and −66 dB near Nyquist.
//! Blackman is the middle: flat (−0.1 dB) to 3.5 kHz, 6 dB down at 3.7 kHz, spurs at or below
//! −82 dB up to 3.9 kHz and −72 dB anywhere (swept over the whole band for every rate pair).
//!
//! # Delay and length
//!
//! The filter's leading delay is trimmed: output sample `k` is the input at time `k / to_hz`,
//! and the first samples out are the start of the audio, not silence. The cost is visible in
//! [`Resampler::process`]: it holds back up to one block plus [`Resampler::delay`] output
//! samples, which [`Resampler::flush`] emits at the end of an utterance. Over a whole stream
//! (every `process` plus the `flush`) the output is exactly `ceil(input × to / from)` samples.
//!
//! Blocks are cut from the input stream regardless of how it was split into calls, so the
//! output does not depend on the call boundaries at all: any chunking gives the same bytes.

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler as _, WindowFunction};

/// The rates a [`Resampler`] converts between: Exotel's three and the common TTS rate.
pub const SUPPORTED_RATES: [u32; 4] = [8000, 16000, 24000, 48000];

/// Processing block length. Sets both the latency (half a block of filter delay, up to a block
/// of buffering) and the filter length (one block).
const BLOCK_MS: u32 = 10;

/// The filter's window; see the module documentation for why not rubato's default.
const WINDOW: WindowFunction = WindowFunction::Blackman;

/// PCM16 full scale as a float: samples travel through the filter in -1.0..1.0.
const FULL_SCALE: f32 = 32768.0;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ResampleError {
    #[error("unsupported sample rate {0} Hz (supported: 8000, 16000, 24000, 48000)")]
    UnsupportedRate(u32),
    #[error("cannot build a {from_hz} Hz to {to_hz} Hz resampler: {reason}")]
    Construction { from_hz: u32, to_hz: u32, reason: String },
}

/// A streaming converter from one rate to another, for one stream at a time.
///
/// ```
/// # fn main() -> Result<(), exotel::ResampleError> {
/// let mut to_stt = exotel::Resampler::new(8000, 16000)?;
/// let mut out = Vec::new();
/// for frame in [[0u8; 320], [0u8; 320]] {
///     to_stt.process(&frame, &mut out); // 20 ms at 8 kHz in, in step with the call
/// }
/// to_stt.flush(&mut out); // end of the utterance: the held-back tail
/// assert_eq!(out.len(), 2 * 640);
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Resampler {
    from_hz: u32,
    to_hz: u32,
    /// The first byte of a sample whose second byte has not arrived yet.
    held_byte: Option<u8>,
    /// `None` when `from_hz == to_hz`: bytes are copied.
    engine: Option<Engine>,
}

/// The promise made to callers: a resampler can move to the task that serves the call.
const _: () = {
    const fn assert_send<T: Send>() {}
    assert_send::<Resampler>();
};

#[derive(Debug)]
struct Engine {
    fft: Fft<f32>,
    /// Input samples per block (10 ms); the FFT consumes exactly this many per call.
    block_in: usize,
    /// Leading output samples that are filter delay rather than signal.
    delay: usize,
    /// Input not yet handed to the filter: fewer than `block_in` samples between calls.
    pending: Vec<f32>,
    /// One block of filter output.
    output: Vec<f32>,
    /// How much of `delay` is still to be dropped from the front of the stream.
    to_trim: usize,
    /// Input samples accepted since the stream (re)started.
    fed: u64,
    /// Output samples appended since the stream (re)started.
    emitted: u64,
}

impl Resampler {
    /// A resampler from `from_hz` to `to_hz`, both one of [`SUPPORTED_RATES`].
    /// `from_hz == to_hz` is allowed (a pass-through that copies).
    pub fn new(from_hz: u32, to_hz: u32) -> Result<Self, ResampleError> {
        for hz in [from_hz, to_hz] {
            if !SUPPORTED_RATES.contains(&hz) {
                return Err(ResampleError::UnsupportedRate(hz));
            }
        }
        let engine = if from_hz == to_hz { None } else { Some(Engine::new(from_hz, to_hz)?) };
        Ok(Self { from_hz, to_hz, held_byte: None, engine })
    }

    pub fn from_hz(&self) -> u32 {
        self.from_hz
    }

    pub fn to_hz(&self) -> u32 {
        self.to_hz
    }

    /// Streaming: feed any number of bytes (an odd trailing byte is kept for the next call) and
    /// append the resampled PCM16LE to `out`. Filter history and the partial block carry across
    /// calls, so chunk edges don't click and the split of the input into calls does not change
    /// the output. Holds back at most one block (10 ms) of input plus [`delay`](Self::delay)
    /// output samples; [`flush`](Self::flush) releases them.
    pub fn process(&mut self, pcm16le: &[u8], out: &mut Vec<u8>) {
        match &mut self.engine {
            None => pass_through(&mut self.held_byte, pcm16le, out),
            Some(engine) => {
                out.reserve((pcm16le.len() + engine.block_in * 2) * engine.output.len() / engine.block_in);
                for_each_sample(&mut self.held_byte, pcm16le, |sample| engine.push(sample, out));
            }
        }
    }

    /// End of an utterance: emit what is still held (the input is padded with silence inside so
    /// the filter's tail comes out), bringing the stream's output to exactly
    /// `ceil(input samples × to / from)` samples, then be ready for new input as if fresh.
    /// A dangling odd byte is half a sample and is dropped.
    pub fn flush(&mut self, out: &mut Vec<u8>) {
        if let Some(engine) = &mut self.engine {
            engine.finish(self.from_hz, self.to_hz, out);
        }
        self.reset();
    }

    /// Drops held input and filter state (after a barge-in `clear`); nothing is emitted.
    pub fn reset(&mut self) {
        self.held_byte = None;
        if let Some(engine) = &mut self.engine {
            engine.reset();
        }
    }

    /// Algorithmic delay of the filter, in output samples: 5 ms (40 at 8 kHz, 240 at 48 kHz);
    /// 0 for a pass-through. The output is time-aligned (the delay is trimmed from its front),
    /// so this is latency, not an offset: it is part of what `process` holds back until `flush`.
    pub fn delay(&self) -> usize {
        self.engine.as_ref().map_or(0, |engine| engine.delay)
    }
}

/// One-shot convenience: [`Resampler::new`], [`Resampler::process`], [`Resampler::flush`].
pub fn resample(pcm16le: &[u8], from_hz: u32, to_hz: u32) -> Result<Vec<u8>, ResampleError> {
    let mut resampler = Resampler::new(from_hz, to_hz)?;
    let samples_out = (pcm16le.len() / 2) as u64 * u64::from(to_hz) / u64::from(from_hz) + 1;
    let mut out = Vec::with_capacity(samples_out as usize * 2);
    resampler.process(pcm16le, &mut out);
    resampler.flush(&mut out);
    Ok(out)
}

impl Engine {
    fn new(from_hz: u32, to_hz: u32) -> Result<Self, ResampleError> {
        let block_in = (from_hz * BLOCK_MS / 1000) as usize;
        // One FFT block per chunk (sub_chunks = 1). Every supported input rate's 10 ms is a
        // multiple of from_hz / gcd(from_hz, to_hz) (at most 6), so the FFT block is exactly
        // `block_in` and every call consumes `block_in` samples and yields one output block.
        let fft = Fft::<f32>::new_custom(from_hz as usize, to_hz as usize, block_in, 1, 1, WINDOW, FixedSync::Input)
            .map_err(|e| ResampleError::Construction { from_hz, to_hz, reason: e.to_string() })?;
        let block_out = fft.output_frames_max();
        if fft.input_frames_max() != block_in || block_out * from_hz as usize != block_in * to_hz as usize {
            return Err(ResampleError::Construction {
                from_hz,
                to_hz,
                reason: format!("blocks of {} in, {block_out} out, expected {block_in} in", fft.input_frames_max()),
            });
        }
        let delay = fft.output_delay();
        Ok(Self {
            fft,
            block_in,
            delay,
            pending: Vec::with_capacity(block_in),
            output: vec![0.0; block_out],
            to_trim: delay,
            fed: 0,
            emitted: 0,
        })
    }

    /// Takes one input sample; a completed block goes through the filter at once.
    #[inline]
    fn push(&mut self, sample: i16, out: &mut Vec<u8>) {
        self.pending.push(f32::from(sample) / FULL_SCALE);
        if self.pending.len() == self.block_in {
            let produced = filter_block(&mut self.fft, &self.pending, &mut self.output);
            self.pending.clear();
            self.fed += self.block_in as u64;
            self.emit(produced, u64::MAX, out);
        }
    }

    /// Pads the partial block with silence and pumps silence through until the stream's output
    /// reaches `ceil(fed × to / from)` samples.
    fn finish(&mut self, from_hz: u32, to_hz: u32, out: &mut Vec<u8>) {
        self.fed += self.pending.len() as u64;
        let total = (self.fed * u64::from(to_hz)).div_ceil(u64::from(from_hz));
        while self.emitted < total {
            self.pending.resize(self.block_in, 0.0);
            let produced = filter_block(&mut self.fft, &self.pending, &mut self.output);
            self.pending.clear();
            if produced == 0 {
                break; // cannot happen (a block always yields `output.len()`), but never spin
            }
            self.emit(produced, total, out);
        }
    }

    /// Appends `output[..produced]` as PCM16LE, after dropping what is left of the leading delay
    /// and stopping once the stream has `limit` samples.
    fn emit(&mut self, produced: usize, limit: u64, out: &mut Vec<u8>) {
        let trim = self.to_trim.min(produced);
        self.to_trim -= trim;
        let room = usize::try_from(limit.saturating_sub(self.emitted)).unwrap_or(usize::MAX);
        let samples = &self.output[trim..produced];
        let samples = &samples[..samples.len().min(room)];
        for &sample in samples {
            out.extend_from_slice(&to_pcm16(sample).to_le_bytes());
        }
        self.emitted += samples.len() as u64;
    }

    fn reset(&mut self) {
        self.fft.reset();
        self.pending.clear();
        self.to_trim = self.delay;
        self.fed = 0;
        self.emitted = 0;
    }
}

/// Runs one block through the filter into `output`; returns the samples produced.
fn filter_block(fft: &mut Fft<f32>, input: &[f32], output: &mut [f32]) -> usize {
    let frames_out = output.len();
    let produced = InterleavedSlice::new(input, 1, input.len())
        .ok()
        .zip(InterleavedSlice::new_mut(output, 1, frames_out).ok())
        .and_then(|(input, mut output)| fft.process_into_buffer(&input, &mut output, None).ok());
    match produced {
        Some((_, produced)) => produced,
        None => {
            // Unreachable: both buffers have the block lengths the resampler reported at
            // construction, which checked them. Should it ever happen, a live call gets a block
            // of silence of the right length rather than a panic or a gap in its timing.
            debug_assert!(false, "rubato refused a block of {} samples", input.len());
            output.fill(0.0);
            frames_out
        }
    }
}

/// Rounds a filter output back to PCM16, saturating: the filter can overshoot full scale
/// (Gibbs ringing on a clipped input), which must clip rather than wrap around.
#[inline]
fn to_pcm16(sample: f32) -> i16 {
    (sample * FULL_SCALE).round().clamp(-FULL_SCALE, FULL_SCALE - 1.0) as i16
}

/// Completes a sample split across calls with the first byte of `bytes`, then calls `f` with every
/// whole sample, keeping a new trailing odd byte in `held`.
#[inline]
fn for_each_sample(held: &mut Option<u8>, mut bytes: &[u8], mut f: impl FnMut(i16)) {
    if let Some(low) = *held {
        let Some((&high, rest)) = bytes.split_first() else { return };
        f(i16::from_le_bytes([low, high]));
        *held = None;
        bytes = rest;
    }
    let pairs = bytes.chunks_exact(2);
    *held = pairs.remainder().first().copied();
    for pair in pairs {
        f(i16::from_le_bytes([pair[0], pair[1]]));
    }
}

/// Copies whole samples, carrying an odd byte across calls like the resampling path does.
fn pass_through(held: &mut Option<u8>, mut bytes: &[u8], out: &mut Vec<u8>) {
    if let Some(low) = *held {
        let Some((&high, rest)) = bytes.split_first() else { return };
        out.extend_from_slice(&[low, high]);
        *held = None;
        bytes = rest;
    }
    let whole = bytes.len() & !1;
    out.extend_from_slice(&bytes[..whole]);
    *held = bytes.get(whole).copied();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::testutil::{from_le, quantise, rms, sine, snr_db, to_f64, to_le, wav};

    const PAIRS: [(u32, u32); 7] =
        [(8000, 16000), (8000, 24000), (16000, 8000), (24000, 8000), (8000, 48000), (48000, 8000), (16000, 24000)];

    /// Every ordered pair of distinct supported rates.
    fn all_pairs() -> impl Iterator<Item = (u32, u32)> {
        SUPPORTED_RATES
            .into_iter()
            .flat_map(|a| SUPPORTED_RATES.into_iter().map(move |b| (a, b)))
            .filter(|(a, b)| a != b)
    }

    fn run(x: &[i16], from: u32, to: u32) -> Vec<i16> {
        from_le(&resample(&to_le(x), from, to).unwrap())
    }

    /// Deterministic pseudo-random numbers (xorshift), so failures reproduce.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    fn noise(len: usize, seed: u64) -> Vec<i16> {
        let mut rng = Rng(seed);
        (0..len).map(|_| (rng.below(40000) as i32 - 20000) as i16).collect()
    }

    #[test]
    fn blocks_are_10ms_and_delay_is_5ms() {
        for (from, to) in all_pairs() {
            let r = Resampler::new(from, to).unwrap();
            let engine = r.engine.as_ref().unwrap();
            assert_eq!(engine.block_in as u32, from / 100, "{from}->{to}");
            assert_eq!(engine.output.len() as u32, to / 100, "{from}->{to}");
            assert_eq!(r.delay() as u32, to / 200, "{from}->{to}");
            assert_eq!((r.from_hz(), r.to_hz()), (from, to));
        }
        assert_eq!(Resampler::new(16000, 16000).unwrap().delay(), 0);
    }

    #[test]
    fn unsupported_rates_are_refused() {
        assert!(matches!(Resampler::new(44100, 8000), Err(ResampleError::UnsupportedRate(44100))));
        assert!(matches!(Resampler::new(8000, 11025), Err(ResampleError::UnsupportedRate(11025))));
        assert!(matches!(resample(&[0; 4], 0, 8000), Err(ResampleError::UnsupportedRate(0))));
        assert_eq!(
            ResampleError::UnsupportedRate(44100).to_string(),
            "unsupported sample rate 44100 Hz (supported: 8000, 16000, 24000, 48000)"
        );
    }

    #[test]
    fn tones_match_the_ideal_tone_at_the_target_rate() {
        // −6 dBFS, 1 s; the first and last 20 ms (filter run-in and run-out) are not scored.
        let amplitude = 16384.0;
        for (from, to) in PAIRS {
            for freq in [440.0, 1000.0] {
                let x = quantise(&sine(freq, from, amplitude, 0.3, from as usize));
                let y = to_f64(&run(&x, from, to));
                assert_eq!(y.len(), to as usize, "{from}->{to}");
                let ideal = sine(freq, to, amplitude, 0.3, y.len());
                let edge = to as usize / 50;
                let snr = snr_db(&ideal[edge..y.len() - edge], &y[edge..y.len() - edge]);
                eprintln!("resample {freq:>4} Hz tone {from:>5} -> {to:>5} Hz: SNR {snr:.2} dB");
                assert!(snr >= 40.0, "{freq} Hz {from}->{to}: SNR {snr:.2} dB");
            }
        }
    }

    #[test]
    fn downsampling_rejects_what_would_alias() {
        // 6 kHz does not exist at 8 kHz; let through, it would fold to 2 kHz.
        let amplitude = 16384.0;
        let x = quantise(&sine(6000.0, 16000, amplitude, 0.0, 16000));
        let y = to_f64(&run(&x, 16000, 8000));
        let edge = 8000 / 50;
        let left = rms(&y[edge..y.len() - edge]);
        // Digital silence is measured against the rounding noise floor (1/√12 LSB) instead of 0.
        let rejection = 20.0 * (rms(&to_f64(&x)) / left.max(1.0 / 12f64.sqrt())).log10();
        let silence = if left == 0.0 { " (output is digital silence)" } else { "" };
        eprintln!("resample 16000 -> 8000 Hz: 6 kHz tone rejected by ≥ {rejection:.1} dB{silence}");
        assert!(rejection >= 40.0, "6 kHz rejected by only {rejection:.1} dB");
    }

    /// Power of what is left of `y` after removing its best-fit sinusoid at `freq` (or nothing,
    /// for a tone the output rate cannot carry), relative to a tone of `amplitude`, in dB.
    fn spur_db(y: &[f64], freq: f64, rate: u32, amplitude: f64) -> f64 {
        let phase = |k: usize| 2.0 * std::f64::consts::PI * freq * k as f64 / f64::from(rate);
        let (a, b) = if freq < f64::from(rate) / 2.0 {
            let (mut yc, mut ys, mut cc, mut ss, mut cs) = (0.0, 0.0, 0.0, 0.0, 0.0);
            for (k, v) in y.iter().enumerate() {
                let (s, c) = phase(k).sin_cos();
                (yc, ys, cc, ss, cs) = (yc + v * c, ys + v * s, cc + c * c, ss + s * s, cs + c * s);
            }
            let det = cc * ss - cs * cs;
            ((yc * ss - ys * cs) / det, (ys * cc - yc * cs) / det)
        } else {
            (0.0, 0.0)
        };
        let residual = y
            .iter()
            .enumerate()
            .map(|(k, v)| {
                let (s, c) = phase(k).sin_cos();
                (v - a * c - b * s).powi(2)
            })
            .sum::<f64>()
            / y.len() as f64;
        10.0 * (residual.max(1.0 / 12.0) / (amplitude * amplitude / 2.0)).log10()
    }

    #[test]
    fn band_edge_tones_leave_no_spurs() {
        // Block-wise processing can leak near Nyquist; these are the worst frequencies of a
        // sweep over the whole band for every pair (see the module documentation).
        let amplitude = 16384.0;
        for (from, to, freq) in [
            (8000, 16000, 3917.0),
            (8000, 48000, 3917.0),
            (16000, 8000, 3917.0),
            (16000, 8000, 4014.0),
            (48000, 8000, 4014.0),
            (24000, 8000, 3917.0),
            (16000, 24000, 7991.0),
        ] {
            let x = quantise(&sine(freq, from, amplitude, 0.0, from as usize / 4));
            let y = to_f64(&run(&x, from, to));
            let edge = to as usize / 50;
            let spur = spur_db(&y[edge..y.len() - edge], freq, to, amplitude);
            eprintln!("resample {freq} Hz tone {from:>5} -> {to:>5} Hz: spurs at {spur:.1} dB");
            assert!(spur <= -70.0, "{freq} Hz {from}->{to}: spurs at {spur:.1} dB");
        }
    }

    #[test]
    fn speech_round_trip_8k_16k_8k() {
        for name in ["caller-hindi-bill-8k.wav", "caller-order-status-8k.wav"] {
            let (x, rate) = wav(name);
            assert_eq!(rate, 8000);
            let up = run(&x, 8000, 16000);
            assert_eq!(up.len(), x.len() * 2);
            let back = run(&up, 16000, 8000);
            assert_eq!(back.len(), x.len());
            let edge = 160;
            let snr = snr_db(&to_f64(&x[edge..x.len() - edge]), &to_f64(&back[edge..x.len() - edge]));
            eprintln!("resample speech {name} 8000 -> 16000 -> 8000 Hz: SNR {snr:.2} dB");
            assert!(snr >= 25.0, "{name}: SNR {snr:.2} dB");
        }
    }

    #[test]
    fn any_chunking_gives_the_same_bytes_as_one_call() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for (from, to) in all_pairs() {
            let x = to_le(&noise(from as usize * 3 / 10 + 7, u64::from(from ^ to)));
            let whole = resample(&x, from, to).unwrap();
            let mut r = Resampler::new(from, to).unwrap();
            let mut chunked = Vec::new();
            let mut rest = &x[..];
            while !rest.is_empty() {
                let n = (1 + rng.below(1000) as usize).min(rest.len());
                r.process(&rest[..n], &mut chunked);
                rest = &rest[n..];
                // Never more than one block of input held back.
                assert!(r.engine.as_ref().unwrap().pending.len() < (from / 100) as usize);
            }
            r.flush(&mut chunked);
            assert_eq!(chunked, whole, "{from}->{to}");
        }
    }

    #[test]
    fn stream_length_is_input_times_ratio() {
        for (from, to) in all_pairs() {
            let mut r = Resampler::new(from, to).unwrap();
            for n in (0..200).chain([479, 480, 481, 959, 4801]) {
                let mut out = Vec::new();
                r.process(&to_le(&noise(n, n as u64 + 1)), &mut out);
                r.flush(&mut out);
                let expected = (n as u64 * u64::from(to)).div_ceil(u64::from(from)) as usize;
                assert_eq!(out.len(), expected * 2, "{from}->{to}, {n} samples in");
            }
        }
    }

    #[test]
    fn output_is_time_aligned_and_process_holds_back_the_delay() {
        for (from, to) in all_pairs() {
            // A click at input sample 480 (a multiple of every ratio's denominator) must come out
            // at 480 × to / from: the leading delay is trimmed, not passed on.
            let mut x = vec![0i16; from as usize / 10];
            x[480] = 20000;
            let y = run(&x, from, to);
            let peak = (0..y.len()).max_by_key(|&i| i32::from(y[i]).abs()).unwrap();
            assert_eq!(peak as u64, 480 * u64::from(to) / u64::from(from), "{from}->{to}");

            // Whole blocks in, without flush: all but the delay comes out.
            let mut r = Resampler::new(from, to).unwrap();
            let mut out = Vec::new();
            r.process(&to_le(&x), &mut out);
            assert_eq!(out.len() / 2, y.len() - r.delay(), "{from}->{to}");
            assert_eq!(from_le(&out), y[..out.len() / 2]);
            r.flush(&mut out);
            assert_eq!(from_le(&out), y);
        }
    }

    #[test]
    fn reset_drops_state_and_flush_starts_afresh() {
        let a = to_le(&noise(1234, 1));
        let b = to_le(&noise(777, 2));
        for (from, to) in all_pairs() {
            let fresh = resample(&b, from, to).unwrap();

            let mut r = Resampler::new(from, to).unwrap();
            let mut out = Vec::new();
            r.process(&a[..a.len() - 1], &mut out); // leaves an odd byte held too
            let before = out.len();
            r.reset();
            assert_eq!(out.len(), before, "reset emits nothing");
            let mut after = Vec::new();
            r.process(&b, &mut after);
            r.flush(&mut after);
            assert_eq!(after, fresh, "{from}->{to} after reset");

            let mut again = Vec::new();
            r.process(&a, &mut again);
            r.flush(&mut again);
            let mut second = Vec::new();
            r.process(&b, &mut second);
            r.flush(&mut second);
            assert_eq!(second, fresh, "{from}->{to} after flush");
        }
    }

    #[test]
    fn pass_through_is_byte_exact() {
        let x: Vec<u8> = (0..1001u32).map(|i| (i * 37 % 256) as u8).collect();
        for rate in SUPPORTED_RATES {
            let mut r = Resampler::new(rate, rate).unwrap();
            let mut out = Vec::new();
            for chunk in x.chunks(7) {
                r.process(chunk, &mut out);
            }
            r.flush(&mut out);
            assert_eq!(out, x[..1000], "the dangling odd byte is dropped at flush");
            assert_eq!(resample(&x[..1000], rate, rate).unwrap(), x[..1000]);
        }
    }

    #[test]
    fn overshoot_saturates_instead_of_wrapping() {
        assert_eq!((to_pcm16(1.5), to_pcm16(-1.5), to_pcm16(0.5)), (32767, -32768, 16384));
        // A full-scale square wave rings past full scale after filtering.
        let x: Vec<i16> = (0..8000).map(|n| if (n / 20) % 2 == 0 { i16::MAX } else { i16::MIN }).collect();
        let y = run(&x, 8000, 16000);
        assert!(y.contains(&i16::MAX) && y.contains(&i16::MIN));
        for (n, pair) in y.windows(2).enumerate() {
            let jump = (i32::from(pair[0]) - i32::from(pair[1])).abs();
            assert!(jump < 40000, "wrap-around at {n}: {pair:?}");
        }
    }
}
