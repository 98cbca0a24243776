//! The Ferrule appliance runtime: the one Ferrule dependency a middlebox app needs.
//!
//! An app is a bin crate with a [`Middlebox`] that also implements [`Appliance`] (how a core
//! builds it) and a `const` [`Settings`]; its `main.rs` is
//!
//! ```text
//! #![cfg_attr(target_os = "none", no_std, no_main)]
//! appliance::main!(MyBox, SETTINGS);
//! ```
//!
//! * Built for the guest (`x86_64-unknown-none`), [`main!`] makes the image: the runtime
//!   (`guest`) finds every supported NIC, opens each with one symmetric-RSS queue per core,
//!   builds one `Monitor` with its own storage on each core, owns the batch loop, timers,
//!   periodic stats, the exit policy and, in [`Mode::Inline`], forwarding between paired ports.
//! * Built for the host, [`main!`] makes a replay tool (`host`): `APP CAPTURE [--inline]
//!   [--out OUT.pcap]` runs the same middlebox over a pcap/pcapng on one core.
//!
//! It re-exports the whole monitor API (`use appliance::{Ctx, Event, Hook, Side, ...}`).
//!
//! # What the image does
//!
//! * **NICs**: every PCI function `drivers::nic::kind_of` knows (igb, ixgbe, virtio-net) is
//!   opened; other network controllers are named on the console and left alone. Each port
//!   gets one symmetric-RSS receive queue per core (igb/ixgbe: up to 16; virtio-net has one,
//!   served by core 0, with 256 descriptors whatever `Settings::ring` says). Queue `q` of
//!   every port belongs to core `q`; a core takes its handles once, before its loop.
//! * **Memory**: `appliance: per-core storage N bytes x C cores = T of R free` at boot
//!   ([`budget`]); settings that do not fit are refused (every core fails with the reason).
//! * **Loop** (per core, nothing shared, no lock, no allocation, no printing): up to
//!   `Settings::batch` frames from each of its queues form one monitor batch; each receive
//!   batch (`drivers::NicRx::rx_batch_frames`, up to `RX_BATCH` frames) is shown to the
//!   monitor whole (`Monitor::read_ahead`), then processed frame by frame; timers and idle
//!   sweeps run in `begin_batch`/`end_batch`. Each core's summary gives the monitor's own
//!   cost (`monitor_cycles/frame`: `read_ahead`, `frame_with` and `end_batch`, so with the
//!   middlebox's callbacks, not the driver, forwarding or log ring) and the whole loop's
//!   (`cycles/frame`), in TSC cycles.
//! * **Inline** ([`Mode::Inline`]): port P's frames leave by port P^1 on the same core's
//!   transmit queue: `Forward` sends the received bytes, `Rewritten` the new ones, `Drop`
//!   nothing; frames the monitor does not follow (non-TCP, unparsable) are forwarded
//!   untouched. A receive batch's frames are copied into a stage and leave with one transmit
//!   call (the drivers copy into their own buffers anyway; this saves a doorbell per frame).
//!   Injected frames leave by the port where their destination MAC was last seen as a
//!   source (else the pair of the current frame's port). IP fragments wait for their
//!   datagram's verdict ([`frags`]). A full transmit ring drops the frame, counted
//!   (`tx_full`); receiving never waits. Each core's summary also gives the forwarding cost
//!   (`forward_cycles/frame`: staging copy plus its share of the transmit call).
//! * **Output**: [`Log`] lines go into the core's ring; a core that serves no queue drains
//!   every ring, else each core drains one line whenever a poll found nothing, and all of
//!   it at exit. Stats every `stats_period_s` (frames/s, live flows, pool and log
//!   occupancy, drops by reason), a summary per core and each port's hardware counters at
//!   the end; the image then exits through the kernel.
//! * **Management** ([`mgmt`], when `Settings::mgmt` is set): one NIC is taken out of the
//!   monitored ports and runs a smoltcp interface that serves `GET /metrics` (Prometheus
//!   text) from counters each serving core publishes at its batch ends (per-core atomics, no
//!   lock), on a core that serves no queue, else on core 0 between batches.
//!
//! Known limits: RSS hashes IP fragments on addresses only, so with several queues a
//! flow's fragments may reach another core's monitor than its other packets; fragments
//! held for their datagram can leave after later unfragmented frames of the same flow.
//!
//! **Owns**: NIC discovery and queue assignment, per-core monitor storage and the memory
//! budget, the packet loop (receive, monitor, verdicts, transmit), the per-core log rings
//! ([`Log`]) and their draining to the console, stats and summaries, the management plane
//! ([`mgmt`]), the host runner and the capture reader ([`capture`], host only).
//! **Must not**: contain flow logic (that is `monitor`'s and the app's), touch hardware other
//! than through `drivers` and `kernel`, use `unsafe`, or allocate, lock, print or wait on the
//! packet path (callbacks write to the core's own log ring, which never waits).
#![cfg_attr(target_os = "none", no_std)]
#![forbid(unsafe_code)]

pub use monitor::*;

pub mod budget;
pub mod frags;
mod log;
pub mod mgmt;
mod settings;

#[cfg(not(target_os = "none"))]
pub mod capture;
#[cfg(target_os = "none")]
pub mod guest;
#[cfg(not(target_os = "none"))]
pub mod host;

pub use log::{Log, LogRing, LINE_MAX, LOG_RING_BYTES};
pub use settings::{Exit, Mode, Settings};

/// What a core knows when its middlebox is built.
#[derive(Clone, Copy, Debug)]
pub struct CoreInfo {
    /// This core's id (0 is the boot core).
    pub id: usize,
    /// How many cores run a monitor (each builds its own middlebox).
    pub cores: usize,
    /// This core's log: lines written here reach the console (image) or stdout (host).
    pub log: Log,
}

/// A middlebox the runtime can run: one instance per core, built on that core.
pub trait Appliance: Middlebox + Sized {
    /// Builds this core's middlebox, on that core.
    fn new(core: &CoreInfo) -> Self;

    /// After the run, once per core, after `Monitor::close_all` (print a summary). Default:
    /// nothing.
    fn finish(&mut self, log: &mut Log) {
        let _ = log;
    }
}

/// The app as [`main!`] declares it: its middlebox type and its settings. Implemented by the
/// macro on a type of its own, so any middlebox type (even one from another crate) works.
pub trait Program: 'static {
    /// The middlebox.
    type App: Appliance;
    /// The app's settings.
    const SETTINGS: Settings;
    /// The app's crate name (`ferrule_build_info`).
    const NAME: &'static str = "app";
    /// The app's version.
    const VERSION: &'static str = "0.0.0";
}

#[doc(hidden)]
pub mod __private {
    #[cfg(target_os = "none")]
    pub use kernel;
}

/// Declares an appliance app: `appliance::main!(MyBox, SETTINGS);` in the app's `main.rs`
/// (which starts with `#![cfg_attr(target_os = "none", no_std, no_main)]`).
///
/// Guest: expands to `kernel::main!` with the runtime as the kernel app (the ring size
/// `SETTINGS.ring` becomes the drivers' const generic). Host: expands to `fn main()`, the
/// host runner over a capture.
#[macro_export]
macro_rules! main {
    ($app:ty, $settings:expr) => {
        /// The app as the runtime sees it.
        #[doc(hidden)]
        struct __FerruleProgram;

        impl $crate::Program for __FerruleProgram {
            type App = $app;
            const SETTINGS: $crate::Settings = $settings;
            const NAME: &'static str = env!("CARGO_PKG_NAME");
            const VERSION: &'static str = env!("CARGO_PKG_VERSION");
        }

        #[cfg(target_os = "none")]
        $crate::__private::kernel::main!(
            $crate::guest::Runtime<__FerruleProgram, { <__FerruleProgram as $crate::Program>::SETTINGS.ring }>
        );

        #[cfg(not(target_os = "none"))]
        fn main() {
            $crate::host::main::<__FerruleProgram>()
        }
    };
}
