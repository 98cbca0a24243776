//! ixgbe host tests: register order against nic-notes §1.3/§7.2 and every timeout path.

use super::reg::*;
use super::*;
use crate::fake::{FakeHal, FakeRegs, FakeRxDevice, Step};
use std::vec::Vec;

const RXN: usize = 128;
const TXN: usize = 128;

/// A well-behaved 82599 for init: reset self-clears, EEPROM and DMA init done.
fn model() -> FakeRegs {
    let r = FakeRegs::new();
    r.on_write(CTRL, |v, regs| regs.set(CTRL, v & !CTRL_RST_MASK));
    r.set(EEC, EEC_ARD);
    r.set(RDRXCTL, RDRXCTL_DMAIDONE);
    r.set(RAL0, 0x1200_5452);
    r.set(RAH0, 0x8000_5634);
    r
}

fn up(regs: &FakeRegs, hal: &FakeHal, cfg: &IxgbeConfig) -> Result<IxgbeParts<FakeRegs, RXN, TXN>> {
    init::<_, _, RXN, TXN>(hal, regs.clone(), cfg)
}

#[test]
fn init_follows_ixy_and_datasheet_order() {
    let (regs, hal) = (model(), FakeHal::new());
    let parts = up(&regs, &hal, &IxgbeConfig::symmetric(2)).unwrap();
    assert_eq!(
        parts.ctl.mac(),
        MacAddr([0x52, 0x54, 0x00, 0x12, 0x34, 0x56])
    );
    let mut steps = vec![
        // 1-2: interrupts off, reset, wait, interrupts off.
        Step::WriteEq(EIMC, 0x7FFF_FFFF),
        Step::Read(EICR),
        Step::WriteEq(CTRL, CTRL_RST_MASK),
        Step::Wait(CTRL, CTRL_RST_MASK, false),
        Step::WriteEq(EIMC, 0x7FFF_FFFF),
        // 3: EEPROM auto-read, DMA init.
        Step::Wait(EEC, EEC_ARD, true),
        Step::Wait(RDRXCTL, RDRXCTL_DMAIDONE, true),
        // 4: link, 10G serial + AN restart.
        Step::WriteSet(AUTOC, AUTOC_LMS_10G_SERIAL | AUTOC_AN_RESTART),
        // 5: statistics.
        Step::Read(GPRC),
        Step::Read(GORCH),
        // 6: receive.
        Step::WriteClear(RXCTRL, RXCTRL_RXEN),
        Step::WriteEq(rxpbsize(0), 0x20000),
        Step::WriteEq(rxpbsize(7), 0),
        Step::WriteSet(HLREG0, HLREG0_RXCRCSTRP),
        Step::WriteSet(RDRXCTL, RDRXCTL_CRCSTRIP),
        Step::WriteSet(FCTRL, FCTRL_BAM),
    ];
    for n in 0..2 {
        steps.extend([
            Step::WriteEq(srrctl(n), SRRCTL_DESCTYPE_ADV_ONEBUF | SRRCTL_DROP_EN | 2),
            Step::Write(rdbal(n)),
            Step::Write(rdbah(n)),
            Step::WriteEq(rdlen(n), (RXN * 16) as u32),
            Step::WriteEq(rdh(n), 0),
            Step::WriteEq(rdt(n), 0),
        ]);
    }
    steps.extend([
        Step::WriteSet(CTRL_EXT, CTRL_EXT_NS_DIS),
        Step::WriteClear(dca_rxctrl(0), DCA_RXCTRL_BIT12),
        // §7.2: RSS before RXEN.
        Step::WriteEq(RSSRK, 0x5A6D_5A6D),
        Step::WriteEq(RETA, 0x0100_0100),
        Step::WriteSet(RXCSUM, RXCSUM_PCSD),
        Step::WriteEq(MRQC, MRQC_RSS),
        Step::WriteSet(FCTRL, FCTRL_UPE | FCTRL_MPE | FCTRL_BAM),
        Step::WriteClear(RDRXCTL, RDRXCTL_RSCFRSTSIZE),
        Step::WriteSet(RDRXCTL, RDRXCTL_RSCACKC_FCOE_WRFIX),
        Step::WriteSet(RXCTRL, RXCTRL_RXEN),
        // 7: transmit.
        Step::WriteSet(HLREG0, HLREG0_TXCRCEN | HLREG0_TXPADEN),
        Step::WriteEq(txpbsize(0), 0xA000),
        Step::WriteEq(DTXMXSZRQ, 0xFFFF),
        Step::WriteClear(RTTDCS, RTTDCS_ARBDIS),
    ]);
    for n in 0..2 {
        steps.extend([
            Step::Write(tdbal(n)),
            Step::Write(tdbah(n)),
            Step::WriteEq(tdlen(n), (TXN * 16) as u32),
            Step::WriteEq(txdctl(n), TXDCTL_THRESH),
        ]);
    }
    steps.push(Step::WriteEq(DMATXCTL, DMATXCTL_TE));
    // 8: start queues: enable, wait read-back, head/tail.
    for n in 0..2 {
        steps.extend([
            Step::WriteSet(rxdctl(n), DCTL_ENABLE),
            Step::Wait(rxdctl(n), DCTL_ENABLE, true),
            Step::WriteEq(rdh(n), 0),
            Step::WriteEq(rdt(n), RXN as u32 - 1),
        ]);
    }
    for n in 0..2 {
        steps.extend([
            Step::WriteEq(tdh(n), 0),
            Step::WriteEq(tdt(n), 0),
            Step::WriteSet(txdctl(n), DCTL_ENABLE),
            Step::Wait(txdctl(n), DCTL_ENABLE, true),
        ]);
    }
    regs.assert_sequence(&steps);
    // Queue statistics mapping: queue i counts in counter i.
    assert_eq!(regs.get(rqsmr(0)), 0x0302_0100);
}

#[test]
fn every_wait_times_out_with_its_own_error() {
    let cases: [(Reg, u32, u32, Error); 5] = [
        (CTRL, CTRL_RST_MASK, CTRL_RST_MASK, Error::ResetTimeout),
        (EEC, EEC_ARD, 0, Error::EepromAutoReadTimeout),
        (RDRXCTL, RDRXCTL_DMAIDONE, 0, Error::DmaInitTimeout),
        (rxdctl(1), DCTL_ENABLE, 0, Error::RxQueueEnableTimeout(1)),
        (txdctl(0), DCTL_ENABLE, 0, Error::TxQueueEnableTimeout(0)),
    ];
    for (reg, mask, stuck, err) in cases {
        let (regs, hal) = (model(), FakeHal::new());
        regs.stick(reg, mask, stuck);
        let t0 = hal.time();
        assert_eq!(up(&regs, &hal, &IxgbeConfig::symmetric(2)).err(), Some(err));
        let waited = hal.time() - t0;
        assert!(waited < ms(1000), "{err:?}: bounded wait, got {waited} ns");
        regs.assert_sequence(&[Step::Wait(reg, mask, stuck == 0)]);
    }
}

#[test]
fn link_wait_times_out_and_reports_speed() {
    let (regs, hal) = (model(), FakeHal::new());
    let parts = up(&regs, &hal, &IxgbeConfig::symmetric(1)).unwrap();
    assert_eq!(
        parts.ctl.wait_link(&hal, ms(10_000)).err(),
        Some(Error::LinkTimeout)
    );
    regs.set(LINKS, LINKS_UP | 3 << 28);
    let l = parts.ctl.wait_link(&hal, ms(10_000)).unwrap();
    assert_eq!(l.speed_mbps, 10_000);
}

#[test]
fn rss_and_drop_en_on_every_queue() {
    let (regs, hal) = (model(), FakeHal::new());
    up(&regs, &hal, &IxgbeConfig::symmetric(16)).unwrap();
    for i in 0..10 {
        assert_eq!(regs.get(Reg(RSSRK.0 + 4 * i)), 0x5A6D_5A6D);
    }
    let reta: Vec<u8> = (0..32)
        .flat_map(|i| regs.get(Reg(RETA.0 + 4 * i)).to_le_bytes())
        .collect();
    assert_eq!(reta, crate::toeplitz::spread_reta(16).to_vec());
    for n in 0..16 {
        assert!(regs.get(srrctl(n)) & SRRCTL_DROP_EN != 0);
        assert_eq!(
            regs.get(srrctl(n)) & (1 << 31),
            0,
            "igb's DROP_EN bit is not ixgbe's"
        );
    }
}

#[test]
fn stats_and_per_queue_drops_accumulate() {
    let (regs, hal) = (model(), FakeHal::new());
    for r in [GPRC, qprdc(0), qprdc(3), mpc(0)] {
        regs.clear_on_read(r);
    }
    let mut parts = up(&regs, &hal, &IxgbeConfig::symmetric(4)).unwrap();
    regs.set(GPRC, 10);
    regs.set(qprdc(3), 4);
    regs.set(mpc(0), 2);
    parts.ctl.update_stats();
    regs.set(qprdc(3), 1);
    parts.ctl.update_stats();
    assert_eq!(parts.ctl.stats().rx_packets, 10);
    assert_eq!(parts.ctl.queue_drops(3), 5);
    assert_eq!(parts.ctl.stats().rx_missed, 2);
}

#[test]
fn receive_path_shared_with_igb_works_on_ixgbe_registers() {
    let (regs, hal) = (model(), FakeHal::new());
    let mut parts = up(&regs, &hal, &IxgbeConfig::symmetric(1)).unwrap();
    let mut dev = FakeRxDevice::new(&regs, rdbal(0), rdbah(0), rdlen(0), rdt(0));
    for i in 0..100u32 {
        assert!(dev.deliver(&hal, &regs, &[i as u8; 80], i));
    }
    let mut n = 0u32;
    while parts.rx[0].rx_batch(|f, m| {
        assert_eq!(m.rss_hash, n);
        assert_eq!(f, &[n as u8; 80][..]);
        n += 1;
    }) > 0
    {}
    assert_eq!(n, 100);
    assert_eq!(regs.get(rdt(0)), 99);
}

#[test]
fn checksum_error_bits_are_ixgbes_not_igbs() {
    use crate::ring::{RX_STATUS_IPCS, RX_STATUS_L4CS};
    use crate::CsumCheck::{Bad, Good};
    let (regs, hal) = (model(), FakeHal::new());
    let mut parts = up(&regs, &hal, &IxgbeConfig::symmetric(1)).unwrap();
    let mut dev = FakeRxDevice::new(&regs, rdbal(0), rdbah(0), rdlen(0), rdt(0));
    let checked = RX_STATUS_IPCS | RX_STATUS_L4CS;
    // 82599: IPE bit 31, TCPE bit 30; bit 29 is USE (undersize), no checksum error.
    let cases = [
        (checked, (Good, Good)),
        (checked | 1 << 29, (Good, Good)),
        (checked | 1 << 30, (Good, Bad)),
        (checked | 1 << 31, (Bad, Good)),
    ];
    for (status, _) in cases {
        assert!(dev.deliver_status(&hal, &regs, &[7u8; 64], 0, status));
    }
    let mut got = Vec::new();
    parts.rx[0].rx_batch(|_, m| got.push((m.ip_csum, m.l4_csum)));
    let want: Vec<_> = cases.iter().map(|c| c.1).collect();
    assert_eq!(got, want);
    // The same through the whole-batch receive.
    for (status, _) in cases {
        assert!(dev.deliver_status(&hal, &regs, &[7u8; 64], 0, status));
    }
    got.clear();
    let n = parts.rx[0].rx_batch_frames(|frames, metas| {
        assert!(frames.iter().all(|f| *f == [7u8; 64]));
        got.extend(metas.iter().map(|m| (m.ip_csum, m.l4_csum)));
    });
    assert_eq!(n, cases.len());
    assert_eq!(got, want);
}

#[test]
fn promiscuous_and_bad_config() {
    let (regs, hal) = (model(), FakeHal::new());
    let mut parts = up(&regs, &hal, &IxgbeConfig::symmetric(1)).unwrap();
    assert!(parts.ctl.promiscuous());
    parts.ctl.set_promiscuous(false);
    assert!(!parts.ctl.promiscuous());
    let mut cfg = IxgbeConfig::symmetric(1);
    cfg.rx_queues = 0;
    assert!(matches!(
        up(&regs, &hal, &cfg).err(),
        Some(Error::BadConfig(_))
    ));
}

/// `open` reads the family from the one table: 82599/X520 SFP+ ports get the sequence of
/// `init_follows_ixy_and_datasheet_order` (they get as far as the BAR here); 82599 ports
/// needing another AUTOC link mode and 10GBASE-T X540/X550 ports are refused by name before
/// the device is touched, and igb ids are not ixgbe's.
#[test]
fn open_drives_sfp_ports_and_refuses_other_link_modes_by_name() {
    use crate::hal::{pci, PciAddr};
    let a = PciAddr {
        bus: 0,
        dev: 5,
        func: 0,
    };
    let refused = |id: u16| Error::RefusedModel(crate::family::intel_model(id).unwrap());
    for (id, want) in [
        (0x10FBu16, (Error::MmioMap)),
        (0x154D, (Error::MmioMap)),
        (0x1557, (Error::MmioMap)),
        (0x10F7, refused(0x10F7)),
        (0x10FC, refused(0x10FC)),
        (0x1528, refused(0x1528)),
        (0x1563, refused(0x1563)),
        (0x10C9, (Error::UnsupportedDevice(0x8086, 0x10C9))),
    ] {
        let hal = FakeHal::new();
        hal.set_pci(a, 0, (id as u32) << 16 | 0x8086);
        hal.set_pci(a, 0x10, 0xFEB0_0000);
        let got = open::<_, RXN, TXN>(&hal, a, &IxgbeConfig::symmetric(1)).map(|_| ());
        assert_eq!(got.err(), Some(want), "device {id:04x}");
        let touched = hal.get_pci(a, 4) & pci::CMD_BUS_MASTER != 0;
        assert_eq!(
            touched,
            matches!(id, 0x10FB | 0x154D | 0x1557),
            "device {id:04x}"
        );
    }
    assert_eq!(
        Error::RefusedModel(crate::family::intel_model(0x10F7).unwrap()).to_string(),
        "Intel 82599 KX4 (8086:10f7, 82599 backplane/KX4/CX4/XAUI) is not supported: its AUTOC \
         link mode (KX4/KR/CX4/XAUI) is not implemented; ixgbe drives SFP+ ports"
    );
}
