//! An inline appliance that takes no action: ports are paired (0↔1, 2↔3, ...) and every
//! frame received on one goes out of the other unchanged, TCP or not, through the monitor
//! (which follows every connection, so the cost per frame is the real one). It shows the
//! runtime's forwarding path and measures it: each core's summary gives the forwarding
//! cycles per frame. The run ends 3 s after the last frame (or after 60 s without any).
#![cfg_attr(target_os = "none", no_std, no_main)]

use appliance::{Appliance, CoreInfo, Ctx, Event, Exit, Hook, Middlebox, Mode, Settings, Side};

/// Inline; 4096-entry igb/ixgbe rings so a burst waits in the NIC (virtio-net uses 256).
const SETTINGS: Settings = Settings {
    mode: Mode::Inline,
    ring: 4096,
    chunks: 1024,
    stats_period_s: 0,
    exit: Exit::Idle {
        wait_first_s: 60,
        idle_s: 3,
    },
    ..Settings::DEFAULT
};

/// Subscribes to nothing: every verdict is `Forward`.
struct Passthrough;

impl Middlebox for Passthrough {
    type Flow = ();

    fn on_event(&mut self, _: &mut Ctx<'_, '_, ()>, _: Event, _: Hook, _: Side) {}
}

impl Appliance for Passthrough {
    fn new(_: &CoreInfo) -> Self {
        Passthrough
    }
}

appliance::main!(Passthrough, SETTINGS);
