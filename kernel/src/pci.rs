//! PCI: configuration space through ECAM (from the MCFG) or the legacy 0xCF8/0xCFC ports,
//! the boot scan, BARs, and enabling a device for memory access and bus mastering.

use crate::acpi::Ecam;
use crate::app::{Bar, PciFunction, MAX_PCI_FUNCTIONS};
use spin::{Mutex, Once};
use x86_64::instructions::port::{Port, PortWriteOnly};

static ECAM: Once<Option<Ecam>> = Once::new();
/// The legacy configuration mechanism: the address port 0xCF8 and the data port 0xCFC,
/// used only under this lock (an address and its data access must not interleave).
static LEGACY: Mutex<LegacyPorts> = Mutex::new(LegacyPorts {
    address: PortWriteOnly::new(0xcf8),
    data: Port::new(0xcfc),
});

struct LegacyPorts {
    address: PortWriteOnly<u32>,
    data: Port<u32>,
}

/// Address of one PCI function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PciAddress {
    /// Bus.
    pub bus: u8,
    /// Device (0–31).
    pub device: u8,
    /// Function (0–7).
    pub function: u8,
}

impl From<&PciFunction> for PciAddress {
    fn from(f: &PciFunction) -> PciAddress {
        PciAddress {
            bus: f.bus,
            device: f.device,
            function: f.function,
        }
    }
}

fn ecam_ptr(e: &Ecam, a: PciAddress, offset: u16) -> Option<*mut u32> {
    if a.bus < e.bus_start || a.bus > e.bus_end {
        return None;
    }
    let addr = e.base
        + ((a.bus as u64) << 20)
        + ((a.device as u64) << 15)
        + ((a.function as u64) << 12)
        + (offset as u64 & 0xffc);
    Some(addr as *mut u32)
}

fn legacy_address(a: PciAddress, offset: u16) -> u32 {
    0x8000_0000
        | (a.bus as u32) << 16
        | (a.device as u32 & 31) << 11
        | (a.function as u32 & 7) << 8
        | (offset as u32 & 0xfc)
}

/// Reads a 32-bit configuration register (`offset` is rounded down to 4).
pub fn read32(a: PciAddress, offset: u16) -> u32 {
    if let Some(Some(e)) = ECAM.get() {
        if let Some(p) = ecam_ptr(e, a, offset) {
            // SAFETY: the ECAM window is mapped uncached by `init`; `p` is inside it and
            // 4-byte aligned.
            return unsafe { p.read_volatile() };
        }
    }
    let mut ports = LEGACY.lock();
    // SAFETY: 0xCF8/0xCFC are the PCI configuration mechanism, used only here and in
    // `write32`, under the lock. Selecting a register and reading it touches no memory.
    unsafe {
        ports.address.write(legacy_address(a, offset));
        ports.data.read()
    }
}

/// Writes a 32-bit configuration register (`offset` is rounded down to 4).
///
/// Use [`enable`] to turn a device on; it needs no `unsafe`.
///
/// # Safety
///
/// A configuration write can make a device claim any address or write memory by itself, so
/// the write must not:
/// - move an address range the function decodes: a BAR (0x10..0x28), the expansion ROM
///   (0x30) or, for a bridge, its bus numbers and windows may change only while the
///   command register has decoding off, and must hold their old values again before it is
///   turned back on (as BAR sizing does);
/// - aim the function's own memory writes (MSI/MSI-X message addresses) anywhere but the
///   local APIC's interrupt window (`0xFEE0_0000..0xFF00_0000`).
///
/// Setting or clearing decoding, bus mastering or INTx in the command register is fine.
pub unsafe fn write32(a: PciAddress, offset: u16, value: u32) {
    if let Some(Some(e)) = ECAM.get() {
        if let Some(p) = ecam_ptr(e, a, offset) {
            // SAFETY: as for `read32`.
            unsafe { p.write_volatile(value) };
            return;
        }
    }
    let mut ports = LEGACY.lock();
    // SAFETY: as in `read32`.
    unsafe {
        ports.address.write(legacy_address(a, offset));
        ports.data.write(value);
    }
}

/// Sets memory-space decoding and bus mastering (and clears INTx, which Ferrule never uses).
pub fn enable(a: PciAddress) {
    let cmd = read32(a, 0x04);
    // SAFETY: only the command register's memory, bus-master and INTx-disable bits change
    // (the status half is written back as read, and its bits are write-1-to-clear flags),
    // which moves no address range.
    unsafe {
        write32(
            a,
            0x04,
            (cmd & 0xffff_0000) | (cmd & 0xffff) | 0x2 | 0x4 | 0x400,
        )
    };
}

fn read_bars(a: PciAddress) -> [Option<Bar>; 6] {
    let mut bars = [None; 6];
    let cmd = read32(a, 0x04);
    // Decoding off while sizing, so the all-ones probe never claims addresses.
    // SAFETY: clears only the command register's decoding bits.
    unsafe { write32(a, 0x04, cmd & !0x3 & 0xffff) };
    // Every BAR write below happens with decoding off and is followed by the write that
    // restores the BAR's old value, before decoding is turned back on at the end.
    let mut i = 0;
    while i < 6 {
        let off = 0x10 + 4 * i as u16;
        let orig = read32(a, off);
        // SAFETY: decoding is off and the next write restores the BAR (see above).
        unsafe { write32(a, off, 0xffff_ffff) };
        let probe = read32(a, off);
        // SAFETY: puts the BAR back as it was.
        unsafe { write32(a, off, orig) };
        if probe == 0 {
            i += 1;
            continue;
        }
        if orig & 1 == 1 {
            let size = (!(probe & 0xffff_fffc)).wrapping_add(1) & 0xffff;
            bars[i] = Some(Bar::Io {
                port: (orig & 0xfffc) as u16,
                size,
            });
            i += 1;
            continue;
        }
        let is_64 = (orig >> 1) & 3 == 2;
        let prefetchable = orig & 8 != 0;
        let mut base = (orig & 0xffff_fff0) as u64;
        let mut mask = (probe & 0xffff_fff0) as u64 | 0xffff_ffff_0000_0000;
        if is_64 && i < 5 {
            let hoff = off + 4;
            let horig = read32(a, hoff);
            // SAFETY: as for the low half: decoding off, restored right after.
            unsafe { write32(a, hoff, 0xffff_ffff) };
            let hprobe = read32(a, hoff);
            // SAFETY: puts the upper half back as it was.
            unsafe { write32(a, hoff, horig) };
            base |= (horig as u64) << 32;
            mask = (mask & 0xffff_ffff) | ((hprobe as u64) << 32);
        }
        let size = (!mask).wrapping_add(1);
        bars[i] = Some(Bar::Memory {
            base,
            size,
            is_64,
            prefetchable,
        });
        i += if is_64 { 2 } else { 1 };
    }
    // SAFETY: every BAR holds its old value again, so restoring the command register's
    // decoding bits moves nothing.
    unsafe { write32(a, 0x04, cmd & 0xffff) };
    bars
}

fn probe(a: PciAddress) -> Option<PciFunction> {
    let id = read32(a, 0x00);
    if id & 0xffff == 0xffff {
        return None;
    }
    let class = read32(a, 0x08) >> 8;
    let header = (read32(a, 0x0c) >> 16) & 0x7f;
    Some(PciFunction {
        bus: a.bus,
        device: a.device,
        function: a.function,
        vendor: id as u16,
        device_id: (id >> 16) as u16,
        class,
        bars: if header == 0 { read_bars(a) } else { [None; 6] },
    })
}

/// Sets up configuration access and scans every bus. Returns the functions and whether
/// ECAM is used. Runs once, at boot (crate-private: it sizes BARs under running drivers).
pub(crate) fn init(ecam: Option<Ecam>) -> (&'static [PciFunction], bool) {
    if let Some(e) = ecam {
        let len = ((e.bus_end as u64 - e.bus_start as u64) + 1) << 20;
        let base = e.base + ((e.bus_start as u64) << 20);
        if let Err(err) = crate::mem::map_mmio(base, len) {
            crate::console::warn!("pci: cannot map ECAM ({err}); using legacy ports");
            ECAM.call_once(|| None);
        }
    }
    let ecam = *ECAM.call_once(|| ecam);
    const NONE: PciFunction = PciFunction {
        bus: 0,
        device: 0,
        function: 0,
        vendor: 0,
        device_id: 0,
        class: 0,
        bars: [None; 6],
    };
    let list = crate::mem::alloc_static_any([NONE; MAX_PCI_FUNCTIONS]);
    let mut count = 0;
    let buses = match ecam {
        Some(e) => e.bus_start..=e.bus_end,
        None => 0..=255,
    };
    for bus in buses {
        for device in 0..32u8 {
            let a0 = PciAddress {
                bus,
                device,
                function: 0,
            };
            let Some(f0) = probe(a0) else { continue };
            let multi = (read32(a0, 0x0c) >> 16) & 0x80 != 0;
            let functions =
                core::iter::once(Some(f0)).chain((1..if multi { 8 } else { 1 }).map(|function| {
                    probe(PciAddress {
                        bus,
                        device,
                        function,
                    })
                }));
            for f in functions.flatten() {
                if count == MAX_PCI_FUNCTIONS {
                    crate::console::warn!(
                        "pci: more than {} functions; the rest are ignored",
                        MAX_PCI_FUNCTIONS
                    );
                    break;
                }
                list[count] = f;
                count += 1;
            }
        }
    }
    (&list[..count], ecam.is_some())
}
