//! Property tests: random segment orders, overlaps with conflicting bytes, duplicates and
//! losses, compared byte for byte with a simple reference model (a `Vec<Option<u8>>` per side).
#![allow(clippy::needless_range_loop)]

mod common;

use std::collections::HashSet;

use common::*;
use monitor::{Config, Event, Frag, Hook, Monitor, Overlap, PeekError, Side};
use proptest::prelude::*;

/// The reference model of one side's buffer.
struct Model {
    bytes: Vec<Option<u8>>,
    last_wins: bool,
    /// `Config::max_islands` of the monitor under test.
    max_islands: usize,
}

impl Model {
    fn cont_end(&self) -> usize {
        self.bytes
            .iter()
            .position(|b| b.is_none())
            .unwrap_or(self.bytes.len())
    }
    /// Islands beyond the in-order end, as [start, end).
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
    fn apply(&mut self, start: usize, data: &[u8]) {
        let end = start + data.len();
        if self.bytes.len() < end {
            self.bytes.resize(end, None);
        }
        let ce = self.cont_end();
        let s = start.max(ce);
        if s >= end {
            return;
        }
        if s > ce {
            let isl = self.islands();
            let touches = isl.iter().any(|&(a, b)| s <= b && a <= end);
            if !touches && isl.len() >= self.max_islands {
                return; // the monitor drops it (and raises ERROR)
            }
        }
        for i in s..end {
            let b = data[i - start];
            if self.bytes[i].is_none() || self.last_wins {
                self.bytes[i] = Some(b);
            }
        }
    }
}

#[derive(Clone, Debug)]
struct Seg {
    start: usize,
    len: usize,
    conflict: Option<u8>,
}

fn segs() -> impl Strategy<Value = Vec<Seg>> {
    prop::collection::vec(
        (
            0usize..3000,
            1usize..600,
            prop::option::weighted(0.3, any::<u8>()),
        )
            .prop_map(|(start, len, conflict)| Seg {
                start,
                len,
                conflict,
            }),
        1..40,
    )
}

fn content(i: usize, seed: u8) -> u8 {
    (i as u8).wrapping_mul(31).wrapping_add(seed)
}

fn check_side(m: &Monitor<'_, Recorder>, f: monitor::FlowHandle, side: Side, model: &Model) {
    let ce = model.cont_end();
    let bi = m.buf_info(f, side).unwrap();
    assert_eq!(bi.in_order_end, ce as u64, "in-order end");
    let last = model
        .bytes
        .iter()
        .rposition(|b| b.is_some())
        .map_or(0, |i| i + 1);
    assert_eq!(bi.last_end, last as u64, "last end");
    let mut buf = vec![0u8; 700];
    for off in 0..model.bytes.len() + 5 {
        let r = m.ppeek(f, side, off as u64, &mut buf);
        match model.bytes.get(off).copied().flatten() {
            None => assert_eq!(r, Err(PeekError::NoData), "offset {off}"),
            Some(_) => {
                let n = r.unwrap_or_else(|e| panic!("offset {off}: {e:?}"));
                let run = model.bytes[off..]
                    .iter()
                    .take_while(|b| b.is_some())
                    .count();
                assert_eq!(n, run.min(buf.len()), "run at {off}");
                for k in 0..n {
                    assert_eq!(Some(buf[k]), model.bytes[off + k], "byte {}", off + k);
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, .. ProptestConfig::default() })]

    #[test]
    fn reassembly_matches_model(
        cs in segs(),
        ss in segs(),
        isn_c in prop_oneof![Just(u32::MAX - 1000), any::<u32>()],
        isn_s in prop_oneof![Just(u32::MAX - 10), any::<u32>()],
        last in any::<bool>(),
        batch in 1usize..6,
        seed in any::<u8>(),
    ) {
        let c = Conn::v4(isn_c, isn_s);
        let mut st = storage();
        let mut rec = Recorder::new(&[(Event::CONN_NEW_DATA, Hook::Rcv)]);
        rec.peek_all = true;
        let cfg = Config { overlap: if last { Overlap::Last } else { Overlap::First }, ..cfg() };
        let mut m = Monitor::new(rec, cfg, st.storage()).unwrap();
        feed(&mut m, &[c.syn(), c.synack(), c.ack()], 0);
        let max_islands = cfg.max_islands as usize;
        let mut mc = Model { bytes: vec![], last_wins: last, max_islands };
        let mut ms = Model { bytes: vec![], last_wins: last, max_islands };
        // Interleave both directions.
        let mut frames = Vec::new();
        for (i, s) in cs.iter().enumerate() {
            let data: Vec<u8> = (s.start..s.start + s.len).map(|k| s.conflict.unwrap_or(content(k, seed))).collect();
            frames.push((true, s.start, data));
            if let Some(t) = ss.get(i) {
                let data: Vec<u8> = (t.start..t.start + t.len).map(|k| t.conflict.unwrap_or(content(k, seed ^ 0x5a))).collect();
                frames.push((false, t.start, data));
            }
        }
        for chunk in frames.chunks(batch) {
            let fr: Vec<Vec<u8>> = chunk.iter().map(|(cl, off, d)| if *cl { c.cdata(*off as u64, d) } else { c.sdata(*off as u64, d) }).collect();
            for (cl, off, d) in chunk {
                if *cl { ms.apply(*off, d) } else { mc.apply(*off, d) }
            }
            feed_batch(&mut m, &fr, 1000);
        }
        let f = m.flows().next().unwrap();
        check_side(&m, f, Side::Server, &ms);
        check_side(&m, f, Side::Client, &mc);
        // Everything peek returned equals the model's in-order prefix.
        let rec = m.middlebox();
        let got_s = rec.streams.get(&(f.slot(), Side::Server)).cloned().unwrap_or_default();
        let want_s: Vec<u8> = ms.bytes[..ms.cont_end()].iter().map(|b| b.unwrap()).collect();
        prop_assert_eq!(got_s, want_s);
        let got_c = rec.streams.get(&(f.slot(), Side::Client)).cloned().unwrap_or_default();
        let want_c: Vec<u8> = mc.bytes[..mc.cont_end()].iter().map(|b| b.unwrap()).collect();
        prop_assert_eq!(got_c, want_c);
        prop_assert!(rec.peek_errors.is_empty());
    }

    /// A small ring: every byte `peek` returns is right, and `Overwritten` reports exactly the
    /// bytes skipped.
    #[test]
    fn small_ring_peek_matches_model(sizes in prop::collection::vec(1usize..3000, 1..30), read_every in 1usize..5) {
        let c = Conn::v4(7, 8);
        let mut st = storage();
        // Small, but a segment of up to 3000 bytes always fits once the ring moves on by
        // whole chunks: at least two chunks and 8 KiB.
        let cfg = Config { side_capacity: (2 * monitor::CHUNK_SIZE).max(8192) as u32, ..cfg() };
        let mut m = Monitor::new(Recorder::default(), cfg, st.storage()).unwrap();
        feed(&mut m, &[c.syn(), c.synack(), c.ack()], 0);
        let f = m.flows().next().unwrap();
        let mut off = 0usize;
        let mut cursor = 0u64;
        let mut buf = vec![0u8; 1500];
        for (i, &n) in sizes.iter().enumerate() {
            let d: Vec<u8> = (off..off + n).map(|k| content(k, 3)).collect();
            feed(&mut m, &[c.cdata(off as u64, &d)], 10 + i as u64);
            off += n;
            if i % read_every == 0 {
                loop {
                    match m.peek(f, Side::Server, &mut buf) {
                        Ok(0) => break,
                        Ok(k) => {
                            for j in 0..k { prop_assert_eq!(buf[j], content(cursor as usize + j, 3)); }
                            cursor += k as u64;
                        }
                        Err(PeekError::Overwritten { oldest, missed }) => {
                            prop_assert_eq!(oldest - missed, cursor);
                            cursor = oldest;
                        }
                        Err(e) => prop_assert!(false, "{e:?}"),
                    }
                }
            }
        }
        prop_assert_eq!(m.buf_info(f, Side::Server).unwrap().in_order_end, off as u64);
    }

    /// The flow table against a set: SYNs create, RSTs end, lookups find exactly the live ones.
    #[test]
    fn flow_table_matches_set(ops in prop::collection::vec((0u8..40, any::<bool>()), 1..300)) {
        let mut st = monitor::HostStorage::<PerFlow>::new(64, 8, 1);
        let mut m = Monitor::new(Recorder::default(), cfg(), st.storage()).unwrap();
        let mut live = HashSet::new();
        for (i, (k, open)) in ops.iter().enumerate() {
            let c = Conn { c: (format!("10.1.0.{k}").parse().unwrap(), 1000 + *k as u16), ..Conn::v4(1, 2) };
            if *open { feed(&mut m, &[c.syn()], i as u64); live.insert(*k); }
            else { feed(&mut m, &[c.crst(0)], i as u64); live.remove(k); }
            prop_assert_eq!(m.flow_count(), live.len());
        }
        let found: HashSet<u8> = m.flows().map(|f| match m.endpoints(f).unwrap().client.0 {
            std::net::IpAddr::V4(a) => a.octets()[3],
            _ => 255,
        }).collect();
        prop_assert_eq!(found, live);
    }
}

proptest! {
    // Each case feeds 3000 segments against an O(stream) model: few cases.
    #![proptest_config(ProptestConfig { cases: 16, .. ProptestConfig::default() })]

    /// 1000 holes open at once (every other segment of 2001 missing), then filled in any order,
    /// some filling segments overlapping their neighbours with different bytes (first copy
    /// wins): after every segment the monitor's fragments equal the model's, and the stream
    /// comes out exact.
    #[test]
    fn a_thousand_holes_filled_in_any_order(
        sizes in prop::collection::vec(1usize..24, 2001),
        order in Just((0..1000usize).collect::<Vec<_>>()).prop_shuffle(),
        overlap_every in 2usize..9,
        seed in any::<u8>(),
    ) {
        let c = Conn::v4(3_000_000_000, 9);
        let mut st = monitor::HostStorage::<PerFlow>::new(4, 64, 1);
        let cfg = Config { side_capacity: 1 << 20, max_islands: 1000, ..cfg() };
        let mut m = Monitor::new(Recorder::default(), cfg, st.storage()).unwrap();
        feed(&mut m, &[c.syn(), c.synack(), c.ack()], 0);
        let f = m.flows().next().unwrap();
        let starts: Vec<usize> = sizes.iter().scan(0, |o, &n| { let s = *o; *o += n; Some(s) }).collect();
        let total: usize = sizes.iter().sum();
        let mut model = Model { bytes: vec![], last_wins: false, max_islands: 1000 };
        let send = |m: &mut Monitor<'_, Recorder>, model: &mut Model, start: usize, end: usize, salt: u8| {
            let d: Vec<u8> = (start..end).map(|k| content(k, seed ^ salt)).collect();
            model.apply(start, &d);
            feed(m, &[c.cdata(start as u64, &d)], 1000);
        };
        let check = |m: &Monitor<'_, Recorder>, model: &Model| {
            let mut frags = vec![Frag { offset: 0, len: 0 }; 1100];
            let n = m.frag_info(f, Side::Server, &mut frags).unwrap();
            let mut want: Vec<(u64, u64)> = Vec::new();
            if model.cont_end() > 0 { want.push((0, model.cont_end() as u64)); }
            want.extend(model.islands().iter().map(|&(a, b)| (a as u64, (b - a) as u64)));
            let got: Vec<(u64, u64)> = frags[..n].iter().map(|f| (f.offset, f.len)).collect();
            assert_eq!(got, want);
        };
        for k in (1..2001).step_by(2) {
            send(&mut m, &mut model, starts[k], starts[k] + sizes[k], 0);
        }
        send(&mut m, &mut model, starts[2000], total, 0);
        prop_assert_eq!(model.islands().len(), 1000);
        check(&m, &model);
        for (i, &h) in order.iter().enumerate() {
            let k = 2 * h;
            // Some fills overlap a neighbour's bytes (a different copy: the first one stays).
            let (s, e) = if i % overlap_every == 0 {
                (starts[k].saturating_sub(2), (starts[k] + sizes[k] + 2).min(total))
            } else {
                (starts[k], starts[k] + sizes[k])
            };
            send(&mut m, &mut model, s, e, 0x77);
            if i % 50 == 0 || i > 990 { check(&m, &model); }
        }
        check(&m, &model);
        prop_assert_eq!(model.cont_end(), total);
        let mut out = vec![0u8; total];
        let mut off = 0;
        while off < total {
            off += m.ppeek(f, Side::Server, off as u64, &mut out[off..]).unwrap();
        }
        let want: Vec<u8> = model.bytes.iter().map(|b| b.unwrap()).collect();
        prop_assert_eq!(out, want);
        let bi = m.buf_info(f, Side::Server).unwrap();
        prop_assert_eq!((bi.in_order_end, bi.last_end, bi.lost), (total as u64, total as u64, 0));
        // The island list went back to the pool: only the stream's data chunks are held.
        prop_assert_eq!(m.free_chunks(), 64 - total.div_ceil(monitor::CHUNK_SIZE));
    }

}
