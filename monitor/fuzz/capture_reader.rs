//! Driver of the `capture_reader` fuzz target (also replayed on stable by
//! `monitor/tests/fuzz_capture_reader.rs`).

use appliance::capture::{CaptureError, CaptureReader, MAX_BLOCK};
use std::path::Path;

/// Reads `data` as a capture to its end or its damage, feeding every frame to a monitor.
pub fn run(data: &[u8]) {
    let mut r = match CaptureReader::new(data, Path::new("fuzz")) {
        Ok(r) => r,
        Err(CaptureError::Format(..) | CaptureError::Linktype(..)) => return,
        Err(e) => panic!("a header is refused only as format or link type: {e}"),
    };
    let mut st: monitor::HostStorage<()> = monitor::HostStorage::new(8, 16, 2);
    let mut m = monitor::Monitor::new(Nothing, monitor::Config::DEFAULT, st.storage())
        .expect("configuration");
    let mut frames = 0u64;
    loop {
        match r.next_frame() {
            Ok(Some((ts, f))) => {
                // Every frame came from the input (a synthesized header adds 14 bytes at most).
                assert!(f.len() <= data.len() + 14 && f.len() <= MAX_BLOCK + 14);
                frames += 1;
                m.on_batch([(f, ts)]);
            }
            Ok(None) => break,
            Err(CaptureError::Damaged {
                offset, frames: n, ..
            }) => {
                assert!(
                    offset < data.len() as u64,
                    "damage at {offset} of {}",
                    data.len()
                );
                assert_eq!(n, frames);
                break;
            }
            Err(CaptureError::Linktype(..)) => break,
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    // After the end or an error, nothing more.
    assert!(matches!(r.next_frame(), Ok(None)));
    // Each frame needs at least 16 bytes of the input.
    assert!(frames <= data.len() as u64 / 16);
    m.close_all();
}

struct Nothing;

impl monitor::Middlebox for Nothing {
    type Flow = ();
    fn init(&mut self, _reg: &mut monitor::Registry) {}
    fn on_event(
        &mut self,
        _cx: &mut monitor::Ctx<'_, '_, ()>,
        _ev: monitor::Event,
        _hook: monitor::Hook,
        _side: monitor::Side,
    ) {
    }
}
