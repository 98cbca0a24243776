//! Stable replay of the `differential` fuzz target (the monitor against a reference model,
//! every byte compared): its corpus, its crash artifacts and kept regressions, and 400
//! deterministic random inputs, through the same driver (`monitor/fuzz/differential.rs`).

#[path = "../fuzz/differential.rs"]
mod differential;

use std::path::PathBuf;

fn inputs(sub: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let d = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz")
        .join(sub)
        .join("differential");
    let Ok(rd) = std::fs::read_dir(d) else {
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
fn replay_corpus_artifacts_and_regressions() {
    let corpus = inputs("corpus");
    assert!(corpus.len() >= 20, "differential corpus missing");
    for (p, d) in corpus
        .iter()
        .chain(inputs("artifacts").iter())
        .chain(inputs("regressions").iter())
    {
        eprintln!("{}", p.display());
        differential::run(d);
    }
}

#[test]
fn random_segment_streams_match_the_model() {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for round in 0..400u64 {
        let records = 1 + (next() % 40) as usize;
        let mut d = vec![(round % 8) as u8];
        // Every fourth input starts near the sequence wrap.
        let isn = if round % 4 == 0 {
            u32::MAX - (next() % 3000) as u32
        } else {
            next() as u32
        };
        d.extend(isn.to_le_bytes());
        d.extend((next() as u32).to_le_bytes());
        for _ in 0..records {
            let r = next();
            // Offsets in a 6,000-byte window so segments overlap and fill holes.
            let start = (r >> 8) as u16 % 6000;
            let len = (r >> 24) as u16;
            d.push(r as u8 & 7);
            d.extend(start.to_le_bytes());
            d.extend(len.to_le_bytes());
            d.push((r >> 40) as u8);
        }
        differential::run(&d);
    }
}
