//! `cargo ferrule flows CAPTURE`: one JSON line per TCP connection, hashed stream by stream.
//!
//! The middlebox is `flowlog::FlowLog` (`apps/flowlog`), the same `no_std` code the `flowmon`
//! image runs, so a connection's line here and on the appliance's console are the same bytes.
//! It reads each side's in-order bytes with `peek` on `CONN_NEW_DATA`, and at `CONN_END` it
//! lists the stored fragments with `frag_info` and reads what lies past a hole with `ppeek`.
//! Per direction it prints the bytes held, their sha256 in offset order (holes skipped) and
//! the number of holes, then the TCP state of each endpoint when the connection ended.
//!
//! Connections are printed in the order they end; those still open when the capture ends are
//! ended (and printed) after the last frame, in flow-table order. Mid-stream pickup is on:
//! for a flow whose SYN was not seen, the monitor's pickup rule names the client (a SYN-ACK's
//! sender is the server; otherwise the lower port is the server; with equal ports the first
//! sender is the client), and offsets count from the first byte seen.

use std::io::Write;
use std::path::Path;

use appliance::host::FrameBatch;
use monitor::{Config, HostStorage, Monitor};

pub use flowlog::{FlowDigest, FlowLog};

use super::capture::{Capture, CaptureError, CaptureReader};
use super::checksum::{self, Checksums};
use super::json::FlowLine;

/// Stream bytes each side may buffer (a ceiling: all flows share the chunk pool).
pub const SIDE_CAPACITY: u32 = 16 << 20;
/// Chunk pool: 2 GiB of address space, resident only as chunks are used (the pool is one
/// zeroed allocation, and the monitor hands out never-used chunks last).
pub const POOL_CHUNKS: usize = (2usize << 30) / monitor::CHUNK_SIZE;
/// Flow slots (live connections at once).
pub const DEFAULT_MAX_FLOWS: usize = 1 << 17;
/// Fewest bytes a capture spends per frame (a pcap record header; a pcapng packet block is
/// 32): a file of `n` bytes holds at most `n / 16` frames, hence at most that many flows.
const MIN_RECORD: u64 = 16;

/// Flow slots for a capture of `file_bytes`: `max_flows`, or fewer when the file cannot hold
/// that many frames (the flow table is written out at start, ~600 B a slot; a 1 KB capture
/// needs no 131,072 of them). No flow is ever evicted for the smaller table: each flow needs
/// a frame, and there are fewer frames than slots.
pub fn flow_slots(max_flows: usize, file_bytes: u64) -> usize {
    let frames = usize::try_from(file_bytes / MIN_RECORD + 1).unwrap_or(usize::MAX);
    max_flows.min(frames).max(1)
}

/// Where frames come from: a capture read as it goes, or one loaded in memory.
pub trait Frames {
    /// The next `(timestamp µs, Ethernet frame)`, `None` at the end, or the damage that ends it.
    fn next_frame(&mut self) -> Result<Option<(u64, &[u8])>, CaptureError>;
}

impl<R: std::io::Read> Frames for CaptureReader<R> {
    fn next_frame(&mut self) -> Result<Option<(u64, &[u8])>, CaptureError> {
        CaptureReader::next_frame(self)
    }
}

/// A loaded capture's frames, in order.
pub struct Loaded<'a> {
    cap: &'a Capture,
    next: usize,
}

impl<'a> Loaded<'a> {
    /// The frames of `cap`.
    pub fn new(cap: &'a Capture) -> Self {
        Loaded { cap, next: 0 }
    }
}

impl Frames for Loaded<'_> {
    fn next_frame(&mut self) -> Result<Option<(u64, &[u8])>, CaptureError> {
        let f = self.cap.frame(self.next);
        self.next += 1;
        Ok(f)
    }
}

/// Why `flows` failed.
#[derive(Debug)]
pub enum FlowsError {
    /// The capture could not be read (for a damaged one: after every line before the damage).
    Capture(CaptureError),
    /// The monitor refused its configuration.
    Config(monitor::ConfigError),
    /// A line flowlog wrote is not the JSON schema (a bug).
    Line(String),
    /// Writing the output failed.
    Output(std::io::Error),
}

impl std::fmt::Display for FlowsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FlowsError::Capture(e) => write!(f, "{e}"),
            FlowsError::Config(e) => write!(f, "monitor configuration: {e:?}"),
            FlowsError::Line(e) => write!(f, "flowlog line: {e}"),
            FlowsError::Output(e) => write!(f, "writing the lines: {e}"),
        }
    }
}

impl std::error::Error for FlowsError {}

/// Frames handed to the monitor per receive batch (as a NIC queue would), each read ahead
/// as a whole.
const BATCH: usize = monitor::READ_AHEAD;

/// One monitor batch over the frames of `batch` (`begin_batch` at the first one's time,
/// `read_ahead`, each frame, `end_batch`), then empty it.
fn run_batch<M: monitor::Middlebox>(batch: &mut FrameBatch, mon: &mut Monitor<'_, M>) {
    if let Some(ts) = batch.first_ts() {
        mon.begin_batch(ts);
        mon.read_ahead(batch.iter().map(|(_, f)| f));
        for (ts, f) in batch.iter() {
            let _ = mon.frame(f, ts);
        }
        mon.end_batch();
    }
    batch.clear();
}

/// What a run over a capture produced besides its lines.
pub struct Outcome {
    /// The summary object.
    pub summary: serde_json::Value,
    /// The damage that ended the capture early (every connection seen before it was ended
    /// and written).
    pub damage: Option<CaptureError>,
}

/// Runs `FlowLog` over `frames` into `sink` (each line as the connection ends), frame by
/// frame (no frame is kept), with `max_flows` flow slots and the monitor verifying checksums
/// as `checksums` says; at the end (or the damage) every open connection is ended.
pub fn flows_into<S: flowlog::Sink>(
    frames: &mut impl Frames,
    max_flows: usize,
    checksums: Checksums,
    sink: S,
) -> Result<Outcome, FlowsError> {
    let mut storage: HostStorage<FlowDigest> = HostStorage::new(max_flows, POOL_CHUNKS, 256);
    let cfg = Config {
        side_capacity: SIDE_CAPACITY,
        pickup: true,
        idle_timeout_us: u64::MAX / 4,
        hash_key: Config::random_hash_key(),
        checksums: checksums.into(),
        ..Config::DEFAULT
    };
    let mut mon =
        Monitor::new(FlowLog::new(sink), cfg, storage.storage()).map_err(FlowsError::Config)?;
    // The reader reuses its buffer for each frame: a batch's frames are copied out, so that
    // the monitor can read the whole batch ahead (parse, hash, prefetch) before processing it.
    let mut batch = FrameBatch::default();
    let damage = loop {
        let (stop, damage) = match frames.next_frame() {
            Ok(Some((ts, frame))) => {
                batch.push(ts, frame);
                (false, None)
            }
            Ok(None) => (true, None),
            Err(e) => (true, Some(e)),
        };
        if batch.len() == BATCH || (stop && !batch.is_empty()) {
            run_batch(&mut batch, &mut mon);
        }
        if stop {
            break damage;
        }
    };
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
        "flows": mon.middlebox().flows,
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
        "checksums": checksum::summary(cfg.checksums, c),
    });
    Ok(Outcome { summary, damage })
}

/// Runs `FlowLog` over a loaded capture and returns its lines exactly as written (in end
/// order) and the summary object.
pub fn flow_lines_of(
    cap: &Capture,
    max_flows: usize,
) -> Result<(Vec<String>, serde_json::Value), FlowsError> {
    let mut lines = Vec::new();
    let o = flows_into(
        &mut Loaded::new(cap),
        max_flows,
        Checksums::Auto,
        |l: std::fmt::Arguments<'_>| lines.push(l.to_string()),
    )?;
    Ok((lines, o.summary))
}

/// Runs `FlowLog` over a loaded capture and returns the flow lines parsed (in end order) and
/// the summary object.
pub fn flows_of(
    cap: &Capture,
    max_flows: usize,
) -> Result<(Vec<FlowLine>, serde_json::Value), FlowsError> {
    let (lines, summary) = flow_lines_of(cap, max_flows)?;
    let flows = lines
        .iter()
        .map(|l| serde_json::from_str(l).map_err(|e| FlowsError::Line(format!("{e}: {l}"))))
        .collect::<Result<_, _>>()?;
    Ok((flows, summary))
}

/// `cargo ferrule flows`: streams the JSON lines of `path` to `out` as connections end, then
/// the summary. A damaged capture: every line up to the damage and the summary are written,
/// then the damage is the error.
pub fn run(
    path: &Path,
    max_flows: usize,
    checksums: Checksums,
    out: &mut impl Write,
) -> Result<(), FlowsError> {
    let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(u64::MAX);
    let mut reader = CaptureReader::open(path).map_err(FlowsError::Capture)?;
    let slots = flow_slots(max_flows, size);
    let mut err = None;
    let o = flows_into(
        &mut reader,
        slots,
        checksums,
        |l: std::fmt::Arguments<'_>| {
            if err.is_none() {
                if let Err(e) = out.write_fmt(l).and_then(|()| out.write_all(b"\n")) {
                    err = Some(e);
                }
            }
        },
    )?;
    if let Some(e) = err {
        return Err(FlowsError::Output(e));
    }
    let summary = serde_json::json!({ "summary": o.summary });
    serde_json::to_writer(&mut *out, &summary).map_err(|e| FlowsError::Output(e.into()))?;
    out.write_all(b"\n").map_err(FlowsError::Output)?;
    out.flush().map_err(FlowsError::Output)?;
    match o.damage {
        Some(e) => Err(FlowsError::Capture(e)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::gen::{self, GenConfig};

    /// flowlog formats its lines itself; they must be the very bytes serde wrote for the same
    /// connection before (the schema of `json::FlowLine`), IPv4 and IPv6, holes and all.
    #[test]
    fn flowlog_lines_are_byte_identical_to_the_serde_schema() {
        let dir = tempfile::tempdir().unwrap();
        let pcap = dir.path().join("t.pcap");
        let cfg = GenConfig {
            flows: 60,
            ipv6_pct: 40.0,
            loss_pct: 3.0,
            reorder_pct: 10.0,
            rst_pct: 10.0,
            open_pct: 10.0,
            seed: 5,
            ..GenConfig::default()
        };
        gen::generate_files(&cfg, &pcap).unwrap();
        let cap = Capture::load(&pcap).unwrap();
        let (lines, _) = flow_lines_of(&cap, 1024).unwrap();
        assert_eq!(lines.len(), 60);
        assert!(lines.iter().any(|l| l.contains("\"client\":\"[")));
        assert!(lines.iter().any(|l| !l.contains("\"gaps\":0")));
        for l in &lines {
            let parsed: FlowLine = serde_json::from_str(l).unwrap();
            assert_eq!(*l, serde_json::to_string(&parsed).unwrap());
        }
    }
}
