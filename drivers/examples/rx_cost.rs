//! Receive cost benchmark: the driver's software cost per received frame.
//!
//! A fake device (`drivers::fake::FakeRxDevice`) fills an igb receive ring in ordinary host
//! memory with completed descriptors (DD | EOP, length, RSS hash), exactly as the NIC would.
//! Only the driver's `rx_batch` calls are timed (rdtsc and wall clock): reading write-back
//! descriptors, handing each frame to the closure, re-arming the descriptor in place and one
//! tail write per batch. The tail write goes to `FakeRegs` (a mutex, logging off), which
//! stands in for the uncached MMIO write. Printed, never asserted; compare against the
//! ~50 cycles/frame receive budget of nic-notes §4.
//!
//! Run: `cargo run --release -p drivers --example rx_cost [fills]`.

use std::hint::black_box;
use std::time::Instant;

use drivers::fake::{FakeHal, FakeRegs, FakeRxDevice};
use drivers::igb::{self, reg, IgbConfig};
use drivers::RX_BATCH;

const RING: usize = 512;
const BUDGET_CYCLES: f64 = 50.0;

fn rdtsc() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: RDTSC has no memory effects; every x86_64 CPU implements it.
        unsafe { core::arch::x86_64::_rdtsc() }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        0
    }
}

/// A model 82576 that completes init (reset self-clears, MAC valid, MDIC brings link up).
fn model() -> FakeRegs {
    let r = FakeRegs::new();
    r.on_write(reg::CTRL, |v, regs| regs.set(reg::CTRL, v & !reg::CTRL_RST));
    r.set(reg::RAH0, 1 << 31);
    r.on_write(reg::MDIC, |v, regs| {
        regs.set(reg::MDIC, v | reg::MDIC_READY)
    });
    r
}

fn main() {
    let fills: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000);
    let (regs, hal) = (model(), FakeHal::new());
    let mut parts = igb::init::<_, _, RING, RING>(&hal, regs.clone(), &IgbConfig::symmetric(1))
        .expect("init against the model");
    regs.set_logging(false);
    let mut dev = FakeRxDevice::new(
        &regs,
        reg::rdbal(0),
        reg::rdbah(0),
        reg::rdlen(0),
        reg::rdt(0),
    );
    let q = &mut parts.rx[0];

    for (label, size) in [("64 B frames", 64usize), ("512 B frames", 512)] {
        let frame: Vec<u8> = (0..size).map(|i| i as u8).collect();
        let (mut cycles, mut nanos, mut frames, mut batches) = (0u64, 0u128, 0u64, 0u64);
        let mut sink = 0u64;
        for f in 0..fills {
            while dev.deliver(&hal, &regs, &frame, f as u32) {}
            let t0 = Instant::now();
            let c0 = rdtsc();
            loop {
                let n = q.rx_batch(|bytes, meta| {
                    // Touch the frame like a parser would: first and last byte, length, hash.
                    sink = sink
                        .wrapping_add(bytes[0] as u64 + bytes[bytes.len() - 1] as u64)
                        .wrapping_add(meta.rss_hash as u64);
                });
                if n == 0 {
                    break;
                }
                frames += n as u64;
                batches += 1;
            }
            cycles += rdtsc() - c0;
            nanos += t0.elapsed().as_nanos();
        }
        black_box(sink);
        let cpf = cycles as f64 / frames as f64;
        let npf = nanos as f64 / frames as f64;
        println!(
            "rx_cost {label}: {frames} frames in {batches} batches (batch {RX_BATCH}, ring {RING}): \
             {cpf:.1} cycles/frame (TSC), {npf:.2} ns/frame, budget {BUDGET_CYCLES:.0} cycles/frame \
             -> {:.2}x budget",
            cpf / BUDGET_CYCLES
        );
    }
}
