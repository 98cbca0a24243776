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
