//! The appliance runtime under QEMU (TCG).
//!
//! * Tap mode: `flowmon` on 4 cores with a 4-queue igb watches generated traffic (IPv6,
//!   reordering, loss); its JSON lines, as a sorted set, are exactly the lines
//!   `cargo ferrule flows` prints for the same capture on the host; each core's summary
//!   gives its monitor's cycles per frame, a part of its loop's. On one core, a run that
//!   ends with more open connections than its log ring holds loses only some of their
//!   lines, counted, never the summary.
//! * Inline mode: `passthrough` on an igb pair and on a virtio-net pair, with each
//!   connection's client frames injected on port 0 and its server frames on port 1 (plus
//!   non-TCP frames on both): every frame comes out of the other port byte-identical, nothing
//!   extra, each flow's frames in their order.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};

use image::host::capture::Capture;
use image::host::flows::{flow_lines_of, DEFAULT_MAX_FLOWS};
use image::host::gen::{self, GenConfig};
use qemu::{Config, ExitStatus, Firmware, NicModel};
use tests::{app_elf, boot, timeout_for, Vm};

fn generate(dir: &Path, cfg: &GenConfig) -> (std::path::PathBuf, u64) {
    let pcap = dir.join("t.pcap");
    let stats = gen::generate_files(cfg, &pcap).expect("generate a capture");
    (pcap, stats.packets)
}

/// Per-core `appliance: core C frames N ...` summary lines, summed.
fn frames_received(lines: &[String]) -> u64 {
    lines
        .iter()
        .filter_map(|l| l.strip_prefix("appliance: core "))
        .filter_map(|l| match l.split_whitespace().collect::<Vec<_>>()[..] {
            [_, "frames", n, ..] => n.parse::<u64>().ok(),
            _ => None,
        })
        .sum()
}

/// A core's cost figures from its summary line: (`monitor_cycles/frame`, `cycles/frame`).
/// The monitor's cycles are measured inside the loop's busy time, over the same frames, so
/// they are never more; both are 0 exactly when the core received nothing.
fn cycle_figures(l: &str) -> (u64, u64) {
    let w: Vec<&str> = l.split_whitespace().collect();
    let at = |name: &str| {
        let i = w
            .iter()
            .position(|x| *x == name)
            .unwrap_or_else(|| panic!("{name}: {l}"));
        w[i + 1].parse::<u64>().unwrap()
    };
    let (monitor, all) = (at("monitor_cycles/frame"), at("cycles/frame"));
    assert!(monitor <= all, "{l}");
    assert_eq!(monitor == 0, all == 0, "{l}");
    (monitor, all)
}

#[test]
fn tap_mode_on_four_queues_prints_exactly_the_host_flows_lines() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = GenConfig {
        flows: 160,
        concurrent: 16,
        reorder_pct: 10.0,
        loss_pct: 2.0,
        ipv6_pct: 30.0,
        rst_pct: 5.0,
        open_pct: 5.0,
        seed: 81,
        ..GenConfig::default()
    };
    let (pcap, packets) = generate(dir.path(), &cfg);
    let (mut want, _) = flow_lines_of(&Capture::load(&pcap).unwrap(), DEFAULT_MAX_FLOWS).unwrap();
    want.sort();
    assert_eq!(want.len(), 160);
    assert!(
        want.iter().any(|l| !l.contains("\"gaps\":0")),
        "loss made no hole"
    );

    let mut vm = boot(
        Config::kernel(app_elf("flowmon"))
            .with_cores(4)
            .with_nic(NicModel::Igb)
            .with_timeout(timeout_for(Firmware::Direct) * 4),
    );
    let ports = vm.expect_line("the igb port", |l| l.starts_with("appliance: port 0 "));
    assert!(ports.ends_with("4 queues"), "{ports}");
    vm.expect_line("`appliance: ready`", |l| l.starts_with("appliance: ready"));
    let sent = vm.nic(0).send_pcap(&pcap).expect("inject the capture");
    assert_eq!(sent as u64, packets);
    vm.expect_exit(ExitStatus::Success);
    let lines = vm.lines();
    assert_eq!(frames_received(&lines), packets, "{}", vm.report());
    // Every core watched part of the traffic: RSS spread it over the four queues.
    let cores: HashSet<&str> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("appliance: core "))
        .filter(|l| l.split_whitespace().nth(1) == Some("frames"))
        .filter(|l| l.split_whitespace().nth(2) != Some("0"))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(cores.len(), 4, "{}", vm.report());
    // Each of them measured its monitor's share of the loop.
    let costs: Vec<(u64, u64)> = lines
        .iter()
        .filter(|l| l.starts_with("appliance: core ") && l.contains(" monitor_cycles/frame "))
        .map(|l| cycle_figures(l))
        .collect();
    assert_eq!(costs.len(), 4, "{}", vm.report());
    assert!(costs.iter().all(|&(m, _)| m > 0), "{}", vm.report());
    let mut got: Vec<String> = lines
        .into_iter()
        .filter(|l| l.starts_with("{\"client\""))
        .collect();
    got.sort();
    assert_eq!(got, want, "console:\n{}", vm.report());
}

/// The end of a run can print more than a core's log ring holds (flowmon: one line per
/// connection still open); the summary lines come after those and are never the ones lost.
#[test]
fn the_summary_survives_a_log_ring_overflow_at_the_end_of_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = GenConfig {
        flows: 300,
        concurrent: 300,
        exchanges: 1,
        max_resp_segs: 1,
        open_pct: 100.0,
        seed: 23,
        ..GenConfig::default()
    };
    let (pcap, packets) = generate(dir.path(), &cfg);
    // Fewer frames than the ring has descriptors: none can be lost on the way in.
    assert!(packets < 4096, "{packets}");
    let (want, _) = flow_lines_of(&Capture::load(&pcap).unwrap(), DEFAULT_MAX_FLOWS).unwrap();
    let want: HashSet<String> = want.into_iter().collect();
    assert_eq!(want.len(), 300);
    let mut vm = boot(
        Config::kernel(app_elf("flowmon"))
            .with_cores(1)
            .with_nic(NicModel::Igb)
            .with_timeout(timeout_for(Firmware::Direct) * 2),
    );
    vm.expect_line("`appliance: ready`", |l| l.starts_with("appliance: ready"));
    assert_eq!(
        vm.nic(0).send_pcap(&pcap).expect("inject the capture") as u64,
        packets
    );
    vm.expect_exit(ExitStatus::Success);
    let lines = vm.lines();
    let report = vm.report();
    assert_eq!(frames_received(&lines), packets, "{report}");
    let printed: Vec<&String> = lines
        .iter()
        .filter(|l| l.starts_with("{\"client\""))
        .collect();
    assert!(printed.iter().all(|l| want.contains(*l)), "{report}");
    let dropped: usize = lines
        .iter()
        .find_map(|l| l.strip_prefix("appliance: core 0 log lines dropped "))
        .and_then(|n| n.parse().ok())
        .expect("the log summary");
    // The 300 lines overflowed the ring (so this tests what it says), and nothing but those
    // was lost: every summary line is there.
    assert!(dropped > 0, "{report}");
    assert_eq!(printed.len() + dropped, 300, "{report}");
    let costs: Vec<(u64, u64)> = lines
        .iter()
        .filter(|l| l.starts_with("appliance: core 0 monitor_cycles/frame "))
        .map(|l| cycle_figures(l))
        .collect();
    assert_eq!(costs.len(), 1, "{report}");
    assert!(costs[0].0 > 0, "{report}");
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.starts_with("appliance: core 0 checksums "))
            .count(),
        1,
        "{report}"
    );
}

#[test]
fn unsupported_nics_are_named_and_settings_that_do_not_fit_are_refused() {
    // 48 MiB: flowmon's two cores want 2 x ~19 MiB of storage, and about 23 MiB are left
    // after the kernel and the igb's 4096-entry rings took theirs.
    let mut vm = boot(
        Config::kernel(app_elf("flowmon"))
            .with_cores(2)
            .with_memory_mib(48)
            .with_nic(NicModel::E1000e)
            .with_nic(NicModel::Igb)
            .with_timeout(timeout_for(Firmware::Direct)),
    );
    let e1000e = vm.expect_line("the e1000e named", |l| l.contains("8086:10d3"));
    assert!(
        e1000e.starts_with("appliance: pci ") && e1000e.contains("no driver for"),
        "{e1000e}"
    );
    let budget = vm.expect_line("the budget line", |l| {
        l.starts_with("appliance: per-core storage ")
    });
    let w: Vec<&str> = budget.split_whitespace().collect();
    // appliance: per-core storage N bytes x C cores = T of R free
    assert_eq!(
        (w[4], w[5], w[7], w[8], w[10], w[12]),
        ("bytes", "x", "cores", "=", "of", "free"),
        "{budget}"
    );
    let (per, cores, total, free): (u64, u64, u64, u64) = (
        w[3].parse().unwrap(),
        w[6].parse().unwrap(),
        w[9].parse().unwrap(),
        w[11].parse().unwrap(),
    );
    assert_eq!((cores, per * cores), (2, total), "{budget}");
    assert!(total > free, "{budget}");
    vm.expect_line("the refusal", |l| {
        l.starts_with("appliance: refused: the settings' per-core storage does not fit")
    });
    vm.expect_exit(ExitStatus::Failure);
}

/// Source and destination `IP:PORT` of a TCP frame (Ethernet, IPv4 or IPv6, no options
/// beyond what the generator writes), or `None`.
fn tcp_endpoints(f: &[u8]) -> Option<(String, String)> {
    let ethertype = u16::from_be_bytes([*f.get(12)?, *f.get(13)?]);
    let (src, dst, l4) = match ethertype {
        0x0800 if f.get(23) == Some(&6) => {
            let ihl = (f[14] & 0x0f) as usize * 4;
            let a: [u8; 4] = f.get(26..30)?.try_into().ok()?;
            let b: [u8; 4] = f.get(30..34)?.try_into().ok()?;
            (
                std::net::IpAddr::from(a),
                std::net::IpAddr::from(b),
                14 + ihl,
            )
        }
        0x86dd if f.get(20) == Some(&6) => {
            let a: [u8; 16] = f.get(22..38)?.try_into().ok()?;
            let b: [u8; 16] = f.get(38..54)?.try_into().ok()?;
            (std::net::IpAddr::from(a), std::net::IpAddr::from(b), 54)
        }
        _ => return None,
    };
    let sp = u16::from_be_bytes([*f.get(l4)?, *f.get(l4 + 1)?]);
    let dp = u16::from_be_bytes([*f.get(l4 + 2)?, *f.get(l4 + 3)?]);
    Some((gen::endpoint(src, sp), gen::endpoint(dst, dp)))
}

/// The key under which a frame's order must be kept: an IPv4 fragment's datagram, a TCP
/// direction, or "other".
fn flow_key(f: &[u8]) -> String {
    let v4_fragment = f.get(12..14) == Some(&[0x08, 0x00][..])
        && f.get(20..22)
            .is_some_and(|fo| fo[0] & 0x3f != 0 || fo[1] != 0);
    if v4_fragment {
        return format!("fragments of datagram {:02x?}", &f[18..20]);
    }
    tcp_endpoints(f).map_or_else(|| "other".to_string(), |(s, d)| format!("{s} > {d}"))
}

/// A UDP datagram of 40 payload bytes as three IPv4 fragments (offsets 0, 16, 32 of the
/// UDP datagram), in the order `order`.
fn udp_fragments(id: u16, order: [usize; 3]) -> Vec<Vec<u8>> {
    let mut udp = vec![0u8; 8];
    udp[0..2].copy_from_slice(&5353u16.to_be_bytes());
    udp[2..4].copy_from_slice(&5353u16.to_be_bytes());
    udp[4..6].copy_from_slice(&48u16.to_be_bytes());
    udp.extend((0..40).map(|i| (i as u16 + id) as u8));
    let cuts = [(0usize, 16usize), (16, 32), (32, 48)];
    order
        .iter()
        .map(|&k| {
            let (a, b) = cuts[k];
            let mut f = vec![2, 0, 0, 0, 0, 9, 2, 0, 0, 0, 0, 8, 0x08, 0x00];
            let mut ip = vec![0u8; 20];
            ip[0] = 0x45;
            ip[2..4].copy_from_slice(&((20 + b - a) as u16).to_be_bytes());
            ip[4..6].copy_from_slice(&id.to_be_bytes());
            let more = if b < 48 { 0x2000 } else { 0 };
            ip[6..8].copy_from_slice(&((a / 8) as u16 | more).to_be_bytes());
            ip[8] = 64;
            ip[9] = 17;
            ip[12..16].copy_from_slice(&[10, 9, 0, 1]);
            ip[16..20].copy_from_slice(&[10, 9, 0, 2]);
            // A valid header checksum: the NIC checks it and the monitor drops bad ones.
            let sum = ip
                .chunks(2)
                .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
                .sum::<u32>();
            let sum = (sum & 0xffff) + (sum >> 16);
            let sum = (sum & 0xffff) + (sum >> 16);
            ip[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
            f.extend(ip);
            f.extend_from_slice(&udp[a..b]);
            f
        })
        .collect()
}

/// Frames grouped by flow key, each group in order.
fn by_flow(frames: &[Vec<u8>]) -> BTreeMap<String, Vec<Vec<u8>>> {
    let mut m: BTreeMap<String, Vec<Vec<u8>>> = BTreeMap::new();
    for f in frames {
        m.entry(flow_key(f)).or_default().push(f.clone());
    }
    m
}

fn padded(frames: &[Vec<u8>], min: usize) -> Vec<Vec<u8>> {
    frames
        .iter()
        .map(|f| {
            let mut f = f.clone();
            if f.len() < min {
                f.resize(min, 0);
            }
            f
        })
        .collect()
}

/// Panics with the first difference (flow, position, lengths) instead of both whole maps.
fn same_flows(
    got: &BTreeMap<String, Vec<Vec<u8>>>,
    want: &BTreeMap<String, Vec<Vec<u8>>>,
    what: &str,
) {
    for (k, w) in want {
        let g = got
            .get(k)
            .unwrap_or_else(|| panic!("{what}: flow {k} never came out"));
        assert_eq!(g.len(), w.len(), "{what}: frames of flow {k}");
        for (i, (a, b)) in g.iter().zip(w).enumerate() {
            assert!(
                a == b,
                "{what}: flow {k} frame {i} differs: got {} bytes {:02x?}, want {} bytes {:02x?}",
                a.len(),
                &a[..a.len().min(80)],
                b.len(),
                &b[..b.len().min(80)]
            );
        }
    }
    let extra: Vec<&String> = got.keys().filter(|k| !want.contains_key(*k)).collect();
    assert!(extra.is_empty(), "{what}: flows nobody sent: {extra:?}");
}

fn non_tcp(k: u8, port: u8) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend([0x02, 0, 0, 0, port, k]);
    if k.is_multiple_of(2) {
        f.extend([0x08, 0x06]); // ARP
    } else {
        f.extend([0x88, 0xb5]); // local experimental ethertype
    }
    f.extend((0..46).map(|i| k.wrapping_mul(7).wrapping_add(i)));
    f
}

/// Waits until the host has read `n` frames the guest sent on `nic` (QEMU may have exited).
fn wait_captured(vm: &mut Vm, nic: usize, n: usize) -> Vec<Vec<u8>> {
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let got: Vec<Vec<u8>> = vm.nic(nic).captured().into_iter().map(|f| f.data).collect();
        if got.len() >= n || Instant::now() > end {
            return got;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `window`: most frames in flight through the guest at once (`None`: as fast as the sockets
/// take them).
fn passthrough_forwards_both_ways(model: NicModel, cores: u32, window: Option<usize>) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = GenConfig {
        flows: 80,
        concurrent: 10,
        reorder_pct: 5.0,
        ipv6_pct: 30.0,
        seed: 17,
        ..GenConfig::default()
    };
    let (pcap, _) = generate(dir.path(), &cfg);
    let truth = std::fs::read_to_string(gen::truth_path(&pcap)).unwrap();
    let (truth, _) = image::host::json::parse_lines(&truth).unwrap();
    let clients: HashSet<String> = truth.iter().map(|t| t.client.clone()).collect();
    // Client frames enter port 0, server frames port 1, in capture order; a few non-TCP
    // frames on each.
    let mut plan: Vec<(usize, Vec<u8>)> = Vec::new();
    for (i, (_, f)) in Capture::load(&pcap).unwrap().frames().enumerate() {
        let from_client = tcp_endpoints(f).is_some_and(|(s, _)| clients.contains(&s));
        plan.push((if from_client { 0 } else { 1 }, f.to_vec()));
        if i % 100 == 0 {
            let k = (i / 100) as u8;
            plan.push((0, non_tcp(k, 0)));
            plan.push((1, non_tcp(k, 1)));
        }
        // Fragmented datagrams, out of order: held until complete, then sent in arrival
        // order (the runtime keeps fragments until their datagram's verdict).
        if i % 300 == 150 {
            let id = 0x4000 + i as u16;
            for f in udp_fragments(id, [1, 0, 2]) {
                plan.push((0, f));
            }
            for f in udp_fragments(id + 1, [2, 0, 1]) {
                plan.push((1, f));
            }
        }
    }
    let sent_on = |p: usize| -> Vec<Vec<u8>> {
        plan.iter()
            .filter(|(q, _)| *q == p)
            .map(|(_, f)| f.clone())
            .collect()
    };
    let (in0, in1) = (sent_on(0), sent_on(1));
    assert!(!in0.is_empty() && !in1.is_empty());

    let mut vm = boot(
        Config::kernel(app_elf("passthrough"))
            .with_cores(cores)
            // Explicit slots: an igb reserves the slots above it for its SR-IOV functions.
            .with_nic_at(model, 3)
            .with_nic_at(model, 5)
            .with_timeout(timeout_for(Firmware::Direct) * 3),
    );
    vm.expect_line("`appliance: ready`", |l| l.starts_with("appliance: ready"));
    let mut sent = [0usize; 2];
    for (p, f) in &plan {
        if let Some(w) = window {
            // Wait until at most `w` frames are in flight through the guest.
            let end = Instant::now() + Duration::from_secs(60);
            while sent[0] + sent[1] - vm.nic(0).captured().len() - vm.nic(1).captured().len() >= w
                && Instant::now() < end
            {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        vm.nic(*p).send(f).expect("inject");
        sent[*p] += 1;
    }
    vm.expect_exit(ExitStatus::Success);
    let out1 = wait_captured(&mut vm, 1, in0.len());
    let out0 = wait_captured(&mut vm, 0, in1.len());
    let lines = vm.lines();
    let report = vm.report();
    assert_eq!(
        frames_received(&lines),
        plan.len() as u64,
        "frames received; console:\n{report}"
    );
    // Exactly the frames of the other port, nothing extra, each flow in order.
    assert_eq!(out1.len(), in0.len(), "frames out of port 1\n{report}");
    assert_eq!(out0.len(), in1.len(), "frames out of port 0\n{report}");
    // QEMU's igb pads received frames to the Ethernet minimum of 60 bytes (as any wire
    // does); virtio-net hands them over as sent.
    let min = if model == NicModel::Igb { 60 } else { 0 };
    same_flows(
        &by_flow(&out1),
        &by_flow(&padded(&in0, min)),
        "port 0 -> port 1",
    );
    same_flows(
        &by_flow(&out0),
        &by_flow(&padded(&in1, min)),
        "port 1 -> port 0",
    );
    let mut held = 0;
    for l in lines.iter().filter(|l| l.contains("forward_cycles/frame")) {
        eprintln!("{model:?}: {l}");
        assert!(l.contains(" tx_full 0 "), "{l}");
        assert!(l.contains(" fragments_not_held 0 "), "{l}");
        cycle_figures(l);
        let w: Vec<&str> = l.split_whitespace().collect();
        let at = w.iter().position(|x| *x == "fragments_held").unwrap();
        held += w[at + 1].parse::<u64>().unwrap();
    }
    // Two of each datagram's three fragments waited for the third.
    let datagrams = plan
        .iter()
        .filter(|(_, f)| flow_key(f).starts_with("frag"))
        .count()
        / 3;
    assert!(datagrams > 0);
    assert_eq!(held, 2 * datagrams as u64, "{report}");
}

#[test]
fn passthrough_on_an_igb_pair_forwards_every_frame_unchanged() {
    passthrough_forwards_both_ways(NicModel::Igb, 2, None);
}

#[test]
fn passthrough_on_a_virtio_net_pair_forwards_every_frame_unchanged() {
    // QEMU's virtio-net transmits from a bottom half after the guest's kick; a guest that
    // forwards faster fills the 256-entry transmit ring and (by design) drops, counted as
    // `tx_full`. At most 128 frames in flight keep this test about correctness.
    passthrough_forwards_both_ways(NicModel::VirtioNet, 2, Some(128));
}
