//! The external peers of `cargo ferrule bench` — libnids (`bench/nidsbench.c`) and Suricata 7 —
//! and installing them on Debian when they are missing (through [`crate::setup`], which
//! `cargo ferrule test` uses too).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::setup::{self, Need};

/// The libnids peer's source, compiled on demand.
pub const NIDSBENCH_C: &str = include_str!("../../../bench/nidsbench.c");

/// The one content rule Suricata runs (bench-method.md §3: without a rule, app-layer
/// detection gives up and reassembly stops, which would not be a reassembly benchmark).
pub const NEEDLE_RULE: &str =
    "alert tcp any any -> any any (msg:\"needle\"; content:\"|de ad be ef 42 42|\"; sid:1000001; rev:1;)\n";

/// One timed run of an external program.
#[derive(Clone, Debug, Default)]
pub struct PeerRun {
    /// Seconds of work (libnids: `nids_run()` alone; Suricata: wall time minus startup).
    pub secs: f64,
    /// Peak resident set size in KiB (from `/usr/bin/time`, or the program's own getrusage).
    pub peak_kb: Option<u64>,
    /// Human-readable evidence that the work was done (byte counts, stats counters).
    pub evidence: String,
    /// Stream bytes delivered (libnids).
    pub delivered: u64,
}

/// Why a peer could not be run or did not do the full job.
#[derive(Debug)]
pub struct PeerError(pub String);

impl std::fmt::Display for PeerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn err<T>(m: impl Into<String>) -> Result<T, PeerError> {
    Err(PeerError(m.into()))
}

/// What is missing for the peers, as the commands that would install it (empty: all present).
pub fn missing() -> Vec<String> {
    let host = setup::Host::detect();
    let m = setup::missing_packages(&host, &[Need::Peers]);
    if m.is_empty() {
        return vec![];
    }
    setup::install_instructions(&host, &m)
        .lines()
        .map(String::from)
        .collect()
}

/// Installs what the peers need (the same code and package list as `cargo ferrule test`'s
/// setup: [`setup::ensure_packages`]) when `allow_install`, running as root on Debian;
/// otherwise explains what to install. Returns the problems left (empty = all present).
pub fn ensure_installed(allow_install: bool) -> Vec<String> {
    if !allow_install {
        let need = missing();
        if need.is_empty() {
            return need;
        }
        let mut v = vec!["peers missing; install them with:".to_string()];
        v.extend(need);
        return v;
    }
    match setup::ensure_packages(&[Need::Peers]) {
        Ok(()) => vec![],
        Err(e) => e.to_string().lines().map(String::from).collect(),
    }
}

/// Compiles `nidsbench` into `dir` (from the embedded source) and returns its path.
pub fn build_nidsbench(dir: &Path) -> Result<PathBuf, PeerError> {
    let src = dir.join("nidsbench.c");
    let bin = dir.join("nidsbench");
    std::fs::write(&src, NIDSBENCH_C).map_err(|e| PeerError(format!("{}: {e}", src.display())))?;
    let o = Command::new("gcc")
        .args(["-O2", "-o"])
        .arg(&bin)
        .arg(&src)
        .args(["-lnids", "-lpcap"])
        .output()
        .map_err(|e| PeerError(format!("gcc: {e}")))?;
    if !o.status.success() {
        return err(format!(
            "gcc nidsbench.c failed:\n{}",
            String::from_utf8_lossy(&o.stderr)
        ));
    }
    Ok(bin)
}

/// Runs `cmd` under `/usr/bin/time` (when present) and returns (stdout, stderr, wall secs,
/// peak KiB).
fn timed(cmd: &mut Command, dir: &Path) -> Result<(String, String, f64, Option<u64>), PeerError> {
    let tfile = dir.join("time.out");
    let _ = std::fs::remove_file(&tfile);
    let prog = cmd.get_program().to_owned();
    let args: Vec<_> = cmd.get_args().map(|a| a.to_owned()).collect();
    let mut c = if Path::new("/usr/bin/time").exists() {
        let mut c = Command::new("/usr/bin/time");
        c.arg("-f")
            .arg("%M")
            .arg("-o")
            .arg(&tfile)
            .arg(&prog)
            .args(&args);
        c
    } else {
        let mut c = Command::new(&prog);
        c.args(&args);
        c
    };
    if let Some(d) = cmd.get_current_dir() {
        c.current_dir(d);
    }
    let t = Instant::now();
    let o = c
        .output()
        .map_err(|e| PeerError(format!("{}: {e}", prog.to_string_lossy())))?;
    let secs = t.elapsed().as_secs_f64();
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let errs = String::from_utf8_lossy(&o.stderr).into_owned();
    if !o.status.success() {
        return err(format!(
            "{} failed ({}):\n{errs}",
            prog.to_string_lossy(),
            o.status
        ));
    }
    let kb = std::fs::read_to_string(&tfile)
        .ok()
        .and_then(|t| t.trim().lines().last()?.trim().parse().ok());
    Ok((out, errs, secs, kb))
}

fn field(line: &str, key: &str) -> Option<u64> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
}

/// What libnids is to deliver: exactly `flows` connections and `c2s`/`s2c` bytes, or (a
/// capture with tap loss, where libnids stops a direction at its first hole) at most that.
#[derive(Clone, Copy, Debug)]
pub struct NidsWant {
    /// Connections.
    pub flows: u64,
    /// Bytes client→server the capture holds.
    pub c2s: u64,
    /// Bytes server→client the capture holds.
    pub s2c: u64,
    /// The capture has holes: fewer bytes are accepted (and reported).
    pub lossy: bool,
}

/// Runs libnids over `pcap` (read into memory first, see `bench/nidsbench.c`) with a stream
/// table of `streams` (it tracks 3/4 of that at once) and checks its byte counts.
pub fn run_nids(
    bin: &Path,
    pcap: &Path,
    dir: &Path,
    want: NidsWant,
    streams: u32,
) -> Result<PeerRun, PeerError> {
    let (out, _, _, kb) = timed(Command::new(bin).arg(pcap).arg(streams.to_string()), dir)?;
    let line = out
        .lines()
        .find(|l| l.starts_with("nidsbench "))
        .ok_or(PeerError(format!("nidsbench printed no result: {out}")))?;
    let get = |k| field(line, k).ok_or(PeerError(format!("nidsbench: no {k} in {line}")));
    let (flows, c2s, s2c, ns) = (get("flows")?, get("c2s")?, get("s2c")?, get("run_ns")?);
    let exact = (flows, c2s, s2c) == (want.flows, want.c2s, want.s2c);
    let short = flows == want.flows && c2s <= want.c2s && s2c <= want.s2c;
    if !(exact || (want.lossy && short)) {
        return err(format!(
            "libnids did not reassemble everything: flows {flows}/{}, c2s {c2s}/{}, s2c {s2c}/{}",
            want.flows, want.c2s, want.s2c
        ));
    }
    // The capture it holds in memory is not libnids' own memory.
    let cap_kb = std::fs::metadata(pcap).map_or(0, |m| m.len() / 1024);
    Ok(PeerRun {
        secs: ns as f64 / 1e9,
        peak_kb: kb
            .or(field(line, "maxrss_kb"))
            .map(|k| k.saturating_sub(cap_kb)),
        evidence: if exact {
            format!("libnids: {flows} flows, {c2s} B c2s, {s2c} B s2c (= ground truth)")
        } else {
            format!(
                "libnids: {flows} flows, delivered {c2s} of {} B c2s, {s2c} of {} B s2c (it stops a direction at a hole)",
                want.c2s, want.s2c
            )
        },
        delivered: c2s + s2c,
    })
}

/// The counters of the last block of a Suricata `stats.log`.
pub fn last_stats(stats_log: &str) -> Vec<(String, u64)> {
    let mut cur: Vec<(String, u64)> = Vec::new();
    for l in stats_log.lines() {
        if l.starts_with("Date:") {
            cur.clear();
            continue;
        }
        let parts: Vec<&str> = l.split('|').map(str::trim).collect();
        if parts.len() == 3 {
            if let Ok(v) = parts[2].parse() {
                cur.push((parts[0].to_string(), v));
            }
        }
    }
    cur
}

/// Runs Suricata 7 single-threaded over `pcap` with the memcaps raised and the needle rule,
/// and checks `stats.log` for full reassembly: no `tcp.reassembly_gap`, no
/// `tcp.insert_data_normal_fail`, and at least `data_segments` segments inserted (callers pass
/// the distinct data segments: an exact duplicate of a stored segment need not be inserted).
/// `startup` (seconds, measured on a tiny capture) is subtracted from the wall time.
pub fn run_suricata(
    pcap: &Path,
    dir: &Path,
    data_segments: u64,
    startup: f64,
) -> Result<PeerRun, PeerError> {
    let out = dir.join("suricata");
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).map_err(|e| PeerError(format!("{}: {e}", out.display())))?;
    let rules = dir.join("needle.rules");
    std::fs::write(&rules, NEEDLE_RULE)
        .map_err(|e| PeerError(format!("{}: {e}", rules.display())))?;
    // Fair feeding: the capture is read from memory (a tmpfs copy), as every engine's is.
    let shm = Path::new("/dev/shm");
    let mem_copy = shm.join(format!("ferrule-bench-{}.pcap", std::process::id()));
    let input = if shm.is_dir() && std::fs::copy(pcap, &mem_copy).is_ok() {
        mem_copy.clone()
    } else {
        pcap.to_path_buf()
    };
    let mut c = Command::new("suricata");
    c.arg("-r")
        .arg(&input)
        .args(["--runmode", "single", "-k", "none", "-l"])
        .arg(&out)
        .arg("-S")
        .arg(&rules);
    for s in [
        "outputs.0.fast.enabled=no",
        "outputs.1.eve-log.enabled=no",
        "stream.reassembly.depth=0",
        "stream.memcap=2gb",
        "stream.reassembly.memcap=4gb",
        "flow.memcap=1gb",
    ] {
        c.args(["--set", s]);
    }
    let res = timed(&mut c, dir);
    let _ = std::fs::remove_file(&mem_copy);
    let (_, _, secs, kb) = res?;
    let log = std::fs::read_to_string(out.join("stats.log"))
        .map_err(|e| PeerError(format!("suricata stats.log: {e}")))?;
    let stats = last_stats(&log);
    let get = |k: &str| stats.iter().find(|(n, _)| n == k).map_or(0, |x| x.1);
    let gap = get("tcp.reassembly_gap");
    let fail = get("tcp.insert_data_normal_fail");
    let segs = get("tcp.segment_from_cache") + get("tcp.segment_from_pool");
    let mut ev = String::new();
    let _ = write!(
        ev,
        "suricata: {} pkts, {} sessions, {segs} segments inserted (>= {data_segments} data segments), reassembly_gap {gap}, insert_data_normal_fail {fail}",
        get("decoder.pkts"),
        get("tcp.sessions")
    );
    if gap != 0 || fail != 0 || (data_segments > 0 && segs < data_segments) {
        return err(format!("Suricata did not reassemble everything: {ev}"));
    }
    Ok(PeerRun {
        secs: (secs - startup).max(1e-9),
        peak_kb: kb,
        evidence: ev,
        delivered: 0,
    })
}

/// Suricata's fixed startup cost: wall time on a tiny capture.
pub fn suricata_startup(tiny_pcap: &Path, dir: &Path) -> Result<f64, PeerError> {
    run_suricata(tiny_pcap, dir, 0, 0.0).map(|r| r.secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_stats_block_wins() {
        let log = "Date: 1\n----\nCounter | TM Name | Value\ntcp.sessions | Total | 5\nDate: 2\ntcp.sessions | Total | 7\ntcp.reassembly_gap | Total | 3\n";
        let s = last_stats(log);
        assert_eq!(
            s,
            vec![("tcp.sessions".into(), 7), ("tcp.reassembly_gap".into(), 3)]
        );
    }

    #[test]
    fn nids_fields() {
        let l = "nidsbench flows=3 closed=3 c2s=10 s2c=20 run_ns=99 maxrss_kb=5";
        assert_eq!(field(l, "c2s"), Some(10));
        assert_eq!(field(l, "run_ns"), Some(99));
        assert_eq!(field(l, "nope"), None);
    }
}
