//! `Monitor::read_ahead` is only a hint: the same frames processed with or without it give the
//! same events, streams and counters, also when the frames read ahead are not the ones then
//! processed (skipped, reordered, other frames) or when their bytes change in between (a
//! buffer reused for another frame of the same length: same slice, other key or other header).

mod common;

use common::*;
use monitor::{Checksums, Config, Event, Hook, Monitor, RxCheck, RxMeta, READ_AHEAD};

/// A capture: interleaved IPv4, IPv6 and VLAN connections with data, out-of-order and
/// duplicate segments, closes and a reset; frames with a bad TCP or IPv4 checksum; IPv4
/// fragments; non-TCP, truncated and garbage frames.
fn capture() -> Vec<Vec<u8>> {
    let mut conns = vec![Conn::v4(1000, 9000), Conn::v6(u32::MAX - 5, 77)];
    let mut c = Conn::v4(5, 6);
    c.c.1 = 40001;
    c.vlans = vec![(0x8100, 7)];
    conns.push(c);
    let mut c = Conn::v4(300, 400);
    c.c.1 = 40002;
    conns.push(c);
    let mut per: Vec<Vec<Vec<u8>>> = Vec::new();
    for (k, c) in conns.iter().enumerate() {
        let mut v = vec![c.syn(), c.synack(), c.ack()];
        let body: Vec<u8> = (0..3000u32).map(|i| (i * 7 + k as u32) as u8).collect();
        let mut off = 0u64;
        for (i, chunk) in body.chunks(700).enumerate() {
            let f = c.cdata(off, chunk);
            if i == 1 {
                // Out of order, then a duplicate.
                v.insert(v.len() - 1, f.clone());
            }
            v.push(f);
            off += chunk.len() as u64;
        }
        v.push(c.sack(0, off));
        v.push(c.sdata(0, b"response bytes"));
        if k == 3 {
            v.push(c.crst(off));
        } else {
            v.extend(c.close(off, 14));
        }
        per.push(v);
    }
    // Round-robin interleave.
    let mut out = Vec::new();
    let mut i = 0;
    while per.iter().any(|v| i < v.len()) {
        for v in &per {
            if let Some(f) = v.get(i) {
                out.push(f.clone());
            }
        }
        i += 1;
    }
    // A bad TCP checksum (payload byte) and a bad IPv4 header checksum (TTL), same flow.
    let c = &conns[0];
    let mut bad = c.cdata(3000, b"corrupt");
    let n = bad.len();
    bad[n - 1] ^= 0x55;
    out.insert(20, bad);
    let mut bad = c.cdata(3000, b"corrupt");
    bad[14 + 8] ^= 1;
    out.insert(25, bad);
    // IPv4 fragments of a data segment.
    let mut c2 = Conn::v4(50, 60);
    c2.c.1 = 40100;
    out.insert(30, c2.syn());
    let p = Pkt {
        src: c2.c.0,
        dst: c2.s.0,
        sport: c2.c.1,
        dport: c2.s.1,
        seq: 51,
        ack: 0,
        flags: PSH,
        payload: vec![9; 200],
        vlans: vec![],
        wscale: None,
    };
    for (j, f) in ipv4_fragments(&p, 64, 7).into_iter().enumerate() {
        out.insert(31 + 2 * j, f);
    }
    // Not TCP, truncated, garbage.
    let mut udp = c.cdata(0, b"x");
    udp[14 + 9] = 17;
    out.insert(40, udp);
    out.insert(41, c.cdata(0, b"x")[..30].to_vec());
    out.insert(42, vec![0xff; 60]);
    out
}

/// Everything observable of a run.
#[derive(Debug, PartialEq)]
struct Seen {
    log: Vec<Rec>,
    streams: Vec<((u32, monitor::Side), Vec<u8>)>,
    at_end: Vec<(monitor::FlowHandle, Vec<u8>, Vec<u8>)>,
    errors: Vec<(Hook, monitor::ErrorReason)>,
    counters: monitor::Counters,
    verdicts: Vec<String>,
}

fn config(mode: Checksums, inline: bool) -> Config {
    Config {
        checksums: mode,
        inline,
        pickup: true,
        ..cfg()
    }
}

/// How a batch is fed.
#[derive(Clone, Copy, Debug)]
enum Feed {
    /// `frame_with` only.
    Plain,
    /// `read_ahead` of the batch, then `frame_with` of each.
    Ahead,
    /// `read_ahead` of the batch before `begin_batch`.
    AheadFirst,
    /// `read_ahead` of the batch in reverse order.
    Reversed,
    /// `read_ahead` of the batch with every third frame left out and other frames (copies of
    /// the batch's, at other addresses) in between.
    Mixed,
    /// `read_ahead` of the batch, then every other frame's bytes replaced (same buffer, same
    /// length) before it is processed: by another frame of that length if there is one (other
    /// key or other header), else with one header byte changed.
    Mutated,
}

fn run(frames: &[Vec<u8>], mode: Checksums, inline: bool, feed: Feed, rx: RxMeta) -> Seen {
    let mut st = storage();
    let mut rec = Recorder::new(&all_any());
    rec.peek_all = true;
    rec.end_read = true;
    let mut m = Monitor::new(rec, config(mode, inline), st.storage()).unwrap();
    let mut verdicts = Vec::new();
    // The frames as processed (after any mutation), in batches of at most READ_AHEAD.
    for (b, batch) in frames.chunks(READ_AHEAD - 3).enumerate() {
        let t = 1_000 * b as u64;
        let mut bufs: Vec<Vec<u8>> = batch.to_vec();
        if let Feed::AheadFirst = feed {
            m.read_ahead(bufs.iter().map(|f| f.as_slice()));
        }
        m.begin_batch(t);
        match feed {
            Feed::Plain | Feed::AheadFirst => {}
            Feed::Ahead => m.read_ahead(bufs.iter().map(|f| f.as_slice())),
            Feed::Reversed => m.read_ahead(bufs.iter().rev().map(|f| f.as_slice())),
            Feed::Mixed => {
                let copies: Vec<Vec<u8>> = bufs.clone();
                let mut list: Vec<&[u8]> = Vec::new();
                for (i, f) in bufs.iter().enumerate() {
                    if i % 3 != 1 {
                        list.push(f);
                    }
                    if i % 4 == 0 {
                        list.push(&copies[(i + 5) % copies.len()]);
                    }
                }
                m.read_ahead(list);
            }
            Feed::Mutated => {
                m.read_ahead(bufs.iter().map(|f| f.as_slice()));
                for i in (0..bufs.len()).step_by(2) {
                    let len = bufs[i].len();
                    let other = frames
                        .iter()
                        .find(|g| g.len() == len && **g != bufs[i])
                        .cloned();
                    match other {
                        Some(g) => bufs[i].copy_from_slice(&g),
                        None if len > 20 => bufs[i][14 + 5] ^= 0x21,
                        None => {}
                    }
                }
            }
        }
        for f in &bufs {
            let v = m.frame_with(f, t, rx);
            verdicts.push(format!("{v:?}"));
            m.drain_injected(|_| {});
        }
        m.end_batch();
    }
    m.close_all();
    let counters = m.counters().clone();
    let rec = m.middlebox();
    let mut streams: Vec<_> = rec.streams.clone().into_iter().collect();
    streams.sort_by_key(|(k, _)| (k.0, k.1 == monitor::Side::Server));
    Seen {
        log: rec.log.clone(),
        streams,
        at_end: rec.at_end.clone(),
        errors: rec.errors.clone(),
        counters,
        verdicts,
    }
}

/// The frames a `Mutated` run processes (what it must equal without read-ahead).
fn mutated(frames: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for batch in frames.chunks(READ_AHEAD - 3) {
        let mut bufs: Vec<Vec<u8>> = batch.to_vec();
        for i in (0..bufs.len()).step_by(2) {
            let len = bufs[i].len();
            let other = frames
                .iter()
                .find(|g| g.len() == len && **g != bufs[i])
                .cloned();
            match other {
                Some(g) => bufs[i].copy_from_slice(&g),
                None if len > 20 => bufs[i][14 + 5] ^= 0x21,
                None => {}
            }
        }
        out.extend(bufs);
    }
    out
}

const MODES: [Checksums; 3] = [Checksums::Verify, Checksums::Ignore, Checksums::Auto];

#[test]
fn read_ahead_changes_nothing() {
    let frames = capture();
    let good = RxMeta {
        ipv4: RxCheck::Good,
        l4: RxCheck::Good,
    };
    for mode in MODES {
        for inline in [false, true] {
            for rx in [RxMeta::NONE, good] {
                let want = run(&frames, mode, inline, Feed::Plain, rx);
                // The capture exercises what it should.
                assert!(want.log.iter().any(|r| r.ev == Event::CONN_END));
                assert!(want.counters.tcp_packets > 50, "{:?}", want.counters);
                if mode == Checksums::Verify && rx == RxMeta::NONE {
                    assert_eq!(
                        want.counters
                            .drop_count(monitor::DropReason::BadTcpChecksum),
                        1
                    );
                    assert_eq!(
                        want.counters
                            .drop_count(monitor::DropReason::BadIpv4Checksum),
                        1
                    );
                }
                for feed in [Feed::Ahead, Feed::AheadFirst, Feed::Reversed, Feed::Mixed] {
                    let got = run(&frames, mode, inline, feed, rx);
                    assert_eq!(got, want, "{mode:?} inline {inline} {feed:?} {rx:?}");
                }
                let changed = mutated(&frames);
                assert_ne!(changed, frames);
                let want = run(&changed, mode, inline, Feed::Plain, rx);
                let got = run(&frames, mode, inline, Feed::Mutated, rx);
                assert_eq!(got, want, "{mode:?} inline {inline} mutated {rx:?}");
            }
        }
    }
}

#[test]
fn on_batch_is_read_ahead_then_frames() {
    // `on_batch` over more than READ_AHEAD frames (groups of 32 read ahead) gives what the
    // frames give one by one in one batch.
    let frames = capture();
    assert!(frames.len() > 2 * READ_AHEAD);
    for mode in MODES {
        let mut st = storage();
        let mut rec = Recorder::new(&all_any());
        rec.peek_all = true;
        let mut a = Monitor::new(rec, config(mode, false), st.storage()).unwrap();
        a.on_batch(frames.iter().map(|f| (f.as_slice(), 5)));
        let mut st2 = storage();
        let mut rec = Recorder::new(&all_any());
        rec.peek_all = true;
        let mut b = Monitor::new(rec, config(mode, false), st2.storage()).unwrap();
        b.begin_batch(5);
        for f in &frames {
            let _ = b.frame(f, 5);
        }
        b.end_batch();
        assert_eq!(a.counters(), b.counters(), "{mode:?}");
        assert_eq!(a.middlebox().log, b.middlebox().log, "{mode:?}");
        assert_eq!(a.middlebox().streams, b.middlebox().streams, "{mode:?}");
        assert_eq!(a.counters().frames, frames.len() as u64);
    }
}
