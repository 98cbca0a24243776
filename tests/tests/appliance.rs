//! End to end: the default appliance (`apps/flowmon`) boots with an igb and two cores, the
//! host injects a generated capture, and every connection the guest reports (one JSON line,
//! the schema of `cargo ferrule flows`) must match the generator's ground truth (endpoints,
//! bytes per direction, final states), with every frame received.

use std::collections::HashMap;

use image::host::gen::{self, GenConfig};
use image::host::json::FlowLine;
use qemu::{Config, ExitStatus, Firmware, NicModel};
use tests::{app_elf, boot, timeout_for};

#[test]
fn flowmon_reports_every_connection_of_an_injected_capture() {
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("sample.pcap");
    let cfg = GenConfig {
        flows: 120,
        concurrent: 12,
        reorder_pct: 5.0,
        ipv6_pct: 25.0,
        seed: 9,
        ..GenConfig::default()
    };
    let stats = gen::generate_files(&cfg, &pcap).unwrap();
    let truth = std::fs::read_to_string(gen::truth_path(&pcap)).unwrap();
    let (truth, _) = image::host::json::parse_lines(&truth).unwrap();

    let mut vm = boot(
        Config::kernel(app_elf("flowmon"))
            .with_cores(2)
            .with_nic(NicModel::Igb)
            .with_timeout(timeout_for(Firmware::Direct) * 2),
    );
    vm.expect_line("`appliance: ready`", |l| l.starts_with("appliance: ready"));
    let sent = vm.nic(0).send_pcap(&pcap).expect("inject the capture");
    assert_eq!(sent as u64, stats.packets);
    vm.expect_exit(ExitStatus::Success);
    let lines = vm.lines();

    let frames: u64 = lines
        .iter()
        .filter_map(|l| l.strip_prefix("appliance: core "))
        .filter_map(|l| match l.split_whitespace().collect::<Vec<_>>()[..] {
            [_, "frames", n, ..] => n.parse::<u64>().ok(),
            _ => None,
        })
        .sum();
    assert_eq!(
        frames,
        stats.packets,
        "frames received by all cores; console:\n{}",
        vm.report()
    );

    let mut got = HashMap::new();
    for l in lines.iter().filter(|l| l.starts_with("{\"client\"")) {
        let f: FlowLine = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
        let key = (f.client.clone(), f.server.clone());
        let val = (f.c2s.bytes, f.s2c.bytes, f.client_state, f.server_state);
        assert!(
            got.insert(key, val).is_none(),
            "connection reported twice: {l}"
        );
    }
    assert_eq!(
        got.len(),
        truth.len(),
        "connections; console:\n{}",
        vm.report()
    );
    for t in &truth {
        let g = got
            .get(&(t.client.clone(), t.server.clone()))
            .unwrap_or_else(|| panic!("{} not reported", t.client));
        assert_eq!(
            *g,
            (
                t.c2s.bytes,
                t.s2c.bytes,
                t.client_state.clone(),
                t.server_state.clone()
            ),
            "{} -> {}",
            t.client,
            t.server
        );
    }
}
