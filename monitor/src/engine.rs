//! The engine: `Monitor<M>` takes frames in batches, runs intake, the flow table, the per-side
//! TCP state machines and reassembly, and dispatches events to the `Middlebox`.
//!
//! Event order for one packet of a flow: `CONN_START` (first packet), `PKT_IN`, state changes
//! of the sender (`Snd` view) then the receiver (`Rcv` view), `REXMIT` (before storing),
//! `ERROR` (before overwriting unread bytes, after dropping bytes), and `CONN_END` when the flow
//! closes (after any pending `CONN_NEW_DATA` of that flow). `CONN_NEW_DATA` for the other flows
//! comes once per flow side after the batch (`end_batch`).

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use smoltcp::wire::{IpAddress, Ipv4Packet, Ipv6Packet, TcpPacket};

use crate::api::{
    ActionError, BufInfo, Event, FlowHandle, Frag, Hook, Middlebox, Overlap, PeekError, Side,
    TcpState, Verdict,
};
use crate::config::{
    Config, ConfigError, Counters, DropReason, Storage, EVICT_SCAN, INJECT_MAX, INJECT_SLOTS,
    MAX_TIMERS, MAX_USER_EVENTS, REWRITE_MAX,
};
use crate::flow::{
    self, Bucket, FlowKey, FlowSlot, F_CLIENT_IS_A, F_IN_PEND, F_LIVE, F_PICKED, F_STOPPED, NONE,
};
use crate::intake::{self, Addrs, FragTable, Tcp, L3};
use crate::reasm::{
    Pool, SideState, S_BUF_OFF, S_FIN_SENT, S_LAST, S_NEWDATA, S_ORIGIN, S_PEER_FIN, S_SYNACK_SENT,
    S_SYN_SENT,
};

#[derive(Clone, Copy, Debug)]
struct Ude {
    parent: Event,
    key: u32,
}

#[derive(Clone, Copy, Debug)]
struct Timer {
    id: u32,
    deadline: u64,
    period: u64,
}

/// Event subscriptions, user-defined events and timers of one monitor.
///
/// Subscriptions apply to every flow of the monitor (mOS: callbacks on the listener socket).
#[derive(Debug)]
pub struct Registry {
    subs: [u64; 3],
    /// Per hook: events worth raising (subscribed, or the parent of a needed user event).
    interest: [u64; 3],
    /// The union of `interest` over the hooks (one test on the packet path).
    any_interest: u64,
    /// Per hook: user events with a subscribed descendant (or self).
    needed: [u64; 3],
    udes: heapless::Vec<Ude, MAX_USER_EVENTS>,
    timers: heapless::Vec<Timer, MAX_TIMERS>,
    now: u64,
}

impl Registry {
    fn new() -> Self {
        Registry {
            subs: [0; 3],
            interest: [0; 3],
            any_interest: 0,
            needed: [0; 3],
            udes: heapless::Vec::new(),
            timers: heapless::Vec::new(),
            now: 0,
        }
    }

    fn is_event(&self, ev: Event) -> bool {
        ev.is_builtin() && Event::BUILTIN.contains(&ev) || self.ude_index(ev).is_some()
    }

    fn ude_index(&self, ev: Event) -> Option<usize> {
        let bit = ev.0.trailing_zeros();
        if ev.0.count_ones() != 1 || bit < Event::FIRST_UDE_BIT {
            return None;
        }
        let i = (bit - Event::FIRST_UDE_BIT) as usize;
        (i < self.udes.len()).then_some(i)
    }

    /// Call `on_event` for `ev` at `hook` (for every flow). Returns false if `ev` is no event.
    pub fn subscribe(&mut self, ev: Event, hook: Hook) -> bool {
        if !self.is_event(ev) {
            return false;
        }
        self.subs[hook as usize] |= ev.0;
        self.recompute();
        true
    }

    /// Stop calling `on_event` for `ev` at `hook`.
    pub fn unsubscribe(&mut self, ev: Event, hook: Hook) {
        self.subs[hook as usize] &= !ev.0;
        self.recompute();
    }

    /// True if `on_event` is called for `ev` at `hook`.
    pub fn is_subscribed(&self, ev: Event, hook: Hook) -> bool {
        self.subs[hook as usize] & ev.0 != 0
    }

    /// Define a user event: raised when `parent` (built-in or user-defined, so children of
    /// children work) is raised and `Middlebox::filter(key, ..)` returns true. An identical
    /// definition (same parent and key) returns the existing id.
    pub fn define(&mut self, parent: Event, key: u32) -> Result<Event, ConfigError> {
        if !self.is_event(parent) {
            return Err(ConfigError::BadEvent);
        }
        if let Some(i) = self
            .udes
            .iter()
            .position(|u| u.parent == parent && u.key == key)
        {
            return Ok(Event(1 << (Event::FIRST_UDE_BIT as usize + i)));
        }
        let i = self.udes.len();
        self.udes
            .push(Ude { parent, key })
            .map_err(|_| ConfigError::BadEvent)?;
        self.recompute();
        Ok(Event(1 << (Event::FIRST_UDE_BIT as usize + i)))
    }

    /// Arm timer `id` to fire `after_us` from now, then every `period_us` if non-zero.
    /// Re-arming an armed id replaces it. `Err(QueueFull)` if `MAX_TIMERS` are armed.
    pub fn set_timer(&mut self, id: u32, after_us: u64, period_us: u64) -> Result<(), ActionError> {
        let t = Timer {
            id,
            deadline: self.now.saturating_add(after_us),
            period: period_us,
        };
        if let Some(x) = self.timers.iter_mut().find(|x| x.id == id) {
            *x = t;
            return Ok(());
        }
        self.timers.push(t).map_err(|_| ActionError::QueueFull)
    }

    /// Disarm timer `id`. Returns whether it was armed.
    pub fn cancel_timer(&mut self, id: u32) -> bool {
        match self.timers.iter().position(|x| x.id == id) {
            Some(i) => {
                self.timers.swap_remove(i);
                true
            }
            None => false,
        }
    }

    fn recompute(&mut self) {
        for h in 0..3 {
            let mut needed = 0u64;
            for i in (0..self.udes.len()).rev() {
                let bit = 1u64 << (Event::FIRST_UDE_BIT as usize + i);
                let child_needed = self.udes.iter().enumerate().any(|(j, u)| {
                    u.parent.0 == bit && needed & (1 << (Event::FIRST_UDE_BIT as usize + j)) != 0
                });
                if self.subs[h] & bit != 0 || child_needed {
                    needed |= bit;
                }
            }
            self.needed[h] = needed;
            let mut interest = self.subs[h];
            for (i, u) in self.udes.iter().enumerate() {
                if needed & (1 << (Event::FIRST_UDE_BIT as usize + i)) != 0 {
                    interest |= u.parent.0;
                }
            }
            self.interest[h] = interest;
        }
        self.any_interest = self.interest[0] | self.interest[1] | self.interest[2];
    }
}

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
    swept_at: u64,
    batch_frames: usize,
    pkt: PacketState,
    inject: heapless::Deque<heapless::Vec<u8, INJECT_MAX>, INJECT_SLOTS>,
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
}

// ---------------------------------------------------------------------------------------------
// Reading streams (shared by Monitor, Ctx).

impl<F> Core<'_, F> {
    fn slot_of(&self, h: FlowHandle) -> Result<&FlowSlot<F>, PeekError> {
        if h.core != self.cfg.core {
            return Err(PeekError::InvalidContext);
        }
        match self.flows.get(h.slot as usize) {
            Some(f) if f.live() && f.gen == h.gen => Ok(f),
            _ => Err(PeekError::BadFlow),
        }
    }

    fn side_of(&self, h: FlowHandle, side: Side) -> Result<&SideState, PeekError> {
        Ok(&self.slot_of(h)?.sides[side.index()])
    }

    fn readable(&self, h: FlowHandle, side: Side) -> Result<&SideState, PeekError> {
        let s = self.side_of(h, side)?;
        if !s.buffered() {
            return Err(PeekError::BufferDisabled);
        }
        if !s.has(S_ORIGIN) {
            return Err(PeekError::NotConnected);
        }
        Ok(s)
    }

    fn ppeek(
        &self,
        h: FlowHandle,
        side: Side,
        off: u64,
        buf: &mut [u8],
    ) -> Result<usize, PeekError> {
        let s = self.readable(h, side)?;
        if buf.is_empty() {
            return Ok(0);
        }
        if off < s.base {
            return Err(PeekError::Overwritten {
                oldest: s.base,
                missed: s.base - off,
            });
        }
        let end = s.fragment_end(off).ok_or(PeekError::NoData)?;
        let n = ((end - off) as usize).min(buf.len());
        s.read_at(&self.pool, off, &mut buf[..n]);
        Ok(n)
    }

    fn peek(&mut self, h: FlowHandle, side: Side, buf: &mut [u8]) -> Result<usize, PeekError> {
        self.readable(h, side)?;
        let s = &mut self.flows[h.slot as usize].sides[side.index()];
        if s.cursor < s.base {
            let missed = s.base - s.cursor;
            s.cursor = s.base;
            return Err(PeekError::Overwritten {
                oldest: s.base,
                missed,
            });
        }
        let n = ((s.cont_end - s.cursor) as usize).min(buf.len());
        if n == 0 {
            return Ok(0);
        }
        let reached = s.read_at(&self.pool, s.cursor, &mut buf[..n]);
        s.set_finger(reached);
        s.cursor += n as u64;
        Ok(n)
    }

    fn frag_info(&self, h: FlowHandle, side: Side, out: &mut [Frag]) -> Result<usize, PeekError> {
        let s = self.readable(h, side)?;
        let mut n = 0;
        s.fragments(|offset, len| {
            if let Some(o) = out.get_mut(n) {
                *o = Frag { offset, len };
            }
            n += 1;
        });
        Ok(n)
    }

    fn buf_info(&self, h: FlowHandle, side: Side) -> Result<BufInfo, PeekError> {
        let s = self.side_of(h, side)?;
        if !s.has(S_ORIGIN) {
            return Err(PeekError::NotConnected);
        }
        Ok(BufInfo {
            init_seq: s.rcv_isn.wrapping_add(1),
            oldest: if s.buffered() { s.base } else { s.cont_end },
            read: s.cursor,
            in_order_end: s.cont_end,
            last_end: s.last_end(),
        })
    }

    fn tcp_state(&self, h: FlowHandle, side: Side) -> Result<TcpState, PeekError> {
        Ok(TcpState::from_u8(self.side_of(h, side)?.state))
    }

    fn endpoints(&self, h: FlowHandle) -> Result<Endpoints, PeekError> {
        let f = self.slot_of(h)?;
        let addr = |a: &[u8; 16]| -> IpAddr {
            if f.key.v6 {
                IpAddr::V6(Ipv6Addr::from(*a))
            } else {
                IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3]))
            }
        };
        let ea = (addr(&f.key.a), f.key.pa);
        let eb = (addr(&f.key.b), f.key.pb);
        Ok(if f.flags & F_CLIENT_IS_A != 0 {
            Endpoints {
                client: ea,
                server: eb,
            }
        } else {
            Endpoints {
                client: eb,
                server: ea,
            }
        })
    }

    fn set_overlap(&mut self, h: FlowHandle, side: Side, p: Overlap) -> Result<(), PeekError> {
        self.slot_of(h)?;
        let s = &mut self.flows[h.slot as usize].sides[side.index()];
        match p {
            Overlap::First => s.flags &= !S_LAST,
            Overlap::Last => s.flags |= S_LAST,
        }
        Ok(())
    }

    fn disable_buffer(&mut self, h: FlowHandle, side: Side) -> Result<(), PeekError> {
        self.slot_of(h)?;
        let s = &mut self.flows[h.slot as usize].sides[side.index()];
        s.release(&mut self.pool);
        s.flags |= S_BUF_OFF;
        Ok(())
    }

    fn window_scale(&self, h: FlowHandle, side: Side) -> Result<Option<u8>, PeekError> {
        let f = self.slot_of(h)?;
        let (a, b) = (
            f.sides[side.index()].wscale,
            f.sides[side.peer().index()].wscale,
        );
        Ok((a != 0xff && b != 0xff).then_some(a))
    }

    fn handle(&self, slot: u32) -> FlowHandle {
        FlowHandle {
            core: self.cfg.core,
            slot,
            gen: self.flows[slot as usize].gen,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Ctx: the callback view.

impl<'c, 'a, F> Ctx<'c, 'a, F> {
    /// The current flow, if the event belongs to one (`None` for `ORPHAN` and timers).
    pub fn flow(&self) -> Option<FlowHandle> {
        self.flow.map(|s| self.core.handle(s))
    }
    /// This monitor's core id.
    pub fn core_id(&self) -> u16 {
        self.core.cfg.core
    }
    /// The current time in µs (the latest timestamp given to the monitor).
    pub fn now_us(&self) -> u64 {
        self.core.now
    }
    /// The current flow's user state.
    pub fn user(&mut self) -> Option<&mut F> {
        let s = self.flow?;
        self.core.flows[s as usize].user.as_mut()
    }
    /// Another flow's user state (`None` for a stale or foreign handle).
    pub fn user_of(&mut self, h: FlowHandle) -> Option<&mut F> {
        self.core.slot_of(h).ok()?;
        self.core.flows[h.slot as usize].user.as_mut()
    }
    /// Copy bytes of `side`'s buffer (the bytes that side RECEIVES) from stream offset `off`,
    /// up to `buf.len()`, never across a hole. No cursor moves. `Ok(0)` only for an empty `buf`.
    pub fn ppeek(
        &self,
        flow: FlowHandle,
        side: Side,
        off: u64,
        buf: &mut [u8],
    ) -> Result<usize, PeekError> {
        self.core.ppeek(flow, side, off, buf)
    }
    /// Read in order from `side`'s buffer (the bytes that side RECEIVES) at its cursor and advance
    /// it. `Ok(0)`: nothing new. `Err(Overwritten)` once if bytes under the cursor were
    /// overwritten; the cursor then moves to the oldest byte held.
    pub fn peek(
        &mut self,
        flow: FlowHandle,
        side: Side,
        buf: &mut [u8],
    ) -> Result<usize, PeekError> {
        self.core.peek(flow, side, buf)
    }
    /// List the fragments stored in `side`'s buffer (the bytes that side RECEIVES) in offset
    /// order into `out`; returns how many there are (only `out.len()` are written).
    pub fn frag_info(
        &self,
        flow: FlowHandle,
        side: Side,
        out: &mut [Frag],
    ) -> Result<usize, PeekError> {
        self.core.frag_info(flow, side, out)
    }
    /// The state of `side`'s buffer (the bytes that side RECEIVES).
    pub fn buf_info(&self, flow: FlowHandle, side: Side) -> Result<BufInfo, PeekError> {
        self.core.buf_info(flow, side)
    }
    /// The TCP state of `side`'s endpoint (whose buffer holds the bytes that side RECEIVES).
    pub fn tcp_state(&self, flow: FlowHandle, side: Side) -> Result<TcpState, PeekError> {
        self.core.tcp_state(flow, side)
    }
    /// The flow's client and server endpoints.
    pub fn endpoints(&self, flow: FlowHandle) -> Result<Endpoints, PeekError> {
        self.core.endpoints(flow)
    }
    /// The window scale `side`'s endpoint announced, if both endpoints announced one
    /// (`side`'s buffer holds the bytes that side RECEIVES).
    pub fn window_scale(&self, flow: FlowHandle, side: Side) -> Result<Option<u8>, PeekError> {
        self.core.window_scale(flow, side)
    }
    /// Set the overlap policy of `side`'s buffer (the bytes that side RECEIVES).
    pub fn set_overlap(
        &mut self,
        flow: FlowHandle,
        side: Side,
        p: Overlap,
    ) -> Result<(), PeekError> {
        self.core.set_overlap(flow, side, p)
    }
    /// Switch buffering off for `side` (the bytes that side RECEIVES); its chunks return to the
    /// pool. State tracking and events go on.
    pub fn disable_buffer(&mut self, flow: FlowHandle, side: Side) -> Result<(), PeekError> {
        self.core.disable_buffer(flow, side)
    }
    /// Whether the flow was picked up mid-stream.
    pub fn picked_up(&self, flow: FlowHandle) -> Result<bool, PeekError> {
        Ok(self.core.slot_of(flow)?.flags & F_PICKED != 0)
    }
    /// The current frame (rewritten bytes if `packet_mut` was called), if any.
    pub fn packet(&self) -> Option<&[u8]> {
        let f = self.frame?;
        Some(if self.core.pkt.modified {
            &self.core.pkt.buf
        } else {
            f
        })
    }
    /// Rewrite the current frame (inline mode): the bytes are copied once; IPv4 header and TCP
    /// checksums are fixed after the callbacks, and the caller gets `Verdict::Rewritten`.
    pub fn packet_mut(&mut self) -> Result<&mut [u8], ActionError> {
        if !self.core.cfg.inline {
            return Err(ActionError::TapMode);
        }
        let f = self.frame.ok_or(ActionError::NoPacket)?;
        if !self.core.pkt.rewritable {
            return Err(ActionError::TooLarge);
        }
        if !self.core.pkt.modified {
            self.core.pkt.buf.clear();
            self.core
                .pkt
                .buf
                .extend_from_slice(f)
                .map_err(|_| ActionError::TooLarge)?;
            self.core.pkt.modified = true;
        }
        Ok(&mut self.core.pkt.buf)
    }
    /// Drop the current frame (inline mode).
    pub fn drop_packet(&mut self) -> Result<(), ActionError> {
        if !self.core.cfg.inline {
            return Err(ActionError::TapMode);
        }
        self.frame.ok_or(ActionError::NoPacket)?;
        self.core.pkt.dropped = true;
        Ok(())
    }
    /// Stop monitoring the current flow: no more events, no buffering; its later packets are
    /// forwarded untouched (counted as `Unmonitored`). No `CONN_END` follows; the slot is freed
    /// by the idle timeout (or eviction).
    pub fn stop_monitoring(&mut self) -> Result<(), ActionError> {
        let s = self.flow.ok_or(ActionError::NoFlow)?;
        let core = &mut *self.core;
        let f = &mut core.flows[s as usize];
        f.flags |= F_STOPPED;
        for side in f.sides.iter_mut() {
            side.release(&mut core.pool);
            side.flags |= S_BUF_OFF;
        }
        Ok(())
    }
    /// Queue a frame to transmit (inline mode); the caller drains it with
    /// `Monitor::drain_injected`.
    pub fn inject(&mut self, frame: &[u8]) -> Result<(), ActionError> {
        if !self.core.cfg.inline {
            return Err(ActionError::TapMode);
        }
        let v = heapless::Vec::from_slice(frame).map_err(|_| ActionError::TooLarge)?;
        self.core
            .inject
            .push_back(v)
            .map_err(|_| ActionError::QueueFull)
    }
    /// Arm a per-core timer (see [`Registry::set_timer`]).
    pub fn set_timer(&mut self, id: u32, after_us: u64, period_us: u64) -> Result<(), ActionError> {
        self.core.reg.now = self.core.now;
        self.core.reg.set_timer(id, after_us, period_us)
    }
    /// Disarm a per-core timer.
    pub fn cancel_timer(&mut self, id: u32) -> bool {
        self.core.reg.cancel_timer(id)
    }
    /// The registry, to change subscriptions at run time.
    pub fn registry(&mut self) -> &mut Registry {
        &mut self.core.reg
    }
    /// The monitor's counters.
    pub fn counters(&self) -> &Counters {
        &self.core.counters
    }
}

// ---------------------------------------------------------------------------------------------
// Dispatch.

fn raise_at<M: Middlebox>(
    mb: &mut M,
    core: &mut Core<'_, M::Flow>,
    flow: Option<u32>,
    frame: Option<&[u8]>,
    ev: Event,
    hook: Hook,
    side: Side,
) {
    let h = hook as usize;
    if core.reg.interest[h] & ev.0 == 0 {
        return;
    }
    let mut cx = Ctx { core, flow, frame };
    if cx.core.reg.subs[h] & ev.0 != 0 {
        mb.on_event(&mut cx, ev, hook, side);
    }
    let needed = cx.core.reg.needed[h];
    if needed == 0 {
        return;
    }
    let mut fired = ev.0;
    let n = cx.core.reg.udes.len();
    for i in 0..n {
        let bit = 1u64 << (Event::FIRST_UDE_BIT as usize + i);
        let u = cx.core.reg.udes[i];
        if needed & bit == 0 || fired & u.parent.0 == 0 {
            continue;
        }
        if mb.filter(u.key, &mut cx, u.parent, hook, side) {
            fired |= bit;
            if cx.core.reg.subs[h] & bit != 0 {
                mb.on_event(&mut cx, Event(bit), hook, side);
            }
        }
    }
}

/// An event with both views: `Snd` (sender) then `Rcv` and `Any` (receiver).
#[inline]
fn raise_pair<M: Middlebox>(
    mb: &mut M,
    core: &mut Core<'_, M::Flow>,
    flow: u32,
    frame: Option<&[u8]>,
    ev: Event,
    sender: Side,
) {
    // Inlined check so that an event nobody listens to (PKT_IN, most often) costs a load and a
    // test on the packet path instead of a call.
    if core.reg.any_interest & ev.0 == 0 {
        return;
    }
    raise_pair_slow(mb, core, flow, frame, ev, sender);
}

#[inline(never)]
fn raise_pair_slow<M: Middlebox>(
    mb: &mut M,
    core: &mut Core<'_, M::Flow>,
    flow: u32,
    frame: Option<&[u8]>,
    ev: Event,
    sender: Side,
) {
    raise_pair_body(mb, core, flow, frame, ev, sender);
}

/// `raise_pair` after its interest test (inlined where events are raised in a loop).
#[inline(always)]
fn raise_pair_body<M: Middlebox>(
    mb: &mut M,
    core: &mut Core<'_, M::Flow>,
    flow: u32,
    frame: Option<&[u8]>,
    ev: Event,
    sender: Side,
) {
    if core.flows[flow as usize].flags & F_STOPPED != 0 {
        return;
    }
    raise_at(mb, core, Some(flow), frame, ev, Hook::Snd, sender);
    raise_at(mb, core, Some(flow), frame, ev, Hook::Rcv, sender.peer());
    raise_at(mb, core, Some(flow), frame, ev, Hook::Any, sender.peer());
}

/// An event with one view.
fn raise_one<M: Middlebox>(
    mb: &mut M,
    core: &mut Core<'_, M::Flow>,
    flow: u32,
    frame: Option<&[u8]>,
    ev: Event,
    hook: Hook,
    side: Side,
) {
    let i = &core.reg.interest;
    if (i[hook as usize] | i[Hook::Any as usize]) & ev.0 == 0
        || core.flows[flow as usize].flags & F_STOPPED != 0
    {
        return;
    }
    raise_at(mb, core, Some(flow), frame, ev, hook, side);
    raise_at(mb, core, Some(flow), frame, ev, Hook::Any, side);
}

fn set_state<M: Middlebox>(
    mb: &mut M,
    core: &mut Core<'_, M::Flow>,
    flow: u32,
    frame: Option<&[u8]>,
    side: Side,
    st: TcpState,
    sender: Side,
) {
    let s = &mut core.flows[flow as usize].sides[side.index()];
    if s.state == st as u8 {
        return;
    }
    s.state = st as u8;
    let hook = if side == sender { Hook::Snd } else { Hook::Rcv };
    raise_one(mb, core, flow, frame, Event::TCP_STATE_CHANGE, hook, side);
}

/// Raise pending `CONN_NEW_DATA` of one flow.
#[inline]
fn flush_new_data<M: Middlebox>(mb: &mut M, core: &mut Core<'_, M::Flow>, flow: u32) {
    for side in Side::BOTH {
        let s = &mut core.flows[flow as usize].sides[side.index()];
        if s.flags & S_NEWDATA != 0 {
            s.flags &= !S_NEWDATA;
            // `side` received the data: its peer sent it.
            if core.reg.any_interest & Event::CONN_NEW_DATA.0 != 0 {
                raise_pair_body(mb, core, flow, None, Event::CONN_NEW_DATA, side.peer());
            }
        }
    }
}

/// End a live flow: pending new data, `CONN_END` once (unless monitoring was stopped), free.
fn end_flow<M: Middlebox>(
    mb: &mut M,
    core: &mut Core<'_, M::Flow>,
    flow: u32,
    frame: Option<&[u8]>,
    sender: Side,
) {
    let f = &core.flows[flow as usize];
    if !f.live() {
        return;
    }
    if f.flags & F_STOPPED == 0 {
        flush_new_data(mb, core, flow);
        let r = &core.reg;
        let ev = Event::CONN_END.0;
        let (hook, side) = if r.interest[Hook::Snd as usize] & ev != 0 {
            (Hook::Snd, sender)
        } else if r.interest[Hook::Rcv as usize] & ev != 0 {
            (Hook::Rcv, sender.peer())
        } else {
            (Hook::Any, sender.peer())
        };
        raise_at(mb, core, Some(flow), frame, Event::CONN_END, hook, side);
    }
    free_flow(core, flow);
}

fn free_flow<F>(core: &mut Core<'_, F>, flow: u32) {
    let hash = core.flows[flow as usize].hash as u64;
    flow::remove(core.index, core.flows, hash, flow);
    let pool = &mut core.pool;
    let f = &mut core.flows[flow as usize];
    for s in f.sides.iter_mut() {
        s.release(pool);
    }
    f.flags &= F_IN_PEND; // keep pending-list membership: the list walk skips dead slots
    f.user = None;
    f.gen = f.gen.wrapping_add(1);
    f.next_free = core.free_head;
    core.free_head = flow;
    core.live -= 1;
}

// ---------------------------------------------------------------------------------------------
// Monitor.

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
                f.sides[0].flags |= S_BUF_OFF;
                f.sides[1].flags |= S_BUF_OFF;
            }
        }
        for b in st.index.iter_mut() {
            *b = Bucket::EMPTY;
        }
        let mut reg = Registry::new();
        mb.init(&mut reg);
        Ok(Monitor {
            mb,
            core: Core {
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
                inject: heapless::Deque::new(),
            },
            frags: FragTable {
                slots: st.frags,
                used: 0,
            },
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
        Ok(self.core.slot_of(flow)?.flags & F_PICKED != 0)
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
        let mut i = core.pend_head;
        core.pend_head = NONE;
        let mut guard = core.flows.len() + 1;
        while i != NONE && guard > 0 {
            guard -= 1;
            let next = core.flows[i as usize].pend_next;
            core.flows[i as usize].pend_next = NONE;
            core.flows[i as usize].flags &= !F_IN_PEND;
            if core.flows[i as usize].live() {
                flush_new_data(mb, core, i);
            }
            i = next;
        }
        let now = core.now;
        self.frags
            .expire(now, core.cfg.frag_timeout_us, &mut core.counters);
        // Sweep so that the whole table is visited once per quarter of the idle timeout of
        // elapsed time: touching cold slots is the expensive part, so no more than that.
        let len = core.flows.len() as u128;
        let dt = now.saturating_sub(core.swept_at) as u128;
        let quarter = (core.cfg.idle_timeout_us / 4).max(1) as u128;
        let n = (len * dt / quarter).min(len) as usize;
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
    pub fn on_batch<'f, I: IntoIterator<Item = (&'f [u8], u64)>>(&mut self, frames: I) {
        let mut started = false;
        for (f, ts) in frames {
            if !started {
                self.begin_batch(ts);
                started = true;
            }
            let _ = self.frame(f, ts);
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
        }
    }

    fn sweep_idle(&mut self, n: usize) {
        let len = self.core.flows.len();
        let timeout = self.core.cfg.idle_timeout_us;
        for _ in 0..n.min(len) {
            let i = self.core.sweep % len;
            self.core.sweep = (i + 1) % len;
            let f = &self.core.flows[i];
            if f.live() && flow::idle_us(self.core.now, f.last_seen) >= timeout {
                self.core.counters.flows_timed_out += 1;
                end_flow(&mut self.mb, &mut self.core, i as u32, None, Side::Client);
            }
        }
    }

    /// Process one frame received at `ts_us` (call between `begin_batch` and `end_batch`).
    /// Returns what to do with it in inline mode (always `Forward` in tap mode).
    pub fn frame(&mut self, frame: &[u8], ts_us: u64) -> Verdict<'_> {
        let core = &mut self.core;
        core.now = core.now.max(ts_us);
        core.batch_frames += 1;
        core.counters.frames += 1;
        core.counters.frame_bytes += frame.len() as u64;
        core.pkt.dropped = false;
        core.pkt.modified = false;
        core.pkt.rewritable = false;
        match intake::parse_l3(frame) {
            Err(r) => core.counters.dropped[r as usize] += 1,
            Ok(L3::Tcp { addrs, seg, l3_off }) => {
                core.pkt.rewritable = true;
                core.pkt.v6 = addrs.v6;
                core.pkt.l3_off = l3_off;
                match intake::parse_tcp(seg) {
                    Ok(t) => process_tcp(&mut self.mb, core, frame, &addrs, &t),
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
            }) => {
                let now = core.now;
                let to = core.cfg.frag_timeout_us;
                match self.frags.add(
                    addrs,
                    proto,
                    id,
                    off,
                    more,
                    data,
                    now,
                    to,
                    &mut core.counters,
                ) {
                    Err(r) => core.counters.dropped[r as usize] += 1,
                    Ok(None) => core.counters.dropped[DropReason::FragmentHeld as usize] += 1,
                    Ok(Some(i)) => {
                        core.counters.datagrams_reassembled += 1;
                        let (addrs, proto, dg) = self.frags.slots[i].datagram();
                        if proto != 6 {
                            core.counters.dropped[DropReason::NotTcp as usize] += 1;
                        } else {
                            match intake::parse_tcp(dg) {
                                Ok(t) => process_tcp(&mut self.mb, core, frame, &addrs, &t),
                                Err(r) => core.counters.dropped[r as usize] += 1,
                            }
                        }
                        self.frags.release(i);
                    }
                }
            }
        }
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

fn fix_checksums(p: &mut PacketState) {
    let l3 = p.l3_off;
    let Some(b) = p.buf.get_mut(l3..) else { return };
    if !p.v6 {
        let Ok(mut ip) = Ipv4Packet::new_checked(&mut *b) else {
            return;
        };
        if ip.header_len() < 20 {
            return;
        }
        ip.fill_checksum();
        let (src, dst) = (ip.src_addr(), ip.dst_addr());
        let Ok(mut t) = TcpPacket::new_checked(ip.payload_mut()) else {
            return;
        };
        t.fill_checksum(&IpAddress::Ipv4(src), &IpAddress::Ipv4(dst));
    } else {
        let Ok(mut ip) = Ipv6Packet::new_checked(&mut *b) else {
            return;
        };
        if u8::from(ip.next_header()) != 6 {
            return; // extension headers: leave the checksum alone
        }
        let (src, dst) = (ip.src_addr(), ip.dst_addr());
        let Ok(mut t) = TcpPacket::new_checked(ip.payload_mut()) else {
            return;
        };
        t.fill_checksum(&IpAddress::Ipv6(src), &IpAddress::Ipv6(dst));
    }
}

// ---------------------------------------------------------------------------------------------
// The per-packet path.

fn alloc_slot<M: Middlebox>(mb: &mut M, core: &mut Core<'_, M::Flow>) -> Option<u32> {
    if core.free_head == NONE {
        // Full: evict the least recently active of the next EVICT_SCAN live flows.
        let len = core.flows.len();
        let mut best: Option<(u64, usize)> = None;
        for k in 0..EVICT_SCAN.min(len) {
            let i = (core.sweep + k) % len;
            let f = &core.flows[i];
            let idle = flow::idle_us(core.now, f.last_seen);
            if f.live() && best.is_none_or(|(t, _)| idle > t) {
                best = Some((idle, i));
            }
        }
        core.sweep = (core.sweep + EVICT_SCAN) % len;
        let (_, victim) = best?;
        core.counters.flows_evicted += 1;
        end_flow(mb, core, victim as u32, None, Side::Client);
    }
    let i = core.free_head;
    let f = core.flows.get_mut(i as usize)?;
    core.free_head = f.next_free;
    f.next_free = NONE;
    core.live += 1;
    Some(i)
}

fn create_flow<M: Middlebox>(
    mb: &mut M,
    core: &mut Core<'_, M::Flow>,
    key: FlowKey,
    hash: u64,
    client_is_a: bool,
    picked: bool,
) -> Option<u32> {
    let i = alloc_slot(mb, core)?;
    let cfg = core.cfg;
    let f = &mut core.flows[i as usize];
    let gen = f.gen;
    let pend = f.flags & F_IN_PEND;
    let pend_next = f.pend_next;
    *f = FlowSlot::EMPTY;
    f.gen = gen;
    f.pend_next = pend_next;
    f.key = key;
    f.hash = hash as u32;
    f.last_seen = flow::tick_of(core.now);
    f.flags = F_LIVE
        | pend
        | if client_is_a { F_CLIENT_IS_A } else { 0 }
        | if picked { F_PICKED } else { 0 };
    for s in f.sides.iter_mut() {
        if !cfg.buffering {
            s.flags |= S_BUF_OFF;
        }
        if cfg.overlap == Overlap::Last {
            s.flags |= S_LAST;
        }
    }
    f.user = Some(M::Flow::default());
    flow::insert(core.index, hash, i);
    core.counters.flows_created += 1;
    Some(i)
}

fn ip_key(a: &Addrs, t: &Tcp<'_>) -> (FlowKey, bool) {
    FlowKey::new(a.v6, &a.src, t.sport, &a.dst, t.dport)
}

#[inline]
fn seq_ge(a: u32, b: u32) -> bool {
    a.wrapping_sub(b) as i32 >= 0
}

fn process_tcp<M: Middlebox>(
    mb: &mut M,
    core: &mut Core<'_, M::Flow>,
    frame: &[u8],
    addrs: &Addrs,
    t: &Tcp<'_>,
) {
    let (key, sender_is_a) = ip_key(addrs, t);
    let hash = key.hash(core.cfg.hash_seed);
    let fr = Some(frame);
    let mut fresh = false;
    let slot = match flow::lookup(core.index, core.flows, &key, hash) {
        Some(s) => s,
        None => {
            if t.syn && !t.ackf && !t.rst {
                let Some(s) = create_flow(mb, core, key, hash, sender_is_a, false) else {
                    core.counters.dropped[DropReason::Orphan as usize] += 1;
                    return;
                };
                fresh = true;
                s
            } else if core.cfg.pickup
                && !t.rst
                && !t.fin
                && (!t.payload.is_empty() || (t.syn && t.ackf))
            {
                // Pickup rule (documented on Config::pickup).
                let sender_is_client = if t.syn && t.ackf {
                    false
                } else if t.sport != t.dport {
                    t.sport > t.dport
                } else {
                    true
                };
                let client_is_a = sender_is_a == sender_is_client;
                let Some(s) = create_flow(mb, core, key, hash, client_is_a, true) else {
                    core.counters.dropped[DropReason::Orphan as usize] += 1;
                    return;
                };
                core.counters.flows_picked_up += 1;
                let f = &mut core.flows[s as usize];
                let (snd, rcv) = if sender_is_client { (0, 1) } else { (1, 0) };
                if t.syn && t.ackf {
                    // Missed the SYN only: the SYN-ACK's ACK gives the client's ISN.
                    f.sides[snd].rcv_isn = t.ack.wrapping_sub(1);
                    f.sides[snd].flags |= S_ORIGIN;
                    f.sides[rcv].flags |= S_SYN_SENT;
                    f.sides[rcv].state = TcpState::SynSent as u8;
                    f.sides[snd].state = TcpState::SynRcvd as u8;
                } else {
                    f.sides[0].state = TcpState::Established as u8;
                    f.sides[1].state = TcpState::Established as u8;
                }
                fresh = true;
                s
            } else {
                core.counters.dropped[DropReason::Orphan as usize] += 1;
                let side = Side::Server;
                raise_at(mb, core, None, fr, Event::ORPHAN, Hook::Snd, side.peer());
                raise_at(mb, core, None, fr, Event::ORPHAN, Hook::Rcv, side);
                raise_at(mb, core, None, fr, Event::ORPHAN, Hook::Any, side);
                return;
            }
        }
    };
    let f = &mut core.flows[slot as usize];
    f.last_seen = flow::tick_of(core.now);
    if f.flags & F_STOPPED != 0 {
        core.counters.dropped[DropReason::Unmonitored as usize] += 1;
        return;
    }
    core.counters.tcp_packets += 1;
    let client_is_a = f.flags & F_CLIENT_IS_A != 0;
    let snd = if sender_is_a == client_is_a {
        Side::Client
    } else {
        Side::Server
    };
    let rcv = snd.peer();
    if fresh {
        raise_pair(mb, core, slot, fr, Event::CONN_START, snd);
    }
    raise_pair(mb, core, slot, fr, Event::PKT_IN, snd);

    // RST closes both sides.
    if t.rst {
        set_state(mb, core, slot, fr, snd, TcpState::Closed, snd);
        set_state(mb, core, slot, fr, rcv, TcpState::Closed, snd);
        core.counters.flows_closed += 1;
        end_flow(mb, core, slot, fr, snd);
        return;
    }

    let si = snd.index();
    let ri = rcv.index();
    // Window scale announced on SYN / SYN-ACK.
    if t.syn {
        if let Some(ws) = t.wscale {
            core.flows[slot as usize].sides[si].wscale = ws;
        }
    }

    // SYN and SYN-ACK.
    if t.syn {
        let f = &mut core.flows[slot as usize];
        let (s, r) = (&f.sides[si], &f.sides[ri]);
        let same_isn = r.has(S_ORIGIN) && r.rcv_isn == t.seq;
        if t.ackf {
            if s.has(S_SYNACK_SENT) && same_isn {
                core.counters.rexmits += 1;
                raise_pair(mb, core, slot, fr, Event::REXMIT, snd);
            } else {
                let f = &mut core.flows[slot as usize];
                f.sides[ri].rcv_isn = t.seq;
                f.sides[ri].flags |= S_ORIGIN;
                f.sides[si].flags |= S_SYN_SENT | S_SYNACK_SENT;
                let sst = TcpState::from_u8(f.sides[si].state);
                let rst = TcpState::from_u8(f.sides[ri].state);
                if sst == TcpState::Listen {
                    set_state(mb, core, slot, fr, snd, TcpState::SynRcvd, snd);
                }
                if rst == TcpState::SynSent || rst == TcpState::SynRcvd {
                    set_state(mb, core, slot, fr, rcv, TcpState::Established, snd);
                }
            }
        } else if s.has(S_SYN_SENT) && same_isn {
            core.counters.rexmits += 1;
            raise_pair(mb, core, slot, fr, Event::REXMIT, snd);
        } else {
            let f = &mut core.flows[slot as usize];
            f.sides[ri].rcv_isn = t.seq;
            f.sides[ri].flags |= S_ORIGIN;
            f.sides[si].flags |= S_SYN_SENT;
            let sst = TcpState::from_u8(f.sides[si].state);
            let rst = TcpState::from_u8(f.sides[ri].state);
            if sst == TcpState::Listen {
                set_state(mb, core, slot, fr, snd, TcpState::SynSent, snd);
            }
            if rst == TcpState::Listen || rst == TcpState::SynSent {
                // LISTEN+SYN, or simultaneous open (SYN_SENT+SYN).
                set_state(mb, core, slot, fr, rcv, TcpState::SynRcvd, snd);
            }
        }
    }

    // ACK processing for the receiver (it learns its SYN or FIN was acknowledged).
    if t.ackf {
        let r = &core.flows[slot as usize].sides[ri];
        let rst = TcpState::from_u8(r.state);
        let fin_acked = r.has(S_FIN_SENT) && seq_ge(t.ack, r.fin_ack);
        match rst {
            TcpState::SynRcvd if !t.syn => {
                set_state(mb, core, slot, fr, rcv, TcpState::Established, snd)
            }
            TcpState::FinWait1 if fin_acked => {
                set_state(mb, core, slot, fr, rcv, TcpState::FinWait2, snd)
            }
            TcpState::Closing if fin_acked => {
                set_state(mb, core, slot, fr, rcv, TcpState::TimeWait, snd)
            }
            TcpState::LastAck if fin_acked => {
                set_state(mb, core, slot, fr, rcv, TcpState::Closed, snd)
            }
            _ => {}
        }
    }

    // Picked-up flow: the first packet of a direction fixes its origin.
    {
        let f = &mut core.flows[slot as usize];
        if f.flags & F_PICKED != 0 && !f.sides[ri].has(S_ORIGIN) && !t.syn {
            f.sides[ri].rcv_isn = t.seq.wrapping_sub(1);
            f.sides[ri].flags |= S_ORIGIN;
        }
    }

    // Payload into the receiver's buffer.
    let data_seq = t.seq.wrapping_add(t.syn as u32);
    if !t.payload.is_empty() {
        store_payload(mb, core, slot, fr, snd, data_seq, t.payload);
    }

    // FIN.
    if t.fin {
        let fin_seq = data_seq.wrapping_add(t.payload.len() as u32);
        let s = &core.flows[slot as usize].sides[si];
        if s.has(S_FIN_SENT) && s.fin_ack == fin_seq.wrapping_add(1) {
            if t.payload.is_empty() {
                core.counters.rexmits += 1;
                raise_pair(mb, core, slot, fr, Event::REXMIT, snd);
            }
        } else {
            let f = &mut core.flows[slot as usize];
            f.sides[si].flags |= S_FIN_SENT;
            f.sides[si].fin_ack = fin_seq.wrapping_add(1);
            let r = &mut f.sides[ri];
            r.peer_fin = fin_seq;
            r.flags |= S_PEER_FIN;
            match TcpState::from_u8(f.sides[si].state) {
                TcpState::Established | TcpState::SynRcvd => {
                    set_state(mb, core, slot, fr, snd, TcpState::FinWait1, snd)
                }
                TcpState::CloseWait => set_state(mb, core, slot, fr, snd, TcpState::LastAck, snd),
                _ => {}
            }
        }
    }
    peer_fin_in_order(mb, core, slot, fr, snd);

    // Both endpoints done: the flow ends.
    let f = &core.flows[slot as usize];
    let done = |st: u8| st == TcpState::TimeWait as u8 || st == TcpState::Closed as u8;
    if done(f.sides[0].state) && done(f.sides[1].state) {
        core.counters.flows_closed += 1;
        end_flow(mb, core, slot, fr, snd);
    }
}

/// Receiver transitions once the peer's FIN is in order.
fn peer_fin_in_order<M: Middlebox>(
    mb: &mut M,
    core: &mut Core<'_, M::Flow>,
    slot: u32,
    fr: Option<&[u8]>,
    snd: Side,
) {
    let rcv = snd.peer();
    let r = &core.flows[slot as usize].sides[rcv.index()];
    // In order once every byte before the FIN arrived (always, without a stream origin).
    if !r.has(S_PEER_FIN) || (r.has(S_ORIGIN) && r.off_of(r.peer_fin) > r.cont_end as i64) {
        return;
    }
    match TcpState::from_u8(r.state) {
        TcpState::Established | TcpState::SynRcvd => {
            set_state(mb, core, slot, fr, rcv, TcpState::CloseWait, snd)
        }
        TcpState::FinWait1 => set_state(mb, core, slot, fr, rcv, TcpState::Closing, snd),
        TcpState::FinWait2 => set_state(mb, core, slot, fr, rcv, TcpState::TimeWait, snd),
        _ => {}
    }
}

fn store_payload<M: Middlebox>(
    mb: &mut M,
    core: &mut Core<'_, M::Flow>,
    slot: u32,
    fr: Option<&[u8]>,
    snd: Side,
    seq: u32,
    payload: &[u8],
) {
    let ri = snd.peer().index();
    let r = &core.flows[slot as usize].sides[ri];
    if !r.has(S_ORIGIN) {
        core.counters.bad_segments += 1;
        return;
    }
    let off = r.off_of(seq);
    let len = payload.len() as u64;
    let end = off + len as i64;
    if end <= 0 {
        core.counters.bad_segments += 1;
        return;
    }
    let (s, data) = if off < 0 {
        let skip = (-off) as usize;
        (0u64, &payload[skip.min(payload.len())..])
    } else {
        (off as u64, payload)
    };
    let e = end as u64;
    let cap = core.cfg.side_chunks();
    if s == r.cont_end {
        let core_ref = &mut *core;
        let r = &mut core_ref.flows[slot as usize].sides[ri];
        if r.append_in_order(&mut core_ref.pool, s, data, cap) {
            if r.buffered() {
                core_ref.counters.bytes_stored += e - s;
            }
            mark_new_data(core_ref, slot, ri);
            return;
        }
    }
    let r = &core.flows[slot as usize].sides[ri];
    if r.overlaps(s, e) {
        core.counters.rexmits += 1;
        raise_pair(mb, core, slot, fr, Event::REXMIT, snd);
    }
    let r = &core.flows[slot as usize].sides[ri];
    let plan = r.plan(s, e, cap, core.pool.nfree);
    if plan.advance > 0 {
        // The oldest in-order bytes are about to be overwritten: ERROR first if unread.
        if r.cursor < r.base + plan.advance {
            raise_pair(mb, core, slot, fr, Event::ERROR, snd);
        }
        core.counters.bytes_overwritten += plan.advance;
    }
    // Callbacks may have switched buffering off or stopped the flow: re-plan if so.
    let r = &core.flows[slot as usize].sides[ri];
    let plan = if plan.advance > 0 {
        r.plan(s, e, cap, core.pool.nfree)
    } else {
        plan
    };
    let core_ref = &mut *core;
    let r = &mut core_ref.flows[slot as usize].sides[ri];
    let before = r.cont_end;
    let grew = r.apply(&mut core_ref.pool, &plan, s, data);
    if r.buffered() && plan.end > plan.start {
        core.counters.bytes_stored += plan.end - plan.start;
    }
    let dropped = e.saturating_sub(plan.end.max(plan.start));
    if plan.pool_short {
        core.counters.pool_exhausted += 1;
    }
    if dropped > 0 {
        core.counters.bytes_dropped += dropped;
        raise_pair(mb, core, slot, fr, Event::ERROR, snd);
    }
    if grew > 0 {
        debug_assert!(core.flows[slot as usize].sides[ri].cont_end > before);
        mark_new_data(core, slot, ri);
    }
}

/// Note new in-order bytes for `CONN_NEW_DATA` at the end of the batch.
#[inline]
fn mark_new_data<F>(core: &mut Core<'_, F>, slot: u32, ri: usize) {
    let f = &mut core.flows[slot as usize];
    f.sides[ri].flags |= S_NEWDATA;
    if f.flags & F_IN_PEND == 0 {
        f.flags |= F_IN_PEND;
        f.pend_next = core.pend_head;
        core.pend_head = slot;
    }
}
