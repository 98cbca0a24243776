//! The physical frame allocator: hands out page-aligned, physically contiguous runs of RAM.
//!
//! It keeps a sorted list of free ranges built from the usable memory map minus reserved
//! ranges (low memory, the kernel image, loader structures). Allocation carves a run out of
//! the first range that fits and never returns a byte twice: frames are not freed, since
//! everything Ferrule allocates (stacks, page tables, DMA rings, buffer pools) lives until
//! the machine stops.

/// Size of one frame.
pub const FRAME_SIZE: u64 = 4096;
/// Most free ranges tracked (each allocation may split one range in two).
pub const MAX_FREE_RANGES: usize = 256;

/// Why an allocation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// No free range holds a run of the asked size and alignment.
    OutOfMemory,
    /// The alignment is not a power of two of at least one frame, or the length is zero.
    BadRequest,
    /// Too many fragments to track another split.
    TooFragmented,
}

impl core::fmt::Display for FrameError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            FrameError::OutOfMemory => "out of physical memory for this size and alignment",
            FrameError::BadRequest => "bad allocation request (zero length or bad alignment)",
            FrameError::TooFragmented => "free memory is too fragmented to track",
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Range {
    start: u64,
    end: u64,
}

/// Free physical memory, as sorted, disjoint, frame-aligned ranges.
#[derive(Clone, Debug)]
pub struct FrameAllocator {
    free: [Range; MAX_FREE_RANGES],
    count: usize,
}

impl Default for FrameAllocator {
    fn default() -> Self {
        Self::new()
    }
}

impl FrameAllocator {
    /// An allocator with no memory.
    pub const fn new() -> FrameAllocator {
        FrameAllocator {
            free: [Range { start: 0, end: 0 }; MAX_FREE_RANGES],
            count: 0,
        }
    }

    fn ranges(&self) -> &[Range] {
        &self.free[..self.count]
    }

    fn insert_at(&mut self, i: usize, r: Range) -> Result<(), FrameError> {
        if self.count == MAX_FREE_RANGES {
            return Err(FrameError::TooFragmented);
        }
        self.free.copy_within(i..self.count, i + 1);
        self.free[i] = r;
        self.count += 1;
        Ok(())
    }

    fn remove_at(&mut self, i: usize) {
        self.free.copy_within(i + 1..self.count, i);
        self.count -= 1;
    }

    /// Adds `[start, end)` as free memory, shrunk inward to frame boundaries and merged with
    /// neighbours. Overlaps with memory already free are merged, never counted twice.
    pub fn add(&mut self, start: u64, end: u64) -> Result<(), FrameError> {
        let start = start.saturating_add(FRAME_SIZE - 1) & !(FRAME_SIZE - 1);
        let end = end & !(FRAME_SIZE - 1);
        if end <= start {
            return Ok(());
        }
        let mut r = Range { start, end };
        // Absorb every range that touches or overlaps r.
        let mut i = 0;
        while i < self.count {
            let f = self.free[i];
            if f.end >= r.start && f.start <= r.end {
                r.start = r.start.min(f.start);
                r.end = r.end.max(f.end);
                self.remove_at(i);
            } else {
                i += 1;
            }
        }
        let pos = self
            .ranges()
            .iter()
            .position(|f| f.start > r.start)
            .unwrap_or(self.count);
        self.insert_at(pos, r)
    }

    /// Removes `[start, end)` (widened outward to frame boundaries) from free memory.
    pub fn reserve(&mut self, start: u64, end: u64) -> Result<(), FrameError> {
        let start = start & !(FRAME_SIZE - 1);
        let end = end.saturating_add(FRAME_SIZE - 1) & !(FRAME_SIZE - 1);
        if end <= start {
            return Ok(());
        }
        let mut i = 0;
        while i < self.count {
            let f = self.free[i];
            if f.end <= start || f.start >= end {
                i += 1;
                continue;
            }
            let left = Range {
                start: f.start,
                end: start.max(f.start),
            };
            let right = Range {
                start: end.min(f.end),
                end: f.end,
            };
            self.remove_at(i);
            if right.end > right.start {
                self.insert_at(i, right)?;
            }
            if left.end > left.start {
                self.insert_at(i, left)?;
                i += 1;
            }
            if right.end > right.start {
                i += 1;
            }
        }
        Ok(())
    }

    /// Allocates `len` bytes (rounded up to frames) of physically contiguous memory aligned
    /// to `align` (a power of two, at least [`FRAME_SIZE`]); returns the physical start.
    pub fn alloc(&mut self, len: u64, align: u64) -> Result<u64, FrameError> {
        self.alloc_above(len, align, 0)
    }

    /// Like [`FrameAllocator::alloc`], but the run starts at or above `min` (e.g. 4 GiB, to
    /// put DMA buffers where only 64-bit addressing reaches them).
    pub fn alloc_above(&mut self, len: u64, align: u64, min: u64) -> Result<u64, FrameError> {
        if len == 0 || !align.is_power_of_two() || align < FRAME_SIZE {
            return Err(FrameError::BadRequest);
        }
        let len = len
            .checked_add(FRAME_SIZE - 1)
            .ok_or(FrameError::BadRequest)?
            & !(FRAME_SIZE - 1);
        for i in 0..self.count {
            let f = self.free[i];
            let from = f.start.max(min);
            let Some(start) = from.checked_add(align - 1).map(|s| s & !(align - 1)) else {
                continue;
            };
            let Some(end) = start.checked_add(len) else {
                continue;
            };
            if end <= f.end {
                self.reserve(start, end)?;
                return Ok(start);
            }
        }
        Err(FrameError::OutOfMemory)
    }

    /// Free bytes left.
    pub fn free_bytes(&self) -> u64 {
        self.ranges().iter().map(|r| r.end - r.start).sum()
    }

    /// Whether `[start, end)` is entirely free.
    pub fn is_free(&self, start: u64, end: u64) -> bool {
        self.ranges()
            .iter()
            .any(|r| r.start <= start && end <= r.end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn alloc_above_starts_at_the_bound_and_keeps_the_rest_free() {
        let mut a = FrameAllocator::new();
        a.add(0x100000, 0x8000_0000).unwrap();
        a.add(0x1_0000_0000, 0x2_8000_0000).unwrap();
        let before = a.free_bytes();
        // Low allocations still come from the bottom.
        assert_eq!(a.alloc(0x1000, 0x1000), Ok(0x100000));
        // Above 4 GiB: the first fitting run at or past the bound, aligned.
        assert_eq!(a.alloc_above(0x3000, 0x1000, 1 << 32), Ok(0x1_0000_0000));
        assert_eq!(a.alloc_above(0x1000, 0x10000, 1 << 32), Ok(0x1_0001_0000));
        // A bound inside a free range splits it; the part below stays free.
        assert_eq!(a.alloc_above(0x1000, 0x1000, 0x4000_0123), Ok(0x4000_1000));
        assert!(a.is_free(0x4000_0000, 0x4000_1000));
        assert_eq!(a.free_bytes(), before - 0x1000 - 0x3000 - 0x1000 - 0x1000);
        // Nothing fits above the top of RAM.
        assert_eq!(
            a.alloc_above(0x1000, 0x1000, 0x2_8000_0000),
            Err(FrameError::OutOfMemory)
        );
    }

    #[test]
    fn reserve_splits_and_alloc_skips_reserved() {
        let mut a = FrameAllocator::new();
        a.add(0, 0x9fc00).unwrap();
        a.add(0x100000, 0x800000).unwrap();
        a.reserve(0, 0x100000).unwrap(); // low memory
        a.reserve(0x200000, 0x280000).unwrap(); // kernel image
        assert_eq!(a.free_bytes(), 0x700000 - 0x80000);
        let x = a.alloc(0x1000, 0x1000).unwrap();
        assert_eq!(x, 0x100000);
        let y = a.alloc(0x200000, 0x200000).unwrap();
        assert_eq!(y, 0x400000, "2 MiB aligned run above the kernel");
        assert!(!a.is_free(0x200000, 0x201000));
        assert!(a.is_free(0x101000, 0x102000));
    }

    #[test]
    fn bad_requests_and_exhaustion() {
        let mut a = FrameAllocator::new();
        a.add(0x100000, 0x104000).unwrap();
        assert_eq!(a.alloc(0, 4096), Err(FrameError::BadRequest));
        assert_eq!(a.alloc(4096, 3), Err(FrameError::BadRequest));
        assert_eq!(a.alloc(4096, 2048), Err(FrameError::BadRequest));
        assert_eq!(a.alloc(0x5000, 4096), Err(FrameError::OutOfMemory));
        for _ in 0..4 {
            a.alloc(1, 4096).unwrap();
        }
        assert_eq!(a.alloc(1, 4096), Err(FrameError::OutOfMemory));
        assert_eq!(a.free_bytes(), 0);
    }

    #[test]
    fn overlapping_adds_merge() {
        let mut a = FrameAllocator::new();
        a.add(0x1000, 0x5000).unwrap();
        a.add(0x3000, 0x8000).unwrap();
        a.add(0x8000, 0x9000).unwrap();
        assert_eq!(a.free_bytes(), 0x8000);
        assert_eq!(a.alloc(0x8000, 0x1000).unwrap(), 0x1000);
    }

    proptest! {
        /// No byte is ever handed out twice, nor outside usable memory, nor inside a
        /// reserved range, and every run has the asked alignment.
        #[test]
        fn never_hands_out_a_frame_twice(
            usable in prop::collection::vec((0u64..64, 1u64..32), 1..8),
            reserved in prop::collection::vec((0u64..96, 1u64..8), 0..6),
            reqs in prop::collection::vec((1u64..20_000, 0u32..5), 1..60),
        ) {
            let mut a = FrameAllocator::new();
            let usable: Vec<(u64, u64)> =
                usable.iter().map(|&(s, l)| (s * 0x3000, s * 0x3000 + l * 0x1800)).collect();
            let reserved: Vec<(u64, u64)> =
                reserved.iter().map(|&(s, l)| (s * 0x2000, s * 0x2000 + l * 0x1000)).collect();
            for &(s, e) in &usable { a.add(s, e).unwrap(); }
            for &(s, e) in &reserved { a.reserve(s, e).unwrap(); }
            let mut given: Vec<(u64, u64)> = Vec::new();
            for (len, align_pow) in reqs {
                let align = FRAME_SIZE << align_pow;
                let before = a.free_bytes();
                match a.alloc(len, align) {
                    Ok(start) => {
                        let end = start + len.div_ceil(FRAME_SIZE) * FRAME_SIZE;
                        prop_assert_eq!(start % align, 0);
                        for f in (start..end).step_by(FRAME_SIZE as usize) {
                            prop_assert!(usable.iter().any(|&(s, e)| s <= f && f + FRAME_SIZE <= e));
                        }
                        prop_assert!(reserved.iter().all(|&(s, e)| end <= s || start >= e));
                        prop_assert!(given.iter().all(|&(s, e)| end <= s || start >= e));
                        prop_assert_eq!(a.free_bytes(), before - (end - start));
                        given.push((start, end));
                    }
                    Err(e) => prop_assert!(e == FrameError::OutOfMemory || e == FrameError::TooFragmented),
                }
            }
        }
    }
}
