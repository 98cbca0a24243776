//! Receive cost benchmark: the driver's software cost per received frame.
//!
//! A fake device fills an igb receive ring in ordinary host memory with completed
//! descriptors (DD | EOP, length, RSS hash) exactly as the NIC would; only the driver's
//! `rx_batch` calls are timed (rdtsc and wall clock): reading write-back descriptors, handing
//! each frame to the closure, re-arming descriptors in place, one tail write per batch. The
//! tail write goes to `FakeRegs` (a mutex, logging off) standing in for the uncached MMIO
//! write. Printed, never asserted; compare with the ~50 cycles/frame receive budget of
//! nic-notes §4.
//!
//! Run: `cargo run --release -p drivers --example rx_cost [fills]`.

use drivers::fake::bench_rx_cost;
use drivers::RX_BATCH;

const RING: usize = 512;
const BUDGET_CYCLES: f64 = 50.0;

fn main() {
    let fills: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(4000);
    for size in [64usize, 512, 1514] {
        let r = bench_rx_cost::<RING>(fills, size);
        println!(
            "rx_cost {size:>4} B frames: {} frames, {} batches (batch {RX_BATCH}, ring {RING}): \
             {:.1} cycles/frame (TSC), {:.2} ns/frame; budget {BUDGET_CYCLES:.0} cycles/frame \
             -> {:.2}x budget",
            r.frames,
            r.batches,
            r.cycles_per_frame,
            r.ns_per_frame,
            r.cycles_per_frame / BUDGET_CYCLES
        );
    }
}
