//! The per-side TCP state machines: what one segment does to the two endpoints' states.

use super::dispatch::{end_flow, raise_at, raise_error, raise_pair, set_state};
use super::payload::store_payload;
use super::rewrite;
use super::slots::{create_flow, ip_key};
use super::Core;
use crate::api::{ErrorReason, Event, Hook, LossCause, Middlebox, Side, TcpState};
use crate::config::DropReason;
use crate::flow::{self, FlowKey, CLIENT_IS_ENDPOINT_A, MONITORING_STOPPED, PICKED_UP};
use crate::intake::{Addrs, Tcp};
use crate::reasm::{
    SideState, HAS_ORIGIN, PEER_FIN_SEEN, SENT_ACK, SENT_FIN, SENT_SYN, SENT_SYN_ACK,
};

#[inline]
pub(super) fn seq_ge(a: u32, b: u32) -> bool {
    a.wrapping_sub(b) as i32 >= 0
}

/// A segment's flow key, whether its sender is the key's endpoint `a`, and the key's hash.
#[derive(Clone, Copy, Debug)]
pub(super) struct Keyed {
    pub key: FlowKey,
    pub sender_is_a: bool,
    pub hash: u64,
}

/// The [`Keyed`] of segment `t` between `addrs`; the hash is `known`'s (one `read_ahead`
/// computed) if its key is this one.
#[inline(always)]
pub(super) fn keyed<F>(
    core: &Core<'_, F>,
    addrs: &Addrs,
    t: &Tcp<'_>,
    known: Option<&Keyed>,
) -> Keyed {
    let (key, sender_is_a) = ip_key(addrs, t);
    let hash = match known {
        Some(k) if k.key.same(&key) => k.hash,
        _ => key.hash(&core.cfg.hash_key),
    };
    Keyed {
        key,
        sender_is_a,
        hash,
    }
}

/// `t` without its payload (to be kept beyond the frame's lifetime).
#[inline(always)]
pub(super) fn without_payload(t: &Tcp<'_>) -> Tcp<'static> {
    Tcp {
        sport: t.sport,
        dport: t.dport,
        seq: t.seq,
        ack: t.ack,
        syn: t.syn,
        ack_flag: t.ack_flag,
        fin: t.fin,
        rst: t.rst,
        wscale: t.wscale,
        window: t.window,
        payload: &[],
    }
}

pub(super) fn process_tcp<M: Middlebox>(
    mb: &mut M,
    core: &mut Core<'_, M::Flow>,
    frame: &[u8],
    k: &Keyed,
    t: &Tcp<'_>,
) {
    // (The key is read where it is, not copied: a copy loads it with other widths than the
    // caller just stored it with, a store-forwarding stall on every packet.)
    let key = &k.key;
    let (sender_is_a, hash) = (k.sender_is_a, k.hash);
    let fr = Some(frame);
    let mut fresh = false;
    // The client-is-`a` bit of the alias key, for a packet found through the flow's alias.
    let mut alias_cia = None;
    let found = match flow::lookup(core.index, core.flows, key, hash) {
        Some(s) => Some(s),
        // The primary lookup missed: a reply to a rewritten tuple finds its flow here.
        None => rewrite::lookup_alias(core, key, hash).map(|(s, cia)| {
            alias_cia = Some(cia);
            s
        }),
    };
    let slot = match found {
        Some(s) => s,
        None => {
            if t.syn && !t.ack_flag && !t.rst {
                let Some(s) = create_flow(mb, core, *key, hash, sender_is_a, false) else {
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
                let Some(s) = create_flow(mb, core, *key, hash, client_is_a, true) else {
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
    let client_is_a = alias_cia.unwrap_or(f.flags & CLIENT_IS_ENDPOINT_A != 0);
    let stopped = f.flags & MONITORING_STOPPED != 0;
    let snd = if sender_is_a == client_is_a {
        Side::Client
    } else {
        Side::Server
    };
    let shifted;
    let t = if core.x.tab.is_empty() {
        t
    } else {
        match rewrite::on_packet(core, slot, snd, frame, t, fresh) {
            Some(x) => {
                shifted = x;
                &shifted
            }
            None => t,
        }
    };
    if stopped {
        core.counters.dropped[DropReason::Unmonitored as usize] += 1;
        return;
    }
    core.counters.tcp_packets += 1;
    let rcv = snd.peer();
    if fresh {
        raise_pair(mb, core, slot, fr, Event::CONN_START, snd);
    }
    raise_pair(mb, core, slot, fr, Event::PKT_IN, snd);

    let si = snd.index();
    let ri = rcv.index();

    // RST closes both sides, if the receiver would accept it (RFC 5961 §3).
    if t.rst {
        if !rst_acceptable(
            core.cfg.rst_in_window,
            &core.flows[slot as usize].sides,
            si,
            t,
        ) {
            core.counters.bad_segments += 1;
            raise_error(mb, core, slot, fr, ErrorReason::RstNotAtNextSeq, snd);
            return;
        }
        set_state(mb, core, slot, fr, snd, TcpState::Closed, snd);
        set_state(mb, core, slot, fr, rcv, TcpState::Closed, snd);
        core.counters.flows_closed += 1;
        end_flow(mb, core, slot, fr, snd);
        return;
    }

    // A SYN or SYN-ACK with a new ISN on a synchronized connection changes nothing (RFC 5961
    // §4); the same ISN is a retransmission (below).
    if t.syn {
        let f = &core.flows[slot as usize];
        // Reuse: a new SYN from an endpoint that finished the connection (TIME_WAIT, CLOSED)
        // ends the old flow and opens a new one.
        let sender_done = matches!(
            TcpState::from_u8(f.sides[si].state),
            TcpState::TimeWait | TcpState::Closed
        );
        if !t.ack_flag && sender_done && f.sides[ri].rcv_isn != t.seq {
            core.counters.flows_closed += 1;
            end_flow(mb, core, slot, fr, snd);
            return process_tcp(mb, core, frame, k, t);
        }
        let isn_known = f.sides[ri].has(HAS_ORIGIN);
        if isn_known
            && f.sides[ri].rcv_isn != t.seq
            && synchronized(TcpState::from_u8(f.sides[ri].state))
        {
            core.counters.bad_segments += 1;
            raise_error(mb, core, slot, fr, ErrorReason::SynOnSynchronized, snd);
            return;
        }
    }

    // What the sender's ACK says about the stream it receives.
    if t.ack_flag {
        note_ack(mb, core, slot, fr, snd, t);
        // The sender may have acknowledged the peer's FIN past a hole (tap loss).
        peer_fin_in_order(mb, core, slot, fr, rcv);
    }

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
    let mut payload = t.payload;
    let mut fin = t.fin;
    {
        // Bytes beyond a FIN already seen are not stream data, nor is a second FIN elsewhere.
        let r = &core.flows[slot as usize].sides[ri];
        if r.has(PEER_FIN_SEEN) && r.has(HAS_ORIGIN) {
            let fin_off = r.off_of(r.peer_fin);
            let start = r.off_of(data_seq);
            let end = start + payload.len() as i64;
            let keep = (fin_off - start).clamp(0, payload.len() as i64) as usize;
            let beyond = (end - fin_off.max(start)).max(0) as u64;
            let moved_fin = fin && end != fin_off;
            if beyond > 0 || moved_fin {
                payload = &payload[..keep];
                fin = fin && !moved_fin;
                core.counters.bad_segments += 1;
                raise_error(
                    mb,
                    core,
                    slot,
                    fr,
                    ErrorReason::AfterFin { bytes: beyond },
                    snd,
                );
            }
        }
    }
    if !payload.is_empty() {
        store_payload(mb, core, slot, fr, snd, data_seq, payload);
    }

    // FIN.
    if fin {
        let fin_seq = data_seq.wrapping_add(payload.len() as u32);
        let s = &core.flows[slot as usize].sides[si];
        if s.has(SENT_FIN) && s.fin_ack == fin_seq.wrapping_add(1) {
            if payload.is_empty() {
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
                // The sender's FIN does not acknowledge the peer's FIN: it was sent before the
                // peer's FIN arrived (simultaneous close), so the endpoint went FIN_WAIT_1 then
                // CLOSING, not CLOSE_WAIT then LAST_ACK.
                TcpState::CloseWait if !acks_peer_fin(&core.flows[slot as usize].sides[si], t) => {
                    set_state(mb, core, slot, fr, snd, TcpState::Closing, snd)
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

/// Receiver transitions once the peer's FIN is in order. (Most segments: no FIN yet, and
/// nothing more to compute; that check is inlined, twice per segment, the rest is not.)
#[inline(always)]
pub(super) fn peer_fin_in_order<M: Middlebox>(
    mb: &mut M,
    core: &mut Core<'_, M::Flow>,
    slot: u32,
    fr: Option<&[u8]>,
    snd: Side,
) {
    let fin_seen = core
        .flows
        .get(slot as usize)
        .is_some_and(|f| f.sides[snd.peer().index()].has(PEER_FIN_SEEN));
    if fin_seen {
        peer_fin_seen(mb, core, slot, fr, snd);
    }
}

/// [`peer_fin_in_order`] once the receiver has seen its peer's FIN.
#[inline(never)]
fn peer_fin_seen<M: Middlebox>(
    mb: &mut M,
    core: &mut Core<'_, M::Flow>,
    slot: u32,
    fr: Option<&[u8]>,
    snd: Side,
) {
    let rcv = snd.peer();
    let r = &core.flows[slot as usize].sides[rcv.index()];
    // Only these states move on the peer's FIN: once past them (every later segment of a
    // closing connection) nothing to compute.
    let next = match TcpState::from_u8(r.state) {
        TcpState::Established | TcpState::SynRcvd => TcpState::CloseWait,
        TcpState::FinWait1 => TcpState::Closing,
        TcpState::FinWait2 => TcpState::TimeWait,
        _ => return,
    };
    // In order once every byte before the FIN arrived (always, without a stream origin).
    // (Bytes the endpoint acknowledged count as arrived: a hole it acknowledged is tap loss.)
    let arrived = r.cont_end.max(r.acked_end()) as i64;
    if r.has(HAS_ORIGIN) && r.off_of(r.peer_fin) > arrived {
        return;
    }
    set_state(mb, core, slot, fr, rcv, next, snd);
}

/// A synchronized state (RFC 793 §3.4): the connection exists, a new SYN cannot open it.
fn synchronized(st: TcpState) -> bool {
    !matches!(
        st,
        TcpState::Listen | TcpState::SynSent | TcpState::SynRcvd | TcpState::Closed
    )
}

/// Whether the segment `t` from the side `sender` acknowledges its peer's FIN.
fn acks_peer_fin(sender: &SideState, t: &Tcp<'_>) -> bool {
    !sender.has(PEER_FIN_SEEN) || (t.ack_flag && seq_ge(t.ack, sender.peer_fin.wrapping_add(1)))
}

/// Whether the receiver of RST segment `t` (sent by side `si`) accepts it: at its next
/// expected sequence number (the in-order end, past the peer's FIN once that is in order, or
/// the furthest acknowledgment it sent if that is further), or anywhere in its window with
/// `in_window`. In SYN_SENT a
/// RST counts only if it acknowledges the SYN (RFC 793). Without a stream origin (the
/// receiver saw no SYN) there is nothing to check against: accepted.
fn rst_acceptable(in_window: bool, sides: &[SideState; 2], si: usize, t: &Tcp<'_>) -> bool {
    let r = &sides[1 - si];
    if TcpState::from_u8(r.state) == TcpState::SynSent {
        let own_isn = sides[si].rcv_isn;
        return t.ack_flag && sides[si].has(HAS_ORIGIN) && t.ack == own_isn.wrapping_add(1);
    }
    if !r.has(HAS_ORIGIN) {
        return true;
    }
    let mut next = r.seq_of(r.cont_end);
    if r.has(PEER_FIN_SEEN) && r.off_of(r.peer_fin) <= r.cont_end as i64 {
        next = r.peer_fin.wrapping_add(1);
    }
    // The receiver's RCV.NXT: the furthest of what it acknowledged and what reached it.
    if r.has(SENT_ACK) && seq_ge(r.ack_sent, next) {
        next = r.ack_sent;
    }
    if t.seq == next {
        return true;
    }
    let window = if r.has(SENT_ACK) {
        r.window_sent.max(1)
    } else {
        1
    };
    in_window && t.seq.wrapping_sub(next) < window
}

/// Record the ACK and window of `snd`'s segment on `snd`'s side (the stream it receives). An
/// ACK past the in-order end means the endpoint got bytes the monitor never saw: that part of
/// the hole is tap loss, counted and reported (`ErrorReason::Lost { cause: Tap }`), and the
/// peer's FIN behind it is delivered.
fn note_ack<M: Middlebox>(
    mb: &mut M,
    core: &mut Core<'_, M::Flow>,
    slot: u32,
    fr: Option<&[u8]>,
    snd: Side,
    t: &Tcp<'_>,
) {
    let f = &mut core.flows[slot as usize];
    let peer_ws = f.sides[snd.peer().index()].wscale;
    let s = &mut f.sides[snd.index()];
    let scale = if s.wscale != 0xff && peer_ws != 0xff && !t.syn {
        s.wscale
    } else {
        0
    };
    let (had_ack, old_ack) = (s.has(SENT_ACK), s.ack_sent);
    // The furthest ACK counts (an older one arriving late changes nothing).
    if !had_ack || seq_ge(t.ack, old_ack) {
        s.ack_sent = t.ack;
    }
    s.window_sent = (t.window as u32) << scale;
    s.flags |= SENT_ACK;
    // Most ACKs: nothing past the in-order end, so nothing it did not see (the acknowledged
    // end is at most the in-order end, which is at most `from` below).
    if !s.has(HAS_ORIGIN) || s.off_of(s.ack_sent) <= s.cont_end as i64 {
        return;
    }
    let from = s.cont_end.max(s.acked_end_if(had_ack, old_ack));
    let acked = s.acked_end();
    if acked <= from {
        return;
    }
    let mut missing = acked - from;
    s.fragments(&core.pool, |off, len| {
        let (a, b) = (off.max(from), (off + len).min(acked));
        if a < b {
            missing -= b - a;
        }
    });
    if missing > 0 {
        s.lost += missing;
        core.counters.bytes_dropped += missing;
        let reason = ErrorReason::Lost {
            bytes: missing,
            cause: LossCause::Tap,
        };
        // The stream's sender is the peer: the `Rcv` view is the side that lost the bytes.
        raise_error(mb, core, slot, fr, reason, snd.peer());
        super::payload::tap_hole_readable(core, slot, snd.index());
    }
}
