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
/// Unix time in nanoseconds when `now_ns()` was 0, from the RTC (0: no reading).
static BOOT_UNIX_NS: AtomicU64 = AtomicU64::new(0);
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
    match read_rtc().map(|r| crate::rtc::unix_seconds(&r)) {
        Some(Ok(secs)) => {
            let boot = (secs * 1_000_000_000).saturating_sub(now_ns());
            BOOT_UNIX_NS.store(boot, Ordering::Relaxed);
            crate::console::info!("time: RTC says {} s since 1970 (UTC)", secs);
        }
        Some(Err(e)) => crate::console::warn!("time: {}; no wall clock", e),
        None => crate::console::warn!("time: the RTC never settled; no wall clock"),
    }
}

/// Reads the CMOS RTC's date and time registers once no update is in progress, twice in a
/// row with the same result (an update between the reads would mix two seconds). `None` if
/// it never settles within 10 attempts of at most 10 ms each.
fn read_rtc() -> Option<crate::rtc::RtcRegs> {
    // Ports 0x70 (CMOS index) and 0x71 (CMOS data): the RTC and CMOS RAM, used by nothing else
    // in Ferrule and only on the boot core before the other cores start. Reading a register
    // changes no memory; the SAFETY notes below rest on that.
    let mut index = PortWriteOnly::<u8>::new(0x70);
    let mut data = Port::<u8>::new(0x71);
    let mut reg = |r: u8| -> u8 {
        // SAFETY: see above: selects and reads one CMOS register.
        unsafe {
            index.write(r);
            data.read()
        }
    };
    let snapshot = |reg: &mut dyn FnMut(u8) -> u8| -> Option<crate::rtc::RtcRegs> {
        let deadline = Deadline::after(Duration::from_millis(10));
        while reg(0x0a) & 0x80 != 0 {
            if deadline.expired() {
                return None;
            }
        }
        Some(crate::rtc::RtcRegs {
            second: reg(0x00),
            minute: reg(0x02),
            hour: reg(0x04),
            day: reg(0x07),
            month: reg(0x08),
            year: reg(0x09),
            century: 0,
            status_b: reg(0x0b),
        })
    };
    let mut last = snapshot(&mut reg);
    for _ in 0..10 {
        let next = snapshot(&mut reg);
        if next.is_some() && next == last {
            return next;
        }
        last = next;
    }
    None
}

/// Unix time in nanoseconds (the RTC's reading at boot plus the time since), or `None` when
/// the RTC could not be read.
pub fn unix_ns() -> Option<u64> {
    match BOOT_UNIX_NS.load(Ordering::Relaxed) {
        0 => None,
        boot => Some(boot + now_ns()),
    }
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
