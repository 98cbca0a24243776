//! NAT and reset on the appliance runtime under QEMU (TCG), two igb ports inline, traffic
//! injected on both (issue 9).
//!
//! * `nat` on 2 cores: a generated capture's client frames enter port 0; each server frame
//!   enters port 1 addressed to the public tuple the NAT gave its connection (learned from the
//!   SYN that came out of port 1). Out of port 1 come the client frames with the public
//!   source, out of port 0 the server frames exactly as the capture has them (back to the
//!   client's own tuple), all with valid checksums (checked by this file's own sum); the
//!   NAT's end-of-connection lines carry the bytes and SHA-256 of each direction as the
//!   monitor reassembled them, equal to the generator's ground truth.
//! * `resetter`: a connection whose client stream holds `ATTACK` (split across segments) is
//!   reset: port 1 (the server) and port 0 (the client) each get one RST+ACK with the next
//!   sequence number its endpoint expects and valid checksums; a second connection is not.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use image::host::capture::Capture;
use image::host::gen::{self, GenConfig};
use qemu::{Config, ExitStatus, Firmware, NicModel};
use tests::{app_elf, boot, test_app_elf, timeout_for, Vm};

fn sum(d: &[u8]) -> u32 {
    d.chunks(2)
        .map(|w| u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)]) as u32)
        .sum()
}

fn fold(mut s: u32) -> u16 {
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

/// An untagged IPv4 TCP frame's parts: IP header at 14, TCP at 34 (no IP options).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Tcp {
    src: (IpAddr, u16),
    dst: (IpAddr, u16),
    seq: u32,
    ack: u32,
    flags: u8,
}

/// Parses an IPv4 TCP frame and checks both checksums (Ethernet padding ignored).
fn parse(f: &[u8]) -> Tcp {
    assert_eq!(&f[12..14], &[8, 0], "IPv4");
    let ip = &f[14..34];
    assert_eq!(ip[0], 0x45);
    assert_eq!(fold(sum(ip)), 0, "IPv4 header checksum of {f:02x?}");
    let tot = u16::from_be_bytes([ip[2], ip[3]]) as usize;
    let t = &f[34..14 + tot];
    let mut ps = ip[12..20].to_vec();
    ps.extend_from_slice(&[0, 6]);
    ps.extend_from_slice(&(t.len() as u16).to_be_bytes());
    assert_eq!(fold(sum(&ps) + sum(t)), 0, "TCP checksum of {f:02x?}");
    let a = |o: usize| IpAddr::from([ip[o], ip[o + 1], ip[o + 2], ip[o + 3]]);
    let p = |o: usize| u16::from_be_bytes([t[o], t[o + 1]]);
    let w = |o: usize| u32::from_be_bytes([t[o], t[o + 1], t[o + 2], t[o + 3]]);
    Tcp {
        src: (a(12), p(0)),
        dst: (a(16), p(2)),
        seq: w(4),
        ack: w(8),
        flags: t[13],
    }
}

/// Rewrites the source (`src`) or destination of an IPv4 TCP frame and recomputes both
/// checksums (this file's own code, independent of the monitor's).
fn readdress(f: &[u8], src: bool, to: (IpAddr, u16)) -> Vec<u8> {
    let mut g = f.to_vec();
    let IpAddr::V4(a) = to.0 else { panic!("IPv4") };
    let (ai, pi) = if src { (26, 34) } else { (30, 36) };
    g[ai..ai + 4].copy_from_slice(&a.octets());
    g[pi..pi + 2].copy_from_slice(&to.1.to_be_bytes());
    let tot = u16::from_be_bytes([g[16], g[17]]) as usize;
    g[24..26].copy_from_slice(&[0, 0]);
    let c = fold(sum(&g[14..34]));
    g[24..26].copy_from_slice(&c.to_be_bytes());
    g[50..52].copy_from_slice(&[0, 0]);
    let mut ps = g[26..34].to_vec();
    ps.extend_from_slice(&[0, 6]);
    ps.extend_from_slice(&((tot - 20) as u16).to_be_bytes());
    let c = fold(sum(&ps) + sum(&g[34..14 + tot]));
    g[50..52].copy_from_slice(&c.to_be_bytes());
    g
}

/// QEMU's igb pads received frames to 60 bytes, so the guest forwards them padded.
fn padded(f: &[u8]) -> Vec<u8> {
    let mut g = f.to_vec();
    if g.len() < 60 {
        g.resize(60, 0);
    }
    g
}

/// Polls until `pred` holds on what the guest sent out of `nic`, for at most 60 s.
fn wait_for(vm: &mut Vm, nic: usize, mut pred: impl FnMut(&[Vec<u8>]) -> bool) -> Vec<Vec<u8>> {
    let end = Instant::now() + Duration::from_secs(60);
    loop {
        let got: Vec<Vec<u8>> = vm.nic(nic).captured().into_iter().map(|f| f.data).collect();
        if pred(&got) || Instant::now() > end {
            return got;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

const PUBLIC: &str = "198.51.100.1";
const SYN: u8 = 2;
const RST: u8 = 4;
const ACK: u8 = 16;

#[test]
fn nat_translates_both_ways_with_valid_checksums_and_exact_streams() {
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("nat.pcap");
    let cfg = GenConfig {
        flows: 12,
        concurrent: 4,
        exchanges: 2,
        seed: 9,
        ..GenConfig::default()
    };
    gen::generate_files(&cfg, &pcap).expect("generate a capture");
    let truth = std::fs::read_to_string(gen::truth_path(&pcap)).unwrap();
    let (truth, _) = image::host::json::parse_lines(&truth).unwrap();
    let frames: Vec<Vec<u8>> = Capture::load(&pcap)
        .unwrap()
        .frames()
        .map(|(_, f)| f.to_vec())
        .collect();
    let public: IpAddr = PUBLIC.parse().unwrap();
    let is_client = |t: &Tcp| truth.iter().any(|l| l.client == ep(t.src));

    let mut vm = boot(
        Config::kernel(app_elf("nat"))
            .with_cores(2)
            .with_nic_at(NicModel::Igb, 3)
            .with_nic_at(NicModel::Igb, 5)
            .with_timeout(timeout_for(Firmware::Direct) * 3),
    );
    vm.expect_line("`appliance: ready`", |l| l.starts_with("appliance: ready"));
    // client endpoint -> public port, learned from the SYNs out of port 1 (by ISN).
    let mut port_of: HashMap<String, u16> = HashMap::new();
    let mut isn_of: HashMap<u32, String> = HashMap::new();
    let (mut to_server, mut to_client) = (Vec::new(), Vec::new());
    for f in &frames {
        let t = parse(f);
        if is_client(&t) {
            if t.flags & (SYN | ACK) == SYN {
                isn_of.insert(t.seq, ep(t.src));
            }
            vm.nic(0).send(f).expect("inject on port 0");
            to_server.push(f.clone());
        } else {
            let client = ep(t.dst);
            if !port_of.contains_key(&client) {
                let out = wait_for(&mut vm, 1, |got| {
                    got.iter().any(|g| {
                        let u = parse(g);
                        u.flags & SYN != 0 && isn_of.get(&u.seq) == Some(&client)
                    })
                });
                for g in &out {
                    let u = parse(g);
                    if let Some(c) = isn_of.get(&u.seq).filter(|_| u.flags & SYN != 0) {
                        assert_eq!(u.src.0, public, "the SYN leaves from the public address");
                        port_of.insert(c.clone(), u.src.1);
                    }
                }
            }
            let port = *port_of
                .get(&client)
                .unwrap_or_else(|| panic!("no SYN of {client} out of port 1\n{}", vm.report()));
            vm.nic(1)
                .send(&readdress(f, false, (public, port)))
                .expect("inject on port 1");
            to_client.push(f.clone());
        }
    }
    vm.expect_exit(ExitStatus::Success);
    let out1 = wait_for(&mut vm, 1, |g| g.len() >= to_server.len());
    let out0 = wait_for(&mut vm, 0, |g| g.len() >= to_client.len());
    let report = vm.report();
    assert_eq!(
        out1.len(),
        to_server.len(),
        "frames out of port 1\n{report}"
    );
    assert_eq!(
        out0.len(),
        to_client.len(),
        "frames out of port 0\n{report}"
    );
    // One public tuple per connection (each core has its own pool, so two cores may hand out
    // the same port, to different servers: the RSS check keeps the tuples apart).
    let server_of: HashMap<String, String> = truth
        .iter()
        .map(|l| (l.client.clone(), l.server.clone()))
        .collect();
    let back: HashMap<(u16, String), String> = port_of
        .iter()
        .map(|(c, p)| ((*p, server_of[c].clone()), c.clone()))
        .collect();
    assert_eq!(back.len(), truth.len(), "{port_of:?}");
    // Per connection and in order: the client's frames readdressed, the server's as captured.
    let by_conn = |fs: &[Vec<u8>], client_of: &dyn Fn(&Tcp) -> String| {
        let mut m: BTreeMap<String, Vec<Vec<u8>>> = BTreeMap::new();
        for f in fs {
            m.entry(client_of(&parse(f))).or_default().push(f.clone());
        }
        m
    };
    let want1: Vec<Vec<u8>> = to_server
        .iter()
        .map(|f| {
            let port = port_of[&ep(parse(f).src)];
            padded(&readdress(&padded(f), true, (public, port)))
        })
        .collect();
    let public_client = |t: &Tcp| back[&(t.src.1, ep(t.dst))].clone();
    assert!(
        by_conn(&out1, &public_client) == by_conn(&want1, &public_client),
        "port 1 frames differ from the readdressed client frames"
    );
    let want0: Vec<Vec<u8>> = to_client.iter().map(|f| padded(f)).collect();
    let dst_client = |t: &Tcp| ep(t.dst);
    assert!(
        by_conn(&out0, &dst_client) == by_conn(&want0, &dst_client),
        "port 0 frames differ from the captured server frames"
    );
    // The NAT's lines: each connection once, its port, and the monitor's streams exactly.
    let lines = vm.lines();
    let mut got: Vec<String> = lines
        .iter()
        .filter(|l| l.starts_with("nat: "))
        .cloned()
        .collect();
    got.sort();
    let mut want: Vec<String> = truth
        .iter()
        .map(|l| {
            format!(
                "nat: {} -> {PUBLIC}:{} -> {} ended c2s {} {} s2c {} {}",
                l.client,
                port_of[&l.client],
                l.server,
                l.c2s.bytes,
                l.c2s.sha256,
                l.s2c.bytes,
                l.s2c.sha256
            )
        })
        .collect();
    want.sort();
    assert_eq!(got, want, "{report}");
}

fn ep(e: (IpAddr, u16)) -> String {
    format!("{}:{}", e.0, e.1)
}

/// A frame between the test's client (10.1.0.1, MAC :01) and server (192.168.9.1:80, MAC :02).
fn frame(from_client: bool, cport: u16, seq: u32, ack: u32, flags: u8, data: &[u8]) -> Vec<u8> {
    let cli: (IpAddr, u16) = ("10.1.0.1".parse().unwrap(), cport);
    let srv: (IpAddr, u16) = ("192.168.9.1".parse().unwrap(), 80);
    let (s, d) = if from_client { (cli, srv) } else { (srv, cli) };
    let mut f = if from_client {
        vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 8, 0]
    } else {
        vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 8, 0]
    };
    f.extend_from_slice(&[0x45, 0]);
    f.extend_from_slice(&(40 + data.len() as u16).to_be_bytes());
    f.extend_from_slice(&[0, 1, 0x40, 0, 64, 6, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    f.extend_from_slice(&[0; 4]);
    f.extend_from_slice(&seq.to_be_bytes());
    f.extend_from_slice(&ack.to_be_bytes());
    f.extend_from_slice(&[0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    f.extend_from_slice(data);
    // Addresses and ports, with both checksums.
    let g = readdress(&f, true, s);
    readdress(&g, false, d)
}

#[test]
fn resetter_sends_a_valid_rst_to_each_end_of_a_matching_connection() {
    let mut vm = boot(
        Config::kernel(test_app_elf("resetter"))
            .with_cores(2)
            .with_nic_at(NicModel::Igb, 3)
            .with_nic_at(NicModel::Igb, 5)
            .with_timeout(timeout_for(Firmware::Direct) * 2),
    );
    vm.expect_line("`appliance: ready`", |l| l.starts_with("appliance: ready"));
    let (ci, si) = (0x1000_0000u32, 0xfff0_0000u32);
    let mut plan: Vec<(usize, Vec<u8>)> = Vec::new();
    // Connection 1 (port 40001) sends "hello ATT" + "ACK now": reset. Connection 2 (40002)
    // sends the same without the pattern and closes.
    for (cport, second) in [(40001u16, &b"ACK now"[..]), (40002, &b"ack now"[..])] {
        let first = b"hello ATT";
        let a = first.len() as u32;
        plan.push((0, frame(true, cport, ci, 0, SYN, b"")));
        plan.push((1, frame(false, cport, si, ci + 1, SYN | ACK, b"")));
        plan.push((0, frame(true, cport, ci + 1, si + 1, ACK, b"")));
        plan.push((0, frame(true, cport, ci + 1, si + 1, ACK, first)));
        plan.push((1, frame(false, cport, si + 1, ci + 1 + a, ACK, b"")));
        plan.push((0, frame(true, cport, ci + 1 + a, si + 1, ACK, second)));
    }
    for (p, f) in &plan {
        vm.nic(*p).send(f).expect("inject");
        // One at a time through the box, so that each frame is seen after the one before.
        std::thread::sleep(Duration::from_millis(30));
    }
    vm.expect_exit(ExitStatus::Success);
    let out1 = wait_for(&mut vm, 1, |g| g.len() >= 9);
    let out0 = wait_for(&mut vm, 0, |g| g.len() >= 5);
    let report = vm.report();
    let rsts = |fs: &[Vec<u8>]| -> Vec<Tcp> {
        fs.iter()
            .map(|f| parse(f))
            .filter(|t| t.flags & RST != 0)
            .collect()
    };
    let (cli, srv): ((IpAddr, u16), (IpAddr, u16)) = (
        ("10.1.0.1".parse().unwrap(), 40001),
        ("192.168.9.1".parse().unwrap(), 80),
    );
    let end = ci + 1 + 9 + 7;
    assert_eq!(
        rsts(&out1),
        vec![Tcp {
            src: cli,
            dst: srv,
            seq: end,
            ack: si + 1,
            flags: RST | ACK,
        }],
        "port 1 (server side)\n{report}"
    );
    assert_eq!(
        rsts(&out0),
        vec![Tcp {
            src: srv,
            dst: cli,
            seq: si + 1,
            ack: end,
            flags: RST | ACK,
        }],
        "port 0 (client side)\n{report}"
    );
    // Besides the RSTs: connection 1's 4 client and 2 server frames, connection 2's 4 and 2.
    assert_eq!((out1.len(), out0.len()), (9, 5), "{report}");
    let lines: Vec<String> = vm
        .lines()
        .into_iter()
        .filter(|l| l.starts_with("resetter: "))
        .collect();
    assert_eq!(
        lines,
        vec!["resetter: reset 10.1.0.1:40001 -> 192.168.9.1:80 at 6".to_string()]
    );
}
