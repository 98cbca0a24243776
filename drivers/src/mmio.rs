//! `Mmio`: volatile, bounds-checked access to a device's register BAR.
#![allow(unsafe_code)]

use core::ptr::NonNull;

use crate::error::{Error, Result};
use crate::hal::Hal;
use crate::regs::{Reg, RegIo};

/// A mapped register BAR. Cheap to copy: every queue handle holds one and touches only its
/// own registers (tail pointers), the control object the rest.
#[derive(Debug, Clone, Copy)]
pub struct Mmio {
    base: NonNull<u8>,
    len: usize,
}

// SAFETY: `Mmio` is a pointer to device registers, not to Rust-owned memory. Volatile 32-bit
// accesses from several cores to distinct registers are what the device is designed for, and
// the constructor's contract makes the mapping valid for the program's lifetime.
unsafe impl Send for Mmio {}
// SAFETY: as above; all methods take `&self` and perform single aligned volatile accesses.
unsafe impl Sync for Mmio {}

impl Mmio {
    /// Wraps a mapped BAR.
    ///
    /// # Safety
    ///
    /// `base` must map `len` bytes of device registers uncached, stay mapped for the rest of
    /// the program, be 4-byte aligned, and no other code may treat that range as memory.
    pub unsafe fn new(base: NonNull<u8>, len: usize) -> Self {
        Mmio { base, len }
    }

    /// Maps `len` bytes of registers at physical `phys` through the platform.
    ///
    /// Register writes through an `Mmio` are safe, so where it points is promised here:
    /// mapping an address picked from safe code does not build.
    ///
    /// ```compile_fail,E0133
    /// fn scribble<H: drivers::Hal>(hal: &H) {
    ///     use drivers::RegIo;
    ///     let m = drivers::Mmio::map(hal, 0x10_0000, 4096).unwrap(); // RAM, not registers
    ///     m.write32(drivers::Reg(0), 0);
    /// }
    /// ```
    ///
    /// # Safety
    ///
    /// `phys..phys + len` must hold device registers only: it lies inside a memory BAR of
    /// a PCI function, read from that function's configuration space, and no code uses any
    /// of it as memory. (The [`Hal`] contract adds that the mapping is uncached, lives for
    /// the rest of the program and is refused for RAM.)
    pub unsafe fn map<H: Hal>(hal: &H, phys: u64, len: usize) -> Result<Self> {
        let base = hal.map_mmio(phys, len).ok_or(Error::MmioMap)?;
        if !(base.as_ptr() as usize).is_multiple_of(4) {
            return Err(Error::MmioMap);
        }
        // SAFETY: the `Hal` contract makes `base` an uncached mapping of `len` bytes at
        // `phys` for the program's lifetime, which the caller promises are device registers
        // nothing else uses as memory; alignment was checked above.
        Ok(unsafe { Mmio::new(base, len) })
    }

    /// Length of the mapped BAR in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if the mapping is empty (never for a real device).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn ptr<T>(&self, reg: Reg) -> *mut T {
        let off = reg.0 as usize;
        let size = core::mem::size_of::<T>();
        assert!(
            off.is_multiple_of(size) && off + size <= self.len,
            "register {off:#x} outside BAR"
        );
        self.base.as_ptr().wrapping_add(off).cast::<T>()
    }
}

impl RegIo for Mmio {
    #[inline]
    fn read32(&self, reg: Reg) -> u32 {
        let p = self.ptr::<u32>(reg);
        // SAFETY: `ptr` checked the offset is aligned and inside the BAR, which `new`'s
        // contract guarantees is mapped uncached device memory for the program's lifetime.
        unsafe { p.read_volatile() }
    }

    #[inline]
    fn write32(&self, reg: Reg, value: u32) {
        let p = self.ptr::<u32>(reg);
        // SAFETY: as in `read32`.
        unsafe { p.write_volatile(value) }
    }

    fn read16(&self, reg: Reg) -> u16 {
        let p = self.ptr::<u16>(reg);
        // SAFETY: as in `read32` (naturally aligned 16-bit access inside the BAR).
        unsafe { p.read_volatile() }
    }

    fn write16(&self, reg: Reg, value: u16) {
        let p = self.ptr::<u16>(reg);
        // SAFETY: as in `read16`.
        unsafe { p.write_volatile(value) }
    }

    fn read8(&self, reg: Reg) -> u8 {
        let p = self.ptr::<u8>(reg);
        // SAFETY: as in `read32` (byte access inside the BAR).
        unsafe { p.read_volatile() }
    }

    fn write8(&self, reg: Reg, value: u8) {
        let p = self.ptr::<u8>(reg);
        // SAFETY: as in `read8`.
        unsafe { p.write_volatile(value) }
    }
}
