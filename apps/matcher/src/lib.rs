//! A stream content matcher on Ferrule's monitor API: reports each flow side and stream offset
//! where a byte pattern occurs, also when it spans packet boundaries.
//!
//! On `CONN_NEW_DATA` it reads, with `ppeek`, from where the last scan stopped (less the
//! pattern's length minus one, so a match split across segments is seen) to the end of the
//! in-order bytes, and records every match. `ppeek` never moves the `peek` cursor, so the
//! matcher composes with other consumers of the same stream.
#![no_std]
#![forbid(unsafe_code)]

use monitor::{Ctx, Endpoints, Event, FlowHandle, Hook, Middlebox, Registry, Side};

/// Longest pattern.
pub const MAX_PATTERN: usize = 64;
/// Bytes read per `ppeek`.
const WINDOW: usize = 4096;

/// One occurrence: the flow, the side whose buffer holds it (a side's buffer holds the bytes
/// that side RECEIVES: `Side::Server` = client→server), and its stream offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Match {
    /// The flow.
    pub flow: FlowHandle,
    /// Its client and server (the flow may have ended by the time the match is read).
    pub endpoints: Option<Endpoints>,
    /// The receiving side.
    pub side: Side,
    /// Stream offset of the pattern's first byte.
    pub offset: u64,
}

/// Per-flow state: where each side's next scan starts.
#[derive(Default)]
pub struct Scan {
    next: [u64; 2],
}

/// The matcher middlebox.
pub struct Matcher {
    pattern: heapless::Vec<u8, MAX_PATTERN>,
    buf: [u8; WINDOW + MAX_PATTERN],
    /// Matches not yet taken by the caller (bounded; see `lost`).
    pub matches: heapless::Vec<Match, 1024>,
    /// Matches found in total.
    pub total: u64,
    /// Matches found while `matches` was full.
    pub lost: u64,
}

impl Matcher {
    /// A matcher for `pattern` (1 to [`MAX_PATTERN`] bytes).
    pub fn new(pattern: &[u8]) -> Option<Matcher> {
        if pattern.is_empty() {
            return None;
        }
        Some(Matcher {
            pattern: heapless::Vec::from_slice(pattern).ok()?,
            buf: [0; WINDOW + MAX_PATTERN],
            matches: heapless::Vec::new(),
            total: 0,
            lost: 0,
        })
    }

    fn scan(&mut self, cx: &mut Ctx<'_, '_, Scan>, flow: FlowHandle, side: Side) {
        let Ok(info) = cx.buf_info(flow, side) else {
            return;
        };
        let plen = self.pattern.len() as u64;
        let endpoints = cx.endpoints(flow).ok();
        let mut at = cx
            .user()
            .map_or(0, |s| s.next[side.index()])
            .max(info.oldest);
        while at + plen <= info.in_order_end {
            let want = ((info.in_order_end - at) as usize).min(self.buf.len());
            let n = match cx.ppeek(flow, side, at, &mut self.buf[..want]) {
                Ok(n) if n > 0 => n,
                _ => break,
            };
            let window = &self.buf[..n];
            for (i, w) in window.windows(self.pattern.len()).enumerate() {
                if w == self.pattern.as_slice() {
                    self.total += 1;
                    let m = Match {
                        flow,
                        endpoints,
                        side,
                        offset: at + i as u64,
                    };
                    if self.matches.push(m).is_err() {
                        self.lost += 1;
                    }
                }
            }
            if (n as u64) < plen {
                break;
            }
            // Next window starts where a match could still begin.
            at += n as u64 - (plen - 1);
        }
        if let Some(s) = cx.user() {
            s.next[side.index()] = at;
        }
    }
}

impl Middlebox for Matcher {
    type Flow = Scan;

    fn init(&mut self, reg: &mut Registry) {
        reg.subscribe(Event::CONN_NEW_DATA, Hook::Rcv);
    }

    fn on_event(&mut self, cx: &mut Ctx<'_, '_, Scan>, _ev: Event, _hook: Hook, side: Side) {
        if let Some(flow) = cx.flow() {
            self.scan(cx, flow, side);
        }
    }
}
