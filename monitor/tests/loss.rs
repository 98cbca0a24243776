//! Loss is never silent (issue 13 items 2 and 8): bytes a side loses to a limit are counted on
//! the flow (`BufInfo::lost`) and reported with `ERROR` and its reason.

mod common;

use common::*;
use monitor::{Config, ErrorReason, Event, Hook, HostStorage, LossCause, Monitor, Side};

fn errors() -> Recorder {
    Recorder::new(&[(Event::ERROR, Hook::Rcv)])
}

#[test]
fn the_island_limit_drops_counts_and_reports() {
    let c = Conn::v4(10, 20);
    let mut st = storage();
    let mut m = Monitor::new(errors(), cfg(), st.storage()).unwrap();
    assert_eq!(Config::DEFAULT.max_islands, 64);
    feed(&mut m, &[c.syn(), c.synack(), c.ack()], 0);
    // 64 islands of 3 bytes with one-byte holes: all kept.
    let frames: Vec<Vec<u8>> = (0..64).map(|i| c.cdata(1 + 4 * i, b"abc")).collect();
    feed_batch(&mut m, &frames, 1000);
    assert!(m.middlebox().errors.is_empty());
    // The 65th needs a new island: dropped. Extending an island still works.
    feed(&mut m, &[c.cdata(1000, b"12345"), c.cdata(4, b"d")], 2000);
    let f = m.flows().next().unwrap();
    assert_eq!(
        m.middlebox().errors,
        vec![(
            Hook::Rcv,
            ErrorReason::Lost {
                bytes: 5,
                cause: LossCause::Islands
            }
        )]
    );
    let bi = m.buf_info(f, Side::Server).unwrap();
    assert_eq!((bi.in_order_end, bi.last_end, bi.lost), (0, 256, 5));
    assert_eq!(m.counters().bytes_dropped, 5);
    // Filling the first hole joins the first two islands with the in-order run.
    feed(&mut m, &[c.cdata(0, b"_")], 3000);
    assert_eq!(m.buf_info(f, Side::Server).unwrap().in_order_end, 8);
}

#[test]
fn pool_and_capacity_losses_are_counted_on_the_flow() {
    let c = Conn::v4(10, 20);
    // Two chunks in the pool, 4 KiB per side.
    let mut st: HostStorage<PerFlow> = HostStorage::new(4, 2, 1);
    let cfg = Config {
        side_capacity: 4096,
        ..cfg()
    };
    let mut m = Monitor::new(errors(), cfg, st.storage()).unwrap();
    feed(&mut m, &[c.syn(), c.synack(), c.ack()], 0);
    // Past a hole, beyond the capacity: 100 of 200 bytes do not fit.
    feed(&mut m, &[c.cdata(4000, &[7u8; 200])], 1000);
    let f = m.flows().next().unwrap();
    assert_eq!(
        m.middlebox().errors,
        vec![(
            Hook::Rcv,
            ErrorReason::Lost {
                bytes: 104,
                cause: LossCause::Capacity
            }
        )]
    );
    assert_eq!(m.buf_info(f, Side::Server).unwrap().lost, 104);
    // That island's list and data took both pool chunks: the other direction has none.
    feed(&mut m, &[c.sdata(10, b"x"), c.sdata(5000, b"yz")], 2000);
    assert_eq!(
        m.middlebox().errors[1..],
        [
            (
                Hook::Rcv,
                ErrorReason::Lost {
                    bytes: 1,
                    cause: LossCause::Pool
                }
            ),
            (
                Hook::Rcv,
                ErrorReason::Lost {
                    bytes: 2,
                    cause: LossCause::Pool
                }
            )
        ]
    );
    assert_eq!(m.buf_info(f, Side::Client).unwrap().lost, 3);
    assert_eq!(m.buf_info(f, Side::Server).unwrap().lost, 104);
}

#[test]
fn unread_bytes_overwritten_in_a_full_ring_are_lost_and_eviction_is_reported() {
    let c = Conn::v4(10, 20);
    let mut st = storage();
    let cfg = Config {
        side_capacity: 2 * monitor::CHUNK_SIZE as u32,
        ..cfg()
    };
    let mut m = Monitor::new(errors(), cfg, st.storage()).unwrap();
    feed(&mut m, &[c.syn(), c.synack(), c.ack()], 0);
    // 3 chunks' worth into a 2-chunk ring, nothing read: the first chunk is overwritten.
    let n = monitor::CHUNK_SIZE;
    feed(
        &mut m,
        &[
            c.cdata(0, &vec![1u8; n]),
            c.cdata(n as u64, &vec![2u8; n]),
            c.cdata(2 * n as u64, &[3u8; 100]),
        ],
        1000,
    );
    let f = m.flows().next().unwrap();
    assert_eq!(
        m.middlebox().errors,
        vec![(Hook::Rcv, ErrorReason::Overwriting { bytes: n as u64 })]
    );
    assert_eq!(m.buf_info(f, Side::Server).unwrap().lost, n as u64);

    // A table of one slot: a second connection evicts the first, which hears why.
    let mut st: HostStorage<PerFlow> = HostStorage::new(1, 8, 1);
    let mut m = Monitor::new(errors(), cfg, st.storage()).unwrap();
    let d = Conn {
        c: ("10.0.0.2".parse().unwrap(), 2),
        ..Conn::v4(1, 2)
    };
    feed(&mut m, &[c.syn(), d.syn()], 0);
    assert_eq!(
        m.middlebox().errors,
        vec![(Hook::Rcv, ErrorReason::Evicted)]
    );
    assert_eq!(m.counters().flows_evicted, 1);
}
