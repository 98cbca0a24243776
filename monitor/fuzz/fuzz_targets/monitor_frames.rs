//! Arbitrary frame sequences through a whole monitor (intake, flow table, state machines,
//! reassembly, events, actions), with invariant checks after every batch.
//! Run: `cd monitor/fuzz && cargo +nightly fuzz run monitor_frames`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    monitor::fuzzing::run(data);
});
