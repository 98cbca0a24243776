//! The monitor against a reference model on the same random segment streams; every byte is
//! compared (driver and input format: `monitor/fuzz/differential.rs`).
//! Run: `cargo ferrule fuzz differential` or `cd monitor/fuzz && cargo +nightly fuzz run differential`.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../differential.rs"]
mod differential;

fuzz_target!(|data: &[u8]| {
    let _ = differential::run(data);
});
