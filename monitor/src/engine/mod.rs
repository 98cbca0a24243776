//! The engine: `Monitor<M>` takes frames in batches, runs intake, the flow table, the per-side
//! TCP state machines and reassembly, and dispatches events to the `Middlebox`.
//!
//! Event order for one packet of a flow: `CONN_START` (first packet), `PKT_IN`, state changes
//! of the sender (`Snd` view) then the receiver (`Rcv` view), `REXMIT` (before storing),
//! `ERROR` (before overwriting unread bytes, after dropping bytes), and `CONN_END` when the flow
//! closes (after any pending `CONN_NEW_DATA` of that flow). `CONN_NEW_DATA` for the other flows
//! comes once per flow side after the batch (`end_batch`).

mod ahead;
mod alias;
mod checksum;
mod ctx;
mod dispatch;
mod payload;
mod read;
mod registry;
mod rewrite;
mod slots;
mod tcp;

pub use alias::FlowExtra;

/// Most frames [`Monitor::read_ahead`] takes at once.
pub const READ_AHEAD: usize = 32;
pub use registry::Registry;

use core::net::IpAddr;

use crate::api::{
    BufInfo, ErrorReason, FlowHandle, Frag, Middlebox, Overlap, PeekError, Side, TcpState, Verdict,
};
use crate::config::{
    Config, ConfigError, Counters, DropReason, Storage, INJECT_MAX, INJECT_SLOTS, MAX_TIMERS,
    REWRITE_MAX,
};
use crate::flow::{self, Bucket, FlowSlot, IN_NEW_DATA_LIST, NONE, PICKED_UP};
use crate::intake::{self, FragTable, Fragment, RxMeta, Tcp, L3};
use crate::prefetch;
use crate::reasm::{Pool, BUFFERING_OFF};
use checksum::fix_checksums;
use dispatch::{end_flow, flush_new_data};
use tcp::process_tcp;

/// Client and server endpoints of a flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Endpoints {
    /// Client address and port.
    pub client: (IpAddr, u16),
    /// Server address and port.
    pub server: (IpAddr, u16),
}

#[derive(Debug)]
struct PacketState {
    dropped: bool,
    modified: bool,
    rewritable: bool,
    v6: bool,
    l3_off: usize,
    buf: heapless::Vec<u8, REWRITE_MAX>,
}

/// Everything of a monitor except the middlebox: what callbacks reach through [`Ctx`].
#[derive(Debug)]
pub struct Core<'a, F> {
    cfg: Config,
    /// `cfg.side_chunks()`, once (the configuration does not change).
    side_chunks: u32,
    flows: &'a mut [FlowSlot<F>],
    index: &'a mut [Bucket],
    pool: Pool<'a>,
    reg: Registry,
    counters: Counters,
    now: u64,
    free_head: u32,
    live: u32,
    pend_head: u32,
    sweep: usize,
    /// Where the next eviction sample starts.
    evict_cursor: usize,
    swept_at: u64,
    batch_frames: usize,
    pkt: PacketState,
    /// Why the `ERROR` being raised was raised (`Ctx::error_reason`).
    error: Option<ErrorReason>,
    inject: heapless::Deque<heapless::Vec<u8, INJECT_MAX>, INJECT_SLOTS>,
    /// The flow-extra table and the per-flow API's state (`rewrite`).
    x: rewrite::Extras<'a>,
}

/// The view a callback gets: the current flow and packet, `ppeek`/`peek`, actions and timers.
#[derive(Debug)]
pub struct Ctx<'c, 'a, F> {
    core: &'c mut Core<'a, F>,
    flow: Option<u32>,
    frame: Option<&'c [u8]>,
}

/// A per-core flow monitor running middlebox `M`.
#[derive(Debug)]
pub struct Monitor<'a, M: Middlebox> {
    mb: M,
    core: Core<'a, M::Flow>,
    frags: FragTable<'a>,
    /// Frames read ahead (`Monitor::read_ahead`). (Beside `core`, not in it: the TCP path
    /// takes a remembered key by reference while it changes `core`.)
    ahead: ahead::Ahead,
}

// ---------------------------------------------------------------------------------------------
// Monitor: construction, batches and the front end (frame -> intake -> TCP).

impl<'a, M: Middlebox> Monitor<'a, M> {
    /// Build a monitor over caller-provided storage (see [`Storage`] for sizing). Calls
    /// `M::init` to register events and timers.
    pub fn new(mut mb: M, cfg: Config, st: Storage<'a, M::Flow>) -> Result<Self, ConfigError> {
        let n = st.flows.len();
        if n == 0 || n >= NONE as usize {
            return Err(ConfigError::FlowCapacity);
        }
        if !st.index.len().is_power_of_two() || st.index.len() < 2 * n {
            return Err(ConfigError::IndexSize);
        }
        if st.chunks.len() >= NONE as usize || st.links.len() != st.chunks.len() {
            return Err(ConfigError::PoolSize);
        }
        for (i, f) in st.flows.iter_mut().enumerate() {
            *f = FlowSlot::EMPTY;
            f.next_free = if i + 1 < n { (i + 1) as u32 } else { NONE };
            if !cfg.buffering {
                f.sides[0].flags |= BUFFERING_OFF;
                f.sides[1].flags |= BUFFERING_OFF;
            }
        }
        for b in st.index.iter_mut() {
            *b = Bucket::EMPTY;
        }
        let x = rewrite::Extras::new(st.extras, n)?;
        let mut reg = Registry::new();
        mb.init(&mut reg);
        Ok(Monitor {
            mb,
            core: Core {
                side_chunks: cfg.side_chunks(),
                cfg,
                flows: st.flows,
                index: st.index,
                pool: Pool::new(st.chunks, st.links),
                reg,
                counters: Counters::default(),
                now: 0,
                free_head: 0,
                live: 0,
                pend_head: NONE,
                sweep: 0,
                evict_cursor: 0,
                swept_at: 0,
                batch_frames: 0,
                pkt: PacketState {
                    dropped: false,
                    modified: false,
                    rewritable: false,
                    v6: false,
                    l3_off: 0,
                    buf: heapless::Vec::new(),
                },
                error: None,
                inject: heapless::Deque::new(),
                x,
            },
            frags: FragTable {
                slots: st.frags,
                buf: st.frag_buf,
                used: 0,
            },
            ahead: ahead::Ahead::EMPTY,
        })
    }

    /// The middlebox.
    pub fn middlebox(&self) -> &M {
        &self.mb
    }
    /// The middlebox, mutably.
    pub fn middlebox_mut(&mut self) -> &mut M {
        &mut self.mb
    }
    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.core.cfg
    }
    /// The counters.
    pub fn counters(&self) -> &Counters {
        &self.core.counters
    }
    /// The registry (subscriptions, user events, timers).
    pub fn registry(&mut self) -> &mut Registry {
        &mut self.core.reg
    }
    /// Live flows.
    pub fn flow_count(&self) -> usize {
        self.core.live as usize
    }
    /// Free chunks in the pool.
    pub fn free_chunks(&self) -> usize {
        self.core.pool.nfree as usize
    }
    /// Bytes of monitor state per flow (the cost of an idle flow: its slot plus its share of
    /// the hash index), excluding the middlebox's own per-flow state `M::Flow`.
    pub fn flow_state_bytes(&self) -> usize {
        core::mem::size_of::<FlowSlot<()>>()
            + core::mem::size_of_val::<[Bucket]>(self.core.index) / self.core.flows.len()
    }

    /// Stream bytes held by all live flows (in-order runs from their oldest byte kept, and
    /// out-of-order islands). Walks the whole table: for measurements, not the packet path.
    pub fn stream_bytes_held(&self) -> u64 {
        let pool = &self.core.pool;
        self.core
            .flows
            .iter()
            .filter(|f| f.live())
            .map(|f| f.sides[0].held_bytes(pool) + f.sides[1].held_bytes(pool))
            .sum()
    }

    /// Bytes of chunk pool in use now (stream bytes, the space they leave unused in their
    /// chunks, island lists and datagrams being reassembled).
    pub fn pool_bytes_in_use(&self) -> u64 {
        let p = &self.core.pool;
        (p.len() - p.nfree) as u64 * crate::config::CHUNK_SIZE as u64
    }

    /// Bytes of chunk pool touched since the monitor was built (the high-water mark of
    /// [`Monitor::pool_bytes_in_use`]: freed chunks are reused before fresh ones).
    pub fn pool_bytes_touched(&self) -> u64 {
        self.core.pool.touched() as u64 * crate::config::CHUNK_SIZE as u64
    }

    /// Bytes of the user's per-flow state as stored in a slot (`Option<M::Flow>`).
    pub fn user_state_bytes(&self) -> usize {
        core::mem::size_of::<FlowSlot<M::Flow>>() - core::mem::size_of::<FlowSlot<()>>()
    }
    /// See [`Ctx::ppeek`] (a side's buffer holds the bytes that side RECEIVES).
    pub fn ppeek(
        &self,
        flow: FlowHandle,
        side: Side,
        off: u64,
        buf: &mut [u8],
    ) -> Result<usize, PeekError> {
        self.core.ppeek(flow, side, off, buf)
    }
    /// See [`Ctx::peek`] (a side's buffer holds the bytes that side RECEIVES).
    pub fn peek(
        &mut self,
        flow: FlowHandle,
        side: Side,
        buf: &mut [u8],
    ) -> Result<usize, PeekError> {
        self.core.peek(flow, side, buf)
    }
    /// See [`Ctx::frag_info`] (a side's buffer holds the bytes that side RECEIVES).
    pub fn frag_info(
        &self,
        flow: FlowHandle,
        side: Side,
        out: &mut [Frag],
    ) -> Result<usize, PeekError> {
        self.core.frag_info(flow, side, out)
    }
    /// See [`Ctx::buf_info`] (a side's buffer holds the bytes that side RECEIVES).
    pub fn buf_info(&self, flow: FlowHandle, side: Side) -> Result<BufInfo, PeekError> {
        self.core.buf_info(flow, side)
    }
    /// See [`Ctx::tcp_state`] (a side's buffer holds the bytes that side RECEIVES).
    pub fn tcp_state(&self, flow: FlowHandle, side: Side) -> Result<TcpState, PeekError> {
        self.core.tcp_state(flow, side)
    }
    /// See [`Ctx::endpoints`].
    pub fn endpoints(&self, flow: FlowHandle) -> Result<Endpoints, PeekError> {
        self.core.endpoints(flow)
    }
    /// See [`Ctx::window_scale`] (a side's buffer holds the bytes that side RECEIVES).
    pub fn window_scale(&self, flow: FlowHandle, side: Side) -> Result<Option<u8>, PeekError> {
        self.core.window_scale(flow, side)
    }
    /// See [`Ctx::picked_up`].
    pub fn picked_up(&self, flow: FlowHandle) -> Result<bool, PeekError> {
        Ok(self.core.slot_of(flow)?.flags & PICKED_UP != 0)
    }
    /// See [`Ctx::set_overlap`] (a side's buffer holds the bytes that side RECEIVES).
    pub fn set_overlap(
        &mut self,
        flow: FlowHandle,
        side: Side,
        p: Overlap,
    ) -> Result<(), PeekError> {
        self.core.set_overlap(flow, side, p)
    }
    /// See [`Ctx::disable_buffer`] (a side's buffer holds the bytes that side RECEIVES).
    pub fn disable_buffer(&mut self, flow: FlowHandle, side: Side) -> Result<(), PeekError> {
        self.core.disable_buffer(flow, side)
    }
    /// Handles of all live flows (in slot order).
    pub fn flows(&self) -> impl Iterator<Item = FlowHandle> + '_ {
        self.core
            .flows
            .iter()
            .enumerate()
            .filter(|(_, f)| f.live())
            .map(|(i, f)| FlowHandle {
                core: self.core.cfg.core,
                slot: i as u32,
                gen: f.gen,
            })
    }
    /// Take the frames queued by `Ctx::inject`, oldest first.
    pub fn drain_injected(&mut self, mut f: impl FnMut(&[u8])) {
        while let Some(v) = self.core.inject.pop_front() {
            f(&v);
        }
    }

    /// Start a receive batch at time `now_us`: fires due timers.
    pub fn begin_batch(&mut self, now_us: u64) {
        self.core.now = self.core.now.max(now_us);
        self.core.batch_frames = 0;
        self.fire_timers();
    }

    /// End the batch: raise `CONN_NEW_DATA` once per flow side that got new in-order bytes,
    /// expire fragments and sweep part of the table for idle flows.
    pub fn end_batch(&mut self) {
        let mb = &mut self.mb;
        let core = &mut self.core;
        // What was read ahead and not processed is forgotten with the batch.
        self.ahead.n = 0;
        let mut i = core.pend_head;
        core.pend_head = NONE;
        let mut guard = core.flows.len() + 1;
        while i != NONE && guard > 0 {
            guard -= 1;
            // (One bounds check: a listed flow is a slot of the table.)
            let Some(f) = core.flows.get_mut(i as usize) else {
                break;
            };
            let next = f.pend_next;
            f.pend_next = NONE;
            f.flags &= !IN_NEW_DATA_LIST;
            if f.live() {
                flush_new_data(mb, core, i);
            }
            i = next;
        }
        rewrite::settle(mb, core);
        let now = core.now;
        self.frags.expire(
            now,
            core.cfg.frag_timeout_us,
            &mut core.counters,
            &mut core.pool,
        );
        // Sweep so that the whole table is visited once per quarter of the idle timeout of
        // elapsed time: touching cold slots is the expensive part, so no more than that.
        let n = sweep_count(
            core.flows.len() as u64,
            now.saturating_sub(core.swept_at),
            (core.cfg.idle_timeout_us / 4).max(1),
        );
        if n > 0 {
            core.swept_at = now;
            self.sweep_idle(n);
        }
    }

    /// Advance time without frames (timers and idle timeouts).
    pub fn tick(&mut self, now_us: u64) {
        self.begin_batch(now_us);
        self.end_batch();
    }

    /// Convenience for tap mode: one batch of `(frame, timestamp µs)` pairs; verdicts ignored.
    /// Reads ahead ([`Monitor::read_ahead`]) each group of [`READ_AHEAD`] frames before
    /// processing it.
    pub fn on_batch<'f, I: IntoIterator<Item = (&'f [u8], u64)>>(&mut self, frames: I) {
        let mut it = frames.into_iter();
        let mut group: [(&'f [u8], u64); READ_AHEAD] = [(&[], 0); READ_AHEAD];
        let mut started = false;
        loop {
            let mut n = 0;
            // (`zip` asks `group` first: no frame is taken from `it` without a place.)
            for (g, x) in group.iter_mut().zip(&mut it) {
                *g = x;
                n += 1;
            }
            let Some(&(_, ts)) = group[..n].first() else {
                break;
            };
            if !started {
                self.begin_batch(ts);
                started = true;
            }
            self.read_ahead(group[..n].iter().map(|g| g.0));
            for &(f, ts) in &group[..n] {
                let _ = self.frame(f, ts);
            }
            if n < READ_AHEAD {
                break;
            }
        }
        if started {
            self.end_batch();
        }
    }

    /// End every live flow now (`CONN_END` with the stream still readable), e.g. at the end of
    /// a capture. Counted as `flows_flushed`.
    pub fn close_all(&mut self) {
        self.end_batch();
        for i in 0..self.core.flows.len() {
            if self.core.flows[i].live() {
                self.core.counters.flows_flushed += 1;
                end_flow(&mut self.mb, &mut self.core, i as u32, None, Side::Client);
                // Events raised (or resets asked) in its CONN_END callbacks.
                rewrite::settle(&mut self.mb, &mut self.core);
            }
        }
    }

    fn fire_timers(&mut self) {
        let core = &mut self.core;
        core.reg.now = core.now;
        for _ in 0..(2 * MAX_TIMERS) {
            let now = core.now;
            let Some(i) = core.reg.timers.iter().position(|t| t.deadline <= now) else {
                break;
            };
            let t = core.reg.timers[i];
            if t.period > 0 {
                let mut next = t.deadline.saturating_add(t.period);
                if next <= now {
                    next = now.saturating_add(t.period);
                }
                core.reg.timers[i].deadline = next;
            } else {
                core.reg.timers.swap_remove(i);
            }
            let mut cx = Ctx {
                core: &mut *core,
                flow: None,
                frame: None,
            };
            self.mb.on_timer(&mut cx, t.id);
            rewrite::settle(&mut self.mb, core);
        }
    }

    fn sweep_idle(&mut self, n: usize) {
        let len = self.core.flows.len();
        let timeout = self.core.cfg.idle_timeout_us;
        // The cursor stays below `len` (it is only set here): the slots from it on, wrapping
        // to 0 at the end, without a division per slot.
        let mut i = self.core.sweep;
        if i >= len {
            i %= len;
        }
        for _ in 0..n.min(len) {
            let Some(f) = self.core.flows.get(i) else {
                break;
            };
            if f.live() && flow::idle_us(self.core.now, f.last_seen) >= timeout {
                self.core.counters.flows_timed_out += 1;
                end_flow(&mut self.mb, &mut self.core, i as u32, None, Side::Client);
            }
            i += 1;
            if i == len {
                i = 0;
            }
        }
        self.core.sweep = i;
    }

    /// A hint, before the `frame`/`frame_with` calls of a batch (before or after
    /// `begin_batch`; `end_batch` forgets it): `frames` are the next frames to be processed,
    /// in order (at most [`READ_AHEAD`]; later ones are ignored). The monitor may parse them,
    /// hash their flows and prefetch what processing them will touch, and reuse that work
    /// when each frame then reaches `frame_with` (recognised by its slice, and its unchanged
    /// header bytes or its flow key). What `frame_with` does is the same with or without this
    /// call, whatever the frames then given to it.
    ///
    /// Pass 0 prefetches each frame's first two cache lines; pass 1 parses each frame (no
    /// checksum is verified here), computes its flow key and the key's hash and prefetches
    /// the key's home bucket of the index; pass 2 reads each bucket (by then in cache) for
    /// the slot it names and prefetches that slot's cache lines; pass 3 reads each slot (its
    /// lines asked for a group earlier) for where the segment's payload will be stored, the
    /// end of the receiving side's ring or the chunk the pool will hand out then
    /// (`SideState::append_spots`), and prefetches those lines. So the cache misses of a
    /// whole group overlap instead of stalling frame after frame, and `frame_with` takes the
    /// parse and the hash from here instead of computing them again (see `engine/ahead.rs`).
    /// (Out of line: called once per group, and it shows apart in profiles.)
    #[inline(never)]
    pub fn read_ahead<'f>(&mut self, frames: impl IntoIterator<Item = &'f [u8]>) {
        let core = &self.core;
        let ahead = &mut self.ahead;
        let mask = core.index.len() - 1;
        // Pass 0: the frames' headers (their first two lines), which pass 1 reads next.
        let mut list: [&'f [u8]; READ_AHEAD] = [&[]; READ_AHEAD];
        let mut n = 0;
        for (l, f) in list.iter_mut().zip(frames) {
            *l = f;
            n += 1;
            if let Some(h) = f.first() {
                prefetch::line(h);
            }
            if let Some(h) = f.get(64) {
                prefetch::line(h);
            }
        }
        for (s, &f) in ahead.seen.iter_mut().zip(&list[..n]) {
            if s.read(f, &core.cfg.hash_key) != ahead::KEPT_NOTHING {
                let bucket = &core.index[s.p.k.hash as usize & mask];
                prefetch::line(bucket as *const Bucket as *const u8);
            }
        }
        ahead.n = n;
        ahead.at = 0;
        let mut slots = [NONE; READ_AHEAD];
        for (s, slot) in ahead.seen[..n].iter().zip(slots.iter_mut()) {
            if s.kept == ahead::KEPT_NOTHING {
                continue;
            }
            if let Some(i) = flow::probe(core.index, s.p.k.hash) {
                if let Some(f) = core.flows.get(i as usize) {
                    prefetch::lines(f);
                    *slot = i;
                }
            }
        }
        // Pass 3: where each payload will be stored (the slot's lines, asked for in pass 2,
        // have had the rest of the group's time to come). A slot whose hash differs is another
        // flow's (`probe` compares tags only): nothing asked for it.
        let mut next_free = core.pool.free_head();
        for (s, &slot) in ahead.seen[..n].iter().zip(slots.iter()) {
            if s.kept < ahead::KEPT_SHORT {
                continue;
            }
            let len = s.p.seg.1.saturating_sub(s.p.payload_off);
            let Some(f) = core.flows.get(slot as usize) else {
                continue;
            };
            if len == 0 || f.hash != s.p.k.hash as u32 {
                continue;
            }
            let client_is_a = f.flags & flow::CLIENT_IS_ENDPOINT_A != 0;
            let ri = usize::from(s.p.k.sender_is_a == client_is_a);
            if let Some(side) = f.sides.get(ri) {
                side.prefetch_append(&core.pool, len, &mut next_free);
            }
        }
    }

    /// Process one frame received at `ts_us` (call between `begin_batch` and `end_batch`).
    /// Returns what to do with it in inline mode (always `Forward` in tap mode).
    pub fn frame(&mut self, frame: &[u8], ts_us: u64) -> Verdict<'_> {
        self.frame_with(frame, ts_us, RxMeta::NONE)
    }

    /// [`Monitor::frame`] with what the NIC checked (`rx`): a checksum it found good is not
    /// computed again, one it found bad drops the frame (see `Config::checksums`).
    pub fn frame_with(&mut self, frame: &[u8], ts_us: u64, rx: RxMeta) -> Verdict<'_> {
        let core = &mut self.core;
        core.now = core.now.max(ts_us);
        core.batch_frames += 1;
        core.counters.frames += 1;
        core.counters.frame_bytes += frame.len() as u64;
        core.pkt.dropped = false;
        core.pkt.modified = false;
        core.pkt.rewritable = false;
        core.x.begin_frame(ts_us);
        let (mode, csum) = (core.cfg.checksums, &mut core.counters.checksums);
        let known = match self.ahead.take(frame) {
            ahead::Reuse::Parse(i) => {
                self.frame_parsed(frame, rx, i);
                return self.after_frame(frame);
            }
            ahead::Reuse::Hash(i) => self.ahead.keyed(i),
            ahead::Reuse::Nothing => None,
        };
        match intake::parse_l3_checked(frame, rx, mode, csum) {
            Err(r) => core.counters.dropped[r as usize] += 1,
            Ok(L3::Tcp {
                addrs, seg, l3_off, ..
            }) => {
                core.pkt.rewritable = true;
                core.pkt.v6 = addrs.v6;
                core.pkt.l3_off = l3_off;
                match intake::parse_tcp(seg) {
                    Ok(t) => {
                        let k = tcp::keyed(core, &addrs, &t, known);
                        process_tcp(&mut self.mb, core, frame, &k, &t)
                    }
                    Err(r) => core.counters.dropped[r as usize] += 1,
                }
            }
            Ok(L3::Frag {
                addrs,
                proto,
                id,
                off,
                more,
                data,
                ..
            }) => {
                let now = core.now;
                let to = core.cfg.frag_timeout_us;
                let fragment = Fragment {
                    addrs,
                    proto,
                    id,
                    off,
                    more,
                    data,
                };
                let overlap = core.cfg.overlap;
                match self.frags.add(
                    fragment,
                    now,
                    to,
                    overlap,
                    &mut core.counters,
                    &mut core.pool,
                ) {
                    Err(r) => core.counters.dropped[r as usize] += 1,
                    Ok(None) => core.counters.dropped[DropReason::FragmentHeld as usize] += 1,
                    Ok(Some((addrs, proto, len))) => {
                        core.counters.datagrams_reassembled += 1;
                        let dg = self.frags.buf.get(..len).unwrap_or(&[]);
                        if proto != 6 {
                            core.counters.dropped[DropReason::NotTcp as usize] += 1;
                        } else {
                            let csum = &mut core.counters.checksums;
                            match intake::parse_tcp_checked(dg, &addrs, mode, csum) {
                                Ok(t) => {
                                    let k = tcp::keyed(core, &addrs, &t, None);
                                    process_tcp(&mut self.mb, core, frame, &k, &t)
                                }
                                Err(r) => core.counters.dropped[r as usize] += 1,
                            }
                        }
                    }
                }
            }
        }
        self.after_frame(frame)
    }

    /// [`Monitor::frame_with`] for a frame whose parse `read_ahead` kept (its header bytes
    /// unchanged): the same checksum verification on the same parse, then the TCP path.
    #[inline(always)]
    fn frame_parsed(&mut self, frame: &[u8], rx: RxMeta, i: usize) {
        let core = &mut self.core;
        let Some(s) = self.ahead.seen.get(i) else {
            return;
        };
        let p = &s.p;
        let (mode, csum) = (core.cfg.checksums, &mut core.counters.checksums);
        let seg = frame.get(p.seg.0..p.seg.1).unwrap_or(&[]);
        if csum.checking(mode) {
            let l3 = L3::Tcp {
                addrs: p.addrs(),
                seg,
                l3_off: p.l3_off,
                routed: p.routed,
            };
            if let Err(r) = intake::verify_l3(frame, &l3, rx, mode, csum) {
                core.counters.dropped[r as usize] += 1;
                return;
            }
        }
        core.pkt.rewritable = true;
        core.pkt.v6 = p.k.key.v6;
        core.pkt.l3_off = p.l3_off;
        let t = Tcp {
            payload: seg
                .get(p.payload_off.saturating_sub(p.seg.0)..)
                .unwrap_or(&[]),
            ..p.tcp
        };
        // (The key where it is: no copy.)
        process_tcp(&mut self.mb, core, frame, &p.k, &t);
    }

    /// The end of [`Monitor::frame_with`]: the flow-extra work and the verdict.
    #[inline(always)]
    fn after_frame(&mut self, frame: &[u8]) -> Verdict<'_> {
        rewrite::after_frame(&mut self.mb, &mut self.core, frame);
        let core = &mut self.core;
        if core.pkt.dropped {
            Verdict::Drop
        } else if core.pkt.modified {
            fix_checksums(&mut core.pkt);
            Verdict::Rewritten(&core.pkt.buf)
        } else {
            Verdict::Forward
        }
    }
}

/// Slots the idle sweep visits after `dt` µs without one, in a table of `len` slots, so that
/// the whole table is visited once per `quarter` µs: `min(len * dt / quarter, len)`. Most
/// batches visit none, known from one multiplication and a compare; the division (128-bit
/// only if `len * dt` overflows 64 bits, which takes a quarter of over an hour) comes only
/// when the sweep is due.
#[inline]
fn sweep_count(len: u64, dt: u64, quarter: u64) -> usize {
    if dt >= quarter {
        return len as usize;
    }
    // `dt < quarter`, so the quotient is below `len`.
    let n = match len.checked_mul(dt) {
        Some(p) if p < quarter => 0,
        Some(p) => p / quarter,
        None => (len as u128 * dt as u128 / quarter as u128) as u64,
    };
    n as usize
}

#[cfg(test)]
mod tests {
    use super::sweep_count;

    #[test]
    fn sweep_count_is_the_quotient_capped_at_the_table() {
        let want = |len: u64, dt: u64, q: u64| -> usize {
            ((len as u128 * dt as u128 / q as u128).min(len as u128)) as usize
        };
        let lens = [1u64, 2, 3, 1000, 4096, 100_000, (1 << 32) - 2];
        let quarters = [1u64, 2, 7, 7_500_000, 1 << 32, (1 << 40) + 3, u64::MAX / 4];
        let mut checked = 0;
        for &len in &lens {
            for &q in &quarters {
                let dts = [
                    0,
                    1,
                    q / len.max(1),
                    q / len.max(1) + 1,
                    q / 3,
                    q.saturating_sub(1),
                    q,
                    q.saturating_add(1),
                    u64::MAX,
                ];
                for dt in dts {
                    assert_eq!(sweep_count(len, dt, q), want(len, dt, q), "{len} {dt} {q}");
                    checked += 1;
                }
            }
        }
        assert_eq!(checked, 7 * 7 * 9);
        // The overflowing product and the cap.
        assert_eq!(sweep_count(1 << 31, 1 << 40, (1 << 41) + 1), (1 << 30) - 1);
        assert_eq!(sweep_count(5, 10, 10), 5);
        assert_eq!(sweep_count(5, 9, 10), 4);
        assert_eq!(sweep_count(5, 1, 10), 0);
    }
}
