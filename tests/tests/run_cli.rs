//! `cargo ferrule run` with several NICs, through the tool's own entry point (`run_run`):
//!
//! * the forwarding test app (`tests/apps/nic-fwd`: port 0 → port 1) boots on two igbs the
//!   tool adds itself (no `--nic`: as many as the highest NIC index named); the frames of
//!   `--pcap 0:FILE` go in on port 0, `--capture 1:FILE` must hold exactly them, in order, and
//!   `--capture 0:FILE` nothing;
//! * the inline app `passthrough` on an igb pair is fed from both sides (`--pcap 0:` and
//!   `--pcap 1:`) and each `--capture` must hold exactly the other side's frames.

use std::path::Path;

use image::cli::{run_run, RunArgs};
use image::host::gen::{self, GenConfig};
use qemu::{read_frames, write_frames, Frame};
use tests::Slot;

/// nic-fwd forwards exactly this many frames, then waits for the finish frame.
const FORWARD: usize = 100;

#[test]
fn run_injects_and_captures_per_nic_index() {
    let dir = tempfile::tempdir().unwrap();
    let generated = dir.path().join("gen.pcap");
    gen::generate_files(
        &GenConfig {
            flows: 12,
            seed: 5,
            ..GenConfig::default()
        },
        &generated,
    )
    .unwrap();
    let mut frames: Vec<Frame> = read_frames(&generated).unwrap();
    // QEMU's igb pads received frames to 60 bytes: keep the ones that arrive unchanged.
    frames.retain(|f| f.data.len() >= 60);
    assert!(frames.len() > FORWARD, "{} frames", frames.len());
    frames.truncate(FORWARD);
    let forwarded: Vec<Vec<u8>> = frames.iter().map(|f| f.data.clone()).collect();
    // The finish frame: broadcast, ethertype 0x88B6.
    let mut finish = vec![0xFF; 6];
    finish.extend([0x02, 0, 0, 0, 0, 0x20, 0x88, 0xB6]);
    finish.resize(60, 0);
    frames.push(Frame {
        time: frames[FORWARD - 1].time,
        data: finish,
    });
    let input = dir.path().join("in.pcap");
    write_frames(&input, &frames).unwrap();

    let out0 = dir.path().join("out0.pcap");
    let out1 = dir.path().join("out1.pcap");
    let app = image::workspace_root().join("tests/apps/nic-fwd");
    let arg = |p: &std::path::Path| p.display().to_string();
    let args = RunArgs::from_args([
        "--app".to_string(),
        arg(&app),
        "--cores".into(),
        "1".into(),
        "--pcap".into(),
        format!("0:{}", arg(&input)),
        "--capture".into(),
        format!("1:{}", arg(&out1)),
        "--capture".into(),
        format!("0:{}", arg(&out0)),
        "--inject-after".into(),
        "nic-fwd ready".into(),
        "--timeout".into(),
        "600".into(),
        "--skip-setup".into(),
    ])
    .unwrap();
    let code = {
        let _slot = Slot::acquire();
        run_run(&args)
    };
    assert_eq!(code, 0, "cargo ferrule run exit code (console above)");
    let got: Vec<Vec<u8>> = read_frames(&out1)
        .unwrap()
        .into_iter()
        .map(|f| f.data)
        .collect();
    assert_eq!(got.len(), FORWARD, "frames transmitted on NIC 1");
    assert!(got == forwarded, "NIC 1 frames differ from those injected");
    assert_eq!(read_frames(&out0).unwrap().len(), 0, "frames on NIC 0");
}

/// The TCP source port of an untagged IPv4 or IPv6 frame.
fn src_port(f: &[u8]) -> Option<u16> {
    let l4 = match f.get(12..14)? {
        [0x08, 0x00] => 14 + usize::from(f.get(14)? & 0x0f) * 4,
        [0x86, 0xdd] => 14 + 40,
        _ => return None,
    };
    Some(u16::from_be_bytes([*f.get(l4)?, *f.get(l4 + 1)?]))
}

/// An inline app fed from both sides through `run`: passthrough on an igb pair, the clients'
/// frames injected on NIC 0 and the servers' on NIC 1; each port must transmit exactly the
/// other port's frames, in order (one core), byte for byte.
#[test]
fn run_feeds_and_watches_both_ports_of_an_inline_app() {
    let dir = tempfile::tempdir().unwrap();
    let generated = dir.path().join("gen.pcap");
    gen::generate_files(
        &GenConfig {
            flows: 16,
            concurrent: 4,
            ipv6_pct: 25.0,
            seed: 8,
            ..GenConfig::default()
        },
        &generated,
    )
    .unwrap();
    let frames: Vec<Frame> = read_frames(&generated)
        .unwrap()
        .into_iter()
        .filter(|f| f.data.len() >= 60)
        .collect();
    let (servers, clients): (Vec<Frame>, Vec<Frame>) = frames
        .into_iter()
        .partition(|f| src_port(&f.data) == Some(80));
    assert!(clients.len() > 50 && servers.len() > 50);
    let data = |v: &[Frame]| v.iter().map(|f| f.data.clone()).collect::<Vec<_>>();
    let p = |name: &str| dir.path().join(name).display().to_string();
    write_frames(Path::new(&p("clients.pcap")), &clients).unwrap();
    write_frames(Path::new(&p("servers.pcap")), &servers).unwrap();

    let args = RunArgs::from_args([
        "--app".to_string(),
        "passthrough".into(),
        "--cores".into(),
        "1".into(),
        "--nic".into(),
        "igb".into(),
        "--nic".into(),
        "igb".into(),
        "--pcap".into(),
        format!("0:{}", p("clients.pcap")),
        "--pcap".into(),
        format!("1:{}", p("servers.pcap")),
        "--capture".into(),
        format!("0:{}", p("out0.pcap")),
        "--capture".into(),
        format!("1:{}", p("out1.pcap")),
        "--timeout".into(),
        "300".into(),
        "--skip-setup".into(),
    ])
    .unwrap();
    let code = {
        let _slot = Slot::acquire();
        run_run(&args)
    };
    assert_eq!(code, 0, "cargo ferrule run exit code (console above)");
    let out = |name: &str| data(&read_frames(Path::new(&p(name))).unwrap());
    let (out0, out1) = (out("out0.pcap"), out("out1.pcap"));
    assert_eq!(
        (out0.len(), out1.len()),
        (servers.len(), clients.len()),
        "frames out of NIC 0 and NIC 1"
    );
    assert!(
        out1 == data(&clients),
        "NIC 1 must send the clients' frames"
    );
    assert!(
        out0 == data(&servers),
        "NIC 0 must send the servers' frames"
    );
}
