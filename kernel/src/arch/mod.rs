//! Everything that is x86_64 instructions: boot code, descriptor tables, exceptions and the
//! local APIC. Port I/O is not here: each port is used through the `x86_64` crate's typed
//! ports by the one module that owns it (`console`, `time`, `exit`, `pci`).

mod boot;
pub mod gdt;
pub mod idt;
pub mod lapic;

use crate::bootinfo::{BootInfo, MULTIBOOT2_MAGIC};
use crate::{acpi, console, mem, pci, smp, time};

/// Stops this core for good.
pub fn halt_forever() -> ! {
    loop {
        x86_64::instructions::interrupts::disable();
        x86_64::instructions::hlt();
    }
}

/// Reads the time-stamp counter.
#[inline]
pub fn rdtsc() -> u64 {
    // SAFETY: `rdtsc` only reads a counter; it is available on every x86_64 CPU.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// The 64-bit entry from the boot trampoline, with the loader's magic and info pointer.
#[unsafe(no_mangle)]
extern "C" fn kernel_entry64(magic: u32, info: u64) -> ! {
    console::init();
    gdt::init_boot_core();
    idt::init();
    let boot = match read_boot_info(magic, info) {
        Ok(b) => b,
        Err(e) => panic!("cannot read boot information: {e}"),
    };
    BOOT_INFO.call_once(|| boot);
    unsafe extern "C" {
        fn ferrule_app_main() -> !;
    }
    // SAFETY: `ferrule_app_main` is defined by `kernel::main!` in the application crate with
    // exactly this signature; an image without it does not link.
    unsafe { ferrule_app_main() }
}

static BOOT_INFO: spin::Once<BootInfo> = spin::Once::new();

fn read_boot_info(magic: u32, info: u64) -> Result<BootInfo, crate::bootinfo::BootInfoError> {
    if magic == MULTIBOOT2_MAGIC {
        // SAFETY: a multiboot2 loader passes the physical address of its information
        // structure, which starts with its total size; low memory is identity mapped.
        let total = unsafe { core::ptr::read_unaligned(info as *const u32) } as usize;
        // SAFETY: as above; the structure spans `total` bytes and stays untouched (it is
        // reserved from the frame allocator before anything is allocated).
        let mbi = unsafe { core::slice::from_raw_parts(info as *const u8, total) };
        BootInfo::parse_multiboot2(mbi, info)
    } else {
        // SAFETY: a PVH loader passes the physical address of `hvm_start_info` (56 bytes
        // in version 1), identity mapped by the boot page tables.
        let si = unsafe { core::slice::from_raw_parts(info as *const u8, 56) };
        let (mm, len) = BootInfo::pvh_memmap_location(si)?;
        // SAFETY: the start info names its e820 table and its length; both are loader
        // memory below 4 GiB, identity mapped.
        let memmap = unsafe { core::slice::from_raw_parts(mm as *const u8, len) };
        BootInfo::parse_pvh(si, info, memmap)
    }
}

/// Unmaps the guard pages below the boot core's stacks (both in the kernel image, so only
/// now that Ferrule's page tables exist).
fn guard_boot_stacks() {
    unsafe extern "C" {
        static boot_stack_guard: u8;
    }
    let guards = [
        (
            core::ptr::addr_of!(boot_stack_guard) as u64,
            mem::StackKind::Main,
        ),
        (gdt::boot_fault_guard(), mem::StackKind::Fault),
    ];
    for (page, kind) in guards {
        if let Err(e) = mem::guard_page(page, 0, kind) {
            console::warn!(
                "mem: boot core's {} stack has no guard page: {e}",
                kind.name()
            );
        }
    }
}

/// Brings the machine up (memory, time, ACPI, cores, PCI) and describes it. Runs once, on the
/// boot core, from [`crate::run`] (crate-private: a second run would feed frames that are
/// in use back to the allocator).
pub(crate) fn boot_machine() -> crate::app::Machine {
    let boot = BOOT_INFO
        .get()
        .expect("boot info is read before the app starts");
    console::info!(
        "ferrule: booted via {}, {} MiB usable RAM",
        boot.loader.name(),
        boot.usable_bytes() >> 20
    );
    if boot.efi_memory_map {
        console::info!(
            "mem: memory map from the EFI memory map, {} regions",
            boot.regions().len()
        );
    }
    if boot.dropped_regions > 0 {
        console::warn!(
            "mem: memory map has {} regions past the {} kept; their RAM is unused",
            boot.dropped_regions,
            crate::bootinfo::MAX_REGIONS
        );
    }
    mem::init(boot);
    guard_boot_stacks();
    time::init();
    let acpi = acpi::read(boot.rsdp);
    let (cores, missing) = smp::start_cores(&acpi);
    let (functions, ecam) = pci::init(acpi.ecam);
    crate::app::Machine {
        cores,
        missing_apic_ids: missing,
        usable_memory: boot.usable_bytes(),
        free_memory: mem::free_bytes(),
        loader: boot.loader.name(),
        tsc_hz: time::tsc_hz(),
        pci: functions,
        pci_ecam: ecam,
    }
}
