//! Ferrule's flow monitor: TCP flows, reassembly, events and the `ppeek`/`peek` API.
//!
//! `no_std`, no heap on the packet path, no panic on any input, and no `unsafe` but one: the
//! prefetch instruction in `prefetch.rs` (it measured faster than plain reads; BENCHMARKS.md). It must not depend
//! on the kernel, the drivers or any hardware: the same code runs per core in the appliance and
//! on a host over captures (`std` feature: `HostStorage`).
//!
//! It owns packet intake (Ethernet, 802.1Q/QinQ, IPv4/IPv6 with fragment reassembly, TCP), the
//! flow table, the per-side TCP state machines, the reassembly rings, the event system and the
//! user API. It keeps the rules of the monitor contract (`shared/design/monitor-contract.md`).
//!
//! # Shape
//!
//! * A [`Middlebox`] is the user logic: one instance per core, statically dispatched by
//!   [`Monitor<M>`]. It subscribes to [`Event`]s at a [`Hook`] in [`Middlebox::init`] and gets
//!   callbacks with a [`Ctx`] (current flow, per-flow user state `M::Flow`, `ppeek`/`peek`,
//!   `read_in_place` (the in-order bytes as slices of the ring, no copy), packet actions,
//!   timers).
//! * **A side's buffer holds the bytes that side RECEIVES**: `Side::Server`'s buffer is the
//!   client→server stream. Offsets are `u64` stream offsets from the first payload byte; they
//!   never wrap.
//! * The caller feeds frames in batches: [`Monitor::begin_batch`], [`Monitor::frame`] (returns a
//!   [`Verdict`] for inline mode), [`Monitor::end_batch`] (raises `CONN_NEW_DATA` once per flow
//!   side). The monitor does no I/O.
//! * Storage is caller-provided ([`Storage`]): flow slots, a hash index, the chunk pool and the
//!   IP fragment table, as `&mut` slices (statics in the appliance, one allocation on a host).
//!
//! # Policies (what happens at the edges)
//!
//! * **Flow table full**: of [`EVICT_SCAN`] live flows sampled a stride apart across the table,
//!   the one least worth keeping is ended with `CONN_END` and its slot reused (counted in
//!   `Counters::flows_evicted`): half-open flows first (a SYN flood evicts its own flows),
//!   then flows idle for a quarter of the idle timeout, then closing ones, and established
//!   ones last, youngest first (so when live connections outnumber the slots the flows
//!   already tracked stay whole). The flow index is hashed with SipHash-1-3 under
//!   `Config::hash_key`, a per-run secret, so colliding tuples cannot be crafted. The idle sweep ends flows silent for `Config::idle_timeout_us`
//!   (`flows_timed_out`), visiting the whole table once per quarter timeout of elapsed time.
//! * **Ring full** (`Config::side_capacity`): whole chunks of the oldest in-order bytes are
//!   overwritten, after `ERROR` if the application had not `peek`ed them (the bytes can still be
//!   read inside that callback); `peek` then returns `Overwritten` once. Bytes beyond the
//!   capacity past a hole, or for which the **pool is empty** (after reusing the side's own
//!   in-order chunks), or that would need more than `Config::max_islands` out-of-order islands
//!   (default 64, at most [`MAX_ISLANDS`]; a side's island list takes one pool chunk while it
//!   has islands, and each segment costs a binary search plus a bounded move in it), are
//!   dropped, counted on the flow (`BufInfo::lost`) and in `Counters::bytes_dropped`, and
//!   reported with `ERROR` (`Ctx::error_reason`: `ErrorReason::Lost` with its `LossCause`).
//! * **Tap loss** (a hole the receiver acknowledged): counted in `BufInfo::lost` with `ERROR`
//!   (`LossCause::Tap`); `peek`/`read_in_place` report it once as `Overwritten` (`oldest`: the
//!   first byte after it) and continue past it, and the in-order run moves on with the
//!   reader. **Eviction** counts, on the evicted flow, the holes below its furthest byte that
//!   no retransmission can fill any more (before `CONN_END`, where they show in `buf_info`).
//! * **TCP as the endpoints see it**: a RST closes the flow only at the receiver's next
//!   expected sequence number (RFC 5961 §3; `Config::rst_in_window` accepts any in-window RST);
//!   in SYN_SENT only a RST acknowledging the SYN. A SYN or SYN-ACK with a new ISN on a
//!   synchronized connection changes nothing (§4), unless its sender had finished the
//!   connection (TIME_WAIT/CLOSED): then the old flow ends and a new one starts. Bytes and
//!   FINs beyond a FIN already seen are not stream data. A FIN that does not acknowledge the
//!   peer's FIN is a simultaneous close (both sides reach TIME_WAIT). Bytes the receiver
//!   acknowledged but the monitor never saw are tap loss: counted in `BufInfo::lost`, and a
//!   FIN behind them is delivered. Each ignored segment counts in `Counters::bad_segments` and
//!   raises `ERROR` with its [`ErrorReason`].
//! * **Overlaps**: first copy wins by default; `Overlap::Last` lets later copies replace
//!   out-of-order bytes (never bytes below the in-order end). Any overlap with bytes already
//!   received, even fully old ones, raises `REXMIT` before anything is stored.
//! * **IP fragments**: datagrams up to [`FRAG_DATAGRAM_MAX`] (65 535) bytes; their bytes wait
//!   in pool chunks (a table slot is metadata only) and a complete datagram is assembled in
//!   `Storage::frag_buf`. An IPv6 fragment overlapping received bytes discards the datagram
//!   (RFC 5722, `FragOverlap`); IPv4 overlaps follow `Config::overlap` and count in
//!   `Counters::frag_overlaps`. **Fragment table full**: a datagram with a single fragment so
//!   far goes first, else the least recently used (`FragEvicted`), so a flood of junk first
//!   fragments leaves datagrams in progress intact; incomplete datagrams time out after
//!   `Config::frag_timeout_us` (`FragTimeout`). VLAN tags and IPv6 extension headers are
//!   walked as deep as the frame goes.
//! * **Mid-stream pickup** (`Config::pickup`): see the rule on [`Config::pickup`].
//! * **Hooks**: `Snd` callbacks run before `Rcv` ones; `Any` subscribers get each occurrence
//!   once, with the `Rcv` view. `CONN_END` is raised once per flow, at the first subscribed hook
//!   of `Snd`, `Rcv`, `Any`; a flow whose monitoring was stopped ends silently.
//! * **NAT** (inline): when the callbacks rewrite the addresses or ports of a packet the
//!   client sent, the rewritten tuple becomes the flow's alias (its server half's key, as mOS
//!   keys the server half after the send hook), so replies to it find the same flow, on the
//!   server side; the alias lives in the flow-extra table (`Storage::extras`, one
//!   [`FlowExtra`] per slot, outside the slot), is looked up only when the primary lookup
//!   misses and some alias is live, and goes when the flow ends. `Ctx::splice_payload`
//!   changes a packet's length and keeps that direction's sequence numbers (and the peer's
//!   acknowledgments) consistent for the rest of the connection; the monitor's streams stay
//!   what it received. `Ctx::reset_conn`, `Ctx::raise_event`, per-flow subscriptions and
//!   `Ctx::stop_side` complete mOS's per-flow API; raised events and resets run once the
//!   current callbacks are done.
//! * **Checksums** of received frames (IPv4 header; TCP over the IPv4 or IPv6 pseudo-header,
//!   after any extension headers, and over the whole datagram for IP fragments) are verified
//!   as `Config::checksums` says ([`Checksums`]; default `Auto`: verify until the traffic
//!   looks checksum-offloaded, then stop and say so in `ChecksumStats::offloaded`). A bad
//!   frame is counted (`DropReason::BadIpv4Checksum`, `BadTcpChecksum`) and never
//!   reassembled. [`Monitor::frame_with`] takes the NIC's own result ([`RxMeta`]): good is
//!   not computed again, bad is dropped. Rewritten frames get correct IPv4 and TCP checksums.
//!
//! # Sizing on a host (16 MiB per side)
//!
//! `HostStorage::new(flows, chunks, frag_slots)` allocates one table each, zeroed, so only the
//! chunks actually used become resident. Per-side capacity is a ceiling, not a reservation:
//! `Config { side_capacity: 16 << 20, pickup: true, .. }` with a pool of `(1 << 30) / CHUNK_SIZE`
//! chunks lets any side grow to 16 MiB while all flows share 1 GiB. Each flow slot costs
//! `Monitor::flow_state_bytes()` (256 B) plus `Monitor::user_state_bytes()`.
//!
//! # Example
//!
//! ```
//! use monitor::{Config, Ctx, Event, Hook, HostStorage, Middlebox, Monitor, Registry, Side};
//!
//! #[derive(Default)]
//! struct Count { bytes: u64 }
//! impl Middlebox for Count {
//!     type Flow = ();
//!     fn init(&mut self, reg: &mut Registry) {
//!         reg.subscribe(Event::CONN_NEW_DATA, Hook::Rcv);
//!     }
//!     fn on_event(&mut self, cx: &mut Ctx<'_, '_, ()>, _ev: Event, _hook: Hook, side: Side) {
//!         let Some(flow) = cx.flow() else { return };
//!         let mut buf = [0u8; 4096];
//!         while let Ok(n) = cx.peek(flow, side, &mut buf) {
//!             if n == 0 { break }
//!             self.bytes += n as u64;
//!         }
//!     }
//! }
//! let mut storage = HostStorage::new(1024, 4096, 8);
//! let cfg = Config { side_capacity: 16 << 20, ..Config::DEFAULT };
//! let mut mon = Monitor::new(Count::default(), cfg, storage.storage()).unwrap();
//! mon.on_batch([(&[0u8; 10][..], 0u64)]);
//! assert_eq!(mon.counters().total_dropped(), 1); // too short for Ethernet
//! ```
#![cfg_attr(not(any(test, feature = "std")), no_std)]
#![deny(unsafe_code)]

mod api;
mod config;
mod engine;
mod flow;
#[cfg(feature = "std")]
#[doc(hidden)]
pub mod fuzzing;
mod intake;
mod prefetch;
mod reasm;

pub use api::{
    ActionError, BufInfo, ErrorReason, Event, FlowHandle, Frag, Hook, LossCause, Middlebox,
    Overlap, PacketInfo, PeekError, Side, TcpState, Verdict,
};
#[cfg(feature = "std")]
pub use config::HostStorage;
pub use config::{
    Config, ConfigError, Counters, DropReason, Storage, CHUNK_SIZE, EVICT_SCAN, FRAG_DATAGRAM_MAX,
    INJECT_MAX, INJECT_SLOTS, MAX_ISLANDS, MAX_TIMERS, MAX_USER_EVENTS, REWRITE_MAX,
};
pub use engine::{Core, Ctx, Endpoints, FlowExtra, Monitor, Registry, READ_AHEAD};
pub use flow::{Bucket, FlowSlot};
pub use intake::{ChecksumStats, Checksums, FragSlot, RxCheck, RxMeta, CHECKSUM_SAMPLE};
pub use reasm::{Chunk, EMPTY_CHUNK};
