//! The local APIC (xAPIC, MMIO at its architectural base): core ids and INIT/SIPI.

use crate::time::{Deadline, Timeout};
use core::time::Duration;

/// Physical (and, identity mapped, virtual) base of the local APIC registers.
pub const LAPIC_BASE: u64 = 0xfee0_0000;
const ID: u64 = 0x20;
const SVR: u64 = 0xf0;
const ICR_LOW: u64 = 0x300;
const ICR_HIGH: u64 = 0x310;
const ICR_PENDING: u32 = 1 << 12;

fn read(reg: u64) -> u32 {
    // SAFETY: the local APIC page is mapped uncached by `mem::paging` (it is outside RAM) and
    // its registers are 32 bits wide at 16-byte aligned offsets.
    unsafe { core::ptr::read_volatile((LAPIC_BASE + reg) as *const u32) }
}

fn write(reg: u64, value: u32) {
    // SAFETY: as for `read`.
    unsafe { core::ptr::write_volatile((LAPIC_BASE + reg) as *mut u32, value) }
}

/// This core's APIC id.
pub fn id() -> u32 {
    read(ID) >> 24
}

/// Software-enables this core's local APIC (needed before it sends IPIs).
pub fn enable() {
    write(SVR, read(SVR) | 0x100 | 0xff);
}

fn send(apic_id: u32, command: u32) -> Result<(), Timeout> {
    write(ICR_HIGH, apic_id << 24);
    write(ICR_LOW, command);
    let deadline = Deadline::after(Duration::from_millis(100));
    while read(ICR_LOW) & ICR_PENDING != 0 {
        deadline.check()?;
        core::hint::spin_loop();
    }
    Ok(())
}

/// Sends INIT, then two STARTUP IPIs with the trampoline page `vector` (address >> 12),
/// with the waits the MP specification asks for.
///
/// # Safety
///
/// The core named `apic_id` starts executing real-mode code at `vector << 12`: that page
/// must hold the AP trampoline, filled in for this core (its own stack, the page-table
/// root, the entry point), and `apic_id` must be a core that is not running yet.
pub(crate) unsafe fn start_ap(apic_id: u32, vector: u8) -> Result<(), Timeout> {
    send(apic_id, 0x0000_4500)?; // INIT, assert, level
    crate::time::delay(Duration::from_millis(10));
    for _ in 0..2 {
        send(apic_id, 0x0000_4600 | vector as u32)?; // STARTUP
        crate::time::delay(Duration::from_micros(200));
    }
    Ok(())
}
