//! The kernel's unsafe boundary, checked where the kernel lives: on `x86_64-unknown-none`.
//!
//! Most of the kernel is `cfg(target_os = "none")`, out of reach of host doctests, so each
//! test here writes a tiny `no_std` crate that uses the kernel, runs `cargo check` on it for
//! the guest target and expects the named compiler error. A control crate that goes through
//! the sanctioned API (with `unsafe` where the contract asks for it) must build, so a broken
//! harness or a missing target fails instead of passing.
//!
//! Needs the guest target (`rustup target add x86_64-unknown-none`), like every image build.

use std::path::{Path, PathBuf};
use std::process::Command;

const GUEST_TARGET: &str = "x86_64-unknown-none";

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("kernel/ has a parent")
        .to_path_buf()
}

/// `cargo check`s a guest crate whose `lib.rs` is `#![no_std]` plus `body`; returns whether
/// it built and the compiler's output.
fn check_guest(name: &str, body: &str) -> (bool, String) {
    let root = workspace_root();
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR")).join("guest-api");
    let dir = tmp.join(name);
    std::fs::create_dir_all(dir.join("src")).unwrap();
    std::fs::write(
        dir.join("Cargo.toml"),
        format!(
            "[package]\nname = \"guest-api-{}\"\nversion = \"0.0.0\"\nedition = \"2021\"\n\n\
             [dependencies]\nkernel = {{ path = {:?} }}\ndrivers = {{ path = {:?} }}\n\n\
             [workspace]\n",
            name.replace('_', "-"),
            root.join("kernel"),
            root.join("drivers"),
        ),
    )
    .unwrap();
    std::fs::write(dir.join("src/lib.rs"), format!("#![no_std]\n{body}\n")).unwrap();
    // The workspace's lock file: the same dependency versions, no index update needed.
    std::fs::copy(root.join("Cargo.lock"), dir.join("Cargo.lock")).unwrap();
    let mut cmd = Command::new("cargo");
    // Run from the workspace root so its rust-toolchain.toml applies; drop what the outer
    // cargo set for this test that would redirect or reflag the nested build.
    cmd.current_dir(&root);
    for var in [
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_MAKEFLAGS",
    ] {
        cmd.env_remove(var);
    }
    let out = cmd
        .args(["check", "--quiet", "--message-format", "short", "--target"])
        .arg(GUEST_TARGET)
        .arg("--manifest-path")
        .arg(dir.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(tmp.join("target"))
        .output()
        .expect("cargo runs");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

fn assert_rejected(name: &str, body: &str, code: &str) {
    let (ok, out) = check_guest(name, body);
    assert!(
        !ok,
        "{name}: built, but must be rejected with {code}:\n{body}"
    );
    assert!(
        out.contains(&format!("error[{code}]")),
        "{name}: rejected, but not with {code}:\n{out}"
    );
}

#[test]
fn the_sanctioned_api_builds_for_the_guest() {
    let (ok, out) = check_guest(
        "control",
        r#"
use drivers::Hal;
pub fn turn_on(a: kernel::pci::PciAddress, d: drivers::PciAddr) -> bool {
    kernel::pci::enable(a);
    drivers::hal::pci::enable_bus_master(&kernel::nic::KernelHal, d);
    // SAFETY: the command register only.
    unsafe { kernel::pci::write32(a, 0x04, 0x6) };
    // SAFETY: the command register only.
    unsafe { kernel::nic::KernelHal.pci_write32(d, 0x04, 0x6) };
    let bar = drivers::hal::pci::memory_bar(&kernel::nic::KernelHal, d, 0).unwrap_or(0);
    // SAFETY: (in this check) BAR0 as read from the function.
    let _ = unsafe { drivers::Mmio::map(&kernel::nic::KernelHal, bar, 4096) };
    let _ = kernel::mem::map_mmio(bar, 4096);
    kernel::mem::dma_alloc(4096, 4096).is_ok()
}
"#,
    );
    assert!(
        ok,
        "the control crate must build for {GUEST_TARGET} (if `core` is missing: \
         `rustup target add {GUEST_TARGET}`):\n{out}"
    );
}

#[test]
fn pci_config_writes_need_unsafe() {
    assert_rejected(
        "pci_write32",
        "pub fn f(a: kernel::pci::PciAddress) { kernel::pci::write32(a, 0x10, 0x0010_0000) }",
        "E0133",
    );
    assert_rejected(
        "hal_pci_write32",
        "use drivers::Hal;\n\
         pub fn f(a: drivers::PciAddr) { kernel::nic::KernelHal.pci_write32(a, 0x10, 0x0010_0000) }",
        "E0133",
    );
}

#[test]
fn mapping_registers_needs_unsafe() {
    assert_rejected(
        "mmio_map",
        "pub fn f() { let _ = drivers::Mmio::map(&kernel::nic::KernelHal, 0x0010_0000, 4096); }",
        "E0133",
    );
}

#[test]
fn there_is_no_safe_port_io() {
    assert_rejected(
        "port_outb",
        "pub fn f() { kernel::arch::port::outb(0x64, 0xfe) }",
        "E0433",
    );
}

#[test]
fn boot_only_entry_points_are_private() {
    assert_rejected(
        "boot_machine",
        "pub fn f() { let _ = kernel::arch::boot_machine(); }",
        "E0603",
    );
    assert_rejected(
        "start_ap",
        "pub fn f() { let _ = kernel::arch::lapic::start_ap(1, 8); }",
        "E0603",
    );
}
