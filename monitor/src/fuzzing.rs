//! Shared driver of the fuzz target and of the stable corpus-replay test (`std` feature).
//!
//! Input format: byte 0 selects the configuration (bit 0 pickup, bit 1 inline, bit 2 buffering
//! off, bit 3 last-wins, bit 4 one-chunk rings, bit 5 read-ahead plans (below), bits 6-7 the
//! checksums: `Auto`, `Verify`, `Ignore`, or `Verify` with NIC results that cycle frame by frame
//! through none, IPv4 good, both good and TCP bad); then records `[op][len lo][len hi][len
//! bytes]` where the frame is the record's bytes, `op & 1` ends the batch after it and `op >> 1`
//! advances time by that many milliseconds. A short tail is fed as one frame.
//!
//! Every input runs through two monitors in lockstep: one is given each frame with `frame_with`
//! only, the other is also given [`Monitor::read_ahead`] hints, which must change nothing. With
//! bit 5 clear the hint is what `Monitor::on_batch` gives: each group of [`READ_AHEAD`] frames
//! of a batch, read ahead before the first of them. With bit 5 set the input says, frame by
//! frame, how: records are `[op][how][arg][len lo][len hi][len bytes]`, time advances by `op >>
//! 2` milliseconds, and
//! - `how & 1` (START): a `read_ahead` call is made before this frame is processed, for the
//!   group of frames from it to the next START of its batch; `op & 2` on a batch's first frame
//!   makes that call before `begin_batch`;
//! - `how & 2` (SKIP): the frame is left out of its group's list;
//! - `(how >> 2) & 3`: its rank; the list is ordered by rank (then by position);
//! - `(how >> 4) & 3`: an extra slice listed after it and never processed: none, a copy of its
//!   bytes (another address), the same slice again, or its first half (same address, other
//!   length);
//! - `how >> 6`: its bytes change between the hint and `frame_with` (same buffer, same
//!   length): not at all; byte `arg % len` flipped (`1 << (arg >> 5)`); replaced by the first
//!   other frame of the input with the same length from frame `arg` on (else flipped); or
//!   flipped while read ahead and restored before `frame_with`.
//!
//! The plain monitor processes the bytes `frame_with` gets. After every frame the two must
//! agree on the verdict, the frames injected, the callbacks (event, hook, side and flow, timers)
//! and the bytes read through `peek`, and the counters; after every batch on the flows and
//! their buffers. The driver also checks invariants after every batch: fragments are sorted and
//! disjoint, `ppeek` reads every fragment whole, and `buf_info` agrees with `frag_info`. It
//! panics only when an invariant breaks or the monitors disagree (the bugs the fuzzer looks
//! for).

use crate::{
    BufInfo, Checksums, Config, Ctx, Event, FlowHandle, Frag, Hook, HostStorage, Middlebox,
    Monitor, Overlap, PeekError, Registry, RxCheck, RxMeta, Side, Verdict, CHUNK_SIZE, READ_AHEAD,
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
    /// The callbacks since the driver last cleared it.
    pub log: Vec<Call>,
    /// FNV-1a of the bytes read through `peek`, in order.
    pub digest: u64,
}

/// One callback of the [`Exerciser`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Call {
    /// `on_event`: the event, the hook, the side and the flow.
    Event(Event, Hook, Side, Option<FlowHandle>),
    /// `on_timer` with this id.
    Timer(u32),
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
    fn on_event(&mut self, cx: &mut Ctx<'_, '_, u32>, ev: Event, hook: Hook, side: Side) {
        self.calls += 1;
        self.log.push(Call::Event(ev, hook, side, cx.flow()));
        if let Some(u) = cx.user() {
            *u = u.wrapping_add(1);
        }
        let Some(f) = cx.flow() else { return };
        let mut buf = [0u8; 512];
        if ev == Event::CONN_NEW_DATA || ev == Event::CONN_END {
            for _ in 0..1000 {
                match cx.peek(f, side, &mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        self.read += n as u64;
                        for &b in buf.get(..n).unwrap_or(&[]) {
                            self.digest = (self.digest ^ b as u64).wrapping_mul(0x100_0000_01b3);
                        }
                    }
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
        self.log.push(Call::Timer(id));
        let _ = cx.set_timer(id + 1, 100, 0);
    }
}

/// The flows and their buffers as the driver saw them after a batch (compared between the
/// two monitors).
type Snapshot = Vec<(FlowHandle, Side, BufInfo, Vec<Frag>)>;

fn check<M: Middlebox>(m: &Monitor<'_, M>) -> Snapshot {
    let mut out = Vec::new();
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
            out.push((f, side, bi, frags[..n].to_vec()));
        }
    }
    out
}

/// Bit 5 of the mode byte: records carry read-ahead plans (module docs).
pub const PLAN: u8 = 0x20;
/// `how`: a `read_ahead` call for the group that starts at this frame.
pub const START: u8 = 0x01;
/// `how`: left out of its group's list.
pub const SKIP: u8 = 0x02;
/// `how`: the rank (list order), times 0..=3.
pub const RANK: u8 = 0x04;
/// `how`: a copy of the frame at another address listed after it.
pub const DECOY_COPY: u8 = 0x10;
/// `how`: the same slice listed again.
pub const DECOY_SAME: u8 = 0x20;
/// `how`: the first half of the frame (same address, other length) listed after it.
pub const DECOY_HALF: u8 = 0x30;
/// `how`: byte `arg % len` flipped after the hint.
pub const FLIP_AFTER: u8 = 0x40;
/// `how`: replaced by another frame of the same length after the hint.
pub const REPLACE_AFTER: u8 = 0x80;
/// `how`: byte `arg % len` flipped while read ahead, restored before `frame_with`.
pub const FLIP_WHILE_AHEAD: u8 = 0xc0;
/// `op` (plan records): the group starting at a batch's first frame is read ahead before
/// `begin_batch`.
pub const EARLY: u8 = 0x02;

/// One record of the input.
#[derive(Clone, Copy, Debug)]
struct Rec<'d> {
    op: u8,
    how: u8,
    arg: u8,
    frame: &'d [u8],
}

/// What the read-ahead monitor was given beyond the frames (for tests that the replayed
/// inputs reach what they should).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Frames processed by both monitors and compared.
    pub frames: u64,
    /// `read_ahead` calls.
    pub read_aheads: u64,
    /// Of them, made before `begin_batch`.
    pub early: u64,
    /// Slices listed in them.
    pub listed: u64,
    /// Extra slices listed (decoys: copies, slices listed twice, halves).
    pub decoys: u64,
    /// Frames read ahead whose bytes changed before `frame_with`.
    pub rewritten: u64,
    /// Frames read ahead with a flipped byte, restored before `frame_with`.
    pub restored: u64,
}

fn records(mut rest: &[u8], plan: bool) -> Vec<Rec<'_>> {
    let hdr = if plan { 5 } else { 3 };
    let mut v = Vec::new();
    while !rest.is_empty() {
        if rest.len() >= hdr {
            let len = u16::from_le_bytes([rest[hdr - 2], rest[hdr - 1]]) as usize;
            let end = (hdr + len).min(rest.len());
            let (how, arg) = if plan { (rest[1], rest[2]) } else { (0, 0) };
            v.push(Rec {
                op: rest[0],
                how,
                arg,
                frame: &rest[hdr..end],
            });
            rest = &rest[end..];
        } else {
            v.push(Rec {
                op: 1,
                how: 0,
                arg: 0,
                frame: rest,
            });
            rest = &[];
        }
    }
    v
}

/// A verdict without its borrow.
#[derive(Debug, PartialEq, Eq)]
enum Out {
    Forward,
    Drop,
    Rewritten(Vec<u8>),
}

fn out(v: Verdict<'_>) -> Out {
    match v {
        Verdict::Forward => Out::Forward,
        Verdict::Drop => Out::Drop,
        Verdict::Rewritten(b) => Out::Rewritten(b.to_vec()),
    }
}

/// Flip byte `arg % len` of `f` (nothing if empty).
fn flip(f: &mut [u8], arg: u8) {
    if !f.is_empty() {
        let at = arg as usize % f.len();
        f[at] ^= 1 << (arg >> 5);
    }
}

/// The NIC's checksum results for the `i`th frame under mode byte `mode`.
fn rx_meta(mode: u8, i: u64) -> RxMeta {
    if mode >> 6 != 3 {
        return RxMeta::NONE;
    }
    let (ipv4, l4) = match i % 4 {
        0 => (RxCheck::Unknown, RxCheck::Unknown),
        1 => (RxCheck::Good, RxCheck::Unknown),
        2 => (RxCheck::Good, RxCheck::Good),
        _ => (RxCheck::Unknown, RxCheck::Bad),
    };
    RxMeta { ipv4, l4 }
}

/// The configuration mode byte `mode` selects.
fn config(mode: u8) -> Config {
    Config {
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
        checksums: match mode >> 6 {
            0 => Checksums::Auto,
            2 => Checksums::Ignore,
            _ => Checksums::Verify,
        },
        ..Config::DEFAULT
    }
}

/// Where the monitors are compared (for the messages).
#[derive(Clone, Copy, Debug)]
enum At {
    /// Batch, frame in it.
    Frame(usize, usize),
    /// After `end_batch` of this batch.
    End(usize),
    /// After `close_all`.
    Close,
}

impl core::fmt::Display for At {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            At::Frame(b, i) => write!(f, "batch {b}, frame {i}"),
            At::End(b) => write!(f, "end of batch {b}"),
            At::Close => write!(f, "close_all"),
        }
    }
}

/// The two monitors agree on what their middleboxes saw since the last call (then cleared),
/// and on their counters.
fn same_calls(p: &mut Monitor<'_, Exerciser>, a: &mut Monitor<'_, Exerciser>, at: At) {
    let (x, y) = (p.middlebox(), a.middlebox());
    assert_eq!(x.log, y.log, "callbacks differ with read_ahead ({at})");
    assert_eq!(
        (x.read, x.digest),
        (y.read, y.digest),
        "bytes read differ with read_ahead ({at})"
    );
    assert!(
        p.counters() == a.counters(),
        "counters differ with read_ahead ({at}):\n{:?}\n{:?}",
        p.counters(),
        a.counters()
    );
    p.middlebox_mut().log.clear();
    a.middlebox_mut().log.clear();
}

/// Run one fuzz input (see the module docs); returns what the read-ahead monitor was given.
pub fn run(data: &[u8]) -> Stats {
    let mut stats = Stats::default();
    let Some((&mode, rest)) = data.split_first() else {
        return stats;
    };
    let plan = mode & PLAN != 0;
    let cfg = config(mode);
    let recs = records(rest, plan);
    let all: Vec<&[u8]> = recs.iter().map(|r| r.frame).collect();
    // Batches: each ends after a record with `op & 1`; the last one may be empty.
    let mut batches: Vec<&[Rec<'_>]> = Vec::new();
    let mut from = 0;
    for (i, r) in recs.iter().enumerate() {
        if r.op & 1 != 0 {
            batches.push(&recs[from..=i]);
            from = i + 1;
        }
    }
    batches.push(&recs[from..]);

    let mut st_p: HostStorage<u32> = HostStorage::new(8, 12, 2);
    let mut st_a: HostStorage<u32> = HostStorage::new(8, 12, 2);
    let (Ok(mut p), Ok(mut a)) = (
        Monitor::new(Exerciser::default(), cfg, st_p.storage()),
        Monitor::new(Exerciser::default(), cfg, st_a.storage()),
    ) else {
        return stats;
    };
    let mut now = 0u64;
    let mut nth = 0u64;
    for (b, batch) in batches.iter().enumerate() {
        let n = batch.len();
        let starts = |i: usize| {
            if plan {
                batch[i].how & START != 0
            } else {
                i.is_multiple_of(READ_AHEAD)
            }
        };
        // The bytes each frame has when processed, and the group (start) it is read ahead in.
        let mut group = vec![None; n];
        let mut g = None;
        for (i, slot) in group.iter_mut().enumerate() {
            if starts(i) {
                g = Some(i);
            }
            *slot = g;
        }
        let proc: Vec<Vec<u8>> = batch
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let mut f = r.frame.to_vec();
                match r.how >> 6 {
                    1 => flip(&mut f, r.arg),
                    2 => {
                        let k = all.len().max(1);
                        let other = (0..all.len())
                            .map(|j| all[(r.arg as usize + j) % k])
                            .find(|o| o.len() == f.len() && **o != f[..]);
                        match other {
                            Some(o) => f.copy_from_slice(o),
                            None => flip(&mut f, r.arg),
                        }
                    }
                    _ => {}
                }
                if group[i].is_some() && f[..] != *r.frame {
                    stats.rewritten += 1;
                }
                f
            })
            .collect();
        // The read-ahead monitor's buffers: frames read ahead keep their bytes until then.
        let mut bufs: Vec<Vec<u8>> = (0..n)
            .map(|i| match group[i] {
                Some(_) => batch[i].frame.to_vec(),
                None => proc[i].clone(),
            })
            .collect();
        let begin = now;
        let early = plan && n > 0 && starts(0) && batch[0].op & EARLY != 0;
        let group_end = |i: usize| (i + 1..n).find(|&j| starts(j)).unwrap_or(n);
        if early {
            stats.early += 1;
            read_ahead(
                &mut a,
                &mut bufs,
                &proc,
                &batch[..group_end(0)],
                0,
                &mut stats,
            );
        }
        p.begin_batch(begin);
        a.begin_batch(begin);
        for i in 0..n {
            if starts(i) && !(i == 0 && early) {
                let end = group_end(i);
                read_ahead(&mut a, &mut bufs, &proc, &batch[i..end], i, &mut stats);
            }
            let r = &batch[i];
            now += (r.op >> if plan { 2 } else { 1 }) as u64 * 1000;
            let rx = rx_meta(mode, nth);
            nth += 1;
            assert_eq!(bufs[i], proc[i], "driver: frame {i} not as planned");
            let vp = out(p.frame_with(&proc[i], now, rx));
            let va = out(a.frame_with(&bufs[i], now, rx));
            stats.frames += 1;
            let at = At::Frame(b, i);
            assert_eq!(vp, va, "verdicts differ with read_ahead ({at})");
            let (mut ip, mut ia) = (Vec::new(), Vec::new());
            p.drain_injected(|f| ip.push(f.to_vec()));
            a.drain_injected(|f| ia.push(f.to_vec()));
            assert_eq!(ip, ia, "injected frames differ with read_ahead ({at})");
            same_calls(&mut p, &mut a, at);
        }
        p.end_batch();
        a.end_batch();
        let at = At::End(b);
        same_calls(&mut p, &mut a, at);
        assert_eq!(check(&p), check(&a), "flows differ with read_ahead ({at})");
    }
    for m in [&mut p, &mut a] {
        m.tick(now + 1_000_000);
        m.close_all();
    }
    same_calls(&mut p, &mut a, At::Close);
    for m in [&p, &a] {
        assert_eq!(m.flow_count(), 0);
        assert_eq!(m.free_chunks(), 12, "every chunk returns to the pool");
    }
    stats
}

/// Give `a` the hint for `group` (frames `first..` of the batch, their buffers in `bufs`) as
/// its plans say, then leave each buffer as it is to be processed (`proc`).
fn read_ahead(
    a: &mut Monitor<'_, Exerciser>,
    bufs: &mut [Vec<u8>],
    proc: &[Vec<u8>],
    group: &[Rec<'_>],
    first: usize,
    stats: &mut Stats,
) {
    let range = first..first + group.len();
    for (r, f) in group.iter().zip(&mut bufs[range.clone()]) {
        if r.how >> 6 == 3 && !f.is_empty() {
            flip(f, r.arg);
            stats.restored += 1;
        }
    }
    {
        let copies: Vec<Vec<u8>> = group
            .iter()
            .zip(&bufs[range.clone()])
            .filter(|(r, _)| r.how & 0x30 == DECOY_COPY)
            .map(|(_, f)| f.clone())
            .collect();
        let mut copies = copies.iter();
        let mut list: Vec<(u8, &[u8])> = Vec::new();
        for (r, f) in group.iter().zip(&bufs[range.clone()]) {
            let rank = (r.how >> 2) & 3;
            if r.how & SKIP == 0 {
                list.push((rank, f.as_slice()));
            }
            let decoy: Option<&[u8]> = match r.how & 0x30 {
                DECOY_COPY => copies.next().map(|c| &c[..]),
                DECOY_SAME => Some(f.as_slice()),
                DECOY_HALF => Some(&f[..f.len() / 2]),
                _ => None,
            };
            if let Some(d) = decoy {
                list.push((rank, d));
                stats.decoys += 1;
            }
        }
        list.sort_by_key(|e| e.0);
        stats.read_aheads += 1;
        stats.listed += list.len() as u64;
        a.read_ahead(list.iter().map(|e| e.1));
    }
    for (f, want) in bufs[range.clone()].iter_mut().zip(&proc[range]) {
        f.copy_from_slice(want);
    }
}

/// Encode frames in the input format (for seed corpora): `mode` (bit 5 clear), then each
/// frame with its op byte.
pub fn encode(mode: u8, frames: &[(u8, &[u8])]) -> Vec<u8> {
    let mut v = vec![mode & !PLAN];
    for (op, f) in frames {
        let len = f.len().min(u16::MAX as usize);
        v.push(*op);
        v.extend_from_slice(&(len as u16).to_le_bytes());
        v.extend_from_slice(&f[..len]);
    }
    v
}

/// Encode frames with read-ahead plans (for seed corpora): `mode | PLAN`, then each frame
/// as `(op, how, arg, frame)` (module docs).
pub fn encode_plan<F: AsRef<[u8]>>(mode: u8, frames: &[(u8, u8, u8, F)]) -> Vec<u8> {
    let mut v = vec![mode | PLAN];
    for (op, how, arg, f) in frames {
        let f = f.as_ref();
        let len = f.len().min(u16::MAX as usize);
        v.extend_from_slice(&[*op, *how, *arg]);
        v.extend_from_slice(&(len as u16).to_le_bytes());
        v.extend_from_slice(&f[..len]);
    }
    v
}
