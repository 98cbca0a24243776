//! TCP as the endpoints see it (issue 13 item 1): RSTs accepted only where the receiver would
//! accept them (RFC 5961 §3), SYNs on a synchronized connection ignored (§4), no data past a
//! FIN, simultaneous close, and a hole the receiver acknowledged (tap loss). Every ignored
//! segment raises `ERROR` with its reason.

mod common;

use common::*;
use monitor::{Config, ErrorReason, Event, Hook, LossCause, Monitor, Side, TcpState};

fn errors_and_states() -> Recorder {
    Recorder::new(&[
        (Event::ERROR, Hook::Rcv),
        (Event::TCP_STATE_CHANGE, Hook::Any),
        (Event::CONN_END, Hook::Any),
        (Event::CONN_START, Hook::Any),
    ])
}

fn established(c: &Conn) -> Vec<Vec<u8>> {
    vec![
        c.syn(),
        c.synack(),
        c.ack(),
        c.cdata(0, b"0123456789"),
        c.sdata(0, b"abcde"),
    ]
}

fn states(m: &Monitor<'_, Recorder>) -> (TcpState, TcpState) {
    let f = m.flows().next().expect("a live flow");
    (
        m.tcp_state(f, Side::Client).unwrap(),
        m.tcp_state(f, Side::Server).unwrap(),
    )
}

#[test]
fn rst_not_at_the_next_sequence_is_ignored_with_error() {
    let c = Conn::v4(1000, 5000);
    // The server expects client offset 10 next; the client expects server offset 5.
    for (name, rst) in [
        ("in window, not exact", c.crst(11)),
        ("in window, far", c.crst(3000)),
        ("out of window", c.crst(1 << 30)),
        ("before the stream", c.crst(0)),
        ("server, inexact", c.srst(4)),
    ] {
        let mut st = storage();
        let mut m = Monitor::new(errors_and_states(), cfg(), st.storage()).unwrap();
        feed(&mut m, &established(&c), 0);
        feed(&mut m, &[rst], 10_000);
        assert_eq!(m.flow_count(), 1, "{name}: the connection lives on");
        assert_eq!(states(&m), (TcpState::Established, TcpState::Established));
        assert_eq!(
            m.middlebox().errors,
            vec![(Hook::Rcv, ErrorReason::RstNotAtNextSeq)],
            "{name}"
        );
        assert_eq!(m.counters().bad_segments, 1, "{name}");
        // The stream goes on in the same flow.
        feed(&mut m, &[c.cdata(10, b"KLMN")], 20_000);
        let f = m.flows().next().unwrap();
        let mut b = [0u8; 14];
        assert_eq!(m.ppeek(f, Side::Server, 0, &mut b), Ok(14), "{name}");
        assert_eq!(&b, b"0123456789KLMN");
        // The exact RST (the challenge ACK's answer) closes it.
        feed(&mut m, &[c.crst(14)], 30_000);
        assert_eq!(m.flow_count(), 0, "{name}");
        assert_eq!(m.counters().flows_closed, 1);
    }
}

#[test]
fn rst_at_the_acknowledged_sequence_closes() {
    // The receiver acknowledged more than the monitor saw (tap loss): its ACK is its next
    // expected sequence, so a RST there is accepted.
    let c = Conn::v4(1000, 5000);
    let mut st = storage();
    let mut m = Monitor::new(errors_and_states(), cfg(), st.storage()).unwrap();
    feed(&mut m, &established(&c), 0);
    feed(&mut m, &[c.sack(5, 30), c.crst(30)], 10_000);
    assert_eq!(m.flow_count(), 0);
}

#[test]
fn in_window_rst_accepted_when_configured() {
    let c = Conn::v4(1000, 5000);
    let cfg = Config {
        rst_in_window: true,
        ..cfg()
    };
    // The server announced 65535 bytes of window (no scaling) with its last ACK.
    let mut st = storage();
    let mut m = Monitor::new(errors_and_states(), cfg, st.storage()).unwrap();
    feed(&mut m, &established(&c), 0);
    feed(&mut m, &[c.crst(3000)], 10_000);
    assert_eq!(m.flow_count(), 0, "in window: closes");
    assert!(m.middlebox().errors.is_empty());

    let mut st = storage();
    let mut m = Monitor::new(errors_and_states(), cfg, st.storage()).unwrap();
    feed(&mut m, &established(&c), 0);
    feed(&mut m, &[c.crst(10 + 65535)], 10_000);
    assert_eq!(m.flow_count(), 1, "just past the window: ignored");
    assert_eq!(
        m.middlebox().errors,
        vec![(Hook::Rcv, ErrorReason::RstNotAtNextSeq)]
    );
}

#[test]
fn rst_in_syn_sent_must_acknowledge_the_syn() {
    let c = Conn::v4(1000, 5000);
    let mut st = storage();
    let mut m = Monitor::new(errors_and_states(), cfg(), st.storage()).unwrap();
    feed(&mut m, &[c.syn()], 0);
    feed(&mut m, &[c.raw(false, 0, c.cseq(5), RST | ACK, &[])], 1000);
    assert_eq!(m.flow_count(), 1, "wrong ACK: ignored");
    feed(&mut m, &[c.raw(false, 0, 0, RST, &[])], 2000);
    assert_eq!(m.flow_count(), 1, "no ACK: ignored");
    assert_eq!(m.middlebox().errors.len(), 2);
    feed(&mut m, &[c.raw(false, 0, c.cseq(0), RST | ACK, &[])], 3000);
    assert_eq!(m.flow_count(), 0, "refused connection");
}

#[test]
fn mid_stream_syn_and_synack_change_nothing() {
    let c = Conn::v4(1000, 5000);
    let mut st = storage();
    let mut m = Monitor::new(errors_and_states(), cfg(), st.storage()).unwrap();
    feed(&mut m, &established(&c), 0);
    let before = m.middlebox().log.len();
    feed(
        &mut m,
        &[
            c.raw(true, 777_777, 0, SYN, &[]),
            c.raw(false, 888_888, c.cseq(10), SYN | ACK, &[]),
            // A retransmission of the real SYN-ACK is still a retransmission.
            c.synack(),
        ],
        10_000,
    );
    let rec = m.middlebox();
    assert_eq!(
        rec.errors,
        vec![
            (Hook::Rcv, ErrorReason::SynOnSynchronized),
            (Hook::Rcv, ErrorReason::SynOnSynchronized)
        ]
    );
    // No state change, no new flow.
    assert_eq!(
        rec.log.len() - before,
        2,
        "only the two ERRORs: {:?}",
        &rec.log[before..]
    );
    assert_eq!(m.counters().flows_created, 1);
    // The stream continues at the old offsets.
    feed(&mut m, &[c.cdata(10, b"xy"), c.sdata(5, b"fg")], 20_000);
    let f = m.flows().next().unwrap();
    let bi = m.buf_info(f, Side::Server).unwrap();
    assert_eq!((bi.init_seq, bi.in_order_end), (1001, 12));
    assert_eq!(m.buf_info(f, Side::Client).unwrap().in_order_end, 7);
}

#[test]
fn reuse_after_close_opens_a_new_connection() {
    // The client finished (TIME_WAIT) but the server's last state was not seen to end (its
    // final ACK missing): a new SYN from the client with a new ISN is a new connection.
    let c = Conn::v4(1000, 5000);
    let mut st = storage();
    let mut m = Monitor::new(errors_and_states(), cfg(), st.storage()).unwrap();
    let mut fr = established(&c);
    fr.extend([c.cfin(10, 5), c.sack(5, 11), c.sfin(5, 11), c.cack(11, 6)]);
    feed(&mut m, &fr[..fr.len() - 1], 0);
    assert_eq!(states(&m), (TcpState::TimeWait, TcpState::LastAck));
    let c2 = Conn::v4(90_000, 7000);
    feed(&mut m, &established(&c2), 10_000);
    assert_eq!(m.counters().flows_created, 2);
    assert_eq!(m.counters().flows_closed, 1);
    assert!(m.middlebox().errors.is_empty());
    let f = m.flows().next().unwrap();
    assert_eq!(m.buf_info(f, Side::Server).unwrap().init_seq, 90_001);
    assert_eq!(states(&m), (TcpState::Established, TcpState::Established));
}

#[test]
fn data_after_fin_is_not_stream_data() {
    let c = Conn::v4(1000, 5000);
    let mut st = storage();
    let rec = errors_and_states();
    let mut m = Monitor::new(rec, cfg(), st.storage()).unwrap();
    feed(&mut m, &established(&c), 0);
    feed(
        &mut m,
        &[
            c.cfin(10, 5),
            // Straddles the FIN: 2 bytes before it are data (a retransmission), 3 after are not.
            c.cdata(8, b"89XYZ"),
            // Wholly after.
            c.cdata(11, b"after"),
            // A second FIN further on.
            c.raw(true, c.cseq(20), c.sseq(5), FIN | ACK, &[]),
        ],
        10_000,
    );
    let rec = m.middlebox();
    assert_eq!(
        rec.errors,
        vec![
            (Hook::Rcv, ErrorReason::AfterFin { bytes: 3 }),
            (Hook::Rcv, ErrorReason::AfterFin { bytes: 5 }),
            (Hook::Rcv, ErrorReason::AfterFin { bytes: 0 }),
        ]
    );
    let f = m.flows().next().unwrap();
    let bi = m.buf_info(f, Side::Server).unwrap();
    assert_eq!((bi.in_order_end, bi.last_end), (10, 10));
    let mut b = [0u8; 16];
    assert_eq!(m.ppeek(f, Side::Server, 0, &mut b), Ok(10));
    assert_eq!(&b[..10], b"0123456789");
    // The close completes where the endpoints' FIN was.
    feed(
        &mut m,
        &[c.sack(5, 11), c.sfin(5, 11), c.cack(11, 6)],
        20_000,
    );
    assert_eq!(m.flow_count(), 0);
}

#[test]
fn simultaneous_close_brings_both_sides_to_time_wait() {
    let c = Conn::v4(1000, 5000);
    let mut st = storage();
    let mut m = Monitor::new(errors_and_states(), cfg(), st.storage()).unwrap();
    feed(&mut m, &established(&c), 0);
    // Both FINs cross: neither acknowledges the other's FIN.
    feed(
        &mut m,
        &[c.cfin(10, 5), c.sfin(5, 10), c.cack(11, 6), c.sack(6, 11)],
        10_000,
    );
    let rec = m.middlebox();
    let last = rec
        .log
        .iter()
        .rev()
        .find(|r| r.ev == Event::TCP_STATE_CHANGE)
        .unwrap();
    assert_eq!(
        last.states.unwrap(),
        (TcpState::TimeWait, TcpState::TimeWait)
    );
    let trace = |side: Side| -> Vec<TcpState> {
        rec.log
            .iter()
            .filter(|r| r.ev == Event::TCP_STATE_CHANGE && r.side == side)
            .map(|r| {
                let (cl, sv) = r.states.unwrap();
                if side == Side::Client {
                    cl
                } else {
                    sv
                }
            })
            .collect()
    };
    use TcpState::*;
    assert_eq!(
        trace(Side::Client),
        vec![SynSent, Established, FinWait1, Closing, TimeWait]
    );
    assert_eq!(m.flow_count(), 0);
    assert_eq!(m.counters().flows_closed, 1);
    assert!(rec.errors.is_empty());
}

#[test]
fn an_acknowledged_hole_is_tap_loss_and_the_fin_behind_it_is_delivered() {
    let c = Conn::v4(1000, 5000);
    let mut st = storage();
    let mut m = Monitor::new(errors_and_states(), cfg(), st.storage()).unwrap();
    feed(&mut m, &established(&c), 0);
    // Client bytes 10..20 never reach the tap; 20..30 and the FIN at 30 do.
    feed(&mut m, &[c.cdata(20, b"ABCDEFGHIJ"), c.cfin(30, 5)], 10_000);
    let f = m.flows().next().unwrap();
    assert_eq!(
        states(&m).1,
        TcpState::Established,
        "FIN behind a hole waits"
    );
    // The server acknowledges everything and the FIN: the hole was lost at the tap.
    feed(&mut m, &[c.sack(5, 31)], 20_000);
    assert_eq!(
        m.middlebox().errors,
        vec![(
            Hook::Rcv,
            ErrorReason::Lost {
                bytes: 10,
                cause: LossCause::Tap
            }
        )]
    );
    let bi = m.buf_info(f, Side::Server).unwrap();
    assert_eq!((bi.in_order_end, bi.last_end, bi.lost), (10, 30, 10));
    assert_eq!(states(&m), (TcpState::FinWait2, TcpState::CloseWait));
    feed(&mut m, &[c.sfin(5, 31), c.cack(31, 6)], 30_000);
    assert_eq!(m.flow_count(), 0);
    assert_eq!(m.counters().flows_closed, 1);
}
