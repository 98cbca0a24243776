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

use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Size of the unmapped guard page below every stack.
pub const GUARD_SIZE: u64 = FRAME_SIZE;

/// Which of a core's stacks a guard page protects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StackKind {
    /// The stack the core runs on.
    Main,
    /// The double-fault (IST) stack.
    Fault,
}

impl StackKind {
    /// The name used in the overflow report.
    pub fn name(self) -> &'static str {
        match self {
            StackKind::Main => "main",
            StackKind::Fault => "double-fault",
        }
    }
}

/// Two guarded stacks per core (main and double-fault).
const MAX_GUARDS: usize = 2 * crate::app::MAX_CORES;
/// Guard pages by slot (0 = free slot); read lock-free by the exception handler.
static GUARD_PAGES: [AtomicU64; MAX_GUARDS] = [const { AtomicU64::new(0) }; MAX_GUARDS];
/// The owner of each guard: core index << 1 | 1 for the double-fault stack.
static GUARD_OWNERS: [AtomicU64; MAX_GUARDS] = [const { AtomicU64::new(0) }; MAX_GUARDS];
static GUARD_COUNT: AtomicUsize = AtomicUsize::new(0);

/// Why a guarded stack could not be set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StackError {
    /// No memory for the stack.
    Frames(FrameError),
    /// The guard page could not be unmapped.
    Map(MapError),
    /// More guarded stacks than two per supported core.
    TooManyGuards,
}

impl core::fmt::Display for StackError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            StackError::Frames(e) => write!(f, "no memory for a stack: {e}"),
            StackError::Map(e) => write!(f, "cannot unmap the guard page: {e}"),
            StackError::TooManyGuards => f.write_str("more guarded stacks than two per core"),
        }
    }
}

/// Unmaps the page at `page` and records it as the guard of `core`'s `kind` stack, so a
/// fault there is reported as that stack's overflow.
pub(crate) fn guard_page(page: u64, core: usize, kind: StackKind) -> Result<(), StackError> {
    let slot = GUARD_COUNT.fetch_add(1, Ordering::AcqRel);
    if slot >= MAX_GUARDS {
        return Err(StackError::TooManyGuards);
    }
    paging::unmap_page(page).map_err(StackError::Map)?;
    let owner = (core as u64) << 1 | (kind == StackKind::Fault) as u64;
    GUARD_OWNERS[slot].store(owner, Ordering::Release);
    GUARD_PAGES[slot].store(page, Ordering::Release);
    Ok(())
}

/// Allocates a stack of `size` bytes for `core` with an unmapped guard page below it;
/// returns its top (the initial stack pointer, 16-byte aligned).
pub(crate) fn alloc_stack(size: u64, core: usize, kind: StackKind) -> Result<u64, StackError> {
    let size = size.div_ceil(FRAME_SIZE) * FRAME_SIZE;
    let base = alloc_frames(size + GUARD_SIZE, FRAME_SIZE).map_err(StackError::Frames)?;
    guard_page(base, core, kind)?;
    Ok(base + GUARD_SIZE + size)
}

/// If `addr` lies in a guard page, the core and stack it guards. Lock-free, for the
/// exception handler.
pub fn guard_hit(addr: u64) -> Option<(usize, StackKind)> {
    let page = addr & !(GUARD_SIZE - 1);
    let count = GUARD_COUNT.load(Ordering::Acquire).min(MAX_GUARDS);
    (0..count).find_map(|slot| {
        (page != 0 && GUARD_PAGES[slot].load(Ordering::Acquire) == page).then(|| {
            let owner = GUARD_OWNERS[slot].load(Ordering::Acquire);
            let kind = if owner & 1 == 1 {
                StackKind::Fault
            } else {
                StackKind::Main
            };
            ((owner >> 1) as usize, kind)
        })
    })
}

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

/// Like [`alloc_frames`], but the frames start at or above physical address `min`.
pub fn alloc_frames_above(len: u64, align: u64, min: u64) -> Result<u64, FrameError> {
    let start = FRAMES.lock().alloc_above(len, align.max(FRAME_SIZE), min)?;
    // SAFETY: as in `alloc_frames`: fresh frames, identity mapped writable (all RAM is
    // mapped, above 4 GiB too).
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

/// Like [`dma_alloc`], but the region starts at or above physical address `min` (e.g.
/// `1 << 32` to check that a device really uses 64-bit addresses).
pub fn dma_alloc_above(len: usize, align: usize, min: u64) -> Result<DmaRegion, FrameError> {
    let len = (len as u64).div_ceil(FRAME_SIZE) * FRAME_SIZE;
    let phys = alloc_frames_above(len, align as u64, min)?;
    let virt = NonNull::new(phys as *mut u8).ok_or(FrameError::OutOfMemory)?;
    // SAFETY: as in `dma_alloc`: `len` fresh, zeroed, never-freed bytes, identity mapped
    // write-back (virt == phys), cache-coherent for DMA, with no other pointer to them.
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
