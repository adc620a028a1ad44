//! The applets' call details (Passthru, dynamic URL) as a query/form or JSON, and Exotel's REST
//! call details: any input parses or is refused, never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(pairs) = serde_urlencoded::from_bytes::<Vec<(String, String)>>(data) {
        let mut details = exotel::CallDetails::from_pairs(pairs);
        details.set("CallSid", "x");
    }
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) {
        let _ = exotel::CallDetails::from_json(&value);
    }
    let _ = exotel::rest::CallResource::parse(&String::from_utf8_lossy(data));
});
