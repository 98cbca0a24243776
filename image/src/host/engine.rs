//! The monitor as `cargo ferrule bench` runs it: host mode over frames preloaded in memory,
//! with a consumer that reads every byte of both directions, on one core or split by RSS over
//! several (one monitor per core, as the appliance runs).

use std::time::Instant;

use monitor::{Config, Ctx, Event, Hook, HostStorage, Middlebox, Monitor, PeekError, Side};

/// One frame of a capture and its timestamp (µs), as the monitor takes it.
pub type Frame<'a> = (&'a [u8], u64);

/// How the consumer reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadMode {
    /// `peek` into a 16 KiB buffer (a copy of every byte).
    Peek,
    /// `read_in_place`, up to 16 KiB per call: every byte is read where it lies (folded into
    /// a checksum word by word), no copy.
    InPlace,
}

impl ReadMode {
    /// Engine name in the report.
    pub fn engine(self) -> &'static str {
        match self {
            ReadMode::Peek => "monitor+peek",
            ReadMode::InPlace => "monitor+read",
        }
    }
}

/// Reads every new in-order byte of every side, and counts them and the holes it was told of.
pub struct ReadAll {
    mode: ReadMode,
    buf: Vec<u8>,
    /// Bytes read from `Side::Server` buffers (client→server).
    pub c2s_read: u64,
    /// Bytes read from `Side::Client` buffers (server→client).
    pub s2c_read: u64,
    /// Bytes the reader was told it missed (holes lost at the tap), client→server.
    pub c2s_missed: u64,
    /// Same, server→client.
    pub s2c_missed: u64,
    /// `CONN_END` events.
    pub flows_ended: u64,
    /// A fold of everything read, so the reads cannot be optimised away.
    pub mix: u64,
}

impl ReadAll {
    /// A consumer reading with `mode`.
    pub fn new(mode: ReadMode) -> Self {
        ReadAll {
            mode,
            buf: vec![0; 16 * 1024],
            c2s_read: 0,
            s2c_read: 0,
            c2s_missed: 0,
            s2c_missed: 0,
            flows_ended: 0,
            mix: 0,
        }
    }

    fn count(&mut self, side: Side, read: u64, missed: u64) {
        match side {
            Side::Server => {
                self.c2s_read += read;
                self.c2s_missed += missed;
            }
            Side::Client => {
                self.s2c_read += read;
                self.s2c_missed += missed;
            }
        }
    }
}

impl Middlebox for ReadAll {
    type Flow = ();

    fn init(&mut self, reg: &mut monitor::Registry) {
        reg.subscribe(Event::CONN_NEW_DATA, Hook::Rcv);
        reg.subscribe(Event::CONN_END, Hook::Any);
    }

    fn on_event(&mut self, cx: &mut Ctx<'_, '_, ()>, ev: Event, _hook: Hook, side: Side) {
        let Some(flow) = cx.flow() else { return };
        if ev == Event::CONN_END {
            self.flows_ended += 1;
            return;
        }
        match self.mode {
            ReadMode::Peek => loop {
                match cx.peek(flow, side, &mut self.buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        self.mix ^= self.buf[n - 1] as u64;
                        self.count(side, n as u64, 0);
                    }
                    Err(PeekError::Overwritten { missed, .. }) => self.count(side, 0, missed),
                    Err(_) => break,
                }
            },
            ReadMode::InPlace => loop {
                let mut mix = self.mix;
                let r = cx.read_in_place(flow, side, 16 * 1024, |b| mix ^= fold(b));
                self.mix = mix;
                match r {
                    Ok(0) => break,
                    Ok(n) => self.count(side, n as u64, 0),
                    Err(PeekError::Overwritten { missed, .. }) => self.count(side, 0, missed),
                    Err(_) => break,
                }
            },
        }
    }
}

/// Every byte of `b`, folded into one word (the consumer's reading of the bytes).
#[inline]
fn fold(b: &[u8]) -> u64 {
    let mut words = b.chunks_exact(8);
    let mut x = 0u64;
    for w in &mut words {
        x ^= u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
    }
    for &r in words.remainder() {
        x = x.rotate_left(8) ^ r as u64;
    }
    x
}

/// One timed run of the monitor over a capture.
#[derive(Clone, Debug, Default)]
pub struct BenchRun {
    /// Seconds spent in the monitor (frames, batches and the consumer), capture excluded.
    pub secs: f64,
    /// Bytes the consumer read client→server.
    pub c2s_read: u64,
    /// Bytes the consumer read server→client.
    pub s2c_read: u64,
    /// Bytes the consumer was told it missed (tap loss), client→server.
    pub c2s_missed: u64,
    /// Same, server→client.
    pub s2c_missed: u64,
    /// Connections ended.
    pub flows_ended: u64,
    /// Most flows live at once (sampled at every batch).
    pub peak_flows: u64,
    /// Flow slots allocated.
    pub flow_slots: u64,
    /// Monitor flow state per idle flow (slot + index share), bytes.
    pub flow_state_bytes: u64,
    /// Per-side ring capacity, bytes.
    pub ring_bytes: u64,
    /// Storage the monitor was given (slots, index, chunk pool, fragment table), bytes.
    pub footprint_bytes: u64,
    /// Resident memory added by the run, KiB.
    pub rss_growth_kb: u64,
    /// Bytes the monitor counted as lost (`Counters::bytes_dropped`).
    pub bytes_lost: u64,
}

/// Frames per receive batch, as a NIC queue hands them over.
pub const BATCH: usize = 32;

/// Per-side ring capacity (the appliance default).
pub const SIDE_CAPACITY: u32 = 64 * 1024;

/// Storage for `concurrent` live flows: slots a power of two with room to spare (10 k live
/// flows → 16 384 slots, so the index, twice the slots, costs exactly 16 B per slot) and a
/// chunk pool of 16 KiB per live flow plus 16 MiB.
fn sized(concurrent: usize) -> (usize, usize) {
    let slots = (concurrent + concurrent / 2).next_power_of_two().max(1024);
    let chunks = (concurrent * 16 * 1024 + (16 << 20)) / monitor::CHUNK_SIZE;
    (slots, chunks)
}

/// The frames of a capture, in order.
pub fn frames(cap: &super::capture::Capture) -> Vec<Frame<'_>> {
    cap.frames().map(|(ts, f)| (f, ts)).collect()
}

/// Runs the monitor with a [`ReadAll`] consumer over `frames`, sized for `concurrent` live
/// flows. With `start` (a core of [`scaling_run`]), the storage is made resident and the
/// clock starts when every core is ready. With `sample_every`, stops every that many batches to add up the stream bytes held
/// and the pool in use (slow: for [`memory_run`], not for timing).
fn run(
    frames: &[Frame<'_>],
    concurrent: usize,
    mode: ReadMode,
    sample_every: Option<usize>,
    start: Option<&std::sync::Barrier>,
) -> Result<(BenchRun, MemRun), String> {
    let rss0 = super::bench::rss_kb();
    let (slots, chunks) = sized(concurrent);
    let mut storage: HostStorage<()> = HostStorage::new(slots, chunks, 256);
    let footprint = (slots * core::mem::size_of::<monitor::FlowSlot<()>>()
        + (slots * 2).next_power_of_two() * core::mem::size_of::<monitor::Bucket>()
        + chunks * (monitor::CHUNK_SIZE + 4)) as u64;
    // Checksums are not verified, as libnids (`NIDS_DONT_CHKSUM`) and Suricata (`-k none`)
    // are told in this bench: the same work for every engine.
    let cfg = Config {
        side_capacity: SIDE_CAPACITY,
        checksums: monitor::Checksums::Ignore,
        ..Config::DEFAULT
    };
    if start.is_some() {
        // The cores' runs: storage resident before the clock starts, as the appliance's
        // static storage is from boot (no page faults taken on two cores at once).
        storage.make_resident();
    }
    let mut mon =
        Monitor::new(ReadAll::new(mode), cfg, storage.storage()).map_err(|e| format!("{e:?}"))?;
    let mut peak = 0u64;
    let mut mem = MemRun::default();
    if let Some(b) = start {
        b.wait();
    }
    let t = Instant::now();
    for (i, batch) in frames.chunks(BATCH).enumerate() {
        mon.on_batch(batch.iter().copied());
        peak = peak.max(mon.flow_count() as u64);
        if let Some(n) = sample_every {
            if i % n == 0 {
                mem.held_peak = mem.held_peak.max(mon.stream_bytes_held());
                mem.in_use_peak = mem.in_use_peak.max(mon.pool_bytes_in_use());
            }
        }
    }
    mon.close_all();
    let secs = t.elapsed().as_secs_f64();
    mem.touched = mon.pool_bytes_touched();
    let c = mon.counters();
    if c.pool_exhausted != 0 {
        return Err(format!(
            "monitor pool exhausted {} times: the bench would not be reading everything",
            c.pool_exhausted
        ));
    }
    let lost = c.bytes_dropped;
    let mb = mon.middlebox();
    std::hint::black_box(mb.mix);
    Ok((
        BenchRun {
            secs,
            c2s_read: mb.c2s_read,
            s2c_read: mb.s2c_read,
            c2s_missed: mb.c2s_missed,
            s2c_missed: mb.s2c_missed,
            flows_ended: mb.flows_ended,
            peak_flows: peak,
            flow_slots: slots as u64,
            flow_state_bytes: mon.flow_state_bytes() as u64,
            ring_bytes: SIDE_CAPACITY as u64,
            footprint_bytes: footprint,
            rss_growth_kb: super::bench::rss_kb().saturating_sub(rss0),
            bytes_lost: lost,
        },
        mem,
    ))
}

/// One timed run of the monitor over `frames` with a consumer reading every byte by `mode`.
pub fn bench_run(
    frames: &[Frame<'_>],
    concurrent: usize,
    mode: ReadMode,
) -> Result<BenchRun, String> {
    run(frames, concurrent, mode, None, None).map(|r| r.0)
}

/// Stream-pool use over a run (untimed).
#[derive(Clone, Copy, Debug, Default)]
pub struct MemRun {
    /// Most stream bytes held at once (sampled).
    pub held_peak: u64,
    /// Most pool bytes in use at once (sampled).
    pub in_use_peak: u64,
    /// Pool bytes touched over the run (high-water mark of the pool in use).
    pub touched: u64,
}

impl MemRun {
    /// Pool bytes touched at peak ÷ stream bytes held at peak.
    pub fn waste(&self) -> f64 {
        self.touched as f64 / self.held_peak.max(1) as f64
    }
}

/// Stream bytes held against the pool touched, sampled every 16 batches (untimed).
pub fn memory_run(frames: &[Frame<'_>], concurrent: usize) -> Result<MemRun, String> {
    run(frames, concurrent, ReadMode::InPlace, Some(16), None).map(|r| r.1)
}

/// `frames` split over `queues` receive queues by the NIC's symmetric Toeplitz hash (both
/// directions of a connection on one queue), as the appliance's per-core queues get them.
pub fn split_by_rss<'a>(frames: &[Frame<'a>], queues: u16) -> Vec<Vec<Frame<'a>>> {
    let reta = drivers::toeplitz::spread_reta(queues);
    let key = drivers::SYMMETRIC_RSS_KEY;
    let fields = drivers::toeplitz::HashFields::ALL;
    let mut out: Vec<Vec<Frame<'a>>> = (0..queues).map(|_| Vec::new()).collect();
    for &(f, ts) in frames {
        let q = drivers::toeplitz::predict_queue(&key, &reta, fields, f);
        out[q as usize].push((f, ts));
    }
    out
}

/// One run on several cores: each queue's frames to its own monitor on its own thread.
#[derive(Clone, Debug, Default)]
pub struct ScaleRun {
    /// The slowest core's time in its monitor (the cores start together, behind a barrier,
    /// after building their storage): the time the whole capture takes.
    pub secs: f64,
    /// Each core's own time.
    pub per_core: Vec<f64>,
    /// Frames per core.
    pub frames: Vec<usize>,
    /// Bytes read, both directions, all cores.
    pub read: u64,
}

/// Runs one monitor per queue of `split`, each on its own thread, its storage made resident
/// first, started together. (One queue: the one-core run the others are compared with.)
pub fn scaling_run(split: &[Vec<Frame<'_>>], concurrent: usize) -> Result<ScaleRun, String> {
    let n = split.len().max(1);
    // Flows are spread evenly by the hash; 1/8 of the total more per core for the imbalance.
    let per_core = concurrent / n + concurrent / 8;
    let barrier = std::sync::Barrier::new(n);
    let results: Vec<Result<BenchRun, String>> = std::thread::scope(|s| {
        let handles: Vec<_> = split
            .iter()
            .map(|frames| {
                let barrier = &barrier;
                s.spawn(move || run(frames, per_core, ReadMode::InPlace, None, Some(barrier)))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .map_err(|_| "a core's thread panicked".to_string())?
                    .map(|r| r.0)
            })
            .collect()
    });
    let mut out = ScaleRun::default();
    for r in results {
        let r = r?;
        out.per_core.push(r.secs);
        out.read += r.c2s_read + r.s2c_read;
    }
    out.secs = out.per_core.iter().copied().fold(0.0, f64::max);
    out.frames = split.iter().map(Vec::len).collect();
    Ok(out)
}

/// Passes of the parse floor over its frames per thread in [`floor_scaling_run`].
const FLOOR_PASSES: usize = 5;

/// The parse floor ([`super::floor`]) on each queue of `split`, each on its own thread,
/// started together, [`FLOOR_PASSES`] times over: what this machine gives threads that share
/// nothing but the memory system, to read `scaling_run` against. `per_core` and `secs` as
/// there (all passes); `read` is the payload bytes of one pass.
pub fn floor_scaling_run(split: &[Vec<Frame<'_>>]) -> ScaleRun {
    let barrier = std::sync::Barrier::new(split.len().max(1));
    let results: Vec<(f64, u64)> = std::thread::scope(|s| {
        let handles: Vec<_> = split
            .iter()
            .map(|frames| {
                let barrier = &barrier;
                s.spawn(move || {
                    barrier.wait();
                    let t = Instant::now();
                    // Several passes: one takes only ~50 ms, too short to time two threads.
                    let mut payload = 0;
                    for _ in 0..FLOOR_PASSES {
                        let c = std::hint::black_box(super::floor::run_frames(
                            frames.iter().map(|&(f, _)| f),
                        ));
                        payload = c.payload;
                    }
                    (t.elapsed().as_secs_f64(), payload)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or((f64::NAN, 0)))
            .collect()
    });
    let per_core: Vec<f64> = results.iter().map(|r| r.0).collect();
    ScaleRun {
        secs: per_core.iter().copied().fold(0.0, f64::max),
        per_core,
        frames: split.iter().map(Vec::len).collect(),
        read: results.iter().map(|r| r.1).sum(),
    }
}
