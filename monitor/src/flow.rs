//! The flow table: canonical 5-tuple keys, a fast seeded hash, and an open-addressing index.
//!
//! Slots live in a caller-provided slice; the index is a power-of-two array of 8-byte buckets
//! (hash tag + slot number) probed linearly and kept tombstone-free by backward-shift deletion,
//! so a lookup touches one or two cache lines of index plus the slot itself.

use crate::reasm::SideState;

/// Canonical key of a TCP connection: the lower (address, port) endpoint first, so both
/// directions map to one key. IPv4 addresses occupy the first four bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct FlowKey {
    pub a: [u8; 16],
    pub b: [u8; 16],
    pub pa: u16,
    pub pb: u16,
    pub v6: bool,
}

impl FlowKey {
    pub const EMPTY: FlowKey = FlowKey {
        a: [0; 16],
        b: [0; 16],
        pa: 0,
        pb: 0,
        v6: false,
    };

    /// The canonical key and whether the packet's sender is endpoint `a`.
    #[inline]
    pub fn new(v6: bool, src: &[u8; 16], sp: u16, dst: &[u8; 16], dp: u16) -> (FlowKey, bool) {
        // Lexicographic (address bytes, port) order, compared as big-endian integers.
        let (s, d) = (u128::from_be_bytes(*src), u128::from_be_bytes(*dst));
        if s < d || (s == d && sp <= dp) {
            (
                FlowKey {
                    a: *src,
                    b: *dst,
                    pa: sp,
                    pb: dp,
                    v6,
                },
                true,
            )
        } else {
            (
                FlowKey {
                    a: *dst,
                    b: *src,
                    pa: dp,
                    pb: sp,
                    v6,
                },
                false,
            )
        }
    }

    /// `self == other`, comparing the addresses as two 128-bit words.
    #[inline]
    pub fn same(&self, other: &FlowKey) -> bool {
        u128::from_ne_bytes(self.a) == u128::from_ne_bytes(other.a)
            && u128::from_ne_bytes(self.b) == u128::from_ne_bytes(other.b)
            && self.pa == other.pa
            && self.pb == other.pb
            && self.v6 == other.v6
    }

    /// SipHash-1-3 keyed with `key` over the key's five 64-bit words: a per-run secret key
    /// makes colliding tuples impossible to craft, so probe lengths stay those of random
    /// tuples (the index is at most half full). Not the NIC's RSS hash.
    #[inline]
    pub fn hash(&self, key: &[u64; 2]) -> u64 {
        // Ports and family in one word. Not the key's memory layout on purpose: a packed
        // `pa | pb << 16` made the compiler reload both ports with one 32-bit load just after
        // two 16-bit stores of the new key, a store-forwarding stall on every packet.
        let ports = ((self.pa as u64) << 40) | ((self.pb as u64) << 8) | (self.v6 as u64);
        if !self.v6 {
            // IPv4: both addresses fit one word, so two words instead of five (three SipHash
            // rounds fewer per packet); the family bit keeps the two forms apart.
            let a = u32::from_le_bytes([self.a[0], self.a[1], self.a[2], self.a[3]]) as u64;
            let b = u32::from_le_bytes([self.b[0], self.b[1], self.b[2], self.b[3]]) as u64;
            return siphash13(key, &[a | (b << 32), ports]);
        }
        let w = [
            u64::from_le_bytes(word(&self.a, 0)),
            u64::from_le_bytes(word(&self.a, 8)),
            u64::from_le_bytes(word(&self.b, 0)),
            u64::from_le_bytes(word(&self.b, 8)),
            ports,
        ];
        siphash13(key, &w)
    }
}

/// SipHash-1-3 of whole 64-bit words (the message is `words` as little-endian bytes).
#[inline(always)]
pub(crate) fn siphash13(key: &[u64; 2], words: &[u64]) -> u64 {
    let mut v = [
        key[0] ^ 0x736f_6d65_7073_6575,
        key[1] ^ 0x646f_7261_6e64_6f6d,
        key[0] ^ 0x6c79_6765_6e65_7261,
        key[1] ^ 0x7465_6462_7974_6573,
    ];
    #[inline(always)]
    fn round(v: &mut [u64; 4]) {
        v[0] = v[0].wrapping_add(v[1]);
        v[1] = v[1].rotate_left(13) ^ v[0];
        v[0] = v[0].rotate_left(32);
        v[2] = v[2].wrapping_add(v[3]);
        v[3] = v[3].rotate_left(16) ^ v[2];
        v[0] = v[0].wrapping_add(v[3]);
        v[3] = v[3].rotate_left(21) ^ v[0];
        v[2] = v[2].wrapping_add(v[1]);
        v[1] = v[1].rotate_left(17) ^ v[2];
        v[2] = v[2].rotate_left(32);
    }
    for &m in words {
        v[3] ^= m;
        round(&mut v);
        v[0] ^= m;
    }
    let last = ((words.len() as u64 * 8) & 0xff) << 56;
    v[3] ^= last;
    round(&mut v);
    v[0] ^= last;
    v[2] ^= 0xff;
    round(&mut v);
    round(&mut v);
    round(&mut v);
    v[0] ^ v[1] ^ v[2] ^ v[3]
}

#[inline]
fn word(a: &[u8; 16], at: usize) -> [u8; 8] {
    let mut w = [0u8; 8];
    w.copy_from_slice(&a[at..at + 8]);
    w
}

pub(crate) const NONE: u32 = u32::MAX;

// Bits of `FlowSlot::flags`.
/// The slot holds a live flow.
pub(crate) const FLOW_LIVE: u8 = 1;
/// The client is the key's endpoint `a` (the lower address/port).
pub(crate) const CLIENT_IS_ENDPOINT_A: u8 = 2;
/// The slot is on the list of flows with pending `CONN_NEW_DATA`.
pub(crate) const IN_NEW_DATA_LIST: u8 = 4;
/// `Ctx::stop_monitoring` was called: packets pass untouched, no events.
pub(crate) const MONITORING_STOPPED: u8 = 8;
/// The flow was picked up mid-stream.
pub(crate) const PICKED_UP: u8 = 16;

/// One flow slot: the key, both sides' TCP and buffer state, and the user's per-flow state.
/// Build storage from [`FlowSlot::EMPTY`].
#[derive(Debug)]
pub struct FlowSlot<F> {
    pub(crate) key: FlowKey,
    /// Low 32 bits of the key's hash (the home bucket; the index holds at most 2^32 buckets).
    pub(crate) hash: u32,
    /// Last activity, in ticks of 1024 µs (wrapping; see `tick_of`).
    pub(crate) last_seen: u32,
    /// Creation order (`Counters::flows_created` then, wrapping): eviction keeps the older
    /// established flows.
    pub(crate) born: u32,
    pub(crate) gen: u32,
    pub(crate) next_free: u32,
    pub(crate) pend_next: u32,
    pub(crate) flags: u8,
    pub(crate) sides: [SideState; 2],
    pub(crate) user: Option<F>,
}

impl<F> FlowSlot<F> {
    /// An unused slot (for `.bss` statics and `vec!`-style construction).
    pub const EMPTY: FlowSlot<F> = FlowSlot {
        key: FlowKey::EMPTY,
        hash: 0,
        last_seen: 0,
        born: 0,
        gen: 0,
        next_free: NONE,
        pend_next: NONE,
        flags: 0,
        sides: [SideState::EMPTY, SideState::EMPTY],
        user: None,
    };

    #[inline]
    pub(crate) fn live(&self) -> bool {
        self.flags & FLOW_LIVE != 0
    }
}

/// Time in ticks of 1024 µs, as kept in `FlowSlot::last_seen`.
#[inline]
pub(crate) fn tick_of(now_us: u64) -> u32 {
    (now_us >> 10) as u32
}

/// Microseconds since `last` (a tick), exact to a tick; wraps after about 50 days.
#[inline]
pub(crate) fn idle_us(now_us: u64, last: u32) -> u64 {
    (tick_of(now_us).wrapping_sub(last) as u64) << 10
}

/// One index bucket: a hash tag (0 = empty) and the slot it names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bucket {
    tag: u32,
    slot: u32,
}

impl Bucket {
    /// An empty bucket.
    pub const EMPTY: Bucket = Bucket { tag: 0, slot: NONE };
}

#[inline]
fn tag_of(hash: u64) -> u32 {
    ((hash >> 32) as u32) | 1
}

/// Find the slot holding `key`.
#[inline]
pub(crate) fn lookup<F>(
    index: &[Bucket],
    flows: &[FlowSlot<F>],
    key: &FlowKey,
    hash: u64,
) -> Option<u32> {
    let mask = index.len() - 1;
    let tag = tag_of(hash);
    let mut pos = hash as usize & mask;
    for _ in 0..index.len() {
        let b = index[pos];
        if b.tag == 0 {
            return None;
        }
        if b.tag == tag {
            if let Some(f) = flows.get(b.slot as usize) {
                if f.key.same(key) && f.live() {
                    return Some(b.slot);
                }
            }
        }
        pos = (pos + 1) & mask;
    }
    None
}

/// Buckets [`probe`] looks at, at most: at most half the index is full, so nearly every key
/// is found (or known absent) within the first few.
const PROBE_AHEAD: usize = 4;

/// The slot a lookup of `hash` will most likely land on: the first bucket on its probe path
/// whose tag matches (`None`: an empty bucket or [`PROBE_AHEAD`] buckets came first). Only a
/// hint for prefetching: the key is not compared.
#[inline]
pub(crate) fn probe(index: &[Bucket], hash: u64) -> Option<u32> {
    let mask = index.len() - 1;
    let tag = tag_of(hash);
    let mut pos = hash as usize & mask;
    for _ in 0..PROBE_AHEAD {
        let b = *index.get(pos)?;
        if b.tag == 0 {
            return None;
        }
        if b.tag == tag {
            return Some(b.slot);
        }
        pos = (pos + 1) & mask;
    }
    None
}

/// Add `slot` (whose `hash` is set) to the index. The index is never full: it has at least twice
/// as many buckets as there are slots.
pub(crate) fn insert(index: &mut [Bucket], hash: u64, slot: u32) {
    let mask = index.len() - 1;
    let mut pos = hash as usize & mask;
    for _ in 0..index.len() {
        if index[pos].tag == 0 {
            index[pos] = Bucket {
                tag: tag_of(hash),
                slot,
            };
            return;
        }
        pos = (pos + 1) & mask;
    }
}

/// Remove `slot` from the index by backward-shift deletion (no tombstones).
pub(crate) fn remove<F>(index: &mut [Bucket], flows: &[FlowSlot<F>], hash: u64, slot: u32) {
    let mask = index.len() - 1;
    let mut pos = hash as usize & mask;
    let mut found = None;
    for _ in 0..index.len() {
        let b = index[pos];
        if b.tag == 0 {
            break;
        }
        if b.slot == slot {
            found = Some(pos);
            break;
        }
        pos = (pos + 1) & mask;
    }
    let Some(mut hole) = found else { return };
    let mut j = hole;
    for _ in 0..index.len() {
        j = (j + 1) & mask;
        let b = index[j];
        if b.tag == 0 {
            break;
        }
        let home = flows
            .get(b.slot as usize)
            .map_or(j, |f| f.hash as usize & mask);
        // `b` may move back to `hole` unless its home lies cyclically in (hole, j].
        let stays = if hole <= j {
            hole < home && home <= j
        } else {
            hole < home || home <= j
        };
        if !stays {
            index[hole] = b;
            hole = j;
        }
    }
    index[hole] = Bucket::EMPTY;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_directions_one_key() {
        let a = [1u8; 16];
        let b = [2u8; 16];
        let (k1, s1) = FlowKey::new(false, &a, 1000, &b, 80);
        let (k2, s2) = FlowKey::new(false, &b, 80, &a, 1000);
        assert_eq!(k1, k2);
        assert_ne!(s1, s2);
        assert_eq!(k1.hash(&[7, 0]), k2.hash(&[7, 0]));
        assert_ne!(k1.hash(&[7, 0]), k1.hash(&[8, 0]));
    }

    #[test]
    fn siphash13_matches_the_standard_librarys() {
        // std's DefaultHasher is SipHash-1-3 with a zero key; `write_u64` feeds 8 LE bytes.
        use std::hash::Hasher;
        for n in 0..6u64 {
            let words: Vec<u64> = (0..n)
                .map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15))
                .collect();
            let mut h = std::collections::hash_map::DefaultHasher::new();
            for w in &words {
                h.write_u64(*w);
            }
            assert_eq!(siphash13(&[0, 0], &words), h.finish(), "{n} words");
        }
    }

    #[test]
    fn crafted_collisions_under_one_key_scatter_under_another() {
        // 200 keys that all land in bucket 0 of a 512-bucket index under key A (found by
        // trying tuples), inserted under key B: the probe sequences are those of random keys.
        let a = [1, 2];
        let b = [0x5eed, 0xbeef];
        let mask = 511u64;
        let mut colliding = Vec::new();
        let mut port = 0u32;
        while colliding.len() < 200 {
            let (k, _) = FlowKey::new(
                false,
                &[10; 16],
                (port & 0xffff) as u16,
                &[1; 16],
                (port >> 16) as u16 + 1,
            );
            if k.hash(&a) & mask == 0 {
                colliding.push(k);
            }
            port += 1;
        }
        let displacement = |key: &[u64; 2]| -> usize {
            let mut flows: Vec<FlowSlot<()>> = (0..256).map(|_| FlowSlot::EMPTY).collect();
            let mut index = vec![Bucket::EMPTY; 512];
            for (i, k) in colliding.iter().enumerate() {
                flows[i].key = *k;
                flows[i].hash = k.hash(key) as u32;
                flows[i].flags = FLOW_LIVE;
                insert(&mut index, k.hash(key), i as u32);
            }
            // The longest distance of a key from its home bucket.
            index
                .iter()
                .enumerate()
                .filter(|(_, b)| b.tag != 0)
                .map(|(pos, b)| (pos + 512 - (flows[b.slot as usize].hash as usize & 511)) & 511)
                .max()
                .unwrap()
        };
        assert_eq!(
            displacement(&a),
            199,
            "under the key they were crafted for: one chain"
        );
        assert!(
            displacement(&b) <= 8,
            "under another key: {}",
            displacement(&b)
        );
    }

    #[test]
    fn index_insert_remove_matches_model() {
        // Many keys colliding into a small index, removed in a scrambled order.
        let n = 64usize;
        let mut flows: Vec<FlowSlot<()>> = (0..n).map(|_| FlowSlot::EMPTY).collect();
        let mut index = vec![Bucket::EMPTY; 128];
        for (i, f) in flows.iter_mut().enumerate() {
            let (k, _) = FlowKey::new(false, &[i as u8; 16], 1, &[0; 16], 2);
            f.key = k;
            f.hash = (i as u32 % 5) | ((i as u32) << 24); // clustered home buckets
            f.flags = FLOW_LIVE;
        }
        for (i, f) in flows.iter().enumerate() {
            insert(&mut index, f.hash as u64 | (7 << 32), i as u32);
        }
        let mut alive = vec![true; n];
        for step in 0..n {
            let i = (step * 37) % n;
            let h = flows[i].hash;
            remove(&mut index, &flows, h as u64, i as u32);
            flows[i].flags = 0;
            alive[i] = false;
            for (j, f) in flows.iter().enumerate() {
                let got = lookup(&index, &flows, &f.key, f.hash as u64 | (7 << 32));
                assert_eq!(got.is_some(), alive[j], "slot {j} after removing {i}");
            }
        }
        assert!(index.iter().all(|b| b.tag == 0));
    }
}
