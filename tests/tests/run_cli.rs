//! `cargo ferrule run` with several NICs, through the tool's own entry point (`run_run`): the
//! forwarding test app (`tests/apps/nic-fwd`: port 0 → port 1) boots on two igbs the tool adds
//! itself (no `--nic`: as many as the highest NIC index named), the frames of `--pcap 0:FILE`
//! go in on port 0 and `--capture 1:FILE` must hold exactly them, in order, while
//! `--capture 0:FILE` must hold nothing.

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
