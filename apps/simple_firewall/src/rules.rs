//! The mOS rule file: `ACCEPT|DROP <src>[/m] <dst>[/m] [sport:N] [dport:N]`, `#` comments,
//! `0.0.0.0` and port 0 mean any, first match wins, no match accepts, at most 1024 rules.

use core::fmt;
use core::net::Ipv4Addr;

/// Most rules a table holds (as mOS).
pub const MAX_RULES: usize = 1024;

/// What a rule does with a matching connection's SYN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Let the connection through and stop watching it.
    Accept,
    /// Drop its SYNs.
    Drop,
}

/// One rule; addresses are stored masked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rule {
    /// Target.
    pub action: Action,
    /// Client address and prefix length.
    pub src: (Ipv4Addr, u8),
    /// Server address and prefix length.
    pub dst: (Ipv4Addr, u8),
    /// Client port (0 = any).
    pub sport: u16,
    /// Server port (0 = any).
    pub dport: u16,
}

/// A rule file error, with its 1-based line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuleError {
    /// Not `ACCEPT` or `DROP` followed by a space.
    Action(usize),
    /// A missing or malformed address.
    Address(usize),
    /// A prefix length that is not 0..=32.
    Mask(usize),
    /// Not `sport:N` / `dport:N` with N in 0..=65535.
    Port(usize),
    /// More than [`MAX_RULES`] rules.
    TooMany(usize),
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (what, l) = match *self {
            RuleError::Action(l) => ("unknown action (want ACCEPT or DROP)", l),
            RuleError::Address(l) => ("invalid IPv4 address", l),
            RuleError::Mask(l) => ("invalid netmask (want /0../32)", l),
            RuleError::Port(l) => ("invalid port filter (want sport:N or dport:N)", l),
            RuleError::TooMany(l) => ("more than 1024 rules", l),
        };
        write!(f, "rule file line {l}: {what}")
    }
}

fn mask(a: Ipv4Addr, m: u8) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(a) & u32::MAX.checked_shl(32 - u32::from(m)).unwrap_or(0))
}

fn addr(w: Option<&str>, l: usize) -> Result<(Ipv4Addr, u8), RuleError> {
    let w = w.ok_or(RuleError::Address(l))?;
    let (a, m) = w.split_once('/').unwrap_or((w, "32"));
    let a: Ipv4Addr = a.parse().map_err(|_| RuleError::Address(l))?;
    let m: u8 = m
        .parse()
        .ok()
        .filter(|m| *m <= 32)
        .ok_or(RuleError::Mask(l))?;
    Ok((mask(a, m), m))
}

/// The rule table with a match count per rule.
#[derive(Clone, Debug, Default)]
pub struct Rules {
    rules: heapless::Vec<(Rule, u64), MAX_RULES>,
}

impl Rules {
    /// Parses a rule file.
    pub fn parse(text: &str) -> Result<Rules, RuleError> {
        let mut t = Rules::default();
        for (i, line) in text.lines().enumerate() {
            let l = i + 1;
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let mut w = line.split_whitespace();
            let action = match w.next() {
                Some("ACCEPT") => Action::Accept,
                Some("DROP") => Action::Drop,
                _ => return Err(RuleError::Action(l)),
            };
            let (src, dst) = (addr(w.next(), l)?, addr(w.next(), l)?);
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
            t.rules.push((r, 0)).map_err(|_| RuleError::TooMany(l))?;
        }
        Ok(t)
    }

    /// First rule matching a SYN from `src:sport` to `dst:dport`; counts it. No match: accept.
    pub fn lookup(
        &mut self,
        src: Ipv4Addr,
        sport: u16,
        dst: Ipv4Addr,
        dport: u16,
    ) -> (Option<usize>, Action) {
        let hit = |(a, m): (Ipv4Addr, u8), ip| a == Ipv4Addr::UNSPECIFIED || mask(ip, m) == a;
        for (i, (r, n)) in self.rules.iter_mut().enumerate() {
            if hit(r.src, src)
                && hit(r.dst, dst)
                && (r.sport == 0 || r.sport == sport)
                && (r.dport == 0 || r.dport == dport)
            {
                *n += 1;
                return (Some(i), r.action);
            }
        }
        (None, Action::Accept)
    }

    /// Counts one more SYN for rule `i` (a retransmitted SYN of a dropped connection).
    pub fn count(&mut self, i: usize) {
        if let Some((_, n)) = self.rules.get_mut(i) {
            *n += 1;
        }
    }

    /// The rules with their counts.
    pub fn iter(&self) -> impl Iterator<Item = &(Rule, u64)> {
        self.rules.iter()
    }
}

/// Prints the table exactly as mOS's `DumpFWRuleTable` does.
impl fmt::Display for Rules {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const DASH: &str =
            "-----------------------------------------------------------------------";
        writeln!(f, "{DASH}\nFirewall rule table")?;
        writeln!(
            f,
            "idx   flows   target   client             server             port"
        )?;
        for (i, (r, n)) in self.rules.iter().enumerate() {
            let target = if r.action == Action::Drop {
                "DROP"
            } else {
                "ACCEPT"
            };
            write!(f, "{:<6}{:<8}{:<9}", i + 1, n, target)?;
            for (a, m) in [r.src, r.dst] {
                let mut s = heapless::String::<24>::new();
                let _ = if m == 32 {
                    write!(s, "{a}")
                } else {
                    write!(s, "{a}/{m}")
                };
                write!(f, "{s:<19}")?;
            }
            if r.sport != 0 {
                write!(f, "sport:{:<6}", r.sport)?;
            }
            if r.dport != 0 {
                write!(f, "dport:{:<6}", r.dport)?;
            }
            writeln!(f)?;
        }
        writeln!(f, "{DASH}")
    }
}

use core::fmt::Write as _;

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use core::net::Ipv4Addr;
    use std::string::ToString;

    const FILE: &str = "# comment\n\nDROP 10.0.0.9 10.0.0.5 dport:80  # web\nACCEPT 10.0.0.0/8 0.0.0.0/0\nDROP 0.0.0.0 192.168.1.0/24 sport:1234 dport:22\n";

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_mos_format_and_first_match_wins() {
        let mut r = Rules::parse(FILE).unwrap();
        assert_eq!(r.iter().count(), 3);
        assert_eq!(
            r.lookup(ip("10.0.0.9"), 5555, ip("10.0.0.5"), 80),
            (Some(0), Action::Drop)
        );
        assert_eq!(
            r.lookup(ip("10.0.0.9"), 5555, ip("10.0.0.5"), 81),
            (Some(1), Action::Accept)
        );
        assert_eq!(
            r.lookup(ip("11.0.0.1"), 1234, ip("192.168.1.77"), 22),
            (Some(2), Action::Drop)
        );
        assert_eq!(
            r.lookup(ip("11.0.0.1"), 1235, ip("192.168.1.77"), 22),
            (None, Action::Accept)
        );
        let counts: std::vec::Vec<u64> = r.iter().map(|x| x.1).collect();
        assert_eq!(counts, [1, 1, 1]);
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
-----------------------------------------------------------------------
";
        assert_eq!(r.to_string(), want);
    }

    #[test]
    fn bad_lines_name_their_line() {
        assert_eq!(
            Rules::parse("PASS 1.2.3.4 5.6.7.8").unwrap_err(),
            RuleError::Action(1)
        );
        assert_eq!(
            Rules::parse("\nDROP 1.2.3 5.6.7.8").unwrap_err(),
            RuleError::Address(2)
        );
        assert_eq!(
            Rules::parse("DROP 1.2.3.4/33 5.6.7.8").unwrap_err(),
            RuleError::Mask(1)
        );
        assert_eq!(
            Rules::parse("DROP 1.2.3.4").unwrap_err(),
            RuleError::Address(1)
        );
        assert_eq!(
            Rules::parse("DROP 1.2.3.4 5.6.7.8 port:1").unwrap_err(),
            RuleError::Port(1)
        );
        assert_eq!(
            Rules::parse("DROP 1.2.3.4 5.6.7.8 dport:70000").unwrap_err(),
            RuleError::Port(1)
        );
        let many: std::string::String = (0..1025).map(|_| "DROP 1.1.1.1 2.2.2.2\n").collect();
        assert_eq!(Rules::parse(&many).unwrap_err(), RuleError::TooMany(1025));
        assert_eq!(
            RuleError::Mask(3).to_string(),
            "rule file line 3: invalid netmask (want /0../32)"
        );
    }
}
