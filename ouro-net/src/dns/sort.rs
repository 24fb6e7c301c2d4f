//! Destination address order after RFC 6724 (default address selection).
//!
//! Each destination is compared together with the source address the
//! kernel would use to reach it, found as glibc's `getaddrinfo` finds it:
//! a UDP socket connected to the destination (a route lookup; no packet is
//! sent) and `getsockname` ([`ouro::net::route_source`]; the resolver asks
//! its ring, [`Ring::source_address`](ouro::Ring::source_address), so that
//! under the simulator the answer is the world's, not the machine's). They
//! are asked only when there are two or more addresses to order. Rules 3
//! and 4 read the sources' flags, which the kernel keeps with each of the
//! machine's addresses: one look at its table per sort
//! ([`Ring::local_address_flags`](ouro::Ring::local_address_flags): a
//! netlink `RTM_GETADDR` dump of the IPv6 addresses on Linux, as glibc
//! reads them), made only when two or more destinations have a source and
//! one of those is IPv6 (IPv4 addresses carry no flags here, as in glibc;
//! a deprecated IPv6 source can still put its destination after an IPv4
//! one). Where there are no flags — other systems, netlink refused (a
//! seccomp filter), the simulator, whose order must not depend on the
//! machine — rules 3 and 4 decide nothing, and the lookup goes on.
//!
//! Applied, in the RFC's order: rule 1 (a destination with no source —
//! no route, or a link-local IPv6 address without an interface — goes
//! last), 2 (the destination's scope matches its source's), 3 (a
//! deprecated source loses: its preferred lifetime is over), 4 (a home
//! address as source wins; Linux marks home addresses only, not care-of
//! ones, so it is the home flag alone, as in glibc), 5 (their
//! labels match), 6 (higher precedence in the default policy table: `::1`,
//! then IPv6, then IPv4, then 6to4, Teredo, ULA, the deprecated prefixes),
//! 7 (native transport: a source in the 6to4 or Teredo prefix means an
//! encapsulating tunnel), 8 (smaller scope), 9 (the longer prefix shared
//! with the source, counted over at most the 64 bits of an IPv6 network
//! prefix; IPv4 addresses are left out, as the RFC allows, so that a
//! server's round robin keeps working), then 10 (the server's order).

use std::cmp::Ordering;
use std::io;
use std::net::{IpAddr, Ipv6Addr};

use ouro::net::{AddressFlags, LocalAddressFlags};
use ouro::Ring;

/// A destination and the source address the kernel would use to reach
/// it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Destination {
    /// The destination address.
    pub addr: IpAddr,
    /// Its source address; `None` when the kernel has no route to it.
    pub source: Option<IpAddr>,
    /// The source's flags (deprecated, home address); none when unknown.
    pub source_flags: AddressFlags,
}

/// The source address the kernel would use to reach `dest`: see
/// [`ouro::net::route_source`].
pub use ouro::net::route_source as source_address;

/// Where the sort learns each destination's source and the sources'
/// flags: a ring (the resolver's), or [`ThisMachine`].
pub trait Sources {
    /// The source address the kernel would use to reach `dest`; an error
    /// when there is none (no route).
    fn source_address(&mut self, dest: IpAddr) -> io::Result<IpAddr>;

    /// The flags of the machine's addresses; an error means no flags.
    fn local_address_flags(&mut self) -> io::Result<LocalAddressFlags>;
}

/// A ring's answers: the machine's on the real backends, the world's
/// under the simulator.
impl<S> Sources for Ring<S> {
    fn source_address(&mut self, dest: IpAddr) -> io::Result<IpAddr> {
        Ring::source_address(self, dest)
    }

    fn local_address_flags(&mut self) -> io::Result<LocalAddressFlags> {
        Ring::local_address_flags(self)
    }
}

/// This machine's routes and addresses, asked directly without a ring
/// ([`ouro::net::route_source`], [`ouro::net::local_address_flags`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct ThisMachine;

impl Sources for ThisMachine {
    fn source_address(&mut self, dest: IpAddr) -> io::Result<IpAddr> {
        ouro::net::route_source(dest)
    }

    fn local_address_flags(&mut self) -> io::Result<LocalAddressFlags> {
        ouro::net::local_address_flags()
    }
}

/// Sorts `addrs` in place, best first, each with the source address
/// `sources` gives for it (an error: no route) and that source's flags;
/// stable, so equal ones keep their order. The flags are asked for once,
/// and only when two or more destinations have a source and one of those
/// sources is IPv6.
pub fn sort_destinations(addrs: &mut [IpAddr], sources: &mut impl Sources) {
    if addrs.len() < 2 {
        return;
    }
    let mut destinations: Vec<Destination> = addrs
        .iter()
        .map(|&addr| Destination {
            addr,
            source: sources.source_address(addr).ok(),
            source_flags: AddressFlags::default(),
        })
        .collect();
    let routed = destinations.iter().filter_map(|d| d.source);
    if routed.clone().count() >= 2 && routed.clone().any(|source| source.is_ipv6()) {
        let flags = sources.local_address_flags().unwrap_or_default();
        for destination in &mut destinations {
            if let Some(source) = destination.source {
                destination.source_flags = flags.of(source);
            }
        }
    }
    destinations.sort_by(compare);
    for (addr, destination) in addrs.iter_mut().zip(destinations) {
        *addr = destination.addr;
    }
}

/// RFC 6724 section 6's comparison of two destinations: `Less` when `a`
/// goes first.
pub fn compare(a: &Destination, b: &Destination) -> Ordering {
    let (da, db) = (as_v6(a.addr), as_v6(b.addr));
    let rule_1 = first_if(a.source.is_some(), b.source.is_some());
    let by_source = match (a.source.map(as_v6), b.source.map(as_v6)) {
        (Some(sa), Some(sb)) => Some((sa, sb)),
        _ => None,
    };
    let rule_2 = || match by_source {
        Some((sa, sb)) => first_if(scope(&da) == scope(&sa), scope(&db) == scope(&sb)),
        None => Ordering::Equal,
    };
    let (fa, fb) = (a.source_flags, b.source_flags);
    let rule_3 = || first_if(!fa.deprecated, !fb.deprecated);
    let rule_4 = || first_if(fa.home, fb.home);
    let rule_5 = || match by_source {
        Some((sa, sb)) => first_if(label(&da) == label(&sa), label(&db) == label(&sb)),
        None => Ordering::Equal,
    };
    let rule_6 = || precedence(&db).cmp(&precedence(&da));
    let rule_7 = || match by_source {
        Some((sa, sb)) => first_if(!encapsulated(&sa), !encapsulated(&sb)),
        None => Ordering::Equal,
    };
    let rule_8 = || scope(&da).cmp(&scope(&db));
    let rule_9 = || match by_source {
        Some((sa, sb)) if da.to_ipv4_mapped().is_none() && db.to_ipv4_mapped().is_none() => {
            common_prefix(&sb, &db).cmp(&common_prefix(&sa, &da))
        }
        _ => Ordering::Equal,
    };
    rule_1
        .then_with(rule_2)
        .then_with(rule_3)
        .then_with(rule_4)
        .then_with(rule_5)
        .then_with(rule_6)
        .then_with(rule_7)
        .then_with(rule_8)
        .then_with(rule_9)
}

/// `Less` (the first goes first) when only `a` holds, `Greater` when only
/// `b` does.
fn first_if(a: bool, b: bool) -> Ordering {
    b.cmp(&a)
}

fn as_v6(addr: IpAddr) -> Ipv6Addr {
    match addr {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

/// The entries of the default policy table (RFC 6724 section 2.1) as
/// (precedence, label).
fn policy(addr: &Ipv6Addr) -> (u8, u8) {
    let s = addr.segments();
    if *addr == Ipv6Addr::LOCALHOST {
        (50, 0)
    } else if s[..5] == [0; 5] && s[5] == 0xffff {
        (35, 4)
    } else if s[0] == 0x2002 {
        (30, 2)
    } else if s[0] == 0x2001 && s[1] == 0 {
        (5, 5)
    } else if s[0] & 0xfe00 == 0xfc00 {
        (3, 13)
    } else if s[..6] == [0; 6] {
        (1, 3)
    } else if s[0] & 0xffc0 == 0xfec0 {
        (1, 11)
    } else if s[0] == 0x3ffe {
        (1, 12)
    } else {
        (40, 1)
    }
}

fn precedence(addr: &Ipv6Addr) -> u8 {
    policy(addr).0
}

fn label(addr: &Ipv6Addr) -> u8 {
    policy(addr).1
}

/// Whether a source address belongs to an encapsulating transition
/// mechanism (6to4 or Teredo): the interface it is on is a tunnel.
fn encapsulated(source: &Ipv6Addr) -> bool {
    let s = source.segments();
    s[0] == 0x2002 || (s[0] == 0x2001 && s[1] == 0)
}

/// The leading bits two addresses share, up to the 64 of an IPv6 network
/// prefix (the interface identifier after it says nothing of the route).
fn common_prefix(a: &Ipv6Addr, b: &Ipv6Addr) -> u32 {
    (u128::from(*a) ^ u128::from(*b)).leading_zeros().min(64)
}

/// The address's scope (RFC 4291 values; IPv4 loopback and link-local
/// count as link-local, as RFC 6724 section 3.2 says).
fn scope(addr: &Ipv6Addr) -> u8 {
    const LINK_LOCAL: u8 = 2;
    const SITE_LOCAL: u8 = 5;
    const GLOBAL: u8 = 14;
    let s = addr.segments();
    if let Some(v4) = addr.to_ipv4_mapped() {
        return if v4.is_loopback() || v4.is_link_local() {
            LINK_LOCAL
        } else {
            GLOBAL
        };
    }
    if addr.is_multicast() {
        return (s[0] & 0x000f) as u8;
    }
    if *addr == Ipv6Addr::LOCALHOST || s[0] & 0xffc0 == 0xfe80 {
        LINK_LOCAL
    } else if s[0] & 0xffc0 == 0xfec0 {
        SITE_LOCAL
    } else {
        GLOBAL
    }
}

#[cfg(test)]
mod tests;
