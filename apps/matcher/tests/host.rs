//! matcher on the host: its host runner (what `cargo ferrule replay --app matcher` runs), built
//! with the default pattern, finds every needle the generator wrote, also those split across
//! segments and those in reordered segments, at its exact stream offset.

use std::collections::BTreeSet;
use std::process::Command;

use image::host::gen::{self, GenConfig};
use image::host::json::parse_lines;

#[test]
fn every_needle_once_at_its_offset_across_segment_boundaries() {
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("t.pcap");
    let cfg = GenConfig {
        flows: 40,
        concurrent: 8,
        seed: 6,
        reorder_pct: 20.0,
        ipv6_pct: 25.0,
        needle: Some(vec![0xde, 0xad, 0xbe, 0xef, 0x42, 0x42]),
        needle_every: 3000,
        ..GenConfig::default()
    };
    gen::generate_files(&cfg, &pcap).unwrap();
    let truth = std::fs::read_to_string(gen::truth_path(&pcap)).unwrap();
    let (truth, _) = parse_lines(&truth).unwrap();
    // The needle sits at every multiple of 3000 that leaves room for its 6 bytes.
    let mut want = BTreeSet::new();
    for t in &truth {
        for (dir, bytes) in [("c2s", t.c2s.bytes), ("s2c", t.s2c.bytes)] {
            for k in 0..bytes.saturating_sub(5).div_ceil(3000) {
                want.insert(format!(
                    "match {} {} {dir} {}",
                    t.client,
                    t.server,
                    k * 3000
                ));
            }
        }
    }
    let out = Command::new(env!("CARGO_BIN_EXE_matcher"))
        .arg(&pcap)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    let got: BTreeSet<String> = lines
        .iter()
        .filter(|l| l.starts_with("match "))
        .map(|l| l.to_string())
        .collect();
    // Each occurrence once.
    assert_eq!(got.len(), lines.len() - 1, "{stdout}");
    assert_eq!(got, want);
    assert_eq!(
        lines.last().copied(),
        Some(
            format!(
                "matcher: core 0 pattern deadbeef4242 matches {}",
                want.len()
            )
            .as_str()
        )
    );
    // With 100..600-byte requests and 1448-byte response segments, some needles straddle two
    // segments: the exact set above includes them.
    assert!(want.len() > 40, "{}", want.len());
}
