//! The benchmark peers do the full job on a small generated capture: libnids' byte counts and
//! Suricata's reassembly counters must match the ground truth. `cargo ferrule test` (and
//! `cargo ferrule bench`) install the peers first; without them each test fails and says what
//! to install. Nothing turns these tests into a pass without running the peer.

use image::host::capture::Capture;
use image::host::gen::{self, GenConfig};
use image::host::{floor, peers};
use std::path::PathBuf;

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ferrule-peers-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Panics with the install commands unless `ok`.
fn require(what: &str, ok: bool) {
    assert!(
        ok,
        "{what} not installed (`cargo ferrule test` installs it as root on Debian): {:?}",
        peers::missing()
    );
}

#[test]
fn libnids_counts_every_generated_byte() {
    require(
        "libnids",
        std::path::Path::new("/usr/include/nids.h").exists(),
    );
    let d = dir("nids");
    let p = d.join("x.pcap");
    let cfg = GenConfig {
        flows: 300,
        concurrent: 50,
        reorder_pct: 10.0,
        dup_pct: 2.0,
        ..GenConfig::default()
    };
    let st = gen::generate_files(&cfg, &p).unwrap();
    let bin = peers::build_nidsbench(&d).unwrap();
    let want = peers::NidsWant {
        flows: st.flows,
        c2s: st.c2s_bytes,
        s2c: st.s2c_bytes,
        lossy: false,
    };
    let r = peers::run_nids(&bin, &p, &d, want, 1 << 17).unwrap();
    assert!(r.secs > 0.0 && r.peak_kb.unwrap() > 0, "{r:?}");
    assert_eq!(r.delivered, st.c2s_bytes + st.s2c_bytes);
    // A wrong expectation must be refused.
    let wrong = peers::NidsWant {
        c2s: st.c2s_bytes + 1,
        ..want
    };
    assert!(peers::run_nids(&bin, &p, &d, wrong, 1 << 17).is_err());
}

#[test]
fn suricata_reassembles_everything() {
    require(
        "suricata",
        std::process::Command::new("suricata")
            .arg("-V")
            .output()
            .is_ok(),
    );
    let d = dir("suri");
    let p = d.join("x.pcap");
    let cfg = GenConfig {
        flows: 200,
        concurrent: 50,
        ..GenConfig::default()
    };
    gen::generate_files(&cfg, &p).unwrap();
    let cap = Capture::load(&p).unwrap();
    let data = cap
        .frames()
        .filter(|(_, f)| floor::parse_tcp(f).is_some_and(|t| !t.payload().is_empty()))
        .count() as u64;
    let r = peers::run_suricata(&p, &d, data, 0.0).unwrap();
    assert!(r.evidence.contains("reassembly_gap 0"), "{}", r.evidence);
    // Demanding more segments than exist must fail the check.
    assert!(peers::run_suricata(&p, &d, data * 2, 0.0).is_err());
}
