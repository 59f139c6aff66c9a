//! IPv4 CIDR blocks and the search for a free subnet block inside a VPC.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use ipnet::Ipv4Net;

use crate::error::SpecError;

/// An IPv4 CIDR block such as `10.0.0.0/16`, in canonical form (no host bits set).
///
/// A thin wrapper over [`ipnet::Ipv4Net`], which does the address arithmetic; the wrapper
/// adds the canonical-form rule, this crate's errors, and the free-block search.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ipv4Cidr(Ipv4Net);

impl Ipv4Cidr {
    /// The block of `addr` with `prefix_len` leading bits; host bits must be zero.
    pub fn new(addr: Ipv4Addr, prefix_len: u8) -> Result<Self, SpecError> {
        let text = || format!("{addr}/{prefix_len}");
        let net = Ipv4Net::new(addr, prefix_len)
            .map_err(|_| SpecError::new("CIDR block", text(), "the prefix length is above 32"))?;
        let canonical = net.trunc();
        if canonical != net {
            return Err(SpecError::new(
                "CIDR block",
                text(),
                format!("host bits are set (did you mean {canonical}?)"),
            ));
        }
        Ok(Ipv4Cidr(net))
    }

    /// The block of `octets` with `prefix_len` leading bits, host bits cleared (a length
    /// above 32 counts as 32).
    pub const fn masked(octets: [u8; 4], prefix_len: u8) -> Ipv4Cidr {
        let prefix_len = if prefix_len > 32 { 32 } else { prefix_len };
        let mask = if prefix_len == 0 {
            0
        } else {
            u32::MAX << (32 - prefix_len as u32)
        };
        let network = Ipv4Addr::from_bits(u32::from_be_bytes(octets) & mask);
        Ipv4Cidr(Ipv4Net::new_assert(network, prefix_len))
    }

    /// The first address of the block.
    pub fn network(&self) -> Ipv4Addr {
        self.0.network()
    }

    /// The number of leading bits that name the block.
    pub fn prefix_len(&self) -> u8 {
        self.0.prefix_len()
    }

    /// The number of addresses in the block.
    pub fn size(&self) -> u64 {
        1u64 << (32 - u32::from(self.0.prefix_len()))
    }

    /// Whether `other` lies wholly inside this block.
    pub fn contains(&self, other: &Ipv4Cidr) -> bool {
        self.0.contains(&other.0)
    }

    /// Whether the two blocks share any address.
    pub fn overlaps(&self, other: &Ipv4Cidr) -> bool {
        self.0.contains(&other.0) || other.0.contains(&self.0)
    }

    /// The first block of `prefix_len` inside `self` that overlaps none of `taken`, or
    /// `None` when there is none (or `prefix_len` is shorter than this block's).
    pub fn first_free(&self, prefix_len: u8, taken: &[Ipv4Cidr]) -> Option<Ipv4Cidr> {
        if prefix_len < self.0.prefix_len() || prefix_len > 32 {
            return None;
        }
        let step = 1u64 << (32 - u32::from(prefix_len));
        let mut candidate = u64::from(self.0.network().to_bits());
        let end = u64::from(self.0.broadcast().to_bits());
        while candidate <= end {
            let block = Ipv4Cidr::masked(u32::try_from(candidate).ok()?.to_be_bytes(), prefix_len);
            match taken
                .iter()
                .filter(|t| t.overlaps(&block))
                .map(|t| u64::from(t.0.broadcast().to_bits()))
                .max()
            {
                None => return Some(block),
                // Jump past the highest taken address in the way, to the next aligned block.
                Some(last_taken) => candidate = (last_taken / step + 1) * step,
            }
        }
        None
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for Ipv4Cidr {
    type Err = SpecError;

    fn from_str(s: &str) -> Result<Self, SpecError> {
        let (addr, len) = s
            .trim()
            .split_once('/')
            .ok_or_else(|| SpecError::new("CIDR block", s, "expected ADDRESS/LENGTH"))?;
        let addr: Ipv4Addr = addr
            .parse()
            .map_err(|_| SpecError::new("CIDR block", s, "the address is not IPv4"))?;
        let len: u8 = len
            .parse()
            .map_err(|_| SpecError::new("CIDR block", s, "the prefix length is not a number"))?;
        Ipv4Cidr::new(addr, len).map_err(|e| SpecError {
            value: s.to_owned(),
            ..e
        })
    }
}
