//! `cargo ferrule flows` in memory to size (issue 13 item 6): alone in its test binary, so the
//! process's peak RSS (`VmHWM`) is that of one run. The chunk pool used to be written out in
//! full (2.1 GB resident for a 1 KB capture) and every line was kept until the end.

use image::host::checksum::Checksums;
use image::host::flows::{self, DEFAULT_MAX_FLOWS};
use image::host::gen::{self, GenConfig};

fn peak_rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let l = s.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    l.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn a_small_capture_stays_under_64_mib() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("small.pcap");
    let st = gen::generate_files(
        &GenConfig {
            flows: 3,
            ..GenConfig::default()
        },
        &p,
    )
    .unwrap();
    assert_eq!(st.flows, 3);
    let mut out = Vec::new();
    flows::run(&p, DEFAULT_MAX_FLOWS, Checksums::Auto, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert_eq!(text.lines().count(), 4);
    let peak = peak_rss_kib();
    assert!(peak < 64 * 1024, "peak RSS {peak} KiB");
}
