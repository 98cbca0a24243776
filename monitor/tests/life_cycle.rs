//! The flow life cycle's short paths: state changes nobody subscribed to are skipped before any
//! call, slots are written whole on reuse and freed without resetting what a dead slot never
//! shows. Each test compares the short path with the full one (or with exact expected values),
//! so a wrong turn changes what a callback sees.

mod common;

use common::*;
use monitor::{
    Config, Ctx, Event, FlowHandle, Hook, HostStorage, Middlebox, Monitor, Overlap, PeekError,
    Registry, Side, TcpState,
};

const REQUEST: &[u8] = b"GET / HTTP/1.1\r\n\r\n";

fn connection(c: &Conn) -> Vec<Vec<u8>> {
    let mut v = vec![c.syn(), c.synack(), c.ack()];
    v.push(c.cdata(0, REQUEST));
    v.push(c.sdata(0, b"HTTP/1.1 200 OK\r\n\r\nhello"));
    v.extend(c.close(18, 24));
    v
}

/// `(hook, side, client state, server state)` of every `TCP_STATE_CHANGE` callback.
fn changes(rec: &Recorder) -> Vec<(Hook, Side, TcpState, TcpState)> {
    rec.log
        .iter()
        .filter(|r| r.ev == Event::TCP_STATE_CHANGE)
        .map(|r| {
            let (c, s) = r.states.unwrap();
            (r.hook, r.side, c, s)
        })
        .collect()
}

fn run(subs: &[(Event, Hook)]) -> Vec<(Hook, Side, TcpState, TcpState)> {
    let mut st = storage();
    let mut m = Monitor::new(Recorder::new(subs), cfg(), st.storage()).unwrap();
    feed(&mut m, &connection(&Conn::v4(1000, 5000)), 0);
    assert_eq!(m.flow_count(), 0);
    changes(m.middlebox())
}

#[test]
fn state_changes_reach_exactly_the_hooks_subscribed() {
    use TcpState::*;
    let ev = Event::TCP_STATE_CHANGE;
    let all = run(&[(ev, Hook::Snd), (ev, Hook::Rcv), (ev, Hook::Any)]);
    // Ten changes (five per side), each at the sender's or receiver's hook, then at Any.
    let expect_snd_rcv = vec![
        (Hook::Snd, Side::Client, SynSent, Listen),
        (Hook::Rcv, Side::Server, SynSent, SynRcvd),
        (Hook::Rcv, Side::Client, Established, SynRcvd),
        (Hook::Rcv, Side::Server, Established, Established),
        (Hook::Snd, Side::Client, FinWait1, Established),
        (Hook::Rcv, Side::Server, FinWait1, CloseWait),
        (Hook::Rcv, Side::Client, FinWait2, CloseWait),
        (Hook::Snd, Side::Server, FinWait2, LastAck),
        (Hook::Rcv, Side::Client, TimeWait, LastAck),
        (Hook::Rcv, Side::Server, TimeWait, Closed),
    ];
    let at = |v: &[(Hook, Side, TcpState, TcpState)], hooks: &[Hook]| -> Vec<_> {
        v.iter().filter(|r| hooks.contains(&r.0)).cloned().collect()
    };
    assert_eq!(at(&all, &[Hook::Snd, Hook::Rcv]), expect_snd_rcv);
    let any: Vec<_> = expect_snd_rcv
        .iter()
        .map(|&(_, s, c, v)| (Hook::Any, s, c, v))
        .collect();
    assert_eq!(at(&all, &[Hook::Any]), any);
    // Subscribed at one hook: exactly that hook's part of the full run.
    for h in [Hook::Snd, Hook::Rcv, Hook::Any] {
        assert_eq!(run(&[(ev, h)]), at(&all, &[h]), "{h:?}");
    }
    // Subscribed to something else only: no state change at all.
    assert_eq!(run(&[(Event::CONN_START, Hook::Any)]), vec![]);
}

/// Subscribes to `TCP_STATE_CHANGE` at `Rcv` for the first flow only, from its `CONN_START`.
#[derive(Default)]
struct PerFlowSub {
    rec: Recorder,
    first: Option<FlowHandle>,
}

impl Middlebox for PerFlowSub {
    type Flow = PerFlow;
    fn init(&mut self, reg: &mut Registry) {
        reg.subscribe(Event::CONN_START, Hook::Any);
    }
    fn on_event(&mut self, cx: &mut Ctx<'_, '_, PerFlow>, ev: Event, hook: Hook, side: Side) {
        if ev == Event::CONN_START && self.first.is_none() {
            let f = cx.flow().unwrap();
            self.first = Some(f);
            cx.subscribe_flow(f, Event::TCP_STATE_CHANGE, Hook::Rcv)
                .unwrap();
        }
        self.rec.on_event(cx, ev, hook, side);
    }
}

#[test]
fn per_flow_state_change_subscription_passes_the_short_path() {
    let mut st = storage();
    let mut m = Monitor::new(PerFlowSub::default(), cfg(), st.storage()).unwrap();
    let a = Conn::v4(1000, 5000);
    let mut b = Conn::v4(7, 9);
    b.c.1 = 40001;
    // The two connections interleaved packet by packet.
    let frames: Vec<_> = connection(&a)
        .into_iter()
        .zip(connection(&b))
        .flat_map(|(x, y)| [x, y])
        .collect();
    feed(&mut m, &frames, 0);
    let mb = m.middlebox();
    let first = mb.first.unwrap();
    assert!(mb
        .rec
        .log
        .iter()
        .filter(|r| r.ev == Event::TCP_STATE_CHANGE)
        .all(|r| r.flow == Some(first) && r.hook == Hook::Rcv));
    let ev = Event::TCP_STATE_CHANGE;
    assert_eq!(changes(&mb.rec), run(&[(ev, Hook::Rcv)]));
    assert_eq!(mb.rec.count(Event::CONN_START), 2);
}

/// Counts starts and ends per slot and checks each new flow's state from its first callback.
#[derive(Default)]
struct Reuse {
    buffering: bool,
    starts: u32,
    ends: u32,
    handles: Vec<FlowHandle>,
    read: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Middlebox for Reuse {
    type Flow = u32;
    fn init(&mut self, reg: &mut Registry) {
        reg.subscribe(Event::CONN_START, Hook::Any);
        reg.subscribe(Event::CONN_END, Hook::Any);
    }
    fn on_event(&mut self, cx: &mut Ctx<'_, '_, u32>, ev: Event, _hook: Hook, _side: Side) {
        let f = cx.flow().unwrap();
        if ev == Event::CONN_START {
            self.starts += 1;
            // A reused slot starts afresh: default user state, no bytes, LISTEN + SYN_SENT.
            assert_eq!(cx.user().copied(), Some(0));
            *cx.user().unwrap() = 77;
            for side in Side::BOTH {
                // Before the SYN is processed neither side has an origin.
                assert_eq!(cx.buf_info(f, side), Err(PeekError::NotConnected));
            }
            assert_eq!(cx.tcp_state(f, Side::Server).unwrap(), TcpState::Listen);
            self.handles.push(f);
        } else {
            self.ends += 1;
            assert_eq!(cx.user().copied(), Some(77));
            if self.buffering {
                // Offsets count from this flow's own start, nothing lost.
                for (side, end) in [(Side::Server, 18), (Side::Client, 24)] {
                    let bi = cx.buf_info(f, side).unwrap();
                    assert_eq!((bi.in_order_end, bi.lost), (end, 0));
                }
            } else {
                // The configuration's bits are set on every reuse.
                for side in Side::BOTH {
                    assert_eq!(
                        cx.peek(f, side, &mut [0; 8]),
                        Err(PeekError::BufferDisabled)
                    );
                }
            }
            self.read
                .push((peek_all(cx, f, Side::Server), peek_all(cx, f, Side::Client)));
        }
    }
}

fn peek_all(cx: &mut Ctx<'_, '_, u32>, f: FlowHandle, side: Side) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 64];
    loop {
        match cx.peek(f, side, &mut buf) {
            Ok(0) | Err(_) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
}

#[test]
fn reused_slots_start_afresh_and_free_every_chunk() {
    for (buffering, overlap) in [
        (true, Overlap::First),
        (true, Overlap::Last),
        (false, Overlap::Last),
    ] {
        // Two slots for 40 connections, two at a time: every slot is reused many times.
        let mut st: HostStorage<u32> = HostStorage::new(2, 16, 1);
        let c = Config {
            buffering,
            overlap,
            ..cfg()
        };
        let mut m = Monitor::new(
            Reuse {
                buffering,
                ..Reuse::default()
            },
            c,
            st.storage(),
        )
        .unwrap();
        let free0 = m.free_chunks();
        let mut t = 0;
        for k in 0..20u16 {
            let a = Conn::v4(1000 + k as u32, 5000);
            let mut b = Conn::v4(7, 9 + k as u32);
            b.c.1 = 50000 + k;
            let mut frames: Vec<_> = connection(&a)
                .into_iter()
                .zip(connection(&b))
                .flat_map(|(x, y)| [x, y])
                .collect();
            // Each request out of order, with a conflicting copy of bytes 4..6 while they are
            // an island: the overlap policy decides which stays.
            for c in [&b, &a] {
                let at = frames
                    .iter()
                    .position(|f| *f == c.cdata(0, REQUEST))
                    .unwrap();
                frames.splice(
                    at..at + 1,
                    [
                        c.cdata(4, &REQUEST[4..]),
                        c.cdata(4, b"* "),
                        c.cdata(0, &REQUEST[..4]),
                    ],
                );
            }
            feed(&mut m, &frames, t);
            t += 1_000_000;
            assert_eq!(m.flow_count(), 0);
            assert_eq!(m.free_chunks(), free0, "connection pair {k}");
        }
        let r = m.middlebox();
        assert_eq!((r.starts, r.ends), (40, 40));
        assert_eq!(m.counters().flows_evicted, 0);
        let request: &[u8] = match overlap {
            Overlap::First => REQUEST,
            Overlap::Last => b"GET * HTTP/1.1\r\n\r\n",
        };
        let want: (Vec<u8>, Vec<u8>) = if buffering {
            (request.to_vec(), b"HTTP/1.1 200 OK\r\n\r\nhello".to_vec())
        } else {
            (vec![], vec![])
        };
        let wrong = r.read.iter().find(|x| **x != want);
        assert_eq!(wrong, None, "buffering {buffering}, {overlap:?}");
        // Slots 0 and 1, each used 20 times, each time under a new handle (the generation);
        // the old handles are refused.
        let mut slots: Vec<u32> = r.handles.iter().map(|h| h.slot()).collect();
        slots.sort();
        assert_eq!(slots, [[0; 20], [1; 20]].concat());
        let mut distinct = r.handles.clone();
        distinct.sort_by_key(|h| format!("{h:?}"));
        distinct.dedup();
        assert_eq!(distinct.len(), 40);
        for h in &r.handles {
            assert_eq!(
                m.buf_info(*h, Side::Server).unwrap_err(),
                PeekError::BadFlow
            );
        }
    }
}
