//! The per-side TCP state machines: what one segment does to the two endpoints' states.

use super::dispatch::{end_flow, raise_at, raise_pair, set_state};
use super::payload::store_payload;
use super::slots::{create_flow, ip_key};
use super::Core;
use crate::api::{Event, Hook, Middlebox, Side, TcpState};
use crate::config::DropReason;
use crate::flow::{self, CLIENT_IS_ENDPOINT_A, MONITORING_STOPPED, PICKED_UP};
use crate::intake::{Addrs, Tcp};
use crate::reasm::{HAS_ORIGIN, PEER_FIN_SEEN, SENT_FIN, SENT_SYN, SENT_SYN_ACK};

#[inline]
pub(super) fn seq_ge(a: u32, b: u32) -> bool {
    a.wrapping_sub(b) as i32 >= 0
}

pub(super) fn process_tcp<M: Middlebox>(
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
            if t.syn && !t.ack_flag && !t.rst {
                let Some(s) = create_flow(mb, core, key, hash, sender_is_a, false) else {
                    core.counters.dropped[DropReason::Orphan as usize] += 1;
                    return;
                };
                fresh = true;
                s
            } else if core.cfg.pickup
                && !t.rst
                && !t.fin
                && (!t.payload.is_empty() || (t.syn && t.ack_flag))
            {
                // Pickup rule (documented on Config::pickup).
                let sender_is_client = if t.syn && t.ack_flag {
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
                if t.syn && t.ack_flag {
                    // Missed the SYN only: the SYN-ACK's ACK gives the client's ISN.
                    f.sides[snd].rcv_isn = t.ack.wrapping_sub(1);
                    f.sides[snd].flags |= HAS_ORIGIN;
                    f.sides[rcv].flags |= SENT_SYN;
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
    if f.flags & MONITORING_STOPPED != 0 {
        core.counters.dropped[DropReason::Unmonitored as usize] += 1;
        return;
    }
    core.counters.tcp_packets += 1;
    let client_is_a = f.flags & CLIENT_IS_ENDPOINT_A != 0;
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
        let same_isn = r.has(HAS_ORIGIN) && r.rcv_isn == t.seq;
        if t.ack_flag {
            if s.has(SENT_SYN_ACK) && same_isn {
                core.counters.rexmits += 1;
                raise_pair(mb, core, slot, fr, Event::REXMIT, snd);
            } else {
                let f = &mut core.flows[slot as usize];
                f.sides[ri].rcv_isn = t.seq;
                f.sides[ri].flags |= HAS_ORIGIN;
                f.sides[si].flags |= SENT_SYN | SENT_SYN_ACK;
                let sst = TcpState::from_u8(f.sides[si].state);
                let rst = TcpState::from_u8(f.sides[ri].state);
                if sst == TcpState::Listen {
                    set_state(mb, core, slot, fr, snd, TcpState::SynRcvd, snd);
                }
                if rst == TcpState::SynSent || rst == TcpState::SynRcvd {
                    set_state(mb, core, slot, fr, rcv, TcpState::Established, snd);
                }
            }
        } else if s.has(SENT_SYN) && same_isn {
            core.counters.rexmits += 1;
            raise_pair(mb, core, slot, fr, Event::REXMIT, snd);
        } else {
            let f = &mut core.flows[slot as usize];
            f.sides[ri].rcv_isn = t.seq;
            f.sides[ri].flags |= HAS_ORIGIN;
            f.sides[si].flags |= SENT_SYN;
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
    if t.ack_flag {
        let r = &core.flows[slot as usize].sides[ri];
        let rst = TcpState::from_u8(r.state);
        let fin_acked = r.has(SENT_FIN) && seq_ge(t.ack, r.fin_ack);
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
        if f.flags & PICKED_UP != 0 && !f.sides[ri].has(HAS_ORIGIN) && !t.syn {
            f.sides[ri].rcv_isn = t.seq.wrapping_sub(1);
            f.sides[ri].flags |= HAS_ORIGIN;
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
        if s.has(SENT_FIN) && s.fin_ack == fin_seq.wrapping_add(1) {
            if t.payload.is_empty() {
                core.counters.rexmits += 1;
                raise_pair(mb, core, slot, fr, Event::REXMIT, snd);
            }
        } else {
            let f = &mut core.flows[slot as usize];
            f.sides[si].flags |= SENT_FIN;
            f.sides[si].fin_ack = fin_seq.wrapping_add(1);
            let r = &mut f.sides[ri];
            r.peer_fin = fin_seq;
            r.flags |= PEER_FIN_SEEN;
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
pub(super) fn peer_fin_in_order<M: Middlebox>(
    mb: &mut M,
    core: &mut Core<'_, M::Flow>,
    slot: u32,
    fr: Option<&[u8]>,
    snd: Side,
) {
    let rcv = snd.peer();
    let r = &core.flows[slot as usize].sides[rcv.index()];
    // In order once every byte before the FIN arrived (always, without a stream origin).
    if !r.has(PEER_FIN_SEEN) || (r.has(HAS_ORIGIN) && r.off_of(r.peer_fin) > r.cont_end as i64) {
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
