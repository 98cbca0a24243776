//! {{name}}: a Ferrule middlebox. It counts the bytes of every TCP connection in each
//! direction and logs one line per connection when it ends:
//!
//! ```text
//! conn CLIENT SERVER c2s BYTES s2c BYTES
//! ```
//!
//! and, at the end of a run, one `{{name}}: core C: N connections` line per core.
//!
//! The same file is the appliance image (`cargo ferrule build`, `cargo ferrule run`) and a
//! host tool over captures (`cargo ferrule replay FILE`, `cargo run --release -- FILE`).
#![cfg_attr(target_os = "none", no_std, no_main)]

use core::net::SocketAddr;

use appliance::{
    Appliance, CoreInfo, Ctx, Event, Exit, FlowHandle, Hook, Log, Middlebox, Registry, Settings,
    Side,
};

/// Fixed at build time. `Exit::Idle` ends a run 3 s after the last frame (or after 60 s with
/// none), which suits `cargo ferrule run` and tests; an appliance on hardware wants
/// `Exit::Never`. For inline (bump-in-the-wire) mode, set `mode: appliance::Mode::Inline`.
///
/// `mgmt`: metrics over HTTP (and IPFIX records) on a management NIC when built by
/// `cargo ferrule run --mgmt-forward PORT [--ipfix-to PORT]`; on hardware, set an
/// `appliance::mgmt::Mgmt` of your own (NIC, address, allowlist, collector).
const SETTINGS: Settings = Settings {
    exit: Exit::Idle {
        wait_first_s: 60,
        idle_s: 3,
    },
    mgmt: appliance::mgmt::Mgmt::from_build_env(
        option_env!("FERRULE_MGMT"),
        option_env!("FERRULE_IPFIX_PORT"),
    ),
    ..Settings::DEFAULT
};

/// Per-connection state: the bytes each side has received (`Side::Server` receives the
/// client→server bytes).
#[derive(Default)]
pub struct Conn {
    received: [u64; 2],
}

/// One instance per core, built on that core by the runtime.
pub struct ByteCount {
    log: Log,
    core: usize,
    conns: u64,
    buf: [u8; 2048],
}

impl Appliance for ByteCount {
    fn new(core: &CoreInfo) -> Self {
        ByteCount {
            log: core.log,
            core: core.id,
            conns: 0,
            buf: [0; 2048],
        }
    }

    fn finish(&mut self, log: &mut Log) {
        log.line(format_args!(
            "{{name}}: core {}: {} connections",
            self.core, self.conns
        ));
    }
}

impl ByteCount {
    /// Reads what `side` received since the last call and counts it.
    fn count(&mut self, cx: &mut Ctx<'_, '_, Conn>, flow: FlowHandle, side: Side) {
        while let Ok(n) = cx.peek(flow, side, &mut self.buf) {
            if n == 0 {
                break;
            }
            if let Some(c) = cx.user() {
                c.received[side.index()] += n as u64;
            }
        }
    }
}

impl Middlebox for ByteCount {
    type Flow = Conn;

    fn init(&mut self, reg: &mut Registry) {
        reg.subscribe(Event::CONN_NEW_DATA, Hook::Rcv);
        reg.subscribe(Event::CONN_END, Hook::Any);
    }

    fn on_event(&mut self, cx: &mut Ctx<'_, '_, Conn>, ev: Event, _hook: Hook, side: Side) {
        let Some(flow) = cx.flow() else { return };
        if ev == Event::CONN_NEW_DATA {
            self.count(cx, flow, side);
        } else if ev == Event::CONN_END {
            for s in Side::BOTH {
                self.count(cx, flow, s);
            }
            let Ok(ends) = cx.endpoints(flow) else { return };
            let [s2c, c2s] = cx.user().map_or([0, 0], |c| c.received);
            self.conns += 1;
            self.log.line(format_args!(
                "conn {} {} c2s {} s2c {}",
                SocketAddr::new(ends.client.0, ends.client.1),
                SocketAddr::new(ends.server.0, ends.server.1),
                c2s,
                s2c
            ));
        }
    }
}

appliance::main!(ByteCount, SETTINGS);
