//! Arbitrary bytes as a capture file: the reader (`appliance::capture`) must yield frames and
//! then end or name the damage, never panic, never loop, never allocate past its limits, and
//! every frame it yields goes through a monitor.
//! Run: `cargo ferrule fuzz capture_reader`.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../capture_reader.rs"]
mod capture_reader;

fuzz_target!(|data: &[u8]| {
    capture_reader::run(data);
});
