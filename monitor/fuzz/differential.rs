//! Differential driver: the monitor and a reference model (a `Vec<Option<u8>>` per side, as in
//! `monitor/tests/props.rs`) get the same random segment streams of one TCP connection, and
//! every byte is compared: the in-order stream read with `peek`, and every byte held through
//! `ppeek`.
//!
//! Shared by the `differential` fuzz target and the stable replay test
//! `monitor/tests/fuzz_differential.rs` (both include this file by path).
//!
//! Input: byte 0 = flags (bit 0 last-wins overlaps, bit 1 IPv6, bit 2 peek after every batch
//! instead of at the end only), bytes 1..9 = client and server ISNs (little-endian u32s, so
//! sequence wrap is reached), then 6-byte records `[op][start lo][start hi][len lo][len hi]
//! [fill]`: `op` bit 0 = from the server, bit 1 = ends the batch, bit 2 = the bytes are all
//! `fill` (a conflicting overlap) instead of the side's pattern; `start` is the stream offset
//! (mod 12,000), `len` is 1 + (len mod 1,460).
//!
//! The model keeps at most 3 out-of-order islands per side: a segment that would open a fourth
//! is given to neither (the monitor's island limit is at least 3, so the comparison is exact
//! whatever the limit is).

use monitor::{
    Config, Ctx, Event, Hook, HostStorage, Middlebox, Monitor, Overlap, PeekError, Side,
};
use std::net::IpAddr;

const ISLANDS: usize = 3;

/// The reference model of one side's buffer.
struct Model {
    bytes: Vec<Option<u8>>,
    last_wins: bool,
}

impl Model {
    fn cont_end(&self) -> usize {
        self.bytes
            .iter()
            .position(|b| b.is_none())
            .unwrap_or(self.bytes.len())
    }

    fn islands(&self) -> Vec<(usize, usize)> {
        let mut v = Vec::new();
        let mut i = self.cont_end();
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

    /// Would this segment open an island past the limit?
    fn refuses(&self, start: usize, len: usize) -> bool {
        let end = start + len;
        let ce = self.cont_end();
        let s = start.max(ce);
        if s >= end || s == ce {
            return false;
        }
        let isl = self.islands();
        let touches = isl.iter().any(|&(a, b)| s <= b && a <= end);
        !touches && isl.len() >= ISLANDS
    }

    fn apply(&mut self, start: usize, data: &[u8]) {
        let end = start + data.len();
        if self.bytes.len() < end {
            self.bytes.resize(end, None);
        }
        let s = start.max(self.cont_end());
        for i in s..end {
            if self.bytes[i].is_none() || self.last_wins {
                self.bytes[i] = Some(data[i - start]);
            }
        }
    }
}

/// Reads every side's in-order bytes on `CONN_NEW_DATA`.
#[derive(Default)]
struct Reader {
    streams: [Vec<u8>; 2],
    peek_errors: u32,
}

impl Middlebox for Reader {
    type Flow = ();
    fn init(&mut self, reg: &mut monitor::Registry) {
        reg.subscribe(Event::CONN_NEW_DATA, Hook::Rcv);
    }
    fn on_event(&mut self, cx: &mut Ctx<'_, '_, ()>, _ev: Event, _hook: Hook, side: Side) {
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

/// Runs one input; panics when the monitor and the model disagree on any byte.
pub fn run(data: &[u8]) {
    if data.len() < 9 {
        return;
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
        ..Config::DEFAULT
    };
    let mut st: HostStorage<()> = HostStorage::new(4, 16, 2);
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
    let mut models = [
        Model {
            bytes: vec![],
            last_wins,
        },
        Model {
            bytes: vec![],
            last_wins,
        },
    ];
    let mut batch: Vec<Vec<u8>> = Vec::new();
    let mut t = 2u64;
    for r in data[9..].chunks_exact(6) {
        let from_server = r[0] & 1 != 0;
        let start = usize::from(u16::from_le_bytes([r[1], r[2]])) % 12_000;
        let len = 1 + usize::from(u16::from_le_bytes([r[3], r[4]])) % 1460;
        let side = if from_server {
            Side::Client
        } else {
            Side::Server
        };
        let model = &mut models[side.index()];
        if !model.refuses(start, len) {
            let bytes: Vec<u8> = (start..start + len)
                .map(|i| {
                    if r[0] & 4 != 0 {
                        r[5]
                    } else {
                        pattern(i, from_server as u8)
                    }
                })
                .collect();
            model.apply(start, &bytes);
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
}

/// Compares the streams read and the buffer ends; with `every_offset`, every byte held too
/// (through `ppeek`).
fn compare(m: &Monitor<'_, Reader>, models: &[Model; 2], every_offset: bool) {
    let f = m.flows().next().expect("the connection is live");
    let mut buf = vec![0u8; 1600];
    for side in Side::BOTH {
        let model = &models[side.index()];
        let ce = model.cont_end();
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
        if every_offset {
            check_offsets(m, f, side, model, &mut buf);
        }
    }
    assert_eq!(m.middlebox().peek_errors, 0);
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
