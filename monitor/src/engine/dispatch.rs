//! Raising events: hooks, user-defined event filters, state changes, the end of a flow.

use super::alias::{STOP_CLIENT, STOP_SERVER};
use super::slots::free_flow;
use super::{Core, Ctx};
use crate::api::{ErrorReason, Event, Hook, Middlebox, Side, TcpState};
use crate::flow::MONITORING_STOPPED;
use crate::reasm::NEW_DATA_PENDING;

pub(super) fn raise_at<M: Middlebox>(
    mb: &mut M,
    core: &mut Core<'_, M::Flow>,
    flow: Option<u32>,
    frame: Option<&[u8]>,
    ev: Event,
    hook: Hook,
    side: Side,
) {
    let h = hook as usize;
    let (on, off, xflags) = flow_masks(core, flow, h);
    if (core.reg.interest[h] | on) & ev.0 == 0 {
        return;
    }
    // Per-side stop (`Ctx::stop_side`): no callbacks for that side, except the flow's end.
    let stop = if side == Side::Client {
        STOP_CLIENT
    } else {
        STOP_SERVER
    };
    if xflags & stop != 0 && ev != Event::CONN_END {
        return;
    }
    let subs = (core.reg.subs[h] | on) & !off;
    let mut cx = Ctx { core, flow, frame };
    if subs & ev.0 != 0 {
        mb.on_event(&mut cx, ev, hook, side);
    }
    let needed = cx.core.reg.needed[h] | (on & !((1u64 << Event::FIRST_UDE_BIT) - 1));
    if needed == 0 {
        return;
    }
    let mut fired = ev.0;
    let n = cx.core.reg.udes.len();
    for i in 0..n {
        let bit = 1u64 << (Event::FIRST_UDE_BIT as usize + i);
        let u = cx.core.reg.udes[i];
        if needed & bit == 0 || fired & u.parent.0 == 0 || u.floating {
            continue;
        }
        if mb.filter(u.key, &mut cx, u.parent, hook, side) {
            fired |= bit;
            if subs & bit != 0 {
                mb.on_event(&mut cx, Event(bit), hook, side);
            }
        }
    }
}

/// The flow's own subscriptions and unsubscriptions at hook `h`, and its extra flags.
#[inline]
pub(super) fn flow_masks<F>(core: &Core<'_, F>, flow: Option<u32>, h: usize) -> (u64, u64, u8) {
    if !core.x.masks {
        return (0, 0, 0);
    }
    match flow.and_then(|s| core.x.tab.get(s as usize)) {
        Some(e) => (e.on[h], e.off[h], e.flags),
        None => (0, 0, 0),
    }
}

/// An event with both views: `Snd` (sender) then `Rcv` and `Any` (receiver).
#[inline]
pub(super) fn raise_pair<M: Middlebox>(
    mb: &mut M,
    core: &mut Core<'_, M::Flow>,
    flow: u32,
    frame: Option<&[u8]>,
    ev: Event,
    sender: Side,
) {
    // Inlined check so that an event nobody listens to (PKT_IN, most often) costs a load and a
    // test on the packet path instead of a call.
    if (core.reg.any_interest | core.x.flow_subs) & ev.0 == 0 {
        return;
    }
    raise_pair_slow(mb, core, flow, frame, ev, sender);
}

#[inline(never)]
pub(super) fn raise_pair_slow<M: Middlebox>(
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
pub(super) fn raise_pair_body<M: Middlebox>(
    mb: &mut M,
    core: &mut Core<'_, M::Flow>,
    flow: u32,
    frame: Option<&[u8]>,
    ev: Event,
    sender: Side,
) {
    if core.flows[flow as usize].flags & MONITORING_STOPPED != 0 {
        return;
    }
    raise_at(mb, core, Some(flow), frame, ev, Hook::Snd, sender);
    raise_at(mb, core, Some(flow), frame, ev, Hook::Rcv, sender.peer());
    raise_at(mb, core, Some(flow), frame, ev, Hook::Any, sender.peer());
}

/// An event with one view.
#[inline]
pub(super) fn raise_one<M: Middlebox>(
    mb: &mut M,
    core: &mut Core<'_, M::Flow>,
    flow: u32,
    frame: Option<&[u8]>,
    ev: Event,
    hook: Hook,
    side: Side,
) {
    // Inlined check, as in `raise_pair`: an event nobody listens to at any hook (state changes,
    // most often: about ten per connection) costs a load and a test instead of a call.
    if (core.reg.any_interest | core.x.flow_subs) & ev.0 == 0 {
        return;
    }
    raise_one_slow(mb, core, flow, frame, ev, hook, side);
}

#[inline(never)]
fn raise_one_slow<M: Middlebox>(
    mb: &mut M,
    core: &mut Core<'_, M::Flow>,
    flow: u32,
    frame: Option<&[u8]>,
    ev: Event,
    hook: Hook,
    side: Side,
) {
    let i = &core.reg.interest;
    if (i[hook as usize] | i[Hook::Any as usize] | core.x.flow_subs) & ev.0 == 0
        || core.flows[flow as usize].flags & MONITORING_STOPPED != 0
    {
        return;
    }
    raise_at(mb, core, Some(flow), frame, ev, hook, side);
    raise_at(mb, core, Some(flow), frame, ev, Hook::Any, side);
}

/// Move `side` to `st`, raising `TCP_STATE_CHANGE` if that is a change.
#[inline]
pub(super) fn set_state<M: Middlebox>(
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

/// Raise pending `CONN_NEW_DATA` of one flow. Inlined into `end_batch`, where it runs once
/// per flow that got new bytes in the batch.
#[inline(always)]
pub(super) fn flush_new_data<M: Middlebox>(mb: &mut M, core: &mut Core<'_, M::Flow>, flow: u32) {
    flush_side(mb, core, flow, Side::Client);
    flush_side(mb, core, flow, Side::Server);
}

/// `CONN_NEW_DATA` for `side` (the receiver) if it has new bytes: the same calls as
/// `raise_pair_body` makes, with a hook the registry has no interest in skipped by one test
/// while no flow has subscriptions or stops of its own (`x.masks` clear; `raise_at` would
/// return at once for it). Both are read again after each callback, which may change them.
#[inline(always)]
fn flush_side<M: Middlebox>(mb: &mut M, core: &mut Core<'_, M::Flow>, flow: u32, side: Side) {
    let ev = Event::CONN_NEW_DATA;
    let s = &mut core.flows[flow as usize].sides[side.index()];
    if s.flags & NEW_DATA_PENDING == 0 {
        return;
    }
    s.flags &= !NEW_DATA_PENDING;
    if (core.reg.any_interest | core.x.flow_subs) & ev.0 == 0
        || core.flows[flow as usize].flags & MONITORING_STOPPED != 0
    {
        return;
    }
    // `side` received the data: its peer sent it.
    let at = |core: &Core<'_, M::Flow>, h: Hook| {
        core.x.masks || core.reg.interest[h as usize] & ev.0 != 0
    };
    if at(core, Hook::Snd) {
        raise_at(mb, core, Some(flow), None, ev, Hook::Snd, side.peer());
    }
    if at(core, Hook::Rcv) {
        raise_at(mb, core, Some(flow), None, ev, Hook::Rcv, side);
    }
    if at(core, Hook::Any) {
        raise_at(mb, core, Some(flow), None, ev, Hook::Any, side);
    }
}

/// End a live flow: pending new data, `CONN_END` once (unless monitoring was stopped), free.
pub(super) fn end_flow<M: Middlebox>(
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
    if f.flags & MONITORING_STOPPED == 0 {
        flush_new_data(mb, core, flow);
        let r = &core.reg;
        let ev = Event::CONN_END.0;
        let at =
            |h: Hook| (r.interest[h as usize] | flow_masks(core, Some(flow), h as usize).0) & ev;
        let (hook, side) = if at(Hook::Snd) != 0 {
            (Hook::Snd, sender)
        } else if at(Hook::Rcv) != 0 {
            (Hook::Rcv, sender.peer())
        } else {
            (Hook::Any, sender.peer())
        };
        raise_at(mb, core, Some(flow), frame, Event::CONN_END, hook, side);
    }
    free_flow(core, flow);
}

/// Raise `ERROR` for a flow with its reason (readable through `Ctx::error_reason`).
pub(super) fn raise_error<M: Middlebox>(
    mb: &mut M,
    core: &mut Core<'_, M::Flow>,
    flow: u32,
    frame: Option<&[u8]>,
    reason: ErrorReason,
    sender: Side,
) {
    core.error = Some(reason);
    raise_pair(mb, core, flow, frame, Event::ERROR, sender);
    core.error = None;
}
