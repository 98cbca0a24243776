//! simple_firewall on the host: its host runner (what `cargo ferrule replay --app
//! simple_firewall` runs), built with `default.rules`, drops exactly the frames of the
//! connections a DROP rule matches (IPv4 and IPv6) and forwards every other frame unchanged,
//! and prints the rule table with exact counts.

use std::process::Command;

use appliance::capture::Capture;
use image::host::gen::{self, GenConfig};
use image::host::json::parse_lines;

/// `client server` of a TCP frame as the generator writes them (`IP:PORT`, IPv6 bracketed).
fn endpoints(f: &[u8]) -> Option<(String, String)> {
    let (src, dst, l4): (std::net::IpAddr, std::net::IpAddr, usize) =
        match u16::from_be_bytes([f[12], f[13]]) {
            0x0800 => {
                let a: [u8; 4] = f[26..30].try_into().ok()?;
                let b: [u8; 4] = f[30..34].try_into().ok()?;
                (a.into(), b.into(), 14 + (f[14] as usize & 15) * 4)
            }
            0x86dd => {
                let a: [u8; 16] = f[22..38].try_into().ok()?;
                let b: [u8; 16] = f[38..54].try_into().ok()?;
                (a.into(), b.into(), 54)
            }
            _ => return None,
        };
    let p = |o: usize| u16::from_be_bytes([f[o], f[o + 1]]);
    Some((gen::endpoint(src, p(l4)), gen::endpoint(dst, p(l4 + 2))))
}

#[test]
fn exactly_the_matching_connections_are_dropped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("t.pcap");
    let cfg = GenConfig {
        flows: 60,
        concurrent: 10,
        ipv6_pct: 40.0,
        seed: 7,
        ..GenConfig::default()
    };
    gen::generate_files(&cfg, &pcap).unwrap();
    let truth = std::fs::read_to_string(gen::truth_path(&pcap)).unwrap();
    let (truth, _) = parse_lines(&truth).unwrap();
    // default.rules: DROP to 192.168.3.0/24:80, DROP to [fd00:1::5]:80, ACCEPT from 10/8.
    let by_rule1: Vec<&str> = truth
        .iter()
        .filter(|t| t.server == "192.168.3.1:80")
        .map(|t| t.client.as_str())
        .collect();
    let by_rule2: Vec<&str> = truth
        .iter()
        .filter(|t| t.server == "[fd00:1::5]:80")
        .map(|t| t.client.as_str())
        .collect();
    let v4 = truth.iter().filter(|t| !t.client.starts_with('[')).count();
    assert_eq!(
        (by_rule1.len(), by_rule2.len()),
        (1, 1),
        "seed 7 reaches both"
    );
    let blocked = |f: &[u8]| {
        endpoints(f).is_some_and(|(a, b)| {
            [&by_rule1, &by_rule2]
                .iter()
                .any(|r| r.contains(&a.as_str()) || r.contains(&b.as_str()))
        })
    };

    let out_pcap = dir.path().join("out.pcap");
    let out = Command::new(env!("CARGO_BIN_EXE_simple_firewall"))
        .arg(&pcap)
        .arg("--out")
        .arg(&out_pcap)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let input = Capture::load(&pcap).unwrap();
    let want: Vec<&[u8]> = input
        .frames()
        .map(|(_, f)| f)
        .filter(|f| !blocked(f))
        .collect();
    let dropped = input.len() - want.len();
    let output = Capture::load(&out_pcap).unwrap();
    let got: Vec<&[u8]> = output.frames().map(|(_, f)| f).collect();
    assert_eq!(got.len(), want.len());
    assert!(
        got == want,
        "the forwarded frames differ from the input less the dropped ones"
    );
    assert!(
        stderr.contains(&format!(
            "forwarded {} rewritten 0 dropped {dropped} ",
            want.len()
        )),
        "{stderr}"
    );

    let stdout = String::from_utf8(out.stdout).unwrap();
    let rules_file =
        std::fs::canonicalize(concat!(env!("CARGO_MANIFEST_DIR"), "/default.rules")).unwrap();
    let table = |counts: [usize; 3]| {
        format!(
            "-----------------------------------------------------------------------
Firewall rule table
idx   flows   target   client             server             port
1     {:<8}DROP     0.0.0.0/0          192.168.3.0/24     dport:80    
2     {:<8}DROP     ::/0               fd00:1::5          dport:80    
3     {:<8}ACCEPT   10.0.0.0/8         0.0.0.0/0          
-----------------------------------------------------------------------
",
            counts[0], counts[1], counts[2]
        )
    };
    let want_out = format!(
        "simple_firewall: 3 rules from {}\n{}{}simple_firewall: core 0 connections dropped 2 frames dropped {dropped}\n",
        rules_file.display(),
        table([0, 0, 0]),
        table([1, 1, v4 - 1])
    );
    assert_eq!(stdout, want_out);
}

#[path = "../../midstat/tests/common/frames.rs"]
mod frames;

#[test]
fn a_retransmitted_syn_of_a_dropped_connection_counts_again() {
    use frames::{Conn, ACK, PSH, SYN};
    // Rule 1 of default.rules drops this one; its client sends its SYN three times.
    let mut blocked = Conn::new("10.0.0.1:40001", "192.168.3.1:80");
    let syn = blocked.c(SYN, b"").1;
    // Rule 3 accepts this one.
    let mut open = Conn::new("10.0.0.2:40002", "192.168.4.1:80");
    let mut frames = vec![syn.clone()];
    frames.extend(open.handshake().into_iter().map(|s| s.1));
    frames.push(syn.clone());
    frames.push(open.c(PSH | ACK, b"hello").1);
    frames.push(syn);
    frames.push(open.s(ACK, b"").1);
    let dir = tempfile::tempdir().unwrap();
    let (pcap, out) = (dir.path().join("in.pcap"), dir.path().join("out.pcap"));
    let mut w = appliance::host::PcapOut::new(Vec::new()).unwrap();
    for (i, f) in frames.iter().enumerate() {
        w.frame(10_000_000 + i as u64, f).unwrap();
    }
    std::fs::write(&pcap, w.finish().unwrap()).unwrap();
    let res = Command::new(env!("CARGO_BIN_EXE_simple_firewall"))
        .arg(&pcap)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(res.status.success());
    let got: Vec<Vec<u8>> = Capture::load(&out)
        .unwrap()
        .frames()
        .map(|(_, f)| f.to_vec())
        .collect();
    let want: Vec<Vec<u8>> = [1, 2, 3, 5, 7].iter().map(|&i| frames[i].clone()).collect();
    assert_eq!(got, want);
    let stdout = String::from_utf8(res.stdout).unwrap();
    let rows: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with(['1', '2', '3']))
        .collect();
    // The periodic table (all zero, before the first frame), then the final one.
    assert_eq!(
        rows[3..],
        [
            "1     3       DROP     0.0.0.0/0          192.168.3.0/24     dport:80    ",
            "2     0       DROP     ::/0               fd00:1::5          dport:80    ",
            "3     1       ACCEPT   10.0.0.0/8         0.0.0.0/0          ",
        ]
    );
    assert_eq!(
        stdout.lines().last(),
        Some("simple_firewall: core 0 connections dropped 1 frames dropped 3")
    );
}
