//! Source NAT, the mOS `nat` sample on the Ferrule monitor API: connections from an inside
//! IPv4 prefix leave from one public address with a port of their own, and the replies to
//! that address and port go back to the client's own address and port.
//!
//! * The client's first packet (the SYN) takes a port from this core's pool; every client
//!   packet leaves from `public:port`, every server packet goes back to the client's tuple.
//!   The monitor re-keys the flow on the rewritten tuple (its flow-extra table), so replies
//!   to `public:port` find it, and it fixes the checksums.
//! * **Ports per core.** Each core has its own pool (no locks). With several cores a port is
//!   taken only if the NIC's symmetric RSS sends the reply (`server:sport → public:port`) to
//!   this core's queue, as mOS's `GetRSSCPUCore` check does: the same Toeplitz hash and
//!   redirection table as the drivers (`drivers::toeplitz`), so replies meet their flow.
//! * **Timeouts.** A port returns to its pool at `CONN_END`: after the close, after a RST, or
//!   when the monitor's idle timeout ends a silent flow (`Config::idle_timeout_us`). Ports are
//!   handed out round-robin, so a freed port is the last to be reused.
//! * Connections from outside the prefix, IPv6 ones and those met when the pool is empty pass
//!   untranslated (the last are counted in `Stats::exhausted`, and their SYN is dropped).
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

use core::fmt::Arguments;
use core::net::{IpAddr, Ipv4Addr};

use drivers::toeplitz::{hash_ipv4_ports, queue_for, spread_reta};
use drivers::SYMMETRIC_RSS_KEY;
use monitor::{Ctx, Event, Hook, Middlebox, Registry, Side};
use sha2::{Digest, Sha256};

/// Where translated log lines go (the core's log ring in the image, stdout on a host).
pub trait Sink {
    /// One line.
    fn line(&mut self, line: Arguments<'_>);
}

/// What to translate and to what.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NatConfig {
    /// Inside prefix: clients whose address is in it are translated.
    pub inside: (Ipv4Addr, u8),
    /// The one public address they leave from.
    pub public: Ipv4Addr,
    /// First and last port handed out (inclusive).
    pub ports: (u16, u16),
}

impl NatConfig {
    /// `cargo ferrule gen`'s IPv4 clients (10.0.0.0/8) leave from 198.51.100.1 (TEST-NET-2),
    /// ports 1025 to 65534 as in mOS.
    pub const DEFAULT: NatConfig = NatConfig {
        inside: (Ipv4Addr::new(10, 0, 0, 0), 8),
        public: Ipv4Addr::new(198, 51, 100, 1),
        ports: (1025, 65534),
    };

    fn is_inside(&self, a: Ipv4Addr) -> bool {
        let bits = self.inside.1.min(32) as u32;
        let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
        u32::from(a) & mask == u32::from(self.inside.0) & mask
    }
}

/// One core's port pool: a bitmap of the 65 536 ports and a round-robin cursor.
#[derive(Debug)]
pub struct PortPool {
    used: [u64; 1024],
    next: u16,
    in_use: u32,
}

impl PortPool {
    /// An empty pool starting at `first`.
    pub const fn new(first: u16) -> Self {
        PortPool {
            used: [0; 1024],
            next: first,
            in_use: 0,
        }
    }

    fn is_used(&self, p: u16) -> bool {
        self.used[p as usize / 64] & (1 << (p % 64)) != 0
    }

    /// The next free port in `range` (round-robin) for which `ok` holds.
    pub fn alloc(&mut self, range: (u16, u16), mut ok: impl FnMut(u16) -> bool) -> Option<u16> {
        let (lo, hi) = range;
        if lo > hi {
            return None;
        }
        let n = hi as u32 - lo as u32 + 1;
        let mut p = self.next.clamp(lo, hi);
        for _ in 0..n {
            if !self.is_used(p) && ok(p) {
                self.used[p as usize / 64] |= 1 << (p % 64);
                self.in_use += 1;
                self.next = if p == hi { lo } else { p + 1 };
                return Some(p);
            }
            p = if p == hi { lo } else { p + 1 };
        }
        None
    }

    /// Give `p` back.
    pub fn free(&mut self, p: u16) {
        if self.is_used(p) {
            self.used[p as usize / 64] &= !(1 << (p % 64));
            self.in_use -= 1;
        }
    }

    /// Ports in use.
    pub fn in_use(&self) -> u32 {
        self.in_use
    }
}

/// Per-flow state: the public port of a translated flow, and what the monitor reassembled.
#[derive(Debug, Default)]
pub struct NatFlow {
    port: Option<u16>,
    /// The client's packets are not translated (outside the prefix, IPv6, pool empty).
    skip: bool,
    /// Per side (index: the side whose buffer it is): bytes read and their SHA-256.
    read: [(u64, Sha256); 2],
}

/// Lower-case hex of a digest.
struct Hex([u8; 32]);

impl core::fmt::Display for Hex {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

/// Counters of one core.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Flows given a public port.
    pub translated: u64,
    /// Flows whose port went back to the pool.
    pub released: u64,
    /// Flows refused a port because none was free (for this core).
    pub exhausted: u64,
}

/// The NAT middlebox of one core.
pub struct Nat<S: Sink> {
    cfg: NatConfig,
    core: u16,
    reta: Option<[u8; 128]>,
    pool: PortPool,
    stats: Stats,
    sink: S,
}

impl<S: Sink> Nat<S> {
    /// The NAT of core `core` of `cores` (RSS-aware port choice when `cores > 1`).
    pub fn new(cfg: NatConfig, core: usize, cores: usize, sink: S) -> Self {
        Nat {
            cfg,
            core: core as u16,
            reta: (cores > 1).then(|| spread_reta(cores as u16)),
            pool: PortPool::new(cfg.ports.0),
            stats: Stats::default(),
            sink,
        }
    }

    /// This core's counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// This core's pool.
    pub fn pool(&self) -> &PortPool {
        &self.pool
    }

    fn take_port(&mut self, server: (Ipv4Addr, u16)) -> Option<u16> {
        let (public, core, reta) = (self.cfg.public.octets(), self.core, self.reta);
        self.pool.alloc(self.cfg.ports, |p| {
            reta.is_none_or(|r| {
                let h = hash_ipv4_ports(&SYMMETRIC_RSS_KEY, public, server.0.octets(), p, server.1);
                queue_for(h, &r) == core
            })
        })
    }
}

/// Write `a:p` as the source (`src`) or destination of the IPv4 TCP frame `f`.
fn set(f: &mut [u8], l3: usize, l4: usize, src: bool, a: Ipv4Addr, p: u16) {
    let (at, pt) = if src {
        (l3 + 12, l4)
    } else {
        (l3 + 16, l4 + 2)
    };
    f[at..at + 4].copy_from_slice(&a.octets());
    f[pt..pt + 2].copy_from_slice(&p.to_be_bytes());
}

impl<S: Sink> Middlebox for Nat<S> {
    type Flow = NatFlow;

    fn init(&mut self, reg: &mut Registry) {
        reg.subscribe(Event::PKT_IN, Hook::Snd);
        reg.subscribe(Event::CONN_END, Hook::Any);
        reg.subscribe(Event::CONN_NEW_DATA, Hook::Any);
    }

    fn on_event(&mut self, cx: &mut Ctx<'_, '_, NatFlow>, ev: Event, _: Hook, side: Side) {
        let Some(flow) = cx.flow() else { return };
        let Ok(ep) = cx.endpoints(flow) else { return };
        let (IpAddr::V4(cip), IpAddr::V4(sip)) = (ep.client.0, ep.server.0) else {
            return;
        };
        if ev == Event::CONN_NEW_DATA || ev == Event::CONN_END {
            // The monitor's streams: what it reassembled from the frames it received.
            let mut buf = [0u8; 1024];
            for s in Side::BOTH {
                while let Ok(n @ 1..) = cx.peek(flow, s, &mut buf) {
                    if let Some(u) = cx.user() {
                        u.read[s.index()].0 += n as u64;
                        u.read[s.index()].1.update(&buf[..n]);
                    }
                }
            }
        }
        if ev == Event::CONN_END {
            let Some(u) = cx.user() else { return };
            let (sn, cn) = (u.read[1].0, u.read[0].0);
            let sh = Hex(u.read[1].1.finalize_reset().into());
            let ch = Hex(u.read[0].1.finalize_reset().into());
            if let Some(port) = u.port.take() {
                self.pool.free(port);
                self.stats.released += 1;
                let (pb, sp, cp) = (self.cfg.public, ep.server.1, ep.client.1);
                self.sink.line(format_args!(
                    "nat: {cip}:{cp} -> {pb}:{port} -> {sip}:{sp} ended c2s {sn} {sh} s2c {cn} {ch}"
                ));
            }
            return;
        }
        if ev != Event::PKT_IN {
            return;
        }
        let Some(st) = cx.user() else { return };
        if st.skip {
            return;
        }
        let port = match st.port {
            Some(p) => p,
            None if side == Side::Client && self.cfg.is_inside(cip) => {
                match self.take_port((sip, ep.server.1)) {
                    Some(p) => {
                        self.stats.translated += 1;
                        if let Some(u) = cx.user() {
                            u.port = Some(p);
                        }
                        p
                    }
                    None => {
                        self.stats.exhausted += 1;
                        if let Some(u) = cx.user() {
                            u.skip = true;
                        }
                        let _ = cx.drop_packet();
                        return;
                    }
                }
            }
            None => {
                st.skip = true;
                return;
            }
        };
        let Some(i) = cx.packet_info() else { return };
        let Ok(f) = cx.packet_mut() else { return };
        if side == Side::Client {
            set(f, i.l3_off, i.l4_off, true, self.cfg.public, port);
        } else {
            set(f, i.l3_off, i.l4_off, false, cip, ep.client.1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Null;
    impl Sink for Null {
        fn line(&mut self, _: Arguments<'_>) {}
    }

    #[test]
    fn the_default_prefix_is_gens_clients() {
        let c = NatConfig::DEFAULT;
        assert!(c.is_inside(Ipv4Addr::new(10, 1, 2, 3)));
        assert!(!c.is_inside(Ipv4Addr::new(11, 0, 0, 1)));
        assert!(!c.is_inside(Ipv4Addr::new(192, 168, 0, 1)));
        let all = NatConfig {
            inside: (Ipv4Addr::new(0, 0, 0, 0), 0),
            ..c
        };
        assert!(all.is_inside(Ipv4Addr::new(203, 0, 113, 9)));
    }

    #[test]
    fn the_pool_hands_ports_round_robin_and_takes_them_back() {
        let mut p = PortPool::new(1025);
        assert_eq!(p.alloc((1025, 1027), |_| true), Some(1025));
        assert_eq!(p.alloc((1025, 1027), |_| true), Some(1026));
        p.free(1025);
        assert_eq!(p.alloc((1025, 1027), |_| true), Some(1027));
        assert_eq!(p.alloc((1025, 1027), |_| true), Some(1025));
        assert_eq!(p.alloc((1025, 1027), |_| true), None);
        assert_eq!(p.in_use(), 3);
        p.free(1026);
        p.free(1026);
        assert_eq!(p.in_use(), 2);
        assert_eq!(p.alloc((1025, 1027), |x| x != 1026), None);
    }

    #[test]
    fn with_several_cores_replies_hash_to_the_ports_core() {
        // Each core's ports, hashed as the reply arrives (server -> public), select that
        // core's queue, per the drivers' Toeplitz code (an independent check of the choice).
        let server = (Ipv4Addr::new(192, 168, 7, 1), 443);
        for cores in [2usize, 3, 4] {
            let reta = spread_reta(cores as u16);
            for core in 0..cores {
                let mut n = Nat::new(NatConfig::DEFAULT, core, cores, Null);
                for _ in 0..20 {
                    let p = n.take_port(server).unwrap();
                    let h = hash_ipv4_ports(
                        &SYMMETRIC_RSS_KEY,
                        server.0.octets(),
                        NatConfig::DEFAULT.public.octets(),
                        server.1,
                        p,
                    );
                    assert_eq!(
                        queue_for(h, &reta) as usize,
                        core,
                        "{cores} cores, port {p}"
                    );
                }
            }
        }
        // One core: every port, in order.
        let mut n = Nat::new(NatConfig::DEFAULT, 0, 1, Null);
        assert_eq!(n.take_port(server), Some(1025));
        assert_eq!(n.take_port(server), Some(1026));
    }
}
