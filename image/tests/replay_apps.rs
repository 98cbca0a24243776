//! `cargo ferrule replay --app NAME|PATH` runs any app on the appliance crate through its own
//! host runner, with no change to the tool: the default appliance `flowmon` (by package name
//! and by path) prints exactly the connection lines `cargo ferrule flows` prints.

use std::process::Command;

use image::host::gen::{self, GenConfig};

fn tool(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_cargo-ferrule"))
        .arg("ferrule")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn flowmon_replays_by_name_and_by_path_with_the_lines_of_flows() {
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("t.pcap");
    let cfg = GenConfig {
        flows: 40,
        concurrent: 8,
        reorder_pct: 10.0,
        loss_pct: 1.0,
        ipv6_pct: 30.0,
        seed: 21,
        ..GenConfig::default()
    };
    gen::generate_files(&cfg, &pcap).unwrap();
    let pcap = pcap.display().to_string();

    let (code, flows, err) = tool(&["flows", &pcap]);
    assert_eq!(code, 0, "{err}");
    let flows: Vec<&str> = flows
        .lines()
        .filter(|l| !l.starts_with("{\"summary\""))
        .collect();
    assert_eq!(flows.len(), 40);

    let (code, by_name, err) = tool(&["replay", "--app", "flowmon", &pcap]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(by_name.lines().collect::<Vec<_>>(), flows);

    let path = image::workspace_root().join("apps/flowmon");
    let (code, by_path, err) = tool(&["replay", "--app", &path.display().to_string(), &pcap]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(by_path, by_name);
}
