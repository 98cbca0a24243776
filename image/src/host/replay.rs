//! `cargo ferrule replay [--app NAME|PATH] CAPTURE`: runs a middlebox over a capture on the
//! host, exactly as one core of the appliance would run it.
//!
//! Any app crate on the `appliance` crate (a workspace package, a path, or, without `--app`,
//! the crate of the current directory) runs through its own host runner: the tool builds it
//! (`cargo build --release`, as `build` does for the guest) and runs it as
//! `RUNNER CAPTURE [--inline] [--out FILE.pcap]` (see [`crate::runner`]).
//!
//! The three sample libraries below run through this file until they are ported:
//!
//! * `midstat`: prints the live connection table once per second of capture time, as mOS
//!   midstat does, and how many connections ended.
//! * `simple_firewall --rules FILE`: inline mode; drops SYNs matching DROP rules, prints the
//!   rule table with its counts and the frames forwarded and dropped.
//! * `matcher --pattern HEX` (or `--text STRING`): prints every occurrence of the pattern as
//!   `match CLIENT SERVER side OFFSET`.

use std::path::{Path, PathBuf};

use monitor::{Config, HostStorage, Middlebox, Monitor, Side, Verdict};

use super::capture::Capture;
use super::gen::endpoint;
use crate::build::App;
use crate::runner::AppCrate;

/// Frames per receive batch.
const BATCH: usize = 32;

/// The sample middlebox libraries replay runs itself (they have no host runner yet).
pub const SAMPLES: [&str; 3] = ["midstat", "simple_firewall", "matcher"];

/// `cargo ferrule replay` arguments.
#[derive(clap::Args, Debug, Clone)]
pub struct ReplayArgs {
    /// App: a workspace package name or the path of an app crate on the `appliance` crate
    /// [default: the app crate of the current directory]; or a sample library: midstat,
    /// simple_firewall, matcher.
    #[arg(long)]
    pub app: Option<String>,
    /// Capture to replay (pcap or pcapng).
    pub capture: PathBuf,
    /// Inline mode (apps on `appliance`): verdicts applied, forwarded frames written to --out.
    #[arg(long)]
    pub inline: bool,
    /// Apps on `appliance`: write the frames the app forwards, rewrites or injects (inline)
    /// to this pcap file.
    #[arg(long, value_name = "FILE.pcap")]
    pub out: Option<PathBuf>,
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
    match a.app.as_deref() {
        Some(name) if SAMPLES.contains(&name) => match replay_sample(name, a) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("ferrule replay: {e}");
                1
            }
        },
        _ => match replay_app(a) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("ferrule replay: {e}");
                1
            }
        },
    }
}

/// Which app crate a replay without a sample app runs.
pub fn replay_target(a: &ReplayArgs, cwd: &Path) -> Result<AppCrate, String> {
    if let Some(flag) = [
        ("--rules", a.rules.is_some()),
        ("--pattern", a.pattern.is_some()),
        ("--text", a.text.is_some()),
    ]
    .iter()
    .find_map(|(f, set)| set.then_some(f))
    {
        return Err(format!(
            "{flag} is an option of the sample apps ({}); an app on the appliance crate takes CAPTURE [--inline] [--out FILE.pcap]",
            SAMPLES.join(", ")
        ));
    }
    let app = match &a.app {
        Some(s) => AppCrate::locate(&App::parse(s)).map_err(|e| e.to_string())?,
        None => AppCrate::enclosing(cwd).ok_or_else(|| {
            format!(
                "no --app, and {} is not inside an app crate (a crate that depends on `appliance`); give --app NAME|PATH, or create one with `cargo ferrule new DIR`",
                cwd.display()
            )
        })?,
    };
    app.require_appliance().map_err(|e| e.to_string())?;
    Ok(app)
}

fn replay_app(a: &ReplayArgs) -> Result<i32, String> {
    let cwd = std::env::current_dir().map_err(|e| format!("current directory: {e}"))?;
    let app = replay_target(a, &cwd)?;
    crate::runner::replay_app(&app, &a.capture, a.inline, a.out.as_deref())
        .map_err(|e| e.to_string())
}

fn replay_sample(name: &str, a: &ReplayArgs) -> Result<(), String> {
    if a.inline || a.out.is_some() {
        return Err(format!(
            "--inline and --out are for apps on the appliance crate; the sample {name} has its own mode"
        ));
    }
    // A damaged capture: the frames before the damage are replayed, then the damage is the
    // error (exit 1).
    let (cap, damage) = Capture::load_partial(&a.capture).map_err(|e| e.to_string())?;
    match name {
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
        other => return Err(format!("{other} is not a sample app")),
    }
    match damage {
        Some(e) => Err(e.to_string()),
        None => Ok(()),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn args(app: Option<&str>) -> ReplayArgs {
        ReplayArgs {
            app: app.map(String::from),
            capture: "c.pcap".into(),
            inline: false,
            out: None,
            rules: None,
            pattern: None,
            text: None,
        }
    }

    #[test]
    fn sample_flags_and_generic_flags_do_not_mix() {
        let mut a = args(Some("mybox"));
        a.pattern = Some("beef".into());
        assert_eq!(
            replay_target(&a, Path::new("/")).unwrap_err(),
            "--pattern is an option of the sample apps (midstat, simple_firewall, matcher); an app on the appliance crate takes CAPTURE [--inline] [--out FILE.pcap]"
        );
        let mut a = args(Some("midstat"));
        a.inline = true;
        assert_eq!(
            replay_sample("midstat", &a).unwrap_err(),
            "--inline and --out are for apps on the appliance crate; the sample midstat has its own mode"
        );
        assert_eq!(run_replay(&a), 1);
    }

    #[test]
    fn the_app_comes_from_the_flag_or_the_current_directory() {
        let dir = tempfile::tempdir().unwrap();
        let e = replay_target(&args(None), dir.path()).unwrap_err();
        assert_eq!(
            e,
            format!(
                "no --app, and {} is not inside an app crate (a crate that depends on `appliance`); give --app NAME|PATH, or create one with `cargo ferrule new DIR`",
                dir.path().display()
            )
        );
        let e = replay_target(&args(Some("sysinfo")), dir.path()).unwrap_err();
        assert!(
            e.contains("does not depend on the `appliance` crate, so it has no host runner"),
            "{e}"
        );
        let e = replay_target(&args(Some("nosuchapp")), dir.path()).unwrap_err();
        assert!(e.starts_with("no package `nosuchapp`"), "{e}");
        let e = replay_target(&args(Some("/no/such/dir")), dir.path()).unwrap_err();
        assert!(e.starts_with("/no/such/dir/Cargo.toml not found"), "{e}");
    }
}
