//! Per-core GDT and TSS. The TSS gives double faults their own stack (IST 1), so a stack
//! overflow is reported instead of escalating to a triple fault.

use core::sync::atomic::{AtomicBool, Ordering};
use x86_64::instructions::segmentation::{Segment, CS, DS, ES, SS};
use x86_64::instructions::tables::load_tss;
use x86_64::structures::gdt::{Descriptor, GlobalDescriptorTable, SegmentSelector};
use x86_64::structures::tss::TaskStateSegment;
use x86_64::VirtAddr;

/// IST slot (0-based, i.e. IST1) used for double faults.
pub const DOUBLE_FAULT_IST: u16 = 0;
/// Size of each core's double-fault stack.
pub const FAULT_STACK_SIZE: usize = 16 * 1024;

/// One core's descriptor tables.
pub struct CoreTables {
    gdt: GlobalDescriptorTable,
    tss: TaskStateSegment,
}

/// The boot core's double-fault stack with its guard page below (static: it is loaded
/// before the frame allocator exists; the guard is unmapped once paging is up).
#[repr(C, align(4096))]
struct BootFaultStack {
    guard: [u8; 4096],
    stack: [u8; FAULT_STACK_SIZE],
}

static BOOT_DONE: AtomicBool = AtomicBool::new(false);
static mut BOOT_STORAGE: CoreTables = CoreTables {
    gdt: GlobalDescriptorTable::new(),
    tss: TaskStateSegment::new(),
};
static mut BOOT_FAULT_STACK: BootFaultStack = BootFaultStack {
    guard: [0; 4096],
    stack: [0; FAULT_STACK_SIZE],
};

/// Address of the boot core's double-fault stack guard page.
pub(crate) fn boot_fault_guard() -> u64 {
    core::ptr::addr_of!(BOOT_FAULT_STACK) as u64
}

fn load(tables: &'static mut CoreTables, fault_stack_top: u64) {
    tables.tss.interrupt_stack_table[DOUBLE_FAULT_IST as usize] = VirtAddr::new(fault_stack_top);
    let tss: &'static TaskStateSegment = &tables.tss;
    let code = tables.gdt.append(Descriptor::kernel_code_segment());
    let data = tables.gdt.append(Descriptor::kernel_data_segment());
    let tss_sel = tables.gdt.append(Descriptor::tss_segment(tss));
    let gdt: &'static GlobalDescriptorTable = &tables.gdt;
    gdt.load();
    set_segments(code, data, tss_sel);
}

fn set_segments(code: SegmentSelector, data: SegmentSelector, tss: SegmentSelector) {
    // SAFETY: the selectors index the GDT just loaded, which lives for the rest of the run,
    // with a 64-bit code segment, a data segment and this core's TSS.
    unsafe {
        CS::set_reg(code);
        DS::set_reg(data);
        ES::set_reg(data);
        SS::set_reg(data);
        load_tss(tss);
    }
}

/// Loads the boot core's tables (static storage: no allocator exists yet). Runs once.
pub fn init_boot_core() {
    if BOOT_DONE.swap(true, Ordering::AcqRel) {
        return;
    }
    // SAFETY: the swap above lets exactly one caller through, once, so this is the only
    // reference ever made to `BOOT_STORAGE`.
    let tables: &'static mut CoreTables = unsafe { &mut *core::ptr::addr_of_mut!(BOOT_STORAGE) };
    let top = boot_fault_guard() + 4096 + FAULT_STACK_SIZE as u64;
    load(tables, top);
}

/// Loads freshly allocated tables on an application processor, whose double-fault stack
/// (with its guard page) the boot core allocated: `fault_stack_top` is its top.
pub(crate) fn init_ap(fault_stack_top: u64) {
    let tables = crate::mem::alloc_static(CoreTables {
        gdt: GlobalDescriptorTable::new(),
        tss: TaskStateSegment::new(),
    });
    load(tables, fault_stack_top);
}
