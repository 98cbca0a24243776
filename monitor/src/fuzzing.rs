//! Shared driver of the fuzz target and of the stable corpus-replay test (`std` feature).
//!
//! Input format: byte 0 selects the configuration (bit 0 pickup, bit 1 inline, bit 2 buffering
//! off, bit 3 last-wins, bit 4 one-chunk rings); then records `[op][len lo][len hi][len bytes]`
//! where the frame is the record's bytes, `op & 1` ends the batch after it and `op >> 1` advances
//! time by that many milliseconds. A short tail is fed as one frame.
//!
//! The driver checks invariants after every batch: fragments are sorted and disjoint, `ppeek`
//! reads every fragment whole, and `buf_info` agrees with `frag_info`. It panics only when an
//! invariant breaks (that is the bug the fuzzer looks for).

use crate::{
    Config, Ctx, Event, Frag, Hook, HostStorage, Middlebox, Monitor, Overlap, PeekError, Registry,
    Side, CHUNK_SIZE,
};

/// The fuzzing middlebox: reads everything, exercises actions (NAT re-keying, splices,
/// resets, raised events, per-flow subscriptions and per-side stops among them), defines user
/// events.
#[derive(Debug, Default)]
pub struct Exerciser {
    /// Bytes read through `peek`.
    pub read: u64,
    calls: u64,
    /// An event raised by hand (`Registry::alloc_event`).
    alarm: Option<Event>,
}

impl Middlebox for Exerciser {
    type Flow = u32;
    fn init(&mut self, reg: &mut Registry) {
        for e in Event::BUILTIN {
            reg.subscribe(e, Hook::Any);
        }
        reg.subscribe(Event::PKT_IN, Hook::Snd);
        if let Ok(u) = reg.define(Event::CONN_NEW_DATA, 1) {
            reg.subscribe(u, Hook::Rcv);
            if let Ok(v) = reg.define(u, 2) {
                reg.subscribe(v, Hook::Rcv);
            }
        }
        if let Ok(a) = reg.alloc_event(Event::PKT_IN) {
            reg.subscribe(a, Hook::Any);
            self.alarm = Some(a);
        }
        let _ = reg.set_timer(1, 1000, 5000);
    }
    fn on_event(&mut self, cx: &mut Ctx<'_, '_, u32>, ev: Event, _hook: Hook, side: Side) {
        self.calls += 1;
        if let Some(u) = cx.user() {
            *u = u.wrapping_add(1);
        }
        let Some(f) = cx.flow() else { return };
        let mut buf = [0u8; 512];
        if ev == Event::CONN_NEW_DATA || ev == Event::CONN_END {
            for _ in 0..1000 {
                match cx.peek(f, side, &mut buf) {
                    Ok(0) => break,
                    Ok(n) => self.read += n as u64,
                    Err(PeekError::Overwritten { .. }) => {}
                    Err(_) => break,
                }
            }
        }
        match self.calls % 13 {
            0 => {
                let _ = cx.set_overlap(f, side, Overlap::Last);
            }
            1 => {
                if let Ok(p) = cx.packet_mut() {
                    if let Some(b) = p.last_mut() {
                        *b ^= 0xff;
                    }
                }
            }
            2 if self.calls % 91 == 2 => {
                let _ = cx.disable_buffer(f, side.peer());
            }
            3 if self.calls % 203 == 3 => {
                let _ = cx.stop_monitoring();
            }
            4 => {
                let _ = cx.drop_packet();
                let pkt: heapless::Vec<u8, 64> = cx
                    .packet()
                    .map(|p| p.iter().take(64).copied().collect())
                    .unwrap_or_default();
                let _ = cx.inject(&pkt);
            }
            5 => {
                // Re-key as a NAT would: a new source port on a packet the client sent.
                if let Some(i) = cx.packet_info() {
                    if i.sender == Some(Side::Client) {
                        if let Ok(p) = cx.packet_mut() {
                            if let Some(port) = p.get_mut(i.l4_off..i.l4_off + 2) {
                                port[0] ^= 0x5a;
                            }
                        }
                    }
                }
            }
            6 if cx.packet_info().is_some_and(|i| i.payload_len > 0) => {
                let _ = cx.splice_payload(0, (self.calls % 3) as usize, b"xy");
            }
            8 if self.calls % 29 == 8 => {
                let _ = cx.reset_conn(f);
            }
            9 => {
                if let Some(a) = self.alarm.filter(|&a| a != ev) {
                    let _ = cx.raise_event(Some(f), a, side);
                }
            }
            10 if self.calls % 53 == 10 => {
                let _ = cx.stop_side(side);
            }
            11 => {
                let _ = cx.subscribe_flow(f, Event::REXMIT, Hook::Rcv);
                let _ = cx.packet_ts_us();
            }
            _ => {}
        }
    }
    fn filter(
        &mut self,
        key: u32,
        cx: &mut Ctx<'_, '_, u32>,
        _p: Event,
        _h: Hook,
        side: Side,
    ) -> bool {
        let Some(f) = cx.flow() else { return false };
        let mut b = [0u8; 1];
        cx.ppeek(f, side, 0, &mut b)
            .map(|_| b[0] as u32 % 3 == key % 3)
            .unwrap_or(false)
    }
    fn on_timer(&mut self, cx: &mut Ctx<'_, '_, u32>, id: u32) {
        let _ = cx.set_timer(id + 1, 100, 0);
    }
}

fn check<M: Middlebox>(m: &Monitor<'_, M>) {
    let mut frags = [Frag::default(); 8];
    let mut buf = vec![0u8; 4 * CHUNK_SIZE];
    for f in m.flows() {
        for side in Side::BOTH {
            let Ok(n) = m.frag_info(f, side, &mut frags) else {
                continue;
            };
            assert!(n <= frags.len());
            let bi = m.buf_info(f, side).expect("buf_info after frag_info");
            let mut prev_end = 0;
            for (i, fr) in frags[..n].iter().enumerate() {
                assert!(
                    fr.len > 0 && fr.offset >= prev_end,
                    "fragments sorted and disjoint"
                );
                assert!(i == 0 || fr.offset > prev_end, "fragments not adjacent");
                prev_end = fr.offset + fr.len;
                let want = (fr.len as usize).min(buf.len());
                assert_eq!(m.ppeek(f, side, fr.offset, &mut buf[..want]), Ok(want));
            }
            assert!(prev_end <= bi.last_end && bi.oldest <= bi.in_order_end);
            assert!(m.ppeek(f, side, bi.last_end, &mut buf[..1]).is_err());
        }
    }
}

/// Run one fuzz input.
pub fn run(data: &[u8]) {
    let Some((&mode, mut rest)) = data.split_first() else {
        return;
    };
    let cfg = Config {
        pickup: mode & 1 != 0,
        inline: mode & 2 != 0,
        buffering: mode & 4 == 0,
        overlap: if mode & 8 != 0 {
            Overlap::Last
        } else {
            Overlap::First
        },
        side_capacity: if mode & 16 != 0 {
            CHUNK_SIZE as u32
        } else {
            4 * CHUNK_SIZE as u32
        },
        idle_timeout_us: 50_000,
        frag_timeout_us: 20_000,
        ..Config::DEFAULT
    };
    let mut st: HostStorage<u32> = HostStorage::new(8, 12, 2);
    let Ok(mut m) = Monitor::new(Exerciser::default(), cfg, st.storage()) else {
        return;
    };
    let mut now = 0u64;
    m.begin_batch(now);
    while !rest.is_empty() {
        let (op, frame) = if rest.len() >= 3 {
            let len = u16::from_le_bytes([rest[1], rest[2]]) as usize;
            let end = (3 + len).min(rest.len());
            let r = (rest[0], &rest[3..end]);
            rest = &rest[end..];
            r
        } else {
            let r = (1u8, rest);
            rest = &[];
            r
        };
        now += (op >> 1) as u64 * 1000;
        let _ = m.frame(frame, now);
        m.drain_injected(|_| {});
        if op & 1 != 0 {
            m.end_batch();
            check(&m);
            m.begin_batch(now);
        }
    }
    m.end_batch();
    check(&m);
    m.tick(now + 1_000_000);
    m.close_all();
    assert_eq!(m.flow_count(), 0);
    assert_eq!(m.free_chunks(), 12, "every chunk returns to the pool");
}

/// Encode frames in the input format (for seed corpora): `mode`, then each frame with its
/// op byte.
pub fn encode(mode: u8, frames: &[(u8, &[u8])]) -> Vec<u8> {
    let mut v = vec![mode];
    for (op, f) in frames {
        let len = f.len().min(u16::MAX as usize);
        v.push(*op);
        v.extend_from_slice(&(len as u16).to_le_bytes());
        v.extend_from_slice(&f[..len]);
    }
    v
}
