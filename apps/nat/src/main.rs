//! The `nat` image: source NAT (see the library) on the appliance runtime, inline, ports
//! paired (0↔1): clients on port 0, servers on port 1. Each translated connection prints one
//! line when it ends (`nat: CLIENT -> PUBLIC:PORT -> SERVER ended c2s BYTES SHA256 s2c ...`,
//! the digests of what the monitor reassembled). On a host,
//! `cargo ferrule replay --app nat CAPTURE --out OUT.pcap` writes the translated frames.
#![cfg_attr(target_os = "none", no_std, no_main)]

use appliance::{Appliance, Config, CoreInfo, Exit, Log, Mode, Settings};
use nat::{Nat, NatConfig, Sink};

/// Inline; idle connections end (and free their port) after 60 s; the run ends 3 s after
/// the last frame (or after 60 s without any).
const SETTINGS: Settings = Settings {
    mode: Mode::Inline,
    ring: 4096,
    chunks: 1024,
    stats_period_s: 0,
    exit: Exit::Idle {
        wait_first_s: 60,
        idle_s: 3,
    },
    monitor: Config {
        idle_timeout_us: 60_000_000,
        ..Config::DEFAULT
    },
    ..Settings::DEFAULT
};

/// The core's log.
struct CoreLog(Log);

impl Sink for CoreLog {
    fn line(&mut self, line: core::fmt::Arguments<'_>) {
        self.0.line(line);
    }
}

/// The runtime's view of the NAT.
struct NatBox(Nat<CoreLog>);

impl appliance::Middlebox for NatBox {
    type Flow = nat::NatFlow;
    fn init(&mut self, reg: &mut appliance::Registry) {
        self.0.init(reg)
    }
    fn on_event(
        &mut self,
        cx: &mut appliance::Ctx<'_, '_, nat::NatFlow>,
        ev: appliance::Event,
        hook: appliance::Hook,
        side: appliance::Side,
    ) {
        self.0.on_event(cx, ev, hook, side)
    }
}

impl Appliance for NatBox {
    fn new(core: &CoreInfo) -> Self {
        NatBox(Nat::new(
            NatConfig::DEFAULT,
            core.id,
            core.cores,
            CoreLog(core.log),
        ))
    }
}

appliance::main!(NatBox, SETTINGS);
