//! The host runner: what [`crate::main!`] makes on a development machine, and what
//! `cargo ferrule replay` runs.
//!
//! `APP CAPTURE [--inline] [--out OUT.pcap] [--checksums verify|ignore|auto]`: loads the capture (pcap or pcapng), builds one
//! core (`CoreInfo { id: 0, cores: 1 }`), feeds the monitor in batches of `Settings::batch`
//! frames with the capture's timestamps, ends every open connection (`close_all`), then calls
//! `finish`. The app's log lines go to stdout in order; run statistics go to stderr. Inline
//! (by `--inline` or `Settings::mode`): verdicts are applied and the forwarded, rewritten and
//! injected frames are written to `--out` (pcap, Ethernet, the received frame's timestamp).
//! Checksums are the monitor's business (`monitor::Config::checksums`, from the app's
//! settings unless `--checksums` says otherwise): bad segments are counted by reason in the
//! report, and the report says when `auto` found the capture checksum-offloaded.

use std::io::Write;
use std::path::{Path, PathBuf};

use monitor::{DropReason, HostStorage, Monitor, Verdict};

#[cfg(test)]
use crate::capture::Capture;
use crate::capture::CaptureReader;
use crate::frags::{fate, frag_key, marks, Fate, FragHold, Held, HELD_PER_SLOT, HOLD_FRAME_MAX};
use crate::{Appliance, CoreInfo, Log, Mode, Program};

/// What the command line asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Args {
    /// The capture to replay.
    pub capture: PathBuf,
    /// Apply verdicts (also on when the app's settings say inline).
    pub inline: bool,
    /// Where forwarded frames go (inline only).
    pub out: Option<PathBuf>,
    /// Overrides the settings' `monitor.checksums`.
    pub checksums: Option<monitor::Checksums>,
}

const USAGE: &str =
    "usage: APP CAPTURE [--inline] [--out OUT.pcap] [--checksums verify|ignore|auto]";

impl Args {
    /// Parses the arguments after the program name.
    pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Args, String> {
        let mut capture = None;
        let mut inline = false;
        let mut out = None;
        let mut checksums = None;
        let mut it = args.into_iter();
        while let Some(a) = it.next() {
            match a.as_str() {
                "--inline" => inline = true,
                "--out" => {
                    out = Some(PathBuf::from(
                        it.next()
                            .ok_or_else(|| format!("--out needs a file; {USAGE}"))?,
                    ))
                }
                "--checksums" => {
                    checksums = Some(match it.next().as_deref() {
                        Some("verify") => monitor::Checksums::Verify,
                        Some("ignore") => monitor::Checksums::Ignore,
                        Some("auto") => monitor::Checksums::Auto,
                        _ => {
                            return Err(format!(
                                "--checksums needs verify, ignore or auto; {USAGE}"
                            ))
                        }
                    })
                }
                "-h" | "--help" => return Err(USAGE.to_string()),
                s if s.starts_with('-') => return Err(format!("unknown option `{s}`; {USAGE}")),
                _ if capture.is_some() => return Err(format!("one capture only; {USAGE}")),
                _ => capture = Some(PathBuf::from(a)),
            }
        }
        Ok(Args {
            capture: capture.ok_or_else(|| format!("no capture given; {USAGE}"))?,
            inline,
            out,
            checksums,
        })
    }
}

/// What a replay did (printed on stderr by [`main`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Frames read from the capture.
    pub frames: u64,
    /// Frames forwarded unchanged (inline).
    pub forwarded: u64,
    /// Frames forwarded rewritten (inline).
    pub rewritten: u64,
    /// Frames dropped by verdict (inline).
    pub dropped: u64,
    /// Frames the middlebox injected (inline).
    pub injected: u64,
    /// IP fragments held until their datagram's verdict (inline).
    pub held: u64,
    /// IP fragments forwarded at once because the hold store was full (inline).
    pub unheld: u64,
    /// Frames not monitored, by reason name (non-zero only; bad checksums are
    /// `bad_ipv4_checksum` and `bad_tcp_checksum`).
    pub unmonitored: Vec<(&'static str, u64)>,
    /// What checksum verification did (`offloaded`: `auto` stopped checking).
    pub checksums: monitor::ChecksumStats,
    /// The capture's damage, when it ended early: every frame before it was replayed and every
    /// connection ended as at the end of a whole capture; [`main`] then exits 1.
    pub damage: Option<String>,
}

/// A classic pcap writer (microsecond timestamps, Ethernet).
pub struct PcapOut<W: Write> {
    w: W,
}

impl<W: Write> PcapOut<W> {
    /// Writes the file header.
    pub fn new(mut w: W) -> std::io::Result<Self> {
        let mut h = Vec::with_capacity(24);
        h.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
        h.extend_from_slice(&2u16.to_le_bytes());
        h.extend_from_slice(&4u16.to_le_bytes());
        h.extend_from_slice(&0i32.to_le_bytes());
        h.extend_from_slice(&0u32.to_le_bytes());
        h.extend_from_slice(&65535u32.to_le_bytes());
        h.extend_from_slice(&1u32.to_le_bytes());
        w.write_all(&h)?;
        Ok(PcapOut { w })
    }

    /// Appends one frame stamped `ts_us`.
    pub fn frame(&mut self, ts_us: u64, frame: &[u8]) -> std::io::Result<()> {
        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(&((ts_us / 1_000_000) as u32).to_le_bytes());
        h[4..8].copy_from_slice(&((ts_us % 1_000_000) as u32).to_le_bytes());
        h[8..12].copy_from_slice(&(frame.len() as u32).to_le_bytes());
        h[12..16].copy_from_slice(&(frame.len() as u32).to_le_bytes());
        self.w.write_all(&h)?;
        self.w.write_all(frame)
    }

    /// Flushes and returns the writer.
    pub fn finish(mut self) -> std::io::Result<W> {
        self.w.flush()?;
        Ok(self.w)
    }
}

/// Runs program `P` over `args.capture`. Log lines go to stdout.
pub fn run<P: Program>(args: &Args) -> Result<Report, String> {
    let s = P::SETTINGS;
    s.check()?;
    let inline = args.inline || s.mode == Mode::Inline;
    if args.out.is_some() && !inline {
        return Err("--out needs inline mode (--inline)".into());
    }
    // Streamed: one frame in memory at a time (the reader's buffer).
    let mut reader = CaptureReader::open(&args.capture).map_err(|e| e.to_string())?;
    let mut out = match &args.out {
        Some(p) => Some(open_out(p)?),
        None => None,
    };
    let werr = |e: std::io::Error| format!("writing the output capture: {e}");
    let mut storage: HostStorage<<P::App as monitor::Middlebox>::Flow> =
        HostStorage::new(s.flows, s.chunks, s.frag_slots);
    let mut cfg = s.monitor_config(0);
    cfg.inline = inline;
    cfg.hash_key = monitor::Config::random_hash_key();
    if let Some(c) = args.checksums {
        cfg.checksums = c;
    }
    let log = Log::for_core(0);
    let mb = P::App::new(&CoreInfo {
        id: 0,
        cores: 1,
        log,
    });
    let mut mon = Monitor::new(mb, cfg, storage.storage())
        .map_err(|e| format!("monitor configuration: {e}"))?;
    let mut rep = Report::default();
    let mut last_ts = 0;
    let hold_cap = if inline {
        s.frag_slots * HELD_PER_SLOT
    } else {
        0
    };
    let mut hold_frames = vec![[0u8; HOLD_FRAME_MAX]; hold_cap];
    let mut hold_table = vec![Held::EMPTY; hold_cap];
    let mut hold = FragHold::new(&mut hold_frames, &mut hold_table);
    let timeout = cfg.frag_timeout_us;
    // The reader reuses its buffer for each frame: a batch's frames are copied out, so that
    // the monitor can read each group of READ_AHEAD ahead (parse, hash, prefetch) before
    // processing it, as the appliance's per-core loop does.
    let per_batch = s.batch.max(1);
    let mut batch = FrameBatch::default();
    let mut done = false;
    while !done {
        match reader.next_frame() {
            Ok(Some((ts, f))) => batch.push(ts, f),
            Ok(None) => done = true,
            Err(e) => {
                rep.damage = Some(e.to_string());
                done = true;
            }
        }
        // A full batch, or the frames left when the capture ended.
        let ready = batch.len() >= per_batch || (done && !batch.is_empty());
        if !ready {
            continue;
        }
        if let Some(ts) = batch.first_ts() {
            mon.begin_batch(ts);
        }
        // One `Vec` per batch: host tool, not the packet path.
        let frames: Vec<(u64, &[u8])> = batch.iter().collect();
        for group in frames.chunks(monitor::READ_AHEAD) {
            mon.read_ahead(group.iter().map(|&(_, f)| f));
            for &(ts, f) in group {
                'frame: {
                    rep.frames += 1;
                    last_ts = ts;
                    if !inline {
                        let _ = mon.frame(f, ts);
                        break 'frame;
                    }
                    let before = marks(mon.counters());
                    let forward = match mon.frame(f, ts) {
                        Verdict::Forward => true,
                        Verdict::Drop => false,
                        Verdict::Rewritten(b) => {
                            rep.rewritten += 1;
                            put(&mut out, ts, b).map_err(werr)?;
                            emit_injected(&mut mon, &mut out, ts, &mut rep).map_err(werr)?;
                            break 'frame;
                        }
                    };
                    let fate = fate(before, marks(mon.counters()));
                    let key = if fate == Fate::Whole {
                        None
                    } else {
                        frag_key(f)
                    };
                    match (fate, key) {
                        (Fate::Held, Some(k)) => {
                            if hold.hold(k, 0, f, ts) {
                                rep.held += 1;
                                emit_injected(&mut mon, &mut out, ts, &mut rep).map_err(werr)?;
                                break 'frame;
                            }
                            rep.unheld += 1;
                        }
                        (Fate::Completed, Some(k)) if forward => {
                            let mut res = Ok(());
                            rep.forwarded += hold.release(&k, |_, b| {
                                if res.is_ok() {
                                    res = put(&mut out, ts, b);
                                }
                            }) as u64;
                            res.map_err(werr)?;
                        }
                        (Fate::Completed, Some(k)) => rep.dropped += hold.discard(&k) as u64,
                        _ => {}
                    }
                    if forward {
                        rep.forwarded += 1;
                        put(&mut out, ts, f).map_err(werr)?;
                    } else {
                        rep.dropped += 1;
                    }
                    emit_injected(&mut mon, &mut out, ts, &mut rep).map_err(werr)?;
                }
            }
        }
        batch.clear();
        end_batch(
            &mut mon, &mut out, &mut rep, &mut hold, inline, last_ts, timeout,
        )
        .map_err(werr)?;
    }
    mon.close_all();
    if inline {
        emit_injected(&mut mon, &mut out, last_ts, &mut rep).map_err(werr)?;
        // Datagrams that never completed: forwarded, as the image does after the timeout.
        expire_held(&mut hold, last_ts, 0, &mut out, &mut rep).map_err(werr)?;
    }
    let mut log = log;
    mon.middlebox_mut().finish(&mut log);
    let _ = std::io::stdout().flush();
    let c = mon.counters();
    rep.unmonitored = DropReason::ALL
        .iter()
        .map(|r| (r.name(), c.drop_count(*r)))
        .filter(|(_, n)| *n > 0)
        .collect();
    rep.checksums = c.checksums;
    if let Some(o) = out {
        o.finish().map_err(werr)?;
    }
    Ok(rep)
}

/// The frames of one receive batch, copied one after the other into one buffer kept from batch
/// to batch (no allocation once it has grown). A capture reader reuses its buffer for each
/// frame; the host tools collect a batch here so that the monitor can read it ahead
/// (`Monitor::read_ahead`) before processing it, as the appliance's per-core loop does.
#[derive(Default)]
pub struct FrameBatch {
    bytes: Vec<u8>,
    /// (timestamp µs, end in `bytes`) per frame.
    ends: Vec<(u64, usize)>,
}

impl FrameBatch {
    /// Add a frame received at `ts_us`.
    pub fn push(&mut self, ts_us: u64, frame: &[u8]) {
        self.bytes.extend_from_slice(frame);
        self.ends.push((ts_us, self.bytes.len()));
    }

    /// Frames held.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// No frame held.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The first frame's timestamp (the batch's time).
    pub fn first_ts(&self) -> Option<u64> {
        self.ends.first().map(|&(ts, _)| ts)
    }

    /// The frames in order, with their timestamps.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &[u8])> + '_ {
        let mut start = 0;
        self.ends.iter().map(move |&(ts, end)| {
            let f = self.bytes.get(start..end).unwrap_or(&[]);
            start = end;
            (ts, f)
        })
    }

    /// Forget every frame (the buffer is kept).
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.ends.clear();
    }
}

/// The end of a receive batch: the monitor's, then (inline) the injected frames and the held
/// fragments whose datagram timed out.
#[allow(clippy::too_many_arguments)]
fn end_batch<M: monitor::Middlebox, W: Write>(
    mon: &mut Monitor<'_, M>,
    out: &mut Option<PcapOut<W>>,
    rep: &mut Report,
    hold: &mut FragHold<'_>,
    inline: bool,
    last_ts: u64,
    timeout_us: u64,
) -> std::io::Result<()> {
    mon.end_batch();
    if inline {
        emit_injected(mon, out, last_ts, rep)?;
        expire_held(hold, last_ts, timeout_us, out, rep)?;
    }
    Ok(())
}

fn open_out(p: &Path) -> Result<PcapOut<std::io::BufWriter<std::fs::File>>, String> {
    let f = std::fs::File::create(p).map_err(|e| format!("{}: {e}", p.display()))?;
    PcapOut::new(std::io::BufWriter::new(f)).map_err(|e| format!("{}: {e}", p.display()))
}

fn put<W: Write>(out: &mut Option<PcapOut<W>>, ts: u64, frame: &[u8]) -> std::io::Result<()> {
    match out {
        Some(o) => o.frame(ts, frame),
        None => Ok(()),
    }
}

/// Forwards the fragments held for `timeout_us` or longer (their datagram never completed).
fn expire_held<W: Write>(
    hold: &mut FragHold<'_>,
    now: u64,
    timeout_us: u64,
    out: &mut Option<PcapOut<W>>,
    rep: &mut Report,
) -> std::io::Result<()> {
    if hold.is_empty() {
        return Ok(());
    }
    let mut res = Ok(());
    rep.forwarded += hold.expire(now, timeout_us, |_, b| {
        if res.is_ok() {
            res = put(out, now, b);
        }
    }) as u64;
    res
}

fn emit_injected<M: monitor::Middlebox, W: Write>(
    mon: &mut Monitor<'_, M>,
    out: &mut Option<PcapOut<W>>,
    ts: u64,
    rep: &mut Report,
) -> std::io::Result<()> {
    let mut res = Ok(());
    mon.drain_injected(|f| {
        rep.injected += 1;
        if let (Some(o), Ok(())) = (out.as_mut(), &res) {
            res = o.frame(ts, f);
        }
    });
    res
}

/// The host `main` of an app: parses `std::env::args`, runs, prints the report on stderr,
/// exits 0 on success and 1 with the message on error.
pub fn main<P: Program>() {
    let name = std::env::args().next().unwrap_or_else(|| "app".into());
    let res = Args::parse(std::env::args().skip(1)).and_then(|a| run::<P>(&a).map(|r| (a, r)));
    match res {
        Ok((a, r)) => {
            let mut e = format!("{name}: {} frames", r.frames);
            if a.inline || P::SETTINGS.mode == Mode::Inline {
                e += &format!(
                    ", forwarded {} rewritten {} dropped {} injected {} fragments held {} not held {}",
                    r.forwarded, r.rewritten, r.dropped, r.injected, r.held, r.unheld
                );
            }
            for (why, n) in &r.unmonitored {
                e += &format!(", {why} {n}");
            }
            if r.checksums.offloaded {
                e += &format!(
                    ", checksums look offloaded ({} of {} frames checked bad): not verified, \
                     {} bad kept",
                    r.checksums.sampled_bad, r.checksums.sampled, r.checksums.accepted_bad
                );
            }
            eprintln!("{e}");
            if let Some(d) = &r.damage {
                eprintln!("{name}: {d}");
                std::process::exit(1);
            }
        }
        Err(e) => {
            eprintln!("{name}: {e}");
            std::process::exit(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Ctx, Event, Hook, Middlebox, Registry, Settings, Side};

    #[test]
    fn arguments() {
        let p = |v: &[&str]| Args::parse(v.iter().map(|s| s.to_string()));
        assert_eq!(
            p(&["c.pcap", "--inline", "--out", "o.pcap"]).unwrap(),
            Args {
                capture: "c.pcap".into(),
                inline: true,
                out: Some("o.pcap".into()),
                checksums: None,
            }
        );
        assert_eq!(
            p(&["c.pcap", "--checksums", "verify"]).unwrap().checksums,
            Some(monitor::Checksums::Verify)
        );
        assert!(p(&["a", "--checksums", "no"])
            .unwrap_err()
            .contains("--checksums needs"));
        assert!(p(&[]).unwrap_err().contains("no capture"));
        assert!(p(&["a", "b"]).unwrap_err().contains("one capture"));
        assert!(p(&["a", "--out"]).unwrap_err().contains("--out needs"));
        assert!(p(&["a", "--bogus"]).unwrap_err().contains("unknown option"));
    }

    /// Drops every TCP packet carrying payload; counts connections.
    #[derive(Default)]
    struct DropData {
        ends: u64,
    }

    impl Middlebox for DropData {
        type Flow = ();
        fn init(&mut self, reg: &mut Registry) {
            reg.subscribe(Event::PKT_IN, Hook::Any);
            reg.subscribe(Event::CONN_END, Hook::Any);
        }
        fn on_event(&mut self, cx: &mut Ctx<'_, '_, ()>, ev: Event, _: Hook, _: Side) {
            if ev == Event::CONN_END {
                self.ends += 1;
            } else if cx.packet().is_some_and(|p| p.len() > 54 + 6) {
                let _ = cx.drop_packet();
            }
        }
    }

    impl Appliance for DropData {
        fn new(_: &CoreInfo) -> Self {
            DropData::default()
        }
        fn finish(&mut self, log: &mut Log) {
            log.line(format_args!("ends {}", self.ends));
        }
    }

    struct Prog;
    impl Program for Prog {
        type App = DropData;
        const SETTINGS: Settings = Settings {
            flows: 64,
            chunks: 256,
            ..Settings::DEFAULT
        };
    }

    fn tcp(sport: u16, dport: u16, seq: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 20 + 20];
        f[12] = 0x08;
        let ip = &mut f[14..34];
        ip[0] = 0x45;
        let tot = (40 + payload.len()) as u16;
        ip[2..4].copy_from_slice(&tot.to_be_bytes());
        ip[8] = 64;
        ip[9] = 6;
        ip[12..16].copy_from_slice(&[10, 0, 0, 1]);
        ip[16..20].copy_from_slice(&[10, 0, 0, 2]);
        let t = &mut f[34..54];
        t[0..2].copy_from_slice(&sport.to_be_bytes());
        t[2..4].copy_from_slice(&dport.to_be_bytes());
        t[4..8].copy_from_slice(&seq.to_be_bytes());
        t[12] = 5 << 4;
        t[13] = flags;
        t[14..16].copy_from_slice(&1000u16.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn inline_replay_applies_verdicts_and_writes_what_went_out() {
        let dir = tempfile::tempdir().unwrap();
        let frames = [
            tcp(1000, 80, 1, 0x02, b""),
            tcp(80, 1000, 7, 0x12, b""),
            tcp(1000, 80, 2, 0x10, b""),
            tcp(1000, 80, 2, 0x18, b"hello world"),
            vec![0xff; 60], // not IP: forwarded untouched
        ];
        let mut w = PcapOut::new(Vec::new()).unwrap();
        for (i, f) in frames.iter().enumerate() {
            w.frame(i as u64, f).unwrap();
        }
        let input = dir.path().join("in.pcap");
        std::fs::write(&input, w.finish().unwrap()).unwrap();
        let out = dir.path().join("out.pcap");
        let args = Args {
            capture: input.clone(),
            inline: true,
            out: Some(out.clone()),
            checksums: None,
        };
        let r = run::<Prog>(&args).unwrap();
        assert_eq!((r.frames, r.forwarded, r.dropped), (5, 4, 1));
        assert_eq!(r.unmonitored, [("not_ip", 1)]);
        let got = Capture::load(&out).unwrap();
        let got: Vec<&[u8]> = got.frames().map(|(_, f)| f).collect();
        let want: Vec<&[u8]> = [0, 1, 2, 4].iter().map(|&i| &frames[i][..]).collect();
        assert_eq!(got, want);

        // Tap mode refuses --out; without it, nothing is dropped.
        let tap = Args {
            inline: false,
            ..args
        };
        assert!(run::<Prog>(&tap).unwrap_err().contains("--out"));
        let r = run::<Prog>(&Args { out: None, ..tap }).unwrap();
        assert_eq!((r.frames, r.dropped), (5, 0));
    }

    /// `f` (from [`tcp`]) with correct IPv4 header and TCP checksums.
    fn with_checksums(mut f: Vec<u8>) -> Vec<u8> {
        let sum = |d: &[u8], mut s: u32| {
            for c in d.chunks(2) {
                s += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
            }
            while s > 0xffff {
                s = (s & 0xffff) + (s >> 16);
            }
            s
        };
        let c = !(sum(&f[14..34], 0) as u16);
        f[24..26].copy_from_slice(&c.to_be_bytes());
        let tcp_len = (f.len() - 34) as u32;
        let pseudo = sum(&f[26..34], 6 + tcp_len);
        let c = !(sum(&f[34..], pseudo) as u16);
        f[50..52].copy_from_slice(&c.to_be_bytes());
        f
    }

    #[test]
    fn checksums_follow_the_monitor_setting_or_the_command_line() {
        let dir = tempfile::tempdir().unwrap();
        let good = [
            tcp(1000, 80, 1, 0x02, b""),
            tcp(80, 1000, 7, 0x12, b""),
            tcp(1000, 80, 2, 0x10, b""),
            tcp(1000, 80, 2, 0x18, b"hello world"),
        ]
        .map(with_checksums);
        let mut bad = good.clone();
        bad[3][40] ^= 0x40; // the TCP window: the checksum no longer matches
        let mut w = PcapOut::new(Vec::new()).unwrap();
        for (i, f) in good.iter().chain(&bad[3..]).enumerate() {
            w.frame(i as u64, f).unwrap();
        }
        let input = dir.path().join("in.pcap");
        std::fs::write(&input, w.finish().unwrap()).unwrap();
        let run_with = |checksums| {
            let args = Args {
                capture: input.clone(),
                inline: false,
                out: None,
                checksums,
            };
            run::<Prog>(&args).unwrap()
        };
        // The settings' default (auto) on clean traffic: the one bad segment is dropped.
        let r = run_with(None);
        assert_eq!(r.unmonitored, [("bad_tcp_checksum", 1)]);
        assert!(!r.checksums.offloaded);
        assert_eq!((r.checksums.sampled, r.checksums.computed), (5, 10));
        let r = run_with(Some(monitor::Checksums::Ignore));
        assert_eq!(r.unmonitored, []);
        assert_eq!(r.checksums.computed, 0);
        // tcp() leaves both checksums 0, as a capture on a sending host with offload would
        // (here both hosts): auto keeps every frame and says so; verify drops them all.
        let mut w = PcapOut::new(Vec::new()).unwrap();
        for i in 0..4u16 {
            w.frame(u64::from(i), &tcp(1000, 80, 1 + u32::from(i), 0x10, b"x"))
                .unwrap();
        }
        std::fs::write(&input, w.finish().unwrap()).unwrap();
        let r = run_with(None);
        assert_eq!(r.unmonitored, []);
        assert!(r.checksums.offloaded);
        assert_eq!(r.checksums.accepted_bad, 4);
        let r = run_with(Some(monitor::Checksums::Verify));
        assert_eq!(r.unmonitored, [("bad_ipv4_checksum", 4)]);
    }

    #[test]
    fn a_damaged_capture_replays_what_precedes_the_damage() {
        let dir = tempfile::tempdir().unwrap();
        let frames = [
            tcp(1000, 80, 1, 0x02, b""),
            tcp(80, 1000, 7, 0x12, b""),
            tcp(1000, 80, 2, 0x10, b""),
        ];
        let mut w = PcapOut::new(Vec::new()).unwrap();
        for (i, f) in frames.iter().enumerate() {
            w.frame(i as u64, f).unwrap();
        }
        let mut bytes = w.finish().unwrap();
        // The third record loses its last 10 bytes.
        bytes.truncate(bytes.len() - 10);
        let input = dir.path().join("cut.pcap");
        std::fs::write(&input, &bytes).unwrap();
        let third = 24 + 2 * (16 + frames[0].len());
        let out = dir.path().join("out.pcap");
        let args = Args {
            capture: input.clone(),
            inline: true,
            out: Some(out.clone()),
            checksums: None,
        };
        let r = run::<Prog>(&args).unwrap();
        assert_eq!((r.frames, r.forwarded), (2, 2));
        let want = format!(
            "{}: damaged at byte {third} (after 2 frames): cut short: record holds {} bytes, {} left",
            input.display(),
            frames[2].len(),
            frames[2].len() - 10
        );
        assert_eq!(r.damage.as_deref(), Some(want.as_str()));
        assert_eq!(Capture::load(&out).unwrap().len(), 2);
    }

    /// Forwards everything (subscribes to nothing).
    struct Nothing;
    impl Middlebox for Nothing {
        type Flow = ();
        fn on_event(&mut self, _: &mut Ctx<'_, '_, ()>, _: Event, _: Hook, _: Side) {}
    }
    impl Appliance for Nothing {
        fn new(_: &CoreInfo) -> Self {
            Nothing
        }
    }

    /// Drops every TCP packet it sees.
    struct DropAll;
    impl Middlebox for DropAll {
        type Flow = ();
        fn init(&mut self, reg: &mut Registry) {
            reg.subscribe(Event::PKT_IN, Hook::Any);
        }
        fn on_event(&mut self, cx: &mut Ctx<'_, '_, ()>, _: Event, _: Hook, _: Side) {
            let _ = cx.drop_packet();
        }
    }
    impl Appliance for DropAll {
        fn new(_: &CoreInfo) -> Self {
            DropAll
        }
    }

    const INLINE: Settings = Settings {
        mode: Mode::Inline,
        flows: 64,
        chunks: 256,
        frag_slots: 4,
        ..Settings::DEFAULT
    };
    struct PassProg;
    impl Program for PassProg {
        type App = Nothing;
        const SETTINGS: Settings = INLINE;
    }
    struct DropProg;
    impl Program for DropProg {
        type App = DropAll;
        const SETTINGS: Settings = INLINE;
    }

    /// IPv4 fragments of `frame`'s datagram cut at the given payload offsets (multiples of 8).
    fn fragments(frame: &[u8], id: u16, cuts: &[usize]) -> Vec<Vec<u8>> {
        let payload = &frame[34..];
        let mut bounds = vec![0];
        bounds.extend_from_slice(cuts);
        bounds.push(payload.len());
        bounds
            .windows(2)
            .map(|w| {
                let mut f = frame[..34].to_vec();
                f[16..18].copy_from_slice(&((20 + w[1] - w[0]) as u16).to_be_bytes());
                f[18..20].copy_from_slice(&id.to_be_bytes());
                let more = if w[1] < payload.len() { 0x2000 } else { 0 };
                f[20..22].copy_from_slice(&((w[0] / 8) as u16 | more).to_be_bytes());
                f.extend_from_slice(&payload[w[0]..w[1]]);
                f
            })
            .collect()
    }

    fn replay<P: Program>(dir: &Path, frames: &[Vec<u8>]) -> (Report, Vec<Vec<u8>>) {
        let mut w = PcapOut::new(Vec::new()).unwrap();
        for (i, f) in frames.iter().enumerate() {
            w.frame(i as u64, f).unwrap();
        }
        let input = dir.join("frags.pcap");
        std::fs::write(&input, w.finish().unwrap()).unwrap();
        let out = dir.join("frags-out.pcap");
        let args = Args {
            capture: input,
            inline: false,
            out: Some(out.clone()),
            checksums: None,
        };
        let r = run::<P>(&args).unwrap();
        let got = Capture::load(&out).unwrap();
        (r, got.frames().map(|(_, f)| f.to_vec()).collect())
    }

    #[test]
    fn fragments_wait_for_their_datagrams_verdict() {
        let dir = tempfile::tempdir().unwrap();
        let syn = tcp(1000, 80, 1, 0x02, &[7u8; 36]);
        let fr = fragments(&syn, 42, &[16, 40]);
        assert_eq!(fr.len(), 3);
        let other = vec![0xee; 60];
        // Out of order, with a non-IP frame between; a second datagram never completes.
        let lone = fragments(&tcp(2000, 80, 1, 0x02, &[9u8; 36]), 43, &[16])[0].clone();
        let input = vec![
            fr[1].clone(),
            lone.clone(),
            fr[0].clone(),
            other.clone(),
            fr[2].clone(),
        ];

        let (r, got) = replay::<PassProg>(dir.path(), &input);
        // The non-IP frame leaves at once; the held fragments leave when the datagram
        // completes, in arrival order; the incomplete datagram's fragment at the end.
        assert_eq!(
            got,
            [
                other.clone(),
                fr[1].clone(),
                fr[0].clone(),
                fr[2].clone(),
                lone
            ]
        );
        assert_eq!((r.held, r.unheld, r.forwarded, r.dropped), (3, 0, 5, 0));

        let (r, got) = replay::<DropProg>(dir.path(), &input[..]);
        // Dropped datagram: all three fragments go; the incomplete one is forwarded at the end.
        assert_eq!(got[0], other);
        assert_eq!(got.len(), 2);
        assert_eq!((r.held, r.dropped), (3, 3));
    }
}
