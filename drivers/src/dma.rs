//! `DmaRegion`: DMA memory shared with a device, with bounds-checked volatile access.
#![allow(unsafe_code)]

use core::ptr::NonNull;

/// A block of DMA memory: physically contiguous, zeroed, cache-coherent, never freed.
///
/// Drivers allocate all rings and buffers once at start and keep them for the life of the
/// appliance, so there is no deallocation. [`virt`](Self::virt) is the CPU's view,
/// [`phys`](Self::phys) the device's. Every access is volatile (the device writes
/// concurrently) and bounds-checked.
///
/// The safe accessors write through the region's pointer, so only the platform, which knows
/// what memory is free, may make one: [`DmaRegion::new`] is `unsafe` and the fields are
/// private. A region cannot be forged from safe code, neither by naming its fields:
///
/// ```compile_fail,E0451
/// use core::ptr::NonNull;
/// let mut r = drivers::DmaRegion { virt: NonNull::dangling(), phys: 0, len: 4096 };
/// r.write_u64(0, 0); // would write to any address
/// ```
///
/// nor by calling the constructor without `unsafe`:
///
/// ```compile_fail,E0133
/// use core::ptr::NonNull;
/// let mut r = drivers::DmaRegion::new(NonNull::new(0x1000 as *mut u8).unwrap(), 0x1000, 4096);
/// r.write_u64(0, 0);
/// ```
#[derive(Debug)]
pub struct DmaRegion {
    /// CPU (virtual) address of the first byte.
    virt: NonNull<u8>,
    /// Bus (physical) address of the first byte, as the device sees it.
    phys: u64,
    /// Length in bytes.
    len: usize,
}

// SAFETY: a `DmaRegion` is the exclusive owner of its memory (the contract of `new`: never
// handed out twice, never freed), so moving it to another core moves that ownership with it.
unsafe impl Send for DmaRegion {}

impl DmaRegion {
    /// Wraps `len` bytes of DMA memory at CPU address `virt`, bus address `phys`.
    ///
    /// ```
    /// # use core::ptr::NonNull;
    /// // A stand-in for the platform's allocator: leaked, zeroed, 8-aligned memory that a
    /// // host test's fake device addresses by its pointer.
    /// let mem: &'static mut [u64] = Box::leak(vec![0u64; 512].into_boxed_slice());
    /// let virt = NonNull::new(mem.as_mut_ptr().cast::<u8>()).unwrap();
    /// // SAFETY: the memory is leaked (never freed), zeroed, owned by nothing else from now
    /// // on, and on the host "phys" is the pointer itself.
    /// let mut r = unsafe { drivers::DmaRegion::new(virt, virt.as_ptr() as u64, 4096) };
    /// r.write_u64(8, 0x1234);
    /// assert_eq!(r.read_u32(8), 0x1234);
    /// ```
    ///
    /// # Safety
    ///
    /// For the rest of the program:
    /// - `virt..virt + len` is mapped, readable, writable and initialised (e.g. zeroed)
    ///   memory that is never freed or reused;
    /// - the region is owned by the new `DmaRegion` alone: no other `DmaRegion`, reference
    ///   or pointer the CPU uses reaches those bytes (only the device does, by DMA);
    /// - `phys` is the bus address of `virt` and the range is physically contiguous:
    ///   `phys + k` is the device address of `virt + k` for every `k < len`, so a device
    ///   given an address inside the region writes nothing outside it;
    /// - the memory is cache-coherent with device DMA.
    ///
    /// The kernel's allocator (`kernel::mem::dma_alloc`) keeps this contract; drivers get
    /// regions only from [`Hal::dma_alloc`](crate::Hal::dma_alloc).
    pub unsafe fn new(virt: NonNull<u8>, phys: u64, len: usize) -> Self {
        DmaRegion { virt, phys, len }
    }

    /// A host-only region over fresh zeroed heap memory that is leaked (never freed), with
    /// the pointer as its "bus address": what the fake platform hands its fake devices.
    /// `None` when `align` is not a power of two.
    #[cfg(any(test, feature = "fake"))]
    pub fn leak_zeroed(size: usize, align: usize) -> Option<Self> {
        extern crate std;
        let layout = std::alloc::Layout::from_size_align(size.max(1), align).ok()?;
        // SAFETY: the layout has a non-zero size.
        let virt = NonNull::new(unsafe { std::alloc::alloc_zeroed(layout) })?;
        // SAFETY: the allocation is fresh, zeroed, at least `size` bytes long, and leaked here (its
        // pointer lives on only in the region), so the region owns it alone for the rest of
        // the program; host memory is coherent and, on the host, the "bus address" of a byte
        // is its pointer, so the range is trivially contiguous.
        Some(unsafe { DmaRegion::new(virt, virt.as_ptr() as u64, size) })
    }

    /// CPU (virtual) address of the first byte. Using it is the caller's `unsafe` business.
    #[inline]
    pub fn virt(&self) -> NonNull<u8> {
        self.virt
    }

    /// Bus (physical) address of the first byte, as the device sees it.
    #[inline]
    pub fn phys(&self) -> u64 {
        self.phys
    }

    /// Length in bytes.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// True for an empty region (allocators never return one).
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

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
        // SAFETY: `at` checked bounds and alignment; the contract of `new` makes the region
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
