//! Arbitrary frame sequences through a whole monitor (intake, flow table, state machines,
//! reassembly, events, actions), with invariant checks after every batch, and through a second
//! monitor that is also given `read_ahead` hints as the input says (some frames, reordered,
//! with decoys, their bytes rewritten in between): both must see and do the same.
//! Run: `cd monitor/fuzz && cargo +nightly fuzz run monitor_frames`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    monitor::fuzzing::run(data);
});
