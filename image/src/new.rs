//! `cargo ferrule new DIR`: writes an app crate on the `appliance` crate, anywhere.
//!
//! The crate depends on `appliance` by path to the checkout this tool was built from (its one
//! Ferrule dependency; the capture generator comes in as a dev-dependency for its test), has
//! an empty `[workspace]` table so an enclosing workspace does not swallow it, and copies the
//! checkout's `rust-toolchain.toml`. The files are in `image/template/`.

use std::path::{Path, PathBuf};

use crate::Error;

const CARGO_TOML: &str = include_str!("../template/Cargo.toml.in");
const MAIN_RS: &str = include_str!("../template/main.rs");
const TEST_RS: &str = include_str!("../template/replay_test.rs");
const README: &str = include_str!("../template/README.md");
const GITIGNORE: &str = "/target\n";

/// Names an app crate cannot take: the Ferrule crates it builds on and Rust's own crates.
const RESERVED: &[&str] = &[
    "appliance",
    "image",
    "kernel",
    "monitor",
    "drivers",
    "qemu",
    "tests",
    "test",
    "core",
    "std",
    "alloc",
    "proc_macro",
    "self",
    "super",
    "crate",
];

/// `cargo ferrule new`: write a middlebox app crate.
#[derive(clap::Args, Debug, Clone)]
pub struct NewArgs {
    /// Directory to create (must not exist, or be empty).
    pub dir: PathBuf,
    /// Package name [default: the directory's name].
    #[arg(long)]
    pub name: Option<String>,
}

/// Checks a package name: ASCII letters, digits, `-` and `_`, not starting with a digit or
/// `-`, not a reserved name.
pub fn check_name(name: &str) -> Result<(), String> {
    let first_ok = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    let rest_ok = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !first_ok || !rest_ok {
        return Err(format!(
            "`{name}` is not a valid app name: use ASCII letters, digits, - and _, starting with a letter (or give --name)"
        ));
    }
    if RESERVED.contains(&name.replace('-', "_").as_str()) {
        return Err(format!(
            "`{name}` is taken (a Ferrule or Rust crate); give another name with --name"
        ));
    }
    Ok(())
}

/// `s` as the inside of a TOML basic string.
fn toml_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// The files of a new app crate, as (path inside the crate, contents).
pub fn app_files(name: &str, ferrule: &Path) -> Result<Vec<(PathBuf, String)>, Error> {
    let toolchain_path = ferrule.join("rust-toolchain.toml");
    let toolchain = std::fs::read_to_string(&toolchain_path)
        .map_err(|e| Error::Io(toolchain_path.display().to_string(), e))?;
    let root = ferrule.display().to_string();
    let fill = |t: &str, root: &str| t.replace("{{name}}", name).replace("{{ferrule}}", root);
    Ok(vec![
        ("Cargo.toml".into(), fill(CARGO_TOML, &toml_escape(&root))),
        ("rust-toolchain.toml".into(), toolchain),
        ("src/main.rs".into(), fill(MAIN_RS, &root)),
        ("tests/replay.rs".into(), fill(TEST_RS, &root)),
        ("README.md".into(), fill(README, &root)),
        (".gitignore".into(), GITIGNORE.into()),
    ])
}

/// Writes a new app crate into `dir` (created; it must not exist or be empty) and returns
/// the files written.
pub fn write_app(dir: &Path, name: &str, ferrule: &Path) -> Result<Vec<PathBuf>, Error> {
    check_name(name).map_err(Error::Build)?;
    let io = |p: &Path| {
        let p = p.display().to_string();
        move |e| Error::Io(p, e)
    };
    if dir.exists() {
        let mut entries = std::fs::read_dir(dir).map_err(io(dir))?;
        if entries.next().is_some() {
            return Err(Error::Build(format!(
                "{} exists and is not empty: `cargo ferrule new` writes a new crate into a new (or empty) directory",
                dir.display()
            )));
        }
    }
    let files = app_files(name, ferrule)?;
    let mut written = Vec::new();
    for (rel, text) in files {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        std::fs::write(&path, text).map_err(io(&path))?;
        written.push(path);
    }
    Ok(written)
}

/// The package name for `dir`: `--name`, or the directory's last component.
pub fn name_for(dir: &Path, name: Option<&str>) -> Result<String, String> {
    if let Some(n) = name {
        return Ok(n.to_string());
    }
    let abs = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    abs.file_name()
        .and_then(|n| n.to_str())
        .map(String::from)
        .ok_or_else(|| format!("{} has no usable name; give --name", dir.display()))
}

/// Whether this tool runs from an install (not from the checkout's `target/`, as through
/// the in-repo alias).
fn installed() -> bool {
    let target = crate::build::workspace_root().join("target");
    std::env::current_exe()
        .ok()
        .and_then(|e| std::fs::canonicalize(e).ok())
        .is_some_and(|e| !e.starts_with(std::fs::canonicalize(&target).unwrap_or(target)))
}

/// `cargo ferrule new`.
pub fn run_new(a: &NewArgs) -> i32 {
    let ferrule = crate::build::workspace_root();
    let res = name_for(&a.dir, a.name.as_deref())
        .map_err(Error::Build)
        .and_then(|name| write_app(&a.dir, &name, &ferrule).map(|w| (name, w)));
    match res {
        Ok((name, written)) => {
            println!("created app `{name}` in {}:", a.dir.display());
            for p in &written {
                println!("  {}", p.display());
            }
            println!();
            println!(
                "It builds against the Ferrule checkout {}.",
                ferrule.display()
            );
            if !installed() {
                println!(
                    "`cargo ferrule` outside the checkout needs the tool installed: cargo install --locked --path {}",
                    ferrule.join("image").display()
                );
            }
            println!("Next, in {}:", a.dir.display());
            println!(
                "  cargo test                               # host test over a generated capture"
            );
            println!(
                "  cargo ferrule gen -o t.pcap --flows 50   # a capture with its ground truth"
            );
            println!("  cargo ferrule replay t.pcap              # run it on this machine");
            println!("  cargo ferrule build                      # ELF + flashable disk image");
            println!(
                "  cargo ferrule run --pcap t.pcap          # boot it in QEMU with the capture"
            );
            0
        }
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        for ok in ["mybox", "my-box", "my_box2", "_x", "Box"] {
            assert_eq!(check_name(ok), Ok(()), "{ok}");
        }
        for bad in ["", "2box", "-box", "my box", "bö", "a/b", "a.b"] {
            assert!(
                check_name(bad)
                    .unwrap_err()
                    .contains("not a valid app name"),
                "{bad}"
            );
        }
        for taken in ["appliance", "image", "monitor", "std", "proc-macro"] {
            assert!(
                check_name(taken).unwrap_err().contains("is taken"),
                "{taken}"
            );
        }
        assert_eq!(
            name_for(Path::new("/tmp/x/fw-test"), None),
            Ok("fw-test".into())
        );
        assert_eq!(name_for(Path::new("/tmp/x/y"), Some("z")), Ok("z".into()));
    }

    #[test]
    fn writes_a_crate_with_one_ferrule_dependency_its_own_workspace_and_the_toolchain() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("my-box");
        // A stand-in checkout with the two crates the app names, so cargo can read the app's
        // manifest whatever state the real crates are in.
        let root = tmp.path().join("ferrule");
        for krate in ["appliance", "image"] {
            std::fs::create_dir_all(root.join(krate).join("src")).unwrap();
            std::fs::write(
                root.join(krate).join("Cargo.toml"),
                format!("[package]\nname = \"{krate}\"\nversion = \"0.1.0\"\n"),
            )
            .unwrap();
            std::fs::write(root.join(krate).join("src/lib.rs"), "").unwrap();
        }
        std::fs::copy(
            crate::build::workspace_root().join("rust-toolchain.toml"),
            root.join("rust-toolchain.toml"),
        )
        .unwrap();
        let written = write_app(&dir, "my-box", &root).unwrap();
        let rel: Vec<String> = written
            .iter()
            .map(|p| p.strip_prefix(&dir).unwrap().display().to_string())
            .collect();
        assert_eq!(
            rel,
            [
                "Cargo.toml",
                "rust-toolchain.toml",
                "src/main.rs",
                "tests/replay.rs",
                "README.md",
                ".gitignore"
            ]
        );
        let read = |p: &str| std::fs::read_to_string(dir.join(p)).unwrap();
        let toml = read("Cargo.toml");
        let section = |name: &str| -> Vec<String> {
            let start = toml.find(&format!("\n[{name}]\n")).unwrap() + name.len() + 4;
            toml[start..]
                .lines()
                .take_while(|l| !l.starts_with('['))
                .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
                .map(String::from)
                .collect()
        };
        assert!(toml.starts_with("[package]\nname = \"my-box\"\n"), "{toml}");
        assert_eq!(
            section("dependencies"),
            [format!(
                "appliance = {{ path = \"{}/appliance\" }}",
                root.display()
            )]
        );
        assert_eq!(
            section("dev-dependencies"),
            [format!("image = {{ path = \"{}/image\" }}", root.display())]
        );
        assert!(toml.ends_with("\n[workspace]\n"), "{toml}");
        assert_eq!(
            read("rust-toolchain.toml"),
            std::fs::read_to_string(crate::build::workspace_root().join("rust-toolchain.toml"))
                .unwrap()
        );
        let main = read("src/main.rs");
        assert!(main.contains("#![cfg_attr(target_os = \"none\", no_std, no_main)]"));
        assert!(main.ends_with("appliance::main!(ByteCount, SETTINGS);\n"));
        assert!(main.contains("\"my-box: core {}: {} connections\""));
        let test = read("tests/replay.rs");
        assert!(test.contains("env!(\"CARGO_BIN_EXE_my-box\")"));
        assert!(read("README.md").starts_with("# my-box\n"));
        assert_eq!(read(".gitignore"), "/target\n");
        for (f, _) in app_files("my-box", &root).unwrap() {
            let text = read(&f.display().to_string());
            assert!(!text.contains("{{"), "{} keeps a placeholder", f.display());
        }
        // The crate's own files must be valid: its Cargo.toml parses as a manifest.
        let meta = crate::build::cargo()
            .args(["read-manifest", "--manifest-path"])
            .arg(dir.join("Cargo.toml"))
            .output()
            .unwrap();
        assert!(
            meta.status.success(),
            "{}",
            String::from_utf8_lossy(&meta.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&meta.stdout).unwrap();
        assert_eq!(v["name"], "my-box");
        assert_eq!(v["targets"][0]["kind"][0], "bin");

        // A second `new` into the same directory is refused; an empty directory is fine.
        let e = write_app(&dir, "my-box", &root).unwrap_err().to_string();
        assert!(e.ends_with("exists and is not empty: `cargo ferrule new` writes a new crate into a new (or empty) directory"), "{e}");
        let empty = tmp.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        assert_eq!(write_app(&empty, "empty", &root).unwrap().len(), 6);
        assert!(write_app(&tmp.path().join("x"), "2x", &root).is_err());
        assert!(!tmp.path().join("x").exists());
    }

    #[test]
    fn paths_are_escaped_in_toml() {
        assert_eq!(toml_escape(r#"C:\a "b""#), r#"C:\\a \"b\""#);
    }
}
