//! One JSON line per TCP connection, the same on a host and in an image.
//!
//! [`FlowLog`] is an ordinary middlebox on the public monitor API: it reads each side's
//! in-order bytes with `peek` on `CONN_NEW_DATA`, and at `CONN_END` it lists the stored
//! fragments with `frag_info` and reads what lies past a hole with `ppeek`. Per direction it
//! reports the bytes held, their sha256 in offset order (holes skipped), the number of holes
//! and the bytes lost (`BufInfo::lost`: dropped by a limit, or acknowledged by the receiver but
//! never seen by the tap), then the TCP state of each endpoint when the connection ended, as
//! one line:
//!
//! `{"client":"IP:PORT","server":"IP:PORT","c2s":{"bytes":N,"sha256":"HEX","gaps":G,"lost":L},"s2c":{...},"client_state":"TIME_WAIT","server_state":"CLOSED"}`
//!
//! (IPv6 as `[ADDR]:PORT`). The line is handed to a [`Sink`]: `cargo ferrule flows` collects
//! the lines on the host, the `flowmon` image writes them to its core's log. `no_std`, no
//! allocation: the line is formatted straight into the sink, sha256 is `sha2` without `std`.
#![no_std]
#![forbid(unsafe_code)]

use core::fmt;
use core::net::{IpAddr, SocketAddr};

use monitor::{Ctx, Event, FlowHandle, Frag, Hook, Middlebox, PeekError, Registry, Side};
use sha2::{Digest, Sha256};

/// Most fragments listed per side at `CONN_END`: the in-order run and every island the
/// default configuration keeps.
pub const MAX_FRAGS: usize = 1 + monitor::Config::DEFAULT.max_islands as usize;
/// Bytes read per `peek`/`ppeek` call.
pub const READ_CHUNK: usize = 4096;

/// Where finished lines go.
pub trait Sink {
    /// One whole JSON line, without its newline.
    fn line(&mut self, line: fmt::Arguments<'_>);
}

impl<F: FnMut(fmt::Arguments<'_>)> Sink for F {
    fn line(&mut self, line: fmt::Arguments<'_>) {
        self(line)
    }
}

/// One direction's running digest.
#[derive(Default)]
pub struct DirDigest {
    hash: Sha256,
    bytes: u64,
    gaps: u32,
    /// Stream offset just past the last byte hashed.
    next: u64,
    /// Bytes lost (`BufInfo::lost`), taken at `CONN_END`.
    lost: u64,
}

impl DirDigest {
    fn add(&mut self, offset: u64, data: &[u8]) {
        if offset > self.next {
            self.gaps += 1;
        }
        self.hash.update(data);
        self.bytes += data.len() as u64;
        self.next = offset + data.len() as u64;
    }
}

/// Per-flow state: one digest per receiving side (`Side::Server` holds client→server bytes).
#[derive(Default)]
pub struct FlowDigest {
    sides: [DirDigest; 2],
}

/// The middlebox: one line per connection as it ends, handed to `S`.
pub struct FlowLog<S: Sink> {
    sink: S,
    /// Connections reported so far.
    pub flows: u64,
    buf: [u8; READ_CHUNK],
    frags: [Frag; MAX_FRAGS],
}

impl<S: Sink> FlowLog<S> {
    /// A middlebox writing its lines to `sink`.
    pub fn new(sink: S) -> Self {
        FlowLog {
            sink,
            flows: 0,
            buf: [0; READ_CHUNK],
            frags: [Frag { offset: 0, len: 0 }; MAX_FRAGS],
        }
    }

    /// The sink.
    pub fn sink(&mut self) -> &mut S {
        &mut self.sink
    }

    /// Reads everything new in order on `side` (the receiving side) into its digest.
    fn drain(&mut self, cx: &mut Ctx<'_, '_, FlowDigest>, flow: FlowHandle, side: Side) {
        loop {
            let start = cx.user().map_or(0, |d| d.sides[side.index()].next);
            match cx.peek(flow, side, &mut self.buf) {
                Ok(0) => return,
                Ok(n) => {
                    if let Some(d) = cx.user() {
                        d.sides[side.index()].add(start, &self.buf[..n]);
                    }
                }
                // Bytes were overwritten before they were read: the cursor moved on to the
                // oldest byte still held, and the lost range counts as a hole.
                Err(PeekError::Overwritten { oldest, .. }) => {
                    if let Some(d) = cx.user() {
                        let s = &mut d.sides[side.index()];
                        if oldest > s.next {
                            s.gaps += 1;
                            s.next = oldest;
                        }
                    }
                }
                Err(_) => return,
            }
        }
    }

    /// At `CONN_END`: what lies past the in-order bytes (islands after holes), via
    /// `frag_info` and `ppeek`.
    fn drain_islands(&mut self, cx: &mut Ctx<'_, '_, FlowDigest>, flow: FlowHandle, side: Side) {
        let Ok(total) = cx.frag_info(flow, side, &mut self.frags) else {
            return;
        };
        for i in 0..total.min(MAX_FRAGS) {
            let Frag { offset, len } = self.frags[i];
            let mut at = offset;
            let end = offset + len;
            if let Some(d) = cx.user() {
                at = at.max(d.sides[side.index()].next);
            }
            while at < end {
                let want = ((end - at) as usize).min(READ_CHUNK);
                match cx.ppeek(flow, side, at, &mut self.buf[..want]) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if let Some(d) = cx.user() {
                            d.sides[side.index()].add(at, &self.buf[..n]);
                        }
                        at += n as u64;
                    }
                }
            }
        }
    }
}

/// `IP:PORT`, IPv6 as `[ADDR]:PORT` (what `SocketAddr` prints, without scope or flow info).
struct Endpoint(IpAddr, u16);

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&SocketAddr::new(self.0, self.1), f)
    }
}

/// Lower-case hex of a digest.
struct Hex<'a>(&'a [u8]);

impl fmt::Display for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// A finished direction: `{"bytes":N,"sha256":"HEX","gaps":G,"lost":L}`.
struct Dir {
    bytes: u64,
    sha: [u8; 32],
    gaps: u32,
    lost: u64,
}

impl Dir {
    fn of(d: DirDigest) -> Dir {
        Dir {
            bytes: d.bytes,
            sha: d.hash.finalize().into(),
            gaps: d.gaps,
            lost: d.lost,
        }
    }
}

impl fmt::Display for Dir {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{{\"bytes\":{},\"sha256\":\"{}\",\"gaps\":{},\"lost\":{}}}",
            self.bytes,
            Hex(&self.sha),
            self.gaps,
            self.lost
        )
    }
}

impl<S: Sink> Middlebox for FlowLog<S> {
    type Flow = FlowDigest;

    fn init(&mut self, reg: &mut Registry) {
        reg.subscribe(Event::CONN_NEW_DATA, Hook::Rcv);
        reg.subscribe(Event::CONN_END, Hook::Any);
    }

    fn on_event(&mut self, cx: &mut Ctx<'_, '_, FlowDigest>, ev: Event, _hook: Hook, side: Side) {
        let Some(flow) = cx.flow() else { return };
        if ev == Event::CONN_NEW_DATA {
            self.drain(cx, flow, side);
        } else if ev == Event::CONN_END {
            for s in Side::BOTH {
                self.drain(cx, flow, s);
                self.drain_islands(cx, flow, s);
                let lost = cx.buf_info(flow, s).map_or(0, |b| b.lost);
                if let Some(d) = cx.user() {
                    d.sides[s.index()].lost = lost;
                }
            }
            let (Ok(ends), Ok(cs), Ok(ss)) = (
                cx.endpoints(flow),
                cx.tcp_state(flow, Side::Client),
                cx.tcp_state(flow, Side::Server),
            ) else {
                return;
            };
            let digest = cx.user().map(core::mem::take).unwrap_or_default();
            let [s2c, c2s] = digest.sides;
            self.flows += 1;
            self.sink.line(format_args!(
                "{{\"client\":\"{}\",\"server\":\"{}\",\"c2s\":{},\"s2c\":{},\"client_state\":\"{}\",\"server_state\":\"{}\"}}",
                Endpoint(ends.client.0, ends.client.1),
                Endpoint(ends.server.0, ends.server.1),
                Dir::of(c2s),
                Dir::of(s2c),
                cs.name(),
                ss.name()
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::string::{String, ToString};

    #[test]
    fn pieces_format_as_the_schema_says() {
        let v6: IpAddr = "fd00::1".parse().unwrap();
        assert_eq!(Endpoint(v6, 443).to_string(), "[fd00::1]:443");
        let v4: IpAddr = "10.0.0.1".parse().unwrap();
        assert_eq!(Endpoint(v4, 80).to_string(), "10.0.0.1:80");
        assert_eq!(Hex(&[0x00, 0xab, 0x7f]).to_string(), "00ab7f");
        let mut d = DirDigest::default();
        d.add(0, b"ab");
        d.add(5, b"c"); // a hole of 3 bytes
        d.lost = 3;
        let dir = Dir::of(d);
        assert_eq!(
            dir.to_string(),
            "{\"bytes\":3,\"sha256\":\"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\",\"gaps\":1,\"lost\":3}"
        );
    }

    #[test]
    fn a_closure_is_a_sink() {
        let mut got = String::new();
        let mut sink = |l: fmt::Arguments<'_>| got = l.to_string();
        Sink::line(&mut sink, format_args!("x {}", 1));
        assert_eq!(got, "x 1");
    }
}
