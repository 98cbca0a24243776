//! Runs the app's host runner (what `cargo ferrule replay` runs) over a generated capture and
//! checks every line against the generator's ground truth.

use std::path::Path;
use std::process::Command;

use image::host::gen::{generate_files, truth_path, GenConfig};
use image::host::json::parse_lines;

#[test]
fn one_line_per_connection_with_exact_byte_counts() {
    let pcap = Path::new(env!("CARGO_TARGET_TMPDIR")).join("generated.pcap");
    let cfg = GenConfig {
        flows: 40,
        concurrent: 8,
        reorder_pct: 5.0,
        ipv6_pct: 25.0,
        seed: 7,
        ..GenConfig::default()
    };
    generate_files(&cfg, &pcap).expect("generate a capture");
    let truth = std::fs::read_to_string(truth_path(&pcap)).expect("read the ground truth");
    let (truth, _) = parse_lines(&truth).expect("parse the ground truth");

    let out = Command::new(env!("CARGO_BIN_EXE_{{name}}"))
        .arg(&pcap)
        .output()
        .expect("run the host runner");
    assert!(
        out.status.success(),
        "host runner failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).expect("utf-8 output");

    let mut got: Vec<&str> = stdout.lines().filter(|l| l.starts_with("conn ")).collect();
    let mut want: Vec<String> = truth
        .iter()
        .map(|t| {
            format!(
                "conn {} {} c2s {} s2c {}",
                t.client, t.server, t.c2s.bytes, t.s2c.bytes
            )
        })
        .collect();
    got.sort_unstable();
    want.sort_unstable();
    assert_eq!(got, want);
    assert_eq!(
        stdout.lines().last(),
        Some(format!("{{name}}: core 0: {} connections", truth.len()).as_str())
    );
}
