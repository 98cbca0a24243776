//! `simple_firewall`, the mOS sample, on Ferrule's monitor API (inline mode).
//!
//! Rules (see [`rules`]: the mOS rule file, plus IPv6) are looked up at a connection's first
//! frame, client to server, and the first matching rule counts it, as mOS counts SYNs. The
//! appliance turns mid-stream pickup off, so that first frame is the initial SYN. `DROP`: that
//! SYN and every later frame of the connection, both directions, are dropped (a retransmitted
//! SYN counts again, as in mOS); `ACCEPT`, or no match: monitoring stops and the rest of the
//! connection is forwarded untouched. A timer prints the rule table with its counts every
//! second, exactly as mOS's `DumpFWRuleTable`, on the core that `prints` (core 0, as mOS):
//! the counts are atomics shared by the cores (one relaxed add per counted SYN).
#![no_std]
#![forbid(unsafe_code)]

pub mod rules;
pub use rules::{first_match, parse_line, Action, Net, Rule, RuleError, Rules, Table, MAX_RULES};

use core::fmt;
use monitor::{Ctx, Event, Hook, Middlebox, Registry, Side};

/// The print timer's id.
pub const PRINT_TIMER: u32 = 1;
/// Time between two tables, µs (mOS: 1 s).
pub const PERIOD_US: u64 = 1_000_000;

/// Where the table's lines go.
pub trait Out {
    /// One line, without its newline.
    fn line(&mut self, line: fmt::Arguments<'_>);
}

impl<F: FnMut(fmt::Arguments<'_>)> Out for F {
    fn line(&mut self, line: fmt::Arguments<'_>) {
        self(line)
    }
}

/// Per-flow state: the rule that dropped the connection, if one did.
#[derive(Default)]
pub struct Decision {
    /// Whether the rules were looked up (at the first frame).
    pub decided: bool,
    /// Index of the DROP rule the connection matched.
    pub dropped_by: Option<usize>,
}

/// The firewall middlebox of one core.
pub struct Firewall<'t, O: Out> {
    table: Table<'t>,
    out: O,
    /// Whether this core prints the table (mOS: core 0).
    pub prints: bool,
    /// Connections dropped by a rule.
    pub conns_dropped: u64,
    /// Frames dropped (SYNs and the rest of dropped connections, both directions).
    pub frames_dropped: u64,
}

impl<'t, O: Out> Firewall<'t, O> {
    /// A firewall over `table`; `prints`: this core prints the table every second.
    pub fn new(table: Table<'t>, out: O, prints: bool) -> Self {
        Firewall {
            table,
            out,
            prints,
            conns_dropped: 0,
            frames_dropped: 0,
        }
    }

    /// Prints the rule table with its counts.
    pub fn print(&mut self) {
        let out = &mut self.out;
        self.table.lines(|l| out.line(l));
    }

    /// Its output.
    pub fn out(&mut self) -> &mut O {
        &mut self.out
    }
}

impl<O: Out> Middlebox for Firewall<'_, O> {
    type Flow = Decision;

    fn init(&mut self, reg: &mut Registry) {
        reg.subscribe(Event::PKT_IN, Hook::Snd);
        if self.prints {
            let _ = reg.set_timer(PRINT_TIMER, PERIOD_US, PERIOD_US);
        }
    }

    fn on_event(&mut self, cx: &mut Ctx<'_, '_, Decision>, _ev: Event, _hook: Hook, side: Side) {
        let Some(flow) = cx.flow() else { return };
        let Some(v) = cx.user() else { return };
        let (decided, rule) = (v.decided, v.dropped_by);
        if !decided {
            // The connection's first frame: its initial SYN, client to server.
            let Ok(e) = cx.endpoints(flow) else { return };
            let verdict = self
                .table
                .lookup(e.client.0, e.client.1, e.server.0, e.server.1);
            if let Some(v) = cx.user() {
                v.decided = true;
                if let (Some(i), Action::Drop) = verdict {
                    v.dropped_by = Some(i);
                }
            }
            if let (Some(_), Action::Drop) = verdict {
                self.conns_dropped += 1;
                for s in Side::BOTH {
                    let _ = cx.disable_buffer(flow, s);
                }
                if cx.drop_packet().is_ok() {
                    self.frames_dropped += 1;
                }
            } else {
                let _ = cx.stop_monitoring();
            }
        } else if let Some(rule) = rule {
            // A later frame of a dropped connection; a retransmitted SYN (SYN without ACK)
            // counts again, as in mOS.
            if side == Side::Client
                && cx.packet().and_then(tcp_flags).map(|f| f & 0x12) == Some(0x02)
            {
                self.table.count(rule);
            }
            if cx.drop_packet().is_ok() {
                self.frames_dropped += 1;
            }
        }
    }

    fn on_timer(&mut self, _cx: &mut Ctx<'_, '_, Decision>, id: u32) {
        if id == PRINT_TIMER {
            self.print();
        }
    }
}

/// The TCP flags byte of an Ethernet frame (802.1Q/802.1ad tags, IPv4 options and IPv6
/// extension headers skipped), or `None` if it is not a TCP segment's first fragment.
pub fn tcp_flags(f: &[u8]) -> Option<u8> {
    let mut at = 12;
    let mut ethertype = u16::from_be_bytes([*f.get(at)?, *f.get(at + 1)?]);
    while ethertype == 0x8100 || ethertype == 0x88a8 {
        at += 4;
        ethertype = u16::from_be_bytes([*f.get(at)?, *f.get(at + 1)?]);
    }
    let ip = at + 2;
    let l4 = match ethertype {
        0x0800 => {
            let frag = u16::from_be_bytes([*f.get(ip + 6)?, *f.get(ip + 7)?]) & 0x1fff;
            if *f.get(ip + 9)? != 6 || frag != 0 {
                return None;
            }
            ip + usize::from(f.get(ip)? & 0x0f) * 4
        }
        0x86dd => {
            let (mut next, mut at) = (*f.get(ip + 6)?, ip + 40);
            loop {
                match next {
                    6 => break at,
                    0 | 43 | 60 => {
                        next = *f.get(at)?;
                        at += (usize::from(*f.get(at + 1)?) + 1) * 8;
                    }
                    44 => {
                        let off = u16::from_be_bytes([*f.get(at + 2)?, *f.get(at + 3)?]) >> 3;
                        if off != 0 {
                            return None;
                        }
                        next = *f.get(at)?;
                        at += 8;
                    }
                    _ => return None,
                }
            }
        }
        _ => return None,
    };
    f.get(l4 + 13).copied()
}

#[cfg(test)]
mod tests {
    use super::tcp_flags;

    #[test]
    fn flags_are_found_behind_tags_options_and_extension_headers() {
        let mut v4 = [0u8; 14 + 24 + 20].to_vec();
        v4[12..14].copy_from_slice(&[0x08, 0x00]);
        v4[14] = 0x46; // 4 bytes of options
        v4[14 + 9] = 6;
        v4[14 + 24 + 13] = 0x12;
        assert_eq!(tcp_flags(&v4), Some(0x12));
        // Behind an 802.1Q tag.
        let mut tagged = v4[..12].to_vec();
        tagged.extend([0x81, 0x00, 0, 42]);
        tagged.extend(&v4[12..]);
        assert_eq!(tcp_flags(&tagged), Some(0x12));
        // A non-first fragment has no TCP header.
        v4[14 + 6] = 0x00;
        v4[14 + 7] = 0x10;
        assert_eq!(tcp_flags(&v4), None);
        // IPv6 with a hop-by-hop header (8 bytes) before TCP.
        let mut v6 = [0u8; 14 + 40 + 8 + 20].to_vec();
        v6[12..14].copy_from_slice(&[0x86, 0xdd]);
        v6[14 + 6] = 0;
        v6[14 + 40] = 6;
        v6[14 + 48 + 13] = 0x02;
        assert_eq!(tcp_flags(&v6), Some(0x02));
        v6[14 + 40] = 17;
        assert_eq!(tcp_flags(&v6), None);
        assert_eq!(tcp_flags(&[0u8; 10]), None);
    }
}
