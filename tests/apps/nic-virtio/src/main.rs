//! Guest test app for the drivers QEMU tests: virtio-net (modern PCI) receive and transmit.
//!
//! Opens the first virtio-net function with one queue pair, prints
//! `nic-virtio ready mac XX:XX:XX:XX:XX:XX link up|down`, then transmits every frame it
//! receives back unchanged, until `ECHO` frames have been echoed (or `RUN_SECONDS` pass), and
//! prints `nic-virtio echoed N`. It then waits for a finish frame (ethertype 0x88B6) so
//! that it exits only after the host has captured the echoes.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
use kernel::{App, AppError, Core, Machine};

#[cfg(target_os = "none")]
use guest::NicVirtio;

/// Host stand-in so the crate builds and lints with plain cargo (the image needs the guest).
#[cfg(not(target_os = "none"))]
struct NicVirtio;

#[cfg(not(target_os = "none"))]
impl App for NicVirtio {
    fn init(_: &'static Machine) -> Self {
        NicVirtio
    }
    fn run(&self, _: &Core) -> Result<(), AppError> {
        Err(AppError("nic-virtio runs only as a Ferrule image"))
    }
}

kernel::main!(NicVirtio);

#[cfg(target_os = "none")]
mod guest {
    use drivers::virtio::{self, VirtioParts};
    use drivers::{Hal, Mmio};
    use kernel::nic::{drivers_address, KernelHal};
    use kernel::{println, App, AppError, Core, Machine};

    const QUEUE: usize = 256;
    const ECHO: u64 = 200;
    const RUN_SECONDS: u64 = 300;

    /// The app state, used by core 0 only.
    pub struct NicVirtio {
        port: spin::Mutex<Option<VirtioParts<Mmio, QUEUE>>>,
    }

    impl App for NicVirtio {
        fn init(m: &'static Machine) -> Self {
            let hal = KernelHal;
            let dev = m
                .pci
                .iter()
                .find(|d| {
                    d.vendor == virtio::VENDOR
                        && (d.device_id == virtio::DEVICE_MODERN
                            || d.device_id == virtio::DEVICE_TRANSITIONAL)
                })
                .expect("no virtio-net");
            let parts = match virtio::open::<_, QUEUE>(&hal, drivers_address(dev)) {
                Ok(p) => p,
                Err(e) => panic!("virtio-net init: {e}"),
            };
            NicVirtio {
                port: spin::Mutex::new(Some(parts)),
            }
        }

        fn run(&self, core: &Core) -> Result<(), AppError> {
            if core.id != 0 {
                return Ok(());
            }
            let hal = KernelHal;
            let VirtioParts {
                ctl,
                mut rx,
                mut tx,
            } = self.port.lock().take().ok_or(AppError("no port"))?;
            let m = ctl.mac().0;
            println!(
                "nic-virtio ready mac {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x} link {}",
                m[0],
                m[1],
                m[2],
                m[3],
                m[4],
                m[5],
                if ctl.link_status().up { "up" } else { "down" }
            );
            let deadline = hal.now_ns() + RUN_SECONDS * 1_000_000_000;
            let mut echoed = 0u64;
            let mut stuck = false;
            while echoed < ECHO && hal.now_ns() < deadline && !stuck {
                rx.rx_batch(|f, _| {
                    let give_up = hal.now_ns() + 5_000_000_000;
                    while tx.tx_batch(&[f]) == 0 {
                        if hal.now_ns() > give_up {
                            stuck = true;
                            return;
                        }
                        core::hint::spin_loop();
                    }
                    echoed += 1;
                });
            }
            tx.reclaim();
            println!("nic-virtio echoed {}", echoed);
            // Stay up until the host has captured everything (QEMU may still hold queued
            // frames when the image exits): wait for the finish frame (ethertype 0x88B6).
            let mut finished = false;
            let until = hal.now_ns() + 60_000_000_000;
            while !finished && hal.now_ns() < until {
                rx.rx_batch(|f, _| finished |= f.len() >= 14 && f[12..14] == [0x88, 0xB6]);
            }
            if !finished {
                return Err(AppError("nic-virtio: no finish frame"));
            }
            if echoed == ECHO {
                Ok(())
            } else {
                Err(AppError("nic-virtio: not every frame was echoed"))
            }
        }
    }
}
