//! Bringing up the other cores: INIT-SIPI-SIPI with a real-mode trampoline at 0x8000, each
//! core on its own guarded stack with its own GDT/TSS, then parked in `hlt` until the
//! application starts (a wake-up IPI releases them).
//!
//! The trampoline is shared, but what it hands a core is not: the boot core fills one
//! [`ApSlot`] per processor (APIC id, stack, double-fault stack, core index) and the
//! trampoline finds its own slot by the APIC id CPUID reports. A core that misses its start
//! window and comes up later therefore runs on its own stack; its slot's state tells it the
//! boot core gave up on it, and it parks for good instead of joining the run.

use crate::acpi::AcpiInfo;
use crate::app::{Core, MAX_CORES};
use crate::arch::{gdt, idt, lapic};
use crate::console;
use crate::mem::StackKind;
use core::sync::atomic::{AtomicU32, Ordering};
use core::time::Duration;
use spin::Once;

/// Where the trampoline is copied; the STARTUP vector is this address >> 12.
const TRAMPOLINE: u64 = 0x8000;
/// Each application processor's stack: as large as the boot core's, since every core runs the
/// same per-core loop (its monitor, read-ahead state and receive batch live on this stack).
const AP_STACK_SIZE: u64 = 256 * 1024;
/// How long one core may take to report in (generous: TCG may run many vCPUs on 1 host core).
const AP_TIMEOUT: Duration = Duration::from_secs(2);

/// The slot was filled and the core started; it has not reported in.
const PENDING: u32 = 0;
/// The core reported in.
const ONLINE: u32 = 1;
/// The boot core gave up waiting; a core that reports in after this parks.
const ABANDONED: u32 = 2;

/// What the boot core hands one application processor. The trampoline reads `apic_id` at
/// offset 0 and `stack_top` at offset 8 and passes the slot's address to [`ap_entry`];
/// slots are 32 bytes apart.
#[repr(C)]
struct ApSlot {
    apic_id: u32,
    state: AtomicU32,
    /// Initial stack pointer; 0 until the core is about to be started (the trampoline
    /// then halts instead of running on no stack).
    stack_top: u64,
    fault_stack_top: u64,
    /// The dense core index this core gets when it reports in on time.
    core_id: u64,
}

const _: () = assert!(core::mem::size_of::<ApSlot>() == 32);

unsafe extern "C" {
    static ap_tramp_start: u8;
    static ap_tramp_end: u8;
    static ap_tramp_cr3: u8;
    static ap_tramp_table: u8;
    static ap_tramp_count: u8;
    static ap_tramp_entry: u8;
}

static CORES: Once<&'static [Core]> = Once::new();
static RELEASE: Once<fn(&Core) -> !> = Once::new();

fn tramp_offset(sym: &u8) -> u64 {
    sym as *const u8 as u64 - core::ptr::addr_of!(ap_tramp_start) as u64
}

fn write_tramp_u64(sym: &u8, value: u64) {
    let at = TRAMPOLINE + tramp_offset(sym);
    // SAFETY: `at` lies inside the trampoline copy in low memory, which the frame allocator
    // never hands out, and no AP runs yet: the fields are written once, before the first
    // STARTUP IPI.
    unsafe { (at as *mut u64).write_volatile(value) }
}

/// Starts every processor in the MADT (up to [`MAX_CORES`]). Returns the cores online (boot
/// core first) and the APIC ids of those that did not report in before the timeout.
pub fn start_cores(acpi: &AcpiInfo) -> (&'static [Core], &'static [u32]) {
    lapic::enable();
    let bsp = lapic::id();
    let ids = &acpi.apic_ids[..acpi.cores];
    let others = ids.iter().filter(|&&id| id != bsp).count();
    let cores = crate::mem::alloc_slice(others + 1, || Core {
        id: 0,
        apic_id: bsp,
    });
    let missing = crate::mem::alloc_slice(others.max(1), || 0u32);
    let mut others_ids = ids.iter().copied().filter(|&id| id != bsp);
    let slots = crate::mem::alloc_slice(others, || ApSlot {
        apic_id: others_ids.next().unwrap_or(u32::MAX),
        state: AtomicU32::new(PENDING),
        stack_top: 0,
        fault_stack_top: 0,
        core_id: 0,
    });
    let (mut n, mut n_missing) = (1usize, 0usize);
    if others > 0 {
        let (start, end) = (
            core::ptr::addr_of!(ap_tramp_start) as u64,
            core::ptr::addr_of!(ap_tramp_end) as u64,
        );
        // SAFETY: 0x8000..0x9000 is low RAM that the frame allocator never hands out
        // (all of the first MiB is reserved); the source is the trampoline image in .rodata.
        unsafe {
            core::ptr::copy_nonoverlapping(
                start as *const u8,
                TRAMPOLINE as *mut u8,
                (end - start) as usize,
            )
        };
        // SAFETY: these are symbols inside the trampoline image; only their addresses are
        // used.
        unsafe {
            write_tramp_u64(&ap_tramp_cr3, crate::mem::paging_root());
            write_tramp_u64(&ap_tramp_table, slots.as_ptr() as u64);
            write_tramp_u64(&ap_tramp_count, others as u64);
            write_tramp_u64(
                &ap_tramp_entry,
                ap_entry as extern "C" fn(&'static ApSlot) -> ! as usize as u64,
            );
        }
    }
    for slot in slots.iter_mut() {
        let apic_id = slot.apic_id;
        let stacks = crate::mem::alloc_stack(AP_STACK_SIZE, n, StackKind::Main).and_then(|s| {
            crate::mem::alloc_stack(gdt::FAULT_STACK_SIZE as u64, n, StackKind::Fault)
                .map(|f| (s, f))
        });
        let (stack_top, fault_top) = match stacks {
            Ok(s) => s,
            Err(e) => {
                console::warn!("smp: no stack for apic id {apic_id}: {e}");
                missing[n_missing] = apic_id;
                n_missing += 1;
                continue;
            }
        };
        slot.fault_stack_top = fault_top;
        slot.core_id = n as u64;
        // The stack goes in last: the trampoline takes a zero stack as "not for you yet".
        // SAFETY: a plain aligned store into the slot, which no core reads before the
        // STARTUP IPI below; the volatile write keeps it ordered after the fields above.
        unsafe { core::ptr::addr_of_mut!(slot.stack_top).write_volatile(stack_top) };
        // SAFETY: the trampoline at TRAMPOLINE is filled in, and this core's slot holds its
        // own fresh stacks; `apic_id` is from the MADT, not the boot core, and is started
        // once (the slots hold each id once).
        let started = unsafe { lapic::start_ap(apic_id, (TRAMPOLINE >> 12) as u8) };
        let outcome = match started {
            Err(e) => Err(e),
            Ok(()) => Ok(crate::time::wait_until(AP_TIMEOUT, || {
                slot.state.load(Ordering::Acquire) == ONLINE
            })),
        };
        let online = match outcome {
            Ok(Ok(())) => true,
            Ok(Err(_)) => {
                // Give up on it, unless it reports in at this very moment.
                slot.state
                    .compare_exchange(PENDING, ABANDONED, Ordering::AcqRel, Ordering::Acquire)
                    .is_err()
            }
            Err(e) => {
                console::warn!("smp: cannot start the core with apic id {apic_id}: {e}");
                slot.state.store(ABANDONED, Ordering::Release);
                false
            }
        };
        if online {
            cores[n] = Core { id: n, apic_id };
            n += 1;
        } else {
            console::warn!("smp: core with apic id {apic_id} did not come online");
            missing[n_missing] = apic_id;
            n_missing += 1;
        }
    }
    let cores: &'static [Core] = &cores[..n];
    CORES.call_once(|| cores);
    if n_missing > 0 {
        console::warn!(
            "smp: {} cores missing, apic ids {:?}",
            n_missing,
            &missing[..n_missing]
        );
    }
    if acpi.cores_ignored > 0 {
        console::warn!(
            "smp: the MADT lists {} processors; this build supports {} (kernel::app::MAX_CORES), {} left off",
            acpi.cores + acpi.cores_ignored,
            MAX_CORES,
            acpi.cores_ignored
        );
    }
    console::info!(
        "smp: local APIC in {} mode",
        if lapic::x2apic_active() {
            "x2APIC"
        } else {
            "xAPIC"
        }
    );
    console::println!("cores online: {}", n);
    (cores, &missing[..n_missing])
}

/// Lets every parked application processor run `entry` with its [`Core`].
pub fn release_cores(entry: fn(&Core) -> !) {
    RELEASE.call_once(|| entry);
    if CORES.get().is_some_and(|c| c.len() > 1) {
        if let Err(e) = lapic::wake_others() {
            console::warn!("smp: cannot wake the other cores: {e}");
        }
    }
}

/// First Rust code on an application processor, called by the trampoline on its own stack
/// with its own slot.
extern "C" fn ap_entry(slot: &'static ApSlot) -> ! {
    gdt::init_ap(slot.fault_stack_top);
    idt::init();
    lapic::enable();
    if slot
        .state
        .compare_exchange(PENDING, ONLINE, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        console::warn!(
            "smp: core with apic id {} came up after the boot core gave up on it; parked",
            slot.apic_id
        );
        crate::arch::halt_forever()
    }
    // Parked: halt with interrupts on until the wake-up IPI (`sti; hlt` leaves no window
    // for the IPI to slip in between the check and the halt).
    let entry = loop {
        x86_64::instructions::interrupts::disable();
        if let Some(entry) = RELEASE.get() {
            break *entry;
        }
        x86_64::instructions::interrupts::enable_and_hlt();
    };
    let index = slot.core_id as usize;
    let core = loop {
        if let Some(cores) = CORES.get() {
            break cores[index];
        }
        core::hint::spin_loop();
    };
    entry(&core)
}
