//! The parse-only floor of `cargo ferrule bench`: every frame walked with smoltcp's checked
//! views down to the TCP payload, nothing stored. No flow monitor can be faster than this on
//! the same frames, so the monitor's time is reported as a ratio to it.

use super::capture::Capture;
use smoltcp::wire::{EthernetFrame, EthernetProtocol, Ipv4Packet, Ipv6Packet, TcpPacket};

/// What the floor saw (kept so the work cannot be optimised away).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FloorCount {
    /// TCP segments parsed.
    pub tcp: u64,
    /// TCP payload bytes.
    pub payload: u64,
    /// Frames that were not TCP or did not parse.
    pub other: u64,
    /// Sum of ports and sequence numbers.
    pub mix: u64,
}

/// Parses one frame down to its TCP header and payload.
pub fn parse_tcp(frame: &[u8]) -> Option<TcpPacket<&[u8]>> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    let mut ty = u16::from(eth.ethertype());
    let mut rest = eth.payload();
    while ty == 0x8100 || ty == 0x88a8 {
        if rest.len() < 4 {
            return None;
        }
        ty = u16::from_be_bytes([rest[2], rest[3]]);
        rest = &rest[4..];
    }
    let l4 = match EthernetProtocol::from(ty) {
        EthernetProtocol::Ipv4 => {
            let ip = Ipv4Packet::new_checked(rest).ok()?;
            if ip.next_header() != smoltcp::wire::IpProtocol::Tcp
                || ip.more_frags()
                || ip.frag_offset() != 0
            {
                return None;
            }
            let (h, t) = (ip.header_len() as usize, ip.total_len() as usize);
            rest.get(h..t)?
        }
        EthernetProtocol::Ipv6 => {
            let ip = Ipv6Packet::new_checked(rest).ok()?;
            if ip.next_header() != smoltcp::wire::IpProtocol::Tcp {
                return None;
            }
            rest.get(40..40 + ip.payload_len() as usize)?
        }
        _ => return None,
    };
    TcpPacket::new_checked(l4).ok()
}

/// Walks every frame of `cap`.
pub fn run(cap: &Capture) -> FloorCount {
    run_frames(cap.frames().map(|(_, f)| f))
}

/// Walks every frame of `frames`.
pub fn run_frames<'a>(frames: impl Iterator<Item = &'a [u8]>) -> FloorCount {
    let mut c = FloorCount::default();
    for f in frames {
        match parse_tcp(f) {
            Some(t) => {
                c.tcp += 1;
                c.payload += t.payload().len() as u64;
                c.mix = c
                    .mix
                    .wrapping_add(u64::from(t.src_port()) + u64::from(t.dst_port()))
                    .wrapping_add(t.seq_number().0 as u32 as u64);
            }
            None => c.other += 1,
        }
    }
    c
}
