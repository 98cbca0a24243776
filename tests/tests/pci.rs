//! PCI scan with an igb attached: the console must list 8086:10c9 (Ethernet, class 020000) at
//! the slot it was plugged into, with the BAR0 address the firmware assigned. The expected
//! BAR0 comes from QEMU itself: the same machine booted with a guest that only halts, then
//! asked through the monitor (`info pci`).

use std::time::Duration;

use qemu::{Config, ExitStatus, Firmware, Machine, NicModel};
use tests::{app_elf, boot, halting_guest, info_pci_bar, parse_pci_line, timeout_for};

const IGB_SLOT: u8 = 5;

fn igb_config(kernel: std::path::PathBuf, machine: Machine) -> Config {
    Config::kernel(kernel)
        .with_machine(machine)
        .with_cores(2)
        .with_nic_at(NicModel::Igb, IGB_SLOT)
        .with_timeout(timeout_for(Firmware::Direct))
}

fn igb_reported_with_its_bar(machine: Machine) {
    let dir = tempfile::tempdir().expect("temp dir");
    let reference = {
        let mut vm = boot(
            igb_config(halting_guest(dir.path()), machine).with_timeout(Duration::from_secs(60)),
        );
        // SeaBIOS assigns BARs before it jumps to the kernel; give it that time.
        let mut bar = None;
        for _ in 0..100 {
            let info = vm.monitor_command("info pci").expect("info pci");
            bar = info_pci_bar(&info, 0x8086, 0x10c9, 0).filter(|&b| b != 0);
            if bar.is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        vm.quit();
        bar.expect("QEMU reports no BAR0 for the igb")
    };

    let mut vm = boot(igb_config(app_elf("sysinfo"), machine));
    let line = vm.expect_line("a `pci ... 8086:10c9` line", |l| {
        parse_pci_line(l).is_some_and(|p| (p.vendor, p.device) == (0x8086, 0x10c9))
    });
    vm.expect_exit(ExitStatus::Success);
    let p = parse_pci_line(&line).expect("parsed above");
    assert_eq!(p.address, format!("00:{IGB_SLOT:02x}.0"), "{line}");
    assert_eq!(p.class, 0x020000, "igb is an Ethernet controller: {line}");
    // Every hex number on the line after the class (e.g. `bar0=0xfeb80000`).
    let numbers: Vec<u64> = p
        .rest
        .to_lowercase()
        .split(|c: char| !(c.is_ascii_hexdigit() || c == 'x'))
        .filter_map(|t| t.strip_prefix("0x"))
        .filter_map(|h| u64::from_str_radix(h, 16).ok())
        .collect();
    assert!(
        numbers.contains(&reference),
        "{machine:?}: the igb line does not report BAR0 {reference:#x} (QEMU's `info pci`): {line}\nconsole:\n{}",
        vm.report()
    );
}

#[test]
fn igb_is_listed_with_its_bar_on_q35() {
    igb_reported_with_its_bar(Machine::Q35);
}

#[test]
fn igb_is_listed_with_its_bar_on_pc() {
    igb_reported_with_its_bar(Machine::Pc);
}
