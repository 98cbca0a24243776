//! Integration tests that boot Ferrule images in QEMU. The tests live in `tests/tests/`; the
//! guest test apps in `tests/apps/`.
//!
//! This library holds what the tests share: guest builds cached per test run (each app and
//! the default disk image are built once per test binary, not once per test), a global limit
//! of QEMU instances (CI has 2 cores; at most [`MAX_QEMUS`] run at once), boot timeouts sized
//! for TCG on a loaded 2-core machine, and console-reading helpers whose failures carry the
//! whole transcript.
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::Duration;

use image::{App, Verbosity};
use qemu::{Config, ExitStatus, Firmware, Qemu};

/// At most this many QEMUs run at once in one test binary (cargo runs test binaries one
/// after another). `FERRULE_QEMU_JOBS` overrides it.
pub const MAX_QEMUS: usize = 2;

/// Hard timeout of a direct (`-kernel`) boot under TCG.
pub const DIRECT_TIMEOUT: Duration = Duration::from_secs(60);
/// Hard timeout of a disk boot through SeaBIOS and GRUB under TCG.
pub const SEABIOS_TIMEOUT: Duration = Duration::from_secs(120);
/// Hard timeout of a disk boot through OVMF and GRUB under TCG (OVMF alone takes ~5 s).
pub const OVMF_TIMEOUT: Duration = Duration::from_secs(180);

type BuildResult = Result<PathBuf, String>;

fn cache() -> &'static Mutex<HashMap<String, Arc<OnceLock<BuildResult>>>> {
    static CACHE: OnceLock<Mutex<HashMap<String, Arc<OnceLock<BuildResult>>>>> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Runs `make` once per `key` in this process; later callers get the same result.
fn cached(key: &str, make: impl FnOnce() -> BuildResult) -> PathBuf {
    let cell = {
        let mut m = cache().lock().unwrap_or_else(|e| e.into_inner());
        Arc::clone(m.entry(key.to_string()).or_default())
    };
    match cell.get_or_init(make) {
        Ok(p) => p.clone(),
        Err(e) => panic!("building {key} failed: {e}"),
    }
}

/// The ELF of a workspace app (e.g. `sysinfo`), built once per test binary.
pub fn app_elf(package: &str) -> PathBuf {
    cached(&format!("package {package}"), || {
        image::build_app(&App::Package(package.into()), Verbosity::Quiet).map_err(|e| e.to_string())
    })
}

/// The ELF of a guest test app in `tests/apps/<name>`, built once per test binary.
pub fn test_app_elf(name: &str) -> PathBuf {
    let dir = image::workspace_root()
        .join("tests")
        .join("apps")
        .join(name);
    cached(&format!("test app {name}"), || {
        image::build_app(&App::Path(dir), Verbosity::Quiet).map_err(|e| e.to_string())
    })
}

/// The disk image of the default app, built once per test binary.
pub fn default_disk_image() -> PathBuf {
    let elf = app_elf(image::build::DEFAULT_APP);
    cached("default disk image", || {
        let out = image::build::guest_target_dir().join("test-images");
        image::make_disk_image(&elf, &image::image_path_for(&elf, &out)).map_err(|e| e.to_string())
    })
}

/// A counting semaphore limiting concurrent QEMUs.
struct Slots {
    used: Mutex<usize>,
    freed: Condvar,
    max: usize,
}

fn slots() -> &'static Slots {
    static SLOTS: OnceLock<Slots> = OnceLock::new();
    SLOTS.get_or_init(|| Slots {
        used: Mutex::new(0),
        freed: Condvar::new(),
        max: std::env::var("FERRULE_QEMU_JOBS")
            .ok()
            .and_then(|v| v.parse().ok())
            .filter(|&n| n > 0)
            .unwrap_or(MAX_QEMUS),
    })
}

/// A held QEMU slot; released on drop.
pub struct Slot(());

impl Slot {
    /// Waits for a free slot.
    pub fn acquire() -> Slot {
        let s = slots();
        let mut used = s.used.lock().unwrap_or_else(|e| e.into_inner());
        while *used >= s.max {
            used = s.freed.wait(used).unwrap_or_else(|e| e.into_inner());
        }
        *used += 1;
        Slot(())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let s = slots();
        let mut used = s.used.lock().unwrap_or_else(|e| e.into_inner());
        *used -= 1;
        s.freed.notify_one();
    }
}

/// A running VM holding a QEMU slot. Derefs to [`Qemu`].
pub struct Vm {
    qemu: Qemu,
    _slot: Slot,
}

impl std::ops::Deref for Vm {
    type Target = Qemu;
    fn deref(&self) -> &Qemu {
        &self.qemu
    }
}

impl std::ops::DerefMut for Vm {
    fn deref_mut(&mut self) -> &mut Qemu {
        &mut self.qemu
    }
}

/// The hard timeout that fits a configuration's firmware.
pub fn timeout_for(firmware: Firmware) -> Duration {
    match firmware {
        Firmware::Direct => DIRECT_TIMEOUT,
        Firmware::SeaBios => SEABIOS_TIMEOUT,
        Firmware::Ovmf => OVMF_TIMEOUT,
    }
}

/// Starts QEMU once a slot is free. Panics with QEMU's error if it cannot start.
pub fn boot(config: Config) -> Vm {
    let slot = Slot::acquire();
    let qemu = Qemu::start(config).unwrap_or_else(|e| panic!("QEMU did not start: {e}"));
    Vm { qemu, _slot: slot }
}

impl Vm {
    /// Waits for a console line satisfying `pred` within the run's hard timeout; panics with
    /// `what` and the transcript otherwise.
    pub fn expect_line(&mut self, what: &str, pred: impl FnMut(&str) -> bool) -> String {
        let t = self.qemu.config().timeout;
        self.qemu
            .wait_for_line(t, pred)
            .unwrap_or_else(|e| panic!("expected {what}: {e}"))
    }

    /// Waits for QEMU to end and panics (with the transcript) unless it ended with `want`.
    pub fn expect_exit(&mut self, want: ExitStatus) {
        let got = self.qemu.wait_exit();
        assert_eq!(
            got,
            want,
            "unexpected end of run; console:\n{}",
            self.qemu.report()
        );
    }

    /// Every console line seen so far.
    pub fn lines(&self) -> Vec<String> {
        self.qemu.transcript().lines().map(String::from).collect()
    }
}

/// Writes a tiny hand-assembled multiboot (v1) guest that halts forever without printing:
/// booted with the same machine and devices as a real image, it lets a test ask QEMU's
/// monitor what the firmware set up (e.g. BARs) to compare with what the kernel reports.
pub fn halting_guest(dir: &std::path::Path) -> PathBuf {
    const LOAD: u32 = 0x10_0000;
    let magic: u32 = 0x1BAD_B002;
    let flags: u32 = 1 << 16;
    let mut b = Vec::new();
    let header = [
        magic,
        flags,
        0u32.wrapping_sub(magic.wrapping_add(flags)),
        LOAD,
        LOAD,
        0,
        0,
        LOAD + 32,
    ];
    for v in header {
        b.extend_from_slice(&v.to_le_bytes());
    }
    b.extend_from_slice(&[0xFA, 0xF4, 0xEB, 0xFD]); // cli; hlt; jmp hlt
    b.resize(4096, 0);
    let p = dir.join("halt.bin");
    std::fs::write(&p, b).expect("write halting guest");
    p
}

/// BAR `n` (memory BARs only) of the device `vendor:device` in QEMU's `info pci` output.
pub fn info_pci_bar(info_pci: &str, vendor: u16, device: u16, n: u32) -> Option<u64> {
    let id = format!("{vendor:04x}:{device:04x}");
    let start = info_pci.find(&id)?;
    let block = &info_pci[start..];
    let block = block[1..]
        .find("Bus ")
        .map(|end| &block[..end + 1])
        .unwrap_or(block);
    let key = format!("BAR{n}:");
    let line = block.lines().find(|l| l.trim_start().starts_with(&key))?;
    let at = line.split(" at ").nth(1)?;
    let hex = at.split_whitespace().next()?.trim_start_matches("0x");
    u64::from_str_radix(hex, 16).ok()
}

/// One `pci BB:DD.F VVVV:DDDD class CCCCCC ...` console line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PciLine {
    /// `BB:DD.F`.
    pub address: String,
    /// Vendor id.
    pub vendor: u16,
    /// Device id.
    pub device: u16,
    /// Class, subclass, prog-if.
    pub class: u32,
    /// Whatever follows the class (e.g. BARs).
    pub rest: String,
}

/// Parses a console line of the PCI convention (ARCHITECTURE.md).
pub fn parse_pci_line(line: &str) -> Option<PciLine> {
    let mut w = line.split_whitespace();
    if w.next()? != "pci" {
        return None;
    }
    let address = w.next()?.to_string();
    let (v, d) = w.next()?.split_once(':')?;
    if w.next()? != "class" {
        return None;
    }
    let class = u32::from_str_radix(w.next()?, 16).ok()?;
    let rest = w.collect::<Vec<_>>().join(" ");
    let valid_addr =
        address.len() == 7 && address.as_bytes()[2] == b':' && address.as_bytes()[5] == b'.';
    if !valid_addr {
        return None;
    }
    Some(PciLine {
        address,
        vendor: u16::from_str_radix(v, 16).ok()?,
        device: u16::from_str_radix(d, 16).ok()?,
        class,
        rest,
    })
}

/// The `N` of a `cores online: N` line.
pub fn parse_cores_online(line: &str) -> Option<u32> {
    line.trim()
        .strip_prefix("cores online:")?
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_lines_parse() {
        let l = parse_pci_line("pci 00:02.0 8086:10c9 class 020000 bar0=0xfeb80000").unwrap();
        assert_eq!(l.address, "00:02.0");
        assert_eq!((l.vendor, l.device, l.class), (0x8086, 0x10c9, 0x020000));
        assert_eq!(l.rest, "bar0=0xfeb80000");
        assert!(parse_pci_line("pci 8086:10c9").is_none());
        assert!(parse_pci_line("pcie 00:02.0 8086:10c9 class 020000").is_none());
        assert_eq!(parse_cores_online("cores online: 4"), Some(4));
        assert_eq!(parse_cores_online("cores online: x"), None);
        assert_eq!(parse_cores_online("cores: 4"), None);
    }

    #[test]
    fn info_pci_bars_parse() {
        let info = "  Bus  0, device   1, function 0:\n    VGA controller: PCI device 1234:1111\n      BAR0: 32 bit prefetchable memory at 0xfd000000 [0xfdffffff].\n  Bus  0, device   5, function 0:\n    Ethernet controller: PCI device 8086:10c9\n      IRQ 11, pin A\n      BAR0: 32 bit memory at 0xfeb80000 [0xfeb9ffff].\n      BAR2: I/O at 0xc000 [0xc01f].\n      BAR3: 32 bit memory at 0xfebc0000 [0xfebc3fff].\n      id \"nic0\"\n";
        assert_eq!(info_pci_bar(info, 0x8086, 0x10c9, 0), Some(0xfeb80000));
        assert_eq!(info_pci_bar(info, 0x8086, 0x10c9, 3), Some(0xfebc0000));
        assert_eq!(info_pci_bar(info, 0x1234, 0x1111, 0), Some(0xfd000000));
        assert_eq!(info_pci_bar(info, 0x8086, 0x10d3, 0), None);
    }

    #[test]
    fn slots_limit_concurrency() {
        let a = Slot::acquire();
        let b = Slot::acquire();
        let (tx, rx) = std::sync::mpsc::channel();
        let t = std::thread::spawn(move || {
            let _c = Slot::acquire();
            tx.send(()).unwrap();
        });
        assert!(rx.recv_timeout(Duration::from_millis(200)).is_err());
        drop(a);
        rx.recv_timeout(Duration::from_secs(5)).unwrap();
        t.join().unwrap();
        drop(b);
    }
}
