//! Packet intake: Ethernet (802.1Q / QinQ), IPv4, IPv6 (extension headers skipped), TCP, and
//! bounded IP fragment reassembly.
//!
//! Received bytes are untrusted: every header goes through bounds-checked `get` into a fixed-size
//! header view (Ethernet, IPv4, TCP: the same length checks as smoltcp's `new_checked`, done once)
//! or smoltcp's checked views (IPv6), so no input can panic or read out of bounds.

use smoltcp::wire::{IpProtocol, Ipv6Packet, TcpOption};

use crate::config::{Counters, DropReason, FRAG_DATAGRAM_MAX};

const ETH_VLAN: u16 = 0x8100;
const ETH_QINQ: u16 = 0x88a8;
const ETH_QINQ_OLD: u16 = 0x9100;
const ETH_IPV4: u16 = 0x0800;
const ETH_IPV6: u16 = 0x86dd;
const MAX_VLAN_TAGS: usize = 4;
const MAX_EXT_HEADERS: usize = 8;

/// Source and destination addresses (IPv4 in the first four bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Addrs {
    pub v6: bool,
    pub src: [u8; 16],
    pub dst: [u8; 16],
}

/// A parsed IP packet: either a whole TCP segment or a fragment to reassemble.
#[derive(Debug)]
pub(crate) enum L3<'a> {
    Tcp {
        addrs: Addrs,
        seg: &'a [u8],
        l3_off: usize,
    },
    Frag {
        addrs: Addrs,
        proto: u8,
        id: u32,
        off: usize,
        more: bool,
        data: &'a [u8],
    },
}

/// The TCP fields the monitor uses.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Tcp<'a> {
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub ack: u32,
    pub syn: bool,
    pub ackf: bool,
    pub fin: bool,
    pub rst: bool,
    pub wscale: Option<u8>,
    pub payload: &'a [u8],
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

/// Parse Ethernet, VLAN tags and the IP layer.
#[inline]
pub(crate) fn parse_l3(frame: &[u8]) -> Result<L3<'_>, DropReason> {
    // Same checks as smoltcp's `EthernetFrame::new_checked`: at least the 14-byte header.
    let eth: &[u8; 14] = frame
        .get(..14)
        .and_then(|h| h.try_into().ok())
        .ok_or(DropReason::TruncatedEthernet)?;
    let mut ty = u16::from_be_bytes([eth[12], eth[13]]);
    let mut off = 14usize;
    let mut tags = 0;
    while ty == ETH_VLAN || ty == ETH_QINQ || ty == ETH_QINQ_OLD {
        tags += 1;
        if tags > MAX_VLAN_TAGS {
            return Err(DropReason::BadVlan);
        }
        ty = be16(frame, off + 2).ok_or(DropReason::BadVlan)?;
        off += 4;
    }
    let l3 = frame.get(off..).ok_or(DropReason::BadVlan)?;
    match ty {
        ETH_IPV4 => parse_ipv4(l3, off),
        ETH_IPV6 => parse_ipv6(l3, off),
        _ => Err(DropReason::NotIp),
    }
}

#[inline]
fn parse_ipv4(b: &[u8], l3_off: usize) -> Result<L3<'_>, DropReason> {
    // The checks of smoltcp's `Ipv4Packet::new_checked` (20-byte minimum, header within the
    // buffer, header within the total length, total length within the buffer), on one fixed-size
    // view of the header so that every field read below is free of bounds checks.
    let h: &[u8; 20] = b
        .get(..20)
        .and_then(|h| h.try_into().ok())
        .ok_or(DropReason::BadIpv4)?;
    let header_len = ((h[0] & 0x0f) * 4) as usize;
    // Total length 0: a segment captured before TCP segmentation offload cut it (the sending
    // host's capture); the datagram is the whole rest of the frame, as Wireshark takes it.
    let total_len = match u16::from_be_bytes([h[2], h[3]]) {
        0 => b.len(),
        n => n as usize,
    };
    if b.len() < header_len || header_len > total_len || b.len() < total_len {
        return Err(DropReason::BadIpv4);
    }
    if h[0] >> 4 != 4 || header_len < 20 {
        return Err(DropReason::BadIpv4);
    }
    let mut addrs = Addrs {
        v6: false,
        src: [0; 16],
        dst: [0; 16],
    };
    addrs.src[..4].copy_from_slice(&h[12..16]);
    addrs.dst[..4].copy_from_slice(&h[16..20]);
    let proto: u8 = h[9];
    let data = b.get(header_len..total_len).ok_or(DropReason::BadIpv4)?;
    let flg_off = u16::from_be_bytes([h[6], h[7]]);
    let more_frags = flg_off & 0x2000 != 0;
    let frag_offset = flg_off << 3;
    if more_frags || frag_offset != 0 {
        return Ok(L3::Frag {
            addrs,
            proto,
            id: u16::from_be_bytes([h[4], h[5]]) as u32,
            off: frag_offset as usize,
            more: more_frags,
            data,
        });
    }
    if proto != u8::from(IpProtocol::Tcp) {
        return Err(DropReason::NotTcp);
    }
    Ok(L3::Tcp {
        addrs,
        seg: data,
        l3_off,
    })
}

fn parse_ipv6(b: &[u8], l3_off: usize) -> Result<L3<'_>, DropReason> {
    let ip = Ipv6Packet::new_checked(b).map_err(|_| DropReason::BadIpv6)?;
    if ip.version() != 6 {
        return Err(DropReason::BadIpv6);
    }
    let addrs = Addrs {
        v6: true,
        src: ip.src_addr().octets(),
        dst: ip.dst_addr().octets(),
    };
    let mut next: u8 = ip.next_header().into();
    let mut data = ip.payload();
    for _ in 0..MAX_EXT_HEADERS {
        match next {
            6 => {
                return Ok(L3::Tcp {
                    addrs,
                    seg: data,
                    l3_off,
                })
            }
            // Hop-by-hop, routing, destination options: 8 * (len + 1) bytes.
            0 | 43 | 60 => {
                let len = 8 * (*data.get(1).ok_or(DropReason::BadIpv6)? as usize + 1);
                next = *data.first().ok_or(DropReason::BadIpv6)?;
                data = data.get(len..).ok_or(DropReason::BadIpv6)?;
            }
            // Authentication header: 4 * (len + 2) bytes.
            51 => {
                let len = 4 * (*data.get(1).ok_or(DropReason::BadIpv6)? as usize + 2);
                next = *data.first().ok_or(DropReason::BadIpv6)?;
                data = data.get(len..).ok_or(DropReason::BadIpv6)?;
            }
            // Fragment header: 8 bytes.
            44 => {
                let proto = *data.first().ok_or(DropReason::BadIpv6)?;
                let fo = be16(data, 2).ok_or(DropReason::BadIpv6)?;
                let id = u32::from_be_bytes(
                    data.get(4..8)
                        .ok_or(DropReason::BadIpv6)?
                        .try_into()
                        .map_err(|_| DropReason::BadIpv6)?,
                );
                let rest = data.get(8..).ok_or(DropReason::BadIpv6)?;
                let off = (fo & 0xfff8) as usize;
                let more = fo & 1 != 0;
                if off == 0 && !more {
                    // Atomic fragment: no reassembly needed.
                    next = proto;
                    data = rest;
                    continue;
                }
                return Ok(L3::Frag {
                    addrs,
                    proto,
                    id,
                    off,
                    more,
                    data: rest,
                });
            }
            _ => return Err(DropReason::NotTcp),
        }
    }
    Err(DropReason::BadIpv6)
}

/// Parse a TCP segment.
#[inline]
pub(crate) fn parse_tcp(seg: &[u8]) -> Result<Tcp<'_>, DropReason> {
    // The checks of smoltcp's `TcpPacket::new_checked` (20-byte minimum, data offset of at least
    // 20 bytes and within the buffer), on one fixed-size view of the header.
    let h: &[u8; 20] = seg
        .get(..20)
        .and_then(|h| h.try_into().ok())
        .ok_or(DropReason::BadTcp)?;
    let header_len = ((h[12] >> 4) as usize) * 4;
    if seg.len() < header_len || header_len < 20 {
        return Err(DropReason::BadTcp);
    }
    let flags = h[13];
    let syn = flags & 0x02 != 0;
    let wscale = if syn {
        syn_wscale(seg.get(20..header_len).unwrap_or(&[]))
    } else {
        None
    };
    Ok(Tcp {
        sport: u16::from_be_bytes([h[0], h[1]]),
        dport: u16::from_be_bytes([h[2], h[3]]),
        seq: u32::from_be_bytes([h[4], h[5], h[6], h[7]]),
        ack: u32::from_be_bytes([h[8], h[9], h[10], h[11]]),
        syn,
        ackf: flags & 0x10 != 0,
        fin: flags & 0x01 != 0,
        rst: flags & 0x04 != 0,
        wscale,
        payload: seg.get(header_len..).unwrap_or(&[]),
    })
}

/// The window scale announced in a SYN's options, if any (kept out of line: one packet a flow).
#[inline(never)]
fn syn_wscale(mut opts: &[u8]) -> Option<u8> {
    let mut wscale = None;
    for _ in 0..40 {
        if opts.is_empty() {
            break;
        }
        match TcpOption::parse(opts) {
            Ok((rest, opt)) => {
                match opt {
                    TcpOption::EndOfList => break,
                    TcpOption::WindowScale(s) => wscale = Some(s.min(14)),
                    _ => {}
                }
                if rest.len() >= opts.len() {
                    break;
                }
                opts = rest;
            }
            Err(_) => break,
        }
    }
    wscale
}

const BLOCKS: usize = FRAG_DATAGRAM_MAX / 8;
const WORDS: usize = BLOCKS / 64;

/// One IP datagram in reassembly. Build the table from [`FragSlot::EMPTY`].
#[derive(Clone, Debug)]
pub struct FragSlot {
    used: bool,
    addrs: Addrs,
    proto: u8,
    id: u32,
    first_seen: u64,
    /// Total length once the last fragment arrived (0: unknown).
    total: u32,
    got: [u64; WORDS],
    data: [u8; FRAG_DATAGRAM_MAX],
}

impl FragSlot {
    /// An unused slot.
    pub const EMPTY: FragSlot = FragSlot {
        used: false,
        addrs: Addrs {
            v6: false,
            src: [0; 16],
            dst: [0; 16],
        },
        proto: 0,
        id: 0,
        first_seen: 0,
        total: 0,
        got: [0; WORDS],
        data: [0; FRAG_DATAGRAM_MAX],
    };

    fn has(&self, blk: usize) -> bool {
        self.got[blk / 64] & (1 << (blk % 64)) != 0
    }

    fn set(&mut self, blk: usize) {
        self.got[blk / 64] |= 1 << (blk % 64);
    }

    fn complete(&self) -> bool {
        self.total != 0 && (0..(self.total as usize).div_ceil(8)).all(|b| self.has(b))
    }

    /// The reassembled datagram's addresses, protocol and payload.
    pub(crate) fn datagram(&self) -> (Addrs, u8, &[u8]) {
        (
            self.addrs,
            self.proto,
            self.data.get(..self.total as usize).unwrap_or(&[]),
        )
    }
}

/// The bounded fragment table.
#[derive(Debug)]
pub(crate) struct FragTable<'a> {
    pub slots: &'a mut [FragSlot],
    /// Slots in use (so the common no-fragment case touches no slot memory).
    pub used: usize,
}

impl<'a> FragTable<'a> {
    /// Discard datagrams older than `timeout`.
    pub fn expire(&mut self, now: u64, timeout: u64, c: &mut Counters) {
        if self.used == 0 {
            return;
        }
        for s in self.slots.iter_mut() {
            if s.used && now.saturating_sub(s.first_seen) >= timeout {
                s.used = false;
                self.used -= 1;
                c.dropped[DropReason::FragTimeout as usize] += 1;
            }
        }
    }

    /// Free a slot.
    pub fn release(&mut self, i: usize) {
        if let Some(s) = self.slots.get_mut(i) {
            if s.used {
                s.used = false;
                self.used -= 1;
            }
        }
    }

    /// Add a fragment. `Ok(Some(i))`: slot `i` holds a complete datagram; `Ok(None)`: held.
    #[allow(clippy::too_many_arguments)]
    pub fn add(
        &mut self,
        addrs: Addrs,
        proto: u8,
        id: u32,
        off: usize,
        more: bool,
        data: &[u8],
        now: u64,
        timeout: u64,
        c: &mut Counters,
    ) -> Result<Option<usize>, DropReason> {
        self.expire(now, timeout, c);
        let end = off + data.len();
        if end > FRAG_DATAGRAM_MAX {
            return Err(DropReason::FragTooBig);
        }
        if more && (!data.len().is_multiple_of(8) || data.is_empty()) {
            return Err(DropReason::FragMalformed);
        }
        let found = self
            .slots
            .iter()
            .position(|s| s.used && s.id == id && s.proto == proto && s.addrs == addrs);
        let i = match found {
            Some(i) => i,
            None => {
                let i = match self.slots.iter().position(|s| !s.used) {
                    Some(i) => {
                        self.used += 1;
                        i
                    }
                    None => {
                        // Full: evict the oldest incomplete datagram.
                        let Some((i, _)) = self
                            .slots
                            .iter()
                            .enumerate()
                            .min_by_key(|(_, s)| s.first_seen)
                        else {
                            return Err(DropReason::FragEvicted);
                        };
                        c.dropped[DropReason::FragEvicted as usize] += 1;
                        i
                    }
                };
                let s = &mut self.slots[i];
                s.used = true;
                s.addrs = addrs;
                s.proto = proto;
                s.id = id;
                s.first_seen = now;
                s.total = 0;
                s.got = [0; WORDS];
                i
            }
        };
        let s = &mut self.slots[i];
        if !more {
            if s.total != 0 && s.total as usize != end {
                self.release(i);
                return Err(DropReason::FragMalformed);
            }
            s.total = end as u32;
        }
        if s.total != 0 && end > s.total as usize {
            self.release(i);
            return Err(DropReason::FragMalformed);
        }
        let s = &mut self.slots[i];
        // First copy of each 8-byte block wins.
        let first = off / 8;
        for (k, chunk) in data.chunks(8).enumerate() {
            let blk = first + k;
            if blk < BLOCKS && !s.has(blk) {
                let at = blk * 8;
                s.data[at..at + chunk.len()].copy_from_slice(chunk);
                s.set(blk);
            }
        }
        if s.complete() {
            Ok(Some(i))
        } else {
            Ok(None)
        }
    }
}
