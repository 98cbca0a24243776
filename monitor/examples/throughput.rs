//! Quick in-memory throughput check of the monitor against a smoltcp parse-only floor.
//!
//! `cargo run --release -p monitor --features std --example throughput -- [FLOWS] [CONCURRENT]`
//!
//! Generates a bench-method-like mix in memory (handshake, 4 exchanges of a 80–600 B request and
//! 1–4 response segments of up to 1448 B with an ACK every 2 segments, FIN/FIN/ACK; flows
//! interleaved at random among CONCURRENT live ones), then times (a) the monitor with a consumer
//! that reads every byte of both directions through `peek`, in batches of 32, and (b) a parse
//! floor that only walks Ethernet/IPv4/TCP with smoltcp's checked views. This is a developer
//! check, not the project benchmark (`cargo ferrule bench`).

use std::time::Instant;

use monitor::{
    Config, Ctx, Event, Hook, HostStorage, Middlebox, Monitor, Registry, Side, CHUNK_SIZE,
};
use smoltcp::wire::{EthernetFrame, Ipv4Packet, TcpPacket};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

#[allow(clippy::too_many_arguments)]
fn frame(
    out: &mut Vec<u8>,
    src: [u8; 4],
    dst: [u8; 4],
    sp: u16,
    dp: u16,
    seq: u32,
    ack: u32,
    flags: u8,
    len: usize,
    fill: u8,
) {
    out.extend_from_slice(&[2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 8, 0]);
    let tot = (40 + len) as u16;
    out.extend_from_slice(&[0x45, 0]);
    out.extend_from_slice(&tot.to_be_bytes());
    out.extend_from_slice(&[0, 0, 0x40, 0, 64, 6, 0, 0]);
    out.extend_from_slice(&src);
    out.extend_from_slice(&dst);
    out.extend_from_slice(&sp.to_be_bytes());
    out.extend_from_slice(&dp.to_be_bytes());
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(&ack.to_be_bytes());
    out.extend_from_slice(&[0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    out.extend((0..len).map(|i| fill.wrapping_add((i % 251) as u8)));
}

struct FlowGen {
    c: [u8; 4],
    s: [u8; 4],
    cp: u16,
    script: Vec<(bool, u8, usize)>, // (from client, flags, payload len)
    at: usize,
    cseq: u32,
    sseq: u32,
}

fn generate(flows: usize, conc: usize, seed: u64) -> (Vec<u8>, Vec<(usize, usize)>, u64) {
    let mut rng = Rng(seed | 1);
    let mut buf = Vec::new();
    let mut idx = Vec::new();
    let mut payload = 0u64;
    let mut live: Vec<FlowGen> = Vec::new();
    let mut made = 0usize;
    let new_flow = |i: usize, rng: &mut Rng| {
        let mut script = vec![(true, 2u8, 0usize), (false, 18, 0), (true, 16, 0)];
        for _ in 0..4 {
            script.push((true, 24, rng.range(80, 600) as usize));
            let segs = rng.range(1, 4);
            for k in 0..segs {
                let len = if k + 1 == segs {
                    rng.range(1, 1448)
                } else {
                    1448
                } as usize;
                script.push((false, 24, len));
                if k % 2 == 1 {
                    script.push((true, 16, 0));
                }
            }
            script.push((true, 16, 0));
        }
        script.extend([(true, 17, 0), (false, 17, 0), (true, 16, 0)]);
        FlowGen {
            c: [10, (i >> 16) as u8, (i >> 8) as u8, i as u8],
            s: [192, 168, (i % 200) as u8, 1],
            cp: 1024 + (i % 60000) as u16,
            script,
            at: 0,
            cseq: rng.next() as u32,
            sseq: rng.next() as u32,
        }
    };
    loop {
        while live.len() < conc && made < flows {
            live.push(new_flow(made, &mut rng));
            made += 1;
        }
        if live.is_empty() {
            break;
        }
        let k = rng.next() as usize % live.len();
        let f = &mut live[k];
        let (cl, flags, len) = f.script[f.at];
        f.at += 1;
        let start = buf.len();
        let fill = rng.next() as u8;
        if cl {
            frame(
                &mut buf, f.c, f.s, f.cp, 80, f.cseq, f.sseq, flags, len, fill,
            );
            f.cseq = f.cseq.wrapping_add(len as u32 + (flags & 3 != 0) as u32);
        } else {
            frame(
                &mut buf, f.s, f.c, 80, f.cp, f.sseq, f.cseq, flags, len, fill,
            );
            f.sseq = f.sseq.wrapping_add(len as u32 + (flags & 3 != 0) as u32);
        }
        payload += len as u64;
        idx.push((start, buf.len()));
        if f.at == f.script.len() {
            live.swap_remove(k);
        }
    }
    (buf, idx, payload)
}

struct PeekAll {
    bytes: u64,
    buf: Vec<u8>,
}
impl Middlebox for PeekAll {
    type Flow = ();
    fn init(&mut self, reg: &mut Registry) {
        // THROUGHPUT_MODE=nopeek: no consumer (bytes are still stored).
        if std::env::var("THROUGHPUT_MODE").as_deref() != Ok("nopeek") {
            reg.subscribe(Event::CONN_NEW_DATA, Hook::Rcv);
        }
    }
    fn on_event(&mut self, cx: &mut Ctx<'_, '_, ()>, _ev: Event, _h: Hook, side: Side) {
        let Some(f) = cx.flow() else { return };
        while let Ok(n) = cx.peek(f, side, &mut self.buf) {
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
    let flows = args.first().copied().unwrap_or(20_000);
    let conc = args.get(1).copied().unwrap_or(2_000);
    let (buf, idx, payload) = generate(flows, conc, 42);
    println!(
        "{} packets, {} frame bytes, {} payload bytes, {} flows, {} concurrent",
        idx.len(),
        buf.len(),
        payload,
        flows,
        conc
    );

    // Parse floor.
    let t = Instant::now();
    let mut acc = 0u64;
    for &(a, b) in &idx {
        let f = &buf[a..b];
        if let Ok(e) = EthernetFrame::new_checked(f) {
            if let Ok(ip) = Ipv4Packet::new_checked(e.payload()) {
                if let Ok(tcp) = TcpPacket::new_checked(ip.payload()) {
                    acc += tcp.payload().len() as u64 + tcp.src_port() as u64;
                }
            }
        }
    }
    let floor = t.elapsed().as_secs_f64();
    std::hint::black_box(acc);

    // Monitor with a consumer peeking every byte, 16 MiB per side, pool sized to the mix.
    let mut st: HostStorage<()> = HostStorage::new(2 * conc + 64, conc * 16 + 1024, 64);
    let cfg = Config {
        side_capacity: 16 << 20,
        ..Config::DEFAULT
    };
    for pass in 1..=2 {
        let mut m = Monitor::new(
            PeekAll {
                bytes: 0,
                buf: vec![0; 16384],
            },
            cfg,
            st.storage(),
        )
        .unwrap();
        let t = Instant::now();
        for (bi, batch) in idx.chunks(32).enumerate() {
            let ts = bi as u64 * 32;
            m.begin_batch(ts);
            for &(a, b) in batch {
                let _ = m.frame(&buf[a..b], ts);
            }
            m.end_batch();
        }
        m.close_all();
        let mon = t.elapsed().as_secs_f64();
        let n = idx.len() as f64;
        println!("parse floor: {:.1} ns/pkt", floor * 1e9 / n);
        println!(
        "pass {pass} (pool pages {}): monitor+peek: {:.1} ns/pkt, {:.2} Mpps, {:.2} Gbps, ratio to floor {:.2}",
        if pass == 1 { "cold" } else { "warm" },
        mon * 1e9 / n,
        n / mon / 1e6,
        buf.len() as f64 * 8.0 / mon / 1e9,
        mon / floor
    );
        let c = m.counters();
        println!(
        "peeked {} of {} payload bytes; flows created {} closed {}; dropped {} bytes; pool_exhausted {}; flow state {} B/flow; chunk {} B",
        m.middlebox().bytes,
        payload,
        c.flows_created,
        c.flows_closed,
        c.bytes_dropped,
        c.pool_exhausted,
        m.flow_state_bytes(),
        CHUNK_SIZE
    );
    }
}
