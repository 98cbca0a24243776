//! Captures loaded into memory: the reader lives in the `appliance` crate (its host runner
//! replays captures too); re-exported here for the host tools.

pub use appliance::capture::*;
