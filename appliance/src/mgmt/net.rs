//! The management plane in the image: a smoltcp interface over the management NIC and the
//! HTTP server of `GET /metrics`.
//!
//! Everything is allocated once at boot ([`Plane::new`]): socket storage, one TCP socket per
//! concurrent client ([`CONNS`], each listening on the metrics port), and per connection a
//! request buffer and a response buffer. [`Plane::poll`] does a bounded amount of work per
//! call: at most one receive batch (`drivers::RX_BATCH` frames) from the NIC, then each
//! connection's pending answer.

use core::fmt::Write;

use drivers::nic::AnyCtl;
use drivers::{BUF_SIZE, RX_BATCH};
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet, SocketStorage};
use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::socket::{dhcpv4, tcp, udp};
use smoltcp::time::Instant;
use smoltcp::wire::{
    EthernetAddress, HardwareAddress, IpAddress, IpCidr, Ipv4Address, Ipv4Cidr, Ipv6Address,
};

use super::filter::{admit, Admit};
use super::flows::RecordQueue;
use super::http::{self, Method, Parsed, MAX_HEAD};
use super::ipfix::{Exporter, FlowRecord, MAX_MESSAGE};
use super::metrics::{render, CoreMetrics, MgmtCounts, NicSample, Page};
use super::{link_local_v6, Collector, Ipv4Setup, Mgmt};
use crate::guest::{Rx, Tx};

/// Clients served at once (one TCP socket each).
pub const CONNS: usize = 8;
/// Bytes a response may take (headers and the metrics page: about 2 KiB per core).
pub const RESPONSE_MAX: usize = 256 << 10;
/// A connection with nothing to read or send for this long is aborted, so idle clients
/// cannot hold every socket.
const IDLE_MS: u64 = 60_000;
/// Room kept before the body for the status line and headers.
const HEAD_ROOM: usize = 256;
/// Per-socket TCP buffers.
const TCP_RX: usize = 4096;
const TCP_TX: usize = 32 << 10;

/// Received frames waiting for the stack: one receive batch.
struct Frames {
    bufs: &'static mut [[u8; BUF_SIZE]],
    lens: [usize; RX_BATCH],
    head: usize,
    n: usize,
}

/// The management NIC as a smoltcp device; frames from sources outside the allowlist are
/// dropped here, before the stack sees them.
struct Dev<const N: usize> {
    rx: Rx<N>,
    tx: Tx<N>,
    frames: Frames,
    txbuf: &'static mut [u8],
    mgmt: Mgmt,
    /// Receive batches this poll may still take (1 per [`Plane::poll`]).
    refills: usize,
    denied: u64,
}

impl<const N: usize> Dev<N> {
    fn refill(&mut self) {
        let Dev {
            rx,
            frames,
            mgmt,
            denied,
            ..
        } = self;
        frames.head = 0;
        frames.n = 0;
        let dhcp = mgmt.ipv4 == Ipv4Setup::Dhcp;
        rx.rx_batch(|f, _| match admit(f, mgmt.allow, dhcp) {
            Admit::Pass => {
                if let Some(b) = frames.bufs.get_mut(frames.n) {
                    if f.len() <= b.len() {
                        b[..f.len()].copy_from_slice(f);
                        frames.lens[frames.n] = f.len();
                        frames.n += 1;
                    }
                }
            }
            Admit::Deny => *denied += 1,
            Admit::Ignore => {}
        });
    }
}

/// A received frame.
struct RxTok<'a>(&'a [u8]);

impl phy::RxToken for RxTok<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(self.0)
    }
}

/// Room for one frame to send.
struct TxTok<'a, const N: usize> {
    tx: &'a mut Tx<N>,
    buf: &'a mut [u8],
}

impl<const N: usize> phy::TxToken for TxTok<'_, N> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let len = len.min(self.buf.len());
        let r = f(&mut self.buf[..len]);
        // A full transmit ring drops the frame; TCP retransmits.
        let _ = self.tx.tx_batch(&[&self.buf[..len]]);
        r
    }
}

impl<const N: usize> Device for Dev<N> {
    type RxToken<'a> = RxTok<'a>;
    type TxToken<'a> = TxTok<'a, N>;

    fn receive(&mut self, _: Instant) -> Option<(RxTok<'_>, TxTok<'_, N>)> {
        if self.frames.head >= self.frames.n {
            if self.refills == 0 {
                return None;
            }
            self.refills -= 1;
            self.refill();
        }
        let i = self.frames.head;
        if i >= self.frames.n {
            return None;
        }
        self.frames.head += 1;
        let len = self.frames.lens[i];
        let frame = self.frames.bufs.get(i).map_or(&[][..], |b| &b[..len]);
        Some((
            RxTok(frame),
            TxTok {
                tx: &mut self.tx,
                buf: self.txbuf,
            },
        ))
    }

    fn transmit(&mut self, _: Instant) -> Option<TxTok<'_, N>> {
        Some(TxTok {
            tx: &mut self.tx,
            buf: self.txbuf,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut c = DeviceCapabilities::default();
        c.medium = Medium::Ethernet;
        c.max_transmission_unit = 1514;
        c.max_burst_size = Some(RX_BATCH);
        c
    }
}

/// One client connection's buffers.
struct Conn {
    handle: SocketHandle,
    req: &'static mut [u8],
    req_len: usize,
    out: &'static mut [u8],
    out_off: usize,
    out_len: usize,
    close_after: bool,
    /// When the connection last received or sent (ms since boot).
    last_ms: u64,
}

/// Writes into a byte slice; `overflow` once something did not fit.
struct SliceWriter<'a> {
    buf: &'a mut [u8],
    len: usize,
    overflow: bool,
}

impl Write for SliceWriter<'_> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let end = self.len + s.len();
        match self.buf.get_mut(self.len..end) {
            Some(d) => {
                d.copy_from_slice(s.as_bytes());
                self.len = end;
                Ok(())
            }
            None => {
                self.overflow = true;
                Err(core::fmt::Error)
            }
        }
    }
}

/// What a page needs besides the cores' metrics.
pub struct PageInfo<'a> {
    /// The app's crate name.
    pub app: &'static str,
    /// The app's version.
    pub version: &'static str,
    /// Each monitoring core's published metrics.
    pub cores: &'a [CoreMetrics],
    /// The monitored ports' control objects (hardware counters), if free right now.
    pub ctls: Option<&'a mut [AnyCtl]>,
}

/// Records taken from the cores' queues per pass.
const EXPORT_BATCH: usize = 32;
/// UDP source port of IPFIX messages.
const IPFIX_SRC_PORT: u16 = 4739;

/// The IPFIX exporter's state.
struct Export {
    collector: Collector,
    queues: &'static [RecordQueue],
    udp: SocketHandle,
    exporter: Exporter,
    next_templates_ms: u64,
    buf: &'static mut [u8],
    /// Core whose queue is read first next pass (fairness).
    next_core: usize,
}

/// The management plane: interface, sockets and connections.
pub struct Plane<const N: usize> {
    dev: Dev<N>,
    iface: Interface,
    sockets: SocketSet<'static>,
    conns: heapless::Vec<Conn, CONNS>,
    dhcp: Option<SocketHandle>,
    export: Option<Export>,
    mgmt: Mgmt,
    counts: MgmtCounts,
    /// The IPv4 address now in use (for the log).
    pub ipv4: Option<([u8; 4], u8)>,
}

fn now() -> Instant {
    Instant::from_millis((kernel::time::now_ns() / 1_000_000) as i64)
}

/// The IPFIX message header's export time: Unix seconds, or seconds since boot without an RTC.
fn export_time_s() -> u32 {
    (kernel::time::unix_ns().unwrap_or_else(kernel::time::now_ns) / 1_000_000_000) as u32
}

fn v4(a: [u8; 4]) -> Ipv4Address {
    Ipv4Address::new(a[0], a[1], a[2], a[3])
}

impl<const N: usize> Plane<N> {
    /// Builds the interface on the opened management NIC (boot time; allocates).
    pub fn new(mac: [u8; 6], rx: Rx<N>, tx: Tx<N>, mgmt: Mgmt) -> Plane<N> {
        let mut dev = Dev {
            rx,
            tx,
            frames: Frames {
                bufs: kernel::mem::alloc_slice(RX_BATCH, || [0u8; BUF_SIZE]),
                lens: [0; RX_BATCH],
                head: 0,
                n: 0,
            },
            txbuf: kernel::mem::alloc_slice(BUF_SIZE, || 0u8),
            mgmt,
            refills: 0,
            denied: 0,
        };
        let mut config = Config::new(HardwareAddress::Ethernet(EthernetAddress(mac)));
        config.random_seed = kernel::arch::rdtsc();
        let mut iface = Interface::new(config, &mut dev, now());
        let mut ipv4 = None;
        iface.update_ip_addrs(|a| {
            if let Ipv4Setup::Static { addr, prefix, .. } = mgmt.ipv4 {
                let _ = a.push(IpCidr::Ipv4(Ipv4Cidr::new(v4(addr), prefix)));
                ipv4 = Some((addr, prefix));
            }
            let _ = a.push(IpCidr::new(
                Ipv6Address::from(link_local_v6(mac)).into(),
                64,
            ));
            if let Some((addr, prefix)) = mgmt.ipv6 {
                let _ = a.push(IpCidr::new(Ipv6Address::from(addr).into(), prefix));
            }
        });
        if let Ipv4Setup::Static {
            gateway: Some(gw), ..
        } = mgmt.ipv4
        {
            let _ = iface.routes_mut().add_default_ipv4_route(v4(gw));
        }
        let storage = kernel::mem::alloc_slice(CONNS + 2, || SocketStorage::EMPTY);
        let mut sockets = SocketSet::new(storage);
        let mut conns = heapless::Vec::new();
        for _ in 0..CONNS {
            let rxb: &'static mut [u8] = kernel::mem::alloc_slice(TCP_RX, || 0u8);
            let txb: &'static mut [u8] = kernel::mem::alloc_slice(TCP_TX, || 0u8);
            let mut s = tcp::Socket::new(tcp::SocketBuffer::new(rxb), tcp::SocketBuffer::new(txb));
            let _ = s.listen(mgmt.http_port);
            let handle = sockets.add(s);
            let _ = conns.push(Conn {
                handle,
                req: kernel::mem::alloc_slice(MAX_HEAD, || 0u8),
                req_len: 0,
                out: kernel::mem::alloc_slice(RESPONSE_MAX, || 0u8),
                out_off: 0,
                out_len: 0,
                close_after: false,
                last_ms: 0,
            });
        }
        let dhcp = (mgmt.ipv4 == Ipv4Setup::Dhcp).then(|| sockets.add(dhcpv4::Socket::new()));
        Plane {
            dev,
            iface,
            sockets,
            conns,
            dhcp,
            export: None,
            mgmt,
            counts: MgmtCounts::default(),
            ipv4,
        }
    }

    /// Exports the records of `queues` (one per monitoring core) to `collector` over UDP.
    pub fn set_export(&mut self, collector: Collector, queues: &'static [RecordQueue]) {
        let meta = kernel::mem::alloc_slice(32, || udp::PacketMetadata::EMPTY);
        let payload: &'static mut [u8] = kernel::mem::alloc_slice(32 * MAX_MESSAGE, || 0u8);
        let rx_meta = kernel::mem::alloc_slice(1, || udp::PacketMetadata::EMPTY);
        let rx_payload: &'static mut [u8] = kernel::mem::alloc_slice(64, || 0u8);
        let mut sock = udp::Socket::new(
            udp::PacketBuffer::new(rx_meta, rx_payload),
            udp::PacketBuffer::new(meta, payload),
        );
        let _ = sock.bind(IPFIX_SRC_PORT);
        let udp = self.sockets.add(sock);
        self.export = Some(Export {
            collector,
            queues,
            udp,
            exporter: Exporter::new(0),
            next_templates_ms: 0,
            buf: kernel::mem::alloc_slice(MAX_MESSAGE, || 0u8),
            next_core: 0,
        });
    }

    /// Whether IPFIX records wait in a core's queue or in the UDP socket.
    pub fn export_pending(&self) -> bool {
        self.export.as_ref().is_some_and(|e| {
            e.queues.iter().any(RecordQueue::has_records)
                || self.sockets.get::<udp::Socket>(e.udp).send_queue() > 0
        })
    }

    /// IPFIX datagrams sent.
    pub fn ipfix_datagrams(&self) -> u64 {
        self.counts.ipfix_datagrams
    }

    /// Records lost: queues full on the monitoring cores.
    pub fn records_dropped(&self) -> u64 {
        self.export
            .as_ref()
            .map_or(0, |e| e.queues.iter().map(RecordQueue::dropped).sum())
    }

    /// Takes up to [`EXPORT_BATCH`] records and sends them (with the templates when due) in as
    /// few messages as they fit. Returns whether anything was sent.
    fn export_pass(&mut self) -> bool {
        let Some(e) = self.export.as_mut() else {
            return false;
        };
        let s = self.sockets.get_mut::<udp::Socket>(e.udp);
        // Room for a whole batch's messages, else wait (records stay queued).
        if s.payload_send_capacity().saturating_sub(s.send_queue()) < 4 * MAX_MESSAGE {
            return false;
        }
        let now_ms = kernel::time::now_ns() / 1_000_000;
        let mut batch: heapless::Vec<FlowRecord, EXPORT_BATCH> = heapless::Vec::new();
        let n = e.queues.len();
        for k in 0..n {
            let q = &e.queues[(e.next_core + k) % n];
            while !batch.is_full() {
                match q.pop() {
                    Some(r) => {
                        let _ = batch.push(r);
                    }
                    None => break,
                }
            }
        }
        e.next_core = if n == 0 { 0 } else { (e.next_core + 1) % n };
        let mut templates = now_ms >= e.next_templates_ms;
        if batch.is_empty() && !templates {
            return false;
        }
        if templates {
            e.next_templates_ms = now_ms + e.collector.template_period_s.max(1) * 1000;
        }
        let to = (IpAddress::Ipv4(v4(e.collector.addr)), e.collector.port);
        let mut rest = &batch[..];
        let mut sent = 0;
        // Bounded: each message takes at least one record or the templates.
        for _ in 0..=EXPORT_BATCH {
            if rest.is_empty() && !templates {
                break;
            }
            let (len, taken) = e.exporter.encode(e.buf, export_time_s(), templates, rest);
            if len == 0 {
                break;
            }
            if s.send_slice(&e.buf[..len], to).is_ok() {
                sent += 1;
            }
            templates = false;
            rest = &rest[taken.min(rest.len())..];
        }
        self.counts.ipfix_datagrams += sent;
        sent > 0
    }

    /// Frames dropped for their source.
    pub fn denied(&self) -> u64 {
        self.dev.denied
    }

    /// HTTP responses by status (see `metrics::HTTP_STATUSES`).
    pub fn http_counts(&self) -> [u64; 5] {
        self.counts.http
    }

    /// One bounded pass: at most one receive batch, DHCP events, every connection's next
    /// step. Returns whether anything was received or sent.
    pub fn poll(&mut self, info: &mut PageInfo<'_>) -> bool {
        self.dev.refills = 1;
        let changed = self.iface.poll(now(), &mut self.dev, &mut self.sockets)
            != smoltcp::iface::PollResult::None;
        if let Some(h) = self.dhcp {
            self.dhcp_event(h);
        }
        self.counts.denied = self.dev.denied;
        self.counts.ipfix_records_dropped = self.records_dropped();
        let mut busy = changed;
        for i in 0..self.conns.len() {
            busy |= self.serve_conn(i, info);
        }
        busy |= self.export_pass();
        if busy {
            // Send what the connections queued now rather than on the next pass.
            self.dev.refills = 0;
            let _ = self.iface.poll(now(), &mut self.dev, &mut self.sockets);
        }
        busy
    }

    fn dhcp_event(&mut self, h: SocketHandle) {
        let ev = self.sockets.get_mut::<dhcpv4::Socket>(h).poll();
        match ev {
            None => {}
            Some(dhcpv4::Event::Configured(c)) => {
                let a = c.address;
                self.iface.update_ip_addrs(|addrs| {
                    addrs.retain(|x| !matches!(x, IpCidr::Ipv4(_)));
                    let _ = addrs.push(IpCidr::Ipv4(a));
                });
                self.ipv4 = Some((a.address().octets(), a.prefix_len()));
                match c.router {
                    Some(r) => {
                        let _ = self.iface.routes_mut().add_default_ipv4_route(r);
                    }
                    None => {
                        self.iface.routes_mut().remove_default_ipv4_route();
                    }
                }
            }
            Some(dhcpv4::Event::Deconfigured) => {
                self.iface
                    .update_ip_addrs(|addrs| addrs.retain(|x| !matches!(x, IpCidr::Ipv4(_))));
                self.iface.routes_mut().remove_default_ipv4_route();
                self.ipv4 = None;
            }
        }
    }

    /// Moves connection `i` one step: send pending bytes, else parse and answer the next
    /// request, else take more bytes.
    fn serve_conn(&mut self, i: usize, info: &mut PageInfo<'_>) -> bool {
        let port = self.mgmt.http_port;
        let Some(c) = self.conns.get_mut(i) else {
            return false;
        };
        let s = self.sockets.get_mut::<tcp::Socket>(c.handle);
        if s.state() == tcp::State::TimeWait {
            // Both sides have closed: free the socket for the next client now rather than
            // after smoltcp's 10 s TIME-WAIT (an RST to a closed peer is harmless).
            s.abort();
        }
        let now_ms = kernel::time::now_ns() / 1_000_000;
        if s.state() == tcp::State::Listen || s.state() == tcp::State::SynReceived {
            c.last_ms = now_ms;
        } else if now_ms.saturating_sub(c.last_ms) > IDLE_MS {
            s.abort();
        }
        if s.state() == tcp::State::Closed {
            c.req_len = 0;
            c.out_off = 0;
            c.out_len = 0;
            c.close_after = false;
            let _ = s.listen(port);
            return false;
        }
        if c.out_off < c.out_len {
            if !s.can_send() {
                return false;
            }
            let n = s.send_slice(&c.out[c.out_off..c.out_len]).unwrap_or(0);
            c.out_off += n;
            if n > 0 {
                c.last_ms = now_ms;
            }
            return n > 0;
        }
        if c.close_after {
            s.close();
            c.close_after = false;
            return true;
        }
        let mut took = 0;
        if s.can_recv() {
            if let Some(room) = c.req.get_mut(c.req_len..) {
                took = s.recv_slice(room).unwrap_or(0);
                c.req_len += took;
                if took > 0 {
                    c.last_ms = now_ms;
                }
            }
        }
        if c.req_len == 0 {
            if !s.may_recv() && s.state() == tcp::State::CloseWait {
                s.close();
            }
            return took > 0;
        }
        let (status, keep, head, consumed) = match http::parse(&c.req[..c.req_len]) {
            Ok(Parsed::Partial) => {
                if !s.may_recv() {
                    // The client closed in the middle of a request.
                    s.close();
                    c.req_len = 0;
                }
                return took > 0;
            }
            Ok(Parsed::Complete(r)) => {
                let status = match (r.method, r.path) {
                    (Method::Get | Method::Head, "/metrics") => 200,
                    (Method::Get | Method::Head, _) => 404,
                    (Method::Other, _) => 405,
                };
                (status, r.keep_alive, r.method == Method::Head, r.len)
            }
            Err(e) => {
                respond(c, 400, false, false, |w| w.write_str(e.reason()), None);
                c.req_len = 0;
                c.close_after = true;
                self.counts.http[1] += 1;
                return true;
            }
        };
        c.req.copy_within(consumed.min(c.req_len)..c.req_len, 0);
        c.req_len -= consumed.min(c.req_len);
        let counts = self.counts;
        let status = match status {
            200 => {
                let mut nics: heapless::Vec<Option<NicSample>, { crate::guest::MAX_PORTS }> =
                    heapless::Vec::new();
                if let Some(ctls) = info.ctls.as_deref_mut() {
                    for ctl in ctls.iter_mut() {
                        let s = match ctl {
                            AnyCtl::Virtio(_) => None,
                            c => {
                                let (rx_packets, rx_dropped) = c.update_stats();
                                Some(NicSample {
                                    rx_packets,
                                    rx_dropped,
                                })
                            }
                        };
                        let _ = nics.push(s);
                    }
                }
                let page = Page {
                    app: info.app,
                    version: info.version,
                    uptime_ms: kernel::time::now_ns() / 1_000_000,
                    cores: info.cores,
                    nics: &nics,
                    mgmt: counts,
                };
                respond(
                    c,
                    200,
                    keep,
                    head,
                    |w| render(w, &page),
                    Some("text/plain; version=0.0.4; charset=utf-8"),
                )
            }
            404 => respond(c, 404, keep, head, |w| w.write_str("not found\n"), None),
            _ => respond(
                c,
                405,
                keep,
                head,
                |w| w.write_str("only GET and HEAD\n"),
                None,
            ),
        };
        if let Some(k) = super::metrics::HTTP_STATUSES
            .iter()
            .position(|s| *s == status)
        {
            self.counts.http[k] += 1;
        }
        if !keep {
            c.close_after = true;
        }
        true
    }
}

/// Formats a response into the connection's output buffer: the body first (after room for
/// the head), then the head just before it. A body that does not fit becomes a 500.
fn respond(
    c: &mut Conn,
    status: u16,
    keep: bool,
    head_only: bool,
    body: impl FnOnce(&mut SliceWriter<'_>) -> core::fmt::Result,
    content_type: Option<&str>,
) -> u16 {
    let (room, rest) = c.out.split_at_mut(HEAD_ROOM.min(c.out.len()));
    let mut w = SliceWriter {
        buf: rest,
        len: 0,
        overflow: false,
    };
    let mut status = status;
    if body(&mut w).is_err() || w.overflow {
        status = 500;
        w.len = 0;
        w.overflow = false;
        let _ = w.write_str("metrics page larger than the response buffer\n");
    }
    let body_len = w.len;
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Internal Server Error",
    };
    let mut head = [0u8; HEAD_ROOM];
    let mut hw = SliceWriter {
        buf: &mut head,
        len: 0,
        overflow: false,
    };
    let _ = write!(
        hw,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {}\r\nContent-Length: {body_len}\r\n{}Connection: {}\r\n\r\n",
        content_type.unwrap_or("text/plain; charset=utf-8"),
        if status == 405 { "Allow: GET, HEAD\r\n" } else { "" },
        if keep { "keep-alive" } else { "close" }
    );
    let hlen = hw.len.min(room.len());
    let start = room.len() - hlen;
    room[start..].copy_from_slice(&head[..hlen]);
    c.out_off = start;
    c.out_len = if head_only {
        HEAD_ROOM
    } else {
        HEAD_ROOM + body_len
    };
    status
}
