//! Bare-metal hardening (issue 12): guard pages under the stacks, many cores, x2APIC.
//!
//! Every run here must end with QEMU's `isa-debug-exit` status: a triple fault would end
//! QEMU with status 0 (`-no-reboot`) and a hang would hit the timeout, and both fail.

use qemu::{Config, ExitStatus, Firmware};
use tests::{boot, test_app_elf, timeout_for};

/// Runs `stack-overflow` on `cores` cores: the last core recurses until it hits the guard
/// page below its stack, which must be reported as that core's overflow.
fn stack_overflow_is_reported(cores: u32) {
    let mut vm = boot(
        Config::kernel(test_app_elf("stack-overflow"))
            .with_cores(cores)
            .with_timeout(timeout_for(Firmware::Direct)),
    );
    let core = cores - 1;
    let start = vm.expect_line("the recursion's start", |l| {
        l.starts_with("stack-overflow: core ")
    });
    let top = start
        .strip_prefix(&format!(
            "stack-overflow: core {core} recursing from stack address 0x"
        ))
        .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
        .unwrap_or_else(|| panic!("unexpected start line {start:?}"));
    let prefix = format!("stack overflow on core {core}: faulting address 0x");
    let line = vm.expect_line("the stack-overflow report", |l| l.starts_with(&prefix));
    let status = vm.wait_exit();
    assert_eq!(
        status,
        ExitStatus::Failure,
        "after {line:?} the run must fail through isa-debug-exit (not hang or triple-fault); console:\n{}",
        vm.report()
    );
    let (hex, rest) = line[prefix.len()..]
        .split_once(' ')
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    assert_eq!(rest, "is the guard page below its main stack", "{line:?}");
    let addr = u64::from_str_radix(hex, 16).unwrap_or_else(|_| panic!("bad address in {line:?}"));
    // Every core's stack is 256 KiB, each with a 4 KiB guard
    // page below: the fault is in the one page that starts within the stack's size (plus the
    // frames above the app's) below the recursion's start.
    let stack = 256 * 1024;
    assert!(
        addr < top && top - addr <= stack + 4096,
        "faulting address {addr:#x} is not just below the stack at {top:#x}; console:\n{}",
        vm.report()
    );
    let lines = vm.lines();
    assert!(
        lines.iter().any(
            |l| l.starts_with("EXCEPTION: double fault (#DF) (vector 8)")
                || l.starts_with("EXCEPTION: page fault (#PF) (vector 14)")
        ),
        "no exception report after the overflow line; console:\n{}",
        vm.report()
    );
    assert!(
        !lines.iter().any(|l| l.contains("recursion returned")),
        "the recursion returned; console:\n{}",
        vm.report()
    );
}

#[test]
fn boot_core_stack_overflow_hits_its_guard_page() {
    stack_overflow_is_reported(1);
}

#[test]
fn application_core_stack_overflow_hits_its_guard_page() {
    stack_overflow_is_reported(2);
}

/// 300 cores: APIC ids past 255 come from MADT x2APIC entries and need x2APIC mode; every
/// core must come online (per-core storage is sized by the cores found, not a fixed table)
/// and run the app. The `qemu` crate adds `x2apic=on` to the CPU for more than 255 cores.
#[test]
fn three_hundred_cores_come_online_with_x2apic() {
    let started = std::time::Instant::now();
    let mut vm = boot(
        Config::kernel(tests::app_elf("sysinfo"))
            .with_cores(300)
            .with_timeout(std::time::Duration::from_secs(240)),
    );
    let line = vm.expect_line("`cores online: N`", |l| l.starts_with("cores online:"));
    let boot_time = started.elapsed();
    assert_eq!(line, "cores online: 300", "console:\n{}", vm.report());
    vm.expect_exit(ExitStatus::Success);
    eprintln!(
        "300 cores: QEMU start to `cores online: 300` {:.3} s",
        boot_time.as_secs_f64()
    );
    let lines = vm.lines();
    let has = |want: &str| lines.iter().any(|l| l == want);
    for want in [
        "acpi: 300 processors in MADT, PCI ECAM",
        "smp: local APIC in x2APIC mode",
        "core 0 apic 0",
        "core 255 apic 255",
        "core 256 apic 256",
        "core 299 apic 299",
        "ferrule: app finished on 300 cores",
    ] {
        assert!(has(want), "no line {want:?}; console:\n{}", vm.report());
    }
    assert!(
        !lines
            .iter()
            .any(|l| l.starts_with("smp:") && l.contains("missing")),
        "a core went missing; console:\n{}",
        vm.report()
    );
}

/// 8 GiB: the usable RAM is QEMU's q35 layout to the byte (2 GiB below the PCI hole minus
/// the legacy area, 6 GiB above 4 GiB), and an igb whose rings and buffers all lie above
/// 4 GiB receives every frame intact.
#[test]
fn eight_gib_usable_and_igb_receives_above_4_gib() {
    const FRAMES: usize = 40;
    let mut vm = boot(
        Config::kernel(test_app_elf("nic-high"))
            .with_cores(1)
            .with_memory_mib(8192)
            .with_nic_at(qemu::NicModel::Igb, 3)
            .with_timeout(std::time::Duration::from_secs(300)),
    );
    let usable = vm.expect_line("usable RAM", |l| l.starts_with("nic-high usable "));
    // The usable map QEMU (with SeaBIOS, which keeps its high tables in the top 132 KiB
    // below 2 GiB) hands a PVH guest on q35 with 8 GiB: 0..0x9fc00, 0x100000..0x7ffdf000
    // and 0x1_0000_0000..0x2_8000_0000.
    let want = 0x9fc00u64 + (0x7ffd_f000 - 0x10_0000) + (0x2_8000_0000 - 0x1_0000_0000);
    assert_eq!(usable, format!("nic-high usable {want}"), "{}", vm.report());
    let dma = vm.expect_line("the DMA span", |l| l.starts_with("nic-high dma "));
    eprintln!("{dma}");
    let span: Vec<&str> = dma.split_whitespace().collect();
    let (lo, hi) = span
        .get(4)
        .and_then(|s| s.split_once(".."))
        .unwrap_or_else(|| panic!("bad DMA line {dma:?}"));
    let hex = |s: &str| u64::from_str_radix(s.trim_start_matches("0x"), 16).unwrap();
    let (lo, hi) = (hex(lo), hex(hi));
    assert!(
        lo >= 1 << 32 && hi <= 0x2_8000_0000 && lo < hi,
        "DMA memory {lo:#x}..{hi:#x} is not all above 4 GiB in RAM; {}",
        vm.report()
    );
    vm.expect_line("port up", |l| l == "nic-high ready");
    let (mut bytes, mut sum) = (0u64, 0u64);
    for k in 0..FRAMES {
        let mut f = vec![0xFF; 6];
        f.extend([0x02, 0, 0, 0, 0, 0x21, 0x88, 0xB5]);
        f.extend((0..46 + 30 * k).map(|i| (i * 7 + k) as u8));
        bytes += f.len() as u64;
        sum += f.iter().map(|&b| b as u64).sum::<u64>();
        vm.nic(0).send(&f).expect("inject");
    }
    let mut finish = vec![0xFF; 6];
    finish.extend([0x02, 0, 0, 0, 0, 0x21, 0x88, 0xB6]);
    finish.resize(60, 0);
    vm.nic(0).send(&finish).expect("finish");
    vm.expect_line("the receive count", |l| l.starts_with("nic-high received "));
    vm.expect_exit(ExitStatus::Success);
    let want = format!("nic-high received {FRAMES} frames {bytes} bytes sum {sum}");
    assert!(
        vm.lines().contains(&want),
        "no line {want:?}; console:\n{}",
        vm.report()
    );
}

/// More cores than queues: a virtio-net port has one queue, so on 4 cores core 0 serves it,
/// core 1 drains the log rings and cores 2 and 3 say they are idle.
#[test]
fn cores_beyond_the_queues_say_they_are_idle() {
    let mut vm = boot(
        Config::kernel(tests::app_elf("flowmon"))
            .with_cores(4)
            .with_nic(qemu::NicModel::VirtioNet)
            .with_timeout(timeout_for(Firmware::Direct)),
    );
    vm.expect_line("the drainer", |l| {
        l == "appliance: core 1 drains the log rings"
    });
    let idle = vm.expect_line("the idle cores", |l| {
        l.starts_with("appliance: cores ") && l.contains(" idle")
    });
    assert_eq!(
        idle,
        "appliance: cores 2..=3 idle: the NICs have queues for 1 of 4 cores",
        "{}",
        vm.report()
    );
}
