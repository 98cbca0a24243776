//! Register access: the `RegIo` trait (real `Mmio`, host `FakeRegs`) and timed waits.

use crate::error::{Error, Result};
use crate::hal::Hal;

/// A device register: a byte offset into the register BAR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Reg(pub u32);

/// 32-bit register access. Implemented by [`crate::mmio::Mmio`] on hardware and by
/// `fake::FakeRegs` on the host (which logs every access and can script device behaviour).
///
/// Methods take `&self`: device registers are shared state, and each queue handle holds its
/// own copy of the accessor and touches only its own tail register.
pub trait RegIo {
    /// Reads a register.
    fn read32(&self, reg: Reg) -> u32;
    /// Writes a register.
    fn write32(&self, reg: Reg, value: u32);
    /// Reads a 16-bit register at a 2-aligned offset (virtio's common configuration).
    fn read16(&self, reg: Reg) -> u16;
    /// Writes a 16-bit register at a 2-aligned offset.
    fn write16(&self, reg: Reg, value: u16);
    /// Reads an 8-bit register.
    fn read8(&self, reg: Reg) -> u8;
    /// Writes an 8-bit register.
    fn write8(&self, reg: Reg, value: u8);
    /// Called once at the start of every timed wait (the fake logs it; hardware ignores it).
    fn wait_begin(&self, _reg: Reg, _mask: u32, _set: bool) {}
    /// Read-modify-write: sets `bits`.
    fn set_bits(&self, reg: Reg, bits: u32) {
        let v = self.read32(reg);
        self.write32(reg, v | bits);
    }
    /// Read-modify-write: clears `bits`.
    fn clear_bits(&self, reg: Reg, bits: u32) {
        let v = self.read32(reg);
        self.write32(reg, v & !bits);
    }
}

/// Polls `reg` until all `mask` bits are set (`set == true`) or all clear, for at most
/// `timeout_ns`. On timeout returns `err` — every hardware wait in this crate goes through here.
pub fn wait_bits<R: RegIo, H: Hal>(
    regs: &R,
    hal: &H,
    reg: Reg,
    mask: u32,
    set: bool,
    timeout_ns: u64,
    err: Error,
) -> Result<()> {
    regs.wait_begin(reg, mask, set);
    let start = hal.now_ns();
    loop {
        let v = regs.read32(reg) & mask;
        if (set && v == mask) || (!set && v == 0) {
            return Ok(());
        }
        if hal.now_ns().wrapping_sub(start) >= timeout_ns {
            return Err(err);
        }
        hal.delay_ns(1_000);
    }
}

/// Milliseconds to nanoseconds, for readable timeouts.
pub const fn ms(n: u64) -> u64 {
    n * 1_000_000
}

/// Polls `done()` until it returns true, for at most `timeout_ns`; on timeout returns `err`.
/// For waits that are not a simple bit test of one 32-bit register.
pub fn wait_until<H: Hal>(
    hal: &H,
    timeout_ns: u64,
    err: Error,
    mut done: impl FnMut() -> bool,
) -> Result<()> {
    let start = hal.now_ns();
    loop {
        if done() {
            return Ok(());
        }
        if hal.now_ns().wrapping_sub(start) >= timeout_ns {
            return Err(err);
        }
        hal.delay_ns(1_000);
    }
}
