//! Payload storage: a segment's bytes into the receiving side's ring, with its events.

use super::dispatch::{raise_error, raise_pair};
use super::Core;
use crate::api::{ErrorReason, Event, LossCause, Middlebox, Side};
use crate::flow::IN_NEW_DATA_LIST;
use crate::reasm::{HAS_ORIGIN, NEW_DATA_PENDING};

pub(super) fn store_payload<M: Middlebox>(
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
    if !r.has(HAS_ORIGIN) {
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
    let cap = core.side_chunks;
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
    let islands = core.cfg.islands_per_side();
    let r = &core.flows[slot as usize].sides[ri];
    if r.overlaps(&core.pool, s, e) {
        core.counters.rexmits += 1;
        raise_pair(mb, core, slot, fr, Event::REXMIT, snd);
    }
    let r = &core.flows[slot as usize].sides[ri];
    let plan = r.plan(&core.pool, s, e, cap, islands);
    if plan.advance > 0 {
        // The oldest in-order bytes are about to be overwritten: ERROR first if unread.
        if r.cursor < r.base + plan.advance {
            let bytes = r.base + plan.advance - r.cursor.max(r.oldest());
            raise_error(mb, core, slot, fr, ErrorReason::Overwriting { bytes }, snd);
            // What the callback did not read is lost.
            let r = &mut core.flows[slot as usize].sides[ri];
            let limit = r.base + plan.advance;
            if r.buffered() && r.cursor < limit {
                r.lost += limit - r.cursor.max(r.oldest());
            }
        }
        core.counters.bytes_overwritten += plan.advance;
    }
    // Callbacks may have switched buffering off or stopped the flow: re-plan if so.
    let r = &core.flows[slot as usize].sides[ri];
    let plan = if plan.advance > 0 {
        r.plan(&core.pool, s, e, cap, islands)
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
        core.flows[slot as usize].sides[ri].lost += dropped;
        let cause = if plan.islands_full {
            LossCause::Islands
        } else if plan.pool_short {
            LossCause::Pool
        } else {
            LossCause::Capacity
        };
        let reason = ErrorReason::Lost {
            bytes: dropped,
            cause,
        };
        raise_error(mb, core, slot, fr, reason, snd);
    }
    if grew > 0 {
        debug_assert!(core.flows[slot as usize].sides[ri].cont_end > before);
        mark_new_data(core, slot, ri);
    } else {
        // Bytes behind a hole the receiver acknowledged are readable by `peek`.
        tap_hole_readable(core, slot, ri);
    }
}

/// Raise `CONN_NEW_DATA` for side `ri` if bytes past a hole lost at the tap became readable
/// (`peek` jumps the hole); called when an ACK makes a hole permanent and when bytes land
/// behind one.
#[inline]
pub(super) fn tap_hole_readable<F>(core: &mut Core<'_, F>, slot: u32, ri: usize) {
    if core.flows[slot as usize].sides[ri].readable_past_hole(&core.pool) {
        mark_new_data(core, slot, ri);
    }
}

/// Note new in-order bytes for `CONN_NEW_DATA` at the end of the batch.
#[inline]
pub(super) fn mark_new_data<F>(core: &mut Core<'_, F>, slot: u32, ri: usize) {
    let f = &mut core.flows[slot as usize];
    f.sides[ri].flags |= NEW_DATA_PENDING;
    if f.flags & IN_NEW_DATA_LIST == 0 {
        f.flags |= IN_NEW_DATA_LIST;
        f.pend_next = core.pend_head;
        core.pend_head = slot;
    }
}
