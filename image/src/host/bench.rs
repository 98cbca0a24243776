//! `cargo ferrule bench`: the monitor against its peers on the same generated captures, in one
//! invocation (bench-method.md §2–§3, §6 B1–B3; issue 10).
//!
//! Captures, generated fresh (deterministic) into `--dir`: the bench mix (100 k flows, 10 k
//! concurrent, ~2.8 M packets); the same with 10 % reordering and 1 % duplicates (`r10`); with
//! 30 % reordering and 3 % loss (`r30`: holes the receivers acknowledge, lost at the tap); and
//! the short-flow churn mix (1 M connections of handshake, one request, one response, FIN;
//! 100 k concurrent).
//! Engines, each timed over the whole capture, `--runs` times, the fastest run kept; every
//! engine reads the capture from memory (fair feeding):
//! * **monitor**: the `monitor` crate in host mode with a consumer that reads every byte of
//!   both directions in place (`read_in_place`; frames preloaded in memory); its bytes must
//!   equal the generator's (minus the bytes lost at the tap, which it must be told of); on
//!   the bench mix a second consumer reads with `peek` (a copy of every byte);
//! * **floor**: smoltcp checked views down to the TCP payload (frames preloaded);
//! * **libnids**: `bench/nidsbench.c`, timing `nids_run()` over the capture read into memory;
//! * **Suricata 7**: single run mode, memcaps raised, one content rule, startup subtracted,
//!   `stats.log` checked for full reassembly, the capture read from a tmpfs copy.
//!
//! Also: the stream pool's waste (pool touched at peak ÷ stream bytes held at peak) and the
//! bench mix split by the NIC's symmetric Toeplitz hash over two monitors on two threads.
//!
//! Output: a table per capture, the ratios, memory per flow, and as the last line one JSON
//! object `{"bench":{...}}`.

use super::capture::Capture;
use super::engine::{self, ReadMode};
use super::gen::{self, GenConfig, GenStats};
use super::{floor, peers};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
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
    /// Connections of the churn mix (a tenth of them concurrent).
    #[arg(long, default_value_t = 1_000_000)]
    pub churn_flows: u64,
    /// Skip the churn mix.
    #[arg(long)]
    pub skip_churn: bool,
    /// Only the monitor (in place) on one mix (`--mix`): for profiles (`valgrind
    /// --tool=callgrind --toggle-collect='*host::engine::run*'`) and quick before/after checks.
    #[arg(long)]
    pub monitor_only: bool,
    /// The mix `--monitor-only` runs: `bench`, `r10`, `r30` (scaled by `--flows`/`--concurrent`)
    /// or `churn` (scaled by `--churn-flows`).
    #[arg(long, value_enum, default_value_t = Mix::Bench, requires = "monitor_only")]
    pub mix: Mix,
}

/// A capture `--monitor-only` can run alone.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mix {
    /// The bench mix.
    Bench,
    /// The bench mix with 10 % reordering and 1 % duplicates (`bench_r10`).
    R10,
    /// The bench mix with 30 % reordering and 3 % tap loss (`bench_r30`).
    R30,
    /// The short-flow churn mix.
    Churn,
}

impl Mix {
    fn label(self) -> &'static str {
        match self {
            Mix::Bench => "bench",
            Mix::R10 => "bench_r10",
            Mix::R30 => "bench_r30",
            Mix::Churn => "churn",
        }
    }
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
    measures: Vec<Measure>,
    monitor: Option<engine::BenchRun>,
}

/// The monitor's engine name (the consumer the ratios are taken with).
const MAIN: ReadMode = ReadMode::InPlace;

/// One capture of the bench and what runs on it.
struct Spec {
    label: &'static str,
    cfg: GenConfig,
    file: &'static str,
    suricata: bool,
    /// Stream slots for libnids (it tracks 3/4 of them at once).
    nids_streams: u32,
}

fn specs(a: &BenchArgs) -> Vec<Spec> {
    let scale = |mut cfg: GenConfig| {
        if let Some(f) = a.flows {
            cfg.flows = f;
        }
        if let Some(c) = a.concurrent {
            cfg.concurrent = c;
        }
        cfg
    };
    let mut v = vec![
        Spec {
            label: "bench",
            cfg: scale(GenConfig::bench()),
            file: "bench.pcap",
            suricata: true,
            nids_streams: 1 << 17,
        },
        Spec {
            label: "bench_r10",
            cfg: scale(GenConfig::bench_reorder()),
            file: "bench_r10.pcap",
            suricata: true,
            nids_streams: 1 << 17,
        },
        Spec {
            label: "bench_r30",
            cfg: scale(GenConfig {
                reorder_pct: 30.0,
                loss_pct: 3.0,
                ..GenConfig::bench()
            }),
            file: "bench_r30.pcap",
            suricata: false,
            nids_streams: 1 << 17,
        },
    ];
    if !a.skip_churn || (a.monitor_only && a.mix == Mix::Churn) {
        let flows = a.churn_flows.max(10);
        let concurrent = (flows / 10) as u32;
        v.push(Spec {
            label: "churn",
            cfg: GenConfig {
                flows,
                concurrent,
                exchanges: 1,
                max_resp_segs: 1,
                ..GenConfig::default()
            },
            file: "churn.pcap",
            suricata: false,
            nids_streams: (concurrent as u64 * 3 / 2).next_power_of_two().max(1 << 17) as u32,
        });
    }
    v
}

/// Bytes lost per direction in a generated capture (the ground truth's `lost` fields).
fn truth_lost(pcap: &Path) -> Result<(u64, u64), String> {
    let tp = gen::truth_path(pcap);
    let text = std::fs::read_to_string(&tp).map_err(|e| format!("{}: {e}", tp.display()))?;
    let (flows, _) = super::json::parse_lines(&text)?;
    Ok(flows
        .iter()
        .fold((0, 0), |(c, s), f| (c + f.c2s.lost, s + f.s2c.lost)))
}

/// What the whole bench found besides the per-capture measures.
#[derive(Default)]
struct Extra {
    mem: Option<engine::MemRun>,
    scale: Option<Scale>,
}

/// Two cores against one (each the slowest core's time), the monitor's and the parse floor's.
#[derive(Clone, Copy)]
struct Scale {
    monitor: f64,
    floor: f64,
}

fn row(m: &Measure, st: &GenStats, mon: Option<f64>) -> String {
    let pk = st.packets as f64;
    let ratio = match mon {
        Some(t) if m.name != MAIN.engine() => format!("{:.3}", t / m.secs),
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
    let problems = if (a.skip_libnids && a.skip_suricata) || a.monitor_only {
        vec![]
    } else {
        peers::ensure_installed(!a.no_install)
    };
    for p in &problems {
        println!("{p}");
    }
    let peers_ok = problems.is_empty();
    let nids = if a.skip_libnids || a.monitor_only || !peers_ok {
        None
    } else {
        Some(peers::build_nidsbench(&a.dir).map_err(|e| e.to_string())?)
    };
    let suri_startup = if a.skip_suricata || a.monitor_only || !peers_ok {
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
    let mut extra = Extra::default();
    let mut specs = specs(a);
    if a.monitor_only {
        specs.retain(|s| s.label == a.mix.label());
    }
    for spec in specs {
        let Spec { label, cfg, .. } = &spec;
        let label = *label;
        let path = a.dir.join(spec.file);
        let t = Instant::now();
        let stats = gen::generate_files(cfg, &path).map_err(|e| e.to_string())?;
        let (lost_c2s, lost_s2c) = if cfg.loss_pct > 0.0 {
            truth_lost(&path)?
        } else {
            (0, 0)
        };
        let (want_c2s, want_s2c) = (stats.c2s_bytes - lost_c2s, stats.s2c_bytes - lost_s2c);
        let cap = Capture::load(&path).map_err(|e| e.to_string())?;
        let frames = engine::frames(&cap);
        let data_segments = if spec.suricata && suri_startup.is_some() {
            count_data_segments(&cap)
        } else {
            0
        };
        println!(
            "\ncapture {label} ({}): {} packets, {} frame bytes (avg {:.0} B), {} flows, {} concurrent, {:.1}% reorder, {:.1}% dup, {:.1}% loss ({} + {} B lost); generated+loaded in {:.1} s",
            path.display(),
            stats.packets,
            stats.frame_bytes,
            stats.frame_bytes as f64 / stats.packets as f64,
            stats.flows,
            cfg.concurrent,
            cfg.reorder_pct,
            cfg.dup_pct,
            cfg.loss_pct,
            lost_c2s,
            lost_s2c,
            t.elapsed().as_secs_f64()
        );
        let mut measures = Vec::new();
        let concurrent = cfg.concurrent as usize;
        // The monitor with a consumer reading every byte: the main one, then (bench mix only)
        // the others, so that each read API is measured.
        let modes: &[ReadMode] = if label == "bench" && !a.monitor_only {
            &[MAIN, ReadMode::Peek]
        } else {
            &[MAIN]
        };
        // Every engine's runs are taken in rounds (each engine once per round, in turn), so
        // that a machine that slows down or speeds up over minutes weighs on every engine
        // alike instead of on whichever ran then.
        let nids_want = peers::NidsWant {
            flows: stats.flows,
            c2s: want_c2s,
            s2c: want_s2c,
            lossy: cfg.loss_pct > 0.0,
        };
        let suri = suri_startup.filter(|_| spec.suricata && !a.monitor_only);
        let nids_bin = nids.as_ref().filter(|_| !a.monitor_only);
        let mut mon_ts: Vec<Vec<f64>> = vec![Vec::new(); modes.len()];
        let mut mon_last: Vec<Option<engine::BenchRun>> = vec![None; modes.len()];
        let (mut floor_ts, mut nids_ts, mut suri_ts) = (Vec::new(), Vec::new(), Vec::new());
        let mut fc = floor::FloorCount::default();
        let (mut nids_last, mut suri_last) = (peers::PeerRun::default(), peers::PeerRun::default());
        for _ in 0..runs {
            for (i, &mode) in modes.iter().enumerate() {
                let r = engine::bench_run(&frames, concurrent, mode)?;
                if (r.c2s_read, r.s2c_read, r.c2s_missed, r.s2c_missed)
                    != (want_c2s, want_s2c, lost_c2s, lost_s2c)
                    || r.bytes_lost != lost_c2s + lost_s2c
                {
                    return Err(format!(
                        "{}: consumer read c2s {} / s2c {} bytes and was told of {} / {} missed, monitor lost {}; ground truth {want_c2s} / {want_s2c} held, {lost_c2s} / {lost_s2c} lost",
                        mode.engine(), r.c2s_read, r.s2c_read, r.c2s_missed, r.s2c_missed, r.bytes_lost
                    ));
                }
                mon_ts[i].push(r.secs);
                // The memory it took: the most any run grew the process (a later run may
                // reuse pages an earlier one left resident, and grow it by nothing).
                let grew = mon_last[i].as_ref().map_or(0, |l| l.rss_growth_kb);
                mon_last[i] = Some(engine::BenchRun {
                    rss_growth_kb: r.rss_growth_kb.max(grew),
                    ..r
                });
            }
            if a.monitor_only {
                continue;
            }
            let t = Instant::now();
            fc = std::hint::black_box(floor::run(&cap));
            floor_ts.push(t.elapsed().as_secs_f64());
            if let Some(bin) = nids_bin {
                nids_last = peers::run_nids(bin, &path, &a.dir, nids_want, spec.nids_streams)
                    .map_err(|e| e.to_string())?;
                nids_ts.push(nids_last.secs);
            }
            if let Some(st) = suri {
                suri_last = peers::run_suricata(
                    &path,
                    &a.dir,
                    data_segments.saturating_sub(stats.dup_segments),
                    st,
                )
                .map_err(|e| e.to_string())?;
                suri_ts.push(suri_last.secs);
            }
        }
        let mut mon = None;
        for ((&mode, ts), last) in modes.iter().zip(mon_ts).zip(mon_last) {
            let m = last.ok_or("no monitor run (runs = 0)")?;
            measures.push(best(
                mode.engine(),
                ts,
                Some((m.rss_growth_kb, "RSS growth")),
                format!(
                    "monitor: {} flows ended, read {} B c2s + {} B s2c (= ground truth), told of {} + {} B lost at the tap (= ground truth)",
                    m.flows_ended, m.c2s_read, m.s2c_read, m.c2s_missed, m.s2c_missed
                ),
            ));
            if mode == MAIN {
                mon = Some(m);
            }
        }
        if a.monitor_only {
            println!(
                "{}: {:.1} ns/packet (fastest of {runs})",
                MAIN.engine(),
                measures[0].secs * 1e9 / stats.packets as f64
            );
            if label == "churn" {
                let _ = std::fs::remove_file(&path);
            }
            return Ok(());
        }
        if label == "bench" {
            let m = engine::memory_run(&frames, concurrent)?;
            println!(
                "  stream pool: {:.1} MB touched, {:.1} MB in use at peak, {:.1} MB of stream held at peak: waste {:.3}",
                m.touched as f64 / 1048576.0,
                m.in_use_peak as f64 / 1048576.0,
                m.held_peak as f64 / 1048576.0,
                m.waste()
            );
            extra.mem = Some(m);
            // One core and two, each the best of `runs`, alternated so that the machine's
            // moods fall on both; the parse floor on the same split beside them.
            let whole = vec![frames.clone()];
            let split = engine::split_by_rss(&frames, 2);
            let mut best: [Option<engine::ScaleRun>; 4] = Default::default();
            for _ in 0..runs {
                for (i, s) in [&whole, &split].into_iter().enumerate() {
                    let r = engine::scaling_run(s, concurrent)?;
                    if r.read != want_c2s + want_s2c {
                        return Err(format!(
                            "{} core(s) read {} bytes, ground truth {}",
                            s.len(),
                            r.read,
                            want_c2s + want_s2c
                        ));
                    }
                    let f = engine::floor_scaling_run(s);
                    for (b, r) in best[2 * i..].iter_mut().zip([r, f]) {
                        if b.as_ref().is_none_or(|b| r.secs < b.secs) {
                            *b = Some(r);
                        }
                    }
                }
            }
            let [Some(one), Some(floor1), Some(two), Some(floor2)] = best else {
                return Err("no scaling run (runs = 0)".into());
            };
            let cores = |r: &engine::ScaleRun| {
                r.per_core
                    .iter()
                    .map(|s| format!("{s:.3}"))
                    .collect::<Vec<_>>()
            };
            println!(
                "  two cores (RSS split {:?} frames, storage resident): slowest core {:.3} s (cores {:?}); one core {:.3} s: scaling {:.3}; against the main run's one core ({:.3} s, page faults included): {:.3}",
                two.frames,
                two.secs,
                cores(&two),
                one.secs,
                one.secs / two.secs,
                measures[0].secs,
                measures[0].secs / two.secs
            );
            println!(
                "  parse floor on the same split: slowest core {:.3} s (cores {:?}); one core {:.3} s: scaling {:.3} (what two threads sharing nothing get here)",
                floor2.secs,
                cores(&floor2),
                floor1.secs,
                floor1.secs / floor2.secs
            );
            extra.scale = Some(Scale {
                monitor: one.secs / two.secs,
                floor: floor1.secs / floor2.secs,
            });
        }
        measures.push(best(
            "smoltcp-floor",
            floor_ts,
            None,
            format!("floor: {} TCP segments, {} payload B", fc.tcp, fc.payload),
        ));
        drop(frames);
        drop(cap);
        if nids_bin.is_some() {
            measures.push(best(
                "libnids",
                nids_ts,
                nids_last.peak_kb.map(|k| (k, "peak RSS")),
                nids_last.evidence,
            ));
        }
        if let Some(st) = suri {
            // Wall time minus startup: on a capture whose work is shorter than Suricata's
            // startup, what is left is the startup's own spread, not Suricata's work.
            let work = suri_ts.iter().copied().fold(f64::INFINITY, f64::min);
            if work < st {
                println!(
                    "  suricata: {work:.3} s of work left after its {st:.3} s startup on this capture: too short to time, not reported (use a bigger capture)"
                );
            } else {
                measures.push(best(
                    "suricata",
                    suri_ts,
                    suri_last.peak_kb.map(|k| (k, "peak RSS")),
                    suri_last.evidence,
                ));
            }
        }
        // The big captures are not kept.
        if label == "churn" {
            let _ = std::fs::remove_file(&path);
        }
        results.push(CaptureRun {
            label,
            stats,
            measures,
            monitor: mon,
        });
    }
    report(&results, &extra, runs);
    Ok(())
}

/// TCP segments carrying payload (what a peer must insert to have reassembled everything).
fn count_data_segments(cap: &Capture) -> u64 {
    cap.frames()
        .filter(|(_, f)| floor::parse_tcp(f).is_some_and(|t| !t.payload().is_empty()))
        .count() as u64
}

fn report(results: &[CaptureRun], extra: &Extra, runs: u32) {
    let get = |r: &CaptureRun, n: &str| r.measures.iter().find(|m| m.name == n).map(|m| m.secs);
    let main = MAIN.engine();
    for r in results {
        let mon = get(r, main);
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
    }
    let by = |l: &str| results.iter().find(|r| r.label == l);
    let r0 = by("bench");
    let ratio_in = |r: Option<&CaptureRun>, n: &str| {
        let r = r?;
        Some(get(r, main)? / get(r, n)?)
    };
    let ratio = |n: &str| ratio_in(r0, n);
    let slow = |l: &str, n: &str| Some(get(by(l)?, n)? / get(r0?, n)?);
    let m = r0.and_then(|r| r.monitor.as_ref());
    let flow_state = m.map_or(0, |m| m.flow_state_bytes);
    let per_flow_rss = m.map_or(0.0, |m| {
        m.rss_growth_kb as f64 * 1024.0 / m.peak_flows.max(1) as f64
    });
    for (l, what) in [
        ("bench_r10", "10 % reorder + 1 % dup"),
        ("bench_r30", "30 % reorder + 3 % loss"),
    ] {
        println!("\nslowdown t({l})/t(bench), {what}:");
        for n in [main, "smoltcp-floor", "libnids", "suricata"] {
            if let Some(s) = slow(l, n) {
                println!("  {n:<14} {s:.3}");
            }
        }
    }
    if let Some(m) = m {
        println!(
            "\nmemory: monitor flow state {} B per idle flow (no stream bytes held); {} B per side ring when in use ({} B chunks); storage footprint {:.1} MB for {} flow slots; RSS growth {:.1} MB over {} peak live flows = {:.0} B per concurrent flow",
            m.flow_state_bytes,
            m.ring_bytes,
            monitor::CHUNK_SIZE,
            m.footprint_bytes as f64 / 1048576.0,
            m.flow_slots,
            m.rss_growth_kb as f64 / 1024.0,
            m.peak_flows,
            per_flow_rss
        );
    }
    if let Some(r0) = r0 {
        for n in ["libnids", "suricata"] {
            if let Some((kb, _)) = r0.measures.iter().find(|x| x.name == n).and_then(|x| x.mem) {
                println!(
                    "  {n}: peak RSS {:.1} MB = {:.0} B per concurrent flow ({})",
                    kb as f64 / 1024.0,
                    kb as f64 * 1024.0 / m.map_or(1, |m| m.peak_flows.max(1)) as f64,
                    m.map_or(0, |m| m.peak_flows)
                );
            }
        }
    }
    let churn = by("churn");
    let churn_fps = churn.and_then(|r| Some(r.stats.flows as f64 / get(r, main)?));
    let pool_waste = extra.mem.map(|m| m.waste());
    let scaling = extra.scale.map(|s| s.monitor);
    let scaling_floor = extra.scale.map(|s| s.floor);
    let mut targets = String::new();
    let check = |t: &mut String, name: &str, v: Option<f64>, max: f64, at_least: bool| {
        if let Some(v) = v {
            let met = if at_least { v >= max } else { v <= max };
            let _ = writeln!(
                t,
                "  {name:<22} {v:>9.3}  target {} {max:<6} {}",
                if at_least { ">=" } else { "<=" },
                if met { "met" } else { "MISSED" }
            );
        }
    };
    check(&mut targets, "ratio_libnids", ratio("libnids"), 0.33, false);
    check(
        &mut targets,
        "ratio_suricata",
        ratio("suricata"),
        0.10,
        false,
    );
    check(
        &mut targets,
        "ratio_floor",
        ratio("smoltcp-floor"),
        2.5,
        false,
    );
    check(
        &mut targets,
        "reorder_slowdown",
        slow("bench_r10", main),
        1.15,
        false,
    );
    check(
        &mut targets,
        "reorder30_slowdown",
        slow("bench_r30", main),
        1.15,
        false,
    );
    check(
        &mut targets,
        "flow_state_bytes",
        Some(flow_state as f64),
        256.0,
        false,
    );
    check(&mut targets, "pool_waste", pool_waste, 1.25, false);
    check(
        &mut targets,
        "churn_ratio_libnids",
        ratio_in(churn, "libnids"),
        0.33,
        false,
    );
    check(&mut targets, "scaling_2core", scaling, 1.8, true);
    println!("\ntargets:\n{targets}");
    if let Some(f) = churn_fps {
        println!("churn: {f:.0} connections per second through the monitor\n");
    }
    let num = |v: Option<f64>| {
        v.map_or(serde_json::Value::Null, |v| {
            serde_json::json!((v * 1000.0).round() / 1000.0)
        })
    };
    let (mon0, packets, frame_bytes) = r0.map_or((0.0, 0, 0), |r| {
        (
            get(r, main).unwrap_or(0.0),
            r.stats.packets,
            r.stats.frame_bytes,
        )
    });
    let j = serde_json::json!({"bench": {
        "ratio_libnids": num(ratio("libnids")),
        "ratio_suricata": num(ratio("suricata")),
        "ratio_floor": num(ratio("smoltcp-floor")),
        "reorder_slowdown": num(slow("bench_r10", main)),
        "reorder30_slowdown": num(slow("bench_r30", main)),
        "flow_state_bytes": flow_state,
        "pool_waste": num(pool_waste),
        "churn_ratio_libnids": num(ratio_in(churn, "libnids")),
        "churn_flows_per_s": churn_fps.map_or(serde_json::Value::Null, |f| serde_json::json!(f.round())),
        "scaling_2core": num(scaling),
        "scaling_2core_floor": num(scaling_floor),
        "monitor_ns_per_pkt": num(Some(mon0 * 1e9 / packets.max(1) as f64)),
        "monitor_mpps": num(Some(packets as f64 / mon0 / 1e6)),
        "monitor_gbps": num(Some(frame_bytes as f64 * 8.0 / mon0 / 1e9)),
        "rss_bytes_per_concurrent_flow": per_flow_rss.round(),
        "chunk_bytes": monitor::CHUNK_SIZE,
        "packets": packets,
        "frame_bytes": frame_bytes,
        "runs": runs,
    }});
    println!("{j}");
}
