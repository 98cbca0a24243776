//! Receive cost benchmark: the driver's software cost per received frame.
//!
//! A fake device fills an igb receive ring in ordinary host memory with completed
//! descriptors (DD | EOP, length, RSS hash) exactly as the NIC would; only the driver's
//! `rx_batch` calls (or `rx_batch_frames`, the whole batch to one closure call) are timed
//! (rdtsc and wall clock): reading write-back descriptors, handing the frames to the closure,
//! re-arming descriptors in place, one tail write per batch. The
//! tail write goes to `FakeRegs` (a mutex, logging off) standing in for the uncached MMIO
//! write. Printed, never asserted; compare with the ~50 cycles/frame receive budget of
//! nic-notes §4.
//!
//! Run: `cargo run --release -p drivers --example rx_cost [fills] [rx_batch|rx_batch_frames]`.

use drivers::fake::{bench_rx_cost, bench_rx_frames_cost, RxCost};
use drivers::RX_BATCH;

const RING: usize = 512;
const BUDGET_CYCLES: f64 = 50.0;

/// One receive API's benchmark: (fills, frame length) to its cost.
type Bench = fn(usize, usize) -> RxCost;

fn main() {
    let fills: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(4000);
    // Optionally one API only (e.g. to profile it alone).
    let only = std::env::args().nth(2);
    for size in [64usize, 512, 1514] {
        let apis: [(&str, Bench); 2] = [
            ("rx_batch", bench_rx_cost::<RING>),
            ("rx_batch_frames", bench_rx_frames_cost::<RING>),
        ];
        for (api, bench) in apis {
            if only.as_deref().is_some_and(|o| o != api) {
                continue;
            }
            let r = bench(fills, size);
            println!(
                "rx_cost {size:>4} B frames, {api}: {} frames, {} batches (batch {RX_BATCH}, \
                 ring {RING}): {:.1} cycles/frame (TSC), {:.2} ns/frame; budget \
                 {BUDGET_CYCLES:.0} cycles/frame -> {:.2}x budget",
                r.frames,
                r.batches,
                r.cycles_per_frame,
                r.ns_per_frame,
                r.cycles_per_frame / BUDGET_CYCLES
            );
        }
    }
}
