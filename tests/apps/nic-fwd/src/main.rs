//! Guest test app for the drivers QEMU tests: two igb ports, forwarding port 0 → port 1.
//!
//! Opens the first two igb functions (one queue each), waits for both links, prints
//! `nic-fwd ready`, then transmits every frame received on port 0 out of port 1 unchanged
//! (copying straight from the receive buffer into the transmit ring inside the receive
//! closure) until `FORWARD` frames have gone, prints `nic-fwd forwarded N`, and exits after
//! the host's finish frame (ethertype 0x88B6 on port 0).
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
use kernel::{App, AppError, Core, Machine};

#[cfg(target_os = "none")]
use guest::NicFwd;

/// Host stand-in so the crate builds and lints with plain cargo (the image needs the guest).
#[cfg(not(target_os = "none"))]
struct NicFwd;

#[cfg(not(target_os = "none"))]
impl App for NicFwd {
    fn init(_: &'static Machine) -> Self {
        NicFwd
    }
    fn run(&self, _: &Core) -> Result<(), AppError> {
        Err(AppError("nic-fwd runs only as a Ferrule image"))
    }
}

kernel::main!(NicFwd);

#[cfg(target_os = "none")]
mod guest {
    use drivers::igb::{self, IgbConfig, IgbParts};
    use drivers::{Hal, Mmio};
    use kernel::nic::{drivers_address, KernelHal};
    use kernel::{println, App, AppError, Core, Machine};

    const RING: usize = 256;
    const FORWARD: u64 = 100;
    const RUN_SECONDS: u64 = 300;

    type Port = IgbParts<Mmio, RING, RING>;

    /// The app state, used by core 0 only.
    pub struct NicFwd {
        ports: spin::Mutex<Option<(Port, Port)>>,
    }

    impl App for NicFwd {
        fn init(m: &'static Machine) -> Self {
            let hal = KernelHal;
            let mut igbs = m
                .pci
                .iter()
                .filter(|d| d.vendor == 0x8086 && d.device_id == 0x10c9);
            let mut open = |what: &str| -> Port {
                let dev = igbs.next().unwrap_or_else(|| panic!("no {what} igb"));
                let p = igb::open::<_, RING, RING>(
                    &hal,
                    drivers_address(dev),
                    &IgbConfig::symmetric(1),
                )
                .unwrap_or_else(|e| panic!("igb init ({what}): {e}"));
                if let Err(e) = p.ctl.wait_link(&hal, 10_000_000_000) {
                    panic!("igb link ({what}): {e}");
                }
                p
            };
            let a = open("first");
            let b = open("second");
            NicFwd {
                ports: spin::Mutex::new(Some((a, b))),
            }
        }

        fn run(&self, core: &Core) -> Result<(), AppError> {
            if core.id != 0 {
                return Ok(());
            }
            let hal = KernelHal;
            let (mut a, mut b) = self.ports.lock().take().ok_or(AppError("no ports"))?;
            let (rx, tx) = match (a.rx.get_mut(0), b.tx.get_mut(0)) {
                (Some(rx), Some(tx)) => (rx, tx),
                _ => return Err(AppError("queues missing")),
            };
            println!("nic-fwd ready");
            let deadline = hal.now_ns() + RUN_SECONDS * 1_000_000_000;
            let (mut forwarded, mut finished) = (0u64, false);
            while !finished && hal.now_ns() < deadline {
                rx.rx_batch(|f, _| {
                    if f.len() >= 14 && f[12..14] == [0x88, 0xB6] {
                        finished = true;
                        return;
                    }
                    let give_up = hal.now_ns() + 5_000_000_000;
                    while tx.tx_batch(&[f]) == 0 && hal.now_ns() < give_up {
                        core::hint::spin_loop();
                    }
                    forwarded += 1;
                    if forwarded == FORWARD {
                        println!("nic-fwd forwarded {}", forwarded);
                    }
                });
            }
            if finished && forwarded == FORWARD {
                Ok(())
            } else {
                Err(AppError("nic-fwd: wrong count or no finish frame"))
            }
        }
    }
}
