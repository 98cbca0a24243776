//! The host end of a NIC's `-netdev stream` socket: frames are a 4-byte big-endian length
//! followed by the frame. QEMU listens; we connect, inject frames and read what the guest sends.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::pcap::{read_frames, write_frames, Frame, PcapFileError};

/// Largest frame accepted from or sent to QEMU (QEMU's own limit for stream netdevs is 69632).
pub const MAX_FRAME: usize = 69632;

/// Encodes one frame as it crosses a stream netdev socket.
pub fn encode_frame(frame: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(frame.len() + 4);
    v.extend_from_slice(&(frame.len() as u32).to_be_bytes());
    v.extend_from_slice(frame);
    v
}

/// Reads one length-prefixed frame. `Ok(None)` on a clean end of stream between frames.
pub fn read_frame(r: &mut impl Read) -> io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match r.read(&mut len[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame length {len} exceeds {MAX_FRAME}"),
        ));
    }
    let mut frame = vec![0u8; len];
    r.read_exact(&mut frame)?;
    Ok(Some(frame))
}

/// Why a NIC operation failed.
#[derive(Debug)]
pub enum NicError {
    /// The socket failed (QEMU gone, connection refused...).
    Io(io::Error),
    /// A frame is empty or larger than [`MAX_FRAME`].
    FrameSize(usize),
    /// A pcap file could not be read or written.
    Pcap(PcapFileError),
    /// No frame matching the condition arrived in time.
    Timeout(Duration),
}

impl std::fmt::Display for NicError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NicError::Io(e) => write!(f, "NIC socket: {e}"),
            NicError::FrameSize(n) => write!(f, "frame of {n} bytes (must be 1..={MAX_FRAME})"),
            NicError::Pcap(e) => write!(f, "{e}"),
            NicError::Timeout(d) => write!(f, "no matching frame from the guest within {d:?}"),
        }
    }
}

impl std::error::Error for NicError {}

impl From<io::Error> for NicError {
    fn from(e: io::Error) -> Self {
        NicError::Io(e)
    }
}

impl From<PcapFileError> for NicError {
    fn from(e: PcapFileError) -> Self {
        NicError::Pcap(e)
    }
}

/// The host side of one guest NIC.
pub struct Nic {
    index: usize,
    stream: UnixStream,
    /// Every frame the guest transmitted so far, in order.
    sent_by_guest: Arc<Mutex<Vec<Frame>>>,
    rx: Receiver<Frame>,
    reader: Option<JoinHandle<()>>,
}

impl Nic {
    /// Connects to the socket QEMU listens on, retrying until `deadline` (QEMU creates it
    /// shortly after start).
    pub fn connect(index: usize, path: &Path, deadline: Instant) -> io::Result<Nic> {
        let stream = loop {
            match UnixStream::connect(path) {
                Ok(s) => break s,
                Err(e) if Instant::now() >= deadline => return Err(e),
                Err(_) => thread::sleep(Duration::from_millis(10)),
            }
        };
        Nic::from_stream(index, stream)
    }

    /// Wraps an already connected stream (used by tests with a fake QEMU).
    pub fn from_stream(index: usize, stream: UnixStream) -> io::Result<Nic> {
        let mut read_half = stream.try_clone()?;
        let sent_by_guest = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&sent_by_guest);
        let (tx, rx) = mpsc::channel();
        let reader = thread::Builder::new()
            .name(format!("qemu-nic{index}"))
            .spawn(move || {
                while let Ok(Some(data)) = read_frame(&mut read_half) {
                    let f = Frame::now(data);
                    if let Ok(mut l) = log.lock() {
                        l.push(f.clone());
                    }
                    if tx.send(f).is_err() {
                        break;
                    }
                }
            })?;
        Ok(Nic {
            index,
            stream,
            sent_by_guest,
            rx,
            reader: Some(reader),
        })
    }

    /// This NIC's index in [`crate::Config::nics`].
    pub fn index(&self) -> usize {
        self.index
    }

    /// Injects one frame (destination MAC first, no FCS) into the guest's NIC.
    pub fn send(&mut self, frame: &[u8]) -> Result<(), NicError> {
        if frame.is_empty() || frame.len() > MAX_FRAME {
            return Err(NicError::FrameSize(frame.len()));
        }
        self.stream.write_all(&encode_frame(frame))?;
        Ok(())
    }

    /// Injects every frame of a pcap/pcapng file, in order, as fast as the socket takes them.
    /// Returns how many frames were sent.
    pub fn send_pcap(&mut self, path: &Path) -> Result<usize, NicError> {
        let frames = read_frames(path)?;
        for f in &frames {
            self.send(&f.data)?;
        }
        Ok(frames.len())
    }

    /// Waits for the next frame the guest transmits that satisfies `pred` (frames that do not
    /// are skipped here but stay in the capture).
    pub fn wait_for_frame(
        &mut self,
        timeout: Duration,
        mut pred: impl FnMut(&[u8]) -> bool,
    ) -> Result<Frame, NicError> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(f) if pred(&f.data) => return Ok(f),
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => return Err(NicError::Timeout(timeout)),
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(NicError::Io(io::ErrorKind::UnexpectedEof.into()))
                }
            }
        }
    }

    /// Every frame the guest has transmitted on this NIC so far.
    pub fn captured(&self) -> Vec<Frame> {
        self.sent_by_guest
            .lock()
            .map(|l| l.clone())
            .unwrap_or_default()
    }

    /// After QEMU exited: waits (up to `timeout`) until the reader has taken every frame left
    /// in the socket and seen its end of file. Without this a capture saved right after the
    /// exit could miss frames still in the socket when the reader thread was not scheduled.
    /// Returns whether the reader finished in time.
    pub fn drain_after_exit(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let Some(h) = self.reader.take() else {
            return true;
        };
        while !h.is_finished() {
            if Instant::now() >= deadline {
                self.reader = Some(h);
                return false;
            }
            thread::sleep(Duration::from_millis(2));
        }
        let _ = h.join();
        true
    }

    /// Writes every frame the guest has transmitted so far to a classic pcap file.
    pub fn save_capture(&self, path: &Path) -> Result<usize, NicError> {
        let frames = self.captured();
        write_frames(path, &frames)?;
        Ok(frames.len())
    }
}

impl Drop for Nic {
    fn drop(&mut self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
        if let Some(h) = self.reader.take() {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    #[test]
    fn framing_round_trip() {
        let f: Vec<u8> = (0..=255u8).collect();
        let enc = encode_frame(&f);
        assert_eq!(&enc[..4], &[0, 0, 1, 0]);
        let mut two = enc.clone();
        two.extend(encode_frame(b"xy"));
        let mut r = &two[..];
        assert_eq!(read_frame(&mut r).unwrap().unwrap(), f);
        assert_eq!(read_frame(&mut r).unwrap().unwrap(), b"xy");
        assert!(read_frame(&mut r).unwrap().is_none());
    }

    #[test]
    fn framing_rejects_truncation_and_huge_lengths() {
        let enc = encode_frame(b"hello");
        let mut r = &enc[..7];
        assert!(read_frame(&mut r).is_err());
        let mut r = &enc[..2];
        assert!(read_frame(&mut r).is_err());
        let huge = (MAX_FRAME as u32 + 1).to_be_bytes();
        let mut r = &huge[..];
        assert_eq!(
            read_frame(&mut r).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
    }

    /// A fake QEMU end: listens like `-netdev stream,server=on`, echoes frames back reversed.
    #[test]
    fn injects_captures_and_saves_pcap_against_a_fake_qemu() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("n.sock");
        let listener = UnixListener::bind(&sock).unwrap();
        let qemu = thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut got = Vec::new();
            while let Some(f) = read_frame(&mut s).unwrap() {
                let mut back = f.clone();
                back.reverse();
                s.write_all(&encode_frame(&back)).unwrap();
                got.push(f);
                if got.len() == 3 {
                    break;
                }
            }
            got
        });
        let mut nic = Nic::connect(0, &sock, Instant::now() + Duration::from_secs(5)).unwrap();
        let pcap_in = dir.path().join("in.pcap");
        let frames: Vec<Frame> = (1..=2u8)
            .map(|i| Frame::now(vec![i; 60 * i as usize]))
            .collect();
        write_frames(&pcap_in, &frames).unwrap();
        nic.send(b"first-frame").unwrap();
        assert_eq!(nic.send_pcap(&pcap_in).unwrap(), 2);
        let f = nic
            .wait_for_frame(Duration::from_secs(5), |d| d.len() == 120)
            .unwrap();
        assert_eq!(f.data, vec![2u8; 120]);
        let got = qemu.join().unwrap();
        assert_eq!(got[0], b"first-frame");
        assert_eq!(got[1], vec![1u8; 60]);
        assert_eq!(got[2], vec![2u8; 120]);
        let out = dir.path().join("out.pcap");
        assert_eq!(nic.save_capture(&out).unwrap(), 3);
        let saved = read_frames(&out).unwrap();
        assert_eq!(saved[0].data, b"emarf-tsrif");
        assert_eq!(saved.len(), 3);
        assert!(matches!(
            nic.wait_for_frame(Duration::from_millis(50), |_| true),
            Err(NicError::Timeout(_)) | Err(NicError::Io(_))
        ));
        assert!(matches!(nic.send(&[]), Err(NicError::FrameSize(0))));
    }

    /// A fake QEMU writes a burst and exits at once: after `drain_after_exit` the capture holds
    /// every frame of the burst, however late the reader thread ran.
    #[test]
    fn drain_after_exit_takes_every_frame_left_in_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("n.sock");
        let listener = UnixListener::bind(&sock).unwrap();
        let qemu = thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            for i in 0..500u16 {
                s.write_all(&encode_frame(&[i as u8; 64])).unwrap();
            }
            // Dropping `s` closes the socket, as QEMU's exit does.
        });
        let mut nic = Nic::connect(0, &sock, Instant::now() + Duration::from_secs(5)).unwrap();
        qemu.join().unwrap();
        assert!(nic.drain_after_exit(Duration::from_secs(10)));
        let got = nic.captured();
        assert_eq!(got.len(), 500);
        assert_eq!(got[499].data, vec![499u16 as u8; 64]);
        // A second call finds the reader gone and returns at once.
        assert!(nic.drain_after_exit(Duration::ZERO));
    }
}
