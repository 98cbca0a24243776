//! `ferrule-host`: the host tools while `cargo ferrule` gains their subcommands.
use clap::Parser;
use image::host::cli;

#[derive(Parser)]
#[command(name = "ferrule-host", about = "Ferrule host tools over captures")]
enum Command {
    /// Write a synthetic capture with exact per-direction ground truth.
    Gen(cli::GenArgs),
}

fn main() {
    let code = match Command::parse() {
        Command::Gen(a) => cli::run_gen(&a),
    };
    std::process::exit(code);
}
