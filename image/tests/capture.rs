//! Loading captures: classic pcap from the generator, hand-built pcapng, and bad input.

use image::host::capture::{Capture, CaptureError};
use image::host::floor;
use image::host::gen::{self, GenConfig};

fn tmp(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("ferrule-capture-test-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

#[test]
fn pcap_from_generator_loads_every_frame() {
    let p = tmp("a.pcap");
    let st = gen::generate_files(
        &GenConfig {
            ipv6_pct: 30.0,
            vlan_pct: 30.0,
            ..GenConfig::default()
        },
        &p,
    )
    .unwrap();
    let c = Capture::load(&p).unwrap();
    assert_eq!(c.len() as u64, st.packets);
    assert_eq!(c.bytes(), st.frame_bytes);
    let ts: Vec<u64> = c.frames().map(|(t, _)| t).collect();
    assert!(ts.windows(2).all(|w| w[1] == w[0] + 1), "1 µs apart");
    let f = floor::run(&c);
    assert_eq!(f.tcp, st.packets);
    assert_eq!(f.payload, st.c2s_bytes + st.s2c_bytes);
}

fn block(ty: u32, body: &[u8]) -> Vec<u8> {
    let len = 12 + body.len().div_ceil(4) * 4;
    let mut v = ty.to_le_bytes().to_vec();
    v.extend((len as u32).to_le_bytes());
    v.extend(body);
    v.resize(len - 4, 0);
    v.extend((len as u32).to_le_bytes());
    v
}

fn pcapng(linktype: u16, frames: &[(u64, &[u8])]) -> Vec<u8> {
    let mut shb = 0x1a2b_3c4du32.to_le_bytes().to_vec();
    shb.extend(1u16.to_le_bytes());
    shb.extend(0u16.to_le_bytes());
    shb.extend((-1i64).to_le_bytes());
    let mut out = block(0x0a0d_0d0a, &shb);
    let mut idb = linktype.to_le_bytes().to_vec();
    idb.extend(0u16.to_le_bytes());
    idb.extend(65535u32.to_le_bytes());
    // if_tsresol = 9 (nanoseconds), then end of options.
    idb.extend([9, 0, 1, 0, 9, 0, 0, 0, 0, 0, 0, 0]);
    out.extend(block(1, &idb));
    for (ts_ns, f) in frames {
        let mut epb = 0u32.to_le_bytes().to_vec();
        epb.extend(((ts_ns >> 32) as u32).to_le_bytes());
        epb.extend((*ts_ns as u32).to_le_bytes());
        epb.extend((f.len() as u32).to_le_bytes());
        epb.extend((f.len() as u32).to_le_bytes());
        epb.extend(*f);
        out.extend(block(6, &epb));
    }
    out
}

#[test]
fn pcapng_with_nanosecond_resolution() {
    let mut pcap = Vec::new();
    gen::generate(
        &GenConfig {
            flows: 2,
            ..GenConfig::default()
        },
        &mut pcap,
    )
    .unwrap();
    let p = tmp("b.pcap");
    std::fs::write(&p, &pcap).unwrap();
    let classic = Capture::load(&p).unwrap();
    let frames: Vec<(u64, &[u8])> = classic.frames().map(|(t, f)| (t * 1000 + 7, f)).collect();
    let ng = tmp("b.pcapng");
    std::fs::write(&ng, pcapng(1, &frames)).unwrap();
    let c = Capture::load(&ng).unwrap();
    assert_eq!(c.len(), classic.len());
    for ((t1, f1), (t2, f2)) in c.frames().zip(classic.frames()) {
        assert_eq!((t1, f1), (t2, f2));
    }
}

#[test]
fn bad_captures_are_named_errors() {
    let p = tmp("c.pcapng");
    std::fs::write(&p, pcapng(105, &[(0, &[0u8; 60][..])])).unwrap();
    assert!(matches!(
        Capture::load(&p),
        Err(CaptureError::Linktype(_, 105))
    ));
    let g = tmp("garbage.pcap");
    std::fs::write(&g, b"this is not a capture at all, not even close......").unwrap();
    let e = Capture::load(&g);
    assert!(matches!(e, Err(CaptureError::Format(..))), "{:?}", e.err());
    assert!(matches!(
        Capture::load(&tmp("missing.pcap")),
        Err(CaptureError::Io(..))
    ));
}
