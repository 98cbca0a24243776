//! Ending a run: QEMU's `isa-debug-exit` with distinct codes, halt or reboot on bare metal,
//! and the panic report.

use core::fmt::Write;
use x86_64::instructions::port::{PortReadOnly, PortWriteOnly};

/// `isa-debug-exit` port (`-device isa-debug-exit,iobase=0xf4,iosize=0x04`).
pub const DEBUG_EXIT_PORT: u16 = 0xf4;
/// Written on success: QEMU exits with status `(0x10 << 1) | 1 = 33`.
pub const EXIT_SUCCESS: u8 = 0x10;
/// Written on failure: QEMU exits with status `(0x11 << 1) | 1 = 35`.
pub const EXIT_FAILURE: u8 = 0x11;

/// What bare metal does at the end of a run: halt (default) or reboot (the kernel's
/// `reboot-on-exit` feature).
pub const REBOOT_ON_EXIT: bool = cfg!(feature = "reboot-on-exit");

/// Ends the run: in QEMU through `isa-debug-exit`; elsewhere it halts or reboots.
pub fn finish(success: bool) -> ! {
    let mut w = crate::console::RawWriter;
    let _ = writeln!(
        w,
        "ferrule: exit {}",
        if success { "success" } else { "failure" }
    );
    let mut debug_exit = PortWriteOnly::<u8>::new(DEBUG_EXIT_PORT);
    // SAFETY: in QEMU this port is isa-debug-exit, which ends the VM; elsewhere nothing
    // decodes it (the image owns the machine, so no other device sits there). It is the
    // last thing the run does, and touches no memory.
    unsafe { debug_exit.write(if success { EXIT_SUCCESS } else { EXIT_FAILURE }) };
    // Still running: no isa-debug-exit here, so this is bare metal (or another VMM).
    if REBOOT_ON_EXIT {
        // Pulse the CPU reset line through the keyboard controller.
        let mut status = PortReadOnly::<u8>::new(0x64);
        let mut command = PortWriteOnly::<u8>::new(0x64);
        for _ in 0..100_000 {
            // SAFETY: reading the 8042 status register has no effect beyond the controller.
            if unsafe { status.read() } & 0x02 == 0 {
                break;
            }
        }
        // SAFETY: the run is over; resetting the machine is exactly what is wanted.
        unsafe { command.write(0xfe) };
    }
    crate::arch::halt_forever()
}

/// Reports a panic (`PANIC: <message> at <file>:<line>`) and fails the run.
pub fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    let mut w = crate::console::RawWriter;
    let _ = write!(w, "\nPANIC: {}", info.message());
    if let Some(loc) = info.location() {
        let _ = write!(w, " at {}:{}", loc.file(), loc.line());
    }
    let _ = writeln!(w);
    finish(false)
}
