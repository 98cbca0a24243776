//! Runs Ferrule images in QEMU: machine, firmware, cores, NICs, serial, traffic, exit status.
//!
//! Host-only. It must not build images (see `image`).
#![forbid(unsafe_code)]
