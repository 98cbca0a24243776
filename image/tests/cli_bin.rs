//! The installed binary's contract: cargo runs an external subcommand as
//! `cargo-ferrule ferrule ARGS` (and the in-repo alias does the same), so `ferrule` is
//! skipped; `cargo-ferrule ARGS` works too. Errors are clear and exit 1.

use std::process::Command;

fn tool() -> Command {
    Command::new(env!("CARGO_BIN_EXE_cargo-ferrule"))
}

#[test]
fn the_subcommand_name_cargo_passes_is_skipped() {
    let tmp = tempfile::tempdir().unwrap();
    for (args, dir) in [
        (vec!["ferrule", "new"], "via-cargo"),
        (vec!["new"], "direct"),
    ] {
        let out = tool()
            .args(&args)
            .arg(tmp.path().join(dir))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8(out.stdout).unwrap();
        assert!(
            stdout.starts_with(&format!(
                "created app `{dir}` in {}:\n",
                tmp.path().join(dir).display()
            )),
            "{stdout}"
        );
        assert!(tmp.path().join(dir).join("src/main.rs").is_file());
        // Run from the checkout's target/, not installed: it says how to install.
        assert!(
            stdout.contains("`cargo ferrule` outside the checkout needs the tool installed: cargo install --locked --path "),
            "{stdout}"
        );
    }
    let help = tool().args(["ferrule", "--help"]).output().unwrap();
    assert!(help.status.success());
    let help = String::from_utf8(help.stdout).unwrap();
    assert!(help.contains("Usage: cargo ferrule <COMMAND>"), "{help}");
    assert!(help.contains("\n  new "), "{help}");
}

#[test]
fn replay_of_an_unknown_app_fails_clearly() {
    let tmp = tempfile::tempdir().unwrap();
    let pcap = tmp.path().join("x.pcap");
    std::fs::write(&pcap, b"").unwrap();
    let out = tool()
        .args(["ferrule", "replay", "--app", "no-such-app"])
        .arg(&pcap)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.starts_with("ferrule replay: no package `no-such-app` in the Ferrule workspace at "),
        "{err}"
    );
    let out = tool()
        .current_dir(tmp.path())
        .args(["ferrule", "replay"])
        .arg(&pcap)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("is not inside an app crate"), "{err}");
}
