//! The `lost` field of the JSON line counts bytes a flow lost for good (issue 13 item 8):
//! holes the receiver acknowledged (tap loss), crossed by `peek` as the stream goes, and the
//! holes an eviction makes permanent.

#[path = "../../../monitor/tests/common/mod.rs"]
mod common;

use common::*;
use core::fmt;
use flowlog::{FlowLog, Sink};
use monitor::{HostStorage, Monitor};

#[derive(Default)]
struct Lines(Vec<String>);

impl Sink for Lines {
    fn line(&mut self, line: fmt::Arguments<'_>) {
        self.0.push(line.to_string());
    }
}

fn sha(data: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn an_evicted_flow_reports_its_tap_loss_and_its_open_holes() {
    let c = Conn::v4(10, 20);
    let d = Conn {
        c: ("10.0.0.2".parse().unwrap(), 2),
        ..Conn::v4(1, 2)
    };
    let mut st: HostStorage<flowlog::FlowDigest> = HostStorage::new(1, 16, 1);
    let mut m = Monitor::new(FlowLog::new(Lines::default()), cfg(), st.storage()).unwrap();
    feed(&mut m, &[c.syn(), c.synack(), c.ack()], 0);
    feed(
        &mut m,
        &[
            // Client stream: "abc", hole 3..10 (acknowledged below: tap loss), "def", hole
            // 13..20 (never acknowledged), "gh".
            c.cdata(0, b"abc"),
            c.cdata(10, b"def"),
            c.cdata(20, b"gh"),
            c.sack(0, 13),
            c.sdata(0, b"1234"),
        ],
        1000,
    );
    // The other connection's SYN takes the only slot.
    feed(&mut m, &[c.cack(22, 4), d.syn()], 2000);
    let lines = &m.middlebox_mut().sink().0;
    assert_eq!(lines.len(), 1);
    assert_eq!(
        lines[0],
        format!(
            "{{\"client\":\"10.0.0.1:40000\",\"server\":\"192.168.1.1:80\",\
             \"c2s\":{{\"bytes\":8,\"sha256\":\"{}\",\"gaps\":2,\"lost\":14}},\
             \"s2c\":{{\"bytes\":4,\"sha256\":\"{}\",\"gaps\":0,\"lost\":0}},\
             \"client_state\":\"ESTABLISHED\",\"server_state\":\"ESTABLISHED\"}}",
            sha(b"abcdefgh"),
            sha(b"1234")
        )
    );
}
