//! `cargo ferrule flows` against the generator's ground truth: for every generator feature,
//! every connection's per-direction byte count, sha256 and hole count must equal the truth,
//! and so must the endpoints' final TCP states and the order in which connections end.
//!
//! When the tap lost a segment that the receiver acknowledged, the hole is tap loss (counted
//! in `lost`) and the FIN behind it is delivered, so the states are the endpoints' real ones
//! there too.

use image::host::capture::Capture;
use image::host::flows::{flows_of, DEFAULT_MAX_FLOWS};
use image::host::gen::{self, GenConfig};
use image::host::json::FlowLine;
use std::collections::HashMap;

fn run(cfg: &GenConfig) -> (Vec<FlowLine>, Vec<FlowLine>, serde_json::Value) {
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("t.pcap");
    gen::generate_files(cfg, &pcap).unwrap();
    let truth = std::fs::read_to_string(gen::truth_path(&pcap)).unwrap();
    let (truth, _) = image::host::json::parse_lines(&truth).unwrap();
    let cap = Capture::load(&pcap).unwrap();
    let (got, summary) = flows_of(&cap, DEFAULT_MAX_FLOWS).unwrap();
    (truth, got, summary)
}

fn key(f: &FlowLine) -> (String, String) {
    (f.client.clone(), f.server.clone())
}

fn lossy(f: &FlowLine) -> bool {
    f.c2s.gaps > 0 || f.s2c.gaps > 0
}

/// Compares everything; returns how many connections had holes.
fn check(cfg: &GenConfig) -> usize {
    let (truth, got, summary) = run(cfg);
    assert_eq!(
        got.len(),
        truth.len(),
        "connection count; summary {summary}"
    );
    assert_eq!(summary["dropped_frames"], 0, "summary {summary}");
    let by_key: HashMap<_, _> = got.iter().map(|f| (key(f), f)).collect();
    let mut holes = 0;
    for t in &truth {
        let g = by_key
            .get(&key(t))
            .unwrap_or_else(|| panic!("no line for {t:?}"));
        assert_eq!(g.c2s, t.c2s, "c2s of {}", t.client);
        assert_eq!(g.s2c, t.s2c, "s2c of {}", t.client);
        if lossy(t) {
            holes += 1;
        }
        // Tap loss included: a hole the receiver acknowledged is permanent, so the FIN behind
        // it is delivered and both endpoints' states are the real ones.
        assert_eq!(
            g.client_state, t.client_state,
            "client state of {}",
            t.client
        );
        assert_eq!(
            g.server_state, t.server_state,
            "server state of {}",
            t.client
        );
    }
    // Connections that closed during the capture (holes or not) end in the truth's order; those
    // still open are ended after the last frame, in flow-table order.
    let closed = |v: &[FlowLine]| -> Vec<_> {
        v.iter()
            .filter(|f| f.client_state != "ESTABLISHED")
            .map(key)
            .collect()
    };
    assert_eq!(closed(&got), closed(&truth), "end order");
    holes
}

fn base() -> GenConfig {
    GenConfig {
        flows: 120,
        concurrent: 12,
        seed: 7,
        ..GenConfig::default()
    }
}

#[test]
fn clean_connections() {
    assert_eq!(check(&base()), 0);
}

#[test]
fn reordering_and_duplicates() {
    check(&GenConfig {
        reorder_pct: 30.0,
        dup_pct: 10.0,
        ..base()
    });
}

#[test]
fn tap_loss_gives_holes() {
    let holes = check(&GenConfig {
        loss_pct: 3.0,
        ..base()
    });
    assert!(holes > 0, "the capture should have lossy connections");
}

#[test]
fn conflicting_overlaps_keep_the_first_copy() {
    check(&GenConfig {
        overlap_pct: 40.0,
        ..base()
    });
}

#[test]
fn sequence_numbers_wrapping_past_2_32() {
    check(&GenConfig {
        wrap_pct: 100.0,
        ..base()
    });
}

#[test]
fn ipv6_vlan_and_qinq() {
    check(&GenConfig {
        ipv6_pct: 50.0,
        vlan_pct: 30.0,
        qinq_pct: 20.0,
        ..base()
    });
}

#[test]
fn resets_and_connections_left_open() {
    check(&GenConfig {
        rst_pct: 20.0,
        open_pct: 20.0,
        ..base()
    });
}

#[test]
fn everything_at_once() {
    check(&GenConfig {
        flows: 300,
        concurrent: 40,
        reorder_pct: 10.0,
        dup_pct: 2.0,
        loss_pct: 1.0,
        overlap_pct: 5.0,
        ipv6_pct: 20.0,
        vlan_pct: 10.0,
        qinq_pct: 5.0,
        wrap_pct: 10.0,
        rst_pct: 5.0,
        open_pct: 5.0,
        seed: 11,
        ..GenConfig::default()
    });
}

/// Writes `cap` as pcapng (section header, one Ethernet interface, enhanced packet blocks
/// with microsecond timestamps).
fn to_pcapng(cap: &Capture) -> Vec<u8> {
    fn block(out: &mut Vec<u8>, kind: u32, body: &[u8]) {
        let len = (12 + body.len().div_ceil(4) * 4) as u32;
        out.extend_from_slice(&kind.to_le_bytes());
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(body);
        out.resize(out.len() + (body.len().div_ceil(4) * 4 - body.len()), 0);
        out.extend_from_slice(&len.to_le_bytes());
    }
    let mut out = Vec::new();
    let mut shb = Vec::new();
    shb.extend_from_slice(&0x1A2B_3C4Du32.to_le_bytes());
    shb.extend_from_slice(&1u16.to_le_bytes());
    shb.extend_from_slice(&0u16.to_le_bytes());
    shb.extend_from_slice(&(-1i64).to_le_bytes());
    block(&mut out, 0x0A0D_0D0A, &shb);
    let mut idb = Vec::new();
    idb.extend_from_slice(&1u16.to_le_bytes()); // LINKTYPE_ETHERNET
    idb.extend_from_slice(&0u16.to_le_bytes());
    idb.extend_from_slice(&65535u32.to_le_bytes());
    block(&mut out, 1, &idb);
    for (ts, frame) in cap.frames() {
        let mut epb = Vec::new();
        epb.extend_from_slice(&0u32.to_le_bytes());
        epb.extend_from_slice(&((ts >> 32) as u32).to_le_bytes());
        epb.extend_from_slice(&(ts as u32).to_le_bytes());
        epb.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        epb.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        epb.extend_from_slice(frame);
        block(&mut out, 6, &epb);
    }
    out
}

#[test]
fn pcapng_gives_the_same_lines_as_pcap() {
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("t.pcap");
    let cfg = GenConfig {
        reorder_pct: 10.0,
        loss_pct: 2.0,
        ipv6_pct: 30.0,
        ..base()
    };
    gen::generate_files(&cfg, &pcap).unwrap();
    let cap = Capture::load(&pcap).unwrap();
    let ng = dir.path().join("t.pcapng");
    std::fs::write(&ng, to_pcapng(&cap)).unwrap();
    let cap_ng = Capture::load(&ng).unwrap();
    assert_eq!(cap_ng.len(), cap.len());
    let (a, sa) = flows_of(&cap, DEFAULT_MAX_FLOWS).unwrap();
    let (b, sb) = flows_of(&cap_ng, DEFAULT_MAX_FLOWS).unwrap();
    assert_eq!(a, b);
    assert_eq!(sa, sb);
    assert_eq!(a.len(), 120);
}
