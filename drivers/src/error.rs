//! The driver crate's one error type: every failure of the control path has a named variant.

use core::fmt;

/// A control-path failure. The data path (`rx_batch`, `tx_batch`) never returns errors: it
/// counts bad descriptors in the queue statistics instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The device did not clear its reset bit (`CTRL.RST`) within the timeout.
    ResetTimeout,
    /// ixgbe: the EEPROM auto-read (`EEC.ARD`) did not finish within the timeout.
    EepromAutoReadTimeout,
    /// An EEPROM word read through `EERD` did not complete within the timeout.
    EepromReadTimeout,
    /// ixgbe: DMA initialisation (`RDRXCTL.DMAIDONE`) did not finish within the timeout.
    DmaInitTimeout,
    /// A receive queue's `RXDCTL.ENABLE` did not read back set within the timeout.
    RxQueueEnableTimeout(u16),
    /// A transmit queue's `TXDCTL.ENABLE` did not read back set within the timeout.
    TxQueueEnableTimeout(u16),
    /// igb: a PHY register access through `MDIC` did not signal `READY` within the timeout.
    MdioTimeout,
    /// igb: the PHY rejected a register access (`MDIC.ERROR`).
    MdioError,
    /// The link did not come up within the timeout given to `wait_link`.
    LinkTimeout,
    /// The platform could not provide DMA memory of the requested size and alignment.
    DmaAlloc,
    /// The platform could not map the device's register BAR.
    MmioMap,
    /// The PCI function is not a device this driver handles (vendor, device).
    UnsupportedDevice(u16, u16),
    /// A known Intel NIC the drivers refuse (see `family::INTEL_MODELS` for why).
    RefusedModel(&'static crate::family::Model),
    /// The register BAR is absent, not memory, or too small.
    BadBar,
    /// A configuration value is out of range (the string names the field).
    BadConfig(&'static str),
    /// virtio: a required PCI capability (common/notify/device config) is missing.
    VirtioCapabilityMissing,
    /// virtio: the device did not accept the feature set (`FEATURES_OK` not kept).
    VirtioFeaturesRejected,
    /// virtio: the device's queue is smaller than the driver's ring or absent.
    VirtioQueueUnavailable(u16),
    /// virtio: the device reset (status reads back 0) did not complete within the timeout.
    VirtioResetTimeout,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::ResetTimeout => write!(f, "device reset did not complete (CTRL.RST stuck)"),
            Error::EepromAutoReadTimeout => write!(f, "EEPROM auto-read did not finish (EEC.ARD)"),
            Error::EepromReadTimeout => write!(f, "EEPROM word read did not finish (EERD.DONE)"),
            Error::DmaInitTimeout => write!(f, "DMA init did not finish (RDRXCTL.DMAIDONE)"),
            Error::RxQueueEnableTimeout(q) => write!(f, "rx queue {q} did not enable"),
            Error::TxQueueEnableTimeout(q) => write!(f, "tx queue {q} did not enable"),
            Error::MdioTimeout => write!(f, "PHY access did not complete (MDIC.READY)"),
            Error::MdioError => write!(f, "PHY access failed (MDIC.ERROR)"),
            Error::LinkTimeout => write!(f, "link did not come up in time"),
            Error::DmaAlloc => write!(f, "DMA memory allocation failed"),
            Error::MmioMap => write!(f, "mapping the register BAR failed"),
            Error::UnsupportedDevice(v, d) => write!(f, "unsupported PCI device {v:04x}:{d:04x}"),
            Error::RefusedModel(m) => write!(
                f,
                "Intel {} (8086:{:04x}, {}) is not supported: {}",
                m.name,
                m.device,
                m.family.name(),
                m.refused.unwrap_or("refused")
            ),
            Error::BadBar => write!(f, "register BAR absent, not memory or too small"),
            Error::BadConfig(what) => write!(f, "bad configuration: {what}"),
            Error::VirtioCapabilityMissing => write!(f, "virtio PCI capability missing"),
            Error::VirtioFeaturesRejected => write!(f, "virtio device rejected the features"),
            Error::VirtioQueueUnavailable(q) => {
                write!(f, "virtio queue {q} unavailable or too small")
            }
            Error::VirtioResetTimeout => write!(f, "virtio device reset did not complete"),
        }
    }
}

impl core::error::Error for Error {}

/// Result with the crate's [`Error`].
pub type Result<T, E = Error> = core::result::Result<T, E>;
