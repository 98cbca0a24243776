//! The mOS samples as images under QEMU (TCG), and the same builds on the host.
//!
//! * simple_firewall, inline on an igb pair with two cores, rules from a file built in (IPv4
//!   and IPv6 rules): each connection's client frames enter port 0 and its server frames port
//!   1, one frame in flight at a time; exactly the frames of the connections a DROP rule
//!   matches stay behind, every other frame comes out of the other port byte-identical, in
//!   order; core 0's last rule table has the exact counts of both cores. The host runner built
//!   with the same file forwards the same frames and prints the same table.
//! * midstat, tap mode: three scripted connections (IPv4 and IPv6) go through handshake,
//!   data, half close, close and reset in phases; every table the timer prints while the
//!   traffic runs is exactly the table of the phase before or after the last injection.
//! * matcher, built with a pattern of its own: needles split across two and three segments,
//!   in reordered segments, in both directions and over IPv6, each found once at its exact
//!   stream offset in the image, and the same list on the host.
//! * `cargo ferrule run --app simple_firewall --rules FILE` (the tool's entry point) builds
//!   the file in: the connection it drops stays behind, the other passes both ways.

#[path = "../../apps/midstat/tests/common/frames.rs"]
mod frames;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use frames::{Conn, Sent, ACK, PSH, RST};
use image::host::capture::Capture;
use image::host::gen::{self, GenConfig};
use image::runner::AppCrate;
use image::{App, Verbosity};
use qemu::{Config, ExitStatus, Firmware, NicModel};
use tests::{boot, timeout_for, Vm};

/// Builds run one at a time: each build of a package writes the same ELF path.
static BUILDS: Mutex<()> = Mutex::new(());

/// The guest ELF of `package` built with `env`, copied to `dir`.
fn guest(package: &str, env: &[(&str, &str)], dir: &Path) -> PathBuf {
    let _one = BUILDS.lock().unwrap_or_else(|e| e.into_inner());
    let elf = image::build_app_with_env(&App::Package(package.into()), Verbosity::Quiet, env)
        .unwrap_or_else(|e| panic!("building {package}: {e}"));
    let copy = dir.join(format!("{package}.elf"));
    std::fs::copy(&elf, &copy).unwrap();
    copy
}

/// The host runner of `package` built with `env`, run over `capture` (with `args`):
/// (stdout, stderr).
fn host(package: &str, env: &[(&str, &str)], capture: &Path, args: &[&str]) -> (String, String) {
    let exe = {
        let _one = BUILDS.lock().unwrap_or_else(|e| e.into_inner());
        let app = AppCrate::locate(&App::Package(package.into())).unwrap();
        let exe = app.build_host_runner_with_env(env).unwrap();
        let copy = capture.with_extension(format!("{package}-runner"));
        std::fs::copy(&exe, &copy).unwrap();
        copy
    };
    let out = Command::new(&exe).arg(capture).args(args).output().unwrap();
    let (o, e) = (
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    );
    assert!(out.status.success(), "{package} host runner: {e}");
    (o, e)
}

fn write_pcap(path: &Path, frames: &[Vec<u8>]) {
    let mut w = appliance::host::PcapOut::new(Vec::new()).unwrap();
    for (i, f) in frames.iter().enumerate() {
        w.frame(1_000_000 + i as u64, f).unwrap();
    }
    std::fs::write(path, w.finish().unwrap()).unwrap();
}

/// `client server` (`IP:PORT`) of a TCP frame, sender first, or `None`.
fn tcp_endpoints(f: &[u8]) -> Option<(String, String)> {
    let (src, dst, l4): (std::net::IpAddr, std::net::IpAddr, usize) =
        match u16::from_be_bytes([*f.get(12)?, *f.get(13)?]) {
            0x0800 if f.get(23) == Some(&6) => {
                let a: [u8; 4] = f.get(26..30)?.try_into().ok()?;
                let b: [u8; 4] = f.get(30..34)?.try_into().ok()?;
                (a.into(), b.into(), 14 + (f[14] as usize & 15) * 4)
            }
            0x86dd if f.get(20) == Some(&6) => {
                let a: [u8; 16] = f.get(22..38)?.try_into().ok()?;
                let b: [u8; 16] = f.get(38..54)?.try_into().ok()?;
                (a.into(), b.into(), 54)
            }
            _ => return None,
        };
    let p = |o: usize| Some(u16::from_be_bytes([*f.get(o)?, *f.get(o + 1)?]));
    Some((gen::endpoint(src, p(l4)?), gen::endpoint(dst, p(l4 + 2)?)))
}

/// QEMU's igb pads received frames to the Ethernet minimum of 60 bytes.
fn padded(frames: &[Vec<u8>]) -> Vec<Vec<u8>> {
    frames
        .iter()
        .map(|f| {
            let mut f = f.clone();
            if f.len() < 60 {
                f.resize(60, 0);
            }
            f
        })
        .collect()
}

const FW_RULES: &str = "\
# tests/tests/samples.rs: IPv4 and IPv6 rules
DROP    10.0.0.0/8   192.168.5.1     dport:80
DROP    fd00::/64    fd00:1::4/128
DROP    0.0.0.0      192.168.2.0/24  sport:1   # client ports are 1024 and up: never
ACCEPT  0.0.0.0/0    0.0.0.0/0
";

/// The rule table as simple_firewall prints it, with these counts.
fn fw_table(counts: [usize; 4]) -> Vec<String> {
    let t = format!(
        "-----------------------------------------------------------------------
Firewall rule table
idx   flows   target   client             server             port
1     {:<8}DROP     10.0.0.0/8         192.168.5.1        dport:80    
2     {:<8}DROP     fd00::/64          fd00:1::4          
3     {:<8}DROP     0.0.0.0            192.168.2.0/24     sport:1     
4     {:<8}ACCEPT   0.0.0.0/0          0.0.0.0/0          
-----------------------------------------------------------------------",
        counts[0], counts[1], counts[2], counts[3]
    );
    t.lines().map(String::from).collect()
}

#[test]
fn simple_firewall_drops_exactly_the_rules_connections_and_forwards_the_rest_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("t.pcap");
    let cfg = GenConfig {
        flows: 40,
        concurrent: 8,
        ipv6_pct: 40.0,
        seed: 47,
        ..GenConfig::default()
    };
    gen::generate_files(&cfg, &pcap).unwrap();
    let truth = std::fs::read_to_string(gen::truth_path(&pcap)).unwrap();
    let (truth, _) = image::host::json::parse_lines(&truth).unwrap();
    let dropped_servers = ["192.168.5.1:80", "[fd00:1::4]:80"];
    let blocked: BTreeSet<&str> = truth
        .iter()
        .filter(|t| dropped_servers.contains(&t.server.as_str()))
        .map(|t| t.client.as_str())
        .collect();
    assert_eq!(blocked.len(), 2, "seed 47 has one connection to each");
    assert_eq!(
        truth
            .iter()
            .filter(|t| t.server == "192.168.2.1:80")
            .count(),
        1
    );
    let v4 = truth.iter().filter(|t| !t.client.starts_with('[')).count();
    let clients: BTreeSet<&str> = truth.iter().map(|t| t.client.as_str()).collect();
    let rules = dir.path().join("fw.rules");
    std::fs::write(&rules, FW_RULES).unwrap();
    let rules_abs = std::fs::canonicalize(&rules).unwrap().display().to_string();
    let env = [("FERRULE_RULES", rules_abs.as_str())];

    // Client frames into port 0, server frames into port 1, in capture order.
    let cap = Capture::load(&pcap).unwrap();
    let mut plan: Vec<(usize, Vec<u8>)> = Vec::new();
    for (_, f) in cap.frames() {
        let (src, _) = tcp_endpoints(f).unwrap();
        plan.push((usize::from(!clients.contains(src.as_str())), f.to_vec()));
    }
    let is_blocked = |f: &Vec<u8>| {
        tcp_endpoints(f)
            .is_some_and(|(s, d)| blocked.contains(s.as_str()) || blocked.contains(d.as_str()))
    };
    let pass = |p: usize| -> Vec<Vec<u8>> {
        plan.iter()
            .filter(|(q, f)| *q == p && !is_blocked(f))
            .map(|(_, f)| f.clone())
            .collect()
    };
    let (want1, want0) = (pass(0), pass(1));
    let dropped = plan.len() - want0.len() - want1.len();

    // On the host: the same build forwards exactly the unblocked frames, in order.
    let out = dir.path().join("host-out.pcap");
    let (stdout, stderr) = host(
        "simple_firewall",
        &env,
        &pcap,
        &["--out", out.to_str().unwrap()],
    );
    let host_out: Vec<Vec<u8>> = Capture::load(&out)
        .unwrap()
        .frames()
        .map(|(_, f)| f.to_vec())
        .collect();
    let host_want: Vec<Vec<u8>> = plan
        .iter()
        .map(|(_, f)| f.clone())
        .filter(|f| !is_blocked(f))
        .collect();
    assert!(host_out == host_want, "host: forwarded frames differ");
    assert!(stderr.contains(&format!(" dropped {dropped} ")), "{stderr}");
    let host_lines: Vec<&str> = stdout.lines().collect();
    let last = fw_table([1, 1, 0, v4 - 1]);
    assert_eq!(
        host_lines[host_lines.len() - 9..host_lines.len() - 1],
        last.iter().map(String::as_str).collect::<Vec<_>>()[..],
        "{stdout}"
    );
    assert_eq!(
        host_lines[0],
        format!("simple_firewall: 4 rules from {rules_abs}")
    );

    // In the image, on two cores.
    let elf = guest("simple_firewall", &env, dir.path());
    let mut vm = boot(
        Config::kernel(elf)
            .with_cores(2)
            .with_nic_at(NicModel::Igb, 3)
            .with_nic_at(NicModel::Igb, 5)
            .with_timeout(timeout_for(Firmware::Direct) * 2),
    );
    vm.expect_line("`appliance: ready`", |l| l.starts_with("appliance: ready"));
    vm.expect_line("the rule file", |l| {
        l == format!("simple_firewall: 4 rules from {rules_abs}")
    });
    // One frame in flight at a time, as if each endpoint answered only what it received (the
    // two ports are separate queues: sent at once, a server's frame could overtake the client
    // frame before it). Each frame must come out of the other port, as sent, before the next
    // goes in; after a frame that must be dropped a barrier (a non-IP frame, forwarded
    // untouched) must come out of the other port first.
    let mut barrier = vec![0xff; 12];
    barrier.extend([0x88, 0xb5]);
    barrier.resize(60, 0xba);
    let mut sent: [Vec<Vec<u8>>; 2] = [Vec::new(), Vec::new()];
    for (i, (p, f)) in plan.iter().enumerate() {
        let (p, q) = (*p, *p ^ 1);
        vm.nic(p).send(f).expect("inject");
        let want = if is_blocked(f) {
            vm.nic(p).send(&barrier).expect("inject");
            barrier.clone()
        } else {
            padded(std::slice::from_ref(f)).remove(0)
        };
        let got = vm
            .nic(q)
            .wait_for_frame(Duration::from_secs(20), |_| true)
            .unwrap_or_else(|e| panic!("frame {i} (port {p}): nothing out of port {q}: {e}"));
        assert!(
            got.data == want,
            "frame {i} in on port {p}: out of port {q} came {:02x?}, want {:02x?}",
            &got.data[..got.data.len().min(64)],
            &want[..want.len().min(64)]
        );
        sent[q].push(want);
    }
    vm.expect_exit(ExitStatus::Success);
    let report = vm.report();
    // Nothing else came out: each port's capture is exactly what was expected, in order.
    for (q, (sent, want)) in sent.iter().zip([&want0, &want1]).enumerate() {
        let all: Vec<Vec<u8>> = vm.nic(q).captured().into_iter().map(|f| f.data).collect();
        assert_eq!(all.len(), sent.len(), "frames out of port {q}\n{report}");
        assert!(
            all == *sent,
            "port {q}: the capture differs from what came out in turn"
        );
        // Less the barriers: the other port's frames of the connections no rule dropped.
        let frames: Vec<Vec<u8>> = all.into_iter().filter(|f| *f != barrier).collect();
        assert!(
            frames == padded(want),
            "port {q}: not the frames of the other connections"
        );
    }
    let barriers =
        vm.nic(0).captured().len() + vm.nic(1).captured().len() - want0.len() - want1.len();
    assert_eq!(barriers, dropped, "one barrier per dropped frame");
    // Core 0's last table (printed at the end) counts every core's SYNs. Its lines are in
    // order in core 0's log, but another core's lines may be drained between them: compare
    // the table's own lines.
    let lines = vm.lines();
    let table_lines: Vec<&String> = lines
        .iter()
        .filter(|l| {
            l.starts_with("-----")
                || *l == "Firewall rule table"
                || l.starts_with("idx ")
                || l.starts_with(|c: char| c.is_ascii_digit())
        })
        .collect();
    assert!(table_lines.len() >= 8, "{report}");
    let tail: Vec<&str> = table_lines[table_lines.len() - 8..]
        .iter()
        .map(|l| l.as_str())
        .collect();
    assert_eq!(
        tail,
        last.iter().map(String::as_str).collect::<Vec<_>>(),
        "{report}"
    );
    let verdict_drops: u64 = lines
        .iter()
        .filter(|l| l.contains("forward_cycles/frame"))
        .map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            let i = w.iter().position(|x| *x == "verdict_drops").unwrap();
            w[i + 1].parse::<u64>().unwrap()
        })
        .sum();
    assert_eq!(verdict_drops, dropped as u64, "{report}");
    // In turn, every frame found its connection: none was an orphan.
    let cores: Vec<&String> = lines
        .iter()
        .filter(|l| l.starts_with("appliance: core ") && l.contains(" flows "))
        .collect();
    assert_eq!(cores.len(), 2, "{report}");
    assert!(cores.iter().all(|l| !l.contains("orphan")), "{report}");
}

const MIDSTAT_HEADER: &str =
    "Proto CPU Client Address        Client State Server Address        Server State";

/// Reads console lines up to the end of the next complete table (header and its rows).
fn next_table(vm: &mut Vm, pending: &mut Option<Vec<String>>) -> Vec<String> {
    loop {
        let line = vm
            .next_line(Duration::from_secs(20))
            .unwrap_or_else(|e| panic!("waiting for a midstat table: {e}"))
            .unwrap_or_else(|| panic!("the guest ended; console:\n{}", vm.report()));
        if line.starts_with("tcp ") {
            if let Some(t) = pending.as_mut() {
                t.push(line);
            }
            continue;
        }
        let done = pending.take();
        if line == MIDSTAT_HEADER {
            *pending = Some(Vec::new());
        }
        if let Some(t) = done {
            return t;
        }
    }
}

#[test]
fn midstat_prints_the_exact_table_every_second_while_traffic_runs() {
    let mut a = Conn::new("10.0.0.1:40001", "192.168.3.1:80");
    let mut b = Conn::new("[fd00::1]:40002", "[fd00:1::5]:80");
    let mut c = Conn::new("10.0.0.3:40003", "192.168.7.1:80");
    let mut p0 = a.handshake();
    p0.extend(b.handshake());
    p0.extend(c.handshake());
    let mut p1 = a.client_fin();
    p1.push(b.c(PSH | ACK, b"GET / HTTP/1.0\r\n\r\n"));
    p1.push(b.s(PSH | ACK, b"HTTP/1.0 200 OK\r\n\r\n"));
    p1.push(c.c(RST, b""));
    let mut p2 = a.server_fin();
    p2.extend(b.client_fin());
    let row = |c: &str, cs: &str, s: &str, ss: &str| {
        format!("tcp   0   {c:<21} {cs:<12} {s:<21} {ss:<12}")
    };
    let (a4, a4s) = ("10.0.0.1:40001", "192.168.3.1:80");
    let (b6, b6s) = ("[fd00::1]:40002", "[fd00:1::5]:80");
    let (c4, c4s) = ("10.0.0.3:40003", "192.168.7.1:80");
    let est = "ESTABLISHED";
    let tables: [Vec<String>; 4] = [
        vec![],
        vec![
            row(a4, est, a4s, est),
            row(b6, est, b6s, est),
            row(c4, est, c4s, est),
        ],
        vec![
            row(a4, "FIN_WAIT_2", a4s, "CLOSE_WAIT"),
            row(b6, est, b6s, est),
        ],
        vec![row(b6, "FIN_WAIT_2", b6s, "CLOSE_WAIT")],
    ];

    let dir = tempfile::tempdir().unwrap();
    let elf = guest("midstat", &[], dir.path());
    let mut vm = boot(
        Config::kernel(elf)
            .with_cores(1)
            .with_nic(NicModel::Igb)
            .with_timeout(timeout_for(Firmware::Direct)),
    );
    vm.expect_line("`appliance: ready`", |l| l.starts_with("appliance: ready"));
    let mut keepalive = vec![0xff; 12];
    keepalive.extend([0x88, 0xb5]);
    keepalive.resize(60, 0);
    let mut pending = None;
    // The empty table, once a second before any traffic.
    for _ in 0..2 {
        assert_eq!(next_table(&mut vm, &mut pending), tables[0]);
    }
    for (k, phase) in [p0, p1, p2].iter().enumerate() {
        for (_, f) in phase {
            vm.nic(0).send(f).expect("inject");
        }
        // Each table is the one before this phase or the one after it; the one after comes.
        // A non-IP frame per table keeps the appliance from its idle exit (3 s after the last
        // frame) while the test waits.
        let mut seen = 0;
        while seen < 2 {
            let t = next_table(&mut vm, &mut pending);
            vm.nic(0).send(&keepalive).expect("inject");
            if t == tables[k + 1] {
                seen += 1;
            } else {
                assert_eq!(seen, 0, "phase {k}: a table changed back");
                assert_eq!(t, tables[k], "phase {k}: a table of neither state");
            }
        }
    }
    vm.expect_exit(ExitStatus::Success);
    let lines = vm.lines();
    assert!(
        lines.iter().any(|l| l == "midstat: 3 connections ended"),
        "{}",
        vm.report()
    );
}

#[test]
fn matcher_finds_needles_split_across_segments_in_the_image_and_on_the_host() {
    // The pattern is built in: FERRULE_PATTERN (what --pattern sets), not the default.
    let hex = "c0ffee00d00d";
    let n: &[u8] = &[0xc0, 0xff, 0xee, 0x00, 0xd0, 0x0d];
    let mut a = Conn::new("10.0.0.1:40001", "192.168.3.1:80");
    let mut b = Conn::new("[fd00::1]:40002", "[fd00:1::5]:80");
    let mut frames: Vec<Sent> = a.handshake();
    frames.extend(b.handshake());
    // A, client to server: 10 bytes, then the needle split 2+4 over two segments (offset 10),
    // then 3 bytes, a needle inside one segment (offset 19) and 1+1+4 over three segments
    // (offset 28, the middle segment one byte).
    frames.push(a.c(PSH | ACK, &[b"0123456789".as_slice(), &n[..2]].concat()));
    frames.push(a.c(
        PSH | ACK,
        &[&n[2..], b"abc".as_slice(), n, b"xyz".as_slice(), &n[..1]].concat(),
    ));
    frames.push(a.c(PSH | ACK, &n[1..2]));
    frames.push(a.c(PSH | ACK, &[&n[2..], b"!".as_slice()].concat()));
    // B, server to client over IPv6: the needle split 3+3 at offset 5, the second segment sent
    // first (reordered), then again at offset 20 in one segment.
    let first = b.s(PSH | ACK, &[b"hello".as_slice(), &n[..3]].concat());
    let second = b.s(PSH | ACK, &[&n[3..], b"012345678".as_slice(), n].concat());
    frames.push(second);
    frames.push(first);
    frames.push(b.c(ACK, b""));
    let want: BTreeSet<String> = [
        "match 10.0.0.1:40001 192.168.3.1:80 c2s 10",
        "match 10.0.0.1:40001 192.168.3.1:80 c2s 19",
        "match 10.0.0.1:40001 192.168.3.1:80 c2s 28",
        "match [fd00::1]:40002 [fd00:1::5]:80 s2c 5",
        "match [fd00::1]:40002 [fd00:1::5]:80 s2c 20",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("needles.pcap");
    let raw: Vec<Vec<u8>> = frames.iter().map(|(_, f)| f.clone()).collect();
    write_pcap(&pcap, &raw);
    let env = [("FERRULE_PATTERN", hex)];
    let summary = format!("matcher: core 0 pattern {hex} matches 5");

    let (stdout, _) = host("matcher", &env, &pcap, &[]);
    let lines: Vec<&str> = stdout.lines().collect();
    let got: BTreeSet<String> = lines[..lines.len() - 1]
        .iter()
        .map(|l| l.to_string())
        .collect();
    assert_eq!((got, lines.len()), (want.clone(), 6), "host:\n{stdout}");
    assert_eq!(lines[5], summary);

    let elf = guest("matcher", &env, dir.path());
    let mut vm = boot(
        Config::kernel(elf)
            .with_cores(1)
            .with_nic(NicModel::Igb)
            .with_timeout(timeout_for(Firmware::Direct)),
    );
    vm.expect_line("`appliance: ready`", |l| l.starts_with("appliance: ready"));
    for f in &raw {
        vm.nic(0).send(f).expect("inject");
    }
    vm.expect_exit(ExitStatus::Success);
    let lines = vm.lines();
    let matches: Vec<&String> = lines.iter().filter(|l| l.starts_with("match ")).collect();
    let got: BTreeSet<String> = matches.iter().map(|l| l.to_string()).collect();
    assert_eq!(matches.len(), 5, "{}", vm.report());
    assert_eq!(got, want, "{}", vm.report());
    assert!(lines.contains(&summary), "{}", vm.report());
}

#[test]
fn run_builds_the_rules_file_into_simple_firewall() {
    // `cargo ferrule run --rules FILE`, through the tool's own entry point: the IPv4
    // connection the file drops stays behind, the IPv6 one passes both ways.
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("run.rules");
    std::fs::write(&rules, "DROP 10.9.0.0/16 0.0.0.0/0\n").unwrap();
    let mut x = Conn::new("10.9.0.1:40001", "192.168.3.1:80");
    let mut y = Conn::new("[fd00::9]:40002", "[fd00:1::9]:80");
    let mut sent: Vec<Sent> = x.handshake();
    sent.extend(y.handshake());
    sent.push(x.c(PSH | ACK, b"blocked"));
    sent.push(y.c(PSH | ACK, b"let through"));
    sent.push(y.s(PSH | ACK, b"reply"));
    let side = |client: bool, c: &Conn| -> Vec<Vec<u8>> {
        sent.iter()
            .filter(|(from_client, f)| {
                *from_client == client
                    && tcp_endpoints(f).is_some_and(|(s, d)| {
                        [s, d].contains(&gen::endpoint(c.client.ip(), c.client.port()))
                    })
            })
            .map(|(_, f)| f.clone())
            .collect()
    };
    let all = |client: bool| -> Vec<Vec<u8>> {
        sent.iter()
            .filter(|(c, _)| *c == client)
            .map(|(_, f)| f.clone())
            .collect()
    };
    let (client_pcap, server_pcap) = (dir.path().join("c.pcap"), dir.path().join("s.pcap"));
    write_pcap(&client_pcap, &all(true));
    write_pcap(&server_pcap, &all(false));
    let (out0, out1) = (dir.path().join("out0.pcap"), dir.path().join("out1.pcap"));
    let arg = |p: &Path| p.display().to_string();
    let args = image::cli::RunArgs::from_args([
        "--app".to_string(),
        "simple_firewall".into(),
        "--rules".into(),
        arg(&rules),
        "--cores".into(),
        "1".into(),
        "--nic".into(),
        "igb".into(),
        "--nic".into(),
        "igb".into(),
        "--pcap".into(),
        format!("0:{}", arg(&client_pcap)),
        "--pcap".into(),
        format!("1:{}", arg(&server_pcap)),
        "--capture".into(),
        format!("0:{}", arg(&out0)),
        "--capture".into(),
        format!("1:{}", arg(&out1)),
        "--timeout".into(),
        "120".into(),
        "--skip-setup".into(),
    ])
    .unwrap();
    let code = {
        let _one = BUILDS.lock().unwrap_or_else(|e| e.into_inner());
        let _slot = tests::Slot::acquire();
        image::cli::run_run(&args)
    };
    assert_eq!(code, 0, "cargo ferrule run exit code (console above)");
    let read = |p: &Path| -> Vec<Vec<u8>> {
        Capture::load(p)
            .unwrap()
            .frames()
            .map(|(_, f)| f.to_vec())
            .collect()
    };
    assert_eq!(read(&out1), padded(&side(true, &y)));
    assert_eq!(read(&out0), padded(&side(false, &y)));
}
