//! Embeds the rule file at build time: `FERRULE_RULES` (a path; `cargo ferrule build|run|replay
//! --rules FILE` sets it), else `default.rules`. The file is parsed here, with the crate's own
//! parser, so a bad rule fails the build with its line; the app gets the rules as statics
//! (`$OUT_DIR/rules.rs`: `RULES`, `COUNTS`, `RULES_FILE`).

use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::PathBuf;

#[allow(dead_code)]
#[path = "src/rules.rs"]
mod rules;

fn ip(a: IpAddr) -> String {
    match a {
        IpAddr::V4(a) => format!("IpAddr::V4(Ipv4Addr::from_bits({:#x}))", a.to_bits()),
        IpAddr::V6(a) => format!("IpAddr::V6(Ipv6Addr::from_bits({:#x}))", a.to_bits()),
    }
}

fn net(n: rules::Net) -> String {
    format!("Net {{ addr: {}, len: {} }}", ip(n.addr), n.len)
}

fn main() {
    println!("cargo:rerun-if-env-changed=FERRULE_RULES");
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let file = match std::env::var("FERRULE_RULES") {
        Ok(p) if !p.is_empty() => manifest.join(p),
        _ => manifest.join("default.rules"),
    };
    println!("cargo:rerun-if-changed={}", file.display());
    let text = std::fs::read_to_string(&file)
        .unwrap_or_else(|e| panic!("simple_firewall rules {}: {e}", file.display()));
    let mut code = String::new();
    let mut n = 0;
    for (i, line) in text.lines().enumerate() {
        let rule = match rules::parse_line(line, i + 1) {
            Ok(Some(r)) => r,
            Ok(None) => continue,
            Err(e) => panic!("simple_firewall rules {}: {e}", file.display()),
        };
        n += 1;
        if n > rules::MAX_RULES {
            panic!(
                "simple_firewall rules {}: {}",
                file.display(),
                rules::RuleError::TooMany(i + 1)
            );
        }
        let action = match rule.action {
            rules::Action::Accept => "Accept",
            rules::Action::Drop => "Drop",
        };
        let _ = writeln!(
            code,
            "    Rule {{ action: Action::{action}, src: {}, dst: {}, sport: {}, dport: {} }},",
            net(rule.src),
            net(rule.dst),
            rule.sport,
            rule.dport
        );
    }
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets it")).join("rules.rs");
    let src = format!(
        "/// The rule file built in.\npub const RULES_FILE: &str = {file:?};\n\
         /// Its rules, parsed at build time.\npub static RULES: [Rule; {n}] = [\n{code}];\n\
         /// One SYN count per rule, shared by the cores.\n\
         pub static COUNTS: [AtomicU64; {n}] = [const {{ AtomicU64::new(0) }}; {n}];\n",
        file = file.display().to_string()
    );
    std::fs::write(&out, src).unwrap_or_else(|e| panic!("{}: {e}", out.display()));
}
