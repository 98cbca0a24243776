//! TCP state-machine, retransmission, window-scale, IPv6, VLAN and IP fragment tests.

mod common;

use common::*;
use monitor::{Config, DropReason, Event, Hook, Monitor, Side, TcpState};

#[test]
fn simultaneous_open_reaches_established_both_ways() {
    let c = Conn::v4(100, 200);
    let mut st = storage();
    let mut m = Monitor::new(Recorder::default(), cfg(), st.storage()).unwrap();
    let fr = vec![
        c.syn(),
        c.raw(false, c.sisn, 0, SYN, &[]), // server's own SYN
        c.raw(true, c.cisn, c.sisn.wrapping_add(1), SYN | ACK, &[]), // client SYN-ACK
        c.synack(),                        // server SYN-ACK
        c.cdata(0, b"ping"),
        c.sdata(0, b"pong"),
    ];
    feed(&mut m, &fr, 0);
    let f = m.flows().next().unwrap();
    assert_eq!(m.tcp_state(f, Side::Client), Ok(TcpState::Established));
    assert_eq!(m.tcp_state(f, Side::Server), Ok(TcpState::Established));
    let mut b = [0u8; 4];
    assert_eq!(m.ppeek(f, Side::Server, 0, &mut b), Ok(4));
    assert_eq!(&b, b"ping");
    assert_eq!(m.ppeek(f, Side::Client, 0, &mut b), Ok(4));
    assert_eq!(&b, b"pong");
}

#[test]
fn retransmitted_syn_synack_fin_raise_rexmit() {
    let c = Conn::v4(100, 200);
    let mut st = storage();
    let rec = Recorder::new(&[(Event::REXMIT, Hook::Snd), (Event::CONN_START, Hook::Snd)]);
    let mut m = Monitor::new(rec, cfg(), st.storage()).unwrap();
    feed(&mut m, &[c.syn(), c.syn()], 0);
    assert_eq!(m.middlebox().count(Event::REXMIT), 1);
    assert_eq!(
        m.middlebox().count(Event::CONN_START),
        1,
        "a retransmitted SYN starts nothing"
    );
    feed(&mut m, &[c.synack(), c.synack()], 10);
    assert_eq!(m.middlebox().count(Event::REXMIT), 2);
    feed(&mut m, &[c.ack(), c.cfin(0, 0), c.cfin(0, 0)], 20);
    assert_eq!(m.middlebox().count(Event::REXMIT), 3);
    let sides: Vec<Side> = m
        .middlebox()
        .log
        .iter()
        .filter(|r| r.ev == Event::REXMIT)
        .map(|r| r.side)
        .collect();
    assert_eq!(
        sides,
        vec![Side::Client, Side::Server, Side::Client],
        "Snd view = the resender"
    );
    assert_eq!(m.counters().rexmits, 3);
}

#[test]
fn window_scale_is_read_from_both_syns() {
    let c = Conn::v4(1, 2);
    let mk = |from_client: bool, ws: Option<u8>, flags: u8, seq: u32, ack: u32| {
        let (a, b) = if from_client { (c.c, c.s) } else { (c.s, c.c) };
        frame(&Pkt {
            src: a.0,
            dst: b.0,
            sport: a.1,
            dport: b.1,
            seq,
            ack,
            flags,
            payload: vec![],
            vlans: vec![],
            wscale: ws,
        })
    };
    let mut st = storage();
    let mut m = Monitor::new(Recorder::default(), cfg(), st.storage()).unwrap();
    feed(&mut m, &[mk(true, Some(7), SYN, 1, 0)], 0);
    let f = m.flows().next().unwrap();
    assert_eq!(m.window_scale(f, Side::Client), Ok(None), "needs both");
    feed(&mut m, &[mk(false, Some(9), SYN | ACK, 2, 2)], 1);
    assert_eq!(m.window_scale(f, Side::Client), Ok(Some(7)));
    assert_eq!(m.window_scale(f, Side::Server), Ok(Some(9)));
}

#[test]
fn fin_after_a_hole_waits_for_the_data() {
    let c = Conn::v4(1, 2);
    let mut st = storage();
    let mut m = Monitor::new(Recorder::default(), cfg(), st.storage()).unwrap();
    feed(
        &mut m,
        &[
            c.syn(),
            c.synack(),
            c.ack(),
            c.cdata(5, b"world"),
            c.cfin(10, 0),
        ],
        0,
    );
    let f = m.flows().next().unwrap();
    assert_eq!(
        m.tcp_state(f, Side::Server),
        Ok(TcpState::Established),
        "FIN not in order yet"
    );
    assert_eq!(m.tcp_state(f, Side::Client), Ok(TcpState::FinWait1));
    feed(&mut m, &[c.cdata(0, b"hello")], 10);
    assert_eq!(m.tcp_state(f, Side::Server), Ok(TcpState::CloseWait));
}

#[test]
fn idle_flows_time_out_and_close_all_flushes() {
    let c = Conn::v4(1, 2);
    let d = Conn {
        c: ("10.0.0.7".parse().unwrap(), 5),
        ..Conn::v4(1, 2)
    };
    let mut st = storage();
    let mut rec = Recorder::new(&[(Event::CONN_END, Hook::Any)]);
    rec.end_read = true;
    let cfg = Config {
        idle_timeout_us: 1_000_000,
        ..cfg()
    };
    let mut m = Monitor::new(rec, cfg, st.storage()).unwrap();
    feed(
        &mut m,
        &[c.syn(), c.synack(), c.ack(), c.cdata(0, b"abc")],
        0,
    );
    feed(
        &mut m,
        &[d.syn(), d.synack(), d.ack(), d.cdata(0, b"xyz")],
        1_500_000,
    );
    m.tick(2_200_000);
    assert_eq!(m.flow_count(), 1, "c idled out");
    assert_eq!(m.counters().flows_timed_out, 1);
    m.close_all();
    assert_eq!(m.flow_count(), 0);
    assert_eq!(m.counters().flows_flushed, 1);
    let ends: Vec<Vec<u8>> = m.middlebox().at_end.iter().map(|e| e.2.clone()).collect();
    assert_eq!(
        ends,
        vec![b"abc".to_vec(), b"xyz".to_vec()],
        "streams readable in CONN_END"
    );
}

#[test]
fn ipv4_fragments_reassemble_into_the_flow() {
    let c = Conn::v4(1, 2);
    let mut st = storage();
    let mut m = Monitor::new(Recorder::default(), cfg(), st.storage()).unwrap();
    feed(&mut m, &[c.syn(), c.synack(), c.ack()], 0);
    let payload: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
    let p = Pkt {
        src: c.c.0,
        dst: c.s.0,
        sport: c.c.1,
        dport: c.s.1,
        seq: c.cseq(0),
        ack: c.sseq(0),
        flags: ACK,
        payload: payload.clone(),
        vlans: vec![(0x8100, 5)],
        wscale: None,
    };
    let mut frs = ipv4_fragments(&p, 256, 77);
    frs.reverse(); // out of order, plus a duplicate
    frs.insert(1, frs[0].clone());
    feed(&mut m, &frs, 10);
    let f = m.flows().next().unwrap();
    let mut b = vec![0u8; 1000];
    assert_eq!(m.ppeek(f, Side::Server, 0, &mut b), Ok(1000));
    assert_eq!(b, payload);
    assert_eq!(m.counters().datagrams_reassembled, 1);
    assert_eq!(
        m.counters().drop_count(DropReason::FragmentHeld),
        frs.len() as u64 - 1
    );
}

#[test]
fn ipv6_with_extension_headers_and_fragments() {
    let c = Conn::v6(10, 20);
    let mut st = storage();
    let mut m = Monitor::new(Recorder::default(), cfg(), st.storage()).unwrap();
    feed(&mut m, &[c.syn(), c.synack(), c.ack()], 0);
    // A hop-by-hop header in front of TCP.
    let mut fr = c.cdata(0, b"abc");
    let l3 = 14;
    let seg = fr.split_off(l3 + 40);
    fr[l3 + 6] = 0; // next header: hop-by-hop
    let plen = (seg.len() + 8) as u16;
    fr[l3 + 4..l3 + 6].copy_from_slice(&plen.to_be_bytes());
    fr.extend_from_slice(&[6, 0, 1, 4, 0, 0, 0, 0]); // next=TCP, len 0, PadN
    fr.extend_from_slice(&seg);
    feed(&mut m, &[fr], 10);
    // Then fragments.
    let p = Pkt {
        src: c.c.0,
        dst: c.s.0,
        sport: c.c.1,
        dport: c.s.1,
        seq: c.cseq(3),
        ack: c.sseq(0),
        flags: ACK,
        payload: vec![b'z'; 300],
        vlans: vec![],
        wscale: None,
    };
    feed(&mut m, &ipv6_fragments(&p, 128, 9), 20);
    let f = m.flows().next().unwrap();
    let mut b = vec![0u8; 400];
    assert_eq!(m.ppeek(f, Side::Server, 0, &mut b), Ok(303));
    assert_eq!(&b[..3], b"abc");
    assert!(b[3..303].iter().all(|&x| x == b'z'));
    assert_eq!(m.counters().total_dropped(), 0);
}

#[test]
fn malformed_fragments_are_counted() {
    let c = Conn::v4(1, 2);
    let mut st = storage();
    let mut m = Monitor::new(Recorder::default(), cfg(), st.storage()).unwrap();
    // A non-last fragment whose length is not a multiple of 8.
    let mut f = vec![0u8; 12];
    f.extend_from_slice(&[0x08, 0x00]);
    f.extend(ipv4_header([10, 0, 0, 1], [10, 0, 0, 2], 6, 13, 5, 0x2000));
    f.extend_from_slice(&[0u8; 13]);
    // A fragment past the datagram limit.
    let mut g = vec![0u8; 12];
    g.extend_from_slice(&[0x08, 0x00]);
    g.extend(ipv4_header(
        [10, 0, 0, 1],
        [10, 0, 0, 2],
        6,
        16,
        5,
        0x2000 | 8190, // 65 520 + 16 > 65 535
    ));
    g.extend_from_slice(&[0u8; 16]);
    feed(&mut m, &[f, g, c.syn()], 0);
    assert_eq!(m.counters().drop_count(DropReason::FragMalformed), 1);
    assert_eq!(m.counters().drop_count(DropReason::FragTooBig), 1);
    assert_eq!(m.flow_count(), 1);
}
