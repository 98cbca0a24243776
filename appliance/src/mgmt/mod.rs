//! The management plane: one NIC of its own, never a monitored port, that serves
//! `GET /metrics` (Prometheus text format) over HTTP/1.1 on TCP 9100.
//!
//! [`Mgmt`] in the app's [`crate::Settings`] turns it on and says which NIC, which addresses
//! and which sources may ask. In the image, the management NIC runs a smoltcp interface
//! (`net`, guest only) on a core that serves no queue when there is one, else on core 0
//! between its batches with a bounded budget per pass. Nothing received there reaches the
//! data path: the management NIC is opened apart from the monitored ports, and the only
//! thing the plane reads of the monitoring cores is their published [`metrics`].
//!
//! The pieces that need no hardware are plain functions tested on the host: the request
//! parser ([`http`]), the source allowlist ([`filter`]) and the metrics page ([`metrics`]).

pub mod filter;
pub mod flows;
pub mod http;
pub mod ipfix;
pub mod metrics;
#[cfg(target_os = "none")]
pub mod net;

pub use filter::Prefix;

/// The TCP port `GET /metrics` is served on by default (the node exporter's).
pub const METRICS_PORT: u16 = 9100;

/// Which NIC is the management port (it is then not monitored).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MgmtPort {
    /// The first virtio-net function in PCI order.
    FirstVirtio,
    /// The last virtio-net function in PCI order (`cargo ferrule run --mgmt-forward` adds
    /// the management NIC after the monitored ones).
    LastVirtio,
    /// The `n`-th supported NIC in PCI order (0 = the first), whatever its kind.
    Index(usize),
}

/// How the management interface gets its IPv4 address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ipv4Setup {
    /// A fixed address.
    Static {
        /// Address.
        addr: [u8; 4],
        /// Prefix length.
        prefix: u8,
        /// Default gateway (needed only for peers outside the subnet).
        gateway: Option<[u8; 4]>,
    },
    /// DHCPv4 (smoltcp's client); the lease's router becomes the default gateway.
    Dhcp,
}

/// The management plane's settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mgmt {
    /// Which NIC.
    pub port: MgmtPort,
    /// IPv4 address.
    pub ipv4: Ipv4Setup,
    /// A static IPv6 address and prefix length (the link-local address is always there).
    pub ipv6: Option<([u8; 16], u8)>,
    /// Sources allowed to reach the plane; an empty list answers nobody.
    pub allow: &'static [Prefix],
    /// TCP port of the metrics endpoint.
    pub http_port: u16,
    /// Where IPFIX records go, if anywhere.
    pub ipfix: Option<Collector>,
}

/// An IPFIX collector (over UDP, IPv4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Collector {
    /// Its address.
    pub addr: [u8; 4],
    /// Its UDP port (4739 is IPFIX's).
    pub port: u16,
    /// A connection longer than this gets a record every this many seconds (0 = only at
    /// its end).
    pub active_timeout_s: u64,
    /// Templates are sent in the first message and then at least this often.
    pub template_period_s: u64,
}

impl Mgmt {
    /// QEMU user networking (slirp): the guest is 10.0.2.15/24 behind the gateway 10.0.2.2,
    /// which is also where the host's forwarded connections come from; only 10.0.2.0/24 may
    /// ask. The management NIC is the last virtio-net function.
    pub const QEMU_USER: Mgmt = Mgmt {
        port: MgmtPort::LastVirtio,
        ipv4: Ipv4Setup::Static {
            addr: [10, 0, 2, 15],
            prefix: 24,
            gateway: Some([10, 0, 2, 2]),
        },
        ipv6: None,
        allow: &[Prefix::V4([10, 0, 2, 0], 24)],
        http_port: METRICS_PORT,
        ipfix: None,
    };
}

/// The build-time variable [`Mgmt::from_build_env`] reads (set by `cargo ferrule run
/// --mgmt-forward` for the image it builds).
pub const BUILD_ENV: &str = "FERRULE_MGMT";
/// The build-time variable with the host's IPFIX collector port (`--ipfix-to`).
pub const BUILD_ENV_IPFIX: &str = "FERRULE_IPFIX_PORT";

const fn parse_port(s: &str) -> u16 {
    let b = s.as_bytes();
    assert!(
        !b.is_empty() && b.len() <= 5,
        "FERRULE_IPFIX_PORT must be 1..=65535"
    );
    let mut v: u32 = 0;
    let mut i = 0;
    while i < b.len() {
        assert!(
            b[i].is_ascii_digit(),
            "FERRULE_IPFIX_PORT must be 1..=65535"
        );
        v = v * 10 + (b[i] - b'0') as u32;
        i += 1;
    }
    assert!(v >= 1 && v <= 65535, "FERRULE_IPFIX_PORT must be 1..=65535");
    v as u16
}

const fn str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

impl Mgmt {
    /// The plane an app gets from `option_env!("FERRULE_MGMT")` and
    /// `option_env!("FERRULE_IPFIX_PORT")` at build time: `FERRULE_MGMT` unset or empty, none;
    /// `qemu`, [`Mgmt::QEMU_USER`]; `qemu-allow-none`, the same with an empty allowlist
    /// (every source is refused: what the access test checks); `qemu-dhcp`, the same with
    /// the address from QEMU's DHCP server (10.0.2.15). A non-empty
    /// `FERRULE_IPFIX_PORT` P adds IPFIX export to the QEMU host, 10.0.2.2:P (the host's
    /// 127.0.0.1:P), templates every 10 s, a record every 60 s for long connections.
    /// Anything else is a build error.
    pub const fn from_build_env(v: Option<&str>, ipfix_port: Option<&str>) -> Option<Mgmt> {
        let base = match v {
            None => return None,
            Some(s) if s.is_empty() => return None,
            Some(s) if str_eq(s, "qemu") => Mgmt::QEMU_USER,
            Some(s) if str_eq(s, "qemu-allow-none") => Mgmt {
                allow: &[],
                ..Mgmt::QEMU_USER
            },
            Some(s) if str_eq(s, "qemu-dhcp") => Mgmt {
                ipv4: Ipv4Setup::Dhcp,
                ..Mgmt::QEMU_USER
            },
            Some(_) => {
                panic!("FERRULE_MGMT must be unset, `qemu`, `qemu-allow-none` or `qemu-dhcp`")
            }
        };
        let ipfix = match ipfix_port {
            Some(p) if !p.is_empty() => Some(Collector {
                addr: [10, 0, 2, 2],
                port: parse_port(p),
                active_timeout_s: 60,
                template_period_s: 10,
            }),
            _ => None,
        };
        Some(Mgmt { ipfix, ..base })
    }
}

/// Link-local IPv6 address (fe80::/64) made from a MAC address by modified EUI-64.
pub fn link_local_v6(mac: [u8; 6]) -> [u8; 16] {
    [
        0xfe,
        0x80,
        0,
        0,
        0,
        0,
        0,
        0,
        mac[0] ^ 0x02,
        mac[1],
        mac[2],
        0xff,
        0xfe,
        mac[3],
        mac[4],
        mac[5],
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_local_flips_the_universal_bit_and_inserts_fffe() {
        assert_eq!(
            link_local_v6([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]),
            [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0x50, 0x54, 0x00, 0xff, 0xfe, 0x12, 0x34, 0x56]
        );
    }

    #[test]
    fn build_env_values() {
        assert_eq!(Mgmt::from_build_env(None, Some("4739")), None);
        assert_eq!(Mgmt::from_build_env(Some(""), None), None);
        assert_eq!(
            Mgmt::from_build_env(Some("qemu"), None),
            Some(Mgmt::QEMU_USER)
        );
        assert_eq!(
            Mgmt::from_build_env(Some("qemu"), Some("")),
            Some(Mgmt::QEMU_USER)
        );
        let none = Mgmt::from_build_env(Some("qemu-allow-none"), None).unwrap();
        assert!(none.allow.is_empty());
        assert_eq!(none.port, MgmtPort::LastVirtio);
        let dhcp = Mgmt::from_build_env(Some("qemu-dhcp"), None).unwrap();
        assert_eq!(dhcp.ipv4, Ipv4Setup::Dhcp);
        assert_eq!(dhcp.allow, Mgmt::QEMU_USER.allow);
        let c = Mgmt::from_build_env(Some("qemu"), Some("65535"))
            .unwrap()
            .ipfix
            .unwrap();
        assert_eq!((c.addr, c.port), ([10, 0, 2, 2], 65535));
        assert!(std::panic::catch_unwind(|| Mgmt::from_build_env(Some("x"), None)).is_err());
        for bad in ["0", "65536", "12a", "123456"] {
            assert!(
                std::panic::catch_unwind(|| Mgmt::from_build_env(Some("qemu"), Some(bad))).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_qemu_preset_allows_the_slirp_gateway() {
        let m = Mgmt::QEMU_USER;
        assert!(m.allow.iter().any(|p| p.contains_v4([10, 0, 2, 2])));
        assert!(!m.allow.iter().any(|p| p.contains_v4([10, 0, 3, 2])));
        assert_eq!(m.http_port, 9100);
    }
}
