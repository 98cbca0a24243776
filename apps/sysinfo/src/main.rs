//! The default Ferrule image: prints what the machine has (memory, cores, PCI functions)
//! and ends successfully.
#![cfg_attr(target_os = "none", no_std, no_main)]

use kernel::{App, AppError, Core, Machine};

/// Reports the machine from the boot core; the other cores just check in.
struct SysInfo {
    machine: &'static Machine,
}

impl App for SysInfo {
    fn init(machine: &'static Machine) -> SysInfo {
        SysInfo { machine }
    }

    #[cfg(target_os = "none")]
    fn run(&self, core: &Core) -> Result<(), AppError> {
        use kernel::app::Bar;
        use kernel::println;
        if core.id != 0 {
            return Ok(());
        }
        let m = self.machine;
        println!(
            "machine: loader {}, TSC {} MHz",
            m.loader,
            m.tsc_hz / 1_000_000
        );
        println!(
            "memory: {} MiB usable, {} MiB free",
            m.usable_memory >> 20,
            m.free_memory >> 20
        );
        for c in m.cores {
            println!("core {} apic {}", c.id, c.apic_id);
        }
        println!(
            "pci: {} functions via {}",
            m.pci.len(),
            if m.pci_ecam { "ECAM" } else { "legacy ports" }
        );
        for f in m.pci {
            println!("{f}");
            for (i, bar) in f.bars.iter().enumerate() {
                match bar {
                    Some(Bar::Memory {
                        base, size, is_64, ..
                    }) => {
                        println!(
                            "  bar{i} mem {base:#x} size {size:#x}{}",
                            if *is_64 { " 64-bit" } else { "" }
                        )
                    }
                    Some(Bar::Io { port, size }) => {
                        println!("  bar{i} io {port:#x} size {size:#x}")
                    }
                    None => {}
                }
            }
        }
        Ok(())
    }

    #[cfg(not(target_os = "none"))]
    fn run(&self, _core: &Core) -> Result<(), AppError> {
        Ok(())
    }
}

kernel::main!(SysInfo);
