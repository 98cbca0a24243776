//! IPv4 total length 0 (captured on the sending host before TCP segmentation offload split
//! the segment): the datagram is the rest of the frame, as Wireshark takes it.

mod common;

use common::*;
use monitor::{DropReason, Event, Hook, Monitor, Side};

/// Sets a frame's IPv4 total length to 0 and fixes the header checksum.
fn tso(mut f: Vec<u8>) -> Vec<u8> {
    f[16] = 0;
    f[17] = 0;
    f[24] = 0;
    f[25] = 0;
    let mut sum: u32 = f[14..34]
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    f[24..26].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    f
}

fn streams(tso_frames: bool) -> (Vec<u8>, Vec<u8>, u64) {
    let c = Conn::v4(1000, 90_000);
    let mut st = storage();
    let mut rec = Recorder::new(&[(Event::CONN_NEW_DATA, Hook::Rcv)]);
    rec.peek_all = true;
    let mut m = Monitor::new(rec, cfg(), st.storage()).unwrap();
    // A 20,000-byte write as one offloaded segment, then a normal one; and server data.
    let big: Vec<u8> = (0..20_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let mut frames = vec![c.syn(), c.synack(), c.ack()];
    let first = c.cdata(0, &big);
    frames.push(if tso_frames { tso(first) } else { first });
    frames.push(c.cdata(20_000, b"tail"));
    let resp = c.sdata(0, b"HTTP/1.1 200 OK\r\n\r\n");
    frames.push(if tso_frames { tso(resp) } else { resp });
    feed(&mut m, &frames, 0);
    let f = m.flows().next().unwrap();
    let rec = m.middlebox();
    let s = rec.streams[&(f.slot(), Side::Server)].clone();
    let cl = rec.streams[&(f.slot(), Side::Client)].clone();
    (s, cl, m.counters().drop_count(DropReason::BadIpv4))
}

#[test]
fn total_length_zero_takes_the_frame_length() {
    let (s, c, bad) = streams(true);
    assert_eq!(bad, 0);
    assert_eq!(s.len(), 20_004);
    assert_eq!(&s[20_000..], b"tail");
    assert_eq!(c, b"HTTP/1.1 200 OK\r\n\r\n");
    assert_eq!(streams(false), (s, c, 0));
}
