//! Loss is never silent (issue 13 items 2 and 8): bytes a side loses to a limit are counted on
//! the flow (`BufInfo::lost`) and reported with `ERROR` and its reason.

mod common;

use common::*;
use monitor::{
    Config, Ctx, ErrorReason, Event, Hook, HostStorage, LossCause, Middlebox, Monitor, PeekError,
    Registry, Side,
};

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
    // Three chunks in the pool, two chunks per side.
    let chunk = monitor::CHUNK_SIZE as u64;
    let mut st: HostStorage<PerFlow> = HostStorage::new(4, 3, 1);
    let cfg = Config {
        side_capacity: 2 * chunk as u32,
        ..cfg()
    };
    let mut m = Monitor::new(errors(), cfg, st.storage()).unwrap();
    feed(&mut m, &[c.syn(), c.synack(), c.ack()], 0);
    // Past a hole, beyond the capacity: 104 of 200 bytes do not fit.
    feed(&mut m, &[c.cdata(2 * chunk - 96, &[7u8; 200])], 1000);
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
    // That island's list and data took all pool chunks: the other direction has none.
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

#[test]
fn peek_continues_past_holes_the_receiver_acknowledged() {
    let c = Conn::v4(10, 20);
    let mut st = storage();
    let mut rec = Recorder::new(&[(Event::CONN_NEW_DATA, Hook::Rcv), (Event::ERROR, Hook::Rcv)]);
    rec.peek_all = true;
    let mut m = Monitor::new(rec, cfg(), st.storage()).unwrap();
    feed(&mut m, &[c.syn(), c.synack(), c.ack()], 0);
    // Client bytes 10..20 and 30..40 never reach the tap.
    feed_batch(
        &mut m,
        &[
            c.cdata(0, b"0123456789"),
            c.cdata(20, b"ABCDEFGHIJ"),
            c.cdata(40, b"KLMNO"),
        ],
        1000,
    );
    let f = m.flows().next().unwrap();
    let read = |m: &Monitor<'_, Recorder>| m.middlebox().streams[&(f.slot(), Side::Server)].clone();
    assert_eq!(read(&m), b"0123456789");
    assert!(m.middlebox().peek_errors.is_empty());
    // The server acknowledges all 45 bytes: both holes are lost for good, and the reader gets
    // each once as a jump of its cursor, then the bytes after it.
    feed(&mut m, &[c.sack(0, 45)], 2000);
    assert_eq!(read(&m), b"0123456789ABCDEFGHIJKLMNO");
    assert_eq!(
        m.middlebox().peek_errors,
        vec![
            PeekError::Overwritten {
                oldest: 20,
                missed: 10
            },
            PeekError::Overwritten {
                oldest: 40,
                missed: 10
            }
        ]
    );
    assert_eq!(
        m.middlebox().errors,
        vec![(
            Hook::Rcv,
            ErrorReason::Lost {
                bytes: 20,
                cause: LossCause::Tap
            }
        )]
    );
    // The in-order run moved on past the holes the reader crossed; the bytes before the last
    // one are no longer held (as if overwritten), so ppeek never returns a hole's bytes.
    let bi = m.buf_info(f, Side::Server).unwrap();
    assert_eq!(
        (bi.oldest, bi.read, bi.in_order_end, bi.last_end, bi.lost),
        (40, 45, 45, 45, 20)
    );
    let mut buf = [0u8; 64];
    assert_eq!(
        m.ppeek(f, Side::Server, 12, &mut buf),
        Err(PeekError::Overwritten {
            oldest: 40,
            missed: 28
        })
    );
    assert_eq!(m.ppeek(f, Side::Server, 40, &mut buf), Ok(5));
    assert_eq!(&buf[..5], b"KLMNO");
    // Bytes behind a hole not (yet) acknowledged wait; once acknowledged, they are read.
    let new_data = m.middlebox().count(Event::CONN_NEW_DATA);
    feed(&mut m, &[c.cdata(50, b"xyz")], 3000);
    assert_eq!(m.middlebox().count(Event::CONN_NEW_DATA), new_data);
    let mut mb_buf = [0u8; 8];
    assert_eq!(m.peek(f, Side::Server, &mut mb_buf), Ok(0));
    feed(&mut m, &[c.sack(0, 53)], 4000);
    assert_eq!(m.middlebox().count(Event::CONN_NEW_DATA), new_data + 1);
    assert_eq!(read(&m), b"0123456789ABCDEFGHIJKLMNOxyz");
    assert_eq!(m.buf_info(f, Side::Server).unwrap().lost, 25);
    // Bytes landing after an acknowledged hole are announced and read.
    feed(&mut m, &[c.sack(0, 70), c.cdata(60, b"+-")], 5000);
    assert_eq!(m.middlebox().count(Event::CONN_NEW_DATA), new_data + 2);
    assert_eq!(read(&m), b"0123456789ABCDEFGHIJKLMNOxyz+-");
    assert_eq!(m.middlebox().peek_errors.len(), 4);
}

/// Records `BufInfo::lost` of both sides as seen in `CONN_END`.
#[derive(Default)]
struct LostAtEnd {
    ends: Vec<(u64, u64)>,
    errors: Vec<ErrorReason>,
}

impl Middlebox for LostAtEnd {
    type Flow = ();
    fn init(&mut self, reg: &mut Registry) {
        reg.subscribe(Event::CONN_END, Hook::Any);
        reg.subscribe(Event::ERROR, Hook::Rcv);
    }
    fn on_event(&mut self, cx: &mut Ctx<'_, '_, ()>, ev: Event, _hook: Hook, _side: Side) {
        let f = cx.flow().unwrap();
        if ev == Event::ERROR {
            self.errors.push(cx.error_reason().unwrap());
            return;
        }
        let lost = |s| cx.buf_info(f, s).unwrap().lost;
        self.ends.push((lost(Side::Server), lost(Side::Client)));
    }
}

#[test]
fn eviction_counts_the_holes_it_makes_permanent_on_the_flow() {
    let c = Conn::v4(10, 20);
    let d = Conn {
        c: ("10.0.0.2".parse().unwrap(), 2),
        ..Conn::v4(1, 2)
    };
    // One slot: the second connection evicts the first.
    let mut st: HostStorage<()> = HostStorage::new(1, 16, 1);
    let mut m = Monitor::new(LostAtEnd::default(), cfg(), st.storage()).unwrap();
    feed(&mut m, &[c.syn(), c.synack(), c.ack()], 0);
    feed(
        &mut m,
        &[
            // Client stream: 0..3, hole 3..10 (acknowledged: tap loss, counted now), 10..13,
            // hole 13..20 (not acknowledged), 20..22.
            c.cdata(0, b"abc"),
            c.cdata(10, b"def"),
            c.cdata(20, b"gh"),
            c.sack(0, 13),
            // Server stream: 0..4, then an unacknowledged hole of 100 bytes, then 5 bytes.
            c.sdata(0, b"1234"),
            c.sdata(104, b"56789"),
        ],
        1000,
    );
    let f = m.flows().next().unwrap();
    assert_eq!(m.buf_info(f, Side::Server).unwrap().lost, 7);
    assert_eq!(m.buf_info(f, Side::Client).unwrap().lost, 0);
    // The client acknowledges server bytes 0..4 only; then the other connection's SYN.
    feed(&mut m, &[c.cack(22, 4), d.syn()], 2000);
    // Client→server: 7 of tap loss and the hole 13..20 (7 bytes); server→client: 4..104.
    assert_eq!(m.middlebox().ends, vec![(14, 100)]);
    assert_eq!(
        m.middlebox().errors,
        vec![
            ErrorReason::Lost {
                bytes: 7,
                cause: LossCause::Tap
            },
            ErrorReason::Evicted
        ]
    );
    assert_eq!(m.counters().bytes_dropped, 114);
    assert_eq!(m.counters().flows_evicted, 1);
}
