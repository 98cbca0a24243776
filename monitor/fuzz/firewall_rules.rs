//! Driver of the `firewall_rules` fuzz target (also replayed on stable by
//! `monitor/tests/fuzz_firewall_rules.rs`).

use std::net::Ipv4Addr;

/// Parses `data` (lossy UTF-8) as a rule file; an accepted table is printed and looked up.
pub fn run(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let Ok(mut rules) = simple_firewall::Rules::parse(&text) else {
        return;
    };
    let n = rules.iter().count();
    let dump = rules.to_string();
    // The dump has a header of 3 lines, one line per rule and the closing line.
    assert_eq!(dump.lines().count(), 4 + n, "{dump}");
    let a = Ipv4Addr::new(10, 0, 0, 1);
    let b = Ipv4Addr::new(192, 168, 1, 1);
    let (hit, _) = rules.lookup(a, 40000, b, 80);
    if let Some(i) = hit {
        assert!(i < n);
        rules.count(i);
    }
}
