//! A resampler lives as long as its call, one or two per call: its heap is part of every
//! bridged call's memory. Measured with a counting allocator (this test binary's only test).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// The heap a resampler keeps between frames, per rate pair: FFT plans, the filter's spectrum
/// and its buffers. A bridged 16 kHz call to a Twilio bot holds two of the 8 ↔ 16 kHz ones.
const BOUNDS: [(u32, u32, isize); 5] = [
    (8000, 16000, 16 << 10),
    (16000, 8000, 16 << 10),
    (8000, 24000, 20 << 10),
    (24000, 8000, 20 << 10),
    (48000, 8000, 32 << 10),
];

#[test]
fn a_resampler_holds_little_memory() {
    for (from, to, bound) in BOUNDS {
        let frame = vec![0u8; (from / 50 * 2) as usize];
        let mut out = Vec::with_capacity(1 << 16);
        let before = LIVE.load(Ordering::Relaxed);
        let mut r = exotel::Resampler::new(from, to).unwrap();
        for _ in 0..10 {
            r.process(&frame, &mut out);
            out.clear();
        }
        let held = LIVE.load(Ordering::Relaxed) - before;
        println!("{from} -> {to} Hz: {held} bytes");
        assert!(held > 1024, "the count must see the resampler at all");
        assert!(held <= bound, "{from} -> {to} Hz holds {held} bytes, over {bound}");
        drop(r);
    }
}
