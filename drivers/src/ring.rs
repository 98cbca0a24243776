//! Descriptor rings in Intel's advanced format (shared by igb 82576/I350 and ixgbe 82599):
//! the per-queue receive and transmit handles.
//!
//! Each queue owns its descriptor ring and one 2 KiB buffer per descriptor, all in DMA
//! memory allocated once. Receive recycles in place: descriptor `i` always points at buffer
//! `i`; after the closure has seen the batch its descriptors are re-armed with the same
//! buffers, and the tail register is written once per batch. Transmit copies (or lets the caller write)
//! each frame into the buffer of the next free descriptor and reclaims done descriptors.
//! Nothing here allocates, locks or uses `dyn`.
#![allow(unsafe_code)]

use core::sync::atomic::{fence, Ordering};

use crate::dma::DmaRegion;
use crate::error::{Error, Result};
use crate::hal::Hal;
use crate::regs::{Reg, RegIo};
use crate::{CsumCheck, RxMeta, BUF_SIZE, RX_BATCH, TX_BATCH};

/// Bytes per advanced descriptor.
pub const DESC_SIZE: usize = 16;

// Advanced receive descriptor, write-back format (82576 §7.1.5.2, 82599 §7.1.6.2).
const RX_WB_PKT_INFO: usize = 0; // u32: packet type / RSS type in bits 3:0
const RX_WB_RSS: usize = 4; // u32: RSS hash
const RX_WB_STATUS: usize = 8; // u32: status (bits 19:0) and errors
const RX_WB_LEN: usize = 12; // u16: packet length
const RX_WB_VLAN: usize = 14; // u16: VLAN tag
const RX_STATUS_DD: u32 = 1 << 0;
const RX_STATUS_EOP: u32 = 1 << 1;
/// L4I / TCPCS (igb), L4CS (ixgbe): the TCP/UDP checksum was checked.
pub const RX_STATUS_L4CS: u32 = 1 << 5;
/// IPCS: the IPv4 header checksum was checked.
pub const RX_STATUS_IPCS: u32 = 1 << 6;

/// Where a family's receive descriptor puts its checksum error bits (they differ: igb has
/// TCPE at bit 29 and IPE at 30, ixgbe TCPE at 30 and IPE at 31).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CsumErrBits {
    /// IPv4 header checksum error.
    pub ipe: u32,
    /// TCP/UDP checksum error.
    pub l4e: u32,
}

impl CsumErrBits {
    /// 82576 / I350 (`E1000_RXDEXT_STATERR_IPE`, `_TCPE`).
    pub const IGB: CsumErrBits = CsumErrBits {
        ipe: 1 << 30,
        l4e: 1 << 29,
    };
    /// 82599 / X520 (`IXGBE_RXDADV_ERR_IPE`, `_TCPE`).
    pub const IXGBE: CsumErrBits = CsumErrBits {
        ipe: 1 << 31,
        l4e: 1 << 30,
    };

    /// The checksum results of a write-back status word.
    #[inline]
    pub const fn decode(self, status: u32) -> (CsumCheck, CsumCheck) {
        (
            CsumCheck::from_bits(status & RX_STATUS_IPCS != 0, status & self.ipe != 0),
            CsumCheck::from_bits(status & RX_STATUS_L4CS != 0, status & self.l4e != 0),
        )
    }
}

// Advanced transmit data descriptor (read format and write-back status).
const TX_CMD_DTYP_DATA: u32 = 0x3 << 20;
const TX_CMD_DEXT: u32 = 1 << 29;
const TX_CMD_RS: u32 = 1 << 27;
const TX_CMD_IFCS: u32 = 1 << 25;
const TX_CMD_EOP: u32 = 1 << 24;
const TX_STATUS_DD: u32 = 1 << 0;

/// Compile-time ring size checks, evaluated when a queue of that size is built.
struct RingSize<const N: usize>;
impl<const N: usize> RingSize<N> {
    /// Power of two (index masking), at least 8 (128-byte ring length granularity), at most
    /// 4096 (register limits, u16 indices), and larger than a batch.
    const OK: () = assert!(
        N.is_power_of_two() && N >= 8 && N <= 4096 && N > RX_BATCH && N > TX_BATCH,
        "ring size must be a power of two in 8..=4096 and larger than a batch"
    );
}

/// Per-queue software counters (64-bit, never cleared).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct QueueStats {
    /// Frames delivered (rx) or queued (tx).
    pub packets: u64,
    /// Bytes delivered or queued.
    pub bytes: u64,
    /// Descriptors dropped by the driver: multi-descriptor frames (rx), oversize frames (tx).
    pub errors: u64,
}

/// A receive queue using advanced descriptors. `Send`: move it to the core that polls it.
pub struct AdvRxQueue<R: RegIo, const N: usize> {
    regs: R,
    rdt: Reg,
    ring: DmaRegion,
    bufs: DmaRegion,
    next: usize,
    in_fragment: bool,
    queue: u16,
    csum: CsumErrBits,
    stats: QueueStats,
}

impl<R: RegIo, const N: usize> AdvRxQueue<R, N> {
    /// Allocates the ring (128-byte aligned) and `N` buffers of [`BUF_SIZE`] bytes; `csum`
    /// says where the family's descriptors put their checksum error bits.
    pub(crate) fn alloc<H: Hal>(
        hal: &H,
        regs: R,
        queue: u16,
        rdt: Reg,
        csum: CsumErrBits,
    ) -> Result<Self> {
        let () = RingSize::<N>::OK;
        let ring = hal.dma_alloc(N * DESC_SIZE, 128).ok_or(Error::DmaAlloc)?;
        let bufs = hal.dma_alloc(N * BUF_SIZE, 4096).ok_or(Error::DmaAlloc)?;
        if ring.len() < N * DESC_SIZE || bufs.len() < N * BUF_SIZE {
            return Err(Error::DmaAlloc);
        }
        let mut q = AdvRxQueue {
            regs,
            rdt,
            ring,
            bufs,
            next: 0,
            in_fragment: false,
            queue,
            csum,
            stats: QueueStats::default(),
        };
        for i in 0..N {
            q.arm(i);
        }
        Ok(q)
    }

    /// Physical address of the descriptor ring (for RDBAL/RDBAH).
    pub(crate) fn ring_phys(&self) -> u64 {
        self.ring.phys()
    }

    /// Ring length in bytes (for RDLEN).
    pub(crate) const fn ring_bytes() -> u32 {
        (N * DESC_SIZE) as u32
    }

    /// Gives descriptor `i` (with buffer `i`) to the device: the read format's packet address
    /// and a zero header address, which also clears the write-back DD bit.
    #[inline]
    fn arm(&mut self, i: usize) {
        let phys = self.bufs.phys() + (i * BUF_SIZE) as u64;
        self.ring.write_u64(i * DESC_SIZE, phys);
        self.ring.write_u64(i * DESC_SIZE + 8, 0);
    }

    /// The queue index on its NIC.
    pub fn queue(&self) -> u16 {
        self.queue
    }

    /// Software counters for this queue.
    pub fn stats(&self) -> QueueStats {
        self.stats
    }

    /// Receives up to [`RX_BATCH`] frames, calling `f` for each with the frame bytes (valid
    /// only during the call) and its metadata, then re-arms the descriptors in place and
    /// writes the tail once. Returns the number of frames delivered.
    #[inline]
    pub fn rx_batch<F: FnMut(&[u8], RxMeta)>(&mut self, f: F) -> usize {
        self.rx_batch_max(RX_BATCH, f)
    }

    /// As [`Self::rx_batch`] with an explicit cap on descriptors processed (at most `N - 1`;
    /// more than [`RX_BATCH`] are taken a batch at a time, one tail write per batch).
    pub fn rx_batch_max<F: FnMut(&[u8], RxMeta)>(&mut self, max: usize, mut f: F) -> usize {
        let mut left = max.min(N - 1);
        let mut delivered = 0;
        while left > 0 {
            let want = left.min(RX_BATCH);
            let (processed, n) = self.rx_frames_max(want, |frames, metas| {
                for (frame, meta) in frames.iter().zip(metas) {
                    f(frame, *meta);
                }
            });
            delivered += n;
            left -= processed;
            if processed < want {
                break;
            }
        }
        delivered
    }

    /// Receives up to [`RX_BATCH`] frames and hands them to `f` all at once: the frames'
    /// bytes (valid until `f` returns) and their metadata, in arrival order, index for
    /// index. Then re-arms the descriptors in place and writes the tail once. Returns the
    /// number of frames delivered; `f` is not called when there are none.
    #[inline]
    pub fn rx_batch_frames<F: FnMut(&[&[u8]], &[RxMeta])>(&mut self, f: F) -> usize {
        self.rx_frames_max(RX_BATCH, f).1
    }

    /// The receive path under every `rx_batch*`: takes up to `max` (at most [`RX_BATCH`])
    /// done descriptors, calls `f` once with the frames among them (if any), then gives
    /// every descriptor taken back to the device. Returns (descriptors processed, frames
    /// delivered).
    fn rx_frames_max<F: FnMut(&[&[u8]], &[RxMeta])>(
        &mut self,
        max: usize,
        mut f: F,
    ) -> (usize, usize) {
        let max = max.min(RX_BATCH).min(N - 1);
        let first = self.next;
        let mut frames: [&[u8]; RX_BATCH] = [&[]; RX_BATCH];
        let mut metas = [RxMeta::default(); RX_BATCH];
        let mut delivered = 0;
        let mut processed = 0;
        while processed < max {
            let i = (first + processed) & (N - 1);
            let off = i * DESC_SIZE;
            let status = self.ring.read_u32(off + RX_WB_STATUS);
            if status & RX_STATUS_DD == 0 {
                break;
            }
            // The device wrote the descriptor before setting DD; read nothing before DD.
            fence(Ordering::Acquire);
            let eop = status & RX_STATUS_EOP != 0;
            if eop && !self.in_fragment {
                let len = (self.ring.read_u16(off + RX_WB_LEN) as usize).min(BUF_SIZE);
                let (ip_csum, l4_csum) = self.csum.decode(status);
                metas[delivered] = RxMeta {
                    queue: self.queue,
                    len: len as u16,
                    rss_hash: self.ring.read_u32(off + RX_WB_RSS),
                    rss_type: (self.ring.read_u32(off + RX_WB_PKT_INFO) & 0xF) as u8,
                    vlan: self.ring.read_u16(off + RX_WB_VLAN),
                    ip_csum,
                    l4_csum,
                };
                // SAFETY: DD is set, and neither this descriptor nor any other taken here is
                // handed back before the `arm` calls and the tail write below, after `f` has
                // returned; `frames` dies before them and `f` cannot keep its slices (they
                // are borrowed for the call only), so the device does not write buffer `i`
                // while any slice of it lives.
                frames[delivered] = unsafe { self.bufs.bytes(i * BUF_SIZE, len) };
                delivered += 1;
            } else {
                // Frames longer than one buffer are not expected (no jumbo): drop all parts.
                self.stats.errors += 1;
                self.in_fragment = !eop;
            }
            processed += 1;
        }
        if delivered > 0 {
            f(&frames[..delivered], &metas[..delivered]);
            self.stats.packets += delivered as u64;
            self.stats.bytes += metas[..delivered].iter().map(|m| m.len as u64).sum::<u64>();
        }
        if processed > 0 {
            for k in 0..processed {
                self.arm((first + k) & (N - 1));
            }
            self.next = (first + processed) & (N - 1);
            // Descriptor writes must be visible before the device sees the new tail. The
            // tail stays one behind the last re-armed descriptor (RDT == RDH means empty).
            fence(Ordering::Release);
            self.regs
                .write32(self.rdt, ((first + processed - 1) & (N - 1)) as u32);
        }
        (processed, delivered)
    }
}

/// A transmit queue using advanced descriptors. `Send`: move it to the core that sends.
pub struct AdvTxQueue<R: RegIo, const N: usize> {
    regs: R,
    tdt: Reg,
    ring: DmaRegion,
    bufs: DmaRegion,
    tail: usize,
    clean: usize,
    in_flight: usize,
    queue: u16,
    stats: QueueStats,
}

impl<R: RegIo, const N: usize> AdvTxQueue<R, N> {
    /// Allocates the ring and `N` transmit buffers.
    pub(crate) fn alloc<H: Hal>(hal: &H, regs: R, queue: u16, tdt: Reg) -> Result<Self> {
        let () = RingSize::<N>::OK;
        let ring = hal.dma_alloc(N * DESC_SIZE, 128).ok_or(Error::DmaAlloc)?;
        let bufs = hal.dma_alloc(N * BUF_SIZE, 4096).ok_or(Error::DmaAlloc)?;
        if ring.len() < N * DESC_SIZE || bufs.len() < N * BUF_SIZE {
            return Err(Error::DmaAlloc);
        }
        Ok(AdvTxQueue {
            regs,
            tdt,
            ring,
            bufs,
            tail: 0,
            clean: 0,
            in_flight: 0,
            queue,
            stats: QueueStats::default(),
        })
    }

    /// Physical address of the descriptor ring (for TDBAL/TDBAH).
    pub(crate) fn ring_phys(&self) -> u64 {
        self.ring.phys()
    }

    /// Ring length in bytes (for TDLEN).
    pub(crate) const fn ring_bytes() -> u32 {
        (N * DESC_SIZE) as u32
    }

    /// The queue index on its NIC.
    pub fn queue(&self) -> u16 {
        self.queue
    }

    /// Software counters for this queue.
    pub fn stats(&self) -> QueueStats {
        self.stats
    }

    /// Descriptors handed to the device and not yet reclaimed.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Reclaims descriptors the device has finished (DD written back). Returns how many.
    pub fn reclaim(&mut self) -> usize {
        let mut n = 0;
        while self.in_flight > 0 {
            let status = self.ring.read_u32(self.clean * DESC_SIZE + 12);
            if status & TX_STATUS_DD == 0 {
                break;
            }
            self.clean = (self.clean + 1) & (N - 1);
            self.in_flight -= 1;
            n += 1;
        }
        fence(Ordering::Acquire);
        n
    }

    /// Queues up to `count` frames (at most [`TX_BATCH`]) built in place: `f(k, buf)` writes
    /// frame `k` into the 2 KiB DMA buffer and returns its length (0 or more than the buffer
    /// drops it and counts an error). Writes the tail once. Returns the number of frames
    /// consumed (queued or dropped); fewer than `count` means the ring is full (call again
    /// with the rest after the device catches up).
    pub fn tx_with<F: FnMut(usize, &mut [u8]) -> usize>(
        &mut self,
        count: usize,
        mut f: F,
    ) -> usize {
        self.reclaim();
        let count = count.min(TX_BATCH);
        let mut sent = 0;
        let mut consumed = 0;
        for k in 0..count {
            if self.in_flight >= N - 1 {
                break;
            }
            consumed = k + 1;
            let i = self.tail;
            // SAFETY: descriptor `i` is free (not in flight: reclaimed or never used), so the
            // device does not access buffer `i` until we hand the descriptor over below.
            let buf = unsafe { self.bufs.bytes_mut(i * BUF_SIZE, BUF_SIZE) };
            let len = f(k, buf);
            if len == 0 || len > BUF_SIZE {
                self.stats.errors += 1;
                continue;
            }
            let off = i * DESC_SIZE;
            self.ring
                .write_u64(off, self.bufs.phys() + (i * BUF_SIZE) as u64);
            self.ring.write_u32(
                off + 8,
                TX_CMD_DTYP_DATA | TX_CMD_DEXT | TX_CMD_RS | TX_CMD_IFCS | TX_CMD_EOP | len as u32,
            );
            // PAYLEN in bits 31:14; also clears the write-back DD bit.
            self.ring.write_u32(off + 12, (len as u32) << 14);
            self.tail = (i + 1) & (N - 1);
            self.in_flight += 1;
            self.stats.packets += 1;
            self.stats.bytes += len as u64;
            sent += 1;
        }
        if sent > 0 {
            fence(Ordering::Release);
            self.regs.write32(self.tdt, self.tail as u32);
        }
        consumed
    }

    /// Queues copies of `frames` (at most [`TX_BATCH`]). Returns how many were consumed
    /// from the front of `frames` (empty or oversize frames are dropped and counted).
    pub fn tx_batch(&mut self, frames: &[&[u8]]) -> usize {
        self.tx_with(frames.len(), |k, buf| match frames.get(k) {
            Some(fr) if fr.len() <= buf.len() => {
                buf[..fr.len()].copy_from_slice(fr);
                fr.len()
            }
            _ => 0,
        })
    }
}

impl<R: RegIo + Send, const N: usize> crate::NicRx for AdvRxQueue<R, N> {
    fn rx_batch<F: FnMut(&[u8], RxMeta)>(&mut self, f: F) -> usize {
        AdvRxQueue::rx_batch(self, f)
    }
    fn rx_batch_frames<F: FnMut(&[&[u8]], &[RxMeta])>(&mut self, f: F) -> usize {
        AdvRxQueue::rx_batch_frames(self, f)
    }
}

impl<R: RegIo + Send, const N: usize> crate::NicTx for AdvTxQueue<R, N> {
    fn tx_batch(&mut self, frames: &[&[u8]]) -> usize {
        AdvTxQueue::tx_batch(self, frames)
    }
    fn reclaim(&mut self) -> usize {
        AdvTxQueue::reclaim(self)
    }
}
