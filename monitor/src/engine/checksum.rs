//! Checksum fix-up of rewritten frames (IPv4 header and TCP, IPv4 and IPv6).

use smoltcp::wire::{IpAddress, Ipv4Packet, Ipv6Packet, TcpPacket};

use super::PacketState;

pub(super) fn fix_checksums(p: &mut PacketState) {
    let l3 = p.l3_off;
    let Some(b) = p.buf.get_mut(l3..) else { return };
    if !p.v6 {
        let Ok(mut ip) = Ipv4Packet::new_checked(&mut *b) else {
            return;
        };
        if ip.header_len() < 20 {
            return;
        }
        ip.fill_checksum();
        let (src, dst) = (ip.src_addr(), ip.dst_addr());
        let Ok(mut t) = TcpPacket::new_checked(ip.payload_mut()) else {
            return;
        };
        t.fill_checksum(&IpAddress::Ipv4(src), &IpAddress::Ipv4(dst));
    } else {
        let Ok(mut ip) = Ipv6Packet::new_checked(&mut *b) else {
            return;
        };
        if u8::from(ip.next_header()) != 6 {
            return; // extension headers: leave the checksum alone
        }
        let (src, dst) = (ip.src_addr(), ip.dst_addr());
        let Ok(mut t) = TcpPacket::new_checked(ip.payload_mut()) else {
            return;
        };
        t.fill_checksum(&IpAddress::Ipv6(src), &IpAddress::Ipv6(dst));
    }
}
