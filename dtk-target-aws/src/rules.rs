//! Security group rules: `{protocol, port_range, source}`, as `aws/network`'s
//! `constant_rules` spells them, and their EC2 form.

use std::fmt;
use std::str::FromStr;

use aws_sdk_ec2::types::{IpPermission, IpRange, UserIdGroupPair};

use crate::cidr::Ipv4Cidr;
use crate::error::SpecError;

/// One ingress rule of a security group.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SecurityGroupRule {
    /// The IP protocol.
    pub protocol: Protocol,
    /// The ports (or, for ICMP, the type and code) it opens.
    pub port_range: PortRange,
    /// Where the traffic may come from.
    pub source: RuleSource,
}

impl SecurityGroupRule {
    /// A rule from its three parts as written in a module (`tcp`, `22` or `8000-8100`,
    /// `0.0.0.0/0` or `SAME` or `sg-...`), normalised: `all` traffic has no ports, and
    /// `all` ports of TCP or UDP are `0-65535`.
    pub fn parse(protocol: &str, port_range: &str, source: &str) -> Result<Self, SpecError> {
        let protocol: Protocol = protocol.parse()?;
        let port_range: PortRange = port_range.parse()?;
        let source: RuleSource = source.parse()?;
        Self::new(protocol, port_range, source)
    }

    /// A rule from its parts, checked and normalised as in [`SecurityGroupRule::parse`].
    pub fn new(
        protocol: Protocol,
        port_range: PortRange,
        source: RuleSource,
    ) -> Result<Self, SpecError> {
        let port_range = match protocol {
            Protocol::All => PortRange::ALL,
            Protocol::Icmp => port_range,
            Protocol::Tcp | Protocol::Udp => {
                if port_range == PortRange::ALL {
                    PortRange { from: 0, to: 65535 }
                } else if !(0..=65535).contains(&port_range.from)
                    || !(0..=65535).contains(&port_range.to)
                {
                    return Err(SpecError::new(
                        "port range",
                        port_range.to_string(),
                        "ports are 0 to 65535",
                    ));
                } else if port_range.from > port_range.to {
                    return Err(SpecError::new(
                        "port range",
                        port_range.to_string(),
                        "the first port is above the last",
                    ));
                } else {
                    port_range
                }
            }
        };
        Ok(SecurityGroupRule {
            protocol,
            port_range,
            source,
        })
    }

    /// The EC2 permission for this rule in the group `own_group_id`.
    pub(crate) fn to_permission(&self, own_group_id: &str) -> IpPermission {
        let mut p = IpPermission::builder().ip_protocol(self.protocol.ec2_name());
        if self.protocol != Protocol::All {
            p = p
                .from_port(self.port_range.from)
                .to_port(self.port_range.to);
        }
        match &self.source {
            RuleSource::Cidr(c) => {
                p = p.ip_ranges(IpRange::builder().cidr_ip(c.to_string()).build())
            }
            RuleSource::SameGroup => {
                p = p.user_id_group_pairs(UserIdGroupPair::builder().group_id(own_group_id).build())
            }
            RuleSource::Group(id) => {
                p = p.user_id_group_pairs(UserIdGroupPair::builder().group_id(id).build())
            }
        }
        p.build()
    }

    /// The rules of EC2 permissions of the group `own_group_id`; parts this crate does not
    /// model (IPv6 ranges, prefix lists) are skipped.
    pub(crate) fn from_permissions(perms: &[IpPermission], own_group_id: &str) -> Vec<Self> {
        let mut rules = Vec::new();
        for p in perms {
            let Some(protocol) = p.ip_protocol().and_then(|s| s.parse::<Protocol>().ok()) else {
                continue;
            };
            let port_range = PortRange {
                from: p.from_port().unwrap_or(-1),
                to: p.to_port().unwrap_or(-1),
            };
            let mut push = |source| {
                if let Ok(rule) = SecurityGroupRule::new(protocol, port_range, source) {
                    rules.push(rule);
                }
            };
            for r in p.ip_ranges() {
                if let Some(c) = r.cidr_ip().and_then(|c| c.parse::<Ipv4Cidr>().ok()) {
                    push(RuleSource::Cidr(c));
                }
            }
            for g in p.user_id_group_pairs() {
                match g.group_id() {
                    Some(id) if id == own_group_id => push(RuleSource::SameGroup),
                    Some(id) => push(RuleSource::Group(id.to_owned())),
                    None => {}
                }
            }
        }
        rules.sort();
        rules.dedup();
        rules
    }
}

impl fmt::Display for SecurityGroupRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} from {}",
            self.protocol, self.port_range, self.source
        )
    }
}

/// An IP protocol of a rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    /// TCP (`tcp`, `6`).
    Tcp,
    /// UDP (`udp`, `17`).
    Udp,
    /// ICMP (`icmp`, `1`).
    Icmp,
    /// All traffic (`all`, `-1`).
    All,
}

impl Protocol {
    fn ec2_name(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Icmp => "icmp",
            Protocol::All => "-1",
        }
    }
}

impl FromStr for Protocol {
    type Err = SpecError;

    fn from_str(s: &str) -> Result<Self, SpecError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "tcp" | "6" => Ok(Protocol::Tcp),
            "udp" | "17" => Ok(Protocol::Udp),
            "icmp" | "1" => Ok(Protocol::Icmp),
            "all" | "-1" | "any" => Ok(Protocol::All),
            _ => Err(SpecError::new(
                "protocol",
                s,
                "expected tcp, udp, icmp or all",
            )),
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Icmp => "icmp",
            Protocol::All => "all",
        })
    }
}

/// A range of ports, both ends included; for ICMP, the type (`from`) and code (`to`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortRange {
    /// The first port (ICMP: the type; -1 for all).
    pub from: i32,
    /// The last port (ICMP: the code; -1 for all).
    pub to: i32,
}

impl PortRange {
    /// Every port (`all`, `-1`).
    pub const ALL: PortRange = PortRange { from: -1, to: -1 };

    /// One port.
    pub fn single(port: u16) -> Self {
        PortRange {
            from: i32::from(port),
            to: i32::from(port),
        }
    }
}

impl FromStr for PortRange {
    type Err = SpecError;

    fn from_str(s: &str) -> Result<Self, SpecError> {
        let t = s.trim();
        if t.is_empty() || t.eq_ignore_ascii_case("all") || t == "-1" {
            return Ok(PortRange::ALL);
        }
        let bad = |why: &str| SpecError::new("port range", s, why);
        let num = |p: &str| {
            p.trim()
                .parse::<i32>()
                .map_err(|_| bad("expected PORT, FROM-TO or all"))
        };
        let (from, to) = match t.split_once('-') {
            Some((a, b)) => (num(a)?, num(b)?),
            None => {
                let p = num(t)?;
                (p, p)
            }
        };
        Ok(PortRange { from, to })
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self == PortRange::ALL {
            f.write_str("all")
        } else if self.from == self.to {
            write!(f, "{}", self.from)
        } else {
            write!(f, "{}-{}", self.from, self.to)
        }
    }
}

/// Where a rule lets traffic come from.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RuleSource {
    /// An IPv4 block, e.g. `0.0.0.0/0` (a bare address means `/32`).
    Cidr(Ipv4Cidr),
    /// `SAME`: members of the group the rule is in.
    SameGroup,
    /// Members of another security group, by id (`sg-...`).
    Group(String),
}

impl FromStr for RuleSource {
    type Err = SpecError;

    fn from_str(s: &str) -> Result<Self, SpecError> {
        let t = s.trim();
        if t.eq_ignore_ascii_case("same") {
            Ok(RuleSource::SameGroup)
        } else if t.starts_with("sg-") {
            Ok(RuleSource::Group(t.to_owned()))
        } else if t.contains('/') {
            Ok(RuleSource::Cidr(t.parse()?))
        } else if let Ok(addr) = t.parse::<std::net::Ipv4Addr>() {
            Ok(RuleSource::Cidr(Ipv4Cidr::new(addr, 32)?))
        } else {
            Err(SpecError::new(
                "rule source",
                s,
                "expected a CIDR block, SAME or a group id sg-...",
            ))
        }
    }
}

impl fmt::Display for RuleSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RuleSource::Cidr(c) => write!(f, "{c}"),
            RuleSource::SameGroup => f.write_str("SAME"),
            RuleSource::Group(id) => f.write_str(id),
        }
    }
}
