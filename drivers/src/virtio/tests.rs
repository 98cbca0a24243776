//! virtio-net host tests against a fake modern virtio-net device (common config, feature
//! negotiation, queue setup, and a DMA model of the split virtqueues).

use super::*;
use crate::fake::{Access, FakeHal, FakeRegs, Step};
use std::sync::{Arc, Mutex};
use std::vec::Vec;

const N: usize = 64;
const LAYOUT: Layout = Layout {
    common: 0,
    notify: 0x3000,
    notify_mult: 4,
    device: 0x2000,
};

#[derive(Default, Clone, Copy, Debug)]
struct QState {
    size: u16,
    desc: u64,
    driver: u64,
    device: u64,
    enabled: bool,
}

#[derive(Default)]
struct State {
    selected: u16,
    q: [QState; 2],
}

/// The fake device: register hooks model the common configuration; `State` keeps what the
/// driver programmed per queue.
fn model(max_queue: u16, features_hi: u32) -> (FakeRegs, Arc<Mutex<State>>) {
    let r = FakeRegs::new();
    let st = Arc::new(Mutex::new(State::default()));
    r.on_write(Reg(common::DEVICE_FEATURE_SELECT), move |sel, regs| {
        let v = if sel == 0 {
            (F_MAC | F_STATUS) as u32
        } else {
            features_hi
        };
        regs.set(Reg(common::DEVICE_FEATURE), v);
    });
    let s = st.clone();
    // Word 0x14: status (byte 0), config generation, queue_select (bytes 2-3).
    r.on_write(Reg(0x14), move |w, regs| {
        let mut s = s.lock().unwrap();
        s.selected = (w >> 16) as u16;
        let q = s.q[s.selected as usize % 2];
        let size = if q.size == 0 { max_queue } else { q.size };
        regs.set(Reg(0x18), size as u32);
        regs.set(Reg(0x1C), (s.selected as u32) << 16); // notify_off = queue index
    });
    let s = st.clone();
    r.on_write(Reg(0x18), move |w, _| {
        let mut s = s.lock().unwrap();
        let sel = s.selected as usize % 2;
        s.q[sel].size = w as u16;
    });
    let s = st.clone();
    r.on_write(Reg(0x1C), move |w, regs| {
        if w & 0xFFFF == 1 {
            let mut s = s.lock().unwrap();
            let sel = s.selected as usize % 2;
            let rd = |o: u32| regs.get(Reg(o)) as u64 | (regs.get(Reg(o + 4)) as u64) << 32;
            s.q[sel].desc = rd(common::QUEUE_DESC);
            s.q[sel].driver = rd(common::QUEUE_DRIVER);
            s.q[sel].device = rd(common::QUEUE_DEVICE);
            s.q[sel].enabled = true;
        }
    });
    // Device config: MAC 52:54:00:ab:cd:ef, then the status word (LINK_UP).
    r.set(Reg(0x2000), u32::from_le_bytes([0x52, 0x54, 0, 0xAB]));
    r.set(Reg(0x2004), u32::from_le_bytes([0xCD, 0xEF, 1, 0]));
    (r, st)
}

fn u16_at(hal: &FakeHal, a: u64) -> u16 {
    u16::from_le_bytes(hal.dma_read(a, 2).try_into().unwrap())
}

/// Device side of one virtqueue: consumes available descriptors in order.
struct DevQ {
    q: QState,
    next_avail: u16,
    used_idx: u16,
}

impl DevQ {
    fn pending(&self, hal: &FakeHal) -> bool {
        u16_at(hal, self.q.driver + 2) != self.next_avail
    }
    fn take(&mut self, hal: &FakeHal) -> Option<(u16, u64, u32)> {
        if !self.pending(hal) {
            return None;
        }
        let n = self.q.size as u64;
        let id = u16_at(hal, self.q.driver + 4 + 2 * (self.next_avail as u64 % n));
        self.next_avail = self.next_avail.wrapping_add(1);
        let d = hal.dma_read(self.q.desc + 16 * id as u64, 16);
        let addr = u64::from_le_bytes(d[0..8].try_into().unwrap());
        let len = u32::from_le_bytes(d[8..12].try_into().unwrap());
        Some((id, addr, len))
    }
    fn give(&mut self, hal: &FakeHal, id: u16, len: u32) {
        let n = self.q.size as u64;
        let slot = self.q.device + 4 + 8 * (self.used_idx as u64 % n);
        hal.dma_write(slot, &(id as u32).to_le_bytes());
        hal.dma_write(slot + 4, &len.to_le_bytes());
        self.used_idx = self.used_idx.wrapping_add(1);
        hal.dma_write(self.q.device + 2, &self.used_idx.to_le_bytes());
    }
}

fn up() -> (FakeRegs, FakeHal, VirtioParts<FakeRegs, N>, DevQ, DevQ) {
    let (regs, st) = model(256, 1);
    let hal = FakeHal::new();
    let parts = init::<_, _, N>(&hal, regs.clone(), LAYOUT).unwrap();
    let s = st.lock().unwrap();
    let dq = |q: QState| DevQ {
        q,
        next_avail: 0,
        used_idx: 0,
    };
    let (rx, tx) = (dq(s.q[0]), dq(s.q[1]));
    drop(s);
    (regs, hal, parts, rx, tx)
}

#[test]
fn init_follows_the_virtio_sequence() {
    let (regs, _hal, parts, rxd, txd) = up();
    // Status progression (the status byte is the low byte of word 0x14).
    let statuses: Vec<u8> = regs
        .log()
        .iter()
        .filter_map(|a| match a {
            Access::Write(Reg(0x14), v) if (v >> 16) == 0 || *v & 0xFF != 0 => Some(*v as u8),
            _ => None,
        })
        .collect();
    let mut dedup = statuses.clone();
    dedup.dedup();
    assert_eq!(
        dedup,
        vec![0, 1, 3, 11, 15],
        "reset, ACK, DRIVER, FEATURES_OK, DRIVER_OK"
    );
    // Driver accepted exactly VERSION_1 | MAC | STATUS.
    assert_eq!(parts.ctl.features(), F_VERSION_1 | F_MAC | F_STATUS);
    regs.assert_sequence(&[
        Step::WriteEq(Reg(common::DRIVER_FEATURE_SELECT), 0),
        Step::WriteEq(Reg(common::DRIVER_FEATURE), (F_MAC | F_STATUS) as u32),
        Step::WriteEq(Reg(common::DRIVER_FEATURE_SELECT), 1),
        Step::WriteEq(Reg(common::DRIVER_FEATURE), 1),
        Step::Read(Reg(0x14)),
        Step::WriteEq(Reg(0x18), N as u32),
        Step::Write(Reg(common::QUEUE_DESC)),
        Step::WriteSet(Reg(0x1C), 1),
        // Receive buffers posted after DRIVER_OK, then queue 0 notified.
        Step::Write(Reg(0x3000)),
    ]);
    assert!(rxd.q.enabled && txd.q.enabled);
    assert_eq!(rxd.q.size as usize, N);
    assert_eq!(parts.ctl.mac(), MacAddr([0x52, 0x54, 0, 0xAB, 0xCD, 0xEF]));
    assert!(parts.ctl.link_status().up);
}

#[test]
fn receive_strips_header_and_reposts_buffers() {
    let (_regs, hal, mut parts, mut rxd, _) = up();
    let mut expect = Vec::new();
    for round in 0..10u8 {
        for k in 0..20u8 {
            let (id, addr, len) = rxd.take(&hal).expect("driver posted a buffer");
            assert_eq!(len as usize, BUF_SIZE);
            let frame: Vec<u8> = (0..60 + k as usize).map(|b| b as u8 ^ round).collect();
            let mut wire = vec![0u8; NET_HDR_LEN];
            wire.extend(&frame);
            hal.dma_write(addr, &wire);
            rxd.give(&hal, id, wire.len() as u32);
            expect.push(frame);
        }
        let mut got = Vec::new();
        while parts.rx.rx_batch(|f, m| {
            assert_eq!(m.len as usize, f.len());
            got.push(f.to_vec());
        }) > 0
        {}
        assert_eq!(got, expect);
        expect.clear();
    }
    assert_eq!(parts.rx.stats().packets, 200);
}

#[test]
fn receive_reports_the_net_headers_checksum_flags() {
    use crate::CsumCheck::{Good, Unknown};
    let (_regs, hal, mut parts, mut rxd, _) = up();
    // flags 0, NEEDS_CSUM, DATA_VALID, both, and an unknown bit only.
    let flags = [0u8, HDR_F_NEEDS_CSUM, HDR_F_DATA_VALID, 3, 0x80];
    for &fl in &flags {
        let (id, addr, _) = rxd.take(&hal).expect("driver posted a buffer");
        let mut wire = vec![0u8; NET_HDR_LEN];
        wire[0] = fl;
        wire.extend([fl; 60]);
        hal.dma_write(addr, &wire);
        rxd.give(&hal, id, wire.len() as u32);
    }
    let mut got = Vec::new();
    parts
        .rx
        .rx_batch(|f, m| got.push((f[0], m.ip_csum, m.l4_csum)));
    assert_eq!(
        got,
        [
            (0, Unknown, Unknown),
            (1, Unknown, Good),
            (2, Unknown, Good),
            (3, Unknown, Good),
            (0x80, Unknown, Unknown)
        ]
    );
}

#[test]
fn transmit_reaches_the_device_byte_for_byte_and_reclaims() {
    let (_regs, hal, mut parts, _, mut txd) = up();
    let frames: Vec<Vec<u8>> = (0..40u8).map(|i| vec![i; 60 + i as usize]).collect();
    let mut sent = 0;
    for _ in 0..10 {
        let refs: Vec<&[u8]> = frames[sent..].iter().map(|f| &f[..]).collect();
        sent += parts.tx.tx_batch(&refs);
        let mut wire = Vec::new();
        while let Some((id, addr, len)) = txd.take(&hal) {
            wire.push(hal.dma_read(addr + NET_HDR_LEN as u64, len as usize - NET_HDR_LEN));
            txd.give(&hal, id, 0);
        }
        let start = sent - wire.len();
        assert_eq!(wire, frames[start..sent].to_vec());
        if sent == frames.len() {
            break;
        }
    }
    assert_eq!(sent, 40);
    parts.tx.reclaim();
    assert_eq!(parts.tx.free_descriptors(), N, "every buffer came back");
}

#[test]
fn transmit_stops_when_all_buffers_are_in_flight() {
    let (_regs, hal, mut parts, _, mut txd) = up();
    let f = [7u8; 64];
    let refs = [&f[..]; 32];
    let mut total = 0;
    while parts.tx.tx_batch(&refs) > 0 {
        total = parts.tx.stats().packets;
    }
    assert_eq!(total as usize, N);
    let (id, _, _) = txd.take(&hal).unwrap();
    txd.give(&hal, id, 0);
    assert_eq!(parts.tx.tx_batch(&refs), 1);
}

#[test]
fn negotiation_and_setup_failures_are_named() {
    let hal = FakeHal::new();
    // Device without VERSION_1 (legacy only).
    let (regs, _) = model(256, 0);
    assert_eq!(
        init::<_, _, N>(&hal, regs.clone(), LAYOUT).err(),
        Some(Error::VirtioFeaturesRejected)
    );
    // Device that refuses FEATURES_OK.
    let (regs, _) = model(256, 1);
    regs.stick(Reg(0x14), status::FEATURES_OK as u32, 0);
    assert_eq!(
        init::<_, _, N>(&hal, regs, LAYOUT).err(),
        Some(Error::VirtioFeaturesRejected)
    );
    // Reset never completes.
    let (regs, _) = model(256, 1);
    regs.stick(Reg(0x14), 0x1, 0x1);
    assert_eq!(
        init::<_, _, N>(&hal, regs, LAYOUT).err(),
        Some(Error::VirtioResetTimeout)
    );
    // Queue smaller than the driver's ring.
    let (regs, _) = model(16, 1);
    assert_eq!(
        init::<_, _, N>(&hal, regs, LAYOUT).err(),
        Some(Error::VirtioQueueUnavailable(0))
    );
}

#[test]
fn virtio_queues_are_send() {
    fn send<T: crate::NicRx>() {}
    send::<VirtioRx<Mmio, 256>>();
}

/// `rx_batch_frames` hands the frames of one batch (in used-ring order, header stripped,
/// flags decoded) to the closure in one call; the buffers are re-posted, in the order taken,
/// and the device notified only after it returns. A used buffer holding no more than the
/// header is counted as an error and re-posted too.
#[test]
fn rx_batch_frames_hands_over_a_whole_batch_then_reposts() {
    use crate::CsumCheck::{Good, Unknown};
    use crate::RX_BATCH;
    let (regs, hal, mut parts, mut rxd, _) = up();
    let driver = rxd.q.driver;
    let avail_idx = |hal: &FakeHal| u16_at(hal, driver + 2);
    assert_eq!(avail_idx(&hal), N as u16);
    let taken: Vec<(u16, u64, u32)> = (0..40).map(|_| rxd.take(&hal).unwrap()).collect();
    // Returned in pairs swapped (the device may use buffers out of order); the 6th is empty.
    let mut order = Vec::new();
    let mut want = Vec::new();
    for k in 0..40usize {
        let (id, addr, _) = taken[k ^ 1];
        let mut wire = vec![0u8; NET_HDR_LEN];
        if k == 5 {
            rxd.give(&hal, id, wire.len() as u32);
        } else {
            wire[0] = if k % 3 == 0 { HDR_F_DATA_VALID } else { 0 };
            let frame: Vec<u8> = (0..60 + k).map(|b| (b ^ k) as u8).collect();
            wire.extend(&frame);
            hal.dma_write(addr, &wire);
            rxd.give(&hal, id, wire.len() as u32);
            let meta = crate::RxMeta {
                len: frame.len() as u16,
                l4_csum: if k % 3 == 0 { Good } else { Unknown },
                ..crate::RxMeta::default()
            };
            want.push((frame, meta));
        }
        order.push(id);
    }
    regs.clear_log();
    let mut calls = 0;
    let mut got = Vec::new();
    let n = parts.rx.rx_batch_frames(|frames, metas| {
        calls += 1;
        assert_eq!(frames.len(), metas.len());
        // Nothing re-posted or notified yet.
        assert_eq!(avail_idx(&hal), N as u16);
        assert!(regs.writes_to(Reg(0x3000)).is_empty());
        got.extend(frames.iter().zip(metas).map(|(f, m)| (f.to_vec(), *m)));
    });
    assert_eq!((calls, n), (1, RX_BATCH - 1));
    assert_eq!(got, want[..RX_BATCH - 1]);
    assert_eq!(avail_idx(&hal), (N + RX_BATCH) as u16);
    let posted: Vec<u16> = (0..RX_BATCH)
        .map(|k| u16_at(&hal, driver + 4 + 2 * ((N + k) % N) as u64))
        .collect();
    assert_eq!(posted, order[..RX_BATCH]);
    assert_eq!(regs.writes_to(Reg(0x3000)), [0]);
    let bytes = |w: &[(Vec<u8>, crate::RxMeta)]| w.iter().map(|(f, _)| f.len() as u64).sum();
    assert_eq!(
        parts.rx.stats(),
        QueueStats {
            packets: (RX_BATCH - 1) as u64,
            bytes: bytes(&want[..RX_BATCH - 1]),
            errors: 1
        }
    );
    // The rest through the trait; then nothing: no call, no notify.
    got.clear();
    let n = crate::NicRx::rx_batch_frames(&mut parts.rx, |frames, metas| {
        calls += 1;
        got.extend(frames.iter().zip(metas).map(|(f, m)| (f.to_vec(), *m)));
    });
    assert_eq!((calls, n), (2, 8));
    assert_eq!(got, want[RX_BATCH - 1..]);
    assert_eq!(avail_idx(&hal), (N + 40) as u16);
    assert_eq!(parts.rx.rx_batch_frames(|_, _| calls += 1), 0);
    assert_eq!(calls, 2);
    assert_eq!(regs.writes_to(Reg(0x3000)), [0, 0]);
    assert_eq!(
        parts.rx.stats(),
        QueueStats {
            packets: want.len() as u64,
            bytes: bytes(&want),
            errors: 1
        }
    );
    // Every buffer is posted again: the device can take the 24 it had left plus these 40.
    assert_eq!((0..).map_while(|_| rxd.take(&hal)).count(), N);
}
