//! IPFIX (RFC 7011) messages of per-connection records: a pure encoder into a caller's buffer.
//!
//! One record per connection, both directions in it: the client→server direction uses the
//! plain counters (`packetDeltaCount`, `octetDeltaCount`) and the server→client direction the
//! `post*` counters (`postPacketDeltaCount` 24, `postOctetDeltaCount` 23), which nfdump reads
//! as a flow's "out" packets and bytes. The source is the client, the destination the
//! server. Holes per direction (gaps the monitor could not fill) are enterprise-specific
//! elements under the documentation PEN 32473 (RFC 5612), ids 1 (client→server) and 2
//! (server→client); collectors that do not know them skip them by their length.
//!
//! Templates: [`TEMPLATE_V4`] (256) and [`TEMPLATE_V6`] (257), in a template set at the start
//! of a message when the caller asks (the first message and then periodically, as UDP
//! transport needs: RFC 7011 §8.4).

/// IPFIX version number.
pub const VERSION: u16 = 10;
/// The IANA port for IPFIX over UDP.
pub const PORT: u16 = 4739;
/// Template id of IPv4 connections.
pub const TEMPLATE_V4: u16 = 256;
/// Template id of IPv6 connections.
pub const TEMPLATE_V6: u16 = 257;
/// Enterprise number of the holes elements (RFC 5612's documentation PEN).
pub const PEN: u32 = 32473;
/// Largest message this encoder makes (fits an Ethernet MTU with IPv4/IPv6 and UDP headers).
pub const MAX_MESSAGE: usize = 1400;

/// `flowEndReason` values (IANA).
pub mod end_reason {
    /// Idle timeout.
    pub const IDLE_TIMEOUT: u8 = 1;
    /// Active timeout (a long connection's periodic record).
    pub const ACTIVE_TIMEOUT: u8 = 2;
    /// End of flow detected (FIN or RST).
    pub const END_OF_FLOW: u8 = 3;
    /// Forced end (the exporter shut down).
    pub const FORCED_END: u8 = 4;
    /// Lack of resources (evicted from a full table).
    pub const LACK_OF_RESOURCES: u8 = 5;
}

/// A connection's two endpoints' addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Addrs {
    /// IPv4 client and server.
    V4([u8; 4], [u8; 4]),
    /// IPv6 client and server.
    V6([u8; 16], [u8; 16]),
}

/// One connection (or, at an active timeout, one connection so far).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowRecord {
    /// Client and server addresses.
    pub addrs: Addrs,
    /// Client port.
    pub client_port: u16,
    /// Server port.
    pub server_port: u16,
    /// First packet, milliseconds since the Unix epoch.
    pub start_ms: u64,
    /// Last packet, milliseconds since the Unix epoch.
    pub end_ms: u64,
    /// Packets client→server, server→client.
    pub packets: [u64; 2],
    /// IP bytes client→server, server→client.
    pub bytes: [u64; 2],
    /// Union of the TCP flags of both directions.
    pub tcp_flags: u16,
    /// See [`end_reason`].
    pub end_reason: u8,
    /// Holes client→server, server→client.
    pub holes: [u32; 2],
}

/// (element id, length, enterprise) of a template, in record order.
type Field = (u16, u16, Option<u32>);

const fn fields(v6: bool) -> [Field; 15] {
    let (src, dst, alen) = if v6 { (27, 28, 16) } else { (8, 12, 4) };
    [
        (src, alen, None),
        (dst, alen, None),
        (7, 2, None),   // sourceTransportPort
        (11, 2, None),  // destinationTransportPort
        (4, 1, None),   // protocolIdentifier
        (6, 2, None),   // tcpControlBits
        (152, 8, None), // flowStartMilliseconds
        (153, 8, None), // flowEndMilliseconds
        (2, 8, None),   // packetDeltaCount
        (1, 8, None),   // octetDeltaCount
        (24, 8, None),  // postPacketDeltaCount
        (23, 8, None),  // postOctetDeltaCount
        (136, 1, None), // flowEndReason
        (1, 4, Some(PEN)),
        (2, 4, Some(PEN)),
    ]
}

const fn record_len(v6: bool) -> usize {
    let f = fields(v6);
    let mut n = 0;
    let mut i = 0;
    while i < f.len() {
        n += f[i].1 as usize;
        i += 1;
    }
    n
}

/// Bytes of one IPv4 record.
pub const RECORD_V4: usize = record_len(false);
/// Bytes of one IPv6 record.
pub const RECORD_V6: usize = record_len(true);

/// Writes big-endian values into a slice; `ok` turns false on overflow.
struct Out<'a> {
    buf: &'a mut [u8],
    at: usize,
    ok: bool,
}

impl Out<'_> {
    fn bytes(&mut self, b: &[u8]) {
        match self.buf.get_mut(self.at..self.at + b.len()) {
            Some(d) if self.ok => {
                d.copy_from_slice(b);
                self.at += b.len();
            }
            _ => self.ok = false,
        }
    }
    fn u16(&mut self, v: u16) {
        self.bytes(&v.to_be_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.bytes(&v.to_be_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.bytes(&v.to_be_bytes());
    }
    fn patch_u16(&mut self, at: usize, v: u16) {
        if let Some(d) = self.buf.get_mut(at..at + 2) {
            d.copy_from_slice(&v.to_be_bytes());
        }
    }
}

/// One exporter's state: observation domain and sequence number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exporter {
    /// Observation domain id (e.g. the appliance's core or port).
    pub domain: u32,
    /// Data records sent so far (the next message's sequence number), mod 2^32.
    pub sequence: u32,
}

impl Exporter {
    /// A new exporter for `domain`.
    pub const fn new(domain: u32) -> Exporter {
        Exporter {
            domain,
            sequence: 0,
        }
    }

    /// Encodes one message into `out`: the templates first if `templates`, then as many of
    /// `records` as fit in `out` and [`MAX_MESSAGE`], in order, in runs of one set per address
    /// family. Returns `(message length, records taken)`; `(0, 0)` if `out` cannot hold even
    /// the header (and the templates, when asked).
    pub fn encode(
        &mut self,
        out: &mut [u8],
        export_time_s: u32,
        templates: bool,
        records: &[FlowRecord],
    ) -> (usize, usize) {
        let cap = out.len().min(MAX_MESSAGE);
        let mut o = Out {
            buf: &mut out[..cap],
            at: 0,
            ok: true,
        };
        o.u16(VERSION);
        o.u16(0); // length, patched below
        o.u32(export_time_s);
        o.u32(self.sequence);
        o.u32(self.domain);
        if templates {
            let set_start = o.at;
            o.u16(2);
            o.u16(0);
            for (id, v6) in [(TEMPLATE_V4, false), (TEMPLATE_V6, true)] {
                let f = fields(v6);
                o.u16(id);
                o.u16(f.len() as u16);
                for (ie, len, pen) in f {
                    match pen {
                        Some(p) => {
                            o.u16(ie | 0x8000);
                            o.u16(len);
                            o.u32(p);
                        }
                        None => {
                            o.u16(ie);
                            o.u16(len);
                        }
                    }
                }
            }
            let set_len = (o.at - set_start) as u16;
            o.patch_u16(set_start + 2, set_len);
        }
        if !o.ok {
            return (0, 0);
        }
        let mut taken = 0;
        while taken < records.len() {
            let v6 = matches!(records[taken].addrs, Addrs::V6(..));
            let rlen = if v6 { RECORD_V6 } else { RECORD_V4 };
            if o.at + 4 + rlen > cap {
                break;
            }
            let set_start = o.at;
            o.u16(if v6 { TEMPLATE_V6 } else { TEMPLATE_V4 });
            o.u16(0);
            while let Some(r) = records.get(taken) {
                if matches!(r.addrs, Addrs::V6(..)) != v6 || o.at + rlen > cap {
                    break;
                }
                write_record(&mut o, r);
                taken += 1;
            }
            let set_len = (o.at - set_start) as u16;
            o.patch_u16(set_start + 2, set_len);
        }
        let len = o.at;
        o.patch_u16(2, len as u16);
        self.sequence = self.sequence.wrapping_add(taken as u32);
        (len, taken)
    }
}

fn write_record(o: &mut Out<'_>, r: &FlowRecord) {
    match r.addrs {
        Addrs::V4(c, s) => {
            o.bytes(&c);
            o.bytes(&s);
        }
        Addrs::V6(c, s) => {
            o.bytes(&c);
            o.bytes(&s);
        }
    }
    o.u16(r.client_port);
    o.u16(r.server_port);
    o.bytes(&[6]);
    o.u16(r.tcp_flags);
    o.u64(r.start_ms);
    o.u64(r.end_ms);
    o.u64(r.packets[0]);
    o.u64(r.bytes[0]);
    o.u64(r.packets[1]);
    o.u64(r.bytes[1]);
    o.bytes(&[r.end_reason]);
    o.u32(r.holes[0]);
    o.u32(r.holes[1]);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record whose values are all distinct, so a swapped field shows.
    pub(crate) fn sample_v4() -> FlowRecord {
        FlowRecord {
            addrs: Addrs::V4([10, 0, 0, 1], [192, 168, 1, 2]),
            client_port: 40000,
            server_port: 80,
            start_ms: 1_700_000_000_123,
            end_ms: 1_700_000_001_456,
            packets: [7, 5],
            bytes: [600, 4000],
            tcp_flags: 0x1b,
            end_reason: end_reason::END_OF_FLOW,
            holes: [1, 0],
        }
    }

    #[test]
    fn record_sizes() {
        assert_eq!(RECORD_V4, 4 + 4 + 2 + 2 + 1 + 2 + 6 * 8 + 1 + 8);
        assert_eq!(RECORD_V6, RECORD_V4 + 24);
    }

    #[test]
    fn a_message_with_templates_and_one_record_is_laid_out_as_rfc_7011_says() {
        let mut e = Exporter::new(7);
        let mut buf = [0u8; 2000];
        let (len, taken) = e.encode(&mut buf, 0x6000_0000, true, &[sample_v4()]);
        assert_eq!(taken, 1);
        let m = &buf[..len];
        // Header: version 10, length, export time, sequence 0, domain 7.
        assert_eq!(
            &m[..16],
            &[
                0,
                10,
                (len >> 8) as u8,
                len as u8,
                0x60,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                7
            ]
        );
        // Template set: id 2; two templates of 15 fields, two of them enterprise (8 bytes).
        let tset = 4 + 2 * (4 + 13 * 4 + 2 * 8);
        assert_eq!(&m[16..20], &[0, 2, (tset >> 8) as u8, tset as u8]);
        assert_eq!(&m[20..24], &[1, 0, 0, 15]); // template 256, 15 fields
        assert_eq!(&m[24..28], &[0, 8, 0, 4]); // sourceIPv4Address, 4 bytes
                                               // The holes elements: enterprise bit, PEN 32473.
        let holes = 20 + 4 + 13 * 4;
        assert_eq!(&m[holes..holes + 8], &[0x80, 1, 0, 4, 0, 0, 0x7e, 0xd9]);
        // Data set 256 with the record.
        let d = 16 + tset;
        assert_eq!(&m[d..d + 4], &[1, 0, 0, (4 + RECORD_V4) as u8]);
        let r = &m[d + 4..];
        assert_eq!(&r[..8], &[10, 0, 0, 1, 192, 168, 1, 2]);
        assert_eq!(&r[8..13], &[0x9c, 0x40, 0, 80, 6]);
        assert_eq!(&r[13..15], &[0, 0x1b]);
        assert_eq!(
            u64::from_be_bytes(r[15..23].try_into().unwrap()),
            1_700_000_000_123
        );
        assert_eq!(u64::from_be_bytes(r[31..39].try_into().unwrap()), 7);
        assert_eq!(u64::from_be_bytes(r[39..47].try_into().unwrap()), 600);
        assert_eq!(u64::from_be_bytes(r[47..55].try_into().unwrap()), 5);
        assert_eq!(u64::from_be_bytes(r[55..63].try_into().unwrap()), 4000);
        assert_eq!(r[63], 3);
        assert_eq!(&r[64..72], &[0, 0, 0, 1, 0, 0, 0, 0]);
        assert_eq!(len, d + 4 + RECORD_V4);
        assert_eq!(e.sequence, 1);
    }

    #[test]
    fn families_get_their_own_sets_and_what_does_not_fit_waits() {
        let v6 = FlowRecord {
            addrs: Addrs::V6([0x20; 16], [0x30; 16]),
            ..sample_v4()
        };
        let recs = [sample_v4(), sample_v4(), v6, sample_v4()];
        let mut e = Exporter::new(0);
        let mut buf = [0u8; 2000];
        let (len, taken) = e.encode(&mut buf, 1, false, &recs);
        assert_eq!(taken, 4);
        assert_eq!(
            len,
            16 + (4 + 2 * RECORD_V4) + (4 + RECORD_V6) + (4 + RECORD_V4)
        );
        assert_eq!(&buf[16..18], &[1, 0]);
        assert_eq!(&buf[16 + 4 + 2 * RECORD_V4..][..2], &[1, 1]);
        // A message is at most MAX_MESSAGE bytes: the rest waits for the next one, whose
        // sequence number counts the records sent before it.
        let many = [sample_v4(); 40];
        let (len, taken) = e.encode(&mut buf, 1, false, &many);
        assert_eq!(taken, (MAX_MESSAGE - 16 - 4) / RECORD_V4);
        assert!(len <= MAX_MESSAGE);
        assert_eq!(e.sequence, 4 + taken as u32);
        assert_eq!(&buf[8..12], &4u32.to_be_bytes());
        // No room for the header: nothing.
        assert_eq!(e.encode(&mut buf[..10], 1, false, &recs), (0, 0));
    }
}
