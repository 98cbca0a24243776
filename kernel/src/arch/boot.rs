//! The first instructions: boot headers and the shared 32→64-bit trampoline.
//!
//! Two loaders enter here, both in 32-bit protected mode with paging off:
//! - QEMU `-kernel` through the Xen PVH ELF note (`EBX` = `hvm_start_info`);
//! - GRUB through the multiboot2 header (`EAX` = `0x36d76289`, `EBX` = boot information).
//!
//! `_start32` zeroes `.bss`, identity-maps the first 4 GiB with 2 MiB pages, enables long
//! mode and calls [`kernel_entry64`](super::kernel_entry64) with the magic and the pointer.
//! The kernel then builds its real page tables (see `mem::paging`).
//!
//! The application-processor trampoline (`ap_tramp_*`) is copied below 1 MiB by `smp` and
//! walks real mode → protected mode → long mode on the kernel's page tables, then finds its
//! own slot in `smp`'s table by APIC id and calls `ap_entry` on that slot's stack.

core::arch::global_asm!(
    r#"
    .section .multiboot2, "a"
    .balign 8
mb2_header:
    .long 0xE85250D6
    .long 0
    .long mb2_header_end - mb2_header
    .long 0x100000000 - (0xE85250D6 + (mb2_header_end - mb2_header))
    .balign 8
    .short 0
    .short 0
    .long 8
mb2_header_end:

    .section .note.Xen, "a", @note
    .balign 4
    .long 4
    .long 8
    .long 18
    .asciz "Xen"
    .balign 4
    .quad _start32
    .balign 4

    .section .text.boot, "ax"
    .code32
    .global _start32
_start32:
    cli
    cld
    mov %eax, %ebp
    mov %ebx, %esi

    mov $__bss_start, %edi
    mov $__bss_end, %ecx
    sub %edi, %ecx
    xor %eax, %eax
    rep stosb

    mov $boot_pdpt, %eax
    or $3, %eax
    mov %eax, boot_pml4

    mov $boot_pd, %eax
    or $3, %eax
    mov $boot_pdpt, %ebx
    mov $4, %ecx
1:
    mov %eax, (%ebx)
    add $4096, %eax
    add $8, %ebx
    loop 1b

    mov $0x83, %eax
    mov $boot_pd, %ebx
    mov $2048, %ecx
2:
    mov %eax, (%ebx)
    add $0x200000, %eax
    add $8, %ebx
    loop 2b

    mov $boot_pml4, %eax
    mov %eax, %cr3
    mov %cr4, %eax
    or $0x20, %eax
    mov %eax, %cr4
    mov $0xC0000080, %ecx
    rdmsr
    or $0x100, %eax
    wrmsr
    mov %cr0, %eax
    or $0x80000001, %eax
    mov %eax, %cr0

    lgdt boot_gdt_ptr
    ljmp $0x08, $start64

    .code64
start64:
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    xor %ax, %ax
    mov %ax, %fs
    mov %ax, %gs
    lea boot_stack_top(%rip), %rsp
    mov %ebp, %edi
    mov %esi, %esi
    xor %ebp, %ebp
    call kernel_entry64
3:
    hlt
    jmp 3b

    .section .rodata.boot_gdt, "a"
    .balign 16
boot_gdt:
    .quad 0
    .quad 0x00AF9A000000FFFF
    .quad 0x00CF92000000FFFF
boot_gdt_end:
boot_gdt_ptr:
    .short boot_gdt_end - boot_gdt - 1
    .quad boot_gdt

    .section .bss.boot_tables, "aw", @nobits
    .balign 4096
    .global boot_pml4
boot_pml4:
    .skip 4096
boot_pdpt:
    .skip 4096
boot_pd:
    .skip 4096 * 4
    .balign 4096
    .global boot_stack_guard
boot_stack_guard:
    .skip 4096
boot_stack:
    // 256 KiB: the boot core runs App::init, where an appliance opens its NICs (the runtime's
    // init, open_port and igb::open together took 78 KiB with 4096-entry rings and the
    // management plane; the guard page below turned the old 64 KiB into a reported overflow).
    .skip 262144
boot_stack_top:

    .section .rodata.ap_trampoline, "a"
    .code16
    .global ap_tramp_start
    .global ap_tramp_end
    .global ap_tramp_cr3
    .global ap_tramp_table
    .global ap_tramp_count
    .global ap_tramp_entry
ap_tramp_start:
    cli
    cld
    xor %ax, %ax
    mov %ax, %ds
    lgdtl (0x8000 + ap_gdt_ptr - ap_tramp_start)
    mov %cr0, %eax
    or $1, %eax
    mov %eax, %cr0
    ljmpl $0x08, $(0x8000 + ap_pm - ap_tramp_start)

    .code32
ap_pm:
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    mov %cr4, %eax
    or $0x20, %eax
    mov %eax, %cr4
    mov (0x8000 + ap_tramp_cr3 - ap_tramp_start), %eax
    mov %eax, %cr3
    mov $0xC0000080, %ecx
    rdmsr
    or $0x100, %eax
    wrmsr
    mov %cr0, %eax
    or $0x80000000, %eax
    mov %eax, %cr0
    ljmp $0x18, $(0x8000 + ap_lm - ap_tramp_start)

    .code64
ap_lm:
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    xor %ax, %ax
    mov %ax, %fs
    mov %ax, %gs
    // Which core is this? The x2APIC id from CPUID leaf 0xB where the CPU has it, else
    // the 8-bit xAPIC id from leaf 1. No stack is needed for any of this.
    mov $1, %eax
    cpuid
    shr $24, %ebx
    mov %ebx, %r8d
    xor %eax, %eax
    cpuid
    cmp $0xb, %eax
    jb 5f
    mov $0xb, %eax
    xor %ecx, %ecx
    cpuid
    mov %edx, %r8d
5:
    // Find this core's own slot (32 bytes: apic id, state, stack top, ...) and run on its
    // stack: a core that starts late still reads only what was written for it.
    mov (0x8000 + ap_tramp_table - ap_tramp_start), %rsi
    mov (0x8000 + ap_tramp_count - ap_tramp_start), %rcx
6:
    test %rcx, %rcx
    jz 4f
    cmp %r8d, (%rsi)
    je 7f
    add $32, %rsi
    dec %rcx
    jmp 6b
7:
    mov 8(%rsi), %rsp
    test %rsp, %rsp
    jz 4f
    mov %rsi, %rdi
    mov (0x8000 + ap_tramp_entry - ap_tramp_start), %rax
    call *%rax
4:
    cli
    hlt
    jmp 4b

    .balign 8
ap_gdt:
    .quad 0
    .quad 0x00CF9A000000FFFF
    .quad 0x00CF92000000FFFF
    .quad 0x00AF9A000000FFFF
ap_gdt_ptr:
    .short 31
    .long 0x8000 + ap_gdt - ap_tramp_start
    .balign 8
ap_tramp_cr3:
    .quad 0
ap_tramp_table:
    .quad 0
ap_tramp_count:
    .quad 0
ap_tramp_entry:
    .quad 0
ap_tramp_end:
    .text
"#,
    options(att_syntax)
);
