//! Software prefetch: a hint that a cache line will be read soon, so that the cache misses of
//! a group of frames overlap (`Monitor::read_ahead`). The only `unsafe` of the monitor.
#![allow(unsafe_code)]

/// Ask for the cache line holding `p` (any address: a prefetch never faults). A no-op on
/// targets other than x86_64.
#[inline(always)]
pub(crate) fn line(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `prefetcht0` only hints the cache: it reads no architectural state from the
    // address (an invalid or unmapped one is ignored, it never faults), writes no memory or
    // register and leaves the flags alone (`preserves_flags`), and uses no stack. It needs no
    // SSE state, so it is right on the soft-float guest target too.
    unsafe {
        core::arch::asm!(
            "prefetcht0 [{p}]",
            p = in(reg) p,
            options(nostack, readonly, preserves_flags)
        );
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Prefetch every cache line `v` spans, from its first byte to its last.
#[inline(always)]
pub(crate) fn lines<T>(v: &T) {
    let p = v as *const T as *const u8;
    let n = core::mem::size_of::<T>();
    // (A constant: unrolled.) One prefetch per 64 bytes from the first byte, and one of the
    // last byte, whose line the others miss when `v` does not start a line.
    let mut off = 0;
    while off < n {
        line(p.wrapping_add(off));
        off += 64;
    }
    if n > 0 {
        line(p.wrapping_add(n - 1));
    }
}

/// Prefetch every cache line `b` spans, from the line holding its first byte.
#[inline(always)]
pub(crate) fn span(b: &[u8]) {
    let p = b.as_ptr();
    let end = p.wrapping_add(b.len());
    let mut q = p.wrapping_sub(p as usize % 64);
    while q < end {
        line(q);
        q = q.wrapping_add(64);
    }
}
