//! `cargo ferrule replay [--app NAME|PATH] CAPTURE`: runs a middlebox over a capture on the
//! host, exactly as one core of the appliance would run it.
//!
//! Any app crate on the `appliance` crate (a workspace package such as the samples `midstat`,
//! `simple_firewall` and `matcher`, a path, or, without `--app`, the crate of the current
//! directory) runs through its own host runner: the tool builds it (`cargo build --release`,
//! as `build` does for the guest) and runs it as `RUNNER CAPTURE [--inline] [--out FILE.pcap]`
//! (see [`crate::runner`]). What an app fixes at build time is given as for `build` and
//! `run`: `--rules FILE` (simple_firewall's rule file) and `--pattern HEX` / `--text STRING`
//! (matcher's pattern) become the build variables of [`build_env`].

use std::path::{Path, PathBuf};

use crate::build::App;
use crate::runner::AppCrate;

/// `cargo ferrule replay` arguments.
#[derive(clap::Args, Debug, Clone)]
pub struct ReplayArgs {
    /// App: a workspace package name (e.g. midstat, simple_firewall, matcher) or the path of
    /// an app crate on the `appliance` crate [default: the app crate of the current directory].
    #[arg(long)]
    pub app: Option<String>,
    /// Capture to replay (pcap or pcapng).
    pub capture: PathBuf,
    /// Inline mode: verdicts applied, forwarded frames written to --out (apps whose settings
    /// say inline, such as simple_firewall, always are).
    #[arg(long)]
    pub inline: bool,
    /// Write the frames the app forwards, rewrites or injects (inline) to this pcap file.
    #[arg(long, value_name = "FILE.pcap")]
    pub out: Option<PathBuf>,
    /// What is built into the app (`--rules`, `--pattern`, `--text`).
    #[command(flatten)]
    pub build: BuildVars,
}

/// What `build`, `run` and `replay` build into an app (read by the app at build time).
#[derive(clap::Args, Debug, Clone, Default, PartialEq, Eq)]
pub struct BuildVars {
    /// A rule file built into the app (FERRULE_RULES; simple_firewall reads it, default
    /// apps/simple_firewall/default.rules).
    #[arg(long, value_name = "FILE")]
    pub rules: Option<PathBuf>,
    /// A pattern as hex bytes built into the app (FERRULE_PATTERN; matcher reads it, default
    /// deadbeef4242).
    #[arg(long, value_name = "HEX")]
    pub pattern: Option<String>,
    /// The same pattern as text.
    #[arg(long, value_name = "STRING", conflicts_with = "pattern")]
    pub text: Option<String>,
}

/// The build environment variables of `vars`: `FERRULE_RULES` (the rule file, absolute, which
/// must exist) and `FERRULE_PATTERN` (hex), each empty when not given, so a build without them
/// is not mistaken for the last one with them.
pub fn build_env(vars: &BuildVars) -> Result<Vec<(&'static str, String)>, String> {
    let rules = match &vars.rules {
        Some(p) => std::fs::canonicalize(p)
            .map_err(|e| format!("--rules {}: {e}", p.display()))?
            .display()
            .to_string(),
        None => String::new(),
    };
    let pattern = match (&vars.pattern, &vars.text) {
        (Some(h), _) => {
            let h = h.trim_start_matches("0x");
            let ok = !h.is_empty()
                && h.len().is_multiple_of(2)
                && h.len() <= 128
                && h.bytes().all(|b| b.is_ascii_hexdigit());
            if !ok {
                return Err(format!(
                    "--pattern {h}: want 1 to 64 bytes as an even number of hex digits"
                ));
            }
            h.to_string()
        }
        (_, Some(t)) if (1..=64).contains(&t.len()) => {
            t.bytes().map(|b| format!("{b:02x}")).collect()
        }
        (_, Some(t)) => return Err(format!("--text `{t}`: want 1 to 64 bytes")),
        _ => String::new(),
    };
    Ok(vec![("FERRULE_RULES", rules), ("FERRULE_PATTERN", pattern)])
}

/// Runs `cargo ferrule replay`; returns the exit code.
pub fn run_replay(a: &ReplayArgs) -> i32 {
    match replay_app(a) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ferrule replay: {e}");
            1
        }
    }
}

/// Which app crate a replay runs.
pub fn replay_target(a: &ReplayArgs, cwd: &Path) -> Result<AppCrate, String> {
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
    let env = build_env(&a.build)?;
    let cwd = std::env::current_dir().map_err(|e| format!("current directory: {e}"))?;
    let app = replay_target(a, &cwd)?;
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    crate::runner::replay_app_with_env(&app, &a.capture, a.inline, a.out.as_deref(), &env)
        .map_err(|e| e.to_string())
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
            build: BuildVars::default(),
        }
    }

    #[test]
    fn rules_and_patterns_become_build_variables() {
        let dir = tempfile::tempdir().unwrap();
        let rules = dir.path().join("fw.rules");
        std::fs::write(&rules, "DROP 0.0.0.0 10.0.0.1\n").unwrap();
        let env = |v: BuildVars| build_env(&v);
        assert_eq!(
            env(BuildVars::default()).unwrap(),
            [
                ("FERRULE_RULES", String::new()),
                ("FERRULE_PATTERN", String::new())
            ]
        );
        let got = env(BuildVars {
            rules: Some(rules.clone()),
            pattern: Some("0xDEADbeef".into()),
            text: None,
        })
        .unwrap();
        let abs = std::fs::canonicalize(&rules).unwrap().display().to_string();
        assert_eq!(
            got,
            [
                ("FERRULE_RULES", abs),
                ("FERRULE_PATTERN", "DEADbeef".to_string())
            ]
        );
        let got = env(BuildVars {
            text: Some("GET /".into()),
            ..BuildVars::default()
        })
        .unwrap();
        assert_eq!(got[1], ("FERRULE_PATTERN", "474554202f".to_string()));
        let bad = |v: BuildVars| env(v).unwrap_err();
        assert_eq!(
            bad(BuildVars {
                pattern: Some("abc".into()),
                ..BuildVars::default()
            }),
            "--pattern abc: want 1 to 64 bytes as an even number of hex digits"
        );
        assert!(bad(BuildVars {
            pattern: Some("zz".into()),
            ..BuildVars::default()
        })
        .starts_with("--pattern zz: "));
        assert_eq!(
            bad(BuildVars {
                text: Some(String::new()),
                ..BuildVars::default()
            }),
            "--text ``: want 1 to 64 bytes"
        );
        let missing = dir.path().join("none.rules");
        assert!(bad(BuildVars {
            rules: Some(missing.clone()),
            ..BuildVars::default()
        })
        .starts_with(&format!("--rules {}: ", missing.display())));
        let mut a = args(Some("midstat"));
        a.build.pattern = Some("x".into());
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
        // The samples are apps on the appliance crate now.
        for s in ["midstat", "simple_firewall", "matcher"] {
            let app = replay_target(&args(Some(s)), dir.path()).unwrap();
            assert_eq!((app.package.as_str(), app.bin.as_str()), (s, s));
        }
    }
}
