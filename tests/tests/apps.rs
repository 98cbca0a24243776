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
    assert_eq!(msg, "ferrule test panic 42", "{line:?}");
    let (file, lineno) = loc
        .rsplit_once(':')
        .unwrap_or_else(|| panic!("location {loc:?} is not <file>:<line>"));
    assert!(
        file.ends_with("tests/apps/panic/src/main.rs") && lineno.trim().parse::<u32>().is_ok(),
        "location {loc:?} is not tests/apps/panic/src/main.rs:<line>"
    );
    assert!(
        !vm.lines()
            .iter()
            .any(|l| l.starts_with("ferrule: app finished")),
        "the app reported success after panicking; console:\n{}",
        vm.report()
    );
}

#[test]
fn page_fault_gets_an_exception_report() {
    let mut vm = run_app("pagefault", 1);
    let line = vm.expect_line("the page-fault exception header", |l| {
        l.starts_with("EXCEPTION: page fault (#PF) (vector 14)")
    });
    let status = vm.wait_exit();
    assert_eq!(
        status,
        ExitStatus::Failure,
        "after {line:?} the run must fail through isa-debug-exit (not hang or triple-fault); console:\n{}",
        vm.report()
    );
    let lines = vm.lines();
    assert!(
        lines.iter().any(|l| l
            .trim_start()
            .starts_with("faulting address 0x0000400000000000 (page not present, read")),
        "the report does not name the faulting address (CR2) 0x400000000000; console:\n{}",
        vm.report()
    );
    for reg in ["rip 0x", "rsp 0x", "rax 0x", "r15 0x"] {
        assert!(
            lines.iter().any(|l| l.contains(reg)),
            "the report shows no `{reg}`; console:\n{}",
            vm.report()
        );
    }
    assert!(
        !lines.iter().any(|l| l.contains("without a fault")),
        "the read did not fault; console:\n{}",
        vm.report()
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
        lines.iter().any(|l| l == "dma ok: 6 regions"),
        "no `dma ok: 6 regions`; console:\n{}",
        vm.report()
    );
    let regions = lines
        .iter()
        .filter(|l| l.starts_with("dma region "))
        .count();
    assert_eq!(
        regions,
        6,
        "expected 6 `dma region` lines; console:\n{}",
        vm.report()
    );
}
