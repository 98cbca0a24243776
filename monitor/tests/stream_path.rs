//! The stream path's short cuts against what the general path does (issue 10 item 3):
//! `CONN_NEW_DATA` reaches exactly the hooks `raise_pair` would call, in its order, when
//! callbacks change the subscriptions, the flow's own masks or its stops in the middle of a
//! dispatch.

mod common;

use common::*;
use monitor::{Ctx, Event, Hook, HostStorage, Middlebox, Monitor, Registry, Side};

/// What a scenario's callback does (once, on its first call at the given hook).
type Act = fn(&mut Ctx<'_, '_, ()>);

/// Subscribes `CONN_NEW_DATA` at `subs` (or only a user-defined child of it at `Rcv`, whose
/// filter passes), logs every call, and runs `act` on the first call at `act_at`.
struct Views {
    subs: Vec<Hook>,
    child: bool,
    act_at: Option<Hook>,
    act: Act,
    acted: bool,
    log: Vec<(Event, Hook, Side)>,
}

impl Views {
    fn new(subs: &[Hook]) -> Self {
        Views {
            subs: subs.to_vec(),
            child: false,
            act_at: None,
            act: |_| {},
            acted: false,
            log: Vec::new(),
        }
    }
    fn acting(mut self, at: Hook, act: Act) -> Self {
        self.act_at = Some(at);
        self.act = act;
        self
    }
}

impl Middlebox for Views {
    type Flow = ();
    fn init(&mut self, reg: &mut Registry) {
        for &h in &self.subs {
            assert!(reg.subscribe(Event::CONN_NEW_DATA, h));
        }
        if self.child {
            let c = reg.define(Event::CONN_NEW_DATA, 7).unwrap();
            assert!(reg.subscribe(c, Hook::Rcv));
        }
    }
    fn on_event(&mut self, cx: &mut Ctx<'_, '_, ()>, ev: Event, hook: Hook, side: Side) {
        self.log.push((ev, hook, side));
        if !self.acted && self.act_at == Some(hook) {
            self.acted = true;
            (self.act)(cx);
        }
    }
    fn filter(&mut self, key: u32, _: &mut Ctx<'_, '_, ()>, _: Event, h: Hook, _: Side) -> bool {
        assert_eq!((key, h), (7, Hook::Rcv));
        true
    }
}

/// The handshake, then client data, server data, and both in one batch (the client's buffer
/// is flushed first); the calls of each of the three data batches.
fn run(v: Views) -> Vec<Vec<(Event, Hook, Side)>> {
    let c = Conn::v4(1000, 5000);
    let mut st: HostStorage<()> = storage();
    let mut m = Monitor::new(v, cfg(), st.storage()).unwrap();
    feed(&mut m, &[c.syn(), c.synack(), c.ack()], 0);
    assert!(m.middlebox().log.is_empty());
    let mut out = Vec::new();
    for (i, b) in [
        vec![c.cdata(0, b"aa")],
        vec![c.sdata(0, b"bb")],
        vec![c.cdata(2, b"cc"), c.sdata(2, b"dd")],
    ]
    .iter()
    .enumerate()
    {
        feed_batch(&mut m, b, 10_000 * (i as u64 + 1));
        out.push(std::mem::take(&mut m.middlebox_mut().log));
    }
    out
}

const ND: Event = Event::CONN_NEW_DATA;
use Hook::{Any, Rcv, Snd};
use Side::{Client as C, Server as S};

#[test]
fn new_data_reaches_each_subscribed_hook_in_order() {
    // Client data: the sender's view (Snd, the client), then the receiver's (Rcv and Any).
    let to_s = vec![(ND, Snd, C), (ND, Rcv, S), (ND, Any, S)];
    let to_c = vec![(ND, Snd, S), (ND, Rcv, C), (ND, Any, C)];
    let both: Vec<_> = to_c.iter().chain(&to_s).copied().collect();
    assert_eq!(
        run(Views::new(&[Snd, Rcv, Any])),
        vec![to_s.clone(), to_c.clone(), both.clone()]
    );
    for h in [Snd, Rcv, Any] {
        let only = |v: &Vec<(Event, Hook, Side)>| -> Vec<_> {
            v.iter().filter(|r| r.1 == h).copied().collect()
        };
        assert_eq!(
            run(Views::new(&[h])),
            vec![only(&to_s), only(&to_c), only(&both)],
            "{h:?}"
        );
    }
    assert_eq!(
        run(Views::new(&[])),
        vec![vec![], vec![], vec![]],
        "nobody subscribed"
    );
}

#[test]
fn new_data_follows_subscriptions_changed_during_its_dispatch() {
    // The Rcv callback subscribes the Any hook: it is called in the same dispatch.
    let v = Views::new(&[Rcv]).acting(Rcv, |cx| {
        assert!(cx.registry().subscribe(ND, Any));
    });
    assert_eq!(
        run(v),
        vec![
            vec![(ND, Rcv, S), (ND, Any, S)],
            vec![(ND, Rcv, C), (ND, Any, C)],
            vec![(ND, Rcv, C), (ND, Any, C), (ND, Rcv, S), (ND, Any, S)],
        ]
    );
    // The Snd callback drops the Any hook: not called any more, from this dispatch on.
    let v = Views::new(&[Snd, Any]).acting(Snd, |cx| cx.registry().unsubscribe(ND, Any));
    assert_eq!(
        run(v),
        vec![
            vec![(ND, Snd, C)],
            vec![(ND, Snd, S)],
            vec![(ND, Snd, S), (ND, Snd, C)],
        ]
    );
    // The flow subscribes on its own (per-flow masks appear mid-dispatch).
    let v = Views::new(&[Rcv]).acting(Rcv, |cx| {
        let f = cx.flow().unwrap();
        cx.subscribe_flow(f, ND, Any).unwrap();
    });
    assert_eq!(
        run(v),
        vec![
            vec![(ND, Rcv, S), (ND, Any, S)],
            vec![(ND, Rcv, C), (ND, Any, C)],
            vec![(ND, Rcv, C), (ND, Any, C), (ND, Rcv, S), (ND, Any, S)],
        ]
    );
    // ... or unsubscribes on its own.
    let v = Views::new(&[Snd, Rcv, Any]).acting(Snd, |cx| {
        let f = cx.flow().unwrap();
        cx.unsubscribe_flow(f, ND, Rcv).unwrap();
    });
    assert_eq!(
        run(v),
        vec![
            vec![(ND, Snd, C), (ND, Any, S)],
            vec![(ND, Snd, S), (ND, Any, C)],
            vec![(ND, Snd, S), (ND, Any, C), (ND, Snd, C), (ND, Any, S)],
        ]
    );
}

#[test]
fn new_data_honours_stops_and_user_defined_children() {
    // Stopping the server's side: no call whose side is the server's from then on (its
    // buffer is off, but the client's later bytes still raise the event: the client's view).
    let v = Views::new(&[Snd, Rcv]).acting(Snd, |cx| cx.stop_side(Side::Server).unwrap());
    assert_eq!(
        run(v),
        vec![
            vec![(ND, Snd, C)],
            vec![(ND, Rcv, C)],
            vec![(ND, Rcv, C), (ND, Snd, C)]
        ]
    );
    // Stopping the flow in the sender's view: the dispatch under way goes on, as
    // `raise_pair` does (it tests the stop once, before the first hook); nothing after it.
    let v = Views::new(&[Snd, Rcv, Any]).acting(Snd, |cx| cx.stop_monitoring().unwrap());
    assert_eq!(
        run(v),
        vec![
            vec![(ND, Snd, C), (ND, Rcv, S), (ND, Any, S)],
            vec![],
            vec![]
        ]
    );
    // Only a child of CONN_NEW_DATA subscribed: its filter runs, the child is delivered.
    let mut v = Views::new(&[]);
    v.child = true;
    let got = run(v);
    let child = got[0][0].0;
    assert!(!child.is_builtin());
    assert_eq!(
        got,
        vec![
            vec![(child, Rcv, S)],
            vec![(child, Rcv, C)],
            vec![(child, Rcv, C), (child, Rcv, S)],
        ]
    );
}
