//! App crates on the `appliance` crate: finding them (a workspace package, a path, or the
//! crate the current directory is in) and building and running their host runner, the
//! `fn main()` that `appliance::main!` expands to on the host (`cargo ferrule replay`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::build::{self, App};
use crate::Error;

/// The crate every app depends on.
pub const APPLIANCE_CRATE: &str = "appliance";

/// What `cargo metadata` says about one app crate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppCrate {
    /// Its `Cargo.toml`, canonical.
    pub manifest: PathBuf,
    /// The package name.
    pub package: String,
    /// Its one bin target (the app).
    pub bin: String,
    /// Whether it depends on the `appliance` crate (so it has a host runner).
    pub on_appliance: bool,
    /// Whether it is a package of the Ferrule workspace (built with `-p`).
    pub in_workspace: bool,
}

/// Reads one package object of `cargo metadata`.
fn app_crate_of(p: &serde_json::Value, in_workspace: bool) -> Result<AppCrate, Error> {
    let manifest = PathBuf::from(p["manifest_path"].as_str().unwrap_or_default());
    let package = p["name"].as_str().unwrap_or_default().to_string();
    let on_appliance = p["dependencies"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|d| d["name"] == APPLIANCE_CRATE && d["kind"].is_null());
    let bins = build::bin_targets(p);
    let bin = match bins.as_slice() {
        [one] => one.clone(),
        [] => {
            return Err(Error::Build(format!(
                "`{package}` ({}) has no bin target: an app is a bin crate whose main.rs calls appliance::main!",
                manifest.display()
            )))
        }
        many => {
            return Err(Error::Build(format!(
                "`{package}` ({}) has several bin targets ({}); an app has exactly one",
                manifest.display(),
                many.join(", ")
            )))
        }
    };
    Ok(AppCrate {
        manifest,
        package,
        bin,
        on_appliance,
        in_workspace,
    })
}

/// The manifest of an app path (a crate directory or its `Cargo.toml`), which must exist.
pub fn manifest_of(path: &Path) -> Result<PathBuf, Error> {
    let manifest = if path.ends_with("Cargo.toml") {
        path.to_path_buf()
    } else {
        path.join("Cargo.toml")
    };
    if !manifest.is_file() {
        return Err(Error::Build(format!(
            "{} not found: an app path is a crate directory (or its Cargo.toml)",
            manifest.display()
        )));
    }
    Ok(std::fs::canonicalize(&manifest).unwrap_or(manifest))
}

impl AppCrate {
    /// Finds `app`: a package of the Ferrule workspace by name, or the crate at a path.
    pub fn locate(app: &App) -> Result<AppCrate, Error> {
        match app {
            App::Package(name) => {
                let root = build::workspace_root().join("Cargo.toml");
                let v = build::cargo_metadata(&root)?;
                let packages = v["packages"].as_array().cloned().unwrap_or_default();
                match packages.iter().find(|p| p["name"] == name.as_str()) {
                    Some(p) => app_crate_of(p, true),
                    None => {
                        let mut names: Vec<&str> =
                            packages.iter().filter_map(|p| p["name"].as_str()).collect();
                        names.sort_unstable();
                        Err(Error::Build(format!(
                            "no package `{name}` in the Ferrule workspace at {} (it has: {}); for a crate elsewhere give its path, e.g. --app ./{name}",
                            build::workspace_root().display(),
                            names.join(", ")
                        )))
                    }
                }
            }
            App::Path(p) => {
                let manifest = manifest_of(p)?;
                let v = build::cargo_metadata(&manifest)?;
                let ws_root = PathBuf::from(v["workspace_root"].as_str().unwrap_or_default());
                let in_workspace = std::fs::canonicalize(&ws_root).ok()
                    == std::fs::canonicalize(build::workspace_root()).ok();
                for pkg in v["packages"].as_array().into_iter().flatten() {
                    let mp = PathBuf::from(pkg["manifest_path"].as_str().unwrap_or_default());
                    if std::fs::canonicalize(&mp).unwrap_or(mp) == manifest {
                        return app_crate_of(pkg, in_workspace);
                    }
                }
                Err(Error::Build(format!(
                    "{} is a workspace manifest, not an app crate",
                    manifest.display()
                )))
            }
        }
    }

    /// The app crate the current directory belongs to: the nearest `Cargo.toml` at or above
    /// `dir`, if its package depends on `appliance`. `None` otherwise (no manifest, a
    /// workspace manifest, or a crate that is not an app).
    pub fn enclosing(dir: &Path) -> Option<AppCrate> {
        let manifest = dir
            .ancestors()
            .map(|d| d.join("Cargo.toml"))
            .find(|m| m.is_file())?;
        // Cheap first look before asking cargo.
        let text = std::fs::read_to_string(&manifest).ok()?;
        if !text.contains(APPLIANCE_CRATE) || !text.contains("[package]") {
            return None;
        }
        let dir = manifest.parent()?.to_path_buf();
        AppCrate::locate(&App::Path(dir))
            .ok()
            .filter(|a| a.on_appliance)
    }

    /// The app as `build::App` (a workspace package by name, anything else by path).
    pub fn as_app(&self) -> App {
        if self.in_workspace {
            App::Package(self.package.clone())
        } else {
            App::Path(
                self.manifest
                    .parent()
                    .unwrap_or(&self.manifest)
                    .to_path_buf(),
            )
        }
    }

    /// Refuses a crate that is not on the appliance crate (it has no host runner).
    pub fn require_appliance(&self) -> Result<(), Error> {
        if self.on_appliance {
            return Ok(());
        }
        Err(Error::Build(format!(
            "`{}` ({}) does not depend on the `{APPLIANCE_CRATE}` crate, so it has no host runner: replay runs apps whose main.rs calls appliance::main! (`cargo ferrule new DIR` writes one)",
            self.package,
            self.manifest.display()
        )))
    }

    /// The `cargo build` of the host runner: release, JSON messages on stdout (to find the
    /// executable), diagnostics rendered on stderr. Workspace packages build into
    /// `target/ferrule/host` (not `target/`, which an outer `cargo test` may hold locked);
    /// other crates into their own `target/`.
    pub fn host_build_command(&self) -> Command {
        let mut cmd = build::cargo();
        cmd.args([
            "build",
            "--release",
            "--message-format=json-render-diagnostics",
        ]);
        if self.in_workspace {
            cmd.args(["-p", &self.package])
                .arg("--target-dir")
                .arg(build::guest_target_dir().join("host"));
        } else {
            if let Some(dir) = self.manifest.parent() {
                // Its own rust-toolchain.toml and .cargo/config.toml apply.
                cmd.current_dir(dir);
            }
            cmd.arg("--manifest-path").arg(&self.manifest);
        }
        cmd.args(["--bin", &self.bin]);
        cmd
    }

    /// Builds the host runner and returns its executable.
    pub fn build_host_runner(&self) -> Result<PathBuf, Error> {
        self.build_host_runner_with_env(&[])
    }

    /// [`AppCrate::build_host_runner`] with build environment variables (as
    /// `build::build_app_with_env` gives the guest build).
    pub fn build_host_runner_with_env(&self, env: &[(&str, &str)]) -> Result<PathBuf, Error> {
        self.require_appliance()?;
        let out = self
            .host_build_command()
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()
            .map_err(|e| Error::Tool("cargo".into(), e))?;
        if !out.status.success() {
            return Err(Error::Build(format!(
                "building the host runner of `{}` failed (cargo's errors above)",
                self.package
            )));
        }
        executable_of(&String::from_utf8_lossy(&out.stdout), &self.bin).ok_or_else(|| {
            Error::Build(format!(
                "cargo built `{}` but named no executable for bin `{}`",
                self.package, self.bin
            ))
        })
    }
}

/// The executable of bin target `bin` in cargo's JSON messages (the last one named).
pub fn executable_of(json_lines: &str, bin: &str) -> Option<PathBuf> {
    json_lines
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == bin)
        .filter(|m| {
            m["target"]["kind"]
                .as_array()
                .is_some_and(|k| k.iter().any(|k| k == "bin"))
        })
        .filter_map(|m| m["executable"].as_str().map(PathBuf::from))
        .next_back()
}

/// The arguments the host runner takes (ARCHITECTURE.md, "Host runner").
pub fn host_runner_args(
    capture: &Path,
    inline: bool,
    out: Option<&Path>,
) -> Vec<std::ffi::OsString> {
    let mut a = vec![capture.as_os_str().to_owned()];
    if inline {
        a.push("--inline".into());
    }
    if let Some(o) = out {
        a.push("--out".into());
        a.push(o.as_os_str().to_owned());
    }
    a
}

/// Builds `app`'s host runner and runs it over `capture`, stdout and stderr passed through;
/// returns the runner's exit code.
pub fn replay_app(
    app: &AppCrate,
    capture: &Path,
    inline: bool,
    out: Option<&Path>,
) -> Result<i32, Error> {
    replay_app_with_env(app, capture, inline, out, &[])
}

/// [`replay_app`] with build environment variables for the host runner's build.
pub fn replay_app_with_env(
    app: &AppCrate,
    capture: &Path,
    inline: bool,
    out: Option<&Path>,
    env: &[(&str, &str)],
) -> Result<i32, Error> {
    if !capture.is_file() {
        return Err(Error::Build(format!(
            "{}: no such capture file",
            capture.display()
        )));
    }
    let exe = app.build_host_runner_with_env(env)?;
    let st = Command::new(&exe)
        .args(host_runner_args(capture, inline, out))
        .stdin(Stdio::null())
        .status()
        .map_err(|e| Error::Tool(exe.display().to_string(), e))?;
    Ok(st.code().unwrap_or(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_executable_comes_from_the_bin_artifact() {
        let msgs = r#"{"reason":"compiler-artifact","target":{"kind":["lib"],"name":"appliance"},"executable":null}
{"reason":"compiler-artifact","target":{"kind":["bin"],"name":"other"},"executable":"/t/release/other"}
not json at all
{"reason":"compiler-artifact","target":{"kind":["bin"],"name":"mybox"},"executable":"/t/release/mybox"}
{"reason":"build-finished","success":true}"#;
        assert_eq!(
            executable_of(msgs, "mybox"),
            Some(PathBuf::from("/t/release/mybox"))
        );
        assert_eq!(executable_of(msgs, "appliance"), None);
        assert_eq!(executable_of(msgs, "nothing"), None);
    }

    #[test]
    fn runner_arguments_follow_the_host_runner_contract() {
        let a = host_runner_args(Path::new("c.pcap"), false, None);
        assert_eq!(a, vec!["c.pcap"]);
        let a = host_runner_args(Path::new("c.pcap"), true, Some(Path::new("o.pcap")));
        assert_eq!(a, vec!["c.pcap", "--inline", "--out", "o.pcap"]);
    }

    #[test]
    fn workspace_packages_and_paths_are_located_with_clear_errors() {
        let e = AppCrate::locate(&App::Package("no-such-app".into())).unwrap_err();
        let e = e.to_string();
        assert!(
            e.starts_with("no package `no-such-app` in the Ferrule workspace at "),
            "{e}"
        );
        assert!(e.contains("sysinfo"), "{e}");
        let e = AppCrate::locate(&App::Path("/nonexistent/app".into())).unwrap_err();
        assert_eq!(
            e.to_string(),
            "/nonexistent/app/Cargo.toml not found: an app path is a crate directory (or its Cargo.toml)"
        );
        let sysinfo = AppCrate::locate(&App::Package("sysinfo".into())).unwrap();
        assert_eq!(
            (sysinfo.package.as_str(), sysinfo.bin.as_str()),
            ("sysinfo", "sysinfo")
        );
        assert!(sysinfo.in_workspace && !sysinfo.on_appliance);
        let e = sysinfo.require_appliance().unwrap_err().to_string();
        assert!(
            e.starts_with("`sysinfo` (") && e.contains("does not depend on the `appliance` crate"),
            "{e}"
        );
        let by_path =
            AppCrate::locate(&App::Path(build::workspace_root().join("apps/sysinfo"))).unwrap();
        assert_eq!(by_path, sysinfo);
        assert_eq!(by_path.as_app(), App::Package("sysinfo".into()));
        let ws = AppCrate::locate(&App::Path(build::workspace_root())).unwrap_err();
        assert!(ws
            .to_string()
            .ends_with("is a workspace manifest, not an app crate"));
        let lib = AppCrate::locate(&App::Package("monitor".into())).unwrap_err();
        assert!(lib.to_string().contains("has no bin target"), "{lib}");
    }

    #[test]
    fn only_a_crate_on_appliance_encloses_a_directory() {
        let root = build::workspace_root();
        assert_eq!(AppCrate::enclosing(&root), None);
        assert_eq!(AppCrate::enclosing(&root.join("apps/sysinfo/src")), None);
        assert_eq!(AppCrate::enclosing(Path::new("/")), None);
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(AppCrate::enclosing(dir.path()), None);
    }

    /// A crate outside the workspace on a stand-in `appliance` (an empty lib), so the build
    /// is quick; `main` is what the test gives.
    fn crate_at(dir: &Path, main: &str) -> PathBuf {
        let write = |p: PathBuf, t: &str| {
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, t).unwrap();
        };
        write(
            dir.join("appliance/Cargo.toml"),
            "[package]\nname = \"appliance\"\nversion = \"0.1.0\"\nedition = \"2021\"\n",
        );
        write(dir.join("appliance/src/lib.rs"), "");
        let app = dir.join("broken");
        write(
            app.join("Cargo.toml"),
            "[package]\nname = \"broken\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dependencies]\nappliance = { path = \"../appliance\" }\n\n[workspace]\n",
        );
        write(app.join("src/main.rs"), main);
        // The checkout's toolchain, not whatever the machine's default is (maybe none).
        std::fs::copy(
            build::workspace_root().join("rust-toolchain.toml"),
            app.join("rust-toolchain.toml"),
        )
        .unwrap();
        app
    }

    #[test]
    fn a_crate_that_does_not_build_or_a_missing_capture_is_a_clear_error() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = crate_at(tmp.path(), "compile_error!(\"not yet\");\nfn main() {}\n");
        let app = AppCrate::locate(&App::Path(dir.clone())).unwrap();
        assert!(app.on_appliance && !app.in_workspace);
        assert_eq!(
            (app.package.as_str(), app.bin.as_str()),
            ("broken", "broken")
        );
        assert_eq!(app.as_app(), App::Path(dir.clone()));
        assert_eq!(AppCrate::enclosing(&dir.join("src")), Some(app.clone()));
        let cap = tmp.path().join("c.pcap");
        let e = replay_app(&app, &cap, false, None).unwrap_err().to_string();
        assert_eq!(e, format!("{}: no such capture file", cap.display()));
        std::fs::write(&cap, b"").unwrap();
        let e = replay_app(&app, &cap, false, None).unwrap_err().to_string();
        assert_eq!(
            e,
            "building the host runner of `broken` failed (cargo's errors above)"
        );
    }

    #[test]
    fn the_runner_gets_the_capture_and_flags_and_its_exit_code_comes_back() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = crate_at(
            tmp.path(),
            "fn main() {\n    let a: Vec<String> = std::env::args().skip(1).collect();\n    std::process::exit(if a[1..] == [\"--inline\", \"--out\", \"o.pcap\"] && a[0].ends_with(\"c.pcap\") { 7 } else { 3 });\n}\n",
        );
        let app = AppCrate::locate(&App::Path(dir)).unwrap();
        let cap = tmp.path().join("c.pcap");
        std::fs::write(&cap, b"").unwrap();
        assert_eq!(
            replay_app(&app, &cap, true, Some(Path::new("o.pcap"))).unwrap(),
            7
        );
        assert_eq!(replay_app(&app, &cap, false, None).unwrap(), 3);
    }

    #[test]
    fn host_builds_keep_workspace_packages_out_of_target() {
        let a = AppCrate {
            manifest: "/w/apps/x/Cargo.toml".into(),
            package: "x".into(),
            bin: "x".into(),
            on_appliance: true,
            in_workspace: true,
        };
        let args: Vec<String> = a
            .host_build_command()
            .get_args()
            .map(|s| s.to_string_lossy().into_owned())
            .collect();
        let dir = build::guest_target_dir().join("host");
        assert_eq!(
            args,
            [
                "build",
                "--release",
                "--message-format=json-render-diagnostics",
                "-p",
                "x",
                "--target-dir",
                &dir.display().to_string(),
                "--bin",
                "x"
            ]
        );
        let b = AppCrate {
            manifest: "/elsewhere/mybox/Cargo.toml".into(),
            in_workspace: false,
            ..a
        };
        let cmd = b.host_build_command();
        let args: Vec<String> = cmd
            .get_args()
            .map(|s| s.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            args,
            [
                "build",
                "--release",
                "--message-format=json-render-diagnostics",
                "--manifest-path",
                "/elsewhere/mybox/Cargo.toml",
                "--bin",
                "x"
            ]
        );
        assert_eq!(cmd.get_current_dir(), Some(Path::new("/elsewhere/mybox")));
    }
}
