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

use monitor::{Config, HostStorage, Monitor};

pub use flowlog::{FlowDigest, FlowLog};

use super::capture::Capture;
use super::json::FlowLine;

/// Stream bytes each side may buffer (a ceiling: all flows share the chunk pool).
pub const SIDE_CAPACITY: u32 = 16 << 20;
/// Chunk pool: 2 GiB of address space, resident only as chunks are used.
pub const POOL_CHUNKS: usize = (2usize << 30) / monitor::CHUNK_SIZE;
/// Flow slots (live connections at once).
pub const DEFAULT_MAX_FLOWS: usize = 1 << 17;

/// The sink of the host tool: every line, in order.
#[derive(Default)]
pub struct Lines(pub Vec<String>);

impl flowlog::Sink for Lines {
    fn line(&mut self, line: std::fmt::Arguments<'_>) {
        self.0.push(line.to_string());
    }
}

/// Why `flows` failed.
#[derive(Debug)]
pub enum FlowsError {
    /// The capture could not be read.
    Capture(super::capture::CaptureError),
    /// The monitor refused its configuration.
    Config(monitor::ConfigError),
    /// A line flowlog wrote is not the JSON schema (a bug).
    Line(String),
}

impl std::fmt::Display for FlowsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FlowsError::Capture(e) => write!(f, "{e}"),
            FlowsError::Config(e) => write!(f, "monitor configuration: {e:?}"),
            FlowsError::Line(e) => write!(f, "flowlog line: {e}"),
        }
    }
}

impl std::error::Error for FlowsError {}

/// Frames handed to the monitor per receive batch (as a NIC queue would).
const BATCH: usize = 32;

/// Runs `FlowLog` over a loaded capture and returns its lines exactly as written (in end
/// order) and the summary object.
pub fn flow_lines_of(
    cap: &Capture,
    max_flows: usize,
) -> Result<(Vec<String>, serde_json::Value), FlowsError> {
    let mut storage: HostStorage<FlowDigest> = HostStorage::new(max_flows, POOL_CHUNKS, 256);
    let cfg = Config {
        side_capacity: SIDE_CAPACITY,
        pickup: true,
        idle_timeout_us: u64::MAX / 4,
        hash_key: Config::random_hash_key(),
        ..Config::DEFAULT
    };
    let mut mon = Monitor::new(FlowLog::new(Lines::default()), cfg, storage.storage())
        .map_err(FlowsError::Config)?;
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
    });
    let lines = std::mem::take(&mut mon.middlebox_mut().sink().0);
    Ok((lines, summary))
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

/// `cargo ferrule flows`: prints the JSON lines of `path` to `out`.
pub fn run(
    path: &Path,
    max_flows: usize,
    out: &mut impl Write,
) -> Result<(), Box<dyn std::error::Error>> {
    let cap = Capture::load(path).map_err(FlowsError::Capture)?;
    let (lines, summary) = flow_lines_of(&cap, max_flows)?;
    for l in &lines {
        out.write_all(l.as_bytes())?;
        out.write_all(b"\n")?;
    }
    serde_json::to_writer(&mut *out, &serde_json::json!({ "summary": summary }))?;
    out.write_all(b"\n")?;
    Ok(())
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
