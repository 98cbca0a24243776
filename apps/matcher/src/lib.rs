//! A stream content matcher on Ferrule's monitor API: reports each flow side and stream offset
//! where a byte pattern occurs, also when it spans packet boundaries.
//!
//! On `CONN_NEW_DATA` it reads, with `ppeek`, from where the last scan stopped (less the
//! pattern's length minus one, so a match split across segments is seen) to the end of the
//! in-order bytes, and hands every match to a [`Found`] (the image logs it; a test collects
//! it). `ppeek` never moves the `peek` cursor, so the matcher composes with other consumers of
//! the same stream.
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

/// Where matches go, as they are found.
pub trait Found {
    /// One occurrence.
    fn found(&mut self, m: &Match);
}

impl<F: FnMut(&Match)> Found for F {
    fn found(&mut self, m: &Match) {
        self(m)
    }
}

/// The matcher middlebox.
pub struct Matcher<O: Found> {
    pattern: heapless::Vec<u8, MAX_PATTERN>,
    buf: [u8; WINDOW + MAX_PATTERN],
    out: O,
    /// Matches found in total.
    pub total: u64,
}

impl<O: Found> Matcher<O> {
    /// A matcher for `pattern` (1 to [`MAX_PATTERN`] bytes) reporting to `out`.
    pub fn new(pattern: &[u8], out: O) -> Option<Self> {
        if pattern.is_empty() {
            return None;
        }
        Some(Matcher {
            pattern: heapless::Vec::from_slice(pattern).ok()?,
            buf: [0; WINDOW + MAX_PATTERN],
            out,
            total: 0,
        })
    }

    /// The pattern.
    pub fn pattern(&self) -> &[u8] {
        &self.pattern
    }

    /// Its output.
    pub fn out(&mut self) -> &mut O {
        &mut self.out
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
                    self.out.found(&m);
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

impl<O: Found> Middlebox for Matcher<O> {
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

/// Parses a hex pattern at compile time (`FERRULE_PATTERN`): `(bytes, length)`. An odd length,
/// a non-hex digit, an empty pattern or one longer than [`MAX_PATTERN`] bytes fails the build.
pub const fn hex_pattern(hex: &str) -> ([u8; MAX_PATTERN], usize) {
    let h = hex.as_bytes();
    assert!(
        !h.is_empty() && h.len().is_multiple_of(2) && h.len() / 2 <= MAX_PATTERN,
        "the pattern must be 1 to 64 bytes as an even number of hex digits"
    );
    let mut out = [0u8; MAX_PATTERN];
    let mut i = 0;
    while i < h.len() / 2 {
        out[i] = nibble(h[2 * i]) << 4 | nibble(h[2 * i + 1]);
        i += 1;
    }
    (out, h.len() / 2)
}

const fn nibble(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        b'A'..=b'F' => c - b'A' + 10,
        _ => panic!("the pattern has a character that is not a hex digit"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_patterns_parse_at_compile_time() {
        const P: ([u8; MAX_PATTERN], usize) = hex_pattern("deadBEEF4242");
        assert_eq!(&P.0[..P.1], &[0xde, 0xad, 0xbe, 0xef, 0x42, 0x42]);
        assert_eq!(hex_pattern("00").1, 1);
    }
}
