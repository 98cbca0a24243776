//! Captures loaded into memory: classic pcap (µs or ns) and pcapng, Ethernet link type.
//!
//! Frames are copied into one contiguous buffer with an index, so a benchmark or a replay
//! walks them without I/O or per-frame allocation.

use pcap_parser::pcapng::Block;
use pcap_parser::{create_reader, Linktype, PcapBlockOwned, PcapError};
use std::path::{Path, PathBuf};

/// Why a capture could not be loaded.
#[derive(Debug)]
pub enum CaptureError {
    /// The file could not be opened or read.
    Io(PathBuf, std::io::Error),
    /// The file is neither pcap nor pcapng, or is corrupt at the given frame.
    Format(PathBuf, String),
    /// A link type other than Ethernet (DLT_EN10MB).
    Linktype(PathBuf, i32),
}

impl std::fmt::Display for CaptureError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CaptureError::Io(p, e) => write!(f, "{}: {e}", p.display()),
            CaptureError::Format(p, m) => {
                write!(f, "{}: not a readable pcap/pcapng: {m}", p.display())
            }
            CaptureError::Linktype(p, l) => write!(
                f,
                "{}: link type {l} is not supported (only Ethernet, DLT_EN10MB = 1)",
                p.display()
            ),
        }
    }
}

impl std::error::Error for CaptureError {}

/// A whole capture in memory.
#[derive(Default)]
pub struct Capture {
    data: Vec<u8>,
    /// (start in `data`, length, timestamp in µs).
    index: Vec<(usize, u32, u64)>,
}

impl Capture {
    /// Loads `path` (pcap or pcapng).
    pub fn load(path: &Path) -> Result<Capture, CaptureError> {
        let f = std::fs::File::open(path).map_err(|e| CaptureError::Io(path.into(), e))?;
        let size = f.metadata().map(|m| m.len()).unwrap_or(0);
        let fmt = |m: String| CaptureError::Format(path.into(), m);
        let mut r = create_reader(1 << 20, std::io::BufReader::with_capacity(1 << 20, f))
            .map_err(|e| fmt(format!("{e:?}")))?;
        let mut cap = Capture {
            data: Vec::with_capacity(size as usize),
            index: Vec::with_capacity((size / 400) as usize),
        };
        let mut ns = false;
        // pcapng interfaces: (resolution per second, offset seconds).
        let mut ifaces: Vec<(u64, i64)> = Vec::new();
        loop {
            match r.next() {
                Ok((n, block)) => {
                    match block {
                        PcapBlockOwned::LegacyHeader(h) => {
                            if h.network != Linktype::ETHERNET {
                                return Err(CaptureError::Linktype(path.into(), h.network.0));
                            }
                            ns = h.is_nanosecond_precision();
                        }
                        PcapBlockOwned::Legacy(b) => {
                            let sub = if ns {
                                u64::from(b.ts_usec) / 1000
                            } else {
                                u64::from(b.ts_usec)
                            };
                            cap.push(b.data, u64::from(b.ts_sec) * 1_000_000 + sub);
                        }
                        PcapBlockOwned::NG(Block::SectionHeader(_)) => ifaces.clear(),
                        PcapBlockOwned::NG(Block::InterfaceDescription(idb)) => {
                            if idb.linktype != Linktype::ETHERNET {
                                return Err(CaptureError::Linktype(path.into(), idb.linktype.0));
                            }
                            ifaces
                                .push((idb.ts_resolution().unwrap_or(1_000_000), idb.ts_offset()));
                        }
                        PcapBlockOwned::NG(Block::EnhancedPacket(epb)) => {
                            let (res, off) =
                                ifaces.get(epb.if_id as usize).copied().ok_or_else(|| {
                                    fmt(format!("packet on undeclared interface {}", epb.if_id))
                                })?;
                            let raw = (u64::from(epb.ts_high) << 32) | u64::from(epb.ts_low);
                            let us = (raw as u128 * 1_000_000 / res.max(1) as u128) as u64;
                            let us = us.saturating_add_signed(off.saturating_mul(1_000_000));
                            let len = (epb.caplen as usize).min(epb.data.len());
                            cap.push(&epb.data[..len], us);
                        }
                        PcapBlockOwned::NG(Block::SimplePacket(spb)) => {
                            let last = cap.index.last().map_or(0, |x| x.2);
                            cap.push(spb.data, last);
                        }
                        PcapBlockOwned::NG(_) => {}
                    }
                    r.consume(n);
                }
                Err(PcapError::Eof) => break,
                Err(PcapError::Incomplete(_)) => {
                    r.refill().map_err(|e| fmt(format!("{e:?}")))?;
                }
                Err(e) => {
                    return Err(fmt(format!("at frame {}: {e:?}", cap.index.len() + 1)));
                }
            }
        }
        Ok(cap)
    }

    /// Builds a capture from frames (for tests): `(timestamp µs, frame)`.
    pub fn from_frames<'a>(frames: impl IntoIterator<Item = (u64, &'a [u8])>) -> Capture {
        let mut c = Capture::default();
        for (ts, f) in frames {
            c.push(f, ts);
        }
        c
    }

    fn push(&mut self, frame: &[u8], ts_us: u64) {
        self.index
            .push((self.data.len(), frame.len() as u32, ts_us));
        self.data.extend_from_slice(frame);
    }

    /// Number of frames.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// True when there are no frames.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Sum of frame lengths.
    pub fn bytes(&self) -> u64 {
        self.data.len() as u64
    }

    /// Frames with their timestamps (µs since the epoch), in capture order.
    pub fn frames(&self) -> impl Iterator<Item = (u64, &[u8])> + '_ {
        self.index
            .iter()
            .map(|&(s, l, ts)| (ts, &self.data[s..s + l as usize]))
    }
}
