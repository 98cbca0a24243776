//! The capture reader: classic pcap (µs or ns, either byte order) and pcapng (any number of
//! sections and interfaces, each with its own link type and timestamp resolution).
//!
//! [`CaptureReader`] streams a capture frame by frame from any `Read` with two reused buffers
//! (no allocation per frame once they have grown to the largest record). Frames whose link type
//! is not Ethernet are handed out as Ethernet frames: the link header is replaced by a 14-byte
//! Ethernet header (zero MAC addresses) whose ethertype says what follows, so the monitor sees
//! one frame format. Supported link types:
//!
//! | link type | what | ethertype from |
//! |---|---|---|
//! | 1 | Ethernet | the frame (unchanged) |
//! | 101, 12, 14 | raw IP (12 and 14 are what some BSDs write for `DLT_RAW`) | the IP version nibble |
//! | 228 / 229 | raw IPv4 / raw IPv6 | the link type |
//! | 0, 108 | BSD NULL / LOOP: a 4-byte address family, either byte order | the family: 2 = IPv4; 10 (Linux), 23 (Windows), 24 (NetBSD, OpenBSD), 28 (FreeBSD, DragonFly), 30 (macOS) = IPv6 |
//! | 113 | Linux cooked capture (SLL, 16-byte header) | its protocol field |
//! | 276 | Linux cooked capture v2 (SLL2, 20-byte header) | its protocol field |
//!
//! A damaged capture (cut short, a record or block whose lengths make no sense, a packet on an
//! undeclared interface) yields every frame before the damage, then [`CaptureError::Damaged`]
//! with the byte offset of the record or block that is damaged; after an error the reader
//! yields nothing more. [`Capture`] loads a whole capture into memory (benchmarks, replays).

use std::io::Read;
use std::path::{Path, PathBuf};

/// Largest record a classic pcap may hold (Wireshark's limit, `WTAP_MAX_PACKET_SIZE_STANDARD`).
pub const MAX_RECORD: usize = 262_144;
/// Largest pcapng block read (blocks larger than this are damage, not data).
pub const MAX_BLOCK: usize = 16 << 20;

/// Why a capture could not be read (or not read to its end).
#[derive(Debug)]
pub enum CaptureError {
    /// The file could not be opened or read.
    Io(PathBuf, std::io::Error),
    /// The file is neither pcap nor pcapng (its first bytes say so).
    Format(PathBuf, String),
    /// A link type this reader does not know (the table in the module docs lists those it does).
    Linktype(PathBuf, u32),
    /// The capture is damaged at byte `offset`; `frames` frames before it were read.
    Damaged {
        /// The capture.
        path: PathBuf,
        /// Byte offset (from the start of the file) of the damaged record or block.
        offset: u64,
        /// Frames yielded before the damage.
        frames: u64,
        /// What is wrong there.
        what: String,
    },
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
                "{}: link type {l} is not supported (Ethernet 1, raw IP 12/14/101/228/229, \
                 NULL/LOOP 0/108, Linux SLL 113, SLL2 276 are)",
                p.display()
            ),
            CaptureError::Damaged {
                path,
                offset,
                frames,
                what,
            } => write!(
                f,
                "{}: damaged at byte {offset} (after {frames} frames): {what}",
                path.display()
            ),
        }
    }
}

impl std::error::Error for CaptureError {}

/// How a link type's header becomes an Ethernet header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Link {
    Ethernet,
    /// Raw IP, ethertype from the version nibble.
    RawIp,
    /// Raw IP of a known version.
    Fixed(u16),
    /// BSD NULL / LOOP: a 4-byte family.
    Null,
    /// Linux SLL: 16-byte header, protocol at 14.
    Sll,
    /// Linux SLL2: 20-byte header, protocol at 0.
    Sll2,
}

impl Link {
    fn of(linktype: u32) -> Option<Link> {
        Some(match linktype {
            1 => Link::Ethernet,
            12 | 14 | 101 => Link::RawIp,
            228 => Link::Fixed(0x0800),
            229 => Link::Fixed(0x86dd),
            0 | 108 => Link::Null,
            113 => Link::Sll,
            276 => Link::Sll2,
            _ => return None,
        })
    }
}

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;

/// The ethertype for a BSD address family (0 when unknown: the monitor counts it `not_ip`).
fn family_ethertype(family: u32) -> u16 {
    match family {
        2 => ETHERTYPE_IPV4,
        10 | 23 | 24 | 28 | 30 => ETHERTYPE_IPV6,
        _ => 0,
    }
}

/// `raw` as an Ethernet frame for `link`: borrowed when it already is one, else built in
/// `eth` (reused). A frame too short for its link header becomes an empty frame (the monitor
/// counts it `truncated_ethernet`).
fn to_ethernet<'a>(link: Link, raw: &'a [u8], eth: &'a mut Vec<u8>) -> &'a [u8] {
    let (ethertype, skip) = match link {
        Link::Ethernet => return raw,
        Link::RawIp => match raw.first().map(|b| b >> 4) {
            Some(4) => (ETHERTYPE_IPV4, 0),
            Some(6) => (ETHERTYPE_IPV6, 0),
            _ => (0, 0),
        },
        Link::Fixed(t) => (t, 0),
        Link::Null => match raw.get(..4) {
            Some(f) => {
                let le = u32::from_le_bytes([f[0], f[1], f[2], f[3]]);
                let be = u32::from_be_bytes([f[0], f[1], f[2], f[3]]);
                // The writer's byte order (NULL) or network order (LOOP, and some NULL
                // writers): the family is a small number, so the order that gives one wins.
                let t = family_ethertype(le);
                (if t != 0 { t } else { family_ethertype(be) }, 4)
            }
            None => return &[],
        },
        Link::Sll => match raw.get(14..16) {
            Some(p) => (u16::from_be_bytes([p[0], p[1]]), 16),
            None => return &[],
        },
        Link::Sll2 => match raw.get(..2) {
            Some(p) if raw.len() >= 20 => (u16::from_be_bytes([p[0], p[1]]), 20),
            _ => return &[],
        },
    };
    eth.clear();
    eth.extend_from_slice(&[0; 12]);
    eth.extend_from_slice(&ethertype.to_be_bytes());
    eth.extend_from_slice(&raw[skip..]);
    eth
}

/// One pcapng interface.
#[derive(Clone, Copy, Debug)]
struct Iface {
    linktype: u32,
    /// `None`: a link type this reader does not know (an error when a packet uses it).
    link: Option<Link>,
    /// Timestamp units per second.
    units: u64,
    /// Seconds added to every timestamp (`if_tsoffset`).
    offset_s: i64,
}

/// Which format, after the header.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Pcap { big: bool, ns: bool, link: Link },
    Pcapng { big: bool },
}

/// A streaming capture reader (see the module docs).
pub struct CaptureReader<R: Read> {
    r: R,
    path: PathBuf,
    kind: Kind,
    /// Byte offset of the next unread byte.
    offset: u64,
    /// Frames yielded so far.
    frames: u64,
    ifaces: Vec<Iface>,
    /// The current record or block.
    buf: Vec<u8>,
    /// A synthesized Ethernet frame.
    eth: Vec<u8>,
    /// Timestamp of the last frame (for pcapng simple packets, which have none).
    last_ts: u64,
    done: bool,
}

impl CaptureReader<std::io::BufReader<std::fs::File>> {
    /// Opens `path` and reads its header.
    pub fn open(path: &Path) -> Result<Self, CaptureError> {
        let f = std::fs::File::open(path).map_err(|e| CaptureError::Io(path.into(), e))?;
        CaptureReader::new(std::io::BufReader::with_capacity(1 << 20, f), path)
    }
}

impl<R: Read> CaptureReader<R> {
    /// Reads the header of the capture `r` (named `path` in errors).
    pub fn new(r: R, path: &Path) -> Result<Self, CaptureError> {
        let mut me = CaptureReader {
            r,
            path: path.into(),
            kind: Kind::Pcapng { big: false },
            offset: 0,
            frames: 0,
            ifaces: Vec::new(),
            buf: Vec::new(),
            eth: Vec::new(),
            last_ts: 0,
            done: false,
        };
        let got = me.fill(4)?;
        if got < 4 {
            return Err(me.format("shorter than any capture header"));
        }
        let magic = [me.buf[0], me.buf[1], me.buf[2], me.buf[3]];
        let pcap = match magic {
            [0xd4, 0xc3, 0xb2, 0xa1] => Some((false, false)),
            [0xa1, 0xb2, 0xc3, 0xd4] => Some((true, false)),
            [0x4d, 0x3c, 0xb2, 0xa1] => Some((false, true)),
            [0xa1, 0xb2, 0x3c, 0x4d] => Some((true, true)),
            _ => None,
        };
        if let Some((big, ns)) = pcap {
            let got = me.fill(24)?;
            if got < 24 {
                return Err(me.format("pcap file header cut short"));
            }
            // The link type is the low 16 bits; the upper bits carry FCS flags.
            let linktype = me.u32_at(big, 20) & 0xffff;
            let link = Link::of(linktype)
                .ok_or_else(|| CaptureError::Linktype(me.path.clone(), linktype))?;
            me.offset = 24;
            me.kind = Kind::Pcap { big, ns, link };
            return Ok(me);
        }
        if magic != [0x0a, 0x0d, 0x0d, 0x0a] {
            return Err(me.format(&format!(
                "unknown magic {:02x}{:02x}{:02x}{:02x}",
                magic[0], magic[1], magic[2], magic[3]
            )));
        }
        // A pcapng section header: its byte-order magic is at 8.
        let got = me.fill(12)?;
        if got < 12 {
            return Err(me.format("pcapng section header cut short"));
        }
        let big = match me.buf[8..12] {
            [0x4d, 0x3c, 0x2b, 0x1a] => false,
            [0x1a, 0x2b, 0x3c, 0x4d] => true,
            _ => return Err(me.format("pcapng byte-order magic missing")),
        };
        me.kind = Kind::Pcapng { big };
        let len = me.u32_at(big, 4) as usize;
        if len < 28 || !len.is_multiple_of(4) || len > MAX_BLOCK {
            return Err(me.format(&format!("pcapng section header claims length {len}")));
        }
        if me.fill(len)? < len {
            return Err(me.format("pcapng section header cut short"));
        }
        me.offset = len as u64;
        Ok(me)
    }

    fn format(&self, m: &str) -> CaptureError {
        CaptureError::Format(self.path.clone(), m.to_string())
    }

    fn damaged(&mut self, offset: u64, what: String) -> CaptureError {
        self.done = true;
        CaptureError::Damaged {
            path: self.path.clone(),
            offset,
            frames: self.frames,
            what,
        }
    }

    fn u32_at(&self, big: bool, at: usize) -> u32 {
        let b = [
            self.buf[at],
            self.buf[at + 1],
            self.buf[at + 2],
            self.buf[at + 3],
        ];
        if big {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        }
    }

    fn u16_at(&self, big: bool, at: usize) -> u16 {
        let b = [self.buf[at], self.buf[at + 1]];
        if big {
            u16::from_be_bytes(b)
        } else {
            u16::from_le_bytes(b)
        }
    }

    /// Reads until `buf` holds `n` bytes (or the input ends); returns how many it holds.
    fn fill(&mut self, n: usize) -> Result<usize, CaptureError> {
        let have = self.buf.len();
        if have >= n {
            return Ok(have);
        }
        self.buf.resize(n, 0);
        let mut at = have;
        while at < n {
            match self.r.read(&mut self.buf[at..n]) {
                Ok(0) => break,
                Ok(k) => at += k,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.done = true;
                    return Err(CaptureError::Io(self.path.clone(), e));
                }
            }
        }
        self.buf.truncate(at);
        Ok(at)
    }

    /// The next frame as `(timestamp µs since the epoch, Ethernet frame)`, `Ok(None)` at the
    /// end of the capture, or the error that ends it.
    pub fn next_frame(&mut self) -> Result<Option<(u64, &[u8])>, CaptureError> {
        if self.done {
            return Ok(None);
        }
        match self.kind {
            Kind::Pcap { big, ns, link } => self.next_pcap(big, ns, link),
            Kind::Pcapng { .. } => self.next_pcapng(),
        }
    }

    fn next_pcap(
        &mut self,
        big: bool,
        ns: bool,
        link: Link,
    ) -> Result<Option<(u64, &[u8])>, CaptureError> {
        let at = self.offset;
        self.buf.clear();
        let got = self.fill(16)?;
        if got == 0 {
            self.done = true;
            return Ok(None);
        }
        if got < 16 {
            return Err(self.damaged(
                at,
                format!("cut short: record header needs 16 bytes, {got} left"),
            ));
        }
        let sec = u64::from(self.u32_at(big, 0));
        let sub = u64::from(self.u32_at(big, 4));
        let caplen = self.u32_at(big, 8) as usize;
        if caplen > MAX_RECORD {
            return Err(self.damaged(
                at,
                format!("record claims {caplen} captured bytes (at most {MAX_RECORD})"),
            ));
        }
        self.buf.clear();
        let got = self.fill(caplen)?;
        if got < caplen {
            return Err(self.damaged(
                at,
                format!("cut short: record holds {caplen} bytes, {got} left"),
            ));
        }
        self.offset += 16 + caplen as u64;
        self.frames += 1;
        let ts = sec * 1_000_000 + if ns { sub / 1000 } else { sub };
        self.last_ts = ts;
        Ok(Some((ts, to_ethernet(link, &self.buf, &mut self.eth))))
    }

    fn next_pcapng(&mut self) -> Result<Option<(u64, &[u8])>, CaptureError> {
        loop {
            let at = self.offset;
            self.buf.clear();
            let got = self.fill(8)?;
            if got == 0 {
                self.done = true;
                return Ok(None);
            }
            if got < 8 {
                return Err(self.damaged(
                    at,
                    format!("cut short: block header needs 8 bytes, {got} left"),
                ));
            }
            if self.buf[..4] == [0x0a, 0x0d, 0x0d, 0x0a] {
                // A further section header fixes the byte order of what follows.
                if self.fill(12)? < 12 {
                    return Err(self.damaged(at, "cut short: section header".into()));
                }
                let big = match self.buf[8..12] {
                    [0x4d, 0x3c, 0x2b, 0x1a] => false,
                    [0x1a, 0x2b, 0x3c, 0x4d] => true,
                    _ => return Err(self.damaged(at, "section header's byte-order magic".into())),
                };
                self.kind = Kind::Pcapng { big };
                self.ifaces.clear();
            }
            let Kind::Pcapng { big } = self.kind else {
                return Ok(None);
            };
            let ty = self.u32_at(big, 0);
            let len = self.u32_at(big, 4) as usize;
            if len < 12 || !len.is_multiple_of(4) || len > MAX_BLOCK {
                return Err(self.damaged(at, format!("block of type {ty:#x} claims length {len}")));
            }
            let got = self.fill(len)?;
            if got < len {
                return Err(self.damaged(
                    at,
                    format!("cut short: block of type {ty:#x} holds {len} bytes, {got} left"),
                ));
            }
            if self.u32_at(big, len - 4) as usize != len {
                return Err(self.damaged(
                    at,
                    format!("block of type {ty:#x}: trailing length differs from {len}"),
                ));
            }
            self.offset += len as u64;
            match ty {
                1 => {
                    let iface = self.idb(big, len).map_err(|w| self.damaged(at, w))?;
                    self.ifaces.push(iface);
                }
                6 | 2 => {
                    // Enhanced packet (6) or the obsolete packet block (2, 16-bit interface).
                    if len < 32 {
                        return Err(self.damaged(at, "packet block shorter than 32 bytes".into()));
                    }
                    let if_id = if ty == 6 {
                        self.u32_at(big, 8) as usize
                    } else {
                        usize::from(self.u16_at(big, 8))
                    };
                    let raw_ts =
                        (u64::from(self.u32_at(big, 12)) << 32) | u64::from(self.u32_at(big, 16));
                    let caplen = self.u32_at(big, 20) as usize;
                    if caplen > len - 32 {
                        return Err(self.damaged(
                            at,
                            format!("packet claims {caplen} bytes in a {len}-byte block"),
                        ));
                    }
                    let Some(iface) = self.ifaces.get(if_id).copied() else {
                        return Err(
                            self.damaged(at, format!("packet on undeclared interface {if_id}"))
                        );
                    };
                    let Some(link) = iface.link else {
                        self.done = true;
                        return Err(CaptureError::Linktype(self.path.clone(), iface.linktype));
                    };
                    let us = u64::try_from(
                        u128::from(raw_ts) * 1_000_000 / u128::from(iface.units.max(1)),
                    )
                    .unwrap_or(u64::MAX);
                    let ts = us.saturating_add_signed(iface.offset_s.saturating_mul(1_000_000));
                    self.frames += 1;
                    self.last_ts = ts;
                    let raw = &self.buf[28..28 + caplen];
                    return Ok(Some((ts, to_ethernet(link, raw, &mut self.eth))));
                }
                3 => {
                    // Simple packet: interface 0, no timestamp (the previous frame's is used).
                    if len < 16 {
                        return Err(self.damaged(at, "simple packet block too short".into()));
                    }
                    let orig = self.u32_at(big, 8) as usize;
                    let Some(iface) = self.ifaces.first().copied() else {
                        return Err(self.damaged(at, "simple packet before any interface".into()));
                    };
                    let Some(link) = iface.link else {
                        self.done = true;
                        return Err(CaptureError::Linktype(self.path.clone(), iface.linktype));
                    };
                    let caplen = orig.min(len - 16);
                    self.frames += 1;
                    let raw = &self.buf[12..12 + caplen];
                    return Ok(Some((self.last_ts, to_ethernet(link, raw, &mut self.eth))));
                }
                _ => {}
            }
        }
    }

    /// An interface description block in `buf` (`len` bytes): link type and timestamp options.
    fn idb(&self, big: bool, len: usize) -> Result<Iface, String> {
        if len < 20 {
            return Err("interface block shorter than 20 bytes".into());
        }
        let linktype = u32::from(self.u16_at(big, 8));
        let mut iface = Iface {
            linktype,
            link: Link::of(linktype),
            units: 1_000_000,
            offset_s: 0,
        };
        let mut o = 16;
        while o + 4 <= len - 4 {
            let code = self.u16_at(big, o);
            let olen = usize::from(self.u16_at(big, o + 2));
            let v = o + 4;
            if v + olen > len - 4 {
                return Err(format!("interface option {code} runs past its block"));
            }
            match code {
                0 => break,
                9 if olen >= 1 => {
                    let r = self.buf[v];
                    let exp = u32::from(r & 0x7f);
                    iface.units = if r & 0x80 != 0 {
                        if exp > 63 {
                            return Err(format!("if_tsresol 2^-{exp} is too fine"));
                        }
                        1u64 << exp
                    } else {
                        if exp > 19 {
                            return Err(format!("if_tsresol 10^-{exp} is too fine"));
                        }
                        10u64.pow(exp)
                    };
                }
                14 if olen >= 8 => {
                    let b: [u8; 8] = self.buf[v..v + 8].try_into().unwrap_or([0; 8]);
                    iface.offset_s = if big {
                        i64::from_be_bytes(b)
                    } else {
                        i64::from_le_bytes(b)
                    };
                }
                _ => {}
            }
            o = v + olen.div_ceil(4) * 4;
        }
        Ok(iface)
    }
}

/// A whole capture in memory.
///
/// Frames are copied into one contiguous buffer with an index, so a benchmark or a replay
/// walks them without I/O or per-frame allocation.
#[derive(Default)]
pub struct Capture {
    data: Vec<u8>,
    /// (start in `data`, length, timestamp in µs).
    index: Vec<(usize, u32, u64)>,
}

impl Capture {
    /// Loads `path` (pcap or pcapng) whole; any damage is an error.
    pub fn load(path: &Path) -> Result<Capture, CaptureError> {
        match Capture::load_partial(path)? {
            (cap, None) => Ok(cap),
            (_, Some(e)) => Err(e),
        }
    }

    /// Loads `path` up to its end or its damage: the frames before the damage, and the error
    /// that stopped the reading (`None` when the whole capture was read). An unreadable header
    /// is an error outright.
    pub fn load_partial(path: &Path) -> Result<(Capture, Option<CaptureError>), CaptureError> {
        let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        let mut r = CaptureReader::open(path)?;
        let mut cap = Capture {
            data: Vec::with_capacity(size as usize),
            index: Vec::with_capacity((size / 400) as usize),
        };
        loop {
            match r.next_frame() {
                Ok(Some((ts, f))) => cap.push(f, ts),
                Ok(None) => return Ok((cap, None)),
                Err(e) => return Ok((cap, Some(e))),
            }
        }
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

    /// Frame `i` with its timestamp, if there is one.
    pub fn frame(&self, i: usize) -> Option<(u64, &[u8])> {
        let &(s, l, ts) = self.index.get(i)?;
        Some((ts, self.data.get(s..s + l as usize)?))
    }

    /// Frames with their timestamps (µs since the epoch), in capture order.
    pub fn frames(&self) -> impl Iterator<Item = (u64, &[u8])> + '_ {
        self.index
            .iter()
            .map(|&(s, l, ts)| (ts, &self.data[s..s + l as usize]))
    }
}
