//! The user-facing vocabulary: sides, hooks, events, states, errors and the `Middlebox` trait.
//!
//! Everything here is plain data plus one trait; the engine that drives it lives in
//! [`crate::engine`].

use crate::engine::{Ctx, Registry};

/// One endpoint of a flow.
///
/// **A side's buffer holds the bytes that side RECEIVES** (as in mOS): `Side::Server`'s buffer
/// is the client→server stream (requests), `Side::Client`'s buffer is the server→client stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Side {
    /// The endpoint that sent the first SYN (or, for a flow picked up mid-stream, the endpoint
    /// chosen by the pickup rule documented on [`crate::Config::pickup`]).
    Client = 0,
    /// The other endpoint.
    Server = 1,
}

impl Side {
    /// Both sides, client first.
    pub const BOTH: [Side; 2] = [Side::Client, Side::Server];

    /// The other side.
    #[inline]
    pub const fn peer(self) -> Side {
        match self {
            Side::Client => Side::Server,
            Side::Server => Side::Client,
        }
    }

    /// 0 for the client, 1 for the server.
    #[inline]
    pub const fn index(self) -> usize {
        self as usize
    }
}

/// Where a callback sits: the sending side's view, the receiving side's view, or don't-care.
///
/// For one packet, `Snd` callbacks run before `Rcv` callbacks (as in mOS). An event that has
/// both views (all flow events except `TCP_STATE_CHANGE` and `CONN_END`) is delivered to `Any`
/// subscribers once, together with the `Rcv` view (the side whose buffer the packet feeds).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Hook {
    /// The sending side's view: `side` is the side that sent the packet (mOS `MOS_HK_SND`).
    Snd = 0,
    /// The receiving side's view: `side` is the side that receives the packet and whose buffer
    /// holds its payload (mOS `MOS_HK_RCV`).
    Rcv = 1,
    /// Don't care (mOS `MOS_NULL`): each occurrence once.
    Any = 2,
}

/// An event id. Built-in events carry mOS's bit values; user-defined events (see
/// [`Registry::define`]) get the bits above `CONN_END`, so a set of events is a `u64` mask.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Event(pub(crate) u64);

impl Event {
    /// Every packet of a monitored flow (mOS `MOS_ON_PKT_IN`, `1 << 0`).
    pub const PKT_IN: Event = Event(1 << 0);
    /// A flow starts: its first SYN (or its mid-stream pickup) (`MOS_ON_CONN_START`, `1 << 2`).
    pub const CONN_START: Event = Event(1 << 2);
    /// New in-order bytes are readable: at most once per flow side per receive batch, after the
    /// batch, also in FIN_WAIT states (`MOS_ON_CONN_NEW_DATA`, `1 << 4`).
    pub const CONN_NEW_DATA: Event = Event(1 << 4);
    /// Unread bytes are about to be overwritten, or bytes could not be stored, or the packet was
    /// malformed for its flow (`MOS_ON_ERROR`, `1 << 5`).
    pub const ERROR: Event = Event(1 << 5);
    /// A side's TCP state changed (`MOS_ON_TCP_STATE_CHANGE`, `1 << 7`).
    pub const TCP_STATE_CHANGE: Event = Event(1 << 7);
    /// A TCP packet of no known flow (`MOS_ON_ORPHAN`, `1 << 8`).
    pub const ORPHAN: Event = Event(1 << 8);
    /// A retransmission: payload overlapping bytes already received, or a SYN, SYN-ACK or FIN
    /// sent again (`MOS_ON_REXMIT`, `1 << 9`). Raised before the segment is stored.
    pub const REXMIT: Event = Event(1 << 9);
    /// The flow ends; raised once per flow, and the stream can still be read inside the callback
    /// (`MOS_ON_CONN_END`, `1 << 10`).
    pub const CONN_END: Event = Event(1 << 10);

    /// All built-in events.
    pub const BUILTIN: [Event; 8] = [
        Event::PKT_IN,
        Event::CONN_START,
        Event::CONN_NEW_DATA,
        Event::ERROR,
        Event::TCP_STATE_CHANGE,
        Event::ORPHAN,
        Event::REXMIT,
        Event::CONN_END,
    ];

    /// The first bit used by user-defined events.
    pub(crate) const FIRST_UDE_BIT: u32 = 11;

    /// The raw id (a single bit).
    #[inline]
    pub const fn bits(self) -> u64 {
        self.0
    }

    /// True for the eight built-in events.
    pub const fn is_builtin(self) -> bool {
        self.0 != 0 && self.0 < (1 << Self::FIRST_UDE_BIT)
    }

    /// The mOS name of a built-in event, `"USER"` for user-defined ones.
    pub const fn name(self) -> &'static str {
        match self.0 {
            1 => "PKT_IN",
            4 => "CONN_START",
            16 => "CONN_NEW_DATA",
            32 => "ERROR",
            128 => "TCP_STATE_CHANGE",
            256 => "ORPHAN",
            512 => "REXMIT",
            1024 => "CONN_END",
            _ => "USER",
        }
    }
}

/// The TCP state of one side, as mOS emulates each endpoint (`enum tcpstate`, same numbering).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum TcpState {
    /// Closed (after RST, or after the last ACK of a close).
    Closed = 0,
    /// Nothing seen yet from or for this endpoint.
    Listen = 1,
    /// This endpoint sent a SYN.
    SynSent = 2,
    /// This endpoint received a SYN.
    SynRcvd = 3,
    /// Handshake complete.
    Established = 4,
    /// This endpoint sent FIN first.
    FinWait1 = 5,
    /// Its FIN was acknowledged.
    FinWait2 = 6,
    /// The peer closed first; this endpoint may still send.
    CloseWait = 7,
    /// Both sent FIN, neither acknowledged yet.
    Closing = 8,
    /// This endpoint sent FIN after the peer's.
    LastAck = 9,
    /// This endpoint closed first and saw the peer's FIN.
    TimeWait = 10,
}

impl TcpState {
    /// The mOS/RFC 793 name, e.g. `"TIME_WAIT"`.
    pub const fn name(self) -> &'static str {
        match self {
            TcpState::Closed => "CLOSED",
            TcpState::Listen => "LISTEN",
            TcpState::SynSent => "SYN_SENT",
            TcpState::SynRcvd => "SYN_RCVD",
            TcpState::Established => "ESTABLISHED",
            TcpState::FinWait1 => "FIN_WAIT_1",
            TcpState::FinWait2 => "FIN_WAIT_2",
            TcpState::CloseWait => "CLOSE_WAIT",
            TcpState::Closing => "CLOSING",
            TcpState::LastAck => "LAST_ACK",
            TcpState::TimeWait => "TIME_WAIT",
        }
    }

    pub(crate) const fn from_u8(v: u8) -> TcpState {
        match v {
            1 => TcpState::Listen,
            2 => TcpState::SynSent,
            3 => TcpState::SynRcvd,
            4 => TcpState::Established,
            5 => TcpState::FinWait1,
            6 => TcpState::FinWait2,
            7 => TcpState::CloseWait,
            8 => TcpState::Closing,
            9 => TcpState::LastAck,
            10 => TcpState::TimeWait,
            _ => TcpState::Closed,
        }
    }
}

/// Which copy of a byte a side keeps when segments overlap (contract rule 7).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Overlap {
    /// The first copy received wins (default, as mOS).
    First,
    /// The last copy wins, for bytes not yet delivered in order (out-of-order fragments).
    /// Bytes below the in-order end never change once stored: the application may have read them.
    Last,
}

/// A handle to one flow. It carries the owning core and a generation, so a stale handle (its
/// flow ended, its slot reused) can never read another flow's bytes: it gets
/// [`PeekError::BadFlow`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowHandle {
    pub(crate) core: u16,
    pub(crate) slot: u32,
    pub(crate) gen: u32,
}

impl FlowHandle {
    /// The core (monitor instance) that owns this flow.
    pub const fn core(self) -> u16 {
        self.core
    }
    /// The flow-table slot (stable for the flow's life; reused afterwards).
    pub const fn slot(self) -> u32 {
        self.slot
    }
}

/// One stored fragment of a side's stream, in stream offsets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Frag {
    /// Stream offset of the first byte.
    pub offset: u64,
    /// Number of bytes.
    pub len: u64,
}

/// The state of one side's buffer, all as stream offsets (0 = first payload byte).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct BufInfo {
    /// The sequence number of stream offset 0 (the peer's ISN + 1, or the first seen sequence
    /// number for a flow picked up mid-stream).
    pub init_seq: u32,
    /// The oldest byte still held (bytes below were overwritten or never stored).
    pub oldest: u64,
    /// The `peek` cursor.
    pub read: u64,
    /// End of the in-order data (the next byte expected).
    pub in_order_end: u64,
    /// End of the furthest byte received.
    pub last_end: u64,
    /// Bytes of this stream lost to a limit or at the tap (never readable): past the capacity
    /// beyond a hole, the pool empty, the island limit, overwritten in a full ring before they
    /// were read, or acknowledged by the receiving endpoint but never seen by the monitor. Each loss also raised `ERROR` (see
    /// [`ErrorReason`]).
    pub lost: u64,
}

/// Why `ERROR` was raised (`Ctx::error_reason` inside the callback).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorReason {
    /// Unread in-order bytes are about to be overwritten to make room in a full ring (they can
    /// still be read inside this callback; what is left unread counts in `BufInfo::lost`).
    Overwriting {
        /// Bytes about to be overwritten.
        bytes: u64,
    },
    /// Bytes that could not be stored and are lost for good (counted in `BufInfo::lost`).
    Lost {
        /// Bytes lost by this segment.
        bytes: u64,
        /// Which limit.
        cause: LossCause,
    },
    /// A RST whose sequence number is not the receiver's next expected one (RFC 5961 §3: an
    /// endpoint answers it with a challenge ACK and stays connected): ignored.
    RstNotAtNextSeq,
    /// A SYN or SYN-ACK with a new ISN on a synchronized connection (RFC 5961 §4): ignored.
    SynOnSynchronized,
    /// The flow table is full and this flow is evicted to make room (`CONN_END` follows; its
    /// later packets are orphans, or a picked-up flow of their own).
    Evicted,
    /// Bytes (or a second FIN) beyond the sender's FIN: not stream data, ignored.
    AfterFin {
        /// Payload bytes beyond the FIN.
        bytes: u64,
    },
}

/// The limit that made bytes unstorable ([`ErrorReason::Lost`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LossCause {
    /// Beyond the side's capacity past a hole.
    Capacity,
    /// The chunk pool was empty.
    Pool,
    /// The side already holds `Config::max_islands` out-of-order islands.
    Islands,
    /// The receiving endpoint acknowledged bytes the monitor never saw (lost at the tap); the
    /// hole is permanent.
    Tap,
}

/// Errors of `ppeek`, `peek`, `frag_info` and `buf_info` (contract §13).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PeekError {
    /// The handle belongs to another core's monitor (`EACCES`).
    InvalidContext,
    /// The handle names no live flow: closed, or its slot reused (`EBADF`).
    BadFlow,
    /// Buffering was switched off for that side (`EINVAL`).
    BufferDisabled,
    /// The handle names a packet-level (raw) monitor, which has no stream (`ESOCKTNOSUPPORT`).
    ///
    /// Unreachable from Rust: a [`FlowHandle`] always names a stream flow. Kept for the C ABI.
    WrongType,
    /// That side has no stream origin yet: the SYN (or first packet) of the direction it
    /// receives was not seen, so offsets are undefined (`ENOTCONN`).
    NotConnected,
    /// Nothing is stored at the offset: a hole, or beyond the last byte received (`ENODATA`).
    NoData,
    /// The offset is older than the oldest byte still held (`ENODATA`). `oldest` is that byte,
    /// `missed` the number of bytes between the requested offset (or the `peek` cursor) and it.
    /// `peek` also returns it, once, for a hole the receiver acknowledged (lost at the tap):
    /// `oldest` is then the first byte after the hole, where the cursor moved.
    Overwritten {
        /// The oldest byte still held.
        oldest: u64,
        /// Bytes skipped: `oldest - offset`.
        missed: u64,
    },
    /// The call is made where it is not allowed, e.g. from another core (`EPERM`).
    ///
    /// Unreachable from Rust: a monitor is `!Sync` and borrowed mutably by its core, so no other
    /// core can call into it. Kept for the C ABI.
    NotPermitted,
}

impl PeekError {
    /// The Linux errno value of the `mtcp_ppeek` man page for this error.
    pub const fn errno(self) -> i32 {
        match self {
            PeekError::InvalidContext => 13,                         // EACCES
            PeekError::BadFlow => 9,                                 // EBADF
            PeekError::BufferDisabled => 22,                         // EINVAL
            PeekError::WrongType => 94,                              // ESOCKTNOSUPPORT
            PeekError::NotConnected => 107,                          // ENOTCONN
            PeekError::NoData | PeekError::Overwritten { .. } => 61, // ENODATA
            PeekError::NotPermitted => 1,                            // EPERM
        }
    }
}

impl core::fmt::Display for PeekError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            PeekError::InvalidContext => f.write_str("flow handle belongs to another core"),
            PeekError::BadFlow => f.write_str("flow handle names no live flow"),
            PeekError::BufferDisabled => f.write_str("buffering is off for that side"),
            PeekError::WrongType => f.write_str("handle names a raw monitor, which has no stream"),
            PeekError::NotConnected => f.write_str("that side has no stream origin yet"),
            PeekError::NoData => f.write_str("no data stored at that offset"),
            PeekError::Overwritten { oldest, missed } => {
                write!(
                    f,
                    "offset overwritten: oldest byte held is {oldest} ({missed} missed)"
                )
            }
            PeekError::NotPermitted => f.write_str("call not permitted here"),
        }
    }
}

impl core::error::Error for PeekError {}

/// Errors of the packet actions (contract §5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ActionError {
    /// The monitor runs in tap mode, which observes and never transmits (rule 20).
    TapMode,
    /// There is no current packet (e.g. in `CONN_NEW_DATA`, `CONN_END` after a timeout, timers).
    NoPacket,
    /// There is no current flow (e.g. `ORPHAN`, timers).
    NoFlow,
    /// The frame does not fit the rewrite or inject buffer, or is not a rewritable TCP frame
    /// (e.g. it was reassembled from IP fragments).
    TooLarge,
    /// The inject queue is full; drain it with `Monitor::drain_injected`.
    QueueFull,
    /// The monitor has no flow-extra table (`Storage::extras` is empty), which re-keying,
    /// length-changing rewrites, per-flow subscriptions, per-side stop and resets need.
    NoExtras,
    /// The handle names no live flow of this monitor (closed, or its slot reused).
    BadFlow,
    /// Not an event of this monitor (built-in, or defined / allocated by its registry).
    BadEvent,
    /// A payload splice outside the current packet's payload.
    OutOfRange,
}

impl core::fmt::Display for ActionError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            ActionError::TapMode => "tap mode never transmits",
            ActionError::NoPacket => "no current packet",
            ActionError::NoFlow => "no current flow",
            ActionError::TooLarge => "frame too large or not rewritable",
            ActionError::QueueFull => "inject queue full",
            ActionError::NoExtras => "no flow-extra table (Storage::extras is empty)",
            ActionError::BadFlow => "flow handle names no live flow",
            ActionError::BadEvent => "not an event of this monitor",
            ActionError::OutOfRange => "splice outside the packet's payload",
        })
    }
}

impl core::error::Error for ActionError {}

/// A parsed view of the current packet (`Ctx::packet_info`), as it stands (after any rewrite
/// made so far by the callbacks). Offsets index the frame `Ctx::packet` returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PacketInfo {
    /// Source address.
    pub src: core::net::IpAddr,
    /// Destination address.
    pub dst: core::net::IpAddr,
    /// TCP source port.
    pub sport: u16,
    /// TCP destination port.
    pub dport: u16,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgment number.
    pub ack: u32,
    /// TCP flags byte (`PacketInfo::FIN` ... `PacketInfo::CWR`).
    pub flags: u8,
    /// Window field, unscaled.
    pub window: u16,
    /// Offset of the IP header in the frame.
    pub l3_off: usize,
    /// Offset of the TCP header in the frame (past any IPv6 extension headers).
    pub l4_off: usize,
    /// Offset of the TCP payload in the frame.
    pub payload_off: usize,
    /// Bytes of TCP payload (Ethernet padding excluded).
    pub payload_len: usize,
    /// The side that sent the packet (`None` for a packet of no flow, e.g. in `ORPHAN`).
    pub sender: Option<Side>,
}

impl PacketInfo {
    /// FIN flag bit.
    pub const FIN: u8 = 0x01;
    /// SYN flag bit.
    pub const SYN: u8 = 0x02;
    /// RST flag bit.
    pub const RST: u8 = 0x04;
    /// PSH flag bit.
    pub const PSH: u8 = 0x08;
    /// ACK flag bit.
    pub const ACK: u8 = 0x10;
    /// URG flag bit.
    pub const URG: u8 = 0x20;
    /// ECE flag bit.
    pub const ECE: u8 = 0x40;
    /// CWR flag bit.
    pub const CWR: u8 = 0x80;
}

/// What the caller should do with a frame after the monitor saw it (inline mode).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict<'a> {
    /// Forward the frame unchanged to the peer port (always the verdict in tap mode).
    Forward,
    /// Drop the frame.
    Drop,
    /// Forward these bytes instead of the frame (rewritten, IPv4 and TCP checksums fixed).
    Rewritten(&'a [u8]),
}

/// User middlebox logic: one instance per core, statically dispatched by `Monitor<M>`.
///
/// Callbacks run on the owning core with a [`Ctx`] that gives the current flow (if any), its
/// per-flow user state, `ppeek`/`peek`, packet actions and timers.
pub trait Middlebox {
    /// Per-flow user state, default-initialised at `CONN_START` and dropped after `CONN_END`
    /// (replaces mOS's `uctx`).
    type Flow: Default;

    /// Called once by `Monitor::new`: subscribe to events, define user events, arm timers.
    fn init(&mut self, reg: &mut Registry) {
        let _ = reg;
    }

    /// An event the middlebox subscribed to. `side` is the side whose view `hook` names
    /// (for `Rcv`/`Any`: the side whose buffer holds the data; remember a side's buffer holds
    /// the bytes that side RECEIVES).
    fn on_event(&mut self, cx: &mut Ctx<'_, '_, Self::Flow>, ev: Event, hook: Hook, side: Side);

    /// The filter of a user-defined event: `key` is the value given to [`Registry::define`];
    /// `side` is as for `on_event` (a side's buffer holds the bytes that side RECEIVES).
    /// Return true to raise the user event. The default raises nothing.
    fn filter(
        &mut self,
        key: u32,
        cx: &mut Ctx<'_, '_, Self::Flow>,
        parent: Event,
        hook: Hook,
        side: Side,
    ) -> bool {
        let _ = (key, cx, parent, hook, side);
        false
    }

    /// A per-core timer armed with `Registry::timer` or `Ctx::set_timer` expired.
    fn on_timer(&mut self, cx: &mut Ctx<'_, '_, Self::Flow>, id: u32) {
        let _ = (cx, id);
    }
}
