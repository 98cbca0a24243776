//! A middlebox written outside the repository, as a user would: the tool is installed with
//! `cargo install --path image` (into a temporary root put first on PATH), then, in a
//! temporary directory outside the checkout, `cargo ferrule new`, the new crate's own host
//! test (`cargo test`), `cargo ferrule gen` and `replay`, `build`, and `run` in QEMU with the
//! generated capture injected. The app's per-connection lines, from the host runner and from
//! the image's console, must equal the generator's ground truth exactly.

use std::path::Path;
use std::process::{Command, Output};

use image::build::{guest_target_dir, is_leaky_var, workspace_root};
use image::host::gen::truth_path;
use image::host::json::parse_lines;
use tests::Slot;

/// A command with the outer cargo's variables removed (as the tool does for its own builds),
/// `bin` first on PATH, run in `dir`.
fn command(program: &str, bin: &Path, dir: &Path) -> Command {
    let mut c = Command::new(program);
    for (k, _) in std::env::vars_os() {
        if k.to_str().is_some_and(is_leaky_var) {
            c.env_remove(&k);
        }
    }
    let mut path = vec![bin.to_path_buf()];
    path.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    c.env("PATH", std::env::join_paths(path).unwrap())
        .current_dir(dir);
    c
}

fn run_ok(c: &mut Command, what: &str) -> Output {
    let out = c.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The sorted `conn ...` lines of some output.
fn conn_lines(text: &str) -> Vec<String> {
    let mut v: Vec<String> = text
        .lines()
        .filter(|l| l.starts_with("conn "))
        .map(String::from)
        .collect();
    v.sort_unstable();
    v
}

#[test]
fn an_app_made_by_cargo_ferrule_new_outside_the_repository() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = workspace_root();
    let outside = std::fs::canonicalize(tmp.path()).unwrap();
    assert!(
        !outside.starts_with(std::fs::canonicalize(&ws).unwrap()),
        "{} must be outside the checkout",
        outside.display()
    );

    // Install the tool as a cargo subcommand (cached build in target/ferrule/install).
    let root = outside.join("cargo-root");
    let bin = root.join("bin");
    run_ok(
        command("cargo", &bin, &ws)
            .args(["install", "--locked", "--quiet", "--path"])
            .arg(ws.join("image"))
            .arg("--root")
            .arg(&root)
            .arg("--target-dir")
            .arg(guest_target_dir().join("install")),
        "cargo install --path image",
    );
    assert!(bin.join("cargo-ferrule").is_file());

    // cargo ferrule new, in a directory outside the repository (with the checkout's
    // toolchain: the machine may have no default one; the new crate pins its own).
    let toolchain = std::fs::read_to_string(ws.join("rust-toolchain.toml")).unwrap();
    let channel = toolchain
        .lines()
        .find_map(|l| l.strip_prefix("channel = "))
        .map(|c| c.trim_matches('"').to_string())
        .expect("rust-toolchain.toml names a channel");
    let out = run_ok(
        command("cargo", &bin, &outside)
            .env("RUSTUP_TOOLCHAIN", &channel)
            .args(["ferrule", "new", "oot-box"]),
        "cargo ferrule new oot-box",
    );
    let app = outside.join("oot-box");
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("needs the tool installed"),
        "the installed tool knows it is installed"
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with(
            "created app `oot-box` in oot-box:
  oot-box/Cargo.toml
"
        ),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // Its own host test: a generated capture, exact byte counts. (Built in a target dir
    // kept between runs, only to save CI time; the tool's own builds below use the crate's.)
    let out = run_ok(
        command("cargo", &bin, &app)
            .args(["test", "--quiet", "--target-dir"])
            .arg(guest_target_dir().join("oot-test")),
        "cargo test in the new crate",
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("test result: ok. 1 passed; 0 failed"),
        "{stdout}"
    );

    // A capture with its ground truth, replayed on the host by the app's runner.
    run_ok(
        command("cargo", &bin, &app).args([
            "ferrule",
            "gen",
            "-o",
            "t.pcap",
            "--flows",
            "24",
            "--concurrent",
            "6",
            "--ipv6",
            "30",
            "--reorder",
            "5",
            "--seed",
            "11",
        ]),
        "cargo ferrule gen",
    );
    let truth = std::fs::read_to_string(truth_path(&app.join("t.pcap"))).unwrap();
    let (truth, _) = parse_lines(&truth).unwrap();
    assert_eq!(truth.len(), 24);
    let mut want: Vec<String> = truth
        .iter()
        .map(|t| {
            format!(
                "conn {} {} c2s {} s2c {}",
                t.client, t.server, t.c2s.bytes, t.s2c.bytes
            )
        })
        .collect();
    want.sort_unstable();
    let out = run_ok(
        command("cargo", &bin, &app).args(["ferrule", "replay", "t.pcap"]),
        "cargo ferrule replay t.pcap",
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(conn_lines(&stdout), want, "replay output:\n{stdout}");
    assert_eq!(
        stdout.lines().last(),
        Some("oot-box: core 0: 24 connections")
    );

    // Inline on the host: the app takes no action, so every frame comes out unchanged.
    run_ok(
        command("cargo", &bin, &app).args([
            "ferrule", "replay", "t.pcap", "--inline", "--out", "fwd.pcap",
        ]),
        "cargo ferrule replay --inline",
    );
    let frames = |f: &str| -> Vec<Vec<u8>> {
        qemu::read_frames(&app.join(f))
            .unwrap()
            .into_iter()
            .map(|f| f.data)
            .collect()
    };
    let sent = frames("t.pcap");
    assert!(frames("fwd.pcap") == sent, "inline replay changed frames");

    // The image: ELF and disk image.
    let out = run_ok(
        command("cargo", &bin, &app).args(["ferrule", "build"]),
        "cargo ferrule build",
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let elf = guest_target_dir().join("x86_64-unknown-none/release/oot-box");
    let img = guest_target_dir().join("images/oot-box.img");
    assert!(
        stdout.starts_with(&format!(
            "app:        {}\nELF:        {} (",
            app.display(),
            elf.display()
        )),
        "{stdout}"
    );
    assert!(stdout.contains(&format!("disk image: {} (", img.display())));
    assert!(elf.is_file() && img.is_file());

    // Booted in QEMU with the capture injected: the same lines on the console, each
    // connection once, and every frame received.
    let out = {
        let _slot = Slot::acquire();
        run_ok(
            command("cargo", &bin, &app).args([
                "ferrule",
                "run",
                "--pcap",
                "t.pcap",
                "--skip-setup",
                "--timeout",
                "300",
            ]),
            "cargo ferrule run --pcap t.pcap",
        )
    };
    let console = String::from_utf8(out.stdout).unwrap();
    assert_eq!(conn_lines(&console), want, "console:\n{console}");
    let per_core: u64 = console
        .lines()
        .filter_map(|l| l.strip_prefix("oot-box: core "))
        .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .sum();
    assert_eq!(per_core, 24, "console:\n{console}");
    let frames: u64 = console
        .lines()
        .filter(|l| l.starts_with("appliance: core ") && l.contains(" frames "))
        .filter_map(|l| l.split_whitespace().nth(4)?.parse::<u64>().ok())
        .sum();
    assert_eq!(
        frames,
        sent.len() as u64,
        "frames received by all cores; console:\n{console}"
    );
}
