//! Stable replay of the cargo-fuzz corpus (`monitor/fuzz/corpus/monitor_frames`) and of any
//! saved crash artifacts, plus deterministic mutations of the seeds, through the same driver
//! the fuzz target uses (`monitor::fuzzing::run`).

mod common;

use std::path::PathBuf;

use common::*;
use monitor::fuzzing::{encode, run};

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
    for (p, d) in corpus.iter().chain(inputs("artifacts").iter()) {
        eprintln!("{}", p.display());
        run(d);
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
    seeds
        .into_iter()
        .map(|(name, mode, frames)| {
            let recs: Vec<(u8, &[u8])> = frames
                .iter()
                .enumerate()
                .map(|(i, f)| (((i % 3) as u8) << 1 | 1, &f[..]))
                .collect();
            (name, encode(mode, &recs))
        })
        .collect()
}
