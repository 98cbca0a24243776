//! `cargo ferrule flows --checksums` (the monitor's `Config::checksums`): segments with bad
//! checksums are never reassembled and are counted; `auto` recognizes a capture taken on the
//! sending host (its own segments' checksums left to the NIC) and stops checking, saying so.

use image::host::capture::Capture;
use image::host::checksum::Checksums;
use image::host::flows::{self, flow_lines_of, DEFAULT_MAX_FLOWS};
use image::host::gen::{self, GenConfig};

fn frames() -> Vec<(u64, Vec<u8>)> {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("g.pcap");
    gen::generate_files(
        &GenConfig {
            flows: 30,
            ipv6_pct: 30.0,
            seed: 21,
            ..GenConfig::default()
        },
        &p,
    )
    .unwrap();
    Capture::load(&p)
        .unwrap()
        .frames()
        .map(|(t, f)| (t, f.to_vec()))
        .collect()
}

fn pcap(frames: &[(u64, Vec<u8>)]) -> Vec<u8> {
    let mut p = vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0];
    p.extend([0; 8]);
    p.extend(262_144u32.to_le_bytes());
    p.extend(1u32.to_le_bytes());
    for (t, f) in frames {
        p.extend(((t / 1_000_000) as u32).to_le_bytes());
        p.extend(((t % 1_000_000) as u32).to_le_bytes());
        p.extend((f.len() as u32).to_le_bytes());
        p.extend((f.len() as u32).to_le_bytes());
        p.extend(f);
    }
    p
}

fn run(frames: &[(u64, Vec<u8>)], mode: Checksums) -> (Vec<String>, serde_json::Value) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.pcap");
    std::fs::write(&p, pcap(frames)).unwrap();
    let mut out = Vec::new();
    flows::run(&p, DEFAULT_MAX_FLOWS, mode, &mut out).unwrap();
    let mut lines: Vec<String> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let s: serde_json::Value = serde_json::from_str(&lines.pop().unwrap()).unwrap();
    (lines, s["summary"]["checksums"].clone())
}

fn lines_of(frames: &[(u64, Vec<u8>)]) -> Vec<String> {
    let cap = Capture::from_frames(frames.iter().map(|(t, f)| (*t, &f[..])));
    flow_lines_of(&cap, DEFAULT_MAX_FLOWS).unwrap().0
}

/// The lines with nothing checked (what the monitor makes of the bytes as they are).
fn unchecked_lines_of(frames: &[(u64, Vec<u8>)]) -> Vec<String> {
    let cap = Capture::from_frames(frames.iter().map(|(t, f)| (*t, &f[..])));
    let mut lines = Vec::new();
    flows::flows_into(
        &mut flows::Loaded::new(&cap),
        DEFAULT_MAX_FLOWS,
        Checksums::Ignore,
        |l: std::fmt::Arguments<'_>| lines.push(l.to_string()),
    )
    .unwrap();
    lines
}

/// Client port of a generated frame (clients use ports above 1024, servers 80/443).
fn from_client(f: &[u8]) -> bool {
    let l4 = if f[12..14] == [0x08, 0x00] { 34 } else { 54 };
    u16::from_be_bytes([f[l4], f[l4 + 1]]) > 1024
}

#[test]
fn bad_segments_are_dropped_and_counted() {
    let good = frames();
    // Every 7th frame gets a corrupted byte at its end (payload or TCP header): the TCP
    // checksum no longer matches. Every 50th gets a bad IPv4 header checksum instead (IPv4
    // frames only).
    let mut bad = good.clone();
    let (mut n_tcp, mut n_ip) = (0, 0);
    let mut kept = Vec::new();
    for (i, (t, f)) in bad.iter_mut().enumerate() {
        if i % 50 == 3 && f[12..14] == [0x08, 0x00] {
            f[22] ^= 1; // TTL
            n_ip += 1;
        } else if i % 7 == 5 {
            *f.last_mut().unwrap() ^= 0x20;
            n_tcp += 1;
        } else {
            kept.push((*t, f.clone()));
        }
    }
    assert!(n_tcp > 50 && n_ip > 2, "{n_tcp} {n_ip}");
    let (lines, sum) = run(&bad, Checksums::Verify);
    assert_eq!(lines, lines_of(&kept));
    assert_eq!(sum["bad_tcp"], n_tcp);
    assert_eq!(sum["bad_ipv4_header"], n_ip);
    assert_eq!(sum["mode"], "verify");
    assert_eq!(sum["offloaded"], false);
    // Ignore: the corrupted bytes are taken as they are.
    let (lines, sum) = run(&bad, Checksums::Ignore);
    assert_eq!(lines, unchecked_lines_of(&bad));
    assert_ne!(lines, lines_of(&kept));
    // Auto: one frame in 7 bad is over 10 %, so a bad frame is kept as offloaded unless its
    // host is known to have sent good ones (a 16-entry table: 60 hosts here, so not all are
    // remembered). Every bad frame is accounted for one way or the other.
    let (_, sum_auto) = run(&bad, Checksums::Auto);
    let dropped =
        sum_auto["bad_tcp"].as_u64().unwrap() + sum_auto["bad_ipv4_header"].as_u64().unwrap();
    let kept_bad = sum_auto["bad_kept_as_offloaded"].as_u64().unwrap();
    assert_eq!(dropped + kept_bad, (n_tcp + n_ip) as u64);
    assert!(dropped > kept_bad, "{dropped} {kept_bad}");
    assert_eq!(
        (sum["bad_tcp"].clone(), sum["mode"].clone()),
        (0.into(), "ignore".into())
    );
}

#[test]
fn auto_stops_checking_a_sending_host_capture() {
    let good = frames();
    // The client's segments carry checksum 0 (offloaded): all of them are "bad".
    let mut offloaded = good.clone();
    let mut clients = 0;
    for (_, f) in offloaded.iter_mut() {
        if from_client(f) {
            let l4 = if f[12..14] == [0x08, 0x00] { 34 } else { 54 };
            f[l4 + 16] = 0;
            f[l4 + 17] = 0;
            clients += 1;
        }
    }
    let (lines, sum) = run(&offloaded, Checksums::Auto);
    assert_eq!(lines, lines_of(&good));
    assert_eq!(sum["bad_tcp"], 0);
    let sampled = good.len().min(1000);
    let bad_in_sample = offloaded[..sampled]
        .iter()
        .filter(|(_, f)| from_client(f))
        .count();
    assert_eq!(
        sum["mode"],
        format!(
            "auto: not verified, {bad_in_sample} of the first {sampled} frames checked had bad checksums (offloaded on the capturing host)"
        )
    );
    assert_eq!(sum["offloaded"], true);
    assert_eq!(sum["bad_kept_as_offloaded"], bad_in_sample);
    assert!(clients > 0);
    // Verify would have dropped every client segment.
    let (_, sum) = run(&offloaded, Checksums::Verify);
    assert_eq!(sum["bad_tcp"], clients);
}
