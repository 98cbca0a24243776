//! Host-only fakes: `FakeRegs` (a scripted register file that logs every read, write and
//! wait), `FakeHal` (heap DMA with phys == virt, a virtual clock, a PCI config map) and
//! `FakeRxDevice` (writes frames into a receive ring the way the NIC does).
//!
//! Built only for tests and with the `fake` feature; uses `std`.
#![allow(unsafe_code)]

extern crate std;

use std::boxed::Box;
use std::cell::Cell;
use std::collections::HashMap;
use std::format;
use std::string::String;
use std::sync::{Arc, Mutex};
use std::vec::Vec;

use core::ptr::NonNull;

use crate::dma::DmaRegion;
use crate::hal::{Hal, PciAddr};
use crate::regs::{Reg, RegIo};

/// One logged register access.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// A read and the value returned.
    Read(Reg, u32),
    /// A write and the value written.
    Write(Reg, u32),
    /// The start of a timed wait for `mask` bits to become set (`set`) or clear.
    Wait {
        /// Register polled.
        reg: Reg,
        /// Bits waited on.
        mask: u32,
        /// Waiting for set (true) or clear (false).
        set: bool,
    },
}

/// The register values a script hook may change.
#[derive(Debug, Default)]
pub struct Values(HashMap<u32, u32>);

impl Values {
    /// Current value (0 if never written).
    pub fn get(&self, reg: Reg) -> u32 {
        self.0.get(&reg.0).copied().unwrap_or(0)
    }
    /// Sets a value.
    pub fn set(&mut self, reg: Reg, v: u32) {
        self.0.insert(reg.0, v);
    }
}

type WriteHook = Box<dyn FnMut(u32, &mut Values) + Send>;

#[derive(Default)]
struct Inner {
    values: Values,
    log: Vec<Access>,
    logging: bool,
    hooks: HashMap<u32, WriteHook>,
    stuck: HashMap<u32, (u32, u32)>,
    clear_on_read: HashMap<u32, ()>,
}

/// A fake register file. Reads return the last value written (or set), except where a
/// script says otherwise; every access is logged in order. Clones share state.
#[derive(Clone)]
pub struct FakeRegs(Arc<Mutex<Inner>>);

impl Default for FakeRegs {
    fn default() -> Self {
        Self::new()
    }
}

/// One step of an expected register sequence, for [`FakeRegs::assert_sequence`].
#[derive(Debug, Clone, Copy)]
pub enum Step {
    /// Any write to the register.
    Write(Reg),
    /// A write whose value has all `mask` bits set.
    WriteSet(Reg, u32),
    /// A write whose value has all `mask` bits clear.
    WriteClear(Reg, u32),
    /// A write of exactly this value.
    WriteEq(Reg, u32),
    /// Any read of the register.
    Read(Reg),
    /// A timed wait on these bits of the register (set or clear).
    Wait(Reg, u32, bool),
}

impl Step {
    fn matches(&self, a: &Access) -> bool {
        match (*self, *a) {
            (Step::Write(r), Access::Write(r2, _)) => r == r2,
            (Step::WriteSet(r, m), Access::Write(r2, v)) => r == r2 && v & m == m,
            (Step::WriteClear(r, m), Access::Write(r2, v)) => r == r2 && v & m == 0,
            (Step::WriteEq(r, x), Access::Write(r2, v)) => r == r2 && v == x,
            (Step::Read(r), Access::Read(r2, _)) => r == r2,
            (Step::Wait(r, m, s), Access::Wait { reg, mask, set }) => {
                r == reg && m == mask && s == set
            }
            _ => false,
        }
    }
}

impl FakeRegs {
    /// An empty register file with logging on.
    pub fn new() -> Self {
        FakeRegs(Arc::new(Mutex::new(Inner {
            logging: true,
            ..Inner::default()
        })))
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets a register's value without logging (device-side change).
    pub fn set(&self, reg: Reg, v: u32) {
        self.inner().values.set(reg, v);
    }

    /// Current stored value (without logging).
    pub fn get(&self, reg: Reg) -> u32 {
        self.inner().values.get(reg)
    }

    /// Runs `f(written_value, values)` after every write to `reg` (the written value is
    /// already stored); `f` models the device's reaction.
    pub fn on_write(&self, reg: Reg, f: impl FnMut(u32, &mut Values) + Send + 'static) {
        self.inner().hooks.insert(reg.0, Box::new(f));
    }

    /// Forces the `mask` bits of `reg` to read as `value` forever (a bit that never sets).
    pub fn stick(&self, reg: Reg, mask: u32, value: u32) {
        self.inner().stuck.insert(reg.0, (mask, value & mask));
    }

    /// Makes `reg` clear-on-read (statistics registers).
    pub fn clear_on_read(&self, reg: Reg) {
        self.inner().clear_on_read.insert(reg.0, ());
    }

    /// Turns the access log on or off (off for benchmarks).
    pub fn set_logging(&self, on: bool) {
        self.inner().logging = on;
    }

    /// A copy of the access log.
    pub fn log(&self) -> Vec<Access> {
        self.inner().log.clone()
    }

    /// Empties the access log.
    pub fn clear_log(&self) {
        self.inner().log.clear();
    }

    /// Values written to `reg`, in order.
    pub fn writes_to(&self, reg: Reg) -> Vec<u32> {
        self.inner()
            .log
            .iter()
            .filter_map(|a| match a {
                Access::Write(r, v) if *r == reg => Some(*v),
                _ => None,
            })
            .collect()
    }

    /// Index in the log of the first access matching `step` at or after `from`.
    pub fn find(&self, step: Step, from: usize) -> Option<usize> {
        let inner = self.inner();
        inner.log[from.min(inner.log.len())..]
            .iter()
            .position(|a| step.matches(a))
            .map(|p| p + from)
    }

    /// Asserts the log contains `steps` in this order (other accesses may come between).
    /// Panics naming the first step that is missing or out of order.
    pub fn assert_sequence(&self, steps: &[Step]) {
        let mut pos = 0;
        for (k, step) in steps.iter().enumerate() {
            match self.find(*step, pos) {
                Some(p) => pos = p + 1,
                None => {
                    let anywhere = self.find(*step, 0);
                    panic!(
                        "step {k} {step:?} not found after log index {pos} (found anywhere: {anywhere:?})\n{}",
                        self.dump()
                    );
                }
            }
        }
    }

    /// The log, one access per line (for failure messages).
    pub fn dump(&self) -> String {
        let inner = self.inner();
        let mut s = String::new();
        for (i, a) in inner.log.iter().enumerate() {
            s += &format!("{i:5}: {a:x?}\n");
        }
        s
    }
}

impl RegIo for FakeRegs {
    fn read32(&self, reg: Reg) -> u32 {
        let mut inner = self.inner();
        let mut v = inner.values.get(reg);
        if let Some(&(mask, val)) = inner.stuck.get(&reg.0) {
            v = (v & !mask) | val;
        }
        if inner.clear_on_read.contains_key(&reg.0) {
            inner.values.set(reg, 0);
        }
        if inner.logging {
            inner.log.push(Access::Read(reg, v));
        }
        v
    }

    fn write32(&self, reg: Reg, value: u32) {
        let mut inner = self.inner();
        inner.values.set(reg, value);
        if inner.logging {
            inner.log.push(Access::Write(reg, value));
        }
        if let Some(mut hook) = inner.hooks.remove(&reg.0) {
            hook(value, &mut inner.values);
            inner.hooks.insert(reg.0, hook);
        }
    }

    /// Reads the containing 32-bit word (logged as a read of that word) and extracts.
    fn read16(&self, reg: Reg) -> u16 {
        (self.read32(Reg(reg.0 & !3)) >> ((reg.0 & 2) * 8)) as u16
    }

    /// Read-modify-writes the containing word without logging the read; the write is logged
    /// (and hooked) as a write of the whole word.
    fn write16(&self, reg: Reg, value: u16) {
        let word = Reg(reg.0 & !3);
        let shift = (reg.0 & 2) * 8;
        let old = self.get(word);
        self.write32(word, (old & !(0xFFFF << shift)) | (value as u32) << shift);
    }

    fn read8(&self, reg: Reg) -> u8 {
        (self.read32(Reg(reg.0 & !3)) >> ((reg.0 & 3) * 8)) as u8
    }

    fn write8(&self, reg: Reg, value: u8) {
        let word = Reg(reg.0 & !3);
        let shift = (reg.0 & 3) * 8;
        let old = self.get(word);
        self.write32(word, (old & !(0xFF << shift)) | (value as u32) << shift);
    }

    fn wait_begin(&self, reg: Reg, mask: u32, set: bool) {
        let mut inner = self.inner();
        if inner.logging {
            inner.log.push(Access::Wait { reg, mask, set });
        }
    }
}

/// A host `Hal`: DMA from the heap (phys == virt), a virtual clock that advances 1 µs per
/// `now_ns` call and by the full amount on `delay_ns`, and a PCI config map.
#[derive(Default)]
pub struct FakeHal {
    clock: Cell<u64>,
    allocs: Mutex<Vec<(usize, usize)>>,
    pci: Mutex<HashMap<(PciAddr, u16), u32>>,
    fail_dma_after: Cell<Option<usize>>,
}

impl FakeHal {
    /// A fresh fake platform.
    pub fn new() -> Self {
        Self::default()
    }

    /// Virtual time now (ns).
    pub fn time(&self) -> u64 {
        self.clock.get()
    }

    /// Makes every DMA allocation after the first `n` fail.
    pub fn fail_dma_after(&self, n: usize) {
        self.fail_dma_after.set(Some(n));
    }

    /// Sets a PCI config register.
    pub fn set_pci(&self, addr: PciAddr, off: u16, v: u32) {
        self.pci.lock().unwrap().insert((addr, off), v);
    }

    /// A PCI config register's value.
    pub fn get_pci(&self, addr: PciAddr, off: u16) -> u32 {
        self.pci
            .lock()
            .unwrap()
            .get(&(addr, off))
            .copied()
            .unwrap_or(0)
    }

    fn check(&self, phys: u64, len: usize) -> *mut u8 {
        let allocs = self.allocs.lock().unwrap();
        let p = phys as usize;
        assert!(
            allocs.iter().any(|&(a, l)| p >= a && p + len <= a + l),
            "device access {phys:#x}+{len} outside DMA memory"
        );
        p as *mut u8
    }

    /// Device-side DMA write of `data` at bus address `phys`.
    pub fn dma_write(&self, phys: u64, data: &[u8]) {
        let p = self.check(phys, data.len());
        // SAFETY: `check` proved the range lies inside one live allocation made by
        // `dma_alloc` (never freed); this models the device writing by DMA.
        unsafe { core::ptr::copy_nonoverlapping(data.as_ptr(), p, data.len()) }
    }

    /// Device-side DMA read of `len` bytes at bus address `phys`.
    pub fn dma_read(&self, phys: u64, len: usize) -> Vec<u8> {
        let p = self.check(phys, len);
        let mut v = std::vec![0u8; len];
        // SAFETY: as in `dma_write`.
        unsafe { core::ptr::copy_nonoverlapping(p, v.as_mut_ptr(), len) }
        v
    }
}

// SAFETY: allocations are zeroed, aligned, never freed or reused and (phys == virt)
// trivially contiguous; host memory is cache-coherent; the clock only moves forward.
unsafe impl Hal for FakeHal {
    fn dma_alloc(&self, size: usize, align: usize) -> Option<DmaRegion> {
        let mut allocs = self.allocs.lock().unwrap();
        if let Some(n) = self.fail_dma_after.get() {
            if allocs.len() >= n {
                return None;
            }
        }
        let region = DmaRegion::leak_zeroed(size, align)?;
        allocs.push((region.phys() as usize, size));
        Some(region)
    }

    fn map_mmio(&self, _phys: u64, _len: usize) -> Option<NonNull<u8>> {
        None
    }

    fn now_ns(&self) -> u64 {
        let t = self.clock.get() + 1_000;
        self.clock.set(t);
        t
    }

    fn delay_ns(&self, ns: u64) {
        self.clock.set(self.clock.get() + ns);
    }

    fn pci_read32(&self, addr: PciAddr, off: u16) -> u32 {
        self.get_pci(addr, off)
    }

    unsafe fn pci_write32(&self, addr: PciAddr, off: u16, value: u32) {
        self.set_pci(addr, off, value);
    }
}

/// Models a NIC's receive DMA engine on one advanced-descriptor ring: reads the ring
/// address from `RDBAL/RDBAH`, honours the tail register, writes frames and write-back
/// descriptors (DD | EOP, length, RSS hash) exactly as igb/ixgbe do.
pub struct FakeRxDevice {
    ring_phys: u64,
    entries: usize,
    head: usize,
    rdt: Reg,
}

impl FakeRxDevice {
    /// Attaches to a ring whose registers are at `rdbal`, `rdbah`, `rdlen`, `rdt`.
    pub fn new(regs: &FakeRegs, rdbal: Reg, rdbah: Reg, rdlen: Reg, rdt: Reg) -> Self {
        let ring_phys = regs.get(rdbal) as u64 | ((regs.get(rdbah) as u64) << 32);
        let entries = regs.get(rdlen) as usize / 16;
        FakeRxDevice {
            ring_phys,
            entries,
            head: 0,
            rdt,
        }
    }

    /// Descriptors the device may fill now (head up to tail - 1).
    pub fn room(&self, regs: &FakeRegs) -> usize {
        let tail = regs.get(self.rdt) as usize;
        (tail + self.entries - self.head) % self.entries
    }

    /// Delivers one frame with an RSS hash. Returns false (frame dropped) if the ring is full.
    pub fn deliver(&mut self, hal: &FakeHal, regs: &FakeRegs, frame: &[u8], rss: u32) -> bool {
        self.deliver_status(hal, regs, frame, rss, 0)
    }

    /// As [`Self::deliver`], with more write-back status/error bits (checksum results) than
    /// DD | EOP.
    pub fn deliver_status(
        &mut self,
        hal: &FakeHal,
        regs: &FakeRegs,
        frame: &[u8],
        rss: u32,
        status: u32,
    ) -> bool {
        self.deliver_wb(hal, regs, frame, rss, 3 | status)
    }

    /// One descriptor of a frame that spans several buffers (as a jumbo frame would): DD,
    /// and EOP only on its `last` part.
    pub fn deliver_part(
        &mut self,
        hal: &FakeHal,
        regs: &FakeRegs,
        part: &[u8],
        rss: u32,
        last: bool,
    ) -> bool {
        self.deliver_wb(hal, regs, part, rss, if last { 3 } else { 1 })
    }

    /// Writes `frame` and a write-back descriptor with exactly `status` (DD and EOP
    /// included or not) into the next descriptor.
    fn deliver_wb(
        &mut self,
        hal: &FakeHal,
        regs: &FakeRegs,
        frame: &[u8],
        rss: u32,
        status: u32,
    ) -> bool {
        if self.room(regs) == 0 {
            return false;
        }
        let d = self.ring_phys + (self.head * 16) as u64;
        let read = hal.dma_read(d, 8);
        let pkt = u64::from_le_bytes(read.try_into().unwrap_or([0; 8]));
        hal.dma_write(pkt, frame);
        let mut wb = [0u8; 16];
        wb[0..4].copy_from_slice(&1u32.to_le_bytes()); // rss type: TCP/IPv4
        wb[4..8].copy_from_slice(&rss.to_le_bytes());
        wb[12..14].copy_from_slice(&(frame.len() as u16).to_le_bytes());
        // Status last, as the device orders it (DD in it).
        hal.dma_write(d, &wb[..8]);
        hal.dma_write(d + 12, &wb[12..16]);
        hal.dma_write(d + 8, &status.to_le_bytes());
        self.head = (self.head + 1) % self.entries;
        true
    }
}

/// Result of [`bench_rx_cost`].
#[derive(Debug, Clone, Copy)]
pub struct RxCost {
    /// Frames received.
    pub frames: u64,
    /// `rx_batch` calls that returned frames.
    pub batches: u64,
    /// TSC cycles per frame (0 on non-x86_64 hosts).
    pub cycles_per_frame: f64,
    /// Wall-clock nanoseconds per frame.
    pub ns_per_frame: f64,
}

fn rdtsc() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: RDTSC reads the time-stamp counter; no memory effects, always present.
        unsafe { core::arch::x86_64::_rdtsc() }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        0
    }
}

/// Measures the driver's software cost per received frame: an igb receive ring of `RING`
/// descriptors in host memory is filled by [`FakeRxDevice`] with `frame_len`-byte frames
/// `fills` times; only the `rx_batch` calls that drain it (batch [`crate::RX_BATCH`]) are
/// timed. The closure touches the first and last byte, the RSS hash and the checksum
/// results of every frame. Used by `examples/rx_cost.rs`.
pub fn bench_rx_cost<const RING: usize>(fills: usize, frame_len: usize) -> RxCost {
    rx_cost::<RING>(fills, frame_len, false)
}

/// As [`bench_rx_cost`], through `rx_batch_frames` (the whole batch to one closure call,
/// which then visits every frame as `bench_rx_cost`'s closure does).
pub fn bench_rx_frames_cost<const RING: usize>(fills: usize, frame_len: usize) -> RxCost {
    rx_cost::<RING>(fills, frame_len, true)
}

fn rx_cost<const RING: usize>(fills: usize, frame_len: usize, whole: bool) -> RxCost {
    use crate::igb::{self, reg, IgbConfig};
    let regs = FakeRegs::new();
    regs.on_write(reg::CTRL, |v, r| r.set(reg::CTRL, v & !reg::CTRL_RST));
    regs.set(reg::RAH0, 1 << 31);
    regs.on_write(reg::MDIC, |v, r| r.set(reg::MDIC, v | reg::MDIC_READY));
    let hal = FakeHal::new();
    let Ok(mut parts) = igb::init::<_, _, RING, RING>(&hal, regs.clone(), &IgbConfig::symmetric(1))
    else {
        panic!("igb init against the model failed");
    };
    regs.set_logging(false);
    let mut dev = FakeRxDevice::new(
        &regs,
        reg::rdbal(0),
        reg::rdbah(0),
        reg::rdlen(0),
        reg::rdt(0),
    );
    let q = &mut parts.rx[0];
    let frame: Vec<u8> = (0..frame_len.clamp(1, crate::BUF_SIZE))
        .map(|i| i as u8)
        .collect();
    let (mut cycles, mut nanos, mut frames, mut batches) = (0u64, 0u128, 0u64, 0u64);
    let mut sink = 0u64;
    for f in 0..fills {
        while dev.deliver(&hal, &regs, &frame, f as u32) {}
        let t0 = std::time::Instant::now();
        let c0 = rdtsc();
        loop {
            let mut visit = |bytes: &[u8], meta: crate::RxMeta| {
                let last = bytes.last().copied().unwrap_or(0);
                sink = sink
                    .wrapping_add(bytes[0] as u64 + last as u64)
                    .wrapping_add(meta.rss_hash as u64)
                    .wrapping_add(meta.ip_csum as u64 + meta.l4_csum as u64);
            };
            let n = if whole {
                q.rx_batch_frames(|frames, metas| {
                    for (bytes, meta) in frames.iter().zip(metas) {
                        visit(bytes, *meta);
                    }
                })
            } else {
                q.rx_batch(visit)
            };
            if n == 0 {
                break;
            }
            frames += n as u64;
            batches += 1;
        }
        cycles += rdtsc().wrapping_sub(c0);
        nanos += t0.elapsed().as_nanos();
    }
    std::hint::black_box(sink);
    let per = |x: f64| if frames == 0 { 0.0 } else { x / frames as f64 };
    RxCost {
        frames,
        batches,
        cycles_per_frame: per(cycles as f64),
        ns_per_frame: per(nanos as f64),
    }
}
