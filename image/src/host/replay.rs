//! `cargo ferrule replay --app NAME CAPTURE`: runs a sample middlebox over a capture on the
//! host, exactly as one core of the appliance would run it (batches of 32 frames).
//!
//! * `midstat`: prints the live connection table once per second of capture time, as mOS
//!   midstat does, and how many connections ended.
//! * `simple_firewall --rules FILE`: inline mode; drops SYNs matching DROP rules, prints the
//!   rule table with its counts and the frames forwarded and dropped.
//! * `matcher --pattern HEX` (or `--text STRING`): prints every occurrence of the pattern as
//!   `match CLIENT SERVER side OFFSET`.

use std::path::PathBuf;

use monitor::{Config, HostStorage, Middlebox, Monitor, Side, Verdict};

use super::capture::Capture;
use super::gen::endpoint;

/// Frames per receive batch.
const BATCH: usize = 32;

/// `cargo ferrule replay` arguments.
#[derive(clap::Args, Debug, Clone)]
pub struct ReplayArgs {
    /// Sample app: midstat, simple_firewall or matcher.
    #[arg(long)]
    pub app: String,
    /// Capture to replay (pcap or pcapng).
    pub capture: PathBuf,
    /// simple_firewall: the mOS rule file.
    #[arg(long)]
    pub rules: Option<PathBuf>,
    /// matcher: the pattern as hex bytes (e.g. deadbeef4242).
    #[arg(long)]
    pub pattern: Option<String>,
    /// matcher: the pattern as text.
    #[arg(long, conflicts_with = "pattern")]
    pub text: Option<String>,
}

/// Frames forwarded and dropped by an inline run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Forwarding {
    /// Frames the middlebox let through (rewritten ones included).
    pub forwarded: u64,
    /// Frames it dropped.
    pub dropped: u64,
}

/// Runs `mb` over `cap` as one core would. `each_batch` sees the monitor after every batch
/// (with the batch's last timestamp); `finish` sees it after the capture, all flows ended.
pub fn replay<M: Middlebox, R>(
    mb: M,
    cap: &Capture,
    inline: bool,
    mut each_batch: impl FnMut(&mut Monitor<'_, M>, u64),
    finish: impl FnOnce(&mut Monitor<'_, M>, Forwarding) -> R,
) -> Result<R, String> {
    let mut storage: HostStorage<M::Flow> = HostStorage::new(1 << 16, 1 << 16, 256);
    let cfg = Config {
        inline,
        ..Config::DEFAULT
    };
    let mut mon = Monitor::new(mb, cfg, storage.storage()).map_err(|e| format!("{e:?}"))?;
    let mut fwd = Forwarding::default();
    let frames: Vec<(u64, &[u8])> = cap.frames().collect();
    for batch in frames.chunks(BATCH) {
        let now = batch.last().map_or(0, |b| b.0);
        mon.begin_batch(now);
        for &(ts, frame) in batch {
            match mon.frame(frame, ts) {
                Verdict::Drop => fwd.dropped += 1,
                Verdict::Forward | Verdict::Rewritten(_) => fwd.forwarded += 1,
            }
        }
        mon.end_batch();
        each_batch(&mut mon, now);
    }
    mon.close_all();
    each_batch(&mut mon, u64::MAX);
    Ok(finish(&mut mon, fwd))
}

fn parse_hex(s: &str) -> Option<Vec<u8>> {
    let s = s.trim_start_matches("0x");
    if s.is_empty() || !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

/// Runs `cargo ferrule replay`; returns the exit code.
pub fn run_replay(a: &ReplayArgs) -> i32 {
    match replay_cmd(a) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("ferrule replay: {e}");
            1
        }
    }
}

fn replay_cmd(a: &ReplayArgs) -> Result<(), String> {
    let cap = Capture::load(&a.capture).map_err(|e| e.to_string())?;
    match a.app.as_str() {
        "midstat" => {
            let mut next_print = 0u64;
            let each = |mon: &mut Monitor<'_, midstat::Midstat>, now: u64| {
                if now >= next_print && now != u64::MAX {
                    let mut t = String::new();
                    let _ = midstat::table(mon, 0, &mut t);
                    print!("{t}");
                    next_print = now + 1_000_000;
                }
            };
            replay(midstat::Midstat::default(), &cap, false, each, |mon, _| {
                println!("midstat: {} connections ended", mon.middlebox().ended_total);
            })?;
        }
        "simple_firewall" => {
            let path = a
                .rules
                .as_ref()
                .ok_or("simple_firewall needs --rules FILE")?;
            let text =
                std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
            let rules = simple_firewall::Rules::parse(&text).map_err(|e| e.to_string())?;
            replay(
                simple_firewall::Firewall::new(rules),
                &cap,
                true,
                |_, _| {},
                |mon, fwd| {
                    let fw = mon.middlebox();
                    print!("{}", fw.rules);
                    println!(
                    "simple_firewall: {} SYNs dropped, {} other packets of dropped connections dropped; {} frames forwarded, {} dropped",
                    fw.syns_dropped, fw.packets_dropped, fwd.forwarded, fwd.dropped
                );
                },
            )?;
        }
        "matcher" => {
            let pattern = match (&a.pattern, &a.text) {
                (Some(h), _) => {
                    parse_hex(h).ok_or("--pattern wants an even number of hex digits")?
                }
                (_, Some(t)) => t.as_bytes().to_vec(),
                _ => return Err("matcher needs --pattern HEX or --text STRING".into()),
            };
            let m = matcher::Matcher::new(&pattern).ok_or("the pattern must be 1 to 64 bytes")?;
            let each = |mon: &mut Monitor<'_, matcher::Matcher>, _| {
                let found: Vec<matcher::Match> = mon.middlebox().matches.iter().copied().collect();
                for m in found {
                    let who = match m.endpoints {
                        Some(e) => format!(
                            "{} {}",
                            endpoint(e.client.0, e.client.1),
                            endpoint(e.server.0, e.server.1)
                        ),
                        None => flow_name(mon, m.flow),
                    };
                    println!("match {who} {} {}", side_name(m.side), m.offset);
                }
                mon.middlebox_mut().matches.clear();
            };
            replay(m, &cap, false, each, |mon, _| {
                let m = mon.middlebox();
                println!(
                    "matcher: {} matches ({} not listed: too many in one batch)",
                    m.total, m.lost
                );
            })?;
        }
        other => {
            return Err(format!(
                "unknown app {other:?} (midstat, simple_firewall, matcher)"
            ))
        }
    }
    Ok(())
}

/// The side's name as replay prints it (the side whose buffer holds the bytes: `server` =
/// client→server).
pub fn side_name(s: Side) -> &'static str {
    match s {
        Side::Client => "client",
        Side::Server => "server",
    }
}

/// `CLIENT SERVER` of a live flow.
pub fn flow_name<M: Middlebox>(mon: &Monitor<'_, M>, flow: monitor::FlowHandle) -> String {
    match mon.endpoints(flow) {
        Ok(e) => format!(
            "{} {}",
            endpoint(e.client.0, e.client.1),
            endpoint(e.server.0, e.server.1)
        ),
        Err(_) => "? ?".into(),
    }
}
