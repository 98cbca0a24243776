//! Building a guest app into a bootable ELF with a nested `cargo build` (ARCHITECTURE.md,
//! "Guest build").

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::Error;

/// The guest target triple.
pub const GUEST_TARGET: &str = "x86_64-unknown-none";
/// The app `cargo ferrule run/build` use when none is given.
pub const DEFAULT_APP: &str = "sysinfo";

/// The workspace this tool was built from (the parent of the `image` crate).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// Where guest builds go: `<workspace>/target/ferrule`.
pub fn guest_target_dir() -> PathBuf {
    workspace_root().join("target").join("ferrule")
}

/// Which app to build.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum App {
    /// A package of this workspace, by name (e.g. `sysinfo`, `panic`).
    Package(String),
    /// Any app crate, by its directory (or its `Cargo.toml`).
    Path(PathBuf),
}

impl App {
    /// A name if it looks like one (no `/`, not an existing directory), a path otherwise.
    pub fn parse(s: &str) -> App {
        let p = Path::new(s);
        if s.contains('/') || s.ends_with("Cargo.toml") || p.join("Cargo.toml").is_file() {
            App::Path(p.to_path_buf())
        } else {
            App::Package(s.to_string())
        }
    }
}

impl Default for App {
    fn default() -> App {
        App::Package(DEFAULT_APP.into())
    }
}

impl std::fmt::Display for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            App::Package(n) => write!(f, "{n}"),
            App::Path(p) => write!(f, "{}", p.display()),
        }
    }
}

/// Environment variables an outer cargo (or rustup) sets that must not reach a nested cargo:
/// they would pin another toolchain, replace our rustflags or point at the outer package.
const LEAKY_VARS: &[&str] = &[
    "RUSTUP_TOOLCHAIN",
    "CARGO",
    "CARGO_MANIFEST_DIR",
    "CARGO_MANIFEST_PATH",
    "CARGO_PRIMARY_PACKAGE",
    "CARGO_CRATE_NAME",
    "CARGO_BIN_NAME",
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_TARGET",
    "CARGO_BUILD_TARGET_DIR",
    "CARGO_BUILD_RUSTFLAGS",
    "CARGO_ENCODED_RUSTFLAGS",
    "CARGO_MAKEFLAGS",
    "RUSTFLAGS",
    "RUSTC",
    "RUSTC_WRAPPER",
    "RUSTC_WORKSPACE_WRAPPER",
    "RUSTDOCFLAGS",
    "OUT_DIR",
];

const LEAKY_PREFIXES: &[&str] = &[
    "CARGO_PKG_",
    "CARGO_CFG_",
    "CARGO_BIN_EXE_",
    "DEP_",
    "__CARGO",
];

/// Whether an environment variable is stripped from nested cargo invocations.
pub fn is_leaky_var(name: &str) -> bool {
    LEAKY_VARS.contains(&name) || LEAKY_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// A `cargo` command run in the workspace root, with the outer cargo's variables removed so
/// the workspace's `rust-toolchain.toml` and our own flags apply.
pub fn cargo() -> Command {
    let mut c = Command::new("cargo");
    c.current_dir(workspace_root());
    for (k, _) in std::env::vars_os() {
        if let Some(k) = k.to_str() {
            if is_leaky_var(k) {
                c.env_remove(k);
            }
        }
    }
    c
}

/// The rustflags every guest build uses: our linker script, static relocation.
pub fn guest_rustflags() -> String {
    format!(
        "-C link-arg=-T{} -C relocation-model=static",
        workspace_root().join("kernel").join("linker.ld").display()
    )
}

/// `cargo metadata --no-deps` of `manifest` (a crate or workspace `Cargo.toml`).
pub(crate) fn cargo_metadata(manifest: &Path) -> Result<serde_json::Value, Error> {
    let out = cargo()
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--manifest-path",
        ])
        .arg(manifest)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::Tool("cargo".into(), e))?;
    if !out.status.success() {
        return Err(Error::Build(format!(
            "cargo metadata failed for {}:\n{}",
            manifest.display(),
            String::from_utf8_lossy(&out.stderr).trim_end()
        )));
    }
    serde_json::from_slice(&out.stdout)
        .map_err(|e| Error::Build(format!("cargo metadata output: {e}")))
}

/// The names of a `cargo metadata` package's bin targets.
pub(crate) fn bin_targets(p: &serde_json::Value) -> Vec<String> {
    p["targets"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| {
            t["kind"]
                .as_array()
                .is_some_and(|k| k.iter().any(|k| k == "bin"))
        })
        .filter_map(|t| t["name"].as_str().map(String::from))
        .collect()
}

/// Finds the bin name of the app crate at `dir` (or `dir/Cargo.toml`) with `cargo metadata`.
fn app_name_at(manifest: &Path) -> Result<String, Error> {
    let v = cargo_metadata(manifest)?;
    let want = std::fs::canonicalize(manifest).unwrap_or_else(|_| manifest.to_path_buf());
    let packages = v["packages"].as_array().cloned().unwrap_or_default();
    for p in &packages {
        let mp = PathBuf::from(p["manifest_path"].as_str().unwrap_or_default());
        if std::fs::canonicalize(&mp).unwrap_or(mp) != want {
            continue;
        }
        let bins = bin_targets(p);
        return match bins.as_slice() {
            [one] => Ok(one.clone()),
            [] => Err(Error::Build(format!(
                "{} has no bin target: an app is a bin crate that calls kernel::main!",
                manifest.display()
            ))),
            many => Err(Error::Build(format!(
                "{} has several bin targets ({}); an app has exactly one",
                manifest.display(),
                many.join(", ")
            ))),
        };
    }
    Err(Error::Build(format!(
        "no package found at {}",
        manifest.display()
    )))
}

/// Whether nested cargo output is shown (`true`) or captured and shown only on failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verbosity {
    /// Let cargo print its progress.
    Show,
    /// Capture cargo's output; print it only if the build fails.
    Quiet,
}

/// Builds `app` for the guest and returns the ELF path
/// (`target/ferrule/x86_64-unknown-none/release/<app>`).
pub fn build_app(app: &App, verbosity: Verbosity) -> Result<PathBuf, Error> {
    build_app_with_env(app, verbosity, &[])
}

/// [`build_app`] with extra environment variables for the build, read by the app with
/// `option_env!` (e.g. `FERRULE_MGMT`, see `appliance::mgmt::Mgmt::from_build_env`). The
/// ELF path is the same for every variant: copy it before building another.
pub fn build_app_with_env(
    app: &App,
    verbosity: Verbosity,
    env: &[(&str, &str)],
) -> Result<PathBuf, Error> {
    let mut cmd = cargo();
    cmd.envs(env.iter().copied());
    cmd.args([
        "build",
        "--release",
        "--target",
        GUEST_TARGET,
        "--target-dir",
    ])
    .arg(guest_target_dir())
    .env(
        format!(
            "CARGO_TARGET_{}_RUSTFLAGS",
            GUEST_TARGET.to_uppercase().replace('-', "_")
        ),
        guest_rustflags(),
    );
    let name = match app {
        App::Package(name) => {
            cmd.args(["-p", name]);
            name.clone()
        }
        App::Path(p) => {
            let manifest = if p.ends_with("Cargo.toml") {
                p.clone()
            } else {
                p.join("Cargo.toml")
            };
            if !manifest.is_file() {
                return Err(Error::Build(format!(
                    "{} not found (an app path is a crate directory)",
                    manifest.display()
                )));
            }
            let manifest = std::fs::canonicalize(&manifest).unwrap_or(manifest);
            let name = app_name_at(&manifest)?;
            cmd.arg("--manifest-path")
                .arg(&manifest)
                .args(["--bin", &name]);
            name
        }
    };
    let ok = match verbosity {
        Verbosity::Show => cmd
            .status()
            .map_err(|e| Error::Tool("cargo".into(), e))?
            .success(),
        Verbosity::Quiet => {
            let out = cmd.output().map_err(|e| Error::Tool("cargo".into(), e))?;
            if !out.status.success() {
                eprintln!("{}", String::from_utf8_lossy(&out.stderr));
            }
            out.status.success()
        }
    };
    if !ok {
        return Err(Error::Build(format!("cargo build of app `{app}` failed")));
    }
    let elf = guest_target_dir()
        .join(GUEST_TARGET)
        .join("release")
        .join(&name);
    if !elf.is_file() {
        return Err(Error::Build(format!(
            "cargo reported success but {} is missing",
            elf.display()
        )));
    }
    Ok(elf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_names_and_paths() {
        assert_eq!(App::parse("sysinfo"), App::Package("sysinfo".into()));
        assert_eq!(App::parse("apps/sysinfo"), App::Path("apps/sysinfo".into()));
        assert_eq!(App::parse("./x"), App::Path("./x".into()));
        assert_eq!(App::default(), App::Package("sysinfo".into()));
    }

    #[test]
    fn outer_cargo_variables_do_not_leak() {
        for v in [
            "RUSTUP_TOOLCHAIN",
            "CARGO",
            "CARGO_MANIFEST_DIR",
            "CARGO_PKG_NAME",
            "RUSTFLAGS",
            "CARGO_ENCODED_RUSTFLAGS",
            "CARGO_TARGET_DIR",
            "__CARGO_FIX_PLZ",
        ] {
            assert!(is_leaky_var(v), "{v}");
        }
        for v in [
            "CARGO_HOME",
            "RUSTUP_HOME",
            "PATH",
            "CARGO_NET_OFFLINE",
            "CARGO_TERM_COLOR",
        ] {
            assert!(!is_leaky_var(v), "{v}");
        }
        let c = cargo();
        let removed: Vec<_> = c
            .get_envs()
            .filter(|(_, v)| v.is_none())
            .map(|(k, _)| k.to_string_lossy().into_owned())
            .collect();
        // Under `cargo test` the outer cargo sets CARGO and CARGO_MANIFEST_DIR.
        assert!(
            removed.iter().any(|k| k == "CARGO_MANIFEST_DIR"),
            "{removed:?}"
        );
    }

    #[test]
    fn guest_flags_point_at_the_kernel_linker_script() {
        let f = guest_rustflags();
        assert!(f.contains("kernel/linker.ld"), "{f}");
        assert!(f.contains("relocation-model=static"));
        assert!(workspace_root().join("Cargo.toml").is_file());
    }

    #[test]
    fn app_path_without_a_crate_is_a_clear_error() {
        let e = build_app(&App::Path("/nonexistent/app".into()), Verbosity::Quiet).unwrap_err();
        assert!(e.to_string().contains("Cargo.toml"), "{e}");
    }
}
