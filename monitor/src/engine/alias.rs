//! The flow-extra table: what a flow needs beyond its [`FlowSlot`](crate::FlowSlot) for NAT
//! and the rest of mOS's per-flow API, kept out of the slot so that the slot stays small.
//!
//! `Storage::extras` holds one [`FlowExtra`] per flow slot (same index), or none at all (then
//! rewrites never re-key a flow and the per-flow API answers `ActionError::NoExtras`). A record
//! holds the flow's second tuple (its **alias**: the tuple of the server half after a rewrite
//! changed addresses or ports, so replies to the rewritten tuple find the flow), the sequence
//! deltas of length-changing rewrites, per-flow subscriptions, per-side stop, a pending reset
//! and the link-layer headers RSTs are built from. The alias index is an open-addressing table
//! of `2 × len` buckets spread over the records (two per record), probed linearly and kept
//! tombstone-free by backward-shift deletion, like the flow index. It is consulted only when
//! the primary lookup misses and some alias is live. A record is cleared when its flow ends.

use crate::flow::{FlowKey, NONE};

/// Longest link-layer header kept per direction for building RSTs: Ethernet and two VLAN tags.
pub(crate) const L2_MAX: usize = 22;

// Bits of `FlowExtra::flags`.
/// The record holds a live alias (in the index).
pub(super) const ALIASED: u8 = 1;
/// The flow's client is endpoint `a` of the alias key.
pub(super) const ALIAS_CLIENT_IS_A: u8 = 2;
/// Callbacks for the client side were stopped (`Ctx::stop_side`).
pub(super) const STOP_CLIENT: u8 = 4;
/// Callbacks for the server side were stopped.
pub(super) const STOP_SERVER: u8 = 8;
/// `Ctx::reset_conn` was called; the RSTs go out when the current callbacks are done.
pub(super) const RESET_PENDING: u8 = 16;
/// Something beyond the flags was written (subscriptions, deltas, headers): clear it at the end.
pub(super) const DIRTY: u8 = 32;
/// Only link-layer headers were kept (`l2_len` set): clearing `l2_len` and the flags resets it.
pub(super) const L2_KEPT: u8 = 64;

/// One bucket of the alias index: a hash tag (0 = empty) and the slot it names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct AliasBucket {
    tag: u32,
    slot: u32,
}

impl AliasBucket {
    const EMPTY: AliasBucket = AliasBucket { tag: 0, slot: NONE };
}

/// The extra record of one flow slot (see the module documentation). Build storage from
/// [`FlowExtra::EMPTY`].
#[derive(Clone, Copy, Debug)]
pub struct FlowExtra {
    /// The alias key (valid with `ALIASED`).
    pub(crate) key: FlowKey,
    /// Low 32 bits of the alias key's hash.
    pub(crate) hash: u32,
    pub(crate) flags: u8,
    /// Bytes added (negative: removed) by length-changing rewrites of each side's packets
    /// (index: the sending side), applied to the sequence numbers of its later packets and to
    /// the acknowledgment numbers of the peer's.
    pub(crate) delta: [i32; 2],
    /// Per-flow subscriptions (per hook) added to the monitor's.
    pub(crate) on: [u64; 3],
    /// Per-flow unsubscriptions (per hook) taken from the monitor's.
    pub(crate) off: [u64; 3],
    /// Link-layer header of the first packet each side sent (index: the sending side).
    pub(crate) l2: [[u8; L2_MAX]; 2],
    pub(crate) l2_len: [u8; 2],
    /// Two buckets of the alias index (which spans all records).
    idx: [AliasBucket; 2],
}

impl FlowExtra {
    /// An unused record (for `.bss` statics and `vec!`-style construction).
    pub const EMPTY: FlowExtra = FlowExtra {
        key: FlowKey::EMPTY,
        hash: 0,
        flags: 0,
        delta: [0; 2],
        on: [0; 3],
        off: [0; 3],
        l2: [[0; L2_MAX]; 2],
        l2_len: [0; 2],
        idx: [AliasBucket::EMPTY; 2],
    };
}

/// The flow in `slot` ended: unlink its alias and clear its record (keeping the index buckets
/// it hosts, which belong to the whole table). Returns whether it had a live alias.
pub(super) fn release(tab: &mut [FlowExtra], slot: u32) -> bool {
    let Some(e) = tab.get(slot as usize) else {
        return false;
    };
    if e.flags == 0 {
        return false;
    }
    if e.flags == L2_KEPT {
        // The common case (headers kept for RSTs, nothing else): two stores on one line
        // instead of rewriting the whole record.
        let e = &mut tab[slot as usize];
        e.flags = 0;
        e.l2_len = [0; 2];
        return false;
    }
    let had = e.flags & ALIASED != 0;
    remove(tab, slot);
    let e = &mut tab[slot as usize];
    let idx = e.idx;
    *e = FlowExtra::EMPTY;
    e.idx = idx;
    had
}

#[inline]
fn tag_of(hash: u64) -> u32 {
    ((hash >> 32) as u32) | 1
}

/// The home bucket of `hash` among `len` buckets.
#[inline]
fn home(hash: u64, len: usize) -> usize {
    ((hash as u32 as u64 * len as u64) >> 32) as usize
}

#[inline]
fn bucket(tab: &[FlowExtra], pos: usize) -> AliasBucket {
    tab[pos / 2].idx[pos % 2]
}

#[inline]
fn set_bucket(tab: &mut [FlowExtra], pos: usize, b: AliasBucket) {
    tab[pos / 2].idx[pos % 2] = b;
}

/// Reset the whole table (records and index).
pub(super) fn init(tab: &mut [FlowExtra]) {
    for e in tab.iter_mut() {
        *e = FlowExtra::EMPTY;
    }
}

/// The slot whose alias is `key`, and whether the flow's client is the key's endpoint `a`.
pub(super) fn lookup(tab: &[FlowExtra], key: &FlowKey, hash: u64) -> Option<(u32, bool)> {
    let len = tab.len() * 2;
    if len == 0 {
        return None;
    }
    let tag = tag_of(hash);
    let mut pos = home(hash, len);
    for _ in 0..len {
        let b = bucket(tab, pos);
        if b.tag == 0 {
            return None;
        }
        if b.tag == tag {
            if let Some(e) = tab.get(b.slot as usize) {
                if e.flags & ALIASED != 0 && e.key.same(key) {
                    return Some((b.slot, e.flags & ALIAS_CLIENT_IS_A != 0));
                }
            }
        }
        pos = if pos + 1 == len { 0 } else { pos + 1 };
    }
    None
}

/// Give `slot` the alias `key` (replacing any it had). Returns whether the number of live
/// aliases grew.
pub(super) fn set(tab: &mut [FlowExtra], slot: u32, key: FlowKey, hash: u64, cia: bool) -> bool {
    let Some(e) = tab.get(slot as usize) else {
        return false;
    };
    let had = e.flags & ALIASED != 0;
    if had {
        remove(tab, slot);
    }
    let e = &mut tab[slot as usize];
    e.key = key;
    e.hash = hash as u32;
    e.flags |= ALIASED | DIRTY;
    if cia {
        e.flags |= ALIAS_CLIENT_IS_A;
    } else {
        e.flags &= !ALIAS_CLIENT_IS_A;
    }
    let len = tab.len() * 2;
    let mut pos = home(hash, len);
    for _ in 0..len {
        if bucket(tab, pos).tag == 0 {
            set_bucket(
                tab,
                pos,
                AliasBucket {
                    tag: tag_of(hash),
                    slot,
                },
            );
            break;
        }
        pos = if pos + 1 == len { 0 } else { pos + 1 };
    }
    !had
}

/// Take `slot`'s alias out of the index (backward-shift deletion) and clear `ALIASED`.
pub(super) fn remove(tab: &mut [FlowExtra], slot: u32) {
    let Some(e) = tab.get_mut(slot as usize) else {
        return;
    };
    if e.flags & ALIASED == 0 {
        return;
    }
    e.flags &= !(ALIASED | ALIAS_CLIENT_IS_A);
    let hash = e.hash as u64;
    let len = tab.len() * 2;
    let next = |p: usize| if p + 1 == len { 0 } else { p + 1 };
    let mut pos = home(hash, len);
    let mut found = None;
    for _ in 0..len {
        let b = bucket(tab, pos);
        if b.tag == 0 {
            break;
        }
        if b.slot == slot {
            found = Some(pos);
            break;
        }
        pos = next(pos);
    }
    let Some(mut hole) = found else { return };
    let mut j = hole;
    for _ in 0..len {
        j = next(j);
        let b = bucket(tab, j);
        if b.tag == 0 {
            break;
        }
        let h = tab
            .get(b.slot as usize)
            .map_or(j, |e| home(e.hash as u64, len));
        // `b` may move back to `hole` unless its home lies cyclically in (hole, j].
        let stays = if hole <= j {
            hole < h && h <= j
        } else {
            hole < h || h <= j
        };
        if !stays {
            set_bucket(tab, hole, b);
            hole = j;
        }
    }
    set_bucket(tab, hole, AliasBucket::EMPTY);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u32) -> FlowKey {
        let mut a = [0u8; 16];
        a[..4].copy_from_slice(&i.to_be_bytes());
        FlowKey::new(false, &a, 1000, &[9; 16], 80).0
    }

    #[test]
    fn index_insert_remove_matches_model() {
        // Clustered hashes in a small table, removed in a scrambled order.
        let n = 40usize;
        let mut tab = vec![FlowExtra::EMPTY; n];
        let hash = |i: usize| ((i as u64 % 3) << 28) | ((i as u64) << 40);
        for i in 0..n {
            assert!(set(&mut tab, i as u32, key(i as u32), hash(i), i % 2 == 0));
        }
        let mut alive = vec![true; n];
        for step in 0..n {
            let i = (step * 17) % n;
            remove(&mut tab, i as u32);
            alive[i] = false;
            for (j, &live) in alive.iter().enumerate() {
                let got = lookup(&tab, &key(j as u32), hash(j));
                let want = live.then_some((j as u32, j % 2 == 0));
                assert_eq!(got, want, "slot {j} after removing {i}");
            }
        }
        assert!(tab.iter().all(|e| e.idx.iter().all(|b| b.tag == 0)));
    }

    #[test]
    fn replacing_an_alias_unlinks_the_old_key() {
        let mut tab = vec![FlowExtra::EMPTY; 4];
        assert!(set(&mut tab, 2, key(1), 77, true));
        assert!(!set(&mut tab, 2, key(5), 1 << 31, false));
        assert_eq!(lookup(&tab, &key(1), 77), None);
        assert_eq!(lookup(&tab, &key(5), 1 << 31), Some((2, false)));
        assert!(release(&mut tab, 2));
        assert_eq!(tab[2].flags, 0);
        assert!(!release(&mut tab, 2));
        assert_eq!(lookup(&tab, &key(5), 1 << 31), None);
    }
}
