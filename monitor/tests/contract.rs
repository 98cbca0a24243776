//! One test (or more) per numbered rule of the monitor contract, named `rule_NN_...`.

mod common;

use common::*;
use monitor::{
    ActionError, Config, Ctx, DropReason, Event, FlowHandle, Frag, Hook, HostStorage, Middlebox,
    Monitor, Overlap, PeekError, Registry, Side, TcpState, Verdict, CHUNK_SIZE,
};

fn handshake(c: &Conn) -> Vec<Vec<u8>> {
    vec![c.syn(), c.synack(), c.ack()]
}

fn only_flow<M: Middlebox>(m: &Monitor<'_, M>) -> FlowHandle {
    let v: Vec<_> = m.flows().collect();
    assert_eq!(v.len(), 1, "expected exactly one flow");
    v[0]
}

fn read_side<M: Middlebox>(m: &Monitor<'_, M>, f: FlowHandle, side: Side) -> Vec<u8> {
    let bi = m.buf_info(f, side).unwrap();
    let mut out = vec![0u8; (bi.in_order_end - bi.oldest) as usize];
    let mut off = 0;
    while off < out.len() {
        let n = m
            .ppeek(f, side, bi.oldest + off as u64, &mut out[off..])
            .unwrap();
        assert!(n > 0);
        off += n;
    }
    out
}

fn exchange(c: &Conn) -> Vec<Vec<u8>> {
    let mut v = handshake(c);
    v.push(c.cdata(0, b"GET / HTTP/1.1\r\n\r\n"));
    v.push(c.sdata(0, b"HTTP/1.1 200 OK\r\n\r\nhello"));
    v
}

#[test]
fn rule_01_one_flow_per_connection_v4_v6_vlan_qinq() {
    for (name, mut c) in [
        ("v4", Conn::v4(100, 900)),
        ("v6", Conn::v6(7, 3_000_000_000)),
    ] {
        for vlans in [
            vec![],
            vec![(0x8100, 10)],
            vec![(0x88a8, 100), (0x8100, 20)],
        ] {
            c.vlans = vlans.clone();
            let mut st = storage();
            let mut m = Monitor::new(Recorder::default(), cfg(), st.storage()).unwrap();
            feed(&mut m, &exchange(&c), 0);
            assert_eq!(m.flow_count(), 1, "{name} {vlans:?}");
            let f = only_flow(&m);
            assert_eq!(read_side(&m, f, Side::Server), b"GET / HTTP/1.1\r\n\r\n");
            assert_eq!(
                read_side(&m, f, Side::Client),
                b"HTTP/1.1 200 OK\r\n\r\nhello"
            );
            let ep = m.endpoints(f).unwrap();
            assert_eq!(ep.client, c.c);
            assert_eq!(ep.server, c.s);
            assert_eq!(m.counters().total_dropped(), 0);
        }
    }
}

fn state_trace(rec: &Recorder, side: Side) -> Vec<TcpState> {
    let mut v = vec![TcpState::Listen];
    for r in &rec.log {
        if r.ev == Event::TCP_STATE_CHANGE && r.side == side {
            let (c, s) = r.states.unwrap();
            v.push(if side == Side::Client { c } else { s });
        }
    }
    v
}

#[test]
fn rule_02_clean_close_walks_both_state_machines() {
    use TcpState::*;
    let c = Conn::v4(1000, 5000);
    let mut st = storage();
    let rec = Recorder::new(&[
        (Event::TCP_STATE_CHANGE, Hook::Snd),
        (Event::TCP_STATE_CHANGE, Hook::Rcv),
    ]);
    let mut m = Monitor::new(rec, cfg(), st.storage()).unwrap();
    let mut fr = exchange(&c);
    fr.extend(c.close(18, 24));
    feed(&mut m, &fr, 0);
    let rec = m.middlebox();
    assert_eq!(
        state_trace(rec, Side::Client),
        vec![Listen, SynSent, Established, FinWait1, FinWait2, TimeWait]
    );
    assert_eq!(
        state_trace(rec, Side::Server),
        vec![Listen, SynRcvd, Established, CloseWait, LastAck, Closed]
    );
    // The sender's change comes at the Snd hook, the receiver's at Rcv.
    let first = &rec.log[0];
    assert_eq!((first.hook, first.side), (Hook::Snd, Side::Client));
    assert_eq!(m.flow_count(), 0);
    assert_eq!(m.counters().flows_closed, 1);
}

#[test]
fn rule_02_rst_in_each_state_closes_both() {
    let c = Conn::v4(1, 2);
    let mut all = exchange(&c);
    // 18 request bytes, 24 response bytes.
    all.extend(c.close(18, 24));
    // Cut the script after k packets (every state the two sides pass through, LAST_ACK and
    // TIME_WAIT included) and send a RST from either side, at exactly the receiver's next
    // expected sequence number (RFC 5961 §3): script = SYN, SYN-ACK, ACK, request, response,
    // client FIN, server ACK, server FIN, (client ACK).
    for k in 1..all.len() {
        for from_client in [true, false] {
            let mut st = storage();
            let rec = Recorder::new(&[
                (Event::TCP_STATE_CHANGE, Hook::Any),
                (Event::CONN_END, Hook::Any),
            ]);
            let mut m = Monitor::new(rec, cfg(), st.storage()).unwrap();
            feed(&mut m, &all[..k], 0);
            // The flow ends only with the script's last packet, so it is live here.
            assert_eq!(m.flow_count(), 1, "k={k}: flow live before the RST");
            assert_eq!(
                m.middlebox()
                    .log
                    .iter()
                    .filter(|r| r.ev == Event::CONN_END)
                    .count(),
                0,
                "k={k}"
            );
            let rst = if from_client {
                // The server expects the request's end, then the FIN's sequence + 1.
                let next = match k {
                    1..=3 => 0,
                    4..=5 => 18,
                    _ => 19,
                };
                c.crst(next)
            } else if k == 1 {
                // The client in SYN_SENT takes only a RST that acknowledges its SYN.
                c.raw(false, 0, c.cseq(0), RST | ACK, &[])
            } else {
                let next = match k {
                    2..=4 => 0,
                    5..=7 => 24,
                    _ => 25,
                };
                c.srst(next)
            };
            feed(&mut m, &[rst], 1);
            let rec = m.middlebox();
            let end = rec.log.iter().filter(|r| r.ev == Event::CONN_END).count();
            assert_eq!(end, 1, "k={k} from_client={from_client}");
            let last_states = rec
                .log
                .iter()
                .rev()
                .find(|r| r.ev == Event::TCP_STATE_CHANGE)
                .unwrap();
            assert_eq!(
                last_states.states.unwrap(),
                (TcpState::Closed, TcpState::Closed),
                "k={k} from_client={from_client}"
            );
            assert_eq!(m.flow_count(), 0);
        }
    }
}

#[test]
fn rule_03_a_sides_buffer_holds_what_it_receives() {
    let c = Conn::v4(10, 20);
    let mut st = storage();
    let mut m = Monitor::new(Recorder::default(), cfg(), st.storage()).unwrap();
    feed(&mut m, &exchange(&c), 0);
    let f = only_flow(&m);
    // Side::Server's buffer is the client→server stream (requests).
    assert!(read_side(&m, f, Side::Server).starts_with(b"GET"));
    assert!(read_side(&m, f, Side::Client).starts_with(b"HTTP"));
}

#[test]
fn rule_04_offsets_continue_across_sequence_wrap() {
    let c = Conn::v4(u32::MAX - 5, u32::MAX - 1);
    let mut st = storage();
    let mut m = Monitor::new(Recorder::default(), cfg(), st.storage()).unwrap();
    let mut fr = handshake(&c);
    fr.push(c.cdata(0, b"0123456789"));
    fr.push(c.cdata(10, b"abcdefghij"));
    fr.push(c.sdata(0, b"xyz"));
    feed(&mut m, &fr, 0);
    let f = only_flow(&m);
    assert_eq!(read_side(&m, f, Side::Server), b"0123456789abcdefghij");
    let bi = m.buf_info(f, Side::Server).unwrap();
    assert_eq!(bi.init_seq, (u32::MAX - 5).wrapping_add(1));
    assert_eq!(bi.in_order_end, 20);
    let mut b = [0u8; 4];
    assert_eq!(m.ppeek(f, Side::Server, 8, &mut b), Ok(4));
    assert_eq!(&b, b"89ab");
}

#[test]
fn rule_04_offsets_pass_4_gib_without_wrapping() {
    // Buffering off on the server side keeps this fast; offsets are tracked all the same.
    let c = Conn::v4(0x8000_0000, 1);
    let mut st = storage();
    let cfg = Config {
        buffering: false,
        // One frame reused with a new sequence number each time: its checksum goes stale.
        checksums: monitor::Checksums::Ignore,
        ..cfg()
    };
    let mut m = Monitor::new(Recorder::default(), cfg, st.storage()).unwrap();
    feed(&mut m, &handshake(&c), 0);
    let chunk = vec![0x55u8; 60000];
    let mut frm = c.cdata(0, &chunk);
    let seq_at = 14 + 20 + 4;
    let total: u64 = (1u64 << 32) + 5 * 60000;
    let mut off = 0u64;
    m.begin_batch(10_000);
    while off < total {
        let seq = c.cseq(off);
        frm[seq_at..seq_at + 4].copy_from_slice(&seq.to_be_bytes());
        let _ = m.frame(&frm, 10_000);
        off += 60000;
    }
    m.end_batch();
    let f = only_flow(&m);
    let bi = m.buf_info(f, Side::Server).unwrap();
    assert_eq!(bi.in_order_end, off);
    assert!(bi.in_order_end > 1 << 32);
}

#[test]
fn rule_05_rings_draw_chunks_lazily_from_the_pool() {
    let c = Conn::v4(1, 2);
    let mut st = storage();
    let mut m = Monitor::new(Recorder::default(), cfg(), st.storage()).unwrap();
    let free0 = m.free_chunks();
    feed(&mut m, &handshake(&c), 0);
    assert_eq!(m.free_chunks(), free0, "an idle flow holds no chunk");
    feed(&mut m, &[c.cdata(0, &[1u8; 5000])], 10_000);
    assert_eq!(
        m.free_chunks(),
        free0 - 5000usize.div_ceil(CHUNK_SIZE),
        "5000 bytes need ceil(5000 / CHUNK_SIZE) chunks"
    );
    feed(&mut m, &c.close(5000, 0), 20_000);
    assert_eq!(m.free_chunks(), free0, "chunks return at flow end");
    // Idle-flow cost stays within budget.
    assert!(
        m.flow_state_bytes() <= 256,
        "flow state {} B",
        m.flow_state_bytes()
    );
}

#[test]
fn rule_06_out_of_order_fragments_merge() {
    let c = Conn::v4(1, 2);
    let mut st = storage();
    let rec = Recorder::new(&[(Event::CONN_NEW_DATA, Hook::Rcv)]);
    let mut m = Monitor::new(rec, cfg(), st.storage()).unwrap();
    feed(&mut m, &handshake(&c), 0);
    feed(
        &mut m,
        &[c.cdata(20, b"cccccccccc"), c.cdata(10, b"bbbbbbbbbb")],
        10_000,
    );
    let f = only_flow(&m);
    let mut frags = [Frag::default(); 4];
    assert_eq!(m.frag_info(f, Side::Server, &mut frags), Ok(1));
    assert_eq!(
        frags[0],
        Frag {
            offset: 10,
            len: 20
        }
    );
    assert_eq!(
        m.middlebox().count(Event::CONN_NEW_DATA),
        0,
        "nothing in order yet"
    );
    feed(&mut m, &[c.cdata(0, b"aaaaaaaaaa")], 20_000);
    assert_eq!(m.frag_info(f, Side::Server, &mut frags), Ok(1));
    assert_eq!(frags[0], Frag { offset: 0, len: 30 });
    assert_eq!(
        read_side(&m, f, Side::Server),
        b"aaaaaaaaaabbbbbbbbbbcccccccccc"
    );
    assert_eq!(m.middlebox().count(Event::CONN_NEW_DATA), 1);
}

/// Reads the stored byte at a fixed offset inside REXMIT, to prove REXMIT comes before storing.
#[derive(Default)]
struct RexmitProbe {
    seen: Vec<Result<usize, PeekError>>,
    byte: Vec<u8>,
    last: bool,
}
impl Middlebox for RexmitProbe {
    type Flow = ();
    fn init(&mut self, reg: &mut Registry) {
        reg.subscribe(Event::REXMIT, Hook::Rcv);
        reg.subscribe(Event::CONN_START, Hook::Rcv);
    }
    fn on_event(&mut self, cx: &mut Ctx<'_, '_, ()>, ev: Event, _h: Hook, side: Side) {
        let f = cx.flow().unwrap();
        if ev == Event::CONN_START && self.last {
            cx.set_overlap(f, Side::Server, Overlap::Last).unwrap();
        }
        if ev == Event::REXMIT {
            let mut b = [0u8; 1];
            let r = cx.ppeek(f, side, 25, &mut b);
            self.seen.push(r);
            self.byte.push(b[0]);
        }
    }
}

#[test]
fn rule_07_overlaps_first_wins_rexmit_before_store() {
    let c = Conn::v4(1, 2);
    let mut st = storage();
    let mut m = Monitor::new(RexmitProbe::default(), cfg(), st.storage()).unwrap();
    feed(&mut m, &handshake(&c), 0);
    feed(&mut m, &[c.cdata(20, b"AAAAAAAAAA")], 1);
    feed(&mut m, &[c.cdata(15, b"BBBBBBBBBBBBBBB")], 2); // overlaps the island
    let f = only_flow(&m);
    let mut b = [0u8; 15];
    assert_eq!(m.ppeek(f, Side::Server, 15, &mut b), Ok(15));
    assert_eq!(&b, b"BBBBBAAAAAAAAAA", "first copy of 20..30 wins");
    assert_eq!(m.middlebox().seen, vec![Ok(1)]);
    assert_eq!(
        m.middlebox().byte,
        vec![b'A'],
        "REXMIT saw the buffer before the store"
    );
    // Fully old retransmission: fill the head, then resend old bytes with other content.
    feed(&mut m, &[c.cdata(0, b"000000000000000")], 3);
    feed(&mut m, &[c.cdata(0, b"zzzzz")], 4);
    assert_eq!(
        m.middlebox().seen.len(),
        2,
        "the fill touches but does not overlap; the old resend does"
    );
    assert_eq!(
        read_side(&m, f, Side::Server),
        b"000000000000000BBBBBAAAAAAAAAA"
    );
}

#[test]
fn rule_07_last_copy_wins_when_switched() {
    let c = Conn::v4(1, 2);
    let mut st = storage();
    let probe = RexmitProbe {
        last: true,
        ..Default::default()
    };
    let mut m = Monitor::new(probe, cfg(), st.storage()).unwrap();
    feed(&mut m, &handshake(&c), 0);
    feed(
        &mut m,
        &[c.cdata(20, b"AAAAAAAAAA"), c.cdata(15, b"BBBBBBBBBBBBBBB")],
        1,
    );
    let f = only_flow(&m);
    let mut b = [0u8; 15];
    assert_eq!(m.ppeek(f, Side::Server, 15, &mut b), Ok(15));
    assert_eq!(&b, b"BBBBBBBBBBBBBBB");
    // REXMIT ran before the store: byte 25 was still the first copy's 'A' there, and the
    // store (last copy wins) turned it into 'B' only afterwards.
    assert_eq!(m.middlebox().seen, vec![Ok(1)]);
    assert_eq!(
        m.middlebox().byte,
        vec![b'A'],
        "REXMIT saw the buffer before the store"
    );
    // In-order bytes never change, even with last-wins.
    feed(
        &mut m,
        &[c.cdata(0, b"000000000000000"), c.cdata(0, b"zz")],
        2,
    );
    assert_eq!(&read_side(&m, f, Side::Server)[..2], b"00");
}

/// Subscribes ERROR and reads the doomed bytes inside it.
#[derive(Default)]
struct ErrProbe {
    errors: usize,
    first_byte_in_error: Vec<Result<usize, PeekError>>,
}
impl Middlebox for ErrProbe {
    type Flow = ();
    fn init(&mut self, reg: &mut Registry) {
        reg.subscribe(Event::ERROR, Hook::Rcv);
    }
    fn on_event(&mut self, cx: &mut Ctx<'_, '_, ()>, _ev: Event, _h: Hook, side: Side) {
        self.errors += 1;
        let f = cx.flow().unwrap();
        let bi = cx.buf_info(f, side).unwrap();
        let mut b = [0u8; 1];
        self.first_byte_in_error
            .push(cx.ppeek(f, side, bi.oldest, &mut b));
    }
}

#[test]
fn rule_08_full_ring_overwrites_oldest_after_error() {
    let c = Conn::v4(1, 2);
    let mut st = storage();
    let cfg = Config {
        side_capacity: 2 * CHUNK_SIZE as u32,
        ..cfg()
    };
    let mut m = Monitor::new(ErrProbe::default(), cfg, st.storage()).unwrap();
    feed(&mut m, &handshake(&c), 0);
    let data: Vec<u8> = (0..3 * CHUNK_SIZE).map(|i| (i % 251) as u8).collect();
    for (i, ch) in data.chunks(1000).enumerate() {
        feed(&mut m, &[c.cdata(i as u64 * 1000, ch)], 10 + i as u64);
    }
    let f = only_flow(&m);
    // 3 chunks of data into a 2-chunk ring: the first chunk is overwritten, once.
    assert_eq!(
        m.middlebox().errors,
        1,
        "ERROR before overwriting unread bytes"
    );
    assert!(
        m.middlebox()
            .first_byte_in_error
            .iter()
            .all(|r| *r == Ok(1)),
        "doomed bytes readable inside ERROR"
    );
    let bi = m.buf_info(f, Side::Server).unwrap();
    assert_eq!(bi.in_order_end, data.len() as u64);
    assert_eq!(bi.oldest, CHUNK_SIZE as u64);
    assert_eq!(read_side(&m, f, Side::Server), &data[bi.oldest as usize..]);
    assert_eq!(m.counters().bytes_overwritten, CHUNK_SIZE as u64);
    // peek: Overwritten once, then the oldest bytes.
    let mut b = [0u8; 16];
    assert_eq!(
        m.peek(f, Side::Server, &mut b),
        Err(PeekError::Overwritten {
            oldest: bi.oldest,
            missed: bi.oldest
        })
    );
    assert_eq!(m.peek(f, Side::Server, &mut b), Ok(16));
    assert_eq!(&b[..], &data[bi.oldest as usize..bi.oldest as usize + 16]);
}

#[test]
fn rule_08_data_past_a_hole_beyond_capacity_is_dropped_with_error() {
    let c = Conn::v4(1, 2);
    let mut st = storage();
    let cfg = Config {
        side_capacity: 2 * CHUNK_SIZE as u32,
        ..cfg()
    };
    let mut m = Monitor::new(ErrProbe::default(), cfg, st.storage()).unwrap();
    feed(&mut m, &handshake(&c), 0);
    // Hole at 0..10, then 1000 bytes ending 808 bytes past the capacity of two chunks.
    feed(&mut m, &[c.cdata(10, &[7u8; 1000])], 1);
    let e0 = m.middlebox().errors;
    let at = 2 * CHUNK_SIZE as u64 - 192;
    feed(&mut m, &[c.cdata(at, &[9u8; 1000])], 2);
    assert_eq!(m.counters().bytes_dropped, 808);
    assert_eq!(m.middlebox().errors, e0 + 1);
    let f = only_flow(&m);
    let bi = m.buf_info(f, Side::Server).unwrap();
    assert_eq!(bi.last_end, 2 * CHUNK_SIZE as u64);
}

#[derive(Default)]
struct DisableOne {
    new_data: usize,
}
impl Middlebox for DisableOne {
    type Flow = ();
    fn init(&mut self, reg: &mut Registry) {
        reg.subscribe(Event::CONN_START, Hook::Snd);
        reg.subscribe(Event::CONN_NEW_DATA, Hook::Rcv);
    }
    fn on_event(&mut self, cx: &mut Ctx<'_, '_, ()>, ev: Event, _h: Hook, _side: Side) {
        let f = cx.flow().unwrap();
        if ev == Event::CONN_START {
            cx.disable_buffer(f, Side::Server).unwrap();
        } else {
            self.new_data += 1;
        }
    }
}

#[test]
fn rule_09_buffering_off_per_side_and_per_monitor() {
    let c = Conn::v4(1, 2);
    let mut st = storage();
    let mut m = Monitor::new(DisableOne::default(), cfg(), st.storage()).unwrap();
    let free0 = m.free_chunks();
    feed(&mut m, &exchange(&c), 0);
    let f = only_flow(&m);
    let mut b = [0u8; 4];
    assert_eq!(
        m.ppeek(f, Side::Server, 0, &mut b),
        Err(PeekError::BufferDisabled)
    );
    assert_eq!(m.ppeek(f, Side::Client, 0, &mut b), Ok(4));
    assert_eq!(
        m.buf_info(f, Side::Server).unwrap().in_order_end,
        18,
        "still tracked"
    );
    assert_eq!(m.middlebox().new_data, 2, "events go on");
    assert_eq!(m.free_chunks(), free0 - 1);
    assert_eq!(m.tcp_state(f, Side::Server), Ok(TcpState::Established));
    // Per monitor.
    let mut st2 = storage();
    let mut m2 = Monitor::new(
        Recorder::default(),
        Config {
            buffering: false,
            ..cfg()
        },
        st2.storage(),
    )
    .unwrap();
    feed(&mut m2, &exchange(&c), 0);
    let f2 = only_flow(&m2);
    assert_eq!(
        m2.ppeek(f2, Side::Client, 0, &mut b),
        Err(PeekError::BufferDisabled)
    );
    assert_eq!(m2.free_chunks(), 256);
}

#[test]
fn rule_10_ppeek_stops_at_holes_and_moves_nothing() {
    let c = Conn::v4(1, 2);
    let mut st = storage();
    let mut m = Monitor::new(Recorder::default(), cfg(), st.storage()).unwrap();
    feed(&mut m, &handshake(&c), 0);
    feed(&mut m, &[c.cdata(0, b"hello"), c.cdata(10, b"world")], 1);
    let f = only_flow(&m);
    let mut b = [0u8; 100];
    assert_eq!(m.ppeek(f, Side::Server, 0, &mut b), Ok(5));
    assert_eq!(m.ppeek(f, Side::Server, 2, &mut b), Ok(3));
    assert_eq!(m.ppeek(f, Side::Server, 5, &mut b), Err(PeekError::NoData));
    assert_eq!(m.ppeek(f, Side::Server, 12, &mut b), Ok(3));
    assert_eq!(&b[..3], b"rld");
    assert_eq!(m.ppeek(f, Side::Server, 15, &mut b), Err(PeekError::NoData));
    assert_eq!(
        m.ppeek(f, Side::Server, 0, &mut []),
        Ok(0),
        "Ok(0) only for an empty buffer"
    );
    assert_eq!(
        m.buf_info(f, Side::Server).unwrap().read,
        0,
        "no cursor moved"
    );
}

#[test]
fn rule_11_peek_returns_zero_when_nothing_new() {
    let c = Conn::v4(1, 2);
    let mut st = storage();
    let mut m = Monitor::new(Recorder::default(), cfg(), st.storage()).unwrap();
    feed(&mut m, &handshake(&c), 0);
    let f = only_flow(&m);
    let mut b = [0u8; 3];
    assert_eq!(m.peek(f, Side::Server, &mut b), Ok(0));
    feed(&mut m, &[c.cdata(0, b"abcdefg")], 1);
    assert_eq!(m.peek(f, Side::Server, &mut b), Ok(3));
    assert_eq!(m.peek(f, Side::Server, &mut b), Ok(3));
    assert_eq!(m.peek(f, Side::Server, &mut b), Ok(1));
    assert_eq!(&b[..1], b"g");
    assert_eq!(m.peek(f, Side::Server, &mut b), Ok(0));
    assert_eq!(m.peek(f, Side::Server, &mut b), Ok(0));
}

#[test]
fn rule_12_frag_info_and_buf_info() {
    let c = Conn::v4(41, 2);
    let mut st = storage();
    let mut m = Monitor::new(Recorder::default(), cfg(), st.storage()).unwrap();
    feed(&mut m, &handshake(&c), 0);
    feed(
        &mut m,
        &[c.cdata(0, b"aaaa"), c.cdata(8, b"bbbb"), c.cdata(20, b"cc")],
        1,
    );
    let f = only_flow(&m);
    let mut out = [Frag::default(); 2];
    assert_eq!(
        m.frag_info(f, Side::Server, &mut out),
        Ok(3),
        "count of all, only 2 written"
    );
    assert_eq!(
        out,
        [Frag { offset: 0, len: 4 }, Frag { offset: 8, len: 4 }]
    );
    let mut b = [0u8; 2];
    m.peek(f, Side::Server, &mut b).unwrap();
    let bi = m.buf_info(f, Side::Server).unwrap();
    assert_eq!(bi.init_seq, 42);
    assert_eq!(
        (bi.oldest, bi.read, bi.in_order_end, bi.last_end),
        (0, 2, 4, 22)
    );
}

#[test]
fn rule_13_every_peek_error_and_errno() {
    // errno values of the mtcp_ppeek page (Linux).
    assert_eq!(PeekError::InvalidContext.errno(), 13);
    assert_eq!(PeekError::BadFlow.errno(), 9);
    assert_eq!(PeekError::BufferDisabled.errno(), 22);
    assert_eq!(PeekError::WrongType.errno(), 94);
    assert_eq!(PeekError::NotConnected.errno(), 107);
    assert_eq!(PeekError::NoData.errno(), 61);
    assert_eq!(
        PeekError::Overwritten {
            oldest: 1,
            missed: 1
        }
        .errno(),
        61
    );
    assert_eq!(PeekError::NotPermitted.errno(), 1);

    let c = Conn::v4(1, 2);
    let mut st = storage();
    let mut m = Monitor::new(Recorder::default(), cfg(), st.storage()).unwrap();
    let mut st_b = storage();
    let mut other = Monitor::new(
        Recorder::default(),
        Config { core: 1, ..cfg() },
        st_b.storage(),
    )
    .unwrap();
    feed(&mut m, &[c.syn()], 0);
    feed(&mut other, &[c.syn()], 0);
    let f = only_flow(&m);
    let g = only_flow(&other);
    let mut b = [0u8; 4];
    // NotConnected: the server→client stream has no origin before the SYN-ACK.
    assert_eq!(
        m.ppeek(f, Side::Client, 0, &mut b),
        Err(PeekError::NotConnected)
    );
    // InvalidContext: a handle of core 1 used on core 0.
    assert_eq!(
        m.ppeek(g, Side::Server, 0, &mut b),
        Err(PeekError::InvalidContext)
    );
    // NoData: nothing stored yet.
    assert_eq!(m.ppeek(f, Side::Server, 0, &mut b), Err(PeekError::NoData));
    feed(&mut m, &[c.synack(), c.ack()], 1000);
    m.disable_buffer(f, Side::Client).unwrap();
    // BufferDisabled.
    assert_eq!(
        m.peek(f, Side::Client, &mut b),
        Err(PeekError::BufferDisabled)
    );
    // Overwritten: covered in rule_08 for peek; ppeek below the oldest byte here.
    let cfg_small = Config {
        side_capacity: CHUNK_SIZE as u32,
        ..cfg()
    };
    let mut st3 = storage();
    let mut m3 = Monitor::new(Recorder::default(), cfg_small, st3.storage()).unwrap();
    feed(&mut m3, &handshake(&c), 0);
    feed(
        &mut m3,
        &[
            c.cdata(0, &vec![1u8; CHUNK_SIZE]),
            c.cdata(CHUNK_SIZE as u64, &[2u8; 10]),
        ],
        1,
    );
    let h = only_flow(&m3);
    assert_eq!(
        m3.ppeek(h, Side::Server, 3, &mut b),
        Err(PeekError::Overwritten {
            oldest: CHUNK_SIZE as u64,
            missed: CHUNK_SIZE as u64 - 3
        })
    );
    // BadFlow: the flow closed; the handle is stale even after its slot is reused.
    feed(&mut m, &[c.crst(0)], 2000);
    assert_eq!(m.ppeek(f, Side::Server, 0, &mut b), Err(PeekError::BadFlow));
    let c2 = Conn {
        c: ("10.9.9.9".parse().unwrap(), 1234),
        ..Conn::v4(5, 6)
    };
    feed(&mut m, &exchange(&c2), 3000);
    let f2 = only_flow(&m);
    assert_eq!(f2.slot(), f.slot(), "slot reused");
    assert_eq!(m.ppeek(f, Side::Server, 0, &mut b), Err(PeekError::BadFlow));
    assert_eq!(m.ppeek(f2, Side::Server, 0, &mut b), Ok(4));
    // WrongType and NotPermitted are unreachable from Rust (documented on the variants).
    assert!(PeekError::WrongType.to_string().contains("raw"));
}

#[test]
fn rule_14_builtin_events_numbered_as_mos_with_hooks() {
    assert_eq!(Event::PKT_IN.bits(), 1 << 0);
    assert_eq!(Event::CONN_START.bits(), 1 << 2);
    assert_eq!(Event::CONN_NEW_DATA.bits(), 1 << 4);
    assert_eq!(Event::ERROR.bits(), 1 << 5);
    assert_eq!(Event::TCP_STATE_CHANGE.bits(), 1 << 7);
    assert_eq!(Event::ORPHAN.bits(), 1 << 8);
    assert_eq!(Event::REXMIT.bits(), 1 << 9);
    assert_eq!(Event::CONN_END.bits(), 1 << 10);
    let c = Conn::v4(1, 2);
    let mut st = storage();
    let rec = Recorder::new(&[
        (Event::PKT_IN, Hook::Snd),
        (Event::PKT_IN, Hook::Rcv),
        (Event::PKT_IN, Hook::Any),
    ]);
    let mut m = Monitor::new(rec, cfg(), st.storage()).unwrap();
    feed(&mut m, &[c.syn(), c.synack()], 0);
    let log = &m.middlebox().log;
    let views: Vec<(Hook, Side)> = log.iter().map(|r| (r.hook, r.side)).collect();
    assert_eq!(
        views,
        vec![
            (Hook::Snd, Side::Client),
            (Hook::Rcv, Side::Server),
            (Hook::Any, Side::Server),
            (Hook::Snd, Side::Server),
            (Hook::Rcv, Side::Client),
            (Hook::Any, Side::Client),
        ]
    );
    assert!(log
        .iter()
        .all(|r| r.flow.is_some() && r.ev == Event::PKT_IN));
}

/// A child of NEW_DATA ("request starts with GET") and a grandchild ("... and contains 'x'").
#[derive(Default)]
struct Ude {
    get: Option<Event>,
    getx: Option<Event>,
    hits: Vec<Event>,
    filter_calls: usize,
}
impl Middlebox for Ude {
    type Flow = ();
    fn init(&mut self, reg: &mut Registry) {
        let get = reg.define(Event::CONN_NEW_DATA, 1).unwrap();
        assert_eq!(
            reg.define(Event::CONN_NEW_DATA, 1).unwrap(),
            get,
            "identical definitions share an id"
        );
        let getx = reg.define(get, 2).unwrap();
        assert_ne!(get, getx);
        reg.subscribe(get, Hook::Rcv);
        reg.subscribe(getx, Hook::Rcv);
        self.get = Some(get);
        self.getx = Some(getx);
    }
    fn on_event(&mut self, _cx: &mut Ctx<'_, '_, ()>, ev: Event, _h: Hook, _s: Side) {
        self.hits.push(ev);
    }
    fn filter(
        &mut self,
        key: u32,
        cx: &mut Ctx<'_, '_, ()>,
        _p: Event,
        _h: Hook,
        side: Side,
    ) -> bool {
        self.filter_calls += 1;
        let f = cx.flow().unwrap();
        let mut b = [0u8; 64];
        let n = cx.ppeek(f, side, 0, &mut b).unwrap_or(0);
        match key {
            1 => b[..n].starts_with(b"GET"),
            2 => b[..n].contains(&b'x'),
            _ => false,
        }
    }
}

#[test]
fn rule_15_user_defined_events_with_filters() {
    let c = Conn::v4(1, 2);
    let mut st = storage();
    let mut m = Monitor::new(Ude::default(), cfg(), st.storage()).unwrap();
    feed(&mut m, &exchange(&c), 0); // "GET / ..." from the client; "HTTP/..." from the server
    let (get, getx) = (m.middlebox().get.unwrap(), m.middlebox().getx.unwrap());
    assert_eq!(
        m.middlebox().hits,
        vec![get],
        "child raised, grandchild filtered out"
    );
    feed(&mut m, &[c.cdata(18, b"x")], 10_000);
    assert_eq!(
        m.middlebox().hits,
        vec![get, get, getx],
        "children of children"
    );
    assert!(!get.is_builtin());
}

#[test]
fn rule_16_new_data_once_per_side_per_batch_and_conn_end_once() {
    let c = Conn::v4(1, 2);
    let mut st = storage();
    let mut rec = Recorder::new(&[
        (Event::CONN_NEW_DATA, Hook::Rcv),
        (Event::CONN_END, Hook::Snd),
        (Event::CONN_END, Hook::Rcv),
    ]);
    rec.peek_all = true;
    rec.end_read = true;
    let mut m = Monitor::new(rec, cfg(), st.storage()).unwrap();
    feed(&mut m, &handshake(&c), 0);
    feed_batch(
        &mut m,
        &[
            c.cdata(0, b"aa"),
            c.cdata(2, b"bb"),
            c.sdata(0, b"xx"),
            c.cdata(4, b"cc"),
            c.sdata(2, b"yy"),
        ],
        10,
    );
    let nd: Vec<Side> = m
        .middlebox()
        .log
        .iter()
        .filter(|r| r.ev == Event::CONN_NEW_DATA)
        .map(|r| r.side)
        .collect();
    assert_eq!(nd.len(), 2, "one per side for the batch: {nd:?}");
    // Data in FIN_WAIT: client closes, server keeps sending.
    feed(&mut m, &[c.cfin(6, 4), c.sack(4, 7)], 20);
    let f = only_flow(&m);
    assert_eq!(m.tcp_state(f, Side::Client), Ok(TcpState::FinWait2));
    feed(&mut m, &[c.sdata(4, b"zz")], 30);
    let nd2 = m
        .middlebox()
        .log
        .iter()
        .filter(|r| r.ev == Event::CONN_NEW_DATA)
        .count();
    assert_eq!(nd2, 3, "new data in FIN_WAIT_2");
    feed(&mut m, &[c.sfin(6, 7), c.cack(7, 7)], 40);
    let rec = m.middlebox();
    assert_eq!(
        rec.count(Event::CONN_END),
        1,
        "once per flow even when subscribed at two hooks"
    );
    assert_eq!(rec.at_end.len(), 1);
    assert_eq!(rec.at_end[0].2, b"aabbcc", "readable inside CONN_END");
    assert_eq!(rec.at_end[0].1, b"xxyyzz");
    assert_eq!(rec.streams[&(f.slot(), Side::Server)], b"aabbcc");
    assert_eq!(rec.streams[&(f.slot(), Side::Client)], b"xxyyzz");
}

#[test]
fn rule_17_orphans_and_optional_pickup() {
    let c = Conn::v4(1000, 2000);
    let mut st = storage();
    let rec = Recorder::new(&[(Event::ORPHAN, Hook::Any), (Event::CONN_START, Hook::Any)]);
    let mut m = Monitor::new(rec, cfg(), st.storage()).unwrap();
    feed(&mut m, &[c.cdata(100, b"mid"), c.sdata(50, b"stream")], 0);
    assert_eq!(m.middlebox().count(Event::ORPHAN), 2);
    assert_eq!(m.flow_count(), 0);
    assert_eq!(m.counters().drop_count(DropReason::Orphan), 2);
    assert_eq!(m.middlebox().log[0].flow, None);

    // Pickup on: the server is the lower port even if it speaks first.
    let mut st2 = storage();
    let rec = Recorder::new(&[(Event::CONN_START, Hook::Any)]);
    let mut m = Monitor::new(
        rec,
        Config {
            pickup: true,
            ..cfg()
        },
        st2.storage(),
    )
    .unwrap();
    feed(
        &mut m,
        &[
            c.sdata(50, b"stream"),
            c.cdata(100, b"mid"),
            c.sdata(56, b"ing"),
            c.cack(103, 59),
        ],
        0,
    );
    let f = only_flow(&m);
    assert_eq!(m.endpoints(f).unwrap().server, c.s);
    assert_eq!(
        read_side(&m, f, Side::Client),
        b"streaming",
        "offsets from the first byte seen"
    );
    assert_eq!(read_side(&m, f, Side::Server), b"mid");
    assert_eq!(m.buf_info(f, Side::Client).unwrap().init_seq, c.sseq(50));
    assert_eq!(m.tcp_state(f, Side::Client), Ok(TcpState::Established));
    assert_eq!(m.counters().flows_picked_up, 1);
    assert_eq!(m.middlebox().count(Event::CONN_START), 1);
    // Equal ports: the first sender is the client.
    let mut st3 = storage();
    let mut m = Monitor::new(
        Recorder::default(),
        Config {
            pickup: true,
            ..cfg()
        },
        st3.storage(),
    )
    .unwrap();
    let mut e = Conn::v4(1, 2);
    e.c.1 = 7000;
    e.s.1 = 7000;
    feed(&mut m, &[e.sdata(0, b"first")], 0);
    let f = only_flow(&m);
    assert_eq!(m.endpoints(f).unwrap().client, e.s);
    // A bare ACK or FIN never starts a picked-up flow.
    feed(&mut m, &[c.cack(5, 5), c.cfin(5, 5)], 10);
    assert_eq!(m.flow_count(), 1);
}

#[test]
fn rule_18_per_core_timers_one_shot_and_periodic() {
    let mut st = storage();
    let rec = Recorder {
        arm: vec![(1, 5_000, 0), (2, 1_000, 2_000)],
        ..Default::default()
    };
    let mut m = Monitor::new(rec, cfg(), st.storage()).unwrap();
    for t in (0..=10_000).step_by(500) {
        m.tick(t);
    }
    let fires = &m.middlebox().timer_fires;
    assert_eq!(
        fires
            .iter()
            .filter(|f| f.0 == 1)
            .map(|f| f.1)
            .collect::<Vec<_>>(),
        vec![5_000]
    );
    assert_eq!(
        fires
            .iter()
            .filter(|f| f.0 == 2)
            .map(|f| f.1)
            .collect::<Vec<_>>(),
        vec![1_000, 3_000, 5_000, 7_000, 9_000]
    );
    assert!(m.registry().cancel_timer(2));
    m.tick(20_000);
    assert_eq!(m.middlebox().timer_fires.len(), 6);
}

/// Inline actions: drop SYNs to port 81, NAT-like rewrite of the client port on PKT_IN(Snd),
/// stop monitoring flows to port 82, inject a copy of the first data packet.
#[derive(Default)]
struct Inline {
    results: Vec<Result<(), ActionError>>,
    events: usize,
}
impl Middlebox for Inline {
    type Flow = ();
    fn init(&mut self, reg: &mut Registry) {
        reg.subscribe(Event::PKT_IN, Hook::Snd);
    }
    fn on_event(&mut self, cx: &mut Ctx<'_, '_, ()>, _ev: Event, _h: Hook, side: Side) {
        self.events += 1;
        let f = cx.flow().unwrap();
        let port = cx.endpoints(f).unwrap().server.1;
        match port {
            81 => self.results.push(cx.drop_packet()),
            80 if side == Side::Client => {
                let r = cx.packet_mut().map(|p| {
                    // Client source port sits at 14 + 20.
                    p[34..36].copy_from_slice(&5555u16.to_be_bytes());
                });
                self.results.push(r);
                let pkt = cx.packet().unwrap().to_vec();
                self.results.push(cx.inject(&pkt));
            }
            82 => self.results.push(cx.stop_monitoring()),
            _ => {}
        }
    }
}

fn checksums_ok(f: &[u8]) -> bool {
    use smoltcp::wire::{IpAddress, Ipv4Packet, TcpPacket};
    let ip = Ipv4Packet::new_checked(&f[14..]).unwrap();
    let t = TcpPacket::new_checked(ip.payload()).unwrap();
    ip.verify_checksum()
        && t.verify_checksum(
            &IpAddress::Ipv4(ip.src_addr()),
            &IpAddress::Ipv4(ip.dst_addr()),
        )
}

#[test]
fn rule_19_inline_drop_rewrite_stop_inject() {
    let mut st = storage();
    let mut m = Monitor::new(
        Inline::default(),
        Config {
            inline: true,
            ..cfg()
        },
        st.storage(),
    )
    .unwrap();
    let mut c81 = Conn::v4(1, 2);
    c81.s.1 = 81;
    m.begin_batch(0);
    assert_eq!(m.frame(&c81.syn(), 0), Verdict::Drop);
    let c80 = Conn::v4(1, 2);
    let syn = c80.syn();
    match m.frame(&syn, 0) {
        Verdict::Rewritten(b) => {
            assert_eq!(&b[34..36], &5555u16.to_be_bytes());
            assert!(checksums_ok(b), "checksums fixed");
            assert_eq!(b.len(), syn.len());
        }
        v => panic!("{v:?}"),
    }
    let mut inj = Vec::new();
    m.drain_injected(|f| inj.push(f.to_vec()));
    assert_eq!(inj.len(), 1);
    let mut c82 = Conn::v4(1, 2);
    c82.s.1 = 82;
    assert_eq!(m.frame(&c82.syn(), 0), Verdict::Forward);
    let ev = m.middlebox().events;
    assert_eq!(m.frame(&c82.synack(), 0), Verdict::Forward);
    assert_eq!(m.middlebox().events, ev, "no events after stop");
    assert_eq!(m.counters().drop_count(DropReason::Unmonitored), 1);
    m.end_batch();
    assert!(
        m.middlebox().results.iter().all(|r| r.is_ok()),
        "{:?}",
        m.middlebox().results
    );
}

#[test]
fn rule_20_tap_mode_never_transmits() {
    let mut st = storage();
    let mut m = Monitor::new(Inline::default(), cfg(), st.storage()).unwrap();
    let mut c81 = Conn::v4(1, 2);
    c81.s.1 = 81;
    let c80 = Conn::v4(1, 2);
    m.begin_batch(0);
    assert_eq!(m.frame(&c81.syn(), 0), Verdict::Forward);
    assert_eq!(m.frame(&c80.syn(), 0), Verdict::Forward);
    m.end_batch();
    let mut n = 0;
    m.drain_injected(|_| n += 1);
    assert_eq!(n, 0);
    assert_eq!(
        m.middlebox().results,
        vec![
            Err(ActionError::TapMode),
            Err(ActionError::TapMode),
            Err(ActionError::TapMode)
        ]
    );
}

#[test]
fn rule_21_malformed_frames_are_counted_and_harm_no_flow() {
    let c = Conn::v4(1, 2);
    let good = c.cdata(0, b"hello");
    let mut bad: Vec<(Vec<u8>, DropReason)> = vec![
        (vec![], DropReason::TruncatedEthernet),
        (good[..10].to_vec(), DropReason::TruncatedEthernet),
        (good[..20].to_vec(), DropReason::BadIpv4),
        (good[..40].to_vec(), DropReason::BadIpv4), // total length beyond the frame
    ];
    let mut v = good.clone();
    v[14] = 0x41; // IHL 4 (< 20 bytes)
    bad.push((v, DropReason::BadIpv4));
    let mut v = good.clone();
    v[14 + 20 + 12] = 0x20; // TCP data offset 8 bytes
    bad.push((v, DropReason::BadTcp));
    let mut v = good.clone();
    v[14 + 20 + 12] = 0xf0; // TCP data offset past the segment
    bad.push((v, DropReason::BadTcp));
    let mut v = good.clone();
    v[14 + 9] = 17; // UDP
    bad.push((v, DropReason::NotTcp));
    let mut v = good.clone();
    v[12..14].copy_from_slice(&0x0806u16.to_be_bytes()); // ARP
    bad.push((v, DropReason::NotIp));
    // Six tags are walked (any number is): the IPv4 header after them is missing.
    let mut v = vec![0u8; 12];
    for _ in 0..6 {
        v.extend_from_slice(&[0x81, 0x00, 0, 1]);
    }
    v.extend_from_slice(&[0x08, 0x00]);
    bad.push((v, DropReason::BadIpv4));
    // A tag cut short.
    let mut v = vec![0u8; 12];
    v.extend_from_slice(&[0x81, 0x00, 0, 1, 0x81, 0x00, 0]);
    bad.push((v, DropReason::BadVlan));
    let mut jumbo = c.cdata(5, &vec![b'j'; 9000]);
    jumbo.truncate(5000); // IP total length lies
    bad.push((jumbo, DropReason::BadIpv4));
    let mut st = storage();
    let mut rec = Recorder::new(&[(Event::CONN_NEW_DATA, Hook::Rcv)]);
    rec.peek_all = true;
    // The frames are edited in place: checks of their (stale) checksums would come first.
    let cfg = Config {
        checksums: monitor::Checksums::Ignore,
        ..cfg()
    };
    let mut m = Monitor::new(rec, cfg, st.storage()).unwrap();
    feed(&mut m, &handshake(&c), 0);
    for (i, (f, why)) in bad.iter().enumerate() {
        let before = m.counters().drop_count(*why);
        feed(&mut m, std::slice::from_ref(f), 10 + i as u64);
        assert_eq!(
            m.counters().drop_count(*why),
            before + 1,
            "frame {i} counted as {why:?}"
        );
    }
    feed(&mut m, &[good], 100);
    let f = only_flow(&m);
    assert_eq!(m.middlebox().streams[&(f.slot(), Side::Server)], b"hello");
}

#[test]
fn rule_22_flow_table_full_evicts_least_recent_and_counts() {
    let mut st: HostStorage<PerFlow> = HostStorage::new(4, 64, 1);
    let rec = Recorder::new(&[(Event::CONN_END, Hook::Any)]);
    let mut m = Monitor::new(rec, cfg(), st.storage()).unwrap();
    let conns: Vec<Conn> = (0..6)
        .map(|i| Conn {
            c: (format!("10.0.0.{}", i + 1).parse().unwrap(), 1000),
            ..Conn::v4(1, 2)
        })
        .collect();
    for (i, c) in conns.iter().enumerate() {
        feed(&mut m, &[c.syn()], i as u64 * 1000);
    }
    assert_eq!(m.flow_count(), 4);
    assert_eq!(m.counters().flows_evicted, 2);
    assert_eq!(
        m.middlebox().count(Event::CONN_END),
        2,
        "evicted flows get CONN_END"
    );
    // The two oldest went.
    let clients: Vec<_> = m.flows().map(|f| m.endpoints(f).unwrap().client).collect();
    assert!(!clients.contains(&conns[0].c) && !clients.contains(&conns[1].c));
}

#[test]
fn rule_22_pool_empty_drops_counts_and_raises_error() {
    let mut st: HostStorage<()> = HostStorage::new(8, 2, 1);
    let mut m = Monitor::new(ErrProbeUnit::default(), cfg(), st.storage()).unwrap();
    let a = Conn::v4(1, 2);
    let b = Conn {
        c: ("10.0.0.2".parse().unwrap(), 1),
        ..Conn::v4(1, 2)
    };
    feed(&mut m, &handshake(&a), 0);
    feed(&mut m, &handshake(&b), 0);
    feed(&mut m, &[a.cdata(0, &vec![1u8; 2 * CHUNK_SIZE])], 1);
    assert_eq!(m.free_chunks(), 0);
    feed(&mut m, &[b.cdata(0, b"no room")], 2);
    assert_eq!(m.counters().bytes_dropped, 7);
    assert_eq!(m.counters().pool_exhausted, 1);
    assert_eq!(m.middlebox().0, 1, "ERROR raised");
    // Flows keep working; when a's flow ends its chunks come back and b can store again.
    feed(&mut m, &[a.crst(2 * CHUNK_SIZE as u64)], 3);
    feed(&mut m, &[b.cdata(0, b"no room")], 4);
    assert_eq!(m.counters().bytes_dropped, 7);
}

#[derive(Default)]
struct ErrProbeUnit(usize);
impl Middlebox for ErrProbeUnit {
    type Flow = ();
    fn init(&mut self, reg: &mut Registry) {
        reg.subscribe(Event::ERROR, Hook::Any);
    }
    fn on_event(&mut self, _cx: &mut Ctx<'_, '_, ()>, _ev: Event, _h: Hook, _s: Side) {
        self.0 += 1;
    }
}

#[test]
fn rule_22_fragment_table_full_evicts_oldest() {
    let mut st: HostStorage<PerFlow> = HostStorage::new(8, 8, 2);
    let mut m = Monitor::new(Recorder::default(), cfg(), st.storage()).unwrap();
    let c = Conn::v4(1, 2);
    let p = Pkt {
        src: c.c.0,
        dst: c.s.0,
        sport: c.c.1,
        dport: c.s.1,
        seq: 1,
        ack: 0,
        flags: SYN,
        payload: vec![0; 100],
        vlans: vec![],
        wscale: None,
    };
    for id in 0..3u16 {
        let frs = ipv4_fragments(&p, 64, id);
        feed(&mut m, &frs[..1], id as u64); // first fragment only: never completes
    }
    assert_eq!(m.counters().drop_count(DropReason::FragEvicted), 1);
    m.tick(10_000_000);
    assert_eq!(m.counters().drop_count(DropReason::FragTimeout), 2);
}
