//! Ferrule's kernel: boot, memory, cores, PCI, serial and time for x86_64.
//!
//! Owns the machine from the first instruction: the 32→64-bit trampoline (PVH and multiboot2),
//! paging, the frame and DMA allocators, ACPI, SMP bring-up, PCI enumeration, the serial
//! console and the monotonic clock. It must not contain NIC drivers (see `drivers`) or flow
//! logic (see `monitor`).
#![cfg_attr(not(test), no_std)]
