//! The NAT over a connection built here, both directions as the two sides of the box see
//! them: the client's packets leave from the public tuple, the server's replies to it go back
//! to the client, the port returns to the pool at the end. Checksums are checked by the
//! test's own sum.

use std::cell::RefCell;
use std::net::Ipv4Addr;
use std::rc::Rc;

use monitor::{Config, HostStorage, Monitor, Verdict};
use nat::{Nat, NatConfig, Sink};
use sha2::{Digest, Sha256};

#[derive(Clone, Default)]
struct Lines(Rc<RefCell<Vec<String>>>);

impl Sink for Lines {
    fn line(&mut self, l: std::fmt::Arguments<'_>) {
        self.0.borrow_mut().push(l.to_string());
    }
}

fn sum(d: &[u8]) -> u32 {
    d.chunks(2)
        .map(|w| u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)]) as u32)
        .sum()
}

fn fold(mut s: u32) -> u16 {
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

type Ep = (Ipv4Addr, u16);

/// An untagged IPv4 TCP frame with valid checksums.
fn frame(src: Ep, dst: Ep, seq: u32, ack: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut t = Vec::new();
    t.extend_from_slice(&src.1.to_be_bytes());
    t.extend_from_slice(&dst.1.to_be_bytes());
    t.extend_from_slice(&seq.to_be_bytes());
    t.extend_from_slice(&ack.to_be_bytes());
    t.extend_from_slice(&[0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    t.extend_from_slice(payload);
    let mut ps = src.0.octets().to_vec();
    ps.extend_from_slice(&dst.0.octets());
    ps.extend_from_slice(&[0, 6]);
    ps.extend_from_slice(&(t.len() as u16).to_be_bytes());
    let c = fold(sum(&ps) + sum(&t));
    t[16..18].copy_from_slice(&c.to_be_bytes());
    let mut ip = vec![0x45, 0];
    ip.extend_from_slice(&(20 + t.len() as u16).to_be_bytes());
    ip.extend_from_slice(&[0, 1, 0x40, 0, 64, 6, 0, 0]);
    ip.extend_from_slice(&src.0.octets());
    ip.extend_from_slice(&dst.0.octets());
    let c = fold(sum(&ip));
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 8, 0];
    f.extend(ip);
    f.extend(t);
    f
}

/// (src, dst) of a frame, after checking its IPv4 and TCP checksums.
fn tuple(f: &[u8]) -> (Ep, Ep) {
    let ip = &f[14..34];
    assert_eq!(fold(sum(ip)), 0, "IPv4 header checksum");
    let t = &f[34..];
    let mut ps = ip[12..20].to_vec();
    ps.extend_from_slice(&[0, 6]);
    ps.extend_from_slice(&(t.len() as u16).to_be_bytes());
    assert_eq!(fold(sum(&ps) + sum(t)), 0, "TCP checksum");
    let a = |o: usize| Ipv4Addr::new(ip[o], ip[o + 1], ip[o + 2], ip[o + 3]);
    let p = |o: usize| u16::from_be_bytes([t[o], t[o + 1]]);
    ((a(12), p(0)), (a(16), p(2)))
}

const SYN: u8 = 2;
const ACK: u8 = 16;
const FIN: u8 = 1;

#[test]
fn a_connection_is_translated_both_ways_and_its_port_freed() {
    let lines = Lines::default();
    let cfg = NatConfig {
        ports: (2000, 2001),
        ..NatConfig::DEFAULT
    };
    let mut st: HostStorage<nat::NatFlow> = HostStorage::new(16, 64, 0);
    let mcfg = Config {
        inline: true,
        ..Config::DEFAULT
    };
    let mut m = Monitor::new(Nat::new(cfg, 0, 1, lines.clone()), mcfg, st.storage()).unwrap();
    let cli: Ep = (Ipv4Addr::new(10, 9, 8, 7), 40000);
    let srv: Ep = (Ipv4Addr::new(192, 168, 5, 1), 80);
    let public: Ep = (Ipv4Addr::new(198, 51, 100, 1), 2000);
    let (ci, si) = (1000u32, 7000u32);
    let go = |m: &mut Monitor<'_, Nat<Lines>>, f: Vec<u8>, want: (Ep, Ep)| {
        m.begin_batch(0);
        match m.frame(&f, 0) {
            Verdict::Rewritten(b) => assert_eq!(tuple(b), want),
            v => panic!("{v:?}"),
        }
        m.end_batch();
    };
    let (req, resp) = (b"GET / HTTP/1.0\r\n\r\n", b"HTTP/1.0 200 OK\r\n\r\nbody");
    let (rq, rs) = (req.len() as u32, resp.len() as u32);
    go(&mut m, frame(cli, srv, ci, 0, SYN, b""), (public, srv));
    go(
        &mut m,
        frame(srv, public, si, ci + 1, SYN | ACK, b""),
        (srv, cli),
    );
    go(
        &mut m,
        frame(cli, srv, ci + 1, si + 1, ACK, b""),
        (public, srv),
    );
    go(
        &mut m,
        frame(cli, srv, ci + 1, si + 1, ACK, req),
        (public, srv),
    );
    go(
        &mut m,
        frame(srv, public, si + 1, ci + 1 + rq, ACK, resp),
        (srv, cli),
    );
    go(
        &mut m,
        frame(cli, srv, ci + 1 + rq, si + 1 + rs, FIN | ACK, b""),
        (public, srv),
    );
    go(
        &mut m,
        frame(srv, public, si + 1 + rs, ci + 2 + rq, FIN | ACK, b""),
        (srv, cli),
    );
    assert_eq!(m.middlebox().pool().in_use(), 1);
    go(
        &mut m,
        frame(cli, srv, ci + 2 + rq, si + 2 + rs, ACK, b""),
        (public, srv),
    );
    assert_eq!(m.flow_count(), 0);
    assert_eq!(m.middlebox().pool().in_use(), 0);
    let s = m.middlebox().stats();
    assert_eq!((s.translated, s.released, s.exhausted), (1, 1, 0));
    assert_eq!(
        *lines.0.borrow(),
        vec![format!(
            "nat: 10.9.8.7:40000 -> 198.51.100.1:2000 -> 192.168.5.1:80 ended c2s {rq} {:x} s2c {rs} {:x}",
            Sha256::digest(req),
            Sha256::digest(resp)
        )]
    );
}

#[test]
fn outside_clients_pass_and_an_empty_pool_drops_the_syn() {
    let cfg = NatConfig {
        ports: (3000, 3000),
        ..NatConfig::DEFAULT
    };
    let mut st: HostStorage<nat::NatFlow> = HostStorage::new(16, 64, 0);
    let mcfg = Config {
        inline: true,
        ..Config::DEFAULT
    };
    let mut m = Monitor::new(Nat::new(cfg, 0, 1, Lines::default()), mcfg, st.storage()).unwrap();
    let srv: Ep = (Ipv4Addr::new(192, 168, 5, 1), 80);
    m.begin_batch(0);
    // Outside the prefix: untouched.
    let out = frame((Ipv4Addr::new(172, 16, 0, 1), 5000), srv, 1, 0, SYN, b"");
    assert_eq!(m.frame(&out, 0), Verdict::Forward);
    // The one port goes to the first inside client, the second is refused.
    let a = frame((Ipv4Addr::new(10, 0, 0, 1), 5000), srv, 1, 0, SYN, b"");
    assert!(matches!(m.frame(&a, 0), Verdict::Rewritten(_)));
    let b = frame((Ipv4Addr::new(10, 0, 0, 2), 5000), srv, 1, 0, SYN, b"");
    assert_eq!(m.frame(&b, 0), Verdict::Drop);
    m.end_batch();
    let s = m.middlebox().stats();
    assert_eq!((s.translated, s.exhausted), (1, 1));
}

#[test]
fn an_idle_connection_gives_its_port_back_at_the_timeout() {
    let mut st: HostStorage<nat::NatFlow> = HostStorage::new(16, 64, 0);
    let mcfg = Config {
        inline: true,
        idle_timeout_us: 60_000_000,
        ..Config::DEFAULT
    };
    let lines = Lines::default();
    let nat = Nat::new(NatConfig::DEFAULT, 0, 1, lines.clone());
    let mut m = Monitor::new(nat, mcfg, st.storage()).unwrap();
    let cli: Ep = (Ipv4Addr::new(10, 0, 0, 9), 6000);
    let srv: Ep = (Ipv4Addr::new(192, 168, 5, 1), 443);
    m.begin_batch(1_000_000);
    assert!(matches!(
        m.frame(&frame(cli, srv, 1, 0, SYN, b""), 1_000_000),
        Verdict::Rewritten(_)
    ));
    m.end_batch();
    m.tick(60_000_000);
    assert_eq!(m.middlebox().pool().in_use(), 1, "not idle for 60 s yet");
    // The idle sweep visits every slot once per quarter of the timeout.
    m.tick(61_000_000 + 15_000_000);
    assert_eq!(m.middlebox().pool().in_use(), 0);
    assert_eq!(m.counters().flows_timed_out, 1);
    assert_eq!(lines.0.borrow().len(), 1);
    assert!(lines.0.borrow()[0]
        .starts_with("nat: 10.0.0.9:6000 -> 198.51.100.1:1025 -> 192.168.5.1:443 ended c2s 0 "));
}
