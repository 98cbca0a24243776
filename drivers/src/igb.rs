//! igb: Intel 82576 (QEMU `-device igb`, 8086:10C9) and I350-class NICs, poll mode.
//!
//! [`init`] performs the full bring-up of nic-notes §7.1 with a timeout on every wait:
//! disable interrupts, global reset, MAC, statistics, receive queues (advanced one-buffer
//! descriptors, `DROP_EN`), RSS (key, redirection table, `RXCSUM.PCSD`, `MRQC`), receive
//! enable, transmit queues, transmit enable, and last the link (`CTRL.SLU` plus a PHY
//! auto-negotiation restart through `MDIC`, which QEMU needs before it reports link-up).
//! It returns an [`Igb`] control object and the per-queue handles.

use heapless::Vec;

use crate::error::{Error, Result};
use crate::hal::{pci, Hal, PciAddr};
use crate::mmio::Mmio;
use crate::regs::{ms, wait_bits, Reg, RegIo};
use crate::ring::{AdvRxQueue, AdvTxQueue, CsumErrBits, QueueStats};
use crate::{LinkStatus, MacAddr, RssConfig};

/// Register offsets and bits (82576 datasheet; nic-notes §2.1, §7.1).
pub mod reg {
    use crate::regs::Reg;
    /// Device control.
    pub const CTRL: Reg = Reg(0x0000);
    /// Device status.
    pub const STATUS: Reg = Reg(0x0008);
    /// EEPROM/flash control.
    pub const EECD: Reg = Reg(0x0010);
    /// EEPROM read.
    pub const EERD: Reg = Reg(0x0014);
    /// Extended device control.
    pub const CTRL_EXT: Reg = Reg(0x0018);
    /// MDI (PHY) control.
    pub const MDIC: Reg = Reg(0x0020);
    /// Interrupt cause read (clear on read).
    pub const ICR: Reg = Reg(0x00C0);
    /// Interrupt mask clear.
    pub const IMC: Reg = Reg(0x00D8);
    /// Extended interrupt mask clear.
    pub const EIMC: Reg = Reg(0x1528);
    /// Receive control.
    pub const RCTL: Reg = Reg(0x0100);
    /// Transmit control.
    pub const TCTL: Reg = Reg(0x0400);
    /// Receive checksum control.
    pub const RXCSUM: Reg = Reg(0x5000);
    /// Multicast table array, 128 registers.
    pub const MTA: Reg = Reg(0x5200);
    /// Receive address low / high, entry 0.
    pub const RAL0: Reg = Reg(0x5400);
    /// Receive address high, entry 0 (bit 31 = address valid).
    pub const RAH0: Reg = Reg(0x5404);
    /// Multiple receive queues command.
    pub const MRQC: Reg = Reg(0x5818);
    /// Redirection table, 32 registers of 4 one-byte entries.
    pub const RETA: Reg = Reg(0x5C00);
    /// RSS random key, 10 registers.
    pub const RSSRK: Reg = Reg(0x5C80);
    /// CRC error count.
    pub const CRCERRS: Reg = Reg(0x4000);
    /// Missed packets count.
    pub const MPC: Reg = Reg(0x4010);
    /// Good packets received count.
    pub const GPRC: Reg = Reg(0x4074);
    /// Good packets transmitted count.
    pub const GPTC: Reg = Reg(0x4080);
    /// Good octets received, low / high.
    pub const GORCL: Reg = Reg(0x4088);
    /// Good octets received, high.
    pub const GORCH: Reg = Reg(0x408C);
    /// Good octets transmitted, low.
    pub const GOTCL: Reg = Reg(0x4090);
    /// Good octets transmitted, high.
    pub const GOTCH: Reg = Reg(0x4094);
    /// Receive no buffers count.
    pub const RNBC: Reg = Reg(0x40A0);

    const fn q(base: u32, n: u16) -> Reg {
        Reg(base + 0x40 * n as u32)
    }
    /// Rx descriptor base low, queue n.
    pub const fn rdbal(n: u16) -> Reg {
        q(0xC000, n)
    }
    /// Rx descriptor base high.
    pub const fn rdbah(n: u16) -> Reg {
        q(0xC004, n)
    }
    /// Rx descriptor ring length in bytes.
    pub const fn rdlen(n: u16) -> Reg {
        q(0xC008, n)
    }
    /// Split and replication receive control.
    pub const fn srrctl(n: u16) -> Reg {
        q(0xC00C, n)
    }
    /// Rx descriptor head.
    pub const fn rdh(n: u16) -> Reg {
        q(0xC010, n)
    }
    /// Rx descriptor tail.
    pub const fn rdt(n: u16) -> Reg {
        q(0xC018, n)
    }
    /// Rx descriptor control.
    pub const fn rxdctl(n: u16) -> Reg {
        q(0xC028, n)
    }
    /// Receive queue drop packet count (clear on read).
    pub const fn rqdpc(n: u16) -> Reg {
        q(0xC030, n)
    }
    /// Tx descriptor base low.
    pub const fn tdbal(n: u16) -> Reg {
        q(0xE000, n)
    }
    /// Tx descriptor base high.
    pub const fn tdbah(n: u16) -> Reg {
        q(0xE004, n)
    }
    /// Tx descriptor ring length.
    pub const fn tdlen(n: u16) -> Reg {
        q(0xE008, n)
    }
    /// Tx descriptor head.
    pub const fn tdh(n: u16) -> Reg {
        q(0xE010, n)
    }
    /// Tx descriptor tail.
    pub const fn tdt(n: u16) -> Reg {
        q(0xE018, n)
    }
    /// Tx descriptor control.
    pub const fn txdctl(n: u16) -> Reg {
        q(0xE028, n)
    }

    /// ICR: receiver overrun.
    pub const ICR_RXO: u32 = 1 << 6;
    /// CTRL: set link up.
    pub const CTRL_SLU: u32 = 1 << 6;
    /// CTRL: device reset (self-clearing).
    pub const CTRL_RST: u32 = 1 << 26;
    /// STATUS: full duplex.
    pub const STATUS_FD: u32 = 1 << 0;
    /// STATUS: link up.
    pub const STATUS_LU: u32 = 1 << 1;
    /// EECD: EEPROM auto-read done (never set by QEMU).
    pub const EECD_AUTO_RD: u32 = 1 << 9;
    /// EERD: start a read.
    pub const EERD_START: u32 = 1 << 0;
    /// EERD: read done.
    pub const EERD_DONE: u32 = 1 << 1;
    /// CTRL_EXT: driver loaded.
    pub const CTRL_EXT_DRV_LOAD: u32 = 1 << 28;
    /// MDIC: ready.
    pub const MDIC_READY: u32 = 1 << 28;
    /// MDIC: error.
    pub const MDIC_ERROR: u32 = 1 << 30;
    /// MDIC: write opcode.
    pub const MDIC_OP_WRITE: u32 = 1 << 26;
    /// PHY BMCR value: auto-negotiation enable + restart, full duplex, 1000 Mb/s.
    pub const PHY_BMCR_AUTONEG_RESTART: u32 = 0x1340;
    /// RCTL: receive enable.
    pub const RCTL_EN: u32 = 1 << 1;
    /// RCTL: unicast promiscuous.
    pub const RCTL_UPE: u32 = 1 << 3;
    /// RCTL: multicast promiscuous.
    pub const RCTL_MPE: u32 = 1 << 4;
    /// RCTL: accept broadcast.
    pub const RCTL_BAM: u32 = 1 << 15;
    /// RCTL: strip Ethernet CRC.
    pub const RCTL_SECRC: u32 = 1 << 26;
    /// TCTL: transmit enable.
    pub const TCTL_EN: u32 = 1 << 1;
    /// TCTL: pad short packets.
    pub const TCTL_PSP: u32 = 1 << 3;
    /// TCTL: collision threshold 15, collision distance 63.
    pub const TCTL_CT_COLD: u32 = (0xF << 4) | (0x3F << 12);
    /// SRRCTL: 2 KiB packet buffer.
    pub const SRRCTL_BSIZE_2K: u32 = 2;
    /// SRRCTL: advanced descriptor, one buffer.
    pub const SRRCTL_DESCTYPE_ADV_ONEBUF: u32 = 1 << 25;
    /// SRRCTL: drop when no descriptor is free (bit 31 on igb; bit 28 on ixgbe).
    pub const SRRCTL_DROP_EN: u32 = 1 << 31;
    /// RXDCTL/TXDCTL: queue enable.
    pub const DCTL_ENABLE: u32 = 1 << 25;
    /// RXDCTL thresholds: PTHRESH 8, HTHRESH 8, WTHRESH 1.
    pub const RXDCTL_THRESH: u32 = 8 | (8 << 8) | (1 << 16);
    /// TXDCTL thresholds: PTHRESH 8, HTHRESH 1, WTHRESH 1 (write back every descriptor).
    pub const TXDCTL_THRESH: u32 = 8 | (1 << 8) | (1 << 16);
    /// RXCSUM: packet checksum disable, so the descriptor carries the RSS hash (QEMU needs
    /// it for RSS at all).
    pub const RXCSUM_PCSD: u32 = 1 << 13;
    /// RXCSUM: IPv4 header checksum offload (IPCS / IPE in the descriptor).
    pub const RXCSUM_IPOFLD: u32 = 1 << 8;
    /// RXCSUM: TCP/UDP checksum offload (L4I / TCPE in the descriptor).
    pub const RXCSUM_TUOFLD: u32 = 1 << 9;
    /// MRQC: RSS only (no VMDq).
    pub const MRQC_RSS: u32 = 0x2;
    /// MRQC hash fields: TCPv4, IPv4, TCPv6-Ex, IPv6, TCPv6, UDPv4, UDPv6.
    pub const MRQC_FIELDS: u32 =
        (1 << 16) | (1 << 17) | (1 << 18) | (1 << 20) | (1 << 21) | (1 << 22) | (1 << 23);
}

use reg::*;

pub use crate::family::Family;

/// PCI vendor id of Intel.
pub const INTEL: u16 = crate::family::INTEL;
/// Most queues any igb family has (82576: 16; I350: 8, see [`Family::max_queues`]). The
/// ids this driver accepts are those of `family::INTEL_MODELS` in families 82576 and I350.
pub const MAX_QUEUES: usize = 16;

/// Reset wait (CTRL.RST self-clear).
const RESET_TIMEOUT: u64 = ms(100);
/// EEPROM auto-read wait; non-fatal (QEMU never sets the bit).
const EEPROM_AUTO_RD_TIMEOUT: u64 = ms(10);
/// Queue enable read-back wait.
const QUEUE_ENABLE_TIMEOUT: u64 = ms(100);
/// PHY register access wait.
const MDIC_TIMEOUT: u64 = ms(10);
/// EEPROM word read wait.
const EERD_TIMEOUT: u64 = ms(10);

/// igb configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IgbConfig {
    /// Receive queues, 1..=16 (queue k is meant for core k).
    pub rx_queues: u16,
    /// Transmit queues, 1..=16.
    pub tx_queues: u16,
    /// RSS key and redirection table (used with any number of queues; with one queue the
    /// hash still appears in [`crate::RxMeta`]).
    pub rss: RssConfig,
    /// Accept every unicast and multicast frame (a monitor wants this).
    pub promiscuous: bool,
}

impl IgbConfig {
    /// `queues` receive and transmit queues, symmetric RSS spread over them, promiscuous.
    pub fn symmetric(queues: u16) -> Self {
        IgbConfig {
            rx_queues: queues,
            tx_queues: queues,
            rss: RssConfig::symmetric(queues),
            promiscuous: true,
        }
    }
}

/// Hardware statistics, accumulated in 64 bits from the clear-on-read registers.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct IgbStats {
    /// Good packets received (GPRC).
    pub rx_packets: u64,
    /// Good packets transmitted (GPTC).
    pub tx_packets: u64,
    /// Good octets received (GORC).
    pub rx_bytes: u64,
    /// Good octets transmitted (GOTC).
    pub tx_bytes: u64,
    /// Packets missed for lack of buffer space (MPC).
    pub rx_missed: u64,
    /// Receive-no-buffer events (RNBC).
    pub rx_no_buffer: u64,
    /// CRC errors (CRCERRS).
    pub crc_errors: u64,
    /// Per-queue drops because the queue's ring was full (RQDPC, DROP_EN).
    pub queue_drops: [u64; MAX_QUEUES],
    /// Receive-overrun events: `update_stats` calls that found `ICR.RXO` set. QEMU's igb
    /// drops a frame for a full ring without touching RQDPC/MPC and only raises this cause,
    /// so this is the counter that moves there (interrupts stay masked; we only poll it).
    pub rx_overruns: u64,
}

/// The control object of one igb port: link, promiscuous mode, MAC, RSS, statistics.
/// Keep it on one core; the queue handles go to the others.
pub struct Igb<R: RegIo> {
    regs: R,
    mac: MacAddr,
    rx_queues: u16,
    link_up: bool,
    tx_queues: u16,
    stats: IgbStats,
    eeprom_auto_read: bool,
}

/// A receive queue handle of an igb port.
pub type IgbRx<R, const N: usize> = AdvRxQueue<R, N>;
/// A transmit queue handle of an igb port.
pub type IgbTx<R, const N: usize> = AdvTxQueue<R, N>;

/// What [`init`] returns: the control object and the queue handles (index = queue).
pub struct IgbParts<R: RegIo, const RXN: usize, const TXN: usize> {
    /// Control object.
    pub ctl: Igb<R>,
    /// Receive queues 0..rx_queues.
    pub rx: Vec<IgbRx<R, RXN>, MAX_QUEUES>,
    /// Transmit queues 0..tx_queues.
    pub tx: Vec<IgbTx<R, TXN>, MAX_QUEUES>,
}

/// Opens the igb function at `addr`: checks the ids, enables memory decoding and bus
/// mastering, maps BAR0 (128 KiB) and runs [`init`].
#[allow(unsafe_code)]
pub fn open<H: Hal, const RXN: usize, const TXN: usize>(
    hal: &H,
    addr: PciAddr,
    cfg: &IgbConfig,
) -> Result<IgbParts<Mmio, RXN, TXN>> {
    let (vendor, device) = pci::ids(hal, addr);
    let family = crate::family::driven_by(vendor, device, crate::family::Driver::Igb)?;
    pci::enable_bus_master(hal, addr);
    let bar = pci::memory_bar(hal, addr, 0)?;
    // SAFETY: `bar` is BAR0 of `addr`, read from its configuration space just now, and for
    // every igb id in `family::INTEL_MODELS` BAR0 is the device's register window of at
    // least 128 KiB. Nothing in Ferrule uses device registers as memory.
    let mmio = unsafe { Mmio::map(hal, bar, 128 * 1024)? };
    init_family(hal, mmio, cfg, family)
}

fn check_config(cfg: &IgbConfig, family: Family) -> Result<()> {
    let max = family.max_queues();
    if !(1..=max).contains(&cfg.rx_queues) {
        return Err(Error::BadConfig(if max == 8 {
            "rx_queues must be 1..=8 on an I350"
        } else {
            "rx_queues must be 1..=16"
        }));
    }
    if !(1..=max).contains(&cfg.tx_queues) {
        return Err(Error::BadConfig(if max == 8 {
            "tx_queues must be 1..=8 on an I350"
        } else {
            "tx_queues must be 1..=16"
        }));
    }
    if cfg.rss.reta.iter().any(|&q| q as u16 >= cfg.rx_queues) {
        return Err(Error::BadConfig("RETA names a queue that does not exist"));
    }
    Ok(())
}

fn disable_interrupts<R: RegIo>(regs: &R) {
    regs.write32(IMC, 0xFFFF_FFFF);
    regs.write32(EIMC, 0xFFFF_FFFF);
    let _ = regs.read32(ICR);
}

/// Brings an 82576 (QEMU's igb) up on already-mapped registers: [`init_family`] with
/// [`Family::I82576`].
pub fn init<H: Hal, R: RegIo + Clone, const RXN: usize, const TXN: usize>(
    hal: &H,
    regs: R,
    cfg: &IgbConfig,
) -> Result<IgbParts<R, RXN, TXN>> {
    init_family(hal, regs, cfg, Family::I82576)
}

/// Brings the port up on already-mapped registers (see the module docs for the order).
/// The family decides how many queues exist (82576: 16, I350: 8); the register sequence is
/// the same for both. Does not wait for the link: call [`Igb::wait_link`].
pub fn init_family<H: Hal, R: RegIo + Clone, const RXN: usize, const TXN: usize>(
    hal: &H,
    regs: R,
    cfg: &IgbConfig,
    family: Family,
) -> Result<IgbParts<R, RXN, TXN>> {
    if family.driver() != crate::family::Driver::Igb {
        return Err(Error::BadConfig(
            "igb drives the 82576 and I350 families only",
        ));
    }
    check_config(cfg, family)?;

    // 1. Quiesce: interrupts off, receive and transmit off, let DMA drain.
    disable_interrupts(&regs);
    regs.write32(RCTL, 0);
    regs.write32(TCTL, TCTL_PSP);
    let _ = regs.read32(STATUS);
    hal.delay_ns(ms(10));

    // 2. Global reset; the bit self-clears.
    regs.set_bits(CTRL, CTRL_RST);
    hal.delay_ns(ms(1));
    wait_bits(
        &regs,
        hal,
        CTRL,
        CTRL_RST,
        false,
        RESET_TIMEOUT,
        Error::ResetTimeout,
    )?;
    disable_interrupts(&regs);

    // 3. EEPROM auto-read: real 82576 sets AUTO_RD, QEMU never does, so this is advisory.
    let eeprom_auto_read = wait_bits(
        &regs,
        hal,
        EECD,
        EECD_AUTO_RD,
        true,
        EEPROM_AUTO_RD_TIMEOUT,
        Error::EepromAutoReadTimeout,
    )
    .is_ok();
    regs.set_bits(CTRL_EXT, CTRL_EXT_DRV_LOAD);

    // 4. MAC address: receive address 0 (valid after reset), else the EEPROM's words 0..3.
    let mac = read_mac(&regs, hal)?;
    for i in 0..128 {
        regs.write32(Reg(MTA.0 + 4 * i), 0);
    }

    let mut ctl = Igb {
        regs: regs.clone(),
        mac,
        rx_queues: cfg.rx_queues,
        link_up: false,
        tx_queues: cfg.tx_queues,
        stats: IgbStats::default(),
        eeprom_auto_read,
    };
    // 5. Clear the clear-on-read statistics.
    ctl.update_stats();
    ctl.stats = IgbStats::default();

    // 6. Receive queues (receive is configured before the link comes up: QEMU quirk).
    let mut rx: Vec<IgbRx<R, RXN>, MAX_QUEUES> = Vec::new();
    for n in 0..cfg.rx_queues {
        regs.clear_bits(rxdctl(n), DCTL_ENABLE);
        let q = IgbRx::<R, RXN>::alloc(hal, regs.clone(), n, rdt(n), CsumErrBits::IGB)?;
        let phys = q.ring_phys();
        regs.write32(rdbal(n), phys as u32);
        regs.write32(rdbah(n), (phys >> 32) as u32);
        regs.write32(rdlen(n), IgbRx::<R, RXN>::ring_bytes());
        regs.write32(rdh(n), 0);
        regs.write32(rdt(n), 0);
        regs.write32(
            srrctl(n),
            SRRCTL_BSIZE_2K | SRRCTL_DESCTYPE_ADV_ONEBUF | SRRCTL_DROP_EN,
        );
        regs.write32(rxdctl(n), DCTL_ENABLE | RXDCTL_THRESH);
        wait_bits(
            &regs,
            hal,
            rxdctl(n),
            DCTL_ENABLE,
            true,
            QUEUE_ENABLE_TIMEOUT,
            Error::RxQueueEnableTimeout(n),
        )?;
        regs.write32(rdt(n), (RXN - 1) as u32);
        // Cannot fail: at most MAX_QUEUES queues (checked above).
        let _ = rx.push(q);
    }

    // 7. RSS: key, redirection table, descriptor hash (PCSD), hash fields. Receive checksum
    // offload (IPv4 header, TCP/UDP) on: each descriptor then says checked/good/bad (the reset
    // value has both, but a driver before us may have cleared them; QEMU's model honours them).
    ctl.set_rss(&cfg.rss)?;
    regs.set_bits(RXCSUM, RXCSUM_PCSD | RXCSUM_IPOFLD | RXCSUM_TUOFLD);
    regs.write32(MRQC, MRQC_RSS | MRQC_FIELDS);

    // 8. Receive on.
    let mut rctl = RCTL_EN | RCTL_BAM | RCTL_SECRC;
    if cfg.promiscuous {
        rctl |= RCTL_UPE | RCTL_MPE;
    }
    regs.write32(RCTL, rctl);

    // 9. Transmit queues, then transmit on.
    let mut tx: Vec<IgbTx<R, TXN>, MAX_QUEUES> = Vec::new();
    for n in 0..cfg.tx_queues {
        let q = IgbTx::<R, TXN>::alloc(hal, regs.clone(), n, tdt(n))?;
        let phys = q.ring_phys();
        regs.write32(tdbal(n), phys as u32);
        regs.write32(tdbah(n), (phys >> 32) as u32);
        regs.write32(tdlen(n), IgbTx::<R, TXN>::ring_bytes());
        regs.write32(tdh(n), 0);
        regs.write32(tdt(n), 0);
        regs.write32(txdctl(n), DCTL_ENABLE | TXDCTL_THRESH);
        wait_bits(
            &regs,
            hal,
            txdctl(n),
            DCTL_ENABLE,
            true,
            QUEUE_ENABLE_TIMEOUT,
            Error::TxQueueEnableTimeout(n),
        )?;
        let _ = tx.push(q);
    }
    regs.write32(TCTL, TCTL_EN | TCTL_PSP | TCTL_CT_COLD);

    // 10. Link last: SLU, then restart PHY auto-negotiation (QEMU raises LU only then).
    ctl.restart_link(hal)?;

    Ok(IgbParts { ctl, rx, tx })
}

fn read_mac<R: RegIo, H: Hal>(regs: &R, hal: &H) -> Result<MacAddr> {
    let lo = regs.read32(RAL0);
    let hi = regs.read32(RAH0);
    if hi & (1 << 31) != 0 {
        let b = lo.to_le_bytes();
        let h = hi.to_le_bytes();
        return Ok(MacAddr([b[0], b[1], b[2], b[3], h[0], h[1]]));
    }
    let mut m = [0u8; 6];
    for w in 0..3u32 {
        regs.write32(EERD, EERD_START | (w << 2));
        wait_bits(
            regs,
            hal,
            EERD,
            EERD_DONE,
            true,
            EERD_TIMEOUT,
            Error::EepromReadTimeout,
        )?;
        let v = (regs.read32(EERD) >> 16) as u16;
        m[2 * w as usize..2 * w as usize + 2].copy_from_slice(&v.to_le_bytes());
    }
    regs.write32(RAL0, u32::from_le_bytes([m[0], m[1], m[2], m[3]]));
    regs.write32(RAH0, u16::from_le_bytes([m[4], m[5]]) as u32 | (1 << 31));
    Ok(MacAddr(m))
}

impl<R: RegIo> Igb<R> {
    /// The port's MAC address.
    pub fn mac(&self) -> MacAddr {
        self.mac
    }

    /// Sets the port's MAC address (receive address 0).
    pub fn set_mac(&mut self, mac: MacAddr) {
        let m = mac.0;
        self.regs
            .write32(RAL0, u32::from_le_bytes([m[0], m[1], m[2], m[3]]));
        self.regs
            .write32(RAH0, u16::from_le_bytes([m[4], m[5]]) as u32 | (1 << 31));
        self.mac = mac;
    }

    /// Number of receive queues.
    pub fn rx_queues(&self) -> u16 {
        self.rx_queues
    }

    /// Number of transmit queues.
    pub fn tx_queues(&self) -> u16 {
        self.tx_queues
    }

    /// Whether the EEPROM auto-read bit was seen after reset (never on QEMU).
    pub fn eeprom_auto_read(&self) -> bool {
        self.eeprom_auto_read
    }

    /// Current link state.
    pub fn link_status(&self) -> LinkStatus {
        let s = self.regs.read32(STATUS);
        let up = s & STATUS_LU != 0;
        let speed_mbps = if up {
            match (s >> 6) & 3 {
                0 => 10,
                1 => 100,
                _ => 1000,
            }
        } else {
            0
        };
        LinkStatus {
            up,
            speed_mbps,
            full_duplex: s & STATUS_FD != 0,
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

    /// Waits up to `timeout_ns` for link-up.
    pub fn wait_link<H: Hal>(&self, hal: &H, timeout_ns: u64) -> Result<LinkStatus> {
        wait_bits(
            &self.regs,
            hal,
            STATUS,
            STATUS_LU,
            true,
            timeout_ns,
            Error::LinkTimeout,
        )?;
        Ok(self.link_status())
    }

    /// Forces link-up and restarts PHY auto-negotiation (PHY 1, BMCR) through MDIC.
    pub fn restart_link<H: Hal>(&mut self, hal: &H) -> Result<()> {
        self.regs.set_bits(CTRL, CTRL_SLU);
        self.phy_write(hal, 0, PHY_BMCR_AUTONEG_RESTART as u16)
    }

    /// Writes PHY register `reg` of PHY address 1 through MDIC.
    pub fn phy_write<H: Hal>(&mut self, hal: &H, reg: u8, value: u16) -> Result<()> {
        let cmd = value as u32 | ((reg as u32 & 0x1F) << 16) | (1 << 21) | MDIC_OP_WRITE;
        self.regs.write32(MDIC, cmd);
        wait_bits(
            &self.regs,
            hal,
            MDIC,
            MDIC_READY,
            true,
            MDIC_TIMEOUT,
            Error::MdioTimeout,
        )?;
        if self.regs.read32(MDIC) & MDIC_ERROR != 0 {
            return Err(Error::MdioError);
        }
        Ok(())
    }

    /// Turns unicast and multicast promiscuous mode on or off.
    pub fn set_promiscuous(&mut self, on: bool) {
        if on {
            self.regs.set_bits(RCTL, RCTL_UPE | RCTL_MPE);
        } else {
            self.regs.clear_bits(RCTL, RCTL_UPE | RCTL_MPE);
        }
    }

    /// Whether promiscuous mode is on.
    pub fn promiscuous(&self) -> bool {
        self.regs.read32(RCTL) & (RCTL_UPE | RCTL_MPE) == RCTL_UPE | RCTL_MPE
    }

    /// Programs the RSS key (RSSRK, key byte 0 in bits 7:0 of RSSRK0) and the redirection
    /// table (RETA, entry k in byte k). Entries must name existing queues.
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

    /// Reads the RSS configuration back from the device.
    pub fn rss(&self) -> RssConfig {
        let mut key = [0u8; 40];
        for (i, c) in key.chunks_exact_mut(4).enumerate() {
            c.copy_from_slice(&self.regs.read32(Reg(RSSRK.0 + 4 * i as u32)).to_le_bytes());
        }
        let mut reta = [0u8; 128];
        for (i, c) in reta.chunks_exact_mut(4).enumerate() {
            c.copy_from_slice(&self.regs.read32(Reg(RETA.0 + 4 * i as u32)).to_le_bytes());
        }
        RssConfig { key, reta }
    }

    /// Reads the clear-on-read statistics registers, adds them to the 64-bit totals and
    /// returns the totals. Call it often enough that no 32-bit counter wraps (seconds at
    /// 1 GbE line rate is fine).
    pub fn update_stats(&mut self) -> &IgbStats {
        let r = &self.regs;
        let s = &mut self.stats;
        s.crc_errors += r.read32(CRCERRS) as u64;
        s.rx_missed += r.read32(MPC) as u64;
        s.rx_packets += r.read32(GPRC) as u64;
        s.tx_packets += r.read32(GPTC) as u64;
        // Low before high: reading the high half clears both.
        let lo = r.read32(GORCL) as u64;
        s.rx_bytes += lo | (r.read32(GORCH) as u64) << 32;
        let lo = r.read32(GOTCL) as u64;
        s.tx_bytes += lo | (r.read32(GOTCH) as u64) << 32;
        s.rx_no_buffer += r.read32(RNBC) as u64;
        if r.read32(ICR) & ICR_RXO != 0 {
            s.rx_overruns += 1;
        }
        for n in 0..self.rx_queues {
            s.queue_drops[n as usize] += r.read32(rqdpc(n)) as u64;
        }
        &self.stats
    }

    /// The totals as of the last [`Self::update_stats`].
    pub fn stats(&self) -> &IgbStats {
        &self.stats
    }

    /// Per-queue receive drops (RQDPC totals) as of the last [`Self::update_stats`].
    pub fn queue_drops(&self, queue: u16) -> u64 {
        self.stats
            .queue_drops
            .get(queue as usize)
            .copied()
            .unwrap_or(0)
    }
}

/// Software counters of a queue handle, re-exported for convenience.
pub type IgbQueueStats = QueueStats;

#[cfg(test)]
mod tests;
