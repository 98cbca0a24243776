//! What [`super::Monitor::read_ahead`] remembers of each frame for `frame_with` to reuse.
//!
//! A frame is recognised by its slice (address and length). Its parse is reused only if the
//! bytes the parse read are still the same, compared against a copy taken when it was read
//! ahead: the caller may have written the slice since (a driver reusing a buffer, a test), and
//! the same bytes (in a slice of the same length) give the same parse. The parse reads the
//! Ethernet type (not the MAC addresses before it), VLAN tags, the IP header and extension
//! headers, and of the TCP header its first 16 bytes (ports, numbers, offset, flags, window;
//! not the checksum and urgent pointer) and, in a SYN only, its options: so the bytes from
//! [`ETH_TYPE`] to 16 bytes into the segment (to the payload in a SYN) are all it depends on,
//! and a copy holding them (and perhaps a few bytes around them) is compared. Its flow key's
//! hash is reused when the parse is, or else when the key is equal: the hash is a function of
//! the key (and of the configuration's hash key, which never changes), so a reused hash is
//! never wrong. Checksums are verified in `frame_with`, on the frame it is given, either way.

use super::slots::ip_key;
use super::tcp::{without_payload, Keyed};
use super::READ_AHEAD;
use crate::flow::FlowKey;
use crate::intake::{self, Addrs, Tcp, L3};

/// Header bytes kept per frame (the wide form): a frame whose parse read more keeps only its
/// key and hash.
pub(super) const HDR_MAX: usize = 96;

/// The first byte a parse reads: the Ethernet type (the addresses before it are not read).
pub(super) const ETH_TYPE: usize = 12;

/// Bytes compared in the short form: one fixed-size window of the frame holding every byte
/// the parse read, when those end within `ETH_TYPE + SHORT` (IPv4 with up to two VLAN tags,
/// any segment but a SYN with options): copied and compared without a length-dependent loop.
pub(super) const SHORT: usize = 48;

/// The parse of an unfragmented TCP segment without its lifetime (offsets into the frame).
#[derive(Clone, Copy, Debug)]
pub(super) struct Parsed {
    pub l3_off: usize,
    /// The TCP segment, `frame[seg.0..seg.1]`.
    pub seg: (usize, usize),
    pub routed: bool,
    /// The TCP fields, the payload (`frame[payload_off..seg.1]`) left out.
    pub tcp: Tcp<'static>,
    pub payload_off: usize,
    /// The flow key, whether the sender is its endpoint `a`, and its hash.
    pub k: Keyed,
}

impl Parsed {
    pub const EMPTY: Parsed = Parsed {
        l3_off: 0,
        seg: (0, 0),
        routed: false,
        tcp: Tcp {
            sport: 0,
            dport: 0,
            seq: 0,
            ack: 0,
            syn: false,
            ack_flag: false,
            fin: false,
            rst: false,
            wscale: None,
            window: 0,
            payload: &[],
        },
        payload_off: 0,
        k: Keyed {
            key: FlowKey::EMPTY,
            sender_is_a: false,
            hash: 0,
        },
    };

    /// The segment's addresses (as `parse_l3` gave them: the sender's first).
    pub fn addrs(&self) -> Addrs {
        let k = &self.k.key;
        let (src, dst) = if self.k.sender_is_a {
            (k.a, k.b)
        } else {
            (k.b, k.a)
        };
        Addrs { v6: k.v6, src, dst }
    }
}

/// Nothing kept (not an unfragmented TCP segment with a valid header).
pub(super) const KEPT_NOTHING: u8 = 0;
/// The key and its hash only (the parse read more than [`HDR_MAX`] bytes).
pub(super) const KEPT_KEY: u8 = 1;
/// The whole parse, with `hdr[..SHORT] == frame[at..at + SHORT]` (the short form).
pub(super) const KEPT_SHORT: u8 = 2;
/// The whole parse, with `hdr[..at - ETH_TYPE] == frame[ETH_TYPE..at]` (the wide form).
pub(super) const KEPT_WIDE: u8 = 3;

/// One frame read ahead.
#[derive(Clone, Copy, Debug)]
pub(super) struct Seen {
    pub addr: usize,
    pub len: usize,
    /// `KEPT_*`.
    pub kept: u8,
    /// Where the copy starts (`KEPT_SHORT`) or ends (`KEPT_WIDE`) in the frame.
    pub at: usize,
    /// A copy of the frame's bytes that the parse read (and maybe a few around them).
    pub hdr: [u8; HDR_MAX],
    pub p: Parsed,
}

impl Seen {
    pub const EMPTY: Seen = Seen {
        addr: 0,
        len: 0,
        kept: KEPT_NOTHING,
        at: 0,
        hdr: [0; HDR_MAX],
        p: Parsed::EMPTY,
    };

    /// Read `frame` ahead: its slice, and if it is an unfragmented TCP segment its parse, flow
    /// key and hash (under `hash_key`) and a copy of the bytes its parse read. Returns `kept`.
    #[inline(always)]
    pub fn read(&mut self, frame: &[u8], hash_key: &[u64; 2]) -> u8 {
        self.addr = frame.as_ptr() as usize;
        self.len = frame.len();
        if let Some(kept) = self.read_v4(frame, hash_key) {
            return kept;
        }
        self.read_any(frame, hash_key)
    }

    /// [`Seen::read`] of the most common frame, found by a few byte tests: IPv4 without a
    /// VLAN tag, options or fragmentation carrying a TCP segment. What it keeps is what [`Seen::read_any`] (`parse_l3`,
    /// `parse_tcp`) keeps of such a frame (`the_ipv4_path_keeps_what_the_general_one_does`);
    /// `None` (nothing written but the slice): any other frame, for `read_any`.
    #[inline(always)]
    fn read_v4(&mut self, frame: &[u8], hash_key: &[u64; 2]) -> Option<u8> {
        // Ethernet 14, IPv4 20, TCP 20.
        let h: &[u8; 54] = frame.first_chunk()?;
        let total = u16::from_be_bytes([h[16], h[17]]) as usize;
        // Type IPv4, version 4 with a 20-byte header, no more fragments and offset 0, TCP.
        let plain = u16::from_be_bytes([h[12], h[13]]) == 0x0800
            && h[14] == 0x45
            && u16::from_be_bytes([h[20], h[21]]) & 0x3fff == 0
            && h[23] == 6;
        // A total length of 0 (the rest of the frame) is left to `read_any`; the datagram
        // within the frame, with at least a TCP header.
        let tcp_len = total.wrapping_sub(20);
        let header_len = ((h[46] >> 4) as usize) * 4;
        let flags = h[47];
        if !plain
            || total < 40
            || total > frame.len() - 14
            || header_len < 20
            || tcp_len < header_len
        {
            return None;
        }
        // A SYN's window scale, from its options (what `parse_tcp` reads of them).
        let syn = flags & 0x02 != 0;
        let wscale = if syn {
            intake::syn_wscale(frame.get(54..34 + header_len).unwrap_or(&[]))
        } else {
            None
        };
        let src: [u8; 4] = [h[26], h[27], h[28], h[29]];
        let dst: [u8; 4] = [h[30], h[31], h[32], h[33]];
        // The fixed TCP header, the last 20 of the 54 bytes.
        let th: &[u8; 20] = h.last_chunk()?;
        let sport = u16::from_be_bytes([h[34], h[35]]);
        let dport = u16::from_be_bytes([h[36], h[37]]);
        // `FlowKey::new`'s order: the addresses as big-endian numbers (four bytes, the rest
        // of the sixteen zero), then the ports.
        let (s, d) = (u32::from_be_bytes(src), u32::from_be_bytes(dst));
        let sender_is_a = s < d || (s == d && sport <= dport);
        let pad = |w: [u8; 4]| {
            let mut a = [0u8; 16];
            a[..4].copy_from_slice(&w);
            a
        };
        let key = if sender_is_a {
            FlowKey {
                a: pad(src),
                b: pad(dst),
                pa: sport,
                pb: dport,
                v6: false,
            }
        } else {
            FlowKey {
                a: pad(dst),
                b: pad(src),
                pa: dport,
                pb: sport,
                v6: false,
            }
        };
        let hash = key.hash(hash_key);
        self.p = Parsed {
            l3_off: 14,
            seg: (34, 14 + total),
            routed: false,
            tcp: intake::tcp_fields(th, wscale, &[]),
            payload_off: 34 + header_len,
            k: Keyed {
                key,
                sender_is_a,
                hash,
            },
        };
        // The parse read bytes 12..50 (to the TCP window), and a SYN's options.
        let hi = if syn { 34 + header_len } else { 50 };
        self.kept = self.keep(frame, hi);
        Some(self.kept)
    }

    /// [`Seen::read`] of any frame: `parse_l3`, `parse_tcp`.
    #[inline(never)]
    fn read_any(&mut self, frame: &[u8], hash_key: &[u64; 2]) -> u8 {
        self.kept = KEPT_NOTHING;
        let Ok(L3::Tcp {
            addrs,
            seg,
            l3_off,
            routed,
        }) = intake::parse_l3(frame)
        else {
            return KEPT_NOTHING;
        };
        let Ok(t) = intake::parse_tcp(seg) else {
            return KEPT_NOTHING;
        };
        let (key, sender_is_a) = ip_key(&addrs, &t);
        let hash = key.hash(hash_key);
        // `seg` is a subslice of `frame`, and the payload is the end of `seg`.
        let seg_off = (seg.as_ptr() as usize).wrapping_sub(frame.as_ptr() as usize);
        let seg_end = seg_off.wrapping_add(seg.len());
        let payload_off = seg_end.saturating_sub(t.payload.len());
        let _ = addrs; // (`Parsed::addrs` gives them back from the key.)
        self.p = Parsed {
            l3_off,
            seg: (seg_off, seg_end),
            routed,
            tcp: without_payload(&t),
            payload_off,
            k: Keyed {
                key,
                sender_is_a,
                hash,
            },
        };
        // What the parse read ends 16 bytes into the TCP header (after the window), or with
        // the options of a SYN (`parse_tcp` reads them only then).
        let hi = if t.syn {
            payload_off
        } else {
            seg_off.wrapping_add(16)
        };
        self.kept = self.keep(frame, hi);
        self.kept
    }

    /// Keep a copy of `frame`'s bytes before `hi`, the end of what its parse read (from
    /// [`ETH_TYPE`] on): the parse is reused only if they are unchanged. Returns the `KEPT_*`.
    #[inline(always)]
    pub fn keep(&mut self, frame: &[u8], hi: usize) -> u8 {
        let len = frame.len();
        if hi <= ETH_TYPE + SHORT && len >= SHORT {
            // A window of SHORT bytes holding `ETH_TYPE..hi`: from ETH_TYPE, or ending with the
            // frame if the frame ends sooner (it ends at `hi` or later).
            let at = ETH_TYPE.min(len - SHORT);
            if let (Some(w), Some(d)) = (frame.get(at..at + SHORT), self.hdr.get_mut(..SHORT)) {
                d.copy_from_slice(w);
                self.at = at;
                return KEPT_SHORT;
            }
        }
        let n = hi.wrapping_sub(ETH_TYPE);
        match (frame.get(ETH_TYPE..hi), self.hdr.get_mut(..n)) {
            (Some(h), Some(d)) => {
                d.copy_from_slice(h);
                self.at = hi;
                KEPT_WIDE
            }
            _ => KEPT_KEY,
        }
    }

    /// Whether `frame` (this one's slice) still holds the bytes kept.
    #[inline(always)]
    fn unchanged(&self, frame: &[u8]) -> bool {
        if self.kept == KEPT_SHORT {
            let w = frame.get(self.at..).and_then(|w| w.first_chunk::<SHORT>());
            let h = self.hdr.first_chunk::<SHORT>();
            return match (w, h) {
                (Some(w), Some(h)) => same_words(w, h),
                _ => false,
            };
        }
        let n = self.at.wrapping_sub(ETH_TYPE);
        match (frame.get(ETH_TYPE..self.at), self.hdr.get(..n)) {
            (Some(a), Some(b)) => same_prefix(a, b, n),
            _ => false,
        }
    }
}

/// What the last `read_ahead` remembered.
#[derive(Debug)]
pub(super) struct Ahead {
    pub seen: [Seen; READ_AHEAD],
    /// Frames remembered. (Both full words: `frame_with` stores `at` and the next one loads
    /// both; bytes next to each other were loaded as one word, a store-forwarding stall.)
    pub n: usize,
    /// The next one expected.
    pub at: usize,
}

/// What `frame_with` may reuse of a frame.
pub(super) enum Reuse {
    /// Nothing: parse and hash.
    Nothing,
    /// Remembered frame `i` has a key and hash (reuse the hash if the key is equal).
    Hash(usize),
    /// The parse, the key and the hash of remembered frame `i` (the bytes its parse read are
    /// unchanged).
    Parse(usize),
}

impl Ahead {
    pub const EMPTY: Ahead = Ahead {
        seen: [Seen::EMPTY; READ_AHEAD],
        n: 0,
        at: 0,
    };

    /// What can be reused for `frame`: the remembered frame with its slice (the next
    /// expected one, or a later one if frames were skipped; it and those before it are used
    /// up).
    #[inline]
    pub fn take(&mut self, frame: &[u8]) -> Reuse {
        let (addr, len) = (frame.as_ptr() as usize, frame.len());
        let n = self.n.min(READ_AHEAD);
        for i in self.at..n {
            let s = &self.seen[i];
            if s.addr == addr && s.len == len {
                self.at = i + 1;
                return match s.kept {
                    KEPT_NOTHING => Reuse::Nothing,
                    KEPT_KEY => Reuse::Hash(i),
                    _ if s.unchanged(frame) => Reuse::Parse(i),
                    _ => Reuse::Hash(i),
                };
            }
        }
        Reuse::Nothing
    }

    /// The key and hash of remembered frame `i` (to reuse the hash if the key is equal).
    #[inline]
    pub fn keyed(&self, i: usize) -> Option<&Keyed> {
        let s = self.seen.get(i)?;
        (s.kept != KEPT_NOTHING).then_some(&s.p.k)
    }
}

/// `a == b`, in 64-bit words.
#[inline(always)]
fn same_words(a: &[u8; SHORT], b: &[u8; SHORT]) -> bool {
    let (aw, _) = a.as_chunks::<8>();
    let (bw, _) = b.as_chunks::<8>();
    let mut d = 0u64;
    for (x, y) in aw.iter().zip(bw) {
        d |= u64::from_ne_bytes(*x) ^ u64::from_ne_bytes(*y);
    }
    d == 0
}

/// `a[..n] == b[..n]` (false if either is shorter), in 64-bit words.
#[inline]
pub(super) fn same_prefix(a: &[u8], b: &[u8], n: usize) -> bool {
    let (Some(a), Some(b)) = (a.get(..n), b.get(..n)) else {
        return false;
    };
    let (aw, _) = a.as_chunks::<8>();
    let (bw, _) = b.as_chunks::<8>();
    let mut d = 0u64;
    for (x, y) in aw.iter().zip(bw) {
        d |= u64::from_ne_bytes(*x) ^ u64::from_ne_bytes(*y);
    }
    // The last (partial) word, as the last eight bytes (overlapping the one before).
    match (a.last_chunk::<8>(), b.last_chunk::<8>()) {
        (Some(x), Some(y)) => d |= u64::from_ne_bytes(*x) ^ u64::from_ne_bytes(*y),
        _ => return a == b,
    }
    d == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame: `vlans` tags, IPv4 (with `ip_opts` bytes of options) or IPv6 (with a
    /// hop-by-hop header if `ext`), a SYN with 12 bytes of options or an ACK with 12 bytes of
    /// timestamps (`opts`) or none, and `payload` bytes.
    fn frame(
        vlans: usize,
        v6: bool,
        ip_opts: usize,
        ext: bool,
        syn: bool,
        opts: bool,
        payload: usize,
    ) -> Vec<u8> {
        let mut f: Vec<u8> = (1..=12).collect();
        for i in 0..vlans {
            let tpid: u16 = if i + 1 < vlans { 0x88a8 } else { 0x8100 };
            f.extend_from_slice(&tpid.to_be_bytes());
            f.extend_from_slice(&[0, 7 + i as u8]);
        }
        let topts: &[u8] = match (syn, opts) {
            (true, true) => &[2, 4, 5, 180, 1, 3, 3, 7, 4, 2, 1, 1],
            (false, true) => &[1, 1, 8, 10, 0, 0, 1, 2, 0, 0, 3, 4],
            _ => &[],
        };
        let tcp_len = 20 + topts.len() + payload;
        if v6 {
            f.extend_from_slice(&0x86ddu16.to_be_bytes());
            let plen = tcp_len + if ext { 8 } else { 0 };
            f.extend_from_slice(&[0x60, 0, 0, 0]);
            f.extend_from_slice(&(plen as u16).to_be_bytes());
            f.extend_from_slice(&[if ext { 0 } else { 6 }, 64]);
            f.extend((0..32).map(|i| 0x20 + i as u8));
            if ext {
                f.extend_from_slice(&[6, 0, 1, 4, 0, 0, 0, 0]);
            }
        } else {
            f.extend_from_slice(&0x0800u16.to_be_bytes());
            let hl = 20 + ip_opts;
            f.push(0x40 | (hl / 4) as u8);
            f.push(0);
            f.extend_from_slice(&((hl + tcp_len) as u16).to_be_bytes());
            f.extend_from_slice(&[0x12, 0x34, 0x40, 0, 64, 6, 0xab, 0xcd]);
            f.extend_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2]);
            f.extend(core::iter::repeat_n(1, ip_opts));
        }
        f.extend_from_slice(&[0x9c, 0x40, 0, 80, 1, 2, 3, 4, 5, 6, 7, 8]);
        f.push((((20 + topts.len()) / 4) as u8) << 4);
        f.push(if syn { 0x02 } else { 0x18 });
        f.extend_from_slice(&[2, 0, 0x55, 0x66, 0, 0]);
        f.extend_from_slice(topts);
        f.extend((0..payload).map(|i| i as u8));
        f
    }

    /// Everything `frame_with` takes from a parse (None: not a TCP segment it keeps).
    fn parse(f: &[u8]) -> Option<String> {
        let Ok(L3::Tcp {
            addrs,
            seg,
            l3_off,
            routed,
        }) = intake::parse_l3(f)
        else {
            return None;
        };
        let t = intake::parse_tcp(seg).ok()?;
        let seg_off = seg.as_ptr() as usize - f.as_ptr() as usize;
        Some(format!(
            "{addrs:?} {l3_off} {routed} {seg_off}+{} {:?} {}",
            seg.len(),
            without_payload(&t),
            t.payload.len()
        ))
    }

    #[test]
    fn the_ipv4_path_keeps_what_the_general_one_does() {
        let key = [5, 6];
        let bases = [
            frame(0, false, 0, false, false, false, 0),
            frame(0, false, 0, false, false, true, 0),
            frame(0, false, 0, false, false, false, 100),
            frame(0, false, 0, false, true, false, 0),
            frame(0, false, 0, false, true, true, 0),
            frame(0, false, 4, false, false, false, 3),
            frame(1, false, 0, false, false, false, 10),
            frame(0, true, 0, false, false, false, 10),
        ];
        let (mut fast, mut checked) = (0, 0);
        let mut check = |g: &[u8]| {
            let mut a = Seen::EMPTY;
            let got = a.read(g, &key);
            let mut b = Seen::EMPTY;
            b.addr = g.as_ptr() as usize;
            b.len = g.len();
            let want = b.read_any(g, &key);
            assert_eq!(got, want, "{g:?}");
            assert_eq!(format!("{a:?}"), format!("{b:?}"), "{g:?}");
            let mut c = Seen::EMPTY;
            fast += c.read_v4(g, &key).is_some() as u32;
            checked += 1;
        };
        for base in &bases {
            let len = base.len();
            // Every header byte set to values near the tested ones, and cut frames.
            for at in 12..len.min(60) {
                let o = base[at];
                let values = [
                    0x00,
                    0xff,
                    0x01,
                    0x02,
                    0x04,
                    0x06,
                    0x08,
                    0x10,
                    0x12,
                    0x1f,
                    0x20,
                    0x3f,
                    0x40,
                    0x45,
                    0x46,
                    0x50,
                    0x60,
                    0x81,
                    0x86,
                    0xf0,
                    o ^ 1,
                    o.wrapping_add(1),
                    o.wrapping_sub(1),
                ];
                for v in values {
                    let mut g = base.clone();
                    g[at] = v;
                    for cut in [len, len - 1, 54, 53] {
                        if cut <= len {
                            check(&g[..cut]);
                        }
                    }
                }
            }
            // The IPv4 total length and the TCP data offset around their limits.
            for total in [
                0,
                1,
                39,
                40,
                41,
                59,
                60,
                len - 15,
                len - 14,
                len - 13,
                0xffff,
            ] {
                for off in [0x00, 0x40, 0x50, 0x60, 0xa0, 0xf0] {
                    let mut g = base.clone();
                    if g.len() >= 54 {
                        g[16..18].copy_from_slice(&(total as u16).to_be_bytes());
                        g[46] = off;
                    }
                    check(&g);
                }
            }
        }
        assert_eq!(checked, 34_752);
        // (Frames the IPv4 path took.)
        assert_eq!(fast, 5_866);
    }

    #[test]
    fn a_kept_parse_is_reused_exactly_when_the_bytes_it_read_are_unchanged() {
        // (vlans, v6, ip_opts, ext, syn, opts, payload) and the form kept.
        let cases = [
            ((0, false, 0, false, false, false, 0), KEPT_SHORT),
            ((0, false, 0, false, false, true, 0), KEPT_SHORT),
            ((0, false, 0, false, false, false, 700), KEPT_SHORT),
            ((0, false, 0, false, true, false, 0), KEPT_SHORT),
            ((1, false, 0, false, false, true, 30), KEPT_SHORT),
            ((2, false, 0, false, false, false, 0), KEPT_SHORT),
            ((0, false, 8, false, false, false, 5), KEPT_SHORT),
            ((0, false, 0, false, true, true, 0), KEPT_WIDE),
            ((2, false, 0, false, true, true, 0), KEPT_WIDE),
            ((0, false, 12, false, false, true, 0), KEPT_WIDE),
            ((0, true, 0, false, false, false, 0), KEPT_WIDE),
            ((0, true, 0, true, false, true, 100), KEPT_WIDE),
            ((1, true, 0, true, true, true, 0), KEPT_WIDE),
            ((0, true, 0, true, true, true, 0), KEPT_WIDE),
            // 2 + 16 + 40 + 8 + 32 = 98 bytes from the Ethernet type to the options' end:
            // more than HDR_MAX.
            ((4, true, 0, true, true, true, 0), KEPT_KEY),
        ];
        let key = [3, 4];
        let mut reused = 0;
        for ((vlans, v6, ip_opts, ext, syn, opts, payload), form) in cases {
            let f = frame(vlans, v6, ip_opts, ext, syn, opts, payload);
            let want = parse(&f).expect("a TCP segment");
            let mut s = Seen::EMPTY;
            assert_eq!(s.read(&f, &key), form, "{f:?}");
            assert_eq!(s.kept, form);
            assert_eq!((s.addr, s.len), (f.as_ptr() as usize, f.len()));
            // What is kept is the parse (in the form `parse` prints it).
            let p = &s.p;
            let kept = format!(
                "{:?} {} {} {}+{} {:?} {}",
                p.addrs(),
                p.l3_off,
                p.routed,
                p.seg.0,
                p.seg.1 - p.seg.0,
                p.tcp,
                p.seg.1 - p.payload_off
            );
            assert_eq!(kept, want);
            if form == KEPT_KEY {
                continue;
            }
            assert!(s.unchanged(&f));
            // Every byte changed in turn (several ways): where the copy still matches, the
            // parse of the changed frame is the one kept; every byte the parse depends on is
            // in the copy.
            for at in 0..f.len() {
                for flip in [0x01u8, 0x10, 0x80, 0xff] {
                    let mut g = f.clone();
                    g[at] ^= flip;
                    if s.unchanged(&g) {
                        assert_eq!(parse(&g).as_ref(), Some(&want), "byte {at} ^ {flip:#x}");
                        reused += 1;
                    }
                }
                // The bytes the parse read (from the Ethernet type to 16 bytes into the TCP
                // header, to its options in a SYN) are all compared.
                let seg_off = s.p.seg.0;
                let hi = if syn { s.p.payload_off } else { seg_off + 16 };
                if (ETH_TYPE..hi).contains(&at) {
                    let mut g = f.clone();
                    g[at] ^= 0x01;
                    assert!(!s.unchanged(&g), "byte {at}");
                }
            }
        }
        // The MAC addresses, checksums and payload bytes changed without a new parse.
        assert!(reused > 1000, "{reused}");
    }

    #[test]
    fn same_prefix_sees_every_byte() {
        let a: Vec<u8> = (0..HDR_MAX as u8).collect();
        for n in 0..=HDR_MAX {
            assert!(same_prefix(&a, &a.clone(), n), "{n}");
            for at in 0..n {
                let mut b = a.clone();
                b[at] ^= 0x40;
                assert!(!same_prefix(&a, &b, n), "n {n}, byte {at}");
            }
            // Bytes from `n` on do not count.
            let mut b = a.clone();
            if n < HDR_MAX {
                b[n] ^= 1;
            }
            assert!(same_prefix(&a, &b, n), "{n}");
        }
        assert!(!same_prefix(&a[..10], &a, 11));
    }
}
