//! IPv4 subnets in CIDR form, as networks store them and IPAM walks them.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// An IPv4 subnet, `10.89.0.0/24`: the address has no host bits set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Subnet {
    addr: Ipv4Addr,
    prefix_len: u8,
}

impl Subnet {
    /// The subnet holding `ip` with this prefix length (host bits cleared).
    pub fn containing(ip: Ipv4Addr, prefix_len: u8) -> Subnet {
        let prefix_len = prefix_len.min(32);
        Subnet { addr: Ipv4Addr::from(u32::from(ip) & mask(prefix_len)), prefix_len }
    }

    /// The network address.
    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    /// The `N` of `/N`.
    pub fn prefix_len(&self) -> u8 {
        self.prefix_len
    }

    /// Whether `ip` is in the subnet.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & mask(self.prefix_len) == u32::from(self.addr)
    }

    /// Whether the two share any address (one contains the other's network address).
    pub fn overlaps(&self, other: &Subnet) -> bool {
        self.contains(other.addr) || other.contains(self.addr)
    }

    /// The last address.
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) | !mask(self.prefix_len))
    }

    /// The first address hosts may use (docker's default gateway).
    pub fn first_host(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) + 1)
    }

    /// Addresses for hosts, lowest first: neither the network nor the broadcast address.
    pub fn hosts(&self) -> impl Iterator<Item = Ipv4Addr> + use<> {
        (u32::from(self.addr) + 1..u32::from(self.broadcast())).map(Ipv4Addr::from)
    }
}

fn mask(prefix_len: u8) -> u32 {
    if prefix_len == 0 { 0 } else { u32::MAX << (32 - u32::from(prefix_len)) }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

/// A subnet rbuild cannot use, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid subnet {given:?}: {problem}")]
pub struct SubnetError {
    pub given: String,
    pub problem: String,
}

impl FromStr for Subnet {
    type Err = SubnetError;

    /// `A.B.C.D/N` with no host bits set; only IPv4 (rbuild's networks are IPv4 only), and
    /// at most /30 so that a gateway and one container fit.
    fn from_str(s: &str) -> Result<Subnet, SubnetError> {
        let bad = |problem: String| SubnetError { given: s.to_string(), problem };
        let (ip, len) = s.split_once('/').ok_or_else(|| bad("expected CIDR like 10.89.0.0/24".into()))?;
        let ip: Ipv4Addr = ip.parse().map_err(|_| bad("only IPv4 subnets are supported".into()))?;
        let len: u8 = len.parse().ok().filter(|l| *l <= 32).ok_or_else(|| bad("bad prefix length".into()))?;
        if len > 30 {
            return Err(bad(format!("a /{len} has no room for a gateway and a container")));
        }
        let subnet = Subnet::containing(ip, len);
        if subnet.addr != ip {
            return Err(bad(format!("it has host bits set, did you mean {subnet}?")));
        }
        Ok(subnet)
    }
}

impl TryFrom<String> for Subnet {
    type Error = SubnetError;
    fn try_from(s: String) -> Result<Subnet, SubnetError> {
        s.parse()
    }
}

impl From<Subnet> for String {
    fn from(s: Subnet) -> String {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_checks_host_bits() {
        let s: Subnet = "10.89.3.0/24".parse().unwrap();
        assert_eq!(s.to_string(), "10.89.3.0/24");
        assert_eq!(s.broadcast(), Ipv4Addr::new(10, 89, 3, 255));
        assert_eq!(s.first_host(), Ipv4Addr::new(10, 89, 3, 1));
        assert!(
            "10.89.3.1/24".parse::<Subnet>().unwrap_err().to_string().contains("did you mean 10.89.3.0/24")
        );
        assert!("10.89.3.0/31".parse::<Subnet>().is_err());
        assert!("fd00::/64".parse::<Subnet>().is_err());
        assert!("10.89.3.0".parse::<Subnet>().is_err());
    }

    #[test]
    fn overlap_and_hosts() {
        let a: Subnet = "10.0.0.0/8".parse().unwrap();
        let b: Subnet = "10.89.0.0/24".parse().unwrap();
        let c: Subnet = "10.89.1.0/24".parse().unwrap();
        assert!(a.overlaps(&b) && b.overlaps(&a));
        assert!(!b.overlaps(&c));
        let small: Subnet = "192.168.5.0/30".parse().unwrap();
        assert_eq!(
            small.hosts().collect::<Vec<_>>(),
            [Ipv4Addr::new(192, 168, 5, 1), Ipv4Addr::new(192, 168, 5, 2)]
        );
        assert_eq!(Subnet::containing(Ipv4Addr::new(1, 2, 3, 4), 0).to_string(), "0.0.0.0/0");
    }
}
