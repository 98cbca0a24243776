//! Which Intel NICs the drivers know, by PCI device id: the single table `igb::open`,
//! `ixgbe::open`, `nic::kind_of` and the appliance's discovery all read.
//!
//! Every id is tied to a family, and a family to what differs between them for these
//! drivers: the number of RSS queues (and so which RETA entries may be used), and whether
//! the driver's link bring-up fits the port's PHY. Known ids whose link the drivers cannot
//! bring up (fibre/SerDes igb ports, backplane/CX4/XAUI 82599 ports, 10GBASE-T X540/X550)
//! are listed too, with the reason, so they are named and refused instead of driven blindly.

/// The driver a family belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Driver {
    /// `crate::igb`.
    Igb,
    /// `crate::ixgbe`.
    Ixgbe,
}

/// A NIC family: one register layout and link bring-up as far as the drivers are concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// 82576: 16 RSS queues, RETA entries in bits 3:0 of each byte (no SR-IOV), copper PHY
    /// at MDIO address 1 brought up by an auto-negotiation restart.
    I82576,
    /// I350: as the 82576, but 8 RSS queues (RETA entries 0..=7).
    I350,
    /// 82599 / X520 with SFP+ (SFI): 16 RSS queues, 4-bit RETA entries; link through AUTOC
    /// in 10G serial mode with an auto-negotiation restart; EEPROM auto-read (EEC.ARD) and
    /// DMA init (RDRXCTL.DMAIDONE) must finish.
    I82599Sfp,
    /// 82599 ports on a backplane, KX4, CX4 or XAUI: AUTOC needs another link mode.
    I82599Other,
    /// X540 / X550 10GBASE-T: the link is set up through the internal PHY.
    X5x0BaseT,
}

impl Family {
    /// Family name for messages.
    pub fn name(self) -> &'static str {
        match self {
            Family::I82576 => "82576",
            Family::I350 => "I350",
            Family::I82599Sfp => "82599/X520 SFP+",
            Family::I82599Other => "82599 backplane/KX4/CX4/XAUI",
            Family::X5x0BaseT => "X540/X550 10GBASE-T",
        }
    }

    /// The driver that runs this family.
    pub fn driver(self) -> Driver {
        match self {
            Family::I82576 | Family::I350 => Driver::Igb,
            Family::I82599Sfp | Family::I82599Other | Family::X5x0BaseT => Driver::Ixgbe,
        }
    }

    /// Most RSS queues the family has.
    pub fn max_queues(self) -> u16 {
        match self {
            Family::I350 => 8,
            _ => 16,
        }
    }
}

/// One known Intel device id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Model {
    /// PCI device id (vendor 8086).
    pub device: u16,
    /// Product name.
    pub name: &'static str,
    /// Its family.
    pub family: Family,
    /// Why the drivers refuse it (`None`: driven).
    pub refused: Option<&'static str>,
}

const fn driven(device: u16, name: &'static str, family: Family) -> Model {
    Model {
        device,
        name,
        family,
        refused: None,
    }
}

const fn refused(device: u16, name: &'static str, family: Family, why: &'static str) -> Model {
    Model {
        device,
        name,
        family,
        refused: Some(why),
    }
}

const SERDES: &str = "fibre/SerDes link (PCS) bring-up is not implemented; igb drives copper ports";
const AUTOC_MODE: &str =
    "its AUTOC link mode (KX4/KR/CX4/XAUI) is not implemented; ixgbe drives SFP+ ports";
const BASE_T: &str = "10GBASE-T link setup through the internal PHY is not implemented";

/// Every Intel NIC id the drivers know, driven or refused.
pub const INTEL_MODELS: [Model; 27] = [
    driven(0x10C9, "82576 copper", Family::I82576),
    driven(0x10E8, "82576 quad copper", Family::I82576),
    driven(0x1526, "82576 quad copper ET2", Family::I82576),
    driven(0x150A, "82576 NS copper", Family::I82576),
    refused(0x10E6, "82576 fibre", Family::I82576, SERDES),
    refused(0x10E7, "82576 SerDes", Family::I82576, SERDES),
    refused(0x150D, "82576 SerDes quad", Family::I82576, SERDES),
    refused(0x1518, "82576 NS SerDes", Family::I82576, SERDES),
    driven(0x1521, "I350 copper", Family::I350),
    refused(0x1522, "I350 fibre", Family::I350, SERDES),
    refused(0x1523, "I350 SerDes", Family::I350, SERDES),
    refused(0x1524, "I350 SGMII", Family::I350, SERDES),
    driven(0x10FB, "82599ES SFP+ (X520-DA)", Family::I82599Sfp),
    driven(0x154D, "82599 SFP+ (X520 EM)", Family::I82599Sfp),
    driven(0x1557, "82599 SFP+ SF2 (X520-DA1)", Family::I82599Sfp),
    driven(0x1529, "82599 SFP+ FCoE", Family::I82599Sfp),
    refused(0x10F7, "82599 KX4", Family::I82599Other, AUTOC_MODE),
    refused(
        0x1514,
        "82599 KX4 mezzanine",
        Family::I82599Other,
        AUTOC_MODE,
    ),
    refused(0x1517, "82599 KR", Family::I82599Other, AUTOC_MODE),
    refused(0x10F8, "82599 backplane", Family::I82599Other, AUTOC_MODE),
    refused(0x10F9, "82599 CX4", Family::I82599Other, AUTOC_MODE),
    refused(0x10FC, "82599 XAUI", Family::I82599Other, AUTOC_MODE),
    refused(
        0x151C,
        "82599 10GBASE-T (T3 LOM)",
        Family::X5x0BaseT,
        BASE_T,
    ),
    refused(0x1528, "X540-T", Family::X5x0BaseT, BASE_T),
    refused(0x1560, "X540-T1", Family::X5x0BaseT, BASE_T),
    refused(0x1563, "X550-T", Family::X5x0BaseT, BASE_T),
    refused(0x15D1, "X550-T1", Family::X5x0BaseT, BASE_T),
];

/// PCI vendor id of Intel.
pub const INTEL: u16 = 0x8086;

/// What the table says of an Intel device id, if it knows it.
pub fn intel_model(device: u16) -> Option<&'static Model> {
    INTEL_MODELS.iter().find(|m| m.device == device)
}

/// The family of a device the drivers drive with `driver`; the refusal otherwise.
pub fn driven_by(vendor: u16, device: u16, driver: Driver) -> crate::Result<Family> {
    match (vendor, intel_model(device)) {
        (INTEL, Some(m)) if m.family.driver() == driver => match m.refused {
            None => Ok(m.family),
            Some(_) => Err(crate::Error::RefusedModel(m)),
        },
        _ => Err(crate::Error::UnsupportedDevice(vendor, device)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_each_family_names_its_driver() {
        for (i, a) in INTEL_MODELS.iter().enumerate() {
            for b in &INTEL_MODELS[i + 1..] {
                assert_ne!(a.device, b.device, "{} and {}", a.name, b.name);
            }
        }
        let driven: std::vec::Vec<u16> = INTEL_MODELS
            .iter()
            .filter(|m| m.refused.is_none())
            .map(|m| m.device)
            .collect();
        assert_eq!(
            driven,
            [0x10C9, 0x10E8, 0x1526, 0x150A, 0x1521, 0x10FB, 0x154D, 0x1557, 0x1529]
        );
        assert_eq!(Family::I82576.max_queues(), 16);
        assert_eq!(Family::I350.max_queues(), 8);
        assert_eq!(Family::I82599Sfp.max_queues(), 16);
    }

    #[test]
    fn driven_by_checks_vendor_driver_and_refusal() {
        assert_eq!(driven_by(INTEL, 0x10C9, Driver::Igb), Ok(Family::I82576));
        assert_eq!(driven_by(INTEL, 0x1521, Driver::Igb), Ok(Family::I350));
        assert_eq!(
            driven_by(INTEL, 0x10FB, Driver::Ixgbe),
            Ok(Family::I82599Sfp)
        );
        // The right id for the other driver is not this driver's.
        assert_eq!(
            driven_by(INTEL, 0x10FB, Driver::Igb),
            Err(crate::Error::UnsupportedDevice(INTEL, 0x10FB))
        );
        assert_eq!(
            driven_by(0x1AF4, 0x10C9, Driver::Igb),
            Err(crate::Error::UnsupportedDevice(0x1AF4, 0x10C9))
        );
        let x540 = intel_model(0x1528).unwrap();
        assert_eq!(
            driven_by(INTEL, 0x1528, Driver::Ixgbe),
            Err(crate::Error::RefusedModel(x540))
        );
        assert_eq!(
            crate::Error::RefusedModel(x540).to_string(),
            "Intel X540-T (8086:1528, X540/X550 10GBASE-T) is not supported: \
             10GBASE-T link setup through the internal PHY is not implemented"
        );
    }
}
