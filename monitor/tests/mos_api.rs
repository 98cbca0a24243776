//! The rest of mOS's per-flow API (issue 9 item 2): `reset_conn`, user events raised from a
//! callback or a timer, per-flow subscriptions, per-side stop, the packet's timestamp and a
//! parsed view of the current packet. Frames are built here; checksums are verified by the
//! test's own sum.

mod common;

use std::net::IpAddr;

use common::*;
use monitor::{
    ActionError, Config, Ctx, DropReason, Event, FlowHandle, Hook, HostStorage, Middlebox, Monitor,
    PacketInfo, PeekError, Registry, Side, TcpState, Verdict,
};

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

/// The fields of an untagged IPv4 TCP frame, after checking both checksums:
/// (dst MAC, src MAC, src, dst, sport, dport, seq, ack, flags, window, payload length).
#[derive(Debug, PartialEq, Eq)]
struct Fields {
    macs: ([u8; 6], [u8; 6]),
    src: IpAddr,
    dst: IpAddr,
    ports: (u16, u16),
    seq: u32,
    ack: u32,
    flags: u8,
    window: u16,
    payload: usize,
}

fn fields(f: &[u8]) -> Fields {
    assert_eq!(&f[12..14], &[8, 0]);
    let ip = &f[14..];
    assert!(folds_to_ffff(sum(&ip[..20])), "IPv4 header checksum");
    let tot = u16::from_be_bytes([ip[2], ip[3]]) as usize;
    let seg = &ip[20..tot];
    assert!(
        folds_to_ffff(sum(&ip[12..20]) + 6 + seg.len() as u32 + sum(seg)),
        "TCP checksum"
    );
    let a: [u8; 4] = ip[12..16].try_into().unwrap();
    let b: [u8; 4] = ip[16..20].try_into().unwrap();
    Fields {
        macs: (f[0..6].try_into().unwrap(), f[6..12].try_into().unwrap()),
        src: IpAddr::from(a),
        dst: IpAddr::from(b),
        ports: (
            u16::from_be_bytes([seg[0], seg[1]]),
            u16::from_be_bytes([seg[2], seg[3]]),
        ),
        seq: u32::from_be_bytes(seg[4..8].try_into().unwrap()),
        ack: u32::from_be_bytes(seg[8..12].try_into().unwrap()),
        flags: seg[13],
        window: u16::from_be_bytes([seg[14], seg[15]]),
        payload: seg.len() - (seg[12] >> 4) as usize * 4,
    }
}

fn inline() -> Config {
    Config {
        inline: true,
        ..cfg()
    }
}

// ---------------------------------------------------------------------------------------------
// reset_conn

/// (client, server) TCP states.
type States = (TcpState, TcpState);

/// Resets a flow whose client→server stream holds "EVIL", from `CONN_NEW_DATA` or `PKT_IN`.
#[derive(Default)]
struct Resetter {
    on_packet: bool,
    results: Vec<Result<(), ActionError>>,
    log: Vec<(Event, Side, Option<States>)>,
}

impl Middlebox for Resetter {
    type Flow = ();
    fn init(&mut self, reg: &mut Registry) {
        reg.subscribe(Event::CONN_NEW_DATA, Hook::Rcv);
        reg.subscribe(Event::PKT_IN, Hook::Snd);
        reg.subscribe(Event::CONN_END, Hook::Any);
        reg.subscribe(Event::TCP_STATE_CHANGE, Hook::Any);
    }
    fn on_event(&mut self, cx: &mut Ctx<'_, '_, ()>, ev: Event, _: Hook, side: Side) {
        let flow = cx.flow().unwrap();
        let states = (ev == Event::CONN_END || ev == Event::TCP_STATE_CHANGE).then(|| {
            (
                cx.tcp_state(flow, Side::Client).unwrap(),
                cx.tcp_state(flow, Side::Server).unwrap(),
            )
        });
        if ev != Event::PKT_IN {
            self.log.push((ev, side, states));
        }
        let want = if self.on_packet {
            Event::PKT_IN
        } else {
            Event::CONN_NEW_DATA
        };
        if ev == want {
            let mut buf = [0u8; 256];
            let n = cx.ppeek(flow, Side::Server, 0, &mut buf).unwrap_or(0);
            let pkt = cx.packet_info().map_or(&[][..], |i| {
                &cx.packet().unwrap()[i.payload_off..i.payload_off + i.payload_len]
            });
            if buf[..n].windows(4).any(|w| w == b"EVIL") || pkt.windows(4).any(|w| w == b"EVIL") {
                self.results.push(cx.reset_conn(flow));
            }
        }
    }
}

fn reset_run(on_packet: bool) {
    let mut st: HostStorage<()> = HostStorage::new(8, 64, 1);
    let rs = Resetter {
        on_packet,
        ..Resetter::default()
    };
    let mut m = Monitor::new(rs, inline(), st.storage()).unwrap();
    let c = Conn::v4(100, 5000);
    let mut t = 0;
    let mut feed = |m: &mut Monitor<'_, Resetter>, f: Vec<u8>| {
        t += 1000;
        m.begin_batch(t);
        assert_eq!(m.frame(&f, t), Verdict::Forward);
        m.end_batch();
    };
    // The server's frames come from the server's MAC (the builder writes the client's).
    let swap = |mut f: Vec<u8>| {
        let (a, b) = f.split_at_mut(6);
        a.swap_with_slice(&mut b[..6]);
        f
    };
    feed(&mut m, c.syn());
    feed(&mut m, swap(c.synack()));
    feed(&mut m, c.ack());
    feed(&mut m, c.cdata(0, b"hello "));
    feed(&mut m, swap(c.sdata(0, b"hi")));
    let mut inj = Vec::new();
    m.drain_injected(|f| inj.push(f.to_vec()));
    assert!(inj.is_empty());
    assert_eq!(m.middlebox().results, vec![]);
    feed(&mut m, c.cdata(6, b"EVIL!"));
    assert_eq!(m.middlebox().results, vec![Ok(())]);
    m.drain_injected(|f| inj.push(f.to_vec()));
    let mac_to_server = ([2, 0, 0, 0, 0, 2], [2, 0, 0, 0, 0, 1]);
    let rst = PacketInfo::RST | PacketInfo::ACK;
    assert_eq!(
        inj.iter().map(|f| fields(f)).collect::<Vec<_>>(),
        vec![
            // To the server, as from the client: its next expected byte is past "EVIL!".
            Fields {
                macs: mac_to_server,
                src: c.c.0,
                dst: c.s.0,
                ports: (c.c.1, c.s.1),
                seq: c.cseq(11),
                ack: c.sseq(2),
                flags: rst,
                window: 0,
                payload: 0,
            },
            // To the client, as from the server (the link-layer header of the server's frames).
            Fields {
                macs: (mac_to_server.1, mac_to_server.0),
                src: c.s.0,
                dst: c.c.0,
                ports: (c.s.1, c.c.1),
                seq: c.sseq(2),
                ack: c.cseq(11),
                flags: rst,
                window: 0,
                payload: 0,
            },
        ]
    );
    let closed = Some((TcpState::Closed, TcpState::Closed));
    // (In PKT_IN mode the packet's CONN_NEW_DATA comes between: a flow's pending new data is
    // raised before its CONN_END.)
    let tail: Vec<_> = m
        .middlebox()
        .log
        .iter()
        .filter(|r| r.0 != Event::CONN_NEW_DATA)
        .cloned()
        .collect();
    let tail = &tail[tail.len() - 3..];
    assert_eq!(
        tail,
        vec![
            (
                Event::TCP_STATE_CHANGE,
                Side::Client,
                Some((TcpState::Closed, TcpState::Established))
            ),
            (Event::TCP_STATE_CHANGE, Side::Server, closed),
            (Event::CONN_END, Side::Server, closed),
        ]
    );
    let ends = m
        .middlebox()
        .log
        .iter()
        .filter(|r| r.0 == Event::CONN_END)
        .count();
    assert_eq!(ends, 1);
    assert_eq!(m.flow_count(), 0);
    assert_eq!(m.counters().flows_closed, 1);
    // The flow is gone: the server's next packet is an orphan.
    feed(&mut m, swap(c.sack(2, 11)));
    assert_eq!(m.counters().drop_count(DropReason::Orphan), 1);
}

#[test]
fn reset_conn_from_new_data_sends_valid_rsts_to_both_ends() {
    reset_run(false);
}

#[test]
fn reset_conn_from_the_packet_goes_out_after_the_packet() {
    reset_run(true);
}

#[test]
fn reset_conn_in_tap_mode_or_without_extras_is_refused() {
    let c = Conn::v4(1, 2);
    for (inline, extras, want) in [
        (false, true, ActionError::TapMode),
        (true, false, ActionError::NoExtras),
    ] {
        let mut st: HostStorage<()> = HostStorage::new(4, 8, 0);
        let mut s = st.storage();
        if !extras {
            s.extras = &mut [];
        }
        let cfg = Config { inline, ..cfg() };
        let rs = Resetter {
            on_packet: true,
            ..Resetter::default()
        };
        let mut m = Monitor::new(rs, cfg, s).unwrap();
        m.begin_batch(0);
        for f in [c.syn(), c.synack(), c.ack(), c.cdata(0, b"EVIL")] {
            m.frame(&f, 0);
        }
        m.end_batch();
        assert_eq!(m.middlebox().results, vec![Err(want)]);
        assert_eq!(m.flow_count(), 1);
        let mut n = 0;
        m.drain_injected(|_| n += 1);
        assert_eq!(n, 0);
    }
}

// ---------------------------------------------------------------------------------------------
// User events, per-flow subscriptions, per-side stop, timestamp and packet view

#[derive(Default)]
struct Api {
    /// A floating user event and a filtered child of it.
    alarm: Option<Event>,
    child: Option<Event>,
    first: Option<FlowHandle>,
    /// (event, hook, side, flow, has a packet).
    log: Vec<(Event, Hook, Side, Option<FlowHandle>, bool)>,
    results: Vec<Result<(), ActionError>>,
    filter_calls: Vec<Side>,
    /// Per-flow mode: subscribe the first flow to PKT_IN and unsubscribe it from CONN_END.
    per_flow: bool,
    /// Stop the client side on the first payload, the server side on the second.
    stop: bool,
    ts: Vec<(Option<u64>, Option<PacketInfo>)>,
    last_seen: Option<Result<u64, PeekError>>,
}

impl Middlebox for Api {
    type Flow = ();
    fn init(&mut self, reg: &mut Registry) {
        let alarm = reg.alloc_event(Event::PKT_IN).unwrap();
        let child = reg.define(alarm, 7).unwrap();
        assert_ne!(
            reg.alloc_event(Event::PKT_IN).unwrap(),
            alarm,
            "each call allocates"
        );
        reg.subscribe(alarm, Hook::Any);
        reg.subscribe(child, Hook::Rcv);
        reg.subscribe(Event::CONN_START, Hook::Snd);
        reg.subscribe(Event::CONN_END, Hook::Snd);
        reg.subscribe(Event::CONN_NEW_DATA, Hook::Any);
        self.alarm = Some(alarm);
        self.child = Some(child);
        reg.set_timer(1, 50_000, 0).unwrap();
    }
    fn filter(
        &mut self,
        key: u32,
        _: &mut Ctx<'_, '_, ()>,
        parent: Event,
        _: Hook,
        side: Side,
    ) -> bool {
        assert_eq!((key, Some(parent)), (7, self.alarm));
        self.filter_calls.push(side);
        side == Side::Server
    }
    fn on_event(&mut self, cx: &mut Ctx<'_, '_, ()>, ev: Event, hook: Hook, side: Side) {
        let flow = cx.flow();
        self.log.push((ev, hook, side, flow, cx.packet().is_some()));
        if ev == Event::CONN_NEW_DATA {
            self.ts.push((cx.packet_ts_us(), cx.packet_info()));
        }
        if ev == Event::CONN_START && self.first.is_none() {
            self.first = flow;
            if self.per_flow {
                let f = flow.unwrap();
                self.results
                    .push(cx.subscribe_flow(f, Event::PKT_IN, Hook::Snd));
                self.results
                    .push(cx.unsubscribe_flow(f, Event::CONN_END, Hook::Snd));
                self.results
                    .push(cx.subscribe_flow(f, foreign_event(), Hook::Snd));
            }
        }
        if ev == Event::PKT_IN {
            self.ts.push((cx.packet_ts_us(), cx.packet_info()));
            let info = cx.packet_info().unwrap();
            if info.payload_len > 0 && self.stop && hook == Hook::Snd {
                let s = [Side::Client, Side::Server][self.results.len().min(1)];
                self.results.push(cx.stop_side(s));
            } else if info.payload_len > 0 && !self.stop {
                let alarm = self.alarm.unwrap();
                self.results.push(cx.raise_event(flow, alarm, Side::Server));
                self.results
                    .push(cx.raise_event(flow, Event::CONN_END, Side::Server));
            }
        }
    }
    fn on_timer(&mut self, cx: &mut Ctx<'_, '_, ()>, id: u32) {
        assert_eq!(id, 1);
        self.last_seen = self.first.map(|f| cx.last_seen_us(f));
        let alarm = self.alarm.unwrap();
        self.results
            .push(cx.raise_event(self.first, alarm, Side::Client));
        self.results.push(cx.raise_event(None, alarm, Side::Server));
    }
}

/// An event id this monitor's registry never issued (ids 11..=13 come from `Api::init`; a
/// second registry's next allocation is id 14).
fn foreign_event() -> Event {
    let mut st: HostStorage<()> = HostStorage::new(1, 1, 0);
    let mut m = Monitor::new(Api::default(), cfg(), st.storage()).unwrap();
    m.registry().alloc_event(Event::PKT_IN).unwrap()
}

#[test]
fn user_events_from_a_callback_and_a_timer_reach_subscribers_with_the_flow() {
    let mut st: HostStorage<()> = HostStorage::new(4, 16, 0);
    let mut m = Monitor::new(Api::default(), cfg(), st.storage()).unwrap();
    let (alarm, child) = (m.middlebox().alarm.unwrap(), m.middlebox().child.unwrap());
    let c = Conn::v4(1, 2);
    let mut vlan = Conn::v4(1, 2);
    vlan.vlans = vec![(0x8100, 5)];
    m.begin_batch(10_000);
    for f in [vlan.syn(), vlan.synack(), vlan.ack()] {
        m.frame(&f, 10_000);
    }
    m.end_batch();
    let h = m.middlebox().first.unwrap();
    m.middlebox_mut().log.clear();
    m.middlebox_mut().ts.clear();
    // A packet whose callback raises the alarm: delivered after the packet's callbacks.
    m.registry().subscribe(Event::PKT_IN, Hook::Snd);
    m.begin_batch(20_000);
    m.frame(&vlan.cdata(0, b"hello"), 20_123);
    m.end_batch();
    assert_eq!(
        m.middlebox().log,
        vec![
            (Event::PKT_IN, Hook::Snd, Side::Client, Some(h), true),
            // Hooks in order Snd, Rcv, Any: the child (filtered at Rcv), then the alarm.
            (child, Hook::Rcv, Side::Server, Some(h), false),
            (alarm, Hook::Any, Side::Server, Some(h), false),
            (
                Event::CONN_NEW_DATA,
                Hook::Any,
                Side::Server,
                Some(h),
                false
            ),
        ]
    );
    assert_eq!(m.middlebox().filter_calls, vec![Side::Server]);
    assert_eq!(
        m.middlebox().results,
        vec![Ok(()), Err(ActionError::BadEvent)]
    );
    // The packet view and timestamp: in PKT_IN, not in CONN_NEW_DATA.
    let info = PacketInfo {
        src: c.c.0,
        dst: c.s.0,
        sport: c.c.1,
        dport: c.s.1,
        seq: c.cseq(0),
        ack: c.sseq(0),
        flags: PacketInfo::ACK | PacketInfo::PSH,
        window: 65535,
        l3_off: 18,
        l4_off: 38,
        payload_off: 58,
        payload_len: 5,
        sender: Some(Side::Client),
    };
    assert_eq!(
        m.middlebox().ts,
        vec![(Some(20_123), Some(info)), (None, None)]
    );
    // The timer raises it for the first flow and for none.
    m.registry().unsubscribe(Event::PKT_IN, Hook::Snd);
    m.middlebox_mut().log.clear();
    m.middlebox_mut().results.clear();
    m.tick(60_000);
    assert_eq!(
        m.middlebox().log,
        vec![
            (alarm, Hook::Any, Side::Client, Some(h), false),
            (child, Hook::Rcv, Side::Server, None, false),
            (alarm, Hook::Any, Side::Server, None, false),
        ]
    );
    // MOS_TIMESTAMP of the flow: its last packet (20 123 µs) to the 1024 µs tick.
    assert_eq!(m.middlebox().last_seen, Some(Ok(19 * 1024)));
    assert_eq!(m.middlebox().results, vec![Ok(()), Ok(())]);
    assert_eq!(
        m.middlebox().filter_calls,
        vec![Side::Server, Side::Client, Side::Server]
    );
}

#[test]
fn per_flow_subscriptions_apply_to_their_flow_only() {
    let mut st: HostStorage<()> = HostStorage::new(4, 16, 0);
    let api = Api {
        per_flow: true,
        ..Api::default()
    };
    let mut m = Monitor::new(api, cfg(), st.storage()).unwrap();
    let a = Conn::v4(1, 2);
    let mut b = Conn::v4(1, 2);
    b.c.1 = 40001;
    m.begin_batch(0);
    for f in [a.syn(), b.syn(), a.synack(), b.synack()] {
        m.frame(&f, 0);
    }
    m.end_batch();
    let ha = m.middlebox().first.unwrap();
    let hb = m.flows().find(|&f| f != ha).unwrap();
    assert_eq!(
        m.middlebox().results,
        vec![Ok(()), Ok(()), Err(ActionError::BadEvent)]
    );
    let pkt_in: Vec<_> = m
        .middlebox()
        .log
        .iter()
        .filter(|r| r.0 == Event::PKT_IN)
        .map(|r| (r.2, r.3))
        .collect();
    // a subscribed in its CONN_START, which comes before the SYN's PKT_IN; b never did.
    assert_eq!(
        pkt_in,
        vec![(Side::Client, Some(ha)), (Side::Server, Some(ha))]
    );
    m.close_all();
    let ends: Vec<_> = m
        .middlebox()
        .log
        .iter()
        .filter(|r| r.0 == Event::CONN_END)
        .map(|r| r.3)
        .collect();
    assert_eq!(ends, vec![Some(hb)], "a unsubscribed from CONN_END");
}

#[test]
fn stopping_one_side_mutes_its_callbacks_and_buffer_then_both_stop_the_flow() {
    let mut st: HostStorage<()> = HostStorage::new(4, 16, 0);
    let api = Api {
        stop: true,
        ..Api::default()
    };
    let mut m = Monitor::new(api, cfg(), st.storage()).unwrap();
    m.registry().subscribe(Event::PKT_IN, Hook::Snd);
    m.registry().subscribe(Event::PKT_IN, Hook::Rcv);
    let c = Conn::v4(1, 2);
    m.begin_batch(0);
    for f in [c.syn(), c.synack(), c.ack()] {
        m.frame(&f, 0);
    }
    m.end_batch();
    let h = m.middlebox().first.unwrap();
    m.middlebox_mut().log.clear();
    // Client data: the Snd view (client) stops the client side at once.
    m.begin_batch(1);
    m.frame(&c.cdata(0, b"abc"), 1);
    m.end_batch();
    let got = |m: &Monitor<'_, Api>| -> Vec<_> {
        m.middlebox().log.iter().map(|r| (r.0, r.1, r.2)).collect()
    };
    assert_eq!(
        got(&m),
        vec![
            (Event::PKT_IN, Hook::Snd, Side::Client),
            // The Rcv view is the server's: kept, as is its CONN_NEW_DATA.
            (Event::PKT_IN, Hook::Rcv, Side::Server),
            (Event::CONN_NEW_DATA, Hook::Any, Side::Server),
        ]
    );
    assert_eq!(
        m.ppeek(h, Side::Client, 0, &mut [0u8; 8]),
        Err(PeekError::BufferDisabled)
    );
    let mut buf = [0u8; 8];
    assert_eq!(m.ppeek(h, Side::Server, 0, &mut buf), Ok(3));
    assert_eq!(&buf[..3], b"abc");
    // Server data: its Snd view stops the server side too, which stops the flow.
    m.begin_batch(2);
    m.frame(&c.sdata(0, b"xyz"), 2);
    m.frame(&c.cdata(3, b"d"), 2);
    m.end_batch();
    assert_eq!(got(&m).len(), 4, "{:?}", got(&m));
    assert_eq!(got(&m)[3], (Event::PKT_IN, Hook::Snd, Side::Server));
    assert_eq!(m.middlebox().results, vec![Ok(()), Ok(())]);
    assert_eq!(
        m.ppeek(h, Side::Server, 0, &mut buf),
        Err(PeekError::BufferDisabled)
    );
    assert_eq!(m.counters().drop_count(DropReason::Unmonitored), 1);
    m.close_all();
    assert_eq!(got(&m).len(), 4, "a stopped flow ends silently");
}

/// Raises its own event from `CONN_END` and records every delivery of it.
#[derive(Default)]
struct EndRaiser {
    bye: Option<Event>,
    got: Vec<(Event, Option<FlowHandle>, Side)>,
    raised: Vec<Result<(), ActionError>>,
}

impl Middlebox for EndRaiser {
    type Flow = ();
    fn init(&mut self, reg: &mut Registry) {
        let bye = reg.alloc_event(Event::PKT_IN).unwrap();
        reg.subscribe(bye, Hook::Any);
        reg.subscribe(Event::CONN_END, Hook::Any);
        self.bye = Some(bye);
    }
    fn on_event(&mut self, cx: &mut Ctx<'_, '_, ()>, ev: Event, _: Hook, side: Side) {
        self.got.push((ev, cx.flow(), side));
        if ev == Event::CONN_END {
            let bye = self.bye.unwrap();
            self.raised.push(cx.raise_event(None, bye, Side::Client));
        }
    }
}

#[test]
fn events_raised_in_conn_end_during_close_all_are_delivered() {
    let mut st: HostStorage<()> = HostStorage::new(4, 16, 0);
    let mut m = Monitor::new(EndRaiser::default(), cfg(), st.storage()).unwrap();
    let bye = m.middlebox().bye.unwrap();
    let c = Conn::v4(1, 2);
    m.begin_batch(10_000);
    for f in [c.syn(), c.synack(), c.ack()] {
        m.frame(&f, 10_000);
    }
    m.end_batch();
    let h = m.flows().next().unwrap();
    m.close_all();
    assert_eq!(m.middlebox().raised, vec![Ok(())]);
    assert_eq!(
        m.middlebox().got,
        vec![
            // `Any` gets the receiving side's view of the end (the close is the client's).
            (Event::CONN_END, Some(h), Side::Server),
            (bye, None, Side::Client),
        ]
    );
}
