//! `cargo ferrule fuzz [--minutes N] [TARGET]`: installs what fuzzing needs (a nightly
//! toolchain and `cargo-fuzz`) and runs the cargo-fuzz targets of `monitor/fuzz/` one at a
//! time, each for its share of the minutes, then prints the executions per target and in total.
//!
//! New inputs go to a working corpus under `target/fuzz-corpus/TARGET` (the checked-in
//! `monitor/fuzz/corpus/TARGET` is read as seeds, never written). A crash leaves its input in
//! `monitor/fuzz/artifacts/TARGET/`; copied into `monitor/fuzz/regressions/TARGET/` it is
//! replayed by the stable tests (`monitor/tests/fuzz_*.rs`, `image/tests/fuzz_replay.rs`).
//! With `--record`, a row per target is added to the log table of `FUZZING.md`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::build::workspace_root;

/// The cargo-fuzz targets, in the order they run.
pub const TARGETS: [&str; 4] = [
    "monitor_frames",
    "capture_reader",
    "firewall_rules",
    "differential",
];

/// `cargo ferrule fuzz`: run the fuzz targets.
#[derive(clap::Args, Debug, Clone)]
pub struct FuzzArgs {
    /// Minutes in all, shared evenly by the targets run.
    #[arg(long, default_value_t = 10.0)]
    pub minutes: f64,
    /// One target (monitor_frames, capture_reader, firewall_rules, differential) [default: all,
    /// one after the other].
    pub target: Option<String>,
    /// Append a row per target (date, seconds, executions, result) to FUZZING.md.
    #[arg(long)]
    pub record: bool,
}

/// Why fuzzing could not run.
#[derive(Debug)]
pub enum FuzzError {
    /// A target name that is none of [`TARGETS`].
    UnknownTarget(String),
    /// `--minutes` is not a positive number.
    Minutes(f64),
    /// An install step failed (the command, what it said).
    Install(String, String),
    /// A command could not be started.
    Spawn(String, std::io::Error),
    /// A target found a crash (its artifact is under `monitor/fuzz/artifacts/`).
    Crash(String),
    /// Writing FUZZING.md failed.
    Record(std::io::Error),
}

impl std::fmt::Display for FuzzError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FuzzError::UnknownTarget(t) => {
                write!(f, "no fuzz target `{t}` (targets: {})", TARGETS.join(", "))
            }
            FuzzError::Minutes(m) => write!(f, "--minutes {m}: give a positive number"),
            FuzzError::Install(c, e) => write!(f, "`{c}` failed: {e}"),
            FuzzError::Spawn(c, e) => write!(f, "cannot run `{c}`: {e}"),
            FuzzError::Crash(t) => write!(
                f,
                "{t} crashed: its input is in monitor/fuzz/artifacts/{t}/; copy it to \
                 monitor/fuzz/regressions/{t}/ so the stable tests replay it, then fix the bug"
            ),
            FuzzError::Record(e) => write!(f, "FUZZING.md: {e}"),
        }
    }
}

impl std::error::Error for FuzzError {}

fn succeeds(c: &mut Command) -> bool {
    c.stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn install(c: &mut Command, what: &str) -> Result<(), FuzzError> {
    eprintln!("ferrule fuzz: {what}");
    let o = c
        .output()
        .map_err(|e| FuzzError::Spawn(what.to_string(), e))?;
    if o.status.success() {
        Ok(())
    } else {
        let err = String::from_utf8_lossy(&o.stderr);
        let tail: Vec<&str> = err.lines().rev().take(5).collect();
        Err(FuzzError::Install(
            what.to_string(),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
        ))
    }
}

/// Installs nightly (minimal profile) and cargo-fuzz when they are missing.
pub fn ensure_fuzz_tools() -> Result<(), FuzzError> {
    if !succeeds(Command::new("cargo").args(["+nightly", "--version"])) {
        install(
            Command::new("rustup").args([
                "toolchain",
                "install",
                "nightly",
                "--profile",
                "minimal",
            ]),
            "rustup toolchain install nightly --profile minimal",
        )?;
    }
    if !succeeds(Command::new("cargo").args(["fuzz", "--version"])) {
        install(
            Command::new("cargo").args(["install", "cargo-fuzz"]),
            "cargo install cargo-fuzz",
        )?;
    }
    Ok(())
}

/// What one target's run did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetRun {
    /// The target.
    pub target: String,
    /// Seconds it was given.
    pub seconds: u64,
    /// Executions libFuzzer reported (`stat::number_of_executed_units`).
    pub executions: u64,
    /// It crashed.
    pub crashed: bool,
}

/// The executions libFuzzer reports in its final statistics line, if `line` is that line.
pub fn executions_in(line: &str) -> Option<u64> {
    line.strip_prefix("stat::number_of_executed_units:")?
        .trim()
        .parse()
        .ok()
}

/// Runs `target` for `seconds` in `fuzz_dir` (monitor/fuzz); libFuzzer's progress goes to
/// stderr (new-coverage lines left out).
fn run_target(
    fuzz_dir: &Path,
    corpus: &Path,
    target: &str,
    seconds: u64,
) -> Result<TargetRun, FuzzError> {
    std::fs::create_dir_all(corpus).map_err(FuzzError::Record)?;
    let seeds = fuzz_dir.join("corpus").join(target);
    let mut c = Command::new("cargo");
    c.current_dir(fuzz_dir)
        .args(["+nightly", "fuzz", "run", target])
        .arg(corpus)
        .arg(&seeds)
        .arg("--")
        .arg(format!("-max_total_time={seconds}"))
        .arg("-print_final_stats=1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let what = format!("cargo +nightly fuzz run {target}");
    eprintln!("ferrule fuzz: {what} for {seconds} s");
    let mut child = c.spawn().map_err(|e| FuzzError::Spawn(what.clone(), e))?;
    let mut executions = 0;
    if let Some(err) = child.stderr.take() {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            if let Some(n) = executions_in(&line) {
                executions = n;
            }
            if !line.contains("\tNEW ") && !line.contains("\tREDUCE ") {
                eprintln!("{line}");
            }
        }
    }
    let status = child.wait().map_err(|e| FuzzError::Spawn(what, e))?;
    Ok(TargetRun {
        target: target.to_string(),
        seconds,
        executions,
        crashed: !status.success(),
    })
}

fn record(root: &Path, runs: &[TargetRun]) -> Result<(), FuzzError> {
    let date = Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let rows: Vec<String> = runs
        .iter()
        .map(|r| {
            format!(
                "| {date} | {} | {} | {} | {} |",
                r.target,
                r.seconds,
                r.executions,
                if r.crashed { "crash" } else { "no crash" }
            )
        })
        .collect();
    let path = root.join("FUZZING.md");
    let text = std::fs::read_to_string(&path).map_err(FuzzError::Record)?;
    std::fs::write(&path, with_rows(&text, &rows)).map_err(FuzzError::Record)
}

/// `text` with `rows` added after the last row of its last table (at the end if it has none),
/// so the log table stays one table whatever prose follows it.
fn with_rows(text: &str, rows: &[String]) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let at = lines
        .iter()
        .rposition(|l| l.starts_with('|'))
        .map_or(lines.len(), |i| i + 1);
    let mut out: Vec<&str> = lines[..at].to_vec();
    out.extend(rows.iter().map(String::as_str));
    out.extend(&lines[at..]);
    let mut s = out.join("\n");
    s.push('\n');
    s
}

/// Runs `cargo ferrule fuzz`; returns the targets' runs.
pub fn fuzz(a: &FuzzArgs) -> Result<Vec<TargetRun>, FuzzError> {
    let targets: Vec<&str> = match &a.target {
        Some(t) => vec![TARGETS
            .iter()
            .copied()
            .find(|x| x == t)
            .ok_or_else(|| FuzzError::UnknownTarget(t.clone()))?],
        None => TARGETS.to_vec(),
    };
    if !(a.minutes > 0.0 && a.minutes.is_finite()) {
        return Err(FuzzError::Minutes(a.minutes));
    }
    ensure_fuzz_tools()?;
    let root = workspace_root();
    let fuzz_dir = root.join("monitor").join("fuzz");
    let seconds = ((a.minutes * 60.0) / targets.len() as f64).max(1.0) as u64;
    let mut runs = Vec::new();
    for t in targets {
        let corpus: PathBuf = root.join("target").join("fuzz-corpus").join(t);
        let r = run_target(&fuzz_dir, &corpus, t, seconds)?;
        let crashed = r.crashed;
        runs.push(r);
        if crashed {
            break;
        }
    }
    if a.record {
        record(&root, &runs)?;
    }
    let total: u64 = runs.iter().map(|r| r.executions).sum();
    for r in &runs {
        eprintln!(
            "ferrule fuzz: {}: {} executions in {} s{}",
            r.target,
            r.executions,
            r.seconds,
            if r.crashed { ", CRASH" } else { "" }
        );
    }
    eprintln!("ferrule fuzz: {total} executions in all");
    match runs.iter().find(|r| r.crashed) {
        Some(r) => Err(FuzzError::Crash(r.target.clone())),
        None => Ok(runs),
    }
}

/// `cargo ferrule fuzz`; returns the exit code.
pub fn run_fuzz(a: &FuzzArgs) -> i32 {
    match fuzz(a) {
        Ok(_) => 0,
        Err(e) => {
            eprintln!("ferrule fuzz: {e}");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn final_statistics_line_gives_the_executions() {
        assert_eq!(
            executions_in("stat::number_of_executed_units: 1840016"),
            Some(1_840_016)
        );
        assert_eq!(executions_in("stat::average_exec_per_sec:     3524"), None);
        assert_eq!(executions_in("#1839605\tREDUCE cov: 1497"), None);
    }

    #[test]
    fn every_target_is_a_bin_of_the_fuzz_crate() {
        let toml =
            std::fs::read_to_string(workspace_root().join("monitor/fuzz/Cargo.toml")).unwrap();
        for t in TARGETS {
            assert!(
                toml.contains(&format!("name = \"{t}\"\npath = \"fuzz_targets/{t}.rs\"")),
                "{t}"
            );
            assert!(workspace_root()
                .join(format!("monitor/fuzz/fuzz_targets/{t}.rs"))
                .is_file());
        }
    }

    #[test]
    fn unknown_targets_and_bad_minutes_are_refused_before_installing() {
        let a = FuzzArgs {
            minutes: 1.0,
            target: Some("nope".into()),
            record: false,
        };
        assert!(matches!(fuzz(&a), Err(FuzzError::UnknownTarget(t)) if t == "nope"));
        let a = FuzzArgs {
            minutes: 0.0,
            target: None,
            record: false,
        };
        assert!(matches!(fuzz(&a), Err(FuzzError::Minutes(m)) if m == 0.0));
    }

    #[test]
    fn recorded_rows_go_after_the_tables_last_row() {
        let text = "# F\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\nTotal: prose.\n";
        let got = with_rows(text, &["| 3 | 4 |".to_string(), "| 5 | 6 |".to_string()]);
        assert_eq!(
            got,
            "# F\n\n| a | b |\n|---|---|\n| 1 | 2 |\n| 3 | 4 |\n| 5 | 6 |\n\nTotal: prose.\n"
        );
        assert_eq!(
            with_rows("no table\n", &["| x |".to_string()]),
            "no table\n| x |\n"
        );
    }
}
