//! `cargo ferrule`: build, run and test Ferrule appliances.
//!
//! The binary is `cargo-ferrule`, so that `cargo install --locked --path image` makes
//! `cargo ferrule ...` work in any directory (cargo runs an external subcommand as
//! `cargo-ferrule ferrule ARGS`). Inside the checkout, the alias in `.cargo/config.toml` runs
//! the checkout's own code the same way (`-- ferrule ARGS`). Either way the first argument
//! `ferrule` is skipped; `cargo-ferrule ARGS` works too.
//!
//! Every subcommand is one variant of `Command` below, carrying its `clap::Args` struct and
//! calling one `run_*` function that returns the exit code. Adding a subcommand is one variant
//! and one match arm.
use clap::{Parser, Subcommand};
use image::cli;

#[derive(Parser)]
#[command(
    name = "cargo ferrule",
    bin_name = "cargo ferrule",
    about = "Build, run and test Ferrule appliances",
    after_help = "First time on a machine: `cargo ferrule run` boots the default appliance in QEMU;\n`cargo ferrule test` installs what is missing and runs every test."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build an app into an ELF and a flashable BIOS + UEFI disk image.
    Build(cli::BuildArgs),
    /// Build an app and boot it in QEMU with its console on stdout.
    Run(cli::RunArgs),
    /// Install what is missing (as root on Debian), then run every test.
    Test(cli::TestArgs),
    /// Write a synthetic capture with exact per-direction ground truth.
    Gen(image::host::cli::GenArgs),
    /// Print one JSON line per TCP connection of a capture (pcap or pcapng), then a summary.
    Flows(image::host::cli::FlowsArgs),
    /// Benchmark the monitor against the parse floor, libnids and Suricata on generated captures.
    Bench(image::host::bench::BenchArgs),
    /// Run an app (on the appliance crate) or a sample middlebox over a capture on the host.
    Replay(image::host::replay::ReplayArgs),
    /// Write a new middlebox app crate (on the appliance crate) into a directory, anywhere.
    New(image::new::NewArgs),
    /// Install nightly and cargo-fuzz if missing, then run the fuzz targets of monitor/fuzz.
    Fuzz(image::fuzz::FuzzArgs),
}

/// The arguments without the subcommand name cargo passes first (`cargo-ferrule ferrule ...`).
fn arguments() -> Vec<std::ffi::OsString> {
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == "ferrule") {
        args.remove(1);
    }
    args
}

fn main() {
    let command = Cli::parse_from(arguments()).command;
    let needs_checkout = !matches!(
        command,
        Command::Gen(_) | Command::Flows(_) | Command::Bench(_)
    );
    if let Some(problem) = needs_checkout.then(cli::checkout_problem).flatten() {
        eprintln!("error: {problem}");
        std::process::exit(1);
    }
    let code = match command {
        Command::Build(a) => cli::run_build(&a),
        Command::Run(a) => cli::run_run(&a),
        Command::Test(a) => cli::run_test(&a),
        Command::Gen(a) => image::host::cli::run_gen(&a),
        Command::Flows(a) => image::host::cli::run_flows(&a),
        Command::Bench(a) => image::host::bench::run_bench(&a),
        Command::Replay(a) => image::host::replay::run_replay(&a),
        Command::New(a) => image::new::run_new(&a),
        Command::Fuzz(a) => image::fuzz::run_fuzz(&a),
    };
    std::process::exit(code);
}
