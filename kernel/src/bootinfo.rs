//! What the loader tells us: the memory map and the ACPI RSDP, from PVH or multiboot2.
//!
//! Parsing works on byte slices so it is tested on the host with literal structures; the boot
//! code turns the loader's pointers into slices. Malformed input gives a [`BootInfoError`],
//! never a panic.

use core::fmt;

/// Most memory-map entries kept (after merging neighbours of the same kind): e820 maps have
/// a few dozen, EFI maps a few hundred descriptors that merge to far fewer.
pub const MAX_REGIONS: usize = 256;

/// Magic value in `EAX` when GRUB (or any multiboot2 loader) enters the kernel.
pub const MULTIBOOT2_MAGIC: u32 = 0x36d7_6289;
/// Magic value at the start of Xen's `hvm_start_info` (PVH boot).
pub const PVH_MAGIC: u32 = 0x336e_c578;

/// What a memory range holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemKind {
    /// RAM free for the kernel.
    Usable,
    /// ACPI tables, reclaimable after they are read (kept as reserved here).
    AcpiReclaimable,
    /// ACPI non-volatile storage.
    AcpiNvs,
    /// Faulty RAM.
    Bad,
    /// Anything else: firmware, MMIO, holes.
    Reserved,
}

impl MemKind {
    /// Maps an EFI memory type (`EFI_MEMORY_DESCRIPTOR.Type`) as seen after
    /// `ExitBootServices`: the loader's and boot services' memory is free RAM again (the
    /// kernel image and the loader's information are reserved separately), runtime services
    /// and MMIO stay reserved.
    pub fn from_efi(kind: u32) -> MemKind {
        match kind {
            // LoaderCode, LoaderData, BootServicesCode, BootServicesData, ConventionalMemory.
            1..=4 | 7 => MemKind::Usable,
            8 => MemKind::Bad,
            9 => MemKind::AcpiReclaimable,
            10 => MemKind::AcpiNvs,
            // Reserved, runtime services, MMIO, port space, PAL code, persistent memory,
            // unaccepted memory and anything newer.
            _ => MemKind::Reserved,
        }
    }

    /// Maps the e820 / multiboot2 type number (they share numbering).
    pub fn from_e820(kind: u32) -> MemKind {
        match kind {
            1 => MemKind::Usable,
            3 => MemKind::AcpiReclaimable,
            4 => MemKind::AcpiNvs,
            5 => MemKind::Bad,
            _ => MemKind::Reserved,
        }
    }
}

/// One memory range `[start, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemRegion {
    /// First byte.
    pub start: u64,
    /// One past the last byte.
    pub end: u64,
    /// What the range holds.
    pub kind: MemKind,
}

/// Which loader started the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Loader {
    /// QEMU `-kernel` (or another PVH loader).
    Pvh,
    /// GRUB or another multiboot2 loader.
    Multiboot2,
}

impl Loader {
    /// Short name for the console.
    pub fn name(self) -> &'static str {
        match self {
            Loader::Pvh => "pvh",
            Loader::Multiboot2 => "multiboot2",
        }
    }
}

/// The parsed boot information.
#[derive(Clone, Debug)]
pub struct BootInfo {
    /// Which loader started us.
    pub loader: Loader,
    regions: [MemRegion; MAX_REGIONS],
    count: usize,
    /// Physical address of the ACPI RSDP, when the loader gave one.
    pub rsdp: Option<u64>,
    /// Physical range of the loader's own structures, which must not be reused while parsing.
    pub info_range: (u64, u64),
    /// Entries dropped because the map had more than [`MAX_REGIONS`].
    pub dropped_regions: usize,
    /// Whether the memory map came from the multiboot2 EFI memory map (tag 17), which is
    /// preferred to the e820-style one (tag 6) when a loader passes both.
    pub efi_memory_map: bool,
}

/// Why boot information could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootInfoError {
    /// Neither the multiboot2 nor the PVH magic matched.
    UnknownLoader,
    /// A structure is shorter than its header says.
    Truncated,
    /// A PVH start info older than version 1 carries no memory map.
    NoMemoryMap,
    /// A multiboot2 tag has an impossible size.
    BadTag,
}

impl fmt::Display for BootInfoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BootInfoError::UnknownLoader => "unknown loader: no multiboot2 or PVH magic",
            BootInfoError::Truncated => "boot information is truncated",
            BootInfoError::NoMemoryMap => "the loader passed no memory map",
            BootInfoError::BadTag => "malformed multiboot2 tag",
        })
    }
}

fn u32_at(b: &[u8], off: usize) -> Result<u32, BootInfoError> {
    let s = b.get(off..off + 4).ok_or(BootInfoError::Truncated)?;
    Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

fn u64_at(b: &[u8], off: usize) -> Result<u64, BootInfoError> {
    let s = b.get(off..off + 8).ok_or(BootInfoError::Truncated)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(s);
    Ok(u64::from_le_bytes(a))
}

impl BootInfo {
    fn new(loader: Loader) -> BootInfo {
        BootInfo {
            loader,
            regions: [MemRegion {
                start: 0,
                end: 0,
                kind: MemKind::Reserved,
            }; MAX_REGIONS],
            count: 0,
            rsdp: None,
            info_range: (0, 0),
            dropped_regions: 0,
            efi_memory_map: false,
        }
    }

    /// Adds a region; one that continues the previous region with the same kind extends it.
    fn push(&mut self, start: u64, len: u64, kind: MemKind) {
        let end = start.saturating_add(len);
        if end <= start {
            return;
        }
        if let Some(last) = self.regions[..self.count].last_mut() {
            if last.kind == kind && last.end == start {
                last.end = end;
                return;
            }
        }
        if self.count == MAX_REGIONS {
            self.dropped_regions += 1;
            return;
        }
        self.regions[self.count] = MemRegion { start, end, kind };
        self.count += 1;
    }

    fn clear_regions(&mut self) {
        self.count = 0;
        self.dropped_regions = 0;
    }

    /// The memory map as the loader gave it.
    pub fn regions(&self) -> &[MemRegion] {
        &self.regions[..self.count]
    }

    /// Total usable RAM in bytes.
    pub fn usable_bytes(&self) -> u64 {
        self.regions()
            .iter()
            .filter(|r| r.kind == MemKind::Usable)
            .map(|r| r.end - r.start)
            .sum()
    }

    /// Whether `[start, end)` overlaps a RAM-like region (usable, ACPI, faulty RAM: anything
    /// but `Reserved`). Such memory is never mapped as device registers.
    pub fn overlaps_ram(&self, start: u64, end: u64) -> bool {
        start < end
            && self
                .regions()
                .iter()
                .any(|r| r.kind != MemKind::Reserved && r.start < end && start < r.end)
    }

    /// Highest address covered by any RAM-like region.
    pub fn top_of_ram(&self) -> u64 {
        self.regions()
            .iter()
            .filter(|r| r.kind != MemKind::Reserved)
            .map(|r| r.end)
            .max()
            .unwrap_or(0)
    }

    /// Parses a multiboot2 information structure (`mbi` starts with `total_size`).
    ///
    /// Reads tag 6 (memory map), 17 (EFI memory map, preferred to tag 6 when both are
    /// present), 14/15 (ACPI RSDP copies; the address of the copy is kept, with `mbi_phys`
    /// the physical address of `mbi`).
    pub fn parse_multiboot2(mbi: &[u8], mbi_phys: u64) -> Result<BootInfo, BootInfoError> {
        let total = u32_at(mbi, 0)? as usize;
        if total < 8 || total > mbi.len() {
            return Err(BootInfoError::Truncated);
        }
        let mbi = &mbi[..total];
        let mut info = BootInfo::new(Loader::Multiboot2);
        info.info_range = (mbi_phys, mbi_phys + total as u64);
        let mut off = 8;
        let mut saw_mmap = false;
        while off + 8 <= total {
            let kind = u32_at(mbi, off)?;
            let size = u32_at(mbi, off + 4)? as usize;
            if size < 8 || off + size > total {
                return Err(BootInfoError::BadTag);
            }
            match kind {
                0 => break,
                6 if !info.efi_memory_map => {
                    let entry_size = u32_at(mbi, off + 8)? as usize;
                    if entry_size < 24 {
                        return Err(BootInfoError::BadTag);
                    }
                    let mut e = off + 16;
                    while e + entry_size <= off + size {
                        let kind = MemKind::from_e820(u32_at(mbi, e + 16)?);
                        info.push(u64_at(mbi, e)?, u64_at(mbi, e + 8)?, kind);
                        e += entry_size;
                    }
                    saw_mmap = true;
                }
                // The EFI memory map: descriptor size and version, then descriptors of at
                // least 40 bytes (type u32, padding, physical start, virtual start, number
                // of 4 KiB pages, attributes). It replaces an e820-style map seen before.
                17 => {
                    let desc_size = u32_at(mbi, off + 8)? as usize;
                    if desc_size < 40 {
                        return Err(BootInfoError::BadTag);
                    }
                    info.clear_regions();
                    info.efi_memory_map = true;
                    let mut e = off + 16;
                    while e + desc_size <= off + size {
                        let kind = MemKind::from_efi(u32_at(mbi, e)?);
                        let pages = u64_at(mbi, e + 24)?;
                        info.push(u64_at(mbi, e + 8)?, pages.saturating_mul(4096), kind);
                        e += desc_size;
                    }
                    saw_mmap = true;
                }
                // The new (ACPI 2.0+) RSDP wins over the old one when both are present.
                14 if info.rsdp.is_none() => info.rsdp = Some(mbi_phys + off as u64 + 8),
                15 => info.rsdp = Some(mbi_phys + off as u64 + 8),
                _ => {}
            }
            off += (size + 7) & !7;
        }
        if !saw_mmap {
            return Err(BootInfoError::NoMemoryMap);
        }
        Ok(info)
    }

    /// Parses a PVH `hvm_start_info` (`start_info`, at least 56 bytes) whose e820 table
    /// (`memmap_entries` entries of 24 bytes) is `memmap`.
    pub fn parse_pvh(
        start_info: &[u8],
        start_info_phys: u64,
        memmap: &[u8],
    ) -> Result<BootInfo, BootInfoError> {
        if u32_at(start_info, 0)? != PVH_MAGIC {
            return Err(BootInfoError::UnknownLoader);
        }
        let version = u32_at(start_info, 4)?;
        if version < 1 {
            return Err(BootInfoError::NoMemoryMap);
        }
        let mut info = BootInfo::new(Loader::Pvh);
        info.info_range = (start_info_phys, start_info_phys + 56);
        let rsdp = u64_at(start_info, 32)?;
        if rsdp != 0 {
            info.rsdp = Some(rsdp);
        }
        let entries = u32_at(start_info, 48)? as usize;
        for i in 0..entries {
            let e = i * 24;
            let kind = MemKind::from_e820(u32_at(memmap, e + 16)?);
            info.push(u64_at(memmap, e)?, u64_at(memmap, e + 8)?, kind);
        }
        Ok(info)
    }

    /// Where the PVH memory map lives and how many bytes it has, read from `start_info`.
    pub fn pvh_memmap_location(start_info: &[u8]) -> Result<(u64, usize), BootInfoError> {
        Ok((
            u64_at(start_info, 40)?,
            u32_at(start_info, 48)? as usize * 24,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(buf: &mut Vec<u8>, kind: u32, body: &[u8]) {
        buf.extend_from_slice(&kind.to_le_bytes());
        buf.extend_from_slice(&(8 + body.len() as u32).to_le_bytes());
        buf.extend_from_slice(body);
        while !buf.len().is_multiple_of(8) {
            buf.push(0);
        }
    }

    fn mmap_entry(body: &mut Vec<u8>, base: u64, len: u64, kind: u32) {
        body.extend_from_slice(&base.to_le_bytes());
        body.extend_from_slice(&len.to_le_bytes());
        body.extend_from_slice(&kind.to_le_bytes());
        body.extend_from_slice(&0u32.to_le_bytes());
    }

    fn multiboot2_info() -> Vec<u8> {
        let mut b = vec![0u8; 8];
        tag(&mut b, 1, b"grub\0"); // command line: ignored
        let mut mmap = Vec::new();
        mmap.extend_from_slice(&24u32.to_le_bytes());
        mmap.extend_from_slice(&0u32.to_le_bytes());
        mmap_entry(&mut mmap, 0, 0x9fc00, 1);
        mmap_entry(&mut mmap, 0x9fc00, 0x400, 2);
        mmap_entry(&mut mmap, 0x100000, 0x7ee0000, 1);
        mmap_entry(&mut mmap, 0x7fe0000, 0x20000, 3);
        tag(&mut b, 6, &mmap);
        tag(&mut b, 14, b"RSD PTR \0\0\0\0\0\0\0\0\0\0\0\0");
        tag(
            &mut b,
            15,
            b"RSD PTR \0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0",
        );
        tag(&mut b, 0, &[]);
        let total = b.len() as u32;
        b[..4].copy_from_slice(&total.to_le_bytes());
        b
    }

    #[test]
    fn multiboot2_memory_map_and_rsdp() {
        let b = multiboot2_info();
        let info = BootInfo::parse_multiboot2(&b, 0x10000).unwrap();
        assert_eq!(info.loader, Loader::Multiboot2);
        assert_eq!(info.regions().len(), 4);
        assert_eq!(info.regions()[2].start, 0x100000);
        assert_eq!(info.regions()[2].end, 0x7fe0000);
        assert_eq!(info.regions()[3].kind, MemKind::AcpiReclaimable);
        assert_eq!(info.usable_bytes(), 0x9fc00 + 0x7ee0000);
        // The tag-15 copy (new RSDP) wins; it sits 8 bytes into its tag.
        let off15 = b.windows(8).rposition(|w| w == b"RSD PTR ").unwrap() as u64;
        assert_eq!(info.rsdp, Some(0x10000 + off15));
        assert_eq!(info.info_range, (0x10000, 0x10000 + b.len() as u64));
    }

    #[test]
    fn ram_overlap_counts_every_ram_kind_and_no_hole() {
        let info = BootInfo::parse_multiboot2(&multiboot2_info(), 0x10000).unwrap();
        // Usable RAM, its last byte, and the ACPI tables at the top are RAM.
        assert!(info.overlaps_ram(0x200000, 0x400000));
        assert!(info.overlaps_ram(0x9fbff, 0xa0000));
        assert!(info.overlaps_ram(0x7fff000, 0x8000000));
        // A range straddling RAM's end is refused as a whole.
        assert!(info.overlaps_ram(0x7f00000, 0x9000000));
        // The reserved EBDA, the VGA/ROM hole, the space above RAM and empty ranges are not.
        assert!(!info.overlaps_ram(0x9fc00, 0x100000));
        assert!(!info.overlaps_ram(0x8000000, 0x9000000));
        assert!(!info.overlaps_ram(0xfeb0_0000, 0xfec0_0000));
        assert!(!info.overlaps_ram(0x200000, 0x200000));
    }

    #[test]
    fn multiboot2_truncated_and_bad_tags_are_errors() {
        let b = multiboot2_info();
        for cut in [0, 4, 8, 20, b.len() - 1] {
            assert!(
                BootInfo::parse_multiboot2(&b[..cut], 0).is_err(),
                "cut {cut}"
            );
        }
        let mut bad = b.clone();
        bad[12..16].copy_from_slice(&4u32.to_le_bytes()); // first tag size 4 < 8
        assert_eq!(
            BootInfo::parse_multiboot2(&bad, 0).unwrap_err(),
            BootInfoError::BadTag
        );
        let mut huge = b.clone();
        huge[12..16].copy_from_slice(&0xffff_fff0u32.to_le_bytes());
        assert_eq!(
            BootInfo::parse_multiboot2(&huge, 0).unwrap_err(),
            BootInfoError::BadTag
        );
    }

    fn efi_desc(body: &mut Vec<u8>, desc_size: usize, kind: u32, start: u64, pages: u64) {
        let at = body.len();
        body.extend_from_slice(&kind.to_le_bytes());
        body.extend_from_slice(&0u32.to_le_bytes());
        body.extend_from_slice(&start.to_le_bytes());
        body.extend_from_slice(&0xdead_0000u64.to_le_bytes()); // virtual start: ignored
        body.extend_from_slice(&pages.to_le_bytes());
        body.extend_from_slice(&0xfu64.to_le_bytes()); // attributes: ignored
        body.resize(at + desc_size, 0xee);
    }

    /// An EFI memory map as OVMF hands it over (48-byte descriptors), with RAM above 4 GiB.
    fn efi_mmap_tag_body() -> Vec<u8> {
        let mut t = Vec::new();
        t.extend_from_slice(&48u32.to_le_bytes());
        t.extend_from_slice(&1u32.to_le_bytes());
        efi_desc(&mut t, 48, 3, 0, 1); // boot services code: free again
        efi_desc(&mut t, 48, 7, 0x1000, 0x9f); // conventional, merges with the page before
        efi_desc(&mut t, 48, 0, 0xa0000, 0x60); // reserved
        efi_desc(&mut t, 48, 7, 0x100000, 0x700); // conventional
        efi_desc(&mut t, 48, 2, 0x800000, 0x100); // loader data (GRUB, the kernel)
        efi_desc(&mut t, 48, 4, 0x900000, 0x7000); // boot services data
        efi_desc(&mut t, 48, 9, 0x7900000, 0x10); // ACPI reclaim
        efi_desc(&mut t, 48, 10, 0x7910000, 0x80); // ACPI NVS
        efi_desc(&mut t, 48, 6, 0x7990000, 0x20); // runtime services data
        efi_desc(&mut t, 48, 11, 0xffc0_0000, 0x400); // flash MMIO
        efi_desc(&mut t, 48, 7, 0x1_0000_0000, 0x10_0000); // 4 GiB of RAM above 4 GiB
        efi_desc(&mut t, 48, 8, 0x2_0000_0000, 1); // one bad page
        t
    }

    fn multiboot2_with(tags: &[(u32, Vec<u8>)]) -> Vec<u8> {
        let mut b = vec![0u8; 8];
        for (kind, body) in tags {
            tag(&mut b, *kind, body);
        }
        tag(&mut b, 0, &[]);
        let total = b.len() as u32;
        b[..4].copy_from_slice(&total.to_le_bytes());
        b
    }

    #[test]
    fn efi_memory_map_is_parsed_and_preferred_to_e820() {
        let mut e820 = Vec::new();
        e820.extend_from_slice(&24u32.to_le_bytes());
        e820.extend_from_slice(&0u32.to_le_bytes());
        mmap_entry(&mut e820, 0, 0x9fc00, 1);
        mmap_entry(&mut e820, 0x100000, 0x1000000, 1);
        let want = [
            (0, 0xa0000, MemKind::Usable),
            (0xa0000, 0x100000, MemKind::Reserved),
            (0x100000, 0x7900000, MemKind::Usable),
            (0x7900000, 0x7910000, MemKind::AcpiReclaimable),
            (0x7910000, 0x7990000, MemKind::AcpiNvs),
            (0x7990000, 0x79b0000, MemKind::Reserved),
            (0xffc0_0000, 0x1_0000_0000, MemKind::Reserved),
            (0x1_0000_0000, 0x2_0000_0000, MemKind::Usable),
            (0x2_0000_0000, 0x2_0000_1000, MemKind::Bad),
        ];
        // Either order of the two tags: the EFI map wins.
        for tags in [
            vec![(6, e820.clone()), (17, efi_mmap_tag_body())],
            vec![(17, efi_mmap_tag_body()), (6, e820.clone())],
        ] {
            let info = BootInfo::parse_multiboot2(&multiboot2_with(&tags), 0x10000).unwrap();
            assert!(info.efi_memory_map);
            let got: Vec<(u64, u64, MemKind)> = info
                .regions()
                .iter()
                .map(|r| (r.start, r.end, r.kind))
                .collect();
            assert_eq!(got, want);
            assert_eq!(info.usable_bytes(), 0xa0000 + 0x7800000 + 0x1_0000_0000);
            assert_eq!(info.top_of_ram(), 0x2_0000_1000);
            assert_eq!(info.dropped_regions, 0);
        }
        // Only the e820 map: used, and said so.
        let info = BootInfo::parse_multiboot2(&multiboot2_with(&[(6, e820)]), 0).unwrap();
        assert!(!info.efi_memory_map);
        assert_eq!(info.usable_bytes(), 0x9fc00 + 0x1000000);
    }

    #[test]
    fn efi_memory_map_bad_descriptor_size_and_truncation_are_errors() {
        let mut small = efi_mmap_tag_body();
        small[..4].copy_from_slice(&39u32.to_le_bytes());
        assert_eq!(
            BootInfo::parse_multiboot2(&multiboot2_with(&[(17, small)]), 0).unwrap_err(),
            BootInfoError::BadTag
        );
        let b = multiboot2_with(&[(17, efi_mmap_tag_body())]);
        for cut in [12, 40, b.len() - 9] {
            assert!(
                BootInfo::parse_multiboot2(&b[..cut], 0).is_err(),
                "cut {cut}"
            );
        }
        // A partial last descriptor is ignored, not read past the tag.
        let mut body = efi_mmap_tag_body();
        body.truncate(body.len() - 8);
        let info = BootInfo::parse_multiboot2(&multiboot2_with(&[(17, body)]), 0).unwrap();
        assert_eq!(info.top_of_ram(), 0x2_0000_0000);
    }

    #[test]
    fn pvh_start_info() {
        let mut si = vec![0u8; 56];
        si[0..4].copy_from_slice(&PVH_MAGIC.to_le_bytes());
        si[4..8].copy_from_slice(&1u32.to_le_bytes());
        si[32..40].copy_from_slice(&0xf5a30u64.to_le_bytes());
        si[40..48].copy_from_slice(&0x1000u64.to_le_bytes());
        si[48..52].copy_from_slice(&2u32.to_le_bytes());
        let mut mm = Vec::new();
        mmap_entry(&mut mm, 0, 0x9fc00, 1);
        mmap_entry(&mut mm, 0x100000, 0xff00000, 1);
        assert_eq!(BootInfo::pvh_memmap_location(&si).unwrap(), (0x1000, 48));
        let info = BootInfo::parse_pvh(&si, 0x5000, &mm).unwrap();
        assert_eq!(info.loader, Loader::Pvh);
        assert_eq!(info.rsdp, Some(0xf5a30));
        assert_eq!(info.regions().len(), 2);
        assert_eq!(info.top_of_ram(), 0x10000000);
        assert_eq!(
            BootInfo::parse_pvh(&si, 0, &mm[..30]).unwrap_err(),
            BootInfoError::Truncated
        );
        si[0] ^= 1;
        assert_eq!(
            BootInfo::parse_pvh(&si, 0, &mm).unwrap_err(),
            BootInfoError::UnknownLoader
        );
    }
}
