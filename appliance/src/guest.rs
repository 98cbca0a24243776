//! The image side: [`Runtime`] is the `kernel::App` that [`crate::main!`] boots.
//!
//! `init` (boot core): finds every supported NIC (`drivers::nic::kind_of` over the PCI scan;
//! other network controllers are named and left alone), opens each with one symmetric-RSS
//! queue per core (capped by the NIC: virtio-net has one queue, served by core 0), waits for
//! links, puts each core's queue handles in that core's slot, prints the memory budget and
//! refuses (every core fails with the reason) when the settings do not fit.
//!
//! `run` (every core): a core takes its own slot once, before its loop (a non-blocking
//! `try_lock` that only that core ever makes), builds its middlebox and `Monitor` on its own
//! storage, then loops: receive up to `Settings::batch` frames from each of its queues into
//! one monitor batch, each receive batch (up to `RX_BATCH` frames) shown to the monitor
//! whole first (`Monitor::read_ahead`) and then processed frame by frame; inline, send each
//! frame out of the paired port by its verdict and the injected frames out of the port of
//! their destination. Nothing in that loop allocates,
//! locks, prints or waits: callbacks and stats write to the core's log ring, drained to the
//! console outside the batch loop by a core that serves no queue if there is one, else by
//! each core when a poll found nothing (one line per empty poll), and fully at exit.

use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use drivers::igb::{self, IgbConfig};
use drivers::ixgbe::{self, IxgbeConfig};
use drivers::nic::{self, AnyCtl, Kind};
use drivers::ring::{AdvRxQueue, AdvTxQueue};
use drivers::virtio::{self, VirtioRx, VirtioTx};
use drivers::{Mmio, RX_BATCH};
use kernel::app::PciFunction;
use kernel::nic::{drivers_address, KernelHal};
use kernel::{println, time, App, AppError, Core, Machine};
use monitor::Verdict;
use monitor::{Bucket, DropReason, FlowExtra, FlowSlot, FragSlot, Middlebox, Monitor, Storage};

use crate::frags::{fate, frag_key, marks, Fate, FragHold, Held, HELD_PER_SLOT, HOLD_FRAME_MAX};
use crate::log::ring;
use crate::mgmt::flows::{empty_slot, Accounted, FlowAcct, RecordQueue};
use crate::mgmt::metrics::{sample, CoreMetrics, PathCounts};
use crate::mgmt::net::{PageInfo, Plane};
use crate::mgmt::MgmtPort;
use crate::{budget, Appliance, CoreInfo, Exit, Log, Mode, Program, Settings};

/// Most NIC ports the runtime drives.
pub const MAX_PORTS: usize = 8;
/// Bytes kept free beyond the monitors' storage (stacks, late allocations).
pub const RESERVE_BYTES: u64 = 4 << 20;
/// How long `init` waits for each link.
const LINK_TIMEOUT_NS: u64 = 10_000_000_000;
/// A serving core drains at most this many log bytes per empty poll when no core is free.
const DRAIN_PER_IDLE_POLL: usize = 1;
/// A free core drains up to this many bytes per ring per pass.
const DRAIN_PER_PASS: usize = 4096;
/// A serving core publishes its metrics after every batch that received frames, and at
/// least this often.
const PUBLISH_NS: u64 = 100_000_000;
/// Core 0, when it also runs the management plane, gives it one bounded pass whenever a poll
/// found no frame and at least this often under load.
const MGMT_PASS_NS: u64 = 1_000_000;
/// How long the plane goes on at the end of a run to send the last records.
const FINAL_EXPORT_NS: u64 = 5_000_000_000;
/// IPFIX records each core can have waiting for the management core.
const RECORDS_PER_CORE: usize = 4096;

/// Descriptors per virtio-net queue, whatever `Settings::ring` says: QEMU's virtio-net
/// offers 256 unless told otherwise (and virtio-net exists only in virtual machines).
pub const VIRTIO_RING: usize = 256;

/// A receive queue. virtio-net's queue structs grow with the ring size, so they live in
/// kernel memory and only a reference moves around (a core's stack is 64 KiB).
pub enum Rx<const N: usize> {
    /// igb or ixgbe.
    Intel(AdvRxQueue<Mmio, N>),
    /// virtio-net.
    Virtio(&'static mut VirtioRx<Mmio, VIRTIO_RING>),
}

/// A transmit queue (see [`Rx`]).
pub enum Tx<const N: usize> {
    /// igb or ixgbe.
    Intel(AdvTxQueue<Mmio, N>),
    /// virtio-net.
    Virtio(&'static mut VirtioTx<Mmio, VIRTIO_RING>),
}

impl<const N: usize> Rx<N> {
    #[inline]
    pub(crate) fn rx_batch<F: FnMut(&[u8], drivers::RxMeta)>(&mut self, f: F) -> usize {
        match self {
            Rx::Intel(q) => q.rx_batch(f),
            Rx::Virtio(q) => q.rx_batch(f),
        }
    }

    /// One receive batch (up to [`RX_BATCH`] frames) to `f` in one call.
    #[inline]
    pub(crate) fn rx_batch_frames<F: FnMut(&[&[u8]], &[drivers::RxMeta])>(
        &mut self,
        f: F,
    ) -> usize {
        match self {
            Rx::Intel(q) => q.rx_batch_frames(f),
            Rx::Virtio(q) => q.rx_batch_frames(f),
        }
    }
}

impl<const N: usize> Tx<N> {
    #[inline]
    pub(crate) fn tx_batch(&mut self, frames: &[&[u8]]) -> usize {
        match self {
            Tx::Intel(q) => q.tx_batch(frames),
            Tx::Virtio(q) => q.tx_batch(frames),
        }
    }
}

/// Moves `v` into kernel memory (boot time only).
fn boxed<T: Send + 'static>(v: T) -> Option<&'static mut T> {
    let mut v = Some(v);
    kernel::mem::alloc_slice(1, || v.take())
        .first_mut()
        .and_then(Option::as_mut)
}

type Opened<const N: usize> = (
    AnyCtl,
    heapless::Vec<Rx<N>, { nic::MAX_QUEUES }>,
    heapless::Vec<Tx<N>, { nic::MAX_QUEUES }>,
);

/// Opens one port with `rxq` receive queues (symmetric RSS) and `txq` transmit queues
/// (virtio-net: one of each, whatever is asked).
fn open_port<const N: usize>(
    hal: &KernelHal,
    f: &PciFunction,
    kind: Kind,
    rxq: u16,
    txq: u16,
) -> drivers::Result<Opened<N>> {
    let addr = drivers_address(f);
    let mut rx = heapless::Vec::new();
    let mut tx = heapless::Vec::new();
    let ctl = match kind {
        Kind::Igb => {
            let cfg = IgbConfig {
                tx_queues: txq,
                ..IgbConfig::symmetric(rxq)
            };
            let p = igb::open::<_, N, N>(hal, addr, &cfg)?;
            for q in p.rx {
                let _ = rx.push(Rx::Intel(q));
            }
            for q in p.tx {
                let _ = tx.push(Tx::Intel(q));
            }
            AnyCtl::Igb(p.ctl)
        }
        Kind::Ixgbe => {
            let cfg = IxgbeConfig {
                tx_queues: txq,
                ..IxgbeConfig::symmetric(rxq)
            };
            let p = ixgbe::open::<_, N, N>(hal, addr, &cfg)?;
            for q in p.rx {
                let _ = rx.push(Rx::Intel(q));
            }
            for q in p.tx {
                let _ = tx.push(Tx::Intel(q));
            }
            AnyCtl::Ixgbe(p.ctl)
        }
        Kind::Virtio => {
            let p = virtio::open::<_, VIRTIO_RING>(hal, addr)?;
            if let (Some(r), Some(t)) = (boxed(p.rx), boxed(p.tx)) {
                let _ = rx.push(Rx::Virtio(r));
                let _ = tx.push(Tx::Virtio(t));
            }
            AnyCtl::Virtio(p.ctl)
        }
    };
    Ok((ctl, rx, tx))
}

/// One core's queues: `(port, rx)` pairs and, inline, a transmit queue per port.
pub struct CoreQueues<const N: usize> {
    rx: heapless::Vec<(usize, Rx<N>), MAX_PORTS>,
    tx: [Option<Tx<N>>; MAX_PORTS],
}

impl<const N: usize> CoreQueues<N> {
    fn new() -> Self {
        CoreQueues {
            rx: heapless::Vec::new(),
            tx: core::array::from_fn(|_| None),
        }
    }
}

/// Each core's time of its last received frame (ns since boot, 0 = none yet), on its own
/// cache line: written only by that core, read by all for the idle exit.
#[repr(align(64))]
struct LastRx(AtomicU64);

/// Serving cores still in their loop.
static RUNNING: AtomicUsize = AtomicUsize::new(0);
/// Serving cores whose monitor is built.
static READY: AtomicUsize = AtomicUsize::new(0);

/// The runtime for program `P` with `N`-entry rings.
pub struct Runtime<P: Program, const N: usize> {
    machine: &'static Machine,
    refused: Option<&'static str>,
    ports: usize,
    /// The ports' control objects: used at the end of a run only (hardware counters).
    ctls: spin::Mutex<heapless::Vec<AnyCtl, MAX_PORTS>>,
    slots: &'static [spin::Mutex<Option<CoreQueues<N>>>],
    serving: usize,
    drainer: Option<usize>,
    /// Each serving core's time of its last received frame, indexed by core id.
    last_rx: &'static [LastRx],
    /// Each serving core's published counters (written by that core only).
    metrics: &'static [CoreMetrics],
    /// The management plane, taken once by the core that runs it.
    plane: spin::Mutex<Option<Plane<N>>>,
    /// Each serving core's IPFIX records on their way to the plane (empty: no export).
    records: &'static [RecordQueue],
    _p: core::marker::PhantomData<fn() -> P>,
}

fn kind_name(k: Kind) -> &'static str {
    match k {
        Kind::Igb => "igb",
        Kind::Ixgbe => "ixgbe",
        Kind::Virtio => "virtio-net",
    }
}

/// The port's queue cap: its family's RSS queues (I350 8, 82576 and 82599 16), virtio 1.
fn max_queues(f: &PciFunction) -> usize {
    nic::max_queues(f.vendor, f.device_id).max(1)
}

fn is_network_controller(f: &PciFunction) -> bool {
    f.class >> 16 == 0x02
}

impl<P: Program, const N: usize> Runtime<P, N> {
    fn settings() -> Settings {
        P::SETTINGS
    }

    fn refuse(m: &'static Machine, why: &'static str) -> Self {
        println!("appliance: refused: {}", why);
        Runtime {
            machine: m,
            refused: Some(why),
            ports: 0,
            ctls: spin::Mutex::new(heapless::Vec::new()),
            slots: &[],
            serving: 0,
            drainer: None,
            last_rx: &[],
            metrics: &[],
            plane: spin::Mutex::new(None),
            records: &[],
            _p: core::marker::PhantomData,
        }
    }
}

/// Per-flow state is created on the core that owns the flow; `Send` is what the kernel's
/// allocator asks of anything it hands out.
impl<P: Program, const N: usize> App for Runtime<P, N>
where
    <P::App as Middlebox>::Flow: Send,
{
    fn init(m: &'static Machine) -> Self {
        let s = Self::settings();
        let cores = m.cores.len();
        if let Err(why) = s.check() {
            return Self::refuse(m, why);
        }
        let inline = s.mode == Mode::Inline;
        println!(
            "appliance: {} mode, {} cores, per core {} flows {} chunks {} fragment slots, rings {}, batch {}",
            if inline { "inline" } else { "tap" },
            cores,
            s.flows,
            s.chunks,
            s.frag_slots,
            N,
            s.batch
        );

        // Discovery.
        let mut found: heapless::Vec<(PciFunction, Kind), MAX_PORTS> = heapless::Vec::new();
        for f in m.pci {
            match nic::kind_of(f.vendor, f.device_id) {
                Some(k) if found.push((*f, k)).is_err() => println!(
                    "appliance: {} ({}): more than {} ports; left alone",
                    f,
                    kind_name(k),
                    MAX_PORTS
                ),
                Some(_) => {}
                None if f.vendor == drivers::family::INTEL
                    && drivers::family::intel_model(f.device_id).is_some() =>
                {
                    if let Some(m) = drivers::family::intel_model(f.device_id) {
                        println!(
                            "appliance: {} is an Intel {} ({}), which Ferrule refuses: {}; left alone",
                            f,
                            m.name,
                            m.family.name(),
                            m.refused.unwrap_or("no driver")
                        );
                    }
                }
                None if is_network_controller(f) => println!(
                    "appliance: {} is a network controller Ferrule has no driver for \
                     (supported: igb, ixgbe, virtio-net); left alone",
                    f
                ),
                None => {}
            }
        }
        // The management port is not monitored.
        let mut mgmt_fn = None;
        if let Some(m) = s.mgmt {
            let idx = match m.port {
                MgmtPort::FirstVirtio => found.iter().position(|(_, k)| *k == Kind::Virtio),
                MgmtPort::LastVirtio => found.iter().rposition(|(_, k)| *k == Kind::Virtio),
                MgmtPort::Index(i) => (i < found.len()).then_some(i),
            };
            match idx {
                Some(i) => mgmt_fn = Some(found.remove(i)),
                None => println!(
                    "appliance: management port {:?} not found: metrics are not served",
                    m.port
                ),
            }
        }
        if inline && found.len() % 2 == 1 {
            if let Some((f, _)) = found.pop() {
                println!(
                    "appliance: {} has no pair port (inline pairs 0-1, 2-3, ...); left alone",
                    f
                );
            }
        }
        if found.is_empty() {
            return Self::refuse(
                m,
                "no supported NIC (igb, ixgbe, virtio-net) found; give the machine one",
            );
        }

        // Queues per port: one per core, capped by the NIC; inline pairs use the smaller cap
        // of the two so core q has receive and transmit queue q on both ports.
        let mut queues: heapless::Vec<usize, MAX_PORTS> = heapless::Vec::new();
        for (i, (f, _)) in found.iter().enumerate() {
            let mut q = max_queues(f).min(cores);
            if inline {
                if let Some((pf, _)) = found.get(i ^ 1) {
                    q = q.min(max_queues(pf));
                }
            }
            let _ = queues.push(q.max(1));
        }

        let hal = KernelHal;
        let slots: &'static mut [spin::Mutex<Option<CoreQueues<N>>>] =
            kernel::mem::alloc_slice(cores, || spin::Mutex::new(Some(CoreQueues::new())));
        let mut ports = 0usize;
        let mut ctls: heapless::Vec<AnyCtl, MAX_PORTS> = heapless::Vec::new();
        for (i, (f, k)) in found.iter().enumerate() {
            let q = queues[i];
            let txq = if inline { q } else { 1 };
            let (ctl, rxs, txs) = match open_port::<N>(&hal, f, *k, q as u16, txq as u16) {
                Ok(p) => p,
                Err(e) => {
                    println!(
                        "appliance: {} ({}) with {}-entry rings: {}",
                        f,
                        kind_name(*k),
                        N,
                        e
                    );
                    if inline {
                        return Self::refuse(m, "an inline port did not open");
                    }
                    continue;
                }
            };
            let port = ports;
            match ctl.wait_link(&hal, LINK_TIMEOUT_NS) {
                Ok(l) => println!(
                    "appliance: port {} {} {} link up {} Mb/s, {}-entry rings, {} queue{}{}",
                    port,
                    f,
                    kind_name(*k),
                    l.speed_mbps,
                    if *k == Kind::Virtio { VIRTIO_RING } else { N },
                    q,
                    if q == 1 { "" } else { "s" },
                    if *k == Kind::Virtio && cores > 1 {
                        " (virtio-net has one queue: served by core 0)"
                    } else {
                        ""
                    }
                ),
                Err(e) => println!(
                    "appliance: port {} {} {}: link not up ({}); polling anyway",
                    port,
                    f,
                    kind_name(*k),
                    e
                ),
            }
            for (qi, rx) in rxs.into_iter().enumerate() {
                if let Some(mut slot) = slots.get(qi).and_then(|s| s.try_lock()) {
                    if let Some(cq) = slot.as_mut() {
                        let _ = cq.rx.push((port, rx));
                    }
                }
            }
            if inline {
                for (qi, tx) in txs.into_iter().enumerate() {
                    if let Some(mut slot) = slots.get(qi).and_then(|s| s.try_lock()) {
                        if let Some(cq) = slot.as_mut() {
                            cq.tx[port] = Some(tx);
                        }
                    }
                }
            }
            let _ = ctls.push(ctl);
            ports += 1;
        }
        if ports == 0 {
            return Self::refuse(m, "no NIC could be opened");
        }
        let plane = match (s.mgmt, mgmt_fn) {
            (Some(mg), Some((f, k))) => match open_port::<N>(&hal, &f, k, 1, 1) {
                Ok((ctl, mut rxs, mut txs)) => {
                    let link = ctl.wait_link(&hal, LINK_TIMEOUT_NS).is_ok();
                    let mac = ctl.mac().0;
                    match (rxs.pop(), txs.pop()) {
                        (Some(rx), Some(tx)) => {
                            let p = Plane::new(mac, rx, tx, mg);
                            println!(
                                "appliance: management port {} {} mac {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x} link {} ipv4 {} http port {}",
                                f,
                                kind_name(k),
                                mac[0], mac[1], mac[2], mac[3], mac[4], mac[5],
                                if link { "up" } else { "down" },
                                Ipv4Text(p.ipv4),
                                mg.http_port
                            );
                            Some(p)
                        }
                        _ => None,
                    }
                }
                Err(e) => {
                    println!(
                        "appliance: management port {} ({}): {}; metrics are not served",
                        f,
                        kind_name(k),
                        e
                    );
                    None
                }
            },
            _ => None,
        };

        // Budget.
        let serving = slots
            .iter()
            .filter(|s| {
                s.try_lock()
                    .is_some_and(|g| g.as_ref().is_some_and(|c| !c.rx.is_empty()))
            })
            .count();
        // Per-core storage is sized by the cores that serve (at most the NICs' queue count).
        crate::log::init_rings(serving);
        let last_rx = kernel::mem::alloc_slice(serving, || LastRx(AtomicU64::new(0)));
        let per_core = budget::storage_bytes::<<P::App as Middlebox>::Flow>(&s);
        let free = kernel::mem::free_bytes();
        println!(
            "appliance: per-core storage {} bytes x {} cores = {} of {} free",
            per_core,
            serving,
            per_core.saturating_mul(serving as u64),
            free
        );
        if !budget::fits(per_core, serving as u64, free, RESERVE_BYTES) {
            return Self::refuse(
                m,
                "the settings' per-core storage does not fit in free memory: lower \
                 Settings::flows or Settings::chunks, or give the machine more memory",
            );
        }
        let drainer = (serving..cores).next();
        match drainer {
            Some(d) => println!("appliance: core {} drains the log rings", d),
            None => println!("appliance: no free core: each core drains its log when idle"),
        }
        let idle = cores - serving - drainer.map_or(0, |_| 1);
        if idle > 0 {
            println!(
                "appliance: cores {}..={} idle: the NICs have queues for {} of {} cores",
                cores - idle,
                cores - 1,
                serving,
                cores
            );
        }
        if plane.is_some() {
            match drainer {
                Some(d) => println!("appliance: core {} runs the management plane", d),
                None => println!(
                    "appliance: no free core: core 0 runs the management plane between its batches"
                ),
            }
        }
        let metrics: &'static [CoreMetrics] = kernel::mem::alloc_slice(serving, CoreMetrics::new);
        let mut plane = plane;
        let mut records: &'static [RecordQueue] = &[];
        if let (Some(p), Some(c)) = (plane.as_mut(), s.mgmt.and_then(|m| m.ipfix)) {
            records = kernel::mem::alloc_slice(serving, || {
                RecordQueue::new(kernel::mem::alloc_slice(RECORDS_PER_CORE, empty_slot))
            });
            p.set_export(c, records);
            println!(
                "appliance: IPFIX to {}.{}.{}.{}:{} (templates every {} s, active timeout {} s)",
                c.addr[0],
                c.addr[1],
                c.addr[2],
                c.addr[3],
                c.port,
                c.template_period_s,
                c.active_timeout_s
            );
        }
        RUNNING.store(serving, Ordering::Release);
        Runtime {
            machine: m,
            refused: None,
            ports,
            ctls: spin::Mutex::new(ctls),
            slots,
            serving,
            drainer,
            last_rx,
            metrics,
            plane: spin::Mutex::new(plane),
            records,
            _p: core::marker::PhantomData,
        }
    }

    fn run(&self, core: &Core) -> Result<(), AppError> {
        if let Some(why) = self.refused {
            return Err(AppError(why));
        }
        // Queues are assigned to cores 0..serving, so a core's slot is its own.
        let mine = self
            .slots
            .get(core.id)
            .and_then(|s| s.try_lock())
            .and_then(|mut g| g.take())
            .filter(|q| !q.rx.is_empty());
        match mine {
            Some(q) => self.serve(core.id, q),
            None if self.drainer == Some(core.id) => {
                self.drain_until_done();
                Ok(())
            }
            None => Ok(()),
        }
    }
}

/// Per-core packet-path counters of the runtime (the monitor keeps its own).
#[derive(Default, Clone, Copy)]
struct PathStats {
    frames: u64,
    forwarded: u64,
    rewritten: u64,
    verdict_drops: u64,
    tx_full: u64,
    injected: u64,
    inject_unrouted: u64,
    frags_held: u64,
    frags_unheld: u64,
    fwd_cycles: u64,
    fwd_frames: u64,
    busy_cycles: u64,
    /// The monitor's share of `busy_cycles`: `read_ahead`, `frame_with` and `end_batch`
    /// (the middlebox's callbacks included).
    mon_cycles: u64,
}

/// The last source MAC seen on each port, to send injected frames toward their destination.
struct Macs([[u8; 6]; MAX_PORTS]);

impl Macs {
    #[inline]
    fn learn(&mut self, port: usize, frame: &[u8]) {
        if let (Some(m), Some(src)) = (self.0.get_mut(port), frame.get(6..12)) {
            m.copy_from_slice(src);
        }
    }

    fn port_of(&self, frame: &[u8]) -> Option<usize> {
        let dst = frame.get(0..6)?;
        self.0.iter().position(|m| m[..] == *dst && *m != [0; 6])
    }
}

const _: () = assert!(budget::STAGE_FRAMES == RX_BATCH && RX_BATCH <= drivers::TX_BATCH);

/// Forwarded frames bound for one port, copied out of the receive buffers (which live only
/// inside `rx_batch`'s callback), so a whole receive batch leaves with one transmit call and
/// one doorbell instead of one per frame.
struct Stage {
    bufs: &'static mut [[u8; drivers::BUF_SIZE]],
    lens: [usize; RX_BATCH],
    n: usize,
}

impl Stage {
    /// Room for `frames` frames (a receive batch inline, none in tap mode).
    fn new(frames: usize) -> Stage {
        Stage {
            bufs: kernel::mem::alloc_slice(frames.min(RX_BATCH), || [0u8; drivers::BUF_SIZE]),
            lens: [0; RX_BATCH],
            n: 0,
        }
    }

    /// Stages `frame` for `tx` (sending what is staged first when the stage is full).
    #[inline]
    fn push<const N: usize>(
        &mut self,
        frame: &[u8],
        tx: Option<&mut Option<Tx<N>>>,
        st: &mut PathStats,
    ) {
        if self.n == self.bufs.len() {
            self.flush(tx, st);
        }
        match self.bufs.get_mut(self.n) {
            Some(b) if frame.len() <= b.len() => {
                b[..frame.len()].copy_from_slice(frame);
                self.lens[self.n] = frame.len();
                self.n += 1;
            }
            _ => st.tx_full += 1,
        }
    }

    /// Queues the staged frames on `tx`; what does not fit is counted and dropped.
    #[inline]
    fn flush<const N: usize>(&mut self, tx: Option<&mut Option<Tx<N>>>, st: &mut PathStats) {
        if self.n == 0 {
            return;
        }
        let mut refs: [&[u8]; RX_BATCH] = [&[]; RX_BATCH];
        for (i, r) in refs.iter_mut().enumerate().take(self.n) {
            *r = &self.bufs[i][..self.lens[i]];
        }
        let sent = match tx {
            Some(Some(t)) => t.tx_batch(&refs[..self.n]),
            _ => 0,
        };
        st.tx_full += (self.n - sent.min(self.n)) as u64;
        self.n = 0;
    }
}

/// Routes the injected frames: toward the port where their destination MAC was last seen as
/// a source, else out of `fallback` (the pair of the port the current frame came in on).
/// Frames staged for `staged_port` leave first, so order on the wire is kept.
fn send_injected<M: Middlebox, const N: usize>(
    mon: &mut Monitor<'_, M>,
    tx: &mut [Option<Tx<N>>; MAX_PORTS],
    macs: &Macs,
    fallback: Option<usize>,
    st: &mut PathStats,
    stage: &mut Stage,
    staged_port: usize,
) {
    mon.drain_injected(|f| {
        stage.flush(tx.get_mut(staged_port), st);
        match macs.port_of(f).or(fallback) {
            Some(p) => match tx.get_mut(p) {
                Some(Some(t)) => {
                    if t.tx_batch(&[f]) == 1 {
                        st.injected += 1;
                    } else {
                        st.tx_full += 1;
                    }
                }
                _ => st.tx_full += 1,
            },
            None => st.inject_unrouted += 1,
        }
    });
}

/// Prints everything in core `id`'s log ring (end of run only: it waits while the drainer
/// holds the ring for a moment).
fn flush_log(id: usize) {
    let r = ring(id);
    while r.used() > 0 {
        r.drain(usize::MAX, |l| println!("{}", l));
        core::hint::spin_loop();
    }
}

/// What the NIC checked of a received frame, in the monitor's terms (its intake then skips a
/// checksum the NIC found good and drops one it found bad).
#[inline]
fn rx_meta(m: drivers::RxMeta) -> monitor::RxMeta {
    let c = |c: drivers::CsumCheck| match c {
        drivers::CsumCheck::Unknown => monitor::RxCheck::Unknown,
        drivers::CsumCheck::Good => monitor::RxCheck::Good,
        drivers::CsumCheck::Bad => monitor::RxCheck::Bad,
    };
    monitor::RxMeta {
        ipv4: c(m.ip_csum),
        l4: c(m.l4_csum),
    }
}

struct Drops<'a>(&'a monitor::Counters);

impl core::fmt::Display for Drops<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let mut any = false;
        for r in DropReason::ALL {
            let n = self.0.drop_count(r);
            if n > 0 {
                write!(f, "{}{}={}", if any { "," } else { "" }, r.name(), n)?;
                any = true;
            }
        }
        if !any {
            f.write_str("none")?;
        }
        Ok(())
    }
}

impl<P: Program, const N: usize> Runtime<P, N>
where
    <P::App as Middlebox>::Flow: Send,
{
    fn serve(&self, id: usize, mut q: CoreQueues<N>) -> Result<(), AppError> {
        let s = Self::settings();
        let inline = s.mode == Mode::Inline;
        let storage = Storage {
            flows: kernel::mem::alloc_slice(s.flows, || FlowSlot::EMPTY),
            index: kernel::mem::alloc_slice(budget::index_len(s.flows), || Bucket::EMPTY),
            chunks: kernel::mem::alloc_slice(s.chunks, || monitor::EMPTY_CHUNK),
            links: kernel::mem::alloc_slice(s.chunks, || 0u32),
            frags: kernel::mem::alloc_slice(s.frag_slots, || FragSlot::EMPTY),
            frag_buf: kernel::mem::alloc_slice(budget::frag_buf_len(&s), || 0u8),
            extras: kernel::mem::alloc_slice(s.flows, || FlowExtra::EMPTY),
        };
        let mut log = Log::for_core(id);
        let info = CoreInfo {
            id,
            cores: self.serving,
            log,
        };
        let queue = self.records.get(id);
        let acct = kernel::mem::alloc_slice(if queue.is_some() { s.flows } else { 0 }, || {
            FlowAcct::default()
        });
        let active_s = s
            .mgmt
            .and_then(|m| m.ipfix)
            .map_or(0, |c| c.active_timeout_s);
        let mb = Accounted::new(P::App::new(&info), acct, queue, active_s);
        // A per-boot, per-core flow-hash key from the TSC (read twice, around other work).
        let key = [
            kernel::arch::rdtsc() ^ id as u64,
            kernel::arch::rdtsc().rotate_left(29),
        ];
        let cfg = monitor::Config {
            hash_key: key,
            ..s.monitor_config(id)
        };
        let mut mon = Monitor::new(mb, cfg, storage)
            .map_err(|_| AppError("the monitor refused its storage"))?;
        READY.fetch_add(1, Ordering::AcqRel);
        if id == 0 {
            let _ = time::wait_until(core::time::Duration::from_secs(10), || {
                READY.load(Ordering::Acquire) >= self.serving
            });
            println!(
                "appliance: ready, {} cores polling {} ports",
                self.serving, self.ports
            );
        }
        let own_drain = self.drainer.is_none();
        // With no free core, core 0 also runs the management plane between its batches.
        let mut plane = if own_drain && id == 0 {
            self.plane.try_lock().and_then(|mut g| g.take())
        } else {
            None
        };
        let mut next_mgmt = 0u64;
        let mut next_publish = 0u64;
        let hz = self.machine.tsc_hz.max(1);
        let start_ns = time::now_ns();
        let mut st = PathStats::default();
        let mut macs = Macs([[0; 6]; MAX_PORTS]);
        let mut stage = Stage::new(if inline { budget::STAGE_FRAMES } else { 0 });
        // Inline: IP fragments wait here for their datagram's verdict.
        let held_cap = if inline {
            s.frag_slots * HELD_PER_SLOT
        } else {
            0
        };
        let mut hold = FragHold::new(
            kernel::mem::alloc_slice(held_cap, || [0u8; HOLD_FRAME_MAX]),
            kernel::mem::alloc_slice(held_cap, || Held::EMPTY),
        );
        let period_ns = s.stats_period_s.saturating_mul(1_000_000_000);
        let mut next_stats = start_ns.saturating_add(period_ns);
        let mut frames_at_stats = 0u64;
        let CoreQueues { rx, tx } = &mut q;
        // The monitor's clock is Unix time (the RTC's reading at boot plus the TSC clock), so
        // `Ctx::now_us` and the IPFIX flow times are real dates; since boot if there is no RTC.
        let epoch_us = time::unix_ns().map_or(0, |u| u.saturating_sub(time::now_ns()) / 1000);
        loop {
            let t0 = kernel::arch::rdtsc();
            let now_ns = time::now_ns();
            let now_us = now_ns / 1000 + epoch_us;
            mon.begin_batch(now_us);
            let mut got = 0usize;
            // The monitor's own cycles in this batch (see `PathStats::mon_cycles`).
            let mut mon_cycles = 0u64;
            for (port, rxq) in rx.iter_mut() {
                let port = *port;
                loop {
                    // Each receive batch is first shown to the monitor whole (`read_ahead`:
                    // parse, hash and prefetch), then processed frame by frame as it arrived.
                    let k = if inline {
                        let out = port ^ 1;
                        let k = rxq.rx_batch_frames(|frames, metas| {
                            let m0 = kernel::arch::rdtsc();
                            mon.read_ahead(frames.iter().copied());
                            mon_cycles += kernel::arch::rdtsc().wrapping_sub(m0);
                            for (&f, &m) in frames.iter().zip(metas) {
                                macs.learn(port, f);
                                let before = marks(mon.counters());
                                let m0 = kernel::arch::rdtsc();
                                let verdict = mon.frame_with(f, now_us, rx_meta(m));
                                // The forwarding cost from here: verdict to frame queued on the
                                // pair port (staging copy here, transmit call below).
                                let c0 = kernel::arch::rdtsc();
                                mon_cycles += c0.wrapping_sub(m0);
                                let verdict = match verdict {
                                    Verdict::Forward => Some(true),
                                    Verdict::Drop => Some(false),
                                    Verdict::Rewritten(b) => {
                                        st.rewritten += 1;
                                        stage.push(b, tx.get_mut(out), &mut st);
                                        None
                                    }
                                };
                                if let Some(forward) = verdict {
                                    let fate = fate(before, marks(mon.counters()));
                                    let key = match fate {
                                        Fate::Whole => None,
                                        _ => frag_key(f),
                                    };
                                    let mut held = false;
                                    match (fate, key) {
                                        (Fate::Held, Some(k)) => {
                                            held = hold.hold(k, out, f, now_us);
                                            if held {
                                                st.frags_held += 1;
                                            } else {
                                                st.frags_unheld += 1;
                                            }
                                        }
                                        (Fate::Completed, Some(k)) if forward => {
                                            st.forwarded += hold.release(&k, |_, b| {
                                                stage.push(b, tx.get_mut(out), &mut st)
                                            })
                                                as u64;
                                        }
                                        (Fate::Completed, Some(k)) => {
                                            st.verdict_drops += hold.discard(&k) as u64;
                                        }
                                        _ => {}
                                    }
                                    if held {
                                    } else if forward {
                                        st.forwarded += 1;
                                        stage.push(f, tx.get_mut(out), &mut st);
                                    } else {
                                        st.verdict_drops += 1;
                                    }
                                }
                                st.fwd_cycles += kernel::arch::rdtsc().wrapping_sub(c0);
                                st.fwd_frames += 1;
                                send_injected(
                                    &mut mon,
                                    tx,
                                    &macs,
                                    Some(out),
                                    &mut st,
                                    &mut stage,
                                    out,
                                );
                            }
                        });
                        if k > 0 {
                            let c0 = kernel::arch::rdtsc();
                            stage.flush(tx.get_mut(out), &mut st);
                            st.fwd_cycles += kernel::arch::rdtsc().wrapping_sub(c0);
                        }
                        k
                    } else {
                        rxq.rx_batch_frames(|frames, metas| {
                            let m0 = kernel::arch::rdtsc();
                            mon.read_ahead(frames.iter().copied());
                            for (&f, &m) in frames.iter().zip(metas) {
                                let _ = mon.frame_with(f, now_us, rx_meta(m));
                            }
                            mon_cycles += kernel::arch::rdtsc().wrapping_sub(m0);
                        })
                    };
                    got += k;
                    if k < RX_BATCH || got >= s.batch {
                        break;
                    }
                }
            }
            let m0 = kernel::arch::rdtsc();
            mon.end_batch();
            mon_cycles += kernel::arch::rdtsc().wrapping_sub(m0);
            if inline {
                send_injected(&mut mon, tx, &macs, None, &mut st, &mut stage, 0);
                if !hold.is_empty() {
                    // Datagrams that never completed: forwarded once the monitor gave up.
                    let timeout = s.monitor.frag_timeout_us;
                    st.forwarded += hold.expire(now_us, timeout, |p, b| {
                        if let Some(Some(t)) = tx.get_mut(p) {
                            if t.tx_batch(&[b]) != 1 {
                                st.tx_full += 1;
                            }
                        }
                    }) as u64;
                }
            }
            if got > 0 {
                st.frames += got as u64;
                st.busy_cycles += kernel::arch::rdtsc().wrapping_sub(t0);
                st.mon_cycles += mon_cycles;
                if let Some(l) = self.last_rx.get(id) {
                    l.0.store(now_ns, Ordering::Relaxed);
                }
            }

            // Outside the batch: metrics, management, stats, log, exit.
            if got > 0 || now_ns >= next_publish {
                self.publish(id, &mon, &st);
                next_publish = now_ns.saturating_add(PUBLISH_NS);
            }
            if let Some(p) = plane.as_mut() {
                if got == 0 || now_ns >= next_mgmt {
                    self.mgmt_pass(p);
                    next_mgmt = now_ns.saturating_add(MGMT_PASS_NS);
                }
            }

            if period_ns > 0 && now_ns >= next_stats {
                let c = mon.counters();
                let secs = (s.stats_period_s).max(1);
                log.line(format_args!(
                    "appliance: stats core {} frames/s {} live {} pool {}/{} drops {} tx_full {} log {}/{} log_dropped {}",
                    id,
                    (st.frames - frames_at_stats) / secs,
                    mon.flow_count(),
                    s.chunks - mon.free_chunks(),
                    s.chunks,
                    Drops(c),
                    st.tx_full,
                    ring(id).used(),
                    crate::LOG_RING_BYTES,
                    ring(id).dropped()
                ));
                frames_at_stats = st.frames;
                next_stats = now_ns.saturating_add(period_ns);
            }
            if got == 0 {
                if own_drain {
                    ring(id).drain(DRAIN_PER_IDLE_POLL, |l| println!("{}", l));
                }
                if let Exit::Idle {
                    wait_first_s,
                    idle_s,
                } = s.exit
                {
                    let last = self
                        .last_rx
                        .iter()
                        .map(|l| l.0.load(Ordering::Relaxed))
                        .max()
                        .unwrap_or(0);
                    let idle = last != 0
                        && now_ns.saturating_sub(last) > idle_s.saturating_mul(1_000_000_000);
                    let waited = last == 0
                        && now_ns.saturating_sub(start_ns)
                            > wait_first_s.saturating_mul(1_000_000_000);
                    if idle || waited {
                        break;
                    }
                }
            }
        }

        mon.middlebox_mut().shutting_down();
        mon.close_all();
        if inline {
            send_injected(&mut mon, tx, &macs, None, &mut st, &mut stage, 0);
            // What is still held belongs to datagrams that never completed: forwarded.
            st.forwarded += hold.expire(0, 0, |p, b| {
                if let Some(Some(t)) = tx.get_mut(p) {
                    if t.tx_batch(&[b]) != 1 {
                        st.tx_full += 1;
                    }
                }
            }) as u64;
        }
        mon.middlebox_mut().inner.finish(&mut log);
        // The run is over: empty the ring now, so the summary lines below always fit (the
        // middlebox's last lines can fill it, e.g. flowlog's one per open connection).
        flush_log(id);
        self.publish(id, &mon, &st);
        let c = mon.counters().clone();
        let per = |cycles: u64, n: u64| cycles.checked_div(n).unwrap_or(0);
        log.line(format_args!(
            "appliance: core {} frames {} tcp {} flows {} dropped {} ({}) bytes_dropped {} pool_exhausted {}",
            id,
            st.frames,
            c.tcp_packets,
            c.flows_created,
            c.total_dropped(),
            Drops(&c),
            c.bytes_dropped,
            c.pool_exhausted
        ));
        let k = &c.checksums;
        log.line(format_args!(
            "appliance: core {} checksums {:?} from_nic {} computed {} offloaded {} bad_kept {}",
            id, s.monitor.checksums, k.from_nic, k.computed, k.offloaded, k.accepted_bad
        ));
        if inline {
            log.line(format_args!(
                "appliance: core {} forwarded {} rewritten {} verdict_drops {} injected {} tx_full {} inject_unrouted {} fragments_held {} fragments_not_held {} forward_cycles/frame {} monitor_cycles/frame {} cycles/frame {} (TSC {} MHz)",
                id,
                st.forwarded,
                st.rewritten,
                st.verdict_drops,
                st.injected,
                st.tx_full,
                st.inject_unrouted,
                st.frags_held,
                st.frags_unheld,
                per(st.fwd_cycles, st.fwd_frames),
                per(st.mon_cycles, st.frames),
                per(st.busy_cycles, st.frames),
                hz / 1_000_000
            ));
        } else {
            log.line(format_args!(
                "appliance: core {} monitor_cycles/frame {} cycles/frame {} (TSC {} MHz)",
                id,
                per(st.mon_cycles, st.frames),
                per(st.busy_cycles, st.frames),
                hz / 1_000_000
            ));
        }
        let dropped = ring(id).dropped();
        flush_log(id);
        println!("appliance: core {} log lines dropped {}", id, dropped);
        if id == 0 {
            // Every core is idle or done by now; the hardware's own counters tell what the
            // NIC could not deliver (e.g. a full ring).
            for (port, ctl) in self.ctls.lock().iter_mut().enumerate() {
                // QEMU's igb drops a frame for a full ring without counting it anywhere but
                // the overrun cause (read-to-clear, so this says whether any happened).
                let overrun = match ctl {
                    AnyCtl::Igb(c) => c.update_stats().rx_overruns > 0,
                    _ => false,
                };
                let (packets, dropped) = ctl.update_stats();
                println!(
                    "appliance: port {} nic rx_packets {} dropped {} overrun {}",
                    port,
                    packets,
                    dropped,
                    if overrun { "yes" } else { "no" }
                );
            }
        }
        RUNNING.fetch_sub(1, Ordering::AcqRel);
        if let Some(p) = plane.as_mut() {
            self.final_export(p);
            println!("{}", MgmtSummary(p));
        }
        Ok(())
    }

    /// At the end of a run: keeps the plane going until every serving core has finished and
    /// the records of the connections they ended (`close_all`) are sent, at most 5 s.
    fn final_export(&self, p: &mut Plane<N>) {
        let deadline = time::now_ns().saturating_add(FINAL_EXPORT_NS);
        loop {
            let done = RUNNING.load(Ordering::Acquire) == 0;
            self.mgmt_pass(p);
            if (done && !p.export_pending()) || time::now_ns() > deadline {
                return;
            }
            core::hint::spin_loop();
        }
    }

    /// Publishes core `id`'s counters for the management plane (relaxed atomic stores).
    fn publish<M: Middlebox>(&self, id: usize, mon: &Monitor<'_, M>, st: &PathStats) {
        let s = Self::settings();
        if let Some(m) = self.metrics.get(id) {
            let p = PathCounts {
                forwarded: st.forwarded,
                verdict_drops: st.verdict_drops,
                tx_full: st.tx_full,
                injected: st.injected,
                log_used: ring(id).used() as u64,
                log_dropped: ring(id).dropped(),
            };
            m.store(&sample(
                mon.counters(),
                mon.flow_count() as u64,
                s.chunks.saturating_sub(mon.free_chunks()) as u64,
                s.chunks as u64,
                p,
            ));
        }
    }

    /// One bounded pass of the management plane; the ports' hardware counters are read when
    /// no other core holds them.
    fn mgmt_pass(&self, p: &mut Plane<N>) -> bool {
        let mut g = self.ctls.try_lock();
        let mut info = PageInfo {
            app: P::NAME,
            version: P::VERSION,
            cores: self.metrics,
            ctls: g.as_mut().map(|v| &mut v[..]),
        };
        p.poll(&mut info)
    }

    /// The free core's loop: drain every serving core's ring and run the management plane
    /// until all serving cores have finished.
    fn drain_until_done(&self) {
        let mut plane = self.plane.try_lock().and_then(|mut g| g.take());
        loop {
            let done = RUNNING.load(Ordering::Acquire) == 0;
            let mut any = 0;
            for id in 0..self.serving {
                any += ring(id).drain(DRAIN_PER_PASS, |l| println!("{}", l));
            }
            if let Some(p) = plane.as_mut() {
                if !done && self.mgmt_pass(p) {
                    any += 1;
                }
            }
            if done && any == 0 {
                if let Some(p) = plane.as_mut() {
                    self.final_export(p);
                    println!("{}", MgmtSummary(p));
                }
                return;
            }
            if any == 0 {
                core::hint::spin_loop();
            }
        }
    }
}

/// The management plane's end-of-run line.
struct MgmtSummary<'a, const N: usize>(&'a Plane<N>);

impl<const N: usize> core::fmt::Display for MgmtSummary<'_, N> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let h = self.0.http_counts();
        write!(
            f,
            "appliance: mgmt http 200={} 400={} 404={} 405={} 500={} denied_frames {} ipfix_datagrams {} ipfix_records_dropped {}",
            h[0],
            h[1],
            h[2],
            h[3],
            h[4],
            self.0.denied(),
            self.0.ipfix_datagrams(),
            self.0.records_dropped()
        )
    }
}

/// An IPv4 address and prefix for the console (`dhcp` until a lease came).
struct Ipv4Text(Option<([u8; 4], u8)>);

impl core::fmt::Display for Ipv4Text {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.0 {
            Some((a, l)) => write!(f, "{}.{}.{}.{}/{}", a[0], a[1], a[2], a[3], l),
            None => f.write_str("dhcp"),
        }
    }
}
