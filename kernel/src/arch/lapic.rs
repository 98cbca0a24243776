//! The local APIC: core ids, INIT/SIPI and the wake-up IPI. x2APIC (MSR access, 32-bit
//! ids) when CPUID offers it, else xAPIC (MMIO at the architectural base, 8-bit ids).
//!
//! Every access asks the APIC base MSR which mode this core is in, so the exception handler
//! reads the right id on a core that has not switched yet (APs start in xAPIC mode).

use crate::time::{Deadline, Timeout};
use core::time::Duration;
use x86_64::registers::model_specific::Msr;

/// Physical (and, identity mapped, virtual) base of the xAPIC registers.
pub const LAPIC_BASE: u64 = 0xfee0_0000;
/// The vector of the IPI that wakes parked cores (they wait in `hlt` with interrupts on).
pub const WAKE_VECTOR: u8 = 0xf0;
/// The spurious-interrupt vector programmed into the SVR.
pub const SPURIOUS_VECTOR: u8 = 0xff;
const ID: u64 = 0x20;
const EOI: u64 = 0xb0;
const SVR: u64 = 0xf0;
const ICR_LOW: u64 = 0x300;
const ICR_HIGH: u64 = 0x310;
const ICR_PENDING: u32 = 1 << 12;
const IA32_APIC_BASE: u32 = 0x1b;
const BASE_ENABLE: u64 = 1 << 11;
const BASE_X2APIC: u64 = 1 << 10;
/// x2APIC registers are MSRs 0x800 + (xAPIC offset >> 4); the ICR is one 64-bit MSR.
const X2APIC_MSR: u32 = 0x800;
const X2APIC_ICR: u32 = 0x830;

/// Why an IPI could not be sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IpiError {
    /// The xAPIC did not accept the command in time.
    NotDelivered,
    /// The target's id is above 255, which only x2APIC mode can address.
    NeedsX2apic,
}

impl core::fmt::Display for IpiError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            IpiError::NotDelivered => "the local APIC did not send the IPI",
            IpiError::NeedsX2apic => "its APIC id is above 255 and this CPU has no x2APIC",
        })
    }
}

impl From<Timeout> for IpiError {
    fn from(_: Timeout) -> IpiError {
        IpiError::NotDelivered
    }
}

fn apic_base() -> u64 {
    // SAFETY: IA32_APIC_BASE exists on every x86_64 CPU (all have a local APIC); reading it
    // has no side effect.
    unsafe { Msr::new(IA32_APIC_BASE).read() }
}

/// Whether this core's local APIC is in x2APIC mode.
pub fn x2apic_active() -> bool {
    apic_base() & BASE_X2APIC != 0
}

/// Whether the CPU offers x2APIC mode (CPUID.1:ECX bit 21).
pub fn x2apic_supported() -> bool {
    let r = core::arch::x86_64::__cpuid(1);
    r.ecx & (1 << 21) != 0
}

fn read(reg: u64) -> u32 {
    if x2apic_active() {
        // SAFETY: in x2APIC mode the registers are these MSRs; `reg` is a readable register.
        unsafe { Msr::new(X2APIC_MSR + (reg >> 4) as u32).read() as u32 }
    } else {
        // SAFETY: the xAPIC page is mapped uncached by `mem::paging` (it is outside RAM) and
        // its registers are 32 bits wide at 16-byte aligned offsets.
        unsafe { core::ptr::read_volatile((LAPIC_BASE + reg) as *const u32) }
    }
}

fn write(reg: u64, value: u32) {
    if x2apic_active() {
        let mut msr = Msr::new(X2APIC_MSR + (reg >> 4) as u32);
        // SAFETY: in x2APIC mode the registers are these MSRs; `reg` is a writable register
        // and the callers write only the SVR and EOI.
        unsafe { msr.write(value as u64) }
    } else {
        // SAFETY: as for `read`.
        unsafe { core::ptr::write_volatile((LAPIC_BASE + reg) as *mut u32, value) }
    }
}

/// This core's APIC id (32 bits in x2APIC mode).
pub fn id() -> u32 {
    if x2apic_active() {
        read(ID)
    } else {
        read(ID) >> 24
    }
}

/// Software-enables this core's local APIC (needed before it sends IPIs), switching it to
/// x2APIC mode first when the CPU offers it.
pub fn enable() {
    let base = apic_base();
    if x2apic_supported() && base & BASE_X2APIC == 0 {
        let mut msr = Msr::new(IA32_APIC_BASE);
        // SAFETY: xAPIC → x2APIC with the APIC kept enabled is an allowed transition on a
        // CPU that reports x2APIC; no interrupt is in flight (interrupts are off at boot).
        unsafe { msr.write(base | BASE_ENABLE | BASE_X2APIC) };
    }
    write(SVR, read(SVR) | 0x100 | SPURIOUS_VECTOR as u32);
}

/// Signals the end of the interrupt being handled.
pub fn eoi() {
    write(EOI, 0);
}

fn send(apic_id: u32, command: u32) -> Result<(), IpiError> {
    if x2apic_active() {
        let mut icr = Msr::new(X2APIC_ICR);
        // SAFETY: writing the x2APIC ICR sends the IPI `command` describes; the callers'
        // contracts cover what the target does with it.
        unsafe { icr.write((apic_id as u64) << 32 | command as u64) };
        return Ok(());
    }
    if apic_id > 255 {
        return Err(IpiError::NeedsX2apic);
    }
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
pub(crate) unsafe fn start_ap(apic_id: u32, vector: u8) -> Result<(), IpiError> {
    send(apic_id, 0x0000_4500)?; // INIT, assert, level
    crate::time::delay(Duration::from_millis(10));
    for _ in 0..2 {
        send(apic_id, 0x0000_4600 | vector as u32)?; // STARTUP
        crate::time::delay(Duration::from_micros(200));
    }
    Ok(())
}

/// Sends the wake-up IPI to every other core (shorthand "all excluding self"). Cores not
/// waiting for it (halted with interrupts off, or never started) ignore it.
pub(crate) fn wake_others() -> Result<(), IpiError> {
    send(0, 0x000c_4000 | WAKE_VECTOR as u32)
}
