//! Stable replay of the cargo-fuzz corpus (`monitor/fuzz/corpus/monitor_frames`), of any saved
//! crash artifacts and kept regressions, plus deterministic mutations of the seeds, through the
//! same driver the fuzz target uses (`monitor::fuzzing::run`: every input through a monitor
//! given `read_ahead` hints and one without, compared frame by frame).

mod common;

use std::path::PathBuf;

use common::*;
use monitor::fuzzing::{
    encode, encode_plan, run, Stats, DECOY_COPY, DECOY_HALF, DECOY_SAME, EARLY, FLIP_AFTER,
    FLIP_WHILE_AHEAD, PLAN, RANK, REPLACE_AFTER, SKIP, START,
};

fn dir(sub: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz")
        .join(sub)
        .join("monitor_frames")
}

fn inputs(sub: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let Ok(rd) = std::fs::read_dir(dir(sub)) else {
        return vec![];
    };
    let mut v: Vec<_> = rd
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .map(|p| {
            let d = std::fs::read(&p).unwrap();
            (p, d)
        })
        .collect();
    v.sort();
    v
}

#[test]
fn replay_fuzz_corpus() {
    let corpus = inputs("corpus");
    assert!(
        corpus.len() >= 8,
        "seed corpus missing: {:?}",
        dir("corpus")
    );
    let mut plain = Stats::default();
    let mut planned = Stats::default();
    for (p, d) in corpus
        .iter()
        .chain(inputs("artifacts").iter())
        .chain(inputs("regressions").iter())
    {
        eprintln!("{}", p.display());
        let s = run(d);
        let sum = if d.first().is_some_and(|m| m & PLAN != 0) {
            &mut planned
        } else {
            &mut plain
        };
        add(sum, &s);
    }
    // Both kinds of input reach the read-ahead paths: hints of whole groups, and hints that
    // leave frames out, add others, come before `begin_batch` and precede rewritten frames.
    eprintln!("plain: {plain:?}\nplanned: {planned:?}");
    assert!(plain.read_aheads > 100 && plain.listed > 500, "{plain:?}");
    assert_eq!(plain.listed, plain.frames);
    assert!(planned.read_aheads > 10, "{planned:?}");
    assert!(
        planned.listed < planned.frames + planned.decoys,
        "{planned:?}"
    );
    assert!(planned.early > 0 && planned.decoys > 0, "{planned:?}");
    assert!(planned.rewritten > 5 && planned.restored > 0, "{planned:?}");
}

fn add(sum: &mut Stats, s: &Stats) {
    sum.frames += s.frames;
    sum.read_aheads += s.read_aheads;
    sum.early += s.early;
    sum.listed += s.listed;
    sum.decoys += s.decoys;
    sum.rewritten += s.rewritten;
    sum.restored += s.restored;
}

/// Each generated seed with read-ahead plans reaches what it was written for.
#[test]
fn plan_seeds_exercise_read_ahead() {
    let seeds = seeds();
    let planned: Vec<_> = seeds.iter().filter(|(_, d)| d[0] & PLAN != 0).collect();
    assert!(planned.len() >= 4);
    for (name, d) in planned {
        let s = run(d);
        assert!(s.frames >= 14 && s.read_aheads >= 1, "{name}: {s:?}");
        assert!(s.decoys >= 1 && s.rewritten >= 1, "{name}: {s:?}");
        if *name == "ahead_long" {
            assert!(s.listed > monitor::READ_AHEAD as u64, "{name}: {s:?}");
        } else {
            assert!(s.read_aheads >= 4 && s.early == 1, "{name}: {s:?}");
            assert!(s.restored >= 2, "{name}: {s:?}");
        }
    }
}

#[test]
fn mutated_seeds_never_panic() {
    let corpus = inputs("corpus");
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for round in 0..1500 {
        let (_, base) = &corpus[round % corpus.len()];
        let mut d = base.clone();
        let n = 1 + next() as usize % 8;
        for _ in 0..n {
            if d.is_empty() {
                break;
            }
            let i = next() as usize % d.len();
            match next() % 4 {
                0 => d[i] = next() as u8,
                1 => d[i] ^= 1 << (next() % 8),
                2 => d.truncate(i),
                _ => {
                    let b = d[i];
                    d.insert(i, b);
                }
            }
        }
        run(&d);
    }
}

/// The generated seeds of the corpus must be what the code below generates today (the
/// frame builders or the input encoding change; the committed seeds must follow). The test
/// writes the seeds under Cargo's target tmpdir and, if a committed one differs or is
/// missing, fails with the command that copies them into the corpus.
#[test]
fn seed_corpus_is_current() {
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("seed_corpus");
    std::fs::create_dir_all(&out).unwrap();
    let seeds = seeds();
    assert!(seeds.len() >= 8);
    let mut stale = Vec::new();
    for (name, bytes) in &seeds {
        std::fs::write(out.join(name), bytes).unwrap();
        if std::fs::read(dir("corpus").join(name)).ok().as_ref() != Some(bytes) {
            stale.push(*name);
        }
    }
    assert!(
        stale.is_empty(),
        "seed corpus out of date: {stale:?}; regenerate with\n  cp {}/* {}/",
        out.display(),
        dir("corpus").display()
    );
}

/// The generated seeds: (file name, encoded input).
fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let c = Conn::v4(u32::MAX - 3, 1000);
    let mut q = Conn::v4(5, 6);
    q.vlans = vec![(0x88a8, 1), (0x8100, 2)];
    let v6 = Conn::v6(9, 10);
    let mut seeds: Vec<(&str, u8, Vec<Vec<u8>>)> = Vec::new();
    let mut full = vec![
        c.syn(),
        c.synack(),
        c.ack(),
        c.cdata(0, b"GET / HTTP/1.1\r\n\r\n"),
        c.sdata(0, b"200 OK"),
    ];
    full.extend(c.close(18, 6));
    seeds.push(("v4_full_wrap", 0, full));
    seeds.push((
        "ooo_overlap",
        8,
        vec![
            c.syn(),
            c.synack(),
            c.ack(),
            c.cdata(10, b"bbbbb"),
            c.cdata(5, b"XXXXXXXXXX"),
            c.cdata(0, b"aaaaa"),
            c.cdata(0, b"zz"),
        ],
    ));
    seeds.push((
        "qinq",
        0,
        vec![
            q.syn(),
            q.synack(),
            q.ack(),
            q.cdata(0, b"tagged"),
            q.crst(6),
        ],
    ));
    seeds.push((
        "v6",
        0,
        vec![
            v6.syn(),
            v6.synack(),
            v6.ack(),
            v6.sdata(0, b"six"),
            v6.srst(3),
        ],
    ));
    seeds.push((
        "pickup",
        1,
        vec![
            c.sdata(100, b"mid"),
            c.cdata(7, b"stream"),
            c.sdata(103, b"more"),
        ],
    ));
    seeds.push((
        "inline",
        2,
        vec![c.syn(), c.synack(), c.ack(), c.cdata(0, &[1u8; 3000])],
    ));
    let big: Vec<Vec<u8>> = (0..6)
        .map(|i| c.cdata(i * 1400, &[i as u8; 1400]))
        .collect();
    let mut ring = vec![c.syn(), c.synack(), c.ack()];
    ring.extend(big);
    seeds.push(("small_ring", 16, ring));
    let p = Pkt {
        src: c.c.0,
        dst: c.s.0,
        sport: c.c.1,
        dport: c.s.1,
        seq: c.cseq(0),
        ack: c.sseq(0),
        flags: ACK,
        payload: vec![7; 500],
        vlans: vec![],
        wscale: None,
    };
    let mut frag = vec![c.syn(), c.synack(), c.ack()];
    frag.extend(ipv4_fragments(&p, 128, 3));
    seeds.push(("ipv4_frags", 0, frag));
    let p6 = Pkt {
        src: v6.c.0,
        dst: v6.s.0,
        sport: v6.c.1,
        dport: v6.s.1,
        seq: v6.cseq(0),
        ack: v6.sseq(0),
        ..p.clone()
    };
    let mut frag6 = vec![v6.syn(), v6.synack(), v6.ack()];
    frag6.extend(ipv6_fragments(&p6, 64, 3));
    seeds.push(("ipv6_frags", 4, frag6));
    seeds.push((
        "garbage",
        0,
        vec![vec![], vec![0xff; 13], c.syn()[..30].to_vec(), vec![0; 60]],
    ));
    let mut out: Vec<(&'static str, Vec<u8>)> = seeds
        .into_iter()
        .map(|(name, mode, frames)| {
            let recs: Vec<(u8, &[u8])> = frames
                .iter()
                .enumerate()
                .map(|(i, f)| (((i % 3) as u8) << 1 | 1, &f[..]))
                .collect();
            (name, encode(mode, &recs))
        })
        .collect();
    // Read-ahead plans (`monitor::fuzzing` docs), under each checksum mode.
    let mut d = Conn::v4(70, 7000);
    d.c.1 = 40001;
    out.push(("ahead_auto", encode_plan(0, &plan_records(&c, &d))));
    out.push((
        "ahead_verify_inline",
        encode_plan(0x40 | 2, &plan_records(&c, &d)),
    ));
    let mut d6 = Conn::v6(70, 7000);
    d6.c.1 = 40001;
    out.push((
        "ahead_ignore_v6",
        encode_plan(0x80, &plan_records(&v6, &d6)),
    ));
    out.push((
        "ahead_nic_pickup",
        encode_plan(0xc0 | 1, &plan_records(&c, &d)),
    ));
    // One group longer than READ_AHEAD, listed by rank.
    let mut long = vec![c.syn(), c.synack(), c.ack()];
    long.extend((0..40).map(|i| c.cdata(i * 10, &[b'a' + i as u8; 10])));
    let recs: Vec<(u8, u8, u8, &[u8])> = long
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let how = if i == 0 { START } else { RANK * (i % 4) as u8 };
            let how = if i % 7 == 5 { how | FLIP_AFTER } else { how };
            let how = if i % 9 == 8 { how | DECOY_COPY } else { how };
            (u8::from(i == long.len() - 1), how, 47, &f[..])
        })
        .collect();
    out.push(("ahead_long", encode_plan(0, &recs)));
    out
}

/// Two connections `c` and `d` in three batches, with read-ahead plans of every kind: a group
/// read ahead before `begin_batch`, reordered, with frames left out, decoys, and frames
/// rewritten after the hint (a header byte, a payload byte, the flags, another frame's bytes)
/// or changed only while read ahead.
fn plan_records(c: &Conn, d: &Conn) -> Vec<(u8, u8, u8, Vec<u8>)> {
    let mut v = vec![
        (EARLY, START, 0, c.syn()),
        (0, RANK, 0, c.synack()),
        (0, SKIP, 0, c.ack()),
        (0, DECOY_COPY, 0, c.cdata(0, b"aaaa")),
        (0, (3 * RANK) | DECOY_SAME, 0, d.syn()),
        (4 | 1, REPLACE_AFTER, 0, c.cdata(4, b"bbbb")),
        (0, 0, 0, d.synack()),
        (0, START | DECOY_HALF, 0, d.ack()),
        (0, FLIP_AFTER, 38, c.cdata(8, b"cccc")),
        (0, FLIP_WHILE_AHEAD, 30, c.cdata(12, b"dddd")),
        (0, START | (2 * RANK), 0, d.cdata(0, b"eeee")),
        (0, FLIP_AFTER, 55, d.cdata(4, b"ffff")),
        (8 | 1, FLIP_AFTER | RANK, 47, c.sdata(0, b"ok")),
    ];
    for (i, f) in c.close(16, 2).into_iter().enumerate() {
        let how = if i == 0 { START } else { FLIP_WHILE_AHEAD };
        v.push((4, how, 47, f));
    }
    v.push((1, START | SKIP | DECOY_COPY, 0, d.cdata(8, b"gg")));
    v
}
