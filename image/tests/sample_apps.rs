//! The sample middleboxes over generated captures, through `cargo ferrule replay`'s runner.

use image::host::capture::Capture;
use image::host::gen::{self, GenConfig};
use image::host::json::FlowLine;
use image::host::replay::replay;
use monitor::TcpState::*;

fn capture(cfg: &GenConfig) -> (Capture, Vec<FlowLine>) {
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("t.pcap");
    gen::generate_files(cfg, &pcap).unwrap();
    let truth = std::fs::read_to_string(gen::truth_path(&pcap)).unwrap();
    let (truth, _) = image::host::json::parse_lines(&truth).unwrap();
    (Capture::load(&pcap).unwrap(), truth)
}

#[test]
fn midstat_walks_both_state_machines_and_forgets_closed_connections() {
    let (cap, truth) = capture(&GenConfig {
        flows: 30,
        concurrent: 6,
        seed: 3,
        ..GenConfig::default()
    });
    let mut mid_capture_rows = 0;
    let (ended, total, live_at_end) = replay(
        midstat::Midstat::default(),
        &cap,
        false,
        |mon, now| {
            if now != u64::MAX {
                let mut t = String::new();
                midstat::table(mon, 0, &mut t).unwrap();
                assert!(t.starts_with("Proto CPU Client Address"), "{t}");
                mid_capture_rows = mid_capture_rows.max(t.lines().count() - 1);
            }
        },
        |mon, _| {
            let m = mon.middlebox();
            (
                m.ended.iter().cloned().collect::<Vec<_>>(),
                m.ended_total,
                mon.flow_count(),
            )
        },
    )
    .unwrap();
    assert_eq!(total, truth.len() as u64);
    assert_eq!(live_at_end, 0, "closed connections must leave the table");
    assert!(mid_capture_rows >= 2, "the table showed live connections");
    for f in ended {
        assert_eq!(
            f.sides[0].as_slice(),
            [Listen, SynSent, Established, FinWait1, FinWait2, TimeWait]
        );
        assert_eq!(
            f.sides[1].as_slice(),
            [Listen, SynRcvd, Established, CloseWait, LastAck, Closed]
        );
    }
}

#[test]
fn midstat_reset_closes_both_sides() {
    let (cap, truth) = capture(&GenConfig {
        flows: 20,
        concurrent: 4,
        rst_pct: 100.0,
        seed: 4,
        ..GenConfig::default()
    });
    let ended = replay(
        midstat::Midstat::default(),
        &cap,
        false,
        |_, _| {},
        |mon, _| mon.middlebox().ended.iter().cloned().collect::<Vec<_>>(),
    )
    .unwrap();
    assert_eq!(ended.len(), truth.len());
    for f in ended {
        assert_eq!(f.sides[0].last(), Some(&Closed));
        assert_eq!(f.sides[1].last(), Some(&Closed));
    }
}

#[test]
fn simple_firewall_drops_syns_matching_drop_rules_and_counts_per_rule() {
    let (cap, truth) = capture(&GenConfig {
        flows: 60,
        concurrent: 10,
        seed: 5,
        ..GenConfig::default()
    });
    let rules = simple_firewall::Rules::parse(
        "# block two servers' web port\nDROP 0.0.0.0/0 192.168.3.0/24 dport:80\nDROP 0.0.0.0 192.168.7.1 dport:80\nACCEPT 10.0.0.0/8 0.0.0.0/0\n",
    )
    .unwrap();
    let blocked = |f: &FlowLine| f.server == "192.168.3.1:80" || f.server == "192.168.7.1:80";
    let want_dropped = truth.iter().filter(|f| blocked(f)).count() as u64;
    assert!(want_dropped > 0, "the capture must reach a blocked server");
    let (counts, syns, table, fwd) = replay(
        simple_firewall::Firewall::new(rules),
        &cap,
        true,
        |_, _| {},
        |mon, fwd| {
            let fw = mon.middlebox();
            (
                fw.rules.iter().map(|r| r.1).collect::<Vec<_>>(),
                fw.syns_dropped,
                fw.rules.to_string(),
                fwd,
            )
        },
    )
    .unwrap();
    assert_eq!(syns, want_dropped, "one SYN dropped per blocked connection");
    let on = |s: &str| {
        truth
            .iter()
            .filter(|f| blocked(f) && f.server.starts_with(s))
            .count() as u64
    };
    assert_eq!(
        counts,
        vec![
            on("192.168.3."),
            on("192.168.7."),
            truth.len() as u64 - want_dropped
        ]
    );
    assert!(table.contains("Firewall rule table"), "{table}");
    assert!(fwd.dropped >= want_dropped && fwd.forwarded > 0, "{fwd:?}");
    assert_eq!(fwd.forwarded + fwd.dropped, cap.len() as u64);
}

#[test]
fn matcher_finds_every_needle_across_segment_boundaries() {
    let needle = vec![0xde, 0xad, 0xbe, 0xef, 0x42, 0x42];
    let cfg = GenConfig {
        flows: 40,
        concurrent: 8,
        seed: 6,
        reorder_pct: 20.0,
        needle: Some(needle.clone()),
        needle_every: 3000,
        ..GenConfig::default()
    };
    let (cap, truth) = capture(&cfg);
    // The needle sits at every multiple of 3000 that leaves room for it. With 100-byte segments
    // about one needle in twenty spans two segments, so the exact count catches a matcher that
    // only looks inside single segments.
    let want: u64 = truth
        .iter()
        .flat_map(|f| [f.c2s.bytes, f.s2c.bytes])
        .filter(|&b| b >= needle.len() as u64)
        .map(|b| (b - needle.len() as u64) / 3000 + 1)
        .sum();
    let mut offsets = Vec::new();
    let total = replay(
        matcher::Matcher::new(&needle).unwrap(),
        &cap,
        false,
        |mon, _| {
            offsets.extend(mon.middlebox().matches.iter().map(|m| m.offset));
            mon.middlebox_mut().matches.clear();
        },
        |mon, _| mon.middlebox().total,
    )
    .unwrap();
    assert_eq!(total, want);
    assert_eq!(offsets.len() as u64, want);
    assert!(
        offsets.iter().all(|o| o % 3000 == 0),
        "a match off the needle grid: {offsets:?}"
    );
}
