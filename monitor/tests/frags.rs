//! IP fragments (issue 13 item 3): datagrams up to 65 535 bytes, RFC 5722 for IPv6 overlaps,
//! the overlap policy for IPv4 ones, a table that sheds junk before real datagrams, and VLAN
//! stacks and IPv6 extension chains walked as deep as the frame goes.

mod common;

use common::*;
use monitor::{Config, DropReason, FragSlot, HostStorage, Monitor, Overlap, Side};

fn data_pkt(c: &Conn, off: u64, payload: Vec<u8>) -> Pkt {
    Pkt {
        src: c.c.0,
        dst: c.s.0,
        sport: c.c.1,
        dport: c.s.1,
        seq: c.cseq(off),
        ack: c.sseq(0),
        flags: ACK,
        payload,
        vlans: vec![],
        wscale: None,
    }
}

fn pattern(n: usize, salt: u8) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8 ^ salt).collect()
}

fn read(m: &Monitor<'_, Recorder>, side: Side, n: usize) -> Vec<u8> {
    let f = m.flows().next().unwrap();
    let mut out = vec![0u8; n];
    let mut at = 0;
    while at < n {
        match m.ppeek(f, side, at as u64, &mut out[at..]) {
            Ok(k) => at += k,
            Err(_) => break,
        }
    }
    out.truncate(at);
    out
}

#[test]
fn a_65_000_byte_datagram_reassembles_exactly_and_slots_stay_small() {
    let c = Conn::v4(100, 200);
    let mut st: HostStorage<PerFlow> = HostStorage::new(4, 64, 2);
    let mut m = Monitor::new(Recorder::default(), cfg(), st.storage()).unwrap();
    feed(&mut m, &[c.syn(), c.synack(), c.ack()], 0);
    let free0 = m.free_chunks();
    // 65 000 payload bytes + 20 TCP = 65 020 bytes of IP payload (IPv4 allows 65 515).
    let payload = pattern(65_000, 3);
    let mut frs = ipv4_fragments(&data_pkt(&c, 0, payload.clone()), 1480, 9);
    frs.reverse();
    feed(&mut m, &frs, 1000);
    assert_eq!(m.counters().datagrams_reassembled, 1);
    assert_eq!(read(&m, Side::Server, 70_000), payload);
    // The fragments' chunks went back; the stream holds its own.
    assert_eq!(
        m.free_chunks(),
        free0 - 65_000usize.div_ceil(monitor::CHUNK_SIZE)
    );
    // A slot is metadata only (the bytes were in pool chunks): a fixed part and one chunk
    // index per chunk a datagram can span.
    assert!(
        std::mem::size_of::<FragSlot>() <= 224 + 4 * 65_535usize.div_ceil(monitor::CHUNK_SIZE),
        "{}",
        std::mem::size_of::<FragSlot>()
    );
}

#[test]
fn ipv6_overlapping_fragments_discard_the_datagram() {
    let c = Conn::v6(100, 200);
    let mut st = storage();
    let mut m = Monitor::new(Recorder::default(), cfg(), st.storage()).unwrap();
    feed(&mut m, &[c.syn(), c.synack(), c.ack()], 0);
    let mut frs = ipv6_fragments(&data_pkt(&c, 0, pattern(300, 1)), 128, 5);
    assert_eq!(frs.len(), 3);
    // The second fragment claims offset 120 instead of 128: it overlaps the first.
    let at = 14 + 40 + 2;
    frs[1][at..at + 2].copy_from_slice(&(120u16 | 1).to_be_bytes());
    feed(&mut m, &frs, 1000);
    assert_eq!(m.counters().drop_count(DropReason::FragOverlap), 1);
    assert_eq!(m.counters().datagrams_reassembled, 0);
    let f = m.flows().next().unwrap();
    assert_eq!(m.buf_info(f, Side::Server).unwrap().last_end, 0);
}

#[test]
fn ipv4_overlaps_follow_the_overlap_policy_and_are_counted() {
    for (policy, want_x) in [(Overlap::First, false), (Overlap::Last, true)] {
        let c = Conn::v4(100, 200);
        let mut st = storage();
        let cfg = Config {
            overlap: policy,
            // The overlapping copy is edited in place (stale IPv4 header checksum), and 'X'
            // bytes kept by last-wins break the datagram's TCP checksum: not what this tests.
            checksums: monitor::Checksums::Ignore,
            ..cfg()
        };
        let mut m = Monitor::new(Recorder::default(), cfg, st.storage()).unwrap();
        feed(&mut m, &[c.syn(), c.synack(), c.ack()], 0);
        let payload = pattern(600, 7);
        let frs = ipv4_fragments(&data_pkt(&c, 0, payload.clone()), 256, 11);
        assert_eq!(frs.len(), 3); // 620 bytes of segment: 0..256, 256..512, 512..620
                                  // A copy of the second fragment moved to offset 248, every data byte replaced by 'X':
                                  // it covers datagram bytes 248..504, all received already.
        let mut x = frs[1].clone();
        x[14 + 6..14 + 8].copy_from_slice(&(0x2000u16 | 31).to_be_bytes());
        for b in &mut x[14 + 20..] {
            *b = b'X';
        }
        feed(
            &mut m,
            &[frs[0].clone(), frs[1].clone(), x, frs[2].clone()],
            1000,
        );
        assert_eq!(m.counters().frag_overlaps, 1, "{policy:?}");
        assert_eq!(m.counters().datagrams_reassembled, 1);
        let got = read(&m, Side::Server, 600);
        let mut want = payload.clone();
        if want_x {
            // Datagram bytes 248..504 are segment bytes; payload starts at 20.
            for b in &mut want[228..484] {
                *b = b'X';
            }
        }
        assert_eq!(got, want, "{policy:?}");
    }
}

#[test]
fn a_junk_fragment_flood_leaves_a_real_datagram_intact() {
    let c = Conn::v4(100, 200);
    let mut st: HostStorage<PerFlow> = HostStorage::new(4, 64, 8);
    let mut m = Monitor::new(Recorder::default(), cfg(), st.storage()).unwrap();
    feed(&mut m, &[c.syn(), c.synack(), c.ack()], 0);
    let payload = pattern(1000, 9);
    let frs = ipv4_fragments(&data_pkt(&c, 0, payload.clone()), 256, 77);
    assert_eq!(frs.len(), 4);
    // Junk: first fragments of datagrams that never complete, from many sources.
    let junk = |i: u16| {
        let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 8, 0];
        f.extend(ipv4_header(
            [172, 16, (i >> 8) as u8, i as u8],
            [10, 0, 0, 9],
            6,
            64,
            i,
            0x2000,
        ));
        f.extend_from_slice(&[0u8; 64]);
        f
    };
    let mut frames = vec![frs[0].clone(), frs[1].clone()];
    frames.extend((0..1000).map(junk));
    frames.push(frs[2].clone());
    frames.extend((1000..1500).map(junk));
    frames.push(frs[3].clone());
    feed_batch(&mut m, &frames, 1000);
    assert_eq!(m.counters().datagrams_reassembled, 1);
    assert_eq!(read(&m, Side::Server, 1000), payload);
    // 1500 junk datagrams through 8 slots (one held by the real one): all but 7 evicted.
    assert_eq!(m.counters().drop_count(DropReason::FragEvicted), 1500 - 7);
}

#[test]
fn vlan_stacks_and_extension_chains_are_walked_to_the_end() {
    // Ten VLAN tags.
    let mut c = Conn::v4(100, 200);
    c.vlans = (0..10).map(|i| (0x8100, i)).collect();
    let mut st = storage();
    let mut m = Monitor::new(Recorder::default(), cfg(), st.storage()).unwrap();
    feed(
        &mut m,
        &[c.syn(), c.synack(), c.ack(), c.cdata(0, b"deep")],
        0,
    );
    assert_eq!(read(&m, Side::Server, 4), b"deep");
    assert_eq!(m.counters().total_dropped(), 0);

    // Twelve destination-options headers in front of TCP.
    let c = Conn::v6(100, 200);
    let mut st = storage();
    let mut m = Monitor::new(Recorder::default(), cfg(), st.storage()).unwrap();
    feed(&mut m, &[c.syn(), c.synack(), c.ack()], 0);
    let mut fr = c.cdata(0, b"chain");
    let l3 = 14;
    let seg = fr.split_off(l3 + 40);
    fr[l3 + 6] = 60; // next header: destination options
    let plen = (seg.len() + 12 * 8) as u16;
    fr[l3 + 4..l3 + 6].copy_from_slice(&plen.to_be_bytes());
    for k in 0..12 {
        let next = if k == 11 { 6 } else { 60 };
        fr.extend_from_slice(&[next, 0, 1, 4, 0, 0, 0, 0]); // PadN
    }
    fr.extend_from_slice(&seg);
    feed(&mut m, &[fr], 10);
    assert_eq!(read(&m, Side::Server, 5), b"chain");
    assert_eq!(m.counters().total_dropped(), 0);
}
