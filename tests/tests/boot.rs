//! Boot tests of the default image (apps/sysinfo): the ELF directly on q35 and pc with 1, 2
//! and 4 cores, and the disk image through GRUB under SeaBIOS and OVMF. Each boot must report
//! every core online, list the machine's host bridge on the PCI scan, read the RTC (within a
//! minute of the host's clock) and exit with success.

use std::time::Instant;

use qemu::{Config, ExitStatus, Firmware, Machine};
use tests::{
    app_elf, boot, default_disk_image, parse_cores_online, parse_pci_line, timeout_for, Vm,
};

/// The host bridge every machine type has (q35: MCH 8086:29c0; pc: i440FX 8086:1237).
fn host_bridge(m: Machine) -> (u16, u16) {
    match m {
        Machine::Q35 => (0x8086, 0x29c0),
        Machine::Pc => (0x8086, 0x1237),
    }
}

/// Checks one boot; returns its console lines.
fn check_boot(mut vm: Vm, what: &str, machine: Machine, cores: u32, loader: &str) -> Vec<String> {
    let line = vm.expect_line("`cores online: N`", |l| parse_cores_online(l).is_some());
    let up = vm.elapsed();
    let t = Instant::now();
    assert_eq!(
        parse_cores_online(&line),
        Some(cores),
        "{what}: wrong core count; console:\n{}",
        vm.report()
    );
    vm.expect_exit(ExitStatus::Success);
    // Direct boots enter through the PVH note, GRUB boots through multiboot2.
    let via = format!("booted via {loader}");
    assert!(
        vm.lines().iter().any(|l| l.contains(&via)),
        "{what}: the kernel did not report `{via}`; console:\n{}",
        vm.report()
    );
    let (v, d) = host_bridge(machine);
    let pci: Vec<_> = vm
        .lines()
        .iter()
        .filter_map(|l| parse_pci_line(l))
        .collect();
    assert!(
        pci.iter()
            .any(|p| p.vendor == v && p.device == d && p.address == "00:00.0"),
        "{what}: no host bridge {v:04x}:{d:04x} at 00:00.0 in the PCI scan; console:\n{}",
        vm.report()
    );
    // The wall clock: QEMU's RTC starts at the host's UTC time, so the kernel's reading is
    // within a minute of ours (the reading is taken at boot, a few seconds ago under TCG).
    let host = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let rtc: u64 = vm
        .lines()
        .iter()
        .find_map(|l| {
            l.strip_prefix("time: RTC says ")?
                .strip_suffix(" s since 1970 (UTC)")?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("{what}: no RTC reading on the console:\n{}", vm.report()));
    assert!(
        rtc.abs_diff(host) <= 60,
        "{what}: the RTC says {rtc}, the host {host}"
    );
    eprintln!(
        "{what}: QEMU start to `cores online: {cores}` {:.3} s, to exit {:.3} s more",
        up.as_secs_f64(),
        t.elapsed().as_secs_f64()
    );
    vm.lines()
}

fn direct(machine: Machine, cores: u32) {
    let elf = app_elf("sysinfo");
    let vm = boot(
        Config::kernel(elf)
            .with_machine(machine)
            .with_cores(cores)
            .with_timeout(timeout_for(Firmware::Direct)),
    );
    let _ = check_boot(
        vm,
        &format!("direct {machine:?} {cores} cores"),
        machine,
        cores,
        "pvh",
    );
}

#[test]
fn direct_q35_1_core() {
    direct(Machine::Q35, 1);
}

#[test]
fn direct_q35_2_cores() {
    direct(Machine::Q35, 2);
}

#[test]
fn direct_q35_4_cores() {
    direct(Machine::Q35, 4);
}

#[test]
fn direct_pc_1_core() {
    direct(Machine::Pc, 1);
}

#[test]
fn direct_pc_2_cores() {
    direct(Machine::Pc, 2);
}

#[test]
fn direct_pc_4_cores() {
    direct(Machine::Pc, 4);
}

fn disk(firmware: Firmware, cores: u32) {
    let img = default_disk_image();
    let vm = boot(
        Config::disk(img, firmware)
            .with_cores(cores)
            .with_timeout(timeout_for(firmware)),
    );
    let lines = check_boot(
        vm,
        &format!("disk image {firmware:?} q35 {cores} cores"),
        Machine::Q35,
        cores,
        "multiboot2",
    );
    // GRUB on UEFI passes the EFI memory map (multiboot2 tag 17), which the kernel prefers;
    // on BIOS there is none.
    let efi = lines
        .iter()
        .any(|l| l.starts_with("mem: memory map from the EFI memory map, "));
    assert_eq!(
        efi,
        firmware == Firmware::Ovmf,
        "{firmware:?}: EFI memory map used: {efi}; console:\n{}",
        lines.join("\n")
    );
}

#[test]
fn disk_image_seabios_2_cores() {
    disk(Firmware::SeaBios, 2);
}

#[test]
fn disk_image_ovmf_2_cores() {
    disk(Firmware::Ovmf, 2);
}
