//! Guest test app: an igb port whose rings and buffers all lie above 4 GiB.
//!
//! Opens the first igb function (one queue) through `kernel::nic::DmaAbove` at 4 GiB, so
//! every descriptor ring and packet buffer is where only 64-bit DMA reaches. Prints
//! `nic-high usable N` (the usable RAM in bytes), `nic-high dma R regions 0xLO..0xHI` and
//! `nic-high ready`; then counts the frames received (with a sum of their bytes, so the
//! test knows the device wrote the data, not just the descriptors) until the host's finish
//! frame (ethertype 0x88B6), prints `nic-high received F frames B bytes sum S` and exits.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
use kernel::{App, AppError, Core, Machine};

#[cfg(target_os = "none")]
use guest::NicHigh;

/// Host stand-in so the crate builds and lints with plain cargo (the image needs the guest).
#[cfg(not(target_os = "none"))]
struct NicHigh;

#[cfg(not(target_os = "none"))]
impl App for NicHigh {
    fn init(_: &'static Machine) -> Self {
        NicHigh
    }
    fn run(&self, _: &Core) -> Result<(), AppError> {
        Err(AppError("nic-high runs only as a Ferrule image"))
    }
}

kernel::main!(NicHigh);

#[cfg(target_os = "none")]
mod guest {
    use drivers::igb::{self, IgbConfig, IgbParts};
    use drivers::{Hal, Mmio};
    use kernel::nic::{drivers_address, DmaAbove};
    use kernel::{println, App, AppError, Core, Machine};

    const RING: usize = 256;
    const RUN_SECONDS: u64 = 300;

    /// All DMA memory at or above 4 GiB.
    static HAL: DmaAbove = DmaAbove::new(1 << 32);

    type Port = IgbParts<Mmio, RING, RING>;

    /// The app state, used by core 0 only.
    pub struct NicHigh {
        port: spin::Mutex<Option<Port>>,
    }

    impl App for NicHigh {
        fn init(m: &'static Machine) -> Self {
            println!("nic-high usable {}", m.usable_memory);
            let dev = m
                .pci
                .iter()
                .find(|d| d.vendor == 0x8086 && d.device_id == 0x10c9)
                .unwrap_or_else(|| panic!("no igb"));
            let p =
                igb::open::<_, RING, RING>(&HAL, drivers_address(dev), &IgbConfig::symmetric(1))
                    .unwrap_or_else(|e| panic!("igb init: {e}"));
            if let Err(e) = p.ctl.wait_link(&HAL, 10_000_000_000) {
                panic!("igb link: {e}");
            }
            let (regions, lo, hi) = HAL.span();
            println!("nic-high dma {} regions {:#x}..{:#x}", regions, lo, hi);
            NicHigh {
                port: spin::Mutex::new(Some(p)),
            }
        }

        fn run(&self, core: &Core) -> Result<(), AppError> {
            if core.id != 0 {
                return Ok(());
            }
            let mut p = self.port.lock().take().ok_or(AppError("no port"))?;
            let rx = p.rx.get_mut(0).ok_or(AppError("queue missing"))?;
            println!("nic-high ready");
            let deadline = HAL.now_ns() + RUN_SECONDS * 1_000_000_000;
            let (mut frames, mut bytes, mut sum, mut finished) = (0u64, 0u64, 0u64, false);
            while !finished && HAL.now_ns() < deadline {
                rx.rx_batch(|f, _| {
                    if f.len() >= 14 && f[12..14] == [0x88, 0xB6] {
                        finished = true;
                        return;
                    }
                    frames += 1;
                    bytes += f.len() as u64;
                    sum += f.iter().map(|&b| b as u64).sum::<u64>();
                });
            }
            println!(
                "nic-high received {} frames {} bytes sum {}",
                frames, bytes, sum
            );
            if finished {
                Ok(())
            } else {
                Err(AppError("nic-high: no finish frame"))
            }
        }
    }
}
