//! Exceptions: one IDT shared by every core, with an entry stub per CPU exception.
//!
//! Ferrule runs with interrupts off (poll mode), so every exception is fatal: the handler
//! prints the exception, its error code, the faulting address (CR2 for page faults), RIP
//! and the general registers, then ends the run with failure.

use core::fmt::Write;
use x86_64::registers::control::Cr2;
use x86_64::structures::idt::InterruptDescriptorTable;
use x86_64::VirtAddr;

// Entry stubs: push a zero error code where the CPU pushes none, then the vector, save the
// general registers and call `exception_dispatch` with a pointer to the saved frame.
core::arch::global_asm!(
    r#"
    .macro EXC_NOERR n
    .global exc_stub_\n
exc_stub_\n:
    push $0
    push $\n
    jmp exc_common
    .endm
    .macro EXC_ERR n
    .global exc_stub_\n
exc_stub_\n:
    push $\n
    jmp exc_common
    .endm

    .text
    EXC_NOERR 0
    EXC_NOERR 1
    EXC_NOERR 2
    EXC_NOERR 3
    EXC_NOERR 4
    EXC_NOERR 5
    EXC_NOERR 6
    EXC_NOERR 7
    EXC_ERR 8
    EXC_NOERR 9
    EXC_ERR 10
    EXC_ERR 11
    EXC_ERR 12
    EXC_ERR 13
    EXC_ERR 14
    EXC_NOERR 15
    EXC_NOERR 16
    EXC_ERR 17
    EXC_NOERR 18
    EXC_NOERR 19
    EXC_NOERR 20
    EXC_ERR 21
    EXC_NOERR 22
    EXC_NOERR 23
    EXC_NOERR 24
    EXC_NOERR 25
    EXC_NOERR 26
    EXC_NOERR 27
    EXC_NOERR 28
    EXC_ERR 29
    EXC_ERR 30
    EXC_NOERR 31

exc_common:
    push %rax
    push %rbx
    push %rcx
    push %rdx
    push %rsi
    push %rdi
    push %rbp
    push %r8
    push %r9
    push %r10
    push %r11
    push %r12
    push %r13
    push %r14
    push %r15
    mov %rsp, %rdi
    and $-16, %rsp
    call exception_dispatch
1:
    hlt
    jmp 1b

    // The wake-up IPI: acknowledge it and return to the `hlt` loop that waits for it.
    // Only caller-saved registers need saving around the Rust call (the guest has no SSE).
    .global wake_stub
wake_stub:
    push %rax
    push %rcx
    push %rdx
    push %rsi
    push %rdi
    push %r8
    push %r9
    push %r10
    push %r11
    call wake_eoi
    pop %r11
    pop %r10
    pop %r9
    pop %r8
    pop %rdi
    pop %rsi
    pop %rdx
    pop %rcx
    pop %rax
    iretq

    // A spurious APIC interrupt needs no EOI.
    .global spurious_stub
spurious_stub:
    iretq

    .section .rodata.exc_table, "a"
    .balign 8
    .global exc_stub_table
exc_stub_table:
    .quad exc_stub_0, exc_stub_1, exc_stub_2, exc_stub_3
    .quad exc_stub_4, exc_stub_5, exc_stub_6, exc_stub_7
    .quad exc_stub_8, exc_stub_9, exc_stub_10, exc_stub_11
    .quad exc_stub_12, exc_stub_13, exc_stub_14, exc_stub_15
    .quad exc_stub_16, exc_stub_17, exc_stub_18, exc_stub_19
    .quad exc_stub_20, exc_stub_21, exc_stub_22, exc_stub_23
    .quad exc_stub_24, exc_stub_25, exc_stub_26, exc_stub_27
    .quad exc_stub_28, exc_stub_29, exc_stub_30, exc_stub_31
    .text
"#,
    options(att_syntax)
);

unsafe extern "C" {
    static exc_stub_table: [u64; 32];
    fn wake_stub();
    fn spurious_stub();
}

#[unsafe(no_mangle)]
extern "C" fn wake_eoi() {
    super::lapic::eoi();
}

/// The registers saved by the entry stub, lowest address first.
#[repr(C)]
#[derive(Debug)]
pub struct ExceptionFrame {
    r15: u64,
    r14: u64,
    r13: u64,
    r12: u64,
    r11: u64,
    r10: u64,
    r9: u64,
    r8: u64,
    rbp: u64,
    rdi: u64,
    rsi: u64,
    rdx: u64,
    rcx: u64,
    rbx: u64,
    rax: u64,
    vector: u64,
    error_code: u64,
    rip: u64,
    cs: u64,
    rflags: u64,
    rsp: u64,
    ss: u64,
}

const NAMES: [&str; 32] = [
    "divide error (#DE)",
    "debug (#DB)",
    "non-maskable interrupt (NMI)",
    "breakpoint (#BP)",
    "overflow (#OF)",
    "bound range exceeded (#BR)",
    "invalid opcode (#UD)",
    "device not available (#NM)",
    "double fault (#DF)",
    "coprocessor segment overrun",
    "invalid TSS (#TS)",
    "segment not present (#NP)",
    "stack-segment fault (#SS)",
    "general protection fault (#GP)",
    "page fault (#PF)",
    "reserved",
    "x87 floating-point error (#MF)",
    "alignment check (#AC)",
    "machine check (#MC)",
    "SIMD floating-point error (#XM)",
    "virtualization exception (#VE)",
    "control protection (#CP)",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "hypervisor injection (#HV)",
    "VMM communication (#VC)",
    "security exception (#SX)",
    "reserved",
];

#[unsafe(no_mangle)]
extern "C" fn exception_dispatch(frame: &ExceptionFrame) -> ! {
    let vector = frame.vector as usize;
    let name = NAMES.get(vector).copied().unwrap_or("unknown");
    let mut w = crate::console::RawWriter;
    // A push onto a guard page faults (#PF), and delivering that #PF on the same stack
    // faults again, which escalates to a double fault on its own IST stack: either way CR2
    // names the guard page.
    if vector == 8 || vector == 14 {
        let addr = Cr2::read_raw();
        if let Some((core, kind)) = crate::mem::guard_hit(addr) {
            let _ = writeln!(
                w,
                "\nstack overflow on core {core}: faulting address {addr:#018x} is the guard page below its {} stack",
                kind.name()
            );
        }
    }
    let _ = writeln!(
        w,
        "\nEXCEPTION: {name} (vector {vector}) on core apic {}",
        super::lapic::id()
    );
    let _ = writeln!(w, "  error code {:#x}", frame.error_code);
    if vector == 8 {
        let _ = writeln!(w, "  cr2 {:#018x}", Cr2::read_raw());
    }
    if vector == 14 {
        let addr = Cr2::read_raw();
        let e = frame.error_code;
        let _ = writeln!(
            w,
            "  faulting address {:#018x} ({}, {}, {})",
            addr,
            if e & 1 != 0 {
                "protection violation"
            } else {
                "page not present"
            },
            if e & 2 != 0 { "write" } else { "read" },
            if e & 16 != 0 {
                "instruction fetch"
            } else {
                "data access"
            },
        );
    }
    let f = frame;
    let _ = writeln!(
        w,
        "  rip {:#018x} cs {:#x} rflags {:#x} rsp {:#018x} ss {:#x}",
        f.rip, f.cs, f.rflags, f.rsp, f.ss
    );
    let _ = writeln!(
        w,
        "  rax {:#018x} rbx {:#018x} rcx {:#018x} rdx {:#018x}",
        f.rax, f.rbx, f.rcx, f.rdx
    );
    let _ = writeln!(
        w,
        "  rsi {:#018x} rdi {:#018x} rbp {:#018x} r8  {:#018x}",
        f.rsi, f.rdi, f.rbp, f.r8
    );
    let _ = writeln!(
        w,
        "  r9  {:#018x} r10 {:#018x} r11 {:#018x} r12 {:#018x}",
        f.r9, f.r10, f.r11, f.r12
    );
    let _ = writeln!(
        w,
        "  r13 {:#018x} r14 {:#018x} r15 {:#018x}",
        f.r13, f.r14, f.r15
    );
    crate::exit::finish(false)
}

static IDT: spin::Once<InterruptDescriptorTable> = spin::Once::new();

/// Builds the IDT (once) and loads it on the calling core.
pub fn init() {
    let idt = IDT.call_once(|| {
        let mut idt = InterruptDescriptorTable::new();
        // SAFETY: reading an immutable table of code addresses defined in the asm above.
        let stubs = unsafe { exc_stub_table };
        macro_rules! set {
            ($($field:ident = $vector:literal),* $(,)?) => {$(
                // SAFETY: each stub is a valid exception entry point that never returns.
                unsafe { idt.$field.set_handler_addr(VirtAddr::new(stubs[$vector])); }
            )*};
        }
        set!(
            divide_error = 0,
            debug = 1,
            non_maskable_interrupt = 2,
            breakpoint = 3,
            overflow = 4,
            bound_range_exceeded = 5,
            invalid_opcode = 6,
            device_not_available = 7,
            invalid_tss = 10,
            segment_not_present = 11,
            stack_segment_fault = 12,
            general_protection_fault = 13,
            page_fault = 14,
            x87_floating_point = 16,
            alignment_check = 17,
            machine_check = 18,
            simd_floating_point = 19,
            virtualization = 20,
            cp_protection_exception = 21,
            hv_injection_exception = 28,
            vmm_communication_exception = 29,
            security_exception = 30,
        );
        // SAFETY: as above, on the double-fault stack that `gdt` puts in every core's TSS.
        unsafe {
            idt.double_fault
                .set_handler_addr(VirtAddr::new(stubs[8]))
                .set_stack_index(super::gdt::DOUBLE_FAULT_IST);
        }
        // SAFETY: both stubs are interrupt entry points that save what they clobber and
        // end in `iretq`.
        unsafe {
            idt[super::lapic::WAKE_VECTOR]
                .set_handler_addr(VirtAddr::new(wake_stub as *const () as u64));
            idt[super::lapic::SPURIOUS_VECTOR]
                .set_handler_addr(VirtAddr::new(spurious_stub as *const () as u64));
        }
        idt
    });
    idt.load();
}
