//! Runtime choice of driver: probe a PCI function and get one control object and queue
//! handles behind small enums (static dispatch, no `dyn`).

use heapless::Vec;

use crate::error::{Error, Result};
use crate::hal::{pci, Hal, PciAddr};
use crate::igb::{self, Igb, IgbConfig};
use crate::ixgbe::{self, Ixgbe, IxgbeConfig};
use crate::mmio::Mmio;
use crate::ring::{AdvRxQueue, AdvTxQueue, QueueStats};
use crate::virtio::{self, VirtioNet, VirtioRx, VirtioTx};
use crate::{LinkStatus, MacAddr, NicRx, NicTx, RssConfig, RxMeta};

/// Most queues any driver here offers.
pub const MAX_QUEUES: usize = 16;

/// Which driver a PCI id belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Intel 82576 / I350.
    Igb,
    /// Intel 82599 / X520 / X540.
    Ixgbe,
    /// virtio-net (modern transport).
    Virtio,
}

/// The driver for `(vendor, device)`, if one drives it (refused Intel models have none:
/// see [`crate::family::intel_model`] for why).
pub fn kind_of(vendor: u16, device: u16) -> Option<Kind> {
    use crate::family::{intel_model, Driver};
    match vendor {
        igb::INTEL => match intel_model(device) {
            Some(m) if m.refused.is_none() => Some(match m.family.driver() {
                Driver::Igb => Kind::Igb,
                Driver::Ixgbe => Kind::Ixgbe,
            }),
            _ => None,
        },
        virtio::VENDOR
            if device == virtio::DEVICE_MODERN || device == virtio::DEVICE_TRANSITIONAL =>
        {
            Some(Kind::Virtio)
        }
        _ => None,
    }
}

/// Most queues the driver gives the NIC `(vendor, device)`: its family's RSS queue count
/// for Intel NICs (82576 16, I350 8, 82599 16), one for virtio-net, 0 when nothing drives
/// it.
pub fn max_queues(vendor: u16, device: u16) -> usize {
    match kind_of(vendor, device) {
        Some(Kind::Virtio) => 1,
        Some(_) => crate::family::intel_model(device)
            .map_or(0, |m| m.family.max_queues() as usize)
            .min(MAX_QUEUES),
        None => 0,
    }
}

/// A control object of any supported NIC.
pub enum AnyCtl {
    /// igb.
    Igb(Igb<Mmio>),
    /// ixgbe.
    Ixgbe(Ixgbe<Mmio>),
    /// virtio-net.
    Virtio(VirtioNet<Mmio>),
}

/// A receive queue of any supported NIC.
pub enum AnyRx<const N: usize> {
    /// igb or ixgbe (same descriptor format).
    Intel(AdvRxQueue<Mmio, N>),
    /// virtio-net.
    Virtio(VirtioRx<Mmio, N>),
}

/// A transmit queue of any supported NIC.
pub enum AnyTx<const N: usize> {
    /// igb or ixgbe.
    Intel(AdvTxQueue<Mmio, N>),
    /// virtio-net.
    Virtio(VirtioTx<Mmio, N>),
}

/// What [`open`] returns.
pub struct AnyParts<const N: usize> {
    /// Which driver runs the port.
    pub kind: Kind,
    /// Control object.
    pub ctl: AnyCtl,
    /// Receive queues (virtio: exactly one).
    pub rx: Vec<AnyRx<N>, MAX_QUEUES>,
    /// Transmit queues (virtio: exactly one).
    pub tx: Vec<AnyTx<N>, MAX_QUEUES>,
}

/// Opens the NIC at `addr` with `queues` rx/tx queues, symmetric RSS and promiscuous mode
/// (virtio-net always has one queue pair and ignores `queues`).
pub fn open<H: Hal, const N: usize>(hal: &H, addr: PciAddr, queues: u16) -> Result<AnyParts<N>> {
    let (vendor, device) = pci::ids(hal, addr);
    let kind = match kind_of(vendor, device) {
        Some(k) => k,
        None => match crate::family::intel_model(device) {
            Some(m) if vendor == igb::INTEL => return Err(Error::RefusedModel(m)),
            _ => return Err(Error::UnsupportedDevice(vendor, device)),
        },
    };
    let mut rx = Vec::new();
    let mut tx = Vec::new();
    let ctl = match kind {
        Kind::Igb => {
            let p = igb::open::<H, N, N>(hal, addr, &IgbConfig::symmetric(queues))?;
            for q in p.rx {
                let _ = rx.push(AnyRx::Intel(q));
            }
            for q in p.tx {
                let _ = tx.push(AnyTx::Intel(q));
            }
            AnyCtl::Igb(p.ctl)
        }
        Kind::Ixgbe => {
            let p = ixgbe::open::<H, N, N>(hal, addr, &IxgbeConfig::symmetric(queues))?;
            for q in p.rx {
                let _ = rx.push(AnyRx::Intel(q));
            }
            for q in p.tx {
                let _ = tx.push(AnyTx::Intel(q));
            }
            AnyCtl::Ixgbe(p.ctl)
        }
        Kind::Virtio => {
            let p = virtio::open::<H, N>(hal, addr)?;
            let _ = rx.push(AnyRx::Virtio(p.rx));
            let _ = tx.push(AnyTx::Virtio(p.tx));
            AnyCtl::Virtio(p.ctl)
        }
    };
    Ok(AnyParts { kind, ctl, rx, tx })
}

impl AnyCtl {
    /// MAC address.
    pub fn mac(&self) -> MacAddr {
        match self {
            AnyCtl::Igb(c) => c.mac(),
            AnyCtl::Ixgbe(c) => c.mac(),
            AnyCtl::Virtio(c) => c.mac(),
        }
    }

    /// Current link state.
    pub fn link_status(&self) -> LinkStatus {
        match self {
            AnyCtl::Igb(c) => c.link_status(),
            AnyCtl::Ixgbe(c) => c.link_status(),
            AnyCtl::Virtio(c) => c.link_status(),
        }
    }

    /// Waits for link-up (virtio: immediate if the device reports up).
    pub fn wait_link<H: Hal>(&self, hal: &H, timeout_ns: u64) -> Result<LinkStatus> {
        match self {
            AnyCtl::Igb(c) => c.wait_link(hal, timeout_ns),
            AnyCtl::Ixgbe(c) => c.wait_link(hal, timeout_ns),
            AnyCtl::Virtio(c) => {
                let mut up = false;
                crate::regs::wait_until(hal, timeout_ns, Error::LinkTimeout, || {
                    up = c.link_status().up;
                    up
                })?;
                Ok(c.link_status())
            }
        }
    }

    /// Programs RSS (igb/ixgbe). virtio-net has no RSS here: `BadConfig`.
    pub fn set_rss(&mut self, rss: &RssConfig) -> Result<()> {
        match self {
            AnyCtl::Igb(c) => c.set_rss(rss),
            AnyCtl::Ixgbe(c) => c.set_rss(rss),
            AnyCtl::Virtio(_) => Err(Error::BadConfig("virtio-net has no RSS")),
        }
    }

    /// Updates hardware statistics (igb/ixgbe) and returns (rx packets, sum of per-queue
    /// drops + missed). virtio-net has no hardware counters: (0, 0).
    pub fn update_stats(&mut self) -> (u64, u64) {
        match self {
            AnyCtl::Igb(c) => {
                let s = c.update_stats();
                (
                    s.rx_packets,
                    s.queue_drops.iter().sum::<u64>() + s.rx_missed,
                )
            }
            AnyCtl::Ixgbe(c) => {
                let s = c.update_stats();
                (
                    s.rx_packets,
                    s.queue_drops.iter().sum::<u64>() + s.rx_missed,
                )
            }
            AnyCtl::Virtio(_) => (0, 0),
        }
    }
}

impl<const N: usize> AnyRx<N> {
    /// Software counters.
    pub fn stats(&self) -> QueueStats {
        match self {
            AnyRx::Intel(q) => q.stats(),
            AnyRx::Virtio(q) => q.stats(),
        }
    }
}

impl<const N: usize> NicRx for AnyRx<N> {
    #[inline]
    fn rx_batch<F: FnMut(&[u8], RxMeta)>(&mut self, f: F) -> usize {
        match self {
            AnyRx::Intel(q) => q.rx_batch(f),
            AnyRx::Virtio(q) => q.rx_batch(f),
        }
    }
    #[inline]
    fn rx_batch_frames<F: FnMut(&[&[u8]], &[RxMeta])>(&mut self, f: F) -> usize {
        match self {
            AnyRx::Intel(q) => q.rx_batch_frames(f),
            AnyRx::Virtio(q) => q.rx_batch_frames(f),
        }
    }
}

impl<const N: usize> NicTx for AnyTx<N> {
    #[inline]
    fn tx_batch(&mut self, frames: &[&[u8]]) -> usize {
        match self {
            AnyTx::Intel(q) => q.tx_batch(frames),
            AnyTx::Virtio(q) => q.tx_batch(frames),
        }
    }

    fn reclaim(&mut self) -> usize {
        match self {
            AnyTx::Intel(q) => q.reclaim(),
            AnyTx::Virtio(q) => q.reclaim(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::FakeHal;

    #[test]
    fn ids_map_to_drivers() {
        assert_eq!(kind_of(0x8086, 0x10C9), Some(Kind::Igb));
        assert_eq!(kind_of(0x8086, 0x1521), Some(Kind::Igb));
        assert_eq!(kind_of(0x8086, 0x10FB), Some(Kind::Ixgbe));
        assert_eq!(kind_of(0x1AF4, 0x1041), Some(Kind::Virtio));
        assert_eq!(kind_of(0x8086, 0x100E), None);
        assert_eq!(max_queues(0x8086, 0x10C9), 16);
        assert_eq!(max_queues(0x8086, 0x1521), 8);
        assert_eq!(max_queues(0x8086, 0x10FB), 16);
        assert_eq!(max_queues(0x1AF4, 0x1041), 1);
        assert_eq!(max_queues(0x8086, 0x1528), 0);
        // Known but refused: no driver.
        assert_eq!(kind_of(0x8086, 0x1522), None);
        assert_eq!(kind_of(0x8086, 0x1528), None);
    }

    #[test]
    fn open_rejects_unknown_and_bad_bars() {
        let hal = FakeHal::new();
        let a = PciAddr {
            bus: 0,
            dev: 3,
            func: 0,
        };
        hal.set_pci(a, 0, 0x100E_8086);
        assert_eq!(
            open::<_, 64>(&hal, a, 1).err(),
            Some(Error::UnsupportedDevice(0x8086, 0x100E))
        );
        hal.set_pci(a, 0, 0x10C9_8086);
        hal.set_pci(a, 0x10, 0xC001); // I/O BAR where memory is required
        assert_eq!(open::<_, 64>(&hal, a, 1).err(), Some(Error::BadBar));
        // Bus mastering was enabled before the BAR was examined.
        assert_ne!(hal.get_pci(a, 4) & pci::CMD_BUS_MASTER, 0);
        hal.set_pci(a, 0x10, 0xFEB0_0000);
        assert_eq!(open::<_, 64>(&hal, a, 1).err(), Some(Error::MmioMap));
        // A known Intel NIC the drivers refuse is named, not reported as unknown.
        hal.set_pci(a, 0, 0x1528_8086);
        assert_eq!(
            open::<_, 64>(&hal, a, 1).err(),
            Some(Error::RefusedModel(
                crate::family::intel_model(0x1528).unwrap()
            ))
        );
    }
}
