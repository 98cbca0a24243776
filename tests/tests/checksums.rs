//! Receive checksums in the image (issue 13 item 5): `flowmon` fed a capture in which some
//! data segments arrive first as a corrupted copy (other bytes, so a bad TCP checksum; or a
//! changed TTL as well, so a bad IPv4 header checksum) and then intact.
//! * On an igb port, QEMU's model checks both checksums (RXCSUM.IPOFLD/TUOFLD) and reports
//!   them in the receive descriptor; the appliance passes that to the monitor, which drops the
//!   bad copies without summing anything itself.
//! * On virtio-net (no checksum offload negotiated, the net header says nothing), the monitor
//!   computes every checksum in the guest.
//!
//! Checked both ways: every connection's line (byte counts and sha256 of each direction) is
//! exactly the line of the capture without the bad copies, the bad copies are counted exactly
//! per reason, and the checksums came from where they should.

use image::host::capture::Capture;
use image::host::flows::{flow_lines_of, DEFAULT_MAX_FLOWS};
use image::host::gen::{self, GenConfig};
use qemu::{Config, ExitStatus, Firmware, NicModel};
use tests::{app_elf, boot, timeout_for};

/// IPv4 (true) or IPv6, and the TCP payload length, of a generated frame (no VLAN tags).
fn tcp_payload(f: &[u8]) -> Option<(bool, usize)> {
    match u16::from_be_bytes([f[12], f[13]]) {
        0x0800 if f[23] == 6 => {
            let ihl = usize::from(f[14] & 0x0f) * 4;
            let total = usize::from(u16::from_be_bytes([f[16], f[17]]));
            let doff = usize::from(f[14 + ihl + 12] >> 4) * 4;
            Some((true, total - ihl - doff))
        }
        0x86dd if f[20] == 6 => {
            let plen = usize::from(u16::from_be_bytes([f[18], f[19]]));
            let doff = usize::from(f[54 + 12] >> 4) * 4;
            Some((false, plen - doff))
        }
        _ => None,
    }
}

/// The capture's good lines (sorted), the frames to inject, the bad copies (TCP, IPv4) and
/// the number of checksum results the monitor uses.
struct Case {
    want: Vec<String>,
    frames: Vec<(u64, Vec<u8>)>,
    bad_tcp: u64,
    bad_ip: u64,
    results: u64,
}

fn case() -> Case {
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("good.pcap");
    let cfg = GenConfig {
        flows: 24,
        concurrent: 6,
        ipv6_pct: 30.0,
        seed: 1313,
        ..GenConfig::default()
    };
    gen::generate_files(&cfg, &pcap).expect("generate a capture");
    let good = Capture::load(&pcap).unwrap();
    let (mut want, _) = flow_lines_of(&good, DEFAULT_MAX_FLOWS).unwrap();
    want.sort();
    assert_eq!(want.len(), 24);

    // Every 10th data segment is preceded by a corrupted copy (last payload byte flipped);
    // every 4th of those (IPv4 only) also gets a new TTL, so its IPv4 header is bad too.
    let mut frames: Vec<(u64, Vec<u8>)> = Vec::new();
    let (mut bad_tcp, mut bad_ip, mut data) = (0u64, 0u64, 0u64);
    // Results per frame: IPv4 header and TCP for IPv4, TCP for IPv6; a bad IPv4 header stops
    // the monitor before the TCP result.
    let mut nic_results = 0u64;
    for (ts, f) in good.frames() {
        let Some((v4, payload)) = tcp_payload(f) else {
            panic!("the generator made a frame that is not TCP");
        };
        if payload > 0 {
            data += 1;
            if data % 10 == 9 {
                let mut c = f.to_vec();
                *c.last_mut().unwrap() ^= 0x5a;
                if v4 && (bad_tcp + bad_ip) % 4 == 3 {
                    c[22] ^= 0x01;
                    bad_ip += 1;
                    nic_results += 1;
                } else {
                    bad_tcp += 1;
                    nic_results += if v4 { 2 } else { 1 };
                }
                frames.push((ts, c));
            }
        }
        nic_results += if v4 { 2 } else { 1 };
        frames.push((ts, f.to_vec()));
    }
    assert!(bad_tcp >= 20 && bad_ip >= 5, "{bad_tcp} {bad_ip}");

    // The host tool sees the same: the corrupted copies change nothing in the lines.
    let corrupted = Capture::from_frames(frames.iter().map(|(t, f)| (*t, &f[..])));
    let (mut host, summary) = flow_lines_of(&corrupted, DEFAULT_MAX_FLOWS).unwrap();
    host.sort();
    assert_eq!(host, want);
    assert_eq!(summary["checksums"]["bad_tcp"], bad_tcp);
    assert_eq!(summary["checksums"]["bad_ipv4_header"], bad_ip);

    Case {
        want,
        frames,
        bad_tcp,
        bad_ip,
        results: nic_results,
    }
}

/// Boots flowmon on one core and `nic`, injects the case, checks lines and counts, and returns
/// the per-core checksum line.
fn run(nic: NicModel, c: &Case) -> String {
    let mut vm = boot(
        Config::kernel(app_elf("flowmon"))
            .with_cores(1)
            .with_nic(nic)
            .with_timeout(timeout_for(Firmware::Direct) * 2),
    );
    vm.expect_line("`appliance: ready`", |l| l.starts_with("appliance: ready"));
    for (_, f) in &c.frames {
        vm.nic(0).send(f).expect("inject a frame");
    }
    vm.expect_exit(ExitStatus::Success);
    let lines = vm.lines();
    let mut got: Vec<String> = lines
        .iter()
        .filter(|l| l.starts_with("{\"client\""))
        .cloned()
        .collect();
    got.sort();
    assert_eq!(got, c.want, "console:\n{}", vm.report());
    let core = lines
        .iter()
        .find(|l| l.starts_with("appliance: core 0 frames "))
        .unwrap_or_else(|| panic!("no core summary:\n{}", vm.report()));
    let drops = format!(
        "dropped {} (bad_ipv4_checksum={},bad_tcp_checksum={})",
        c.bad_ip + c.bad_tcp,
        c.bad_ip,
        c.bad_tcp
    );
    assert!(
        core.starts_with(&format!("appliance: core 0 frames {} ", c.frames.len()))
            && core.contains(&drops),
        "{core}\nwant {drops}"
    );
    lines
        .iter()
        .find(|l| l.starts_with("appliance: core 0 checksums "))
        .unwrap_or_else(|| panic!("no checksum line:\n{}", vm.report()))
        .clone()
}

#[test]
fn igb_reports_bad_checksums_and_the_monitor_never_reassembles_them() {
    let c = case();
    assert_eq!(
        run(NicModel::Igb, &c),
        format!(
            "appliance: core 0 checksums Auto from_nic {} computed 0 offloaded false bad_kept 0",
            c.results
        )
    );
}

#[test]
fn on_virtio_net_the_guest_computes_every_checksum() {
    let c = case();
    assert_eq!(
        run(NicModel::VirtioNet, &c),
        format!(
            "appliance: core 0 checksums Auto from_nic 0 computed {} offloaded false bad_kept 0",
            c.results
        )
    );
}
