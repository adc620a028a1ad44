//! The status callback's body (multipart, urlencoded or JSON), through the gateway's own reader.
//! The first byte picks the content type the body claims.
#![no_main]

use libfuzzer_sys::fuzz_target;

const TYPES: [&str; 4] =
    ["multipart/form-data; boundary=X", "application/x-www-form-urlencoded", "application/json", "text/plain"];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else { return };
    let content_type = TYPES[pick as usize % TYPES.len()];
    let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    let _ = rt.block_on(exogate::fuzzing::status_callback_fields(content_type, body.to_vec()));
});
