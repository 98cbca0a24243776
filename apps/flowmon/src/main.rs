//! The default Ferrule appliance: the first igb port with one symmetric-RSS queue per core,
//! one flow monitor per core, and a line on the console for every TCP connection it saw:
//!
//! `flow core C CLIENT -> SERVER c2s N s2c M holes H client STATE server STATE`
//!
//! Each core polls its own queue and feeds its own monitor in batches (no locks, no
//! allocation on that path); the middlebox reads every byte of both directions with `peek`.
//! When traffic has stopped for [`IDLE_SECONDS`] (or none came for [`WAIT_SECONDS`]), each
//! core ends its open connections, prints them and a summary line, and the run ends.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
use kernel::{App, AppError, Core, Machine};

#[cfg(target_os = "none")]
use guest::FlowMon;

/// Seconds without a frame on any core, after traffic started, before the report.
pub const IDLE_SECONDS: u64 = 3;
/// Seconds to wait for the first frame.
pub const WAIT_SECONDS: u64 = 60;

/// Host stand-in so the crate builds and lints with plain cargo.
#[cfg(not(target_os = "none"))]
struct FlowMon;

#[cfg(not(target_os = "none"))]
impl App for FlowMon {
    fn init(_: &'static Machine) -> Self {
        FlowMon
    }
    fn run(&self, _: &Core) -> Result<(), AppError> {
        Err(AppError("flowmon runs only as a Ferrule image"))
    }
}

kernel::main!(FlowMon);

#[cfg(target_os = "none")]
mod guest {
    use super::{IDLE_SECONDS, WAIT_SECONDS};
    use core::sync::atomic::{AtomicU64, Ordering};
    use drivers::igb::{self, IgbConfig, IgbRx};
    use drivers::Mmio;
    use kernel::nic::{drivers_address, KernelHal};
    use kernel::{println, time, App, AppError, Core, Machine};
    use monitor::{
        Bucket, Config, Ctx, Event, FlowSlot, FragSlot, Hook, Middlebox, Monitor, Side, Storage,
        EMPTY_CHUNK,
    };

    const RING: usize = 4096;
    const MAX_QUEUES: usize = 16;
    /// Per core: live connections, and 4 KiB chunks of stream buffer (16 MiB).
    const FLOWS: usize = 4096;
    const CHUNKS: usize = 4096;

    /// Per-connection counters.
    #[derive(Default)]
    pub struct Counts {
        bytes: [u64; 2],
    }

    /// Prints one line per connection as it ends.
    pub struct Report {
        core: usize,
        buf: [u8; 2048],
        flows: u64,
    }

    impl Middlebox for Report {
        type Flow = Counts;

        fn init(&mut self, reg: &mut monitor::Registry) {
            reg.subscribe(Event::CONN_NEW_DATA, Hook::Rcv);
            reg.subscribe(Event::CONN_END, Hook::Any);
        }

        fn on_event(&mut self, cx: &mut Ctx<'_, '_, Counts>, ev: Event, _: Hook, side: Side) {
            let Some(flow) = cx.flow() else { return };
            if ev == Event::CONN_NEW_DATA {
                while let Ok(n) = cx.peek(flow, side, &mut self.buf) {
                    if n == 0 {
                        break;
                    }
                    if let Some(c) = cx.user() {
                        c.bytes[side.index()] += n as u64;
                    }
                }
                return;
            }
            // CONN_END: count what lies past holes too.
            let mut holes = 0;
            for s in Side::BOTH {
                let mut frags = [monitor::Frag { offset: 0, len: 0 }; 8];
                if let Ok(n) = cx.frag_info(flow, s, &mut frags) {
                    holes += n.saturating_sub(1);
                    let tail: u64 = frags.iter().take(n.min(8)).skip(1).map(|f| f.len).sum();
                    if let Some(c) = cx.user() {
                        c.bytes[s.index()] += tail;
                    }
                }
            }
            let (Ok(e), Ok(cs), Ok(ss)) = (
                cx.endpoints(flow),
                cx.tcp_state(flow, Side::Client),
                cx.tcp_state(flow, Side::Server),
            ) else {
                return;
            };
            let b = cx.user().map_or([0, 0], |c| c.bytes);
            self.flows += 1;
            println!(
                "flow core {} {} -> {} c2s {} s2c {} holes {} client {} server {}",
                self.core,
                core::net::SocketAddr::new(e.client.0, e.client.1),
                core::net::SocketAddr::new(e.server.0, e.server.1),
                b[Side::Server.index()],
                b[Side::Client.index()],
                holes,
                cs.name(),
                ss.name()
            );
        }
    }

    /// The appliance: one receive queue per core, handed over once.
    pub struct FlowMon {
        rx: [spin::Mutex<Option<IgbRx<Mmio, RING>>>; MAX_QUEUES],
        queues: usize,
        first_rx_ns: AtomicU64,
        last_rx_ns: AtomicU64,
    }

    impl App for FlowMon {
        fn init(m: &'static Machine) -> Self {
            let hal = KernelHal;
            let Some(dev) = m
                .pci
                .iter()
                .find(|d| d.vendor == 0x8086 && d.device_id == 0x10c9)
            else {
                panic!("flowmon needs an igb NIC (8086:10c9); run it with `--nic igb`");
            };
            let queues = m.cores.len().min(MAX_QUEUES);
            let cfg = IgbConfig::symmetric(queues as u16);
            let parts = match igb::open::<_, RING, RING>(&hal, drivers_address(dev), &cfg) {
                Ok(p) => p,
                Err(e) => panic!("igb init: {e}"),
            };
            match parts.ctl.wait_link(&hal, 10_000_000_000) {
                Ok(l) => println!(
                    "flowmon: igb {} link up {} Mb/s, {} queues",
                    dev, l.speed_mbps, queues
                ),
                Err(e) => panic!("igb link: {e}"),
            }
            let mut rxs = parts.rx.into_iter();
            FlowMon {
                rx: core::array::from_fn(|_| spin::Mutex::new(rxs.next())),
                queues,
                first_rx_ns: AtomicU64::new(0),
                last_rx_ns: AtomicU64::new(0),
            }
        }

        fn run(&self, core: &Core) -> Result<(), AppError> {
            if core.id >= self.queues {
                return Ok(());
            }
            let mut q = self.rx[core.id]
                .lock()
                .take()
                .ok_or(AppError("no queue for this core"))?;
            let storage = Storage {
                flows: kernel::mem::alloc_slice(FLOWS, || FlowSlot::EMPTY),
                index: kernel::mem::alloc_slice(FLOWS * 2, || Bucket::EMPTY),
                chunks: kernel::mem::alloc_slice(CHUNKS, || EMPTY_CHUNK),
                links: kernel::mem::alloc_slice(CHUNKS, || 0u32),
                frags: kernel::mem::alloc_slice(64, || FragSlot::EMPTY),
            };
            let cfg = Config {
                core: core.id as u16,
                pickup: true,
                ..Config::DEFAULT
            };
            let report = Report {
                core: core.id,
                buf: [0; 2048],
                flows: 0,
            };
            let mut mon =
                Monitor::new(report, cfg, storage).map_err(|_| AppError("monitor storage"))?;
            if core.id == 0 {
                println!("flowmon: ready, {} cores watching", self.queues);
            }
            let start = time::now_ns();
            let mut frames = 0u64;
            loop {
                let now = time::now_ns();
                mon.begin_batch(now / 1000);
                let n = q.rx_batch(|f, _| {
                    let _ = mon.frame(f, now / 1000);
                });
                mon.end_batch();
                if n > 0 {
                    frames += n as u64;
                    self.last_rx_ns.fetch_max(now, Ordering::Relaxed);
                    let _ = self.first_rx_ns.compare_exchange(
                        0,
                        now,
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    );
                    continue;
                }
                let last = self.last_rx_ns.load(Ordering::Relaxed);
                let idle = last != 0 && now.saturating_sub(last) > IDLE_SECONDS * 1_000_000_000;
                let waited = last == 0 && now.saturating_sub(start) > WAIT_SECONDS * 1_000_000_000;
                if idle || waited {
                    break;
                }
            }
            mon.close_all();
            let c = mon.counters();
            println!(
                "flowmon: core {} frames {} tcp {} connections {} dropped {}",
                core.id,
                frames,
                c.tcp_packets,
                mon.middlebox().flows,
                c.total_dropped()
            );
            Ok(())
        }
    }
}
