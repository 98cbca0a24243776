//! Per-connection records for IPFIX, gathered for any app: [`Accounted`] wraps the app's
//! middlebox (same `Flow` type, so every callback is passed through unchanged) and keeps,
//! in a side table indexed by flow slot, each connection's packets, IP bytes and TCP flags
//! per direction and its first and last packet time. At `CONN_END` (and at an active
//! timeout on a long connection) it pushes a [`FlowRecord`] into its core's [`RecordQueue`],
//! a single-producer single-consumer ring of atomics the management core drains.

use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use monitor::{Ctx, Event, Hook, Middlebox, Registry, Side, TcpState};

use super::ipfix::{end_reason, Addrs, FlowRecord};

/// Words of one packed record.
pub const WORDS: usize = 12;

/// One connection's counts so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowAcct {
    /// Packets client→server, server→client.
    pub packets: [u64; 2],
    /// IP bytes (header included) client→server, server→client.
    pub bytes: [u64; 2],
    /// Union of TCP flags.
    pub flags: u16,
    /// First packet (µs, monitor time); 0 = none yet.
    pub first_us: u64,
    /// Last packet (µs).
    pub last_us: u64,
}

/// IP length and TCP flags of an Ethernet frame (up to two VLAN tags), if it is IPv4/IPv6.
pub fn ip_len_and_flags(frame: &[u8]) -> Option<(u64, u16)> {
    let mut off = 12;
    let mut ty = u16::from_be_bytes([*frame.get(off)?, *frame.get(off + 1)?]);
    for _ in 0..2 {
        if ty == 0x8100 || ty == 0x88a8 {
            off += 4;
            ty = u16::from_be_bytes([*frame.get(off)?, *frame.get(off + 1)?]);
        }
    }
    let ip = frame.get(off + 2..)?;
    let (len, proto, l4) = match ty {
        0x0800 => {
            let ihl = (*ip.first()? as usize & 0x0f) * 4;
            let len = u16::from_be_bytes([*ip.get(2)?, *ip.get(3)?]) as u64;
            (len, *ip.get(9)?, ihl)
        }
        0x86dd => {
            let plen = u16::from_be_bytes([*ip.get(4)?, *ip.get(5)?]) as u64;
            (plen + 40, *ip.get(6)?, 40)
        }
        _ => return None,
    };
    let flags = if proto == 6 {
        let hi = *ip.get(l4 + 12).unwrap_or(&0) as u16 & 0x01;
        let lo = *ip.get(l4 + 13).unwrap_or(&0) as u16;
        (hi << 8) | lo
    } else {
        0
    };
    Some((len, flags))
}

impl FlowAcct {
    /// Counts one frame sent by `sender`.
    pub fn packet(&mut self, frame: &[u8], sender: Side, now_us: u64) {
        let d = sender.index();
        self.packets[d] += 1;
        if let Some((len, flags)) = ip_len_and_flags(frame) {
            self.bytes[d] += len;
            self.flags |= flags;
        }
        if self.first_us == 0 {
            self.first_us = now_us.max(1);
        }
        self.last_us = now_us;
    }
}

/// Packs a record into words (see [`unpack`]).
pub fn pack(r: &FlowRecord) -> [u64; WORDS] {
    let mut w = [0u64; WORDS];
    let (v6, c, s) = match r.addrs {
        Addrs::V4(c, s) => {
            let mut cc = [0u8; 16];
            let mut ss = [0u8; 16];
            cc[..4].copy_from_slice(&c);
            ss[..4].copy_from_slice(&s);
            (0u64, cc, ss)
        }
        Addrs::V6(c, s) => (1u64, c, s),
    };
    w[0] = v6
        | (r.client_port as u64) << 8
        | (r.server_port as u64) << 24
        | (r.end_reason as u64) << 40
        | (r.tcp_flags as u64) << 48;
    let word = |b: &[u8; 16], i: usize| {
        let mut x = [0u8; 8];
        x.copy_from_slice(&b[i * 8..i * 8 + 8]);
        u64::from_be_bytes(x)
    };
    w[1] = word(&c, 0);
    w[2] = word(&c, 1);
    w[3] = word(&s, 0);
    w[4] = word(&s, 1);
    w[5] = r.start_ms;
    w[6] = r.end_ms;
    w[7] = r.packets[0];
    w[8] = r.packets[1];
    w[9] = r.bytes[0];
    w[10] = r.bytes[1];
    w[11] = (r.holes[0] as u64) << 32 | r.holes[1] as u64;
    w
}

/// The record [`pack`] packed.
pub fn unpack(w: &[u64; WORDS]) -> FlowRecord {
    let mut c = [0u8; 16];
    let mut s = [0u8; 16];
    c[..8].copy_from_slice(&w[1].to_be_bytes());
    c[8..].copy_from_slice(&w[2].to_be_bytes());
    s[..8].copy_from_slice(&w[3].to_be_bytes());
    s[8..].copy_from_slice(&w[4].to_be_bytes());
    let addrs = if w[0] & 1 == 1 {
        Addrs::V6(c, s)
    } else {
        Addrs::V4([c[0], c[1], c[2], c[3]], [s[0], s[1], s[2], s[3]])
    };
    FlowRecord {
        addrs,
        client_port: (w[0] >> 8) as u16,
        server_port: (w[0] >> 24) as u16,
        end_reason: (w[0] >> 40) as u8,
        tcp_flags: (w[0] >> 48) as u16,
        start_ms: w[5],
        end_ms: w[6],
        packets: [w[7], w[8]],
        bytes: [w[9], w[10]],
        holes: [(w[11] >> 32) as u32, w[11] as u32],
    }
}

/// One slot of a [`RecordQueue`].
pub type Slot = [AtomicU64; WORDS];

/// An empty slot.
pub const fn empty_slot() -> Slot {
    [const { AtomicU64::new(0) }; WORDS]
}

/// Records from one monitoring core (the producer) to the management core (the consumer):
/// no lock, the producer never waits (a full queue drops the record, counted).
pub struct RecordQueue {
    slots: &'static [Slot],
    head: AtomicUsize,
    tail: AtomicUsize,
    dropped: AtomicU64,
}

impl RecordQueue {
    /// A queue over `slots` (its length need not be a power of two; at least 1).
    pub fn new(slots: &'static [Slot]) -> RecordQueue {
        RecordQueue {
            slots,
            head: AtomicUsize::new(0),
            tail: AtomicUsize::new(0),
            dropped: AtomicU64::new(0),
        }
    }

    /// Producer: queues `r`; false (and counted) when full.
    pub fn push(&self, r: &FlowRecord) -> bool {
        let head = self.head.load(Ordering::Relaxed);
        let tail = self.tail.load(Ordering::Acquire);
        let n = self.slots.len();
        if n == 0 || head.wrapping_sub(tail) >= n {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        if let Some(slot) = self.slots.get(head % n) {
            for (a, v) in slot.iter().zip(pack(r)) {
                a.store(v, Ordering::Relaxed);
            }
        }
        self.head.store(head.wrapping_add(1), Ordering::Release);
        true
    }

    /// Consumer: the oldest record, if any.
    pub fn pop(&self) -> Option<FlowRecord> {
        let tail = self.tail.load(Ordering::Relaxed);
        let head = self.head.load(Ordering::Acquire);
        let n = self.slots.len();
        if head == tail || n == 0 {
            return None;
        }
        let slot = self.slots.get(tail % n)?;
        let mut w = [0u64; WORDS];
        for (v, a) in w.iter_mut().zip(slot.iter()) {
            *v = a.load(Ordering::Relaxed);
        }
        self.tail.store(tail.wrapping_add(1), Ordering::Release);
        Some(unpack(&w))
    }

    /// Whether a record waits (consumer side).
    pub fn has_records(&self) -> bool {
        self.head.load(Ordering::Acquire) != self.tail.load(Ordering::Relaxed)
    }

    /// Records dropped for a full queue.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// The built-in events, for remembering which ones the wrapped app subscribed.
const BUILTIN: [Event; 8] = Event::BUILTIN;

/// The app's middlebox with connection accounting around it (see the module docs).
pub struct Accounted<M: Middlebox> {
    /// The app's middlebox.
    pub inner: M,
    acct: &'static mut [FlowAcct],
    queue: Option<&'static RecordQueue>,
    /// Per hook, the built-in events the app subscribed itself (bit i = `BUILTIN[i]`).
    app_subs: [u8; 3],
    /// Active timeout in µs (0 = none).
    active_us: u64,
    /// Set before `Monitor::close_all`: open connections end by force, not by timeout.
    shutting_down: bool,
}

impl<M: Middlebox> Accounted<M> {
    /// Wraps `inner`; with no `queue`, nothing is counted and every call goes straight
    /// through. `acct` needs one entry per flow slot.
    pub fn new(
        inner: M,
        acct: &'static mut [FlowAcct],
        queue: Option<&'static RecordQueue>,
        active_timeout_s: u64,
    ) -> Self {
        Accounted {
            inner,
            acct,
            queue,
            app_subs: [0; 3],
            active_us: active_timeout_s.saturating_mul(1_000_000),
            shutting_down: false,
        }
    }

    /// Call before `Monitor::close_all`: connections still open then get `flowEndReason`
    /// forced end (4) instead of idle timeout (1).
    pub fn shutting_down(&mut self) {
        self.shutting_down = true;
    }

    fn app_wants(&self, ev: Event, hook: Hook) -> bool {
        match BUILTIN.iter().position(|e| *e == ev) {
            Some(i) => self.app_subs[hook as usize] & (1 << i) != 0,
            // User-defined events exist only because the app defined them.
            None => true,
        }
    }

    fn emit(&mut self, cx: &mut Ctx<'_, '_, M::Flow>, slot: usize, reason: u8) {
        let (Some(q), Some(flow)) = (self.queue, cx.flow()) else {
            return;
        };
        let Some(a) = self.acct.get(slot).copied() else {
            return;
        };
        let Ok(ep) = cx.endpoints(flow) else {
            return;
        };
        let addrs = match (ep.client.0, ep.server.0) {
            (core::net::IpAddr::V4(c), core::net::IpAddr::V4(s)) => {
                Addrs::V4(c.octets(), s.octets())
            }
            (core::net::IpAddr::V6(c), core::net::IpAddr::V6(s)) => {
                Addrs::V6(c.octets(), s.octets())
            }
            _ => return,
        };
        let mut holes = [0u32; 2];
        for (h, side) in holes.iter_mut().zip([Side::Server, Side::Client]) {
            // Islands of stored bytes past the first: each follows a hole.
            *h = cx
                .frag_info(flow, side, &mut [])
                .map_or(0, |n| n.saturating_sub(1) as u32);
        }
        q.push(&FlowRecord {
            addrs,
            client_port: ep.client.1,
            server_port: ep.server.1,
            start_ms: a.first_us / 1000,
            end_ms: a.last_us / 1000,
            packets: a.packets,
            bytes: a.bytes,
            tcp_flags: a.flags,
            end_reason: reason,
            holes,
        });
    }
}

/// Why a connection ended, from its endpoints' TCP states at `CONN_END`: end of flow when an
/// endpoint closed, else idle timeout (or forced end at shutdown).
fn reason_of<F>(cx: &Ctx<'_, '_, F>, shutting_down: bool) -> u8 {
    let Some(flow) = cx.flow() else {
        return end_reason::FORCED_END;
    };
    let closed = |s| {
        matches!(
            cx.tcp_state(flow, s),
            Ok(TcpState::Closed | TcpState::TimeWait | TcpState::LastAck | TcpState::Closing)
        )
    };
    if closed(Side::Client) || closed(Side::Server) {
        end_reason::END_OF_FLOW
    } else if shutting_down {
        end_reason::FORCED_END
    } else {
        end_reason::IDLE_TIMEOUT
    }
}

impl<M: Middlebox> Middlebox for Accounted<M> {
    type Flow = M::Flow;

    fn init(&mut self, reg: &mut Registry) {
        self.inner.init(reg);
        for (h, hook) in [Hook::Snd, Hook::Rcv, Hook::Any].into_iter().enumerate() {
            for (i, ev) in BUILTIN.iter().enumerate() {
                if reg.is_subscribed(*ev, hook) {
                    self.app_subs[h] |= 1 << i;
                }
            }
        }
        if self.queue.is_some() {
            reg.subscribe(Event::PKT_IN, Hook::Snd);
            reg.subscribe(Event::CONN_END, Hook::Any);
        }
    }

    fn on_event(&mut self, cx: &mut Ctx<'_, '_, M::Flow>, ev: Event, hook: Hook, side: Side) {
        if self.queue.is_some() {
            let slot = cx.flow().map(|f| f.slot() as usize);
            if ev == Event::PKT_IN && hook == Hook::Snd {
                let now = cx.now_us();
                if let (Some(s), Some(frame)) = (slot, cx.packet()) {
                    if let Some(a) = self.acct.get_mut(s) {
                        a.packet(frame, side, now);
                    }
                }
                if let Some(s) = slot {
                    let long = self.acct.get(s).is_some_and(|a| {
                        self.active_us > 0 && a.last_us.saturating_sub(a.first_us) >= self.active_us
                    });
                    if long {
                        self.emit(cx, s, end_reason::ACTIVE_TIMEOUT);
                        if let Some(a) = self.acct.get_mut(s) {
                            *a = FlowAcct::default();
                        }
                    }
                }
            }
            if ev == Event::CONN_END && hook == Hook::Any {
                if let Some(s) = slot {
                    let reason = reason_of(cx, self.shutting_down);
                    self.emit(cx, s, reason);
                    if let Some(a) = self.acct.get_mut(s) {
                        *a = FlowAcct::default();
                    }
                }
            }
        }
        if self.app_wants(ev, hook) {
            self.inner.on_event(cx, ev, hook, side);
        }
    }

    fn filter(
        &mut self,
        key: u32,
        cx: &mut Ctx<'_, '_, M::Flow>,
        parent: Event,
        hook: Hook,
        side: Side,
    ) -> bool {
        self.inner.filter(key, cx, parent, hook, side)
    }

    fn on_timer(&mut self, cx: &mut Ctx<'_, '_, M::Flow>, id: u32) {
        self.inner.on_timer(cx, id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp4(flags: u8, payload: usize) -> Vec<u8> {
        let mut f = vec![0u8; 14];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        let total = 20 + 20 + payload;
        let mut ip = vec![0u8; total];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        ip[9] = 6;
        ip[20 + 12] = 0x50;
        ip[20 + 13] = flags;
        f.extend_from_slice(&ip);
        f
    }

    #[test]
    fn ip_length_and_flags_of_v4_v6_and_vlan_frames() {
        assert_eq!(ip_len_and_flags(&tcp4(0x12, 10)), Some((50, 0x12)));
        let mut vlan = tcp4(0x11, 0);
        vlan.splice(12..12, [0x81, 0x00, 0, 5]);
        assert_eq!(ip_len_and_flags(&vlan), Some((40, 0x11)));
        let mut v6 = vec![0u8; 14];
        v6[12..14].copy_from_slice(&[0x86, 0xdd]);
        let mut ip = vec![0u8; 60];
        ip[0] = 0x60;
        ip[4..6].copy_from_slice(&20u16.to_be_bytes());
        ip[6] = 6;
        ip[40 + 12] = 0x51; // NS bit
        ip[40 + 13] = 0x02;
        v6.extend_from_slice(&ip);
        assert_eq!(ip_len_and_flags(&v6), Some((60, 0x102)));
        assert_eq!(ip_len_and_flags(&[0u8; 20]), None);
    }

    #[test]
    fn accounting_per_direction() {
        let mut a = FlowAcct::default();
        a.packet(&tcp4(0x02, 0), Side::Client, 1000);
        a.packet(&tcp4(0x12, 0), Side::Server, 2000);
        a.packet(&tcp4(0x18, 100), Side::Client, 3000);
        assert_eq!(a.packets, [2, 1]);
        assert_eq!(a.bytes, [180, 40]);
        assert_eq!(a.flags, 0x1a);
        assert_eq!((a.first_us, a.last_us), (1000, 3000));
    }

    #[test]
    fn records_survive_packing_and_the_queue_keeps_order_and_counts_overflow() {
        let r4 = FlowRecord {
            addrs: Addrs::V4([1, 2, 3, 4], [5, 6, 7, 8]),
            client_port: 65535,
            server_port: 443,
            start_ms: 123,
            end_ms: 456,
            packets: [1, 2],
            bytes: [3, 4],
            tcp_flags: 0x1ff,
            end_reason: 5,
            holes: [u32::MAX, 7],
        };
        let r6 = FlowRecord {
            addrs: Addrs::V6([0xfe; 16], [0x01; 16]),
            ..r4
        };
        assert_eq!(unpack(&pack(&r4)), r4);
        assert_eq!(unpack(&pack(&r6)), r6);
        let slots: &'static [Slot] = Box::leak(Box::new([empty_slot(), empty_slot()]));
        let q = RecordQueue::new(slots);
        assert_eq!(q.pop(), None);
        assert!(q.push(&r4) && q.push(&r6));
        assert!(!q.push(&r4));
        assert_eq!(q.dropped(), 1);
        assert_eq!(q.pop(), Some(r4));
        assert!(q.push(&r4));
        assert_eq!((q.pop(), q.pop(), q.pop()), (Some(r6), Some(r4), None));
    }

    #[test]
    fn records_cross_threads_in_order() {
        let slots: &'static [Slot] = Box::leak((0..8).map(|_| empty_slot()).collect());
        let q: &'static RecordQueue = Box::leak(Box::new(RecordQueue::new(slots)));
        let rec = |i: u64| FlowRecord {
            addrs: Addrs::V4([10, 0, 0, 1], [10, 0, 0, 2]),
            client_port: i as u16,
            server_port: 80,
            start_ms: i,
            end_ms: i,
            packets: [i, i],
            bytes: [i, i],
            tcp_flags: 0,
            end_reason: 3,
            holes: [0, 0],
        };
        let t = std::thread::spawn(move || {
            let mut i = 0;
            while i < 5000 {
                if q.push(&rec(i)) {
                    i += 1;
                }
            }
        });
        let mut want = 0;
        while want < 5000 {
            if let Some(r) = q.pop() {
                assert_eq!(r, rec(want));
                want += 1;
            }
        }
        t.join().unwrap();
    }
}
