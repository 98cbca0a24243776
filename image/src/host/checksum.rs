//! The `--checksums` option of the host tools and its line in their summaries.
//!
//! Verification itself is the monitor's (`monitor::Checksums`, `Config::checksums`: IPv4
//! header and TCP checksums checked in its intake, bad segments counted and never
//! reassembled, `Auto` stopping on a capture taken on a sending host with checksum offload);
//! this module only maps the command-line choice onto it and words what it did.

use monitor::{ChecksumStats, Counters, DropReason};

/// What to do with checksums (the command-line form of `monitor::Checksums`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Checksums {
    /// Drop every segment with a bad IPv4 header or TCP checksum.
    Verify,
    /// Check nothing.
    Ignore,
    /// Verify, unless the capture looks checksum-offloaded (more than 10 % of the first 1000
    /// frames bad, as on a capture taken on the sending host): then keep the bad ones, stop
    /// checking, and say so.
    Auto,
}

impl From<Checksums> for monitor::Checksums {
    fn from(c: Checksums) -> Self {
        match c {
            Checksums::Verify => monitor::Checksums::Verify,
            Checksums::Ignore => monitor::Checksums::Ignore,
            Checksums::Auto => monitor::Checksums::Auto,
        }
    }
}

/// How a run's checksum policy turned out, in words: `verify`, `ignore`, `auto: verified`, or
/// `auto: not verified, …` when the traffic looked offloaded.
pub fn mode_text(mode: monitor::Checksums, s: &ChecksumStats) -> String {
    match (mode, s.offloaded) {
        (monitor::Checksums::Verify, _) => "verify".to_string(),
        (monitor::Checksums::Ignore, _) => "ignore".to_string(),
        (monitor::Checksums::Auto, false) => "auto: verified".to_string(),
        (monitor::Checksums::Auto, true) => format!(
            "auto: not verified, {} of the first {} frames checked had bad checksums \
             (offloaded on the capturing host)",
            s.sampled_bad, s.sampled
        ),
    }
}

/// The summary's `checksums` object, from the monitor's counters.
pub fn summary(mode: monitor::Checksums, c: &Counters) -> serde_json::Value {
    let s = &c.checksums;
    serde_json::json!({
        "mode": mode_text(mode, s),
        "offloaded": s.offloaded,
        "bad_ipv4_header": c.drop_count(DropReason::BadIpv4Checksum),
        "bad_tcp": c.drop_count(DropReason::BadTcpChecksum),
        "bad_kept_as_offloaded": s.accepted_bad,
        "computed": s.computed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_for_each_outcome() {
        let mut s = ChecksumStats::default();
        assert_eq!(mode_text(monitor::Checksums::Verify, &s), "verify");
        assert_eq!(mode_text(monitor::Checksums::Ignore, &s), "ignore");
        assert_eq!(mode_text(monitor::Checksums::Auto, &s), "auto: verified");
        s.offloaded = true;
        s.sampled = 1000;
        s.sampled_bad = 480;
        assert_eq!(
            mode_text(monitor::Checksums::Auto, &s),
            "auto: not verified, 480 of the first 1000 frames checked had bad checksums \
             (offloaded on the capturing host)"
        );
        let mut c = Counters::default();
        c.dropped[DropReason::BadTcpChecksum as usize] = 3;
        c.checksums.accepted_bad = 480;
        let j = summary(monitor::Checksums::Auto, &c);
        assert_eq!(j["bad_tcp"], 3);
        assert_eq!(j["bad_ipv4_header"], 0);
        assert_eq!(j["offloaded"], false);
        assert_eq!(j["bad_kept_as_offloaded"], 480);
    }
}
