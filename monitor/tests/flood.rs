//! Floods and table pressure (issue 13 item 7), scaled to run in seconds: a SYN flood from
//! distinct tuples into a full table leaves established connections exact (half-open flows are
//! evicted first), also with every frame at the same timestamp; and when live connections
//! outnumber the slots, the flows already tracked stay whole.

mod common;

use std::collections::HashSet;

use common::*;
use monitor::{Config, Event, Hook, HostStorage, Monitor};

fn conn(j: usize) -> Conn {
    Conn {
        c: (
            format!("10.9.{}.{}", j / 250, j % 250 + 1).parse().unwrap(),
            50000 + j as u16,
        ),
        ..Conn::v4(1000 + j as u32 * 7919, 900_000 + j as u32 * 104_729)
    }
}

fn flood_syn(i: usize) -> Vec<u8> {
    let c = Conn {
        c: (
            format!("172.16.{}.{}", (i >> 8) & 255, i & 255)
                .parse()
                .unwrap(),
            1024 + (i >> 16) as u16,
        ),
        s: ("192.168.1.1".parse().unwrap(), 80),
        ..Conn::v4(i as u32, 0)
    };
    c.syn()
}

fn bytes(j: usize, dir: u8, off: usize, n: usize) -> Vec<u8> {
    (off..off + n)
        .map(|k| (k as u8).wrapping_mul(13) ^ (j as u8) ^ dir)
        .collect()
}

/// Feeds `frames` in batches of 32 with timestamps from `t`, `step` µs apart per batch.
fn run(m: &mut Monitor<'_, Recorder>, frames: &[Vec<u8>], t: &mut u64, step: u64) {
    for b in frames.chunks(32) {
        feed_batch(m, b, *t);
        *t += step;
    }
}

fn syn_flood_leaves_established_connections_exact(step: u64) {
    const SLOTS: usize = 4096;
    const FLOOD: usize = 100_000;
    const CONNS: usize = 200;
    const ROUNDS: usize = 8;
    let mut st: HostStorage<PerFlow> = HostStorage::new(SLOTS, 1024, 4);
    let mut rec = Recorder::new(&[(Event::CONN_END, Hook::Any)]);
    rec.end_read = true;
    let mut m = Monitor::new(rec, Config::DEFAULT, st.storage()).unwrap();
    let free0 = m.free_chunks();
    let mut t = 1_000_000;
    let mut frames = Vec::new();
    for j in 0..CONNS {
        let c = conn(j);
        frames.extend([c.syn(), c.synack(), c.ack()]);
    }
    run(&mut m, &frames, &mut t, step);
    // The flood, with the connections' data interleaved: every 60 SYNs, one segment each way
    // for one connection, in turns (8 rounds of 100 + 150 bytes per connection).
    let mut frames = Vec::new();
    let mut sent = 0;
    for i in 0..FLOOD {
        frames.push(flood_syn(i));
        if i % 60 == 59 && sent < CONNS * ROUNDS {
            let (j, r) = (sent % CONNS, sent / CONNS);
            let c = conn(j);
            frames.push(c.cdata(r as u64 * 100, &bytes(j, 0, r * 100, 100)));
            frames.push(c.sdata(r as u64 * 150, &bytes(j, 1, r * 150, 150)));
            sent += 1;
        }
    }
    assert_eq!(sent, CONNS * ROUNDS);
    run(&mut m, &frames, &mut t, step);
    assert_eq!(m.flow_count(), SLOTS, "the table is full");
    assert_eq!(
        m.counters().flows_evicted,
        (FLOOD - (SLOTS - CONNS)) as u64,
        "every SYN beyond the free slots evicted one half-open flow"
    );
    let mut frames = Vec::new();
    for j in 0..CONNS {
        frames.extend(conn(j).close(ROUNDS as u64 * 100, ROUNDS as u64 * 150));
    }
    run(&mut m, &frames, &mut t, step);
    assert_eq!(m.counters().flows_closed, CONNS as u64);
    // Every established connection came out whole (CONN_END reads both streams).
    let mut whole = HashSet::new();
    for (_, to_client, to_server) in &m.middlebox().at_end {
        if to_server.is_empty() {
            continue; // a flood flow
        }
        // Identify the connection by its first bytes (both streams are per-connection).
        let j = (0..CONNS)
            .find(|&j| to_server[..100] == bytes(j, 0, 0, 100)[..])
            .expect("a known connection");
        assert_eq!(to_server, &bytes(j, 0, 0, ROUNDS * 100), "c2s of {j}");
        assert_eq!(to_client, &bytes(j, 1, 0, ROUNDS * 150), "s2c of {j}");
        whole.insert(j);
    }
    assert_eq!(whole.len(), CONNS);
    // Memory is the caller's storage: every chunk is back.
    m.close_all();
    assert_eq!(m.free_chunks(), free0);
}

#[test]
fn syn_flood_into_a_full_table_leaves_established_connections_exact() {
    syn_flood_leaves_established_connections_exact(10);
}

#[test]
fn syn_flood_with_equal_timestamps_leaves_established_connections_exact() {
    syn_flood_leaves_established_connections_exact(0);
}

#[test]
fn more_live_connections_than_slots_keep_the_tracked_ones_whole() {
    // 32 slots (one eviction scan covers the table), 48 connections opened one after the
    // other, then taking turns sending, then closing. Least-recently-used eviction would end
    // every connection before its turn came (none whole); keeping the older established
    // flows leaves connections 0..=30 whole, plus the last one opened, which evicted the
    // youngest before it.
    const SLOTS: usize = 32;
    const CONNS: usize = 48;
    let mut st: HostStorage<PerFlow> = HostStorage::new(SLOTS, 256, 4);
    let mut rec = Recorder::new(&[(Event::CONN_END, Hook::Any)]);
    rec.end_read = true;
    let mut m = Monitor::new(rec, Config::DEFAULT, st.storage()).unwrap();
    let mut t = 1_000_000;
    let mut frames = Vec::new();
    for j in 0..CONNS {
        let c = conn(j);
        frames.extend([c.syn(), c.synack(), c.ack()]);
    }
    for r in 0..4 {
        for j in 0..CONNS {
            let c = conn(j);
            frames.push(c.cdata(r as u64 * 100, &bytes(j, 0, r * 100, 100)));
            frames.push(c.sdata(r as u64 * 150, &bytes(j, 1, r * 150, 150)));
        }
    }
    for j in 0..CONNS {
        frames.extend(conn(j).close(400, 600));
    }
    for f in &frames {
        feed_batch(&mut m, std::slice::from_ref(f), t);
        t += 10;
    }
    let mut whole: Vec<usize> = m
        .middlebox()
        .at_end
        .iter()
        .filter_map(|(_, to_client, to_server)| {
            (0..CONNS)
                .find(|&j| *to_server == bytes(j, 0, 0, 400) && *to_client == bytes(j, 1, 0, 600))
        })
        .collect();
    whole.sort();
    let want: Vec<usize> = (0..=30).chain([47]).collect();
    assert_eq!(whole, want);
    assert_eq!(m.counters().flows_evicted, (CONNS - SLOTS) as u64);
}
