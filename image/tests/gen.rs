//! The generator's captures are valid and its ground truth is right: every frame is re-parsed
//! with smoltcp's checked views (checksums verified), every direction is reassembled by a
//! simple first-copy-wins reference model written here, and the result must equal the truth.

use image::host::gen::{self, GenConfig, Truth};
use image::host::json::FlowLine;
use pcap_parser::traits::PcapReaderIterator;
use pcap_parser::{LegacyPcapReader, PcapBlockOwned, PcapError};
use sha2::{Digest, Sha256};
use smoltcp::wire::{
    EthernetFrame, EthernetProtocol, IpAddress, IpProtocol, Ipv4Packet, Ipv6Packet, TcpPacket,
};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

#[derive(Default)]
struct RefDir {
    isn: Option<u32>,
    /// `bytes[o]` = first copy of stream byte `o`.
    bytes: Vec<Option<u8>>,
    fin: bool,
    rst: bool,
    /// Segments whose bytes differ from an earlier copy.
    conflicts: u64,
}

#[derive(Default)]
struct RefFlow {
    client: Option<SocketAddr>,
    c2s: RefDir,
    s2c: RefDir,
}

struct Parsed {
    src: SocketAddr,
    dst: SocketAddr,
    seq: u32,
    syn: bool,
    fin: bool,
    rst: bool,
    payload: Vec<u8>,
}

/// Parses one frame with checked views; panics on anything invalid, checksums included.
fn parse(frame: &[u8]) -> Parsed {
    let eth = EthernetFrame::new_checked(frame).expect("ethernet");
    let mut ethertype = u16::from(eth.ethertype());
    let mut rest = eth.payload();
    while ethertype == 0x8100 || ethertype == 0x88a8 {
        ethertype = u16::from_be_bytes([rest[2], rest[3]]);
        rest = &rest[4..];
    }
    let (src, dst, tcp_bytes) = match EthernetProtocol::from(ethertype) {
        EthernetProtocol::Ipv4 => {
            let ip = Ipv4Packet::new_checked(rest).expect("ipv4");
            assert!(ip.verify_checksum(), "bad IPv4 checksum");
            assert_eq!(ip.next_header(), IpProtocol::Tcp);
            (
                IpAddress::Ipv4(ip.src_addr()),
                IpAddress::Ipv4(ip.dst_addr()),
                ip.payload().to_vec(),
            )
        }
        EthernetProtocol::Ipv6 => {
            let ip = Ipv6Packet::new_checked(rest).expect("ipv6");
            assert_eq!(ip.next_header(), IpProtocol::Tcp);
            (
                IpAddress::Ipv6(ip.src_addr()),
                IpAddress::Ipv6(ip.dst_addr()),
                ip.payload().to_vec(),
            )
        }
        e => panic!("unexpected ethertype {e:?}"),
    };
    let tcp = TcpPacket::new_checked(&tcp_bytes[..]).expect("tcp");
    assert!(tcp.verify_checksum(&src, &dst), "bad TCP checksum");
    let ip = |a: IpAddress| -> IpAddr {
        match a {
            IpAddress::Ipv4(a) => IpAddr::V4(a),
            IpAddress::Ipv6(a) => IpAddr::V6(a),
        }
    };
    Parsed {
        src: SocketAddr::new(ip(src), tcp.src_port()),
        dst: SocketAddr::new(ip(dst), tcp.dst_port()),
        seq: tcp.seq_number().0 as u32,
        syn: tcp.syn(),
        fin: tcp.fin(),
        rst: tcp.rst(),
        payload: tcp.payload().to_vec(),
    }
}

fn frames(pcap: &[u8]) -> Vec<Vec<u8>> {
    let mut r = LegacyPcapReader::new(65536, pcap).expect("pcap header");
    let mut out = Vec::new();
    loop {
        match r.next() {
            Ok((n, block)) => {
                if let PcapBlockOwned::Legacy(b) = block {
                    assert_eq!(b.caplen, b.origlen);
                    out.push(b.data.to_vec());
                }
                r.consume(n);
            }
            Err(PcapError::Eof) => break,
            Err(PcapError::Incomplete(_)) => r.refill().expect("refill"),
            Err(e) => panic!("pcap: {e:?}"),
        }
    }
    out
}

fn endpoint(a: SocketAddr) -> String {
    gen::endpoint(a.ip(), a.port())
}

/// Reference reassembly of a whole capture: per flow (keyed by client, server) both streams.
fn reference(pcap: &[u8]) -> HashMap<(String, String), RefFlow> {
    let mut flows: HashMap<(SocketAddr, SocketAddr), RefFlow> = HashMap::new();
    for f in frames(pcap) {
        let p = parse(&f);
        let key = if p.src < p.dst {
            (p.src, p.dst)
        } else {
            (p.dst, p.src)
        };
        let fl = flows.entry(key).or_default();
        if p.syn && fl.client.is_none() {
            fl.client = Some(p.src);
        }
        let client = fl.client.expect("every flow starts with a SYN");
        let d = if p.src == client {
            &mut fl.c2s
        } else {
            &mut fl.s2c
        };
        if p.syn {
            d.isn = Some(p.seq);
            continue;
        }
        d.fin |= p.fin;
        d.rst |= p.rst;
        let isn = d.isn.expect("data after SYN");
        let off = p.seq.wrapping_sub(isn.wrapping_add(1)) as usize;
        let end = off + p.payload.len();
        if !p.payload.is_empty() && d.bytes.len() < end {
            d.bytes.resize(end, None);
        }
        let mut conflict = false;
        for (i, &b) in p.payload.iter().enumerate() {
            match d.bytes[off + i] {
                None => d.bytes[off + i] = Some(b),
                Some(old) => conflict |= old != b,
            }
        }
        d.conflicts += u64::from(conflict);
    }
    flows
        .into_iter()
        .map(|((a, b), f)| {
            let c = f.client.unwrap();
            let s = if a == c { b } else { a };
            ((endpoint(c), endpoint(s)), f)
        })
        .collect()
}

fn summary(d: &RefDir) -> (u64, String, u32) {
    let mut h = Sha256::new();
    let mut n = 0;
    let mut gaps = 0;
    let mut in_hole = false;
    for b in &d.bytes {
        match b {
            Some(b) => {
                h.update([*b]);
                n += 1;
                in_hole = false;
            }
            None => {
                gaps += u32::from(!in_hole);
                in_hole = true;
            }
        }
    }
    (n, gen::hex(&h.finalize()), gaps)
}

fn generate(cfg: &GenConfig) -> (Vec<u8>, Truth) {
    let mut pcap = Vec::new();
    let truth = gen::generate(cfg, &mut pcap).expect("generate");
    (pcap, truth)
}

/// Checks the truth against the reference model; returns the total conflicting segments.
fn check(cfg: &GenConfig) -> (Truth, u64) {
    let (pcap, truth) = generate(cfg);
    let refs = reference(&pcap);
    assert_eq!(truth.flows.len() as u64, cfg.flows);
    assert_eq!(refs.len(), truth.flows.len());
    assert_eq!(frames(&pcap).len() as u64, truth.stats.packets);
    let mut conflicts = 0;
    for t in &truth.flows {
        let r = &refs[&(t.client.clone(), t.server.clone())];
        let (b, h, g) = summary(&r.c2s);
        assert_eq!(
            (b, &h, g),
            (t.c2s.bytes, &t.c2s.sha256, t.c2s.gaps),
            "c2s of {t:?}"
        );
        let (b, h, g) = summary(&r.s2c);
        assert_eq!(
            (b, &h, g),
            (t.s2c.bytes, &t.s2c.sha256, t.s2c.gaps),
            "s2c of {t:?}"
        );
        match (t.client_state.as_str(), t.server_state.as_str()) {
            ("TIME_WAIT", "CLOSED") => assert!(r.c2s.fin && r.s2c.fin && !r.c2s.rst),
            ("CLOSED", "CLOSED") => assert!(r.c2s.rst && !r.c2s.fin && !r.s2c.fin),
            ("ESTABLISHED", "ESTABLISHED") => assert!(!r.c2s.fin && !r.s2c.fin && !r.c2s.rst),
            s => panic!("unexpected states {s:?}"),
        }
        conflicts += r.c2s.conflicts + r.s2c.conflicts;
    }
    (truth, conflicts)
}

#[test]
fn clean_mix_matches_reference() {
    let (t, conflicts) = check(&GenConfig::default());
    assert_eq!(conflicts, 0);
    assert!(t.flows.iter().all(|f| f.c2s.gaps == 0 && f.s2c.gaps == 0));
    // 3 + 4 * (1 + segs + acks) + 3 packets per flow, about 28 on average.
    let per_flow = t.stats.packets as f64 / t.stats.flows as f64;
    assert!(
        (24.0..32.0).contains(&per_flow),
        "{per_flow} packets per flow"
    );
}

#[test]
fn reorder_and_duplicates_keep_streams() {
    let cfg = GenConfig {
        reorder_pct: 30.0,
        dup_pct: 10.0,
        seed: 7,
        ..GenConfig::default()
    };
    let (t, conflicts) = check(&cfg);
    assert!(
        t.stats.swaps > 20 && t.stats.dup_segments > 20,
        "{:?}",
        t.stats
    );
    assert_eq!(conflicts, 0);
}

#[test]
fn loss_makes_counted_holes() {
    let cfg = GenConfig {
        loss_pct: 10.0,
        seed: 3,
        ..GenConfig::default()
    };
    let (t, _) = check(&cfg);
    assert!(t.stats.lost_segments > 50);
    let gaps: u32 = t.flows.iter().map(|f| f.c2s.gaps + f.s2c.gaps).sum();
    assert!(gaps > 40, "{gaps} gaps");
    let bytes: u64 = t.flows.iter().map(|f| f.c2s.bytes + f.s2c.bytes).sum();
    assert!(bytes < t.stats.c2s_bytes + t.stats.s2c_bytes);
}

#[test]
fn overlaps_carry_conflicting_bytes_and_truth_keeps_first_copy() {
    let cfg = GenConfig {
        overlap_pct: 50.0,
        reorder_pct: 20.0,
        seed: 11,
        ..GenConfig::default()
    };
    let (t, conflicts) = check(&cfg);
    assert!(t.stats.overlap_segments > 50);
    // Every overlapping retransmission really disagrees with the bytes already sent.
    assert_eq!(conflicts, t.stats.overlap_segments);
}

#[test]
fn wraparound_ipv6_vlan_qinq_rst_open() {
    let cfg = GenConfig {
        wrap_pct: 100.0,
        ipv6_pct: 50.0,
        vlan_pct: 30.0,
        qinq_pct: 20.0,
        rst_pct: 20.0,
        open_pct: 20.0,
        loss_pct: 3.0,
        dup_pct: 3.0,
        reorder_pct: 10.0,
        overlap_pct: 10.0,
        seed: 5,
        ..GenConfig::default()
    };
    let (pcap, t) = generate(&cfg);
    let (t2, _) = check(&cfg);
    assert_eq!(t.flows, t2.flows);
    assert!(t.flows.iter().any(|f| f.client.starts_with('[')));
    assert!(t.flows.iter().any(|f| !f.client.starts_with('[')));
    for st in ["TIME_WAIT", "CLOSED", "ESTABLISHED"] {
        assert!(t.flows.iter().any(|f| f.client_state == st), "{st}");
    }
    // Open flows come last.
    let first_open = t
        .flows
        .iter()
        .position(|f| f.client_state == "ESTABLISHED")
        .unwrap();
    assert!(t.flows[first_open..]
        .iter()
        .all(|f| f.client_state == "ESTABLISHED"));
    // Every SYN's ISN is within 4 KiB below 2^32, and tags are present.
    let fr = frames(&pcap);
    let tagged = fr
        .iter()
        .filter(|f| f[12..14] == [0x81, 0] || f[12..14] == [0x88, 0xa8])
        .count();
    assert!(tagged > 0);
    for f in &fr {
        let p = parse(f);
        if p.syn {
            assert!(p.seq >= u32::MAX - 4200, "ISN {:#x}", p.seq);
        }
    }
}

#[test]
fn same_seed_same_bytes() {
    let cfg = GenConfig {
        reorder_pct: 5.0,
        loss_pct: 1.0,
        ..GenConfig::default()
    };
    assert_eq!(generate(&cfg).0, generate(&cfg).0);
    let other = GenConfig {
        seed: 2,
        ..cfg.clone()
    };
    assert_ne!(generate(&cfg).0, generate(&other).0);
}

#[test]
fn needle_lands_at_its_offsets() {
    let needle = b"NEEDLE!".to_vec();
    let cfg = GenConfig {
        needle: Some(needle.clone()),
        needle_every: 1000,
        ..GenConfig::default()
    };
    let (pcap, _) = generate(&cfg);
    for (_, f) in reference(&pcap) {
        for d in [&f.c2s, &f.s2c] {
            let s: Vec<u8> = d.bytes.iter().map(|b| b.unwrap()).collect();
            let hits: Vec<usize> = s
                .windows(needle.len())
                .enumerate()
                .filter(|(_, w)| *w == needle)
                .map(|(i, _)| i)
                .collect();
            let want: Vec<usize> = (0..s.len())
                .step_by(1000)
                .filter(|o| o + needle.len() <= s.len())
                .collect();
            assert_eq!(hits, want);
        }
    }
}

#[test]
fn truth_file_round_trips_and_sits_next_to_pcap() {
    let dir = std::env::temp_dir().join(format!("ferrule-gen-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("x.pcap");
    let cfg = GenConfig {
        flows: 20,
        ..GenConfig::default()
    };
    let stats = gen::generate_files(&cfg, &p).unwrap();
    let text = std::fs::read_to_string(dir.join("x.truth.jsonl")).unwrap();
    let (flows, summary): (Vec<FlowLine>, _) = image::host::json::parse_lines(&text).unwrap();
    assert_eq!(flows, generate(&cfg).1.flows);
    assert_eq!(summary["packets"], stats.packets);
    let first = text.lines().next().unwrap();
    assert!(first.starts_with("{\"client\":\"10."), "{first}");
    assert!(first.contains(",\"c2s\":{\"bytes\":"), "{first}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_settings_are_refused() {
    for cfg in [
        GenConfig {
            concurrent: 0,
            ..GenConfig::default()
        },
        GenConfig {
            req_min: 0,
            ..GenConfig::default()
        },
        GenConfig {
            loss_pct: 101.0,
            ..GenConfig::default()
        },
        GenConfig {
            needle: Some(vec![1; 10]),
            needle_every: 5,
            ..GenConfig::default()
        },
    ] {
        assert!(matches!(
            gen::generate(&cfg, &mut Vec::new()),
            Err(gen::GenError::Config(_))
        ));
    }
}
