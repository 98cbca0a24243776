//! `Ctx`: the view a middlebox callback gets.

use super::registry::Registry;
use super::{Ctx, Endpoints};
use crate::api::{
    ActionError, BufInfo, ErrorReason, FlowHandle, Frag, Overlap, PeekError, Side, TcpState,
};
use crate::config::Counters;
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
}
