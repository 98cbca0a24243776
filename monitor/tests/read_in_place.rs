//! `read_in_place` against `peek` on the same streams (issue 10 item 2): the same bytes, the
//! same errors, the same cursor, through holes lost at the tap, sequence-number wrap, chunk
//! boundaries and ring overwrites.

mod common;

use common::*;
use monitor::{
    Config, Ctx, Event, FlowHandle, Hook, HostStorage, Middlebox, Monitor, PeekError, Registry,
    Side, CHUNK_SIZE,
};

/// Reads every new byte on `CONN_NEW_DATA` (only every `read_every`-th time: a small ring
/// then overwrites unread bytes), `max` bytes per call, by `peek` or in place, and logs
/// every call's outcome in order.
struct Reader {
    in_place: bool,
    max: usize,
    read_every: u32,
    calls: u32,
    log: Vec<Result<Vec<u8>, PeekError>>,
    /// (bytes, slices) of every in-place read.
    slices: Vec<(usize, usize)>,
}

impl Reader {
    fn new(in_place: bool, max: usize, read_every: u32) -> Self {
        Reader {
            in_place,
            max,
            read_every,
            calls: 0,
            log: Vec::new(),
            slices: Vec::new(),
        }
    }

    /// One read; false when there is nothing more to read now.
    fn read_one(&mut self, cx: &mut Ctx<'_, '_, ()>, f: FlowHandle, side: Side) -> bool {
        let mut out = Vec::new();
        let r = if self.in_place {
            let mut slices = 0;
            let r = cx.read_in_place(f, side, self.max, |b| {
                out.extend_from_slice(b);
                slices += 1;
            });
            if let Ok(n) = r {
                assert_eq!(n, out.len());
                self.slices.push((n, slices));
            }
            r
        } else {
            let mut buf = vec![0u8; self.max];
            let r = cx.peek(f, side, &mut buf);
            if let Ok(n) = r {
                out.extend_from_slice(&buf[..n]);
            }
            r
        };
        match r {
            Ok(0) => false,
            Ok(_) => {
                self.log.push(Ok(out));
                true
            }
            Err(e) => {
                self.log.push(Err(e));
                matches!(e, PeekError::Overwritten { .. })
            }
        }
    }
}

impl Middlebox for Reader {
    type Flow = ();
    fn init(&mut self, reg: &mut Registry) {
        reg.subscribe(Event::CONN_NEW_DATA, Hook::Rcv);
    }
    fn on_event(&mut self, cx: &mut Ctx<'_, '_, ()>, _ev: Event, _hook: Hook, side: Side) {
        let f = cx.flow().unwrap();
        self.calls += 1;
        if !self.calls.is_multiple_of(self.read_every) {
            return;
        }
        while self.read_one(cx, f, side) {}
    }
}

/// A deterministic generator (SplitMix64).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Stream byte at offset `o`.
fn byte(o: u64) -> u8 {
    (o % 251) as u8 ^ (o >> 11) as u8
}

/// A client stream of `total` bytes in segments of 1..=1460 bytes, adjacent pairs swapped
/// with probability 1/4 and segments lost at the tap with probability `loss_in_100`/100, the
/// server acknowledging everything sent after each pair. Returns the frames and the lost
/// ranges.
fn stream(c: &Conn, total: u64, loss_in_100: u64, seed: u64) -> (Vec<Vec<u8>>, Vec<(u64, u64)>) {
    stream_of(c, total, 1460, loss_in_100, seed)
}

/// [`stream`] with segments of 1..=`mss` bytes.
fn stream_of(
    c: &Conn,
    total: u64,
    mss: u64,
    loss_in_100: u64,
    seed: u64,
) -> (Vec<Vec<u8>>, Vec<(u64, u64)>) {
    let mut rng = Rng(seed);
    let mut segs = Vec::new();
    let mut off = 0;
    while off < total {
        let len = (1 + rng.below(mss)).min(total - off);
        segs.push((off, len));
        off += len;
    }
    let mut frames = vec![c.syn(), c.synack(), c.ack()];
    let mut lost = Vec::new();
    for pair in segs.chunks(2) {
        let mut order: Vec<(u64, u64)> = pair.to_vec();
        if order.len() == 2 && rng.below(4) == 0 {
            order.swap(0, 1);
        }
        for &(o, l) in &order {
            // The last segment is never lost, so every hole has bytes after it.
            if o + l < total && rng.below(100) < loss_in_100 {
                lost.push((o, l));
                continue;
            }
            let data: Vec<u8> = (o..o + l).map(byte).collect();
            frames.push(c.cdata(o, &data));
        }
        let end = pair.last().map_or(0, |&(o, l)| o + l);
        frames.push(c.sack(0, end));
    }
    lost.sort();
    (frames, lost)
}

fn run(frames: &[Vec<u8>], reader: Reader, cap: u32) -> (Reader, u64) {
    let mut st: HostStorage<()> = HostStorage::new(8, 512 * 1024 / CHUNK_SIZE, 1);
    let cfg = Config {
        side_capacity: cap,
        ..Config::DEFAULT
    };
    let mut m = Monitor::new(reader, cfg, st.storage()).unwrap();
    for (i, b) in frames.chunks(3).enumerate() {
        let t = i as u64 * 100;
        m.begin_batch(t);
        for f in b {
            let _ = m.frame(f, t);
        }
        m.end_batch();
    }
    let f = m.flows().next().unwrap();
    let lost = m.buf_info(f, Side::Server).unwrap().lost;
    let r = std::mem::replace(m.middlebox_mut(), Reader::new(false, 1, 1));
    (r, lost)
}

/// Walks a reader's log from offset 0: every byte read is the stream's byte at its offset,
/// every jump says where it lands. Returns (bytes read, the jumps as (from, to)).
fn check_log(log: &[Result<Vec<u8>, PeekError>]) -> (u64, Vec<(u64, u64)>) {
    let mut pos = 0u64;
    let mut jumps = Vec::new();
    let mut read = 0;
    for e in log {
        match e {
            Ok(b) => {
                for (i, &x) in b.iter().enumerate() {
                    assert_eq!(x, byte(pos + i as u64), "byte at {}", pos + i as u64);
                }
                pos += b.len() as u64;
                read += b.len() as u64;
            }
            Err(PeekError::Overwritten { oldest, missed }) => {
                assert_eq!(pos + missed, *oldest, "a jump lands where it says");
                jumps.push((pos, *oldest));
                pos = *oldest;
            }
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    (read, jumps)
}

/// Lost segments as maximal holes.
fn holes(lost: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for &(o, l) in lost {
        match out.last_mut() {
            Some(h) if h.1 == o => h.1 = o + l,
            _ => out.push((o, o + l)),
        }
    }
    out
}

#[test]
fn in_place_reads_what_peek_reads_through_tap_loss_and_sequence_wrap() {
    // The client's sequence numbers wrap 32 KiB into the stream.
    let c = Conn::v4(0xffff_8000, 77);
    let total = 300_000;
    let (frames, lost) = stream(&c, total, 5, 7);
    let lost_bytes: u64 = lost.iter().map(|&(_, l)| l).sum();
    assert_eq!((lost.len(), lost_bytes), (19, 15_419));
    for max in [777, CHUNK_SIZE, 10_000] {
        // A 64 KiB ring for a 300 KB stream: the in-order run moves on past each hole as the
        // reader crosses it, so nothing is dropped for capacity.
        let (peek, l1) = run(&frames, Reader::new(false, max, 1), 64 * 1024);
        let (inplace, l2) = run(&frames, Reader::new(true, max, 1), 64 * 1024);
        assert_eq!(peek.log, inplace.log, "max {max}");
        assert_eq!((l1, l2), (lost_bytes, lost_bytes));
        let (read, jumps) = check_log(&inplace.log);
        assert_eq!(read, total - lost_bytes);
        assert_eq!(jumps, holes(&lost), "one jump per hole, exactly over it");
        // Slices of the ring: one per chunk the bytes lie in.
        for &(n, k) in &inplace.slices {
            assert!(
                k >= n.div_ceil(CHUNK_SIZE) && k <= n / CHUNK_SIZE + 2,
                "{n} B in {k}"
            );
        }
        assert!(
            inplace.slices.iter().any(|&(_, k)| k == 2),
            "reads across chunks"
        );
    }
}

#[test]
fn in_place_and_peek_agree_when_the_ring_overwrites_unread_bytes() {
    let c = Conn::v4(123, 456);
    let total = 200_000;
    let (frames, lost) = stream(&c, total, 0, 11);
    assert!(lost.is_empty());
    // An 8 KiB ring, data read every eighth batch only: unread bytes are overwritten.
    let (peek, l1) = run(&frames, Reader::new(false, 1000, 8), 8 * 1024);
    let (inplace, l2) = run(&frames, Reader::new(true, 1000, 8), 8 * 1024);
    assert_eq!(peek.log, inplace.log);
    assert_eq!(l1, l2);
    let (read, jumps) = check_log(&inplace.log);
    let missed: u64 = jumps.iter().map(|(a, b)| b - a).sum();
    assert!(!jumps.is_empty(), "the ring overwrote unread bytes");
    assert_eq!(
        missed, l1,
        "every byte overwritten unread is reported, and only those"
    );
    // The last batches' bytes are not read (no CONN_NEW_DATA call reads them).
    let f_total = read + missed;
    assert!(f_total <= total && total - f_total < 8 * 1460, "{f_total}");
}

#[test]
fn in_place_and_peek_agree_on_segments_spanning_several_chunks() {
    // Segments of up to 4 chunks and a bit (TSO-sized): an in-order one is copied chunk after
    // chunk by its links, and leaves the finger on its first chunk, where the reader resumes.
    let c = Conn::v4(0xffff_f000, 9);
    let total = 400_000;
    let mss = 4 * CHUNK_SIZE as u64 + 100;
    let (frames, lost) = stream_of(&c, total, mss, 3, 5);
    let lost_bytes: u64 = lost.iter().map(|&(_, l)| l).sum();
    assert!(!lost.is_empty());
    for (max, every) in [
        (CHUNK_SIZE / 2, 1),
        (3 * CHUNK_SIZE, 1),
        (20_000, 1),
        (5000, 3),
    ] {
        let (peek, l1) = run(&frames, Reader::new(false, max, every), 64 * 1024);
        let (inplace, l2) = run(&frames, Reader::new(true, max, every), 64 * 1024);
        assert_eq!(peek.log, inplace.log, "max {max} every {every}");
        assert_eq!(l1, l2);
        let (read, jumps) = check_log(&inplace.log);
        if every == 1 {
            assert_eq!(l1, lost_bytes);
            assert_eq!(read, total - lost_bytes);
            assert_eq!(jumps, holes(&lost));
        }
        if max >= 3 * CHUNK_SIZE {
            assert!(
                inplace.slices.iter().any(|&(_, k)| k >= 3),
                "reads over 3 chunks"
            );
        }
    }
}
