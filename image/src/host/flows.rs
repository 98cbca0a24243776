//! `cargo ferrule flows CAPTURE`: one JSON line per TCP connection, hashed stream by stream.
//!
//! [`FlowsApp`] is an ordinary middlebox written against the public monitor API: it reads
//! each side's in-order bytes with `peek` on `CONN_NEW_DATA`, and at `CONN_END` it lists the
//! stored fragments with `frag_info` and reads what lies past a hole with `ppeek`. Per
//! direction it prints the bytes held, their sha256 in offset order (holes skipped) and the
//! number of holes, then the TCP state of each endpoint when the connection ended.
//!
//! Connections are printed in the order they end; those still open when the capture ends are
//! ended (and printed) after the last frame, in flow-table order. Mid-stream pickup is on:
//! for a flow whose SYN was not seen, the monitor's pickup rule names the client (a SYN-ACK's
//! sender is the server; otherwise the lower port is the server; with equal ports the first
//! sender is the client), and offsets count from the first byte seen.

use std::io::Write;
use std::path::Path;

use monitor::{
    Config, Ctx, Event, FlowHandle, Frag, Hook, HostStorage, Middlebox, Monitor, PeekError, Side,
};
use sha2::{Digest, Sha256};

use super::capture::Capture;
use super::gen::{endpoint, hex};
use super::json::{DirSummary, FlowLine};

/// Stream bytes each side may buffer (a ceiling: all flows share the chunk pool).
pub const SIDE_CAPACITY: u32 = 16 << 20;
/// Chunk pool: 2 GiB of address space, resident only as chunks are used.
pub const POOL_CHUNKS: usize = (2usize << 30) / monitor::CHUNK_SIZE;
/// Flow slots (live connections at once).
pub const DEFAULT_MAX_FLOWS: usize = 1 << 17;
/// Most fragments listed per side at `CONN_END`.
const MAX_FRAGS: usize = 64;

/// One direction's running digest.
#[derive(Default)]
pub struct DirDigest {
    hash: Sha256,
    bytes: u64,
    gaps: u32,
    /// Stream offset just past the last byte hashed.
    next: u64,
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

    fn finish(self) -> DirSummary {
        DirSummary {
            bytes: self.bytes,
            sha256: hex(&self.hash.finalize()),
            gaps: self.gaps,
        }
    }
}

/// Per-flow state: one digest per receiving side (`Side::Server` holds client→server bytes).
#[derive(Default)]
pub struct FlowDigest {
    sides: [DirDigest; 2],
}

/// The `flows` middlebox: collects one [`FlowLine`] per connection as it ends.
pub struct FlowsApp {
    /// Finished connections, in the order they ended.
    pub lines: Vec<FlowLine>,
    buf: Vec<u8>,
    frags: Vec<Frag>,
}

impl Default for FlowsApp {
    fn default() -> Self {
        FlowsApp {
            lines: Vec::new(),
            buf: vec![0; 64 * 1024],
            frags: vec![Frag { offset: 0, len: 0 }; MAX_FRAGS],
        }
    }
}

impl FlowsApp {
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
        for i in 0..total.min(self.frags.len()) {
            let Frag { offset, len } = self.frags[i];
            let mut at = offset;
            let end = offset + len;
            if let Some(d) = cx.user() {
                at = at.max(d.sides[side.index()].next);
            }
            while at < end {
                let want = ((end - at) as usize).min(self.buf.len());
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

impl Middlebox for FlowsApp {
    type Flow = FlowDigest;

    fn init(&mut self, reg: &mut monitor::Registry) {
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
            }
            let (Ok(ends), Ok(cs), Ok(ss)) = (
                cx.endpoints(flow),
                cx.tcp_state(flow, Side::Client),
                cx.tcp_state(flow, Side::Server),
            ) else {
                return;
            };
            let digest = cx.user().map(std::mem::take).unwrap_or_default();
            let [s2c, c2s] = digest.sides;
            self.lines.push(FlowLine {
                client: endpoint(ends.client.0, ends.client.1),
                server: endpoint(ends.server.0, ends.server.1),
                c2s: c2s.finish(),
                s2c: s2c.finish(),
                client_state: cs.name().to_string(),
                server_state: ss.name().to_string(),
            });
        }
    }
}

/// Why `flows` failed.
#[derive(Debug)]
pub enum FlowsError {
    /// The capture could not be read.
    Capture(super::capture::CaptureError),
    /// The monitor refused its configuration.
    Config(monitor::ConfigError),
}

impl std::fmt::Display for FlowsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FlowsError::Capture(e) => write!(f, "{e}"),
            FlowsError::Config(e) => write!(f, "monitor configuration: {e:?}"),
        }
    }
}

impl std::error::Error for FlowsError {}

/// Frames handed to the monitor per receive batch (as a NIC queue would).
const BATCH: usize = 32;

/// Runs [`FlowsApp`] over a loaded capture and returns the flow lines (in end order) and the
/// summary object.
pub fn flows_of(
    cap: &Capture,
    max_flows: usize,
) -> Result<(Vec<FlowLine>, serde_json::Value), FlowsError> {
    let mut storage: HostStorage<FlowDigest> = HostStorage::new(max_flows, POOL_CHUNKS, 256);
    let cfg = Config {
        side_capacity: SIDE_CAPACITY,
        pickup: true,
        idle_timeout_us: u64::MAX / 4,
        ..Config::DEFAULT
    };
    let mut mon =
        Monitor::new(FlowsApp::default(), cfg, storage.storage()).map_err(FlowsError::Config)?;
    let mut batch: Vec<(&[u8], u64)> = Vec::with_capacity(BATCH);
    for (ts, frame) in cap.frames() {
        batch.push((frame, ts));
        if batch.len() == BATCH {
            mon.on_batch(batch.drain(..));
        }
    }
    mon.on_batch(batch.drain(..));
    mon.close_all();
    let c = mon.counters();
    let dropped: serde_json::Map<String, serde_json::Value> = monitor::DropReason::ALL
        .iter()
        .filter(|r| c.drop_count(**r) > 0)
        .map(|r| (r.name().to_string(), c.drop_count(*r).into()))
        .collect();
    let summary = serde_json::json!({
        "packets": c.frames,
        "frame_bytes": c.frame_bytes,
        "tcp_packets": c.tcp_packets,
        "flows": mon.middlebox().lines.len(),
        "flows_created": c.flows_created,
        "flows_picked_up": c.flows_picked_up,
        "flows_closed": c.flows_closed,
        "flows_timed_out": c.flows_timed_out,
        "flows_evicted": c.flows_evicted,
        "datagrams_reassembled": c.datagrams_reassembled,
        "bytes_stored": c.bytes_stored,
        "bytes_dropped": c.bytes_dropped,
        "bytes_overwritten": c.bytes_overwritten,
        "rexmits": c.rexmits,
        "dropped_frames": c.total_dropped(),
        "dropped": dropped,
    });
    let lines = std::mem::take(&mut mon.middlebox_mut().lines);
    Ok((lines, summary))
}

/// `cargo ferrule flows`: prints the JSON lines of `path` to `out`.
pub fn run(
    path: &Path,
    max_flows: usize,
    out: &mut impl Write,
) -> Result<(), Box<dyn std::error::Error>> {
    let cap = Capture::load(path).map_err(FlowsError::Capture)?;
    let (lines, summary) = flows_of(&cap, max_flows)?;
    for l in &lines {
        serde_json::to_writer(&mut *out, l)?;
        out.write_all(b"\n")?;
    }
    serde_json::to_writer(&mut *out, &serde_json::json!({ "summary": summary }))?;
    out.write_all(b"\n")?;
    Ok(())
}
