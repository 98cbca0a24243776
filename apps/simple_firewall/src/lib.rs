//! `simple_firewall`, the mOS sample, on Ferrule's monitor API (inline mode).
//!
//! Reads an mOS rule file (see [`rules`]). At each connection's first SYN (`CONN_START`, sender
//! view) it finds the first matching rule and counts it: `DROP` drops that SYN and every later
//! packet the client sends on that connection (retransmitted SYNs are dropped and counted
//! again); `ACCEPT`, or no match, stops monitoring the flow so the rest of it is forwarded
//! untouched. The table prints as mOS prints it (`Display` on [`Rules`]). IPv6 connections
//! match no rule (the mOS format is IPv4 only) and are accepted.
#![no_std]
#![forbid(unsafe_code)]

pub mod rules;
pub use rules::{Action, Rule, RuleError, Rules};

use core::net::IpAddr;
use monitor::{Ctx, Event, Hook, Middlebox, Registry, Side};

/// Per-flow state: the rule a dropped connection matched.
#[derive(Default)]
pub struct Blocked(Option<usize>);

/// The firewall middlebox.
pub struct Firewall {
    /// The rule table with its per-rule counts.
    pub rules: Rules,
    /// SYNs dropped (first and retransmitted).
    pub syns_dropped: u64,
    /// Other client packets of dropped connections dropped.
    pub packets_dropped: u64,
}

impl Firewall {
    /// A firewall with this rule table.
    pub fn new(rules: Rules) -> Firewall {
        Firewall {
            rules,
            syns_dropped: 0,
            packets_dropped: 0,
        }
    }
}

impl Middlebox for Firewall {
    type Flow = Blocked;

    fn init(&mut self, reg: &mut Registry) {
        reg.subscribe(Event::CONN_START, Hook::Snd);
        reg.subscribe(Event::PKT_IN, Hook::Snd);
    }

    fn on_event(&mut self, cx: &mut Ctx<'_, '_, Blocked>, ev: Event, _hook: Hook, side: Side) {
        let Some(flow) = cx.flow() else { return };
        if ev == Event::CONN_START && side == Side::Client {
            let Ok(ends) = cx.endpoints(flow) else { return };
            let (Some((IpAddr::V4(c), cp)), Some((IpAddr::V4(s), sp))) =
                (Some(ends.client), Some(ends.server))
            else {
                let _ = cx.stop_monitoring();
                return;
            };
            match self.rules.lookup(c, cp, s, sp) {
                (Some(i), Action::Drop) => {
                    if let Some(b) = cx.user() {
                        b.0 = Some(i);
                    }
                    if cx.drop_packet().is_ok() {
                        self.syns_dropped += 1;
                    }
                }
                _ => {
                    let _ = cx.stop_monitoring();
                }
            }
        } else if ev == Event::PKT_IN && side == Side::Client {
            // A later packet of a dropped connection: a retransmitted SYN counts again.
            let Some(rule) = cx.user().and_then(|b| b.0) else {
                return;
            };
            let syn = cx
                .tcp_state(flow, Side::Client)
                .map(|s| s.name() == "SYN_SENT")
                .unwrap_or(false);
            if cx.drop_packet().is_ok() {
                if syn {
                    self.syns_dropped += 1;
                    self.rules.count(rule);
                } else {
                    self.packets_dropped += 1;
                }
            }
        }
    }
}
