//! Time: the TSC calibrated against the PIT at boot, a monotonic clock and deadlines.
//!
//! Every wait on hardware in Ferrule goes through a [`Deadline`] so that it ends with a
//! named [`Timeout`] instead of hanging.

use crate::arch::rdtsc;
use core::sync::atomic::{AtomicU64, Ordering};
use core::time::Duration;
use x86_64::instructions::port::{Port, PortWriteOnly};

static TSC_HZ: AtomicU64 = AtomicU64::new(0);
static TSC_AT_BOOT: AtomicU64 = AtomicU64::new(0);
/// Assumed TSC rate until calibration (and if the PIT never answers).
const FALLBACK_HZ: u64 = 1_000_000_000;
const PIT_HZ: u64 = 1_193_182;

/// A wait on hardware that did not finish in time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeout;

impl core::fmt::Display for Timeout {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("timed out waiting for hardware")
    }
}

/// Calibrates the TSC over 10 ms of PIT channel 2.
pub fn init() {
    TSC_AT_BOOT.store(rdtsc(), Ordering::Relaxed);
    let hz = calibrate().unwrap_or_else(|| {
        crate::console::warn!("time: PIT did not answer; assuming a 1 GHz TSC");
        FALLBACK_HZ
    });
    TSC_HZ.store(hz, Ordering::Relaxed);
    crate::console::info!("time: TSC {} MHz", hz / 1_000_000);
}

fn calibrate() -> Option<u64> {
    let ticks: u64 = PIT_HZ / 100; // 10 ms

    // Port 0x61 (PIT channel 2 gate, speaker, channel 2 output), the PIT's mode register
    // and channel 2's counter: timers and a speaker, used by nothing else in Ferrule.
    // Writing them changes no memory; the SAFETY notes below rest on that.
    let mut control = Port::<u8>::new(0x61);
    let mut mode = PortWriteOnly::<u8>::new(0x43);
    let mut counter = PortWriteOnly::<u8>::new(0x42);
    // SAFETY: see above: PIT and speaker-gate registers only.
    let gate = unsafe { control.read() };
    // SAFETY: as above.
    unsafe {
        control.write((gate & !0x02) | 0x01); // gate on, speaker off
        mode.write(0xb0); // channel 2, lobyte/hibyte, mode 0
        counter.write((ticks & 0xff) as u8);
        counter.write((ticks >> 8) as u8);
    }
    let start = rdtsc();
    let mut elapsed = None;
    // Bounded by iterations, not time: the clock is what is being measured.
    for _ in 0..50_000_000u64 {
        // SAFETY: as above.
        if unsafe { control.read() } & 0x20 != 0 {
            elapsed = Some((rdtsc() - start) * 100);
            break;
        }
    }
    // SAFETY: as above: restores the gate as it was.
    unsafe { control.write(gate) };
    elapsed
}

/// TSC ticks per second.
pub fn tsc_hz() -> u64 {
    match TSC_HZ.load(Ordering::Relaxed) {
        0 => FALLBACK_HZ,
        hz => hz,
    }
}

/// Nanoseconds since boot (monotonic on every core: the TSC is invariant on the CPUs and
/// in the QEMU models Ferrule targets).
pub fn now_ns() -> u64 {
    let ticks = rdtsc().saturating_sub(TSC_AT_BOOT.load(Ordering::Relaxed));
    ((ticks as u128 * 1_000_000_000) / tsc_hz() as u128) as u64
}

/// Time since boot.
pub fn now() -> Duration {
    Duration::from_nanos(now_ns())
}

/// Busy-waits for `d`.
pub fn delay(d: Duration) {
    let end = now_ns().saturating_add(d.as_nanos() as u64);
    while now_ns() < end {
        core::hint::spin_loop();
    }
}

/// A point in time after which a wait gives up.
#[derive(Clone, Copy, Debug)]
pub struct Deadline(u64);

impl Deadline {
    /// The deadline `d` from now.
    pub fn after(d: Duration) -> Deadline {
        Deadline(now_ns().saturating_add(d.as_nanos() as u64))
    }

    /// Whether the deadline has passed.
    pub fn expired(&self) -> bool {
        now_ns() >= self.0
    }

    /// `Err(Timeout)` once the deadline has passed.
    pub fn check(&self) -> Result<(), Timeout> {
        if self.expired() {
            Err(Timeout)
        } else {
            Ok(())
        }
    }
}

/// Spins until `done()` or the timeout.
pub fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> Result<(), Timeout> {
    let deadline = Deadline::after(timeout);
    loop {
        if done() {
            return Ok(());
        }
        deadline.check()?;
        core::hint::spin_loop();
    }
}
