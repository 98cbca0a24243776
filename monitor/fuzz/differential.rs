//! Differential driver: the monitor and a reference model (a `Vec<Option<u8>>` per side, as in
//! `monitor/tests/props.rs`) get the same random segment streams of one TCP connection, and
//! every byte is compared: the in-order stream read with `peek`, and every byte held through
//! `ppeek`; so are the bytes each side lost to the island limit (`BufInfo::lost` and the
//! `ERROR`s with `LossCause::Islands`).
//!
//! Shared by the `differential` fuzz target and the stable replay test
//! `monitor/tests/fuzz_differential.rs` (both include this file by path).
//!
//! Input: byte 0 = flags (bit 0 last-wins overlaps, bit 1 IPv6, bit 2 peek after every batch
//! instead of at the end only, bits 3-5 the island limit `Config::max_islands`: one of
//! [`ISLAND_LIMITS`]), bytes 1..9 = client and server ISNs (little-endian u32s, so sequence
//! wrap is reached), then 6-byte records `[op][start lo][start hi][len lo][len hi][fill]`:
//! `op` bit 0 = from the server, bit 1 = ends the batch after this record.
//! * `op` bit 3 clear: one segment; bit 2 = its bytes are all `fill` (a conflicting overlap)
//!   instead of the side's pattern; `start` is the stream offset (mod 12,000), `len` is
//!   1 + (len mod 1,460).
//! * `op` bit 3 set: a comb of 1 + `fill` segments (teeth) that opens up to 256 holes at once:
//!   tooth `k` covers `[start + k * step, + tooth)` with `tooth` = 1 + (len lo mod 8) and
//!   `step` = `tooth` + 1 + (len hi mod 8); bits 4-5 the order the teeth are sent in
//!   (ascending, descending, even teeth then odd ones, or by a stride of 7 mod the count), so
//!   holes are opened and filled in any order. Teeth past offset 13,460 are left out. An input
//!   sends at most [`MAX_SEGMENTS`] segments.
//!
//! The model applies the monitor's documented island policy (`Config::max_islands`): a
//! segment whose bytes past the in-order end would touch (overlap or adjoin) no island needs a
//! new one; when the side already holds `max_islands` islands (clamped to
//! [`monitor::MAX_ISLANDS`]) the whole segment is dropped and its bytes past the in-order end
//! are lost (`LossCause::Islands`). Capacity (16 KiB a side, beyond offset 13,460) and the
//! pool (64 chunks) are never short, so islands are the only limit.

use monitor::{
    Config, Ctx, ErrorReason, Event, Hook, HostStorage, LossCause, Middlebox, Monitor, Overlap,
    PeekError, Side, MAX_ISLANDS,
};
use std::net::IpAddr;

/// `Config::max_islands` by flags bits 3-5: none, a few, the default, hundreds, and more than
/// [`MAX_ISLANDS`] (clamped).
pub const ISLAND_LIMITS: [u16; 8] = [0, 1, 3, 16, 64, 200, 700, 3000];
/// Most segments one input sends (combs multiply records): enough for one side to pass the
/// clamped limit ([`MAX_ISLANDS`] islands and 256 more), few enough to keep an input fast.
pub const MAX_SEGMENTS: usize = MAX_ISLANDS + 256;
/// Stream offsets used: start below 12,000, plus at most 1,460 bytes.
const SPAN: usize = 12_000 + 1_460;

/// The reference model of one side's buffer.
struct Model {
    bytes: Vec<Option<u8>>,
    /// The in-order end: the first `None` of `bytes` (or its length).
    ce: usize,
    /// Islands: runs of held bytes past `ce` (kept up to date segment by segment, so a
    /// segment costs its length, not the buffer's).
    count: usize,
    last_wins: bool,
    max_islands: usize,
    /// Bytes lost to the island limit.
    lost: u64,
    /// Most islands held at once (seen before a segment out of order).
    peak: usize,
}

impl Model {
    fn new(last_wins: bool, max_islands: usize) -> Model {
        Model {
            bytes: vec![],
            ce: 0,
            count: 0,
            last_wins,
            max_islands,
            lost: 0,
            peak: 0,
        }
    }

    /// Runs of held bytes that intersect `[a, b)`.
    fn runs_in(&self, a: usize, b: usize) -> usize {
        let b = b.min(self.bytes.len());
        (a..b)
            .filter(|&i| self.bytes[i].is_some() && (i == a || self.bytes[i - 1].is_none()))
            .count()
    }

    /// The runs of held bytes past the in-order end, as `[start, end)` (a full scan: for the
    /// outcome and the consistency check only).
    fn islands(&self) -> Vec<(usize, usize)> {
        let mut v = Vec::new();
        let mut i = self.ce;
        while i < self.bytes.len() {
            if self.bytes[i].is_some() {
                let s = i;
                while i < self.bytes.len() && self.bytes[i].is_some() {
                    i += 1;
                }
                v.push((s, i));
            } else {
                i += 1;
            }
        }
        v
    }

    /// One segment, under the monitor's island policy: if its bytes past the in-order end
    /// start beyond it and touch (overlap or adjoin) no island, they need a new island; with
    /// `max_islands` already held, the segment is dropped and those bytes are lost.
    fn segment(&mut self, start: usize, data: &[u8]) {
        let end = start + data.len();
        let s = start.max(self.ce);
        if s < end && s > self.ce {
            self.peak = self.peak.max(self.count);
            // `s - 1 >= ce`, and `bytes[s - 1]` held means an island ends right there.
            if self.runs_in(s - 1, end + 1) == 0 && self.count >= self.max_islands {
                self.lost += (end - s) as u64;
                return;
            }
        }
        self.apply(start, data);
    }

    fn apply(&mut self, start: usize, data: &[u8]) {
        let end = start + data.len();
        let s = start.max(self.ce);
        if s >= end {
            return;
        }
        if self.bytes.len() < end {
            self.bytes.resize(end, None);
        }
        let write = |m: &mut Model| {
            for i in s..end {
                if m.bytes[i].is_none() || m.last_wins {
                    m.bytes[i] = Some(data[i - start]);
                }
            }
        };
        if s > self.ce {
            // The window [s - 1, end + 1) holds every byte written and one unwritten byte on
            // each side, so runs outside it do not change: the count moves by the difference.
            let before = self.runs_in(s - 1, end + 1);
            write(self);
            self.count = self.count + self.runs_in(s - 1, end + 1) - before;
            return;
        }
        // At the in-order end: every island the in-order run now reaches joins it. Those are
        // the runs that met [ce, end) before the write, one starting exactly at `end`, and
        // those starting after `end` below the new in-order end.
        let met = self.runs_in(self.ce, end);
        let at_end =
            self.bytes.get(end).is_some_and(|b| b.is_some()) && self.bytes[end - 1].is_none();
        write(self);
        while self.ce < self.bytes.len() && self.bytes[self.ce].is_some() {
            self.ce += 1;
        }
        let after = (end + 1..self.ce)
            .filter(|&i| self.bytes[i].is_some() && self.bytes[i - 1].is_none())
            .count();
        self.count -= met + usize::from(at_end) + after;
    }
}

/// The segments `(start, len)` of one record, in the order they are sent.
fn record_segments(r: &[u8]) -> Vec<(usize, usize)> {
    let start = usize::from(u16::from_le_bytes([r[1], r[2]])) % 12_000;
    if r[0] & 8 == 0 {
        let len = 1 + usize::from(u16::from_le_bytes([r[3], r[4]])) % 1460;
        return vec![(start, len)];
    }
    let tooth = 1 + usize::from(r[3] % 8);
    let step = tooth + 1 + usize::from(r[4] % 8);
    let n = 1 + usize::from(r[5]);
    let teeth: Vec<usize> = (0..n)
        .filter(|k| start + k * step + tooth <= SPAN)
        .collect();
    let n = teeth.len();
    let order: Vec<usize> = match (r[0] >> 4) & 3 {
        0 => teeth,
        1 => teeth.into_iter().rev().collect(),
        2 => teeth
            .iter()
            .step_by(2)
            .chain(teeth.iter().skip(1).step_by(2))
            .copied()
            .collect(),
        // A stride of 7 visits every tooth when 7 does not divide the count.
        _ if !n.is_multiple_of(7) => (0..n).map(|i| teeth[(i * 7) % n]).collect(),
        _ => teeth.into_iter().rev().collect(),
    };
    order
        .into_iter()
        .map(|k| (start + k * step, tooth))
        .collect()
}

/// Reads every side's in-order bytes on `CONN_NEW_DATA`; adds up the bytes each side lost to
/// the island limit as `ERROR` reports them.
#[derive(Default)]
struct Reader {
    streams: [Vec<u8>; 2],
    peek_errors: u32,
    island_losses: [u64; 2],
    other_errors: u32,
}

impl Middlebox for Reader {
    type Flow = ();
    fn init(&mut self, reg: &mut monitor::Registry) {
        reg.subscribe(Event::CONN_NEW_DATA, Hook::Rcv);
        reg.subscribe(Event::ERROR, Hook::Rcv);
    }
    fn on_event(&mut self, cx: &mut Ctx<'_, '_, ()>, ev: Event, _hook: Hook, side: Side) {
        if ev == Event::ERROR {
            match cx.error_reason() {
                Some(ErrorReason::Lost {
                    bytes,
                    cause: LossCause::Islands,
                }) => self.island_losses[side.index()] += bytes,
                _ => self.other_errors += 1,
            }
            return;
        }
        let Some(f) = cx.flow() else { return };
        let mut buf = [0u8; 1000];
        loop {
            match cx.peek(f, side, &mut buf) {
                Ok(0) => return,
                Ok(n) => self.streams[side.index()].extend_from_slice(&buf[..n]),
                Err(_) => {
                    self.peek_errors += 1;
                    return;
                }
            }
        }
    }
}

fn sum16(data: &[u8]) -> u32 {
    data.chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum()
}

fn fold(mut s: u32) -> u16 {
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

/// One Ethernet frame, IPv4 or IPv6, TCP with correct checksums.
#[allow(clippy::too_many_arguments)]
fn segment(
    src: IpAddr,
    dst: IpAddr,
    sport: u16,
    dport: u16,
    seq: u32,
    ack: u32,
    flags: u8,
    payload: &[u8],
) -> Vec<u8> {
    let mut tcp = Vec::with_capacity(20 + payload.len());
    tcp.extend(sport.to_be_bytes());
    tcp.extend(dport.to_be_bytes());
    tcp.extend(seq.to_be_bytes());
    tcp.extend(ack.to_be_bytes());
    tcp.extend([5 << 4, flags]);
    tcp.extend(65535u16.to_be_bytes());
    tcp.extend([0, 0, 0, 0]);
    tcp.extend(payload);
    let tlen = tcp.len() as u32;
    let mut f = vec![0u8; 12];
    f[0] = 2;
    f[6] = 2;
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            f.extend([0x08, 0x00]);
            let mut ip = vec![0x45, 0];
            ip.extend(((20 + tlen) as u16).to_be_bytes());
            ip.extend([0, 0, 0x40, 0, 64, 6, 0, 0]);
            ip.extend(s.octets());
            ip.extend(d.octets());
            let c = fold(sum16(&ip));
            ip[10..12].copy_from_slice(&c.to_be_bytes());
            let pseudo = sum16(&s.octets()) + sum16(&d.octets()) + 6 + tlen;
            let c = fold(pseudo + sum16(&tcp));
            tcp[16..18].copy_from_slice(&c.to_be_bytes());
            f.extend(ip);
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            f.extend([0x86, 0xdd]);
            f.extend([0x60, 0, 0, 0]);
            f.extend((tlen as u16).to_be_bytes());
            f.extend([6, 64]);
            f.extend(s.octets());
            f.extend(d.octets());
            let pseudo = sum16(&s.octets()) + sum16(&d.octets()) + 6 + tlen;
            let c = fold(pseudo + sum16(&tcp));
            tcp[16..18].copy_from_slice(&c.to_be_bytes());
        }
        _ => unreachable!("one family per connection"),
    }
    f.extend(tcp);
    f
}

fn pattern(i: usize, side: u8) -> u8 {
    (i as u8)
        .wrapping_mul(31)
        .wrapping_add(side.wrapping_mul(0x5a))
}

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const PSH: u8 = 0x08;

/// What one input exercised (for the stable tests' coverage checks).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// The island limit in force (after the clamp).
    pub limit: usize,
    /// Most islands one side held at once.
    pub peak_islands: usize,
    /// Bytes both sides lost to the island limit.
    pub lost: u64,
    /// Segments sent.
    pub segments: usize,
}

/// Runs one input; panics when the monitor and the model disagree on any byte.
pub fn run(data: &[u8]) -> Outcome {
    if data.len() < 9 {
        return Outcome::default();
    }
    let flags = data[0];
    let last_wins = flags & 1 != 0;
    let (c, s): (IpAddr, IpAddr) = if flags & 2 != 0 {
        (
            "2001:db8::1".parse().unwrap(),
            "2001:db8::2".parse().unwrap(),
        )
    } else {
        ("10.0.0.1".parse().unwrap(), "192.168.1.1".parse().unwrap())
    };
    let peek_often = flags & 4 != 0;
    let max_islands = ISLAND_LIMITS[usize::from(flags >> 3) & 7];
    let cisn = u32::from_le_bytes([data[1], data[2], data[3], data[4]]);
    let sisn = u32::from_le_bytes([data[5], data[6], data[7], data[8]]);
    let cfg = Config {
        overlap: if last_wins {
            Overlap::Last
        } else {
            Overlap::First
        },
        side_capacity: 16 << 10,
        idle_timeout_us: u64::MAX / 4,
        max_islands,
        ..Config::DEFAULT
    };
    let mut st: HostStorage<()> = HostStorage::new(4, 64, 2);
    let mut m = Monitor::new(Reader::default(), cfg, st.storage()).expect("configuration");
    let hs = [
        segment(c, s, 40000, 80, cisn, 0, SYN, &[]),
        segment(s, c, 80, 40000, sisn, cisn.wrapping_add(1), SYN | ACK, &[]),
        segment(
            c,
            s,
            40000,
            80,
            cisn.wrapping_add(1),
            sisn.wrapping_add(1),
            ACK,
            &[],
        ),
    ];
    m.on_batch(hs.iter().map(|f| (&f[..], 1)));
    // models[0]: the client's receive buffer (server data), [1]: the server's.
    let limit = usize::from(max_islands).min(MAX_ISLANDS);
    let mut models = [Model::new(last_wins, limit), Model::new(last_wins, limit)];
    let mut batch: Vec<Vec<u8>> = Vec::new();
    let mut t = 2u64;
    let mut sent = 0;
    for r in data[9..].chunks_exact(6) {
        let from_server = r[0] & 1 != 0;
        let side = if from_server {
            Side::Client
        } else {
            Side::Server
        };
        for (start, len) in record_segments(r) {
            if sent == MAX_SEGMENTS {
                break;
            }
            sent += 1;
            let bytes: Vec<u8> = (start..start + len)
                .map(|i| {
                    if r[0] & 0xc == 4 {
                        r[5]
                    } else {
                        pattern(i, from_server as u8)
                    }
                })
                .collect();
            models[side.index()].segment(start, &bytes);
            batch.push(if from_server {
                segment(
                    s,
                    c,
                    80,
                    40000,
                    sisn.wrapping_add(1).wrapping_add(start as u32),
                    cisn.wrapping_add(1),
                    ACK | PSH,
                    &bytes,
                )
            } else {
                segment(
                    c,
                    s,
                    40000,
                    80,
                    cisn.wrapping_add(1).wrapping_add(start as u32),
                    sisn.wrapping_add(1),
                    ACK | PSH,
                    &bytes,
                )
            });
        }
        if r[0] & 2 != 0 && !batch.is_empty() {
            m.on_batch(batch.iter().map(|f| (&f[..], t)));
            batch.clear();
            t += 1;
            if peek_often {
                compare(&m, &models, false);
            }
        }
    }
    m.on_batch(batch.iter().map(|f| (&f[..], t)));
    compare(&m, &models, true);
    Outcome {
        limit: models[0].max_islands,
        peak_islands: models
            .iter()
            .map(|m| m.peak.max(m.count))
            .max()
            .unwrap_or(0),
        lost: models[0].lost + models[1].lost,
        segments: sent,
    }
}

/// Compares the streams read and the buffer ends; with `every_offset`, every byte held too
/// (through `ppeek`).
fn compare(m: &Monitor<'_, Reader>, models: &[Model; 2], every_offset: bool) {
    let f = m.flows().next().expect("the connection is live");
    let mut buf = vec![0u8; 1600];
    for side in Side::BOTH {
        let model = &models[side.index()];
        let ce = model.ce;
        let want: Vec<u8> = model.bytes[..ce].iter().map(|b| b.unwrap_or(0)).collect();
        assert_eq!(
            m.middlebox().streams[side.index()],
            want,
            "{side:?}: in-order stream"
        );
        let bi = m.buf_info(f, side).expect("buf_info");
        assert_eq!(bi.in_order_end, ce as u64, "{side:?}: in-order end");
        let last = model
            .bytes
            .iter()
            .rposition(|b| b.is_some())
            .map_or(0, |i| i + 1);
        assert_eq!(bi.last_end, last as u64, "{side:?}: last end");
        assert_eq!(
            bi.lost, model.lost,
            "{side:?}: bytes lost to the island limit"
        );
        assert_eq!(
            m.middlebox().island_losses[side.index()],
            model.lost,
            "{side:?}: LossCause::Islands in ERROR"
        );
        if every_offset {
            assert_eq!(
                model.count,
                model.islands().len(),
                "{side:?}: the model's count"
            );
            check_offsets(m, f, side, model, &mut buf);
        }
    }
    assert_eq!(m.middlebox().peek_errors, 0);
    assert_eq!(
        m.middlebox().other_errors,
        0,
        "an ERROR for anything but islands"
    );
}

/// `ppeek` reads every held byte right (each run from its start, in `buf`-sized steps, and
/// from its second and last byte), and finds nothing at the first, second and last byte of
/// every hole and past the end.
fn check_offsets(
    m: &Monitor<'_, Reader>,
    f: monitor::FlowHandle,
    side: Side,
    model: &Model,
    buf: &mut [u8],
) {
    let bytes = &model.bytes;
    let mut probes = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let s = i;
        let held = bytes[i].is_some();
        while i < bytes.len() && bytes[i].is_some() == held {
            i += 1;
        }
        if held {
            probes.extend((s..i).step_by(buf.len()));
        }
        probes.extend([s, s + 1, i - 1]);
    }
    probes.extend([bytes.len(), bytes.len() + 1]);
    for off in probes {
        let r = m.ppeek(f, side, off as u64, buf);
        match bytes.get(off).copied().flatten() {
            None => assert_eq!(r, Err(PeekError::NoData), "{side:?}: offset {off}"),
            Some(_) => {
                let n = r.unwrap_or_else(|e| panic!("{side:?}: offset {off}: {e:?}"));
                let run = bytes[off..].iter().take_while(|b| b.is_some()).count();
                assert_eq!(n, run.min(buf.len()), "{side:?}: run at {off}");
                for (k, b) in buf[..n].iter().enumerate() {
                    assert_eq!(Some(*b), bytes[off + k], "{side:?}: byte {}", off + k);
                }
            }
        }
    }
}
