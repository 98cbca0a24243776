//! Physical memory: the frame allocator fed from the memory map, the page tables, DMA
//! allocations and boot-time statics.
//!
//! Everything is identity mapped (virtual == physical), so a DMA buffer's device address is
//! its pointer. Nothing here runs on the packet path: all of it happens while booting and
//! while drivers and apps set up.

mod paging;

use crate::bootinfo::{BootInfo, MemKind};
use crate::frames::{FrameAllocator, FrameError, FRAME_SIZE};
use core::ptr::NonNull;
use spin::Mutex;

pub use paging::{map_mmio, translate, MapError};

/// Physical address of the page-table root (below 4 GiB), for starting other cores.
pub(crate) fn paging_root() -> u64 {
    paging::root()
}

static FRAMES: Mutex<FrameAllocator> = Mutex::new(FrameAllocator::new());

unsafe extern "C" {
    static __kernel_start: u8;
    static __kernel_end: u8;
}

/// Physical range of the kernel image (text, data and bss with the boot stack and tables).
pub fn kernel_range() -> (u64, u64) {
    (
        core::ptr::addr_of!(__kernel_start) as u64,
        core::ptr::addr_of!(__kernel_end) as u64,
    )
}

/// Builds the frame allocator from the memory map and switches to Ferrule's page tables.
/// Runs once, at boot (crate-private: the memory map decides what memory is free).
pub(crate) fn init(boot: &'static BootInfo) {
    {
        let mut frames = FRAMES.lock();
        for r in boot.regions().iter().filter(|r| r.kind == MemKind::Usable) {
            if frames.add(r.start, r.end).is_err() {
                crate::console::warn!(
                    "mem: memory map too fragmented; ignoring {:#x}..{:#x}",
                    r.start,
                    r.end
                );
            }
        }
        // Low memory holds the BIOS data area and the AP trampoline; the kernel image and
        // the loader's structures (which hold the RSDP copy) must stay intact.
        let (k0, k1) = kernel_range();
        let reserved = [(0, 0x10_0000), (k0, k1), boot.info_range];
        for (s, e) in reserved {
            frames
                .reserve(s, e)
                .expect("reserving boot ranges cannot fragment an empty map");
        }
    }
    paging::init(boot);
    crate::console::info!("mem: {} MiB free after page tables", free_bytes() >> 20);
}

/// Free physical memory in bytes.
pub fn free_bytes() -> u64 {
    FRAMES.lock().free_bytes()
}

/// Allocates zeroed, physically contiguous frames; returns the physical (= virtual) start.
pub fn alloc_frames(len: u64, align: u64) -> Result<u64, FrameError> {
    let start = FRAMES.lock().alloc(len, align.max(FRAME_SIZE))?;
    // SAFETY: the frames were just taken from the allocator, so nothing else refers to them,
    // and all RAM is identity mapped writable.
    unsafe { core::ptr::write_bytes(start as *mut u8, 0, len as usize) };
    Ok(start)
}

/// A physically contiguous DMA region: the drivers' type, so a region goes from the frame
/// allocator to a NIC ring without conversion.
pub use drivers::DmaRegion;

/// Allocates `len` bytes of zeroed, physically contiguous memory aligned to `align` for a
/// device to read and write. It is never freed.
pub fn dma_alloc(len: usize, align: usize) -> Result<DmaRegion, FrameError> {
    let len = (len as u64).div_ceil(FRAME_SIZE) * FRAME_SIZE;
    let phys = alloc_frames(len, align as u64)?;
    let virt = NonNull::new(phys as *mut u8).ok_or(FrameError::OutOfMemory)?;
    // SAFETY: `alloc_frames` took these `len` bytes from the frame allocator, which never
    // hands a frame out twice, and zeroed them; nothing frees them. All RAM is identity
    // mapped writable and write-back (virt == phys, so the range is physically contiguous),
    // and x86 DMA is cache-coherent. No other pointer to the frames exists.
    Ok(unsafe { DmaRegion::new(virt, phys, len as usize) })
}

/// Moves `value` into memory that lives until the machine stops (boot-time only).
pub fn alloc_static<T: Send + Sync + 'static>(value: T) -> &'static mut T {
    alloc_static_any(value)
}

/// Allocates `len` elements built by `make`, in memory that lives until the machine stops
/// (boot-time only): for large per-core tables that must not be built on a stack.
pub fn alloc_slice<T: Send + 'static>(len: usize, mut make: impl FnMut() -> T) -> &'static mut [T] {
    let size = (core::mem::size_of::<T>() * len).max(1) as u64;
    let align = (core::mem::align_of::<T>() as u64).max(FRAME_SIZE);
    let addr = alloc_frames(size, align).expect("out of memory for a boot-time table");
    let ptr = addr as *mut T;
    for i in 0..len {
        // SAFETY: `ptr` is fresh, exclusively owned and aligned memory for `len` `T`s; each
        // element is written once before the slice is formed.
        unsafe { ptr.add(i).write(make()) };
    }
    // SAFETY: all `len` elements were initialised above; the memory is never freed.
    unsafe { core::slice::from_raw_parts_mut(ptr, len) }
}

pub(crate) fn alloc_static_any<T: 'static>(value: T) -> &'static mut T {
    let size = core::mem::size_of::<T>().max(1) as u64;
    let align = (core::mem::align_of::<T>() as u64).max(FRAME_SIZE);
    let addr = alloc_frames(size, align).expect("out of memory for a boot-time structure");
    let ptr = addr as *mut T;
    // SAFETY: `ptr` is fresh, exclusively owned, aligned and large enough for a `T`, and it
    // is never freed, so the `'static` reference stays valid.
    unsafe {
        ptr.write(value);
        &mut *ptr
    }
}
