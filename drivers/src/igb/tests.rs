//! igb host tests: register order against nic-notes §7.1, timeouts, RSS, stats, data path.

use super::reg::*;
use super::*;
use crate::fake::{Access, FakeHal, FakeRegs, FakeRxDevice, Step};
use crate::{NicRx, SYMMETRIC_RSS_KEY};
use std::vec::Vec;

const RXN: usize = 64;
const TXN: usize = 64;
const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];

/// A well-behaved 82576 as far as init cares: RST self-clears, EEPROM auto-read done,
/// a valid receive address 0, MDIC completes and brings the link up (as QEMU's autoneg).
fn model() -> FakeRegs {
    let r = FakeRegs::new();
    r.on_write(CTRL, |v, regs| regs.set(CTRL, v & !CTRL_RST));
    r.set(EECD, EECD_AUTO_RD);
    r.set(RAL0, u32::from_le_bytes([MAC[0], MAC[1], MAC[2], MAC[3]]));
    r.set(RAH0, u16::from_le_bytes([MAC[4], MAC[5]]) as u32 | 1 << 31);
    r.on_write(MDIC, |v, regs| {
        regs.set(MDIC, v | MDIC_READY);
        regs.set(STATUS, STATUS_LU | STATUS_FD | (2 << 6));
    });
    r
}

fn up(regs: &FakeRegs, hal: &FakeHal, cfg: &IgbConfig) -> Result<IgbParts<FakeRegs, RXN, TXN>> {
    init::<_, _, RXN, TXN>(hal, regs.clone(), cfg)
}

#[test]
fn init_follows_datasheet_order() {
    let (regs, hal) = (model(), FakeHal::new());
    let parts = up(&regs, &hal, &IgbConfig::symmetric(2)).unwrap();
    assert_eq!(parts.rx.len(), 2);
    assert_eq!(parts.tx.len(), 2);
    assert_eq!(parts.ctl.mac(), MacAddr(MAC));
    let mut steps = vec![
        // §7.1 step 2: interrupts off, rx/tx off, flush.
        Step::WriteEq(IMC, 0xFFFF_FFFF),
        Step::WriteEq(EIMC, 0xFFFF_FFFF),
        Step::Read(ICR),
        Step::WriteEq(RCTL, 0),
        Step::WriteEq(TCTL, TCTL_PSP),
        Step::Read(STATUS),
        // Step 3: reset, wait for the self-clear, interrupts off again.
        Step::WriteSet(CTRL, CTRL_RST),
        Step::Wait(CTRL, CTRL_RST, false),
        Step::WriteEq(IMC, 0xFFFF_FFFF),
        // Step 4-5: EEPROM auto-read (timed), driver loaded.
        Step::Wait(EECD, EECD_AUTO_RD, true),
        Step::WriteSet(CTRL_EXT, CTRL_EXT_DRV_LOAD),
        // Step 7-8: MAC, multicast table, statistics cleared.
        Step::Read(RAH0),
        Step::WriteEq(MTA, 0),
        Step::Read(GPRC),
    ];
    // Step 9: each receive queue.
    for n in 0..2 {
        steps.extend([
            Step::WriteClear(rxdctl(n), DCTL_ENABLE),
            Step::Write(rdbal(n)),
            Step::Write(rdbah(n)),
            Step::WriteEq(rdlen(n), (RXN * 16) as u32),
            Step::WriteEq(rdh(n), 0),
            Step::WriteEq(rdt(n), 0),
            Step::WriteEq(srrctl(n), 2 | 1 << 25 | 1 << 31),
            Step::WriteSet(rxdctl(n), DCTL_ENABLE),
            Step::Wait(rxdctl(n), DCTL_ENABLE, true),
            Step::WriteEq(rdt(n), RXN as u32 - 1),
        ]);
    }
    // Step 10: RSS before receive is enabled; step 11: receive on.
    steps.extend([
        Step::WriteEq(RSSRK, 0x5A6D_5A6D),
        Step::Write(RETA),
        Step::WriteSet(RXCSUM, RXCSUM_PCSD | RXCSUM_IPOFLD | RXCSUM_TUOFLD),
        Step::WriteEq(MRQC, MRQC_RSS | MRQC_FIELDS),
        Step::WriteEq(RCTL, RCTL_EN | RCTL_UPE | RCTL_MPE | RCTL_BAM | RCTL_SECRC),
    ]);
    // Step 12: transmit queues, transmit on.
    for n in 0..2 {
        steps.extend([
            Step::Write(tdbal(n)),
            Step::Write(tdbah(n)),
            Step::WriteEq(tdlen(n), (TXN * 16) as u32),
            Step::WriteEq(tdh(n), 0),
            Step::WriteEq(tdt(n), 0),
            Step::WriteSet(txdctl(n), DCTL_ENABLE),
            Step::Wait(txdctl(n), DCTL_ENABLE, true),
        ]);
    }
    steps.extend([
        Step::WriteSet(TCTL, TCTL_EN | TCTL_PSP),
        // Step 6 last (QEMU: receive before link): SLU, PHY 1 BMCR autoneg restart.
        Step::WriteSet(CTRL, CTRL_SLU),
        Step::WriteEq(MDIC, 0x1340 | 1 << 21 | MDIC_OP_WRITE),
        Step::Wait(MDIC, MDIC_READY, true),
        Step::Read(MDIC),
    ]);
    regs.assert_sequence(&steps);
    // Nothing enables receive before RSS is programmed.
    let first_rx_on = regs.find(Step::WriteSet(RCTL, RCTL_EN), 0).unwrap();
    let mrqc = regs.find(Step::Write(MRQC), 0).unwrap();
    assert!(mrqc < first_rx_on);
    // Ring addresses point at 128-byte aligned rings.
    for n in 0..2 {
        assert_eq!(regs.get(rdbal(n)) % 128, 0);
        assert_eq!(regs.get(tdbal(n)) % 128, 0);
    }
}

#[test]
fn rss_registers_hold_symmetric_key_and_spread_reta() {
    let (regs, hal) = (model(), FakeHal::new());
    let parts = up(&regs, &hal, &IgbConfig::symmetric(4)).unwrap();
    for i in 0..10 {
        assert_eq!(regs.get(Reg(RSSRK.0 + 4 * i)), 0x5A6D_5A6D);
    }
    for i in 0..32 {
        assert_eq!(regs.get(Reg(RETA.0 + 4 * i)), 0x0302_0100);
    }
    let rss = parts.ctl.rss();
    assert_eq!(rss.key, SYMMETRIC_RSS_KEY);
    assert_eq!(rss.reta, crate::toeplitz::spread_reta(4));
    assert!(regs.get(RXCSUM) & RXCSUM_PCSD != 0);
    for n in 0..4 {
        assert!(
            regs.get(srrctl(n)) & SRRCTL_DROP_EN != 0,
            "DROP_EN on queue {n}"
        );
    }
}

#[test]
fn reset_that_never_clears_is_a_named_timeout() {
    let (regs, hal) = (model(), FakeHal::new());
    regs.stick(CTRL, CTRL_RST, CTRL_RST);
    let t0 = hal.time();
    assert_eq!(
        up(&regs, &hal, &IgbConfig::symmetric(1)).err(),
        Some(Error::ResetTimeout)
    );
    let waited = hal.time() - t0;
    assert!((ms(100)..ms(200)).contains(&waited), "waited {waited} ns");
    // Nothing after the failed wait touched the queues.
    assert!(regs.find(Step::Write(rdbal(0)), 0).is_none());
}

#[test]
fn queue_enable_that_never_reads_back_is_a_named_timeout() {
    let (regs, hal) = (model(), FakeHal::new());
    regs.stick(rxdctl(1), DCTL_ENABLE, 0);
    let e = up(&regs, &hal, &IgbConfig::symmetric(2)).err();
    assert_eq!(e, Some(Error::RxQueueEnableTimeout(1)));
    let (regs, hal) = (model(), FakeHal::new());
    regs.stick(txdctl(0), DCTL_ENABLE, 0);
    let e = up(&regs, &hal, &IgbConfig::symmetric(2)).err();
    assert_eq!(e, Some(Error::TxQueueEnableTimeout(0)));
}

#[test]
fn phy_access_timeouts_and_errors_are_named() {
    let (regs, hal) = (model(), FakeHal::new());
    regs.on_write(MDIC, |_, _| {});
    assert_eq!(
        up(&regs, &hal, &IgbConfig::symmetric(1)).err(),
        Some(Error::MdioTimeout)
    );
    let (regs, hal) = (model(), FakeHal::new());
    regs.on_write(MDIC, |v, r| r.set(MDIC, v | MDIC_READY | MDIC_ERROR));
    assert_eq!(
        up(&regs, &hal, &IgbConfig::symmetric(1)).err(),
        Some(Error::MdioError)
    );
}

#[test]
fn missing_eeprom_auto_read_is_not_fatal_like_qemu() {
    let (regs, hal) = (model(), FakeHal::new());
    regs.set(EECD, 0);
    let parts = up(&regs, &hal, &IgbConfig::symmetric(1)).unwrap();
    assert!(!parts.ctl.eeprom_auto_read());
}

#[test]
fn mac_comes_from_eeprom_when_receive_address_invalid() {
    let (regs, hal) = (model(), FakeHal::new());
    regs.set(RAH0, 0);
    regs.on_write(EERD, |v, r| {
        let word = (v >> 2) & 0x3FFF;
        let data = [0x1100u32, 0x3322, 0x5544][word as usize];
        r.set(EERD, v | EERD_DONE | data << 16);
    });
    let parts = up(&regs, &hal, &IgbConfig::symmetric(1)).unwrap();
    assert_eq!(parts.ctl.mac(), MacAddr([0, 0x11, 0x22, 0x33, 0x44, 0x55]));
    assert!(regs.get(RAH0) & 1 << 31 != 0);
    // And an EEPROM that never answers is a named error.
    let (regs, hal) = (model(), FakeHal::new());
    regs.set(RAH0, 0);
    assert_eq!(
        up(&regs, &hal, &IgbConfig::symmetric(1)).err(),
        Some(Error::EepromReadTimeout)
    );
}

#[test]
fn link_status_and_wait_link() {
    let (regs, hal) = (model(), FakeHal::new());
    let parts = up(&regs, &hal, &IgbConfig::symmetric(1)).unwrap();
    let l = parts.ctl.wait_link(&hal, ms(5000)).unwrap();
    assert_eq!(
        l,
        LinkStatus {
            up: true,
            speed_mbps: 1000,
            full_duplex: true
        }
    );
    regs.set(STATUS, 0);
    assert!(!parts.ctl.link_status().up);
    let t0 = hal.time();
    assert_eq!(
        parts.ctl.wait_link(&hal, ms(500)).err(),
        Some(Error::LinkTimeout)
    );
    assert!(hal.time() - t0 >= ms(500));
}

#[test]
fn bad_configs_are_rejected_before_touching_the_device() {
    let (regs, hal) = (model(), FakeHal::new());
    for (rxq, txq) in [(0, 1), (17, 1), (1, 0), (1, 17)] {
        let mut cfg = IgbConfig::symmetric(1);
        cfg.rx_queues = rxq;
        cfg.tx_queues = txq;
        assert!(matches!(
            up(&regs, &hal, &cfg).err(),
            Some(Error::BadConfig(_))
        ));
    }
    let mut cfg = IgbConfig::symmetric(2);
    cfg.rss.reta[5] = 2;
    assert!(matches!(
        up(&regs, &hal, &cfg).err(),
        Some(Error::BadConfig(_))
    ));
    assert!(regs.log().is_empty());
}

#[test]
fn dma_exhaustion_is_a_named_error() {
    let (regs, hal) = (model(), FakeHal::new());
    hal.fail_dma_after(3);
    assert_eq!(
        up(&regs, &hal, &IgbConfig::symmetric(2)).err(),
        Some(Error::DmaAlloc)
    );
}

#[test]
fn promiscuous_toggles() {
    let (regs, hal) = (model(), FakeHal::new());
    let mut parts = up(&regs, &hal, &IgbConfig::symmetric(1)).unwrap();
    assert!(parts.ctl.promiscuous());
    parts.ctl.set_promiscuous(false);
    assert!(!parts.ctl.promiscuous());
    assert!(regs.get(RCTL) & RCTL_EN != 0);
    parts.ctl.set_promiscuous(true);
    assert!(parts.ctl.promiscuous());
}

#[test]
fn stats_accumulate_clear_on_read_registers_in_64_bits() {
    let (regs, hal) = (model(), FakeHal::new());
    for r in [GPRC, GPTC, GORCL, GORCH, MPC, ICR, rqdpc(0), rqdpc(1)] {
        regs.clear_on_read(r);
    }
    regs.set(GPRC, 7); // stale count from before init: must be cleared, not reported
    let mut parts = up(&regs, &hal, &IgbConfig::symmetric(2)).unwrap();
    assert_eq!(parts.ctl.stats().rx_packets, 0);
    for _ in 0..3 {
        regs.set(GPRC, 0xFFFF_FFFF);
        regs.set(GORCL, 0xFFFF_FFFF);
        regs.set(GORCH, 1);
        regs.set(rqdpc(1), 5);
        parts.ctl.update_stats();
    }
    let s = parts.ctl.stats();
    assert_eq!(s.rx_packets, 3 * 0xFFFF_FFFF);
    assert_eq!(s.rx_bytes, 3 * 0x1_FFFF_FFFF);
    assert_eq!(parts.ctl.queue_drops(1), 15);
    assert_eq!(s.rx_overruns, 0);
    regs.set(ICR, ICR_RXO);
    assert_eq!(parts.ctl.update_stats().rx_overruns, 1);
    assert_eq!(parts.ctl.queue_drops(0), 0);
    // GORCL read before GORCH (reading the high half clears both).
    let l = regs.log();
    let lo = l
        .iter()
        .rposition(|a| matches!(a, Access::Read(r, _) if *r == GORCL));
    let hi = l
        .iter()
        .rposition(|a| matches!(a, Access::Read(r, _) if *r == GORCH));
    assert!(lo < hi);
}

fn frame(i: u32, len: usize) -> Vec<u8> {
    (0..len).map(|k| (k as u32 ^ i) as u8).collect()
}

#[test]
fn rx_delivers_in_order_and_recycles_in_place() {
    let (regs, hal) = (model(), FakeHal::new());
    let mut parts = up(&regs, &hal, &IgbConfig::symmetric(1)).unwrap();
    let mut dev = FakeRxDevice::new(&regs, rdbal(0), rdbah(0), rdlen(0), rdt(0));
    assert_eq!(dev.room(&regs), RXN - 1);
    let q = &mut parts.rx[0];
    let mut next = 0u32;
    let mut got = 0u32;
    // Several laps around the ring with varying batch fill.
    for round in 0..20u32 {
        let n = (round * 7) % 60 + 1;
        for _ in 0..n {
            assert!(dev.deliver(&hal, &regs, &frame(next, 60 + next as usize % 1400), next));
            next += 1;
        }
        while got < next {
            let k = q.rx_batch(|f, m| {
                assert_eq!(f, &frame(got, 60 + got as usize % 1400)[..]);
                assert_eq!(m.rss_hash, got);
                assert_eq!(m.len as usize, f.len());
                assert_eq!(m.queue, 0);
                got += 1;
            });
            assert!(k > 0 && k <= crate::RX_BATCH);
        }
        // The tail sits one behind the next descriptor to read.
        assert_eq!(regs.get(rdt(0)) as usize, (next as usize + RXN - 1) % RXN);
        assert_eq!(q.rx_batch(|_, _| panic!("no frame pending")), 0);
    }
    assert_eq!(q.stats().packets, next as u64);
}

#[test]
fn rx_reports_the_descriptors_checksum_status() {
    use crate::ring::{RX_STATUS_IPCS, RX_STATUS_L4CS};
    use crate::CsumCheck::{Bad, Good, Unknown};
    let (regs, hal) = (model(), FakeHal::new());
    // A driver before us cleared the offload bits: init turns them back on.
    regs.set(RXCSUM, 0);
    let mut parts = up(&regs, &hal, &IgbConfig::symmetric(1)).unwrap();
    assert_eq!(
        regs.get(RXCSUM) & (RXCSUM_IPOFLD | RXCSUM_TUOFLD),
        RXCSUM_IPOFLD | RXCSUM_TUOFLD
    );
    let mut dev = FakeRxDevice::new(&regs, rdbal(0), rdbah(0), rdlen(0), rdt(0));
    // igb: IPE is bit 30, TCPE bit 29 (E1000_RXDEXT_STATERR_*); bit 31 (RXE) is neither.
    let cases = [
        (0, (Unknown, Unknown)),
        (RX_STATUS_IPCS, (Good, Unknown)),
        (RX_STATUS_IPCS | RX_STATUS_L4CS, (Good, Good)),
        (RX_STATUS_IPCS | RX_STATUS_L4CS | 1 << 29, (Good, Bad)),
        (RX_STATUS_IPCS | RX_STATUS_L4CS | 1 << 30, (Bad, Good)),
        (RX_STATUS_L4CS | 1 << 29 | 1 << 30, (Unknown, Bad)),
        (RX_STATUS_IPCS | RX_STATUS_L4CS | 1 << 31, (Good, Good)),
    ];
    for (i, (status, _)) in cases.iter().enumerate() {
        assert!(dev.deliver_status(&hal, &regs, &frame(i as u32, 60), 0, *status));
    }
    let mut got = Vec::new();
    parts.rx[0].rx_batch(|_, m| got.push((m.ip_csum, m.l4_csum)));
    let want: Vec<_> = cases.iter().map(|c| c.1).collect();
    assert_eq!(got, want);
}

#[test]
fn rx_ring_overrun_drops_at_the_device_and_resumes() {
    let (regs, hal) = (model(), FakeHal::new());
    let mut parts = up(&regs, &hal, &IgbConfig::symmetric(1)).unwrap();
    let mut dev = FakeRxDevice::new(&regs, rdbal(0), rdbah(0), rdlen(0), rdt(0));
    let mut dropped = 0;
    for i in 0..(RXN as u32 + 10) {
        if !dev.deliver(&hal, &regs, &frame(i, 64), i) {
            dropped += 1;
        }
    }
    assert_eq!(dropped, 11, "ring holds N-1 frames");
    let mut seen = Vec::new();
    while parts.rx[0].rx_batch(|_, m| seen.push(m.rss_hash)) > 0 {}
    assert_eq!(seen, (0..RXN as u32 - 1).collect::<Vec<_>>());
    assert!(dev.deliver(&hal, &regs, &frame(999, 64), 999));
    let mut after = Vec::new();
    parts.rx[0].rx_batch(|_, m| after.push(m.rss_hash));
    assert_eq!(after, vec![999]);
}

#[test]
fn tx_writes_advanced_descriptors_and_reclaims() {
    let (regs, hal) = (model(), FakeHal::new());
    let mut parts = up(&regs, &hal, &IgbConfig::symmetric(1)).unwrap();
    let ring = regs.get(tdbal(0)) as u64 | (regs.get(tdbah(0)) as u64) << 32;
    let q = &mut parts.tx[0];
    let frames: Vec<Vec<u8>> = (0..5).map(|i| frame(i, 100 + i as usize)).collect();
    let refs: Vec<&[u8]> = frames.iter().map(|f| &f[..]).collect();
    assert_eq!(q.tx_batch(&refs), 5);
    assert_eq!(regs.get(tdt(0)), 5);
    for (i, f) in frames.iter().enumerate() {
        let d = hal.dma_read(ring + 16 * i as u64, 16);
        let addr = u64::from_le_bytes(d[0..8].try_into().unwrap());
        let cmd = u32::from_le_bytes(d[8..12].try_into().unwrap());
        let olinfo = u32::from_le_bytes(d[12..16].try_into().unwrap());
        assert_eq!(
            cmd,
            0x3 << 20 | 1 << 29 | 1 << 27 | 1 << 25 | 1 << 24 | f.len() as u32
        );
        assert_eq!(olinfo, (f.len() as u32) << 14);
        assert_eq!(&hal.dma_read(addr, f.len()), f);
    }
    assert_eq!(q.in_flight(), 5);
    // Device completes the first three (DD in the write-back status word).
    for i in 0..3u64 {
        hal.dma_write(ring + 16 * i + 12, &1u32.to_le_bytes());
    }
    assert_eq!(q.reclaim(), 3);
    assert_eq!(q.in_flight(), 2);
    // Oversize frames are dropped and counted, not sent.
    let big = vec![0u8; 3000];
    assert_eq!(q.tx_batch(&[&big[..]]), 1);
    assert_eq!(q.stats().errors, 1);
    assert_eq!(regs.get(tdt(0)), 5);
}

#[test]
fn tx_ring_full_stops_and_resumes() {
    let (regs, hal) = (model(), FakeHal::new());
    let mut parts = up(&regs, &hal, &IgbConfig::symmetric(1)).unwrap();
    let q = &mut parts.tx[0];
    let f = [0xAAu8; 60];
    let refs = [&f[..]; 32];
    let mut total = 0;
    loop {
        let n = q.tx_batch(&refs);
        total += n;
        if n < 32 {
            break;
        }
    }
    assert_eq!(total, TXN - 1);
    assert_eq!(q.tx_batch(&refs), 0);
    let ring = regs.get(tdbal(0)) as u64 | (regs.get(tdbah(0)) as u64) << 32;
    hal.dma_write(ring + 12, &1u32.to_le_bytes());
    assert_eq!(q.tx_batch(&refs), 1);
}

#[test]
fn queue_handles_are_send() {
    fn send<T: Send>() {}
    send::<IgbRx<Mmio, 512>>();
    send::<IgbTx<Mmio, 512>>();
    send::<IgbRx<FakeRegs, 512>>();
    fn rx<T: NicRx>() {}
    rx::<IgbRx<Mmio, 512>>();
}

#[test]
fn link_changes_are_reported_once_each() {
    let (regs, hal) = (model(), FakeHal::new());
    let mut parts = up(&regs, &hal, &IgbConfig::symmetric(1)).unwrap();
    assert!(parts.ctl.poll_link_change().unwrap().up);
    assert_eq!(parts.ctl.poll_link_change(), None);
    regs.set(STATUS, 0);
    assert!(!parts.ctl.poll_link_change().unwrap().up);
    assert_eq!(parts.ctl.poll_link_change(), None);
    regs.set(STATUS, STATUS_LU | STATUS_FD | 2 << 6);
    assert_eq!(
        parts.ctl.poll_link_change().map(|l| l.speed_mbps),
        Some(1000)
    );
}

/// Property test: random interleavings of device deliveries and `rx_batch_max` calls agree
/// with a FIFO reference model (order kept, nothing lost except what the device could not
/// place because the ring was full, nothing duplicated), for several seeds.
#[test]
fn property_rx_ring_matches_fifo_model() {
    use std::collections::VecDeque;
    for seed in 1..=10u64 {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut rnd = move |m: u64| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s % m
        };
        let (regs, hal) = (model(), FakeHal::new());
        let mut parts = up(&regs, &hal, &IgbConfig::symmetric(1)).unwrap();
        regs.set_logging(false);
        let mut dev = FakeRxDevice::new(&regs, rdbal(0), rdbah(0), rdlen(0), rdt(0));
        let mut model_q: VecDeque<u32> = VecDeque::new();
        let (mut next, mut dropped) = (0u32, 0u32);
        for _ in 0..300 {
            for _ in 0..rnd(80) {
                let ok = dev.deliver(&hal, &regs, &frame(next, 60 + rnd(1400) as usize), next);
                assert_eq!(ok, model_q.len() < RXN - 1, "device room matches the model");
                if ok {
                    model_q.push_back(next);
                } else {
                    dropped += 1;
                }
                next += 1;
            }
            let max = rnd(2 * crate::RX_BATCH as u64) as usize;
            let mut got = Vec::new();
            let n = parts.rx[0].rx_batch_max(max, |f, m| {
                assert_eq!(f.len(), m.len as usize);
                assert_eq!(f[..4], frame(m.rss_hash, 4)[..]);
                got.push(m.rss_hash)
            });
            assert_eq!(n, got.len());
            assert_eq!(n, max.min(model_q.len()).min(RXN - 1));
            for id in got {
                assert_eq!(Some(id), model_q.pop_front());
            }
        }
        assert_eq!(
            parts.rx[0].stats().packets + model_q.len() as u64 + dropped as u64,
            next as u64
        );
    }
}

/// The write-back status word of descriptor `i` of the ring at `ring`.
fn wb_status(hal: &FakeHal, ring: u64, i: usize) -> u32 {
    u32::from_le_bytes(
        hal.dma_read(ring + 16 * i as u64 + 8, 4)
            .try_into()
            .unwrap(),
    )
}

/// `rx_batch_frames` hands a whole receive batch to the closure in one call, every frame's
/// exact bytes and metadata index for index; the descriptors go back (re-armed with their
/// own buffers, tail written) only after the closure returns. Both parts of a two-buffer
/// frame are dropped, counted as errors and recycled like the rest.
#[test]
fn rx_batch_frames_hands_over_a_whole_batch_then_recycles() {
    use crate::ring::{RX_STATUS_IPCS, RX_STATUS_L4CS};
    use crate::CsumCheck::{Bad, Good, Unknown};
    use crate::{RxMeta, RX_BATCH};
    let (regs, hal) = (model(), FakeHal::new());
    let mut parts = up(&regs, &hal, &IgbConfig::symmetric(1)).unwrap();
    let mut dev = FakeRxDevice::new(&regs, rdbal(0), rdbah(0), rdlen(0), rdt(0));
    let ring = regs.get(rdbal(0)) as u64 | (regs.get(rdbah(0)) as u64) << 32;
    // The read format each descriptor holds while armed: its buffer's address, then 0.
    let armed: Vec<Vec<u8>> = (0..RXN)
        .map(|i| hal.dma_read(ring + 16 * i as u64, 16))
        .collect();
    let tail0 = regs.get(rdt(0));
    assert_eq!(tail0 as usize, RXN - 1);
    // 40 descriptors: frames 0..=2 with checksum results, a two-buffer frame, 35 more.
    let checked = RX_STATUS_IPCS | RX_STATUS_L4CS;
    let statuses = [
        (0, (Unknown, Unknown)),
        (checked, (Good, Good)),
        (checked | 1 << 29, (Good, Bad)),
    ];
    let mut want: Vec<(Vec<u8>, RxMeta)> = Vec::new();
    let meta = |id: u32, len: usize, (ip_csum, l4_csum)| RxMeta {
        queue: 0,
        len: len as u16,
        rss_hash: id,
        rss_type: 1,
        vlan: 0,
        ip_csum,
        l4_csum,
    };
    for (id, (status, csum)) in statuses.into_iter().enumerate() {
        let f = frame(id as u32, 60 + id);
        assert!(dev.deliver_status(&hal, &regs, &f, id as u32, status));
        want.push((f.clone(), meta(id as u32, f.len(), csum)));
    }
    assert!(dev.deliver_part(&hal, &regs, &frame(900, 2048), 900, false));
    assert!(dev.deliver_part(&hal, &regs, &frame(901, 100), 900, true));
    for id in 3..38u32 {
        let f = frame(id, 60 + (id as usize * 37) % 1400);
        assert!(dev.deliver(&hal, &regs, &f, id));
        want.push((f.clone(), meta(id, f.len(), (Unknown, Unknown))));
    }
    // First batch: RX_BATCH descriptors, of which two are the dropped parts.
    let q = &mut parts.rx[0];
    let mut calls = 0;
    let mut got: Vec<(Vec<u8>, RxMeta)> = Vec::new();
    let n = q.rx_batch_frames(|frames, metas| {
        calls += 1;
        assert_eq!(frames.len(), metas.len());
        // Nothing handed back yet: same tail, every descriptor taken still done.
        assert_eq!(regs.get(rdt(0)), tail0);
        for i in 0..RX_BATCH {
            assert_eq!(wb_status(&hal, ring, i) & 1, 1, "descriptor {i}");
        }
        got.extend(frames.iter().zip(metas).map(|(f, m)| (f.to_vec(), *m)));
    });
    assert_eq!((calls, n), (1, RX_BATCH - 2));
    assert_eq!(got, want[..RX_BATCH - 2]);
    assert_eq!(regs.get(rdt(0)) as usize, RX_BATCH - 1);
    for (i, read) in armed.iter().enumerate().take(RX_BATCH) {
        assert_eq!(
            &hal.dma_read(ring + 16 * i as u64, 16),
            read,
            "descriptor {i}"
        );
    }
    assert_eq!(wb_status(&hal, ring, RX_BATCH) & 1, 1, "not taken yet");
    let bytes = |w: &[(Vec<u8>, RxMeta)]| w.iter().map(|(f, _)| f.len() as u64).sum::<u64>();
    assert_eq!(
        q.stats(),
        crate::ring::QueueStats {
            packets: (RX_BATCH - 2) as u64,
            bytes: bytes(&want[..RX_BATCH - 2]),
            errors: 2,
        }
    );
    // The rest, through the trait; then nothing (no call, no tail write).
    got.clear();
    let n = NicRx::rx_batch_frames(q, |frames, metas| {
        calls += 1;
        got.extend(frames.iter().zip(metas).map(|(f, m)| (f.to_vec(), *m)));
    });
    assert_eq!((calls, n), (2, 8));
    assert_eq!(got, want[RX_BATCH - 2..]);
    assert_eq!(regs.get(rdt(0)), 39);
    let tail_writes = regs.writes_to(rdt(0)).len();
    assert_eq!(q.rx_batch_frames(|_, _| calls += 1), 0);
    assert_eq!(calls, 2);
    assert_eq!(regs.writes_to(rdt(0)).len(), tail_writes);
    assert_eq!(
        q.stats(),
        crate::ring::QueueStats {
            packets: want.len() as u64,
            bytes: bytes(&want),
            errors: 2,
        }
    );
    // Every descriptor taken was re-armed with its own buffer: the device can lap the ring.
    for (i, read) in armed.iter().enumerate().take(40) {
        assert_eq!(
            &hal.dma_read(ring + 16 * i as u64, 16),
            read,
            "descriptor {i}"
        );
    }
    assert_eq!(dev.room(&regs), RXN - 1);
}

/// What one descriptor the fake device wrote holds, for the reference model below.
#[derive(Clone, Copy)]
enum Desc {
    Whole(u32, usize),
    Part { last: bool },
}

/// Property test: random interleavings of deliveries (with two- and three-buffer frames)
/// and calls of `rx_batch_frames`, `rx_batch` and `rx_batch_max` agree with a reference
/// model of the ring (a FIFO of descriptors and the driver's drop-the-parts rule): the same
/// frames in order, one closure call per batch that has frames, the same counters.
#[test]
fn property_rx_batch_frames_matches_the_descriptor_model() {
    use std::collections::VecDeque;
    for seed in 1..=10u64 {
        let mut s = seed.wrapping_mul(0xD1B5_4A32_D192_ED03) | 1;
        let mut rnd = move |m: u64| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s % m
        };
        let (regs, hal) = (model(), FakeHal::new());
        let mut parts = up(&regs, &hal, &IgbConfig::symmetric(1)).unwrap();
        regs.set_logging(false);
        let mut dev = FakeRxDevice::new(&regs, rdbal(0), rdbah(0), rdlen(0), rdt(0));
        let q = &mut parts.rx[0];
        let mut ring: VecDeque<Desc> = VecDeque::new();
        let mut in_fragment = false;
        let (mut next, mut packets, mut bytes, mut errors) = (0u32, 0u64, 0u64, 0u64);
        for _ in 0..300 {
            for _ in 0..rnd(50) {
                if rnd(8) == 0 {
                    let k = 2 + rnd(2) as usize;
                    if dev.room(&regs) < k {
                        continue;
                    }
                    for p in 0..k {
                        let last = p + 1 == k;
                        assert!(dev.deliver_part(&hal, &regs, &frame(next, 2048), next, last));
                        ring.push_back(Desc::Part { last });
                    }
                } else {
                    let len = 60 + rnd(1400) as usize;
                    if dev.deliver(&hal, &regs, &frame(next, len), next) {
                        ring.push_back(Desc::Whole(next, len));
                    } else {
                        assert_eq!(ring.len(), RXN - 1, "device room matches the model");
                    }
                }
                next += 1;
            }
            // The model: which descriptors the call takes and which frames it delivers.
            let how = rnd(3);
            let max = match how {
                0 | 1 => crate::RX_BATCH,
                _ => rnd(2 * crate::RX_BATCH as u64) as usize,
            };
            let mut want = Vec::new();
            for _ in 0..max.min(RXN - 1).min(ring.len()) {
                match ring.pop_front() {
                    Some(Desc::Whole(id, len)) if !in_fragment => {
                        want.push((id, len));
                        packets += 1;
                        bytes += len as u64;
                    }
                    Some(Desc::Whole(..)) => {
                        errors += 1;
                        in_fragment = false;
                    }
                    Some(Desc::Part { last }) => {
                        errors += 1;
                        in_fragment = !last;
                    }
                    None => unreachable!(),
                }
            }
            let mut got = Vec::new();
            let mut check = |f: &[u8], m: crate::RxMeta| {
                assert_eq!(f, &frame(m.rss_hash, m.len as usize)[..]);
                got.push((m.rss_hash, m.len as usize));
            };
            let n = match how {
                0 => {
                    let mut calls = 0;
                    let n = q.rx_batch_frames(|frames, metas| {
                        calls += 1;
                        assert!(!frames.is_empty() && frames.len() <= crate::RX_BATCH);
                        assert_eq!(frames.len(), metas.len());
                        for (f, m) in frames.iter().zip(metas) {
                            check(f, *m);
                        }
                    });
                    assert_eq!(calls, usize::from(n > 0));
                    n
                }
                1 => q.rx_batch(&mut check),
                _ => q.rx_batch_max(max, &mut check),
            };
            assert_eq!(n, got.len());
            assert_eq!(got, want, "seed {seed}");
            assert_eq!(
                q.stats(),
                crate::ring::QueueStats {
                    packets,
                    bytes,
                    errors
                }
            );
        }
    }
}

/// Family I350: the 82576's register sequence exactly, but only 8 queues, so the RETA spreads
/// over queues 0..=7 and a ninth queue is refused before the device is touched.
#[test]
fn i350_family_runs_the_82576_sequence_with_at_most_8_queues() {
    let (a, ha) = (model(), FakeHal::new());
    up(&a, &ha, &IgbConfig::symmetric(8)).unwrap();
    let (b, hb) = (model(), FakeHal::new());
    init_family::<_, _, RXN, TXN>(&hb, b.clone(), &IgbConfig::symmetric(8), Family::I350).unwrap();
    // Identical but for the rings' DMA addresses (host heap memory differs per run).
    let same = |log: Vec<Access>| -> Vec<Access> {
        log.into_iter()
            .map(|x| match x {
                Access::Write(r, _)
                    if (0xC000..0xC400).contains(&r.0) || (0xE000..0xE400).contains(&r.0) =>
                {
                    match r.0 & 0x3F {
                        0 | 4 => Access::Write(r, 0),
                        _ => x,
                    }
                }
                x => x,
            })
            .collect()
    };
    assert_eq!(same(a.log()), same(b.log()));
    for i in 0..32 {
        let want = if i % 2 == 0 { 0x0302_0100 } else { 0x0706_0504 };
        assert_eq!(b.get(Reg(RETA.0 + 4 * i)), want, "RETA {i}");
    }
    let c = model();
    assert_eq!(
        init_family::<_, _, RXN, TXN>(
            &FakeHal::new(),
            c.clone(),
            &IgbConfig::symmetric(9),
            Family::I350
        )
        .err(),
        Some(Error::BadConfig("rx_queues must be 1..=8 on an I350"))
    );
    assert!(c.log().is_empty(), "{}", c.dump());
    // The 82576 takes all 16; an ixgbe family is not igb's.
    let (d, hd) = (model(), FakeHal::new());
    let parts = up(&d, &hd, &IgbConfig::symmetric(16)).unwrap();
    assert_eq!(parts.rx.len(), 16);
    assert_eq!(d.get(Reg(RETA.0 + 4 * 3)), 0x0F0E_0D0C);
    assert_eq!(
        init_family::<_, _, RXN, TXN>(
            &FakeHal::new(),
            model(),
            &IgbConfig::symmetric(1),
            Family::I82599Sfp
        )
        .err(),
        Some(Error::BadConfig(
            "igb drives the 82576 and I350 families only"
        ))
    );
}

/// `open` reads the family from the one table: copper 82576/I350 ports are driven (they
/// get as far as the BAR), fibre/SerDes ports and other vendors' ids are refused by name
/// before the device is touched.
#[test]
fn open_drives_copper_ports_and_refuses_serdes_by_name() {
    let a = PciAddr {
        bus: 0,
        dev: 4,
        func: 0,
    };
    for (id, want) in [
        (0x10C9u32, (Error::MmioMap)),
        (0x1521, (Error::MmioMap)),
        (
            0x1522,
            (Error::RefusedModel(crate::family::intel_model(0x1522).unwrap())),
        ),
        (
            0x10E6,
            (Error::RefusedModel(crate::family::intel_model(0x10E6).unwrap())),
        ),
        (0x10FB, (Error::UnsupportedDevice(0x8086, 0x10FB))),
    ] {
        let hal = FakeHal::new();
        hal.set_pci(a, 0, id << 16 | 0x8086);
        hal.set_pci(a, 0x10, 0xFEB0_0000);
        let got = open::<_, RXN, TXN>(&hal, a, &IgbConfig::symmetric(1)).map(|_| ());
        assert_eq!(got.err(), Some(want), "device {id:04x}");
        // Refused devices are left alone: bus mastering stays off.
        let touched = hal.get_pci(a, 4) & pci::CMD_BUS_MASTER != 0;
        assert_eq!(touched, matches!(id, 0x10C9 | 0x1521), "device {id:04x}");
    }
    assert_eq!(
        Error::RefusedModel(crate::family::intel_model(0x1522).unwrap()).to_string(),
        "Intel I350 fibre (8086:1522, I350) is not supported: fibre/SerDes link (PCS) \
         bring-up is not implemented; igb drives copper ports"
    );
}
