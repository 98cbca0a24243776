//! `DmaRegion`: DMA memory shared with a device, with bounds-checked volatile access.
#![allow(unsafe_code)]

use core::ptr::NonNull;

/// A block of DMA memory: physically contiguous, zeroed, cache-coherent, never freed.
///
/// Drivers allocate all rings and buffers once at start and keep them for the life of the
/// appliance, so there is no deallocation. `virt` is the CPU's view, `phys` the device's.
/// Every access is volatile (the device writes concurrently) and bounds-checked.
#[derive(Debug)]
pub struct DmaRegion {
    /// CPU (virtual) address of the first byte.
    pub virt: NonNull<u8>,
    /// Bus (physical) address of the first byte, as the device sees it.
    pub phys: u64,
    /// Length in bytes.
    pub len: usize,
}

// SAFETY: a `DmaRegion` is the exclusive owner of its memory (the `Hal` contract: never handed
// out twice, never freed), so moving it to another core moves that ownership with it.
unsafe impl Send for DmaRegion {}

impl DmaRegion {
    #[inline]
    fn at<T>(&self, off: usize) -> *mut T {
        let size = core::mem::size_of::<T>();
        assert!(
            off.is_multiple_of(size) && off + size <= self.len,
            "DMA access out of bounds"
        );
        self.virt.as_ptr().wrapping_add(off).cast::<T>()
    }

    /// Volatile read of the little-endian `u32` at byte offset `off` (must be 4-aligned).
    #[inline]
    pub fn read_u32(&self, off: usize) -> u32 {
        let p = self.at::<u32>(off);
        // SAFETY: `at` checked bounds and alignment; the `Hal` contract makes the region
        // valid, mapped and exclusively ours (shared only with the device, hence volatile).
        unsafe { p.read_volatile() }
    }

    /// Volatile read of the `u16` at byte offset `off` (must be 2-aligned).
    #[inline]
    pub fn read_u16(&self, off: usize) -> u16 {
        let p = self.at::<u16>(off);
        // SAFETY: as in `read_u32`.
        unsafe { p.read_volatile() }
    }

    /// Volatile write of the `u32` at byte offset `off` (must be 4-aligned).
    #[inline]
    pub fn write_u32(&mut self, off: usize, v: u32) {
        let p = self.at::<u32>(off);
        // SAFETY: as in `read_u32`.
        unsafe { p.write_volatile(v) }
    }

    /// Volatile write of the `u64` at byte offset `off` (must be 8-aligned).
    #[inline]
    pub fn write_u64(&mut self, off: usize, v: u64) {
        let p = self.at::<u64>(off);
        // SAFETY: as in `read_u32`.
        unsafe { p.write_volatile(v) }
    }

    /// Volatile write of a `u16` at byte offset `off` (must be 2-aligned).
    #[inline]
    pub fn write_u16(&mut self, off: usize, v: u16) {
        let p = self.at::<u16>(off);
        // SAFETY: as in `read_u32`.
        unsafe { p.write_volatile(v) }
    }

    /// The bytes `off..off + len` as a slice.
    ///
    /// # Safety
    ///
    /// The device must not write these bytes while the returned slice lives (the caller owns
    /// the buffer: its descriptor is done and not yet handed back).
    #[inline]
    pub unsafe fn bytes(&self, off: usize, len: usize) -> &[u8] {
        assert!(
            off <= self.len && len <= self.len - off,
            "DMA slice out of bounds"
        );
        // SAFETY: bounds checked above; the memory is valid and initialised (zeroed at
        // allocation, then written by the device); the caller guarantees no concurrent writes.
        unsafe { core::slice::from_raw_parts(self.virt.as_ptr().add(off), len) }
    }

    /// The bytes `off..off + len` as a mutable slice.
    ///
    /// # Safety
    ///
    /// The device must not read or write these bytes while the returned slice lives (the
    /// buffer's descriptor is not handed to the device).
    #[inline]
    pub unsafe fn bytes_mut(&mut self, off: usize, len: usize) -> &mut [u8] {
        assert!(
            off <= self.len && len <= self.len - off,
            "DMA slice out of bounds"
        );
        // SAFETY: bounds checked above, `&mut self` excludes other CPU access, and the
        // caller guarantees the device does not touch the range meanwhile.
        unsafe { core::slice::from_raw_parts_mut(self.virt.as_ptr().add(off), len) }
    }
}
