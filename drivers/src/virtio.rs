//! virtio-net over the modern (virtio 1.x) PCI transport: one receive and one transmit
//! split virtqueue, polled, for cheap VM runs (`-device virtio-net-pci`).
//!
//! No multiqueue and no RSS (QEMU picks no queue for us): [`VirtioRx`] is queue 0 and every
//! frame lands there. Promiscuous mode needs the control virtqueue, which this driver does
//! not negotiate; QEMU's virtio-net receives everything after reset anyway.
//! Receive recycles buffers in place like the Intel rings; transmit copies into per-
//! descriptor buffers and reclaims them from the used ring.
#![allow(unsafe_code)]

use core::sync::atomic::{fence, Ordering};

use crate::dma::DmaRegion;
use crate::error::{Error, Result};
use crate::hal::{pci, Hal, PciAddr};
use crate::mmio::Mmio;
use crate::regs::{ms, wait_until, Reg, RegIo};
use crate::ring::QueueStats;
use crate::{CsumCheck, LinkStatus, MacAddr, RxMeta, BUF_SIZE, RX_BATCH, TX_BATCH};

/// virtio vendor id.
pub const VENDOR: u16 = 0x1AF4;
/// Modern virtio-net device id (transitional devices use 0x1000 and also work here).
pub const DEVICE_MODERN: u16 = 0x1041;
/// Transitional virtio-net device id.
pub const DEVICE_TRANSITIONAL: u16 = 0x1000;

/// Common configuration layout (virtio 1.2 §4.1.4.3), offsets from the capability.
pub mod common {
    /// Device feature select (u32).
    pub const DEVICE_FEATURE_SELECT: u32 = 0x00;
    /// Device features, 32 bits selected (u32).
    pub const DEVICE_FEATURE: u32 = 0x04;
    /// Driver feature select (u32).
    pub const DRIVER_FEATURE_SELECT: u32 = 0x08;
    /// Driver features (u32).
    pub const DRIVER_FEATURE: u32 = 0x0C;
    /// Number of queues (u16).
    pub const NUM_QUEUES: u32 = 0x12;
    /// Device status (u8).
    pub const DEVICE_STATUS: u32 = 0x14;
    /// Queue select (u16).
    pub const QUEUE_SELECT: u32 = 0x16;
    /// Queue size (u16).
    pub const QUEUE_SIZE: u32 = 0x18;
    /// Queue enable (u16).
    pub const QUEUE_ENABLE: u32 = 0x1C;
    /// Queue notify offset (u16).
    pub const QUEUE_NOTIFY_OFF: u32 = 0x1E;
    /// Descriptor table address (u64 as two u32).
    pub const QUEUE_DESC: u32 = 0x20;
    /// Available (driver) ring address.
    pub const QUEUE_DRIVER: u32 = 0x28;
    /// Used (device) ring address.
    pub const QUEUE_DEVICE: u32 = 0x30;
}

/// Device status bits.
pub mod status {
    /// Guest noticed the device.
    pub const ACKNOWLEDGE: u8 = 1;
    /// Guest has a driver.
    pub const DRIVER: u8 = 2;
    /// Driver ready.
    pub const DRIVER_OK: u8 = 4;
    /// Feature negotiation done.
    pub const FEATURES_OK: u8 = 8;
    /// Driver gave up.
    pub const FAILED: u8 = 128;
}

/// Feature: device has a MAC address in its config space.
pub const F_MAC: u64 = 1 << 5;
/// Feature: link status in config space.
pub const F_STATUS: u64 = 1 << 16;
/// Feature: virtio 1.x (mandatory for the modern transport).
pub const F_VERSION_1: u64 = 1 << 32;

/// virtio-net header length with `VERSION_1` (includes `num_buffers`).
pub const NET_HDR_LEN: usize = 12;
/// Net header `flags`: the checksum is partial (the sender's stack left it to an offload it
/// never needed: the frame did not cross a wire), so it is not to be verified.
pub const HDR_F_NEEDS_CSUM: u8 = 1;
/// Net header `flags`: the device validated the checksum.
pub const HDR_F_DATA_VALID: u8 = 2;

/// The L4 checksum result a received net header's `flags` give. Both flags are meaningful
/// only with `VIRTIO_NET_F_GUEST_CSUM`, which this driver does not negotiate (in inline mode
/// a frame with a partial checksum would be forwarded onto a wire as it is), so a conforming
/// device sends neither and the monitor verifies; a device that sets them anyway is taken at
/// its word. The IPv4 header checksum is never partial: unknown.
#[inline]
pub const fn l4_check(flags: u8) -> CsumCheck {
    if flags & (HDR_F_NEEDS_CSUM | HDR_F_DATA_VALID) != 0 {
        CsumCheck::Good
    } else {
        CsumCheck::Unknown
    }
}

const VIRTQ_DESC_F_WRITE: u16 = 2;
const VIRTQ_AVAIL_F_NO_INTERRUPT: u16 = 1;
const VIRTQ_USED_F_NO_NOTIFY: u16 = 1;
const RESET_TIMEOUT: u64 = ms(100);

/// Where the transport's structures are inside the (single) BAR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Offset of the common configuration.
    pub common: u32,
    /// Offset of the notification area.
    pub notify: u32,
    /// Notify offset multiplier.
    pub notify_mult: u32,
    /// Offset of the device-specific configuration.
    pub device: u32,
}

/// Compile-time virtqueue size check.
struct QSize<const N: usize>;
impl<const N: usize> QSize<N> {
    const OK: () = assert!(
        N.is_power_of_two() && N >= 8 && N <= 32768 && N > RX_BATCH && N > TX_BATCH,
        "virtqueue size must be a power of two in 8..=32768 and larger than a batch"
    );
}

/// A split virtqueue's memory (virtio 1.2 §2.7): descriptor table, available and used ring.
struct Virtq<const N: usize> {
    desc: DmaRegion,
    avail: DmaRegion,
    used: DmaRegion,
    avail_idx: u16,
    last_used: u16,
}

impl<const N: usize> Virtq<N> {
    fn alloc<H: Hal>(hal: &H) -> Result<Self> {
        let () = QSize::<N>::OK;
        let desc = hal.dma_alloc(16 * N, 16).ok_or(Error::DmaAlloc)?;
        let mut avail = hal.dma_alloc(6 + 2 * N, 4).ok_or(Error::DmaAlloc)?;
        let used = hal.dma_alloc(6 + 8 * N, 4).ok_or(Error::DmaAlloc)?;
        avail.write_u16(0, VIRTQ_AVAIL_F_NO_INTERRUPT);
        Ok(Virtq {
            desc,
            avail,
            used,
            avail_idx: 0,
            last_used: 0,
        })
    }

    fn set_desc(&mut self, i: usize, addr: u64, len: u32, flags: u16) {
        self.desc.write_u64(16 * i, addr);
        self.desc.write_u32(16 * i + 8, len);
        self.desc.write_u16(16 * i + 12, flags);
        self.desc.write_u16(16 * i + 14, 0);
    }

    /// Puts descriptor `id` in the next available slot (index published by `publish`).
    fn push_avail(&mut self, id: u16) {
        let slot = self.avail_idx as usize & (N - 1);
        self.avail.write_u16(4 + 2 * slot, id);
        self.avail_idx = self.avail_idx.wrapping_add(1);
    }

    /// Makes pushed entries visible to the device.
    fn publish(&mut self) {
        fence(Ordering::Release);
        self.avail.write_u16(2, self.avail_idx);
        fence(Ordering::SeqCst);
    }

    /// Next used element (id, len), if the device returned one.
    fn pop_used(&mut self) -> Option<(u16, u32)> {
        if self.used.read_u16(2) == self.last_used {
            return None;
        }
        fence(Ordering::Acquire);
        let slot = self.last_used as usize & (N - 1);
        let id = self.used.read_u32(4 + 8 * slot);
        let len = self.used.read_u32(8 + 8 * slot);
        self.last_used = self.last_used.wrapping_add(1);
        Some(((id as usize & (N - 1)) as u16, len))
    }

    fn device_wants_notify(&self) -> bool {
        self.used.read_u16(0) & VIRTQ_USED_F_NO_NOTIFY == 0
    }
}

/// The control object of a virtio-net device.
pub struct VirtioNet<R: RegIo> {
    regs: R,
    layout: Layout,
    mac: MacAddr,
    features: u64,
}

/// Receive queue (virtqueue 0). `Send`.
pub struct VirtioRx<R: RegIo, const N: usize> {
    regs: R,
    notify: Reg,
    vq: Virtq<N>,
    bufs: DmaRegion,
    stats: QueueStats,
}

/// Transmit queue (virtqueue 1). `Send`.
pub struct VirtioTx<R: RegIo, const N: usize> {
    regs: R,
    notify: Reg,
    vq: Virtq<N>,
    bufs: DmaRegion,
    free: [u16; N],
    nfree: usize,
    stats: QueueStats,
}

/// What [`init`] returns.
pub struct VirtioParts<R: RegIo, const N: usize> {
    /// Control object.
    pub ctl: VirtioNet<R>,
    /// Receive queue.
    pub rx: VirtioRx<R, N>,
    /// Transmit queue.
    pub tx: VirtioTx<R, N>,
}

/// Finds the modern transport's capabilities, maps their BAR and runs [`init`].
pub fn open<H: Hal, const N: usize>(hal: &H, addr: PciAddr) -> Result<VirtioParts<Mmio, N>> {
    let (vendor, device) = pci::ids(hal, addr);
    if vendor != VENDOR || !(device == DEVICE_MODERN || device == DEVICE_TRANSITIONAL) {
        return Err(Error::UnsupportedDevice(vendor, device));
    }
    pci::enable_bus_master(hal, addr);
    // (bar, offset) of common, notify, device; notify multiplier.
    let mut found: [Option<(u8, u32)>; 3] = [None; 3];
    let mut mult = 0;
    pci::for_each_capability(hal, addr, |off, id| {
        if id != 0x09 {
            return;
        }
        let head = hal.pci_read32(addr, off);
        let cfg_type = (head >> 24) as u8;
        let bar = hal.pci_read32(addr, off + 4) as u8;
        let offset = hal.pci_read32(addr, off + 8);
        let slot = match cfg_type {
            1 => 0,
            2 => {
                mult = hal.pci_read32(addr, off + 16);
                1
            }
            4 => 2,
            _ => return,
        };
        if found[slot].is_none() {
            found[slot] = Some((bar, offset));
        }
    });
    let (Some(c), Some(n), Some(d)) = (found[0], found[1], found[2]) else {
        return Err(Error::VirtioCapabilityMissing);
    };
    if c.0 != n.0 || c.0 != d.0 {
        return Err(Error::BadBar);
    }
    let bar = pci::memory_bar(hal, addr, c.0)?;
    let end = c.1.max(n.1).max(d.1) as usize + 0x1000;
    // SAFETY: `bar` is the memory BAR that the device's own capabilities name for its
    // common, notify and device registers, read from its configuration space; the window
    // ends a page past the last structure, rounded up to a power of two, which BAR sizes
    // are. Nothing in Ferrule uses device registers as memory.
    let mmio = unsafe { Mmio::map(hal, bar, end.next_power_of_two())? };
    init(
        hal,
        mmio,
        Layout {
            common: c.1,
            notify: n.1,
            notify_mult: mult,
            device: d.1,
        },
    )
}

/// Initialises the device (virtio 1.2 §3.1.1) and sets up virtqueues 0 (rx) and 1 (tx).
pub fn init<H: Hal, R: RegIo + Clone, const N: usize>(
    hal: &H,
    regs: R,
    layout: Layout,
) -> Result<VirtioParts<R, N>> {
    let c = |off: u32| Reg(layout.common + off);
    let set_status = |bits: u8| {
        let s = regs.read8(c(common::DEVICE_STATUS));
        regs.write8(c(common::DEVICE_STATUS), s | bits);
    };
    // Reset and wait for it to finish.
    regs.write8(c(common::DEVICE_STATUS), 0);
    wait_until(hal, RESET_TIMEOUT, Error::VirtioResetTimeout, || {
        regs.read8(c(common::DEVICE_STATUS)) == 0
    })?;
    set_status(status::ACKNOWLEDGE);
    set_status(status::DRIVER);

    // Features: VERSION_1 required; MAC and STATUS if offered. Nothing else (no offloads,
    // no mergeable buffers, no control queue).
    let mut offered = 0u64;
    for sel in 0..2u32 {
        regs.write32(c(common::DEVICE_FEATURE_SELECT), sel);
        offered |= (regs.read32(c(common::DEVICE_FEATURE)) as u64) << (32 * sel);
    }
    if offered & F_VERSION_1 == 0 {
        set_status(status::FAILED);
        return Err(Error::VirtioFeaturesRejected);
    }
    let features = offered & (F_VERSION_1 | F_MAC | F_STATUS);
    for sel in 0..2u32 {
        regs.write32(c(common::DRIVER_FEATURE_SELECT), sel);
        regs.write32(c(common::DRIVER_FEATURE), (features >> (32 * sel)) as u32);
    }
    set_status(status::FEATURES_OK);
    if regs.read8(c(common::DEVICE_STATUS)) & status::FEATURES_OK == 0 {
        set_status(status::FAILED);
        return Err(Error::VirtioFeaturesRejected);
    }

    // Virtqueues.
    let setup = |q: u16| -> Result<(Virtq<N>, Reg)> {
        regs.write16(c(common::QUEUE_SELECT), q);
        let max = regs.read16(c(common::QUEUE_SIZE)) as usize;
        if max < N {
            return Err(Error::VirtioQueueUnavailable(q));
        }
        regs.write16(c(common::QUEUE_SIZE), N as u16);
        let vq = Virtq::<N>::alloc(hal)?;
        for (off, phys) in [
            (common::QUEUE_DESC, vq.desc.phys()),
            (common::QUEUE_DRIVER, vq.avail.phys()),
            (common::QUEUE_DEVICE, vq.used.phys()),
        ] {
            regs.write32(c(off), phys as u32);
            regs.write32(c(off + 4), (phys >> 32) as u32);
        }
        let noff = regs.read16(c(common::QUEUE_NOTIFY_OFF)) as u32;
        regs.write16(c(common::QUEUE_ENABLE), 1);
        Ok((vq, Reg(layout.notify + noff * layout.notify_mult)))
    };
    let (rxq, rx_notify) = setup(0)?;
    let (txq, tx_notify) = setup(1)?;

    let mut mac = [0u8; 6];
    if features & F_MAC != 0 {
        for (i, b) in mac.iter_mut().enumerate() {
            *b = regs.read8(Reg(layout.device + i as u32));
        }
    }

    let bufs = hal.dma_alloc(N * BUF_SIZE, 4096).ok_or(Error::DmaAlloc)?;
    let mut rx = VirtioRx {
        regs: regs.clone(),
        notify: rx_notify,
        vq: rxq,
        bufs,
        stats: QueueStats::default(),
    };
    let bufs = hal.dma_alloc(N * BUF_SIZE, 4096).ok_or(Error::DmaAlloc)?;
    let mut free = [0u16; N];
    for (i, f) in free.iter_mut().enumerate() {
        *f = i as u16;
    }
    let tx = VirtioTx {
        regs: regs.clone(),
        notify: tx_notify,
        vq: txq,
        bufs,
        free,
        nfree: N,
        stats: QueueStats::default(),
    };

    set_status(status::DRIVER_OK);

    // Post every receive buffer.
    for i in 0..N {
        let phys = rx.bufs.phys() + (i * BUF_SIZE) as u64;
        rx.vq.set_desc(i, phys, BUF_SIZE as u32, VIRTQ_DESC_F_WRITE);
        rx.vq.push_avail(i as u16);
    }
    rx.vq.publish();
    rx.regs.write16(rx.notify, 0);

    Ok(VirtioParts {
        ctl: VirtioNet {
            regs,
            layout,
            mac: MacAddr(mac),
            features,
        },
        rx,
        tx,
    })
}

impl<R: RegIo> VirtioNet<R> {
    /// MAC address from the device config (zero if the device offers none).
    pub fn mac(&self) -> MacAddr {
        self.mac
    }

    /// Negotiated feature bits.
    pub fn features(&self) -> u64 {
        self.features
    }

    /// Link status from the device config (`VIRTIO_NET_F_STATUS`), else always up.
    pub fn link_status(&self) -> LinkStatus {
        let up = if self.features & F_STATUS != 0 {
            self.regs.read16(Reg(self.layout.device + 6)) & 1 != 0
        } else {
            true
        };
        LinkStatus {
            up,
            speed_mbps: 0,
            full_duplex: up,
        }
    }
}

impl<R: RegIo, const N: usize> VirtioRx<R, N> {
    /// Software counters.
    pub fn stats(&self) -> QueueStats {
        self.stats
    }

    /// Receives up to [`RX_BATCH`] frames (virtio-net header stripped), calling `f` for
    /// each, then re-posts the buffers in place and publishes and notifies once.
    pub fn rx_batch<F: FnMut(&[u8], RxMeta)>(&mut self, mut f: F) -> usize {
        self.rx_batch_frames(|frames, metas| {
            for (frame, meta) in frames.iter().zip(metas) {
                f(frame, *meta);
            }
        })
    }

    /// Receives up to [`RX_BATCH`] frames (virtio-net header stripped) and hands them to
    /// `f` all at once (bytes valid until `f` returns, metadata index for index), then
    /// re-posts every buffer taken in place and publishes and notifies once. Returns the
    /// number of frames delivered; `f` is not called when there are none.
    pub fn rx_batch_frames<F: FnMut(&[&[u8]], &[RxMeta])>(&mut self, mut f: F) -> usize {
        // Every buffer taken (re-posted at the end, in this order), and the frames among them.
        let mut taken = [0u16; RX_BATCH];
        let mut bufs = [0u16; RX_BATCH];
        let mut metas = [RxMeta::default(); RX_BATCH];
        let mut n = 0;
        let mut processed = 0;
        while processed < RX_BATCH {
            let Some((id, len)) = self.vq.pop_used() else {
                break;
            };
            taken[processed] = id;
            processed += 1;
            let i = id as usize;
            let len = (len as usize).min(BUF_SIZE);
            if len > NET_HDR_LEN {
                // SAFETY: the device returned buffer `i` in the used ring and it is not
                // re-posted before the end of this call; the header's first byte is its
                // `flags`, read here only.
                let flags = unsafe { self.bufs.bytes(i * BUF_SIZE, 1) }[0];
                metas[n] = RxMeta {
                    queue: 0,
                    len: (len - NET_HDR_LEN) as u16,
                    l4_csum: l4_check(flags),
                    ..RxMeta::default()
                };
                bufs[n] = id;
                n += 1;
            } else {
                self.stats.errors += 1;
            }
        }
        if n > 0 {
            let mut frames: [&[u8]; RX_BATCH] = [&[]; RX_BATCH];
            for ((frame, &id), meta) in frames.iter_mut().zip(&bufs).zip(&metas).take(n) {
                // SAFETY: the device returned buffer `id` in the used ring (taken above) and
                // no buffer taken is re-posted until the `push_avail` calls below, after `f`
                // has returned; `frames` dies before them and `f` cannot keep its slices
                // (borrowed for the call only), so the device does not write the buffer
                // while any slice of it lives.
                *frame = unsafe {
                    self.bufs
                        .bytes(id as usize * BUF_SIZE + NET_HDR_LEN, meta.len as usize)
                };
            }
            f(&frames[..n], &metas[..n]);
            self.stats.packets += n as u64;
            self.stats.bytes += metas[..n].iter().map(|m| m.len as u64).sum::<u64>();
        }
        if processed > 0 {
            for &id in &taken[..processed] {
                self.vq.push_avail(id);
            }
            self.vq.publish();
            if self.vq.device_wants_notify() {
                self.regs.write16(self.notify, 0);
            }
        }
        n
    }
}

impl<R: RegIo, const N: usize> VirtioTx<R, N> {
    /// Software counters.
    pub fn stats(&self) -> QueueStats {
        self.stats
    }

    /// Descriptors free for transmission.
    pub fn free_descriptors(&self) -> usize {
        self.nfree
    }

    /// Returns buffers the device has consumed to the free list. Returns how many.
    pub fn reclaim(&mut self) -> usize {
        let mut k = 0;
        while let Some((id, _)) = self.vq.pop_used() {
            if self.nfree < N {
                self.free[self.nfree] = id;
                self.nfree += 1;
            }
            k += 1;
        }
        k
    }

    /// Queues copies of up to [`TX_BATCH`] frames; returns how many were consumed from the
    /// front (oversize or empty frames are dropped and counted).
    pub fn tx_batch(&mut self, frames: &[&[u8]]) -> usize {
        self.reclaim();
        let mut consumed = 0;
        let mut queued = 0;
        for fr in frames.iter().take(TX_BATCH) {
            if self.nfree == 0 {
                break;
            }
            consumed += 1;
            if fr.is_empty() || fr.len() > BUF_SIZE - NET_HDR_LEN {
                self.stats.errors += 1;
                continue;
            }
            self.nfree -= 1;
            let id = self.free[self.nfree];
            let i = id as usize;
            // SAFETY: descriptor `id` came off the free list: the device does not own it.
            let buf = unsafe { self.bufs.bytes_mut(i * BUF_SIZE, NET_HDR_LEN + fr.len()) };
            buf[..NET_HDR_LEN].fill(0);
            buf[NET_HDR_LEN..].copy_from_slice(fr);
            let phys = self.bufs.phys() + (i * BUF_SIZE) as u64;
            self.vq
                .set_desc(i, phys, (NET_HDR_LEN + fr.len()) as u32, 0);
            self.vq.push_avail(id);
            self.stats.packets += 1;
            self.stats.bytes += fr.len() as u64;
            queued += 1;
        }
        if queued > 0 {
            self.vq.publish();
            if self.vq.device_wants_notify() {
                self.regs.write16(self.notify, 1);
            }
        }
        consumed
    }
}

impl<R: RegIo + Send, const N: usize> crate::NicRx for VirtioRx<R, N> {
    fn rx_batch<F: FnMut(&[u8], RxMeta)>(&mut self, f: F) -> usize {
        VirtioRx::rx_batch(self, f)
    }
    fn rx_batch_frames<F: FnMut(&[&[u8]], &[RxMeta])>(&mut self, f: F) -> usize {
        VirtioRx::rx_batch_frames(self, f)
    }
}

impl<R: RegIo + Send, const N: usize> crate::NicTx for VirtioTx<R, N> {
    fn tx_batch(&mut self, frames: &[&[u8]]) -> usize {
        VirtioTx::tx_batch(self, frames)
    }
    fn reclaim(&mut self) -> usize {
        VirtioTx::reclaim(self)
    }
}

#[cfg(test)]
mod tests;
