//! Inline mode: IP fragments are held until their datagram's verdict.
//!
//! The monitor reassembles a fragmented datagram and gives its verdict on the fragment that
//! completes it; the earlier fragments get `Forward` (counted `FragmentHeld`). The runtime
//! (image and host runner alike) therefore copies each held fragment here, and when the
//! datagram completes it sends all of them in arrival order, then the completing one, or
//! drops them all. Fragments whose datagram never completes are forwarded after the
//! monitor's fragment timeout (fail-open, as for any frame the monitor cannot follow); when
//! this store is full a fragment is forwarded at once (counted by the caller).
//!
//! Fixed capacity, no allocation: the caller lends the frame buffers and the table.

use monitor::{Counters, DropReason};

/// What became of a frame in `Monitor::frame`, told by the monitor's fragment counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    /// Not a fragment the monitor kept or completed.
    Whole,
    /// A fragment held for reassembly (its verdict comes with the datagram's last fragment).
    Held,
    /// The fragment that completed a datagram: the verdict is the datagram's.
    Completed,
}

/// The counters [`fate`] compares: (fragments held, datagrams reassembled).
#[inline]
pub fn marks(c: &Counters) -> (u64, u64) {
    (
        c.drop_count(DropReason::FragmentHeld),
        c.datagrams_reassembled,
    )
}

/// The fate of the frame processed between `before` and `after` (see [`marks`]).
#[inline]
pub fn fate(before: (u64, u64), after: (u64, u64)) -> Fate {
    if after.0 > before.0 {
        Fate::Held
    } else if after.1 > before.1 {
        Fate::Completed
    } else {
        Fate::Whole
    }
}

/// Held fragments per fragment slot (a 16 KiB datagram is a dozen 1500-byte fragments).
pub const HELD_PER_SLOT: usize = 8;

/// Largest fragment frame held (one receive buffer).
pub const HOLD_FRAME_MAX: usize = 2048;

/// What identifies a datagram's fragments (as the monitor's reassembly keys them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FragKey {
    v6: bool,
    src: [u8; 16],
    dst: [u8; 16],
    id: u32,
    proto: u8,
}

const ETH_VLAN: u16 = 0x8100;
const ETH_QINQ: u16 = 0x88a8;
const ETH_QINQ_OLD: u16 = 0x9100;

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

/// The datagram key of an IPv4 or IPv6 fragment (Ethernet, up to 4 VLAN tags); `None` for
/// anything else.
pub fn frag_key(frame: &[u8]) -> Option<FragKey> {
    let mut ty = be16(frame, 12)?;
    let mut off = 14;
    for _ in 0..4 {
        if ty != ETH_VLAN && ty != ETH_QINQ && ty != ETH_QINQ_OLD {
            break;
        }
        ty = be16(frame, off + 2)?;
        off += 4;
    }
    let ip = frame.get(off..)?;
    let mut k = FragKey {
        v6: false,
        src: [0; 16],
        dst: [0; 16],
        id: 0,
        proto: 0,
    };
    match ty {
        0x0800 => {
            let fo = be16(ip, 6)?;
            if fo & 0x2000 == 0 && fo & 0x1fff == 0 {
                return None;
            }
            k.src[..4].copy_from_slice(ip.get(12..16)?);
            k.dst[..4].copy_from_slice(ip.get(16..20)?);
            k.id = be16(ip, 4)? as u32;
            k.proto = *ip.get(9)?;
            Some(k)
        }
        0x86dd => {
            k.v6 = true;
            k.src.copy_from_slice(ip.get(8..24)?);
            k.dst.copy_from_slice(ip.get(24..40)?);
            let mut next = *ip.get(6)?;
            let mut at = 40;
            for _ in 0..8 {
                match next {
                    0 | 43 | 60 => {
                        let len = 8 * (*ip.get(at + 1)? as usize + 1);
                        next = *ip.get(at)?;
                        at += len;
                    }
                    51 => {
                        let len = 4 * (*ip.get(at + 1)? as usize + 2);
                        next = *ip.get(at)?;
                        at += len;
                    }
                    44 => {
                        let fo = be16(ip, at + 2)?;
                        if fo & 0xfff8 == 0 && fo & 1 == 0 {
                            return None; // atomic fragment: not held by the monitor
                        }
                        k.proto = *ip.get(at)?;
                        k.id = u32::from_be_bytes(ip.get(at + 4..at + 8)?.try_into().ok()?);
                        return Some(k);
                    }
                    _ => return None,
                }
            }
            None
        }
        _ => None,
    }
}

/// One held fragment's bookkeeping.
#[derive(Clone, Copy, Debug)]
pub struct Held {
    key: FragKey,
    used: bool,
    port: u8,
    len: u16,
    since_us: u64,
    seq: u64,
}

impl Held {
    /// A free entry.
    pub const EMPTY: Held = Held {
        key: FragKey {
            v6: false,
            src: [0; 16],
            dst: [0; 16],
            id: 0,
            proto: 0,
        },
        used: false,
        port: 0,
        len: 0,
        since_us: 0,
        seq: 0,
    };
}

/// Held fragments: `frames[i]` holds the bytes of `held[i]`.
pub struct FragHold<'a> {
    frames: &'a mut [[u8; HOLD_FRAME_MAX]],
    held: &'a mut [Held],
    count: usize,
    seq: u64,
}

impl<'a> FragHold<'a> {
    /// A store over lent buffers (capacity: the shorter of the two).
    pub fn new(frames: &'a mut [[u8; HOLD_FRAME_MAX]], held: &'a mut [Held]) -> Self {
        for h in held.iter_mut() {
            *h = Held::EMPTY;
        }
        FragHold {
            frames,
            held,
            count: 0,
            seq: 0,
        }
    }

    /// Fragments held now.
    pub fn len(&self) -> usize {
        self.count
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Keeps a copy of `frame` (bound for `port`); false when full or too large.
    pub fn hold(&mut self, key: FragKey, port: usize, frame: &[u8], now_us: u64) -> bool {
        if frame.len() > HOLD_FRAME_MAX {
            return false;
        }
        let cap = self.frames.len().min(self.held.len());
        let Some(i) = self.held[..cap].iter().position(|h| !h.used) else {
            return false;
        };
        self.frames[i][..frame.len()].copy_from_slice(frame);
        self.seq += 1;
        self.held[i] = Held {
            key,
            used: true,
            port: port as u8,
            len: frame.len() as u16,
            since_us: now_us,
            seq: self.seq,
        };
        self.count += 1;
        true
    }

    /// Hands the oldest held fragment matching `pick` to `out`, frees it; false if none.
    fn pop_oldest(
        &mut self,
        pick: impl Fn(&Held) -> bool,
        out: &mut impl FnMut(usize, &[u8]),
    ) -> bool {
        let oldest = self
            .held
            .iter()
            .enumerate()
            .filter(|(_, h)| h.used && pick(h))
            .min_by_key(|(_, h)| h.seq)
            .map(|(i, _)| i);
        let Some(i) = oldest else { return false };
        let h = self.held[i];
        self.held[i].used = false;
        self.count -= 1;
        out(h.port as usize, &self.frames[i][..h.len as usize]);
        true
    }

    /// The datagram `key` completed with a forward verdict: its held fragments go to `out`
    /// (port, bytes) in arrival order. Returns how many.
    pub fn release(&mut self, key: &FragKey, mut out: impl FnMut(usize, &[u8])) -> usize {
        let mut n = 0;
        while self.count > 0 && self.pop_oldest(|h| h.key == *key, &mut out) {
            n += 1;
        }
        n
    }

    /// The datagram `key` was dropped: its held fragments go too. Returns how many.
    pub fn discard(&mut self, key: &FragKey) -> usize {
        self.release(key, |_, _| {})
    }

    /// Fragments held for `timeout_us` or longer go to `out` (their datagram never completed).
    pub fn expire(
        &mut self,
        now_us: u64,
        timeout_us: u64,
        mut out: impl FnMut(usize, &[u8]),
    ) -> usize {
        let mut n = 0;
        while self.count > 0
            && self.pop_oldest(
                |h| now_us.saturating_sub(h.since_us) >= timeout_us,
                &mut out,
            )
        {
            n += 1;
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An IPv4 fragment of datagram `id` at byte offset `off` (multiple of 8).
    pub(crate) fn v4_frag(id: u16, off: u16, more: bool, data: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 34];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f[14] = 0x45;
        f[16..18].copy_from_slice(&((20 + data.len()) as u16).to_be_bytes());
        f[18..20].copy_from_slice(&id.to_be_bytes());
        let fo = (off / 8) | if more { 0x2000 } else { 0 };
        f[20..22].copy_from_slice(&fo.to_be_bytes());
        f[22] = 64;
        f[23] = 6;
        f[26..30].copy_from_slice(&[10, 0, 0, 1]);
        f[30..34].copy_from_slice(&[10, 0, 0, 2]);
        f.extend_from_slice(data);
        f
    }

    fn v6_frag(id: u32, off: u16, more: bool, vlan: bool) -> Vec<u8> {
        let mut f = vec![0u8; 12];
        if vlan {
            f.extend([0x81, 0x00, 0x00, 0x05]);
        }
        f.extend([0x86, 0xdd]);
        let mut ip = vec![0u8; 40];
        ip[0] = 0x60;
        ip[4..6].copy_from_slice(&16u16.to_be_bytes());
        ip[6] = 0; // hop-by-hop first
        ip[8..24].copy_from_slice(&[0xfd; 16]);
        ip[24..40].copy_from_slice(&[0xfe; 16]);
        f.extend(ip);
        f.extend([44, 0, 0, 0, 0, 0, 0, 0]); // hop-by-hop, 8 bytes, next = fragment
        let fo = (off & 0xfff8) | u16::from(more);
        f.extend([6, 0]);
        f.extend(fo.to_be_bytes());
        f.extend(id.to_be_bytes());
        f.extend([0xaa; 8]);
        f
    }

    #[test]
    fn keys_of_fragments_only() {
        let a = frag_key(&v4_frag(7, 0, true, &[1; 8])).unwrap();
        let b = frag_key(&v4_frag(7, 8, false, &[2; 8])).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, frag_key(&v4_frag(8, 8, false, &[2; 8])).unwrap());
        assert_eq!(frag_key(&v4_frag(7, 0, false, &[1; 8])), None); // whole datagram
        let c = frag_key(&v6_frag(99, 0, true, true)).unwrap();
        assert_eq!(c, frag_key(&v6_frag(99, 8, false, false)).unwrap());
        assert_eq!(frag_key(&v6_frag(99, 0, false, false)), None); // atomic fragment
        assert_eq!(frag_key(&[0u8; 10]), None);
        assert_eq!(frag_key(&[0u8; 60]), None);
    }

    #[test]
    fn release_in_arrival_order_discard_and_expire() {
        let mut frames = vec![[0u8; HOLD_FRAME_MAX]; 4];
        let mut held = vec![Held::EMPTY; 4];
        let mut h = FragHold::new(&mut frames, &mut held);
        let f = |id, off| v4_frag(id, off, true, &[off as u8; 8]);
        let (k1, k2) = (frag_key(&f(1, 0)).unwrap(), frag_key(&f(2, 0)).unwrap());
        assert!(h.hold(k1, 1, &f(1, 16), 10));
        assert!(h.hold(k2, 0, &f(2, 0), 11));
        assert!(h.hold(k1, 1, &f(1, 0), 12));
        assert!(h.hold(k1, 1, &f(1, 8), 13));
        assert!(!h.hold(k2, 0, &f(2, 8), 14), "full");
        let mut out = Vec::new();
        assert_eq!(h.release(&k1, |p, b| out.push((p, b.to_vec()))), 3);
        assert_eq!(out, [(1, f(1, 16)), (1, f(1, 0)), (1, f(1, 8))]);
        assert_eq!(h.len(), 1);
        assert!(h.hold(k2, 0, &f(2, 8), 20));
        assert_eq!(h.expire(1000, 990, |_, _| panic!("too young")), 0);
        let mut old = Vec::new();
        assert_eq!(h.expire(1001, 990, |_, b| old.push(b.to_vec())), 1);
        assert_eq!(old, [f(2, 0)]);
        assert_eq!(h.discard(&k2), 1);
        assert!(h.is_empty());
        assert!(!h.hold(k2, 0, &[0u8; HOLD_FRAME_MAX + 1], 0));
    }
}
