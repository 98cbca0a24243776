//! What to boot and on which virtual machine, and the QEMU command line that follows.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The firmware code image OVMF runs from (read-only pflash unit 0).
pub const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
/// The OVMF variable store template; every run gets its own writable copy (pflash unit 1).
pub const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";
/// The QEMU binary used unless `FERRULE_QEMU` names another.
pub const QEMU_BINARY: &str = "qemu-system-x86_64";
/// I/O port of the `isa-debug-exit` device (see ARCHITECTURE.md, "Exit").
pub const DEBUG_EXIT_IOBASE: u16 = 0xf4;

/// The QEMU machine type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Machine {
    /// `q35`: PCIe with ECAM (MCFG), AHCI disks.
    Q35,
    /// `pc` (i440FX): legacy PCI, port-I/O config space only.
    Pc,
}

impl Machine {
    /// The name QEMU's `-machine` takes.
    pub fn name(self) -> &'static str {
        match self {
            Machine::Q35 => "q35",
            Machine::Pc => "pc",
        }
    }
}

impl Machine {
    /// The most vCPUs QEMU 10 gives this machine (`-smp`): q35 4096, i440fx 255.
    pub fn max_cores(self) -> u32 {
        match self {
            Machine::Q35 => 4096,
            Machine::Pc => 255,
        }
    }
}

/// From this many vCPUs on, APIC ids go past 255 and the CPU model needs x2APIC
/// (`x2apic=on`, which [`Config::args`] adds). QEMU 10 needs nothing else, under TCG or KVM
/// (no split irqchip, no interrupt-remapping IOMMU: checked with 300 vCPUs on both).
pub const X2APIC_CORES: u32 = 256;

impl std::str::FromStr for Machine {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "q35" => Ok(Machine::Q35),
            "pc" | "i440fx" => Ok(Machine::Pc),
            _ => Err(format!("unknown machine `{s}` (expected q35 or pc)")),
        }
    }
}

/// How the guest is started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Firmware {
    /// QEMU loads the ELF itself (`-kernel`, PVH entry note); SeaBIOS still initialises PCI.
    Direct,
    /// The disk image boots through SeaBIOS (legacy BIOS, GRUB's i386-pc core).
    SeaBios,
    /// The disk image boots through OVMF (UEFI, GRUB's x86_64-efi core).
    Ovmf,
}

impl Firmware {
    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Firmware::Direct => "direct",
            Firmware::SeaBios => "seabios",
            Firmware::Ovmf => "ovmf",
        }
    }
}

impl std::str::FromStr for Firmware {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "direct" => Ok(Firmware::Direct),
            "seabios" | "bios" => Ok(Firmware::SeaBios),
            "ovmf" | "uefi" => Ok(Firmware::Ovmf),
            _ => Err(format!(
                "unknown firmware `{s}` (expected direct, seabios or ovmf)"
            )),
        }
    }
}

/// A NIC model QEMU emulates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NicModel {
    /// Intel 82576 (`igb`, 8086:10c9). Needs QEMU >= 8.0.
    Igb,
    /// `virtio-net-pci` (1af4:1000 transitional).
    VirtioNet,
    /// Intel 82574L (`e1000e`, 8086:10d3).
    E1000e,
}

impl NicModel {
    /// The QEMU `-device` driver name.
    pub fn device(self) -> &'static str {
        match self {
            NicModel::Igb => "igb",
            NicModel::VirtioNet => "virtio-net-pci",
            NicModel::E1000e => "e1000e",
        }
    }
}

impl std::str::FromStr for NicModel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "igb" => Ok(NicModel::Igb),
            "virtio" | "virtio-net" | "virtio-net-pci" => Ok(NicModel::VirtioNet),
            "e1000e" => Ok(NicModel::E1000e),
            _ => Err(format!(
                "unknown NIC model `{s}` (expected igb, virtio-net or e1000e)"
            )),
        }
    }
}

/// One NIC of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NicSpec {
    /// The emulated model.
    pub model: NicModel,
    /// PCI slot on bus 0 (`addr=`); QEMU picks the next free one when `None`.
    pub pci_slot: Option<u8>,
}

/// The PCI slot of NIC `index` when a run has several: 3, 5, 7, 9, 11, 13, then `None` (QEMU
/// picks). An igb's eight SR-IOV VFs take the two slots 16 above its own (VF offset 0x80,
/// stride 2), so igbs two slots apart never collide, and slots 19..=30 stay clear of q35's
/// ICH9 functions in slot 31.
pub fn spaced_nic_slot(index: usize) -> Option<u8> {
    (index < 6).then(|| 3 + 2 * index as u8)
}

/// What QEMU boots.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Boot {
    /// A guest ELF, loaded with `-kernel` (only with [`Firmware::Direct`]).
    Kernel(PathBuf),
    /// A raw disk image (e.g. from `image::make_disk_image`), attached as the first disk.
    Disk(PathBuf),
}

/// Everything that describes one QEMU run. Build with [`Config::kernel`] or [`Config::disk`]
/// and the `with_*` methods.
#[derive(Clone, Debug)]
pub struct Config {
    /// What to boot.
    pub boot: Boot,
    /// Machine type.
    pub machine: Machine,
    /// Firmware.
    pub firmware: Firmware,
    /// Number of virtual CPUs (`-smp`).
    pub cores: u32,
    /// Guest RAM in MiB.
    pub memory_mib: u32,
    /// NICs, in PCI order of appearance; NIC `i` is reached through [`crate::Qemu::nic`]`(i)`.
    pub nics: Vec<NicSpec>,
    /// Use KVM if asked and `/dev/kvm` opens; TCG otherwise.
    pub kvm: bool,
    /// Hard limit on the whole run: QEMU is killed after it.
    pub timeout: Duration,
    /// `-cpu` model; QEMU's default when `None`.
    pub cpu: Option<String>,
    /// Extra arguments appended verbatim (e.g. `-trace igb_*`).
    pub extra_args: Vec<OsString>,
}

impl Config {
    /// Boot `elf` directly (`-kernel`) on q35 with one core, 256 MiB, no NICs, 60 s timeout.
    pub fn kernel(elf: impl Into<PathBuf>) -> Config {
        Config::new(Boot::Kernel(elf.into()), Firmware::Direct)
    }

    /// Boot the disk image `img` through `firmware` (SeaBIOS or OVMF) on q35.
    pub fn disk(img: impl Into<PathBuf>, firmware: Firmware) -> Config {
        Config::new(Boot::Disk(img.into()), firmware)
    }

    fn new(boot: Boot, firmware: Firmware) -> Config {
        Config {
            boot,
            machine: Machine::Q35,
            firmware,
            cores: 1,
            memory_mib: 256,
            nics: Vec::new(),
            kvm: false,
            timeout: Duration::from_secs(60),
            cpu: None,
            extra_args: Vec::new(),
        }
    }

    /// Sets the machine type.
    pub fn with_machine(mut self, machine: Machine) -> Config {
        self.machine = machine;
        self
    }

    /// Sets the number of cores.
    pub fn with_cores(mut self, cores: u32) -> Config {
        self.cores = cores;
        self
    }

    /// Sets guest RAM in MiB.
    pub fn with_memory_mib(mut self, mib: u32) -> Config {
        self.memory_mib = mib;
        self
    }

    /// Adds a NIC (backed by a stream socket).
    pub fn with_nic(mut self, model: NicModel) -> Config {
        self.nics.push(NicSpec {
            model,
            pci_slot: None,
        });
        self
    }

    /// Adds a NIC in PCI slot `slot` of bus 0 (so tests know its address `00:SS.0`).
    pub fn with_nic_at(mut self, model: NicModel, slot: u8) -> Config {
        self.nics.push(NicSpec {
            model,
            pci_slot: Some(slot),
        });
        self
    }

    /// Adds several NICs, in order. With two or more, each gets the PCI slot
    /// [`spaced_nic_slot`] gives it: QEMU's own choice (the next free slot) puts a second igb
    /// where the first one's SR-IOV VFs live, and QEMU refuses to start.
    pub fn with_nics(self, models: &[NicModel]) -> Config {
        let several = models.len() > 1;
        models
            .iter()
            .enumerate()
            .fold(self, |c, (i, &model)| match spaced_nic_slot(i) {
                Some(slot) if several => c.with_nic_at(model, slot),
                _ => c.with_nic(model),
            })
    }

    /// Asks for KVM (used only when `/dev/kvm` works).
    pub fn with_kvm(mut self, kvm: bool) -> Config {
        self.kvm = kvm;
        self
    }

    /// Sets the hard timeout of the run.
    pub fn with_timeout(mut self, timeout: Duration) -> Config {
        self.timeout = timeout;
        self
    }

    /// Sets the `-cpu` model.
    pub fn with_cpu(mut self, cpu: impl Into<String>) -> Config {
        self.cpu = Some(cpu.into());
        self
    }

    /// Appends raw QEMU arguments.
    pub fn with_args<I, S>(mut self, args: I) -> Config
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.extra_args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Checks that the combination makes sense before QEMU is started.
    pub fn validate(&self) -> Result<(), String> {
        match (&self.boot, self.firmware) {
            (Boot::Kernel(_), Firmware::Direct) | (Boot::Disk(_), Firmware::SeaBios) => {}
            (Boot::Disk(_), Firmware::Ovmf) => {}
            (Boot::Kernel(_), f) => {
                return Err(format!(
                    "an ELF boots only directly; firmware `{}` needs a disk image",
                    f.name()
                ))
            }
            (Boot::Disk(_), Firmware::Direct) => {
                return Err("a disk image needs firmware seabios or ovmf, not direct".into())
            }
        }
        let max = self.machine.max_cores();
        if self.cores == 0 || self.cores > max {
            return Err(format!(
                "cores must be 1..={max} on machine {}, not {}",
                self.machine.name(),
                self.cores
            ));
        }
        if self.memory_mib < 32 {
            return Err(format!(
                "memory must be at least 32 MiB, not {}",
                self.memory_mib
            ));
        }
        Ok(())
    }

    /// The MAC address given to NIC `index`: locally administered, 52:54:00:12:34:(0x56+index).
    pub fn mac(index: usize) -> [u8; 6] {
        [
            0x52,
            0x54,
            0x00,
            0x12,
            0x34,
            0x56u8.wrapping_add(index as u8),
        ]
    }

    /// The QEMU arguments for this configuration. `run_dir` holds the run's sockets and the
    /// OVMF variable store; `accel_kvm` says whether KVM was found usable.
    pub fn args(&self, paths: &RunPaths, accel_kvm: bool) -> Vec<OsString> {
        let mut a: Vec<OsString> = Vec::new();
        let mut push = |s: &str| a.push(OsString::from(s));
        let x2apic = self.cores >= X2APIC_CORES;
        push("-machine");
        push(self.machine.name());
        push("-accel");
        push(if accel_kvm { "kvm" } else { "tcg" });
        match (&self.cpu, x2apic) {
            (Some(cpu), false) => {
                push("-cpu");
                push(cpu);
            }
            (cpu, true) => {
                push("-cpu");
                push(&format!(
                    "{},x2apic=on",
                    cpu.as_deref()
                        .unwrap_or(if accel_kvm { "host" } else { "qemu64" })
                ));
            }
            (None, false) => {}
        }

        push("-smp");
        push(&self.cores.to_string());
        push("-m");
        push(&format!("{}M", self.memory_mib));
        // Order matters: `-nic none` first, or q35 adds its default e1000e.
        push("-nic");
        push("none");
        push("-no-reboot");
        push("-display");
        push("none");
        push("-serial");
        push("stdio");
        push("-monitor");
        push(&format!(
            "unix:{},server=on,wait=off",
            paths.monitor.display()
        ));
        push("-device");
        push(&format!(
            "isa-debug-exit,iobase={DEBUG_EXIT_IOBASE:#x},iosize=0x04"
        ));
        for (i, nic) in self.nics.iter().enumerate() {
            let m = Config::mac(i);
            push("-netdev");
            push(&format!(
                "stream,id=net{i},server=on,addr.type=unix,addr.path={}",
                paths.nic(i).display()
            ));
            let mut dev = format!(
                "{},netdev=net{i},id=nic{i},mac={:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
                nic.model.device(),
                m[0],
                m[1],
                m[2],
                m[3],
                m[4],
                m[5]
            );
            if let Some(slot) = nic.pci_slot {
                dev.push_str(&format!(",addr={slot:#x}"));
            }
            push("-device");
            push(&dev);
        }
        if self.firmware == Firmware::Ovmf {
            push("-drive");
            push(&format!(
                "if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}"
            ));
            push("-drive");
            push(&format!(
                "if=pflash,format=raw,unit=1,file={}",
                paths.ovmf_vars.display()
            ));
        }
        match &self.boot {
            Boot::Kernel(elf) => {
                a.push("-kernel".into());
                a.push(elf.clone().into_os_string());
            }
            Boot::Disk(img) => {
                // Read-only snapshot: the run never changes the image it was given.
                let mut d = OsString::from("format=raw,media=disk,snapshot=on,file=");
                d.push(img.as_os_str());
                a.push("-drive".into());
                a.push(d);
            }
        }
        a.extend(self.extra_args.iter().cloned());
        a
    }
}

/// MAC address of the management NIC [`user_nic_args`] adds.
pub const MGMT_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0xfe, 0x00, 0x01];
/// PCI slot of that NIC: after every monitored NIC ([`spaced_nic_slot`] uses odd slots 3..=13,
/// QEMU's own choice for one NIC is lower) and below the slots of igb VFs (19 and up), so "the
/// last virtio-net function" is the management NIC.
pub const MGMT_SLOT: u8 = 0x0f;

/// Arguments (for [`Config::with_args`]) that add a virtio-net management NIC on QEMU user
/// networking: the guest's network is 10.0.2.0/24 with the host at 10.0.2.2 (so the guest
/// reaches the host's 127.0.0.1:P at 10.0.2.2:P), and the host's `127.0.0.1:host_port` is
/// forwarded to the guest's 10.0.2.15:`guest_port`.
pub fn user_nic_args(host_port: u16, guest_port: u16) -> Vec<OsString> {
    let m = MGMT_MAC;
    [
        "-netdev".to_string(),
        format!(
            "user,id=mgmt,net=10.0.2.0/24,host=10.0.2.2,dhcpstart=10.0.2.15,ipv6=off,hostfwd=tcp:127.0.0.1:{host_port}-10.0.2.15:{guest_port}"
        ),
        "-device".to_string(),
        format!(
            "virtio-net-pci,netdev=mgmt,id=mgmt,mac={:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x},addr={MGMT_SLOT:#x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        ),
    ]
    .into_iter()
    .map(OsString::from)
    .collect()
}

/// Where one run keeps its files (all inside a private temporary directory).
#[derive(Clone, Debug)]
pub struct RunPaths {
    /// The directory itself.
    pub dir: PathBuf,
    /// HMP monitor socket.
    pub monitor: PathBuf,
    /// Writable copy of the OVMF variable store.
    pub ovmf_vars: PathBuf,
}

impl RunPaths {
    /// The paths inside `dir`.
    pub fn new(dir: &Path) -> RunPaths {
        RunPaths {
            dir: dir.to_path_buf(),
            monitor: dir.join("monitor.sock"),
            ovmf_vars: dir.join("OVMF_VARS.fd"),
        }
    }

    /// The stream socket of NIC `index`.
    pub fn nic(&self, index: usize) -> PathBuf {
        self.dir.join(format!("nic{index}.sock"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn joined(c: &Config) -> String {
        let p = RunPaths::new(Path::new("/run/x"));
        c.args(&p, false)
            .iter()
            .map(|s| s.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn direct_boot_arguments() {
        let c = Config::kernel("/k.elf")
            .with_cores(4)
            .with_machine(Machine::Pc);
        let s = joined(&c);
        assert!(s.starts_with("-machine pc -accel tcg -smp 4 -m 256M -nic none -no-reboot"));
        assert!(s.contains("-display none -serial stdio"));
        assert!(s.contains("-monitor unix:/run/x/monitor.sock,server=on,wait=off"));
        assert!(s.contains("-device isa-debug-exit,iobase=0xf4,iosize=0x04"));
        assert!(s.ends_with("-kernel /k.elf"));
        assert!(!s.contains("pflash"));
        c.validate().unwrap();
    }

    #[test]
    fn nic_none_comes_before_any_nic() {
        let c = Config::kernel("/k")
            .with_nic(NicModel::Igb)
            .with_nic(NicModel::VirtioNet)
            .with_nic_at(NicModel::E1000e, 7);
        let s = joined(&c);
        let none = s.find("-nic none").unwrap();
        let igb = s
            .find("-device igb,netdev=net0,id=nic0,mac=52:54:00:12:34:56")
            .unwrap();
        assert!(none < igb);
        assert!(s.contains(
            "-netdev stream,id=net1,server=on,addr.type=unix,addr.path=/run/x/nic1.sock"
        ));
        assert!(s.contains("-device virtio-net-pci,netdev=net1,id=nic1,mac=52:54:00:12:34:57"));
        assert!(s.contains("-device e1000e,netdev=net2,id=nic2,mac=52:54:00:12:34:58,addr=0x7"));
    }

    #[test]
    fn several_nics_get_spaced_slots_and_one_nic_keeps_qemus_choice() {
        let s = joined(&Config::kernel("/k").with_nics(&[NicModel::Igb]));
        assert!(s.contains("-device igb,netdev=net0,id=nic0,mac=52:54:00:12:34:56 "));
        assert!(!s.contains("addr=0x"));
        let s = joined(&Config::kernel("/k").with_nics(&[
            NicModel::Igb,
            NicModel::Igb,
            NicModel::VirtioNet,
        ]));
        assert!(s.contains("-device igb,netdev=net0,id=nic0,mac=52:54:00:12:34:56,addr=0x3 "));
        assert!(s.contains("-device igb,netdev=net1,id=nic1,mac=52:54:00:12:34:57,addr=0x5 "));
        assert!(s.contains(
            "-device virtio-net-pci,netdev=net2,id=nic2,mac=52:54:00:12:34:58,addr=0x7 "
        ));
        let slots: Vec<Option<u8>> = (0..7).map(spaced_nic_slot).collect();
        assert_eq!(
            slots,
            [Some(3), Some(5), Some(7), Some(9), Some(11), Some(13), None]
        );
        let c = Config::kernel("/k").with_nics(&[NicModel::E1000e; 7]);
        assert_eq!(c.nics[5].pci_slot, Some(13));
        assert_eq!(c.nics[6].pci_slot, None);
    }

    #[test]
    fn ovmf_uses_two_pflash_drives_and_a_private_vars_copy() {
        let c = Config::disk("/d.img", Firmware::Ovmf);
        let s = joined(&c);
        assert!(s.contains(
            "-drive if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd"
        ));
        assert!(s.contains("-drive if=pflash,format=raw,unit=1,file=/run/x/OVMF_VARS.fd"));
        assert!(s.ends_with("-drive format=raw,media=disk,snapshot=on,file=/d.img"));
        c.validate().unwrap();
    }

    #[test]
    fn seabios_disk_has_no_pflash_and_kvm_is_passed_on() {
        let c = Config::disk("/d.img", Firmware::SeaBios);
        assert!(!joined(&c).contains("pflash"));
        let p = RunPaths::new(Path::new("/r"));
        let a = c.args(&p, true);
        assert_eq!(a[3], "kvm");
    }

    #[test]
    fn invalid_combinations_are_refused() {
        assert!(Config::kernel("/k")
            .with_cores(1)
            .clone()
            .validate()
            .is_ok());
        let mut c = Config::kernel("/k");
        c.firmware = Firmware::Ovmf;
        assert!(c.validate().unwrap_err().contains("disk image"));
        let mut c = Config::disk("/d", Firmware::SeaBios);
        c.firmware = Firmware::Direct;
        assert!(c.validate().is_err());
        assert!(Config::kernel("/k").with_cores(0).validate().is_err());
        assert!(Config::kernel("/k").with_memory_mib(8).validate().is_err());
    }

    #[test]
    fn core_limits_follow_the_machine_and_many_cores_get_x2apic() {
        assert!(Config::kernel("/k").with_cores(4096).validate().is_ok());
        assert_eq!(
            Config::kernel("/k")
                .with_cores(4097)
                .validate()
                .unwrap_err(),
            "cores must be 1..=4096 on machine q35, not 4097"
        );
        let pc = Config::kernel("/k").with_machine(Machine::Pc);
        assert!(pc.clone().with_cores(255).validate().is_ok());
        assert_eq!(
            pc.with_cores(256).validate().unwrap_err(),
            "cores must be 1..=255 on machine pc, not 256"
        );
        // Up to 255 cores nothing changes; from 256 on TCG needs only an x2APIC CPU.
        let s = joined(&Config::kernel("/k").with_cores(255));
        assert!(s.starts_with("-machine q35 -accel tcg -smp 255 "), "{s}");
        let s = joined(&Config::kernel("/k").with_cores(300));
        assert!(
            s.starts_with("-machine q35 -accel tcg -cpu qemu64,x2apic=on -smp 300 "),
            "{s}"
        );
        assert!(!s.contains("intel-iommu"), "{s}");
        let s = joined(&Config::kernel("/k").with_cores(300).with_cpu("max"));
        assert!(s.contains("-cpu max,x2apic=on -smp 300 "), "{s}");
        // KVM: the host CPU with x2APIC, nothing else.
        let p = RunPaths::new(Path::new("/r"));
        let a: Vec<String> = Config::kernel("/k")
            .with_cores(300)
            .args(&p, true)
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let s = a.join(" ");
        assert!(
            s.starts_with("-machine q35 -accel kvm -cpu host,x2apic=on -smp 300 "),
            "{s}"
        );
        assert!(!s.contains("intel-iommu"), "{s}");
    }

    #[test]
    fn the_management_nic_forwards_a_loopback_port() {
        let a: Vec<String> = user_nic_args(19100, 9100)
            .into_iter()
            .map(|s| s.into_string().unwrap())
            .collect();
        assert_eq!(a.len(), 4);
        assert_eq!(
            a[1],
            "user,id=mgmt,net=10.0.2.0/24,host=10.0.2.2,dhcpstart=10.0.2.15,ipv6=off,hostfwd=tcp:127.0.0.1:19100-10.0.2.15:9100"
        );
        assert_eq!(
            a[3],
            "virtio-net-pci,netdev=mgmt,id=mgmt,mac=52:54:00:fe:00:01,addr=0xf"
        );
        assert!((0..8).all(|i| spaced_nic_slot(i).is_none_or(|s| s < MGMT_SLOT)));
    }

    #[test]
    fn names_parse() {
        assert_eq!("q35".parse::<Machine>().unwrap(), Machine::Q35);
        assert_eq!("pc".parse::<Machine>().unwrap(), Machine::Pc);
        assert!("isapc".parse::<Machine>().is_err());
        assert_eq!("ovmf".parse::<Firmware>().unwrap(), Firmware::Ovmf);
        assert_eq!("seabios".parse::<Firmware>().unwrap(), Firmware::SeaBios);
        assert_eq!("direct".parse::<Firmware>().unwrap(), Firmware::Direct);
        assert_eq!("igb".parse::<NicModel>().unwrap(), NicModel::Igb);
        assert_eq!(
            "virtio-net".parse::<NicModel>().unwrap(),
            NicModel::VirtioNet
        );
        assert_eq!("e1000e".parse::<NicModel>().unwrap(), NicModel::E1000e);
    }
}
