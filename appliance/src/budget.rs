//! The memory one core's monitor storage takes, from [`Settings`] (host-testable).

use core::mem::size_of;

use monitor::{Bucket, Chunk, FlowSlot, FragSlot};

use crate::frags::{Held, HELD_PER_SLOT, HOLD_FRAME_MAX};
use crate::{Mode, Settings};

/// Frames are allocated in pages: each table is rounded up to this.
pub const PAGE: u64 = 4096;

fn pages(bytes: u64) -> u64 {
    bytes.max(1).div_ceil(PAGE) * PAGE
}

/// Length of the flow index for `flows` slots (the monitor wants a power of two ≥ 2×).
pub const fn index_len(flows: usize) -> usize {
    let n = if flows == 0 { 2 } else { flows * 2 };
    n.next_power_of_two()
}

/// Frames staged for one transmit call per receive batch (inline).
pub const STAGE_FRAMES: usize = 32;

/// Bytes of one core's storage for a middlebox with per-flow state `F`: flow slots, index,
/// chunk pool with its links, fragment table and, inline, the transmit stage and the held
/// IP fragments; each rounded up to whole pages.
pub fn storage_bytes<F>(s: &Settings) -> u64 {
    let flows = (s.flows * size_of::<FlowSlot<F>>()) as u64;
    let index = (index_len(s.flows) * size_of::<Bucket>()) as u64;
    let chunks = (s.chunks * size_of::<Chunk>()) as u64;
    let links = (s.chunks * size_of::<u32>()) as u64;
    let frags = (s.frag_slots * size_of::<FragSlot>()) as u64;
    let frag_buf = frag_buf_len(s) as u64;
    let extras = (s.flows * size_of::<monitor::FlowExtra>()) as u64;
    let mut total = pages(flows)
        + pages(index)
        + pages(chunks)
        + pages(links)
        + pages(frags)
        + pages(frag_buf)
        + pages(extras);
    if s.mode == Mode::Inline {
        let held = s.frag_slots * HELD_PER_SLOT;
        total += pages((STAGE_FRAMES * HOLD_FRAME_MAX) as u64)
            + pages((held * HOLD_FRAME_MAX) as u64)
            + pages((held * size_of::<Held>()) as u64);
    }
    total
}

/// Bytes of the buffer a core assembles complete IP datagrams in (none without fragment slots).
pub fn frag_buf_len(s: &Settings) -> usize {
    if s.frag_slots > 0 {
        monitor::FRAG_DATAGRAM_MAX
    } else {
        0
    }
}

/// Whether `cores` cores' storage fits in `free` bytes, keeping `reserve` bytes back.
pub fn fits(per_core: u64, cores: u64, free: u64, reserve: u64) -> bool {
    per_core
        .checked_mul(cores)
        .and_then(|t| t.checked_add(reserve))
        .is_some_and(|t| t <= free)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_grows_with_every_table() {
        let s = Settings::DEFAULT;
        let base = storage_bytes::<()>(&s);
        assert_eq!(base % PAGE, 0);
        // The chunk pool dominates: 16 MiB of chunks.
        assert!(base >= 16 << 20, "{base}");
        for more in [
            Settings {
                flows: s.flows * 2,
                ..s
            },
            Settings {
                chunks: s.chunks + 1,
                ..s
            },
            Settings {
                frag_slots: s.frag_slots * 4,
                ..s
            },
        ] {
            assert!(storage_bytes::<()>(&more) > base);
        }
        assert!(storage_bytes::<[u8; 512]>(&s) > base);
        let inline = Settings {
            mode: Mode::Inline,
            ..s
        };
        assert!(
            storage_bytes::<()>(&inline) >= base + (s.frag_slots * HELD_PER_SLOT * 2048) as u64
        );
    }

    #[test]
    fn fit_keeps_the_reserve_and_never_overflows() {
        assert!(fits(10, 4, 50, 10));
        assert!(!fits(10, 4, 49, 10));
        assert!(!fits(u64::MAX, 2, u64::MAX, 0));
        assert_eq!(index_len(4096), 8192);
        assert_eq!(index_len(3000), 8192);
        assert_eq!(index_len(0), 2);
    }
}
