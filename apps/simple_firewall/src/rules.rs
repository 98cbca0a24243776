//! The mOS rule file, with IPv6: `ACCEPT|DROP <src>[/m] <dst>[/m] [sport:N] [dport:N]`, `#`
//! comments, first match wins, no match accepts, at most 1024 rules. Addresses are IPv4 (as in
//! mOS) or IPv6; a rule's two addresses are of one family and it matches only connections of
//! that family. The unspecified address (`0.0.0.0`, `::`) and port 0 mean any.

use core::fmt;
use core::net::IpAddr;
use core::sync::atomic::{AtomicU64, Ordering};

/// Most rules a table holds (as mOS).
pub const MAX_RULES: usize = 1024;

/// What a rule does with a matching connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Let the connection through and stop watching it.
    Accept,
    /// Drop every frame of it.
    Drop,
}

/// An address and prefix length, stored masked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Net {
    /// The address, masked to `len` bits.
    pub addr: IpAddr,
    /// Prefix length (32 or 128: one address).
    pub len: u8,
}

impl Net {
    /// Whether `ip` is in this net (the unspecified address matches any address of its
    /// family, whatever the prefix length, as in mOS).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(a), IpAddr::V4(_)) if a.is_unspecified() => true,
            (IpAddr::V6(a), IpAddr::V6(_)) if a.is_unspecified() => true,
            (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => {
                mask(ip, self.len) == self.addr
            }
            _ => false,
        }
    }

    /// The full length of its family (32 or 128).
    fn full(&self) -> u8 {
        if self.addr.is_ipv4() {
            32
        } else {
            128
        }
    }
}

impl fmt::Display for Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = heapless::String::<48>::new();
        let _ = if self.len == self.full() {
            write!(s, "{}", self.addr)
        } else {
            write!(s, "{}/{}", self.addr, self.len)
        };
        f.pad(&s)
    }
}

/// One rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rule {
    /// Target.
    pub action: Action,
    /// Client net.
    pub src: Net,
    /// Server net.
    pub dst: Net,
    /// Client port (0 = any).
    pub sport: u16,
    /// Server port (0 = any).
    pub dport: u16,
}

impl Rule {
    /// Whether a connection from `src:sport` to `dst:dport` matches.
    pub fn matches(&self, src: IpAddr, sport: u16, dst: IpAddr, dport: u16) -> bool {
        self.src.contains(src)
            && self.dst.contains(dst)
            && (self.sport == 0 || self.sport == sport)
            && (self.dport == 0 || self.dport == dport)
    }
}

/// The first rule of `rules` a connection matches.
pub fn first_match(
    rules: &[Rule],
    src: IpAddr,
    sport: u16,
    dst: IpAddr,
    dport: u16,
) -> Option<usize> {
    rules.iter().position(|r| r.matches(src, sport, dst, dport))
}

/// A rule file error, with its 1-based line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuleError {
    /// Not `ACCEPT` or `DROP` followed by a space.
    Action(usize),
    /// A missing or malformed address.
    Address(usize),
    /// A prefix length longer than the address.
    Mask(usize),
    /// Not `sport:N` / `dport:N` with N in 0..=65535.
    Port(usize),
    /// An IPv4 and an IPv6 address in one rule.
    Family(usize),
    /// More than [`MAX_RULES`] rules.
    TooMany(usize),
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (what, l) = match *self {
            RuleError::Action(l) => ("unknown action (want ACCEPT or DROP)", l),
            RuleError::Address(l) => ("invalid IPv4 or IPv6 address", l),
            RuleError::Mask(l) => ("invalid netmask (want /0../32, or /0../128 for IPv6)", l),
            RuleError::Port(l) => ("invalid port filter (want sport:N or dport:N)", l),
            RuleError::Family(l) => ("client and server addresses of different families", l),
            RuleError::TooMany(l) => ("more than 1024 rules", l),
        };
        write!(f, "rule file line {l}: {what}")
    }
}

fn mask(a: IpAddr, m: u8) -> IpAddr {
    match a {
        IpAddr::V4(a) => {
            let bits = u32::MAX.checked_shl(32 - u32::from(m)).unwrap_or(0);
            IpAddr::V4((u32::from(a) & bits).into())
        }
        IpAddr::V6(a) => {
            let bits = u128::MAX.checked_shl(128 - u32::from(m)).unwrap_or(0);
            IpAddr::V6((u128::from(a) & bits).into())
        }
    }
}

fn net(w: Option<&str>, l: usize) -> Result<Net, RuleError> {
    let w = w.ok_or(RuleError::Address(l))?;
    let (a, m) = match w.split_once('/') {
        Some((a, m)) => (a, Some(m)),
        None => (w, None),
    };
    let a: IpAddr = a.parse().map_err(|_| RuleError::Address(l))?;
    let full = if a.is_ipv4() { 32 } else { 128 };
    let m: u8 = match m {
        None => full,
        Some(m) => m
            .parse()
            .ok()
            .filter(|m| *m <= full)
            .ok_or(RuleError::Mask(l))?,
    };
    Ok(Net {
        addr: mask(a, m),
        len: m,
    })
}

/// Parses one line: `Ok(None)` for a blank or comment line.
pub fn parse_line(line: &str, l: usize) -> Result<Option<Rule>, RuleError> {
    let line = line.split('#').next().unwrap_or("").trim();
    if line.is_empty() {
        return Ok(None);
    }
    let mut w = line.split_whitespace();
    let action = match w.next() {
        Some("ACCEPT") => Action::Accept,
        Some("DROP") => Action::Drop,
        _ => return Err(RuleError::Action(l)),
    };
    let (src, dst) = (net(w.next(), l)?, net(w.next(), l)?);
    if src.addr.is_ipv4() != dst.addr.is_ipv4() {
        return Err(RuleError::Family(l));
    }
    let mut r = Rule {
        action,
        src,
        dst,
        sport: 0,
        dport: 0,
    };
    for p in w {
        let port = |s: &str| s.parse::<u16>().map_err(|_| RuleError::Port(l));
        match (p.strip_prefix("sport:"), p.strip_prefix("dport:")) {
            (Some(n), _) => r.sport = port(n)?,
            (_, Some(n)) => r.dport = port(n)?,
            _ => return Err(RuleError::Port(l)),
        }
    }
    Ok(Some(r))
}

/// A rule table with a match count per rule (counts are atomics so cores can share a table).
pub struct Rules {
    rules: heapless::Vec<Rule, MAX_RULES>,
    counts: [AtomicU64; MAX_RULES],
}

impl Rules {
    /// Parses a rule file.
    pub fn parse(text: &str) -> Result<Rules, RuleError> {
        let mut t = Rules {
            rules: heapless::Vec::new(),
            counts: [const { AtomicU64::new(0) }; MAX_RULES],
        };
        for (i, line) in text.lines().enumerate() {
            if let Some(r) = parse_line(line, i + 1)? {
                t.rules.push(r).map_err(|_| RuleError::TooMany(i + 1))?;
            }
        }
        Ok(t)
    }

    /// The rules.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The table with its counts.
    pub fn table(&self) -> Table<'_> {
        Table {
            rules: &self.rules,
            counts: &self.counts[..self.rules.len()],
        }
    }

    /// First rule matching a SYN from `src:sport` to `dst:dport`; counts it. No match: accept.
    pub fn lookup(
        &mut self,
        src: impl Into<IpAddr>,
        sport: u16,
        dst: impl Into<IpAddr>,
        dport: u16,
    ) -> (Option<usize>, Action) {
        self.table().lookup(src.into(), sport, dst.into(), dport)
    }

    /// Counts one more SYN for rule `i`.
    pub fn count(&mut self, i: usize) {
        self.table().count(i)
    }

    /// The rules with their counts.
    pub fn iter(&self) -> impl Iterator<Item = (Rule, u64)> + '_ {
        self.table().iter()
    }
}

/// Rules and their counts, wherever they live (a parsed [`Rules`], or statics generated at
/// build time).
#[derive(Clone, Copy)]
pub struct Table<'a> {
    /// The rules, in file order.
    pub rules: &'a [Rule],
    /// One count per rule.
    pub counts: &'a [AtomicU64],
}

impl<'a> Table<'a> {
    /// First rule matching a SYN from `src:sport` to `dst:dport`; counts it. No match: accept.
    pub fn lookup(
        &self,
        src: IpAddr,
        sport: u16,
        dst: IpAddr,
        dport: u16,
    ) -> (Option<usize>, Action) {
        match first_match(self.rules, src, sport, dst, dport) {
            Some(i) => {
                self.count(i);
                (Some(i), self.rules[i].action)
            }
            None => (None, Action::Accept),
        }
    }

    /// Counts one more SYN for rule `i`.
    pub fn count(&self, i: usize) {
        if let Some(c) = self.counts.get(i) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The rules with their counts.
    pub fn iter(self) -> impl Iterator<Item = (Rule, u64)> + 'a {
        self.rules.iter().enumerate().map(move |(i, r)| {
            (
                *r,
                self.counts.get(i).map_or(0, |c| c.load(Ordering::Relaxed)),
            )
        })
    }

    /// The lines of the table, exactly as mOS's `DumpFWRuleTable` prints them.
    pub fn lines(&self, mut line: impl FnMut(fmt::Arguments<'_>)) {
        line(format_args!("{DASH}"));
        line(format_args!("Firewall rule table"));
        line(format_args!(
            "idx   flows   target   client             server             port"
        ));
        for (i, (r, n)) in self.iter().enumerate() {
            let target = match r.action {
                Action::Drop => "DROP",
                Action::Accept => "ACCEPT",
            };
            line(format_args!(
                "{:<6}{:<8}{:<9}{:<19}{:<19}{}{}",
                i + 1,
                n,
                target,
                r.src,
                r.dst,
                Port("sport", r.sport),
                Port("dport", r.dport)
            ));
        }
        line(format_args!("{DASH}"));
    }
}

const DASH: &str = "-----------------------------------------------------------------------";

/// `sport:%-6d` / `dport:%-6d`, or nothing for port 0.
struct Port(&'static str, u16);

impl fmt::Display for Port {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.1 == 0 {
            return Ok(());
        }
        write!(f, "{}:{:<6}", self.0, self.1)
    }
}

impl fmt::Display for Table<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut res = Ok(());
        self.lines(|l| {
            if res.is_ok() {
                res = writeln!(f, "{l}");
            }
        });
        res
    }
}

/// Prints the table exactly as mOS's `DumpFWRuleTable` does.
impl fmt::Display for Rules {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.table().fmt(f)
    }
}

use core::fmt::Write as _;

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::string::ToString;

    const FILE: &str = "# comment\n\nDROP 10.0.0.9 10.0.0.5 dport:80  # web\nACCEPT 10.0.0.0/8 0.0.0.0/0\nDROP 0.0.0.0 192.168.1.0/24 sport:1234 dport:22\nDROP fd00::/16 fd00:1::5 dport:443\nACCEPT :: ::\n";

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_mos_format_with_ipv6_and_first_match_wins() {
        let r = Rules::parse(FILE).unwrap();
        assert_eq!(r.iter().count(), 5);
        let t = r.table();
        let look = |a, p, b, q| t.lookup(ip(a), p, ip(b), q);
        assert_eq!(
            look("10.0.0.9", 5555, "10.0.0.5", 80),
            (Some(0), Action::Drop)
        );
        assert_eq!(
            look("10.0.0.9", 5555, "10.0.0.5", 81),
            (Some(1), Action::Accept)
        );
        assert_eq!(
            look("11.0.0.1", 1234, "192.168.1.77", 22),
            (Some(2), Action::Drop)
        );
        assert_eq!(
            look("11.0.0.1", 1235, "192.168.1.77", 22),
            (None, Action::Accept)
        );
        assert_eq!(
            look("fd00::7", 1000, "fd00:1::5", 443),
            (Some(3), Action::Drop)
        );
        // fe80:: is outside fd00::/16; `:: ::` takes every other IPv6 connection.
        assert_eq!(
            look("fe80::7", 1000, "fd00:1::5", 443),
            (Some(4), Action::Accept)
        );
        assert_eq!(
            look("fd00::7", 1000, "fd00:1::5", 80),
            (Some(4), Action::Accept)
        );
        let counts: std::vec::Vec<u64> = r.iter().map(|x| x.1).collect();
        assert_eq!(counts, [1, 1, 1, 1, 2]);
        // The IPv4 catch-all never takes an IPv6 connection, nor the reverse.
        let mut v4_only = Rules::parse("DROP 0.0.0.0/0 0.0.0.0/0").unwrap();
        assert_eq!(
            v4_only.lookup(ip("fd00::1"), 1, ip("fd00::2"), 2),
            (None, Action::Accept)
        );
        let mut v6_only = Rules::parse("DROP ::/0 ::/0").unwrap();
        assert_eq!(
            v6_only.lookup(ip("10.0.0.1"), 1, ip("10.0.0.2"), 2),
            (None, Action::Accept)
        );
    }

    #[test]
    fn table_prints_like_mos() {
        let mut r = Rules::parse(FILE).unwrap();
        r.lookup(ip("10.0.0.9"), 1, ip("10.0.0.5"), 80);
        r.lookup(ip("10.0.0.9"), 1, ip("10.0.0.5"), 80);
        let want = "\
-----------------------------------------------------------------------
Firewall rule table
idx   flows   target   client             server             port
1     2       DROP     10.0.0.9           10.0.0.5           dport:80    
2     0       ACCEPT   10.0.0.0/8         0.0.0.0/0          
3     0       DROP     0.0.0.0            192.168.1.0/24     sport:1234  dport:22    
4     0       DROP     fd00::/16          fd00:1::5          dport:443   
5     0       ACCEPT   ::                 ::                 
-----------------------------------------------------------------------
";
        assert_eq!(r.to_string(), want);
    }

    #[test]
    fn bad_lines_name_their_line() {
        let e = |t: &str| Rules::parse(t).err().unwrap();
        assert_eq!(e("PASS 1.2.3.4 5.6.7.8"), RuleError::Action(1));
        assert_eq!(e("\nDROP 1.2.3 5.6.7.8"), RuleError::Address(2));
        assert_eq!(e("DROP 1.2.3.4/33 5.6.7.8"), RuleError::Mask(1));
        assert_eq!(e("DROP ::1/129 ::2"), RuleError::Mask(1));
        assert_eq!(e("DROP 1.2.3.4"), RuleError::Address(1));
        assert_eq!(e("DROP 1.2.3.4 ::1"), RuleError::Family(1));
        assert_eq!(e("DROP 1.2.3.4 5.6.7.8 port:1"), RuleError::Port(1));
        assert_eq!(e("DROP 1.2.3.4 5.6.7.8 dport:70000"), RuleError::Port(1));
        let many: std::string::String = (0..1025).map(|_| "DROP 1.1.1.1 2.2.2.2\n").collect();
        assert_eq!(e(&many), RuleError::TooMany(1025));
        assert_eq!(
            RuleError::Mask(3).to_string(),
            "rule file line 3: invalid netmask (want /0../32, or /0../128 for IPv6)"
        );
    }
}
