//! The monitor as `cargo ferrule bench` runs it: host mode over a capture preloaded in memory,
//! with a consumer that reads every byte of both directions through `peek`.

use std::time::Instant;

use monitor::{Config, Ctx, Event, Hook, HostStorage, Middlebox, Monitor, Side};

use super::capture::Capture;

/// Reads every new in-order byte of every side with `peek`, and counts them.
pub struct PeekAll {
    buf: Vec<u8>,
    /// Bytes read from `Side::Server` buffers (client→server).
    pub c2s_read: u64,
    /// Bytes read from `Side::Client` buffers (server→client).
    pub s2c_read: u64,
    /// `CONN_END` events.
    pub flows_ended: u64,
}

impl Default for PeekAll {
    fn default() -> Self {
        PeekAll {
            buf: vec![0; 16 * 1024],
            c2s_read: 0,
            s2c_read: 0,
            flows_ended: 0,
        }
    }
}

impl Middlebox for PeekAll {
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
        while let Ok(n) = cx.peek(flow, side, &mut self.buf) {
            if n == 0 {
                break;
            }
            match side {
                Side::Server => self.c2s_read += n as u64,
                Side::Client => self.s2c_read += n as u64,
            }
        }
    }
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
}

/// Frames per receive batch, as a NIC queue hands them over.
const BATCH: usize = 32;

/// Runs the monitor with [`PeekAll`] over `cap`, sized for `concurrent` live flows.
pub fn bench_run(cap: &Capture, concurrent: usize) -> Result<BenchRun, String> {
    let rss0 = super::bench::rss_kb();
    // A power of two with room to spare (10 k live flows → 16 384 slots), so the index (twice
    // the slots, a power of two) costs exactly 16 B per slot.
    let slots = (concurrent + concurrent / 2).next_power_of_two().max(1024);
    // Side rings of 64 KiB (the appliance default); pool for every live flow's in-flight bytes.
    let side_capacity = 64 * 1024u32;
    let chunks = concurrent * 4 + 4096;
    let mut storage: HostStorage<()> = HostStorage::new(slots, chunks, 256);
    let footprint = (slots * core::mem::size_of::<monitor::FlowSlot<()>>()
        + (slots * 2).next_power_of_two() * core::mem::size_of::<monitor::Bucket>()
        + chunks * (monitor::CHUNK_SIZE + 4)) as u64;
    let cfg = Config {
        side_capacity,
        ..Config::DEFAULT
    };
    let mut mon =
        Monitor::new(PeekAll::default(), cfg, storage.storage()).map_err(|e| format!("{e:?}"))?;
    let frames: Vec<(&[u8], u64)> = cap.frames().map(|(ts, f)| (f, ts)).collect();
    let mut peak = 0u64;
    let t = Instant::now();
    for batch in frames.chunks(BATCH) {
        mon.on_batch(batch.iter().copied());
        peak = peak.max(mon.flow_count() as u64);
    }
    mon.close_all();
    let secs = t.elapsed().as_secs_f64();
    let c = mon.counters();
    if c.bytes_dropped != 0 || c.pool_exhausted != 0 {
        return Err(format!(
            "monitor dropped {} bytes (pool exhausted {} times): the bench would not be reading everything",
            c.bytes_dropped, c.pool_exhausted
        ));
    }
    let mb = mon.middlebox();
    Ok(BenchRun {
        secs,
        c2s_read: mb.c2s_read,
        s2c_read: mb.s2c_read,
        flows_ended: mb.flows_ended,
        peak_flows: peak,
        flow_slots: slots as u64,
        flow_state_bytes: mon.flow_state_bytes() as u64,
        ring_bytes: side_capacity as u64,
        footprint_bytes: footprint,
        rss_growth_kb: super::bench::rss_kb().saturating_sub(rss0),
    })
}
