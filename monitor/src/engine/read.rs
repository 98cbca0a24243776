//! Reading streams and flow facts: the API shared by `Monitor` and `Ctx`.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{Core, Ctx, Endpoints};
use crate::api::{BufInfo, FlowHandle, Frag, Overlap, PeekError, Side, TcpState};
use crate::flow::{FlowSlot, CLIENT_IS_ENDPOINT_A};
use crate::reasm::{NextRead, SideState, BUFFERING_OFF, HAS_ORIGIN, LAST_COPY_WINS};

impl<F> Core<'_, F> {
    pub(super) fn slot_of(&self, h: FlowHandle) -> Result<&FlowSlot<F>, PeekError> {
        if h.core != self.cfg.core {
            return Err(PeekError::InvalidContext);
        }
        match self.flows.get(h.slot as usize) {
            Some(f) if f.live() && f.gen == h.gen => Ok(f),
            _ => Err(PeekError::BadFlow),
        }
    }

    pub(super) fn side_of(&self, h: FlowHandle, side: Side) -> Result<&SideState, PeekError> {
        Ok(&self.slot_of(h)?.sides[side.index()])
    }

    pub(super) fn readable(&self, h: FlowHandle, side: Side) -> Result<&SideState, PeekError> {
        let s = self.side_of(h, side)?;
        if !s.buffered() {
            return Err(PeekError::BufferDisabled);
        }
        if !s.has(HAS_ORIGIN) {
            return Err(PeekError::NotConnected);
        }
        Ok(s)
    }

    pub(super) fn ppeek(
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
        if off < s.oldest() {
            return Err(PeekError::Overwritten {
                oldest: s.oldest(),
                missed: s.oldest() - off,
            });
        }
        let end = s.fragment_end(&self.pool, off).ok_or(PeekError::NoData)?;
        let n = ((end - off) as usize).min(buf.len());
        s.read_at(&self.pool, off, &mut buf[..n]);
        Ok(n)
    }

    pub(super) fn peek(
        &mut self,
        h: FlowHandle,
        side: Side,
        buf: &mut [u8],
    ) -> Result<usize, PeekError> {
        let n = buf.len();
        self.peek_in_place(h, side, n, |pos, bytes| {
            buf[pos..pos + bytes.len()].copy_from_slice(bytes)
        })
    }

    /// `peek` without the copy: the bytes go to `f` (their position in the read, then the
    /// slice), in place in the chunks that hold them.
    #[inline]
    pub(super) fn peek_in_place(
        &mut self,
        h: FlowHandle,
        side: Side,
        max: usize,
        mut f: impl FnMut(usize, &[u8]),
    ) -> Result<usize, PeekError> {
        self.readable(h, side)?;
        let s = &mut self.flows[h.slot as usize].sides[side.index()];
        if s.cursor < s.oldest() {
            let missed = s.oldest() - s.cursor;
            s.cursor = s.oldest();
            return Err(PeekError::Overwritten {
                oldest: s.oldest(),
                missed,
            });
        }
        let end = match s.next_read(&self.pool, s.cursor) {
            NextRead::Bytes(end) => end,
            NextRead::Nothing => return Ok(0),
            // A hole the receiver acknowledged (tap loss, already in `BufInfo::lost`): the
            // reader hears of it once, as of overwritten bytes, and the cursor jumps past it.
            NextRead::Skip(to) => {
                let missed = to - s.cursor;
                s.cursor = to;
                s.cross_hole(&mut self.pool, to);
                return Err(PeekError::Overwritten { oldest: to, missed });
            }
        };
        let n = ((end - s.cursor) as usize).min(max);
        if n == 0 {
            return Ok(0);
        }
        let mut pos = 0;
        let reached = s.visit(&self.pool, s.cursor, n, |bytes| {
            f(pos, bytes);
            pos += bytes.len();
        });
        s.set_finger(reached);
        s.cursor += n as u64;
        Ok(n)
    }

    pub(super) fn frag_info(
        &self,
        h: FlowHandle,
        side: Side,
        out: &mut [Frag],
    ) -> Result<usize, PeekError> {
        let s = self.readable(h, side)?;
        let mut n = 0;
        s.fragments(&self.pool, |offset, len| {
            if let Some(o) = out.get_mut(n) {
                *o = Frag { offset, len };
            }
            n += 1;
        });
        Ok(n)
    }

    pub(super) fn buf_info(&self, h: FlowHandle, side: Side) -> Result<BufInfo, PeekError> {
        let s = self.side_of(h, side)?;
        if !s.has(HAS_ORIGIN) {
            return Err(PeekError::NotConnected);
        }
        Ok(BufInfo {
            init_seq: s.rcv_isn.wrapping_add(1),
            oldest: if s.buffered() { s.oldest() } else { s.cont_end },
            read: s.cursor,
            in_order_end: s.cont_end,
            last_end: s.last_end(&self.pool),
            lost: s.lost,
        })
    }

    pub(super) fn tcp_state(&self, h: FlowHandle, side: Side) -> Result<TcpState, PeekError> {
        Ok(TcpState::from_u8(self.side_of(h, side)?.state))
    }

    pub(super) fn endpoints(&self, h: FlowHandle) -> Result<Endpoints, PeekError> {
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
        Ok(if f.flags & CLIENT_IS_ENDPOINT_A != 0 {
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

    pub(super) fn set_overlap(
        &mut self,
        h: FlowHandle,
        side: Side,
        p: Overlap,
    ) -> Result<(), PeekError> {
        self.slot_of(h)?;
        let s = &mut self.flows[h.slot as usize].sides[side.index()];
        match p {
            Overlap::First => s.flags &= !LAST_COPY_WINS,
            Overlap::Last => s.flags |= LAST_COPY_WINS,
        }
        Ok(())
    }

    pub(super) fn disable_buffer(&mut self, h: FlowHandle, side: Side) -> Result<(), PeekError> {
        self.slot_of(h)?;
        let s = &mut self.flows[h.slot as usize].sides[side.index()];
        s.release(&mut self.pool);
        s.flags |= BUFFERING_OFF;
        Ok(())
    }

    pub(super) fn window_scale(&self, h: FlowHandle, side: Side) -> Result<Option<u8>, PeekError> {
        let f = self.slot_of(h)?;
        let (a, b) = (
            f.sides[side.index()].wscale,
            f.sides[side.peer().index()].wscale,
        );
        Ok((a != 0xff && b != 0xff).then_some(a))
    }

    pub(super) fn handle(&self, slot: u32) -> FlowHandle {
        FlowHandle {
            core: self.cfg.core,
            slot,
            gen: self.flows[slot as usize].gen,
        }
    }
}

impl<F> Ctx<'_, '_, F> {
    /// Read in order from `side`'s buffer (the bytes that side RECEIVES) in place: like
    /// [`Ctx::peek`] with a buffer of `max` bytes (same cursor, same errors, same jump over a
    /// hole lost at the tap), but instead of a copy, `f` gets the bytes as slices of the ring,
    /// in stream order, one per chunk they lie in (at most `max / CHUNK_SIZE + 2` slices).
    /// Returns the bytes handed over; `Ok(0)`: nothing new.
    #[inline]
    pub fn read_in_place(
        &mut self,
        flow: FlowHandle,
        side: Side,
        max: usize,
        mut f: impl FnMut(&[u8]),
    ) -> Result<usize, PeekError> {
        self.core.peek_in_place(flow, side, max, |_, b| f(b))
    }
}

impl<M: crate::api::Middlebox> super::Monitor<'_, M> {
    /// See [`Ctx::read_in_place`] (a side's buffer holds the bytes that side RECEIVES).
    pub fn read_in_place(
        &mut self,
        flow: FlowHandle,
        side: Side,
        max: usize,
        mut f: impl FnMut(&[u8]),
    ) -> Result<usize, PeekError> {
        self.core.peek_in_place(flow, side, max, |_, b| f(b))
    }
}
