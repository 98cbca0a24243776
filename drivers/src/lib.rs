//! Ferrule's NIC drivers: ixy-style poll-mode igb, ixgbe and virtio-net.
//!
//! Owns descriptor rings, packet buffers and NIC registers. It must not know about flows
//! (see `monitor`) or about how memory is found (the kernel implements [`hal::Hal`]).
//!
//! Each NIC splits into a control object (reset, link, promiscuous mode, MAC, RSS key and
//! redirection table, statistics) that stays on one core, and per-queue receive/transmit
//! handles ([`NicRx`], [`NicTx`]) that are `Send` and are polled on their own core without
//! locks. Receive hands a batch of frames to a closure (frame by frame, `rx_batch`, or all
//! at once, `rx_batch_frames`) and recycles descriptors in place; transmit copies a batch
//! into DMA buffers and reclaims completed descriptors. Nothing on the per-packet path
//! allocates, locks, uses `dyn`, or returns errors. Ring sizes are const generics checked at
//! compile time; every wait on hardware has a timeout and a named [`Error`].
//!
//! `unsafe` lives only in [`mmio`], [`dma`], [`ring`] (the data path), [`virtio`]'s
//! virtqueue, the [`hal::Hal`] trait declaration and the one BAR mapping in each
//! `open` (plus the host-only `fake` module).
//!
//! # Using it from the kernel
//!
//! The kernel implements [`Hal`] (DMA memory with physical addresses, uncached BAR mapping,
//! a monotonic clock, PCI configuration access), then per NIC:
//!
//! ```text
//! let parts = drivers::nic::open::<_, 512>(&hal, pci_addr, cores)?; // or igb::open, ...
//! parts.ctl.wait_link(&hal, 5_000_000_000)?;                       // control core
//! for (core, rx) in parts.rx.into_iter().enumerate() { /* move rx to `core` */ }
//! // on each core:
//! loop { rx.rx_batch(|frame, meta| monitor.on_frame(frame, meta)); }
//! // or, to see the whole batch first (e.g. to prefetch what its frames will touch):
//! loop { rx.rx_batch_frames(|frames, metas| monitor.on_batch(frames, metas)); }
//! ```
//!
//! # Modules
//!
//! - [`hal`]: the platform trait and PCI helpers; [`regs`], [`mmio`]: register access and
//!   timed waits; [`dma`]: DMA memory; [`ring`]: Intel advanced-descriptor queues.
//! - [`igb`] (82576/I350, QEMU `-device igb`), [`ixgbe`] (82599/X520), [`virtio`]
//!   (virtio-net, modern PCI), [`nic`] (pick one by PCI id).
//! - [`toeplitz`]: software RSS hash and queue prediction.
//! - `fake` (feature `fake`, host only): `FakeRegs`, `FakeHal`, `FakeRxDevice`,
//!   `bench_rx_cost` (used by `cargo run --release -p drivers --example rx_cost`).
//!
//! # QEMU igb notes for test authors
//!
//! QEMU holds frames back (no loss) while *every* enabled ring is full; a frame is dropped
//! (and counted in that queue's `RQDPC`) only when RSS picks a full ring while another ring
//! has room. An overrun test therefore needs two or more queues with one left unpolled.
#![cfg_attr(not(any(test, feature = "fake")), no_std)]
#![deny(unsafe_code)]

pub mod dma;
pub mod error;
#[cfg(any(test, feature = "fake"))]
pub mod fake;
pub mod family;
#[allow(unsafe_code)]
pub mod hal;
pub mod igb;
pub mod ixgbe;
pub mod mmio;
pub mod nic;
pub mod regs;
pub mod ring;
pub mod toeplitz;
pub mod virtio;

pub use error::{Error, Result};
pub use hal::{DmaRegion, Hal, PciAddr};
pub use mmio::Mmio;
pub use regs::{Reg, RegIo};

/// Bytes per packet buffer (one standard-MTU frame; no jumbo frames).
pub const BUF_SIZE: usize = 2048;
/// Most descriptors one `rx_batch` call processes (ixy's sweet spot, nic-notes §1.4).
pub const RX_BATCH: usize = 32;
/// Most frames one `tx_batch` call queues.
pub const TX_BATCH: usize = 32;
const _: () = assert!(BUF_SIZE == 2048 && RX_BATCH > 0 && TX_BATCH > 0 && RX_BATCH <= 256);

/// Metadata the NIC reports with a received frame.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RxMeta {
    /// The receive queue the frame arrived on.
    pub queue: u16,
    /// Frame length in bytes (without CRC).
    pub len: u16,
    /// The NIC's RSS (Toeplitz) hash, 0 when the NIC computed none.
    pub rss_hash: u32,
    /// The NIC's RSS hash type (0 = none; see [`toeplitz::HashType`]).
    pub rss_type: u8,
    /// VLAN tag field from the descriptor (0 if none was stripped).
    pub vlan: u16,
    /// What the NIC found of the IPv4 header checksum.
    pub ip_csum: CsumCheck,
    /// What the NIC found of the TCP/UDP checksum (never checked for IP fragments).
    pub l4_csum: CsumCheck,
}

/// One checksum as the NIC reports it in a receive descriptor.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CsumCheck {
    /// Not checked (not IPv4 / TCP / UDP, a fragment, offload off, or the NIC cannot).
    #[default]
    Unknown,
    /// Checked and right; for virtio-net also "not to be checked": a partial checksum
    /// (`NEEDS_CSUM`) of a frame that never crossed a wire.
    Good,
    /// Checked and wrong.
    Bad,
}

impl CsumCheck {
    /// From a descriptor's "checked" status bit and "error" bit.
    #[inline]
    pub const fn from_bits(checked: bool, error: bool) -> Self {
        match (checked, error) {
            (false, _) => CsumCheck::Unknown,
            (true, false) => CsumCheck::Good,
            (true, true) => CsumCheck::Bad,
        }
    }
}

/// A receive queue handle: poll it from its own core.
pub trait NicRx: Send {
    /// Receives up to a batch of frames; `f` sees each frame's bytes (valid only during the
    /// call) and metadata. Returns the number of frames delivered.
    fn rx_batch<F: FnMut(&[u8], RxMeta)>(&mut self, f: F) -> usize;
    /// Receives up to [`RX_BATCH`] frames and hands them to `f` in one call: every frame's
    /// bytes (all valid until `f` returns) and metadata, in arrival order, index for index.
    /// The descriptors go back to the device after `f` returns. Returns the number of
    /// frames delivered; `f` is not called when there are none. Same frames, metadata and
    /// counters as [`NicRx::rx_batch`], which is this with `f` called per frame.
    fn rx_batch_frames<F: FnMut(&[&[u8]], &[RxMeta])>(&mut self, f: F) -> usize;
}

/// A transmit queue handle: use it from its own core.
pub trait NicTx: Send {
    /// Queues copies of `frames`; returns how many were consumed from the front.
    fn tx_batch(&mut self, frames: &[&[u8]]) -> usize;
    /// Reclaims descriptors the device finished; returns how many.
    fn reclaim(&mut self) -> usize;
}

/// Link state as the NIC reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkStatus {
    /// Link up.
    pub up: bool,
    /// Speed in Mb/s (0 when down or unknown).
    pub speed_mbps: u32,
    /// Full duplex.
    pub full_duplex: bool,
}

/// A 48-bit Ethernet MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct MacAddr(pub [u8; 6]);

/// Symmetric RSS key (Woo & Park 2012): `0x6D 0x5A` repeated, 40 bytes. With it both
/// directions of a connection hash equally and land on the same queue.
pub const SYMMETRIC_RSS_KEY: [u8; 40] = {
    let mut k = [0u8; 40];
    let mut i = 0;
    while i < 40 {
        k[i] = if i % 2 == 0 { 0x6D } else { 0x5A };
        i += 1;
    }
    k
};

/// Receive-side scaling configuration shared by igb and ixgbe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RssConfig {
    /// The 40-byte Toeplitz key (byte 0 is the first key byte on the wire-order hash).
    pub key: [u8; 40],
    /// Redirection table: entry `h & 0x7F` names the queue for hash `h` (values < 16).
    pub reta: [u8; 128],
}

impl RssConfig {
    /// The symmetric key with entries spread round-robin over `queues` queues.
    pub fn symmetric(queues: u16) -> Self {
        RssConfig {
            key: SYMMETRIC_RSS_KEY,
            reta: toeplitz::spread_reta(queues),
        }
    }
}
