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
        let _ = differential::run(d);
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
        let _ = differential::run(&d);
    }
}

/// Inputs of comb records: hundreds of holes open at once, filled in every order, under each
/// island limit. Each limit is reached (and a segment refused) or, for the large ones,
/// hundreds of islands are held; the model accounts every byte lost to the limit.
#[test]
fn combs_open_hundreds_of_holes_under_every_island_limit() {
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut peak_by_limit = [0usize; 8];
    let mut lost_by_limit = [0u64; 8];
    for round in 0..96u64 {
        let sel = (round % 8) as u8;
        // Flags: limit selector in bits 3-5; last-wins and IPv6 vary.
        let mut d = vec![sel << 3 | (round / 8 % 4) as u8];
        d.extend((next() as u32).to_le_bytes());
        d.extend((next() as u32).to_le_bytes());
        for k in 0..6 {
            let r = next();
            let side = (round / 32) as u8 & 1;
            // A comb of 1-256 teeth (order by bits 4-5), then a filler segment or a second
            // comb shifted into the first one's holes; a batch ends every other record.
            let op = side | if k % 2 == 1 { 2 } else { 0 } | 8 | ((r as u8 & 3) << 4);
            let start = (r >> 8) as u16 % 4000;
            d.push(op);
            d.extend(start.to_le_bytes());
            d.push((r >> 24) as u8);
            d.push((r >> 32) as u8);
            d.push((r >> 40) as u8 | 0x80);
            if k % 3 == 2 {
                // Plain segments that fill holes (and overlap teeth).
                d.push(side | 2);
                d.extend(((r >> 48) as u16 % 6000).to_le_bytes());
                d.extend(((r >> 52) as u16).to_le_bytes());
                d.push(0);
            }
        }
        let o = differential::run(&d);
        let i = usize::from(sel);
        assert!(o.segments > 128, "round {round}: {o:?}");
        peak_by_limit[i] = peak_by_limit[i].max(o.peak_islands);
        lost_by_limit[i] += o.lost;
    }
    eprintln!("peak islands by limit {peak_by_limit:?}, bytes lost {lost_by_limit:?}");
    // ISLAND_LIMITS = [0, 1, 3, 16, 64, 200, 700, 3000 (clamped to MAX_ISLANDS)].
    for (i, &limit) in differential::ISLAND_LIMITS.iter().enumerate() {
        let limit = usize::from(limit).min(monitor::MAX_ISLANDS);
        if limit <= 200 {
            assert_eq!(peak_by_limit[i], limit, "limit {limit} reached");
            assert!(lost_by_limit[i] > 0, "limit {limit}: nothing refused");
        } else {
            assert!(
                peak_by_limit[i] >= 200,
                "limit {limit}: {}",
                peak_by_limit[i]
            );
        }
    }
}

/// A comb record: `teeth` teeth of `tooth` bytes every `step` bytes from `start`, sent in
/// `order` (0 ascending, 1 descending, 2 even then odd, 3 stride 7), from the server if
/// `server`, ending the batch if `end`.
fn comb(
    server: bool,
    end: bool,
    order: u8,
    start: u16,
    tooth: u8,
    step: u8,
    teeth: u16,
) -> Vec<u8> {
    let mut r = vec![server as u8 | (end as u8) << 1 | 8 | order << 4];
    r.extend(start.to_le_bytes());
    r.push(tooth - 1);
    r.push(step - tooth - 1);
    r.push((teeth - 1) as u8);
    r
}

/// The generated comb seeds of the corpus: (file name, input). Each opens many holes under
/// one island limit and fills them in another order.
fn comb_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let head = |flags: u8| {
        let mut d = vec![flags];
        d.extend((u32::MAX - 700).to_le_bytes());
        d.extend(77u32.to_le_bytes());
        d
    };
    let mut seeds = Vec::new();
    // Limit 64 (selector 4): 200 holes ascending, then the complementary comb descending.
    let mut d = head(4 << 3);
    d.extend(comb(false, true, 0, 10, 4, 8, 200));
    d.extend(comb(false, true, 1, 14, 4, 8, 200));
    seeds.push(("comb-64-asc-then-desc", d));
    // Limit 3 (selector 2), server side, last-wins: even teeth then odd, then a filler.
    let mut d = head(2 << 3 | 1);
    d.extend(comb(true, false, 2, 100, 2, 5, 150));
    d.extend([1 | 2, 0, 0, 0xff, 0x03, 0]);
    seeds.push(("comb-3-evenodd-lastwins", d));
    // Limit 200 (selector 5), IPv6, peeks after every batch: stride-7 order, 250 teeth.
    let mut d = head(5 << 3 | 2 | 4);
    d.extend(comb(false, true, 3, 0, 1, 3, 250));
    d.extend(comb(false, true, 3, 1, 2, 3, 250));
    seeds.push(("comb-200-stride7-v6", d));
    // Limit 3000, clamped to MAX_ISLANDS (selector 7): 5 combs of 256 one-byte teeth.
    let mut d = head(7 << 3);
    for k in 0..5u16 {
        d.extend(comb(
            false,
            k % 2 == 1,
            (k % 4) as u8,
            1 + k * 2560,
            1,
            2,
            256,
        ));
    }
    seeds.push(("comb-max-1280-islands", d));
    // Limit 0 (selector 0): nothing out of order is ever kept; in-order bytes still are.
    let mut d = head(0);
    d.extend(comb(false, true, 1, 0, 8, 10, 40));
    seeds.push(("comb-0-descending", d));
    seeds
}

/// The committed comb seeds must be what `comb_seeds` generates (the input format changed;
/// the seeds follow). Writes them under Cargo's target tmpdir and, if a committed one differs
/// or is missing, fails with the command that copies them into the corpus.
#[test]
fn comb_seeds_are_current_and_reach_their_limits() {
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("differential_seeds");
    std::fs::create_dir_all(&out).unwrap();
    let corpus = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/differential");
    let mut stale = Vec::new();
    let mut outcomes = Vec::new();
    for (name, bytes) in comb_seeds() {
        std::fs::write(out.join(name), &bytes).unwrap();
        if std::fs::read(corpus.join(name)).ok() != Some(bytes.clone()) {
            stale.push(name);
        }
        let o = differential::run(&bytes);
        outcomes.push((name, o.limit, o.peak_islands, o.lost > 0));
    }
    assert!(
        stale.is_empty(),
        "differential seeds out of date: {stale:?}; regenerate with\n  cp {}/* {}/",
        out.display(),
        corpus.display()
    );
    assert_eq!(
        outcomes,
        [
            ("comb-64-asc-then-desc", 64, 64, true),
            ("comb-3-evenodd-lastwins", 3, 3, true),
            ("comb-200-stride7-v6", 200, 200, true),
            // 1280 holes: all kept under 4 KiB chunks (2048 islands), the limit reached and
            // the rest lost under the default 2 KiB chunks (1024).
            (
                "comb-max-1280-islands",
                monitor::MAX_ISLANDS,
                1280.min(monitor::MAX_ISLANDS),
                monitor::MAX_ISLANDS < 1280
            ),
            ("comb-0-descending", 0, 0, true),
        ]
    );
}
