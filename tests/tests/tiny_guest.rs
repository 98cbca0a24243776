//! Boots a real QEMU with a tiny hand-assembled multiboot (v1, a.out kludge) guest that needs
//! no toolchain: it prints a message on COM1 and writes a chosen value to isa-debug-exit, or
//! halts forever. This checks the harness itself (serial lines, exit mapping, timeout, monitor,
//! NIC sockets) independently of the Ferrule kernel.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use qemu::{Config, ExitStatus, Frame, Machine, NicModel, Qemu};

const LOAD: u32 = 0x10_0000;

/// `exit`: `Some(v)` writes `v` to port 0xf4 after printing; `None` halts forever.
fn tiny_guest(dir: &Path, msg: &str, exit: Option<u8>) -> PathBuf {
    let magic: u32 = 0x1BAD_B002;
    let flags: u32 = 1 << 16; // address fields are valid (raw binary)
    let mut b = Vec::new();
    for v in [
        magic,
        flags,
        0u32.wrapping_sub(magic.wrapping_add(flags)),
        LOAD,      // header_addr
        LOAD,      // load_addr
        0,         // load_end_addr: whole file
        0,         // bss_end_addr: none
        LOAD + 32, // entry
    ] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    let msg_at = LOAD + 64;
    b.push(0xBE); // mov esi, imm32
    b.extend_from_slice(&msg_at.to_le_bytes());
    b.extend_from_slice(&[0x66, 0xBA, 0xF8, 0x03]); // mov dx, 0x3f8
    b.extend_from_slice(&[0xAC, 0x84, 0xC0, 0x74, 0x03, 0xEE, 0xEB, 0xF8]); // lodsb; test; jz; out; jmp
    match exit {
        Some(v) => {
            b.extend_from_slice(&[0x66, 0xBA, 0xF4, 0x00, 0xB0, v, 0xEE]); // mov dx,0xf4; mov al,v; out
        }
        None => b.push(0xFA), // cli
    }
    b.extend_from_slice(&[0xF4, 0xEB, 0xFD]); // hlt; jmp hlt
    b.resize(64, 0x90);
    b.extend_from_slice(msg.as_bytes());
    b.push(0);
    b.resize(4096, 0);
    let p = dir.join("tiny.bin");
    std::fs::write(&p, b).unwrap();
    p
}

#[test]
fn serial_lines_and_success_exit_on_q35_and_pc() {
    let dir = tempfile::tempdir().unwrap();
    let k = tiny_guest(
        dir.path(),
        "hello ferrule\r\ncores online: 1\r\nbye\n",
        Some(0x10),
    );
    for m in [Machine::Q35, Machine::Pc] {
        let t = Instant::now();
        let mut vm = Qemu::start(
            Config::kernel(&k)
                .with_machine(m)
                .with_timeout(Duration::from_secs(30)),
        )
        .unwrap();
        let line = vm
            .wait_for_line(Duration::from_secs(30), |l| l.starts_with("cores online:"))
            .unwrap();
        assert_eq!(line, "cores online: 1");
        assert_eq!(vm.wait_exit(), ExitStatus::Success, "{}", vm.report());
        assert_eq!(
            vm.transcript(),
            "hello ferrule\ncores online: 1\nbye\n",
            "{m:?}"
        );
        eprintln!("{m:?}: start to exit {:?}", t.elapsed());
    }
}

#[test]
fn failure_and_other_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let k = tiny_guest(dir.path(), "PANIC: boom at x.rs:1\n", Some(0x11));
    let mut vm = Qemu::start(Config::kernel(&k)).unwrap();
    assert_eq!(vm.wait_exit(), ExitStatus::Failure);
    assert!(vm.transcript().contains("PANIC: boom"));
    let dir2 = tempfile::tempdir().unwrap();
    let k = tiny_guest(dir2.path(), "x\n", Some(0x20));
    let mut vm = Qemu::start(Config::kernel(&k)).unwrap();
    assert_eq!(vm.wait_exit(), ExitStatus::Other(65));
}

#[test]
fn waiting_for_a_line_that_never_comes_fails_with_the_transcript() {
    let dir = tempfile::tempdir().unwrap();
    let k = tiny_guest(dir.path(), "only this\n", Some(0x10));
    let mut vm = Qemu::start(Config::kernel(&k)).unwrap();
    match vm.wait_for_text(Duration::from_secs(20), "cores online") {
        Err(qemu::Error::Exited { status, transcript }) => {
            assert_eq!(status, ExitStatus::Success);
            assert!(transcript.contains("only this"), "{transcript}");
        }
        other => panic!("expected Exited, got {other:?}"),
    }
}

#[test]
fn hard_timeout_kills_a_hung_guest_and_cleans_up() {
    let dir = tempfile::tempdir().unwrap();
    let k = tiny_guest(dir.path(), "hanging\n", None);
    let t = Instant::now();
    let mut vm = Qemu::start(Config::kernel(&k).with_timeout(Duration::from_secs(2))).unwrap();
    vm.wait_for_text(Duration::from_secs(10), "hanging")
        .unwrap();
    let err = vm
        .wait_for_text(Duration::from_secs(10), "never")
        .unwrap_err();
    assert!(matches!(err, qemu::Error::LineTimeout { .. }), "{err}");
    assert_eq!(vm.wait_exit(), ExitStatus::Timeout);
    assert!(t.elapsed() < Duration::from_secs(8), "{:?}", t.elapsed());
}

#[test]
fn drop_kills_qemu_and_removes_its_files() {
    let dir = tempfile::tempdir().unwrap();
    let k = tiny_guest(dir.path(), "running\n", None);
    let mut vm = Qemu::start(Config::kernel(&k).with_nic(NicModel::Igb)).unwrap();
    vm.wait_for_text(Duration::from_secs(20), "running")
        .unwrap();
    let run_dir = vm.run_dir().to_path_buf();
    let proc_dir = PathBuf::from(format!("/proc/{}", vm.pid()));
    assert!(run_dir.join("nic0.sock").exists());
    assert!(proc_dir.exists());
    drop(vm);
    assert!(!run_dir.exists(), "{} left behind", run_dir.display());
    assert!(!proc_dir.exists(), "QEMU still running after drop");
}

#[test]
fn monitor_set_link_and_quit_with_nics_attached() {
    let dir = tempfile::tempdir().unwrap();
    let k = tiny_guest(dir.path(), "up\n", None);
    let mut vm = Qemu::start(
        Config::kernel(&k)
            .with_nic(NicModel::Igb)
            .with_nic(NicModel::VirtioNet)
            .with_nic(NicModel::E1000e)
            .with_timeout(Duration::from_secs(30)),
    )
    .unwrap();
    vm.wait_for_text(Duration::from_secs(20), "up").unwrap();
    let pci = vm.monitor_command("info pci").unwrap();
    assert!(pci.contains("8086:10c9"), "{pci}");
    let status = vm.monitor_command("info status").unwrap();
    assert!(status.contains("running"), "{status}");
    let net = vm.monitor_command("info network").unwrap();
    assert!(net.contains("nic2: index=0,type=nic,model=e1000e"), "{net}");
    // QEMU 10's `info network` does not show link state; an unknown NIC is an error.
    vm.set_link(0, false).unwrap();
    vm.set_link(0, true).unwrap();
    let err = vm.set_link(7, true).unwrap_err().to_string();
    assert!(err.contains("nic7"), "{err}");
    // The guest has no driver: injected frames are dropped by QEMU, but the socket takes them.
    vm.nic(0).send(&[0xff; 60]).unwrap();
    let pcap = dir.path().join("in.pcap");
    qemu::write_frames(&pcap, &[Frame::now(vec![0xff; 64])]).unwrap();
    assert_eq!(vm.nic(1).send_pcap(&pcap).unwrap(), 1);
    let cap = dir.path().join("out.pcap");
    assert_eq!(vm.nic(2).save_capture(&cap).unwrap(), 0);
    assert_eq!(vm.quit(), ExitStatus::Other(0));
}

/// Frames cross real QEMU stream netdevs in both directions: two stream sockets joined by a
/// QEMU hub, so what we inject on one (from bytes and from a pcap) comes out of the other,
/// where it is captured and saved as pcap — the same framing a guest NIC's traffic uses.
#[test]
fn stream_netdev_framing_through_a_qemu_hub() {
    let dir = tempfile::tempdir().unwrap();
    let k = tiny_guest(dir.path(), "hub\n", None);
    let (a, b) = (dir.path().join("a.sock"), dir.path().join("b.sock"));
    let mut args = Vec::new();
    for (id, p) in [("a", &a), ("b", &b)] {
        args.push("-netdev".to_string());
        args.push(format!(
            "stream,id={id},server=on,addr.type=unix,addr.path={}",
            p.display()
        ));
        args.push("-netdev".to_string());
        args.push(format!("hubport,id=p{id},hubid=0,netdev={id}"));
    }
    let mut vm = Qemu::start(
        Config::kernel(&k)
            .with_args(args)
            .with_timeout(Duration::from_secs(30)),
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut tx = qemu::Nic::connect(0, &a, deadline).unwrap();
    let mut rx = qemu::Nic::connect(1, &b, deadline).unwrap();
    vm.wait_for_text(Duration::from_secs(20), "hub").unwrap();

    let frame = |i: u8, len: usize| {
        let mut f = vec![0xff; 6];
        f.extend_from_slice(&[0x02, 0, 0, 0, 0, i]);
        f.extend_from_slice(&[0x88, 0xb5]);
        f.resize(len, i);
        f
    };
    tx.send(&frame(1, 60)).unwrap();
    let pcap_in = dir.path().join("in.pcap");
    let from_file: Vec<Frame> = (2..=4u8)
        .map(|i| Frame::now(frame(i, 60 + 500 * i as usize)))
        .collect();
    qemu::write_frames(&pcap_in, &from_file).unwrap();
    assert_eq!(tx.send_pcap(&pcap_in).unwrap(), 3);
    let last = rx
        .wait_for_frame(Duration::from_secs(10), |f| f[11] == 4)
        .unwrap();
    assert_eq!(last.data, frame(4, 2060));
    let out = dir.path().join("out.pcap");
    assert_eq!(rx.save_capture(&out).unwrap(), 4);
    let got: Vec<Vec<u8>> = qemu::read_frames(&out)
        .unwrap()
        .into_iter()
        .map(|f| f.data)
        .collect();
    let want: Vec<Vec<u8>> = std::iter::once(frame(1, 60))
        .chain(from_file.into_iter().map(|f| f.data))
        .collect();
    assert_eq!(got, want);
    assert_eq!(vm.quit(), ExitStatus::Other(0));
}
