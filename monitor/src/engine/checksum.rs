//! Checksum fix-up of rewritten and built frames: the IPv4 header checksum and the TCP
//! checksum with its IPv4 or IPv6 pseudo-header, the TCP header found past any VLAN tags and
//! IPv6 extension headers (the intake's own walk). The pseudo-header takes the addresses of
//! the IP header (an IPv6 Routing header with segments left is not followed).

use super::PacketState;
use crate::intake::{self, L3};

/// Where the headers of a whole (unfragmented) TCP frame are: IP header offset, TCP header
/// offset, TCP segment length (header and payload, Ethernet padding excluded), IPv6.
pub(super) fn locate(buf: &[u8]) -> Option<(usize, usize, usize, bool)> {
    match intake::parse_l3(buf) {
        Ok(L3::Tcp {
            addrs, seg, l3_off, ..
        }) => {
            let l4 = (seg.as_ptr() as usize).wrapping_sub(buf.as_ptr() as usize);
            (l4 <= buf.len()).then_some((l3_off, l4, seg.len(), addrs.v6))
        }
        _ => None,
    }
}

/// The one's-complement sum of `data` as big-endian 16-bit words, added to `acc`.
fn sum(data: &[u8], mut acc: u64) -> u64 {
    let mut it = data.chunks_exact(2);
    for w in &mut it {
        acc += u16::from_be_bytes([w[0], w[1]]) as u64;
    }
    if let [b] = it.remainder() {
        acc += (*b as u64) << 8;
    }
    acc
}

fn fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

/// Recompute the IPv4 header checksum (IPv4) and the TCP checksum of a whole TCP frame.
pub(super) fn fix(buf: &mut [u8]) {
    let Some((l3, l4, tlen, v6)) = locate(buf) else {
        return;
    };
    let pseudo = if v6 {
        let Some(addrs) = buf.get(l3 + 8..l3 + 40) else {
            return;
        };
        sum(addrs, tlen as u64 + 6)
    } else {
        let ihl = (buf[l3] as usize & 0xf) * 4;
        if buf.len() < l3 + ihl || ihl < 20 {
            return;
        }
        buf[l3 + 10] = 0;
        buf[l3 + 11] = 0;
        let c = fold(sum(&buf[l3..l3 + ihl], 0));
        buf[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
        sum(&buf[l3 + 12..l3 + 20], tlen as u64 + 6)
    };
    let Some(seg) = buf.get_mut(l4..l4 + tlen) else {
        return;
    };
    if seg.len() < 20 {
        return;
    }
    seg[16] = 0;
    seg[17] = 0;
    let c = fold(sum(seg, pseudo));
    seg[16..18].copy_from_slice(&c.to_be_bytes());
}

pub(super) fn fix_checksums(p: &mut PacketState) {
    fix(&mut p.buf);
}
