//! Receive checksums (issue 13 item 5): IPv4 header and TCP checksums verified in the intake
//! (IPv4 and IPv6 pseudo-headers, IPv6 extension headers, reassembled fragments over the whole
//! datagram), the NIC's own result taken when it has one, and `Auto` stopping on offloaded
//! traffic. A bad segment is counted and never reassembled: its bytes differ from the good
//! copy that follows, and only the good copy may appear in the stream.

mod common;

use common::*;
use monitor::{
    Checksums, Config, DropReason, HostStorage, Monitor, RxCheck, RxMeta, Side, CHECKSUM_SAMPLE,
};

const V4_TCP: usize = 14 + 20;
const V6_TCP: usize = 14 + 40;

fn cfg_with(checksums: Checksums) -> Config {
    Config { checksums, ..cfg() }
}

/// `f` with its TCP checksum (at `tcp + 16`) made wrong.
fn bad_tcp(mut f: Vec<u8>, tcp: usize) -> Vec<u8> {
    f[tcp + 16] ^= 0x5a;
    f
}

/// `f` (IPv4) with its TTL changed and the header checksum left as it was.
fn bad_ipv4(mut f: Vec<u8>) -> Vec<u8> {
    f[14 + 8] ^= 0x01;
    f
}

fn stream(m: &Monitor<'_, Recorder>, side: Side) -> Vec<u8> {
    let f = m.flows().next().expect("a live flow");
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = m.ppeek(f, side, out.len() as u64, &mut buf) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    out
}

fn feed_rx(m: &mut Monitor<'_, Recorder>, frames: &[(Vec<u8>, RxMeta)]) {
    for (i, (f, rx)) in frames.iter().enumerate() {
        m.begin_batch(i as u64);
        let _ = m.frame_with(f, i as u64, *rx);
        m.end_batch();
    }
}

#[test]
fn verify_drops_bad_ipv4_and_tcp_checksums_and_keeps_only_the_good_copies() {
    let c = Conn::v4(1000, 2000);
    let mut st = storage();
    let mut m = Monitor::new(
        Recorder::default(),
        cfg_with(Checksums::Verify),
        st.storage(),
    )
    .unwrap();
    feed(
        &mut m,
        &[
            c.syn(),
            c.synack(),
            c.ack(),
            bad_tcp(c.cdata(0, b"EVIL"), V4_TCP),
            c.cdata(0, b"good"),
            bad_ipv4(c.cdata(4, b"XXXX")),
            c.cdata(4, b"more"),
            bad_tcp(c.sdata(0, b"nope"), V4_TCP),
            c.sdata(0, b"resp"),
        ],
        0,
    );
    assert_eq!(stream(&m, Side::Server), b"goodmore");
    assert_eq!(stream(&m, Side::Client), b"resp");
    let k = m.counters();
    assert_eq!(k.drop_count(DropReason::BadTcpChecksum), 2);
    assert_eq!(k.drop_count(DropReason::BadIpv4Checksum), 1);
    assert_eq!(k.total_dropped(), 3);
    // The bad copies were never stored: no overlap with them, no REXMIT.
    assert_eq!(k.rexmits, 0);
    // 9 IPv4 headers and 8 TCP checksums (the frame with a bad header goes no further).
    assert_eq!((k.checksums.computed, k.checksums.from_nic), (17, 0));
    assert!(!k.checksums.offloaded);
}

/// An IPv6 data frame of `c` with `n` destination-options headers before TCP.
fn with_ext_headers(f: Vec<u8>, n: usize) -> Vec<u8> {
    let mut f = f;
    let seg = f.split_off(V6_TCP);
    f[14 + 6] = 60;
    let plen = (seg.len() + n * 8) as u16;
    f[14 + 4..14 + 6].copy_from_slice(&plen.to_be_bytes());
    for k in 0..n {
        let next = if k + 1 == n { 6 } else { 60 };
        f.extend_from_slice(&[next, 0, 1, 4, 0, 0, 0, 0]);
    }
    f.extend_from_slice(&seg);
    f
}

#[test]
fn ipv6_pseudo_header_after_extension_headers() {
    let c = Conn::v6(7, 9);
    let mut st = storage();
    let mut m = Monitor::new(
        Recorder::default(),
        cfg_with(Checksums::Verify),
        st.storage(),
    )
    .unwrap();
    let ext = |f: Vec<u8>| with_ext_headers(f, 3);
    feed(
        &mut m,
        &[
            c.syn(),
            c.synack(),
            c.ack(),
            ext(bad_tcp(c.cdata(0, b"EVIL!"), V6_TCP)),
            ext(c.cdata(0, b"first")),
            bad_tcp(c.cdata(5, b"EVIL!"), V6_TCP),
            c.cdata(5, b"later"),
        ],
        0,
    );
    assert_eq!(stream(&m, Side::Server), b"firstlater");
    let k = m.counters();
    assert_eq!(k.drop_count(DropReason::BadTcpChecksum), 2);
    assert_eq!(k.total_dropped(), 2);
    // IPv6 has no header checksum: one TCP checksum per frame.
    assert_eq!(k.checksums.computed, 7);
}

#[test]
fn a_routing_header_with_segments_left_hides_the_final_destination_so_tcp_is_not_checked() {
    let c = Conn::v6(7, 9);
    let mut st = storage();
    let mut m = Monitor::new(
        Recorder::default(),
        cfg_with(Checksums::Verify),
        st.storage(),
    )
    .unwrap();
    // A type-0-shaped routing header (one address, one segment left) before TCP.
    let routed = |f: Vec<u8>| {
        let mut f = f;
        let seg = f.split_off(V6_TCP);
        f[14 + 6] = 43;
        let plen = (seg.len() + 24) as u16;
        f[14 + 4..14 + 6].copy_from_slice(&plen.to_be_bytes());
        f.extend_from_slice(&[6, 2, 0, 1, 0, 0, 0, 0]);
        f.extend_from_slice(&[0x20, 1, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3]);
        f.extend_from_slice(&seg);
        f
    };
    feed(
        &mut m,
        &[
            c.syn(),
            c.synack(),
            c.ack(),
            routed(bad_tcp(c.cdata(0, b"kept"), V6_TCP)),
        ],
        0,
    );
    assert_eq!(stream(&m, Side::Server), b"kept");
    assert_eq!(m.counters().total_dropped(), 0);
    assert_eq!(m.counters().checksums.computed, 3);
}

fn data_pkt(c: &Conn, off: u64, payload: &[u8]) -> Pkt {
    Pkt {
        src: c.c.0,
        dst: c.s.0,
        sport: c.c.1,
        dport: c.s.1,
        seq: c.cseq(off),
        ack: c.sseq(0),
        flags: ACK,
        payload: payload.to_vec(),
        vlans: vec![],
        wscale: None,
    }
}

#[test]
fn reassembled_datagrams_are_checked_over_the_whole_datagram() {
    let payload: Vec<u8> = (0..3000u32).map(|i| (i % 253) as u8).collect();
    for v6 in [false, true] {
        let c = if v6 {
            Conn::v6(50, 60)
        } else {
            Conn::v4(50, 60)
        };
        let mut st: HostStorage<PerFlow> = HostStorage::new(8, 64, 4);
        let mut m = Monitor::new(
            Recorder::default(),
            cfg_with(Checksums::Verify),
            st.storage(),
        )
        .unwrap();
        feed(&mut m, &[c.syn(), c.synack(), c.ack()], 0);
        let frags = |id: u32| {
            let p = data_pkt(&c, 0, &payload);
            if v6 {
                ipv6_fragments(&p, 1200, id)
            } else {
                ipv4_fragments(&p, 1200, id as u16)
            }
        };
        // One byte of the second fragment's data changed: each fragment is fine on its own
        // (IPv4 header checksums intact), the datagram's TCP checksum is not.
        let mut bad = frags(1);
        let last = bad[1].len() - 1;
        bad[1][last] ^= 0xff;
        feed(&mut m, &bad, 10_000);
        assert_eq!(m.counters().datagrams_reassembled, 1);
        assert_eq!(m.counters().drop_count(DropReason::BadTcpChecksum), 1);
        assert_eq!(stream(&m, Side::Server), b"", "v6 {v6}");
        // A fragment with a bad IPv4 header is dropped at once (not held).
        if !v6 {
            let f = bad_ipv4(frags(3)[0].clone());
            feed(&mut m, &[f], 15_000);
            assert_eq!(m.counters().drop_count(DropReason::BadIpv4Checksum), 1);
            assert_eq!(m.counters().drop_count(DropReason::FragmentHeld), 2);
        }
        feed(&mut m, &frags(2), 20_000);
        assert_eq!(m.counters().datagrams_reassembled, 2);
        assert_eq!(stream(&m, Side::Server), payload, "v6 {v6}");
    }
}

#[test]
fn auto_keeps_an_offloaded_hosts_segments_and_stops_checking_after_the_sample() {
    // A capture on the client: every client segment carries the partial checksum its NIC
    // would have completed; the server's are right.
    let c = Conn::v4(1, 1_000_000);
    let mut st = storage();
    let mut m = Monitor::new(Recorder::default(), cfg_with(Checksums::Auto), st.storage()).unwrap();
    let off = |f: Vec<u8>| bad_tcp(f, V4_TCP);
    let mut frames = vec![off(c.syn()), c.synack(), off(c.ack())];
    let mut want = Vec::new();
    for i in 0..600u64 {
        let d = [(i % 251) as u8; 10];
        frames.push(off(c.cdata(i * 10, &d)));
        frames.push(c.sack(0, i * 10 + 10));
        want.extend_from_slice(&d);
    }
    feed(&mut m, &frames, 0);
    assert_eq!(stream(&m, Side::Server), want);
    let k = m.counters();
    assert_eq!(k.total_dropped(), 0);
    let cs = k.checksums;
    assert!(cs.offloaded);
    // The first 1000 frames: SYN, SYN-ACK, ACK, then data and ACKs alternating: 2 + 499 bad.
    assert_eq!((cs.sampled, cs.sampled_bad), (CHECKSUM_SAMPLE, 501));
    assert_eq!(cs.accepted_bad, 501);
    // Two checksums (IPv4 header, TCP) per sampled frame, none after.
    assert_eq!(cs.computed, 2 * u64::from(CHECKSUM_SAMPLE));
}

#[test]
fn auto_drops_a_corrupt_segment_in_clean_traffic_before_and_after_the_sample() {
    let c = Conn::v4(5, 6);
    let mut st = storage();
    let mut m = Monitor::new(Recorder::default(), cfg_with(Checksums::Auto), st.storage()).unwrap();
    let mut frames = vec![c.syn(), c.synack(), c.ack()];
    let mut want = Vec::new();
    let mut bad = 0;
    for i in 0..1200u64 {
        let d = [(i % 7) as u8 + b'a'; 4];
        // Every 100th segment first arrives corrupted (different bytes), then good.
        if i % 100 == 50 {
            frames.push(bad_tcp(c.cdata(i * 4, b"EVIL"), V4_TCP));
            bad += 1;
        }
        frames.push(c.cdata(i * 4, &d));
        want.extend_from_slice(&d);
    }
    feed(&mut m, &frames, 0);
    assert_eq!(stream(&m, Side::Server), want);
    let k = m.counters();
    assert_eq!(bad, 12);
    assert_eq!(k.drop_count(DropReason::BadTcpChecksum), 12);
    assert_eq!(k.rexmits, 0);
    let cs = k.checksums;
    assert!(!cs.offloaded);
    // 10 of the first 1000 frames were bad (the 11th comes at frame 1107).
    assert_eq!((cs.sampled, cs.sampled_bad, cs.accepted_bad), (1000, 10, 0));
    // Everything checked, both checksums of every frame.
    assert_eq!(cs.computed, 2 * frames.len() as u64);
}

#[test]
fn the_nics_result_replaces_the_software_check() {
    let c = Conn::v4(10, 20);
    let mut st = storage();
    let mut m = Monitor::new(
        Recorder::default(),
        cfg_with(Checksums::Verify),
        st.storage(),
    )
    .unwrap();
    let good = RxMeta {
        ipv4: RxCheck::Good,
        l4: RxCheck::Good,
    };
    let l4_bad = RxMeta {
        ipv4: RxCheck::Good,
        l4: RxCheck::Bad,
    };
    let ip_bad = RxMeta {
        ipv4: RxCheck::Bad,
        l4: RxCheck::Unknown,
    };
    feed_rx(
        &mut m,
        &[
            (c.syn(), good),
            (c.synack(), RxMeta::NONE),
            (c.ack(), good),
            // The NIC says bad: dropped, although the bytes sum right.
            (c.cdata(0, b"nic says bad"), l4_bad),
            (c.cdata(0, b"nic says bad"), ip_bad),
            // The NIC says good: not computed again (this one is wrong in software's eyes).
            (bad_tcp(c.cdata(0, b"nic says ok!"), V4_TCP), good),
        ],
    );
    assert_eq!(stream(&m, Side::Server), b"nic says ok!");
    let k = m.counters();
    assert_eq!(k.drop_count(DropReason::BadTcpChecksum), 1);
    assert_eq!(k.drop_count(DropReason::BadIpv4Checksum), 1);
    // From the NIC: 2 + 2 + 2 + 1 (IPv4 bad, nothing after it) + 2; computed: the SYN-ACK's two.
    assert_eq!((k.checksums.from_nic, k.checksums.computed), (9, 2));
}

#[test]
fn ignore_checks_nothing_not_even_the_nics_result() {
    let c = Conn::v4(10, 20);
    let mut st = storage();
    let mut m = Monitor::new(
        Recorder::default(),
        cfg_with(Checksums::Ignore),
        st.storage(),
    )
    .unwrap();
    let nic_bad = RxMeta {
        ipv4: RxCheck::Bad,
        l4: RxCheck::Bad,
    };
    feed_rx(
        &mut m,
        &[
            (bad_tcp(c.syn(), V4_TCP), RxMeta::NONE),
            (bad_ipv4(c.synack()), RxMeta::NONE),
            (c.ack(), nic_bad),
            (bad_tcp(c.cdata(0, b"anything"), V4_TCP), nic_bad),
        ],
    );
    assert_eq!(stream(&m, Side::Server), b"anything");
    let k = m.counters();
    assert_eq!(k.total_dropped(), 0);
    assert_eq!((k.checksums.computed, k.checksums.from_nic), (0, 0));
}

#[test]
fn auto_early_a_bad_frame_from_a_host_that_sent_good_ones_is_corruption() {
    // Four frames in, one bad of four is over 10 %: the ratio alone would call it offload,
    // but the client's SYN and ACK were right, so its bad segment is dropped.
    let c = Conn::v4(3, 4);
    let mut st = storage();
    let mut m = Monitor::new(Recorder::default(), cfg_with(Checksums::Auto), st.storage()).unwrap();
    feed(
        &mut m,
        &[
            c.syn(),
            c.synack(),
            c.ack(),
            bad_tcp(c.cdata(0, b"EVIL"), V4_TCP),
            c.cdata(0, b"good"),
        ],
        0,
    );
    assert_eq!(stream(&m, Side::Server), b"good");
    let k = m.counters();
    assert_eq!(k.drop_count(DropReason::BadTcpChecksum), 1);
    assert_eq!(
        (k.checksums.accepted_bad, k.checksums.offloaded),
        (0, false)
    );
}
