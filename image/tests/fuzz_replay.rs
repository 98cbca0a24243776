//! Stable replay of the `capture_reader` and `firewall_rules` fuzz targets (drivers in
//! `monitor/fuzz/`): their corpora, crash artifacts and kept regressions, plus deterministic
//! mutations of valid inputs.

#[path = "../../monitor/fuzz/capture_reader.rs"]
mod capture_reader;
#[path = "../../monitor/fuzz/firewall_rules.rs"]
mod firewall_rules;

use std::path::PathBuf;

fn inputs(sub: &str, target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let d = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../monitor/fuzz")
        .join(sub)
        .join(target);
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

fn replay(target: &str, run: fn(&[u8])) {
    let corpus = inputs("corpus", target);
    assert!(corpus.len() >= 20, "{target} corpus missing");
    for (p, d) in corpus
        .iter()
        .chain(inputs("artifacts", target).iter())
        .chain(inputs("regressions", target).iter())
    {
        eprintln!("{}", p.display());
        run(d);
    }
}

#[test]
fn replay_capture_reader() {
    replay("capture_reader", capture_reader::run);
}

#[test]
fn replay_firewall_rules() {
    replay("firewall_rules", firewall_rules::run);
}

fn xorshift(mut x: u64) -> impl FnMut() -> u64 {
    move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    }
}

#[test]
fn mutated_captures_never_panic() {
    // A classic pcap and a pcapng of three TCP-ish frames each, over several link types.
    let frame: Vec<u8> = (0..74u8).collect();
    let mut seeds = Vec::new();
    for lt in [1u32, 0, 101, 108, 113, 276, 228] {
        let mut p = vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0];
        p.extend([0; 8]);
        p.extend(65535u32.to_le_bytes());
        p.extend(lt.to_le_bytes());
        for i in 0..3u32 {
            p.extend(i.to_le_bytes());
            p.extend(0u32.to_le_bytes());
            p.extend(74u32.to_le_bytes());
            p.extend(74u32.to_le_bytes());
            p.extend(&frame);
        }
        seeds.push(p);
        let block = |ty: u32, body: &[u8]| {
            let len = 12 + body.len().div_ceil(4) * 4;
            let mut v = ty.to_le_bytes().to_vec();
            v.extend((len as u32).to_le_bytes());
            v.extend(body);
            v.resize(len - 4, 0);
            v.extend((len as u32).to_le_bytes());
            v
        };
        let mut shb = 0x1a2b_3c4du32.to_le_bytes().to_vec();
        shb.extend([1, 0, 0, 0]);
        shb.extend((-1i64).to_le_bytes());
        let mut ng = block(0x0a0d_0d0a, &shb);
        let mut idb = (lt as u16).to_le_bytes().to_vec();
        idb.extend([0, 0, 0, 0, 1, 0, 9, 0, 1, 0, 9, 0, 0, 0, 0, 0, 0, 0]);
        ng.extend(block(1, &idb));
        for i in 0..3u32 {
            let mut epb = 0u32.to_le_bytes().to_vec();
            epb.extend(0u32.to_le_bytes());
            epb.extend(i.to_le_bytes());
            epb.extend(74u32.to_le_bytes());
            epb.extend(74u32.to_le_bytes());
            epb.extend(&frame);
            ng.extend(block(6, &epb));
        }
        ng.extend(block(3, &[74, 0, 0, 0, 1, 2, 3, 4]));
        seeds.push(ng);
    }
    let mut next = xorshift(0x2545_f491_4f6c_dd1d);
    for s in &seeds {
        capture_reader::run(s);
        for _ in 0..300 {
            let mut d = s.clone();
            for _ in 0..1 + next() % 4 {
                let at = (next() as usize) % d.len();
                match next() % 3 {
                    0 => d[at] = next() as u8,
                    1 => d.truncate(at.max(1)),
                    _ => d[at] ^= 0x80,
                }
            }
            capture_reader::run(&d);
        }
    }
}

#[test]
fn mutated_rule_files_never_panic() {
    let seed =
        b"DROP 10.0.0.0/8 192.168.1.1 dport:80 # web\nACCEPT 0.0.0.0/0 0.0.0.0/0 sport:22\n\n";
    firewall_rules::run(seed);
    let mut next = xorshift(0x9e37_79b9_7f4a_7c15);
    for _ in 0..2000 {
        let mut d = seed.to_vec();
        for _ in 0..1 + next() % 3 {
            let at = (next() as usize) % d.len();
            d[at] = b"0123456789./: #\nDROPACEsprtd\xff"[(next() % 29) as usize];
        }
        firewall_rules::run(&d);
    }
}
