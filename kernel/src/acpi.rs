//! ACPI, read once at boot with the `acpi` crate: local APIC ids from the MADT and the PCI
//! ECAM window from the MCFG.

use crate::app::MAX_CORES;
use acpi::madt::{Madt, MadtEntry};
use acpi::mcfg::Mcfg;
use acpi::{AcpiHandler, AcpiTables, PhysicalMapping};
use core::ptr::NonNull;

/// The PCI enhanced configuration window (segment 0).
#[derive(Clone, Copy, Debug)]
pub struct Ecam {
    /// Physical base address (for bus 0).
    pub base: u64,
    /// First bus decoded.
    pub bus_start: u8,
    /// Last bus decoded.
    pub bus_end: u8,
}

/// What Ferrule takes from ACPI.
#[derive(Clone, Copy, Debug)]
pub struct AcpiInfo {
    /// Local APIC ids of enabled (or online-capable) processors, MADT order.
    pub apic_ids: [u32; MAX_CORES],
    /// Number of valid entries in `apic_ids`.
    pub cores: usize,
    /// Processors beyond [`MAX_CORES`], left off.
    pub cores_ignored: usize,
    /// The ECAM window, when the MCFG has one for segment 0.
    pub ecam: Option<Ecam>,
}

/// Identity-mapped access: every physical address below the map's top is its own virtual
/// address, so "mapping" is a pointer cast.
#[derive(Clone, Copy, Debug)]
struct IdentityMap;

impl AcpiHandler for IdentityMap {
    unsafe fn map_physical_region<T>(
        &self,
        physical_address: usize,
        size: usize,
    ) -> PhysicalMapping<Self, T> {
        let ptr = NonNull::new(physical_address as *mut T).expect("ACPI table at address 0");
        // SAFETY: ACPI tables live in firmware memory below 4 GiB, identity mapped by
        // `mem::paging`; the caller guarantees a valid `T` of `size` bytes is there.
        unsafe { PhysicalMapping::new(physical_address, ptr, size, size, *self) }
    }

    fn unmap_physical_region<T>(_region: &PhysicalMapping<Self, T>) {}
}

/// Reads the MADT and MCFG. Without usable ACPI the machine is taken to have one core and
/// legacy PCI configuration, and a warning says why.
pub fn read(rsdp: Option<u64>) -> AcpiInfo {
    let mut info = AcpiInfo {
        apic_ids: [0; MAX_CORES],
        cores: 0,
        cores_ignored: 0,
        ecam: None,
    };
    // SAFETY: the RSDP address comes from the loader (or the BIOS area scan); the tables it
    // leads to are identity mapped.
    let tables = unsafe {
        match rsdp {
            Some(addr) => AcpiTables::from_rsdp(IdentityMap, addr as usize),
            None => AcpiTables::search_for_rsdp_bios(IdentityMap),
        }
    };
    let tables = match tables {
        Ok(t) => t,
        Err(e) => {
            crate::console::warn!("acpi: no usable tables ({e:?}); assuming one core, legacy PCI");
            return info;
        }
    };
    match tables.find_table::<Madt>() {
        Ok(madt) => {
            for entry in madt.get().entries() {
                let (id, flags) = match entry {
                    MadtEntry::LocalApic(e) => (e.apic_id as u32, e.flags),
                    MadtEntry::LocalX2Apic(e) => (e.x2apic_id, e.flags),
                    _ => continue,
                };
                if flags & 0b11 == 0 || info.apic_ids[..info.cores].contains(&id) {
                    continue;
                }
                if info.cores == MAX_CORES {
                    info.cores_ignored += 1;
                } else {
                    info.apic_ids[info.cores] = id;
                    info.cores += 1;
                }
            }
        }
        Err(e) => crate::console::warn!("acpi: no MADT ({e:?}); assuming one core"),
    }
    if let Ok(mcfg) = tables.find_table::<Mcfg>() {
        if let Some(e) = mcfg.entries().iter().find(|e| e.pci_segment_group == 0) {
            info.ecam = Some(Ecam {
                base: e.base_address,
                bus_start: e.bus_number_start,
                bus_end: e.bus_number_end,
            });
        }
    }
    crate::console::info!(
        "acpi: {} processors in MADT, PCI {}",
        info.cores,
        if info.ecam.is_some() {
            "ECAM"
        } else {
            "legacy ports"
        }
    );
    info
}
