//! Guest test app: reads an unmapped address. The run must end with the page-fault report
//! (`EXCEPTION: page fault (#PF)`, the faulting address and the registers) and the failure
//! status, not a hang or a triple fault.
#![cfg_attr(target_os = "none", no_std, no_main)]

use kernel::{App, AppError, Core, Machine};

/// Far above any RAM or MMIO Ferrule maps (64 TiB), so never present.
pub const UNMAPPED: u64 = 0x4000_0000_0000;

struct PageFault;

impl App for PageFault {
    fn init(_machine: &'static Machine) -> PageFault {
        PageFault
    }

    #[cfg(target_os = "none")]
    fn run(&self, core: &Core) -> Result<(), AppError> {
        if core.id == 0 {
            kernel::println!("pagefault: reading {UNMAPPED:#x}");
            // SAFETY: deliberately unsound: this read must fault, which is what the test checks.
            let value = unsafe { core::ptr::read_volatile(UNMAPPED as *const u64) };
            kernel::println!("pagefault: read {value:#x} without a fault");
            return Err(AppError("the unmapped read did not fault"));
        }
        Ok(())
    }

    #[cfg(not(target_os = "none"))]
    fn run(&self, _core: &Core) -> Result<(), AppError> {
        Ok(())
    }
}

kernel::main!(PageFault);
