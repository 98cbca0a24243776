//! SYN flood against a full flow table (issue 13 item 7), at the scale.
//!
//! `cargo run --release -p monitor --features std --example flood -- [SYNS] [SLOTS] [CONNS]`
//!
//! Opens CONNS connections (default 1000), then sends SYNS SYNs from distinct tuples (default
//! 1 M) into a table of SLOTS slots (default 65 536) with one data segment each way of an
//! established connection after every 100 SYNs, then closes the connections; once with 1 µs
//! between frames and once with every frame at the same timestamp. Prints the time per frame
//! and whether every established connection came out exact (bytes peeked = bytes sent).

use std::time::Instant;

use monitor::{Config, Ctx, Event, Hook, HostStorage, Middlebox, Monitor, Registry, Side};

#[allow(clippy::too_many_arguments)]
fn frame(
    src: [u8; 4],
    sp: u16,
    dst: [u8; 4],
    dp: u16,
    seq: u32,
    ack: u32,
    flags: u8,
    len: usize,
) -> Vec<u8> {
    let mut out = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 8, 0, 0x45, 0];
    out.extend_from_slice(&((40 + len) as u16).to_be_bytes());
    out.extend_from_slice(&[0, 0, 0x40, 0, 64, 6, 0, 0]);
    out.extend_from_slice(&src);
    out.extend_from_slice(&dst);
    out.extend_from_slice(&sp.to_be_bytes());
    out.extend_from_slice(&dp.to_be_bytes());
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(&ack.to_be_bytes());
    out.extend_from_slice(&[0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    out.extend((0..len).map(|i| i as u8));
    out
}

const SYN: u8 = 2;
const ACK: u8 = 16;
const FIN: u8 = 1;
const SERVER: [u8; 4] = [192, 168, 1, 1];

fn client(j: usize) -> [u8; 4] {
    [10, 9, (j >> 8) as u8, j as u8]
}

#[derive(Default)]
struct Count {
    bytes: u64,
}

impl Middlebox for Count {
    type Flow = ();
    fn init(&mut self, reg: &mut Registry) {
        reg.subscribe(Event::CONN_NEW_DATA, Hook::Rcv);
    }
    fn on_event(&mut self, cx: &mut Ctx<'_, '_, ()>, _ev: Event, _h: Hook, side: Side) {
        let Some(f) = cx.flow() else { return };
        let mut buf = [0u8; 2048];
        while let Ok(n) = cx.peek(f, side, &mut buf) {
            if n == 0 {
                break;
            }
            self.bytes += n as u64;
        }
    }
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let syns = args.first().copied().unwrap_or(1_000_000);
    let slots = args.get(1).copied().unwrap_or(65_536);
    let conns = args.get(2).copied().unwrap_or(1000).min(65_000);
    let (c_isn, s_isn) = (1000u32, 5000u32);
    let mut frames = Vec::new();
    for j in 0..conns {
        let c = client(j);
        frames.push(frame(c, 40000, SERVER, 80, c_isn, 0, SYN, 0));
        frames.push(frame(SERVER, 80, c, 40000, s_isn, c_isn + 1, SYN | ACK, 0));
        frames.push(frame(c, 40000, SERVER, 80, c_isn + 1, s_isn + 1, ACK, 0));
    }
    let (mut sent, mut c_off, mut s_off) = (0usize, vec![0u32; conns], vec![0u32; conns]);
    for i in 0..syns {
        let src = [172, 16 + (i >> 16) as u8, (i >> 8) as u8, i as u8];
        frames.push(frame(
            src,
            1024 + (i % 50_000) as u16,
            SERVER,
            80,
            i as u32,
            0,
            SYN,
            0,
        ));
        if i % 100 == 99 && conns > 0 {
            let j = sent % conns;
            let c = client(j);
            let (co, so) = (c_off[j], s_off[j]);
            frames.push(frame(
                c,
                40000,
                SERVER,
                80,
                c_isn + 1 + co,
                s_isn + 1 + so,
                ACK,
                200,
            ));
            frames.push(frame(
                SERVER,
                80,
                c,
                40000,
                s_isn + 1 + so,
                c_isn + 1 + co + 200,
                ACK,
                300,
            ));
            c_off[j] += 200;
            s_off[j] += 300;
            sent += 1;
        }
    }
    for j in 0..conns {
        let c = client(j);
        let (co, so) = (c_off[j], s_off[j]);
        frames.push(frame(
            c,
            40000,
            SERVER,
            80,
            c_isn + 1 + co,
            s_isn + 1 + so,
            FIN | ACK,
            0,
        ));
        frames.push(frame(
            SERVER,
            80,
            c,
            40000,
            s_isn + 1 + so,
            c_isn + 2 + co,
            FIN | ACK,
            0,
        ));
        frames.push(frame(
            c,
            40000,
            SERVER,
            80,
            c_isn + 2 + co,
            s_isn + 2 + so,
            ACK,
            0,
        ));
    }
    let want: u64 = c_off.iter().chain(&s_off).map(|&n| n as u64).sum();
    println!(
        "{} frames: {conns} connections, {syns} flood SYNs, {slots} flow slots, {sent} data exchanges",
        frames.len()
    );
    for (name, step) in [("1 us apart", 1u64), ("equal timestamps", 0)] {
        let mut st: HostStorage<()> = HostStorage::new(slots, conns * 2 + 64, 4);
        let cfg = Config {
            hash_key: Config::random_hash_key(),
            ..Config::DEFAULT
        };
        let mut m = Monitor::new(Count::default(), cfg, st.storage()).unwrap();
        let t0 = Instant::now();
        let mut ts = 1_000_000u64;
        for b in frames.chunks(32) {
            m.on_batch(b.iter().map(|f| {
                ts += step;
                (&f[..], ts)
            }));
        }
        let el = t0.elapsed();
        let c = m.counters();
        println!(
            "{name}: {:.1} ns/frame, {:.2} s; evicted {}, closed {}; peeked {} of {} bytes: {}",
            el.as_nanos() as f64 / frames.len() as f64,
            el.as_secs_f64(),
            c.flows_evicted,
            c.flows_closed,
            m.middlebox().bytes,
            want,
            if m.middlebox().bytes == want && c.flows_closed == conns as u64 {
                "exact"
            } else {
                "NOT exact"
            }
        );
    }
}
