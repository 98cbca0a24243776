//! Ferrule's kernel: boot, memory, cores, PCI, serial and time for x86_64.
//!
//! Owns the machine from the first instruction: the 32→64-bit trampoline (PVH and multiboot2),
//! paging, the frame and DMA allocators, ACPI, SMP bring-up, PCI enumeration, the serial
//! console and the monotonic clock. It must not contain NIC drivers (see `drivers`) or flow
//! logic (see `monitor`).
//!
//! An application is an ordinary crate with a type implementing [`App`] and one line,
//! `kernel::main!(MyApp);`. The boot core brings up every core, calls [`App::init`] once,
//! then runs [`App::run`] on every core with that core's [`Core`]. When all have returned the
//! image exits (in QEMU through `isa-debug-exit`) or halts on bare metal.
//!
//! The memory-map parsing ([`bootinfo`]) and the frame allocator ([`frames`]) are plain
//! logic and are unit-tested on the host; everything that touches hardware is compiled only
//! for `target_os = "none"`. `unsafe` lives in `arch` (boot, descriptor tables, APIC), `mem`
//! (page tables, DMA), `pci` (configuration space), `acpi` (table mapping) and wherever a
//! module drives its own I/O ports (`console`, `time`, `exit`, `pci`).
//!
//! # The unsafe boundary
//!
//! No safe function reaches an arbitrary I/O port. Port I/O goes through the `x86_64`
//! crate's typed ports, whose every access is `unsafe` and so carries a `// SAFETY:` note
//! naming the device it drives; there is no safe `outb` to write, say, the reset port:
//!
//! ```compile_fail,E0133
//! let mut reset = x86_64::instructions::port::PortWriteOnly::<u8>::new(0xcf9);
//! reset.write(0x0e);
//! ```
#![cfg_attr(not(test), no_std)]

pub mod app;
pub mod bootinfo;
pub mod frames;
pub mod rtc;

#[cfg(target_os = "none")]
mod acpi;
#[cfg(target_os = "none")]
pub mod arch;
#[cfg(target_os = "none")]
pub mod console;
#[cfg(target_os = "none")]
pub mod exit;
#[cfg(target_os = "none")]
pub mod mem;
#[cfg(target_os = "none")]
pub mod nic;
#[cfg(target_os = "none")]
pub mod pci;
#[cfg(target_os = "none")]
mod smp;
#[cfg(target_os = "none")]
pub mod time;

pub use app::{App, AppError, Core, Machine};

#[cfg(target_os = "none")]
pub use app::run;

/// Declares the application of an image: `kernel::main!(MyApp);`.
///
/// On `x86_64-unknown-none` it provides the panic handler and the `ferrule_app_main` hook that
/// the boot code calls, which type-checks `MyApp: App` and hands control to [`run`]. On the
/// host it expands to a `main` that explains how to build the image, so the crate still builds
/// and lints with plain `cargo`.
#[macro_export]
macro_rules! main {
    ($app:ty) => {
        #[cfg(target_os = "none")]
        #[unsafe(no_mangle)]
        extern "C" fn ferrule_app_main() -> ! {
            $crate::run::<$app>()
        }

        #[cfg(target_os = "none")]
        #[panic_handler]
        fn panic(info: &core::panic::PanicInfo) -> ! {
            $crate::exit::panic(info)
        }

        #[cfg(not(target_os = "none"))]
        fn main() {
            // Type-checks the app on the host too.
            let _init: fn(&'static $crate::Machine) -> $app = <$app as $crate::App>::init;
            eprintln!(
                "{} is a Ferrule image: build it with `cargo ferrule build --app {}`",
                env!("CARGO_PKG_NAME"),
                env!("CARGO_PKG_NAME")
            );
            std::process::exit(2);
        }
    };
}
