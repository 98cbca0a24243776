//! `cargo ferrule`: build, run and test Ferrule appliances.

fn main() {
    eprintln!("cargo ferrule: not built yet");
    std::process::exit(2);
}
