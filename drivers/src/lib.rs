//! Ferrule's NIC drivers: ixy-style poll-mode igb, ixgbe and virtio-net.
//!
//! Owns descriptor rings, packet buffers and NIC registers. It must not know about flows
//! (see `monitor`) or about how memory is found (the kernel implements the platform trait).
#![cfg_attr(not(test), no_std)]
