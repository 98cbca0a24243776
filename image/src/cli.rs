//! Arguments and entry points of `cargo ferrule build | run | test`. The binary
//! (`src/bin/cargo-ferrule.rs`) holds the one `enum Command` that lists every subcommand; each
//! variant carries an `Args` struct from here (or from `host::cli`) and calls its `run_*`,
//! which returns the process exit code.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use qemu::{Config, Firmware, Machine, NicModel, Qemu};

use crate::build::{self, guest_target_dir, App, Verbosity, GUEST_TARGET};
use crate::host::replay::build_env;
pub use crate::host::replay::BuildVars;
use crate::runner::AppCrate;
use crate::{disk, image_path_for, setup, Error};

/// `cargo ferrule build`: build an app into an ELF and a flashable disk image.
#[derive(clap::Args, Debug, Clone)]
pub struct BuildArgs {
    /// App to build: a workspace package name or the path of an app crate [default: the app
    /// crate of the current directory (one that depends on `appliance`), else sysinfo].
    #[arg(long)]
    pub app: Option<String>,
    /// Directory for the disk image [default: target/ferrule/images].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// What is built into the app (`--rules`, `--pattern`, `--text`).
    #[command(flatten)]
    pub vars: BuildVars,
}

/// `cargo ferrule run`: build an app and boot it in QEMU, console on stdout.
#[derive(clap::Args, Debug, Clone)]
pub struct RunArgs {
    /// App to boot: a workspace package name or the path of an app crate. Without it, the
    /// app crate of the current directory (one that depends on `appliance`), else the
    /// default appliance (`flowmon`), boots with an igb and a generated sample capture.
    #[arg(long)]
    pub app: Option<String>,
    /// Number of CPU cores.
    #[arg(long, default_value_t = 2)]
    pub cores: u32,
    /// Guest memory in MiB.
    #[arg(long, default_value_t = 256)]
    pub memory: u32,
    /// Machine type: q35 or pc.
    #[arg(long, default_value = "q35")]
    pub machine: Machine,
    /// direct (QEMU loads the ELF), seabios or ovmf (boot the GRUB disk image).
    #[arg(long, default_value = "direct")]
    pub firmware: Firmware,
    /// Attach a NIC: igb, virtio-net or e1000e (repeat for several).
    #[arg(long = "nic")]
    pub nics: Vec<NicModel>,
    /// [N:]FILE: inject the frames of this pcap/pcapng file into NIC N (default 0) once the
    /// console shows --inject-after. Repeatable; files are sent in the order given. Without
    /// --nic, igb NICs are added up to the highest N named.
    #[arg(long = "pcap", value_name = "[N:]FILE")]
    pub pcaps: Vec<NicFile>,
    /// Console text after which the --pcap files are injected [default: `appliance: ready`
    /// for apps on the appliance crate, `cores online:` for others].
    #[arg(long)]
    pub inject_after: Option<String>,
    /// [N:]FILE: save the frames the guest transmits on NIC N (default 0) to this pcap file
    /// at the end. Repeatable.
    #[arg(long = "capture", value_name = "[N:]FILE")]
    pub captures: Vec<NicFile>,
    /// Use KVM if /dev/kvm works (TCG otherwise).
    #[arg(long)]
    pub kvm: bool,
    /// Kill QEMU after this many seconds (0: no limit).
    #[arg(long, default_value_t = 120)]
    pub timeout: u64,
    /// Do not check or install QEMU, GRUB and OVMF first.
    #[arg(long)]
    pub skip_setup: bool,
    /// Add a management NIC (virtio-net on QEMU user networking, guest 10.0.2.15) and forward
    /// the host's 127.0.0.1:HOSTPORT to the appliance's metrics port 9100. The app is built
    /// with FERRULE_MGMT=qemu, which flowmon and crates made by `cargo ferrule new` read
    /// (`appliance::mgmt::Mgmt::from_build_env`); they then serve `GET /metrics` there.
    #[arg(long, value_name = "HOSTPORT")]
    pub mgmt_forward: Option<u16>,
    /// With --mgmt-forward: the appliance exports IPFIX records (one per connection) to the
    /// host's 127.0.0.1:HOSTPORT (the guest sends to 10.0.2.2:HOSTPORT through QEMU user
    /// networking). The app is built with FERRULE_IPFIX_PORT=HOSTPORT.
    #[arg(long, value_name = "HOSTPORT", requires = "mgmt_forward")]
    pub ipfix_to: Option<u16>,
    /// What is built into the app (`--rules`, `--pattern`, `--text`).
    #[command(flatten)]
    pub vars: BuildVars,
}

impl RunArgs {
    /// Parses the arguments of `cargo ferrule run` (without `run` itself), for callers of
    /// [`run_run`] such as tests.
    pub fn from_args<I, S>(args: I) -> Result<RunArgs, clap::Error>
    where
        I: IntoIterator<Item = S>,
        S: Into<std::ffi::OsString> + Clone,
    {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Only {
            #[command(flatten)]
            run: RunArgs,
        }
        let all = std::iter::once(std::ffi::OsString::from("run"))
            .chain(args.into_iter().map(Into::into));
        Ok(Only::try_parse_from(all)?.run)
    }
}

/// A file bound to a NIC: `[N:]FILE` on the command line (`--pcap`, `--capture`). A leading
/// run of digits and a colon is the NIC index; anything else is the file (write `0:1:x.pcap`
/// or `./1:x.pcap` for a file whose name starts with digits and a colon).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NicFile {
    /// The NIC's index in the order of `--nic` (0 = the first).
    pub nic: usize,
    /// The file.
    pub path: PathBuf,
}

impl std::str::FromStr for NicFile {
    type Err = String;
    fn from_str(s: &str) -> Result<NicFile, String> {
        let (nic, file) = match s.split_once(':') {
            Some((n, f)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
                let nic = n
                    .parse()
                    .map_err(|_| format!("NIC index {n} in `{s}` is too large"))?;
                (nic, f)
            }
            _ => (0, s),
        };
        if file.is_empty() {
            return Err(format!("`{s}` names no file (expected [N:]FILE)"));
        }
        Ok(NicFile {
            nic,
            path: PathBuf::from(file),
        })
    }
}

/// The NICs a run attaches: the `--nic` list, or, when it is empty and files are bound to
/// NICs, igbs up to the highest index named. A file bound to a NIC that is not attached is
/// an error.
pub fn nics_for_run(
    nics: &[NicModel],
    pcaps: &[NicFile],
    captures: &[NicFile],
) -> Result<Vec<NicModel>, String> {
    let files = || pcaps.iter().chain(captures);
    if nics.is_empty() {
        return Ok(match files().map(|f| f.nic).max() {
            Some(top) => vec![NicModel::Igb; top + 1],
            None => Vec::new(),
        });
    }
    for (what, list) in [("--pcap", pcaps), ("--capture", captures)] {
        if let Some(f) = list.iter().find(|f| f.nic >= nics.len()) {
            return Err(format!(
                "{what} {}:{} names NIC {} but the run has {} NIC(s) (NICs count from 0 in --nic order)",
                f.nic,
                f.path.display(),
                f.nic,
                nics.len()
            ));
        }
    }
    Ok(nics.to_vec())
}

/// `cargo ferrule test`: install what is missing, then run every test.
#[derive(clap::Args, Debug, Clone)]
pub struct TestArgs {
    /// Do not check or install prerequisites first.
    #[arg(long)]
    pub skip_setup: bool,
    /// Extra arguments for `cargo test --workspace` (after `--`), e.g. a test name filter.
    #[arg(last = true)]
    pub cargo_args: Vec<String>,
}

/// Why the Ferrule checkout this tool was built from cannot serve builds, if it cannot (an
/// installed tool whose checkout was moved or deleted).
pub fn checkout_problem() -> Option<String> {
    let root = build::workspace_root();
    let needed = ["Cargo.toml", "kernel/linker.ld", "appliance/Cargo.toml"];
    needed.iter().find(|f| !root.join(f).is_file()).map(|f| {
        format!(
            "{} is missing: the Ferrule checkout this tool was built from ({}) is gone or moved; reinstall the tool from a checkout with `cargo install --locked --path CHECKOUT/image`",
            root.join(f).display(),
            root.display()
        )
    })
}

#[cfg(test)]
fn app_of(arg: &Option<String>) -> App {
    arg.as_deref().map(App::parse).unwrap_or_default()
}

/// The app crate (on `appliance`) the current directory is in, if any; said on stderr.
fn app_here() -> Option<App> {
    let dir = std::env::current_dir().ok()?;
    let app = AppCrate::enclosing(&dir)?.as_app();
    eprintln!("ferrule: app crate of this directory: {app}");
    Some(app)
}

/// The console line after which injected traffic is sent, unless --inject-after says.
pub fn ready_line(app: &App) -> &'static str {
    match AppCrate::locate(app) {
        Ok(c) if c.on_appliance => RUNTIME_READY,
        _ => "cores online:",
    }
}

fn human(bytes: u64) -> String {
    if bytes >= 1 << 20 {
        format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
    } else {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    }
}

fn size_of(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

fn fail(e: Error) -> i32 {
    eprintln!("error: {e}");
    1
}

/// The ELF and disk image of one app.
pub struct Built {
    /// The guest ELF.
    pub elf: PathBuf,
    /// The hybrid BIOS + UEFI disk image.
    pub image: PathBuf,
}

/// Builds the app's ELF and its disk image into `out_dir` (default target/ferrule/images).
pub fn build_all(app: &App, out_dir: Option<&Path>, v: Verbosity) -> Result<Built, Error> {
    build_all_with_env(app, out_dir, v, &[])
}

/// [`build_all`] with extra build environment variables (see `build::build_app_with_env`).
pub fn build_all_with_env(
    app: &App,
    out_dir: Option<&Path>,
    v: Verbosity,
    env: &[(&str, &str)],
) -> Result<Built, Error> {
    let elf = build::build_app_with_env(app, v, env)?;
    let dir = out_dir
        .map(Path::to_path_buf)
        .unwrap_or_else(|| guest_target_dir().join("images"));
    let image = disk::make_disk_image(&elf, &image_path_for(&elf, &dir))?;
    Ok(Built { elf, image })
}

/// `cargo ferrule build`.
pub fn run_build(a: &BuildArgs) -> i32 {
    let app = match &a.app {
        Some(s) => App::parse(s),
        None => app_here().unwrap_or_default(),
    };
    let vars = match build_env(&a.vars) {
        Ok(v) => v,
        Err(e) => return fail(Error::Build(e)),
    };
    let env: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    match build_all_with_env(&app, a.out.as_deref(), Verbosity::Show, &env) {
        Ok(b) => {
            println!("app:        {app}");
            println!(
                "ELF:        {} ({})",
                b.elf.display(),
                human(size_of(&b.elf))
            );
            println!(
                "disk image: {} ({}, boots BIOS and UEFI)",
                b.image.display(),
                human(size_of(&b.image))
            );
            println!();
            println!("Boot it in QEMU:  cargo ferrule run --app {app} --firmware seabios|ovmf");
            println!("Flash it to a USB stick (erases the stick; find its device with `lsblk`):");
            println!(
                "  sudo dd if={} of=/dev/sdX bs=4M conv=fsync status=progress",
                b.image.display()
            );
            0
        }
        Err(e) => fail(e),
    }
}

/// The app `cargo ferrule run` boots without `--app`.
pub const DEFAULT_APPLIANCE: &str = "flowmon";
/// The line the appliance runtime prints once every core polls its queues.
pub const RUNTIME_READY: &str = "appliance: ready";

/// Writes the default appliance's sample traffic (200 TCP connections, IPv4 and IPv6, some
/// reordering) to `target/ferrule/sample.pcap` with its ground truth beside it.
pub fn sample_capture() -> Result<PathBuf, Error> {
    let path = build::guest_target_dir().join("sample.pcap");
    let cfg = crate::host::gen::GenConfig {
        flows: 200,
        concurrent: 20,
        reorder_pct: 5.0,
        ipv6_pct: 20.0,
        seed: 2026,
        ..crate::host::gen::GenConfig::default()
    };
    std::fs::create_dir_all(build::guest_target_dir())
        .map_err(|e| Error::Io(path.display().to_string(), e))?;
    crate::host::gen::generate_files(&cfg, &path)
        .map_err(|e| Error::Build(format!("sample capture: {e}")))?;
    eprintln!(
        "ferrule: sample traffic {} (ground truth {})",
        path.display(),
        crate::host::gen::truth_path(&path).display()
    );
    Ok(path)
}

/// `cargo ferrule run`.
pub fn run_run(a: &RunArgs) -> i32 {
    let nics = match nics_for_run(&a.nics, &a.pcaps, &a.captures) {
        Ok(n) => n,
        Err(e) => return fail(Error::Build(e)),
    };
    if !a.skip_setup {
        if let Err(e) = setup::ensure_all() {
            return fail(e);
        }
    }
    // No --app: the app crate of this directory, or the default appliance, watching a
    // generated sample capture.
    let (app, sample) = match &a.app {
        Some(s) => (App::parse(s), false),
        None => (
            app_here().unwrap_or_else(|| App::Package(DEFAULT_APPLIANCE.into())),
            true,
        ),
    };
    let mut pcaps = a.pcaps.clone();
    if sample && pcaps.is_empty() {
        match sample_capture() {
            Ok(path) => pcaps.push(NicFile { nic: 0, path }),
            Err(e) => return fail(e),
        }
    }
    let nics = if nics.is_empty() && !pcaps.is_empty() {
        vec![NicModel::Igb]
    } else {
        nics
    };
    let inject_after = match &a.inject_after {
        Some(s) => s.clone(),
        None if pcaps.is_empty() => String::new(),
        None => ready_line(&app).to_string(),
    };
    let ipfix_port = a.ipfix_to.map(|p| p.to_string()).unwrap_or_default();
    let vars = match build_env(&a.vars) {
        Ok(v) => v,
        Err(e) => return fail(Error::Build(e)),
    };
    let mut env: Vec<(&str, &str)> = vec![
        (
            "FERRULE_MGMT",
            if a.mgmt_forward.is_some() { "qemu" } else { "" },
        ),
        ("FERRULE_IPFIX_PORT", &ipfix_port),
    ];
    env.extend(vars.iter().map(|(k, v)| (*k, v.as_str())));
    let env = &env[..];
    let config = match a.firmware {
        Firmware::Direct => match build::build_app_with_env(&app, Verbosity::Show, env) {
            Ok(elf) => Config::kernel(elf),
            Err(e) => return fail(e),
        },
        fw => match build_all_with_env(&app, None, Verbosity::Show, env) {
            Ok(b) => Config::disk(b.image, fw),
            Err(e) => return fail(e),
        },
    };
    let timeout = if a.timeout == 0 {
        Duration::from_secs(10 * 365 * 24 * 3600)
    } else {
        Duration::from_secs(a.timeout)
    };
    let config = config
        .with_nics(&nics)
        .with_machine(a.machine)
        .with_cores(a.cores)
        .with_memory_mib(a.memory)
        .with_kvm(a.kvm)
        .with_timeout(timeout);
    let config = match a.mgmt_forward {
        Some(port) => {
            eprintln!("ferrule: management NIC: http://127.0.0.1:{port}/metrics");
            if let Some(p) = a.ipfix_to {
                eprintln!("ferrule: IPFIX records go to 127.0.0.1:{p} (UDP)");
            }
            config.with_args(qemu::user_nic_args(port, 9100))
        }
        None => config,
    };
    eprintln!(
        "ferrule: booting {app} on {} ({}), {} core(s), {} MiB, NICs {:?}, {}",
        a.machine.name(),
        a.firmware.name(),
        a.cores,
        a.memory,
        config
            .nics
            .iter()
            .map(|n| n.model.device())
            .collect::<Vec<_>>(),
        if a.kvm { "KVM if usable" } else { "TCG" }
    );
    let mut vm = match Qemu::start(config) {
        Ok(vm) => vm,
        Err(e) => return fail(e.into()),
    };
    let mut pending = pcaps;
    let mut injected_all = true;
    let stdout = std::io::stdout();
    loop {
        match vm.next_line(Duration::from_secs(3600)) {
            Ok(Some(line)) => {
                let mut out = stdout.lock();
                let _ = writeln!(out, "{line}");
                let _ = out.flush();
                if !pending.is_empty() && line.contains(&inject_after) {
                    for f in std::mem::take(&mut pending) {
                        match vm.nic(f.nic).send_pcap(&f.path) {
                            Ok(n) => eprintln!(
                                "ferrule: injected {n} frames from {} into NIC {}",
                                f.path.display(),
                                f.nic
                            ),
                            Err(e) => {
                                eprintln!(
                                    "ferrule: injecting {} into NIC {}: {e}",
                                    f.path.display(),
                                    f.nic
                                );
                                injected_all = false;
                            }
                        }
                    }
                }
            }
            Ok(None) => break,
            Err(_) if !vm.is_running() => break,
            Err(_) => {}
        }
    }
    let status = vm.wait_exit();
    let mut files_ok = injected_all;
    for c in &a.captures {
        match vm.nic(c.nic).save_capture(&c.path) {
            Ok(n) => eprintln!(
                "ferrule: saved {n} frames transmitted on NIC {} to {}",
                c.nic,
                c.path.display()
            ),
            Err(e) => {
                eprintln!("ferrule: saving {}: {e}", c.path.display());
                files_ok = false;
            }
        }
    }
    if !pending.is_empty() {
        eprintln!("ferrule: the console never showed `{inject_after}`: nothing was injected");
        files_ok = false;
    }
    let err = vm.stderr_text();
    if !err.trim().is_empty() {
        eprintln!("--- QEMU stderr ---\n{err}");
    }
    eprintln!(
        "ferrule: {} after {:.2} s",
        status,
        vm.elapsed().as_secs_f64()
    );
    match status.as_process_code() {
        0 if !files_ok => 1,
        code => code,
    }
}

/// Totals of `test result:` lines.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Tests passed.
    pub passed: u64,
    /// Tests failed.
    pub failed: u64,
    /// Tests ignored.
    pub ignored: u64,
    /// `test result:` lines seen (one per test binary with tests).
    pub suites: u64,
}

impl Tally {
    /// Adds one libtest line if it is a `test result:` line.
    pub fn add_line(&mut self, line: &str) {
        let Some(rest) = line.trim().strip_prefix("test result: ") else {
            return;
        };
        self.suites += 1;
        for part in rest.split(';') {
            let words: Vec<&str> = part.split_whitespace().collect();
            let (n, what) = match words.as_slice() {
                [_, n, what, ..] if n.parse::<u64>().is_ok() => (n, what),
                [n, what, ..] => (n, what),
                _ => continue,
            };
            let Ok(n) = n.parse::<u64>() else { continue };
            match *what {
                "passed" => self.passed += n,
                "failed" => self.failed += n,
                "ignored" => self.ignored += n,
                _ => {}
            }
        }
    }
}

/// What one `cargo test` run reported: its tally and the names of failed and ignored tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Totals of the `test result:` lines.
    pub tally: Tally,
    /// `test NAME ... FAILED` names.
    pub failed: Vec<String>,
    /// `test NAME ... ignored` names (a skipped test: it did not run).
    pub ignored: Vec<String>,
}

impl Report {
    /// Adds one line of libtest output.
    pub fn add_line(&mut self, line: &str) {
        self.tally.add_line(line);
        let Some(rest) = line.strip_prefix("test ") else {
            return;
        };
        if let Some(name) = rest.strip_suffix(" ... FAILED") {
            self.failed.push(name.to_string());
        } else if let Some((name, status)) = rest.split_once(" ... ") {
            if status == "ignored" || status.starts_with("ignored, ") {
                self.ignored.push(name.to_string());
            }
        }
    }
}

/// Runs a command, echoing its stdout, and tallies libtest results; returns success and report.
fn run_tallied(cmd: &mut Command) -> Result<(bool, Report), Error> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stdin(Stdio::null())
        .spawn()
        .map_err(|e| Error::Tool("cargo".into(), e))?;
    let mut report = Report::default();
    if let Some(out) = child.stdout.take() {
        let stdout = std::io::stdout();
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            report.add_line(&line);
            let mut o = stdout.lock();
            let _ = writeln!(o, "{line}");
            let _ = o.flush();
        }
    }
    let st = child.wait().map_err(|e| Error::Tool("cargo".into(), e))?;
    Ok((st.success(), report))
}

/// Whether this run is CI's (`CI=true`, as CI services and `.ci/run` set it): there a skipped
/// (ignored) test fails the run, so nothing can pass by not running.
pub fn strict_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// The verdict of `cargo ferrule test`: every step ok, no failed test, some test ran, and
/// under CI no skipped test. Returns the reasons it failed (empty: passed).
pub fn verdict(steps_ok: bool, tally: &Tally, ci: bool) -> Vec<String> {
    let mut why = Vec::new();
    if !steps_ok {
        why.push("a step failed".to_string());
    }
    if tally.failed > 0 {
        why.push(format!("{} tests failed", tally.failed));
    }
    if tally.suites == 0 {
        why.push("no test ran".to_string());
    }
    if ci && tally.ignored > 0 {
        why.push(format!(
            "CI=true: {} skipped (ignored) tests count as failures",
            tally.ignored
        ));
    }
    why
}

/// `cargo ferrule test`.
pub fn run_test(a: &TestArgs) -> i32 {
    let t0 = Instant::now();
    if !a.skip_setup {
        if let Err(e) = setup::ensure_for_tests() {
            return fail(e);
        }
    }
    let mut steps: Vec<(String, bool, Duration)> = Vec::new();

    let t = Instant::now();
    println!("== cargo test --workspace");
    let mut cmd = build::cargo();
    cmd.args(["test", "--workspace", "--no-fail-fast"]);
    if !a.cargo_args.is_empty() {
        cmd.arg("--").args(&a.cargo_args);
    }
    let (ok, report) = match run_tallied(&mut cmd) {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    let tally = report.tally;
    steps.push(("cargo test --workspace".into(), ok, t.elapsed()));

    let t = Instant::now();
    let guest = format!("cargo build --target {GUEST_TARGET} -p monitor -p drivers");
    println!("== {guest}");
    let ok_guest = build::cargo()
        .args([
            "build",
            "--target",
            GUEST_TARGET,
            "-p",
            "monitor",
            "-p",
            "drivers",
        ])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    steps.push((guest, ok_guest, t.elapsed()));

    println!();
    println!("== summary");
    for (name, ok, d) in &steps {
        println!(
            "  {:<4} {name} ({:.1} s)",
            if *ok { "ok" } else { "FAIL" },
            d.as_secs_f64()
        );
    }
    for f in &report.failed {
        println!("  failed test: {f}");
    }
    for f in &report.ignored {
        println!("  skipped test: {f}");
    }
    println!(
        "  {} test suites, {} skipped, total {:.1} s",
        tally.suites,
        tally.ignored,
        t0.elapsed().as_secs_f64()
    );
    let why = verdict(steps.iter().all(|s| s.1), &tally, strict_ci());
    for w in &why {
        println!("  FAIL: {w}");
    }
    println!(
        "{} passed, {} failed, {} skipped",
        tally.passed, tally.failed, tally.ignored
    );
    if why.is_empty() {
        0
    } else {
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tally_sums_libtest_result_lines() {
        let mut t = Tally::default();
        t.add_line("test result: ok. 19 passed; 0 failed; 2 ignored; 0 measured; 0 filtered out; finished in 0.01s");
        t.add_line("test result: FAILED. 4 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in 2.01s");
        t.add_line("test foo ... ok");
        t.add_line("running 5 tests");
        assert_eq!(
            t,
            Tally {
                passed: 23,
                failed: 1,
                ignored: 2,
                suites: 2
            }
        );
    }

    #[test]
    fn report_names_failed_and_skipped_tests() {
        let mut r = Report::default();
        for l in [
            "running 4 tests",
            "test a::ok_one ... ok",
            "test b::broken ... FAILED",
            "test c::slow ... ignored",
            "test d::why ... ignored, needs hardware",
            "test result: FAILED. 1 passed; 1 failed; 2 ignored; 0 measured; 0 filtered out; finished in 0.01s",
        ] {
            r.add_line(l);
        }
        assert_eq!(r.failed, vec!["b::broken"]);
        assert_eq!(r.ignored, vec!["c::slow", "d::why"]);
        assert_eq!((r.tally.passed, r.tally.failed, r.tally.ignored), (1, 1, 2));
    }

    #[test]
    fn a_skipped_test_fails_only_under_ci_and_nothing_run_always_fails() {
        let t = |passed, failed, ignored, suites| Tally {
            passed,
            failed,
            ignored,
            suites,
        };
        assert!(verdict(true, &t(10, 0, 0, 2), true).is_empty());
        assert!(verdict(true, &t(10, 0, 1, 2), false).is_empty());
        let why = verdict(true, &t(10, 0, 1, 2), true);
        assert!(why.len() == 1 && why[0].contains("CI=true"), "{why:?}");
        assert_eq!(verdict(true, &t(10, 1, 0, 2), false).len(), 1);
        assert_eq!(verdict(false, &t(10, 0, 0, 2), false).len(), 1);
        assert_eq!(verdict(true, &t(0, 0, 0, 0), false), vec!["no test ran"]);
    }

    #[derive(clap::Parser)]
    struct Wrap {
        #[command(subcommand)]
        c: Sub,
    }

    #[derive(clap::Subcommand)]
    enum Sub {
        Run(RunArgs),
        Build(BuildArgs),
        Test(TestArgs),
    }

    fn parse(args: &[&str]) -> Sub {
        use clap::Parser;
        Wrap::try_parse_from(std::iter::once("ferrule").chain(args.iter().copied()))
            .unwrap_or_else(|e| panic!("{args:?}: {e}"))
            .c
    }

    #[test]
    fn ipfix_to_needs_the_management_nic() {
        assert!(RunArgs::from_args(["--ipfix-to", "4739"]).is_err());
        let r = RunArgs::from_args(["--mgmt-forward", "9100", "--ipfix-to", "4739"]).unwrap();
        assert_eq!((r.mgmt_forward, r.ipfix_to), (Some(9100), Some(4739)));
        assert!(RunArgs::from_args(["--mgmt-forward", "70000"]).is_err());
    }

    #[test]
    fn run_arguments_parse_with_defaults() {
        let Sub::Run(r) = parse(&["run"]) else {
            panic!()
        };
        assert_eq!((r.cores, r.memory, r.timeout), (2, 256, 120));
        assert_eq!((r.machine, r.firmware), (Machine::Q35, Firmware::Direct));
        assert!(r.nics.is_empty() && !r.kvm && r.app.is_none());
        let Sub::Run(r) = parse(&[
            "run",
            "--app",
            "apps/x",
            "--cores",
            "4",
            "--machine",
            "pc",
            "--firmware",
            "ovmf",
            "--nic",
            "igb",
            "--nic",
            "e1000e",
            "--pcap",
            "in.pcap",
            "--kvm",
            "--timeout",
            "0",
        ]) else {
            panic!()
        };
        assert_eq!(app_of(&r.app), App::Path("apps/x".into()));
        assert_eq!(
            (r.cores, r.machine, r.firmware),
            (4, Machine::Pc, Firmware::Ovmf)
        );
        assert_eq!(r.nics, vec![NicModel::Igb, NicModel::E1000e]);
        assert_eq!(
            r.pcaps,
            vec![NicFile {
                nic: 0,
                path: "in.pcap".into()
            }]
        );
        assert!(r.captures.is_empty());
        assert!(r.kvm && r.timeout == 0);
        assert!(Wrap::try_parse_from_checked(&["ferrule", "run", "--machine", "isapc"]).is_err());
        assert!(Wrap::try_parse_from_checked(&["ferrule", "run", "--nic", "rtl8139"]).is_err());
    }

    fn nf(nic: usize, path: &str) -> NicFile {
        NicFile {
            nic,
            path: path.into(),
        }
    }

    #[test]
    fn pcap_and_capture_take_an_optional_nic_index_and_repeat() {
        let r = RunArgs::from_args([
            "--pcap",
            "a.pcap",
            "--pcap",
            "1:/tmp/b.pcapng",
            "--capture",
            "1:out1.pcap",
            "--pcap",
            "0:c:d.pcap",
            "--capture",
            "out0.pcap",
            "--pcap",
            "./2:x.pcap",
        ])
        .unwrap();
        assert_eq!(
            r.pcaps,
            vec![
                nf(0, "a.pcap"),
                nf(1, "/tmp/b.pcapng"),
                nf(0, "c:d.pcap"),
                nf(0, "./2:x.pcap")
            ]
        );
        assert_eq!(r.captures, vec![nf(1, "out1.pcap"), nf(0, "out0.pcap")]);
        assert_eq!("12:f".parse::<NicFile>(), Ok(nf(12, "f")));
        assert_eq!("x:f".parse::<NicFile>(), Ok(nf(0, "x:f")));
        assert_eq!(
            "3:".parse::<NicFile>(),
            Err("`3:` names no file (expected [N:]FILE)".to_string())
        );
        assert!("99999999999999999999999:f"
            .parse::<NicFile>()
            .unwrap_err()
            .contains("too large"));
        assert!(RunArgs::from_args(["--pcap", ""]).is_err());
        assert!(RunArgs::from_args(["--capture", "1:"]).is_err());
    }

    #[test]
    fn nics_follow_the_files_or_must_cover_them() {
        use NicModel::*;
        assert_eq!(nics_for_run(&[], &[], &[]), Ok(vec![]));
        assert_eq!(nics_for_run(&[], &[nf(0, "a")], &[]), Ok(vec![Igb]));
        assert_eq!(
            nics_for_run(&[], &[nf(0, "a")], &[nf(2, "c")]),
            Ok(vec![Igb, Igb, Igb])
        );
        assert_eq!(
            nics_for_run(&[VirtioNet, VirtioNet], &[nf(1, "a")], &[nf(0, "c")]),
            Ok(vec![VirtioNet, VirtioNet])
        );
        assert_eq!(
            nics_for_run(&[Igb], &[nf(0, "a")], &[nf(1, "out.pcap")]),
            Err("--capture 1:out.pcap names NIC 1 but the run has 1 NIC(s) (NICs count from 0 in --nic order)".to_string())
        );
        assert!(nics_for_run(&[Igb, Igb], &[nf(2, "a")], &[])
            .unwrap_err()
            .starts_with("--pcap 2:a names NIC 2"));
        assert_eq!(nics_for_run(&[E1000e], &[], &[]), Ok(vec![E1000e]));
    }

    #[test]
    fn traffic_waits_for_the_line_that_says_the_app_polls() {
        assert_eq!(ready_line(&App::Package("sysinfo".into())), "cores online:");
        assert_eq!(
            ready_line(&App::Package(DEFAULT_APPLIANCE.into())),
            "appliance: ready"
        );
        assert_eq!(
            ready_line(&App::Path("/no/such/app".into())),
            "cores online:"
        );
        let r = RunArgs::from_args(["--inject-after", "go"]).unwrap();
        assert_eq!(r.inject_after.as_deref(), Some("go"));
        assert_eq!(
            RunArgs::from_args(["--cores", "1"]).unwrap().inject_after,
            None
        );
    }

    #[test]
    fn build_and_test_arguments_parse() {
        let Sub::Build(b) = parse(&["build", "--app", "sysinfo", "--out", "/tmp/o"]) else {
            panic!()
        };
        assert_eq!(app_of(&b.app), App::Package("sysinfo".into()));
        assert_eq!(b.out.as_deref(), Some(Path::new("/tmp/o")));
        let Sub::Test(t) = parse(&["test", "--skip-setup", "--", "boot", "--nocapture"]) else {
            panic!()
        };
        assert!(t.skip_setup);
        assert_eq!(t.cargo_args, vec!["boot", "--nocapture"]);
    }

    impl Wrap {
        fn try_parse_from_checked(a: &[&str]) -> Result<Wrap, clap::Error> {
            use clap::Parser;
            Wrap::try_parse_from(a)
        }
    }

    /// The quoted strings of the `key = [ ... ]` array in `toml`.
    fn toml_list(toml: &str, key: &str) -> Vec<String> {
        let start = toml
            .find(&format!("\n{key} = ["))
            .unwrap_or_else(|| panic!("no {key}"));
        let body = &toml[start..];
        let body = &body[body.find('[').unwrap() + 1..body.find(']').unwrap()];
        body.lines()
            .map(|l| l.split('#').next().unwrap().trim().trim_end_matches(','))
            .filter(|l| !l.is_empty())
            .map(|l| l.trim_matches('"').to_string())
            .collect()
    }

    /// Plain `cargo test` is the host tier: every workspace member but the QEMU crate
    /// `tests`. A member missing from `default-members` would only be tested by
    /// `cargo ferrule test`; `tests` in it would make the host tier boot QEMU.
    #[test]
    fn default_members_are_all_but_tests() {
        let toml = std::fs::read_to_string(build::workspace_root().join("Cargo.toml")).unwrap();
        let members = toml_list(&toml, "members");
        let defaults = toml_list(&toml, "default-members");
        assert!(members.contains(&"tests".to_string()), "{members:?}");
        let want: Vec<String> = members.into_iter().filter(|m| m != "tests").collect();
        assert_eq!(
            defaults, want,
            "default-members must be members minus tests"
        );
    }

    #[test]
    fn this_checkout_serves_builds() {
        assert_eq!(checkout_problem(), None);
    }

    #[test]
    fn sizes_are_human() {
        assert_eq!(human(2048), "2.0 KiB");
        assert_eq!(human(3 << 20), "3.0 MiB");
    }
}
