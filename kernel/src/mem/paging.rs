//! Ferrule's page tables: an identity map of all RAM (write-back) and of the rest of the
//! low 4 GiB (uncached: MMIO, the local APIC, PCI holes). Page 0 is left unmapped so NULL
//! dereferences fault; MMIO above the map is added on request by [`map_mmio`].

use crate::bootinfo::BootInfo;
use crate::frames::FRAME_SIZE;
use spin::Mutex;

const PRESENT: u64 = 1;
const WRITABLE: u64 = 1 << 1;
const WRITE_THROUGH: u64 = 1 << 3;
const CACHE_DISABLE: u64 = 1 << 4;
const HUGE: u64 = 1 << 7;
const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;
const TWO_MIB: u64 = 2 << 20;

/// Why a mapping could not be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapError {
    /// No frame was left for a page table.
    OutOfMemory,
    /// The range is not in the canonical lower half or wraps.
    BadRange,
    /// The range shares a 2 MiB page with RAM from the memory map: RAM stays write-back
    /// memory and is never handed out as device registers.
    Ram,
    /// The page tables are not built yet ([`init`] has not run).
    NotReady,
}

impl core::fmt::Display for MapError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            MapError::OutOfMemory => "out of memory for page tables",
            MapError::BadRange => "address range cannot be identity mapped",
            MapError::Ram => "address range overlaps RAM in the memory map",
            MapError::NotReady => "page tables are not built yet",
        })
    }
}

/// The root table's physical address (0 until `init`).
static PML4: Mutex<u64> = Mutex::new(0);
/// The memory map `init` built the tables from, which `map_mmio` checks requests against.
static BOOT: spin::Once<&'static BootInfo> = spin::Once::new();

fn table(phys: u64) -> *mut u64 {
    phys as *mut u64
}

/// Returns the next-level table under `entry` of `parent`, creating it if absent.
fn next_table(parent: u64, index: usize) -> Result<u64, MapError> {
    // SAFETY: `parent` is a page table frame owned by this module (identity mapped), and
    // `index` < 512.
    let entry = unsafe { table(parent).add(index).read_volatile() };
    if entry & PRESENT != 0 {
        return Ok(entry & ADDR_MASK);
    }
    let frame = super::alloc_frames(FRAME_SIZE, FRAME_SIZE).map_err(|_| MapError::OutOfMemory)?;
    // SAFETY: as above; the new frame is zeroed and owned by the page tables from now on.
    unsafe {
        table(parent)
            .add(index)
            .write_volatile(frame | PRESENT | WRITABLE)
    };
    Ok(frame)
}

fn map_2m(pml4: u64, addr: u64, flags: u64) -> Result<(), MapError> {
    let pdpt = next_table(pml4, ((addr >> 39) & 511) as usize)?;
    let pd = next_table(pdpt, ((addr >> 30) & 511) as usize)?;
    let i = ((addr >> 21) & 511) as usize;
    // SAFETY: `pd` is a page-directory frame owned by this module; `i` < 512.
    unsafe {
        let e = table(pd).add(i);
        if e.read_volatile() & PRESENT == 0 {
            e.write_volatile(addr | flags | HUGE | PRESENT | WRITABLE);
        }
    }
    Ok(())
}

/// Builds the tables and loads them on the boot core.
pub fn init(boot: &'static BootInfo) {
    let pml4 = super::alloc_frames(FRAME_SIZE, FRAME_SIZE).expect("no memory for page tables");
    // First 2 MiB with 4 KiB pages: page 0 absent, legacy VGA/ROM area uncached.
    let pt = super::alloc_frames(FRAME_SIZE, FRAME_SIZE).expect("no memory for page tables");
    for i in 1..512u64 {
        let addr = i * FRAME_SIZE;
        let cache = if (0xa_0000..0x10_0000).contains(&addr) {
            CACHE_DISABLE | WRITE_THROUGH
        } else {
            0
        };
        // SAFETY: `pt` is a fresh page-table frame; `i` < 512.
        unsafe {
            table(pt)
                .add(i as usize)
                .write_volatile(addr | cache | PRESENT | WRITABLE)
        };
    }
    let pdpt = next_table(pml4, 0).expect("no memory for page tables");
    let pd = next_table(pdpt, 0).expect("no memory for page tables");
    // SAFETY: `pd` is a fresh page directory; entry 0 covers the first 2 MiB.
    unsafe { table(pd).write_volatile(pt | PRESENT | WRITABLE) };
    let top = boot.top_of_ram().max(4 << 30).div_ceil(TWO_MIB) * TWO_MIB;
    let mut addr = TWO_MIB;
    while addr < top {
        let cache = if boot.overlaps_ram(addr, addr + TWO_MIB) {
            0
        } else {
            CACHE_DISABLE | WRITE_THROUGH
        };
        map_2m(pml4, addr, cache).expect("no memory for page tables");
        addr += TWO_MIB;
    }
    *PML4.lock() = pml4;
    BOOT.call_once(|| boot);
    load();
}

/// Loads Ferrule's page tables on the calling core (the boot core in `init`, APs via the
/// trampoline, which reads [`root`]).
pub fn load() {
    let pml4 = *PML4.lock();
    // SAFETY: the tables identity-map every address the kernel uses (its image, stacks,
    // RAM and MMIO), so execution continues unchanged after the switch.
    unsafe { core::arch::asm!("mov cr3, {}", in(reg) pml4, options(nostack, preserves_flags)) };
}

/// Physical address of the root table, for the AP trampoline (below 4 GiB).
pub fn root() -> u64 {
    *PML4.lock()
}

/// Identity-maps `[phys, phys + len)` uncached (for device registers) and returns the
/// pointer to it. Ranges already mapped keep their (uncached) mapping.
///
/// Refuses, with [`MapError::Ram`], a range whose 2 MiB pages overlap RAM-like memory in
/// the memory map: those pages are write-back RAM that Rust code owns, so a pointer to
/// them is not a register window.
pub fn map_mmio(phys: u64, len: u64) -> Result<*mut u8, MapError> {
    let end = phys.checked_add(len).ok_or(MapError::BadRange)?;
    if end > 1 << 47 {
        return Err(MapError::BadRange);
    }
    let boot = BOOT.get().ok_or(MapError::NotReady)?;
    let first = phys & !(TWO_MIB - 1);
    if boot.overlaps_ram(first, end.div_ceil(TWO_MIB) * TWO_MIB) {
        return Err(MapError::Ram);
    }
    let pml4 = *PML4.lock();
    let mut addr = first;
    while addr < end {
        map_2m(pml4, addr, CACHE_DISABLE | WRITE_THROUGH)?;
        addr += TWO_MIB;
    }
    x86_64::instructions::tlb::flush_all();
    Ok(phys as *mut u8)
}

/// Unmaps the 4 KiB page at `page` (a guard page), splitting the 2 MiB page that holds it
/// into 4 KiB pages with the same flags first. Flushes the page from this core's TLB; other
/// cores never touched the page (it was just allocated, or is a boot-time guard unmapped
/// before they start), so they hold no entry for it.
pub fn unmap_page(page: u64) -> Result<(), MapError> {
    if !page.is_multiple_of(FRAME_SIZE) || page >= 1 << 47 {
        return Err(MapError::BadRange);
    }
    let pml4 = *PML4.lock();
    if pml4 == 0 {
        return Err(MapError::NotReady);
    }
    let pdpt = next_table(pml4, ((page >> 39) & 511) as usize)?;
    let pd = next_table(pdpt, ((page >> 30) & 511) as usize)?;
    let i = ((page >> 21) & 511) as usize;
    // SAFETY: `pd` is a page-directory frame owned by this module; `i` < 512.
    let pde = unsafe { table(pd).add(i).read_volatile() };
    let pt = if pde & PRESENT != 0 && pde & HUGE != 0 {
        let pt = super::alloc_frames(FRAME_SIZE, FRAME_SIZE).map_err(|_| MapError::OutOfMemory)?;
        let base = pde & ADDR_MASK & !(TWO_MIB - 1);
        // Present, writable, user, write-through, cache-disable and no-execute carry over.
        let flags = pde & (0x1f | 1 << 63);
        for j in 0..512u64 {
            // SAFETY: `pt` is a fresh page-table frame; `j` < 512.
            unsafe {
                table(pt)
                    .add(j as usize)
                    .write_volatile((base + j * FRAME_SIZE) | flags)
            };
        }
        // SAFETY: as above; the new table maps exactly what the huge page did, so the
        // single 64-bit store changes no translation.
        unsafe { table(pd).add(i).write_volatile(pt | PRESENT | WRITABLE) };
        pt
    } else if pde & PRESENT != 0 {
        pde & ADDR_MASK
    } else {
        return Err(MapError::BadRange);
    };
    let j = ((page >> 12) & 511) as usize;
    // SAFETY: `pt` is a page table owned by this module; `j` < 512.
    unsafe { table(pt).add(j).write_volatile(0) };
    x86_64::instructions::tlb::flush(x86_64::VirtAddr::new(page));
    Ok(())
}

/// Walks the page tables: the physical address `virt` maps to, if any.
pub fn translate(virt: u64) -> Option<u64> {
    let mut t = *PML4.lock();
    let shifts = [39u64, 30, 21, 12];
    for (level, shift) in shifts.iter().enumerate() {
        let i = ((virt >> shift) & 511) as usize;
        // SAFETY: `t` is a page-table frame reached from the root this module built.
        let e = unsafe { table(t).add(i).read_volatile() };
        if e & PRESENT == 0 {
            return None;
        }
        let is_leaf = level == 3 || (level >= 1 && e & HUGE != 0);
        if is_leaf {
            let page = 1u64 << shift;
            return Some((e & ADDR_MASK & !(page - 1)) | (virt & (page - 1)));
        }
        t = e & ADDR_MASK;
    }
    None
}
