//! The serial console: a 16550 UART on COM1 (115200 8N1) with log levels.
//!
//! Every core may print; lines are kept whole by a spin lock. The fatal paths (panic,
//! exception) write without the lock so a core that died holding it cannot silence them.

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicU8, Ordering};
use spin::Mutex;
use x86_64::instructions::port::{PortReadOnly, PortWriteOnly};

const COM1: u16 = 0x3f8;

/// Message severity, most severe first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Level {
    /// Something failed.
    Error = 0,
    /// Something is off but boot goes on.
    Warn = 1,
    /// Normal progress.
    Info = 2,
    /// Detail for debugging.
    Debug = 3,
}

static LEVEL: AtomicU8 = AtomicU8::new(Level::Info as u8);
static LOCK: Mutex<()> = Mutex::new(());

/// Shows messages up to `level` from now on.
pub fn set_level(level: Level) {
    LEVEL.store(level as u8, Ordering::Relaxed);
}

/// Whether messages of `level` are shown.
pub fn enabled(level: Level) -> bool {
    level as u8 <= LEVEL.load(Ordering::Relaxed)
}

/// Programs COM1 for 115200 8N1 with FIFOs.
pub fn init() {
    let mut data = PortWriteOnly::<u8>::new(COM1);
    let mut ier = PortWriteOnly::<u8>::new(COM1 + 1);
    let mut fcr = PortWriteOnly::<u8>::new(COM1 + 2);
    let mut lcr = PortWriteOnly::<u8>::new(COM1 + 3);
    let mut mcr = PortWriteOnly::<u8>::new(COM1 + 4);
    // SAFETY: COM1's eight registers belong to the console alone; programming the UART
    // changes how it sends bytes and touches no memory.
    unsafe {
        ier.write(0x00); // no interrupts
        lcr.write(0x80); // DLAB
        data.write(0x01); // divisor low byte: 1 = 115200
        ier.write(0x00); // divisor high byte
        lcr.write(0x03); // 8N1
        fcr.write(0xc7); // FIFO on, cleared, 14-byte threshold
        mcr.write(0x03); // DTR, RTS
    }
}

fn put(byte: u8) {
    let mut line_status = PortReadOnly::<u8>::new(COM1 + 5);
    let mut transmit = PortWriteOnly::<u8>::new(COM1);
    // Bounded wait for the transmit holding register; a missing UART must not hang boot.
    for _ in 0..100_000 {
        // SAFETY: reading COM1's line status register has no effect beyond the UART.
        if unsafe { line_status.read() } & 0x20 != 0 {
            break;
        }
        core::hint::spin_loop();
    }
    // SAFETY: COM1 belongs to the console; sending a byte touches no memory.
    unsafe { transmit.write(byte) }
}

/// A writer straight to the UART, without the lock (for fatal paths).
pub struct RawWriter;

impl Write for RawWriter {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            if b == b'\n' {
                put(b'\r');
            }
            put(b);
        }
        Ok(())
    }
}

/// Prints formatted text, holding the console lock for the whole call.
pub fn print(args: fmt::Arguments<'_>) {
    let _guard = LOCK.lock();
    let _ = RawWriter.write_fmt(args);
}

/// Prints formatted text at a level, prefixed with the level name.
pub fn log(level: Level, args: fmt::Arguments<'_>) {
    if !enabled(level) {
        return;
    }
    let tag = match level {
        Level::Error => "error: ",
        Level::Warn => "warning: ",
        Level::Info => "",
        Level::Debug => "debug: ",
    };
    let _guard = LOCK.lock();
    let _ = RawWriter.write_str(tag);
    let _ = RawWriter.write_fmt(args);
    let _ = RawWriter.write_str("\n");
}

/// Prints a line on the serial console.
#[macro_export]
macro_rules! println {
    () => { $crate::console::print(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::console::print(format_args!("{}\n", format_args!($($arg)*))) };
}

/// Logs at [`Level::Error`].
#[macro_export]
macro_rules! error {
    ($($arg:tt)*) => { $crate::console::log($crate::console::Level::Error, format_args!($($arg)*)) };
}

/// Logs at [`Level::Warn`].
#[macro_export]
macro_rules! warn {
    ($($arg:tt)*) => { $crate::console::log($crate::console::Level::Warn, format_args!($($arg)*)) };
}

/// Logs at [`Level::Info`].
#[macro_export]
macro_rules! info {
    ($($arg:tt)*) => { $crate::console::log($crate::console::Level::Info, format_args!($($arg)*)) };
}

/// Logs at [`Level::Debug`].
#[macro_export]
macro_rules! debug {
    ($($arg:tt)*) => { $crate::console::log($crate::console::Level::Debug, format_args!($($arg)*)) };
}

pub use crate::{debug, error, info, println, warn};
