//! The default Ferrule appliance: the runtime's tap mode (every supported NIC, one
//! symmetric-RSS queue and one flow monitor per core) with the `flowlog` middlebox, so each
//! TCP connection is one console line, exactly the JSON line `cargo ferrule flows` prints for
//! it on a host:
//!
//! `{"client":"IP:PORT","server":"IP:PORT","c2s":{"bytes":N,"sha256":"HEX","gaps":G,"lost":L},"s2c":{...},"client_state":"..","server_state":".."}`
//!
//! Lines go through each core's log ring, never from the packet path to the UART. The run
//! ends when no frame came for 3 s after traffic (or none at all in 60 s); open connections
//! are then ended and printed. On a host, `cargo run -p flowmon -- CAPTURE` prints the same
//! lines for a capture.
//!
//! Built with `FERRULE_MGMT=qemu` (what `cargo ferrule run --mgmt-forward` does), the image
//! also serves `GET /metrics` on its management NIC (see `appliance::mgmt`) and waits 15 s
//! after the traffic instead of 3 so the last values can be scraped.
#![cfg_attr(target_os = "none", no_std, no_main)]

use appliance::{Appliance, Config, CoreInfo, Ctx, Event, Exit, Hook, Log, Middlebox, Registry};
use appliance::{Settings, Side};
use flowlog::{FlowDigest, FlowLog, Sink};

/// Metrics over HTTP when built with FERRULE_MGMT (`cargo ferrule run --mgmt-forward`), and
/// IPFIX records with FERRULE_IPFIX_PORT (`--ipfix-to`).
const MGMT: Option<appliance::mgmt::Mgmt> = appliance::mgmt::Mgmt::from_build_env(
    option_env!("FERRULE_MGMT"),
    option_env!("FERRULE_IPFIX_PORT"),
);

/// Tap mode; flows never time out during a run (as on the host), streams up to 4 MiB a side,
/// 4096-entry rings so bursts wait in the NIC rather than being dropped.
const SETTINGS: Settings = Settings {
    // With a management plane, 15 s after the traffic so the last values can be scraped.
    exit: Exit::Idle {
        wait_first_s: 60,
        idle_s: if MGMT.is_some() { 15 } else { 3 },
    },
    stats_period_s: 0,
    ring: 4096,
    monitor: Config {
        side_capacity: 4 << 20,
        idle_timeout_us: 600_000_000,
        pickup: true,
        ..Config::DEFAULT
    },
    mgmt: MGMT,
    ..Settings::DEFAULT
};

/// flowlog's lines go to this core's log.
struct CoreLog(Log);

impl Sink for CoreLog {
    fn line(&mut self, line: core::fmt::Arguments<'_>) {
        self.0.line(line);
    }
}

/// One core's middlebox.
struct FlowMon(FlowLog<CoreLog>);

impl Middlebox for FlowMon {
    type Flow = FlowDigest;

    fn init(&mut self, reg: &mut Registry) {
        self.0.init(reg)
    }

    fn on_event(&mut self, cx: &mut Ctx<'_, '_, FlowDigest>, ev: Event, hook: Hook, side: Side) {
        self.0.on_event(cx, ev, hook, side)
    }
}

impl Appliance for FlowMon {
    fn new(core: &CoreInfo) -> Self {
        FlowMon(FlowLog::new(CoreLog(core.log)))
    }
}

appliance::main!(FlowMon, SETTINGS);
