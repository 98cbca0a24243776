//! Builds bootable Ferrule images with the user's logic compiled in, and carries the
//! `cargo ferrule` command-line tool.
//!
//! Host-only. It must not run QEMU itself (see `qemu`).
#![forbid(unsafe_code)]
pub mod host;
