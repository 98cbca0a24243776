//! Ferrule's flow monitor: TCP flows, reassembly, events and the `ppeek`/`peek` API.
//!
//! `no_std`, no `unsafe`, no heap on the packet path. It must not depend on the kernel,
//! the drivers or any hardware: the same code runs per core in the appliance and on a host
//! over captures.
#![cfg_attr(not(any(test, feature = "std")), no_std)]
#![forbid(unsafe_code)]
