//! The midstat appliance: tap mode, every NIC, one monitor per core; each core prints the
//! table of its live connections every second (mOS midstat's format) through its log, never
//! from the packet path. On a host, `cargo ferrule replay --app midstat CAPTURE` prints the
//! same tables every second of capture time.
#![cfg_attr(target_os = "none", no_std, no_main)]

use appliance::{Appliance, CoreInfo, Exit, Log, Settings};
use midstat::{Midstat, Out};

/// Tap mode; the run ends 3 s after the last frame (or after 60 s without any).
const SETTINGS: Settings = Settings {
    exit: Exit::Idle {
        wait_first_s: 60,
        idle_s: 3,
    },
    stats_period_s: 0,
    // midstat buffers no bytes.
    chunks: 64,
    ..Settings::DEFAULT
};

/// The core's log.
struct CoreLog(Log);

impl Out for CoreLog {
    fn line(&mut self, line: core::fmt::Arguments<'_>) {
        self.0.line(line);
    }
}

/// One core's midstat.
struct App(Midstat<CoreLog>);

impl appliance::Middlebox for App {
    type Flow = midstat::Conn;

    fn init(&mut self, reg: &mut appliance::Registry) {
        self.0.init(reg)
    }

    fn on_event(
        &mut self,
        cx: &mut appliance::Ctx<'_, '_, midstat::Conn>,
        ev: appliance::Event,
        hook: appliance::Hook,
        side: appliance::Side,
    ) {
        self.0.on_event(cx, ev, hook, side)
    }

    fn on_timer(&mut self, cx: &mut appliance::Ctx<'_, '_, midstat::Conn>, id: u32) {
        self.0.on_timer(cx, id)
    }
}

impl Appliance for App {
    fn new(core: &CoreInfo) -> Self {
        App(Midstat::new(CoreLog(core.log)))
    }

    fn finish(&mut self, log: &mut Log) {
        log.line(format_args!("midstat: {} connections ended", self.0.ended));
    }
}

appliance::main!(App, SETTINGS);
