//! IPv4 header and TCP checksums of captured frames, for the host tools (issue 13 item 5,
//! host side).
//!
//! A segment whose checksum is wrong never reached the receiver's TCP, so it must not be
//! reassembled: `cargo ferrule flows` verifies each frame before the monitor sees it, and
//! counts the bad ones per reason in its summary. A capture taken on the sending host holds its
//! own segments before the NIC filled in their checksums (offload): all of them look wrong.
//! [`Checksums::Auto`] (the default) therefore looks at the first [`SAMPLE`] TCP segments
//! first, as Suricata's `checksum-validation: auto` does, and when more than 10 % of them are
//! bad it stops checking and says so in the summary; otherwise it verifies every frame.
//!
//! (The monitor's intake is being restructured in parallel; verification there, with the NIC's
//! receive-checksum result in the image, is the next step. The host check lives here meanwhile.)

/// TCP segments looked at to decide [`Checksums::Auto`].
pub const SAMPLE: u64 = 1000;

/// What to do with checksums.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Checksums {
    /// Drop every segment with a bad IPv4 header or TCP checksum.
    Verify,
    /// Check nothing.
    Ignore,
    /// Verify, unless more than 10 % of the first 1000 TCP segments are bad (checksums
    /// offloaded on the capturing host): then check nothing, and say so.
    Auto,
}

/// A frame's checksums.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    /// Every checksum present is right.
    Good,
    /// The IPv4 header checksum is wrong.
    BadIpv4,
    /// The TCP checksum is wrong.
    BadTcp,
    /// Nothing to verify (not IP, not TCP, a fragment's TCP part, a frame cut short by the
    /// capture's snap length, IPv6 extension headers before TCP).
    Unchecked,
}

fn sum(data: &[u8]) -> u32 {
    let mut s = 0u32;
    let mut it = data.chunks_exact(2);
    for c in &mut it {
        s = s.wrapping_add(u32::from(u16::from_be_bytes([c[0], c[1]])));
    }
    if let [last] = it.remainder() {
        s = s.wrapping_add(u32::from(*last) << 8);
    }
    s
}

fn folds_to_ones(mut s: u64) -> bool {
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s == 0xffff
}

fn be16(b: &[u8], at: usize) -> Option<usize> {
    Some(usize::from(u16::from_be_bytes([
        *b.get(at)?,
        *b.get(at + 1)?,
    ])))
}

/// Checks an Ethernet frame's IPv4 header checksum and, for unfragmented TCP, its TCP
/// checksum (no allocation).
pub fn check(frame: &[u8]) -> Check {
    let mut off = 12;
    let mut ty = match be16(frame, off) {
        Some(t) => t,
        None => return Check::Unchecked,
    };
    while matches!(ty, 0x8100 | 0x88a8 | 0x9100) {
        off += 4;
        ty = match be16(frame, off) {
            Some(t) => t,
            None => return Check::Unchecked,
        };
    }
    let l3 = &frame[(off + 2).min(frame.len())..];
    match ty {
        0x0800 => {
            let Some(&v) = l3.first() else {
                return Check::Unchecked;
            };
            let ihl = usize::from(v & 0x0f) * 4;
            if v >> 4 != 4 || ihl < 20 || l3.len() < ihl {
                return Check::Unchecked;
            }
            let total = match be16(l3, 2) {
                Some(0) => l3.len(),
                Some(n) => n,
                None => return Check::Unchecked,
            };
            if !folds_to_ones(u64::from(sum(&l3[..ihl]))) {
                return Check::BadIpv4;
            }
            let frag = be16(l3, 6).unwrap_or(0) & 0x3fff != 0;
            if l3[9] != 6 || frag || total < ihl || l3.len() < total {
                return Check::Unchecked;
            }
            let tcp = &l3[ihl..total];
            let pseudo = u64::from(sum(&l3[12..20])) + 6 + tcp.len() as u64;
            tcp_verdict(pseudo, tcp)
        }
        0x86dd => {
            if l3.len() < 40 || l3[0] >> 4 != 6 || l3[6] != 6 {
                return Check::Unchecked;
            }
            let len = match be16(l3, 4) {
                Some(0) => l3.len() - 40,
                Some(n) => n,
                None => return Check::Unchecked,
            };
            if l3.len() < 40 + len {
                return Check::Unchecked;
            }
            let tcp = &l3[40..40 + len];
            let pseudo = u64::from(sum(&l3[8..40])) + 6 + tcp.len() as u64;
            tcp_verdict(pseudo, tcp)
        }
        _ => Check::Unchecked,
    }
}

fn tcp_verdict(pseudo: u64, tcp: &[u8]) -> Check {
    if tcp.len() < 20 {
        return Check::Unchecked;
    }
    if folds_to_ones(pseudo + u64::from(sum(tcp))) {
        Check::Good
    } else {
        Check::BadTcp
    }
}

/// The checksum policy of one run and what it found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checker {
    /// What was asked.
    pub mode: Checksums,
    /// Frames are verified (false: `Ignore`, or `Auto` found offloaded checksums).
    pub verifying: bool,
    /// `Auto`'s sample: TCP segments looked at, and how many had a bad checksum.
    pub sampled: u64,
    /// Bad in the sample.
    pub sampled_bad: u64,
    /// Frames dropped for a bad IPv4 header checksum.
    pub bad_ipv4: u64,
    /// Frames dropped for a bad TCP checksum.
    pub bad_tcp: u64,
}

impl Checker {
    /// The policy for `mode`; for `Auto`, decided on `sample` (the capture's first frames:
    /// at most [`SAMPLE`] checked TCP segments are looked at).
    pub fn new<'a>(mode: Checksums, sample: impl IntoIterator<Item = &'a [u8]>) -> Checker {
        let mut c = Checker {
            mode,
            verifying: mode != Checksums::Ignore,
            sampled: 0,
            sampled_bad: 0,
            bad_ipv4: 0,
            bad_tcp: 0,
        };
        if mode == Checksums::Auto {
            for f in sample {
                match check(f) {
                    Check::Good => c.sampled += 1,
                    Check::BadIpv4 | Check::BadTcp => {
                        c.sampled += 1;
                        c.sampled_bad += 1;
                    }
                    Check::Unchecked => {}
                }
                if c.sampled == SAMPLE {
                    break;
                }
            }
            c.verifying = c.sampled_bad * 10 <= c.sampled;
        }
        c
    }

    /// Whether `frame` goes to the monitor (counted when it does not).
    pub fn pass(&mut self, frame: &[u8]) -> bool {
        if !self.verifying {
            return true;
        }
        match check(frame) {
            Check::BadIpv4 => {
                self.bad_ipv4 += 1;
                false
            }
            Check::BadTcp => {
                self.bad_tcp += 1;
                false
            }
            Check::Good | Check::Unchecked => true,
        }
    }

    /// The summary's `checksums` object.
    pub fn summary(&self) -> serde_json::Value {
        let mode = match (self.mode, self.verifying) {
            (Checksums::Verify, _) => "verify".to_string(),
            (Checksums::Ignore, _) => "ignore".to_string(),
            (Checksums::Auto, true) => "auto: verified".to_string(),
            (Checksums::Auto, false) => format!(
                "auto: not verified, {} of the first {} TCP segments had bad checksums \
                 (offloaded on the capturing host)",
                self.sampled_bad, self.sampled
            ),
        };
        serde_json::json!({
            "mode": mode,
            "bad_ipv4_header": self.bad_ipv4,
            "bad_tcp": self.bad_tcp,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A TCP/IPv4 frame with valid checksums (RFC 1071 worked by hand: the IPv4 header sums
    /// to 0xffff).
    fn frame(payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 12];
        f.extend([0x08, 0x00]);
        let total = (40 + payload.len()) as u16;
        let mut ip = vec![0x45, 0];
        ip.extend(total.to_be_bytes());
        ip.extend([0, 1, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
        let c = !fold(u64::from(sum(&ip)));
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        let mut tcp = vec![
            0x9c, 0x40, 0, 80, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x18, 0xff, 0xff,
        ];
        tcp.extend([0, 0, 0, 0]);
        tcp.extend(payload);
        let pseudo = u64::from(sum(&ip[12..20])) + 6 + tcp.len() as u64;
        let c = !fold(pseudo + u64::from(sum(&tcp)));
        tcp[16..18].copy_from_slice(&c.to_be_bytes());
        f.extend(ip);
        f.extend(tcp);
        f
    }

    fn fold(mut s: u64) -> u16 {
        while s > 0xffff {
            s = (s & 0xffff) + (s >> 16);
        }
        s as u16
    }

    #[test]
    fn good_bad_and_unchecked_frames() {
        let good = frame(b"odd length!");
        assert_eq!(check(&good), Check::Good);
        let mut bad_tcp = good.clone();
        *bad_tcp.last_mut().unwrap() ^= 1;
        assert_eq!(check(&bad_tcp), Check::BadTcp);
        let mut bad_ip = good.clone();
        bad_ip[22] ^= 1; // TTL
        assert_eq!(check(&bad_ip), Check::BadIpv4);
        assert_eq!(
            check(&good[..good.len() - 1]),
            Check::Unchecked,
            "cut short"
        );
        let mut frag = good.clone();
        frag[20] = 0x20; // more fragments
        let hdr_fix = |f: &mut Vec<u8>| {
            f[24] = 0;
            f[25] = 0;
            let c = !fold(u64::from(sum(&f[14..34])));
            f[24..26].copy_from_slice(&c.to_be_bytes());
        };
        hdr_fix(&mut frag);
        assert_eq!(check(&frag), Check::Unchecked, "a fragment's TCP part");
        assert_eq!(check(&[0u8; 10]), Check::Unchecked);
        // A TSO frame (total length 0): the TCP checksum covers the rest of the frame.
        let mut tso = good.clone();
        tso[16] = 0;
        tso[17] = 0;
        hdr_fix(&mut tso);
        assert_eq!(check(&tso), Check::Good);
    }

    #[test]
    fn auto_stops_checking_past_ten_percent_bad() {
        let good = frame(b"x");
        let mut bad = good.clone();
        bad[54] ^= 0xff;
        // 100 bad of 1000: verified; 101 bad: offload assumed.
        let mix = |nbad: usize| -> Vec<Vec<u8>> {
            (0..1000)
                .map(|i| if i < nbad { bad.clone() } else { good.clone() })
                .chain(std::iter::repeat_n(bad.clone(), 500))
                .collect()
        };
        let frames = mix(100);
        let c = Checker::new(Checksums::Auto, frames.iter().map(|f| &f[..]));
        assert_eq!((c.verifying, c.sampled, c.sampled_bad), (true, 1000, 100));
        let frames = mix(101);
        let mut c = Checker::new(Checksums::Auto, frames.iter().map(|f| &f[..]));
        assert_eq!((c.verifying, c.sampled, c.sampled_bad), (false, 1000, 101));
        assert!(c.pass(&bad));
        assert_eq!(
            c.summary()["mode"],
            "auto: not verified, 101 of the first 1000 TCP segments had bad checksums (offloaded on the capturing host)"
        );
        let mut v = Checker::new(Checksums::Verify, std::iter::empty());
        assert!(v.pass(&good) && !v.pass(&bad));
        assert_eq!((v.bad_tcp, v.bad_ipv4), (1, 0));
        let mut i = Checker::new(Checksums::Ignore, std::iter::empty());
        assert!(i.pass(&bad));
    }
}
