//! Flow slots: allocation (with eviction when the table is full), creation and freeing.

use super::dispatch::{end_flow, raise_error};
use super::Core;
use crate::api::{ErrorReason, Middlebox, Overlap, Side, TcpState};
use crate::config::EVICT_SCAN;
use crate::flow::{
    self, FlowKey, FlowSlot, CLIENT_IS_ENDPOINT_A, FLOW_LIVE, IN_NEW_DATA_LIST, NONE, PICKED_UP,
};
use crate::intake::{Addrs, Tcp};
use crate::reasm::{SideState, BUFFERING_OFF, LAST_COPY_WINS};

/// How much a flow is worth keeping when the table is full (lower: evicted first).
///
/// Half-open flows (no side past the handshake) go first: a SYN flood then evicts its own
/// flows. Then flows idle for a quarter of the idle timeout, then closing ones. Established
/// flows go last, and among them the youngest: when live connections outnumber the slots,
/// the flows already tracked stay whole instead of every flow losing its slot in turn (which
/// is what least-recently-used does to connections taking turns).
fn keep_value<F>(f: &FlowSlot<F>, now: u64, stale_us: u64, created: u32) -> (u8, u64) {
    use TcpState::*;
    let state = |i: usize| TcpState::from_u8(f.sides[i].state);
    let idle = flow::idle_us(now, f.last_seen);
    let handshake = |s: TcpState| matches!(s, Listen | SynSent | SynRcvd);
    if handshake(state(0)) && handshake(state(1)) {
        return (0, u64::MAX - idle);
    }
    if idle >= stale_us {
        return (1, u64::MAX - idle);
    }
    if state(0) != Established || state(1) != Established {
        return (2, u64::MAX - idle);
    }
    // Older is worth more: age in flows created since.
    (3, created.wrapping_sub(f.born) as u64)
}

pub(super) fn alloc_slot<M: Middlebox>(mb: &mut M, core: &mut Core<'_, M::Flow>) -> Option<u32> {
    if core.free_head == NONE {
        // Full: evict the least worth keeping of EVICT_SCAN live flows sampled across the
        // whole table (a stride apart, so that a run of established flows in adjacent slots,
        // e.g. those created before a flood, cannot fill the sample); the start moves by one
        // slot per eviction.
        let len = core.flows.len();
        let stale = core.cfg.idle_timeout_us / 4;
        let stride = (len / EVICT_SCAN).max(1);
        let mut best: Option<((u8, u64), usize)> = None;
        for k in 0..EVICT_SCAN.min(len) {
            let i = (core.evict_cursor + k * stride) % len;
            let f = &core.flows[i];
            if !f.live() {
                continue;
            }
            let v = keep_value(f, core.now, stale, core.counters.flows_created as u32);
            if best.is_none_or(|(b, _)| v < b) {
                best = Some((v, i));
            }
        }
        core.evict_cursor = (core.evict_cursor + 1) % len;
        let (_, victim) = best?;
        core.counters.flows_evicted += 1;
        count_eviction_loss(core, victim);
        raise_error(
            mb,
            core,
            victim as u32,
            None,
            ErrorReason::Evicted,
            Side::Client,
        );
        end_flow(mb, core, victim as u32, None, Side::Client);
    }
    let i = core.free_head;
    let f = core.flows.get_mut(i as usize)?;
    core.free_head = f.next_free;
    f.next_free = NONE;
    core.live += 1;
    Some(i)
}

/// Bytes each side of an evicted flow loses for good: the holes below its furthest byte
/// received (the sender sent them, the flow will not be there when they are retransmitted),
/// except those the receiver acknowledged, which are counted already (tap loss). Held bytes,
/// in order or in islands, are not lost: `CONN_END` can still read them.
fn count_eviction_loss<F>(core: &mut Core<'_, F>, victim: usize) {
    for s in core.flows[victim].sides.iter_mut() {
        let from = s.cont_end.max(s.acked_end());
        let lost = s.hole_bytes(&core.pool, from, s.last_end(&core.pool));
        s.lost += lost;
        core.counters.bytes_dropped += lost;
    }
}

pub(super) fn create_flow<M: Middlebox>(
    mb: &mut M,
    core: &mut Core<'_, M::Flow>,
    key: FlowKey,
    hash: u64,
    client_is_a: bool,
    picked: bool,
) -> Option<u32> {
    let i = alloc_slot(mb, core)?;
    let mut side_flags = 0;
    if !core.cfg.buffering {
        side_flags |= BUFFERING_OFF;
    }
    if core.cfg.overlap == Overlap::Last {
        side_flags |= LAST_COPY_WINS;
    }
    let f = &mut core.flows[i as usize];
    // One store of the whole slot (the compiler writes it from immediates) instead of a copy
    // of `FlowSlot::EMPTY` followed by the fields set here: the generation and the pending-list
    // link and membership carry over, everything else starts afresh.
    *f = FlowSlot {
        key,
        hash: hash as u32,
        last_seen: flow::tick_of(core.now),
        born: core.counters.flows_created as u32,
        gen: f.gen,
        next_free: NONE,
        pend_next: f.pend_next,
        flags: FLOW_LIVE
            | (f.flags & IN_NEW_DATA_LIST)
            | if client_is_a { CLIENT_IS_ENDPOINT_A } else { 0 }
            | if picked { PICKED_UP } else { 0 },
        sides: [SideState::fresh(side_flags), SideState::fresh(side_flags)],
        user: Some(M::Flow::default()),
    };
    flow::insert(core.index, hash, i);
    core.counters.flows_created += 1;
    Some(i)
}

pub(super) fn ip_key(a: &Addrs, t: &Tcp<'_>) -> (FlowKey, bool) {
    FlowKey::new(a.v6, &a.src, t.sport, &a.dst, t.dport)
}

pub(super) fn free_flow<F>(core: &mut Core<'_, F>, flow: u32) {
    let hash = core.flows[flow as usize].hash as u64;
    flow::remove(core.index, core.flows, hash, flow);
    super::rewrite::on_free(core, flow);
    let pool = &mut core.pool;
    let f = &mut core.flows[flow as usize];
    for s in f.sides.iter_mut() {
        s.free_chunks(pool);
    }
    f.flags &= IN_NEW_DATA_LIST; // keep pending-list membership: the list walk skips dead slots
    f.user = None;
    f.gen = f.gen.wrapping_add(1);
    f.next_free = core.free_head;
    core.free_head = flow;
    core.live -= 1;
}
