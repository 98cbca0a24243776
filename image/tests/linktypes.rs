//! Every capture a user has: the same generated traffic written by hand as classic pcap (µs
//! and ns, both byte orders) and pcapng (several sections and interfaces), over every
//! supported link type, must give exactly the `flows` lines of the Ethernet pcap; a damaged
//! capture gives the lines of the frames before the damage, then the damage with its offset.

use image::host::capture::{Capture, CaptureError, CaptureReader};
use image::host::checksum::Checksums;
use image::host::flows::{self, flow_lines_of, FlowsError, DEFAULT_MAX_FLOWS};
use image::host::gen::{self, GenConfig};

/// The reference: a generated Ethernet capture (IPv4 and IPv6, loss, reordering, open flows;
/// no VLAN tags, which only Ethernet and SLL carry) with 1 µs timestamps from 1.5e15 µs.
fn reference() -> Vec<(u64, Vec<u8>)> {
    let mut pcap = Vec::new();
    gen::generate(
        &GenConfig {
            flows: 40,
            ipv6_pct: 40.0,
            loss_pct: 2.0,
            reorder_pct: 10.0,
            open_pct: 10.0,
            rst_pct: 10.0,
            seed: 13,
            ..GenConfig::default()
        },
        &mut pcap,
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("ref.pcap");
    std::fs::write(&p, &pcap).unwrap();
    Capture::load(&p)
        .unwrap()
        .frames()
        .map(|(t, f)| (t, f.to_vec()))
        .collect()
}

fn ethertype(f: &[u8]) -> u16 {
    u16::from_be_bytes([f[12], f[13]])
}

/// What the flows tool prints for a capture file (streamed, as `cargo ferrule flows` does),
/// and its result.
fn flows_of_file(bytes: &[u8]) -> (String, Result<(), FlowsError>) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.cap");
    std::fs::write(&p, bytes).unwrap();
    let mut out = Vec::new();
    let r = flows::run(&p, DEFAULT_MAX_FLOWS, Checksums::Auto, &mut out);
    (String::from_utf8(out).unwrap(), r)
}

fn expected(frames: &[(u64, Vec<u8>)]) -> String {
    let cap = Capture::from_frames(frames.iter().map(|(t, f)| (*t, &f[..])));
    let (lines, summary) = flow_lines_of(&cap, DEFAULT_MAX_FLOWS).unwrap();
    let mut s = String::new();
    for l in lines {
        s += &l;
        s += "\n";
    }
    s += &serde_json::json!({ "summary": summary }).to_string();
    s + "\n"
}

/// The summary counts frame bytes, which differ per link type; everything else must match.
fn without_frame_bytes(s: &str) -> String {
    let mut lines: Vec<String> = s.lines().map(str::to_string).collect();
    let last = lines.pop().unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&last).unwrap();
    v["summary"].as_object_mut().unwrap().remove("frame_bytes");
    lines.push(v.to_string());
    lines.join("\n")
}

struct Pcap {
    big: bool,
    ns: bool,
    out: Vec<u8>,
}

impl Pcap {
    fn new(big: bool, ns: bool, linktype: u32) -> Pcap {
        let mut p = Pcap {
            big,
            ns,
            out: Vec::new(),
        };
        p.u32(if ns { 0xa1b2_3c4d } else { 0xa1b2_c3d4 });
        p.u16(2);
        p.u16(4);
        p.u32(0);
        p.u32(0);
        p.u32(262_144);
        p.u32(linktype);
        p
    }
    fn u32(&mut self, v: u32) {
        let b = if self.big {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        };
        self.out.extend(b);
    }
    fn u16(&mut self, v: u16) {
        let b = if self.big {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        };
        self.out.extend(b);
    }
    fn frame(&mut self, ts_us: u64, f: &[u8]) {
        self.u32((ts_us / 1_000_000) as u32);
        let sub = ts_us % 1_000_000;
        self.u32(if self.ns { sub * 1000 } else { sub } as u32);
        self.u32(f.len() as u32);
        self.u32(f.len() as u32);
        self.out.extend(f);
    }
}

/// Rewrites an Ethernet frame for a link type.
fn relink(linktype: u32, f: &[u8], family6: u32, big_family: bool) -> Vec<u8> {
    let ip = &f[14..];
    let v6 = ethertype(f) == 0x86dd;
    let mut out = Vec::new();
    match linktype {
        1 => return f.to_vec(),
        12 | 14 | 101 | 228 | 229 => {}
        0 | 108 => {
            let fam = if v6 { family6 } else { 2 };
            out.extend(if big_family {
                fam.to_be_bytes()
            } else {
                fam.to_le_bytes()
            });
        }
        113 => {
            out.extend(0u16.to_be_bytes()); // packet type: to us
            out.extend(1u16.to_be_bytes()); // ARPHRD_ETHER
            out.extend(6u16.to_be_bytes());
            out.extend(&f[6..12]);
            out.extend([0, 0]);
            out.extend(&f[12..14]);
        }
        276 => {
            out.extend(&f[12..14]);
            out.extend([0, 0]);
            out.extend(3u32.to_be_bytes()); // interface index
            out.extend(1u16.to_be_bytes());
            out.extend([4, 6]); // outgoing, address length
            out.extend(&f[6..12]);
            out.extend([0, 0]);
        }
        _ => unreachable!(),
    }
    out.extend(ip);
    out
}

#[test]
fn classic_pcap_every_link_type_and_byte_order_gives_the_ethernet_lines() {
    let frames = reference();
    let want = expected(&frames);
    assert_eq!(want.lines().count(), 41);
    // The Ethernet file itself, in the four classic variants.
    for (big, ns) in [(false, false), (true, false), (false, true), (true, true)] {
        let mut p = Pcap::new(big, ns, 1);
        for (t, f) in &frames {
            p.frame(*t, f);
        }
        let (got, r) = flows_of_file(&p.out);
        r.unwrap();
        assert_eq!(got, want, "ethernet big {big} ns {ns}");
    }
    let want = without_frame_bytes(&want);
    // (link type, IPv6 family, family in network order, big-endian file, ns)
    let cases: [(u32, u32, bool, bool, bool); 12] = [
        (101, 0, false, false, false),
        (12, 0, false, true, false),
        (14, 0, false, false, true),
        (0, 10, false, false, false), // Linux NULL, little-endian writer
        (0, 24, true, true, false),   // NetBSD/OpenBSD NULL from a big-endian writer
        (0, 28, false, false, true),  // FreeBSD
        (0, 30, true, false, false),  // macOS, family in the other order than the file
        (108, 24, true, false, false), // OpenBSD LOOP: network order
        (108, 30, false, true, true),
        (113, 0, false, false, false),
        (113, 0, false, true, true),
        (276, 0, false, false, true),
    ];
    for (lt, fam6, big_family, big, ns) in cases {
        let mut p = Pcap::new(big, ns, lt);
        for (t, f) in &frames {
            p.frame(*t, &relink(lt, f, fam6, big_family));
        }
        let (got, r) = flows_of_file(&p.out);
        r.unwrap();
        assert_eq!(
            without_frame_bytes(&got),
            want,
            "link type {lt} family6 {fam6} big {big} ns {ns}"
        );
    }
}

/// pcapng writer: sections, interfaces, enhanced and simple packets, in either byte order.
struct Ng {
    big: bool,
    out: Vec<u8>,
}

impl Ng {
    fn b32(&self, v: u32) -> [u8; 4] {
        if self.big {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    }
    fn block(&mut self, ty: u32, body: &[u8]) {
        let len = 12 + body.len().div_ceil(4) * 4;
        let (t, l) = (self.b32(ty), self.b32(len as u32));
        self.out.extend(t);
        self.out.extend(l);
        self.out.extend(body);
        self.out.resize(self.out.len() + (len - 12 - body.len()), 0);
        self.out.extend(l);
    }
    fn section(&mut self, big: bool) {
        self.big = big;
        let mut b = self.b32(0x1a2b_3c4d).to_vec();
        b.extend(if big { [0, 1, 0, 0] } else { [1, 0, 0, 0] });
        b.extend((-1i64).to_le_bytes());
        self.block(0x0a0d_0d0a, &b);
    }
    /// An interface with `tsresol` (the option's byte) and an offset in seconds.
    fn iface(&mut self, linktype: u16, tsresol: u8, offset_s: i64) {
        let lt = if self.big {
            linktype.to_be_bytes()
        } else {
            linktype.to_le_bytes()
        };
        let mut b = lt.to_vec();
        b.extend([0, 0]);
        b.extend(self.b32(262_144));
        let opt = |code: u16, len: u16, big: bool| {
            let mut v = Vec::new();
            if big {
                v.extend(code.to_be_bytes());
                v.extend(len.to_be_bytes());
            } else {
                v.extend(code.to_le_bytes());
                v.extend(len.to_le_bytes());
            }
            v
        };
        b.extend(opt(9, 1, self.big));
        b.extend([tsresol, 0, 0, 0]);
        b.extend(opt(14, 8, self.big));
        b.extend(if self.big {
            offset_s.to_be_bytes()
        } else {
            offset_s.to_le_bytes()
        });
        b.extend(opt(0, 0, self.big));
        self.block(1, &b);
    }
    fn epb(&mut self, iface: u32, ts: u64, f: &[u8]) {
        let mut b = self.b32(iface).to_vec();
        b.extend(self.b32((ts >> 32) as u32));
        b.extend(self.b32(ts as u32));
        b.extend(self.b32(f.len() as u32));
        b.extend(self.b32(f.len() as u32));
        b.extend(f);
        self.block(6, &b);
    }
}

#[test]
fn pcapng_with_sections_and_interfaces_of_different_link_types() {
    let frames = reference();
    let want = without_frame_bytes(&expected(&frames));
    let mut ng = Ng {
        big: false,
        out: Vec::new(),
    };
    // Section 1 (little-endian): Ethernet in µs, SLL2 in ns with a 1000 s offset, raw IPv4
    // (228) and raw IPv6 (229) in 2^-20 s units. Section 2 (big-endian) from the middle on:
    // NULL, LOOP, SLL, raw IP.
    ng.section(false);
    ng.iface(1, 6, 0);
    ng.iface(276, 9, 1000);
    ng.iface(228, 0x80 | 20, 0);
    ng.iface(229, 0x80 | 20, 0);
    let half = frames.len() / 2;
    for (i, (t, f)) in frames.iter().enumerate() {
        if i == half {
            ng.section(true);
            ng.iface(0, 6, 0);
            ng.iface(108, 6, 0);
            ng.iface(113, 3, 0);
            ng.iface(101, 6, 0);
        }
        let v6 = ethertype(f) == 0x86dd;
        let k = i % 4;
        let (iface, ts, frame) = match (i >= half, k) {
            (false, 0) => (0, *t, f.clone()),
            (false, 1) => (1, (t - 1_000_000_000) * 1000, relink(276, f, 0, false)),
            (false, _) => {
                // 2^-20 s units: exact when converted back (µs values chosen as multiples of
                // 15625 = 1e6 / 64 would be; instead check the timestamp rounding below).
                let units = (*t as u128 * (1 << 20) / 1_000_000) as u64 + 1;
                (if v6 { 3 } else { 2 }, units, relink(228, f, 0, false))
            }
            (true, 0) => (0, *t, relink(0, f, 24, false)),
            (true, 1) => (1, *t, relink(108, f, 30, true)),
            (true, 2) => (2, *t / 1000, relink(113, f, 0, false)),
            (true, _) => (3, *t, relink(101, f, 0, false)),
        };
        ng.epb(iface, ts, &frame);
    }
    // Timestamps in ms (interface 2 of section 2) lose precision; the flows lines do not
    // depend on it (no timeouts); the reader must still convert every unit back exactly.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("m.pcapng");
    std::fs::write(&p, &ng.out).unwrap();
    let mut r = CaptureReader::open(&p).unwrap();
    let mut i = 0;
    while let Some((ts, f)) = r.next_frame().unwrap() {
        let (t, eth) = &frames[i];
        let want_ts = match (i >= half, i % 4) {
            (true, 2) => t / 1000 * 1000,
            _ => *t,
        };
        assert_eq!(ts, want_ts, "timestamp of frame {i}");
        assert_eq!(&f[12..], &eth[12..], "frame {i} after the MAC addresses");
        i += 1;
    }
    assert_eq!(i, frames.len());
    let (got, res) = flows_of_file(&ng.out);
    res.unwrap();
    assert_eq!(without_frame_bytes(&got), want);
}

#[test]
fn damaged_captures_give_the_lines_before_the_damage_then_its_offset() {
    let frames = reference();
    let mut p = Pcap::new(false, false, 1);
    let mut offsets = Vec::new();
    for (t, f) in &frames {
        offsets.push(p.out.len() as u64);
        p.frame(*t, f);
    }
    let k = frames.len() * 2 / 3;
    let want = expected(&frames[..k]);
    // 1. Cut short in the middle of frame k's data.
    let cut = &p.out[..offsets[k] as usize + 16 + 7];
    let (got, r) = flows_of_file(cut);
    assert_eq!(got, want);
    match r {
        Err(FlowsError::Capture(CaptureError::Damaged { offset, frames, .. })) => {
            assert_eq!((offset, frames), (offsets[k], k as u64));
        }
        other => panic!("{other:?}"),
    }
    // 2. Cut short in a record header.
    let (got, r) = flows_of_file(&p.out[..offsets[k] as usize + 5]);
    assert_eq!(got, want);
    let e = r.unwrap_err().to_string();
    assert!(
        e.ends_with(&format!(
            "damaged at byte {} (after {k} frames): cut short: record header needs 16 bytes, 5 left",
            offsets[k]
        )),
        "{e}"
    );
    // 3. A record length no writer makes.
    let mut bad = p.out.clone();
    let at = offsets[k] as usize + 8;
    bad[at..at + 4].copy_from_slice(&0xffff_fff0u32.to_le_bytes());
    let (got, r) = flows_of_file(&bad);
    assert_eq!(got, want);
    assert!(r
        .unwrap_err()
        .to_string()
        .ends_with("record claims 4294967280 captured bytes (at most 262144)"),);
    // 4. pcapng: a block whose trailing length disagrees, and a packet on an undeclared
    // interface.
    let mut ng = Ng {
        big: false,
        out: Vec::new(),
    };
    ng.section(false);
    ng.iface(1, 6, 0);
    let mut ng_off = Vec::new();
    for (t, f) in &frames {
        ng_off.push(ng.out.len());
        ng.epb(0, *t, f);
    }
    let mut bad = ng.out.clone();
    let end = ng_off[k + 1] - 4;
    bad[end] ^= 4;
    let (got, r) = flows_of_file(&bad);
    assert_eq!(got, want);
    match r {
        Err(FlowsError::Capture(CaptureError::Damaged { offset, frames, .. })) => {
            assert_eq!((offset, frames), (ng_off[k] as u64, k as u64));
        }
        other => panic!("{other:?}"),
    }
    let mut bad = ng.out.clone();
    bad[ng_off[k] + 8] = 7;
    let (got, r) = flows_of_file(&bad);
    assert_eq!(got, want);
    assert!(r.unwrap_err().to_string().ends_with(&format!(
        "damaged at byte {} (after {k} frames): packet on undeclared interface 7",
        ng_off[k]
    )));
}

#[test]
fn unknown_link_types_and_non_captures_are_named() {
    let p = Pcap::new(false, false, 105);
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("wifi.pcap");
    std::fs::write(&f, &p.out).unwrap();
    assert!(matches!(
        CaptureReader::open(&f),
        Err(CaptureError::Linktype(_, 105))
    ));
    // pcapng: the frames before the first packet on an unknown interface are read.
    let frames = reference();
    let mut ng = Ng {
        big: true,
        out: Vec::new(),
    };
    ng.section(true);
    ng.iface(1, 6, 0);
    ng.iface(147, 6, 0);
    ng.epb(0, frames[0].0, &frames[0].1);
    ng.epb(1, frames[1].0, &frames[1].1);
    std::fs::write(&f, &ng.out).unwrap();
    let mut r = CaptureReader::open(&f).unwrap();
    assert_eq!(r.next_frame().unwrap().unwrap().1, &frames[0].1[..]);
    assert!(matches!(
        r.next_frame(),
        Err(CaptureError::Linktype(_, 147))
    ));
    assert!(r.next_frame().unwrap().is_none());
    std::fs::write(&f, b"GIF89a, not a capture").unwrap();
    let e = CaptureReader::open(&f).err().unwrap().to_string();
    assert!(
        e.ends_with("not a readable pcap/pcapng: unknown magic 47494638"),
        "{e}"
    );
}
