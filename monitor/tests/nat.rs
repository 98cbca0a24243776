//! NAT-capable flows (issue 9 item 1): a rewrite of the client's addresses or ports re-keys
//! the server half, so replies to the rewritten tuple find the same flow on the server side;
//! checksums stay valid (IPv4, TCP, IPv6 pseudo-header past extension headers); length-changing
//! rewrites keep sequence and acknowledgment numbers consistent while the monitor's streams
//! stay what it received. Checksums are verified by the test's own sum, not the monitor's.

mod common;

use std::net::IpAddr;

use common::*;
use monitor::{
    ActionError, Config, Ctx, DropReason, Event, FlowHandle, Hook, HostStorage, Middlebox, Monitor,
    Side, Verdict,
};

/// One's-complement sum over big-endian words (the test's own, independent of the monitor).
fn sum(d: &[u8]) -> u32 {
    d.chunks(2)
        .map(|w| u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)]) as u32)
        .sum()
}

fn folds_to_ffff(mut s: u32) -> bool {
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s == 0xffff
}

/// Parsed view of an untagged Ethernet frame: (src, dst, tcp segment), checksums checked.
fn check(f: &[u8]) -> (IpAddr, IpAddr, Vec<u8>) {
    let et = u16::from_be_bytes([f[12], f[13]]);
    if et == 0x0800 {
        let ip = &f[14..];
        let ihl = (ip[0] & 0xf) as usize * 4;
        assert!(folds_to_ffff(sum(&ip[..ihl])), "IPv4 header checksum");
        let tot = u16::from_be_bytes([ip[2], ip[3]]) as usize;
        let seg = &ip[ihl..tot];
        let pseudo = sum(&ip[12..20]) + 6 + seg.len() as u32;
        assert!(folds_to_ffff(pseudo + sum(seg)), "TCP checksum (IPv4)");
        let a: [u8; 4] = ip[12..16].try_into().unwrap();
        let b: [u8; 4] = ip[16..20].try_into().unwrap();
        (IpAddr::from(a), IpAddr::from(b), seg.to_vec())
    } else {
        assert_eq!(et, 0x86dd);
        let ip = &f[14..];
        let plen = u16::from_be_bytes([ip[4], ip[5]]) as usize;
        let mut nh = ip[6];
        let mut at = 40;
        while nh != 6 {
            assert!(matches!(nh, 0 | 43 | 60), "extension header {nh}");
            nh = ip[at];
            at += (ip[at + 1] as usize + 1) * 8;
        }
        let seg = &ip[at..40 + plen];
        let pseudo = sum(&ip[8..40]) + 6 + seg.len() as u32;
        assert!(folds_to_ffff(pseudo + sum(seg)), "TCP checksum (IPv6)");
        let a: [u8; 16] = ip[8..24].try_into().unwrap();
        let b: [u8; 16] = ip[24..40].try_into().unwrap();
        (IpAddr::from(a), IpAddr::from(b), seg.to_vec())
    }
}

fn ports(seg: &[u8]) -> (u16, u16) {
    (
        u16::from_be_bytes([seg[0], seg[1]]),
        u16::from_be_bytes([seg[2], seg[3]]),
    )
}

fn seq_ack(seg: &[u8]) -> (u32, u32) {
    (
        u32::from_be_bytes(seg[4..8].try_into().unwrap()),
        u32::from_be_bytes(seg[8..12].try_into().unwrap()),
    )
}

/// Write `addr` as the source (`src`) or destination address of an IPv4/IPv6 frame whose IP
/// header starts at `l3`, and `port` as the matching port of the TCP header at `l4`.
fn set_addr(f: &mut [u8], l3: usize, l4: usize, src: bool, addr: IpAddr, port: u16) {
    match addr {
        IpAddr::V4(a) => {
            let at = l3 + if src { 12 } else { 16 };
            f[at..at + 4].copy_from_slice(&a.octets());
        }
        IpAddr::V6(a) => {
            let at = l3 + if src { 8 } else { 24 };
            f[at..at + 16].copy_from_slice(&a.octets());
        }
    }
    let at = if src { l4 } else { l4 + 2 };
    f[at..at + 2].copy_from_slice(&port.to_be_bytes());
}

/// Source NAT: the client's packets leave from `public`, the server's go back to the client.
#[derive(Default)]
struct Nat {
    public: Option<(IpAddr, u16)>,
    /// (flow, sending side) of every PKT_IN.
    seen: Vec<(FlowHandle, Side)>,
    ends: Vec<FlowHandle>,
    /// Insert these bytes at this payload offset of the next client data packet.
    splice: Option<(usize, usize, Vec<u8>)>,
    /// Reset the flow once the client's stream holds this.
    reset_on: Option<Vec<u8>>,
    results: Vec<Result<(), ActionError>>,
}

impl Middlebox for Nat {
    type Flow = ();
    fn init(&mut self, reg: &mut monitor::Registry) {
        reg.subscribe(Event::PKT_IN, Hook::Snd);
        reg.subscribe(Event::CONN_END, Hook::Snd);
        reg.subscribe(Event::CONN_NEW_DATA, Hook::Rcv);
    }
    fn on_event(&mut self, cx: &mut Ctx<'_, '_, ()>, ev: Event, _: Hook, side: Side) {
        let flow = cx.flow().unwrap();
        if ev == Event::CONN_NEW_DATA {
            let mut buf = [0u8; 256];
            let n = cx.ppeek(flow, Side::Server, 0, &mut buf).unwrap_or(0);
            if let Some(p) = &self.reset_on {
                if buf[..n].windows(p.len()).any(|w| w == &p[..]) {
                    self.results.push(cx.reset_conn(flow));
                }
            }
            return;
        }
        if ev == Event::CONN_END {
            self.ends.push(flow);
            return;
        }
        self.seen.push((flow, side));
        let info = cx.packet_info().unwrap();
        let ep = cx.endpoints(flow).unwrap();
        let (public, pport) = self.public.unwrap();
        if side == Side::Client {
            if info.payload_len > 0 {
                if let Some((off, rm, ins)) = self.splice.take() {
                    self.results.push(cx.splice_payload(off, rm, &ins));
                }
            }
            let f = cx.packet_mut().unwrap();
            set_addr(f, info.l3_off, info.l4_off, true, public, pport);
        } else {
            let f = cx.packet_mut().unwrap();
            set_addr(f, info.l3_off, info.l4_off, false, ep.client.0, ep.client.1);
        }
    }
}

fn inline() -> Config {
    Config {
        inline: true,
        ..cfg()
    }
}

fn out(v: Verdict<'_>) -> Vec<u8> {
    match v {
        Verdict::Rewritten(b) => b.to_vec(),
        v => panic!("expected a rewrite, got {v:?}"),
    }
}

/// The server's view: the same connection with the client at the public tuple.
fn server_view(c: &Conn, public: (IpAddr, u16)) -> Conn {
    Conn {
        c: public,
        s: c.s,
        cisn: c.cisn,
        sisn: c.sisn,
        vlans: vec![],
    }
}

fn run_nat(c: Conn, public: (IpAddr, u16), ext: bool) {
    let mut st: HostStorage<()> = HostStorage::new(8, 64, 1);
    let nat = Nat {
        public: Some(public),
        ..Nat::default()
    };
    let mut m = Monitor::new(nat, inline(), st.storage()).unwrap();
    assert!(m.flow_state_bytes() <= 256, "{}", m.flow_state_bytes());
    let sv = server_view(&c, public);
    // Optionally an IPv6 Destination Options header (8 bytes, PadN) before TCP.
    let tweak = |f: Vec<u8>| -> Vec<u8> {
        if !ext {
            return f;
        }
        let mut g = f[..14 + 40].to_vec();
        g[14 + 6] = 60;
        let plen = u16::from_be_bytes([g[18], g[19]]) + 8;
        g[18..20].copy_from_slice(&plen.to_be_bytes());
        g.extend_from_slice(&[6, 0, 1, 4, 0, 0, 0, 0]);
        g.extend_from_slice(&f[14 + 40..]);
        g
    };
    let mut t = 1_000u64;
    let mut feed = |m: &mut Monitor<'_, Nat>, f: Vec<u8>| -> Vec<u8> {
        t += 1000;
        m.begin_batch(t);
        let o = out(m.frame(&tweak(f), t));
        m.end_batch();
        o
    };
    // SYN leaves from the public tuple.
    let o = feed(&mut m, c.syn());
    let (src, dst, seg) = check(&o);
    assert_eq!((src, dst), (public.0, c.s.0));
    assert_eq!(ports(&seg), (public.1, c.s.1));
    assert_eq!(seq_ack(&seg).0, c.cisn);
    // The SYN-ACK to the public tuple finds the flow and goes back to the client.
    let o = feed(&mut m, sv.synack());
    let (src, dst, seg) = check(&o);
    assert_eq!((src, dst), (c.s.0, c.c.0));
    assert_eq!(ports(&seg), (c.s.1, c.c.1));
    let flows: Vec<FlowHandle> = m.flows().collect();
    assert_eq!(flows.len(), 1);
    let h = flows[0];
    assert_eq!(
        m.middlebox().seen,
        vec![(h, Side::Client), (h, Side::Server)]
    );
    assert_eq!(
        (m.tcp_state(h, Side::Client), m.tcp_state(h, Side::Server)),
        (
            Ok(monitor::TcpState::Established),
            Ok(monitor::TcpState::SynRcvd)
        )
    );
    feed(&mut m, c.ack());
    let req = b"GET / HTTP/1.1\r\n\r\n";
    let resp = b"HTTP/1.1 200 OK\r\n\r\nhello";
    let o = feed(&mut m, c.cdata(0, req));
    assert_eq!(&check(&o).2[20..], req);
    let o = feed(&mut m, sv.sdata(0, resp));
    let (_, dst, seg) = check(&o);
    assert_eq!(dst, c.c.0);
    assert_eq!(&seg[20..], resp);
    // Both streams, byte-exact, on the one flow.
    let mut buf = [0u8; 64];
    let n = m.ppeek(h, Side::Server, 0, &mut buf).unwrap();
    assert_eq!(&buf[..n], req);
    let n = m.ppeek(h, Side::Client, 0, &mut buf).unwrap();
    assert_eq!(&buf[..n], resp);
    // Close: client FIN, server ACK+FIN (to the public tuple), client ACK.
    let r = req.len() as u64;
    let s = resp.len() as u64;
    feed(&mut m, c.cfin(r, s));
    feed(&mut m, sv.sack(s, r + 1));
    feed(&mut m, sv.sfin(s, r + 1));
    feed(&mut m, c.cack(r + 1, s + 1));
    assert_eq!(m.middlebox().ends, vec![h]);
    assert_eq!(m.flow_count(), 0);
    assert_eq!(m.counters().drop_count(DropReason::Orphan), 0);
    // The alias went with the flow: a straggler to the public tuple is an orphan.
    m.begin_batch(t + 1000);
    assert_eq!(
        m.frame(&tweak(sv.sack(s + 1, r + 1)), t + 1000),
        Verdict::Forward
    );
    m.end_batch();
    assert_eq!(m.counters().drop_count(DropReason::Orphan), 1);
}

#[test]
fn ipv4_source_nat_replies_find_the_flow() {
    run_nat(
        Conn::v4(1000, 9000),
        ("198.51.100.7".parse().unwrap(), 61000),
        false,
    );
}

#[test]
fn ipv6_source_nat_past_an_extension_header() {
    run_nat(
        Conn::v6(77, 0xffff_fff0),
        ("2001:db8:ffff::7".parse().unwrap(), 1025),
        true,
    );
}

#[test]
fn without_the_extra_table_a_rewrite_does_not_rekey() {
    let mut st: HostStorage<()> = HostStorage::new(8, 64, 1);
    let public = ("198.51.100.7".parse().unwrap(), 61000);
    let nat = Nat {
        public: Some(public),
        ..Nat::default()
    };
    let mut s = st.storage();
    s.extras = &mut [];
    let mut m = Monitor::new(nat, inline(), s).unwrap();
    let c = Conn::v4(1, 2);
    m.begin_batch(0);
    check(&out(m.frame(&c.syn(), 0)));
    assert_eq!(
        m.frame(&server_view(&c, public).synack(), 0),
        Verdict::Forward
    );
    m.end_batch();
    assert_eq!(m.counters().drop_count(DropReason::Orphan), 1);
}

#[test]
fn extras_must_match_the_flow_table() {
    let mut st: HostStorage<()> = HostStorage::new(8, 64, 1);
    let mut other: HostStorage<()> = HostStorage::new(4, 1, 0);
    let mut s = st.storage();
    s.extras = other.storage().extras;
    assert_eq!(
        Monitor::new(Nat::default(), inline(), s).err(),
        Some(monitor::ConfigError::ExtrasSize)
    );
}

#[test]
fn length_changing_rewrites_keep_seq_and_ack_consistent() {
    let mut st: HostStorage<()> = HostStorage::new(8, 64, 1);
    let public: (IpAddr, u16) = ("198.51.100.7".parse().unwrap(), 61000);
    let nat = Nat {
        public: Some(public),
        // Replace "GET" (3 bytes at payload offset 0) with "FETCH" (5): +2 bytes.
        splice: Some((0, 3, b"FETCH".to_vec())),
        ..Nat::default()
    };
    let mut m = Monitor::new(nat, inline(), st.storage()).unwrap();
    let c = Conn::v4(5000, 70000);
    let sv = server_view(&c, public);
    let mut t = 0;
    let mut feed = |m: &mut Monitor<'_, Nat>, f: Vec<u8>| -> Vec<u8> {
        t += 1000;
        m.begin_batch(t);
        let o = out(m.frame(&f, t));
        m.end_batch();
        o
    };
    feed(&mut m, c.syn());
    feed(&mut m, sv.synack());
    feed(&mut m, c.ack());
    // First request: spliced, so the server sees 2 more bytes.
    let o = feed(&mut m, c.cdata(0, b"GET /a\r\n"));
    let (_, _, seg) = check(&o);
    assert_eq!(&seg[20..], b"FETCH /a\r\n");
    assert_eq!(seq_ack(&seg), (c.cseq(0), c.sseq(0)));
    assert_eq!(o.len(), 14 + 20 + 20 + 10);
    assert_eq!(m.middlebox().results, vec![Ok(())]);
    // The server acknowledges the 10 bytes it got: the client sees an ACK of its 8.
    let o = feed(&mut m, sv.sack(0, 10));
    assert_eq!(seq_ack(&check(&o).2), (c.sseq(0), c.cseq(8)));
    // The second request leaves 2 further on; the server's reply acks it in its numbering.
    let o = feed(&mut m, c.cdata(8, b"GET /b\r\n"));
    let (_, _, seg) = check(&o);
    assert_eq!(&seg[20..], b"GET /b\r\n");
    assert_eq!(seq_ack(&seg), (c.cseq(10), c.sseq(0)));
    let o = feed(
        &mut m,
        sv.raw(false, sv.sseq(0), sv.cseq(18), ACK | PSH, b"ok"),
    );
    let (_, _, seg) = check(&o);
    assert_eq!(seq_ack(&seg), (c.sseq(0), c.cseq(16)));
    let h = m.flows().next().unwrap();
    // The monitor's streams are what it received, and no ACK looked like tap loss.
    let mut buf = [0u8; 64];
    let n = m.ppeek(h, Side::Server, 0, &mut buf).unwrap();
    assert_eq!(&buf[..n], b"GET /a\r\nGET /b\r\n");
    assert_eq!(m.buf_info(h, Side::Server).unwrap().lost, 0);
    assert_eq!(m.buf_info(h, Side::Client).unwrap().lost, 0);
    assert_eq!(m.counters().bytes_dropped, 0);
}

#[test]
fn splicing_needs_the_extra_table_and_stays_inside_the_payload() {
    #[derive(Default)]
    struct Splice(Vec<Result<(), ActionError>>);
    impl Middlebox for Splice {
        type Flow = ();
        fn init(&mut self, reg: &mut monitor::Registry) {
            reg.subscribe(Event::PKT_IN, Hook::Snd);
        }
        fn on_event(&mut self, cx: &mut Ctx<'_, '_, ()>, _: Event, _: Hook, _: Side) {
            if cx.packet_info().unwrap().payload_len == 4 {
                self.0.push(cx.splice_payload(3, 2, b""));
                self.0.push(cx.splice_payload(4, 0, b"!"));
            }
        }
    }
    let c = Conn::v4(1, 2);
    for with_extras in [false, true] {
        let mut st: HostStorage<()> = HostStorage::new(4, 8, 0);
        let mut s = st.storage();
        if !with_extras {
            s.extras = &mut [];
        }
        let mut m = Monitor::new(Splice::default(), inline(), s).unwrap();
        m.begin_batch(0);
        m.frame(&c.syn(), 0);
        m.frame(&c.synack(), 0);
        m.frame(&c.ack(), 0);
        let v = m.frame(&c.cdata(0, b"abcd"), 0);
        if with_extras {
            let o = out(v);
            assert_eq!(&check(&o).2[20..], b"abcd!");
        }
        m.end_batch();
        let want = if with_extras {
            vec![Err(ActionError::OutOfRange), Ok(())]
        } else {
            vec![Err(ActionError::NoExtras), Err(ActionError::NoExtras)]
        };
        assert_eq!(m.middlebox().0, want);
    }
}

#[test]
fn a_reset_reaches_the_server_at_the_public_tuple_past_the_splice() {
    let mut st: HostStorage<()> = HostStorage::new(8, 64, 1);
    let public: (IpAddr, u16) = ("198.51.100.7".parse().unwrap(), 61000);
    let nat = Nat {
        public: Some(public),
        splice: Some((0, 3, b"FETCH".to_vec())),
        reset_on: Some(b"EVIL".to_vec()),
        ..Nat::default()
    };
    let mut m = Monitor::new(nat, inline(), st.storage()).unwrap();
    let c = Conn::v4(5000, 70000);
    let sv = server_view(&c, public);
    m.begin_batch(0);
    for f in [
        c.syn(),
        sv.synack(),
        c.ack(),
        c.cdata(0, b"GET /a\r\n"),
        sv.sack(0, 10),
    ] {
        out(m.frame(&f, 0));
    }
    m.end_batch();
    m.begin_batch(1);
    let o = out(m.frame(&c.cdata(8, b"EVIL"), 1));
    assert_eq!(seq_ack(&check(&o).2), (c.cseq(10), c.sseq(0)));
    m.end_batch();
    assert_eq!(m.middlebox().results, vec![Ok(()), Ok(())]);
    let mut inj = Vec::new();
    m.drain_injected(|f| inj.push(f.to_vec()));
    let got: Vec<_> = inj
        .iter()
        .map(|f| {
            let (src, dst, seg) = check(f);
            (src, dst, ports(&seg), seq_ack(&seg), seg[13])
        })
        .collect();
    assert_eq!(
        got,
        vec![
            // The server saw 10 + 4 bytes from the public tuple.
            (
                public.0,
                c.s.0,
                (public.1, c.s.1),
                (c.cseq(14), c.sseq(0)),
                0x14
            ),
            // The client sent 12 and is reset from the server's own tuple.
            (c.s.0, c.c.0, (c.s.1, c.c.1), (c.sseq(0), c.cseq(12)), 0x14),
        ]
    );
    assert_eq!(m.flow_count(), 0);
    assert_eq!(m.middlebox().ends.len(), 1);
}

#[test]
fn the_extra_record_is_its_own_table() {
    // One record per flow slot, outside the flow slot (which stays 256 bytes with its index
    // share): the cost of NAT-capable flows and the per-flow API.
    assert_eq!(std::mem::size_of::<monitor::FlowExtra>(), 168);
    let mut st: HostStorage<()> = HostStorage::new(1024, 1, 0);
    let m = Monitor::new(Nat::default(), inline(), st.storage()).unwrap();
    assert_eq!(m.flow_state_bytes(), 256);
}

#[test]
fn an_ipv6_reset_behind_a_vlan_tag_reaches_both_ends_with_valid_checksums() {
    let mut st: HostStorage<()> = HostStorage::new(8, 64, 1);
    let public: (IpAddr, u16) = ("2001:db8:ffff::7".parse().unwrap(), 1025);
    let nat = Nat {
        public: Some(public),
        reset_on: Some(b"EVIL".to_vec()),
        ..Nat::default()
    };
    let mut m = Monitor::new(nat, inline(), st.storage()).unwrap();
    let mut c = Conn::v6(10, 20);
    c.vlans = vec![(0x8100, 7)];
    let mut sv = server_view(&c, public);
    sv.vlans = c.vlans.clone();
    m.begin_batch(0);
    for f in [c.syn(), sv.synack(), c.ack(), c.cdata(0, b"xEVILx")] {
        out(m.frame(&f, 0));
    }
    m.end_batch();
    let mut inj = Vec::new();
    m.drain_injected(|f| inj.push(f.to_vec()));
    let got: Vec<_> = inj
        .iter()
        .map(|f| {
            assert_eq!(&f[12..16], &[0x81, 0, 0, 7], "the VLAN tag is kept");
            // `check` reads an untagged frame: drop the tag.
            let mut g = f[..12].to_vec();
            g.extend_from_slice(&f[16..]);
            let (src, dst, seg) = check(&g);
            (src, dst, ports(&seg), seq_ack(&seg), seg[13])
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (
                public.0,
                c.s.0,
                (public.1, c.s.1),
                (c.cseq(6), c.sseq(0)),
                0x14
            ),
            (c.s.0, c.c.0, (c.s.1, c.c.1), (c.sseq(0), c.cseq(6)), 0x14),
        ]
    );
}

/// Source NAT with one public address and a new port per flow (no reuse), recording ends.
#[derive(Default)]
struct Snat {
    next: u16,
    ended: Vec<u16>,
}

impl Middlebox for Snat {
    type Flow = u16;
    fn init(&mut self, reg: &mut monitor::Registry) {
        reg.subscribe(Event::PKT_IN, Hook::Snd);
        reg.subscribe(Event::CONN_END, Hook::Any);
    }
    fn on_event(&mut self, cx: &mut Ctx<'_, '_, u16>, ev: Event, _: Hook, side: Side) {
        let flow = cx.flow().unwrap();
        if ev == Event::CONN_END {
            let p = *cx.user().unwrap();
            self.ended.push(p);
            return;
        }
        if *cx.user().unwrap() == 0 {
            self.next += 1;
            *cx.user().unwrap() = 10_000 + self.next;
        }
        let port = *cx.user().unwrap();
        let ep = cx.endpoints(flow).unwrap();
        let i = cx.packet_info().unwrap();
        let f = cx.packet_mut().unwrap();
        if side == Side::Client {
            set_addr(f, i.l3_off, i.l4_off, true, PUBLIC4.into(), port);
        } else {
            set_addr(f, i.l3_off, i.l4_off, false, ep.client.0, ep.client.1);
        }
    }
}

const PUBLIC4: [u8; 4] = [198, 51, 100, 9];

/// A connection's frames still to send: (from the client, frame).
type Script = std::collections::VecDeque<(bool, Vec<u8>)>;

#[test]
fn under_churn_and_eviction_replies_find_their_flow_or_none() {
    // 300 connections, up to 24 at once, in a 16-slot table: flows are evicted while their
    // peers still talk. Each server frame either goes back to its own client (its flow is
    // live) or passes as an orphan (its flow ended): never to another client.
    let mut st: HostStorage<u16> = HostStorage::new(16, 256, 0);
    let mut m = Monitor::new(Snat::default(), inline(), st.storage()).unwrap();
    let public = IpAddr::from(PUBLIC4);
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    // Per connection: its frames (from_client, frame), in order.
    let mut pending: Vec<(Conn, Script)> = Vec::new();
    let mut started = 0u32;
    let mut port_of: std::collections::HashMap<u16, u16> = Default::default(); // cport -> public port
    let (mut back, mut orphans, mut lost_replies) = (0u32, 0u64, 0u32);
    let mut t = 0u64;
    while started < 300 || !pending.is_empty() {
        if started < 300 && (pending.len() < 24) && next() % 3 == 0 {
            let mut c = Conn::v4(next() as u32, next() as u32);
            c.c.1 = 20_000 + started as u16;
            let req = vec![b'q'; 1 + (next() % 90) as usize];
            let resp = vec![b'r'; 1 + (next() % 90) as usize];
            let (r, s) = (req.len() as u64, resp.len() as u64);
            let mut q = std::collections::VecDeque::new();
            q.push_back((true, c.syn()));
            q.push_back((false, c.synack()));
            q.push_back((true, c.ack()));
            q.push_back((true, c.cdata(0, &req)));
            q.push_back((false, c.sdata(0, &resp)));
            // cfin, sack, sfin, cack.
            for (fc, f) in [true, false, false, true].into_iter().zip(c.close(r, s)) {
                q.push_back((fc, f));
            }
            pending.push((c, q));
            started += 1;
            continue;
        }
        if pending.is_empty() {
            continue;
        }
        let k = (next() % pending.len() as u64) as usize;
        let (c, q) = &mut pending[k];
        let (from_client, f) = q.pop_front().unwrap();
        t += 100;
        m.begin_batch(t);
        if from_client {
            let ended = port_of
                .get(&c.c.1)
                .is_some_and(|p| m.middlebox().ended.contains(p));
            match m.frame(&f, t) {
                Verdict::Rewritten(o) => {
                    assert!(!ended, "a client frame of an ended flow found a flow");
                    let (src, _, seg) = check(o);
                    assert_eq!(src, public);
                    let p = ports(&seg).0;
                    assert_eq!(
                        *port_of.entry(c.c.1).or_insert(p),
                        p,
                        "one port per connection"
                    );
                }
                // An evicted flow's later client frames (no SYN) are orphans.
                Verdict::Forward => {
                    assert!(ended, "a client frame of a live flow found none");
                    orphans += 1;
                }
                v => panic!("{v:?}"),
            }
        } else {
            let port = port_of[&c.c.1];
            let ended = m.middlebox().ended.contains(&port);
            let to_public = server_view(c, (public, port));
            // The same frame as the server sends it: to the public tuple.
            let g = to_public.raw(
                false,
                u32::from_be_bytes(f[38..42].try_into().unwrap()),
                u32::from_be_bytes(f[42..46].try_into().unwrap()),
                f[47],
                &f[54..],
            );
            match m.frame(&g, t) {
                Verdict::Rewritten(b) => {
                    assert!(!ended, "a reply of an ended flow found a flow");
                    let (_, dst, seg) = check(b);
                    assert_eq!((dst, ports(&seg).1), c.c, "back to its own client");
                    back += 1;
                }
                Verdict::Forward => {
                    assert!(ended, "a reply of a live flow found none");
                    orphans += 1;
                    lost_replies += 1;
                }
                v => panic!("{v:?}"),
            }
        }
        m.end_batch();
        if q.is_empty() {
            pending.swap_remove(k);
        }
    }
    let cn = m.counters().clone();
    assert_eq!(cn.drop_count(DropReason::Orphan), orphans);
    // Every connection ended once, closed or evicted (88 of them with this seed).
    assert_eq!(cn.flows_closed + cn.flows_evicted, 300);
    assert_eq!(m.middlebox().ended.len(), 300, "CONN_END once per flow");
    assert_eq!(
        back + lost_replies,
        300 * 4,
        "four server frames per connection"
    );
    m.close_all();
    // No alias outlives its flow: every public port is an orphan now.
    for (cport, port) in port_of.iter().take(20) {
        let mut c = Conn::v4(1, 2);
        c.c.1 = *cport;
        let g = server_view(&c, (public, *port)).sack(0, 0);
        m.begin_batch(t + 1);
        assert_eq!(m.frame(&g, t + 1), Verdict::Forward);
        m.end_batch();
    }
}
