//! `cargo ferrule flows --ipfix HOST:PORT`: the appliance's IPFIX records for a capture, made
//! on the host by the same accounting wrapper (`appliance::mgmt::flows::Accounted`) around a
//! middlebox that does nothing, and sent over UDP with the same encoder.

use std::net::{ToSocketAddrs, UdpSocket};

use appliance::mgmt::flows::{empty_slot, Accounted, FlowAcct, RecordQueue, Slot};
use appliance::mgmt::ipfix::{Exporter, FlowRecord, MAX_MESSAGE};
use monitor::{Config, Ctx, Event, Hook, HostStorage, Middlebox, Monitor, Side};

use super::capture::Capture;
use super::flows::{POOL_CHUNKS, SIDE_CAPACITY};

/// A middlebox that subscribes to nothing: the wrapper alone counts.
struct Nothing;

impl Middlebox for Nothing {
    type Flow = ();
    fn on_event(&mut self, _: &mut Ctx<'_, '_, ()>, _: Event, _: Hook, _: Side) {}
}

/// Records queued between two drains (one batch of frames ends at most this many flows).
const QUEUE: usize = 4096;
/// Frames per monitor batch.
const BATCH: usize = 32;

/// One record per connection of `cap`, in the order connections end (times in ms since the
/// Unix epoch, from the capture's timestamps). Leaks the per-flow table (a one-shot tool).
pub fn records_of(cap: &Capture, max_flows: usize) -> Result<Vec<FlowRecord>, String> {
    let acct: &'static mut [FlowAcct] = Box::leak(vec![FlowAcct::default(); max_flows].into());
    let slots: &'static [Slot] = Box::leak((0..QUEUE).map(|_| empty_slot()).collect());
    let queue: &'static RecordQueue = Box::leak(Box::new(RecordQueue::new(slots)));
    let mut storage: HostStorage<()> = HostStorage::new(max_flows, POOL_CHUNKS, 256);
    let cfg = Config {
        side_capacity: SIDE_CAPACITY,
        pickup: true,
        idle_timeout_us: u64::MAX / 4,
        ..Config::DEFAULT
    };
    let mut mon = Monitor::new(
        Accounted::new(Nothing, acct, Some(queue), 0),
        cfg,
        storage.storage(),
    )
    .map_err(|e| format!("{e:?}"))?;
    let mut out = Vec::new();
    let mut batch: Vec<(&[u8], u64)> = Vec::with_capacity(BATCH);
    for (ts, frame) in cap.frames() {
        batch.push((frame, ts));
        if batch.len() == BATCH {
            mon.on_batch(batch.drain(..));
            out.extend(std::iter::from_fn(|| queue.pop()));
        }
    }
    mon.on_batch(batch.drain(..));
    mon.middlebox_mut().shutting_down();
    mon.close_all();
    out.extend(std::iter::from_fn(|| queue.pop()));
    if queue.dropped() > 0 {
        return Err(format!("{} records lost (queue full)", queue.dropped()));
    }
    Ok(out)
}

/// Sends `records` to `to` (`HOST:PORT`) as IPFIX messages, templates in the first; returns
/// how many datagrams went out.
pub fn send(records: &[FlowRecord], to: &str, export_time_s: u32) -> Result<usize, String> {
    let addr = to
        .to_socket_addrs()
        .map_err(|e| format!("{to}: {e}"))?
        .next()
        .ok_or_else(|| format!("{to}: no address"))?;
    let bind = if addr.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    };
    let sock = UdpSocket::bind(bind).map_err(|e| format!("bind {bind}: {e}"))?;
    let mut e = Exporter::new(0);
    let mut buf = [0u8; MAX_MESSAGE];
    let mut rest = records;
    let mut templates = true;
    let mut sent = 0;
    while templates || !rest.is_empty() {
        let (len, taken) = e.encode(&mut buf, export_time_s, templates, rest);
        if len == 0 {
            return Err("message buffer too small".into());
        }
        sock.send_to(&buf[..len], addr)
            .map_err(|e| format!("send to {addr}: {e}"))?;
        sent += 1;
        templates = false;
        rest = &rest[taken..];
        // Loopback collectors read as fast as we send, but their socket buffer is finite.
        if sent % 64 == 0 {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
    Ok(sent)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::gen::{self, GenConfig};

    #[test]
    fn one_record_per_connection_with_the_captures_counts() {
        let dir = tempfile::tempdir().unwrap();
        let pcap = dir.path().join("t.pcap");
        let stats = gen::generate_files(
            &GenConfig {
                flows: 12,
                concurrent: 3,
                ipv6_pct: 50.0,
                open_pct: 25.0,
                seed: 5,
                ..GenConfig::default()
            },
            &pcap,
        )
        .unwrap();
        let cap = Capture::load(&pcap).unwrap();
        let recs = records_of(&cap, 64).unwrap();
        assert_eq!(recs.len(), 12);
        let packets: u64 = recs.iter().map(|r| r.packets[0] + r.packets[1]).sum();
        assert_eq!(packets, stats.packets);
        assert!(recs.iter().all(|r| r.tcp_flags & 0x12 == 0x12));
        // Connections left open in the capture end by force at the end of the run.
        let (lines, _) = crate::host::flows::flow_lines_of(&cap, 64).unwrap();
        let open = lines
            .iter()
            .filter(|l| l.contains("\"client_state\":\"ESTABLISHED\""))
            .count();
        assert_ne!(open, 0, "the generator left no connection open");
        let forced = recs.iter().filter(|r| r.end_reason == 4).count();
        let closed = recs.iter().filter(|r| r.end_reason == 3).count();
        assert_eq!((forced, closed), (open, 12 - open));
        assert!(recs
            .iter()
            .all(|r| r.start_ms <= r.end_ms && r.start_ms > 0));
        // Sent to a local socket: the first datagram starts with the templates.
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let n = send(&recs, &rx.local_addr().unwrap().to_string(), 1).unwrap();
        let mut buf = [0u8; 2000];
        let len = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..2], &[0, 10]);
        assert_eq!(u16::from_be_bytes([buf[2], buf[3]]) as usize, len);
        assert_eq!(&buf[16..18], &[0, 2]);
        assert_eq!(n, 1, "12 records and the templates fit in one message");
    }
}
