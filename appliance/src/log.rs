//! Per-core output that never waits: a lock-free single-producer ring of whole lines.
//!
//! The producer is the core's own code (callbacks, the runtime's stats): it stages a line's
//! bytes past the committed tail and publishes the whole line at its newline with one
//! release store. A line that does not fit (ring full, or longer than [`LINE_MAX`]) is
//! dropped whole and counted; the producer never waits. The consumer (whoever drains the ring
//! to the console, outside the batch loop) claims the ring with a flag it only *tries* to
//! take, copies whole lines out and releases the bytes. Bytes are `AtomicU8`s so all of this
//! is safe code; on x86 a relaxed byte store is a plain `mov`.

use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};

/// Bytes per core's ring.
pub const LOG_RING_BYTES: usize = 64 * 1024;
/// Longest line (newline included); longer lines are dropped and counted.
pub const LINE_MAX: usize = 2048;

/// One core's log ring.
pub struct LogRing {
    /// Consumer position (monotonic byte count).
    head: AtomicUsize,
    /// Producer's committed position (monotonic byte count).
    tail: AtomicUsize,
    /// Lines dropped because they did not fit.
    dropped: AtomicU64,
    /// Lines committed.
    lines: AtomicU64,
    /// Held by the one consumer draining the ring right now.
    draining: AtomicBool,
    /// The bytes, outside the struct: in the image they come from the frame allocator, one
    /// buffer per serving core, so the number of rings follows the cores actually used.
    buf: &'static [AtomicU8; LOG_RING_BYTES],
}

#[cfg(not(target_os = "none"))]
impl Default for LogRing {
    fn default() -> Self {
        LogRing::new()
    }
}

impl LogRing {
    /// An empty ring over `buf` (whose contents are ignored: bytes count only once
    /// committed).
    pub const fn with_buffer(buf: &'static [AtomicU8; LOG_RING_BYTES]) -> LogRing {
        LogRing {
            head: AtomicUsize::new(0),
            tail: AtomicUsize::new(0),
            dropped: AtomicU64::new(0),
            lines: AtomicU64::new(0),
            draining: AtomicBool::new(false),
            buf,
        }
    }

    /// An empty ring with its own buffer, leaked (host only: tests and tools).
    #[cfg(not(target_os = "none"))]
    pub fn new() -> LogRing {
        let buf: Box<[AtomicU8; LOG_RING_BYTES]> = (0..LOG_RING_BYTES)
            .map(|_| AtomicU8::new(0))
            .collect::<Box<[AtomicU8]>>()
            .try_into()
            .unwrap_or_else(|_| unreachable!("the iterator yields exactly LOG_RING_BYTES"));
        LogRing::with_buffer(Box::leak(buf))
    }

    /// Lines dropped because they did not fit.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Lines committed so far.
    pub fn lines(&self) -> u64 {
        self.lines.load(Ordering::Relaxed)
    }

    /// Bytes committed and not yet drained.
    pub fn used(&self) -> usize {
        self.tail
            .load(Ordering::Acquire)
            .wrapping_sub(self.head.load(Ordering::Acquire))
    }

    /// Producer: stages `s` at `pending` bytes past the committed tail. Returns the new
    /// pending length, or `None` when the line no longer fits (the caller then drops it).
    fn stage(&self, pending: usize, s: &[u8]) -> Option<usize> {
        let tail = self.tail.load(Ordering::Relaxed);
        let head = self.head.load(Ordering::Acquire);
        let free = LOG_RING_BYTES - tail.wrapping_sub(head);
        let end = pending.checked_add(s.len())?;
        if end > free || end > LINE_MAX {
            return None;
        }
        for (i, &b) in s.iter().enumerate() {
            self.buf[tail.wrapping_add(pending + i) % LOG_RING_BYTES].store(b, Ordering::Relaxed);
        }
        Some(end)
    }

    /// Producer: ends the staged line with a newline and publishes it, or drops it (counted)
    /// when it does not fit or `overflowed`.
    fn commit(&self, pending: usize, overflowed: bool) -> bool {
        let staged = if overflowed {
            None
        } else {
            self.stage(pending, b"\n")
        };
        match staged {
            Some(len) => {
                let tail = self.tail.load(Ordering::Relaxed);
                self.tail.store(tail.wrapping_add(len), Ordering::Release);
                self.lines.fetch_add(1, Ordering::Relaxed);
                true
            }
            None => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// Producer: writes one whole line (the newline is added). Returns false if it was
    /// dropped.
    pub fn push_line(&self, args: fmt::Arguments<'_>) -> bool {
        let mut w = Staging {
            ring: self,
            pending: 0,
            overflowed: false,
        };
        let _ = fmt::write(&mut w, args);
        self.commit(w.pending, w.overflowed)
    }

    /// Producer: text that may hold newlines; each newline publishes (or drops) the line
    /// staged so far. `pending`/`overflowed` carry an unfinished line between calls.
    pub fn write_text(&self, pending: &mut usize, overflowed: &mut bool, s: &str) {
        let mut rest = s.as_bytes();
        while !rest.is_empty() {
            let (seg, nl) = match rest.iter().position(|&b| b == b'\n') {
                Some(i) => (&rest[..i], true),
                None => (rest, false),
            };
            if !*overflowed {
                match self.stage(*pending, seg) {
                    Some(p) => *pending = p,
                    None => *overflowed = true,
                }
            }
            rest = &rest[seg.len()..];
            if nl {
                self.commit(*pending, *overflowed);
                *pending = 0;
                *overflowed = false;
                rest = &rest[1..];
            }
        }
    }

    /// Consumer: hands whole lines (without their newline) to `out` until at least
    /// `max_bytes` were drained or the ring is empty. Returns the bytes drained, 0 too when
    /// another consumer holds the ring (this never waits).
    pub fn drain(&self, max_bytes: usize, mut out: impl FnMut(&str)) -> usize {
        if self
            .draining
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return 0;
        }
        let mut line = [0u8; LINE_MAX];
        let mut head = self.head.load(Ordering::Relaxed);
        let tail = self.tail.load(Ordering::Acquire);
        let mut drained = 0;
        while head != tail && drained < max_bytes.max(1) {
            let mut n = 0;
            loop {
                let b = self.buf[head % LOG_RING_BYTES].load(Ordering::Relaxed);
                head = head.wrapping_add(1);
                drained += 1;
                if b == b'\n' || head == tail {
                    break;
                }
                if n < LINE_MAX {
                    line[n] = b;
                    n += 1;
                }
            }
            // Lines are written through `fmt::Write`, hence UTF-8; a defensive cut keeps the
            // valid prefix of anything else.
            let text = match core::str::from_utf8(&line[..n]) {
                Ok(t) => t,
                Err(e) => core::str::from_utf8(&line[..e.valid_up_to()]).unwrap_or(""),
            };
            out(text);
            self.head.store(head, Ordering::Release);
        }
        self.draining.store(false, Ordering::Release);
        drained
    }
}

/// `fmt::Write` into a ring's staging area.
struct Staging<'r> {
    ring: &'r LogRing,
    pending: usize,
    overflowed: bool,
}

impl fmt::Write for Staging<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if !self.overflowed {
            match self.ring.stage(self.pending, s.as_bytes()) {
                Some(p) => self.pending = p,
                None => self.overflowed = true,
            }
        }
        Ok(())
    }
}

/// A core's log handle (`Copy`). In the image, lines go into the core's own [`LogRing`]
/// (drained to the console outside the batch loop; a line that does not fit is dropped and
/// counted, never waited for); on the host they go to stdout.
///
/// Use [`Log::line`] (one whole line), or `write!`/`writeln!` through `core::fmt::Write`:
/// text is staged until a newline publishes it as one line (do not interleave unfinished lines
/// of two copies of the same core's `Log`).
#[derive(Clone, Copy, Debug)]
pub struct Log {
    #[cfg(target_os = "none")]
    core: usize,
    #[cfg(target_os = "none")]
    pending: usize,
    #[cfg(target_os = "none")]
    overflowed: bool,
}

#[cfg(target_os = "none")]
mod rings {
    use super::{LogRing, LOG_RING_BYTES};
    use core::sync::atomic::AtomicU8;

    /// One ring per serving core, indexed by core id, allocated by [`init`].
    static RINGS: spin::Once<&'static [LogRing]> = spin::Once::new();
    static SPARE_BUF: [AtomicU8; LOG_RING_BYTES] = [const { AtomicU8::new(0) }; LOG_RING_BYTES];
    /// The ring of a core without one (before [`init`], or an id past the serving cores,
    /// which the runtime never logs from): never drained, so its lines are only counted.
    static SPARE: LogRing = LogRing::with_buffer(&SPARE_BUF);

    /// Allocates the rings of cores `0..cores` (once; boot time).
    pub fn init(cores: usize) {
        RINGS.call_once(|| {
            kernel::mem::alloc_slice(cores, || {
                let buf: &'static [AtomicU8] =
                    kernel::mem::alloc_slice(LOG_RING_BYTES, || AtomicU8::new(0));
                match <&[AtomicU8; LOG_RING_BYTES]>::try_from(buf) {
                    Ok(b) => LogRing::with_buffer(b),
                    Err(_) => unreachable!("alloc_slice gives exactly LOG_RING_BYTES"),
                }
            })
        });
    }

    /// Core `id`'s ring.
    pub fn ring(id: usize) -> &'static LogRing {
        RINGS.get().and_then(|r| r.get(id)).unwrap_or(&SPARE)
    }
}

#[cfg(target_os = "none")]
pub(crate) use rings::{init as init_rings, ring};

impl Log {
    /// The log of core `id` (image: that core's ring; host: stdout).
    pub const fn for_core(id: usize) -> Log {
        #[cfg(target_os = "none")]
        {
            Log {
                core: id,
                pending: 0,
                overflowed: false,
            }
        }
        #[cfg(not(target_os = "none"))]
        {
            let _ = id;
            Log {}
        }
    }

    /// Writes one whole line (a newline is added). In the image: false when the line was
    /// dropped because this core's ring was full.
    pub fn line(&mut self, args: fmt::Arguments<'_>) -> bool {
        #[cfg(target_os = "none")]
        {
            let _ = fmt::Write::write_fmt(self, args);
            let (p, o) = (self.pending, self.overflowed);
            self.pending = 0;
            self.overflowed = false;
            ring(self.core).commit(p, o)
        }
        #[cfg(not(target_os = "none"))]
        {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            out.write_fmt(args)
                .and_then(|()| out.write_all(b"\n"))
                .is_ok()
        }
    }
}

impl fmt::Write for Log {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        #[cfg(target_os = "none")]
        {
            ring(self.core).write_text(&mut self.pending, &mut self.overflowed, s);
            Ok(())
        }
        #[cfg(not(target_os = "none"))]
        {
            use std::io::Write;
            std::io::stdout()
                .lock()
                .write_all(s.as_bytes())
                .map_err(|_| fmt::Error)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn drain_all(r: &LogRing) -> Vec<String> {
        let mut v = Vec::new();
        r.drain(usize::MAX, |l| v.push(l.to_string()));
        v
    }

    #[test]
    fn whole_lines_in_order() {
        let r = LogRing::new();
        assert!(r.push_line(format_args!("a {}", 1)));
        assert!(r.push_line(format_args!("")));
        assert!(r.push_line(format_args!("{}-{}", "b", 2)));
        assert_eq!(drain_all(&r), ["a 1", "", "b-2"]);
        assert_eq!(r.used(), 0);
        assert_eq!((r.lines(), r.dropped()), (3, 0));
    }

    #[test]
    fn full_ring_drops_whole_lines_and_counts_them() {
        let r = LogRing::new();
        let line = "x".repeat(1000);
        let mut kept = 0;
        for _ in 0..100 {
            if r.push_line(format_args!("{line}")) {
                kept += 1;
            }
        }
        assert_eq!(kept, LOG_RING_BYTES / 1001);
        assert_eq!(r.dropped(), 100 - kept as u64);
        let got = drain_all(&r);
        assert_eq!(got.len(), kept);
        assert!(got.iter().all(|l| *l == line));
        // Room again after draining; the ring wraps.
        for i in 0..100 {
            assert!(r.push_line(format_args!("{i} {line}")));
            assert_eq!(drain_all(&r), [format!("{i} {line}")]);
        }
        // Longer than LINE_MAX: dropped even into an empty ring.
        assert!(!r.push_line(format_args!("{}", "y".repeat(LINE_MAX))));
        assert_eq!(r.used(), 0);
    }

    #[test]
    fn drain_is_bounded_and_never_splits_a_line() {
        let r = LogRing::new();
        for i in 0..10 {
            r.push_line(format_args!("line {i:03}"));
        }
        let mut v = Vec::new();
        let n = r.drain(1, |l| v.push(l.to_string()));
        assert_eq!((n, v.len()), (9, 1));
        let n = r.drain(20, |l| v.push(l.to_string()));
        assert_eq!((n, v.len()), (27, 4));
        v.extend(drain_all(&r));
        let want: Vec<String> = (0..10).map(|i| format!("line {i:03}")).collect();
        assert_eq!(v, want);
    }

    #[test]
    fn one_producer_one_consumer_across_threads() {
        let r = Arc::new(LogRing::new());
        let p = Arc::clone(&r);
        let producer = std::thread::spawn(move || {
            let mut kept = Vec::new();
            for i in 0..20_000u32 {
                if p.push_line(format_args!("{i} {}", "z".repeat((i % 97) as usize))) {
                    kept.push(i);
                }
            }
            kept
        });
        let mut got = Vec::new();
        loop {
            let done = producer.is_finished();
            r.drain(4096, |l| got.push(l.to_string()));
            if done && r.used() == 0 {
                break;
            }
        }
        let kept = producer.join().unwrap();
        assert_eq!(got.len(), kept.len());
        for (line, i) in got.iter().zip(&kept) {
            assert_eq!(*line, format!("{i} {}", "z".repeat((*i % 97) as usize)));
        }
        assert_eq!(r.dropped() as usize + kept.len(), 20_000);
    }

    #[test]
    fn text_with_newlines_commits_line_by_line() {
        let r = LogRing::new();
        let (mut p, mut o) = (0, false);
        r.write_text(&mut p, &mut o, "one\ntw");
        r.write_text(&mut p, &mut o, "o\n\nthree");
        assert_eq!(drain_all(&r), ["one", "two", ""]);
        assert_eq!(p, 5);
        r.write_text(&mut p, &mut o, &"x".repeat(LINE_MAX));
        assert!(o);
        r.write_text(&mut p, &mut o, "\nfour\n");
        assert_eq!(drain_all(&r), ["four"]);
        assert_eq!((r.dropped(), r.lines()), (1, 4));
    }

    #[test]
    fn a_second_consumer_gets_nothing_while_one_drains() {
        let r = LogRing::new();
        r.push_line(format_args!("one"));
        r.push_line(format_args!("two"));
        let mut inner = 0;
        let mut outer = Vec::new();
        r.drain(usize::MAX, |l| {
            outer.push(l.to_string());
            inner += r.drain(usize::MAX, |_| {});
        });
        assert_eq!(inner, 0);
        assert_eq!(outer, ["one", "two"]);
    }
}
