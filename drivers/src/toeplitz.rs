//! Software Toeplitz (RSS) hash and queue prediction, matching what igb/ixgbe compute.
//!
//! Input layouts follow Microsoft's RSS specification, as the NICs implement it: source
//! address, destination address, then (for TCP/UDP) source port, destination port, all in
//! network byte order. With [`crate::SYMMETRIC_RSS_KEY`] the hash is the same for both
//! directions of a connection. Pure functions: no allocation, no panics on any frame.

/// RSS hash type as reported in the advanced receive descriptor (`pkt_info[3:0]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum HashType {
    /// No hash computed (non-IP frame, or the type is disabled).
    None = 0,
    /// IPv4 + TCP 4-tuple.
    TcpIpv4 = 1,
    /// IPv4 2-tuple.
    Ipv4 = 2,
    /// IPv6 + TCP 4-tuple.
    TcpIpv6 = 3,
    /// IPv6 2-tuple with extension-header addresses (QEMU's igb reports this type for
    /// plain IPv6 too; the hash input is the same without extension headers).
    Ipv6Ex = 4,
    /// IPv6 2-tuple.
    Ipv6 = 5,
    /// IPv6 + TCP 4-tuple, extension-header variant (what QEMU's igb reports for TCPv6).
    TcpIpv6Ex = 6,
    /// IPv4 + UDP 4-tuple.
    UdpIpv4 = 7,
    /// IPv6 + UDP 4-tuple.
    UdpIpv6 = 8,
}

impl HashType {
    /// Decodes the descriptor's 4-bit RSS type (unknown codes map to `None`).
    pub fn from_descriptor(code: u8) -> HashType {
        match code & 0xF {
            1 => HashType::TcpIpv4,
            2 => HashType::Ipv4,
            3 => HashType::TcpIpv6,
            4 => HashType::Ipv6Ex,
            5 => HashType::Ipv6,
            6 => HashType::TcpIpv6Ex,
            7 => HashType::UdpIpv4,
            8 => HashType::UdpIpv6,
            _ => HashType::None,
        }
    }
}

/// Which inputs the NIC hashes (the MRQC field-enable bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashFields {
    /// TCP over IPv4: 4-tuple.
    pub tcp_ipv4: bool,
    /// Other IPv4: 2-tuple.
    pub ipv4: bool,
    /// TCP over IPv6: 4-tuple.
    pub tcp_ipv6: bool,
    /// Other IPv6: 2-tuple.
    pub ipv6: bool,
    /// UDP over IPv4: 4-tuple.
    pub udp_ipv4: bool,
    /// UDP over IPv6: 4-tuple.
    pub udp_ipv6: bool,
}

impl HashFields {
    /// Everything on: what igb and ixgbe are configured with by this crate.
    pub const ALL: HashFields = HashFields {
        tcp_ipv4: true,
        ipv4: true,
        tcp_ipv6: true,
        ipv6: true,
        udp_ipv4: true,
        udp_ipv6: true,
    };
}

/// Toeplitz hash of `input` under `key`. Bits of `input` past `key.len() * 8 - 32` are
/// ignored (the key must be at least 4 bytes longer than the input: 40 covers IPv6 4-tuples).
pub fn hash(key: &[u8], input: &[u8]) -> u32 {
    if key.len() < 4 {
        return 0;
    }
    let mut result = 0u32;
    // `window` holds key bits [bit, bit + 32) at the top of a u64 shift register.
    let mut window: u64 = u32::from_be_bytes([key[0], key[1], key[2], key[3]]) as u64;
    for (i, &byte) in input.iter().enumerate() {
        let next = key.get(i + 4).copied().unwrap_or(0);
        window = (window << 8) | next as u64;
        // window now holds 40 bits: key bits [bit, bit + 40).
        for b in 0..8 {
            if byte & (0x80 >> b) != 0 {
                result ^= (window >> (8 - b)) as u32;
            }
        }
        window &= 0xFF_FFFF_FFFF >> 8;
    }
    result
}

/// Hash of an IPv4 2-tuple (addresses in network byte order).
pub fn hash_ipv4(key: &[u8], src: [u8; 4], dst: [u8; 4]) -> u32 {
    let mut b = [0u8; 8];
    b[..4].copy_from_slice(&src);
    b[4..].copy_from_slice(&dst);
    hash(key, &b)
}

/// Hash of an IPv4 4-tuple (TCP or UDP).
pub fn hash_ipv4_ports(key: &[u8], src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> u32 {
    let mut b = [0u8; 12];
    b[..4].copy_from_slice(&src);
    b[4..8].copy_from_slice(&dst);
    b[8..10].copy_from_slice(&sport.to_be_bytes());
    b[10..].copy_from_slice(&dport.to_be_bytes());
    hash(key, &b)
}

/// Hash of an IPv6 2-tuple.
pub fn hash_ipv6(key: &[u8], src: [u8; 16], dst: [u8; 16]) -> u32 {
    let mut b = [0u8; 32];
    b[..16].copy_from_slice(&src);
    b[16..].copy_from_slice(&dst);
    hash(key, &b)
}

/// Hash of an IPv6 4-tuple (TCP or UDP).
pub fn hash_ipv6_ports(key: &[u8], src: [u8; 16], dst: [u8; 16], sport: u16, dport: u16) -> u32 {
    let mut b = [0u8; 36];
    b[..16].copy_from_slice(&src);
    b[16..32].copy_from_slice(&dst);
    b[32..34].copy_from_slice(&sport.to_be_bytes());
    b[34..].copy_from_slice(&dport.to_be_bytes());
    hash(key, &b)
}

/// A redirection table spreading entries round-robin over `queues` (clamped to 1..=16).
pub fn spread_reta(queues: u16) -> [u8; 128] {
    let q = queues.clamp(1, 16) as usize;
    let mut reta = [0u8; 128];
    for (k, e) in reta.iter_mut().enumerate() {
        *e = (k % q) as u8;
    }
    reta
}

/// The queue a hash selects: `reta[hash & 0x7F]`.
pub fn queue_for(hash: u32, reta: &[u8; 128]) -> u16 {
    (reta[(hash & 0x7F) as usize] & 0x0F) as u16
}

fn be16(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(off)?, *b.get(off + 1)?]))
}

/// Computes the RSS hash the NIC would for an Ethernet frame: parses Ethernet (one optional
/// 802.1Q tag), IPv4 (fragments hash as 2-tuple) or IPv6 (TCP/UDP only directly after the
/// fixed header; otherwise 2-tuple). Returns `(0, HashType::None)` for anything else.
pub fn frame_hash(key: &[u8], fields: HashFields, frame: &[u8]) -> (u32, HashType) {
    let none = (0, HashType::None);
    let Some(mut ethertype) = be16(frame, 12) else {
        return none;
    };
    let mut l3 = 14;
    if ethertype == 0x8100 {
        let Some(t) = be16(frame, 16) else {
            return none;
        };
        ethertype = t;
        l3 = 18;
    }
    match ethertype {
        0x0800 => {
            let Some(ip) = frame.get(l3..l3 + 20) else {
                return none;
            };
            if ip[0] >> 4 != 4 {
                return none;
            }
            let ihl = (ip[0] & 0xF) as usize * 4;
            let src = [ip[12], ip[13], ip[14], ip[15]];
            let dst = [ip[16], ip[17], ip[18], ip[19]];
            let frag = u16::from_be_bytes([ip[6], ip[7]]) & 0x3FFF != 0;
            let proto = ip[9];
            let l4 = l3 + ihl;
            if !frag && ihl >= 20 {
                let ports = be16(frame, l4).zip(be16(frame, l4 + 2));
                if let Some((sp, dp)) = ports {
                    if proto == 6 && fields.tcp_ipv4 {
                        return (hash_ipv4_ports(key, src, dst, sp, dp), HashType::TcpIpv4);
                    }
                    if proto == 17 && fields.udp_ipv4 {
                        return (hash_ipv4_ports(key, src, dst, sp, dp), HashType::UdpIpv4);
                    }
                }
            }
            if fields.ipv4 {
                return (hash_ipv4(key, src, dst), HashType::Ipv4);
            }
            none
        }
        0x86DD => {
            let Some(ip) = frame.get(l3..l3 + 40) else {
                return none;
            };
            if ip[0] >> 4 != 6 {
                return none;
            }
            let mut src = [0u8; 16];
            let mut dst = [0u8; 16];
            src.copy_from_slice(&ip[8..24]);
            dst.copy_from_slice(&ip[24..40]);
            let next = ip[6];
            let l4 = l3 + 40;
            if let Some((sp, dp)) = be16(frame, l4).zip(be16(frame, l4 + 2)) {
                if next == 6 && fields.tcp_ipv6 {
                    return (hash_ipv6_ports(key, src, dst, sp, dp), HashType::TcpIpv6);
                }
                if next == 17 && fields.udp_ipv6 {
                    return (hash_ipv6_ports(key, src, dst, sp, dp), HashType::UdpIpv6);
                }
            }
            if fields.ipv6 {
                return (hash_ipv6(key, src, dst), HashType::Ipv6);
            }
            none
        }
        _ => none,
    }
}

/// Predicts the receive queue of `frame`: non-hashed frames go to queue 0, as on igb/ixgbe.
pub fn predict_queue(key: &[u8], reta: &[u8; 128], fields: HashFields, frame: &[u8]) -> u16 {
    match frame_hash(key, fields, frame) {
        (_, HashType::None) => 0,
        (h, _) => queue_for(h, reta),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SYMMETRIC_RSS_KEY;

    /// Microsoft's standard RSS key (the verification suite's key).
    const MS_KEY: [u8; 40] = [
        0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3, 0x8f,
        0xb0, 0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30,
        0xf2, 0x0c, 0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa,
    ];

    // Microsoft "Verifying the RSS hash calculation" IPv4 table (also the 82599 datasheet's
    // RSS verification suite): (src, sport, dst, dport, 2-tuple hash, TCP 4-tuple hash).
    type Vector4 = ([u8; 4], u16, [u8; 4], u16, u32, u32);
    const V4: [Vector4; 5] = [
        (
            [66, 9, 149, 187],
            2794,
            [161, 142, 100, 80],
            1766,
            0x323e8fc2,
            0x51ccc178,
        ),
        (
            [199, 92, 111, 2],
            14230,
            [65, 69, 140, 83],
            4739,
            0xd718262a,
            0xc626b0ea,
        ),
        (
            [24, 19, 198, 95],
            12898,
            [12, 22, 207, 184],
            38024,
            0xd2d0a5de,
            0x5c2b394a,
        ),
        (
            [38, 27, 205, 30],
            48228,
            [209, 142, 163, 6],
            2217,
            0x82989176,
            0xafc7327f,
        ),
        (
            [153, 39, 163, 191],
            44251,
            [202, 188, 127, 2],
            1303,
            0x5d1809c5,
            0x10e828a2,
        ),
    ];

    fn v6(s: &str) -> [u8; 16] {
        s.parse::<std::net::Ipv6Addr>().unwrap().octets()
    }

    #[test]
    fn microsoft_ipv4_vectors() {
        for (src, sp, dst, dp, h2, h4) in V4 {
            assert_eq!(hash_ipv4(&MS_KEY, src, dst), h2, "{src:?}->{dst:?}");
            assert_eq!(
                hash_ipv4_ports(&MS_KEY, src, dst, sp, dp),
                h4,
                "{src:?}->{dst:?}"
            );
        }
    }

    #[test]
    fn microsoft_ipv6_vectors() {
        let t = [
            (
                "3ffe:2501:200:1fff::7",
                2794,
                "3ffe:2501:200:3::1",
                1766,
                0x2cc18cd5,
                0x40207d3d,
            ),
            (
                "3ffe:501:8::260:97ff:fe40:efab",
                14230,
                "ff02::1",
                4739,
                0x0f0c461c,
                0xdde51bbf,
            ),
            (
                "3ffe:1900:4545:3:200:f8ff:fe21:67cf",
                44251,
                "fe80::200:f8ff:fe21:67cf",
                38024,
                0x4b61e985,
                0x02d1feef,
            ),
        ];
        for (s, sp, d, dp, h2, h4) in t {
            assert_eq!(hash_ipv6(&MS_KEY, v6(s), v6(d)), h2, "{s}->{d}");
            assert_eq!(
                hash_ipv6_ports(&MS_KEY, v6(s), v6(d), sp, dp),
                h4,
                "{s}->{d}"
            );
        }
    }

    /// Reference model: the textbook bit-serial definition, one key bit at a time.
    fn reference(key: &[u8], input: &[u8]) -> u32 {
        let key_bit = |i: usize| (key.get(i / 8).copied().unwrap_or(0) >> (7 - i % 8)) & 1;
        let mut r = 0u32;
        for i in 0..input.len() * 8 {
            if (input[i / 8] >> (7 - i % 8)) & 1 == 1 {
                let mut w = 0u32;
                for j in 0..32 {
                    w = (w << 1) | key_bit(i + j) as u32;
                }
                r ^= w;
            }
        }
        r
    }

    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn bytes<const N: usize>(&mut self) -> [u8; N] {
            let mut b = [0u8; N];
            for x in &mut b {
                *x = self.next() as u8;
            }
            b
        }
    }

    #[test]
    fn property_matches_bit_serial_reference() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for _ in 0..2000 {
            let key: [u8; 40] = rng.bytes();
            let len = (rng.next() % 37) as usize;
            let input: [u8; 36] = rng.bytes();
            assert_eq!(hash(&key, &input[..len]), reference(&key, &input[..len]));
        }
    }

    #[test]
    fn property_symmetric_key_is_direction_invariant() {
        let k = &SYMMETRIC_RSS_KEY;
        let mut rng = Rng(12345);
        for _ in 0..10_000 {
            let (a, b): ([u8; 4], [u8; 4]) = (rng.bytes(), rng.bytes());
            let (pa, pb) = (rng.next() as u16, rng.next() as u16);
            assert_eq!(
                hash_ipv4_ports(k, a, b, pa, pb),
                hash_ipv4_ports(k, b, a, pb, pa)
            );
            assert_eq!(hash_ipv4(k, a, b), hash_ipv4(k, b, a));
            let (a6, b6): ([u8; 16], [u8; 16]) = (rng.bytes(), rng.bytes());
            assert_eq!(
                hash_ipv6_ports(k, a6, b6, pa, pb),
                hash_ipv6_ports(k, b6, a6, pb, pa)
            );
            assert_eq!(hash_ipv6(k, a6, b6), hash_ipv6(k, b6, a6));
        }
    }

    #[test]
    fn standard_key_is_not_symmetric() {
        // Sanity check that the symmetry test above can fail: the MS key is asymmetric.
        let (src, sp, dst, dp, _, h4) = V4[0];
        assert_ne!(hash_ipv4_ports(&MS_KEY, dst, src, dp, sp), h4);
    }

    fn tcp4_frame(src: [u8; 4], dst: [u8; 4], sp: u16, dp: u16, frag: bool) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 20 + 20];
        f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        f[14] = 0x45;
        f[20] = if frag { 0x20 } else { 0x40 }; // MF (fragment) or DF
        f[23] = 6;
        f[26..30].copy_from_slice(&src);
        f[30..34].copy_from_slice(&dst);
        f[34..36].copy_from_slice(&sp.to_be_bytes());
        f[36..38].copy_from_slice(&dp.to_be_bytes());
        f
    }

    #[test]
    fn frame_hash_parses_ipv4_tcp_and_fragments() {
        let (src, sp, dst, dp, h2, h4) = V4[1];
        let f = tcp4_frame(src, dst, sp, dp, false);
        assert_eq!(
            frame_hash(&MS_KEY, HashFields::ALL, &f),
            (h4, HashType::TcpIpv4)
        );
        let f = tcp4_frame(src, dst, sp, dp, true);
        assert_eq!(
            frame_hash(&MS_KEY, HashFields::ALL, &f),
            (h2, HashType::Ipv4)
        );
        // Truncated frames: nothing before a whole IPv4 header, the 2-tuple hash while the
        // ports are cut off, the 4-tuple hash once both ports are there.
        let tcp = tcp4_frame(src, dst, sp, dp, false);
        for n in 0..tcp.len() {
            let want = match n {
                0..34 => (0, HashType::None),
                34..38 => (h2, HashType::Ipv4),
                _ => (h4, HashType::TcpIpv4),
            };
            assert_eq!(
                frame_hash(&MS_KEY, HashFields::ALL, &tcp[..n]),
                want,
                "n={n}"
            );
        }
        // A truncated fragment hashes as a 2-tuple or not at all, never with ports.
        for n in 0..f.len() {
            let want = if n < 34 {
                (0, HashType::None)
            } else {
                (h2, HashType::Ipv4)
            };
            assert_eq!(frame_hash(&MS_KEY, HashFields::ALL, &f[..n]), want, "n={n}");
        }
        let arp = [0u8; 60];
        assert_eq!(
            predict_queue(&MS_KEY, &spread_reta(4), HashFields::ALL, &arp),
            0
        );
    }

    #[test]
    fn queue_prediction_uses_low_seven_bits() {
        let reta = spread_reta(4);
        assert_eq!(queue_for(0x51ccc178, &reta), (0x78 % 4) as u16);
        assert_eq!(spread_reta(0), [0; 128]);
        assert!(spread_reta(16).iter().all(|&q| q < 16));
    }
}
