//! Arbitrary text as a simple_firewall rule file: `Rules::parse` must never panic, and a table
//! it accepts must print (the mOS table dump) and look up without panicking.
//! Run: `cargo ferrule fuzz firewall_rules`.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../firewall_rules.rs"]
mod firewall_rules;

fuzz_target!(|data: &[u8]| {
    firewall_rules::run(data);
});
