//! Guest test app: the last core (the boot core when there is one) recurses without end.
//! The run must end with `stack overflow on core N` naming the guard page below that core's
//! stack, and the failure status: not a hang, not a triple fault, not a silent corruption
//! of whatever lies below the stack.
#![cfg_attr(target_os = "none", no_std, no_main)]

use kernel::{App, AppError, Core, Machine};

struct StackOverflow {
    last_core: usize,
}

/// Each level keeps a 512-byte frame alive across the call, so the recursion cannot be
/// turned into a loop, and walks down the stack 512 bytes at a time.
#[cfg(target_os = "none")]
fn recurse(depth: u64) -> u64 {
    // A base case no stack can reach (it would take 2^64 frames).
    if depth == u64::MAX {
        return 0;
    }
    let frame = core::hint::black_box([depth as u8; 512]);
    let below = recurse(core::hint::black_box(depth + 1));
    below.wrapping_add(frame[(depth % 512) as usize] as u64)
}

impl App for StackOverflow {
    fn init(machine: &'static Machine) -> StackOverflow {
        StackOverflow {
            last_core: machine.cores.len() - 1,
        }
    }

    #[cfg(target_os = "none")]
    fn run(&self, core: &Core) -> Result<(), AppError> {
        if core.id == self.last_core {
            let here = 0u8;
            kernel::println!(
                "stack-overflow: core {} recursing from stack address {:#018x}",
                core.id,
                core::ptr::addr_of!(here) as u64
            );
            let sum = recurse(0);
            kernel::println!("stack-overflow: recursion returned {sum}");
            return Err(AppError("unbounded recursion returned"));
        }
        Ok(())
    }

    #[cfg(not(target_os = "none"))]
    fn run(&self, core: &Core) -> Result<(), AppError> {
        if core.id == self.last_core {
            return Err(AppError("the recursion runs only in the guest"));
        }
        Ok(())
    }
}

kernel::main!(StackOverflow);
