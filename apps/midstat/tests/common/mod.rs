//! Shared by the sample tests.
pub mod frames;
