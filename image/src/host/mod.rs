//! Host-mode tools over captures: the generator (`gen`), and (as they land) `flows`,
//! `replay` and `bench`.
//!
//! Everything here runs on a developer's host with `std`; none of it is part of an image.

pub mod bench;
pub mod capture;
pub mod checksum;
pub mod cli;
pub mod engine;
pub mod floor;
pub mod flows;
pub mod gen;
pub mod ipfix;
pub mod json;
pub mod peers;
pub mod replay;
