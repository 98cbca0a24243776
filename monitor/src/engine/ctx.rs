//! `Ctx`: the view a middlebox callback gets.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::alias::{DIRTY, RESET_PENDING, STOP_CLIENT, STOP_SERVER};
use super::checksum::locate;
use super::registry::Registry;
use super::rewrite::Raised;
use super::{Ctx, Endpoints};
use crate::api::{
    ActionError, BufInfo, ErrorReason, Event, FlowHandle, Frag, Hook, Overlap, PacketInfo,
    PeekError, Side, TcpState,
};
use crate::config::{Counters, INJECT_SLOTS, REWRITE_MAX};
use crate::flow::{MONITORING_STOPPED, PICKED_UP};
use crate::reasm::BUFFERING_OFF;

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
    /// overwritten; the cursor then moves to the oldest byte held. A hole the receiver
    /// acknowledged (tap loss, counted in `BufInfo::lost`) is reported the same way, once, and
    /// the cursor jumps to the first byte after it: `peek` continues past it.
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
        Ok(self.core.slot_of(flow)?.flags & PICKED_UP != 0)
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
        f.flags |= MONITORING_STOPPED;
        for side in f.sides.iter_mut() {
            side.release(&mut core.pool);
            side.flags |= BUFFERING_OFF;
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
    /// Inside an `ERROR` callback: why it was raised (`None` for other events).
    pub fn error_reason(&self) -> Option<ErrorReason> {
        self.core.error
    }
    /// The monitor's counters.
    pub fn counters(&self) -> &Counters {
        &self.core.counters
    }

    /// The timestamp (µs) of the current packet, as given to `Monitor::frame` (mOS
    /// `MOS_TIMESTAMP`); `None` where there is no current packet.
    pub fn packet_ts_us(&self) -> Option<u64> {
        self.frame.map(|_| self.core.x.ts)
    }
    /// When `flow` last saw a packet (mOS `MOS_TIMESTAMP`), in µs, rounded down to the
    /// 1024 µs tick the flow table keeps.
    pub fn last_seen_us(&self, flow: FlowHandle) -> Result<u64, PeekError> {
        let f = self.core.slot_of(flow)?;
        let now = self.core.now;
        let ticks = crate::flow::tick_of(now).wrapping_sub(f.last_seen) as u64;
        Ok(((now >> 10).saturating_sub(ticks)) << 10)
    }
    /// A parsed view of the current packet as it stands (after rewrites so far): addresses,
    /// ports, flags, sequence and acknowledgment numbers, window, header and payload offsets
    /// in `Ctx::packet`'s bytes. `None` without a current packet, or for a datagram reassembled
    /// from IP fragments (its TCP header is not in the frame).
    pub fn packet_info(&self) -> Option<PacketInfo> {
        let b = self.packet()?;
        let (l3, l4, tlen, v6) = locate(b)?;
        let h = b.get(l4..l4 + 20)?;
        let (src, dst) = if v6 {
            let a: [u8; 16] = b.get(l3 + 8..l3 + 24)?.try_into().ok()?;
            let d: [u8; 16] = b.get(l3 + 24..l3 + 40)?.try_into().ok()?;
            (IpAddr::V6(Ipv6Addr::from(a)), IpAddr::V6(Ipv6Addr::from(d)))
        } else {
            let a: [u8; 4] = b.get(l3 + 12..l3 + 16)?.try_into().ok()?;
            let d: [u8; 4] = b.get(l3 + 16..l3 + 20)?.try_into().ok()?;
            (IpAddr::V4(Ipv4Addr::from(a)), IpAddr::V4(Ipv4Addr::from(d)))
        };
        let be32 = |i: usize| u32::from_be_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
        let doff = ((h[12] >> 4) as usize * 4).min(tlen);
        let sender = match (self.flow, self.core.x.cur) {
            (Some(f), Some((s, side))) if f == s => Some(side),
            _ => None,
        };
        Some(PacketInfo {
            src,
            dst,
            sport: u16::from_be_bytes([h[0], h[1]]),
            dport: u16::from_be_bytes([h[2], h[3]]),
            seq: be32(4),
            ack: be32(8),
            flags: h[13],
            window: u16::from_be_bytes([h[14], h[15]]),
            l3_off: l3,
            l4_off: l4,
            payload_off: l4 + doff,
            payload_len: tlen - doff,
            sender,
        })
    }
    /// Replace `remove` payload bytes at payload offset `off` of the current packet with
    /// `insert` (inline mode; mOS `mtcp_setlastpkt` with `MOS_INSERT`/`MOS_CHOMP`): the IP
    /// length and checksums are fixed, Ethernet padding is dropped, and the difference is added
    /// to the flow's delta for the sending side, so that its later packets' sequence numbers
    /// and its peer's acknowledgments stay consistent for the rest of the connection. The
    /// monitor's own stream keeps the bytes it received. Needs the flow-extra table.
    pub fn splice_payload(
        &mut self,
        off: usize,
        remove: usize,
        insert: &[u8],
    ) -> Result<(), ActionError> {
        let s = self.flow.ok_or(ActionError::NoFlow)?;
        if self.core.x.tab.is_empty() {
            return Err(ActionError::NoExtras);
        }
        self.packet_mut()?;
        let p = &mut self.core.pkt;
        let (l3, l4, tlen, v6) = locate(&p.buf).ok_or(ActionError::TooLarge)?;
        // (The callbacks may have written anything into the frame: no index is trusted.)
        let doff = (*p.buf.get(l4 + 12).ok_or(ActionError::TooLarge)? >> 4) as usize * 4;
        let pay = l4 + doff;
        let plen = tlen.checked_sub(doff).ok_or(ActionError::TooLarge)?;
        if off > plen || remove > plen - off {
            return Err(ActionError::OutOfRange);
        }
        let end = l4 + tlen;
        let new_len = end - remove + insert.len();
        if new_len > REWRITE_MAX {
            return Err(ActionError::TooLarge);
        }
        p.buf.truncate(end);
        let at = pay + off;
        if insert.len() > remove {
            let grow = insert.len() - remove;
            p.buf
                .resize(end + grow, 0)
                .map_err(|_| ActionError::TooLarge)?;
            p.buf.copy_within(at + remove..end, at + insert.len());
        } else {
            p.buf.copy_within(at + remove..end, at + insert.len());
            p.buf.truncate(new_len);
        }
        p.buf[at..at + insert.len()].copy_from_slice(insert);
        let diff = insert.len() as i32 - remove as i32;
        // The IPv4 total length or the IPv6 payload length (REWRITE_MAX keeps it in range).
        let at_len = if v6 { l3 + 4 } else { l3 + 2 };
        let old = u16::from_be_bytes([p.buf[at_len], p.buf[at_len + 1]]) as i32;
        let new = (old + diff) as u16;
        p.buf[at_len..at_len + 2].copy_from_slice(&new.to_be_bytes());
        self.core.x.len_delta += diff;
        let e = &mut self.core.x.tab[s as usize];
        e.flags |= DIRTY;
        Ok(())
    }
    /// Stop callbacks for one side of the current flow (mOS `MOS_STOP_MON` with
    /// `MOS_SIDE_CLI` or `MOS_SIDE_SVR`): no more events whose `side` is `side` (its
    /// `CONN_END` still comes), and its buffer (the bytes that side RECEIVES) is switched off.
    /// Stopping the second side is [`Ctx::stop_monitoring`]. Needs the flow-extra table.
    pub fn stop_side(&mut self, side: Side) -> Result<(), ActionError> {
        let s = self.flow.ok_or(ActionError::NoFlow)?;
        let core = &mut *self.core;
        let e = core
            .x
            .tab
            .get_mut(s as usize)
            .ok_or(ActionError::NoExtras)?;
        e.flags |= DIRTY
            | if side == Side::Client {
                STOP_CLIENT
            } else {
                STOP_SERVER
            };
        core.x.masks = true;
        if e.flags & (STOP_CLIENT | STOP_SERVER) == STOP_CLIENT | STOP_SERVER {
            return self.stop_monitoring();
        }
        let st = &mut core.flows[s as usize].sides[side.index()];
        st.release(&mut core.pool);
        st.flags |= BUFFERING_OFF;
        Ok(())
    }
    /// Subscribe to `ev` at `hook` for `flow` only (mOS: a callback registered on an active
    /// monitoring socket), on top of the monitor's subscriptions. Needs the flow-extra table.
    pub fn subscribe_flow(
        &mut self,
        flow: FlowHandle,
        ev: Event,
        hook: Hook,
    ) -> Result<(), ActionError> {
        let e = self.extra_of(flow, ev)?;
        e.on[hook as usize] |= ev.0;
        e.off[hook as usize] &= !ev.0;
        e.flags |= DIRTY;
        self.core.x.flow_subs |= ev.0;
        self.core.x.masks = true;
        Ok(())
    }
    /// Stop `ev` at `hook` for `flow` only, even if the monitor subscribed to it.
    pub fn unsubscribe_flow(
        &mut self,
        flow: FlowHandle,
        ev: Event,
        hook: Hook,
    ) -> Result<(), ActionError> {
        let e = self.extra_of(flow, ev)?;
        e.off[hook as usize] |= ev.0;
        e.on[hook as usize] &= !ev.0;
        e.flags |= DIRTY;
        self.core.x.masks = true;
        Ok(())
    }
    fn extra_of(
        &mut self,
        flow: FlowHandle,
        ev: Event,
    ) -> Result<&mut super::alias::FlowExtra, ActionError> {
        if !self.core.reg.is_event(ev) {
            return Err(ActionError::BadEvent);
        }
        self.core.slot_of(flow).map_err(|_| ActionError::BadFlow)?;
        self.core
            .x
            .tab
            .get_mut(flow.slot as usize)
            .ok_or(ActionError::NoExtras)
    }
    /// Raise the user event `ev` (from [`Registry::alloc_event`] or [`Registry::define`]) for
    /// `flow` (or none), with `side` as its side (mOS `mtcp_raise_event`, here also from a
    /// timer). It is delivered once the current callbacks are done (after the packet, the
    /// timer or the batch's `CONN_NEW_DATA`), in order, to the subscribers of each hook (the
    /// monitor's and the flow's), with the flow as context and no current packet; children
    /// defined on it are filtered then. `Err(QueueFull)` past 16 waiting events.
    pub fn raise_event(
        &mut self,
        flow: Option<FlowHandle>,
        ev: Event,
        side: Side,
    ) -> Result<(), ActionError> {
        if ev.is_builtin() || !self.core.reg.is_event(ev) {
            return Err(ActionError::BadEvent);
        }
        let flow = match flow {
            Some(h) => {
                let f = self.core.slot_of(h).map_err(|_| ActionError::BadFlow)?;
                Some((h.slot, f.gen))
            }
            None => None,
        };
        self.core
            .x
            .raised
            .push_back(Raised { flow, ev, side })
            .map_err(|_| ActionError::QueueFull)
    }
    /// Reset `flow` (mOS `mtcp_reset_conn`; inline mode): once the current callbacks are done,
    /// a RST+ACK goes to each endpoint through the inject queue (server first), each with the
    /// addresses that endpoint sees, its next expected sequence number and an acknowledgment of
    /// what its peer received; both sides become CLOSED and the flow ends with `CONN_END`. The
    /// current packet is still forwarded (it leaves before the RSTs). Needs the flow-extra
    /// table; `Err(QueueFull)` if the inject queue could not take both RSTs.
    pub fn reset_conn(&mut self, flow: FlowHandle) -> Result<(), ActionError> {
        if !self.core.cfg.inline {
            return Err(ActionError::TapMode);
        }
        if self.core.x.tab.is_empty() {
            return Err(ActionError::NoExtras);
        }
        let gen = self
            .core
            .slot_of(flow)
            .map_err(|_| ActionError::BadFlow)?
            .gen;
        let core = &mut *self.core;
        let e = &mut core.x.tab[flow.slot as usize];
        if e.flags & RESET_PENDING != 0 {
            return Ok(());
        }
        if core.inject.len() + 2 * (core.x.resets.len() + 1) > INJECT_SLOTS {
            return Err(ActionError::QueueFull);
        }
        core.x
            .resets
            .push((flow.slot, gen))
            .map_err(|_| ActionError::QueueFull)?;
        e.flags |= RESET_PENDING | DIRTY;
        Ok(())
    }
}
