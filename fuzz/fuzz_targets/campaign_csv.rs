//! A campaign's CSV: any bytes import or are refused with reasons; what imports is E.164 and
//! without repeats.
#![no_main]

use std::collections::HashSet;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(import) = exogate::campaign::import::parse(data, None) {
        let mut seen = HashSet::new();
        for c in &import.contacts {
            assert!(c.phone.starts_with('+') && c.phone[1..].bytes().all(|b| b.is_ascii_digit()), "{}", c.phone);
            assert!(seen.insert(c.phone.clone()), "duplicate {}", c.phone);
        }
    }
});
