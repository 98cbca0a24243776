//! An inline appliance that resets every connection whose client→server stream contains
//! `ATTACK` (also across segment boundaries): `Ctx::reset_conn` sends a RST to each endpoint
//! and ends the flow. Prints `resetter: reset CLIENT -> SERVER at OFFSET` per reset, and the
//! run ends 3 s after the last frame.
#![cfg_attr(target_os = "none", no_std, no_main)]

use appliance::{Appliance, CoreInfo, Ctx, Event, Exit, Hook, Log, Middlebox, Mode, Registry};
use appliance::{Settings, Side};

const PATTERN: &[u8] = b"ATTACK";

const SETTINGS: Settings = Settings {
    mode: Mode::Inline,
    chunks: 256,
    stats_period_s: 0,
    exit: Exit::Idle {
        wait_first_s: 60,
        idle_s: 3,
    },
    ..Settings::DEFAULT
};

/// Scans each client stream once, keeping `PATTERN.len() - 1` bytes of overlap.
struct Resetter(Log);

impl Middlebox for Resetter {
    /// Where the scan of the client stream resumes.
    type Flow = u64;

    fn init(&mut self, reg: &mut Registry) {
        reg.subscribe(Event::CONN_NEW_DATA, Hook::Rcv);
    }

    fn on_event(&mut self, cx: &mut Ctx<'_, '_, u64>, _: Event, _: Hook, side: Side) {
        let Some(flow) = cx.flow() else { return };
        if side != Side::Server {
            return;
        }
        let mut from = cx.user().map_or(0, |f| *f);
        let mut buf = [0u8; 512];
        while let Ok(n @ 1..) = cx.ppeek(flow, side, from, &mut buf) {
            if let Some(i) = buf[..n].windows(PATTERN.len()).position(|w| w == PATTERN) {
                let at = from + i as u64;
                if cx.reset_conn(flow).is_ok() {
                    if let Ok(ep) = cx.endpoints(flow) {
                        let (c, s) = (ep.client, ep.server);
                        self.0.line(format_args!(
                            "resetter: reset {}:{} -> {}:{} at {at}",
                            c.0, c.1, s.0, s.1
                        ));
                    }
                }
                return;
            }
            // Keep the last bytes that could start a match.
            let step = (n + 1).saturating_sub(PATTERN.len()).max(1);
            if n < PATTERN.len() {
                break;
            }
            from += step as u64;
        }
        if let Some(f) = cx.user() {
            *f = from;
        }
    }
}

impl Appliance for Resetter {
    fn new(core: &CoreInfo) -> Self {
        Resetter(core.log)
    }
}

appliance::main!(Resetter, SETTINGS);
