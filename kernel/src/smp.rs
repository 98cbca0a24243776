//! Bringing up the other cores: INIT-SIPI-SIPI with a real-mode trampoline at 0x8000, each
//! core on its own stack with its own GDT/TSS, then parked until the application starts.

use crate::acpi::AcpiInfo;
use crate::app::{Core, MAX_CORES};
use crate::arch::{gdt, idt, lapic};
use crate::console;
use crate::mem::StackKind;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use core::time::Duration;
use spin::Once;

/// Where the trampoline is copied; the STARTUP vector is this address >> 12.
const TRAMPOLINE: u64 = 0x8000;
/// Each application processor's stack.
const AP_STACK_SIZE: u64 = 64 * 1024;
/// How long one core may take to report in (generous: TCG may run 4 vCPUs on 1 host core).
const AP_TIMEOUT: Duration = Duration::from_secs(2);

unsafe extern "C" {
    static ap_tramp_start: u8;
    static ap_tramp_end: u8;
    static ap_tramp_cr3: u8;
    static ap_tramp_stack: u8;
    static ap_tramp_entry: u8;
    static ap_tramp_arg: u8;
}

/// Each core's double-fault stack top, allocated by the boot core before starting it.
static FAULT_STACKS: [AtomicU64; MAX_CORES] = [const { AtomicU64::new(0) }; MAX_CORES];
static ONLINE: [AtomicBool; MAX_CORES] = [const { AtomicBool::new(false) }; MAX_CORES];
static CORES: Once<&'static [Core]> = Once::new();
static RELEASE: Once<fn(&Core) -> !> = Once::new();

fn tramp_offset(sym: &u8) -> u64 {
    sym as *const u8 as u64 - core::ptr::addr_of!(ap_tramp_start) as u64
}

fn write_tramp_u64(sym: &u8, value: u64) {
    let at = TRAMPOLINE + tramp_offset(sym);
    // SAFETY: `at` lies inside the trampoline copy in low memory, which the frame allocator
    // never hands out, and no AP is reading it while the boot core writes (cores start one
    // at a time, each after the previous one reported in).
    unsafe { (at as *mut u64).write_volatile(value) }
}

/// Starts every processor in the MADT. Returns the cores online (boot core first) and the
/// APIC ids of those that did not report in before the timeout.
pub fn start_cores(acpi: &AcpiInfo) -> (&'static [Core], &'static [u32]) {
    lapic::enable();
    let bsp = lapic::id();
    let cores = crate::mem::alloc_static(
        [Core {
            id: 0,
            apic_id: bsp,
        }; MAX_CORES],
    );
    let missing = crate::mem::alloc_static([0u32; MAX_CORES]);
    let (mut n, mut n_missing) = (1usize, 0usize);
    // SAFETY: the linker places the trampoline symbols; reading their addresses is safe.
    let (start, end) = (
        core::ptr::addr_of!(ap_tramp_start) as u64,
        core::ptr::addr_of!(ap_tramp_end) as u64,
    );
    let root = crate::mem::paging_root();
    let others = acpi.apic_ids[..acpi.cores].iter().filter(|&&id| id != bsp);
    if acpi.cores > 1 {
        // SAFETY: 0x8000..0x9000 is low RAM that the frame allocator never hands out
        // (all of the first MiB is reserved); the source is the trampoline image in .rodata.
        unsafe {
            core::ptr::copy_nonoverlapping(
                start as *const u8,
                TRAMPOLINE as *mut u8,
                (end - start) as usize,
            )
        };
        // SAFETY: these are symbols inside the trampoline image.
        unsafe {
            write_tramp_u64(&ap_tramp_cr3, root);
            write_tramp_u64(
                &ap_tramp_entry,
                ap_entry as extern "C" fn(u64) -> ! as usize as u64,
            );
        }
    }
    for &apic_id in others {
        if n == MAX_CORES {
            break;
        }
        let stacks = crate::mem::alloc_stack(AP_STACK_SIZE, n, StackKind::Main).and_then(|s| {
            crate::mem::alloc_stack(gdt::FAULT_STACK_SIZE as u64, n, StackKind::Fault)
                .map(|f| (s, f))
        });
        let (stack_top, fault_top) = match stacks {
            Ok(s) => s,
            Err(e) => {
                console::warn!("smp: no stack for apic {apic_id}: {e}");
                missing[n_missing] = apic_id;
                n_missing += 1;
                continue;
            }
        };
        FAULT_STACKS[n].store(fault_top, Ordering::Release);
        cores[n] = Core { id: n, apic_id };
        // SAFETY: symbols inside the trampoline image (see `write_tramp_u64`).
        unsafe {
            write_tramp_u64(&ap_tramp_stack, stack_top);
            write_tramp_u64(&ap_tramp_arg, n as u64);
        }
        // SAFETY: the trampoline was copied to TRAMPOLINE above and just filled in with this
        // core's fresh stack and index; `apic_id` is from the MADT, not the boot core, and
        // has not been started before (each id appears once in `others`).
        let started = unsafe { lapic::start_ap(apic_id, (TRAMPOLINE >> 12) as u8) };
        let started = started.and_then(|()| {
            crate::time::wait_until(AP_TIMEOUT, || ONLINE[n].load(Ordering::Acquire))
        });
        match started {
            Ok(()) => n += 1,
            Err(_) => {
                console::warn!("smp: core with apic id {apic_id} did not come online");
                missing[n_missing] = apic_id;
                n_missing += 1;
            }
        }
    }
    let cores: &'static [Core] = &cores[..n];
    CORES.call_once(|| cores);
    if n_missing > 0 {
        console::warn!("smp: missing apic ids {:?}", &missing[..n_missing]);
    }
    console::println!("cores online: {}", n);
    (cores, &missing[..n_missing])
}

/// Lets every parked application processor run `entry` with its [`Core`].
pub fn release_cores(entry: fn(&Core) -> !) {
    RELEASE.call_once(|| entry);
}

/// First Rust code on an application processor (called by the trampoline with its index).
extern "C" fn ap_entry(index: u64) -> ! {
    let index = index as usize;
    gdt::init_ap(FAULT_STACKS[index].load(Ordering::Acquire));
    idt::init();
    lapic::enable();
    ONLINE[index].store(true, Ordering::Release);
    let entry = loop {
        if let Some(entry) = RELEASE.get() {
            break *entry;
        }
        core::hint::spin_loop();
    };
    let core = loop {
        if let Some(cores) = CORES.get() {
            break cores[index];
        }
        core::hint::spin_loop();
    };
    entry(&core)
}
