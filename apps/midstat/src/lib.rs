//! `midstat`, the mOS sample, on Ferrule's monitor API: a table of live connections with each
//! endpoint's emulated TCP state.
//!
//! Buffers are off (midstat reads no bytes). Every state change of either side is recorded per
//! flow; [`table`] renders the live connections as mOS midstat prints them, and the middlebox
//! keeps the full state history of the last connections that ended ([`Midstat::ended`]) so a
//! test can check each side's walk through the state machine.
#![no_std]
#![forbid(unsafe_code)]

use core::fmt::{self, Write};
use monitor::{Ctx, Event, Hook, Middlebox, Monitor, Registry, Side, TcpState};

/// States one side may pass through (LISTEN … TIME_WAIT: at most 11).
pub type History = heapless::Vec<TcpState, 12>;

/// Per-flow state: each side's history, client side first.
#[derive(Default, Clone)]
pub struct Flow {
    /// `[client, server]` state histories, starting at LISTEN.
    pub sides: [History; 2],
}

/// The midstat middlebox.
#[derive(Default)]
pub struct Midstat {
    /// Histories of connections that ended, most recent last (bounded; older ones fall off).
    pub ended: heapless::Deque<Flow, 256>,
    /// Connections that ended in total.
    pub ended_total: u64,
}

impl Middlebox for Midstat {
    type Flow = Flow;

    fn init(&mut self, reg: &mut Registry) {
        reg.subscribe(Event::CONN_START, Hook::Snd);
        reg.subscribe(Event::TCP_STATE_CHANGE, Hook::Snd);
        reg.subscribe(Event::TCP_STATE_CHANGE, Hook::Rcv);
        reg.subscribe(Event::CONN_END, Hook::Snd);
    }

    fn on_event(&mut self, cx: &mut Ctx<'_, '_, Flow>, ev: Event, _hook: Hook, side: Side) {
        let Some(flow) = cx.flow() else { return };
        if ev == Event::CONN_START {
            let _ = cx.disable_buffer(flow, Side::Client);
            let _ = cx.disable_buffer(flow, Side::Server);
            if let Some(f) = cx.user() {
                for h in &mut f.sides {
                    if h.is_empty() {
                        let _ = h.push(TcpState::Listen);
                    }
                }
            }
        }
        let Ok(state) = cx.tcp_state(flow, side) else {
            return;
        };
        if let Some(f) = cx.user() {
            let h = &mut f.sides[side.index()];
            if h.last() != Some(&state) {
                let _ = h.push(state);
            }
        }
        if ev == Event::CONN_END {
            let f = cx.user().map(core::mem::take).unwrap_or_default();
            if self.ended.is_full() {
                self.ended.pop_front();
            }
            let _ = self.ended.push_back(f);
            self.ended_total += 1;
        }
    }
}

/// Writes the live connection table of `mon`'s core as mOS midstat prints it.
pub fn table(mon: &Monitor<'_, Midstat>, cpu: u16, out: &mut impl Write) -> fmt::Result {
    writeln!(
        out,
        "Proto CPU Client Address        Client State Server Address        Server State"
    )?;
    for flow in mon.flows() {
        let Ok(e) = mon.endpoints(flow) else { continue };
        let name = |s| mon.tcp_state(flow, s).map(|s| s.name()).unwrap_or("-");
        let mut c = heapless::String::<64>::new();
        let mut s = heapless::String::<64>::new();
        let _ = write!(c, "{}:{}", e.client.0, e.client.1);
        let _ = write!(s, "{}:{}", e.server.0, e.server.1);
        writeln!(
            out,
            "tcp   {:<3} {:<21} {:<12} {:<21} {}",
            cpu,
            c,
            name(Side::Client),
            s,
            name(Side::Server)
        )?;
    }
    Ok(())
}
