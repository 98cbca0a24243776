//! Guest test apps (tests/apps/*): a panic must end with the failure status and the panic
//! message; a page fault must produce the exception report (not a hang, which would hit the
//! timeout, nor a triple fault, which with `-no-reboot` ends QEMU with status 0); the DMA
//! checks must pass.

use qemu::{Config, ExitStatus, Firmware};
use tests::{boot, test_app_elf, timeout_for, Vm};

fn run_app(name: &str, cores: u32) -> Vm {
    boot(
        Config::kernel(test_app_elf(name))
            .with_cores(cores)
            .with_timeout(timeout_for(Firmware::Direct)),
    )
}

#[test]
fn panic_prints_message_and_location_then_fails() {
    let mut vm = run_app("panic", 1);
    let line = vm.expect_line("a `PANIC: <message> at <file>:<line>` line", |l| {
        l.starts_with("PANIC: ")
    });
    vm.expect_exit(ExitStatus::Failure);
    let (msg, loc) = line["PANIC: ".len()..]
        .rsplit_once(" at ")
        .unwrap_or_else(|| panic!("no ` at <file>:<line>` in {line:?}"));
    assert!(!msg.trim().is_empty(), "empty panic message: {line:?}");
    let (file, lineno) = loc
        .rsplit_once(':')
        .unwrap_or_else(|| panic!("location {loc:?} is not <file>:<line>"));
    assert!(
        file.ends_with(".rs") && lineno.trim().parse::<u32>().is_ok(),
        "location {loc:?} is not <file.rs>:<line>"
    );
}

#[test]
fn page_fault_gets_an_exception_report() {
    let mut vm = run_app("pagefault", 1);
    let line = vm.expect_line("the page-fault exception report", |l| {
        l.to_lowercase().contains("page fault")
    });
    let status = vm.wait_exit();
    assert_eq!(
        status,
        ExitStatus::Failure,
        "after {line:?} the run must fail through isa-debug-exit (not hang or triple-fault); console:\n{}",
        vm.report()
    );
    let report = vm.transcript().to_lowercase();
    assert!(
        report.contains("cr2") || report.contains("address"),
        "the report names no faulting address; console:\n{report}"
    );
    assert!(
        report.contains("rip"),
        "the report shows no registers (rip); console:\n{report}"
    );
}

#[test]
fn dma_checks_pass() {
    let mut vm = run_app("dma", 2);
    vm.expect_exit(ExitStatus::Success);
    let lines = vm.lines();
    let bad: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("FAIL") || l.starts_with("PANIC"))
        .collect();
    assert!(
        bad.is_empty(),
        "DMA checks failed: {bad:?}\nconsole:\n{}",
        vm.report()
    );
    assert!(
        lines
            .iter()
            .any(|l| l.to_lowercase().contains("dma") && l.to_lowercase().contains("ok")),
        "no DMA check reported ok; console:\n{}",
        vm.report()
    );
}
