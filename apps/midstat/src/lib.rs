//! `midstat`, the mOS sample, on Ferrule's monitor API: every second, the table of live
//! connections with each endpoint's emulated TCP state, as mOS midstat prints it.
//!
//! Buffers are off (midstat reads no bytes). As in mOS, the connections of a core are kept in
//! a list in the order they started (`CONN_START`, sender view), each side's state is
//! recorded at every `TCP_STATE_CHANGE` (sender and receiver views), and a connection leaves
//! the list at `CONN_END`. The list is threaded through the per-flow state (the previous and
//! next flow's handles), so it needs no table of its own and every step is O(1). A per-core
//! timer prints the table through an [`Out`]: the image's core log, or a host's stdout.
#![no_std]
#![forbid(unsafe_code)]

use core::fmt;
use core::net::SocketAddr;

use monitor::{Ctx, Event, FlowHandle, Hook, Middlebox, Registry, Side, TcpState};

/// The table's header line, as mOS prints it.
pub const HEADER: &str =
    "Proto CPU Client Address        Client State Server Address        Server State";
/// The print timer's id.
pub const PRINT_TIMER: u32 = 1;
/// Time between two tables, µs (mOS: 1 s).
pub const PERIOD_US: u64 = 1_000_000;

/// Where midstat's lines go.
pub trait Out {
    /// One line, without its newline.
    fn line(&mut self, line: fmt::Arguments<'_>);
    /// A connection left the table (its full state history). Default: nothing.
    fn ended(&mut self, conn: &Conn) {
        let _ = conn;
    }
}

/// States one side may pass through (LISTEN … TIME_WAIT: at most 11).
pub type History = heapless::Vec<TcpState, 12>;

/// Per-flow state: each side's state history and the flow's place in the core's list.
#[derive(Default, Clone)]
pub struct Conn {
    /// `[client, server]` state histories, starting at LISTEN.
    pub sides: [History; 2],
    prev: Option<FlowHandle>,
    next: Option<FlowHandle>,
}

/// The midstat middlebox of one core.
pub struct Midstat<O: Out> {
    out: O,
    head: Option<FlowHandle>,
    tail: Option<FlowHandle>,
    /// Connections in the table.
    pub live: u64,
    /// Connections that left it.
    pub ended: u64,
}

impl<O: Out> Midstat<O> {
    /// A midstat writing to `out`.
    pub fn new(out: O) -> Self {
        Midstat {
            out,
            head: None,
            tail: None,
            live: 0,
            ended: 0,
        }
    }

    /// Its output.
    pub fn out(&mut self) -> &mut O {
        &mut self.out
    }

    /// `TAILQ_INSERT_TAIL`.
    fn link(&mut self, cx: &mut Ctx<'_, '_, Conn>, flow: FlowHandle) {
        if let Some(t) = self.tail.and_then(|t| cx.user_of(t)) {
            t.next = Some(flow);
        } else {
            self.head = Some(flow);
        }
        if let Some(c) = cx.user() {
            c.prev = self.tail;
            c.next = None;
        }
        self.tail = Some(flow);
        self.live += 1;
    }

    /// `TAILQ_REMOVE`.
    fn unlink(&mut self, cx: &mut Ctx<'_, '_, Conn>) {
        let Some((prev, next)) = cx.user().map(|c| (c.prev, c.next)) else {
            return;
        };
        match prev.and_then(|p| cx.user_of(p)) {
            Some(p) => p.next = next,
            None => self.head = next,
        }
        match next.and_then(|n| cx.user_of(n)) {
            Some(n) => n.prev = prev,
            None => self.tail = prev,
        }
        self.live -= 1;
        self.ended += 1;
    }

    /// Prints the table of this core's live connections (mOS's `cb_printstat`).
    pub fn print(&mut self, cx: &mut Ctx<'_, '_, Conn>) {
        self.out.line(format_args!("{HEADER}"));
        let cpu = cx.core_id();
        let mut at = self.head;
        let mut guard = self.live;
        while let (Some(flow), true) = (at, guard > 0) {
            guard -= 1;
            let Ok(e) = cx.endpoints(flow) else { break };
            let state = |s| cx.tcp_state(flow, s).map_or("-", TcpState::name);
            let (cs, ss) = (state(Side::Client), state(Side::Server));
            self.out.line(format_args!(
                "{:<5} {:<3} {:<21} {:<12} {:<21} {:<12}",
                "tcp",
                cpu,
                Pad(SocketAddr::new(e.client.0, e.client.1)),
                cs,
                Pad(SocketAddr::new(e.server.0, e.server.1)),
                ss
            ));
            at = cx.user_of(flow).and_then(|c| c.next);
        }
    }
}

/// Formats an address so `{:<21}` pads it (`SocketAddr`'s `Display` ignores the width).
struct Pad(SocketAddr);

impl fmt::Display for Pad {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = heapless::String::<64>::new();
        let _ = fmt::Write::write_fmt(&mut s, format_args!("{}", self.0));
        f.pad(&s)
    }
}

impl<O: Out> Middlebox for Midstat<O> {
    type Flow = Conn;

    fn init(&mut self, reg: &mut Registry) {
        reg.subscribe(Event::CONN_START, Hook::Snd);
        reg.subscribe(Event::TCP_STATE_CHANGE, Hook::Snd);
        reg.subscribe(Event::TCP_STATE_CHANGE, Hook::Rcv);
        reg.subscribe(Event::CONN_END, Hook::Snd);
        let _ = reg.set_timer(PRINT_TIMER, PERIOD_US, PERIOD_US);
    }

    fn on_event(&mut self, cx: &mut Ctx<'_, '_, Conn>, ev: Event, _hook: Hook, side: Side) {
        let Some(flow) = cx.flow() else { return };
        if ev == Event::CONN_START {
            let _ = cx.disable_buffer(flow, Side::Client);
            let _ = cx.disable_buffer(flow, Side::Server);
            self.link(cx, flow);
            if let Some(c) = cx.user() {
                for h in &mut c.sides {
                    let _ = h.push(TcpState::Listen);
                }
            }
        }
        if let (Ok(state), Some(c)) = (cx.tcp_state(flow, side), cx.user()) {
            let h = &mut c.sides[side.index()];
            if h.last() != Some(&state) {
                let _ = h.push(state);
            }
        }
        if ev == Event::CONN_END {
            self.unlink(cx);
            if let Some(c) = cx.user() {
                let c = core::mem::take(c);
                self.out.ended(&c);
            }
        }
    }

    fn on_timer(&mut self, cx: &mut Ctx<'_, '_, Conn>, id: u32) {
        if id == PRINT_TIMER {
            self.print(cx);
        }
    }
}
