//! The application interface: what an image's logic sees of the machine.
//!
//! [`Machine`] describes what the boot core found; [`Core`] is one core's identity, handed to
//! [`App::run`] on that core. Both are plain data so apps can be unit-tested on the host.

use core::fmt;

/// Most cores an image supports; cores beyond this in the MADT are reported and left off.
/// Per-core storage is allocated for the cores actually online, so a larger limit costs
/// only the MADT bookkeeping (4 bytes a core) and the guard-page registry (32 bytes a core).
pub const MAX_CORES: usize = 1024;
/// Most PCI functions recorded by the scan.
pub const MAX_PCI_FUNCTIONS: usize = 128;

/// One core as seen by the application.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Core {
    /// Dense core index: 0 is the boot core, then the others in MADT order.
    pub id: usize,
    /// The core's local APIC id.
    pub apic_id: u32,
}

/// A PCI base address register as found at boot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bar {
    /// Memory-mapped region.
    Memory {
        /// Physical base address.
        base: u64,
        /// Size in bytes.
        size: u64,
        /// Whether the BAR is 64 bits wide (it then uses the next BAR slot too).
        is_64: bool,
        /// Whether the region is prefetchable.
        prefetchable: bool,
    },
    /// I/O port region.
    Io {
        /// First port.
        port: u16,
        /// Number of ports.
        size: u32,
    },
}

/// A PCI function found by the boot scan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PciFunction {
    /// Bus number.
    pub bus: u8,
    /// Device number (0–31).
    pub device: u8,
    /// Function number (0–7).
    pub function: u8,
    /// Vendor id.
    pub vendor: u16,
    /// Device id.
    pub device_id: u16,
    /// Class code, subclass and programming interface (24 bits).
    pub class: u32,
    /// The six BAR slots of a type-0 header; `None` where unused or the upper half of a
    /// 64-bit BAR.
    pub bars: [Option<Bar>; 6],
}

impl fmt::Display for PciFunction {
    /// The console form tests and people read: `pci BB:DD.F VVVV:DDDD class CCCCCC`
    /// (lowercase hex).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "pci {:02x}:{:02x}.{:x} {:04x}:{:04x} class {:06x}",
            self.bus, self.device, self.function, self.vendor, self.device_id, self.class
        )
    }
}

/// What the boot core found: cores, memory and PCI functions.
#[derive(Debug)]
pub struct Machine {
    /// Cores that came online, boot core first.
    pub cores: &'static [Core],
    /// Cores listed in the MADT that did not come online (APIC ids).
    pub missing_apic_ids: &'static [u32],
    /// Usable RAM reported by the firmware, in bytes.
    pub usable_memory: u64,
    /// RAM still free for the application's own allocations (frames, DMA), in bytes.
    pub free_memory: u64,
    /// Which loader started the kernel.
    pub loader: &'static str,
    /// TSC frequency in Hz, as calibrated at boot.
    pub tsc_hz: u64,
    /// PCI functions found by the scan.
    pub pci: &'static [PciFunction],
    /// Whether PCI configuration space was reached through ECAM (else legacy ports).
    pub pci_ecam: bool,
}

/// Why an application failed on a core.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppError(pub &'static str);

impl fmt::Display for AppError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// The logic compiled into an image.
///
/// `init` runs once on the boot core after every core is online; `run` then runs on every
/// core, the boot core included, each with its own [`Core`]. An appliance's `run` loops
/// forever; a test or report app returns, and the image ends when every core has returned:
/// successfully if all returned `Ok`.
pub trait App: Sync + Sized + 'static {
    /// Builds the application on the boot core.
    fn init(machine: &'static Machine) -> Self;
    /// Runs on one core.
    fn run(&self, core: &Core) -> Result<(), AppError>;
}

#[cfg(target_os = "none")]
pub use boot_flow::run;

#[cfg(target_os = "none")]
mod boot_flow {
    use super::{App, AppError, Core, Machine};
    use crate::{console, exit, smp};
    use core::any::Any;
    use core::sync::atomic::{AtomicUsize, Ordering};
    use spin::Once;

    /// The machine description, built once by the boot core.
    static MACHINE: Once<Machine> = Once::new();
    /// The app instance, set once before the other cores are released.
    static APP: Once<&'static (dyn Any + Sync)> = Once::new();
    static FAILURES: AtomicUsize = AtomicUsize::new(0);
    static FINISHED: AtomicUsize = AtomicUsize::new(0);

    /// Runs application `A` on every core; never returns. Called by [`crate::main!`].
    pub fn run<A: App>() -> ! {
        let machine = MACHINE.call_once(crate::arch::boot_machine);
        let app: &'static A = crate::mem::alloc_static_any(A::init(machine));
        APP.call_once(|| app);
        smp::release_cores(ap_run::<A>);
        run_on_core(app, &machine.cores[0]);
        let total = machine.cores.len();
        while FINISHED.load(Ordering::Acquire) < total {
            core::hint::spin_loop();
        }
        let failures = FAILURES.load(Ordering::Acquire);
        if failures == 0 {
            console::println!("ferrule: app finished on {} cores", total);
            exit::finish(true)
        } else {
            console::println!("ferrule: app failed on {} of {} cores", failures, total);
            exit::finish(false)
        }
    }

    fn run_on_core<A: App>(app: &A, core: &Core) {
        if let Err(AppError(why)) = app.run(core) {
            console::println!("core {}: app failed: {}", core.id, why);
            FAILURES.fetch_add(1, Ordering::AcqRel);
        }
        FINISHED.fetch_add(1, Ordering::AcqRel);
    }

    /// Entry of every application processor once released.
    fn ap_run<A: App>(core: &Core) -> ! {
        // `run::<A>` stored an `A` before releasing this core, so both lookups succeed.
        match APP
            .get()
            .and_then(|&app| (app as &dyn Any).downcast_ref::<A>())
        {
            Some(app) => run_on_core(app, core),
            None => {
                console::println!("core {}: no application to run", core.id);
                FAILURES.fetch_add(1, Ordering::AcqRel);
                FINISHED.fetch_add(1, Ordering::AcqRel);
            }
        }
        crate::arch::halt_forever()
    }
}
