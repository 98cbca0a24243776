//! Packet intake: Ethernet (802.1Q / QinQ), IPv4, IPv6 (extension headers skipped), TCP, and
//! bounded IP fragment reassembly.
//!
//! Received bytes are untrusted: every header goes through smoltcp's checked views
//! (`new_checked`) or bounds-checked `get`, so no input can panic or read out of bounds.

use smoltcp::wire::{EthernetFrame, IpProtocol, Ipv4Packet, Ipv6Packet, TcpOption, TcpPacket};

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
pub(crate) fn parse_l3(frame: &[u8]) -> Result<L3<'_>, DropReason> {
    let eth = EthernetFrame::new_checked(frame).map_err(|_| DropReason::TruncatedEthernet)?;
    let mut ty: u16 = eth.ethertype().into();
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

fn parse_ipv4(b: &[u8], l3_off: usize) -> Result<L3<'_>, DropReason> {
    let ip = Ipv4Packet::new_checked(b).map_err(|_| DropReason::BadIpv4)?;
    if ip.version() != 4 || ip.header_len() < 20 {
        return Err(DropReason::BadIpv4);
    }
    let mut addrs = Addrs {
        v6: false,
        src: [0; 16],
        dst: [0; 16],
    };
    addrs.src[..4].copy_from_slice(&ip.src_addr().octets());
    addrs.dst[..4].copy_from_slice(&ip.dst_addr().octets());
    let proto: u8 = ip.next_header().into();
    let data = ip.payload();
    if ip.more_frags() || ip.frag_offset() != 0 {
        return Ok(L3::Frag {
            addrs,
            proto,
            id: ip.ident() as u32,
            off: ip.frag_offset() as usize,
            more: ip.more_frags(),
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
pub(crate) fn parse_tcp(seg: &[u8]) -> Result<Tcp<'_>, DropReason> {
    let t = TcpPacket::new_checked(seg).map_err(|_| DropReason::BadTcp)?;
    let mut wscale = None;
    if t.syn() {
        let mut opts = t.options();
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
    }
    Ok(Tcp {
        sport: t.src_port(),
        dport: t.dst_port(),
        seq: t.seq_number().0 as u32,
        ack: t.ack_number().0 as u32,
        syn: t.syn(),
        ackf: t.ack(),
        fin: t.fin(),
        rst: t.rst(),
        wscale,
        payload: t.payload(),
    })
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
