//! The simple_firewall appliance: inline between paired ports (0↔1, ...), the rules of the
//! file given to `cargo ferrule build|run --rules FILE` (else `default.rules`) built in.
//! Frames of connections a DROP rule matches are dropped, both directions; everything else is
//! forwarded unchanged. Core 0 prints the rule table with its counts every second (mOS's
//! `DumpFWRuleTable`), and once more at the end, through its log.
#![cfg_attr(target_os = "none", no_std, no_main)]

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use core::sync::atomic::AtomicU64;

use appliance::{Appliance, Config, CoreInfo, Ctx, Event, Exit, Hook, Log, Middlebox};
use appliance::{Mode, Registry, Settings, Side};
use simple_firewall::{Action, Decision, Firewall, Net, Out, Rule, Table};

include!(concat!(env!("OUT_DIR"), "/rules.rs"));

/// Inline; every connection is decided at its SYN, so no mid-stream pickup; no buffering.
const SETTINGS: Settings = Settings {
    mode: Mode::Inline,
    ring: 4096,
    chunks: 64,
    stats_period_s: 0,
    exit: Exit::Idle {
        wait_first_s: 60,
        idle_s: 3,
    },
    monitor: Config {
        pickup: false,
        ..Config::DEFAULT
    },
    ..Settings::DEFAULT
};

/// The core's log.
struct CoreLog(Log);

impl Out for CoreLog {
    fn line(&mut self, line: core::fmt::Arguments<'_>) {
        self.0.line(line);
    }
}

/// One core's firewall.
struct App(Firewall<'static, CoreLog>, usize);

impl Middlebox for App {
    type Flow = Decision;

    fn init(&mut self, reg: &mut Registry) {
        self.0.init(reg)
    }

    fn on_event(&mut self, cx: &mut Ctx<'_, '_, Decision>, ev: Event, hook: Hook, side: Side) {
        self.0.on_event(cx, ev, hook, side)
    }

    fn on_timer(&mut self, cx: &mut Ctx<'_, '_, Decision>, id: u32) {
        self.0.on_timer(cx, id)
    }
}

impl Appliance for App {
    fn new(core: &CoreInfo) -> Self {
        let table = Table {
            rules: &RULES,
            counts: &COUNTS,
        };
        if core.id == 0 {
            let mut log = core.log;
            log.line(format_args!(
                "simple_firewall: {} rules from {RULES_FILE}",
                RULES.len()
            ));
        }
        App(
            Firewall::new(table, CoreLog(core.log), core.id == 0),
            core.id,
        )
    }

    fn finish(&mut self, log: &mut Log) {
        if self.0.prints {
            self.0.print();
        }
        log.line(format_args!(
            "simple_firewall: core {} connections dropped {} frames dropped {}",
            self.1, self.0.conns_dropped, self.0.frames_dropped
        ));
    }
}

appliance::main!(App, SETTINGS);
