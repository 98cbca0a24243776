//! Replays the HTTP parser's fuzz corpus (`appliance/fuzz/corpus/http_request/`) and any
//! crash files (`appliance/fuzz/artifacts/http_request/`) on stable, with the fuzz target's
//! checks, plus every truncation and a set of one-byte changes of each seed.

use std::path::Path;

use appliance::mgmt::http::check_invariants;

fn files(dir: &Path) -> Vec<Vec<u8>> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<_> = rd.filter_map(Result::ok).map(|e| e.path()).collect();
    v.sort();
    v.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

#[test]
fn corpus_and_its_mutations_keep_the_parsers_promises() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let seeds = files(&root.join("corpus/http_request"));
    assert_eq!(seeds.len(), 6, "the corpus has six seeds");
    for s in seeds
        .iter()
        .chain(files(&root.join("artifacts/http_request")).iter())
    {
        check_invariants(s);
        for cut in 0..s.len() {
            check_invariants(&s[..cut]);
        }
        for i in 0..s.len() {
            for b in [0u8, b'\r', b'\n', b' ', b':', b'/', b'?', 0xff] {
                let mut m = s.clone();
                m[i] = b;
                check_invariants(&m);
            }
        }
    }
}
