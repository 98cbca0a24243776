//! The JSON-lines schema shared by `cargo ferrule flows` and the generator's ground truth.

use serde::{Deserialize, Serialize};

/// One direction of a connection: the stream bytes held, their sha256 (offset order, holes
/// skipped), the number of holes and the bytes lost.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirSummary {
    /// Stream bytes seen (holes excluded).
    pub bytes: u64,
    /// Lower-case hex sha256 of those bytes in offset order.
    pub sha256: String,
    /// Number of holes (missing byte ranges, a leading one included).
    pub gaps: u32,
    /// Bytes lost: dropped by a monitor limit (islands, pool, capacity past a hole), or
    /// acknowledged by the receiving endpoint but never seen by the tap (`BufInfo::lost`).
    pub lost: u64,
}

/// One TCP connection, as one JSON line:
/// `{"client":"IP:PORT","server":"IP:PORT","c2s":{..},"s2c":{..},"client_state":"..","server_state":".."}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowLine {
    /// The SYN sender, `IP:PORT` or `[IPv6]:PORT`.
    pub client: String,
    /// The SYN receiver.
    pub server: String,
    /// Client→server stream.
    pub c2s: DirSummary,
    /// Server→client stream.
    pub s2c: DirSummary,
    /// Client side's TCP state when the connection ended (mOS names, e.g. `TIME_WAIT`).
    pub client_state: String,
    /// Server side's TCP state when the connection ended.
    pub server_state: String,
}

/// Splits JSON lines into flow lines and the final summary object.
pub fn parse_lines(text: &str) -> Result<(Vec<FlowLine>, serde_json::Value), String> {
    let mut flows = Vec::new();
    let mut summary = None;
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let v: serde_json::Value =
            serde_json::from_str(line).map_err(|e| format!("line {}: {e}", i + 1))?;
        if let Some(s) = v.get("summary") {
            summary = Some(s.clone());
        } else {
            flows.push(serde_json::from_value(v).map_err(|e| format!("line {}: {e}", i + 1))?);
        }
    }
    Ok((flows, summary.ok_or("no summary line")?))
}
