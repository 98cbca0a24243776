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

    /// A seeded multiply-rotate hash over the key's five 64-bit words (FxHash-style mixing with
    /// a final avalanche). Not the NIC's RSS hash.
    #[inline]
    pub fn hash(&self, seed: u64) -> u64 {
        const K: u64 = 0x517c_c1b7_2722_0a95;
        let w = [
            u64::from_le_bytes(word(&self.a, 0)),
            u64::from_le_bytes(word(&self.a, 8)),
            u64::from_le_bytes(word(&self.b, 0)),
            u64::from_le_bytes(word(&self.b, 8)),
            // Not the key's memory layout on purpose: a packed `pa | pb << 16` made the compiler
            // reload both ports with one 32-bit load just after two 16-bit stores of the new key,
            // a store-forwarding stall on every packet.
            ((self.pa as u64) << 40) | ((self.pb as u64) << 8) | (self.v6 as u64),
        ];
        let mut h = seed;
        for x in w {
            h = (h.rotate_left(5) ^ x).wrapping_mul(K);
        }
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^ (h >> 33)
    }
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
        assert_eq!(k1.hash(7), k2.hash(7));
        assert_ne!(k1.hash(7), k1.hash(8));
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
