//! Reading Ethernet frames from pcap/pcapng files and writing captures as classic pcap.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pcap_parser::pcapng::Block;
use pcap_parser::{create_reader, LegacyPcapBlock, Linktype, PcapBlockOwned, PcapError, ToVec};

/// One Ethernet frame with the time it was seen (since the Unix epoch).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// When the frame was captured (or the file's timestamp when read from a file).
    pub time: Duration,
    /// The frame, from the destination MAC on, without FCS.
    pub data: Vec<u8>,
}

impl Frame {
    /// A frame stamped with the current time.
    pub fn now(data: Vec<u8>) -> Frame {
        Frame {
            time: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default(),
            data,
        }
    }
}

/// Why a capture file could not be read or written.
#[derive(Debug)]
pub enum PcapFileError {
    /// Opening, reading or writing the file failed.
    Io(std::io::Error),
    /// The file is not pcap or pcapng, or is corrupt/truncated.
    Format(String),
    /// The capture's link type is not Ethernet.
    LinkType(i32),
}

impl std::fmt::Display for PcapFileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PcapFileError::Io(e) => write!(f, "{e}"),
            PcapFileError::Format(s) => write!(f, "not a valid pcap/pcapng file: {s}"),
            PcapFileError::LinkType(l) => {
                write!(
                    f,
                    "link type {l} is not Ethernet (1); only Ethernet frames can be injected"
                )
            }
        }
    }
}

impl std::error::Error for PcapFileError {}

impl From<std::io::Error> for PcapFileError {
    fn from(e: std::io::Error) -> Self {
        PcapFileError::Io(e)
    }
}

/// Reads every Ethernet frame of a pcap or pcapng file, in file order.
pub fn read_frames(path: &Path) -> Result<Vec<Frame>, PcapFileError> {
    let file = File::open(path)?;
    let mut reader =
        create_reader(1 << 16, file).map_err(|e| PcapFileError::Format(format!("{e:?}")))?;
    let mut frames = Vec::new();
    // pcapng: per-interface timestamp resolution (units per second); default microseconds.
    let mut if_tsres: Vec<u64> = Vec::new();
    let mut legacy_nanos = false;
    let mut stalled = false;
    loop {
        match reader.next() {
            Ok((offset, block)) => {
                stalled = false;
                match block {
                    PcapBlockOwned::LegacyHeader(h) => {
                        check_linktype(h.network)?;
                        legacy_nanos = h.is_nanosecond_precision();
                    }
                    PcapBlockOwned::Legacy(b) => {
                        let len = (b.caplen as usize).min(b.data.len());
                        let sub = if legacy_nanos {
                            Duration::from_nanos(b.ts_usec as u64)
                        } else {
                            Duration::from_micros(b.ts_usec as u64)
                        };
                        frames.push(Frame {
                            time: Duration::from_secs(b.ts_sec as u64) + sub,
                            data: b.data[..len].to_vec(),
                        });
                    }
                    PcapBlockOwned::NG(Block::SectionHeader(_)) => if_tsres.clear(),
                    PcapBlockOwned::NG(Block::InterfaceDescription(idb)) => {
                        check_linktype(idb.linktype)?;
                        let units = idb.ts_resolution().unwrap_or(1_000_000);
                        if_tsres.push(units.max(1));
                    }
                    PcapBlockOwned::NG(Block::EnhancedPacket(epb)) => {
                        let units = if_tsres
                            .get(epb.if_id as usize)
                            .copied()
                            .unwrap_or(1_000_000);
                        let ts = ((epb.ts_high as u64) << 32) | epb.ts_low as u64;
                        let len = (epb.caplen as usize).min(epb.data.len());
                        frames.push(Frame {
                            time: Duration::from_secs(ts / units)
                                + Duration::from_nanos(
                                    ((ts % units) as u128 * 1_000_000_000 / units as u128) as u64,
                                ),
                            data: epb.data[..len].to_vec(),
                        });
                    }
                    PcapBlockOwned::NG(Block::SimplePacket(spb)) => {
                        let len = (spb.origlen as usize).min(spb.data.len());
                        frames.push(Frame {
                            time: Duration::ZERO,
                            data: spb.data[..len].to_vec(),
                        });
                    }
                    PcapBlockOwned::NG(_) => {}
                }
                reader.consume(offset);
            }
            Err(PcapError::Eof) => break,
            Err(PcapError::Incomplete(_)) => {
                if stalled {
                    return Err(PcapFileError::Format(
                        "file ends in the middle of a block".into(),
                    ));
                }
                stalled = true;
                reader
                    .refill()
                    .map_err(|e| PcapFileError::Format(format!("{e:?}")))?;
            }
            Err(e) => return Err(PcapFileError::Format(format!("{e:?}"))),
        }
    }
    Ok(frames)
}

fn check_linktype(l: Linktype) -> Result<(), PcapFileError> {
    if l == Linktype::ETHERNET {
        Ok(())
    } else {
        Err(PcapFileError::LinkType(l.0))
    }
}

/// Writes frames to a classic (microsecond, Ethernet) pcap file.
pub struct PcapWriter<W: Write> {
    out: W,
}

impl PcapWriter<BufWriter<File>> {
    /// Creates (truncates) `path` and writes the file header.
    pub fn create(path: &Path) -> Result<Self, PcapFileError> {
        PcapWriter::new(BufWriter::new(File::create(path)?))
    }
}

impl<W: Write> PcapWriter<W> {
    /// Writes the file header to `out`.
    pub fn new(mut out: W) -> Result<Self, PcapFileError> {
        let mut header = pcap_parser::PcapHeader::new();
        header.snaplen = 65535;
        header.network = Linktype::ETHERNET;
        let bytes = header
            .to_vec_raw()
            .map_err(|e| PcapFileError::Format(format!("{e:?}")))?;
        out.write_all(&bytes)?;
        Ok(PcapWriter { out })
    }

    /// Appends one frame.
    pub fn write(&mut self, frame: &Frame) -> Result<(), PcapFileError> {
        let block = LegacyPcapBlock {
            ts_sec: frame.time.as_secs() as u32,
            ts_usec: frame.time.subsec_micros(),
            caplen: frame.data.len() as u32,
            origlen: frame.data.len() as u32,
            data: &frame.data,
        };
        let bytes = block
            .to_vec_raw()
            .map_err(|e| PcapFileError::Format(format!("{e:?}")))?;
        self.out.write_all(&bytes)?;
        Ok(())
    }

    /// Flushes and returns the underlying writer.
    pub fn finish(mut self) -> Result<W, PcapFileError> {
        self.out.flush()?;
        Ok(self.out)
    }
}

/// Writes `frames` to a new classic pcap file at `path`.
pub fn write_frames(path: &Path, frames: &[Frame]) -> Result<(), PcapFileError> {
    let mut w = PcapWriter::create(path)?;
    for f in frames {
        w.write(f)?;
    }
    w.finish()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use pcap_parser::pcapng::{EnhancedPacketBlock, InterfaceDescriptionBlock, SectionHeaderBlock};

    fn sample() -> Vec<Frame> {
        (0..5u8)
            .map(|i| Frame {
                time: Duration::new(1_700_000_000 + i as u64, i as u32 * 1000),
                data: (0..(60 + i as usize * 100)).map(|b| b as u8 ^ i).collect(),
            })
            .collect()
    }

    #[test]
    fn pcap_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.pcap");
        let frames = sample();
        write_frames(&p, &frames).unwrap();
        assert_eq!(read_frames(&p).unwrap(), frames);
    }

    #[test]
    fn empty_pcap_has_no_frames() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("e.pcap");
        write_frames(&p, &[]).unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 24);
        assert!(read_frames(&p).unwrap().is_empty());
    }

    #[test]
    fn reads_pcapng_enhanced_packets() {
        let frames = sample();
        let mut bytes = Vec::new();
        let mut shb = SectionHeaderBlock {
            block_type: pcap_parser::pcapng::SHB_MAGIC,
            block_len1: 0,
            bom: pcap_parser::pcapng::BOM_MAGIC,
            major_version: 1,
            minor_version: 0,
            section_len: -1,
            options: vec![],
            block_len2: 0,
        };
        bytes.extend(shb.to_vec().unwrap());
        let mut idb = InterfaceDescriptionBlock {
            block_type: pcap_parser::pcapng::IDB_MAGIC,
            block_len1: 0,
            linktype: Linktype::ETHERNET,
            reserved: 0,
            snaplen: 65535,
            options: vec![],
            block_len2: 0,
            if_tsresol: 6,
            if_tsoffset: 0,
        };
        bytes.extend(idb.to_vec().unwrap());
        for f in &frames {
            let ts = f.time.as_micros() as u64;
            let mut epb = EnhancedPacketBlock {
                block_type: pcap_parser::pcapng::EPB_MAGIC,
                block_len1: 0,
                if_id: 0,
                ts_high: (ts >> 32) as u32,
                ts_low: ts as u32,
                caplen: f.data.len() as u32,
                origlen: f.data.len() as u32,
                data: &f.data,
                options: vec![],
                block_len2: 0,
            };
            bytes.extend(epb.to_vec().unwrap());
        }
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.pcapng");
        std::fs::write(&p, &bytes).unwrap();
        assert_eq!(read_frames(&p).unwrap(), frames);
    }

    #[test]
    fn non_ethernet_and_garbage_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("raw.pcap");
        let mut h = pcap_parser::PcapHeader::new();
        h.network = Linktype::RAW;
        std::fs::write(&p, h.to_vec_raw().unwrap()).unwrap();
        assert!(matches!(read_frames(&p), Err(PcapFileError::LinkType(_))));
        let g = dir.path().join("garbage.pcap");
        std::fs::write(&g, b"this is not a capture file at all").unwrap();
        assert!(matches!(read_frames(&g), Err(PcapFileError::Format(_))));
    }

    #[test]
    fn truncated_file_is_an_error_not_a_hang() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.pcap");
        write_frames(&p, &sample()).unwrap();
        let mut bytes = std::fs::read(&p).unwrap();
        bytes.truncate(bytes.len() - 10);
        std::fs::write(&p, &bytes).unwrap();
        assert!(read_frames(&p).is_err());
    }
}
