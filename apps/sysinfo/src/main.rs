//! The default Ferrule image: prints what the machine has (memory, cores, PCI functions)
//! and ends successfully.
#![cfg_attr(target_os = "none", no_std, no_main)]

use core::fmt::Arguments;
use kernel::app::Bar;
use kernel::{App, AppError, Core, Machine};

/// Reports the machine from the boot core; the other cores just check in.
struct SysInfo {
    machine: &'static Machine,
}

/// A function's BARs on one line: ` bar0=mem:0xBASE,0xSIZE bar2=io:0xPORT,0xSIZE`.
struct Bars<'a>(&'a [Option<Bar>; 6]);

impl core::fmt::Display for Bars<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for (i, bar) in self.0.iter().enumerate() {
            match bar {
                Some(Bar::Memory {
                    base, size, is_64, ..
                }) => {
                    let kind = if *is_64 { "mem64" } else { "mem" };
                    write!(f, " bar{i}={kind}:{base:#x},{size:#x}")?
                }
                Some(Bar::Io { port, size }) => write!(f, " bar{i}=io:{port:#x},{size:#x}")?,
                None => {}
            }
        }
        Ok(())
    }
}

/// Writes the report, one line per call of `line`.
fn report(m: &Machine, mut line: impl FnMut(Arguments<'_>)) {
    line(format_args!(
        "machine: loader {}, TSC {} MHz",
        m.loader,
        m.tsc_hz / 1_000_000
    ));
    line(format_args!(
        "memory: {} MiB usable, {} MiB free",
        m.usable_memory >> 20,
        m.free_memory >> 20
    ));
    for c in m.cores {
        line(format_args!("core {} apic {}", c.id, c.apic_id));
    }
    let via = if m.pci_ecam { "ECAM" } else { "legacy ports" };
    line(format_args!("pci: {} functions via {}", m.pci.len(), via));
    for f in m.pci {
        line(format_args!("{f}{}", Bars(&f.bars)));
    }
}

impl App for SysInfo {
    fn init(machine: &'static Machine) -> SysInfo {
        SysInfo { machine }
    }

    fn run(&self, core: &Core) -> Result<(), AppError> {
        if core.id == 0 {
            #[cfg(target_os = "none")]
            report(self.machine, |args| kernel::println!("{args}"));
            #[cfg(not(target_os = "none"))]
            report(self.machine, |args| println!("{args}"));
        }
        Ok(())
    }
}

kernel::main!(SysInfo);
