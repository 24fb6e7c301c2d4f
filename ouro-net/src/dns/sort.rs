//! Destination address order after RFC 6724 (default address selection),
//! the rules that need no routing table.
//!
//! Applied: rule 6 (higher precedence in the default policy table first:
//! `::1`, then IPv6, then IPv4, then 6to4, Teredo, ULA, the deprecated
//! prefixes) and rule 8 (smaller scope first), then rule 10 (otherwise the
//! order the server gave). Approximated by leaving them out: the rules
//! that compare each destination with the source address the kernel would
//! pick (1 unusable destination, 2 matching scope, 3 deprecated source, 4
//! home address, 5 matching label, 7 native transport, 9 longest matching
//! prefix): a destination that cannot be reached simply fails to connect,
//! and connect by name tries the next one.

use std::cmp::Reverse;
use std::net::{IpAddr, Ipv6Addr};

/// Sorts `addrs` in place, best first (stable: equal ones keep their order).
pub fn sort_destinations(addrs: &mut [IpAddr]) {
    addrs.sort_by_key(|addr| {
        let v6 = as_v6(*addr);
        (Reverse(precedence(&v6)), scope(&v6))
    });
}

fn as_v6(addr: IpAddr) -> Ipv6Addr {
    match addr {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

/// The precedence of the default policy table (RFC 6724 section 2.1).
fn precedence(addr: &Ipv6Addr) -> u8 {
    let s = addr.segments();
    if *addr == Ipv6Addr::LOCALHOST {
        50
    } else if s[..5] == [0; 5] && s[5] == 0xffff {
        35
    } else if s[0] == 0x2002 {
        30
    } else if s[0] == 0x2001 && s[1] == 0 {
        5
    } else if s[0] & 0xfe00 == 0xfc00 {
        3
    } else if s[..6] == [0; 6] || s[0] & 0xffc0 == 0xfec0 || s[0] == 0x3ffe {
        1
    } else {
        40
    }
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
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sorted(addrs: &[&str]) -> Vec<String> {
        let mut addrs: Vec<IpAddr> = addrs.iter().map(|a| a.parse().unwrap()).collect();
        sort_destinations(&mut addrs);
        addrs.iter().map(|a| a.to_string()).collect()
    }

    #[test]
    fn loopback_v6_then_v6_then_v4_then_the_transition_prefixes() {
        assert_eq!(
            sorted(&[
                "2001::1",
                "fd00::1",
                "198.51.100.7",
                "2002:c000:0204::1",
                "2001:db8::1",
                "::1"
            ]),
            [
                "::1",
                "2001:db8::1",
                "198.51.100.7",
                "2002:c000:204::1",
                "2001::1",
                "fd00::1"
            ]
        );
    }

    #[test]
    fn among_equal_precedence_the_smaller_scope_comes_first() {
        assert_eq!(
            sorted(&["198.51.100.7", "169.254.1.1", "127.0.0.1"]),
            ["169.254.1.1", "127.0.0.1", "198.51.100.7"]
        );
        assert_eq!(
            sorted(&["2001:db8::1", "fe80::1"]),
            ["fe80::1", "2001:db8::1"]
        );
    }

    #[test]
    fn equal_addresses_keep_the_servers_order() {
        assert_eq!(
            sorted(&["198.51.100.9", "198.51.100.7", "198.51.100.8"]),
            ["198.51.100.9", "198.51.100.7", "198.51.100.8"]
        );
    }

    proptest! {
        #[test]
        fn sorting_keeps_every_address(raw in proptest::collection::vec(any::<u128>(), 0..20)) {
            let mut addrs: Vec<IpAddr> = raw.iter().map(|n| IpAddr::V6(Ipv6Addr::from(*n))).collect();
            let mut before = addrs.clone();
            sort_destinations(&mut addrs);
            before.sort();
            let mut after = addrs.clone();
            after.sort();
            prop_assert_eq!(before, after);
        }
    }
}
