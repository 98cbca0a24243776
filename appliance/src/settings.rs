//! What an app fixes at build time: mode, per-core sizes, batch, stats period, exit policy.

use monitor::Config;

/// Where the appliance sits on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Watch only: frames are monitored and never transmitted.
    Tap,
    /// Bump in the wire: ports are paired (0↔1, 2↔3, ...); a frame received on port P goes
    /// out of port P^1 according to the monitor's verdict.
    Inline,
}

/// When a run ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// Never (an appliance on hardware).
    Never,
    /// When no core has received a frame for `idle_s` seconds after traffic started, or when
    /// none came in `wait_first_s` seconds (tests, demos).
    Idle {
        /// Seconds to wait for the first frame.
        wait_first_s: u64,
        /// Seconds without a frame on any core, after the first, before the end.
        idle_s: u64,
    },
}

/// An app's settings: a `const` in the app, fixed at build time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Tap or inline.
    pub mode: Mode,
    /// Flow slots per core (live connections at once).
    pub flows: usize,
    /// Stream chunks per core (`monitor::CHUNK_SIZE` bytes each), shared by that core's flows.
    pub chunks: usize,
    /// IP datagrams in reassembly at once, per core.
    pub frag_slots: usize,
    /// Receive and transmit descriptors per queue: a power of two in 64..=4096.
    pub ring: usize,
    /// Most frames per monitor batch (`CONN_NEW_DATA` is raised once per flow side per batch).
    pub batch: usize,
    /// Seconds between per-core stats lines; 0 = none.
    pub stats_period_s: u64,
    /// When the run ends.
    pub exit: Exit,
    /// Monitor configuration (`core` and `inline` are set by the runtime per core and mode).
    pub monitor: Config,
    /// The management plane (metrics over HTTP on a NIC of its own); `None` = no plane, every
    /// supported NIC is monitored.
    pub mgmt: Option<crate::mgmt::Mgmt>,
}

impl Settings {
    /// Tap mode, 4096 flows and 16 MiB of stream chunks per core, 64 fragment slots, 1024-entry
    /// rings, batches of 32, stats every 10 s, runs forever, mid-stream pickup on.
    pub const DEFAULT: Settings = Settings {
        mode: Mode::Tap,
        flows: 4096,
        chunks: (16 << 20) / monitor::CHUNK_SIZE,
        frag_slots: 64,
        ring: 1024,
        batch: 32,
        stats_period_s: 10,
        exit: Exit::Never,
        monitor: Config {
            pickup: true,
            ..Config::DEFAULT
        },
        mgmt: None,
    };

    /// The monitor configuration of core `core`.
    pub const fn monitor_config(&self, core: usize) -> Config {
        Config {
            core: core as u16,
            inline: matches!(self.mode, Mode::Inline),
            ..self.monitor
        }
    }

    /// Checks the sizes; the message says what to change.
    pub fn check(&self) -> Result<(), &'static str> {
        if self.flows == 0 || self.flows >= u32::MAX as usize / 4 {
            return Err("Settings::flows must be 1 ..= 2^30");
        }
        if self.chunks >= u32::MAX as usize {
            return Err("Settings::chunks must be below 2^32");
        }
        if !self.ring.is_power_of_two() || !(64..=4096).contains(&self.ring) {
            return Err("Settings::ring must be a power of two in 64..=4096");
        }
        if self.batch == 0 {
            return Err("Settings::batch must be at least 1");
        }
        if let Some(m) = &self.mgmt {
            if m.http_port == 0 {
                return Err("Settings::mgmt.http_port must not be 0");
            }
            if let crate::mgmt::Ipv4Setup::Static { prefix, .. } = m.ipv4 {
                if prefix > 32 {
                    return Err("Settings::mgmt.ipv4 prefix must be 0..=32");
                }
            }
            if m.ipv6.is_some_and(|(_, l)| l > 128) {
                return Err("Settings::mgmt.ipv6 prefix must be 0..=128");
            }
        }
        Ok(())
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings::DEFAULT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid_and_per_core_config_follows_mode() {
        assert_eq!(Settings::DEFAULT.check(), Ok(()));
        let c = Settings::DEFAULT.monitor_config(3);
        assert_eq!((c.core, c.inline, c.pickup), (3, false, true));
        let inline = Settings {
            mode: Mode::Inline,
            ..Settings::DEFAULT
        };
        assert!(inline.monitor_config(0).inline);
    }

    #[test]
    fn bad_sizes_are_named() {
        let bad = |s: Settings| s.check().unwrap_err();
        assert!(bad(Settings {
            ring: 100,
            ..Settings::DEFAULT
        })
        .contains("ring"));
        assert!(bad(Settings {
            flows: 0,
            ..Settings::DEFAULT
        })
        .contains("flows"));
        assert!(bad(Settings {
            batch: 0,
            ..Settings::DEFAULT
        })
        .contains("batch"));
    }
}
