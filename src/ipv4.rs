//! IPv4 prefixes (`172.38.0.0/16`): just what network configuration needs.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Net {
    pub addr: Ipv4Addr,
    pub prefix_len: u8,
}

impl Ipv4Net {
    fn mask(self) -> u32 {
        if self.prefix_len == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(self.prefix_len))
        }
    }

    pub fn network(self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) & self.mask())
    }

    pub fn broadcast(self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) | !self.mask())
    }

    pub fn contains(self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.network())
    }

    /// True when every address of `inner` is in `self`.
    pub fn covers(self, inner: Ipv4Net) -> bool {
        inner.prefix_len >= self.prefix_len && self.contains(inner.network())
    }

    /// A usable host address: inside, and neither the network nor the broadcast address.
    pub fn is_host(self, ip: Ipv4Addr) -> bool {
        self.contains(ip) && (self.prefix_len >= 31 || (ip != self.network() && ip != self.broadcast()))
    }

    /// The network address plus `offset` (e.g. `.2` of the subnet).
    pub fn nth(self, offset: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network()).wrapping_add(offset))
    }

    /// The upper half of this prefix: the default pool for pods when low addresses are reserved.
    pub fn upper_half(self) -> Option<Ipv4Net> {
        if self.prefix_len >= 30 {
            return None;
        }
        let half = 1u32 << (31 - u32::from(self.prefix_len));
        Some(Ipv4Net { addr: Ipv4Addr::from(u32::from(self.network()) + half), prefix_len: self.prefix_len + 1 })
    }
}

impl FromStr for Ipv4Net {
    type Err = String;

    /// Accepts only the canonical form (`172.38.0.0/16`, not `172.38.0.5/16`), the way Docker
    /// reports subnets, so configured and existing networks compare as text.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (addr, len) = text.split_once('/').ok_or_else(|| format!("{text:?} is not an IPv4 prefix like 172.38.0.0/16"))?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| format!("{text:?} does not start with an IPv4 address"))?;
        let prefix_len: u8 = len
            .parse()
            .ok()
            .filter(|l| *l <= 32)
            .ok_or_else(|| format!("{text:?} has a prefix length that is not 0-32"))?;
        let net = Ipv4Net { addr, prefix_len };
        if net.network() != addr {
            return Err(format!("{text:?} has host bits set; did you mean {}/{prefix_len}?", net.network()));
        }
        Ok(net)
    }
}

impl fmt::Display for Ipv4Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_membership() {
        let net: Ipv4Net = "172.38.0.0/16".parse().unwrap();
        assert!(net.contains("172.38.200.1".parse().unwrap()));
        assert!(!net.contains("172.39.0.1".parse().unwrap()));
        assert!(net.is_host("172.38.0.1".parse().unwrap()));
        assert!(!net.is_host("172.38.0.0".parse().unwrap()));
        assert!(!net.is_host("172.38.255.255".parse().unwrap()));
        assert_eq!(net.nth(2), Ipv4Addr::new(172, 38, 0, 2));
        assert_eq!(net.to_string(), "172.38.0.0/16");
    }

    #[test]
    fn rejects_non_canonical_and_garbage() {
        assert!("172.38.0.5/16".parse::<Ipv4Net>().unwrap_err().contains("172.38.0.0/16"));
        assert!("172.38.0.0".parse::<Ipv4Net>().is_err());
        assert!("172.38.0.0/33".parse::<Ipv4Net>().is_err());
        assert!("fd00::/64".parse::<Ipv4Net>().is_err());
    }

    #[test]
    fn upper_half_and_cover() {
        let net: Ipv4Net = "172.38.0.0/16".parse().unwrap();
        let half = net.upper_half().unwrap();
        assert_eq!(half.to_string(), "172.38.128.0/17");
        assert!(net.covers(half));
        assert!(!half.covers(net));
        assert!(!half.contains(net.nth(2)));
    }
}
