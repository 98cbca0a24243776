//! NAT-capable flows and the rest of mOS's per-flow API, engine side.
//!
//! * **Re-keying.** After the callbacks of a packet sent by the client, if they rewrote its
//!   addresses or ports, the rewritten tuple becomes the flow's alias (the server half's key,
//!   as mOS keys its server half from the packet after the send hook): the server's replies to
//!   it find the same flow, on the server side. Only the client's packets re-key (rewriting the
//!   server's packets back to the client's tuple is what a NAT does, and changes no key).
//! * **Length-changing rewrites** (`Ctx::splice_payload`) add to a per-flow delta of the
//!   sending side; the sequence numbers of that side's later packets and the acknowledgment
//!   numbers of its peer's are shifted by it on the way out (inline), and the peer's
//!   acknowledgments are shifted back before the monitor reads them, so the monitor's streams
//!   stay what it received, byte for byte.
//! * **Deferred work** (`settle`): user events raised with `Ctx::raise_event` and resets asked
//!   with `Ctx::reset_conn` run once the current callbacks are done: after the packet, after
//!   each timer, after the batch's `CONN_NEW_DATA`.

use super::alias::{self, FlowExtra, ALIASED, ALIAS_CLIENT_IS_A, L2_MAX, RESET_PENDING};
use super::checksum::{fix, locate};
use super::dispatch::{end_flow, raise_at, set_state};
use super::Core;
use crate::api::{Event, Hook, Middlebox, Side, TcpState};
use crate::config::{ConfigError, INJECT_MAX};
use crate::flow::{FlowKey, CLIENT_IS_ENDPOINT_A, MONITORING_STOPPED};
use crate::intake::{self, Tcp, L3};
use crate::reasm::{SideState, HAS_ORIGIN, PEER_FIN_SEEN, SENT_ACK};

/// User events raised and not yet delivered, per monitor.
pub(crate) const RAISED_MAX: usize = 16;
/// Resets asked and not yet sent, per monitor.
pub(crate) const RESETS_MAX: usize = 8;

/// A user event waiting for delivery: (slot, generation) of its flow, the event, the side.
#[derive(Clone, Copy, Debug)]
pub(super) struct Raised {
    pub(super) flow: Option<(u32, u32)>,
    pub(super) ev: Event,
    pub(super) side: Side,
}

/// The flow-extra table and the state of the per-flow API (a field of `Core`).
#[derive(Debug)]
pub(super) struct Extras<'a> {
    pub(super) tab: &'a mut [FlowExtra],
    /// Live aliases (the alias index is consulted only when this is non-zero).
    pub(super) aliases: u32,
    /// Union of every per-flow subscription made (a superset: the packet path's test).
    pub(super) flow_subs: u64,
    /// Some flow got per-flow subscriptions or a per-side stop (never cleared): until then
    /// raising an event does not read the flow's record.
    pub(super) masks: bool,
    /// Flows with a non-zero sequence delta: until then packets do not read their record.
    pub(super) deltas: u32,
    pub(super) raised: heapless::Deque<Raised, RAISED_MAX>,
    pub(super) resets: heapless::Vec<(u32, u32), RESETS_MAX>,
    /// Timestamp of the current frame.
    pub(super) ts: u64,
    /// Slot and sending side of the current packet's flow.
    pub(super) cur: Option<(u32, Side)>,
    /// Payload bytes the callbacks added to (removed from) the current packet.
    pub(super) len_delta: i32,
    settling: bool,
}

impl<'a> Extras<'a> {
    pub(super) fn new(tab: &'a mut [FlowExtra], flows: usize) -> Result<Self, ConfigError> {
        if !tab.is_empty() && tab.len() != flows {
            return Err(ConfigError::ExtrasSize);
        }
        alias::init(tab);
        Ok(Extras {
            tab,
            aliases: 0,
            flow_subs: 0,
            masks: false,
            deltas: 0,
            raised: heapless::Deque::new(),
            resets: heapless::Vec::new(),
            ts: 0,
            cur: None,
            len_delta: 0,
            settling: false,
        })
    }

    #[inline]
    pub(super) fn begin_frame(&mut self, ts: u64) {
        self.ts = ts;
        self.cur = None;
        self.len_delta = 0;
    }
}

/// The flow whose alias is `key` (only when some alias is live), and whether its client is
/// the key's endpoint `a`.
#[inline]
pub(super) fn lookup_alias<F>(core: &Core<'_, F>, key: &FlowKey, hash: u64) -> Option<(u32, bool)> {
    if core.x.aliases == 0 {
        return None;
    }
    alias::lookup(core.x.tab, key, hash)
}

/// A packet of flow `slot` sent by `snd`: remember it as current, keep the link-layer header
/// of each side's first packet in inline mode (its SYN or SYN-ACK, or the packet that picked
/// the flow up; for RSTs), and undo a length-changing rewrite's shift on the acknowledgment number (the
/// monitor reads it in the numbering of the bytes it received). Other packets do not touch
/// the flow's record unless some flow has a delta.
#[inline]
pub(super) fn on_packet<'t, F>(
    core: &mut Core<'_, F>,
    slot: u32,
    snd: Side,
    frame: &[u8],
    t: &Tcp<'t>,
    fresh: bool,
) -> Option<Tcp<'t>> {
    core.x.cur = Some((slot, snd));
    // Headers are kept only for resets, which tap mode cannot send; deltas come only from
    // inline rewrites. So in tap mode no flow's record is touched here.
    if !((core.cfg.inline && (t.syn || fresh)) || core.x.deltas > 0) {
        return None;
    }
    let e = core.x.tab.get_mut(slot as usize)?;
    let si = snd.index();
    // (More than two VLAN tags: no header kept, so no RST toward that side.)
    if e.l2_len[si] == 0 && core.pkt.rewritable && core.pkt.l3_off <= L2_MAX {
        let n = core.pkt.l3_off;
        if let Some(h) = frame.get(..n) {
            e.l2[si][..n].copy_from_slice(h);
            e.l2_len[si] = n as u8;
            e.flags |= alias::L2_KEPT;
        }
    }
    let d = e.delta[snd.peer().index()];
    (d != 0).then(|| Tcp {
        ack: t.ack.wrapping_sub(d as u32),
        ..*t
    })
}

/// After the callbacks of a frame: shift sequence numbers by the flow's deltas, re-key the
/// flow if the client's packet was readdressed, then the deferred work. Inlined: most frames
/// were not modified and no flow has a delta, so this is two tests (and `settle`'s).
#[inline(always)]
pub(super) fn after_frame<M: Middlebox>(mb: &mut M, core: &mut Core<'_, M::Flow>, frame: &[u8]) {
    if core.pkt.modified || core.x.deltas > 0 {
        shift_and_rekey(core, frame);
    }
    // (Without a flow-extra table nothing is raised or reset: `settle` finds nothing.)
    settle(mb, core);
}

/// [`after_frame`] for a modified frame, or while some flow has a delta.
#[inline(never)]
fn shift_and_rekey<F>(core: &mut Core<'_, F>, frame: &[u8]) {
    if core.x.tab.is_empty() {
        return;
    }
    if let Some((slot, snd)) = core.x.cur {
        let live = core.flows.get(slot as usize).is_some_and(|f| f.live());
        if live && !core.pkt.dropped && core.pkt.rewritable {
            if let Some(e) = core.x.tab.get(slot as usize) {
                let (dseq, dack) = (e.delta[snd.index()], e.delta[snd.peer().index()]);
                if dseq != 0 || dack != 0 {
                    shift(core, frame, dseq, dack);
                }
                if core.pkt.modified && snd == Side::Client {
                    rekey(core, slot);
                }
                if core.x.len_delta != 0 {
                    let e = &mut core.x.tab[slot as usize];
                    if e.delta == [0, 0] {
                        core.x.deltas += 1;
                    }
                    e.delta[snd.index()] = e.delta[snd.index()].wrapping_add(core.x.len_delta);
                    e.flags |= alias::DIRTY;
                    if e.delta == [0, 0] {
                        core.x.deltas -= 1;
                    }
                }
            }
        }
    }
}

/// Add `dseq` to the frame's sequence number and take `dack` from its acknowledgment number.
fn shift<F>(core: &mut Core<'_, F>, frame: &[u8], dseq: i32, dack: i32) {
    let p = &mut core.pkt;
    if !p.modified {
        p.buf.clear();
        if p.buf.extend_from_slice(frame).is_err() {
            return;
        }
        p.modified = true;
    }
    let Some((_, l4, _, _)) = locate(&p.buf) else {
        return;
    };
    let Some(h) = p.buf.get_mut(l4..l4 + 13) else {
        return;
    };
    let seq = u32::from_be_bytes([h[4], h[5], h[6], h[7]]).wrapping_add(dseq as u32);
    h[4..8].copy_from_slice(&seq.to_be_bytes());
    if h[12] & 0x10 != 0 {
        let ack = u32::from_be_bytes([h[8], h[9], h[10], h[11]]).wrapping_sub(dack as u32);
        h[8..12].copy_from_slice(&ack.to_be_bytes());
    }
}

/// The client's packet leaves with another tuple: make it the flow's alias.
fn rekey<F>(core: &mut Core<'_, F>, slot: u32) {
    let Ok(L3::Tcp { addrs, seg, .. }) = intake::parse_l3(&core.pkt.buf) else {
        return;
    };
    let (Some(sp), Some(dp)) = (seg.get(0..2), seg.get(2..4)) else {
        return;
    };
    let sp = u16::from_be_bytes([sp[0], sp[1]]);
    let dp = u16::from_be_bytes([dp[0], dp[1]]);
    let (key, sender_is_a) = FlowKey::new(addrs.v6, &addrs.src, sp, &addrs.dst, dp);
    if key.same(&core.flows[slot as usize].key) {
        return;
    }
    let e = &core.x.tab[slot as usize];
    if e.flags & ALIASED != 0 && e.key.same(&key) {
        return;
    }
    // The sender is the client.
    let hash = key.hash(&core.cfg.hash_key);
    if alias::set(core.x.tab, slot, key, hash, sender_is_a) {
        core.x.aliases += 1;
    }
}

/// The flow in `slot` ends: its record is cleared and its alias unlinked.
#[inline]
pub(super) fn on_free<F>(core: &mut Core<'_, F>, slot: u32) {
    let Some(e) = core.x.tab.get(slot as usize) else {
        return;
    };
    if e.delta != [0, 0] {
        core.x.deltas -= 1;
    }
    if alias::release(core.x.tab, slot) {
        core.x.aliases -= 1;
    }
}

/// Deliver raised user events and send asked resets, until neither is left (bounded).
#[inline(always)]
pub(super) fn settle<M: Middlebox>(mb: &mut M, core: &mut Core<'_, M::Flow>) {
    if core.x.settling || (core.x.raised.is_empty() && core.x.resets.is_empty()) {
        return;
    }
    settle_queued(mb, core);
}

/// [`settle`] with something queued (out of line: most frames queue nothing).
#[inline(never)]
fn settle_queued<M: Middlebox>(mb: &mut M, core: &mut Core<'_, M::Flow>) {
    core.x.settling = true;
    for _ in 0..4 * (RAISED_MAX + RESETS_MAX) {
        if let Some(r) = core.x.raised.pop_front() {
            let flow = match r.flow {
                Some((s, gen)) => {
                    let f = &core.flows[s as usize];
                    if !f.live() || f.gen != gen || f.flags & MONITORING_STOPPED != 0 {
                        continue;
                    }
                    Some(s)
                }
                None => None,
            };
            for hook in [Hook::Snd, Hook::Rcv, Hook::Any] {
                raise_at(mb, core, flow, None, r.ev, hook, r.side);
            }
        } else if let Some((s, gen)) = core.x.resets.pop() {
            let f = &core.flows[s as usize];
            if f.live() && f.gen == gen {
                reset(mb, core, s);
            }
        } else {
            break;
        }
    }
    core.x.settling = false;
}

/// Send RSTs to both endpoints and end the flow (both sides CLOSED, `CONN_END`).
fn reset<M: Middlebox>(mb: &mut M, core: &mut Core<'_, M::Flow>, slot: u32) {
    for to in [Side::Server, Side::Client] {
        if let Some(fr) = rst_frame(core, slot, to) {
            let _ = core.inject.push_back(fr);
        }
    }
    core.x.tab[slot as usize].flags &= !RESET_PENDING;
    set_state(
        mb,
        core,
        slot,
        None,
        Side::Client,
        TcpState::Closed,
        Side::Client,
    );
    set_state(
        mb,
        core,
        slot,
        None,
        Side::Server,
        TcpState::Closed,
        Side::Client,
    );
    core.counters.flows_closed += 1;
    end_flow(mb, core, slot, None, Side::Client);
}

/// The next sequence number the endpoint of side `r` expects (its RCV.NXT as the monitor
/// knows it), in the numbering of the bytes the monitor received.
fn rcv_next(r: &SideState) -> u32 {
    if !r.has(HAS_ORIGIN) {
        return if r.has(SENT_ACK) { r.ack_sent } else { 0 };
    }
    let mut next = r.seq_of(r.cont_end);
    if r.has(PEER_FIN_SEEN) && r.off_of(r.peer_fin) <= r.cont_end as i64 {
        next = r.peer_fin.wrapping_add(1);
    }
    if r.has(SENT_ACK) && next.wrapping_sub(r.ack_sent) as i32 <= 0 {
        next = r.ack_sent;
    }
    next
}

/// A RST+ACK to the endpoint of side `to`, as its peer would send it: the addresses it sees
/// (the alias for the server of a re-keyed flow), the link-layer header of a packet sent its
/// way (or of one it sent, MACs swapped), its next expected sequence number (shifted by the
/// peer's delta) and an acknowledgment of what the peer received from it.
fn rst_frame<F>(core: &Core<'_, F>, slot: u32, to: Side) -> Option<heapless::Vec<u8, INJECT_MAX>> {
    let f = &core.flows[slot as usize];
    let e = core.x.tab.get(slot as usize)?;
    let from = to.peer();
    let mut l2 = [0u8; L2_MAX];
    let n;
    if e.l2_len[from.index()] > 0 {
        n = e.l2_len[from.index()] as usize;
        l2[..n].copy_from_slice(&e.l2[from.index()][..n]);
    } else if e.l2_len[to.index()] >= 12 {
        n = e.l2_len[to.index()] as usize;
        let h = &e.l2[to.index()];
        l2[..n].copy_from_slice(&h[..n]);
        l2[..6].copy_from_slice(&h[6..12]);
        l2[6..12].copy_from_slice(&h[..6]);
    } else {
        return None;
    }
    let (key, cia) = if to == Side::Server && e.flags & ALIASED != 0 {
        (e.key, e.flags & ALIAS_CLIENT_IS_A != 0)
    } else {
        (f.key, f.flags & CLIENT_IS_ENDPOINT_A != 0)
    };
    let (cli, srv) = if cia {
        ((key.a, key.pa), (key.b, key.pb))
    } else {
        ((key.b, key.pb), (key.a, key.pa))
    };
    let ((src, sp), (dst, dp)) = if to == Side::Server {
        (cli, srv)
    } else {
        (srv, cli)
    };
    let seq = rcv_next(&f.sides[to.index()]).wrapping_add(e.delta[from.index()] as u32);
    let ack = rcv_next(&f.sides[from.index()]);
    let mut v: heapless::Vec<u8, INJECT_MAX> = heapless::Vec::new();
    v.extend_from_slice(&l2[..n]).ok()?;
    if key.v6 {
        v.extend_from_slice(&[0x60, 0, 0, 0, 0, 20, 6, 64]).ok()?;
        v.extend_from_slice(&src).ok()?;
        v.extend_from_slice(&dst).ok()?;
    } else {
        v.extend_from_slice(&[0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0])
            .ok()?;
        v.extend_from_slice(&src[..4]).ok()?;
        v.extend_from_slice(&dst[..4]).ok()?;
    }
    v.extend_from_slice(&sp.to_be_bytes()).ok()?;
    v.extend_from_slice(&dp.to_be_bytes()).ok()?;
    v.extend_from_slice(&seq.to_be_bytes()).ok()?;
    v.extend_from_slice(&ack.to_be_bytes()).ok()?;
    v.extend_from_slice(&[0x50, 0x14, 0, 0, 0, 0, 0, 0]).ok()?;
    fix(&mut v);
    Some(v)
}
