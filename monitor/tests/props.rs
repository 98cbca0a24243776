//! Property tests: random segment orders, overlaps with conflicting bytes, duplicates and
//! losses, compared byte for byte with a simple reference model (a `Vec<Option<u8>>` per side).
#![allow(clippy::needless_range_loop)]

mod common;

use std::collections::HashSet;

use common::*;
use monitor::{Config, Event, Hook, Monitor, Overlap, PeekError, Side, MAX_ISLANDS};
use proptest::prelude::*;

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
            if !touches && isl.len() >= MAX_ISLANDS {
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
        let mut mc = Model { bytes: vec![], last_wins: last };
        let mut ms = Model { bytes: vec![], last_wins: last };
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
        let cfg = Config { side_capacity: 2 * monitor::CHUNK_SIZE as u32, ..cfg() };
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
