//! Packet intake: Ethernet (802.1Q / QinQ), IPv4, IPv6 (extension headers skipped), TCP, and
//! bounded IP fragment reassembly.
//!
//! Received bytes are untrusted: every header goes through bounds-checked `get` into a fixed-size
//! header view (Ethernet, IPv4, TCP: the same length checks as smoltcp's `new_checked`, done once)
//! or smoltcp's checked views (IPv6), so no input can panic or read out of bounds.
//!
//! Why not smoltcp's typed views for Ethernet/IPv4/TCP too: each accessor of a `new_checked`
//! view re-slices the buffer with its own bounds check, and this parse runs once per packet on
//! the hot path; the fixed-size arrays below carry the same checks once. (The throughput
//! example's "parse floor" is exactly the smoltcp-views walk, for comparison.)

use smoltcp::wire::{IpProtocol, Ipv6Packet};

use crate::api::Overlap;
use crate::config::{Counters, DropReason, CHUNK_SIZE, FRAG_DATAGRAM_MAX};
use crate::flow::NONE;
use crate::reasm::Pool;

const ETH_VLAN: u16 = 0x8100;
const ETH_QINQ: u16 = 0x88a8;
const ETH_QINQ_OLD: u16 = 0x9100;
const ETH_IPV4: u16 = 0x0800;
const ETH_IPV6: u16 = 0x86dd;

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
        /// An IPv6 routing header still had segments left: the TCP pseudo-header's destination
        /// is a later hop's address, not `addrs.dst`, so the TCP checksum is not verified.
        routed: bool,
    },
    Frag {
        addrs: Addrs,
        /// Where the IP header starts in the frame.
        l3_off: usize,
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
    pub ack_flag: bool,
    pub fin: bool,
    pub rst: bool,
    pub wscale: Option<u8>,
    /// The window field, unscaled.
    pub window: u16,
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
    // As many tags as the frame holds: each takes 4 bytes, so the walk ends with the frame.
    while ty == ETH_VLAN || ty == ETH_QINQ || ty == ETH_QINQ_OLD {
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
            l3_off,
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
        routed: false,
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
    let mut routed = false;
    // As deep as the packet goes: every extension header takes at least 8 bytes, so the
    // chain ends with the payload (the bound only makes that visible).
    for _ in 0..=b.len() / 8 {
        match next {
            6 => {
                return Ok(L3::Tcp {
                    addrs,
                    seg: data,
                    l3_off,
                    routed,
                })
            }
            // Hop-by-hop, routing, destination options: 8 * (len + 1) bytes.
            0 | 43 | 60 => {
                // A routing header with segments left (byte 3): not yet at its destination.
                routed |= next == 43 && data.get(3).is_some_and(|&left| left != 0);
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
                    l3_off,
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
    Ok(tcp_fields(h, wscale, seg.get(header_len..).unwrap_or(&[])))
}

/// The fields of a TCP header (`h`: its fixed 20 bytes), with the window scale of its options
/// and its payload (the general parse and `read_ahead`'s IPv4 path both build `Tcp` here).
#[inline(always)]
pub(crate) fn tcp_fields<'a>(h: &[u8; 20], wscale: Option<u8>, payload: &'a [u8]) -> Tcp<'a> {
    let flags = h[13];
    Tcp {
        sport: u16::from_be_bytes([h[0], h[1]]),
        dport: u16::from_be_bytes([h[2], h[3]]),
        seq: u32::from_be_bytes([h[4], h[5], h[6], h[7]]),
        ack: u32::from_be_bytes([h[8], h[9], h[10], h[11]]),
        syn: flags & 0x02 != 0,
        ack_flag: flags & 0x10 != 0,
        fin: flags & 0x01 != 0,
        rst: flags & 0x04 != 0,
        wscale,
        window: u16::from_be_bytes([h[14], h[15]]),
        payload,
    }
}

/// The window scale announced in a SYN's options, if any (kept out of line: one packet a flow).
#[inline(never)]
pub(crate) fn syn_wscale(opts: &[u8]) -> Option<u8> {
    // RFC 9293 §3.1: kind 0 ends the list, kind 1 is one byte, every other option is
    // kind, length (>= 2), data; window scale is kind 3, length 3. A malformed length ends
    // the walk, as smoltcp's `TcpOption::parse` does (`syn_wscale_matches_smoltcp`).
    let mut wscale = None;
    let mut i = 0;
    while i < opts.len() {
        match opts[i] {
            0 => break,
            1 => i += 1,
            kind => {
                let Some(&len) = opts.get(i + 1) else { break };
                let len = len as usize;
                if len < 2 || i + len > opts.len() {
                    break;
                }
                // Malformed MSS, window scale, SACK-permitted or SACK lengths end it too.
                match (kind, len) {
                    (2, 4) | (4, 2) => {}
                    (3, 3) => wscale = Some(opts[i + 2].min(14)),
                    (5, n) if n >= 10 && (n - 2) % 8 == 0 => {}
                    (2..=5, _) => break,
                    _ => {}
                }
                i += len;
            }
        }
    }
    wscale
}

// ---------------------------------------------------------------------------------------------
// Receive checksums.

/// What to do with the IPv4 header and TCP checksums of received frames
/// (`Config::checksums`).
///
/// A segment whose checksum is wrong never reached the receiver's TCP (it drops it, and the
/// sender retransmits), so the monitor must not reassemble it either: a corrupt copy would
/// become stream data, and an attacker could insert bytes the endpoint never accepts. But a
/// capture taken on a sending host holds that host's segments before its NIC filled in their
/// checksums (checksum offload): every one of them looks wrong, and `Verify` would lose all
/// of that host's data. The default, `Auto`, therefore verifies until the traffic looks
/// offloaded and then stops, as Suricata's `checksum-validation: auto` does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Checksums {
    /// Drop (and count) every frame whose IPv4 header checksum or TCP checksum is wrong.
    Verify,
    /// Check nothing (not even the NIC's result).
    Ignore,
    /// Verify, but look at the first [`CHECKSUM_SAMPLE`] frames with a checksum result
    /// first. Offloaded checksums look like this: every frame its sending host sent is wrong,
    /// while its peer's are right. So while sampling, a bad frame is kept (counted in
    /// `ChecksumStats::accepted_bad`) when more than 10 % of the frames so far were bad and its
    /// source host has sent no good frame yet; otherwise it is dropped. When the sample is
    /// complete the choice is final: more than 10 % bad stops all checking
    /// (`ChecksumStats::offloaded`), else every later bad frame is dropped. On a network tap
    /// checksums are the wire's and a corrupt frame is rare: it is dropped (unless it comes
    /// first from a host not yet seen, in the first frames of a run); on an offloaded capture
    /// no data is lost.
    Auto,
}

/// Frames with a checksum result that [`Checksums::Auto`] looks at before its final choice.
pub const CHECKSUM_SAMPLE: u32 = 1000;

/// One checksum as the NIC saw it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum RxCheck {
    /// Not checked by the NIC (or not applicable): the monitor computes it.
    #[default]
    Unknown,
    /// Checked and right (or, for virtio-net, not to be checked: a partial checksum of a
    /// frame that never crossed a wire). The monitor skips its own check.
    Good,
    /// Checked and wrong: counted and dropped like a software-detected bad checksum.
    Bad,
}

/// What the NIC checked of a received frame ([`crate::Monitor::frame_with`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct RxMeta {
    /// The IPv4 header checksum.
    pub ipv4: RxCheck,
    /// The TCP checksum (of an unfragmented segment).
    pub l4: RxCheck,
}

impl RxMeta {
    /// The NIC checked nothing (host tools, virtio-net without checksum offload).
    pub const NONE: RxMeta = RxMeta {
        ipv4: RxCheck::Unknown,
        l4: RxCheck::Unknown,
    };
}

/// What checksum verification did (`Counters::checksums`). Frames dropped for a bad checksum
/// count in `Counters::dropped` under [`DropReason::BadIpv4Checksum`] and
/// [`DropReason::BadTcpChecksum`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChecksumStats {
    /// Checksums computed by the monitor (IPv4 headers and TCP segments counted apart).
    pub computed: u64,
    /// Checksums whose result the NIC gave (good or bad): not computed again.
    pub from_nic: u64,
    /// `Auto`: frames with a checksum result looked at (at most [`CHECKSUM_SAMPLE`]).
    pub sampled: u32,
    /// `Auto`: bad ones among them.
    pub sampled_bad: u32,
    /// `Auto`: bad frames kept because the traffic looked offloaded.
    pub accepted_bad: u64,
    /// `Auto` found the checksums offloaded: bad ones are kept, and once the sample is
    /// complete nothing is checked any more. Tools print this.
    pub offloaded: bool,
    /// `Auto`, while sampling: source hosts that sent a frame with good checksums (a
    /// direct-mapped table of 256 address keys, 0 = empty; a collision only forgets a host).
    good_hosts: [u32; 256],
}

impl Default for ChecksumStats {
    fn default() -> Self {
        ChecksumStats {
            computed: 0,
            from_nic: 0,
            sampled: 0,
            sampled_bad: 0,
            accepted_bad: 0,
            offloaded: false,
            good_hosts: [0; 256],
        }
    }
}

impl ChecksumStats {
    /// Apply the policy to one frame's result (`None`: nothing to check; `Some(Ok)`: good;
    /// `Some(Err(reason))`: bad) from source `src`.
    #[inline]
    fn judge(
        &mut self,
        mode: Checksums,
        src: &Addrs,
        r: Option<Result<(), DropReason>>,
    ) -> Result<(), DropReason> {
        let Some(r) = r else { return Ok(()) };
        if mode == Checksums::Verify || self.sampled >= CHECKSUM_SAMPLE {
            return r;
        }
        // Auto, still sampling (after it, only a verifying run gets here).
        let key = host_key(src);
        // The top byte of a multiplicative hash (its low bits depend only on the low bits).
        let slot = (key >> 24) as usize % self.good_hosts.len();
        self.sampled += 1;
        self.sampled_bad += u32::from(r.is_err());
        let looks_offloaded = self.sampled_bad as u64 * 10 > self.sampled as u64;
        if self.sampled == CHECKSUM_SAMPLE {
            self.offloaded = looks_offloaded;
        }
        if r.is_ok() {
            self.good_hosts[slot] = key;
        } else if looks_offloaded && self.good_hosts[slot] != key {
            self.offloaded = true;
            self.accepted_bad += 1;
            return Ok(());
        }
        r
    }

    /// Still checking under `mode`?
    #[inline]
    pub(crate) fn checking(&self, mode: Checksums) -> bool {
        match mode {
            Checksums::Verify => true,
            Checksums::Ignore => false,
            Checksums::Auto => !(self.offloaded && self.sampled >= CHECKSUM_SAMPLE),
        }
    }
}

/// A non-zero key of a frame's source address (for `ChecksumStats::good_hosts`).
#[inline]
fn host_key(a: &Addrs) -> u32 {
    let w = |i: usize| u32::from_ne_bytes([a.src[i], a.src[i + 1], a.src[i + 2], a.src[i + 3]]);
    let k = (w(0) ^ w(4).rotate_left(7) ^ w(8).rotate_left(13) ^ w(12).rotate_left(19))
        .wrapping_mul(0x9e37_79b1);
    k | 1
}

/// The one's-complement sum of `data` (RFC 1071) in 64-bit words, folded to 16 bits, in
/// network byte order. Words are read in native order and summed as two 32-bit halves into a
/// 64-bit accumulator (no carry chain; the byte order is fixed once at the end, which RFC 1071
/// §2(B) allows), so a 1,460-byte segment costs about 180 additions.
#[inline]
pub(crate) fn ones_sum(data: &[u8]) -> u16 {
    let (words, rest) = data.as_chunks::<8>();
    let mut acc = 0u64;
    for w in words {
        let w = u64::from_ne_bytes(*w);
        acc += (w & 0xffff_ffff) + (w >> 32);
    }
    if !rest.is_empty() {
        // The tail keeps its byte positions (even/odd) in a zero-padded word.
        let mut last = [0u8; 8];
        last[..rest.len()].copy_from_slice(rest);
        let w = u64::from_ne_bytes(last);
        acc += (w & 0xffff_ffff) + (w >> 32);
    }
    u16::from_be(fold(acc))
}

/// Fold a 64-bit one's-complement accumulator to 16 bits.
#[inline]
fn fold(mut acc: u64) -> u16 {
    acc = (acc & 0xffff_ffff) + (acc >> 32);
    acc = (acc & 0xffff_ffff) + (acc >> 32);
    acc = (acc & 0xffff) + (acc >> 16);
    acc = (acc & 0xffff) + (acc >> 16);
    acc as u16
}

/// Is the TCP checksum of `seg` (header and payload) right for the addresses in `addrs`?
#[inline]
pub(crate) fn tcp_checksum_ok(addrs: &Addrs, seg: &[u8]) -> bool {
    let alen = if addrs.v6 { 16 } else { 4 };
    let mut acc = u64::from(ones_sum(seg))
        + u64::from(ones_sum(&addrs.src[..alen]))
        + u64::from(ones_sum(&addrs.dst[..alen]))
        + 6;
    // IPv4: a 16-bit length; IPv6: a 32-bit one.
    let len = seg.len() as u64;
    acc += (len >> 16) + (len & 0xffff);
    fold(acc) == 0xffff
}

/// Is the IPv4 header starting at `frame[l3_off]` right (its checksum folds to all ones)?
#[inline]
fn ipv4_header_ok(frame: &[u8], l3_off: usize) -> bool {
    let ihl = frame.get(l3_off).map_or(0, |v| usize::from(v & 0x0f) * 4);
    frame
        .get(l3_off..l3_off + ihl)
        .is_some_and(|h| ones_sum(h) == 0xffff)
}

/// One checksum: the NIC's result if it has one, else computed.
#[inline]
fn one_check(
    nic: RxCheck,
    st: &mut ChecksumStats,
    bad: DropReason,
    compute: impl FnOnce() -> bool,
) -> Result<(), DropReason> {
    let ok = match nic {
        RxCheck::Good => {
            st.from_nic += 1;
            true
        }
        RxCheck::Bad => {
            st.from_nic += 1;
            false
        }
        RxCheck::Unknown => {
            st.computed += 1;
            compute()
        }
    };
    if ok {
        Ok(())
    } else {
        Err(bad)
    }
}

/// [`parse_l3`], then the IPv4 header checksum (every IPv4 frame, fragments too) and the TCP
/// checksum of an unfragmented segment, verified as `mode` says with what the NIC already
/// checked (`rx`). A bad frame is `Err(BadIpv4Checksum | BadTcpChecksum)` (never parsed
/// further, so never reassembled), or kept by `Auto` as offloaded.
/// (Inlined, so that without checking the parsed headers go straight to the caller.)
#[inline(always)]
pub(crate) fn parse_l3_checked<'f>(
    frame: &'f [u8],
    rx: RxMeta,
    mode: Checksums,
    st: &mut ChecksumStats,
) -> Result<L3<'f>, DropReason> {
    if !st.checking(mode) {
        return parse_l3(frame);
    }
    parse_l3_verified(frame, rx, mode, st)
}

/// [`parse_l3_checked`] while checking.
#[inline(never)]
fn parse_l3_verified<'f>(
    frame: &'f [u8],
    rx: RxMeta,
    mode: Checksums,
    st: &mut ChecksumStats,
) -> Result<L3<'f>, DropReason> {
    let l3 = parse_l3(frame)?;
    verify_l3(frame, &l3, rx, mode, st)?;
    Ok(l3)
}

/// The checks of [`parse_l3_verified`] on `l3`, the parse of `frame` (while checking).
#[inline(never)]
pub(crate) fn verify_l3(
    frame: &[u8],
    l3: &L3<'_>,
    rx: RxMeta,
    mode: Checksums,
    st: &mut ChecksumStats,
) -> Result<(), DropReason> {
    let r = match l3 {
        L3::Tcp {
            addrs,
            seg,
            l3_off,
            routed,
        } => {
            let ip = if addrs.v6 {
                Ok(())
            } else {
                one_check(rx.ipv4, st, DropReason::BadIpv4Checksum, || {
                    ipv4_header_ok(frame, *l3_off)
                })
            };
            if ip.is_err() {
                Some(ip)
            } else if *routed {
                None
            } else {
                Some(one_check(rx.l4, st, DropReason::BadTcpChecksum, || {
                    tcp_checksum_ok(addrs, seg)
                }))
            }
        }
        // A fragment: its IPv4 header now, the TCP checksum once the datagram is whole.
        L3::Frag { addrs, l3_off, .. } => (!addrs.v6).then(|| {
            one_check(rx.ipv4, st, DropReason::BadIpv4Checksum, || {
                ipv4_header_ok(frame, *l3_off)
            })
        }),
    };
    let src = match l3 {
        L3::Tcp { addrs, .. } | L3::Frag { addrs, .. } => addrs,
    };
    st.judge(mode, src, r)
}

/// [`parse_tcp`] of a reassembled datagram, its TCP checksum verified over the whole datagram
/// as `mode` says (the NIC checks no fragment's TCP checksum).
#[inline]
pub(crate) fn parse_tcp_checked<'d>(
    dg: &'d [u8],
    addrs: &Addrs,
    mode: Checksums,
    st: &mut ChecksumStats,
) -> Result<Tcp<'d>, DropReason> {
    if st.checking(mode) {
        let r = one_check(RxCheck::Unknown, st, DropReason::BadTcpChecksum, || {
            tcp_checksum_ok(addrs, dg)
        });
        st.judge(mode, addrs, Some(r))?;
    }
    parse_tcp(dg)
}

/// Pool chunks a datagram of up to [`FRAG_DATAGRAM_MAX`] bytes occupies.
const FRAG_CHUNKS: usize = FRAG_DATAGRAM_MAX.div_ceil(CHUNK_SIZE);
/// Received byte ranges tracked per datagram (a datagram needing more is dropped as
/// malformed: real senders fragment in order, with a handful of pieces).
const FRAG_RANGES: usize = 16;

/// One IP datagram in reassembly: its identity and which bytes arrived; the bytes themselves
/// are in pool chunks (taken as fragments arrive, returned when the datagram completes or is
/// dropped), so a slot costs under 320 bytes. Build the table from [`FragSlot::EMPTY`].
#[derive(Clone, Debug)]
pub struct FragSlot {
    used: bool,
    addrs: Addrs,
    proto: u8,
    id: u32,
    first_seen: u64,
    /// Last fragment added (least recently used is evicted first).
    last_used: u64,
    /// Fragments added.
    pieces: u16,
    /// Total length once the last fragment arrived (0: unknown).
    total: u32,
    /// Received ranges `[start, end)`: sorted, disjoint, not adjacent.
    ranges: [(u32, u32); FRAG_RANGES],
    nranges: u8,
    /// Pool chunk holding datagram bytes `k * CHUNK_SIZE ..`, or `NONE`.
    chunks: [u32; FRAG_CHUNKS],
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
        last_used: 0,
        pieces: 0,
        total: 0,
        ranges: [(0, 0); FRAG_RANGES],
        nranges: 0,
        chunks: [NONE; FRAG_CHUNKS],
    };

    fn complete(&self) -> bool {
        self.total != 0 && self.nranges == 1 && self.ranges[0] == (0, self.total)
    }

    /// Bytes of `[s, e)` already received.
    fn overlap(&self, s: u32, e: u32) -> u32 {
        self.ranges[..self.nranges as usize]
            .iter()
            .map(|&(a, b)| e.min(b).saturating_sub(s.max(a)))
            .sum()
    }

    /// Record `[s, e)` as received. False if that needs more than `FRAG_RANGES` ranges.
    fn add_range(&mut self, s: u32, e: u32) -> bool {
        let n = self.nranges as usize;
        // Ranges i..j overlap or touch [s, e]: they merge into one.
        let i = self.ranges[..n]
            .iter()
            .position(|&(_, b)| b >= s)
            .unwrap_or(n);
        let (mut j, mut ns, mut ne) = (i, s, e);
        while j < n && self.ranges[j].0 <= e {
            ns = ns.min(self.ranges[j].0);
            ne = ne.max(self.ranges[j].1);
            j += 1;
        }
        let new_n = n - (j - i) + 1;
        if new_n > FRAG_RANGES {
            return false;
        }
        self.ranges.copy_within(j..n, i + 1);
        self.ranges[i] = (ns, ne);
        self.nranges = new_n as u8;
        true
    }
}

/// The bounded fragment table.
#[derive(Debug)]
pub(crate) struct FragTable<'a> {
    pub slots: &'a mut [FragSlot],
    /// Where a complete datagram is copied for parsing (`Storage::frag_buf`); its length is the
    /// largest datagram reassembled.
    pub buf: &'a mut [u8],
    /// Slots in use (so the common no-fragment case touches no slot memory).
    pub used: usize,
}

/// A fragment to add.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Fragment<'d> {
    pub addrs: Addrs,
    pub proto: u8,
    pub id: u32,
    pub off: usize,
    pub more: bool,
    pub data: &'d [u8],
}

impl<'a> FragTable<'a> {
    /// Discard datagrams older than `timeout`.
    pub fn expire(&mut self, now: u64, timeout: u64, c: &mut Counters, pool: &mut Pool<'_>) {
        if self.used == 0 {
            return;
        }
        for i in 0..self.slots.len() {
            let s = &self.slots[i];
            if s.used && now.saturating_sub(s.first_seen) >= timeout {
                self.release(i, pool);
                c.dropped[DropReason::FragTimeout as usize] += 1;
            }
        }
    }

    /// Free a slot and its chunks.
    pub fn release(&mut self, i: usize, pool: &mut Pool<'_>) {
        if let Some(s) = self.slots.get_mut(i) {
            if s.used {
                s.used = false;
                self.used -= 1;
            }
            for c in s.chunks.iter_mut() {
                if *c != NONE {
                    pool.release(*c);
                    *c = NONE;
                }
            }
        }
    }

    /// The slot to reuse when the table is full: datagrams with a single fragment first (what
    /// a flood of junk fragments leaves), then the least recently used.
    fn victim(&self) -> Option<usize> {
        self.slots
            .iter()
            .enumerate()
            .min_by_key(|(_, s)| (s.pieces > 1, s.last_used))
            .map(|(i, _)| i)
    }

    /// Add a fragment. `Ok(Some(len))`: the datagram is complete, in `buf[..len]` (slot freed);
    /// `Ok(None)`: held. IPv6 fragments overlapping received bytes discard the datagram
    /// (RFC 5722); IPv4 overlaps follow `overlap` and count in `Counters::frag_overlaps`.
    pub fn add(
        &mut self,
        fr: Fragment<'_>,
        now: u64,
        timeout: u64,
        overlap: Overlap,
        c: &mut Counters,
        pool: &mut Pool<'_>,
    ) -> Result<Option<(Addrs, u8, usize)>, DropReason> {
        self.expire(now, timeout, c, pool);
        if self.slots.is_empty() {
            // No fragment table: every fragment is dropped (and counted) as if evicted.
            return Err(DropReason::FragEvicted);
        }
        let end = fr.off + fr.data.len();
        if end > FRAG_DATAGRAM_MAX || end > self.buf.len() {
            return Err(DropReason::FragTooBig);
        }
        if fr.more && (!fr.data.len().is_multiple_of(8) || fr.data.is_empty()) {
            return Err(DropReason::FragMalformed);
        }
        let found = self
            .slots
            .iter()
            .position(|s| s.used && s.id == fr.id && s.proto == fr.proto && s.addrs == fr.addrs);
        let i = match found {
            Some(i) => i,
            None => {
                let i = match self.slots.iter().position(|s| !s.used) {
                    Some(i) => i,
                    None => {
                        let i = self.victim().ok_or(DropReason::FragEvicted)?;
                        self.release(i, pool);
                        c.dropped[DropReason::FragEvicted as usize] += 1;
                        i
                    }
                };
                self.used += 1;
                let s = &mut self.slots[i];
                *s = FragSlot::EMPTY;
                s.used = true;
                s.addrs = fr.addrs;
                s.proto = fr.proto;
                s.id = fr.id;
                s.first_seen = now;
                i
            }
        };
        let (s, e) = (fr.off as u32, end as u32);
        let slot = &mut self.slots[i];
        slot.last_used = now;
        slot.pieces = slot.pieces.saturating_add(1);
        if !fr.more {
            if slot.total != 0 && slot.total != e {
                self.release(i, pool);
                return Err(DropReason::FragMalformed);
            }
            slot.total = e;
        }
        let last = slot.ranges[..slot.nranges as usize]
            .last()
            .map_or(0, |r| r.1);
        if slot.total != 0 && (e > slot.total || last > slot.total) {
            self.release(i, pool);
            return Err(DropReason::FragMalformed);
        }
        let overlapping = slot.overlap(s, e);
        if overlapping > 0 {
            if fr.addrs.v6 {
                self.release(i, pool);
                return Err(DropReason::FragOverlap);
            }
            c.frag_overlaps += 1;
        }
        // Copy the bytes into the slot's chunks: first copy wins (only bytes not yet
        // received), or last copy wins (all of them).
        let keep_old = overlapping > 0 && overlap == Overlap::First;
        let mut pos = s;
        while pos < e {
            let k = pos as usize / CHUNK_SIZE;
            let stop = e.min(((k + 1) * CHUNK_SIZE) as u32);
            let slot = &mut self.slots[i];
            if slot.chunks[k] == NONE {
                let Some(ch) = pool.alloc() else {
                    self.release(i, pool);
                    c.pool_exhausted += 1;
                    return Err(DropReason::FragEvicted);
                };
                slot.chunks[k] = ch;
            }
            let ch = slot.chunks[k];
            let mut p = pos;
            while p < stop {
                // With first-wins, skip the parts already received.
                let (run_end, write) = if keep_old {
                    match slot.ranges[..slot.nranges as usize]
                        .iter()
                        .find(|&&(a, b)| a <= p && p < b)
                    {
                        Some(&(_, b)) => (b.min(stop), false),
                        None => {
                            let next = slot.ranges[..slot.nranges as usize]
                                .iter()
                                .map(|&(a, _)| a)
                                .filter(|&a| a > p)
                                .min()
                                .unwrap_or(stop);
                            (next.min(stop), true)
                        }
                    }
                } else {
                    (stop, true)
                };
                if write {
                    let at = p as usize % CHUNK_SIZE;
                    let n = (run_end - p) as usize;
                    let src = &fr.data[(p - s) as usize..(p - s) as usize + n];
                    if let Some(dst) = pool.chunk_mut(ch).and_then(|c| c.get_mut(at..at + n)) {
                        dst.copy_from_slice(src);
                    }
                }
                p = run_end;
            }
            pos = stop;
        }
        if !self.slots[i].add_range(s, e) {
            self.release(i, pool);
            return Err(DropReason::FragMalformed);
        }
        if !self.slots[i].complete() {
            return Ok(None);
        }
        // Complete: copy it out for parsing and free the slot.
        let total = self.slots[i].total as usize;
        let mut at = 0;
        while at < total {
            let k = at / CHUNK_SIZE;
            let n = (total - at).min(CHUNK_SIZE);
            let src = pool.chunk(self.slots[i].chunks[k]).and_then(|c| c.get(..n));
            match (src, self.buf.get_mut(at..at + n)) {
                (Some(src), Some(dst)) => dst.copy_from_slice(src),
                _ => {
                    self.release(i, pool);
                    return Err(DropReason::FragMalformed);
                }
            }
            at += n;
        }
        let (addrs, proto) = (self.slots[i].addrs, self.slots[i].proto);
        self.release(i, pool);
        Ok(Some((addrs, proto, total)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The window scale as smoltcp's option parser finds it (the walk `syn_wscale` replaced).
    fn smoltcp_wscale(mut opts: &[u8]) -> Option<u8> {
        use smoltcp::wire::TcpOption;
        let mut wscale = None;
        while !opts.is_empty() {
            match TcpOption::parse(opts) {
                Ok((_, TcpOption::EndOfList)) | Err(_) => break,
                Ok((rest, opt)) => {
                    if let TcpOption::WindowScale(s) = opt {
                        wscale = Some(s.min(14));
                    }
                    opts = rest;
                }
            }
        }
        wscale
    }

    #[test]
    fn syn_wscale_matches_smoltcp() {
        // Random option lists built from plausible pieces (right and wrong lengths) and raw
        // random bytes, up to the 40 bytes a header holds.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut found = 0;
        for _ in 0..200_000 {
            let mut o = Vec::new();
            while o.len() < 40 {
                let r = next();
                match r % 10 {
                    0 => o.push(0),
                    1 | 2 => o.push(1),
                    3 => o.extend_from_slice(&[3, 2 + (r >> 8) as u8 % 3, (r >> 16) as u8 % 20]),
                    4 => o.extend_from_slice(&[2, 3 + (r >> 8) as u8 % 3, 5, 180]),
                    5 => o.extend_from_slice(&[4, 1 + (r >> 8) as u8 % 3]),
                    6 => {
                        let n = [10u8, 18, 26, 34, 9, 12][(r >> 8) as usize % 6];
                        o.push(5);
                        o.push(n);
                        o.extend(0..n.saturating_sub(2));
                    }
                    7 => o.extend_from_slice(&[8, 10, 1, 2, 3, 4, 5, 6, 7, 8]),
                    8 => o.extend_from_slice(&[(r >> 8) as u8, (r >> 16) as u8 % 8]),
                    _ => o.push((r >> 8) as u8),
                }
            }
            o.truncate(((next() % 41) as usize).min(o.len()));
            let want = smoltcp_wscale(&o);
            found += want.is_some() as u32;
            assert_eq!(syn_wscale(&o), want, "{o:?}");
        }
        // Both outcomes were exercised.
        assert!(found > 5_000 && found < 195_000, "{found}");
    }

    /// RFC 1071 the slow way: 16-bit big-endian words, end-around carry.
    fn naive(data: &[u8]) -> u16 {
        let mut s = 0u64;
        for c in data.chunks(2) {
            s += u64::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
        }
        while s > 0xffff {
            s = (s & 0xffff) + (s >> 16);
        }
        s as u16
    }

    #[test]
    fn the_word_sum_equals_rfc_1071_for_every_length_and_start() {
        // Bytes near 0xff make carries in every lane.
        let buf: Vec<u8> = (0..2100u32).map(|i| (i * 197 % 256) as u8 | 0xc0).collect();
        for start in 0..8 {
            for len in (0..80).chain([1459, 1460, 1461, 2000]) {
                let d = &buf[start..start + len];
                assert_eq!(ones_sum(d), naive(d), "start {start} len {len}");
            }
        }
        assert_eq!(ones_sum(&[0xff; 4096]), 0xffff);
        // RFC 1071's example: 00 01 f2 03 f4 f5 f6 f7 sums to ddf2.
        assert_eq!(
            ones_sum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
            0xddf2
        );
    }
}
