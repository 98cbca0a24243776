//! `drivers::Hal` for this kernel: the platform glue the NIC drivers need (DMA from the frame
//! allocator, BARs mapped uncached, the TSC clock, PCI configuration access). The drivers
//! themselves live in the `drivers` crate (dependency direction: drivers ← kernel).

use core::ptr::NonNull;

use crate::{mem, pci, time};

/// The kernel's implementation of [`drivers::Hal`]. Zero-sized: all state is global.
#[derive(Debug, Clone, Copy, Default)]
pub struct KernelHal;

/// The drivers' PCI address of a function found by the kernel's scan.
pub fn drivers_address(f: &crate::app::PciFunction) -> drivers::PciAddr {
    drivers::PciAddr {
        bus: f.bus,
        dev: f.device,
        func: f.function,
    }
}

fn kernel_address(a: drivers::PciAddr) -> pci::PciAddress {
    pci::PciAddress {
        bus: a.bus,
        device: a.dev,
        function: a.func,
    }
}

// SAFETY: `mem::dma_alloc` returns zeroed frames taken from the allocator (never handed out
// again, never freed), identity mapped (virt == phys, hence contiguous) write-back RAM,
// aligned to at least the request (we ask for 4 KiB or more); x86 DMA is cache-coherent.
// `mem::map_mmio` identity-maps the range cache-disabled for the kernel's lifetime and
// refuses ranges that overlap RAM in the memory map. The TSC clock is monotonic. PCI
// accesses reach only the addressed function.
unsafe impl drivers::Hal for KernelHal {
    fn dma_alloc(&self, size: usize, align: usize) -> Option<drivers::DmaRegion> {
        mem::dma_alloc(size, align.max(4096)).ok()
    }

    fn map_mmio(&self, phys: u64, len: usize) -> Option<NonNull<u8>> {
        NonNull::new(mem::map_mmio(phys, len as u64).ok()?)
    }

    fn now_ns(&self) -> u64 {
        time::now_ns()
    }

    fn pci_read32(&self, addr: drivers::PciAddr, off: u16) -> u32 {
        pci::read32(kernel_address(addr), off)
    }

    unsafe fn pci_write32(&self, addr: drivers::PciAddr, off: u16, value: u32) {
        // SAFETY: `Hal::pci_write32`'s contract is `pci::write32`'s, passed on unchanged.
        unsafe { pci::write32(kernel_address(addr), off, value) }
    }
}

/// A [`drivers::Hal`] whose DMA memory comes from at or above a physical address (e.g.
/// 4 GiB): to run a NIC's rings and buffers where only 64-bit DMA reaches, and to check it
/// does. Everything else is [`KernelHal`]'s. It records the span of what it handed out.
#[derive(Debug)]
pub struct DmaAbove {
    min: u64,
    regions: core::sync::atomic::AtomicU64,
    lowest: core::sync::atomic::AtomicU64,
    highest_end: core::sync::atomic::AtomicU64,
}

impl DmaAbove {
    /// DMA memory at or above `min`.
    pub const fn new(min: u64) -> DmaAbove {
        DmaAbove {
            min,
            regions: core::sync::atomic::AtomicU64::new(0),
            lowest: core::sync::atomic::AtomicU64::new(u64::MAX),
            highest_end: core::sync::atomic::AtomicU64::new(0),
        }
    }

    /// How many DMA regions were handed out, the lowest physical address and the end of the
    /// highest one.
    pub fn span(&self) -> (u64, u64, u64) {
        use core::sync::atomic::Ordering::Relaxed;
        (
            self.regions.load(Relaxed),
            self.lowest.load(Relaxed),
            self.highest_end.load(Relaxed),
        )
    }
}

// SAFETY: `mem::dma_alloc_above` gives the same guarantees as `mem::dma_alloc` (fresh,
// zeroed, never freed, identity-mapped write-back RAM, aligned to the request, all RAM
// above 4 GiB included); the rest is `KernelHal`'s implementation, whose safety note holds.
unsafe impl drivers::Hal for DmaAbove {
    fn dma_alloc(&self, size: usize, align: usize) -> Option<drivers::DmaRegion> {
        use core::sync::atomic::Ordering::Relaxed;
        let r = mem::dma_alloc_above(size, align.max(4096), self.min).ok()?;
        self.regions.fetch_add(1, Relaxed);
        self.lowest.fetch_min(r.phys(), Relaxed);
        self.highest_end
            .fetch_max(r.phys() + r.len() as u64, Relaxed);
        Some(r)
    }

    fn map_mmio(&self, phys: u64, len: usize) -> Option<NonNull<u8>> {
        drivers::Hal::map_mmio(&KernelHal, phys, len)
    }

    fn now_ns(&self) -> u64 {
        time::now_ns()
    }

    fn pci_read32(&self, addr: drivers::PciAddr, off: u16) -> u32 {
        drivers::Hal::pci_read32(&KernelHal, addr, off)
    }

    unsafe fn pci_write32(&self, addr: drivers::PciAddr, off: u16, value: u32) {
        // SAFETY: the caller upholds `Hal::pci_write32`'s contract, which is KernelHal's.
        unsafe { drivers::Hal::pci_write32(&KernelHal, addr, off, value) }
    }
}
