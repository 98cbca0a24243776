//! midstat on the host: its host runner (what `cargo ferrule replay --app midstat` runs)
//! prints the exact tables for a hand-built capture, and the middlebox walks both endpoints
//! through the state machine on generated traffic.

mod common;

use std::cell::RefCell;
use std::path::Path;
use std::process::Command;

use appliance::host::{run, Args, PcapOut};
use appliance::{Appliance, CoreInfo, Ctx, Event, Hook, Middlebox, Program, Registry, Settings};
use appliance::{Side, TcpState::*};
use common::frames::{Conn, Sent, ACK, PSH, RST};
use image::host::gen::{self, GenConfig};
use midstat::{Conn as Flow, History, Midstat, Out};

/// Writes `phases` as a capture: phase `k` at `10 + k` seconds, padded with non-IP frames to
/// 32 frames, so each phase is one batch of the host runner and the timer fires before it.
fn phased_capture(path: &Path, phases: &[Vec<Sent>]) {
    let mut w = PcapOut::new(Vec::new()).unwrap();
    for (k, phase) in phases.iter().enumerate() {
        assert!(phase.len() <= 32);
        let ts = (10 + k as u64) * 1_000_000;
        for (i, (_, f)) in phase.iter().enumerate() {
            w.frame(ts + i as u64, f).unwrap();
        }
        for i in phase.len()..32 {
            let mut filler = vec![0xff; 12];
            filler.extend([0x88, 0xb5]);
            filler.resize(60, i as u8);
            w.frame(ts + i as u64, &filler).unwrap();
        }
    }
    std::fs::write(path, w.finish().unwrap()).unwrap();
}

/// The three connections of the scripted capture and its phases.
pub fn script() -> Vec<Vec<Sent>> {
    let mut a = Conn::new("10.0.0.1:40001", "192.168.3.1:80");
    let mut b = Conn::new("[fd00::1]:40002", "[fd00:1::5]:80");
    let mut c = Conn::new("10.0.0.3:40003", "192.168.7.1:80");
    let mut p0 = a.handshake();
    p0.extend(b.handshake());
    p0.extend(c.handshake());
    let mut p1 = a.client_fin();
    p1.push(b.c(PSH | ACK, b"GET / HTTP/1.0\r\n\r\n"));
    p1.push(b.s(PSH | ACK, b"HTTP/1.0 200 OK\r\n\r\n"));
    p1.push(c.c(RST, b""));
    let mut p2 = a.server_fin();
    p2.extend(b.client_fin());
    vec![p0, p1, p2, vec![]]
}

const HEADER: &str =
    "Proto CPU Client Address        Client State Server Address        Server State";

#[test]
fn the_host_runner_prints_each_second_the_table_mos_prints() {
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("scripted.pcap");
    phased_capture(&pcap, &script());
    let out = Command::new(env!("CARGO_BIN_EXE_midstat"))
        .arg(&pcap)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = String::from_utf8(out.stdout).unwrap();
    let want = [
        // 10 s: before the first frame.
        HEADER,
        // 11 s: three handshakes done.
        HEADER,
        "tcp   0   10.0.0.1:40001        ESTABLISHED  192.168.3.1:80        ESTABLISHED ",
        "tcp   0   [fd00::1]:40002       ESTABLISHED  [fd00:1::5]:80        ESTABLISHED ",
        "tcp   0   10.0.0.3:40003        ESTABLISHED  192.168.7.1:80        ESTABLISHED ",
        // 12 s: A half closed by its client, C reset (gone), B exchanged data.
        HEADER,
        "tcp   0   10.0.0.1:40001        FIN_WAIT_2   192.168.3.1:80        CLOSE_WAIT  ",
        "tcp   0   [fd00::1]:40002       ESTABLISHED  [fd00:1::5]:80        ESTABLISHED ",
        // 13 s: A closed (gone), B half closed.
        HEADER,
        "tcp   0   [fd00::1]:40002       FIN_WAIT_2   [fd00:1::5]:80        CLOSE_WAIT  ",
        "midstat: 3 connections ended",
    ];
    assert_eq!(got.lines().collect::<Vec<_>>(), want, "{got}");
}

thread_local! {
    static ENDED: RefCell<Vec<[History; 2]>> = const { RefCell::new(Vec::new()) };
}

/// Keeps the state history of each connection that ends; prints nothing.
struct Histories;

impl Out for Histories {
    fn line(&mut self, _: core::fmt::Arguments<'_>) {}
    fn ended(&mut self, conn: &Flow) {
        ENDED.with(|e| e.borrow_mut().push(conn.sides.clone()));
    }
}

struct Test(Midstat<Histories>);

impl Middlebox for Test {
    type Flow = Flow;
    fn init(&mut self, reg: &mut Registry) {
        self.0.init(reg)
    }
    fn on_event(&mut self, cx: &mut Ctx<'_, '_, Flow>, ev: Event, hook: Hook, side: Side) {
        self.0.on_event(cx, ev, hook, side)
    }
}

impl Appliance for Test {
    fn new(_: &CoreInfo) -> Self {
        Test(Midstat::new(Histories))
    }
}

struct Prog;
impl Program for Prog {
    type App = Test;
    const SETTINGS: Settings = Settings::DEFAULT;
}

/// The state histories of every connection of a generated capture, and their number.
fn histories(cfg: &GenConfig) -> (Vec<[History; 2]>, usize) {
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("t.pcap");
    let stats = gen::generate_files(cfg, &pcap).unwrap();
    ENDED.with(|e| e.borrow_mut().clear());
    let args = Args {
        capture: pcap,
        inline: false,
        out: None,
        checksums: None,
    };
    run::<Prog>(&args).unwrap();
    (ENDED.with(|e| e.take()), stats.flows as usize)
}

#[test]
fn each_endpoint_walks_the_state_machine_and_resets_close_both() {
    let (ended, flows) = histories(&GenConfig {
        flows: 30,
        concurrent: 6,
        ipv6_pct: 30.0,
        seed: 3,
        ..GenConfig::default()
    });
    assert_eq!((ended.len(), flows), (30, 30));
    for [c, s] in &ended {
        assert_eq!(
            c,
            &[Listen, SynSent, Established, FinWait1, FinWait2, TimeWait][..]
        );
        assert_eq!(
            s,
            &[Listen, SynRcvd, Established, CloseWait, LastAck, Closed][..]
        );
    }
    let (ended, flows) = histories(&GenConfig {
        flows: 20,
        concurrent: 4,
        rst_pct: 100.0,
        seed: 4,
        ..GenConfig::default()
    });
    assert_eq!((ended.len(), flows), (20, 20));
    for [c, s] in &ended {
        assert_eq!((c.last(), s.last()), (Some(&Closed), Some(&Closed)));
    }
}
