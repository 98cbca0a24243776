//! Build-time sizes, the per-monitor configuration, caller-provided storage and counters.
//!
//! Storage policy: the big per-core tables (flow slots, their hash index, the chunk pool and the
//! IP fragment table) never live on the stack or in the `Monitor` value. The caller lends them
//! as `&mut [T]` slices in a [`Storage`]: `.bss` statics built from the `EMPTY` constants in the
//! appliance, or one allocation at start on a host ([`HostStorage`], `std` feature).

use crate::api::Overlap;
use crate::engine::FlowExtra;
use crate::flow::{Bucket, FlowSlot};
use crate::intake::{ChecksumStats, Checksums, FragSlot};
use crate::reasm::Chunk;

/// Bytes per pool chunk. A side's ring is a chain of chunks drawn on demand, so a side wastes
/// less than one chunk on average. Chosen at build time: the `FERRULE_CHUNK_SIZE` environment
/// variable of the build (a power of two in 512..=16384), else 2048.
pub const CHUNK_SIZE: usize = chunk_size(option_env!("FERRULE_CHUNK_SIZE"));
/// The chunk size when `FERRULE_CHUNK_SIZE` is not set.
pub(crate) const DEFAULT_CHUNK_SIZE: usize = 2048;

const fn chunk_size(env: Option<&str>) -> usize {
    let Some(s) = env else {
        return DEFAULT_CHUNK_SIZE;
    };
    let b = s.as_bytes();
    let mut v = 0usize;
    let mut i = 0;
    while i < b.len() {
        assert!(
            b[i].is_ascii_digit(),
            "FERRULE_CHUNK_SIZE must be a decimal number"
        );
        v = v * 10 + (b[i] - b'0') as usize;
        i += 1;
    }
    assert!(
        v.is_power_of_two() && v >= 512 && v <= 16384,
        "FERRULE_CHUNK_SIZE must be a power of two in 512..=16384"
    );
    v
}
/// Largest IP datagram (after the IP header) the fragment table reassembles (what IPv4's and
/// IPv6's 16-bit lengths allow); bigger ones are dropped and counted as
/// [`DropReason::FragTooBig`]. `Storage::frag_buf` should be this long.
pub const FRAG_DATAGRAM_MAX: usize = 65535;
/// The most out-of-order islands a side can track (`Config::max_islands` is clamped to it):
/// the island list lives in one pool chunk of 8-byte entries.
pub const MAX_ISLANDS: usize = crate::reasm::ISLANDS_MAX;
/// Most user-defined events per monitor (their ids are the bits above `CONN_END`).
pub const MAX_USER_EVENTS: usize = 52;
/// Most armed timers per core.
pub const MAX_TIMERS: usize = 32;
/// Largest frame that `Ctx::packet_mut` can rewrite.
pub const REWRITE_MAX: usize = 2048;
/// Frames the inject queue holds before `Monitor::drain_injected`.
pub const INJECT_SLOTS: usize = 4;
/// Largest injected frame.
pub const INJECT_MAX: usize = 1536;
/// Live flows sampled (spread across the table) when it is full, to pick the one to evict.
pub const EVICT_SCAN: usize = 32;

/// Per-monitor settings. Build them as a `const` in the image so they are fixed at build time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// The core (monitor instance) id carried by every `FlowHandle` it issues.
    pub core: u16,
    /// Capacity of each side's ring in bytes (rounded up to a multiple of [`CHUNK_SIZE`]).
    pub side_capacity: u32,
    /// Buffer stream bytes at all (false: every side of every flow has buffering off).
    pub buffering: bool,
    /// Overlap policy new flows start with.
    pub overlap: Overlap,
    /// Pick flows up mid-stream (rule 17). Rule: a SYN-ACK's sender is the server; otherwise the
    /// endpoint with the lower port is the server; on equal ports the sender of the first seen
    /// packet is the client. Only packets carrying payload or SYN-ACK start a picked-up flow
    /// (never a bare ACK, FIN or RST, which are the stragglers of a closed flow). Each direction's
    /// offsets count from the first byte seen in that direction; both sides start ESTABLISHED.
    pub pickup: bool,
    /// A flow with no packet for this long ends (`CONN_END`, counted as `flows_timed_out`).
    pub idle_timeout_us: u64,
    /// An incomplete IP datagram older than this is discarded (counted).
    pub frag_timeout_us: u64,
    /// Inline (bump-in-the-wire) mode: packet actions allowed. False: tap mode, never transmits.
    pub inline: bool,
    /// Key of the flow hash (SipHash-1-3): a per-run secret, so that nobody can craft tuples
    /// that collide in the flow index. The appliance derives one per core from the TSC at
    /// boot; the host tools use [`Config::random_hash_key`] (`std` feature). The default is
    /// a public constant: fine for tests, not against hostile traffic.
    pub hash_key: [u64; 2],
    /// Accept any RST inside the receiver's window (older stacks). False (the default): a RST
    /// closes the flow only at the receiver's next expected sequence number (RFC 5961 §3, what
    /// Linux and the BSDs do); any other RST is ignored and reported with `ERROR`
    /// (`ErrorReason::RstNotAtNextSeq`).
    pub rst_in_window: bool,
    /// Out-of-order islands tracked per side besides the in-order run (at most
    /// [`MAX_ISLANDS`]; the list takes one pool chunk while a side has islands). A segment that
    /// would need more is dropped, counted on the flow (`BufInfo::lost`) and in
    /// `Counters::bytes_dropped`, and reported with `ERROR` (`LossCause::Islands`).
    pub max_islands: u16,
    /// IPv4 header and TCP checksums of received frames: see [`Checksums`] (default `Auto`).
    pub checksums: Checksums,
}

impl Config {
    /// Sane defaults: 64 KiB per side, first-wins, no pickup, 30 s idle, 2 s fragments, tap mode.
    pub const DEFAULT: Config = Config {
        core: 0,
        side_capacity: 64 * 1024,
        buffering: true,
        overlap: Overlap::First,
        pickup: false,
        idle_timeout_us: 30_000_000,
        frag_timeout_us: 2_000_000,
        inline: false,
        hash_key: [0x9e37_79b9_7f4a_7c15, 0x0123_4567_89ab_cdef],
        rst_in_window: false,
        max_islands: 64,
        checksums: Checksums::Auto,
    };

    /// Islands per side, clamped to what one list chunk holds.
    pub(crate) const fn islands_per_side(&self) -> usize {
        let n = self.max_islands as usize;
        if n > MAX_ISLANDS {
            MAX_ISLANDS
        } else {
            n
        }
    }

    /// Capacity in chunks per side.
    pub(crate) const fn side_chunks(&self) -> u32 {
        // Below 4 GiB, so that every island bound lies within 2^32 of the in-order end.
        let c = (self.side_capacity as usize).div_ceil(CHUNK_SIZE);
        let c = if c > u32::MAX as usize / CHUNK_SIZE {
            u32::MAX as usize / CHUNK_SIZE
        } else {
            c
        };
        if c == 0 {
            1
        } else {
            c as u32
        }
    }
}

#[cfg(feature = "std")]
impl Config {
    /// A random flow-hash key for this run (from the standard library's per-process random
    /// hasher keys, which come from the operating system).
    pub fn random_hash_key() -> [u64; 2] {
        use std::hash::{BuildHasher, Hasher};
        let s = std::collections::hash_map::RandomState::new();
        let word = |i: u64| {
            let mut h = s.build_hasher();
            h.write_u64(i);
            h.finish()
        };
        [word(1), word(2)]
    }
}

impl Default for Config {
    fn default() -> Self {
        Config::DEFAULT
    }
}

/// The caller-provided storage of one monitor.
///
/// Sizing: `flows.len()` is the flow capacity (at most `u32::MAX - 1`); `index.len()` must be a
/// power of two at least twice `flows.len()`; `chunks.len()` is the pool (each chunk holds
/// [`CHUNK_SIZE`] bytes, so a side with `n` buffered bytes holds `ceil(n / CHUNK_SIZE)` chunks,
/// at most `Config::side_capacity / CHUNK_SIZE`); `frags.len()` is the number of IP datagrams
/// reassembled at once (may be 0: fragments are then dropped and counted).
#[derive(Debug)]
pub struct Storage<'a, F> {
    /// Flow slots.
    pub flows: &'a mut [FlowSlot<F>],
    /// Open-addressing hash index over the flow slots.
    pub index: &'a mut [Bucket],
    /// The chunk pool.
    pub chunks: &'a mut [Chunk],
    /// One chain link per chunk (`links.len() == chunks.len()`; any initial contents).
    pub links: &'a mut [u32],
    /// The IP fragment reassembly table (under 320 bytes a slot: the fragments' bytes are held
    /// in pool chunks while their datagram is incomplete).
    pub frags: &'a mut [FragSlot],
    /// Where a complete datagram is assembled for parsing: [`FRAG_DATAGRAM_MAX`] bytes for any
    /// datagram; a shorter buffer lowers the largest one reassembled.
    pub frag_buf: &'a mut [u8],
    /// The flow-extra table (see [`FlowExtra`]): empty, or exactly `flows.len()` records (one
    /// per slot). Needed by NAT (a rewrite that changes addresses or ports re-keys the flow),
    /// length-changing rewrites, per-flow subscriptions, per-side stop and `reset_conn`.
    pub extras: &'a mut [FlowExtra],
}

/// Why `Monitor::new` refused its storage or configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// `flows` is empty or holds `u32::MAX` or more slots.
    FlowCapacity,
    /// `index.len()` is not a power of two at least twice `flows.len()`.
    IndexSize,
    /// `chunks` holds `u32::MAX` or more chunks, or `links` is not as long as `chunks`.
    PoolSize,
    /// Too many user-defined events (more than [`MAX_USER_EVENTS`]) or a parent that is no event.
    BadEvent,
    /// `extras` is neither empty nor as long as `flows`.
    ExtrasSize,
}

impl core::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            ConfigError::FlowCapacity => "flow slots must number 1 ..= u32::MAX - 1",
            ConfigError::IndexSize => "index length must be a power of two >= 2 x flow slots",
            ConfigError::PoolSize => "chunk pool must hold fewer than u32::MAX chunks",
            ConfigError::BadEvent => "too many user events, or the parent is no event",
            ConfigError::ExtrasSize => "flow-extra table must be empty or one record per flow slot",
        })
    }
}

impl core::error::Error for ConfigError {}

/// Storage owned by the host tools: one allocation per table at start (`std` feature).
#[cfg(feature = "std")]
#[derive(Debug)]
pub struct HostStorage<F> {
    flows: Vec<FlowSlot<F>>,
    index: Vec<Bucket>,
    /// The chunk pool as bytes: `vec![0u8; n]` is one zeroed allocation (calloc, pages mapped
    /// on first write), where `vec![[0u8; CHUNK_SIZE]; n]` is written out (std's zeroed-`vec!`
    /// shortcut covers arrays of at most 16 elements), which made a 1 KB capture 2 GB resident.
    pool: Vec<u8>,
    links: Vec<u32>,
    frags: Vec<FragSlot>,
    frag_buf: Vec<u8>,
    extras: Vec<FlowExtra>,
}

#[cfg(feature = "std")]
impl<F> HostStorage<F> {
    /// Allocate room for `flows` concurrent flows, a pool of `chunks` chunks and `frag_slots`
    /// IP datagrams in reassembly. Example: 16 MiB per side needs
    /// `Config { side_capacity: 16 << 20, .. }` and a pool of, say, `(1 << 30) / CHUNK_SIZE`
    /// chunks (1 GiB shared by all flows of the core; allocated zeroed, so only the chunks
    /// actually used become resident).
    pub fn new(flows: usize, chunks: usize, frag_slots: usize) -> Self {
        let flows_v: Vec<FlowSlot<F>> = (0..flows).map(|_| FlowSlot::EMPTY).collect();
        let index = vec![Bucket::EMPTY; (flows.max(1) * 2).next_power_of_two()];
        // Zeroed allocations: the pool's pages become resident only when chunks are used.
        let links = vec![0u32; chunks];
        let pool = vec![0u8; chunks * CHUNK_SIZE];
        let frags = vec![FragSlot::EMPTY; frag_slots];
        let frag_buf = vec![0u8; if frag_slots > 0 { FRAG_DATAGRAM_MAX } else { 0 }];
        let extras = vec![FlowExtra::EMPTY; flows];
        HostStorage {
            flows: flows_v,
            extras,
            index,
            pool,
            links,
            frags,
            frag_buf,
        }
    }

    /// Make the whole pool and its links resident now (one write per page; the allocation
    /// is zeroed, so nothing changes), so that a run takes no page faults: as a guest's
    /// static storage is from boot. A host tool that times several monitors on several
    /// threads at once calls it before starting the clock.
    pub fn make_resident(&mut self) {
        const PAGE: usize = 4096;
        for b in self.pool.iter_mut().step_by(PAGE) {
            // (Through `black_box`: a zero written to zeroed memory may not be left out.)
            *core::hint::black_box(b) = 0;
        }
        for l in self.links.iter_mut().step_by(PAGE / 4) {
            *core::hint::black_box(l) = 0;
        }
    }

    /// Lend the storage to a `Monitor`.
    pub fn storage(&mut self) -> Storage<'_, F> {
        Storage {
            flows: &mut self.flows,
            index: &mut self.index,
            chunks: self.pool.as_chunks_mut().0,
            links: &mut self.links,
            frags: &mut self.frags,
            frag_buf: &mut self.frag_buf,
            extras: &mut self.extras,
        }
    }
}

/// Why a frame was not monitored (each has a counter in [`Counters::dropped`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum DropReason {
    /// Shorter than an Ethernet header (including zero-length frames).
    TruncatedEthernet = 0,
    /// A VLAN tag cut short (any number of tags is walked).
    BadVlan,
    /// Not IPv4 or IPv6 (ARP, LLDP, ...).
    NotIp,
    /// IPv4 header malformed (version, lengths).
    BadIpv4,
    /// IPv6 header or extension header chain malformed, or ESP / no-next-header.
    BadIpv6,
    /// Not TCP (UDP, ICMP, ...).
    NotTcp,
    /// TCP header malformed (offset, length).
    BadTcp,
    /// An IP fragment held for reassembly (not a loss: the datagram is monitored when complete).
    FragmentHeld,
    /// A malformed fragment (bad offset or length, overlapping a different last fragment).
    FragMalformed,
    /// An IPv6 fragment overlapping bytes already received: the whole datagram is discarded
    /// (RFC 5722; counted per fragment that caused it).
    FragOverlap,
    /// A datagram larger than `FRAG_DATAGRAM_MAX`.
    FragTooBig,
    /// An incomplete datagram evicted because the fragment table was full (counted per datagram).
    FragEvicted,
    /// An incomplete datagram discarded by the fragment timeout (counted per datagram).
    FragTimeout,
    /// A TCP packet of no known flow (not a SYN, and no pickup): raised `ORPHAN`.
    Orphan,
    /// A packet of a flow whose monitoring was stopped: forwarded untouched.
    Unmonitored,
    /// The IPv4 header checksum is wrong (`Config::checksums`; never reassembled).
    BadIpv4Checksum,
    /// The TCP checksum is wrong (`Config::checksums`; never reassembled).
    BadTcpChecksum,
}

impl DropReason {
    /// Number of reasons.
    pub const COUNT: usize = 17;
    /// Every reason, in counter order.
    pub const ALL: [DropReason; Self::COUNT] = [
        DropReason::TruncatedEthernet,
        DropReason::BadVlan,
        DropReason::NotIp,
        DropReason::BadIpv4,
        DropReason::BadIpv6,
        DropReason::NotTcp,
        DropReason::BadTcp,
        DropReason::FragmentHeld,
        DropReason::FragMalformed,
        DropReason::FragOverlap,
        DropReason::FragTooBig,
        DropReason::FragEvicted,
        DropReason::FragTimeout,
        DropReason::Orphan,
        DropReason::Unmonitored,
        DropReason::BadIpv4Checksum,
        DropReason::BadTcpChecksum,
    ];

    /// A stable snake_case name for reports.
    pub const fn name(self) -> &'static str {
        match self {
            DropReason::TruncatedEthernet => "truncated_ethernet",
            DropReason::BadVlan => "bad_vlan",
            DropReason::NotIp => "not_ip",
            DropReason::BadIpv4 => "bad_ipv4",
            DropReason::BadIpv6 => "bad_ipv6",
            DropReason::NotTcp => "not_tcp",
            DropReason::BadTcp => "bad_tcp",
            DropReason::FragmentHeld => "fragment_held",
            DropReason::FragMalformed => "frag_malformed",
            DropReason::FragOverlap => "frag_overlap",
            DropReason::FragTooBig => "frag_too_big",
            DropReason::FragEvicted => "frag_evicted",
            DropReason::FragTimeout => "frag_timeout",
            DropReason::Orphan => "orphan",
            DropReason::Unmonitored => "unmonitored",
            DropReason::BadIpv4Checksum => "bad_ipv4_checksum",
            DropReason::BadTcpChecksum => "bad_tcp_checksum",
        }
    }
}

/// Monitor counters. Plain numbers, updated without locks by the owning core.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Frames given to the monitor.
    pub frames: u64,
    /// Bytes of those frames.
    pub frame_bytes: u64,
    /// TCP packets processed for a monitored flow (after IP reassembly).
    pub tcp_packets: u64,
    /// Frames not monitored, by [`DropReason`] (index with `reason as usize`).
    pub dropped: [u64; DropReason::COUNT],
    /// IP datagrams reassembled from fragments.
    pub datagrams_reassembled: u64,
    /// IPv4 fragments that overlapped bytes already received (kept per `Config::overlap`).
    pub frag_overlaps: u64,
    /// Flows created (SYN or pickup).
    pub flows_created: u64,
    /// Flows picked up mid-stream.
    pub flows_picked_up: u64,
    /// Flows ended by FIN/RST close.
    pub flows_closed: u64,
    /// Flows ended by the idle timeout.
    pub flows_timed_out: u64,
    /// Flows evicted because the table was full (least recently active of the scanned ones).
    pub flows_evicted: u64,
    /// Flows ended by `Monitor::close_all`.
    pub flows_flushed: u64,
    /// Payload bytes stored into rings.
    pub bytes_stored: u64,
    /// Payload bytes that could not be stored (capacity past a hole, pool empty, too many
    /// islands): each time `ERROR` was raised.
    pub bytes_dropped: u64,
    /// In-order bytes overwritten to make room in a full ring.
    pub bytes_overwritten: u64,
    /// Times a chunk was wanted and the pool was empty.
    pub pool_exhausted: u64,
    /// Retransmissions seen (`REXMIT` occurrences).
    pub rexmits: u64,
    /// Segments for a flow that were malformed for it (e.g. far outside the window).
    pub bad_segments: u64,
    /// Receive checksum verification (`Config::checksums`).
    pub checksums: ChecksumStats,
}

impl Counters {
    /// The counter for one reason.
    pub fn drop_count(&self, r: DropReason) -> u64 {
        self.dropped[r as usize]
    }

    /// Frames not monitored, all reasons except `FragmentHeld` (held fragments are monitored
    /// once their datagram completes).
    pub fn total_dropped(&self) -> u64 {
        self.dropped
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != DropReason::FragmentHeld as usize)
            .map(|(_, v)| *v)
            .sum()
    }
}
