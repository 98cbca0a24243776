//! What [`super::Monitor::read_ahead`] remembers of each frame for `frame_with` to reuse.
//!
//! A frame is recognised by its slice (address and length). Its parse is reused only if the
//! bytes the parse read (everything before the TCP payload) are still the same, compared
//! against a copy taken when it was read ahead: the caller may have written the slice since
//! (a driver reusing a buffer, a test), and the same bytes give the same parse. Its flow key's
//! hash is reused when the parse is, or else when the key is equal: the hash is a function of
//! the key (and of the configuration's hash key, which never changes), so a reused hash is
//! never wrong. Checksums are verified in `frame_with`, on the frame it is given, either way.

use super::READ_AHEAD;
use crate::flow::FlowKey;
use crate::intake::{Addrs, Tcp};

/// Header bytes kept per frame: Ethernet with two VLAN tags, IPv6 and a TCP header with
/// timestamps fit (14 + 8 + 40 + 32 = 94); a frame with longer headers keeps only its key.
pub(super) const HDR_MAX: usize = 96;

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
    pub key: FlowKey,
    pub sender_is_a: bool,
    pub hash: u64,
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
        key: FlowKey::EMPTY,
        sender_is_a: false,
        hash: 0,
    };

    /// The segment's addresses (as `parse_l3` gave them: the sender's first).
    pub fn addrs(&self) -> Addrs {
        let k = &self.key;
        let (src, dst) = if self.sender_is_a {
            (k.a, k.b)
        } else {
            (k.b, k.a)
        };
        Addrs { v6: k.v6, src, dst }
    }
}

/// Nothing kept (not an unfragmented TCP segment with a valid header).
pub(super) const KEPT_NOTHING: u8 = 0;
/// The key and its hash only (headers longer than [`HDR_MAX`]).
pub(super) const KEPT_KEY: u8 = 1;
/// The whole parse, with a copy of the header bytes it read.
pub(super) const KEPT_PARSE: u8 = 2;

/// One frame read ahead.
#[derive(Clone, Copy, Debug)]
pub(super) struct Seen {
    pub addr: usize,
    pub len: usize,
    /// `KEPT_*`.
    pub kept: u8,
    /// `hdr[..p.payload_off]` are the frame's bytes before its payload (with `KEPT_PARSE`).
    pub hdr: [u8; HDR_MAX],
    pub p: Parsed,
}

impl Seen {
    pub const EMPTY: Seen = Seen {
        addr: 0,
        len: 0,
        kept: KEPT_NOTHING,
        hdr: [0; HDR_MAX],
        p: Parsed::EMPTY,
    };
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
    /// The parse, the key and the hash of remembered frame `i` (the header bytes are
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
                    KEPT_PARSE if same_prefix(frame, &s.hdr, s.p.payload_off) => Reuse::Parse(i),
                    KEPT_NOTHING => Reuse::Nothing,
                    _ => Reuse::Hash(i),
                };
            }
        }
        Reuse::Nothing
    }

    /// The hash of `key` if remembered frame `i` has the same key.
    #[inline]
    pub fn hash_of(&self, i: usize, key: &FlowKey) -> Option<u64> {
        let s = self.seen.get(i)?;
        (s.kept != KEPT_NOTHING && s.p.key.same(key)).then_some(s.p.hash)
    }
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
