//! The matcher appliance: tap mode, every NIC, one monitor per core; every occurrence of the
//! pattern in either direction of a TCP stream, also across segment boundaries, is one log
//! line, `match CLIENT SERVER c2s|s2c OFFSET` (OFFSET: the stream offset of its first byte),
//! written through the core's log. The pattern is fixed at build time: `FERRULE_PATTERN` as
//! hex (`cargo ferrule build|run|replay --pattern HEX` sets it), default `deadbeef4242`, the
//! needle `cargo ferrule gen --needle deadbeef4242` writes.
#![cfg_attr(target_os = "none", no_std, no_main)]

use core::net::SocketAddr;

use appliance::{Appliance, CoreInfo, Ctx, Event, Exit, Hook, Log, Middlebox, Registry};
use appliance::{Settings, Side};
use matcher::{hex_pattern, Found, Match, Matcher, Scan, MAX_PATTERN};

/// The pattern's hex digits.
const HEX: &str = match option_env!("FERRULE_PATTERN") {
    Some(p) if !p.is_empty() => p,
    _ => "deadbeef4242",
};
/// The pattern, parsed at compile time (a bad one fails the build).
const PATTERN: ([u8; MAX_PATTERN], usize) = hex_pattern(HEX);

/// Tap mode; the run ends 3 s after the last frame (or after 60 s without any).
const SETTINGS: Settings = Settings {
    exit: Exit::Idle {
        wait_first_s: 60,
        idle_s: 3,
    },
    stats_period_s: 0,
    ..Settings::DEFAULT
};

/// Writes each match to the core's log.
struct CoreLog(Log);

impl Found for CoreLog {
    fn found(&mut self, m: &Match) {
        let Some(e) = m.endpoints else { return };
        // A side's buffer holds what it receives: the server's holds client→server bytes.
        let dir = match m.side {
            Side::Server => "c2s",
            Side::Client => "s2c",
        };
        self.0.line(format_args!(
            "match {} {} {} {}",
            SocketAddr::new(e.client.0, e.client.1),
            SocketAddr::new(e.server.0, e.server.1),
            dir,
            m.offset
        ));
    }
}

/// One core's matcher.
struct App(Matcher<CoreLog>, usize);

impl Middlebox for App {
    type Flow = Scan;

    fn init(&mut self, reg: &mut Registry) {
        self.0.init(reg)
    }

    fn on_event(&mut self, cx: &mut Ctx<'_, '_, Scan>, ev: Event, hook: Hook, side: Side) {
        self.0.on_event(cx, ev, hook, side)
    }
}

impl Appliance for App {
    fn new(core: &CoreInfo) -> Self {
        let (bytes, len) = PATTERN;
        match Matcher::new(&bytes[..len], CoreLog(core.log)) {
            Some(m) => App(m, core.id),
            // hex_pattern already refused an empty or long pattern at compile time.
            None => unreachable!("pattern checked at compile time"),
        }
    }

    fn finish(&mut self, log: &mut Log) {
        log.line(format_args!(
            "matcher: core {} pattern {} matches {}",
            self.1, HEX, self.0.total
        ));
    }
}

appliance::main!(App, SETTINGS);
