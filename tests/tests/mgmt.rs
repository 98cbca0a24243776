//! The management plane under QEMU (TCG): `flowmon` built with `FERRULE_MGMT` serves
//! `GET /metrics` on a virtio-net management NIC on QEMU user networking, reached through a
//! hostfwd on 127.0.0.1 (the only host addresses these tests use).
//!
//! * A real Prometheus server (Debian's `prometheus`) scrapes the appliance while a capture
//!   is injected; a PromQL query through its HTTP API returns exactly the number of frames
//!   injected, which is also the appliance's own count at exit; `promtool check metrics`
//!   accepts the page; keep-alive, several clients at once, 404 and a malformed request's
//!   400 (after which the appliance keeps monitoring) are checked on the same run.
//! * With an allowlist that admits nobody, a request through the forward gets no answer at
//!   all and the plane counts the dropped frames.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use image::host::gen::{self, GenConfig};
use image::{App, Verbosity};
use qemu::{Config, ExitStatus, Firmware, NicModel};
use tests::{boot, timeout_for};

/// `flowmon` built with `FERRULE_MGMT=variant`, copied out of the shared target path (the
/// next build of flowmon, with another variant, overwrites it).
fn flowmon_with_mgmt(variant: &str, dir: &Path) -> PathBuf {
    static BUILD: Mutex<()> = Mutex::new(());
    let _g = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    let elf = image::build_app_with_env(
        &App::Package("flowmon".into()),
        Verbosity::Quiet,
        &[("FERRULE_MGMT", variant)],
    )
    .unwrap_or_else(|e| panic!("building flowmon with FERRULE_MGMT={variant}: {e}"));
    let out = dir.join(format!("flowmon-{variant}"));
    std::fs::copy(&elf, &out).expect("copy the image");
    out
}

/// A loopback port free right now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind a loopback port")
}

/// A child process killed when dropped.
struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One HTTP/1.1 response: status, headers (lowercased names), body.
#[derive(Debug)]
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Reads one response with a `Content-Length` body from `s` (at most 30 s).
fn read_response(s: &mut TcpStream) -> Response {
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = s.read(&mut chunk).expect("read a response head");
        assert!(n > 0, "connection closed before a response head: {buf:?}");
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8(buf[..head_end].to_vec()).expect("text head");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let status = status_line
        .strip_prefix("HTTP/1.1 ")
        .and_then(|r| r.get(..3))
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("status line {status_line:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .expect("a Content-Length");
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < len {
        let n = s.read(&mut chunk).expect("read a response body");
        assert!(n > 0, "connection closed inside a body");
        body.extend_from_slice(&chunk[..n]);
    }
    assert_eq!(body.len(), len, "more bytes than the Content-Length");
    Response {
        status,
        headers,
        body,
    }
}

fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(10))
        .expect("connect to the forward");
    s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

fn get(s: &mut TcpStream, path: &str) -> Response {
    write!(s, "GET {path} HTTP/1.1\r\nHost: appliance\r\n\r\n").unwrap();
    read_response(s)
}

/// The value of the sample `name` (exact series text, e.g. `ferrule_frames_total`).
fn sample(page: &str, series: &str) -> Option<u64> {
    page.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Asks Prometheus' HTTP API for an instant vector with one sample: its value, else what
/// came back.
fn promql(port: u16, query: &str) -> Result<u64, String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let q: String = query
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    write!(
        s,
        "GET /api/v1/query?query={q} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut all = String::new();
    s.read_to_string(&mut all).map_err(|e| e.to_string())?;
    let body = all.split_once("\r\n\r\n").map_or("", |b| b.1);
    let v: serde_json::Value = serde_json::from_str(body).map_err(|e| format!("{e}: {all}"))?;
    match v["data"]["result"].as_array().map(Vec::as_slice) {
        Some([one]) => one["value"][1]
            .as_str()
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| all.clone()),
        _ => Err(all),
    }
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

#[test]
fn prometheus_scrapes_the_exact_frame_count_while_traffic_is_injected() {
    let dir = tempfile::tempdir().unwrap();
    let elf = flowmon_with_mgmt("qemu", dir.path());
    let pcap = dir.path().join("t.pcap");
    let cfg = GenConfig {
        flows: 40,
        concurrent: 8,
        seed: 1111,
        ..GenConfig::default()
    };
    let packets = gen::generate_files(&cfg, &pcap)
        .expect("generate a capture")
        .packets;

    let fwd = free_port();
    let mut vm = boot(
        Config::kernel(&elf)
            .with_cores(2)
            .with_nic(NicModel::Igb)
            .with_args(qemu::user_nic_args(fwd, 9100))
            .with_timeout(timeout_for(Firmware::Direct) * 3),
    );
    let mline = vm.expect_line("the management port", |l| {
        l.starts_with("appliance: management port ")
    });
    assert!(
        mline.contains("virtio-net mac 52:54:00:fe:00:01 link up ipv4 10.0.2.15/24 http port 9100"),
        "{mline}"
    );
    vm.expect_line("core 0 running the plane", |l| {
        l == "appliance: no free core: core 0 runs the management plane between its batches"
    });
    vm.expect_line("`appliance: ready`", |l| l.starts_with("appliance: ready"));

    // Before traffic: the page, keep-alive on one connection, 404, several clients at once.
    let mut a = connect(fwd);
    let r = get(&mut a, "/metrics");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert_eq!(r.header("connection"), Some("keep-alive"));
    let page = String::from_utf8(r.body).expect("a text page");
    assert_eq!(sample(&page, "ferrule_frames_total"), Some(0), "{page}");
    assert_eq!(sample(&page, "ferrule_cores"), Some(2));
    assert!(page.contains("ferrule_build_info{app=\"flowmon\",version=\"0.1.0\"} 1\n"));
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool (installed by `cargo ferrule test`)");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(page.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let r = get(&mut a, "/nope");
    assert_eq!((r.status, r.body.as_slice()), (404, &b"not found\n"[..]));
    let mut b = connect(fwd);
    let mut c = connect(fwd);
    write!(b, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    write!(c, "HEAD /metrics HTTP/1.0\r\n\r\n").unwrap();
    let rb = get(&mut a, "/metrics");
    assert_eq!(rb.status, 200);
    assert_eq!(read_response(&mut b).status, 200);
    let mut head = String::new();
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    c.read_to_string(&mut head)
        .expect("HEAD answer, then close");
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(head.ends_with("Connection: close\r\n\r\n"), "{head}");

    // A malformed request: 400, the connection is closed, monitoring goes on.
    let mut m = connect(fwd);
    m.write_all(b"GET /metrics HTTP/1.1\r\nno colon here\r\n\r\n")
        .unwrap();
    let mut bad = String::new();
    m.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    m.read_to_string(&mut bad).expect("400, then close");
    assert!(bad.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{bad}");
    assert!(bad.ends_with("\r\n\r\nmalformed header"), "{bad}");

    drop((a, b));

    // Prometheus scrapes every second while the capture goes in.
    let prom_port = free_port();
    let yml = dir.path().join("prometheus.yml");
    std::fs::write(
        &yml,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: ferrule\n    static_configs:\n      - targets: ['127.0.0.1:{fwd}']\n"
        ),
    )
    .unwrap();
    let _prom = Kill(
        Command::new("prometheus")
            .arg(format!("--config.file={}", yml.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run prometheus (installed by `cargo ferrule test`)"),
    );
    let sent = vm.nic(0).send_pcap(&pcap).expect("inject the capture");
    assert_eq!(sent as u64, packets);
    // The last scrape catches up within seconds; the appliance waits 15 s after the traffic.
    let deadline = Instant::now() + Duration::from_secs(14);
    let mut seen = Err(String::new());
    while Instant::now() < deadline {
        seen = promql(prom_port, "ferrule_frames_total{job=\"ferrule\"}");
        if seen == Ok(packets) {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(seen, Ok(packets), "{}", vm.report());
    assert_eq!(
        promql(prom_port, "sum(ferrule_core_frames_total)"),
        Ok(packets)
    );
    assert_eq!(promql(prom_port, "ferrule_flows_created_total"), Ok(40));
    // The igb's own 64-bit counter saw the same frames.
    assert_eq!(
        promql(prom_port, "ferrule_nic_rx_packets_total{port=\"0\"}"),
        Ok(packets)
    );
    // The page counted the answers so far: 3 pages and a HEAD, one 404, one 400, and
    // Prometheus' scrapes (at least the one that saw the final count) on top.
    assert_eq!(
        promql(prom_port, "ferrule_mgmt_http_responses_total{code=\"404\"}"),
        Ok(1)
    );
    assert_eq!(
        promql(prom_port, "ferrule_mgmt_http_responses_total{code=\"400\"}"),
        Ok(1)
    );
    vm.expect_exit(ExitStatus::Success);
    let lines = vm.lines();
    assert_eq!(frames_received(&lines), packets, "{}", vm.report());
    assert!(
        lines.iter().any(|l| l.starts_with("appliance: mgmt http ")
            && l.contains(" 400=1 404=1 405=0 500=0 denied_frames 0")),
        "{}",
        vm.report()
    );
}

#[test]
fn the_management_address_can_come_from_dhcp() {
    let dir = tempfile::tempdir().unwrap();
    let elf = flowmon_with_mgmt("qemu-dhcp", dir.path());
    let fwd = free_port();
    let mut vm = boot(
        Config::kernel(&elf)
            .with_cores(2)
            .with_nic(NicModel::Igb)
            .with_args(qemu::user_nic_args(fwd, 9100))
            .with_timeout(timeout_for(Firmware::Direct) * 2),
    );
    let mline = vm.expect_line("the management port", |l| {
        l.starts_with("appliance: management port ")
    });
    assert!(mline.contains(" ipv4 dhcp http port 9100"), "{mline}");
    vm.expect_line("`appliance: ready`", |l| l.starts_with("appliance: ready"));
    // slirp's DHCP server leases 10.0.2.15, where the forward goes: the page comes once
    // the lease is in (a few seconds under TCG).
    let deadline = Instant::now() + Duration::from_secs(30);
    let page = loop {
        let mut s = connect(fwd);
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let _ = write!(s, "GET /metrics HTTP/1.1\r\nConnection: close\r\n\r\n");
        let mut all = Vec::new();
        let _ = s.read_to_end(&mut all);
        if all.starts_with(b"HTTP/1.1 200 OK\r\n") {
            break String::from_utf8(all).unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "no page within 30 s: {}",
            vm.report()
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(page.contains("\nferrule_frames_total 0\n"), "{page}");
}

#[test]
fn a_source_outside_the_allowlist_gets_no_answer() {
    let dir = tempfile::tempdir().unwrap();
    let elf = flowmon_with_mgmt("qemu-allow-none", dir.path());
    let pcap = dir.path().join("t.pcap");
    let cfg = GenConfig {
        flows: 4,
        concurrent: 2,
        seed: 7,
        ..GenConfig::default()
    };
    let packets = gen::generate_files(&cfg, &pcap).unwrap().packets;
    let fwd = free_port();
    // A virtio-net monitored port (one queue, core 0) and the management NIC, the last
    // virtio-net function: core 1 serves no queue and runs the plane.
    let mut vm = boot(
        Config::kernel(&elf)
            .with_cores(2)
            .with_nic(NicModel::VirtioNet)
            .with_args(qemu::user_nic_args(fwd, 9100))
            .with_timeout(timeout_for(Firmware::Direct) * 3),
    );
    vm.expect_line("the monitored virtio-net port", |l| {
        l.starts_with("appliance: port 0 ") && l.contains(" virtio-net ")
    });
    vm.expect_line("the management port", |l| {
        l.starts_with("appliance: management port ") && l.contains("mac 52:54:00:fe:00:01")
    });
    vm.expect_line("core 1 running the plane", |l| {
        l == "appliance: core 1 runs the management plane"
    });
    vm.expect_line("`appliance: ready`", |l| l.starts_with("appliance: ready"));

    // slirp accepts the host's connection itself, then never gets the guest's SYN-ACK: the
    // request gets no byte back (slirp ends the connection or the read times out).
    let mut s = connect(fwd);
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(8))).unwrap();
    let mut got = Vec::new();
    let r = s.read_to_end(&mut got);
    assert!(
        got.is_empty(),
        "answered: {:?}",
        String::from_utf8_lossy(&got)
    );
    if let Err(e) = r {
        assert!(
            matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock
                    | std::io::ErrorKind::TimedOut
                    | std::io::ErrorKind::ConnectionReset
            ),
            "{e}"
        );
    }

    // The monitored port works as ever.
    let sent = vm.nic(0).send_pcap(&pcap).expect("inject the capture");
    assert_eq!(sent as u64, packets);
    vm.expect_exit(ExitStatus::Success);
    let lines = vm.lines();
    assert_eq!(frames_received(&lines), packets, "{}", vm.report());
    let summary = lines
        .iter()
        .find_map(|l| l.strip_prefix("appliance: mgmt http "))
        .unwrap_or_else(|| panic!("no mgmt summary: {}", vm.report()));
    let (answers, denied) = summary
        .split_once(" denied_frames ")
        .expect("denied_frames in the summary");
    assert_eq!(answers, "200=0 400=0 404=0 405=0 500=0");
    // slirp's SYN and its retransmissions, however many the timing allowed: none answered.
    let (denied, ipfix) = denied.split_once(' ').expect("the IPFIX counts follow");
    assert_eq!(ipfix, "ipfix_datagrams 0 ipfix_records_dropped 0");
    let denied: u64 = denied.parse().expect("a count");
    assert_ne!(denied, 0, "the SYN never reached the filter: {summary}");
}

/// Records with distinct values in every field: one IPv4, one IPv6 connection.
fn ipfix_records() -> Vec<appliance::mgmt::ipfix::FlowRecord> {
    use appliance::mgmt::ipfix::{end_reason, Addrs, FlowRecord};
    let v4 = FlowRecord {
        addrs: Addrs::V4([10, 0, 0, 1], [192, 168, 1, 2]),
        client_port: 40000,
        server_port: 80,
        start_ms: 1_700_000_000_123,
        end_ms: 1_700_000_001_456,
        packets: [7, 5],
        bytes: [600, 4000],
        tcp_flags: 0x1b,
        end_reason: end_reason::END_OF_FLOW,
        holes: [1, 0],
    };
    let mut a = [0u8; 16];
    a[..2].copy_from_slice(&[0x20, 0x01]);
    a[15] = 1;
    let mut b = a;
    b[15] = 2;
    let v6 = FlowRecord {
        addrs: Addrs::V6(a, b),
        client_port: 50000,
        server_port: 443,
        packets: [11, 13],
        bytes: [1100, 13000],
        end_reason: end_reason::IDLE_TIMEOUT,
        ..v4
    };
    vec![v4, v6]
}

/// An Ethernet/IPv4/UDP frame from 127.0.0.1:4739 to 127.0.0.1:4739 carrying `payload`.
fn udp_frame(payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; 12];
    f.extend_from_slice(&[0x08, 0x00]);
    let total = 20 + 8 + payload.len();
    let mut ip = vec![
        0x45,
        0,
        (total >> 8) as u8,
        total as u8,
        0,
        0,
        0x40,
        0,
        64,
        17,
        0,
        0,
        127,
        0,
        0,
        1,
        127,
        0,
        0,
        1,
    ];
    let sum: u32 = ip
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    let sum = !(((sum & 0xffff) + (sum >> 16)) as u16);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    f.extend_from_slice(&ip);
    let ulen = (8 + payload.len()) as u16;
    f.extend_from_slice(&[0x12, 0x83, 0x12, 0x83]);
    f.extend_from_slice(&ulen.to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(payload);
    f
}

#[test]
fn nfdump_and_tshark_read_the_ipfix_encoders_records() {
    use appliance::mgmt::ipfix::Exporter;
    let dir = tempfile::tempdir().unwrap();
    let mut e = Exporter::new(1);
    let mut msg = [0u8; 1500];
    let recs = ipfix_records();
    let (len, taken) = e.encode(&mut msg, 1_700_000_002, true, &recs);
    assert_eq!(taken, 2);
    let msg = &msg[..len];

    // tshark's IPFIX dissector: every field named, nothing malformed.
    let pcap = dir.path().join("ipfix.pcap");
    let frame = udp_frame(msg);
    let mut p = Vec::new();
    for v in [0xa1b2c3d4u32, 0x0002_0004, 0, 0, 65535, 1] {
        p.extend_from_slice(&v.to_le_bytes());
    }
    for v in [1_700_000_002u32, 0, frame.len() as u32, frame.len() as u32] {
        p.extend_from_slice(&v.to_le_bytes());
    }
    p.extend_from_slice(&frame);
    std::fs::write(&pcap, p).unwrap();
    let out = Command::new("tshark")
        .arg("-r")
        .arg(&pcap)
        .args(["-d", "udp.port==4739,cflow", "-V"])
        .output()
        .expect("run tshark (installed by `cargo ferrule test`)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !text.contains("Malformed") && !text.contains("Expert Info"),
        "{text}"
    );
    for want in [
        "Version: 10",
        "Observation Domain Id: 1",
        "SrcAddr: 10.0.0.1",
        "DstAddr: 192.168.1.2",
        "SrcPort: 40000",
        "DstPort: 80",
        "Packets: 7",
        "Octets: 600",
        "Post Packets: 5",
        "Post Octets: 4000",
        "SrcAddr: 2001::1",
        "DstAddr: 2001::2",
        "Flow End Reason: End of Flow detected (3)",
        "Flow End Reason: Idle timeout (1)",
    ] {
        assert!(text.contains(want), "no {want:?} in\n{text}");
    }

    // nfdump's collector: one record per connection, both directions' counts.
    let port = {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap().port()
    };
    let flows = dir.path().join("flows");
    std::fs::create_dir(&flows).unwrap();
    let mut nfcapd = Kill(
        Command::new("nfcapd")
            .args([
                "-b",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-t",
                "3600",
                "-w",
            ])
            .arg(&flows)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run nfcapd (installed by `cargo ferrule test`)"),
    );
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    // nfcapd binds shortly after start: once it has, the port cannot be bound here.
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
        assert!(Instant::now() < deadline, "nfcapd never bound its port");
        std::thread::sleep(Duration::from_millis(50));
    }
    sock.send_to(msg, ("127.0.0.1", port)).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    // SIGTERM: nfcapd writes its current file and exits.
    let _ = Command::new("kill")
        .args(["-TERM", &nfcapd.0.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && nfcapd.0.try_wait().ok().flatten().is_none() {
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = Command::new("nfdump")
        .arg("-R")
        .arg(&flows)
        .args([
            "-q",
            "-N",
            "-o",
            "fmt:%sa %sp %da %dp %pr %ipkt %ibyt %opkt %obyt %flg",
        ])
        .output()
        .expect("run nfdump");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines: Vec<String> = text
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|l| !l.is_empty())
        .collect();
    lines.sort();
    assert_eq!(
        lines,
        [
            "10.0.0.1 40000 192.168.1.2 80 6 7 600 5 4000 ...AP.SF",
            "2001::1 50000 2001::2 443 6 11 1100 13 13000 ...AP.SF",
        ],
        "nfdump: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(nfcapd);
}

/// Per connection of a capture, as nfdump prints it with
/// `%sa %sp %da %dp %ipkt %ibyt %opkt %obyt` (client first; IP bytes), counted from the frames.
fn connections_of(pcap: &Path) -> Vec<String> {
    use std::collections::HashMap;
    use std::net::IpAddr;
    type End = (IpAddr, u16);
    // Key: the two endpoints, ordered; value: client, [packets, bytes] per direction.
    let mut conns: HashMap<(End, End), (End, [u64; 4])> = HashMap::new();
    for f in qemu::read_frames(pcap).expect("read the capture") {
        let d = &f.data;
        let mut off = 12;
        let mut ty = u16::from_be_bytes([d[off], d[off + 1]]);
        while ty == 0x8100 || ty == 0x88a8 {
            off += 4;
            ty = u16::from_be_bytes([d[off], d[off + 1]]);
        }
        let ip = &d[off + 2..];
        let (src, dst, len, l4): (IpAddr, IpAddr, u64, &[u8]) = match ty {
            0x0800 if ip[9] == 6 => {
                let ihl = (ip[0] as usize & 15) * 4;
                let a: [u8; 4] = ip[12..16].try_into().unwrap();
                let b: [u8; 4] = ip[16..20].try_into().unwrap();
                let len = u16::from_be_bytes([ip[2], ip[3]]) as u64;
                (a.into(), b.into(), len, &ip[ihl..])
            }
            0x86dd if ip[6] == 6 => {
                let a: [u8; 16] = ip[8..24].try_into().unwrap();
                let b: [u8; 16] = ip[24..40].try_into().unwrap();
                let len = u16::from_be_bytes([ip[4], ip[5]]) as u64 + 40;
                (a.into(), b.into(), len, &ip[40..])
            }
            _ => continue,
        };
        let s = (src, u16::from_be_bytes([l4[0], l4[1]]));
        let t = (dst, u16::from_be_bytes([l4[2], l4[3]]));
        let key = if s < t { (s, t) } else { (t, s) };
        let e = conns.entry(key).or_insert((s, [0; 4]));
        let dir = if e.0 == s { 0 } else { 2 };
        e.1[dir] += 1;
        e.1[dir + 1] += len;
    }
    let mut v: Vec<String> = conns
        .into_iter()
        .map(|((a, b), (client, c))| {
            let server = if client == a { b } else { a };
            format!(
                "{} {} {} {} {} {} {} {}",
                client.0, client.1, server.0, server.1, c[0], c[1], c[2], c[3]
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn nfcapd_receives_one_record_per_connection_from_the_appliance() {
    use image::host::capture::Capture;
    use image::host::flows::{flow_lines_of, DEFAULT_MAX_FLOWS};
    let dir = tempfile::tempdir().unwrap();
    let collector = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let elf = {
        static BUILD: Mutex<()> = Mutex::new(());
        let _g = BUILD.lock().unwrap_or_else(|e| e.into_inner());
        let port = collector.to_string();
        let elf = image::build_app_with_env(
            &App::Package("flowmon".into()),
            Verbosity::Quiet,
            &[("FERRULE_MGMT", "qemu"), ("FERRULE_IPFIX_PORT", &port)],
        )
        .expect("build flowmon with IPFIX");
        let out = dir.path().join("flowmon-ipfix");
        std::fs::copy(&elf, &out).unwrap();
        out
    };
    let pcap = dir.path().join("t.pcap");
    let cfg = GenConfig {
        flows: 30,
        concurrent: 6,
        ipv6_pct: 30.0,
        vlan_pct: 10.0,
        rst_pct: 10.0,
        seed: 2024,
        ..GenConfig::default()
    };
    gen::generate_files(&cfg, &pcap).expect("generate a capture");
    let want = connections_of(&pcap);
    assert_eq!(want.len(), 30);
    // The same connections as `cargo ferrule flows` names.
    let (lines, _) = flow_lines_of(&Capture::load(&pcap).unwrap(), DEFAULT_MAX_FLOWS).unwrap();
    let mut flows_ends: Vec<String> = lines
        .iter()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let strip = |s: &str| {
                s.replace(['[', ']'], "")
                    .rsplit_once(':')
                    .map(|(a, p)| format!("{a} {p}"))
                    .unwrap()
            };
            format!(
                "{} {}",
                strip(v["client"].as_str().unwrap()),
                strip(v["server"].as_str().unwrap())
            )
        })
        .collect();
    flows_ends.sort();
    let mut want_ends: Vec<String> = want
        .iter()
        .map(|l| l.split(' ').take(4).collect::<Vec<_>>().join(" "))
        .collect();
    want_ends.sort();
    assert_eq!(flows_ends, want_ends);

    let flowdir = dir.path().join("flows");
    std::fs::create_dir(&flowdir).unwrap();
    let nfcapd = Kill(
        Command::new("nfcapd")
            .args([
                "-b",
                "127.0.0.1",
                "-p",
                &collector.to_string(),
                "-t",
                "3600",
                "-w",
            ])
            .arg(&flowdir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run nfcapd (installed by `cargo ferrule test`)"),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::UdpSocket::bind(("127.0.0.1", collector)).is_ok() {
        assert!(Instant::now() < deadline, "nfcapd never bound its port");
        std::thread::sleep(Duration::from_millis(50));
    }
    let dump = dir.path().join("mgmt.pcap");
    let mut args = qemu::user_nic_args(free_port(), 9100);
    args.push("-object".into());
    args.push(format!("filter-dump,id=dump,netdev=mgmt,file={}", dump.display()).into());
    let mut vm = boot(
        Config::kernel(&elf)
            .with_cores(2)
            .with_nic(NicModel::Igb)
            .with_args(args)
            .with_timeout(timeout_for(Firmware::Direct) * 3),
    );
    vm.expect_line("the exporter", |l| {
        l == format!(
            "appliance: IPFIX to 10.0.2.2:{collector} (templates every 10 s, active timeout 60 s)"
        )
    });
    vm.expect_line("`appliance: ready`", |l| l.starts_with("appliance: ready"));
    vm.nic(0).send_pcap(&pcap).expect("inject the capture");
    vm.expect_exit(ExitStatus::Success);
    let summary = vm
        .lines()
        .into_iter()
        .find(|l| l.starts_with("appliance: mgmt http "))
        .unwrap_or_else(|| panic!("no mgmt summary: {}", vm.report()));
    assert!(summary.ends_with(" ipfix_records_dropped 0"), "{summary}");
    // SIGTERM: nfcapd writes its file and exits.
    let _ = Command::new("kill")
        .args(["-TERM", &nfcapd.0.id().to_string()])
        .status();
    let mut nfcapd = nfcapd;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && nfcapd.0.try_wait().ok().flatten().is_none() {
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = Command::new("nfdump")
        .arg("-R")
        .arg(&flowdir)
        .args([
            "-q",
            "-N",
            "-o",
            "fmt:%sa %sp %da %dp %ipkt %ibyt %opkt %obyt",
        ])
        .output()
        .expect("run nfdump");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut got: Vec<String> = text
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|l| !l.is_empty())
        .collect();
    got.sort();
    assert_eq!(got, want, "nfdump: {text}\n{}", vm.report());

    // tshark decodes every datagram the appliance sent on its management NIC.
    let out = Command::new("tshark")
        .arg("-r")
        .arg(&dump)
        .args([
            "-d",
            &format!("udp.port=={collector},cflow"),
            "-Y",
            "cflow",
            "-V",
        ])
        .output()
        .expect("run tshark");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !text.contains("Malformed") && !text.contains("Expert Info"),
        "{text}"
    );
    let datagrams = summary
        .split(" ipfix_datagrams ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse::<usize>().ok())
        .expect("ipfix_datagrams in the summary");
    assert_eq!(
        text.matches("\nCisco NetFlow/IPFIX\n").count(),
        datagrams,
        "{text}"
    );
    assert_eq!(text.matches("Flow End Reason:").count(), 30, "{text}");
}

/// Runs nfcapd on a free loopback port until `send(port)` is done; returns nfdump's lines
/// (`%sa %sp %da %dp %ipkt %ibyt %opkt %obyt`), sorted.
fn collect_with_nfcapd(dir: &Path, send: impl FnOnce(u16)) -> Vec<String> {
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let flowdir = dir.join("nfcapd");
    std::fs::create_dir_all(&flowdir).unwrap();
    let mut nfcapd = Kill(
        Command::new("nfcapd")
            .args([
                "-b",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-t",
                "3600",
                "-w",
            ])
            .arg(&flowdir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run nfcapd (installed by `cargo ferrule test`)"),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
        assert!(Instant::now() < deadline, "nfcapd never bound its port");
        std::thread::sleep(Duration::from_millis(50));
    }
    send(port);
    std::thread::sleep(Duration::from_millis(300));
    let _ = Command::new("kill")
        .args(["-TERM", &nfcapd.0.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && nfcapd.0.try_wait().ok().flatten().is_none() {
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = Command::new("nfdump")
        .arg("-R")
        .arg(&flowdir)
        .args([
            "-q",
            "-N",
            "-o",
            "fmt:%sa %sp %da %dp %ipkt %ibyt %opkt %obyt",
        ])
        .output()
        .expect("run nfdump");
    let mut got: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|l| !l.is_empty())
        .collect();
    got.sort();
    got
}

#[test]
fn flows_ipfix_sends_the_captures_connections_to_nfcapd() {
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("t.pcap");
    let cfg = GenConfig {
        flows: 50,
        concurrent: 10,
        ipv6_pct: 30.0,
        vlan_pct: 10.0,
        rst_pct: 10.0,
        seed: 77,
        ..GenConfig::default()
    };
    gen::generate_files(&cfg, &pcap).expect("generate a capture");
    let want = connections_of(&pcap);
    assert_eq!(want.len(), 50);
    let got = collect_with_nfcapd(dir.path(), |port| {
        let args = image::host::cli::FlowsArgs {
            capture: pcap.clone(),
            max_flows: image::host::flows::DEFAULT_MAX_FLOWS,
            ipfix: Some(format!("127.0.0.1:{port}")),
            checksums: image::host::checksum::Checksums::Auto,
        };
        assert_eq!(image::host::cli::run_flows(&args), 0);
    });
    assert_eq!(got, want);
}
