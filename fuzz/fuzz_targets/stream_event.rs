//! Exotel's stream events (what a caller's socket sends us) and a bot's outbound events (what a
//! bridged bot sends): any text parses or is refused, never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(event) = exotel::InboundEvent::parse(&text) {
        let _ = event.sequence_number();
    }
    let _ = exotel::OutboundEvent::parse(&text);
});
