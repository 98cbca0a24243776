//! Arbitrary bytes through the management plane's HTTP request parser, as a connection would
//! feed them: every prefix (bytes arriving piecemeal) and then request after request
//! (pipelining), checking what `parse` promises.
//! Run: `cd appliance/fuzz && cargo +nightly fuzz run http_request`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    appliance::mgmt::http::check_invariants(data);
});
