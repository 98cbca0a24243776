//! The management port's source allowlist, applied to each received frame before the IP
//! stack sees it: an IP packet from a source outside every allowed prefix is dropped, so it
//! gets no answer at all (no SYN-ACK, no RST, no ICMP).
//!
//! Let through whatever the source: ARP and IPv6 neighbor discovery (address resolution
//! toward the gateway and collector needs them; they answer nothing above the link layer)
//! and DHCPv4 server replies (UDP 67 → 68), when DHCP is on.

/// An address prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prefix {
    /// IPv4 `addr/len`.
    V4([u8; 4], u8),
    /// IPv6 `addr/len`.
    V6([u8; 16], u8),
}

fn prefix_match(a: &[u8], p: &[u8], len: u8) -> bool {
    let len = len as usize;
    let full = len / 8;
    let bits = len % 8;
    if full > a.len() || full > p.len() || a[..full] != p[..full] {
        return false;
    }
    if bits == 0 {
        return true;
    }
    match (a.get(full), p.get(full)) {
        (Some(x), Some(y)) => {
            let mask = 0xffu8 << (8 - bits);
            x & mask == y & mask
        }
        _ => false,
    }
}

impl Prefix {
    /// Whether IPv4 address `a` is inside.
    pub fn contains_v4(&self, a: [u8; 4]) -> bool {
        match self {
            Prefix::V4(p, len) => *len <= 32 && prefix_match(&a, p, *len),
            Prefix::V6(..) => false,
        }
    }

    /// Whether IPv6 address `a` is inside.
    pub fn contains_v6(&self, a: [u8; 16]) -> bool {
        match self {
            Prefix::V6(p, len) => *len <= 128 && prefix_match(&a, p, *len),
            Prefix::V4(..) => false,
        }
    }
}

/// What to do with a frame received on the management port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admit {
    /// Hand it to the IP stack.
    Pass,
    /// An IP packet from a source outside the allowlist: dropped, counted.
    Deny,
    /// Not something the stack uses (other EtherTypes, truncated): dropped silently.
    Ignore,
}

const ETH: usize = 14;

/// Decides a frame's fate (`dhcp`: let DHCPv4 server replies through).
pub fn admit(frame: &[u8], allow: &[Prefix], dhcp: bool) -> Admit {
    let Some(&[t0, t1]) = frame.get(12..14) else {
        return Admit::Ignore;
    };
    match u16::from_be_bytes([t0, t1]) {
        0x0806 => Admit::Pass,
        0x0800 => {
            let Some(ip) = frame.get(ETH..) else {
                return Admit::Ignore;
            };
            let (Some(src), Some(&proto), Some(&vihl)) = (ip.get(12..16), ip.get(9), ip.first())
            else {
                return Admit::Ignore;
            };
            let src = [src[0], src[1], src[2], src[3]];
            if allow.iter().any(|p| p.contains_v4(src)) {
                return Admit::Pass;
            }
            let ihl = ((vihl & 0x0f) as usize) * 4;
            let ports = ip.get(ihl..ihl + 4);
            if dhcp && proto == 17 && ports == Some(&[0, 67, 0, 68][..]) {
                return Admit::Pass;
            }
            Admit::Deny
        }
        0x86dd => {
            let Some(ip) = frame.get(ETH..) else {
                return Admit::Ignore;
            };
            let Some(src) = ip.get(8..24) else {
                return Admit::Ignore;
            };
            let mut a = [0u8; 16];
            a.copy_from_slice(src);
            if allow.iter().any(|p| p.contains_v6(a)) {
                return Admit::Pass;
            }
            // Neighbor discovery (router/neighbor solicitation and advertisement, redirect)
            // directly after the fixed header, hop limit 255 as RFC 4861 demands.
            let nd = ip.get(6) == Some(&58)
                && ip.get(7) == Some(&255)
                && ip.get(40).is_some_and(|t| (133..=137).contains(t));
            if nd {
                Admit::Pass
            } else {
                Admit::Deny
            }
        }
        _ => Admit::Ignore,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(src: [u8; 4], proto: u8, ports: [u8; 4]) -> Vec<u8> {
        let mut f = vec![0u8; 14];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        let mut ip = vec![0u8; 20];
        ip[0] = 0x45;
        ip[9] = proto;
        ip[12..16].copy_from_slice(&src);
        f.extend_from_slice(&ip);
        f.extend_from_slice(&ports);
        f
    }

    fn v6(src: [u8; 16], next: u8, hop: u8, icmp_type: u8) -> Vec<u8> {
        let mut f = vec![0u8; 14];
        f[12..14].copy_from_slice(&[0x86, 0xdd]);
        let mut ip = vec![0u8; 40];
        ip[0] = 0x60;
        ip[6] = next;
        ip[7] = hop;
        ip[8..24].copy_from_slice(&src);
        f.extend_from_slice(&ip);
        f.push(icmp_type);
        f
    }

    const ALLOW: &[Prefix] = &[
        Prefix::V4([10, 0, 2, 0], 24),
        Prefix::V4([192, 168, 7, 128], 25),
        Prefix::V6([0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], 8),
    ];

    #[test]
    fn prefixes_match_on_their_bits_only() {
        assert!(Prefix::V4([10, 0, 2, 0], 24).contains_v4([10, 0, 2, 255]));
        assert!(!Prefix::V4([10, 0, 2, 0], 24).contains_v4([10, 0, 3, 1]));
        assert!(Prefix::V4([192, 168, 7, 128], 25).contains_v4([192, 168, 7, 200]));
        assert!(!Prefix::V4([192, 168, 7, 128], 25).contains_v4([192, 168, 7, 127]));
        assert!(Prefix::V4([0; 4], 0).contains_v4([1, 2, 3, 4]));
        assert!(Prefix::V4([1, 2, 3, 4], 32).contains_v4([1, 2, 3, 4]));
        assert!(!Prefix::V4([1, 2, 3, 4], 33).contains_v4([1, 2, 3, 4]));
        assert!(!Prefix::V4([1, 2, 3, 4], 32).contains_v6([0; 16]));
        let mut a = [0u8; 16];
        a[0] = 0xfd;
        a[15] = 9;
        assert!(ALLOW[2].contains_v6(a));
        a[0] = 0xfe;
        assert!(!ALLOW[2].contains_v6(a));
    }

    #[test]
    fn ip_sources_outside_the_list_are_denied() {
        assert_eq!(
            admit(&v4([10, 0, 2, 2], 6, [0; 4]), ALLOW, false),
            Admit::Pass
        );
        assert_eq!(
            admit(&v4([10, 0, 3, 2], 6, [0; 4]), ALLOW, false),
            Admit::Deny
        );
        assert_eq!(
            admit(&v4([10, 0, 3, 2], 6, [0; 4]), &[], false),
            Admit::Deny
        );
        let mut fd = [0u8; 16];
        fd[0] = 0xfd;
        assert_eq!(admit(&v6(fd, 6, 64, 0), ALLOW, false), Admit::Pass);
        let mut fe = [0u8; 16];
        fe[0] = 0xfe;
        fe[1] = 0x80;
        assert_eq!(admit(&v6(fe, 6, 64, 0), ALLOW, false), Admit::Deny);
    }

    #[test]
    fn address_resolution_and_dhcp_replies_pass_from_anywhere() {
        let mut arp = vec![0u8; 42];
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert_eq!(admit(&arp, &[], false), Admit::Pass);
        let mut fe = [0u8; 16];
        fe[0] = 0xfe;
        fe[1] = 0x80;
        assert_eq!(admit(&v6(fe, 58, 255, 135), &[], false), Admit::Pass);
        // Echo request (128) is not neighbor discovery; hop limit must be 255.
        assert_eq!(admit(&v6(fe, 58, 255, 128), &[], false), Admit::Deny);
        assert_eq!(admit(&v6(fe, 58, 64, 135), &[], false), Admit::Deny);
        let dhcp = v4([172, 16, 0, 1], 17, [0, 67, 0, 68]);
        assert_eq!(admit(&dhcp, &[], true), Admit::Pass);
        assert_eq!(admit(&dhcp, &[], false), Admit::Deny);
        assert_eq!(
            admit(&v4([172, 16, 0, 1], 17, [0, 68, 0, 67]), &[], true),
            Admit::Deny
        );
    }

    #[test]
    fn other_and_short_frames_are_ignored() {
        assert_eq!(admit(&[], ALLOW, true), Admit::Ignore);
        assert_eq!(admit(&[0u8; 13], ALLOW, true), Admit::Ignore);
        let mut lldp = vec![0u8; 60];
        lldp[12..14].copy_from_slice(&[0x88, 0xcc]);
        assert_eq!(admit(&lldp, ALLOW, true), Admit::Ignore);
        let mut short = v4([10, 0, 2, 2], 6, [0; 4]);
        short.truncate(20);
        assert_eq!(admit(&short, ALLOW, true), Admit::Ignore);
    }
}
