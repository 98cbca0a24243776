//! Command-line arguments and entry points of the host tools, shaped so that each one becomes
//! one variant of `cargo ferrule`'s `enum Command` (`Gen(GenArgs)`, ...).

use super::gen::{self, GenConfig};
use std::path::PathBuf;
use std::time::Instant;

/// `cargo ferrule gen`: write a synthetic capture and its ground truth (`OUT.truth.jsonl`).
#[derive(clap::Args, Debug, Clone)]
pub struct GenArgs {
    /// Output capture (classic pcap); the ground truth goes to OUT with extension .truth.jsonl.
    #[arg(short, long, default_value = "gen.pcap")]
    pub out: PathBuf,
    /// Start from the benchmark mix (100 k flows, 10 k concurrent, 4 exchanges, ≤ 4 segments).
    #[arg(long)]
    pub bench: bool,
    /// Start from the benchmark mix with 10 % reordering and 1 % duplicates.
    #[arg(long, conflicts_with = "bench")]
    pub bench_reorder: bool,
    /// Total connections [default: 100].
    #[arg(long)]
    pub flows: Option<u64>,
    /// Connections live at once [default: 10].
    #[arg(long)]
    pub concurrent: Option<u32>,
    /// Request/response exchanges per connection [default: 4].
    #[arg(long)]
    pub exchanges: Option<u32>,
    /// Smallest request in bytes [default: 80].
    #[arg(long)]
    pub req_min: Option<u32>,
    /// Largest request in bytes [default: 600].
    #[arg(long)]
    pub req_max: Option<u32>,
    /// Largest response, in segments [default: 4].
    #[arg(long)]
    pub max_resp_segs: Option<u32>,
    /// MSS of IPv4 flows (IPv6: 20 less) [default: 1448].
    #[arg(long)]
    pub mss: Option<u32>,
    /// Percent of adjacent response segments swapped.
    #[arg(long)]
    pub reorder: Option<f64>,
    /// Percent of data segments duplicated.
    #[arg(long)]
    pub dup: Option<f64>,
    /// Percent of data segments lost (holes in the stream).
    #[arg(long)]
    pub loss: Option<f64>,
    /// Percent of responses followed by a conflicting overlapping retransmission.
    #[arg(long)]
    pub overlap: Option<f64>,
    /// Percent of connections over IPv6.
    #[arg(long)]
    pub ipv6: Option<f64>,
    /// Percent of connections with an 802.1Q tag.
    #[arg(long)]
    pub vlan: Option<f64>,
    /// Percent of connections with QinQ tags.
    #[arg(long)]
    pub qinq: Option<f64>,
    /// Percent of connections whose ISNs wrap past 2^32 in the first 4 KiB.
    #[arg(long)]
    pub wrap: Option<f64>,
    /// Percent of connections ended by a client RST.
    #[arg(long)]
    pub rst: Option<f64>,
    /// Percent of connections left open at the end of the capture.
    #[arg(long)]
    pub open: Option<f64>,
    /// RNG seed [default: 1].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Hex pattern written into every stream every --needle-every bytes.
    #[arg(long)]
    pub needle: Option<String>,
    /// Needle period in bytes [default: 4096].
    #[arg(long)]
    pub needle_every: Option<u64>,
}

impl GenArgs {
    /// The generator settings these arguments select.
    pub fn config(&self) -> Result<GenConfig, String> {
        let mut c = if self.bench {
            GenConfig::bench()
        } else if self.bench_reorder {
            GenConfig::bench_reorder()
        } else {
            GenConfig::default()
        };
        macro_rules! set {
            ($($f:ident => $g:ident),*) => { $(if let Some(v) = self.$f { c.$g = v; })* };
        }
        set!(flows => flows, concurrent => concurrent, exchanges => exchanges,
             req_min => req_min, req_max => req_max, max_resp_segs => max_resp_segs, mss => mss,
             reorder => reorder_pct, dup => dup_pct, loss => loss_pct, overlap => overlap_pct,
             ipv6 => ipv6_pct, vlan => vlan_pct, qinq => qinq_pct, wrap => wrap_pct,
             rst => rst_pct, open => open_pct, seed => seed, needle_every => needle_every);
        if let Some(h) = &self.needle {
            c.needle = Some(parse_hex(h)?);
        }
        Ok(c)
    }
}

/// Parses `deadbeef` / `de:ad:be:ef` / `de ad be ef`.
pub fn parse_hex(s: &str) -> Result<Vec<u8>, String> {
    let digits: String = s
        .chars()
        .filter(|c| !matches!(c, ' ' | ':' | '|'))
        .collect();
    if digits.is_empty() || !digits.len().is_multiple_of(2) {
        return Err(format!(
            "bad hex pattern {s:?}: need an even number of hex digits"
        ));
    }
    (0..digits.len())
        .step_by(2)
        .map(|i| {
            u8::from_str_radix(&digits[i..i + 2], 16).map_err(|_| format!("bad hex pattern {s:?}"))
        })
        .collect()
}

/// Runs `gen`; returns the process exit code.
pub fn run_gen(args: &GenArgs) -> i32 {
    let cfg = match args.config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ferrule gen: {e}");
            return 2;
        }
    };
    let t = Instant::now();
    match gen::generate_files(&cfg, &args.out) {
        Ok(s) => {
            let secs = t.elapsed().as_secs_f64();
            eprintln!(
                "ferrule gen: wrote {} ({} packets, {} frame bytes, {} flows, avg {:.0} B) and {} in {:.2} s ({:.0} MB/s)",
                args.out.display(),
                s.packets,
                s.frame_bytes,
                s.flows,
                s.frame_bytes as f64 / s.packets.max(1) as f64,
                gen::truth_path(&args.out).display(),
                secs,
                s.frame_bytes as f64 / secs / 1e6
            );
            0
        }
        Err(e) => {
            eprintln!("ferrule gen: {e}");
            1
        }
    }
}

/// `cargo ferrule flows`: one JSON line per TCP connection of a capture, then a summary.
#[derive(clap::Args, Debug, Clone)]
pub struct FlowsArgs {
    /// Capture to read (pcap or pcapng).
    pub capture: PathBuf,
    /// Flow slots, i.e. connections live at once (the oldest idle flow is evicted past it).
    #[arg(long, default_value_t = super::flows::DEFAULT_MAX_FLOWS)]
    pub max_flows: usize,
    /// Also send one IPFIX record per connection to this collector (UDP), as the appliance
    /// does (see `appliance::mgmt::ipfix`); the JSON lines still go to stdout.
    #[arg(long, value_name = "HOST:PORT")]
    pub ipfix: Option<String>,
    /// IPv4 header and TCP checksums: verify (drop bad segments), ignore, or auto (verify
    /// unless over 10 % of the first 1000 TCP segments are bad, as on a capture taken on the
    /// sending host with checksum offload).
    #[arg(long, value_enum, default_value_t = super::checksum::Checksums::Auto)]
    pub checksums: super::checksum::Checksums,
}

/// Runs `cargo ferrule flows`; returns the exit code.
pub fn run_flows(args: &FlowsArgs) -> i32 {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    if let Err(e) = super::flows::run(&args.capture, args.max_flows, args.checksums, &mut out) {
        eprintln!("ferrule flows: {e}");
        return 1;
    }
    let Some(to) = &args.ipfix else {
        return 0;
    };
    let sent = super::capture::Capture::load(&args.capture)
        .map_err(|e| e.to_string())
        .and_then(|cap| super::ipfix::records_of(&cap, args.max_flows))
        .and_then(|recs| {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as u32);
            super::ipfix::send(&recs, to, now).map(|n| (recs.len(), n))
        });
    match sent {
        Ok((records, datagrams)) => {
            eprintln!(
                "ferrule flows: sent {records} IPFIX records in {datagrams} datagrams to {to}"
            );
            0
        }
        Err(e) => {
            eprintln!("ferrule flows: IPFIX: {e}");
            1
        }
    }
}
