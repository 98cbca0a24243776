//! Runs Ferrule images in QEMU: machine, firmware, cores, NICs, serial, traffic, exit status.
//!
//! Host-only. It must not build images (see `image`).
//!
//! ```no_run
//! use std::time::Duration;
//! let mut vm = qemu::Qemu::start(qemu::Config::kernel("sysinfo.elf").with_cores(2)).unwrap();
//! vm.wait_for_line(Duration::from_secs(30), |l| l.starts_with("cores online:")).unwrap();
//! assert_eq!(vm.wait_exit(), qemu::ExitStatus::Success);
//! ```
//!
//! Every run lives in a private temporary directory (monitor and NIC sockets, OVMF variable
//! store copy) that is removed, with the QEMU process killed, when the [`Qemu`] is dropped.
#![forbid(unsafe_code)]

mod config;
mod monitor;
mod nic;
mod pcap;

pub use config::{
    spaced_nic_slot, user_nic_args, Boot, Config, Firmware, Machine, NicModel, NicSpec, RunPaths,
    DEBUG_EXIT_IOBASE, MGMT_MAC, MGMT_SLOT, OVMF_CODE, OVMF_VARS, QEMU_BINARY,
};
pub use monitor::Monitor;
pub use nic::{encode_frame, read_frame, Nic, NicError, MAX_FRAME};
pub use pcap::{read_frames, write_frames, Frame, PcapFileError, PcapWriter};

use std::ffi::OsString;
use std::io::{self, BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How a QEMU run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitStatus {
    /// The guest wrote 0x10 to isa-debug-exit (QEMU status 33).
    Success,
    /// The guest wrote 0x11 to isa-debug-exit (QEMU status 35), e.g. after a panic.
    Failure,
    /// QEMU exited with another status (e.g. 0 after `quit`, 1 on a QEMU error, or another
    /// debug-exit value `(v << 1) | 1`).
    Other(i32),
    /// QEMU was killed by a signal it did not get from us.
    Signal(i32),
    /// The hard timeout expired and QEMU was killed.
    Timeout,
}

impl ExitStatus {
    /// Maps QEMU's process exit code.
    pub fn from_code(code: i32) -> ExitStatus {
        match code {
            33 => ExitStatus::Success,
            35 => ExitStatus::Failure,
            c => ExitStatus::Other(c),
        }
    }

    /// A process exit code for a command-line tool: 0 success, 1 failure, 124 timeout,
    /// the QEMU status otherwise.
    pub fn as_process_code(self) -> i32 {
        match self {
            ExitStatus::Success => 0,
            ExitStatus::Failure => 1,
            ExitStatus::Other(0) => 0,
            ExitStatus::Other(c) => c,
            ExitStatus::Signal(s) => 128 + s,
            ExitStatus::Timeout => 124,
        }
    }
}

impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExitStatus::Success => write!(f, "success (isa-debug-exit 0x10, status 33)"),
            ExitStatus::Failure => write!(f, "failure (isa-debug-exit 0x11, status 35)"),
            ExitStatus::Other(c) => write!(f, "QEMU exited with status {c}"),
            ExitStatus::Signal(s) => write!(f, "QEMU killed by signal {s}"),
            ExitStatus::Timeout => write!(f, "timed out (QEMU killed)"),
        }
    }
}

/// Why starting or talking to QEMU failed.
#[derive(Debug)]
pub enum Error {
    /// The configuration is contradictory (e.g. an ELF with OVMF).
    Config(String),
    /// A file QEMU needs is missing (image, ELF, OVMF firmware).
    Missing(std::path::PathBuf),
    /// `qemu-system-x86_64` could not be started.
    Spawn(io::Error),
    /// Creating the run directory or copying the OVMF variable store failed.
    Setup(io::Error),
    /// The monitor or a NIC socket did not come up or broke.
    Socket(String, io::Error),
    /// A wanted console line did not appear in time. Carries the transcript so far.
    LineTimeout {
        /// What was waited for.
        waited: Duration,
        /// Everything the guest printed.
        transcript: String,
    },
    /// QEMU ended before the wanted console line appeared.
    Exited {
        /// How it ended.
        status: ExitStatus,
        /// Everything the guest printed (and QEMU's stderr).
        transcript: String,
    },
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Config(s) => write!(f, "bad QEMU configuration: {s}"),
            Error::Missing(p) => write!(f, "{} does not exist", p.display()),
            Error::Spawn(e) => write!(
                f,
                "cannot start {QEMU_BINARY}: {e} (install qemu-system-x86; `cargo ferrule test` does)"
            ),
            Error::Setup(e) => write!(f, "cannot prepare the QEMU run directory: {e}"),
            Error::Socket(what, e) => write!(f, "{what}: {e}"),
            Error::LineTimeout { waited, transcript } => write!(
                f,
                "the expected console line did not appear within {waited:?}; console so far:\n{transcript}"
            ),
            Error::Exited { status, transcript } => write!(
                f,
                "QEMU ended ({status}) before the expected console line; console:\n{transcript}"
            ),
        }
    }
}

impl std::error::Error for Error {}

/// Whether `/dev/kvm` can be opened for reading and writing.
pub fn kvm_usable() -> bool {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok()
}

/// A running QEMU. Killed, and its files removed, on drop.
pub struct Qemu {
    child: Child,
    config: Config,
    paths: RunPaths,
    _dir: tempfile::TempDir,
    started: Instant,
    deadline: Instant,
    lines: Receiver<String>,
    transcript: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
    nics: Vec<Nic>,
    monitor: Option<Monitor>,
    status: Option<ExitStatus>,
    kvm: bool,
}

impl Qemu {
    /// Starts QEMU for `config`, connects to every NIC socket and returns at once; the guest
    /// runs concurrently.
    pub fn start(config: Config) -> Result<Qemu, Error> {
        config.validate().map_err(Error::Config)?;
        let image = match &config.boot {
            Boot::Kernel(p) | Boot::Disk(p) => p.clone(),
        };
        if !image.exists() {
            return Err(Error::Missing(image));
        }
        let dir = tempfile::Builder::new()
            .prefix("ferrule-qemu-")
            .tempdir()
            .map_err(Error::Setup)?;
        let paths = RunPaths::new(dir.path());
        if config.firmware == Firmware::Ovmf {
            for f in [OVMF_CODE, OVMF_VARS] {
                if !std::path::Path::new(f).exists() {
                    return Err(Error::Missing(f.into()));
                }
            }
            std::fs::copy(OVMF_VARS, &paths.ovmf_vars).map_err(Error::Setup)?;
        }
        let kvm = config.kvm && kvm_usable();
        if config.kvm && !kvm {
            eprintln!("qemu: KVM asked for but /dev/kvm is not usable; using TCG");
        }
        let binary: OsString = std::env::var_os("FERRULE_QEMU").unwrap_or(QEMU_BINARY.into());
        let mut child = Command::new(&binary)
            .args(config.args(&paths, kvm))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(Error::Spawn)?;
        let started = Instant::now();
        let deadline = started + config.timeout;

        let transcript = Arc::new(Mutex::new(String::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let (tx, lines) = mpsc::channel();
        let mut readers = Vec::new();
        if let Some(out) = child.stdout.take() {
            let t = Arc::clone(&transcript);
            readers.push(spawn_reader("qemu-serial", out, move |line| {
                if let Ok(mut t) = t.lock() {
                    t.push_str(&line);
                    t.push('\n');
                }
                let _ = tx.send(line);
            }));
        }
        if let Some(err) = child.stderr.take() {
            let e = Arc::clone(&stderr);
            readers.push(spawn_reader("qemu-stderr", err, move |line| {
                if let Ok(mut e) = e.lock() {
                    e.push_str(&line);
                    e.push('\n');
                }
            }));
        }

        let mut vm = Qemu {
            child,
            config,
            paths,
            _dir: dir,
            started,
            deadline,
            lines,
            transcript,
            stderr,
            readers,
            nics: Vec::new(),
            monitor: None,
            status: None,
            kvm,
        };
        let connect_by = Instant::now() + Duration::from_secs(10);
        for i in 0..vm.config.nics.len() {
            let path = vm.paths.nic(i);
            match Nic::connect(i, &path, connect_by) {
                Ok(n) => vm.nics.push(n),
                Err(e) => {
                    let msg = format!("NIC {i} socket {}: {}", path.display(), vm.stderr_text());
                    return Err(Error::Socket(msg, e));
                }
            }
        }
        Ok(vm)
    }

    /// The configuration this run was started with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Whether the run uses KVM (asked for and usable).
    pub fn uses_kvm(&self) -> bool {
        self.kvm
    }

    /// The run's private directory (sockets, OVMF variables); removed on drop.
    pub fn run_dir(&self) -> &std::path::Path {
        &self.paths.dir
    }

    /// The QEMU process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Time since QEMU was started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// The host side of NIC `index`. Panics if there is no such NIC.
    pub fn nic(&mut self, index: usize) -> &mut Nic {
        &mut self.nics[index]
    }

    /// Everything the guest printed on the serial console so far (one `\n` per line; carriage
    /// returns and ANSI escape sequences, e.g. GRUB's screen clears, removed).
    pub fn transcript(&self) -> String {
        self.transcript
            .lock()
            .map(|t| t.clone())
            .unwrap_or_default()
    }

    /// What QEMU itself printed on stderr so far.
    pub fn stderr_text(&self) -> String {
        self.stderr.lock().map(|t| t.clone()).unwrap_or_default()
    }

    /// The console transcript plus QEMU's stderr, for failure messages.
    pub fn report(&self) -> String {
        let mut s = self.transcript();
        let e = self.stderr_text();
        if !e.is_empty() {
            s.push_str("--- QEMU stderr ---\n");
            s.push_str(&e);
        }
        s
    }

    /// The next console line, waiting at most `timeout` (and never past the hard timeout).
    /// `Ok(None)` when QEMU has ended and every line has been read.
    pub fn next_line(&mut self, timeout: Duration) -> Result<Option<String>, Error> {
        let until = (Instant::now() + timeout).min(self.deadline);
        let left = until.saturating_duration_since(Instant::now());
        match self.lines.recv_timeout(left) {
            Ok(l) => Ok(Some(l)),
            Err(RecvTimeoutError::Disconnected) => Ok(None),
            Err(RecvTimeoutError::Timeout) => {
                if Instant::now() >= self.deadline {
                    self.kill_for_timeout();
                }
                Err(Error::LineTimeout {
                    waited: timeout.min(left),
                    transcript: self.report(),
                })
            }
        }
    }

    /// Reads console lines until one satisfies `pred` and returns it. Fails with the full
    /// transcript if `timeout` (or the hard timeout) passes or QEMU ends first.
    pub fn wait_for_line(
        &mut self,
        timeout: Duration,
        mut pred: impl FnMut(&str) -> bool,
    ) -> Result<String, Error> {
        let until = Instant::now() + timeout;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            match self.next_line(left)? {
                Some(l) if pred(&l) => return Ok(l),
                Some(_) => {}
                None => {
                    let status = self.wait_exit();
                    return Err(Error::Exited {
                        status,
                        transcript: self.report(),
                    });
                }
            }
        }
    }

    /// [`Qemu::wait_for_line`] for a line containing `needle`.
    pub fn wait_for_text(&mut self, timeout: Duration, needle: &str) -> Result<String, Error> {
        self.wait_for_line(timeout, |l| l.contains(needle))
    }

    /// The HMP monitor, connected on first use.
    pub fn monitor(&mut self) -> Result<&mut Monitor, Error> {
        if self.monitor.is_none() {
            let m = Monitor::connect(
                &self.paths.monitor,
                Instant::now() + Duration::from_secs(10),
            )
            .map_err(|e| Error::Socket("QEMU monitor".into(), e))?;
            self.monitor = Some(m);
        }
        Ok(self.monitor.as_mut().expect("just connected"))
    }

    /// Runs one HMP command (e.g. `info pci`) and returns its output.
    pub fn monitor_command(&mut self, cmd: &str) -> Result<String, Error> {
        self.monitor()?
            .command(cmd)
            .map_err(|e| Error::Socket(format!("monitor command `{cmd}`"), e))
    }

    /// `set_link nicN on|off`: plugs or unplugs NIC `index`'s cable.
    pub fn set_link(&mut self, index: usize, up: bool) -> Result<(), Error> {
        let cmd = format!("set_link nic{index} {}", if up { "on" } else { "off" });
        let out = self.monitor_command(&cmd)?;
        if out.trim().is_empty() {
            Ok(())
        } else {
            Err(Error::Socket(
                format!("{cmd}: {out}"),
                io::ErrorKind::Other.into(),
            ))
        }
    }

    /// Asks QEMU to quit through the monitor and waits for it (status `Other(0)`).
    pub fn quit(&mut self) -> ExitStatus {
        if self.status.is_none() {
            if let Ok(m) = self.monitor() {
                let _ = m.quit();
            }
        }
        self.wait_exit()
    }

    /// Whether QEMU is still running (non-blocking).
    pub fn is_running(&mut self) -> bool {
        self.status.is_none() && matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits until QEMU ends or the hard timeout passes (then kills it), and returns how it
    /// ended. Console lines stay readable through [`Qemu::transcript`].
    pub fn wait_exit(&mut self) -> ExitStatus {
        if let Some(s) = self.status {
            return s;
        }
        loop {
            match self.child.try_wait() {
                Ok(Some(st)) => {
                    let s = map_status(st);
                    self.finish(s);
                    return s;
                }
                Ok(None) if Instant::now() >= self.deadline => {
                    self.kill_for_timeout();
                    return ExitStatus::Timeout;
                }
                Ok(None) => thread::sleep(Duration::from_millis(5)),
                Err(_) => {
                    self.kill_for_timeout();
                    return ExitStatus::Timeout;
                }
            }
        }
    }

    /// Kills QEMU now; the run ends with [`ExitStatus::Timeout`] unless it had already ended.
    pub fn kill(&mut self) -> ExitStatus {
        if self.status.is_none() {
            if let Ok(Some(st)) = self.child.try_wait() {
                let s = map_status(st);
                self.finish(s);
            } else {
                self.kill_for_timeout();
            }
        }
        self.wait_exit()
    }

    fn kill_for_timeout(&mut self) {
        if self.status.is_some() {
            return;
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.finish(ExitStatus::Timeout);
    }

    fn finish(&mut self, s: ExitStatus) {
        self.status = Some(s);
        // The pipes are closed now; let the readers drain so the transcript is complete.
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        // QEMU closed its end of every NIC socket: read what it wrote before it exited, so a
        // capture saved after the exit holds every frame the guest transmitted.
        for n in &mut self.nics {
            n.drain_after_exit(NIC_DRAIN_TIMEOUT);
        }
    }
}

/// How long [`Qemu::wait_exit`] waits for each NIC's reader to take the last frames QEMU wrote
/// before it exited (the reader ends at the socket's end of file).
const NIC_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

impl Drop for Qemu {
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
            self.status = Some(ExitStatus::Timeout);
        }
        self.nics.clear();
        // The temporary directory (sockets, OVMF vars) goes with `_dir`.
    }
}

fn map_status(st: std::process::ExitStatus) -> ExitStatus {
    use std::os::unix::process::ExitStatusExt;
    match (st.code(), st.signal()) {
        (Some(c), _) => ExitStatus::from_code(c),
        (None, Some(s)) => ExitStatus::Signal(s),
        (None, None) => ExitStatus::Other(-1),
    }
}

/// Reads `r` line by line (lossy UTF-8, `\r` and ANSI escape sequences dropped) and hands
/// each line to `sink`.
fn spawn_reader(
    name: &str,
    r: impl Read + Send + 'static,
    mut sink: impl FnMut(String) + Send + 'static,
) -> JoinHandle<()> {
    thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let mut r = BufReader::new(r);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match r.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let line = String::from_utf8_lossy(&buf);
                        let line = line.trim_end_matches(['\n', '\r']).replace('\r', "");
                        sink(monitor::strip_escapes(&line));
                    }
                }
            }
        })
        .expect("spawn reader thread")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_map_to_statuses() {
        assert_eq!(ExitStatus::from_code(33), ExitStatus::Success);
        assert_eq!(ExitStatus::from_code(35), ExitStatus::Failure);
        assert_eq!(ExitStatus::from_code(0), ExitStatus::Other(0));
        assert_eq!(ExitStatus::from_code(1), ExitStatus::Other(1));
        assert_eq!(ExitStatus::Success.as_process_code(), 0);
        assert_eq!(ExitStatus::Failure.as_process_code(), 1);
        assert_eq!(ExitStatus::Timeout.as_process_code(), 124);
    }

    #[test]
    fn missing_image_is_reported_before_starting() {
        match Qemu::start(Config::kernel("/nonexistent/ferrule.elf")) {
            Err(Error::Missing(p)) => assert!(p.ends_with("ferrule.elf")),
            Err(e) => panic!("unexpected error {e}"),
            Ok(_) => panic!("started without an image"),
        }
    }

    #[test]
    fn contradictory_config_is_refused() {
        let mut c = Config::kernel("/bin/true");
        c.firmware = Firmware::Ovmf;
        assert!(matches!(Qemu::start(c), Err(Error::Config(_))));
    }
}
