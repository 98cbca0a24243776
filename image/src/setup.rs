//! Installing what `cargo ferrule run/test/bench` need on a fresh machine: the Rust guest
//! target and components (rustup); QEMU, GRUB and OVMF to build and boot images; and the
//! benchmark peers (a C compiler, libnids and libpcap headers, Suricata 7, GNU time) that
//! `bench` and the full test tier run. Apt installs run as root on Debian, always with
//! `--no-install-recommends`; elsewhere it says exactly what to install and stops.

use std::path::Path;
use std::process::Command;

use crate::build::{workspace_root, GUEST_TARGET};
use crate::Error;

/// What a package is for: [`ensure_all`] (build, run) needs [`Need::Run`]; `bench` needs
/// [`Need::Peers`]; `cargo ferrule test` needs all three.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// Building disk images and booting them in QEMU.
    Run,
    /// The external benchmark peers (libnids via `bench/nidsbench.c`, Suricata).
    Peers,
    /// The management plane's test peers: a Prometheus server and `promtool`, nfdump's
    /// collector, tshark's IPFIX dissector.
    Collectors,
}

/// One Debian package the tools need.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AptPackage {
    /// Debian package name.
    pub name: &'static str,
    /// On bookworm, install from bookworm-backports (bookworm's QEMU 7.2 has no igb and its
    /// Suricata is 6).
    pub from_backports: bool,
    /// What needs it.
    pub need: Need,
}

const fn pkg(name: &'static str, from_backports: bool, need: Need) -> AptPackage {
    AptPackage {
        name,
        from_backports,
        need,
    }
}

/// Every Debian package the tools need. Add new ones here.
///
/// QEMU comes without its recommends (GUI, audio, video, SPICE, OpenGL, block drivers: ~170
/// packages); its hard dependencies already carry what our machines boot from:
/// `qemu-system-data` (`pvh.bin` for direct `-kernel` boots, `kvmvapic.bin`, the multiboot and
/// linuxboot option ROMs), `seabios` (`/usr/share/seabios/bios-256k.bin`, the VGA BIOS) and
/// `ipxe-qemu` (`/usr/lib/ipxe/qemu/efi-{e1000e,virtio}.rom`, the NIC option ROMs). `ovmf` is
/// only a recommend, so it is listed here. Checked by running the boot, disk-image and NIC
/// tests in a minimal bookworm chroot that had nothing else.
pub const APT_PACKAGES: &[AptPackage] = &[
    pkg("qemu-system-x86", true, Need::Run),
    pkg("grub-pc-bin", false, Need::Run),
    pkg("grub-efi-amd64-bin", false, Need::Run),
    pkg("grub-common", false, Need::Run),
    pkg("xorriso", false, Need::Run),
    pkg("mtools", false, Need::Run),
    // grub-mkrescue --compress=xz runs `xz`; a minimal Debian has no xz-utils.
    pkg("xz-utils", false, Need::Run),
    pkg("ovmf", false, Need::Run),
    pkg("gcc", false, Need::Peers),
    pkg("libnids-dev", false, Need::Peers),
    pkg("libpcap-dev", false, Need::Peers),
    pkg("suricata", true, Need::Peers),
    pkg("time", false, Need::Peers),
    pkg("prometheus", false, Need::Collectors),
    pkg("nfdump", false, Need::Collectors),
    pkg("tshark", false, Need::Collectors),
];

/// The packages of [`APT_PACKAGES`] for any of `needs`.
pub fn packages_for(needs: &[Need]) -> Vec<AptPackage> {
    APT_PACKAGES
        .iter()
        .filter(|p| needs.contains(&p.need))
        .copied()
        .collect()
}

/// The Debian release that needs backports for QEMU.
pub const BACKPORTS_RELEASE: &str = "bookworm";
/// The apt source file this tool writes when backports are not configured yet.
pub const BACKPORTS_SOURCE_FILE: &str = "/etc/apt/sources.list.d/ferrule-backports.sources";

/// What the machine is, for deciding how to install.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Host {
    /// `ID` from /etc/os-release is `debian`.
    pub debian: bool,
    /// `VERSION_CODENAME` (e.g. `bookworm`).
    pub codename: String,
    /// Running as root.
    pub root: bool,
}

impl Host {
    /// Reads /etc/os-release and the user id.
    pub fn detect() -> Host {
        let os = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
        let field = |k: &str| {
            os.lines()
                .find_map(|l| l.strip_prefix(&format!("{k}=")))
                .map(|v| v.trim_matches('"').to_string())
                .unwrap_or_default()
        };
        let uid = Command::new("id")
            .arg("-u")
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
        Host {
            debian: field("ID") == "debian",
            codename: field("VERSION_CODENAME"),
            root: uid.as_deref() == Some("0"),
        }
    }

    /// Whether backports are needed for the packages flagged `from_backports`.
    pub fn needs_backports(&self) -> bool {
        self.debian && self.codename == BACKPORTS_RELEASE
    }
}

/// Whether a Debian package is installed (`dpkg-query`).
fn dpkg_installed(name: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", name])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        .unwrap_or(false)
}

/// Whether the installed QEMU emulates igb (QEMU >= 8.0).
pub fn qemu_has_igb() -> bool {
    Command::new(qemu::QEMU_BINARY)
        .args(["-device", "help"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("name \"igb\""))
        .unwrap_or(false)
}

/// The major version of the installed Suricata (`suricata -V`: "This is Suricata version
/// 7.0.10 RELEASE").
pub fn suricata_major() -> Option<u32> {
    let o = Command::new("suricata").arg("-V").output().ok()?;
    let text = String::from_utf8_lossy(&o.stdout);
    let v = text.split("version").nth(1)?.split_whitespace().next()?;
    v.split('.').next()?.parse().ok()
}

/// Whether `pkg` is present and good enough. On a non-Debian host the check looks for the
/// programs and files the package would provide.
fn present(pkg: &AptPackage, host: &Host) -> bool {
    let installed = if host.debian {
        dpkg_installed(pkg.name)
    } else {
        match pkg.name {
            "qemu-system-x86" => which(qemu::QEMU_BINARY),
            "grub-pc-bin" => Path::new("/usr/lib/grub/i386-pc").is_dir(),
            "grub-efi-amd64-bin" => Path::new("/usr/lib/grub/x86_64-efi").is_dir(),
            "grub-common" => which("grub-mkrescue"),
            "xorriso" => which("xorriso"),
            "mtools" => which("mformat"),
            "xz-utils" => which("xz"),
            "ovmf" => Path::new(qemu::OVMF_CODE).is_file(),
            "gcc" => which("gcc"),
            "libnids-dev" => Path::new("/usr/include/nids.h").is_file(),
            "libpcap-dev" => Path::new("/usr/include/pcap.h").is_file(),
            "suricata" => which("suricata"),
            "time" => Path::new("/usr/bin/time").is_file(),
            _ => false,
        }
    };
    match pkg.name {
        "qemu-system-x86" => installed && qemu_has_igb(),
        "suricata" => installed && suricata_major().is_some_and(|v| v >= 7),
        _ => installed,
    }
}

fn which(prog: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(prog).is_file()))
        .unwrap_or(false)
}

/// Set to `1` to treat every package as missing, so the whole install path (backports source,
/// `apt-get update`, `apt-get install`) runs on a machine that already has everything.
pub const REINSTALL_ENV: &str = "FERRULE_SETUP_REINSTALL";

/// The packages for `needs` that are missing here.
pub fn missing_packages(host: &Host, needs: &[Need]) -> Vec<AptPackage> {
    let all = packages_for(needs);
    if std::env::var(REINSTALL_ENV).as_deref() == Ok("1") {
        return all;
    }
    all.into_iter().filter(|p| !present(p, host)).collect()
}

/// The first Debian archive URI configured for `codename`, from deb822 `.sources` text
/// (`URIs:` of a stanza whose `Suites:` lists the codename) or one-line `sources.list` text.
/// Returns the URI and the stanza's `Signed-By:` value, if any.
pub fn debian_uri(
    deb822: &[String],
    one_line: &[String],
    codename: &str,
) -> Option<(String, Option<String>)> {
    for text in deb822 {
        for stanza in text.split("\n\n") {
            let mut uris = None;
            let mut suites = Vec::new();
            let mut signed = None;
            let mut types_deb = true;
            let mut enabled = true;
            for line in stanza.lines() {
                let line = line.trim();
                if line.starts_with('#') {
                    continue;
                }
                if let Some((k, v)) = line.split_once(':') {
                    let v = v.trim();
                    match k.trim().to_ascii_lowercase().as_str() {
                        "uris" => uris = v.split_whitespace().next().map(String::from),
                        "suites" => suites = v.split_whitespace().map(String::from).collect(),
                        "signed-by" => signed = Some(v.to_string()),
                        "types" => types_deb = v.split_whitespace().any(|t| t == "deb"),
                        "enabled" => enabled = v != "no",
                        _ => {}
                    }
                }
            }
            if let Some(u) = uris {
                if enabled && types_deb && suites.iter().any(|s| s == codename) {
                    return Some((u, signed));
                }
            }
        }
    }
    for text in one_line {
        for line in text.lines() {
            let mut words = line.split_whitespace();
            if words.next() != Some("deb") {
                continue;
            }
            let mut rest: Vec<&str> = words.collect();
            let mut signed = None;
            if rest.first().is_some_and(|w| w.starts_with('[')) {
                let mut opts = Vec::new();
                while !rest.is_empty() {
                    let w = rest.remove(0);
                    opts.push(w);
                    if w.ends_with(']') {
                        break;
                    }
                }
                signed = opts
                    .iter()
                    .find_map(|o| o.trim_matches(['[', ']']).strip_prefix("signed-by="))
                    .map(String::from);
            }
            if rest.len() >= 2 && rest[1] == codename {
                return Some((rest[0].to_string(), signed));
            }
        }
    }
    None
}

/// Whether any apt source already lists `suite`.
pub fn suite_configured(deb822: &[String], one_line: &[String], suite: &str) -> bool {
    let in_822 = deb822.iter().any(|t| {
        t.lines().any(|l| {
            let l = l.trim();
            !l.starts_with('#')
                && l.to_ascii_lowercase().starts_with("suites:")
                && l.split_whitespace().skip(1).any(|s| s == suite)
        })
    });
    let in_list = one_line.iter().any(|t| {
        t.lines().any(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            w.first() == Some(&"deb") && w.contains(&suite)
        })
    });
    in_822 || in_list
}

/// The deb822 stanza for backports on the same archive as the configured Debian source.
pub fn backports_stanza(uri: &str, signed_by: Option<&str>, codename: &str) -> String {
    let mut s =
        format!("Types: deb\nURIs: {uri}\nSuites: {codename}-backports\nComponents: main\n");
    if let Some(k) = signed_by {
        s.push_str(&format!("Signed-By: {k}\n"));
    }
    s
}

fn read_sources() -> (Vec<String>, Vec<String>) {
    let mut deb822 = Vec::new();
    let mut one_line = Vec::new();
    if let Ok(t) = std::fs::read_to_string("/etc/apt/sources.list") {
        one_line.push(t);
    }
    if let Ok(rd) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut paths: Vec<_> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for p in paths {
            let Ok(t) = std::fs::read_to_string(&p) else {
                continue;
            };
            match p.extension().and_then(|e| e.to_str()) {
                Some("sources") => deb822.push(t),
                Some("list") => one_line.push(t),
                _ => {}
            }
        }
    }
    (deb822, one_line)
}

fn run(cmd: &mut Command, what: &str) -> Result<(), Error> {
    eprintln!("setup: {what}");
    let st = cmd.status().map_err(|e| Error::Tool(what.to_string(), e))?;
    if st.success() {
        Ok(())
    } else {
        Err(Error::Setup(format!("`{what}` failed ({st})")))
    }
}

/// `rustup target add x86_64-unknown-none` and `rustup component add clippy rustfmt`, for the
/// workspace's pinned toolchain.
pub fn ensure_rust() -> Result<(), Error> {
    let rustup = |args: &[&str]| {
        let mut c = Command::new("rustup");
        c.args(args).current_dir(workspace_root());
        c.env_remove("RUSTUP_TOOLCHAIN");
        c
    };
    run(
        &mut rustup(&["target", "add", GUEST_TARGET]),
        "rustup target add x86_64-unknown-none",
    )?;
    run(
        &mut rustup(&["component", "add", "clippy", "rustfmt"]),
        "rustup component add clippy rustfmt",
    )
}

/// The shell commands that would install `missing` on `host` (shown to non-root users).
pub fn install_instructions(host: &Host, missing: &[AptPackage]) -> String {
    let names = |bp: bool| {
        missing
            .iter()
            .filter(|p| {
                host.needs_backports() && p.from_backports == bp || !host.needs_backports() && !bp
            })
            .map(|p| p.name)
            .collect::<Vec<_>>()
    };
    let mut s = String::new();
    if !host.debian {
        s.push_str("This is not Debian; install the equivalents of these Debian packages:\n  ");
        s.push_str(&missing.iter().map(|p| p.name).collect::<Vec<_>>().join(" "));
        s.push_str("\n(QEMU must be >= 8.0 for igb, Suricata >= 7; OVMF must provide ");
        s.push_str(qemu::OVMF_CODE);
        s.push_str(")\n");
        return s;
    }
    s.push_str("Run as root:\n");
    let bp = names(true);
    if !bp.is_empty() {
        s.push_str(&format!(
            "  # add {c}-backports (same archive as your Debian source) to {BACKPORTS_SOURCE_FILE}\n",
            c = host.codename
        ));
    }
    s.push_str("  apt-get update\n");
    let plain = names(false);
    if !plain.is_empty() {
        s.push_str(&format!(
            "  apt-get install -y --no-install-recommends {}\n",
            plain.join(" ")
        ));
    }
    if !bp.is_empty() {
        s.push_str(&format!(
            "  apt-get install -y --no-install-recommends -t {}-backports {}\n",
            host.codename,
            bp.join(" ")
        ));
    }
    s
}

/// Makes sure the apt packages for `needs` are there: installs what is missing as root on
/// Debian, or fails with what to install otherwise.
pub fn ensure_packages(needs: &[Need]) -> Result<(), Error> {
    let host = Host::detect();
    let missing = missing_packages(&host, needs);
    if missing.is_empty() {
        let names: Vec<&str> = packages_for(needs).iter().map(|p| p.name).collect();
        eprintln!("setup: present: {}", names.join(" "));
        return Ok(());
    }
    let names: Vec<&str> = missing.iter().map(|p| p.name).collect();
    if !host.debian || !host.root {
        return Err(Error::Setup(format!(
            "missing: {}\n{}",
            names.join(" "),
            install_instructions(&host, &missing)
        )));
    }
    let (deb822, one_line) = read_sources();
    let backports: Vec<&str> = missing
        .iter()
        .filter(|p| p.from_backports && host.needs_backports())
        .map(|p| p.name)
        .collect();
    let plain: Vec<&str> = missing
        .iter()
        .filter(|p| !(p.from_backports && host.needs_backports()))
        .map(|p| p.name)
        .collect();
    if !backports.is_empty() {
        let suite = format!("{}-backports", host.codename);
        if !suite_configured(&deb822, &one_line, &suite) {
            let (uri, signed) =
                debian_uri(&deb822, &one_line, &host.codename).ok_or_else(|| {
                    Error::Setup(format!(
                        "no apt source for Debian {} found in /etc/apt; cannot add {suite}",
                        host.codename
                    ))
                })?;
            let stanza = backports_stanza(&uri, signed.as_deref(), &host.codename);
            eprintln!("setup: adding {suite} from {uri} to {BACKPORTS_SOURCE_FILE}");
            std::fs::write(BACKPORTS_SOURCE_FILE, stanza)
                .map_err(|e| Error::Io(BACKPORTS_SOURCE_FILE.into(), e))?;
        }
    }
    let apt = |args: &[&str]| {
        let mut c = Command::new("apt-get");
        c.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        c
    };
    run(&mut apt(&["update"]), "apt-get update")?;
    if !plain.is_empty() {
        let mut args = vec!["install", "-y", "--no-install-recommends"];
        args.extend(&plain);
        run(
            &mut apt(&args),
            &format!(
                "apt-get install -y --no-install-recommends {}",
                plain.join(" ")
            ),
        )?;
    }
    if !backports.is_empty() {
        let t = format!("{}-backports", host.codename);
        let mut args = vec!["install", "-y", "--no-install-recommends", "-t", t.as_str()];
        args.extend(&backports);
        run(
            &mut apt(&args),
            &format!(
                "apt-get install -y --no-install-recommends -t {t} {}",
                backports.join(" ")
            ),
        )?;
    }
    let still: Vec<AptPackage> = packages_for(needs)
        .into_iter()
        .filter(|p| !present(p, &host))
        .collect();
    if !still.is_empty() {
        return Err(Error::Setup(format!(
            "still missing after apt-get: {}",
            still.iter().map(|p| p.name).collect::<Vec<_>>().join(" ")
        )));
    }
    Ok(())
}

/// What `build` and `run` need: Rust target and components, then QEMU, GRUB and OVMF.
pub fn ensure_all() -> Result<(), Error> {
    ensure_rust()?;
    ensure_packages(&[Need::Run])
}

/// What every test of `cargo ferrule test` needs: [`ensure_all`] plus the benchmark peers and
/// the management plane's collectors.
pub fn ensure_for_tests() -> Result<(), Error> {
    ensure_rust()?;
    ensure_packages(&[Need::Run, Need::Peers, Need::Collectors])
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEB822: &str = "Types: deb
# http://snapshot.example/archive/debian/20250520T000000Z
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main
";

    #[test]
    fn backports_use_the_configured_debian_uri() {
        let (uri, signed) = debian_uri(&[DEB822.into()], &[], "bookworm").unwrap();
        assert_eq!(uri, "http://mirror.example/debian");
        assert_eq!(
            signed.as_deref(),
            Some("/usr/share/keyrings/debian-archive-keyring.gpg")
        );
        let s = backports_stanza(&uri, signed.as_deref(), "bookworm");
        assert_eq!(
            s,
            "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
        );
        assert!(!suite_configured(
            &[DEB822.into()],
            &[],
            "bookworm-backports"
        ));
        assert!(suite_configured(
            &[DEB822.into(), s],
            &[],
            "bookworm-backports"
        ));
    }

    #[test]
    fn one_line_sources_list_is_understood() {
        let list = "# comment\ndeb [arch=amd64 signed-by=/k.gpg] http://m.example/debian bookworm main\ndeb http://m.example/debian-security bookworm-security main\n";
        let (uri, signed) = debian_uri(&[], &[list.into()], "bookworm").unwrap();
        assert_eq!(uri, "http://m.example/debian");
        assert_eq!(signed.as_deref(), Some("/k.gpg"));
        let plain = "deb http://x.example/debian bookworm main\n";
        assert_eq!(
            debian_uri(&[], &[plain.into()], "bookworm").unwrap(),
            ("http://x.example/debian".into(), None)
        );
        assert!(suite_configured(
            &[],
            &["deb http://x/debian bookworm-backports main\n".into()],
            "bookworm-backports"
        ));
        assert!(debian_uri(&[], &[plain.into()], "trixie").is_none());
    }

    #[test]
    fn qemu_and_suricata_come_from_backports_only_on_bookworm_without_recommends() {
        let bookworm = Host {
            debian: true,
            codename: "bookworm".into(),
            root: false,
        };
        let all: Vec<AptPackage> = APT_PACKAGES.to_vec();
        let s = install_instructions(&bookworm, &all);
        assert!(
            s.contains("apt-get install -y --no-install-recommends -t bookworm-backports qemu-system-x86 suricata\n"),
            "{s}"
        );
        assert!(s.contains("apt-get install -y --no-install-recommends grub-pc-bin grub-efi-amd64-bin grub-common xorriso mtools xz-utils ovmf gcc libnids-dev libpcap-dev time prometheus nfdump tshark\n"), "{s}");
        // Only what is missing is named.
        let run_only = packages_for(&[Need::Run]);
        let s = install_instructions(&bookworm, &run_only);
        assert!(!s.contains("suricata") && !s.contains("libnids"), "{s}");
        assert!(s.contains("-t bookworm-backports qemu-system-x86\n"), "{s}");
        let trixie = Host {
            debian: true,
            codename: "trixie".into(),
            root: false,
        };
        let s = install_instructions(&trixie, &all);
        assert!(!s.contains("backports"), "{s}");
        assert!(
            s.contains("qemu-system-x86") && s.contains("suricata"),
            "{s}"
        );
        let other = Host {
            debian: false,
            codename: String::new(),
            root: true,
        };
        assert!(install_instructions(&other, &all).contains("not Debian"));
    }

    #[test]
    fn package_lists_have_what_the_tools_need() {
        let names = |n: &[Need]| -> Vec<&str> { packages_for(n).iter().map(|p| p.name).collect() };
        let run = names(&[Need::Run]);
        for n in [
            "qemu-system-x86",
            "grub-pc-bin",
            "grub-efi-amd64-bin",
            "grub-common",
            "xorriso",
            "mtools",
            "xz-utils",
            "ovmf",
        ] {
            assert!(run.contains(&n), "{n}");
        }
        let peers = names(&[Need::Peers]);
        assert_eq!(
            peers,
            ["gcc", "libnids-dev", "libpcap-dev", "suricata", "time"]
        );
        assert!(!run.contains(&"suricata"));
        assert_eq!(
            names(&[Need::Collectors]),
            ["prometheus", "nfdump", "tshark"]
        );
        assert_eq!(
            names(&[Need::Run, Need::Peers, Need::Collectors]).len(),
            APT_PACKAGES.len()
        );
    }
}
