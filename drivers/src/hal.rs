//! The platform trait: what a driver needs from the kernel (DMA memory, BAR mapping, a clock,
//! PCI configuration access). The kernel implements it; host tests use `fake::FakeHal`.

use core::ptr::NonNull;

pub use crate::dma::DmaRegion;

/// A PCI function address (bus, device, function).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PciAddr {
    /// Bus number.
    pub bus: u8,
    /// Device number (0..32).
    pub dev: u8,
    /// Function number (0..8).
    pub func: u8,
}

/// Services the drivers need from the platform.
///
/// # Implementation safety
///
/// Drivers hand the addresses returned here to devices that write to them by DMA, and build
/// references from them. An implementation must guarantee that:
/// - `dma_alloc` returns memory that is exclusively owned by the caller from then on (never
///   handed out again, never freed), zeroed, `len >= size`, `virt` aligned to `align`, `phys`
///   aligned to `align`, physically contiguous (so `phys + k` is the device address of
///   `virt + k` for every `k < len`), mapped writable and cache-coherent with device DMA;
/// - `map_mmio` returns a pointer to `len` bytes mapping the physical range uncached
///   (strong uncacheable), valid for the life of the appliance, and returns `None` for a
///   range that overlaps RAM (RAM is Rust's memory, never a register window);
/// - `now_ns` is monotonic and advances (so timeouts end);
/// - PCI configuration accesses reach the function named by `PciAddr` and nothing else.
pub unsafe trait Hal {
    /// Allocates `size` bytes of zeroed DMA memory aligned to `align` (a power of two).
    /// Returns `None` when no such memory is left.
    fn dma_alloc(&self, size: usize, align: usize) -> Option<DmaRegion>;

    /// Maps `len` bytes of device registers at physical address `phys`, uncached.
    /// Returns `None` when the range cannot be mapped or overlaps RAM.
    fn map_mmio(&self, phys: u64, len: usize) -> Option<NonNull<u8>>;

    /// Monotonic time in nanoseconds (any origin).
    fn now_ns(&self) -> u64;

    /// Busy-waits at least `ns` nanoseconds. The default spins on [`Hal::now_ns`].
    fn delay_ns(&self, ns: u64) {
        let start = self.now_ns();
        while self.now_ns().wrapping_sub(start) < ns {
            core::hint::spin_loop();
        }
    }

    /// Reads the 32-bit PCI configuration register at byte offset `off` (4-aligned).
    fn pci_read32(&self, addr: PciAddr, off: u16) -> u32;

    /// Writes the 32-bit PCI configuration register at byte offset `off` (4-aligned).
    ///
    /// Drivers only turn the device on ([`pci::enable_bus_master`]). A configuration write
    /// can move a device's registers over RAM, so it needs `unsafe`:
    ///
    /// ```compile_fail,E0133
    /// fn retarget<H: drivers::Hal>(hal: &H, nic: drivers::PciAddr) {
    ///     // BAR0 onto RAM: the NIC's register writes would then land in memory.
    ///     hal.pci_write32(nic, drivers::hal::pci::BAR0, 0x0010_0000);
    /// }
    /// ```
    ///
    /// # Safety
    ///
    /// The write must not move an address range the function decodes (a BAR, the expansion
    /// ROM, a bridge's windows) except while decoding is off and restored before it is
    /// turned back on, nor aim the function's own memory writes (MSI/MSI-X message
    /// addresses) anywhere but the local APIC's interrupt window. Setting or clearing the
    /// command register's decoding, bus-master and INTx bits is fine.
    unsafe fn pci_write32(&self, addr: PciAddr, off: u16, value: u32);
}

/// PCI configuration helpers built on [`Hal`]'s config access.
pub mod pci {
    use super::{Hal, PciAddr};
    use crate::error::{Error, Result};

    /// Offset of the vendor/device id word.
    pub const ID: u16 = 0x00;
    /// Offset of the command/status word.
    pub const COMMAND: u16 = 0x04;
    /// Offset of BAR0.
    pub const BAR0: u16 = 0x10;
    /// Offset of the capabilities pointer.
    pub const CAP_PTR: u16 = 0x34;
    /// COMMAND: memory space enable.
    pub const CMD_MEMORY: u32 = 1 << 1;
    /// COMMAND: bus master enable (QEMU's igb drops received frames without it).
    pub const CMD_BUS_MASTER: u32 = 1 << 2;
    /// COMMAND: legacy INTx disable (we poll).
    pub const CMD_INTX_DISABLE: u32 = 1 << 10;

    /// Returns (vendor, device) of a function.
    pub fn ids<H: Hal>(hal: &H, addr: PciAddr) -> (u16, u16) {
        let v = hal.pci_read32(addr, ID);
        (v as u16, (v >> 16) as u16)
    }

    /// Enables memory decoding and bus mastering, disables INTx.
    pub fn enable_bus_master<H: Hal>(hal: &H, addr: PciAddr) {
        let v = hal.pci_read32(addr, COMMAND) & 0xFFFF;
        // SAFETY: sets only the command register's memory, bus-master and INTx-disable bits
        // (the status half is written as zero, which clears nothing): no range moves.
        unsafe {
            hal.pci_write32(
                addr,
                COMMAND,
                v | CMD_MEMORY | CMD_BUS_MASTER | CMD_INTX_DISABLE,
            )
        };
    }

    /// Physical address of memory BAR `bar` (handles 64-bit BARs). Errors if it is an I/O BAR.
    pub fn memory_bar<H: Hal>(hal: &H, addr: PciAddr, bar: u8) -> Result<u64> {
        if bar > 5 {
            return Err(Error::BadBar);
        }
        let off = BAR0 + 4 * bar as u16;
        let lo = hal.pci_read32(addr, off);
        if lo & 1 != 0 {
            return Err(Error::BadBar);
        }
        let mut phys = (lo & !0xF) as u64;
        if (lo >> 1) & 3 == 2 {
            if bar == 5 {
                return Err(Error::BadBar);
            }
            phys |= (hal.pci_read32(addr, off + 4) as u64) << 32;
        }
        if phys == 0 {
            return Err(Error::BadBar);
        }
        Ok(phys)
    }

    /// Walks the capability list; calls `f(offset, cap_id)` for each capability.
    pub fn for_each_capability<H: Hal>(hal: &H, addr: PciAddr, mut f: impl FnMut(u16, u8)) {
        let status = hal.pci_read32(addr, COMMAND) >> 16;
        if status & (1 << 4) == 0 {
            return;
        }
        let mut ptr = (hal.pci_read32(addr, CAP_PTR) & 0xFC) as u16;
        let mut guard = 0;
        while ptr != 0 && guard < 48 {
            let head = hal.pci_read32(addr, ptr);
            f(ptr, head as u8);
            ptr = ((head >> 8) & 0xFC) as u16;
            guard += 1;
        }
    }
}
