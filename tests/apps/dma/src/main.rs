//! Guest test app: DMA allocations are physically contiguous, aligned, disjoint and
//! translate both ways. Prints `dma ok: N regions` and succeeds, or `dma FAIL: ...` and fails.
#![cfg_attr(target_os = "none", no_std, no_main)]

use kernel::{App, AppError, Core, Machine};

struct DmaCheck;

impl App for DmaCheck {
    fn init(_machine: &'static Machine) -> DmaCheck {
        DmaCheck
    }

    #[cfg(target_os = "none")]
    fn run(&self, core: &Core) -> Result<(), AppError> {
        use kernel::mem::{dma_alloc, map_mmio, translate, MapError};
        if core.id != 0 {
            return Ok(());
        }
        // (length, alignment): ring-sized, buffer-pool-sized and odd-sized requests.
        let requests = [
            (16 * 512, 128),
            (2048 * 1024, 2 << 20),
            (4096, 4096),
            (3 * 4096 + 17, 8192),
            (1 << 20, 1 << 16),
            (100, 64),
        ];
        let mut seen: [(u64, u64); 6] = [(0, 0); 6];
        for (i, &(len, align)) in requests.iter().enumerate() {
            let r = dma_alloc(len, align).map_err(|_| fail("allocation failed"))?;
            let virt = r.virt().as_ptr() as u64;
            if r.len() < len {
                return Err(fail("region shorter than asked"));
            }
            if r.phys() % align as u64 != 0 {
                return Err(fail("region not aligned"));
            }
            // Every page must translate to the next physical page: contiguous.
            for off in (0..r.len() as u64).step_by(4096) {
                if translate(virt + off) != Some(r.phys() + off) {
                    return Err(fail("not physically contiguous"));
                }
            }
            if translate(virt + r.len() as u64 - 1) != Some(r.phys() + r.len() as u64 - 1) {
                return Err(fail("last byte does not translate"));
            }
            // Physical → virtual: the identity map puts each byte at its physical address.
            // SAFETY: the region was just allocated for this app and is mapped writable.
            unsafe {
                core::ptr::write_volatile(r.virt().as_ptr(), 0xa5);
                if core::ptr::read_volatile(r.phys() as *const u8) != 0xa5 {
                    return Err(fail("physical address does not reach the same byte"));
                }
            }
            let end = r.phys() + r.len() as u64;
            if seen[..i].iter().any(|&(s, e)| r.phys() < e && s < end) {
                return Err(fail("regions overlap"));
            }
            seen[i] = (r.phys(), end);
            kernel::println!(
                "dma region {i}: phys {:#x} len {:#x} align {:#x}",
                r.phys(),
                r.len(),
                align
            );
        }
        // RAM is never handed out as a register window: a DMA region is RAM.
        let r = dma_alloc(4096, 4096).map_err(|_| fail("allocation failed"))?;
        match map_mmio(r.phys(), r.len() as u64) {
            Err(MapError::Ram) => kernel::println!("dma map_mmio over RAM refused"),
            Ok(_) => return Err(fail("map_mmio mapped RAM as registers")),
            Err(_) => return Err(fail("map_mmio over RAM failed with the wrong error")),
        }
        if translate(0).is_some() {
            return Err(fail("page 0 is mapped"));
        }
        kernel::println!("dma ok: {} regions", requests.len());
        Ok(())
    }

    #[cfg(not(target_os = "none"))]
    fn run(&self, _core: &Core) -> Result<(), AppError> {
        Ok(())
    }
}

#[cfg(target_os = "none")]
fn fail(why: &'static str) -> AppError {
    kernel::println!("dma FAIL: {why}");
    AppError(why)
}

kernel::main!(DmaCheck);
