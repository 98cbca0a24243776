//! Builds bootable Ferrule images with the user's logic compiled in, and carries the
//! `cargo ferrule` command-line tool.
//!
//! Host-only. It must not run QEMU itself (see `qemu`).
//!
//! - [`build::build_app`]: a guest app (workspace package or any app crate) → ELF.
//! - [`disk::make_disk_image`]: ELF → hybrid BIOS + UEFI GRUB disk image for `dd`.
//! - [`setup`]: installs the Rust target/components and QEMU, GRUB, OVMF ([`setup::APT_PACKAGES`]).
//! - [`cli`]: the `build`, `run`, `test` and `new` subcommands of `cargo ferrule`.
//! - [`new`]: `cargo ferrule new`, an app crate anywhere (template in `image/template/`).
//! - [`runner`]: app crates on the `appliance` crate and their host runner (`replay`).
#![forbid(unsafe_code)]

pub mod build;
pub mod cli;
pub mod disk;
pub mod fuzz;
pub mod host;
pub mod new;
pub mod runner;
pub mod setup;

pub use build::{build_app, build_app_with_env, workspace_root, App, Verbosity};
pub use disk::make_disk_image;

/// Why building, installing or running failed.
#[derive(Debug)]
pub enum Error {
    /// A build step failed (message says which).
    Build(String),
    /// An external program could not be started.
    Tool(String, std::io::Error),
    /// A file operation failed.
    Io(String, std::io::Error),
    /// Installing prerequisites failed or is not possible here (message says what to do).
    Setup(String),
    /// QEMU failed.
    Qemu(qemu::Error),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Build(s) => write!(f, "{s}"),
            Error::Tool(t, e) => write!(f, "cannot run {t}: {e}"),
            Error::Io(p, e) => write!(f, "{p}: {e}"),
            Error::Setup(s) => write!(f, "{s}"),
            Error::Qemu(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<qemu::Error> for Error {
    fn from(e: qemu::Error) -> Self {
        Error::Qemu(e)
    }
}

/// The default place of the disk image for an ELF: `<out>/<elf name>.img`.
pub fn image_path_for(elf: &std::path::Path, out_dir: &std::path::Path) -> std::path::PathBuf {
    let name = elf
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "ferrule".into());
    out_dir.join(format!("{name}.img"))
}
