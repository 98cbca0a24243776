//! Guest test app for the drivers QEMU tests: igb link changes and ring overrun.
//!
//! One core, two RSS queues of `RING` descriptors. The core polls queue 0 always and queue 1
//! unless paused, and prints `nic-ctl link up` / `nic-ctl link down` on every link change
//! (`poll_link_change`). The host drives it with control frames (ethertype 0x88B5, which RSS
//! never hashes, so they land on queue 0; first payload byte = command):
//! 1 = drain queue 1 (unless paused), update statistics and print
//!     `nic-ctl report q0 N q1 M overruns O drops D`;
//! 2 = pause queue 1 (acknowledged with `nic-ctl paused`); 3 = resume queue 1
//! (`nic-ctl resumed`); 4 = finish (exit with success).
//! `nic-ctl ready` is printed once the port is up.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
use kernel::{App, AppError, Core, Machine};

#[cfg(target_os = "none")]
use guest::NicCtl;

/// Host stand-in so the crate builds and lints with plain cargo (the image needs the guest).
#[cfg(not(target_os = "none"))]
struct NicCtl;

#[cfg(not(target_os = "none"))]
impl App for NicCtl {
    fn init(_: &'static Machine) -> Self {
        NicCtl
    }
    fn run(&self, _: &Core) -> Result<(), AppError> {
        Err(AppError("nic-ctl runs only as a Ferrule image"))
    }
}

kernel::main!(NicCtl);

#[cfg(target_os = "none")]
mod guest {
    use drivers::igb::{self, Igb, IgbConfig, IgbRx};
    use drivers::{Hal, Mmio};
    use kernel::nic::{drivers_address, KernelHal};
    use kernel::{println, App, AppError, Core, Machine};

    const RING: usize = 64;
    const RUN_SECONDS: u64 = 300;
    const CONTROL_ETHERTYPE: [u8; 2] = [0x88, 0xB5];

    /// The port: control object and receive queues 0 and 1.
    type Port = (Igb<Mmio>, IgbRx<Mmio, RING>, IgbRx<Mmio, RING>);

    /// The app state, used by core 0 only.
    pub struct NicCtl {
        port: spin::Mutex<Option<Port>>,
    }

    impl App for NicCtl {
        fn init(m: &'static Machine) -> Self {
            let hal = KernelHal;
            let dev = m
                .pci
                .iter()
                .find(|d| d.vendor == 0x8086 && d.device_id == 0x10c9)
                .expect("no igb (8086:10c9)");
            let cfg = IgbConfig::symmetric(2);
            let parts = match igb::open::<_, RING, RING>(&hal, drivers_address(dev), &cfg) {
                Ok(p) => p,
                Err(e) => panic!("igb init: {e}"),
            };
            let mut rx = parts.rx.into_iter();
            let (q0, q1) = match (rx.next(), rx.next()) {
                (Some(a), Some(b)) => (a, b),
                _ => panic!("igb: two queues expected"),
            };
            NicCtl {
                port: spin::Mutex::new(Some((parts.ctl, q0, q1))),
            }
        }

        fn run(&self, core: &Core) -> Result<(), AppError> {
            if core.id != 0 {
                return Ok(());
            }
            let hal = KernelHal;
            let (mut ctl, mut q0, mut q1) = self.port.lock().take().ok_or(AppError("no port"))?;
            println!("nic-ctl ready");
            let deadline = hal.now_ns() + RUN_SECONDS * 1_000_000_000;
            let (mut n0, mut n1) = (0u64, 0u64);
            let mut paused = false;
            while hal.now_ns() < deadline {
                if let Some(l) = ctl.poll_link_change() {
                    if l.up {
                        println!("nic-ctl link up {} Mb/s", l.speed_mbps);
                    } else {
                        println!("nic-ctl link down");
                    }
                }
                let mut cmds = [0u8; 32];
                let mut ncmd = 0;
                q0.rx_batch(|f, _| {
                    if f.len() > 14 && f[12..14] == CONTROL_ETHERTYPE {
                        if ncmd < cmds.len() {
                            cmds[ncmd] = f[14];
                            ncmd += 1;
                        }
                    } else {
                        n0 += 1;
                    }
                });
                for &cmd in &cmds[..ncmd] {
                    match cmd {
                        1 => {
                            if !paused {
                                loop {
                                    let k = q1.rx_batch(|_, _| {});
                                    if k == 0 {
                                        break;
                                    }
                                    n1 += k as u64;
                                }
                            }
                            let s = ctl.update_stats();
                            let drops = s.queue_drops.iter().sum::<u64>() + s.rx_missed;
                            println!(
                                "nic-ctl report q0 {} q1 {} overruns {} drops {}",
                                n0, n1, s.rx_overruns, drops
                            );
                        }
                        2 => {
                            paused = true;
                            println!("nic-ctl paused");
                        }
                        3 => {
                            paused = false;
                            println!("nic-ctl resumed");
                        }
                        4 => return Ok(()),
                        _ => println!("nic-ctl unknown command {}", cmd),
                    }
                }
                // Commands first, so a pause takes effect before queue 1 is polled again.
                if !paused {
                    n1 += q1.rx_batch(|_, _| {}) as u64;
                }
            }
            Err(AppError("nic-ctl: no finish command in time"))
        }
    }
}
