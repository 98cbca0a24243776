//! Guest test app: panics on the boot core with a known message. The run must end with the
//! failure status and `PANIC: ferrule test panic 42 at <file>:<line>` on the console.
#![cfg_attr(target_os = "none", no_std, no_main)]

use kernel::{App, AppError, Core, Machine};

struct Panics;

impl App for Panics {
    fn init(_machine: &'static Machine) -> Panics {
        Panics
    }

    fn run(&self, core: &Core) -> Result<(), AppError> {
        if core.id == 0 {
            panic!("ferrule test panic {}", 42);
        }
        Ok(())
    }
}

kernel::main!(Panics);
