//! Guest test app for the drivers QEMU tests: igb with one RSS queue per core.
//!
//! `init` opens the first igb (8086:10c9) with as many queues as cores, symmetric RSS, waits
//! for the link and prints `nic-rss link up <speed> Mb/s`. Every core then takes its queue and
//! polls it; when all cores poll, core 0 prints `nic-rss ready`. Each received frame is checked
//! against the software Toeplitz (queue and hash) and its id (last 4 payload bytes, big
//! endian) is summed. When the cores together have seen `EXPECTED` frames (or after
//! `RX_SECONDS`), each prints
//! `rx core C queue Q frames N idsum S idsq T mispredicted M badhash H`.
//! Core 0 then prints `nic-rss drops D`, transmits `TX_FRAMES` frames on queue 0 (frame k:
//! 60 + k bytes, byte i = (k * 7 + i) mod 256, broadcast destination), waits for their
//! completion and prints `nic-rss tx sent N`; it exits once the host sends a finish frame
//! (ethertype 0x88B6) after capturing them.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
use kernel::{App, AppError, Core, Machine};

#[cfg(target_os = "none")]
use guest::NicRss;

/// Host stand-in so the crate builds and lints with plain cargo (the image needs the guest).
#[cfg(not(target_os = "none"))]
struct NicRss;

#[cfg(not(target_os = "none"))]
impl App for NicRss {
    fn init(_: &'static Machine) -> Self {
        NicRss
    }
    fn run(&self, _: &Core) -> Result<(), AppError> {
        Err(AppError("nic-rss runs only as a Ferrule image"))
    }
}

kernel::main!(NicRss);

#[cfg(target_os = "none")]
mod guest {
    use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

    use drivers::igb::{self, Igb, IgbConfig, IgbRx, IgbTx};
    use drivers::toeplitz::{self, HashFields};
    use drivers::{Hal, Mmio, RssConfig};
    use kernel::nic::{drivers_address, KernelHal};
    use kernel::{println, App, AppError, Core, Machine};

    const RING: usize = 2048;
    const EXPECTED: u64 = 3000;
    const RX_SECONDS: u64 = 240;
    const TX_FRAMES: usize = 64;

    /// Most cores (= queues) the app handles.
    const MAX_CORES: usize = 16;

    /// The app: the port's control object and one receive queue slot per core.
    pub struct NicRss {
        ctl: spin::Mutex<Igb<Mmio>>,
        rss: RssConfig,
        rx: [spin::Mutex<Option<IgbRx<Mmio, RING>>>; MAX_CORES],
        tx: spin::Mutex<Option<IgbTx<Mmio, RING>>>,
        cores: usize,
        polling: AtomicUsize,
        total: AtomicU64,
        finished: AtomicUsize,
    }

    impl App for NicRss {
        fn init(m: &'static Machine) -> Self {
            let hal = KernelHal;
            let dev = m
                .pci
                .iter()
                .find(|d| d.vendor == 0x8086 && d.device_id == 0x10c9)
                .expect("no igb (8086:10c9)");
            let cores = m.cores.len().min(MAX_CORES);
            let cfg = IgbConfig::symmetric(cores as u16);
            let parts = match igb::open::<_, RING, RING>(&hal, drivers_address(dev), &cfg) {
                Ok(p) => p,
                Err(e) => panic!("igb init: {e}"),
            };
            match parts.ctl.wait_link(&hal, 10_000_000_000) {
                Ok(l) => println!("nic-rss link up {} Mb/s", l.speed_mbps),
                Err(e) => panic!("igb link: {e}"),
            }
            let mut rxs = parts.rx.into_iter();
            let rx: [spin::Mutex<Option<IgbRx<Mmio, RING>>>; MAX_CORES] =
                core::array::from_fn(|_| spin::Mutex::new(rxs.next()));
            let tx = parts.tx.into_iter().next();
            NicRss {
                ctl: spin::Mutex::new(parts.ctl),
                rss: cfg.rss,
                rx,
                tx: spin::Mutex::new(tx),
                cores,
                polling: AtomicUsize::new(0),
                total: AtomicU64::new(0),
                finished: AtomicUsize::new(0),
            }
        }

        fn run(&self, core: &Core) -> Result<(), AppError> {
            let hal = KernelHal;
            if core.id >= self.cores {
                return Ok(());
            }
            // Taken once; the queue is then used without any lock.
            let mut q = self.rx[core.id]
                .lock()
                .take()
                .ok_or(AppError("no queue for core"))?;
            self.polling.fetch_add(1, Ordering::SeqCst);
            if core.id == 0 {
                while self.polling.load(Ordering::SeqCst) < self.cores {
                    core::hint::spin_loop();
                }
                println!("nic-rss ready");
            }
            let deadline = hal.now_ns() + RX_SECONDS * 1_000_000_000;
            let (mut frames, mut idsum, mut idsq, mut mispredicted, mut badhash) =
                (0u64, 0u64, 0u64, 0u64, 0u64);
            while self.total.load(Ordering::Relaxed) < EXPECTED && hal.now_ns() < deadline {
                let n = q.rx_batch(|f, meta| {
                    let (hash, _) = toeplitz::frame_hash(&self.rss.key, HashFields::ALL, f);
                    if toeplitz::queue_for(hash, &self.rss.reta) != meta.queue {
                        mispredicted += 1;
                    }
                    if hash != meta.rss_hash {
                        badhash += 1;
                    }
                    let id = f
                        .len()
                        .checked_sub(4)
                        .map(|o| u32::from_be_bytes([f[o], f[o + 1], f[o + 2], f[o + 3]]))
                        .unwrap_or(0) as u64;
                    frames += 1;
                    idsum += id;
                    idsq += id * id;
                });
                if n > 0 {
                    self.total.fetch_add(n as u64, Ordering::Relaxed);
                }
            }
            println!(
                "rx core {} queue {} frames {} idsum {} idsq {} mispredicted {} badhash {}",
                core.id,
                q.queue(),
                frames,
                idsum,
                idsq,
                mispredicted,
                badhash
            );
            self.finished.fetch_add(1, Ordering::SeqCst);
            if core.id != 0 {
                return Ok(());
            }
            while self.finished.load(Ordering::SeqCst) < self.cores {
                core::hint::spin_loop();
            }
            let drops = {
                let mut ctl = self.ctl.lock();
                let s = ctl.update_stats();
                s.queue_drops.iter().sum::<u64>() + s.rx_missed
            };
            println!("nic-rss drops {}", drops);
            let mut tx = self.tx.lock().take().ok_or(AppError("no tx queue"))?;
            let mut sent = 0;
            while sent < TX_FRAMES && hal.now_ns() < deadline + 10_000_000_000 {
                let base = sent;
                sent += tx.tx_with(TX_FRAMES - sent, |k, buf| {
                    let k = base + k;
                    let len = 60 + k;
                    for (i, b) in buf[..len].iter_mut().enumerate() {
                        *b = ((k * 7 + i) % 256) as u8;
                    }
                    buf[..6].fill(0xFF);
                    len
                });
            }
            while tx.in_flight() > 0 && hal.now_ns() < deadline + 20_000_000_000 {
                tx.reclaim();
            }
            println!("nic-rss tx sent {} in flight {}", sent, tx.in_flight());
            // Stay up until the host has captured the frames (QEMU may still hold queued
            // output when the image exits): wait for the finish frame (ethertype 0x88B6,
            // which RSS never hashes, so it lands on queue 0).
            let mut finished = false;
            let until = hal.now_ns() + 60_000_000_000;
            while !finished && hal.now_ns() < until {
                q.rx_batch(|f, _| finished |= f.len() >= 14 && f[12..14] == [0x88, 0xB6]);
            }
            if finished {
                Ok(())
            } else {
                Err(AppError("nic-rss: no finish frame"))
            }
        }
    }
}
