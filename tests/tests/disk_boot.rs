//! The disk image pipeline on its own: a tiny hand-assembled multiboot2 guest (no toolchain
//! needed) is packed by `make_disk_image` and must boot through GRUB under SeaBIOS and OVMF,
//! print on COM1 and exit through isa-debug-exit.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use qemu::{Config, ExitStatus, Firmware, Machine, Qemu};

const LOAD: u32 = 0x20_0000;

/// A flat multiboot2 kernel (address + entry tags) that prints `msg` on COM1 and writes 0x10
/// to port 0xf4.
fn multiboot2_guest(dir: &Path, msg: &str) -> PathBuf {
    let magic: u32 = 0xE852_50D6;
    let len: u32 = 64;
    let mut b = Vec::new();
    for v in [magic, 0, len, 0u32.wrapping_sub(magic.wrapping_add(len))] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    // Address tag (type 2, size 24): header, load, load_end (0: whole file), bss_end (0).
    b.extend_from_slice(&2u16.to_le_bytes());
    b.extend_from_slice(&0u16.to_le_bytes());
    for v in [24u32, LOAD, LOAD, 0, 0] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    // Entry tag (type 3, size 12, padded to 16).
    b.extend_from_slice(&3u16.to_le_bytes());
    b.extend_from_slice(&0u16.to_le_bytes());
    for v in [12u32, LOAD + 64, 0] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    // End tag.
    b.extend_from_slice(&[0, 0, 0, 0, 8, 0, 0, 0]);
    assert_eq!(b.len(), 64);
    let msg_at = LOAD + 128;
    b.push(0xBE); // mov esi, msg
    b.extend_from_slice(&msg_at.to_le_bytes());
    b.extend_from_slice(&[0x66, 0xBA, 0xF8, 0x03]); // mov dx, 0x3f8
    b.extend_from_slice(&[0xAC, 0x84, 0xC0, 0x74, 0x03, 0xEE, 0xEB, 0xF8]); // print loop
    b.extend_from_slice(&[0x66, 0xBA, 0xF4, 0x00, 0xB0, 0x10, 0xEE]); // exit 0x10
    b.extend_from_slice(&[0xF4, 0xEB, 0xFD]);
    b.resize(128, 0x90);
    b.extend_from_slice(msg.as_bytes());
    b.push(0);
    b.resize(4096, 0);
    let p = dir.join("mb2.elf");
    std::fs::write(&p, b).unwrap();
    p
}

#[test]
fn grub_image_boots_a_multiboot2_guest_under_seabios_and_ovmf() {
    let dir = tempfile::tempdir().unwrap();
    let k = multiboot2_guest(dir.path(), "\r\nmb2 guest up\r\n");
    let img = image::make_disk_image(&k, &dir.path().join("out").join("t.img")).unwrap();
    let size = std::fs::metadata(&img).unwrap().len();
    eprintln!("disk image {size} bytes");
    assert!(size > 1 << 20);
    for (fw, m) in [
        (Firmware::SeaBios, Machine::Q35),
        (Firmware::SeaBios, Machine::Pc),
        (Firmware::Ovmf, Machine::Q35),
    ] {
        let t = Instant::now();
        let mut vm = Qemu::start(
            Config::disk(&img, fw)
                .with_machine(m)
                .with_timeout(Duration::from_secs(120)),
        )
        .unwrap();
        // Exact line: GRUB's escape sequences and carriage returns must not reach it.
        vm.wait_for_line(Duration::from_secs(120), |l| l == "mb2 guest up")
            .unwrap_or_else(|e| panic!("{fw:?}/{m:?}: {e}"));
        let up = t.elapsed();
        assert_eq!(vm.wait_exit(), ExitStatus::Success, "{}", vm.report());
        eprintln!("{fw:?} {m:?}: QEMU start to guest line {up:?}");
    }
}
