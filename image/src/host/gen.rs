//! Synthetic capture generator with exact ground truth (`cargo ferrule gen`).
//!
//! Writes a classic pcap (DLT_EN10MB, microsecond timestamps, snaplen 65535) of complete TCP
//! connections, and next to it a ground-truth file: one JSON line per connection, in the order
//! the connections end, in exactly the schema `cargo ferrule flows` prints, then one
//! `{"summary":{...}}` line.
//!
//! # Flow script
//! SYN, SYN-ACK, ACK (random ISNs, or ISNs a few KiB below 2^32 so the sequence numbers wrap);
//! then `exchanges` rounds of one client request (`req_min..=req_max` bytes, PSH) and a server
//! response of `1..=max_resp_segs` segments (the last one 1..=MSS bytes, PSH), the client
//! acknowledging every 2 segments over the bytes it holds contiguously (so reordering produces
//! real duplicate ACKs) and once more at the end of each exchange; then FIN, FIN, ACK (or, for
//! `rst_pct` of the flows, a client RST; or, for `open_pct` of the flows, nothing: they are
//! still open when the capture ends).
//!
//! Packets of `concurrent` live flows are interleaved uniformly at random; timestamps are 1 µs
//! apart. IP and TCP checksums are valid.
//!
//! # Impairments and what the ground truth expects
//! * **reorder**: adjacent response segments are swapped. No effect on the stream.
//! * **dup**: a data segment is sent twice. No effect on the stream.
//! * **loss**: a data segment is never written (a tap that missed it; the endpoints did get
//!   it, so later ACKs cover it). Its bytes are a hole: skipped in `sha256`, one more `gaps`,
//!   and counted in `lost`.
//!   The last data segment of a direction is never lost, so every hole lies between stored
//!   bytes. The states in the ground truth are the endpoints' real states.
//! * **overlap**: after both segments it covers have been written, a retransmission that
//!   overlaps the end of one segment and the start of the next (or the middle of a lone
//!   segment) is written with *conflicting* bytes (each byte inverted). Under the default
//!   first-copy-wins policy the original bytes stay, and the ground truth hashes the
//!   original bytes. Overlapping segments never cover a lost segment.
//!
//! Stream content: byte at stream offset `o` of a direction is `fill + (o mod 251)`, `fill`
//! drawn from the seeded RNG per direction; an optional needle overwrites the stream at every
//! multiple of `needle_every`. Same seed and settings, same bytes.

use sha2::{Digest, Sha256};
use std::collections::VecDeque;
use std::fmt::Write as _;
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use super::json::{DirSummary, FlowLine};

/// Everything that shapes a generated capture. `Default` is a small mixed capture.
#[derive(Clone, Debug, PartialEq)]
pub struct GenConfig {
    /// Total number of TCP connections.
    pub flows: u64,
    /// Connections kept live at once (their packets interleave).
    pub concurrent: u32,
    /// Request/response exchanges per connection.
    pub exchanges: u32,
    /// Smallest client request, bytes (≥ 1).
    pub req_min: u32,
    /// Largest client request, bytes.
    pub req_max: u32,
    /// A response has `1..=max_resp_segs` segments.
    pub max_resp_segs: u32,
    /// Maximum segment size for IPv4 flows (IPv6 flows use this minus 20).
    pub mss: u32,
    /// Percent of adjacent response-segment pairs swapped.
    pub reorder_pct: f64,
    /// Percent of data segments sent twice.
    pub dup_pct: f64,
    /// Percent of data segments lost (never written).
    pub loss_pct: f64,
    /// Percent of response bursts followed by a conflicting overlapping retransmission.
    pub overlap_pct: f64,
    /// Percent of connections over IPv6.
    pub ipv6_pct: f64,
    /// Percent of connections with one 802.1Q tag.
    pub vlan_pct: f64,
    /// Percent of connections with two tags (QinQ, 0x88a8 then 0x8100).
    pub qinq_pct: f64,
    /// Percent of connections whose two ISNs lie within 4 KiB below 2^32.
    pub wrap_pct: f64,
    /// Percent of connections closed by a client RST instead of FINs.
    pub rst_pct: f64,
    /// Percent of connections that never close (still open when the capture ends).
    pub open_pct: f64,
    /// RNG seed: same seed and settings give the same bytes.
    pub seed: u64,
    /// Optional pattern written into every stream at offsets `k * needle_every`.
    pub needle: Option<Vec<u8>>,
    /// Period of the needle in the stream, bytes (must exceed the needle's length).
    pub needle_every: u64,
}

impl Default for GenConfig {
    fn default() -> Self {
        GenConfig {
            flows: 100,
            concurrent: 10,
            exchanges: 4,
            req_min: 80,
            req_max: 600,
            max_resp_segs: 4,
            mss: 1448,
            reorder_pct: 0.0,
            dup_pct: 0.0,
            loss_pct: 0.0,
            overlap_pct: 0.0,
            ipv6_pct: 0.0,
            vlan_pct: 0.0,
            qinq_pct: 0.0,
            wrap_pct: 0.0,
            rst_pct: 0.0,
            open_pct: 0.0,
            seed: 1,
            needle: None,
            needle_every: 4096,
        }
    }
}

impl GenConfig {
    /// The benchmark mix of bench-method.md §2: 100 k flows, 10 k concurrent, 4 exchanges,
    /// ≤ 4 response segments (about 2.8 M packets, 516 B average frame).
    pub fn bench() -> Self {
        GenConfig {
            flows: 100_000,
            concurrent: 10_000,
            ..GenConfig::default()
        }
    }

    /// The bench mix with 10 % adjacent swaps and 1 % duplicates.
    pub fn bench_reorder() -> Self {
        GenConfig {
            reorder_pct: 10.0,
            dup_pct: 1.0,
            ..GenConfig::bench()
        }
    }

    fn validate(&self) -> Result<(), GenError> {
        let bad = |m: &str| Err(GenError::Config(m.to_string()));
        if self.concurrent == 0 {
            return bad("concurrent must be at least 1");
        }
        if self.req_min == 0 || self.req_min > self.req_max {
            return bad("need 1 <= req_min <= req_max");
        }
        if self.max_resp_segs == 0 {
            return bad("max_resp_segs must be at least 1");
        }
        if !(64..=9000).contains(&self.mss) {
            return bad("mss must be within 64..=9000");
        }
        if self.flows > (1 << 24) {
            return bad("at most 2^24 flows (client addresses are 10.x.y.z, one per flow)");
        }
        for (name, v) in [
            ("reorder", self.reorder_pct),
            ("dup", self.dup_pct),
            ("loss", self.loss_pct),
            ("overlap", self.overlap_pct),
            ("ipv6", self.ipv6_pct),
            ("vlan", self.vlan_pct),
            ("qinq", self.qinq_pct),
            ("wrap", self.wrap_pct),
            ("rst", self.rst_pct),
            ("open", self.open_pct),
        ] {
            if !(0.0..=100.0).contains(&v) {
                return Err(GenError::Config(format!(
                    "{name} percentage {v} not in 0..=100"
                )));
            }
        }
        if self.rst_pct + self.open_pct > 100.0 {
            return bad("rst + open must not exceed 100 %");
        }
        if let Some(n) = &self.needle {
            if n.is_empty() || n.len() as u64 >= self.needle_every {
                return bad("needle must be non-empty and shorter than needle_every");
            }
        }
        Ok(())
    }
}

/// Why generation failed.
#[derive(Debug)]
pub enum GenError {
    /// A setting is out of range.
    Config(String),
    /// Writing the capture or the ground truth failed.
    Io(PathBuf, io::Error),
}

impl std::fmt::Display for GenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GenError::Config(m) => write!(f, "bad generator setting: {m}"),
            GenError::Io(p, e) => write!(f, "{}: {e}", p.display()),
        }
    }
}

impl std::error::Error for GenError {}

/// Counters of one generated capture (also the ground truth's summary line).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GenStats {
    /// Packets written.
    pub packets: u64,
    /// Sum of frame lengths written.
    pub frame_bytes: u64,
    /// Connections generated.
    pub flows: u64,
    /// Stream bytes client→server (including lost ones).
    pub c2s_bytes: u64,
    /// Stream bytes server→client (including lost ones).
    pub s2c_bytes: u64,
    /// Data segments lost (not written).
    pub lost_segments: u64,
    /// Data segments written twice.
    pub dup_segments: u64,
    /// Conflicting overlapping retransmissions written.
    pub overlap_segments: u64,
    /// Adjacent segment swaps.
    pub swaps: u64,
}

/// Ground truth of a generated capture, as returned by [`generate`].
#[derive(Clone, Debug, Default)]
pub struct Truth {
    /// One entry per connection, in the order the connections end (open ones last).
    pub flows: Vec<FlowLine>,
    /// Capture counters.
    pub stats: GenStats,
}

/// The ground-truth file written next to `pcap`: `X.pcap` → `X.truth.jsonl`.
pub fn truth_path(pcap: &Path) -> PathBuf {
    pcap.with_extension("truth.jsonl")
}

/// Writes the capture to `pcap` and the ground truth to [`truth_path`]`(pcap)`.
pub fn generate_files(cfg: &GenConfig, pcap: &Path) -> Result<GenStats, GenError> {
    let io_err = |p: &Path| {
        let p = p.to_path_buf();
        move |e| GenError::Io(p, e)
    };
    let f = std::fs::File::create(pcap).map_err(io_err(pcap))?;
    let mut w = io::BufWriter::with_capacity(1 << 20, f);
    let truth = generate(cfg, &mut w).map_err(|e| match e {
        GenError::Io(_, e) => GenError::Io(pcap.to_path_buf(), e),
        e => e,
    })?;
    w.flush().map_err(io_err(pcap))?;
    let tp = truth_path(pcap);
    let mut t = io::BufWriter::new(std::fs::File::create(&tp).map_err(io_err(&tp))?);
    write_truth(&truth, &mut t).map_err(io_err(&tp))?;
    t.flush().map_err(io_err(&tp))?;
    Ok(truth.stats)
}

/// Writes ground truth as JSON lines (flows, then the summary).
pub fn write_truth(truth: &Truth, w: &mut impl Write) -> io::Result<()> {
    for f in &truth.flows {
        serde_json::to_writer(&mut *w, f)?;
        w.write_all(b"\n")?;
    }
    serde_json::to_writer(&mut *w, &serde_json::json!({ "summary": truth.stats }))?;
    w.write_all(b"\n")
}

/// Generates a capture into `out` (pcap bytes) and returns its ground truth.
pub fn generate(cfg: &GenConfig, out: &mut impl Write) -> Result<Truth, GenError> {
    cfg.validate()?;
    let mut g = Gen {
        cfg,
        rng: Rng::new(cfg.seed),
        frame: Vec::with_capacity(16 + 9100),
        payload: Vec::with_capacity(9100),
        ts_us: 1_700_000_000_000_000,
        truth: Truth::default(),
    };
    g.run(out).map_err(|e| GenError::Io(PathBuf::new(), e))?;
    Ok(g.truth)
}

/// A tiny seeded PRNG (SplitMix64): stable across crate versions, so a seed always yields
/// the same capture.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// Seeds the generator.
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x5851_f42d_4c95_7f2d)
    }
    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }
    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u32, hi: u32) -> u32 {
        lo + self.below(u64::from(hi - lo) + 1) as u32
    }
    /// True with probability `pct` percent.
    pub fn pct(&mut self, pct: f64) -> bool {
        pct > 0.0 && (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64) * 100.0 < pct
    }
}

const SYN: u8 = 0x02;
const FIN: u8 = 0x01;
const RST: u8 = 0x04;
const PSH: u8 = 0x08;
const ACK: u8 = 0x10;

/// One scripted packet of a flow; payload bytes are made when it is written.
#[derive(Clone, Copy, Debug)]
struct Pkt {
    from_client: bool,
    flags: u8,
    /// Stream offset of the first payload byte (sequence = isn + 1 + off).
    off: u64,
    len: u32,
    /// Acknowledged offset of the peer's stream (ack = peer isn + 1 + ack_off).
    ack_off: u64,
    /// Payload bytes are the inverse of the stream's (a conflicting retransmission).
    conflict: bool,
    /// SYN/FIN consume a sequence number: `off` is then the offset just past the data.
    syn_opts: bool,
}

struct Dir {
    isn: u32,
    fill: u8,
    /// Next stream offset to send.
    next: u64,
    hash: Sha256,
    present: u64,
    gaps: u32,
    /// The previous segment was lost (so a following present one closes a hole).
    in_hole: bool,
}

impl Dir {
    fn new(rng: &mut Rng, wrap: bool) -> Self {
        let isn = if wrap {
            (u32::MAX - rng.below(4096) as u32).wrapping_sub(1)
        } else {
            rng.next_u64() as u32
        };
        Dir {
            isn,
            fill: rng.next_u64() as u8,
            next: 0,
            hash: Sha256::new(),
            present: 0,
            gaps: 0,
            in_hole: false,
        }
    }
}

struct Flow {
    client: IpAddr,
    server: IpAddr,
    cport: u16,
    sport: u16,
    vlans: &'static [u16],
    c2s: Dir,
    s2c: Dir,
    /// Exchanges still to script.
    exchanges_left: u32,
    ending: End,
    /// Ending scripted: the queue's last packet ends the flow.
    closed: bool,
    queue: VecDeque<Pkt>,
    /// Highest offset of the c2s stream the server has acknowledged.
    srv_ack: u64,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum End {
    Fin,
    Rst,
    Open,
}

struct Gen<'a> {
    cfg: &'a GenConfig,
    rng: Rng,
    frame: Vec<u8>,
    payload: Vec<u8>,
    ts_us: u64,
    truth: Truth,
}

impl Gen<'_> {
    fn run(&mut self, out: &mut impl Write) -> io::Result<()> {
        // pcap global header: magic, v2.4, tz 0, sigfigs 0, snaplen 65535, DLT_EN10MB.
        let mut hdr = Vec::with_capacity(24);
        hdr.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
        hdr.extend_from_slice(&2u16.to_le_bytes());
        hdr.extend_from_slice(&4u16.to_le_bytes());
        hdr.extend_from_slice(&[0; 8]);
        hdr.extend_from_slice(&65535u32.to_le_bytes());
        hdr.extend_from_slice(&1u32.to_le_bytes());
        out.write_all(&hdr)?;

        let mut active: Vec<Flow> = Vec::with_capacity(self.cfg.concurrent as usize);
        let mut started = 0u64;
        let mut open_done: Vec<Flow> = Vec::new();
        loop {
            while active.len() < self.cfg.concurrent as usize && started < self.cfg.flows {
                active.push(self.new_flow(started));
                started += 1;
            }
            if active.is_empty() {
                break;
            }
            let i = self.rng.below(active.len() as u64) as usize;
            if active[i].queue.is_empty() {
                self.script_next(&mut active[i]);
            }
            match active[i].queue.pop_front() {
                Some(p) => self.write_pkt(&active[i], p, out)?,
                None => {
                    // Nothing left: an open flow that will never send again.
                    open_done.push(active.swap_remove(i));
                    continue;
                }
            }
            if active[i].closed && active[i].queue.is_empty() && active[i].ending != End::Open {
                let f = active.swap_remove(i);
                self.finish(f);
            }
        }
        for f in open_done {
            self.finish(f);
        }
        self.truth.stats.flows = started;
        Ok(())
    }

    fn new_flow(&mut self, idx: u64) -> Flow {
        let cfg = self.cfg;
        let rng = &mut self.rng;
        let v6 = rng.pct(cfg.ipv6_pct);
        let (client, server) = if v6 {
            let c = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, (idx >> 16) as u16, idx as u16);
            let s = Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, (idx % 251) as u16 + 1);
            (IpAddr::V6(c), IpAddr::V6(s))
        } else {
            // idx < 2^24: 10.x.y.z is unique per flow.
            let c = Ipv4Addr::new(10, (idx >> 16) as u8, (idx >> 8) as u8, idx as u8);
            let s = Ipv4Addr::new(192, 168, (idx % 251) as u8, 1);
            (IpAddr::V4(c), IpAddr::V4(s))
        };
        let cport = 1024 + rng.below(64512) as u16;
        let vlans: &'static [u16] = if rng.pct(cfg.qinq_pct) {
            &[100, 200]
        } else if rng.pct(cfg.vlan_pct) {
            &[42]
        } else {
            &[]
        };
        let wrap = rng.pct(cfg.wrap_pct);
        let c2s = Dir::new(rng, wrap);
        let s2c = Dir::new(rng, wrap);
        let r = rng.next_u64() as f64 / u64::MAX as f64 * 100.0;
        let ending = if r < cfg.rst_pct {
            End::Rst
        } else if r < cfg.rst_pct + cfg.open_pct {
            End::Open
        } else {
            End::Fin
        };
        let mut f = Flow {
            client,
            server,
            cport,
            sport: 80,
            vlans,
            c2s,
            s2c,
            exchanges_left: cfg.exchanges,
            ending,
            closed: false,
            queue: VecDeque::new(),
            srv_ack: 0,
        };
        let hs = |from_client, flags, ack_off| Pkt {
            from_client,
            flags,
            off: 0,
            len: 0,
            ack_off,
            conflict: false,
            syn_opts: flags & SYN != 0,
        };
        f.queue.push_back(hs(true, SYN, 0));
        f.queue.push_back(hs(false, SYN | ACK, 0));
        f.queue.push_back(hs(true, ACK, 0));
        f
    }

    fn mss(&self, f: &Flow) -> u32 {
        if f.client.is_ipv6() {
            self.cfg.mss - 20
        } else {
            self.cfg.mss
        }
    }

    /// Scripts the next phase of `f` (an exchange, or the close) into its queue.
    fn script_next(&mut self, f: &mut Flow) {
        if f.closed {
            return;
        }
        if f.exchanges_left == 0 {
            f.closed = true;
            let (c, s) = (f.c2s.next, f.s2c.next);
            let p = |from_client, flags, off, ack_off| Pkt {
                from_client,
                flags,
                off,
                len: 0,
                ack_off,
                conflict: false,
                syn_opts: false,
            };
            match f.ending {
                End::Fin => {
                    f.queue.push_back(p(true, FIN | ACK, c, s));
                    f.queue.push_back(p(false, FIN | ACK, s, c + 1));
                    f.queue.push_back(p(true, ACK, c + 1, s + 1));
                }
                End::Rst => f.queue.push_back(p(true, RST | ACK, c, s)),
                End::Open => {}
            }
            return;
        }
        f.exchanges_left -= 1;
        let last_exchange = f.exchanges_left == 0;
        let cfg = self.cfg;
        let mss = self.mss(f);

        // Client request: one segment (never lost if it is the direction's last).
        let len = self.rng.range(cfg.req_min, cfg.req_max.min(mss));
        let req = Pkt {
            from_client: true,
            flags: PSH | ACK,
            off: f.c2s.next,
            len,
            ack_off: f.s2c.next,
            conflict: false,
            syn_opts: false,
        };
        let req_lost = !last_exchange && self.rng.pct(cfg.loss_pct);
        self.account(&mut f.c2s, req, req_lost);
        f.c2s.next += u64::from(len);
        f.srv_ack = f.c2s.next;
        if !req_lost {
            f.queue.push_back(req);
            if self.rng.pct(cfg.dup_pct) {
                f.queue.push_back(req);
                self.truth.stats.dup_segments += 1;
            }
        }

        // Server response: n segments, the last 1..=mss bytes.
        let n = self.rng.range(1, cfg.max_resp_segs) as usize;
        let mut segs: Vec<(Pkt, bool)> = Vec::with_capacity(n + 2);
        for k in 0..n {
            let len = if k + 1 == n {
                self.rng.range(1, mss)
            } else {
                mss
            };
            let s = Pkt {
                from_client: false,
                flags: if k + 1 == n { PSH | ACK } else { ACK },
                off: f.s2c.next,
                len,
                ack_off: f.srv_ack,
                conflict: false,
                syn_opts: false,
            };
            let lost = !(last_exchange && k + 1 == n) && self.rng.pct(cfg.loss_pct);
            self.account(&mut f.s2c, s, lost);
            f.s2c.next += u64::from(len);
            segs.push((s, lost));
        }
        // Conflicting overlap over two present neighbours (or inside a lone present one).
        let mut overlap = None;
        if self.rng.pct(cfg.overlap_pct) {
            let k = self.rng.below(n as u64) as usize;
            let (a, a_lost) = segs[k];
            if !a_lost {
                let end_a = a.off + u64::from(a.len);
                overlap = Some(if k + 1 < n && !segs[k + 1].1 {
                    let b = segs[k + 1].0;
                    (
                        k,
                        true,
                        a.off + u64::from(a.len) / 2,
                        b.off + u64::from(b.len).div_ceil(2),
                    )
                } else if a.len >= 3 {
                    (k, false, a.off + 1, end_a - 1)
                } else {
                    (k, false, a.off, end_a)
                });
            }
        }
        // Reorder: swap adjacent pairs.
        let mut order: Vec<usize> = (0..n).collect();
        let mut j = 0;
        while j + 1 < n {
            if self.rng.pct(cfg.reorder_pct) {
                order.swap(j, j + 1);
                self.truth.stats.swaps += 1;
                j += 2;
            } else {
                j += 1;
            }
        }
        // Emit in order, the client acking every 2 received segments over contiguous bytes.
        let base = segs[0].0.off;
        let mut got = vec![false; n];
        let mut received = 0;
        let mut written = vec![false; n];
        for &k in &order {
            let (s, lost) = segs[k];
            // The endpoint got it even when the tap lost it.
            got[k] = true;
            written[k] = true;
            if !lost {
                f.queue.push_back(s);
                if self.rng.pct(cfg.dup_pct) {
                    f.queue.push_back(s);
                    self.truth.stats.dup_segments += 1;
                }
            }
            if let Some((ok, two, start, end)) = overlap {
                if written[ok] && (!two || written[ok + 1]) {
                    f.queue.push_back(Pkt {
                        off: start,
                        len: (end - start) as u32,
                        flags: ACK,
                        conflict: true,
                        ..segs[ok].0
                    });
                    self.truth.stats.overlap_segments += 1;
                    overlap = None;
                }
            }
            received += 1;
            if received % 2 == 0 {
                let contiguous = got.iter().take_while(|g| **g).count();
                let ack = if contiguous == 0 {
                    base
                } else {
                    segs[contiguous - 1].0.off + u64::from(segs[contiguous - 1].0.len)
                };
                f.queue.push_back(self.client_ack(f, ack));
            }
        }
        f.queue.push_back(self.client_ack(f, f.s2c.next));
    }

    fn client_ack(&self, f: &Flow, ack_off: u64) -> Pkt {
        Pkt {
            from_client: true,
            flags: ACK,
            off: f.c2s.next,
            len: 0,
            ack_off,
            conflict: false,
            syn_opts: false,
        }
    }

    /// Adds a freshly scripted segment to its direction's ground truth.
    fn account(&mut self, d: &mut Dir, p: Pkt, lost: bool) {
        if lost {
            self.truth.stats.lost_segments += 1;
            if !d.in_hole {
                d.gaps += 1;
                d.in_hole = true;
            }
        } else {
            d.in_hole = false;
            fill_payload(&mut self.payload, d.fill, p.off, p.len, false, self.cfg);
            d.hash.update(&self.payload);
            d.present += u64::from(p.len);
        }
    }

    fn finish(&mut self, f: Flow) {
        let (cs, ss) = match f.ending {
            End::Fin => ("TIME_WAIT", "CLOSED"),
            End::Rst => ("CLOSED", "CLOSED"),
            End::Open => ("ESTABLISHED", "ESTABLISHED"),
        };
        self.truth.stats.c2s_bytes += f.c2s.next;
        self.truth.stats.s2c_bytes += f.s2c.next;
        let dir = |d: Dir| DirSummary {
            bytes: d.present,
            sha256: hex(&d.hash.finalize()),
            gaps: d.gaps,
            // The tap's lost segments: the endpoints acknowledged them (later ACKs cover every
            // hole), so the monitor counts them lost; nothing else is lost at these sizes.
            lost: d.next - d.present,
        };
        self.truth.flows.push(FlowLine {
            client: endpoint(f.client, f.cport),
            server: endpoint(f.server, f.sport),
            c2s: dir(f.c2s),
            s2c: dir(f.s2c),
            client_state: cs.to_string(),
            server_state: ss.to_string(),
        });
    }

    fn write_pkt(&mut self, f: &Flow, p: Pkt, out: &mut impl Write) -> io::Result<()> {
        let (me, peer) = if p.from_client {
            (&f.c2s, &f.s2c)
        } else {
            (&f.s2c, &f.c2s)
        };
        let (src, dst, sport, dport) = if p.from_client {
            (f.client, f.server, f.cport, f.sport)
        } else {
            (f.server, f.client, f.sport, f.cport)
        };
        let syn = p.flags & SYN != 0;
        let seq = if syn {
            me.isn
        } else {
            me.isn.wrapping_add(1).wrapping_add(p.off as u32)
        };
        let ack = if p.flags & ACK != 0 {
            peer.isn.wrapping_add(1).wrapping_add(p.ack_off as u32)
        } else {
            0
        };
        fill_payload(
            &mut self.payload,
            me.fill,
            p.off,
            p.len,
            p.conflict,
            self.cfg,
        );
        let mss = self.mss(f) as u16;
        let fr = &mut self.frame;
        fr.clear();
        fr.extend_from_slice(&[0; 16]); // pcap record header, filled below
                                        // Ethernet.
        let (dmac, smac) = if p.from_client {
            ([2, 0, 0, 0, 0, 2], [2, 0, 0, 0, 0, 1])
        } else {
            ([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        };
        fr.extend_from_slice(&dmac);
        fr.extend_from_slice(&smac);
        for (i, v) in f.vlans.iter().enumerate() {
            let tpid: u16 = if f.vlans.len() == 2 && i == 0 {
                0x88a8
            } else {
                0x8100
            };
            fr.extend_from_slice(&tpid.to_be_bytes());
            fr.extend_from_slice(&v.to_be_bytes());
        }
        let tcp_hlen = if p.syn_opts { 28 } else { 20 };
        let tcp_len = tcp_hlen + self.payload.len();
        match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                fr.extend_from_slice(&0x0800u16.to_be_bytes());
                let ip_start = fr.len();
                let total = (20 + tcp_len) as u16;
                fr.extend_from_slice(&[0x45, 0]);
                fr.extend_from_slice(&total.to_be_bytes());
                fr.extend_from_slice(&(seq as u16).to_be_bytes()); // id
                fr.extend_from_slice(&[0x40, 0, 64, 6, 0, 0]); // DF, ttl, tcp, csum
                fr.extend_from_slice(&s.octets());
                fr.extend_from_slice(&d.octets());
                let c = fold(sum(&fr[ip_start..ip_start + 20], 0));
                fr[ip_start + 10..ip_start + 12].copy_from_slice(&(!c).to_be_bytes());
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                fr.extend_from_slice(&0x86ddu16.to_be_bytes());
                fr.extend_from_slice(&[0x60, 0, 0, 0]);
                fr.extend_from_slice(&(tcp_len as u16).to_be_bytes());
                fr.extend_from_slice(&[6, 64]);
                fr.extend_from_slice(&s.octets());
                fr.extend_from_slice(&d.octets());
            }
            _ => unreachable!("both ends of a flow have one address family"),
        }
        let tcp_start = fr.len();
        fr.extend_from_slice(&sport.to_be_bytes());
        fr.extend_from_slice(&dport.to_be_bytes());
        fr.extend_from_slice(&seq.to_be_bytes());
        fr.extend_from_slice(&ack.to_be_bytes());
        fr.push(((tcp_hlen / 4) as u8) << 4);
        fr.push(p.flags);
        fr.extend_from_slice(&(if syn { 65535u16 } else { 502 }).to_be_bytes());
        fr.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent
        if p.syn_opts {
            // MSS, NOP, window scale 7.
            fr.extend_from_slice(&[2, 4]);
            fr.extend_from_slice(&mss.to_be_bytes());
            fr.extend_from_slice(&[1, 3, 3, 7]);
        }
        fr.extend_from_slice(&self.payload);
        // Pseudo-header + segment.
        let mut acc = match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                sum(&s.octets(), 0) + sum(&d.octets(), 0) + 6 + tcp_len as u64
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                sum(&s.octets(), 0) + sum(&d.octets(), 0) + 6 + tcp_len as u64
            }
            _ => unreachable!(),
        };
        acc = sum(&fr[tcp_start..], acc);
        let c = !fold(acc);
        fr[tcp_start + 16..tcp_start + 18].copy_from_slice(&c.to_be_bytes());
        // Record header.
        let caplen = (fr.len() - 16) as u32;
        let ts = self.ts_us;
        self.ts_us += 1;
        fr[0..4].copy_from_slice(&((ts / 1_000_000) as u32).to_le_bytes());
        fr[4..8].copy_from_slice(&((ts % 1_000_000) as u32).to_le_bytes());
        fr[8..12].copy_from_slice(&caplen.to_le_bytes());
        fr[12..16].copy_from_slice(&caplen.to_le_bytes());
        self.truth.stats.packets += 1;
        self.truth.stats.frame_bytes += u64::from(caplen);
        out.write_all(fr)
    }
}

/// Fills `buf` with `len` stream bytes starting at offset `off` (inverted if `conflict`).
fn fill_payload(buf: &mut Vec<u8>, fill: u8, off: u64, len: u32, conflict: bool, cfg: &GenConfig) {
    buf.clear();
    // `PATTERN[i] = i mod 251`, long enough for any segment: a straight add that vectorizes.
    static PATTERN: std::sync::LazyLock<Vec<u8>> =
        std::sync::LazyLock::new(|| (0..251 + 65536).map(|i| (i % 251) as u8).collect());
    let m = (off % 251) as usize;
    buf.extend(
        PATTERN[m..m + len as usize]
            .iter()
            .map(|b| b.wrapping_add(fill)),
    );
    if let Some(needle) = &cfg.needle {
        let end = off + u64::from(len);
        let every = cfg.needle_every;
        // First needle occurrence that may touch [off, end).
        let mut k = off.saturating_sub(needle.len() as u64 - 1).div_ceil(every) * every;
        while k < end {
            for (i, &b) in needle.iter().enumerate() {
                let o = k + i as u64;
                if o >= off && o < end {
                    buf[(o - off) as usize] = b;
                }
            }
            k += every;
        }
    }
    if conflict {
        buf.iter_mut().for_each(|b| *b = !*b);
    }
}

/// The stream bytes `[off, off+len)` of a direction whose fill byte is `fill` (for tests and
/// tools that need the expected content).
pub fn stream_bytes(fill: u8, off: u64, len: u32, cfg: &GenConfig) -> Vec<u8> {
    let mut v = Vec::new();
    fill_payload(&mut v, fill, off, len, false, cfg);
    v
}

/// One's-complement sum of big-endian 16-bit words, added to `acc` (not folded).
fn sum(data: &[u8], mut acc: u64) -> u64 {
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let v = u64::from_be_bytes(c.try_into().expect("8 bytes"));
        acc += (v >> 48) + ((v >> 32) & 0xffff) + ((v >> 16) & 0xffff) + (v & 0xffff);
    }
    let mut words = chunks.remainder().chunks_exact(2);
    for w in &mut words {
        acc += u64::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [b] = words.remainder() {
        acc += u64::from(*b) << 8;
    }
    acc
}

fn fold(mut acc: u64) -> u16 {
    while acc >> 16 != 0 {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// `IP:PORT`, or `[IPv6]:PORT`.
pub fn endpoint(ip: IpAddr, port: u16) -> String {
    match ip {
        IpAddr::V4(a) => format!("{a}:{port}"),
        IpAddr::V6(a) => format!("[{a}]:{port}"),
    }
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}
