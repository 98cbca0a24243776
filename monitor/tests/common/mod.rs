//! Test helpers: literal frame builders and a recording middlebox.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::IpAddr;

use monitor::{
    Config, Ctx, Event, FlowHandle, Hook, HostStorage, Middlebox, Monitor, Registry, Side, TcpState,
};

pub const FIN: u8 = 1;
pub const SYN: u8 = 2;
pub const RST: u8 = 4;
pub const PSH: u8 = 8;
pub const ACK: u8 = 16;

/// One TCP packet to build.
#[derive(Clone, Debug)]
pub struct Pkt {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub payload: Vec<u8>,
    pub vlans: Vec<(u16, u16)>, // (TPID, TCI)
    pub wscale: Option<u8>,
}

fn csum(data: &[u8], mut sum: u32) -> u32 {
    let mut i = 0;
    while i + 1 < data.len() {
        sum += u16::from_be_bytes([data[i], data[i + 1]]) as u32;
        i += 2;
    }
    if i < data.len() {
        sum += (data[i] as u32) << 8;
    }
    sum
}

fn fold(mut s: u32) -> u16 {
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

/// The TCP segment (header + options + payload) with a valid checksum.
pub fn tcp_segment(p: &Pkt) -> Vec<u8> {
    let mut opts = Vec::new();
    if let Some(ws) = p.wscale {
        opts.extend_from_slice(&[1, 3, 3, ws]);
    }
    let hl = 20 + opts.len();
    let mut t = Vec::with_capacity(hl + p.payload.len());
    t.extend_from_slice(&p.sport.to_be_bytes());
    t.extend_from_slice(&p.dport.to_be_bytes());
    t.extend_from_slice(&p.seq.to_be_bytes());
    t.extend_from_slice(&p.ack.to_be_bytes());
    t.push(((hl / 4) as u8) << 4);
    t.push(p.flags);
    t.extend_from_slice(&65535u16.to_be_bytes());
    t.extend_from_slice(&[0, 0, 0, 0]);
    t.extend_from_slice(&opts);
    t.extend_from_slice(&p.payload);
    let mut pseudo = Vec::new();
    match (p.src, p.dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            pseudo.extend_from_slice(&s.octets());
            pseudo.extend_from_slice(&d.octets());
            pseudo.extend_from_slice(&[0, 6]);
            pseudo.extend_from_slice(&(t.len() as u16).to_be_bytes());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            pseudo.extend_from_slice(&s.octets());
            pseudo.extend_from_slice(&d.octets());
            pseudo.extend_from_slice(&(t.len() as u32).to_be_bytes());
            pseudo.extend_from_slice(&[0, 0, 0, 6]);
        }
        _ => panic!("mixed address families"),
    }
    let c = fold(csum(&t, csum(&pseudo, 0)));
    t[16..18].copy_from_slice(&c.to_be_bytes());
    t
}

fn eth_header(vlans: &[(u16, u16)], ethertype: u16) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1];
    for &(tpid, tci) in vlans {
        f.extend_from_slice(&tpid.to_be_bytes());
        f.extend_from_slice(&tci.to_be_bytes());
    }
    f.extend_from_slice(&ethertype.to_be_bytes());
    f
}

pub fn ipv4_header(
    src: [u8; 4],
    dst: [u8; 4],
    proto: u8,
    payload_len: usize,
    id: u16,
    frag: u16,
) -> Vec<u8> {
    let mut h = vec![0x45, 0];
    h.extend_from_slice(&((20 + payload_len) as u16).to_be_bytes());
    h.extend_from_slice(&id.to_be_bytes());
    h.extend_from_slice(&frag.to_be_bytes());
    h.extend_from_slice(&[64, proto, 0, 0]);
    h.extend_from_slice(&src);
    h.extend_from_slice(&dst);
    let c = fold(csum(&h, 0));
    h[10..12].copy_from_slice(&c.to_be_bytes());
    h
}

/// A whole Ethernet frame.
pub fn frame(p: &Pkt) -> Vec<u8> {
    let seg = tcp_segment(p);
    match (p.src, p.dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let mut f = eth_header(&p.vlans, 0x0800);
            f.extend(ipv4_header(s.octets(), d.octets(), 6, seg.len(), 1, 0x4000));
            f.extend(seg);
            f
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let mut f = eth_header(&p.vlans, 0x86dd);
            f.extend_from_slice(&[0x60, 0, 0, 0]);
            f.extend_from_slice(&(seg.len() as u16).to_be_bytes());
            f.extend_from_slice(&[6, 64]);
            f.extend_from_slice(&s.octets());
            f.extend_from_slice(&d.octets());
            f.extend(seg);
            f
        }
        _ => panic!("mixed address families"),
    }
}

/// IPv4 fragments of the TCP segment of `p`, each carrying at most `chunk` (multiple of 8) bytes.
pub fn ipv4_fragments(p: &Pkt, chunk: usize, id: u16) -> Vec<Vec<u8>> {
    let seg = tcp_segment(p);
    let (IpAddr::V4(s), IpAddr::V4(d)) = (p.src, p.dst) else {
        panic!("v4 only")
    };
    let mut out = Vec::new();
    let mut off = 0;
    while off < seg.len() {
        let end = (off + chunk).min(seg.len());
        let more = end < seg.len();
        let frag = ((off / 8) as u16) | if more { 0x2000 } else { 0 };
        let mut f = eth_header(&p.vlans, 0x0800);
        f.extend(ipv4_header(s.octets(), d.octets(), 6, end - off, id, frag));
        f.extend_from_slice(&seg[off..end]);
        out.push(f);
        off = end;
    }
    out
}

/// IPv6 fragments (fragment extension header) of the TCP segment of `p`.
pub fn ipv6_fragments(p: &Pkt, chunk: usize, id: u32) -> Vec<Vec<u8>> {
    let seg = tcp_segment(p);
    let (IpAddr::V6(s), IpAddr::V6(d)) = (p.src, p.dst) else {
        panic!("v6 only")
    };
    let mut out = Vec::new();
    let mut off = 0;
    while off < seg.len() {
        let end = (off + chunk).min(seg.len());
        let more = end < seg.len();
        let mut f = eth_header(&p.vlans, 0x86dd);
        f.extend_from_slice(&[0x60, 0, 0, 0]);
        f.extend_from_slice(&((8 + end - off) as u16).to_be_bytes());
        f.extend_from_slice(&[44, 64]);
        f.extend_from_slice(&s.octets());
        f.extend_from_slice(&d.octets());
        let fo = (off as u16) | more as u16;
        f.extend_from_slice(&[6, 0]);
        f.extend_from_slice(&fo.to_be_bytes());
        f.extend_from_slice(&id.to_be_bytes());
        f.extend_from_slice(&seg[off..end]);
        out.push(f);
        off = end;
    }
    out
}

/// A connection script: client and server endpoints and ISNs.
#[derive(Clone, Debug)]
pub struct Conn {
    pub c: (IpAddr, u16),
    pub s: (IpAddr, u16),
    pub cisn: u32,
    pub sisn: u32,
    pub vlans: Vec<(u16, u16)>,
}

impl Conn {
    pub fn v4(cisn: u32, sisn: u32) -> Conn {
        Conn {
            c: ("10.0.0.1".parse().unwrap(), 40000),
            s: ("192.168.1.1".parse().unwrap(), 80),
            cisn,
            sisn,
            vlans: vec![],
        }
    }
    pub fn v6(cisn: u32, sisn: u32) -> Conn {
        Conn {
            c: ("2001:db8::1".parse().unwrap(), 40000),
            s: ("2001:db8::2".parse().unwrap(), 443),
            cisn,
            sisn,
            vlans: vec![],
        }
    }
    /// A packet from the client (`from_client`) or the server with raw seq/ack.
    pub fn raw(&self, from_client: bool, seq: u32, ack: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
        let (a, b) = if from_client {
            (self.c, self.s)
        } else {
            (self.s, self.c)
        };
        frame(&Pkt {
            src: a.0,
            dst: b.0,
            sport: a.1,
            dport: b.1,
            seq,
            ack,
            flags,
            payload: payload.to_vec(),
            vlans: self.vlans.clone(),
            wscale: None,
        })
    }
    pub fn syn(&self) -> Vec<u8> {
        self.raw(true, self.cisn, 0, SYN, &[])
    }
    pub fn synack(&self) -> Vec<u8> {
        self.raw(false, self.sisn, self.cisn.wrapping_add(1), SYN | ACK, &[])
    }
    pub fn ack(&self) -> Vec<u8> {
        self.raw(
            true,
            self.cisn.wrapping_add(1),
            self.sisn.wrapping_add(1),
            ACK,
            &[],
        )
    }
    /// Client data at stream offset `off`.
    pub fn cdata(&self, off: u64, data: &[u8]) -> Vec<u8> {
        self.raw(
            true,
            self.cisn.wrapping_add(1).wrapping_add(off as u32),
            self.sisn.wrapping_add(1),
            ACK | PSH,
            data,
        )
    }
    /// Server data at stream offset `off`.
    pub fn sdata(&self, off: u64, data: &[u8]) -> Vec<u8> {
        self.raw(
            false,
            self.sisn.wrapping_add(1).wrapping_add(off as u32),
            self.cisn.wrapping_add(1),
            ACK | PSH,
            data,
        )
    }
    /// Client FIN after `coff` client bytes, acknowledging `soff` server bytes.
    pub fn cfin(&self, coff: u64, soff: u64) -> Vec<u8> {
        self.raw(true, self.cseq(coff), self.sseq(soff), FIN | ACK, &[])
    }
    pub fn sfin(&self, soff: u64, coff: u64) -> Vec<u8> {
        self.raw(false, self.sseq(soff), self.cseq(coff), FIN | ACK, &[])
    }
    /// Client ACK of `soff` server bytes (+1 if `fin`).
    pub fn cack(&self, coff: u64, soff: u64) -> Vec<u8> {
        self.raw(true, self.cseq(coff), self.sseq(soff), ACK, &[])
    }
    pub fn sack(&self, soff: u64, coff: u64) -> Vec<u8> {
        self.raw(false, self.sseq(soff), self.cseq(coff), ACK, &[])
    }
    pub fn cseq(&self, off: u64) -> u32 {
        self.cisn.wrapping_add(1).wrapping_add(off as u32)
    }
    pub fn sseq(&self, off: u64) -> u32 {
        self.sisn.wrapping_add(1).wrapping_add(off as u32)
    }
    pub fn crst(&self, coff: u64) -> Vec<u8> {
        self.raw(true, self.cseq(coff), 0, RST, &[])
    }
    pub fn srst(&self, soff: u64) -> Vec<u8> {
        self.raw(false, self.sseq(soff), 0, RST, &[])
    }
    /// The full client-initiated close after `c` client and `s` server bytes.
    pub fn close(&self, c: u64, s: u64) -> Vec<Vec<u8>> {
        vec![
            self.cfin(c, s),
            self.sack(s, c + 1),
            self.sfin(s, c + 1),
            self.cack(c + 1, s + 1),
        ]
    }
}

/// One recorded callback.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rec {
    pub ev: Event,
    pub hook: Hook,
    pub side: Side,
    pub flow: Option<FlowHandle>,
    pub states: Option<(TcpState, TcpState)>,
}

/// Per-flow state of the recorder: the bytes read by `peek` per side, and a counter.
#[derive(Default, Debug, Clone)]
pub struct PerFlow {
    pub started: u32,
}

/// A middlebox that records callbacks and (optionally) reads every new byte with `peek`.
#[derive(Default)]
pub struct Recorder {
    pub subs: Vec<(Event, Hook)>,
    pub log: Vec<Rec>,
    pub peek_all: bool,
    /// Bytes read via peek, per (slot, gen-less flow index) and side.
    pub streams: HashMap<(u32, Side), Vec<u8>>,
    pub peek_errors: Vec<monitor::PeekError>,
    /// Streams read with ppeek inside CONN_END (whole in-order data).
    pub at_end: Vec<(FlowHandle, Vec<u8>, Vec<u8>)>,
    pub end_read: bool,
    pub timer_fires: Vec<(u32, u64)>,
    pub arm: Vec<(u32, u64, u64)>,
    /// `Ctx::error_reason` of every `ERROR` callback, with its hook.
    pub errors: Vec<(Hook, monitor::ErrorReason)>,
}

impl Recorder {
    pub fn new(subs: &[(Event, Hook)]) -> Self {
        Recorder {
            subs: subs.to_vec(),
            ..Default::default()
        }
    }
    pub fn events(&self) -> Vec<Event> {
        self.log.iter().map(|r| r.ev).collect()
    }
    pub fn count(&self, ev: Event) -> usize {
        self.log.iter().filter(|r| r.ev == ev).count()
    }
}

pub fn read_all(cx: &Ctx<'_, '_, PerFlow>, f: FlowHandle, side: Side) -> Vec<u8> {
    let mut out = Vec::new();
    let Ok(bi) = cx.buf_info(f, side) else {
        return out;
    };
    let mut off = bi.oldest;
    let mut buf = [0u8; 1000];
    while off < bi.in_order_end {
        match cx.ppeek(f, side, off, &mut buf) {
            Ok(n) if n > 0 => {
                out.extend_from_slice(&buf[..n]);
                off += n as u64;
            }
            _ => break,
        }
    }
    out
}

impl Middlebox for Recorder {
    type Flow = PerFlow;
    fn init(&mut self, reg: &mut Registry) {
        for &(e, h) in &self.subs {
            assert!(reg.subscribe(e, h));
        }
        for &(id, after, period) in &self.arm {
            reg.set_timer(id, after, period).unwrap();
        }
    }
    fn on_event(&mut self, cx: &mut Ctx<'_, '_, PerFlow>, ev: Event, hook: Hook, side: Side) {
        let flow = cx.flow();
        let states = flow.map(|f| {
            (
                cx.tcp_state(f, Side::Client).unwrap(),
                cx.tcp_state(f, Side::Server).unwrap(),
            )
        });
        self.log.push(Rec {
            ev,
            hook,
            side,
            flow,
            states,
        });
        if ev == Event::ERROR {
            self.errors
                .push((hook, cx.error_reason().expect("ERROR carries a reason")));
        }
        if ev == Event::CONN_START {
            if let Some(u) = cx.user() {
                u.started += 1;
            }
        }
        if self.peek_all && ev == Event::CONN_NEW_DATA && hook != Hook::Snd {
            let f = flow.unwrap();
            let mut buf = [0u8; 777];
            loop {
                match cx.peek(f, side, &mut buf) {
                    Ok(0) => break,
                    Ok(n) => self
                        .streams
                        .entry((f.slot(), side))
                        .or_default()
                        .extend_from_slice(&buf[..n]),
                    Err(e) => self.peek_errors.push(e),
                }
            }
        }
        if self.end_read && ev == Event::CONN_END {
            let f = flow.unwrap();
            let c = read_all(cx, f, Side::Client);
            let s = read_all(cx, f, Side::Server);
            self.at_end.push((f, c, s));
        }
    }
    fn on_timer(&mut self, cx: &mut Ctx<'_, '_, PerFlow>, id: u32) {
        self.timer_fires.push((id, cx.now_us()));
    }
}

/// Every built-in event at the `Rcv` hook... and the ones that only have one view at `Any`.
pub fn all_any() -> Vec<(Event, Hook)> {
    Event::BUILTIN.iter().map(|&e| (e, Hook::Any)).collect()
}

/// Storage for tests: 64 flows, 256 chunks, 4 fragment slots.
pub fn storage<F>() -> HostStorage<F> {
    HostStorage::new(64, 256, 4)
}

pub fn cfg() -> Config {
    Config {
        side_capacity: 64 * 1024,
        ..Config::DEFAULT
    }
}

/// Feed frames, one batch per frame, at 1 ms intervals starting at `t0`.
pub fn feed<M: Middlebox>(m: &mut Monitor<'_, M>, frames: &[Vec<u8>], t0: u64) {
    for (i, f) in frames.iter().enumerate() {
        let t = t0 + i as u64 * 1000;
        m.begin_batch(t);
        let _ = m.frame(f, t);
        m.end_batch();
    }
}

/// Feed frames as one batch.
pub fn feed_batch<M: Middlebox>(m: &mut Monitor<'_, M>, frames: &[Vec<u8>], t: u64) {
    m.begin_batch(t);
    for f in frames {
        let _ = m.frame(f, t);
    }
    m.end_batch();
}
