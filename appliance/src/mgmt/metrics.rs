//! Per-core counters readable without locks, and the Prometheus text page made from them.
//!
//! Each monitoring core owns one [`CoreMetrics`] (its own cache lines) and stores a fresh
//! [`Sample`] into it at the end of a batch (relaxed stores, no lock, no waiting). The
//! management core loads them whenever it answers `GET /metrics`; a page may mix values of
//! two consecutive batches of one core, never a torn number (each is one atomic `u64`).
//!
//! Names: `ferrule_core_*{core="N"}` per core and `ferrule_*` for the sum over cores, so a
//! PromQL `sum()` over either family never counts twice.

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicU64, Ordering};

use monitor::{Counters, DropReason};

/// Index of each value in a [`Sample`].
pub mod slot {
    /// Frames received (given to the monitor).
    pub const FRAMES: usize = 0;
    /// Bytes of those frames.
    pub const BYTES: usize = 1;
    /// TCP segments of monitored flows.
    pub const TCP_SEGMENTS: usize = 2;
    /// Live flows (gauge).
    pub const FLOWS_LIVE: usize = 3;
    /// Flows created.
    pub const FLOWS_CREATED: usize = 4;
    /// Flows picked up mid-stream.
    pub const FLOWS_PICKED_UP: usize = 5;
    /// Flows ended by FIN/RST.
    pub const ENDED_CLOSED: usize = 6;
    /// Flows ended by the idle timeout.
    pub const ENDED_TIMEOUT: usize = 7;
    /// Flows evicted from a full table.
    pub const ENDED_EVICTED: usize = 8;
    /// Flows ended at shutdown.
    pub const ENDED_FLUSHED: usize = 9;
    /// Retransmissions seen.
    pub const REXMITS: usize = 10;
    /// Malformed segments for their flow.
    pub const BAD_SEGMENTS: usize = 11;
    /// Payload bytes stored.
    pub const BYTES_STORED: usize = 12;
    /// Payload bytes that could not be stored (`ERROR` raised).
    pub const BYTES_DROPPED: usize = 13;
    /// In-order bytes overwritten in a full ring.
    pub const BYTES_OVERWRITTEN: usize = 14;
    /// Chunk wanted with the pool empty.
    pub const POOL_EXHAUSTED: usize = 15;
    /// IP datagrams reassembled.
    pub const REASSEMBLED: usize = 16;
    /// Chunks in use (gauge).
    pub const POOL_USED: usize = 17;
    /// Chunks in the pool (gauge).
    pub const POOL_SIZE: usize = 18;
    /// Log ring bytes in use (gauge).
    pub const LOG_USED: usize = 19;
    /// Log lines dropped for a full ring.
    pub const LOG_DROPPED: usize = 20;
    /// Inline: frames forwarded.
    pub const FORWARDED: usize = 21;
    /// Inline: frames dropped by a verdict.
    pub const VERDICT_DROPS: usize = 22;
    /// Inline: frames lost to a full transmit ring.
    pub const TX_FULL: usize = 23;
    /// Inline: frames injected by the app.
    pub const INJECTED: usize = 24;
    /// First of the frames not monitored, one per `DropReason` in `DropReason::ALL` order.
    pub const DROPS: usize = 25;
    /// Values in a sample.
    pub const COUNT: usize = DROPS + monitor::DropReason::COUNT;
}

/// One core's values at the end of a batch, indexed by [`slot`].
pub type Sample = [u64; slot::COUNT];

/// What the runtime itself counts on a core's path (the monitor counts the rest).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PathCounts {
    /// Frames forwarded (inline).
    pub forwarded: u64,
    /// Frames dropped by a verdict (inline).
    pub verdict_drops: u64,
    /// Frames lost to a full transmit ring.
    pub tx_full: u64,
    /// Frames injected by the app.
    pub injected: u64,
    /// Log ring bytes in use.
    pub log_used: u64,
    /// Log lines dropped.
    pub log_dropped: u64,
}

/// Builds a core's sample from its monitor's counters and gauges.
pub fn sample(c: &Counters, live: u64, pool_used: u64, pool_size: u64, p: PathCounts) -> Sample {
    let mut s = [0u64; slot::COUNT];
    s[slot::FRAMES] = c.frames;
    s[slot::BYTES] = c.frame_bytes;
    s[slot::TCP_SEGMENTS] = c.tcp_packets;
    s[slot::FLOWS_LIVE] = live;
    s[slot::FLOWS_CREATED] = c.flows_created;
    s[slot::FLOWS_PICKED_UP] = c.flows_picked_up;
    s[slot::ENDED_CLOSED] = c.flows_closed;
    s[slot::ENDED_TIMEOUT] = c.flows_timed_out;
    s[slot::ENDED_EVICTED] = c.flows_evicted;
    s[slot::ENDED_FLUSHED] = c.flows_flushed;
    s[slot::REXMITS] = c.rexmits;
    s[slot::BAD_SEGMENTS] = c.bad_segments;
    s[slot::BYTES_STORED] = c.bytes_stored;
    s[slot::BYTES_DROPPED] = c.bytes_dropped;
    s[slot::BYTES_OVERWRITTEN] = c.bytes_overwritten;
    s[slot::POOL_EXHAUSTED] = c.pool_exhausted;
    s[slot::REASSEMBLED] = c.datagrams_reassembled;
    s[slot::POOL_USED] = pool_used;
    s[slot::POOL_SIZE] = pool_size;
    s[slot::LOG_USED] = p.log_used;
    s[slot::LOG_DROPPED] = p.log_dropped;
    s[slot::FORWARDED] = p.forwarded;
    s[slot::VERDICT_DROPS] = p.verdict_drops;
    s[slot::TX_FULL] = p.tx_full;
    s[slot::INJECTED] = p.injected;
    for (i, r) in DropReason::ALL.iter().enumerate() {
        s[slot::DROPS + i] = c.drop_count(*r);
    }
    s
}

/// One core's published values: written only by that core, read by the management core.
#[repr(align(64))]
pub struct CoreMetrics {
    v: [AtomicU64; slot::COUNT],
}

impl CoreMetrics {
    /// All zero.
    pub const fn new() -> CoreMetrics {
        CoreMetrics {
            v: [const { AtomicU64::new(0) }; slot::COUNT],
        }
    }

    /// Publishes a sample (the owning core, at a batch end).
    #[inline]
    pub fn store(&self, s: &Sample) {
        for (a, v) in self.v.iter().zip(s.iter()) {
            a.store(*v, Ordering::Relaxed);
        }
    }

    /// One value.
    #[inline]
    pub fn get(&self, slot: usize) -> u64 {
        self.v.get(slot).map_or(0, |a| a.load(Ordering::Relaxed))
    }
}

impl Default for CoreMetrics {
    fn default() -> Self {
        CoreMetrics::new()
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
}

/// One metric family: `(label value, slot)` series under an optional label name.
struct Family {
    name: &'static str,
    help: &'static str,
    kind: Kind,
    label: Option<&'static str>,
    series: &'static [(&'static str, usize)],
}

const fn drop_series() -> [(&'static str, usize); DropReason::COUNT] {
    let mut out = [("", 0); DropReason::COUNT];
    let mut i = 0;
    while i < DropReason::COUNT {
        out[i] = (DropReason::ALL[i].name(), slot::DROPS + i);
        i += 1;
    }
    out
}

static DROP_SERIES: [(&str, usize); DropReason::COUNT] = drop_series();

const fn one(s: usize) -> &'static [(&'static str, usize)] {
    match s {
        slot::FRAMES => &[("", slot::FRAMES)],
        slot::BYTES => &[("", slot::BYTES)],
        slot::TCP_SEGMENTS => &[("", slot::TCP_SEGMENTS)],
        slot::FLOWS_LIVE => &[("", slot::FLOWS_LIVE)],
        slot::FLOWS_CREATED => &[("", slot::FLOWS_CREATED)],
        slot::FLOWS_PICKED_UP => &[("", slot::FLOWS_PICKED_UP)],
        slot::REASSEMBLED => &[("", slot::REASSEMBLED)],
        slot::POOL_USED => &[("", slot::POOL_USED)],
        slot::POOL_SIZE => &[("", slot::POOL_SIZE)],
        slot::LOG_USED => &[("", slot::LOG_USED)],
        slot::LOG_DROPPED => &[("", slot::LOG_DROPPED)],
        _ => &[],
    }
}

static FAMILIES: &[Family] = &[
    Family {
        name: "frames_total",
        help: "Frames received on monitored ports.",
        kind: Kind::Counter,
        label: None,
        series: one(slot::FRAMES),
    },
    Family {
        name: "bytes_total",
        help: "Bytes of the frames received on monitored ports.",
        kind: Kind::Counter,
        label: None,
        series: one(slot::BYTES),
    },
    Family {
        name: "tcp_segments_total",
        help: "TCP segments of monitored flows (after IP reassembly).",
        kind: Kind::Counter,
        label: None,
        series: one(slot::TCP_SEGMENTS),
    },
    Family {
        name: "flows_live",
        help: "Flows in the flow table.",
        kind: Kind::Gauge,
        label: None,
        series: one(slot::FLOWS_LIVE),
    },
    Family {
        name: "flows_created_total",
        help: "Flows created (SYN or mid-stream pickup).",
        kind: Kind::Counter,
        label: None,
        series: one(slot::FLOWS_CREATED),
    },
    Family {
        name: "flows_picked_up_total",
        help: "Flows picked up mid-stream.",
        kind: Kind::Counter,
        label: None,
        series: one(slot::FLOWS_PICKED_UP),
    },
    Family {
        name: "flows_ended_total",
        help: "Flows ended, by reason.",
        kind: Kind::Counter,
        label: Some("reason"),
        series: &[
            ("closed", slot::ENDED_CLOSED),
            ("timeout", slot::ENDED_TIMEOUT),
            ("evicted", slot::ENDED_EVICTED),
            ("flushed", slot::ENDED_FLUSHED),
        ],
    },
    Family {
        name: "dropped_frames_total",
        help: "Frames not monitored, by reason.",
        kind: Kind::Counter,
        label: Some("reason"),
        series: &DROP_SERIES,
    },
    Family {
        name: "events_total",
        help: "Monitor occurrences, by kind (rexmit: retransmission; bad_segment: malformed for its flow; pool_exhausted: chunk wanted with the pool empty).",
        kind: Kind::Counter,
        label: Some("kind"),
        series: &[
            ("rexmit", slot::REXMITS),
            ("bad_segment", slot::BAD_SEGMENTS),
            ("pool_exhausted", slot::POOL_EXHAUSTED),
        ],
    },
    Family {
        name: "stream_bytes_total",
        help: "Stream payload bytes, by fate (stored; dropped: could not be stored, ERROR raised; overwritten: in-order bytes overwritten in a full ring).",
        kind: Kind::Counter,
        label: Some("fate"),
        series: &[
            ("stored", slot::BYTES_STORED),
            ("dropped", slot::BYTES_DROPPED),
            ("overwritten", slot::BYTES_OVERWRITTEN),
        ],
    },
    Family {
        name: "datagrams_reassembled_total",
        help: "IP datagrams reassembled from fragments.",
        kind: Kind::Counter,
        label: None,
        series: one(slot::REASSEMBLED),
    },
    Family {
        name: "chunk_pool_used",
        help: "Stream chunks in use.",
        kind: Kind::Gauge,
        label: None,
        series: one(slot::POOL_USED),
    },
    Family {
        name: "chunk_pool_size",
        help: "Stream chunks in the pool.",
        kind: Kind::Gauge,
        label: None,
        series: one(slot::POOL_SIZE),
    },
    Family {
        name: "log_ring_used_bytes",
        help: "Log ring bytes waiting for the console.",
        kind: Kind::Gauge,
        label: None,
        series: one(slot::LOG_USED),
    },
    Family {
        name: "log_lines_dropped_total",
        help: "Log lines dropped for a full log ring.",
        kind: Kind::Counter,
        label: None,
        series: one(slot::LOG_DROPPED),
    },
    Family {
        name: "path_frames_total",
        help: "Frames on the runtime's path, by fate (inline forwarding, verdict drops, app injections, full transmit ring).",
        kind: Kind::Counter,
        label: Some("fate"),
        series: &[
            ("forwarded", slot::FORWARDED),
            ("verdict_drop", slot::VERDICT_DROPS),
            ("injected", slot::INJECTED),
            ("tx_full", slot::TX_FULL),
        ],
    },
];

/// One NIC port's hardware counters (the drivers' 64-bit totals).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NicSample {
    /// Packets the NIC received.
    pub rx_packets: u64,
    /// Packets the NIC dropped (per-queue drops plus missed).
    pub rx_dropped: u64,
}

/// What the management plane counts itself.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MgmtCounts {
    /// HTTP requests answered, by status: 200, 400, 404, 405, 500.
    pub http: [u64; 5],
    /// Frames from sources outside the allowlist, dropped unanswered.
    pub denied: u64,
    /// IPFIX datagrams sent.
    pub ipfix_datagrams: u64,
    /// IPFIX records lost because a core's queue toward the management core was full.
    pub ipfix_records_dropped: u64,
}

/// The HTTP statuses [`MgmtCounts::http`] counts, in order.
pub const HTTP_STATUSES: [u16; 5] = [200, 400, 404, 405, 500];

/// Everything one page shows.
pub struct Page<'a> {
    /// The app's crate name.
    pub app: &'a str,
    /// The app's version.
    pub version: &'a str,
    /// Milliseconds since boot.
    pub uptime_ms: u64,
    /// Each monitoring core's metrics, core 0 first.
    pub cores: &'a [CoreMetrics],
    /// Each monitored port's hardware counters, port 0 first (`None`: the NIC has none).
    pub nics: &'a [Option<NicSample>],
    /// The management plane's own counters.
    pub mgmt: MgmtCounts,
}

fn header(w: &mut impl Write, name: impl fmt::Display, help: &str, kind: Kind) -> fmt::Result {
    let k = match kind {
        Kind::Counter => "counter",
        Kind::Gauge => "gauge",
    };
    writeln!(w, "# HELP {name} {help}")?;
    writeln!(w, "# TYPE {name} {k}")
}

/// Writes the page in the Prometheus text exposition format (version 0.0.4).
pub fn render(w: &mut impl Write, p: &Page<'_>) -> fmt::Result {
    header(
        w,
        "ferrule_build_info",
        "The appliance's app and version (value 1).",
        Kind::Gauge,
    )?;
    writeln!(
        w,
        "ferrule_build_info{{app=\"{}\",version=\"{}\"}} 1",
        Escaped(p.app),
        Escaped(p.version)
    )?;
    header(
        w,
        "ferrule_uptime_seconds",
        "Seconds since boot.",
        Kind::Gauge,
    )?;
    writeln!(
        w,
        "ferrule_uptime_seconds {}.{:03}",
        p.uptime_ms / 1000,
        p.uptime_ms % 1000
    )?;
    header(w, "ferrule_cores", "Cores running a monitor.", Kind::Gauge)?;
    writeln!(w, "ferrule_cores {}", p.cores.len())?;
    for f in FAMILIES {
        header(w, Prefixed("ferrule_core_", f.name), f.help, f.kind)?;
        for (id, c) in p.cores.iter().enumerate() {
            for (lv, s) in f.series {
                write!(w, "ferrule_core_{}{{core=\"{id}\"", f.name)?;
                if let Some(l) = f.label {
                    write!(w, ",{l}=\"{lv}\"")?;
                }
                writeln!(w, "}} {}", c.get(*s))?;
            }
        }
        header(w, Prefixed("ferrule_", f.name), f.help, f.kind)?;
        for (lv, s) in f.series {
            let sum = p.cores.iter().fold(0u64, |a, c| a.wrapping_add(c.get(*s)));
            write!(w, "ferrule_{}", f.name)?;
            if let Some(l) = f.label {
                write!(w, "{{{l}=\"{lv}\"}}")?;
            }
            writeln!(w, " {sum}")?;
        }
    }
    if p.nics.iter().any(Option::is_some) {
        for (name, help, pick) in [
            (
                "ferrule_nic_rx_packets_total",
                "Packets the NIC received (hardware counter).",
                (|n: &NicSample| n.rx_packets) as fn(&NicSample) -> u64,
            ),
            (
                "ferrule_nic_rx_dropped_total",
                "Packets the NIC dropped: queue drops plus missed (hardware counters).",
                |n: &NicSample| n.rx_dropped,
            ),
        ] {
            header(w, name, help, Kind::Counter)?;
            for (port, n) in p.nics.iter().enumerate() {
                if let Some(n) = n {
                    writeln!(w, "{name}{{port=\"{port}\"}} {}", pick(n))?;
                }
            }
        }
    }
    header(
        w,
        "ferrule_mgmt_http_responses_total",
        "HTTP responses of the management plane, by status code.",
        Kind::Counter,
    )?;
    for (code, n) in HTTP_STATUSES.iter().zip(p.mgmt.http.iter()) {
        writeln!(
            w,
            "ferrule_mgmt_http_responses_total{{code=\"{code}\"}} {n}"
        )?;
    }
    header(
        w,
        "ferrule_mgmt_denied_frames_total",
        "Frames from sources outside the management allowlist, dropped without an answer.",
        Kind::Counter,
    )?;
    writeln!(w, "ferrule_mgmt_denied_frames_total {}", p.mgmt.denied)?;
    header(
        w,
        "ferrule_ipfix_datagrams_total",
        "IPFIX datagrams sent to the collector.",
        Kind::Counter,
    )?;
    writeln!(
        w,
        "ferrule_ipfix_datagrams_total {}",
        p.mgmt.ipfix_datagrams
    )?;
    header(
        w,
        "ferrule_ipfix_records_dropped_total",
        "IPFIX records lost to a full queue between a monitoring core and the management core.",
        Kind::Counter,
    )?;
    writeln!(
        w,
        "ferrule_ipfix_records_dropped_total {}",
        p.mgmt.ipfix_records_dropped
    )
}

/// `prefix` then `name`, without allocating.
struct Prefixed<'a>(&'a str, &'a str);

impl fmt::Display for Prefixed<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)?;
        f.write_str(self.1)
    }
}

/// A label value with `\`, `"` and newlines escaped.
struct Escaped<'a>(&'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.chars() {
            match c {
                '\\' => f.write_str("\\\\")?,
                '"' => f.write_str("\\\"")?,
                '\n' => f.write_str("\\n")?,
                c => f.write_char(c)?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(cores: &[CoreMetrics], nics: &[Option<NicSample>]) -> String {
        let mut s = String::new();
        render(
            &mut s,
            &Page {
                app: "flow\"mon",
                version: "0.1.0",
                uptime_ms: 12_345,
                cores,
                nics,
                mgmt: MgmtCounts {
                    http: [7, 1, 2, 0, 0],
                    denied: 3,
                    ipfix_datagrams: 0,
                    ipfix_records_dropped: 9,
                },
            },
        )
        .unwrap();
        s
    }

    #[test]
    fn per_core_series_and_totals() {
        let c = Counters {
            frames: 10,
            frame_bytes: 1000,
            tcp_packets: 9,
            flows_created: 2,
            flows_closed: 1,
            ..Counters::default()
        };
        let mut c1 = c.clone();
        c1.frames = 5;
        c1.dropped[DropReason::NotTcp as usize] = 4;
        let cores = [CoreMetrics::new(), CoreMetrics::new()];
        cores[0].store(&sample(&c, 1, 3, 8, PathCounts::default()));
        cores[1].store(&sample(
            &c1,
            0,
            0,
            8,
            PathCounts {
                tx_full: 6,
                ..PathCounts::default()
            },
        ));
        let s = page(
            &cores,
            &[
                Some(NicSample {
                    rx_packets: 15,
                    rx_dropped: 0,
                }),
                None,
            ],
        );
        for line in [
            "ferrule_build_info{app=\"flow\\\"mon\",version=\"0.1.0\"} 1",
            "ferrule_uptime_seconds 12.345",
            "ferrule_cores 2",
            "# TYPE ferrule_core_frames_total counter",
            "ferrule_core_frames_total{core=\"0\"} 10",
            "ferrule_core_frames_total{core=\"1\"} 5",
            "ferrule_frames_total 15",
            "ferrule_bytes_total 2000",
            "# TYPE ferrule_flows_live gauge",
            "ferrule_flows_live 1",
            "ferrule_core_flows_ended_total{core=\"0\",reason=\"closed\"} 1",
            "ferrule_flows_ended_total{reason=\"closed\"} 2",
            "ferrule_core_dropped_frames_total{core=\"1\",reason=\"not_tcp\"} 4",
            "ferrule_dropped_frames_total{reason=\"not_tcp\"} 4",
            "ferrule_chunk_pool_used 3",
            "ferrule_chunk_pool_size 16",
            "ferrule_path_frames_total{fate=\"tx_full\"} 6",
            "ferrule_nic_rx_packets_total{port=\"0\"} 15",
            "ferrule_mgmt_http_responses_total{code=\"404\"} 2",
            "ferrule_mgmt_denied_frames_total 3",
            "ferrule_ipfix_records_dropped_total 9",
        ] {
            assert!(s.lines().any(|l| l == line), "missing {line:?} in\n{s}");
        }
        assert!(!s.contains("port=\"1\""));
        // Every family has HELP and TYPE once, and every sample line names a declared family.
        let mut declared = std::collections::HashSet::new();
        for l in s.lines() {
            if let Some(rest) = l.strip_prefix("# TYPE ") {
                let name = rest.split(' ').next().unwrap();
                assert!(declared.insert(name.to_string()), "{name} twice");
            } else if !l.starts_with('#') {
                let name = l.split(['{', ' ']).next().unwrap();
                assert!(declared.contains(name), "{name} undeclared");
            }
        }
        assert_eq!(
            s.lines().filter(|l| l.starts_with("# HELP ")).count(),
            declared.len()
        );
    }

    #[test]
    fn no_nic_counters_no_nic_families() {
        let s = page(&[CoreMetrics::new()], &[None]);
        assert!(!s.contains("ferrule_nic_"));
        assert!(s.lines().any(|l| l == "ferrule_frames_total 0"));
    }
}
