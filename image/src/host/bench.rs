//! `cargo ferrule bench`: the monitor against its peers on the same generated captures, in one
//! invocation (bench-method.md §2–§3, §6 B1–B3).
//!
//! Captures: the bench mix (100 k flows, 10 k concurrent, ~2.8 M packets) and the same mix
//! with 10 % reordering and 1 % duplicates, generated fresh (deterministic) into `--dir`.
//! Engines, each timed over the whole capture, `--runs` times, the fastest run kept:
//! * **monitor**: the `monitor` crate in host mode with a consumer that reads every byte of
//!   both directions through `peek` (capture preloaded in memory);
//! * **floor**: smoltcp checked views down to the TCP payload (capture preloaded);
//! * **libnids**: `bench/nidsbench.c`, timing `nids_run()` (file in the page cache);
//! * **Suricata 7**: single run mode, memcaps raised, one content rule, startup subtracted,
//!   `stats.log` checked for full reassembly.
//!
//! Output: a table per capture, the ratios, memory per flow, and as the last line one JSON
//! object `{"bench":{...}}`.

use super::capture::Capture;
use super::gen::{self, GenConfig, GenStats};
use super::{engine, floor, peers};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Instant;

/// `cargo ferrule bench` arguments.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// Working directory for captures, the compiled peer and Suricata's logs.
    #[arg(long, default_value = "target/ferrule-bench")]
    pub dir: PathBuf,
    /// Timed runs per engine and capture (the fastest is reported).
    #[arg(long, default_value_t = 3)]
    pub runs: u32,
    /// Override the number of flows (for a quick check; the targets assume the default).
    #[arg(long)]
    pub flows: Option<u64>,
    /// Override the concurrency.
    #[arg(long)]
    pub concurrent: Option<u32>,
    /// Do not install missing peers, only say what to install.
    #[arg(long)]
    pub no_install: bool,
    /// Skip libnids.
    #[arg(long)]
    pub skip_libnids: bool,
    /// Skip Suricata.
    #[arg(long)]
    pub skip_suricata: bool,
}

/// One engine's best run on one capture.
#[derive(Clone, Debug, Default)]
pub struct Measure {
    /// Engine name.
    pub name: &'static str,
    /// Seconds of the fastest run.
    pub secs: f64,
    /// All runs, seconds.
    pub all: Vec<f64>,
    /// Peak memory, KiB, and what it measures.
    pub mem: Option<(u64, &'static str)>,
    /// Evidence that the work was done.
    pub evidence: String,
}

fn best(
    name: &'static str,
    runs: Vec<f64>,
    mem: Option<(u64, &'static str)>,
    evidence: String,
) -> Measure {
    let secs = runs.iter().copied().fold(f64::INFINITY, f64::min);
    Measure {
        name,
        secs,
        all: runs,
        mem,
        evidence,
    }
}

/// The machine, for the report.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let n = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{cpu}, {n} CPUs, {mem} RAM, Linux {}", kernel.trim())
}

/// Current resident set size of this process, KiB.
pub fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

struct CaptureRun {
    label: &'static str,
    stats: GenStats,
    data_segments: u64,
    measures: Vec<Measure>,
    monitor: Option<engine::BenchRun>,
}

fn row(m: &Measure, st: &GenStats, mon: Option<f64>) -> String {
    let pk = st.packets as f64;
    let ratio = match mon {
        Some(t) if m.name != "monitor+peek" => format!("{:.3}", t / m.secs),
        _ => "-".into(),
    };
    let mem = m.mem.map_or("-".into(), |(kb, what)| {
        format!("{:.1} MB {what}", kb as f64 / 1024.0)
    });
    format!(
        "  {:<14} {:>9.1} {:>8.2} {:>8.2} {:>9.3} {:>10}   {}",
        m.name,
        m.secs * 1e9 / pk,
        pk / m.secs / 1e6,
        st.frame_bytes as f64 * 8.0 / m.secs / 1e9,
        m.secs,
        ratio,
        mem
    )
}

/// Runs the benchmark; returns the exit code.
pub fn run_bench(a: &BenchArgs) -> i32 {
    match bench(a) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("ferrule bench: {e}");
            1
        }
    }
}

fn bench(a: &BenchArgs) -> Result<(), String> {
    std::fs::create_dir_all(&a.dir).map_err(|e| format!("{}: {e}", a.dir.display()))?;
    let runs = a.runs.max(1);
    println!("machine: {}", machine());
    let problems = if a.skip_libnids && a.skip_suricata {
        vec![]
    } else {
        peers::ensure_installed(!a.no_install)
    };
    for p in &problems {
        println!("{p}");
    }
    let peers_ok = problems.is_empty();
    let nids = if a.skip_libnids || !peers_ok {
        None
    } else {
        Some(peers::build_nidsbench(&a.dir).map_err(|e| e.to_string())?)
    };
    let suri_startup = if a.skip_suricata || !peers_ok {
        None
    } else {
        let tiny = a.dir.join("tiny.pcap");
        gen::generate_files(
            &GenConfig {
                flows: 20,
                concurrent: 5,
                ..GenConfig::default()
            },
            &tiny,
        )
        .map_err(|e| e.to_string())?;
        let s = peers::suricata_startup(&tiny, &a.dir).map_err(|e| e.to_string())?;
        println!("suricata startup (subtracted): {s:.3} s");
        Some(s)
    };

    let mut results = Vec::new();
    for (label, mut cfg, file) in [
        ("bench", GenConfig::bench(), "bench.pcap"),
        ("bench_r10", GenConfig::bench_reorder(), "bench_r10.pcap"),
    ] {
        if let Some(f) = a.flows {
            cfg.flows = f;
        }
        if let Some(c) = a.concurrent {
            cfg.concurrent = c;
        }
        let path = a.dir.join(file);
        let t = Instant::now();
        let stats = gen::generate_files(&cfg, &path).map_err(|e| e.to_string())?;
        let cap = Capture::load(&path).map_err(|e| e.to_string())?;
        let data_segments = count_data_segments(&cap);
        println!(
            "\ncapture {label} ({}): {} packets, {} frame bytes (avg {:.0} B), {} flows, {} concurrent, {:.1}% reorder, {:.1}% dup; {} data segments; generated+loaded in {:.1} s",
            path.display(),
            stats.packets,
            stats.frame_bytes,
            stats.frame_bytes as f64 / stats.packets as f64,
            stats.flows,
            cfg.concurrent,
            cfg.reorder_pct,
            cfg.dup_pct,
            data_segments,
            t.elapsed().as_secs_f64()
        );
        let mut measures = Vec::new();
        // Monitor with a consumer peeking every byte.
        let mut mon = None;
        let mut ts = Vec::new();
        for _ in 0..runs {
            let r = engine::bench_run(&cap, cfg.concurrent as usize)?;
            if r.c2s_read != stats.c2s_bytes || r.s2c_read != stats.s2c_bytes {
                return Err(format!(
                    "monitor consumer read c2s {} / s2c {} bytes, ground truth {} / {}",
                    r.c2s_read, r.s2c_read, stats.c2s_bytes, stats.s2c_bytes
                ));
            }
            ts.push(r.secs);
            mon = Some(r);
        }
        let m = mon.clone().expect("runs >= 1");
        measures.push(best(
            "monitor+peek",
            ts,
            Some((m.rss_growth_kb, "RSS growth")),
            format!(
                "monitor: {} flows ended, read {} B c2s + {} B s2c via peek (= ground truth)",
                m.flows_ended, m.c2s_read, m.s2c_read
            ),
        ));
        // Parse floor.
        let mut ts = Vec::new();
        let mut fc = floor::FloorCount::default();
        for _ in 0..runs {
            let t = Instant::now();
            fc = std::hint::black_box(floor::run(&cap));
            ts.push(t.elapsed().as_secs_f64());
        }
        measures.push(best(
            "smoltcp-floor",
            ts,
            None,
            format!("floor: {} TCP segments, {} payload B", fc.tcp, fc.payload),
        ));
        drop(cap);
        if let Some(bin) = &nids {
            let mut ts = Vec::new();
            let mut last = peers::PeerRun::default();
            for _ in 0..runs {
                last = peers::run_nids(
                    bin,
                    &path,
                    &a.dir,
                    Some((stats.flows, stats.c2s_bytes, stats.s2c_bytes)),
                )
                .map_err(|e| e.to_string())?;
                ts.push(last.secs);
            }
            measures.push(best(
                "libnids",
                ts,
                last.peak_kb.map(|k| (k, "peak RSS")),
                last.evidence,
            ));
        }
        if let Some(st) = suri_startup {
            let mut ts = Vec::new();
            let mut last = peers::PeerRun::default();
            for _ in 0..runs {
                last = peers::run_suricata(
                    &path,
                    &a.dir,
                    data_segments.saturating_sub(stats.dup_segments),
                    st,
                )
                .map_err(|e| e.to_string())?;
                ts.push(last.secs);
            }
            measures.push(best(
                "suricata",
                ts,
                last.peak_kb.map(|k| (k, "peak RSS")),
                last.evidence,
            ));
        }
        results.push(CaptureRun {
            label,
            stats,
            data_segments,
            measures,
            monitor: mon,
        });
    }
    report(&results, runs);
    Ok(())
}

/// TCP segments carrying payload (what a peer must insert to have reassembled everything).
fn count_data_segments(cap: &Capture) -> u64 {
    cap.frames()
        .filter(|(_, f)| floor::parse_tcp(f).is_some_and(|t| !t.payload().is_empty()))
        .count() as u64
}

fn report(results: &[CaptureRun], runs: u32) {
    let get = |r: &CaptureRun, n: &str| r.measures.iter().find(|m| m.name == n).map(|m| m.secs);
    for r in results {
        let mon = get(r, "monitor+peek");
        println!(
            "\n[{}] fastest of {runs} runs; ratio = monitor time / engine time",
            r.label
        );
        println!(
            "  {:<14} {:>9} {:>8} {:>8} {:>9} {:>10}   memory",
            "engine", "ns/pkt", "Mpps", "Gbps", "time s", "ratio"
        );
        for m in &r.measures {
            println!("{}", row(m, &r.stats, mon));
        }
        for m in &r.measures {
            let all: Vec<String> = m.all.iter().map(|s| format!("{s:.3}")).collect();
            println!(
                "    {}: runs [{}] s; {}",
                m.name,
                all.join(", "),
                m.evidence
            );
        }
        let _ = r.data_segments;
    }
    let r0 = &results[0];
    let r10 = &results[1];
    let ratio = |n: &str| Some(get(r0, "monitor+peek")? / get(r0, n)?);
    let slow = |n: &str| Some(get(r10, n)? / get(r0, n)?);
    let m = r0.monitor.as_ref();
    let flow_state = m.map_or(0, |m| m.flow_state_bytes);
    let per_flow_rss = m.map_or(0.0, |m| {
        m.rss_growth_kb as f64 * 1024.0 / m.peak_flows.max(1) as f64
    });
    println!("\nreorder slowdown t(r10)/t(r0):");
    for n in ["monitor+peek", "smoltcp-floor", "libnids", "suricata"] {
        if let Some(s) = slow(n) {
            println!("  {n:<14} {s:.3}");
        }
    }
    if let Some(m) = m {
        println!(
            "\nmemory: monitor flow state {} B per idle flow (no stream bytes held); {} B per side ring when in use; storage footprint {:.1} MB for {} flow slots; RSS growth {:.1} MB over {} peak live flows = {:.0} B per concurrent flow",
            m.flow_state_bytes,
            m.ring_bytes,
            m.footprint_bytes as f64 / 1048576.0,
            m.flow_slots,
            m.rss_growth_kb as f64 / 1024.0,
            m.peak_flows,
            per_flow_rss
        );
    }
    for (n, k) in [("libnids", "libnids"), ("suricata", "suricata")] {
        if let Some(me) = r0.measures.iter().find(|x| x.name == n) {
            if let Some((kb, _)) = me.mem {
                println!(
                    "  {k}: peak RSS {:.1} MB = {:.0} B per concurrent flow (10 k)",
                    kb as f64 / 1024.0,
                    kb as f64 * 1024.0 / 10_000.0
                );
            }
        }
    }
    let mut targets = String::new();
    let check = |t: &mut String, name: &str, v: Option<f64>, max: f64| {
        if let Some(v) = v {
            let _ = writeln!(
                t,
                "  {name:<22} {v:>7.3}  target <= {max:<6} {}",
                if v <= max { "met" } else { "MISSED" }
            );
        }
    };
    check(&mut targets, "ratio_libnids", ratio("libnids"), 0.33);
    check(&mut targets, "ratio_suricata", ratio("suricata"), 0.10);
    check(&mut targets, "ratio_floor", ratio("smoltcp-floor"), 2.5);
    check(&mut targets, "reorder_slowdown", slow("monitor+peek"), 1.15);
    check(
        &mut targets,
        "flow_state_bytes",
        Some(flow_state as f64),
        256.0,
    );
    println!("\ntargets:\n{targets}");
    let num = |v: Option<f64>| {
        v.map_or(serde_json::Value::Null, |v| {
            serde_json::json!((v * 1000.0).round() / 1000.0)
        })
    };
    let mon0 = get(r0, "monitor+peek").unwrap_or(0.0);
    let j = serde_json::json!({"bench": {
        "ratio_libnids": num(ratio("libnids")),
        "ratio_suricata": num(ratio("suricata")),
        "ratio_floor": num(ratio("smoltcp-floor")),
        "reorder_slowdown": num(slow("monitor+peek")),
        "flow_state_bytes": flow_state,
        "monitor_ns_per_pkt": num(Some(mon0 * 1e9 / r0.stats.packets as f64)),
        "monitor_mpps": num(Some(r0.stats.packets as f64 / mon0 / 1e6)),
        "monitor_gbps": num(Some(r0.stats.frame_bytes as f64 * 8.0 / mon0 / 1e9)),
        "rss_bytes_per_concurrent_flow": per_flow_rss.round(),
        "packets": r0.stats.packets,
        "frame_bytes": r0.stats.frame_bytes,
        "runs": runs,
    }});
    println!("{j}");
}
