//! Hand-built TCP connections for the sample tests (host tests of the sample crates and
//! `tests/tests/samples.rs`): Ethernet + IPv4 or IPv6 + TCP with valid checksums, each
//! direction's sequence numbers kept.
#![allow(dead_code)]

use std::net::{IpAddr, SocketAddr};

/// A frame and whether the client sent it.
pub type Sent = (bool, Vec<u8>);

/// TCP flags.
pub const FIN: u8 = 0x01;
/// SYN.
pub const SYN: u8 = 0x02;
/// RST.
pub const RST: u8 = 0x04;
/// PSH.
pub const PSH: u8 = 0x08;
/// ACK.
pub const ACK: u8 = 0x10;

fn sum(data: &[u8], mut acc: u32) -> u32 {
    for c in data.chunks(2) {
        acc += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    acc
}

fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

/// One TCP segment from `src` to `dst` in an Ethernet frame (client MAC 02:..:01, server
/// MAC 02:..:02, by `from_client`).
pub fn segment(
    src: SocketAddr,
    dst: SocketAddr,
    from_client: bool,
    seq: u32,
    ack: u32,
    flags: u8,
    payload: &[u8],
) -> Vec<u8> {
    let (cm, sm) = ([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
    let (smac, dmac) = if from_client { (cm, sm) } else { (sm, cm) };
    let mut tcp = vec![0u8; 20];
    tcp[0..2].copy_from_slice(&src.port().to_be_bytes());
    tcp[2..4].copy_from_slice(&dst.port().to_be_bytes());
    tcp[4..8].copy_from_slice(&seq.to_be_bytes());
    tcp[8..12].copy_from_slice(&(if flags & ACK != 0 { ack } else { 0 }).to_be_bytes());
    tcp[12] = 5 << 4;
    tcp[13] = flags;
    tcp[14..16].copy_from_slice(&65535u16.to_be_bytes());
    tcp.extend_from_slice(payload);
    let tlen = tcp.len() as u32;
    let mut f = Vec::new();
    f.extend_from_slice(&dmac);
    f.extend_from_slice(&smac);
    match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            f.extend_from_slice(&[0x08, 0x00]);
            let mut ip = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 6, 0, 0];
            ip[2..4].copy_from_slice(&((20 + tlen) as u16).to_be_bytes());
            ip.extend_from_slice(&s.octets());
            ip.extend_from_slice(&d.octets());
            let c = fold(sum(&ip, 0));
            ip[10..12].copy_from_slice(&c.to_be_bytes());
            let pseudo = sum(&s.octets(), sum(&d.octets(), 6 + tlen));
            let c = fold(sum(&tcp, pseudo));
            tcp[16..18].copy_from_slice(&c.to_be_bytes());
            f.extend(ip);
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            f.extend_from_slice(&[0x86, 0xdd]);
            let mut ip = vec![0x60, 0, 0, 0, 0, 0, 6, 64];
            ip[4..6].copy_from_slice(&(tlen as u16).to_be_bytes());
            ip.extend_from_slice(&s.octets());
            ip.extend_from_slice(&d.octets());
            let pseudo = sum(&s.octets(), sum(&d.octets(), 6 + tlen));
            let c = fold(sum(&tcp, pseudo));
            tcp[16..18].copy_from_slice(&c.to_be_bytes());
            f.extend(ip);
        }
        _ => panic!("mixed address families"),
    }
    f.extend(tcp);
    f
}

/// One connection: its endpoints and each side's next sequence number.
#[derive(Clone, Debug)]
pub struct Conn {
    /// The client (SYN sender).
    pub client: SocketAddr,
    /// The server.
    pub server: SocketAddr,
    /// Client's next sequence number.
    pub cseq: u32,
    /// Server's next sequence number.
    pub sseq: u32,
}

impl Conn {
    /// A connection between `client` and `server` (e.g. "10.0.0.1:1000").
    pub fn new(client: &str, server: &str) -> Conn {
        Conn {
            client: client.parse().unwrap(),
            server: server.parse().unwrap(),
            cseq: 1_000_000,
            sseq: 7_000_000,
        }
    }

    /// A client segment (advances the client's sequence by its length, SYN and FIN).
    pub fn c(&mut self, flags: u8, payload: &[u8]) -> Sent {
        let f = segment(
            self.client,
            self.server,
            true,
            self.cseq,
            self.sseq,
            flags,
            payload,
        );
        self.cseq = self
            .cseq
            .wrapping_add(payload.len() as u32 + u32::from(flags & (SYN | FIN) != 0));
        (true, f)
    }

    /// A server segment.
    pub fn s(&mut self, flags: u8, payload: &[u8]) -> Sent {
        let f = segment(
            self.server,
            self.client,
            false,
            self.sseq,
            self.cseq,
            flags,
            payload,
        );
        self.sseq = self
            .sseq
            .wrapping_add(payload.len() as u32 + u32::from(flags & (SYN | FIN) != 0));
        (false, f)
    }

    /// SYN, SYN/ACK, ACK.
    pub fn handshake(&mut self) -> Vec<Sent> {
        vec![self.c(SYN, b""), self.s(SYN | ACK, b""), self.c(ACK, b"")]
    }

    /// Client FIN, server ACK.
    pub fn client_fin(&mut self) -> Vec<Sent> {
        vec![self.c(FIN | ACK, b""), self.s(ACK, b"")]
    }

    /// Server FIN, client ACK.
    pub fn server_fin(&mut self) -> Vec<Sent> {
        vec![self.s(FIN | ACK, b""), self.c(ACK, b"")]
    }
}
