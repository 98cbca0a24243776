//! ixgbe: Intel 82599 / X520-class 10 GbE NICs, poll mode (no QEMU model exists: this
//! driver is verified by host tests against the scripted register file).
//!
//! [`init`] follows ixy's sequence (82599 datasheet §4.6.3-4.6.8, nic-notes §1.3) with a
//! timeout on every wait, plus RSS (nic-notes §7.2): interrupts off, global reset, EEPROM
//! auto-read, DMA init done, link setup (AUTOC), statistics cleared, receive (packet buffer,
//! CRC strip, per-queue advanced descriptors with `DROP_EN`, per-queue statistics mapping),
//! RSS before `RXCTRL.RXEN`, transmit, queue starts. The link is awaited with
//! [`Ixgbe::wait_link`].

use heapless::Vec;

use crate::error::{Error, Result};
use crate::hal::{pci, Hal, PciAddr};
use crate::mmio::Mmio;
use crate::regs::{ms, wait_bits, Reg, RegIo};
use crate::ring::{AdvRxQueue, AdvTxQueue, CsumErrBits};
use crate::{LinkStatus, MacAddr, RssConfig};

/// Register offsets and bits (82599 datasheet; ixy.rs constants).
pub mod reg {
    use crate::regs::Reg;
    /// Device control.
    pub const CTRL: Reg = Reg(0x00000);
    /// Device status.
    pub const STATUS: Reg = Reg(0x00008);
    /// Extended device control.
    pub const CTRL_EXT: Reg = Reg(0x00018);
    /// Extended interrupt cause read.
    pub const EICR: Reg = Reg(0x00800);
    /// Extended interrupt mask set.
    pub const EIMS: Reg = Reg(0x00880);
    /// Extended interrupt mask clear.
    pub const EIMC: Reg = Reg(0x00888);
    /// EEPROM/flash control.
    pub const EEC: Reg = Reg(0x10010);
    /// Receive DMA control.
    pub const RDRXCTL: Reg = Reg(0x02F00);
    /// Receive control.
    pub const RXCTRL: Reg = Reg(0x03000);
    /// MAC core control 0.
    pub const HLREG0: Reg = Reg(0x04240);
    /// Auto-negotiation control.
    pub const AUTOC: Reg = Reg(0x042A0);
    /// Link status.
    pub const LINKS: Reg = Reg(0x042A4);
    /// DCB transmit descriptor plane control.
    pub const RTTDCS: Reg = Reg(0x04900);
    /// DMA transmit control.
    pub const DMATXCTL: Reg = Reg(0x04A80);
    /// Receive checksum control.
    pub const RXCSUM: Reg = Reg(0x05000);
    /// Filter control.
    pub const FCTRL: Reg = Reg(0x05080);
    /// Multiple receive queues command.
    pub const MRQC: Reg = Reg(0x05818);
    /// Redirection table (32 registers).
    pub const RETA: Reg = Reg(0x05C00);
    /// RSS key (10 registers).
    pub const RSSRK: Reg = Reg(0x05C80);
    /// DMA tx TCP max allowed size requests.
    pub const DTXMXSZRQ: Reg = Reg(0x08100);
    /// Receive address low 0.
    pub const RAL0: Reg = Reg(0x0A200);
    /// Receive address high 0.
    pub const RAH0: Reg = Reg(0x0A204);
    /// Good packets received.
    pub const GPRC: Reg = Reg(0x04074);
    /// Good packets transmitted.
    pub const GPTC: Reg = Reg(0x04080);
    /// Good octets received low.
    pub const GORCL: Reg = Reg(0x04088);
    /// Good octets received high.
    pub const GORCH: Reg = Reg(0x0408C);
    /// Good octets transmitted low.
    pub const GOTCL: Reg = Reg(0x04090);
    /// Good octets transmitted high.
    pub const GOTCH: Reg = Reg(0x04094);

    /// Missed packets, packet buffer n (8).
    pub const fn mpc(n: u16) -> Reg {
        Reg(0x03FA0 + 4 * n as u32)
    }
    /// Rx packet buffer size n.
    pub const fn rxpbsize(n: u16) -> Reg {
        Reg(0x03C00 + 4 * n as u32)
    }
    /// Tx packet buffer size n.
    pub const fn txpbsize(n: u16) -> Reg {
        Reg(0x0CC00 + 4 * n as u32)
    }
    /// Split receive control, queue n (< 16).
    pub const fn srrctl(n: u16) -> Reg {
        Reg(0x02100 + 4 * n as u32)
    }
    /// Receive queue statistics mapping, queues 4n..4n+3.
    pub const fn rqsmr(n: u16) -> Reg {
        Reg(0x02300 + 4 * n as u32)
    }
    const fn q(base: u32, n: u16) -> Reg {
        Reg(base + 0x40 * n as u32)
    }
    /// Rx descriptor base low.
    pub const fn rdbal(n: u16) -> Reg {
        q(0x01000, n)
    }
    /// Rx descriptor base high.
    pub const fn rdbah(n: u16) -> Reg {
        q(0x01004, n)
    }
    /// Rx ring length in bytes.
    pub const fn rdlen(n: u16) -> Reg {
        q(0x01008, n)
    }
    /// DCA rx control.
    pub const fn dca_rxctrl(n: u16) -> Reg {
        q(0x0100C, n)
    }
    /// Rx descriptor head.
    pub const fn rdh(n: u16) -> Reg {
        q(0x01010, n)
    }
    /// Rx descriptor tail.
    pub const fn rdt(n: u16) -> Reg {
        q(0x01018, n)
    }
    /// Rx descriptor control.
    pub const fn rxdctl(n: u16) -> Reg {
        q(0x01028, n)
    }
    /// Queue packets received count (statistics counter n).
    pub const fn qprc(n: u16) -> Reg {
        q(0x01030, n)
    }
    /// Queue packets received drop count (statistics counter n).
    pub const fn qprdc(n: u16) -> Reg {
        q(0x01430, n)
    }
    /// Tx descriptor base low.
    pub const fn tdbal(n: u16) -> Reg {
        q(0x06000, n)
    }
    /// Tx descriptor base high.
    pub const fn tdbah(n: u16) -> Reg {
        q(0x06004, n)
    }
    /// Tx ring length.
    pub const fn tdlen(n: u16) -> Reg {
        q(0x06008, n)
    }
    /// Tx descriptor head.
    pub const fn tdh(n: u16) -> Reg {
        q(0x06010, n)
    }
    /// Tx descriptor tail.
    pub const fn tdt(n: u16) -> Reg {
        q(0x06018, n)
    }
    /// Tx descriptor control.
    pub const fn txdctl(n: u16) -> Reg {
        q(0x06028, n)
    }

    /// CTRL: link reset | device reset.
    pub const CTRL_RST_MASK: u32 = (1 << 3) | (1 << 26);
    /// EEC: EEPROM auto-read done.
    pub const EEC_ARD: u32 = 1 << 9;
    /// RDRXCTL: DMA init done.
    pub const RDRXCTL_DMAIDONE: u32 = 1 << 3;
    /// RDRXCTL: CRC strip.
    pub const RDRXCTL_CRCSTRIP: u32 = 1 << 1;
    /// RDRXCTL: RSC first size field.
    pub const RDRXCTL_RSCFRSTSIZE: u32 = 0x1F << 17;
    /// RDRXCTL: RSC ACK coalescing + FCoE write fix (must be set).
    pub const RDRXCTL_RSCACKC_FCOE_WRFIX: u32 = (1 << 25) | (1 << 26);
    /// AUTOC: link mode select 10G serial.
    pub const AUTOC_LMS_10G_SERIAL: u32 = 3 << 13;
    /// AUTOC: link mode select mask.
    pub const AUTOC_LMS_MASK: u32 = 7 << 13;
    /// AUTOC: 10G PMA/PMD mask (0 = XAUI).
    pub const AUTOC_10G_PMA_PMD_MASK: u32 = 3 << 7;
    /// AUTOC: restart auto-negotiation.
    pub const AUTOC_AN_RESTART: u32 = 1 << 12;
    /// LINKS: link up.
    pub const LINKS_UP: u32 = 1 << 30;
    /// RXCTRL: receive enable.
    pub const RXCTRL_RXEN: u32 = 1 << 0;
    /// HLREG0: tx CRC enable.
    pub const HLREG0_TXCRCEN: u32 = 1 << 0;
    /// HLREG0: rx CRC strip.
    pub const HLREG0_RXCRCSTRP: u32 = 1 << 1;
    /// HLREG0: tx pad short frames.
    pub const HLREG0_TXPADEN: u32 = 1 << 10;
    /// FCTRL: multicast promiscuous.
    pub const FCTRL_MPE: u32 = 1 << 8;
    /// FCTRL: unicast promiscuous.
    pub const FCTRL_UPE: u32 = 1 << 9;
    /// FCTRL: accept broadcast.
    pub const FCTRL_BAM: u32 = 1 << 10;
    /// SRRCTL: advanced one-buffer descriptors.
    pub const SRRCTL_DESCTYPE_ADV_ONEBUF: u32 = 1 << 25;
    /// SRRCTL: drop when the queue has no descriptors (bit 28 on ixgbe, 31 on igb).
    pub const SRRCTL_DROP_EN: u32 = 1 << 28;
    /// SRRCTL: 2 KiB buffer (BSIZEPACKET in KiB).
    pub const SRRCTL_BSIZE_2K: u32 = 2;
    /// CTRL_EXT: no-snoop disable.
    pub const CTRL_EXT_NS_DIS: u32 = 1 << 16;
    /// DCA_RXCTRL: bit 12 must be cleared (datasheet).
    pub const DCA_RXCTRL_BIT12: u32 = 1 << 12;
    /// RXDCTL/TXDCTL: queue enable.
    pub const DCTL_ENABLE: u32 = 1 << 25;
    /// TXDCTL thresholds: PTHRESH 36, HTHRESH 8, WTHRESH 4 (DPDK defaults).
    pub const TXDCTL_THRESH: u32 = 36 | (8 << 8) | (4 << 16);
    /// RTTDCS: arbiter disable.
    pub const RTTDCS_ARBDIS: u32 = 1 << 6;
    /// DMATXCTL: transmit enable.
    pub const DMATXCTL_TE: u32 = 1 << 0;
    /// RXCSUM: packet checksum disable (descriptor carries the RSS hash).
    pub const RXCSUM_PCSD: u32 = 1 << 13;
    /// MRQC: RSS enable and hash fields TCPv4, IPv4, IPv6, TCPv6, UDPv4, UDPv6.
    pub const MRQC_RSS: u32 =
        0x1 | 0x1_0000 | 0x2_0000 | 0x10_0000 | 0x20_0000 | 0x40_0000 | 0x80_0000;
}

use reg::*;

/// Most RSS queues on 82599. The ids this driver accepts are those of
/// `family::INTEL_MODELS` in family 82599/X520 SFP+; other 82599, X540 and X550 ports are
/// named and refused there.
pub const MAX_QUEUES: usize = 16;

const RESET_TIMEOUT: u64 = ms(100);
const EEPROM_TIMEOUT: u64 = ms(100);
const DMA_INIT_TIMEOUT: u64 = ms(100);
const QUEUE_ENABLE_TIMEOUT: u64 = ms(100);

/// ixgbe configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IxgbeConfig {
    /// Receive queues, 1..=16.
    pub rx_queues: u16,
    /// Transmit queues, 1..=16.
    pub tx_queues: u16,
    /// RSS key and redirection table.
    pub rss: RssConfig,
    /// Unicast + multicast promiscuous.
    pub promiscuous: bool,
}

impl IxgbeConfig {
    /// `queues` rx and tx queues, symmetric RSS, promiscuous.
    pub fn symmetric(queues: u16) -> Self {
        IxgbeConfig {
            rx_queues: queues,
            tx_queues: queues,
            rss: RssConfig::symmetric(queues),
            promiscuous: true,
        }
    }
}

/// Hardware statistics accumulated in 64 bits.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct IxgbeStats {
    /// Good packets received.
    pub rx_packets: u64,
    /// Good packets transmitted.
    pub tx_packets: u64,
    /// Good octets received.
    pub rx_bytes: u64,
    /// Good octets transmitted.
    pub tx_bytes: u64,
    /// Missed packets (sum of MPC over packet buffers).
    pub rx_missed: u64,
    /// Per-queue received packets (QPRC, queue i mapped to counter i).
    pub queue_packets: [u64; MAX_QUEUES],
    /// Per-queue drops for lack of descriptors (QPRDC).
    pub queue_drops: [u64; MAX_QUEUES],
}

/// Receive queue handle of an ixgbe port.
pub type IxgbeRx<R, const N: usize> = AdvRxQueue<R, N>;
/// Transmit queue handle of an ixgbe port.
pub type IxgbeTx<R, const N: usize> = AdvTxQueue<R, N>;

/// The control object of one ixgbe port.
pub struct Ixgbe<R: RegIo> {
    regs: R,
    mac: MacAddr,
    rx_queues: u16,
    link_up: bool,
    stats: IxgbeStats,
}

/// What [`init`] returns.
pub struct IxgbeParts<R: RegIo, const RXN: usize, const TXN: usize> {
    /// Control object.
    pub ctl: Ixgbe<R>,
    /// Receive queues.
    pub rx: Vec<IxgbeRx<R, RXN>, MAX_QUEUES>,
    /// Transmit queues.
    pub tx: Vec<IxgbeTx<R, TXN>, MAX_QUEUES>,
}

/// Opens the ixgbe function at `addr` (ids, bus master, BAR0 512 KiB) and runs [`init`].
#[allow(unsafe_code)]
pub fn open<H: Hal, const RXN: usize, const TXN: usize>(
    hal: &H,
    addr: PciAddr,
    cfg: &IxgbeConfig,
) -> Result<IxgbeParts<Mmio, RXN, TXN>> {
    let (vendor, device) = pci::ids(hal, addr);
    crate::family::driven_by(vendor, device, crate::family::Driver::Ixgbe)?;
    pci::enable_bus_master(hal, addr);
    let bar = pci::memory_bar(hal, addr, 0)?;
    // SAFETY: `bar` is BAR0 of `addr`, read from its configuration space just now, and for
    // every ixgbe id in `family::INTEL_MODELS` BAR0 is the device's register window of at
    // least 512 KiB. Nothing in Ferrule uses device registers as memory.
    let mmio = unsafe { Mmio::map(hal, bar, 512 * 1024)? };
    init(hal, mmio, cfg)
}

fn disable_interrupts<R: RegIo>(regs: &R) {
    regs.write32(EIMC, 0x7FFF_FFFF);
    regs.write32(EIMS, 0);
    let _ = regs.read32(EICR);
}

/// Brings the port up on mapped registers. Does not wait for the link.
pub fn init<H: Hal, R: RegIo + Clone, const RXN: usize, const TXN: usize>(
    hal: &H,
    regs: R,
    cfg: &IxgbeConfig,
) -> Result<IxgbeParts<R, RXN, TXN>> {
    if !(1..=MAX_QUEUES as u16).contains(&cfg.rx_queues)
        || !(1..=MAX_QUEUES as u16).contains(&cfg.tx_queues)
    {
        return Err(Error::BadConfig("queues must be 1..=16"));
    }
    if cfg.rss.reta.iter().any(|&q| q as u16 >= cfg.rx_queues) {
        return Err(Error::BadConfig("RETA names a queue that does not exist"));
    }

    // §4.6.3.1: interrupts off, global reset (device + link), wait, interrupts off again.
    disable_interrupts(&regs);
    regs.write32(CTRL, CTRL_RST_MASK);
    wait_bits(
        &regs,
        hal,
        CTRL,
        CTRL_RST_MASK,
        false,
        RESET_TIMEOUT,
        Error::ResetTimeout,
    )?;
    hal.delay_ns(ms(10));
    disable_interrupts(&regs);

    // §4.6.3: EEPROM auto-read, then DMA init done.
    wait_bits(
        &regs,
        hal,
        EEC,
        EEC_ARD,
        true,
        EEPROM_TIMEOUT,
        Error::EepromAutoReadTimeout,
    )?;
    wait_bits(
        &regs,
        hal,
        RDRXCTL,
        RDRXCTL_DMAIDONE,
        true,
        DMA_INIT_TIMEOUT,
        Error::DmaInitTimeout,
    )?;

    // §4.6.4: link setup, 10G serial, XAUI PMA/PMD, restart autonegotiation.
    let autoc = regs.read32(AUTOC);
    let autoc = (autoc & !AUTOC_LMS_MASK & !AUTOC_10G_PMA_PMD_MASK) | AUTOC_LMS_10G_SERIAL;
    regs.write32(AUTOC, autoc);
    regs.write32(AUTOC, autoc | AUTOC_AN_RESTART);

    let lo = regs.read32(RAL0).to_le_bytes();
    let hi = regs.read32(RAH0).to_le_bytes();
    let mut ctl = Ixgbe {
        regs: regs.clone(),
        mac: MacAddr([lo[0], lo[1], lo[2], lo[3], hi[0], hi[1]]),
        rx_queues: cfg.rx_queues,
        link_up: false,
        stats: IxgbeStats::default(),
    };
    // §4.6.5: statistics (clear on read).
    for n in 0..cfg.rx_queues.div_ceil(4) {
        let b = 4 * n as u32;
        regs.write32(rqsmr(n), b | (b + 1) << 8 | (b + 2) << 16 | (b + 3) << 24);
    }
    ctl.update_stats();
    ctl.stats = IxgbeStats::default();

    // §4.6.7: receive. RXEN off while configuring.
    regs.clear_bits(RXCTRL, RXCTRL_RXEN);
    regs.write32(rxpbsize(0), 0x20000); // 128 KiB
    for i in 1..8 {
        regs.write32(rxpbsize(i), 0);
    }
    regs.set_bits(HLREG0, HLREG0_RXCRCSTRP);
    regs.set_bits(RDRXCTL, RDRXCTL_CRCSTRIP);
    regs.set_bits(FCTRL, FCTRL_BAM);
    let mut rx: Vec<IxgbeRx<R, RXN>, MAX_QUEUES> = Vec::new();
    for n in 0..cfg.rx_queues {
        let q = IxgbeRx::<R, RXN>::alloc(hal, regs.clone(), n, rdt(n), CsumErrBits::IXGBE)?;
        regs.write32(
            srrctl(n),
            SRRCTL_DESCTYPE_ADV_ONEBUF | SRRCTL_DROP_EN | SRRCTL_BSIZE_2K,
        );
        let phys = q.ring_phys();
        regs.write32(rdbal(n), phys as u32);
        regs.write32(rdbah(n), (phys >> 32) as u32);
        regs.write32(rdlen(n), IxgbeRx::<R, RXN>::ring_bytes());
        regs.write32(rdh(n), 0);
        regs.write32(rdt(n), 0);
        let _ = rx.push(q);
    }
    regs.set_bits(CTRL_EXT, CTRL_EXT_NS_DIS);
    for n in 0..cfg.rx_queues {
        regs.clear_bits(dca_rxctrl(n), DCA_RXCTRL_BIT12);
    }
    // RSS before receive is enabled (nic-notes §7.2). The 82599 checks IPv4 header and
    // TCP/UDP checksums of every received frame without a switch (RXCSUM only has PCSD and
    // the fragment-payload IPPCSE); the results are in the descriptor (IPCS/L4CS, IPE/TCPE).
    ctl.set_rss(&cfg.rss)?;
    regs.set_bits(RXCSUM, RXCSUM_PCSD);
    regs.write32(MRQC, MRQC_RSS);
    if cfg.promiscuous {
        regs.set_bits(FCTRL, FCTRL_UPE | FCTRL_MPE);
    }
    regs.clear_bits(RDRXCTL, RDRXCTL_RSCFRSTSIZE);
    regs.set_bits(RDRXCTL, RDRXCTL_RSCACKC_FCOE_WRFIX);
    regs.set_bits(RXCTRL, RXCTRL_RXEN);

    // §4.6.8: transmit.
    regs.set_bits(HLREG0, HLREG0_TXCRCEN | HLREG0_TXPADEN);
    regs.write32(txpbsize(0), 0xA000); // 40 KiB
    for i in 1..8 {
        regs.write32(txpbsize(i), 0);
    }
    regs.write32(DTXMXSZRQ, 0xFFFF);
    regs.clear_bits(RTTDCS, RTTDCS_ARBDIS);
    let mut tx: Vec<IxgbeTx<R, TXN>, MAX_QUEUES> = Vec::new();
    for n in 0..cfg.tx_queues {
        let q = IxgbeTx::<R, TXN>::alloc(hal, regs.clone(), n, tdt(n))?;
        let phys = q.ring_phys();
        regs.write32(tdbal(n), phys as u32);
        regs.write32(tdbah(n), (phys >> 32) as u32);
        regs.write32(tdlen(n), IxgbeTx::<R, TXN>::ring_bytes());
        let v = regs.read32(txdctl(n)) & !0x7F7F7F;
        regs.write32(txdctl(n), v | TXDCTL_THRESH);
        let _ = tx.push(q);
    }
    regs.write32(DMATXCTL, DMATXCTL_TE);

    // Start queues: descriptors are already armed; enable, wait, then set the tails.
    for n in 0..cfg.rx_queues {
        regs.set_bits(rxdctl(n), DCTL_ENABLE);
        wait_bits(
            &regs,
            hal,
            rxdctl(n),
            DCTL_ENABLE,
            true,
            QUEUE_ENABLE_TIMEOUT,
            Error::RxQueueEnableTimeout(n),
        )?;
        regs.write32(rdh(n), 0);
        regs.write32(rdt(n), (RXN - 1) as u32);
    }
    for n in 0..cfg.tx_queues {
        regs.write32(tdh(n), 0);
        regs.write32(tdt(n), 0);
        regs.set_bits(txdctl(n), DCTL_ENABLE);
        wait_bits(
            &regs,
            hal,
            txdctl(n),
            DCTL_ENABLE,
            true,
            QUEUE_ENABLE_TIMEOUT,
            Error::TxQueueEnableTimeout(n),
        )?;
    }
    Ok(IxgbeParts { ctl, rx, tx })
}

impl<R: RegIo> Ixgbe<R> {
    /// MAC address (receive address 0).
    pub fn mac(&self) -> MacAddr {
        self.mac
    }

    /// Sets the MAC address (receive address 0, address valid).
    pub fn set_mac(&mut self, mac: MacAddr) {
        let m = mac.0;
        self.regs
            .write32(RAL0, u32::from_le_bytes([m[0], m[1], m[2], m[3]]));
        self.regs
            .write32(RAH0, u16::from_le_bytes([m[4], m[5]]) as u32 | (1 << 31));
        self.mac = mac;
    }

    /// Current link state (speed from LINKS bits 29:28).
    pub fn link_status(&self) -> LinkStatus {
        let l = self.regs.read32(LINKS);
        let up = l & LINKS_UP != 0;
        let speed_mbps = match (up, (l >> 28) & 3) {
            (false, _) => 0,
            (true, 1) => 100,
            (true, 2) => 1000,
            (true, 3) => 10_000,
            _ => 0,
        };
        LinkStatus {
            up,
            speed_mbps,
            full_duplex: up,
        }
    }

    /// Polls the link; returns the new state when it differs from the last poll (or from
    /// "down" at start). Call it periodically from the control core to notice cable
    /// pulls and QEMU's `set_link`.
    pub fn poll_link_change(&mut self) -> Option<LinkStatus> {
        let now = self.link_status();
        if now.up != self.link_up {
            self.link_up = now.up;
            Some(now)
        } else {
            None
        }
    }

    /// Waits up to `timeout_ns` for link-up (ixy waits up to 10 s).
    pub fn wait_link<H: Hal>(&self, hal: &H, timeout_ns: u64) -> Result<LinkStatus> {
        wait_bits(
            &self.regs,
            hal,
            LINKS,
            LINKS_UP,
            true,
            timeout_ns,
            Error::LinkTimeout,
        )?;
        Ok(self.link_status())
    }

    /// Unicast + multicast promiscuous on or off.
    pub fn set_promiscuous(&mut self, on: bool) {
        if on {
            self.regs.set_bits(FCTRL, FCTRL_UPE | FCTRL_MPE);
        } else {
            self.regs.clear_bits(FCTRL, FCTRL_UPE | FCTRL_MPE);
        }
    }

    /// Whether promiscuous mode is on.
    pub fn promiscuous(&self) -> bool {
        self.regs.read32(FCTRL) & (FCTRL_UPE | FCTRL_MPE) == FCTRL_UPE | FCTRL_MPE
    }

    /// Programs the RSS key and the redirection table (4-bit entries, byte k = entry k).
    pub fn set_rss(&mut self, rss: &RssConfig) -> Result<()> {
        if rss.reta.iter().any(|&q| q as u16 >= self.rx_queues) {
            return Err(Error::BadConfig("RETA names a queue that does not exist"));
        }
        for (i, c) in rss.key.chunks_exact(4).enumerate() {
            self.regs.write32(
                Reg(RSSRK.0 + 4 * i as u32),
                u32::from_le_bytes([c[0], c[1], c[2], c[3]]),
            );
        }
        for (i, c) in rss.reta.chunks_exact(4).enumerate() {
            self.regs.write32(
                Reg(RETA.0 + 4 * i as u32),
                u32::from_le_bytes([c[0], c[1], c[2], c[3]]),
            );
        }
        Ok(())
    }

    /// Reads clear-on-read counters into the 64-bit totals and returns them.
    pub fn update_stats(&mut self) -> &IxgbeStats {
        let r = &self.regs;
        let s = &mut self.stats;
        s.rx_packets += r.read32(GPRC) as u64;
        s.tx_packets += r.read32(GPTC) as u64;
        let lo = r.read32(GORCL) as u64;
        s.rx_bytes += lo | (r.read32(GORCH) as u64) << 32;
        let lo = r.read32(GOTCL) as u64;
        s.tx_bytes += lo | (r.read32(GOTCH) as u64) << 32;
        for i in 0..8 {
            s.rx_missed += r.read32(mpc(i)) as u64;
        }
        for n in 0..self.rx_queues {
            s.queue_packets[n as usize] += r.read32(qprc(n)) as u64;
            s.queue_drops[n as usize] += r.read32(qprdc(n)) as u64;
        }
        &self.stats
    }

    /// Totals as of the last update.
    pub fn stats(&self) -> &IxgbeStats {
        &self.stats
    }

    /// Per-queue drop total as of the last update.
    pub fn queue_drops(&self, queue: u16) -> u64 {
        self.stats
            .queue_drops
            .get(queue as usize)
            .copied()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests;
