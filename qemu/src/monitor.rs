//! A client for QEMU's human monitor (HMP) on a unix socket.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

const PROMPT: &str = "(qemu) ";

/// A connected HMP monitor.
pub struct Monitor {
    stream: UnixStream,
}

impl Monitor {
    /// Connects (retrying until `deadline`) and reads the greeting up to the first prompt.
    pub fn connect(path: &Path, deadline: Instant) -> io::Result<Monitor> {
        let stream = loop {
            match UnixStream::connect(path) {
                Ok(s) => break s,
                Err(e) if Instant::now() >= deadline => return Err(e),
                Err(_) => thread::sleep(Duration::from_millis(10)),
            }
        };
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut m = Monitor { stream };
        m.read_to_prompt()?;
        Ok(m)
    }

    fn read_to_prompt(&mut self) -> io::Result<String> {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = self.stream.read(&mut chunk)?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            buf.extend_from_slice(&chunk[..n]);
            if buf.ends_with(PROMPT.as_bytes()) {
                buf.truncate(buf.len() - PROMPT.len());
                return Ok(String::from_utf8_lossy(&buf).replace('\r', ""));
            }
        }
    }

    /// Runs one HMP command and returns its output (without the echoed command and prompt).
    pub fn command(&mut self, cmd: &str) -> io::Result<String> {
        self.stream.write_all(format!("{cmd}\n").as_bytes())?;
        let out = self.read_to_prompt()?;
        // HMP echoes the command line (with terminal escapes) before its output.
        Ok(strip_escapes(&out)
            .lines()
            .skip_while(|l| l.trim().is_empty() || l.trim_end().ends_with(cmd.trim()))
            .collect::<Vec<_>>()
            .join("\n"))
    }

    /// `quit`: QEMU exits at once (its exit status is then 0). Does not wait for a prompt.
    pub fn quit(&mut self) -> io::Result<()> {
        self.stream.write_all(b"quit\n")
    }
}

/// Removes ANSI escape sequences (HMP's readline redraws the line it echoes; GRUB clears the
/// screen on the serial console).
pub(crate) fn strip_escapes(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for d in chars.by_ref() {
                    if d.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    #[test]
    fn escapes_are_stripped() {
        assert_eq!(strip_escapes("\u{1b}[K\u{1b}[Dinfo\u{1b}[Kx"), "infox");
    }

    #[test]
    fn talks_hmp_to_a_fake_monitor() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.sock");
        let l = UnixListener::bind(&p).unwrap();
        let t = thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            s.write_all(b"QEMU 10.0.2 monitor - type 'help' for more information\r\n(qemu) ")
                .unwrap();
            let mut buf = [0u8; 64];
            let n = s.read(&mut buf).unwrap();
            assert_eq!(&buf[..n], b"info status\n");
            s.write_all(b"info status\r\n\x1b[KVM status: running\r\n(qemu) ")
                .unwrap();
            let n = s.read(&mut buf).unwrap();
            assert_eq!(&buf[..n], b"quit\n");
        });
        let mut m = Monitor::connect(&p, Instant::now() + Duration::from_secs(5)).unwrap();
        assert_eq!(m.command("info status").unwrap(), "VM status: running");
        m.quit().unwrap();
        t.join().unwrap();
    }
}
