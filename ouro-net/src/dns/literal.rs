//! Numeric host names: the addresses glibc's `getaddrinfo` answers itself,
//! without a query.
//!
//! IPv4 in every form `inet_aton` reads (glibc's exact variant, which
//! `getaddrinfo` uses): one to four parts separated by dots, each decimal,
//! octal with a leading `0` or hexadecimal with `0x`, the last one filling
//! the bytes left (`127.1` is 127.0.0.1, `0x7f.1` too, `2130706433` as
//! well). IPv6 as `inet_pton` reads it (`::1`, `::ffff:1.2.3.4`), with an
//! optional zone after `%`, which becomes the address's scope id: an
//! interface's index (digits), or, for a link-local address, its name.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::config::zone_index;

/// A numeric host name's address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Literal {
    /// The address.
    pub addr: IpAddr,
    /// The interface an IPv6 zone names (0 without one, and for IPv4).
    pub scope_id: u32,
}

/// The address `name` spells, if it is numeric: `None` for a name to look
/// up (`1.2.3.4.` with its root dot, `1.2.3.4.5` or `0x` included, as in
/// glibc). An IPv6 address whose zone names no interface (or an empty
/// one) is `InvalidInput`: it is no name either.
pub fn ip_literal(name: &str) -> Option<io::Result<Literal>> {
    if let Some((addr, zone)) = name.split_once('%') {
        let addr = addr.parse::<Ipv6Addr>().ok()?;
        let Some(scope_id) = zone_index(&addr, zone) else {
            let why = format!("{name:?}: no interface {zone:?} for its zone");
            return Some(Err(io::Error::new(io::ErrorKind::InvalidInput, why)));
        };
        let addr = IpAddr::V6(addr);
        return Some(Ok(Literal { addr, scope_id }));
    }
    let addr = match name.parse::<Ipv6Addr>() {
        Ok(v6) => IpAddr::V6(v6),
        Err(_) => IpAddr::V4(inet_aton(name)?),
    };
    Some(Ok(Literal { addr, scope_id: 0 }))
}

/// `inet_aton`'s reading of `text`, whole: one to four parts, those before
/// the last at most 255 each, the last filling the bytes left.
fn inet_aton(text: &str) -> Option<Ipv4Addr> {
    let mut parts = [0u32; 4];
    let mut count = 0;
    for part in text.split('.') {
        *parts.get_mut(count)? = aton_part(part)?;
        count += 1;
    }
    let (last, head) = parts[..count].split_last()?;
    if head.iter().any(|&p| p > 0xff) {
        return None;
    }
    let last_bits = 8 * (4 - head.len() as u32);
    if last_bits < 32 && *last >= 1 << last_bits {
        return None;
    }
    let high = head
        .iter()
        .enumerate()
        .fold(0u32, |acc, (i, &p)| acc | (p << (24 - 8 * i)));
    Some(Ipv4Addr::from(high | last))
}

/// One part as `strtoul` with base 0 reads it, whole: `0x` then hex
/// digits, `0` then octal digits, or decimal digits; at most 32 bits.
fn aton_part(part: &str) -> Option<u32> {
    // glibc wants a digit first: no sign, no space.
    if !part.bytes().next()?.is_ascii_digit() {
        return None;
    }
    let (digits, radix) = if let Some(hex) = part.strip_prefix("0x").or(part.strip_prefix("0X")) {
        (hex, 16)
    } else if part.len() > 1 && part.starts_with('0') {
        (&part[1..], 8)
    } else {
        (part, 10)
    };
    // `from_str_radix` takes a `+` too: check the digits first.
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    u32::from_str_radix(digits, radix).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn v4(name: &str) -> Option<IpAddr> {
        ip_literal(name).map(|l| l.unwrap().addr)
    }

    #[test]
    fn ipv4_in_every_form_inet_aton_reads() {
        for (name, addr) in [
            ("1.2.3.4", "1.2.3.4"),
            ("127.1", "127.0.0.1"),
            ("0x7f.1", "127.0.0.1"),
            ("0177.0.0.1", "127.0.0.1"),
            ("127.0.1", "127.0.0.1"),
            ("2130706433", "127.0.0.1"),
            ("0x7F000001", "127.0.0.1"),
            ("10.0x10000", "10.1.0.0"),
            ("0", "0.0.0.0"),
            ("00", "0.0.0.0"),
            ("4294967295", "255.255.255.255"),
        ] {
            assert_eq!(v4(name), Some(addr.parse().unwrap()), "{name}");
        }
    }

    #[test]
    fn names_that_only_look_numeric_are_names() {
        for name in [
            "1.2.3.4.",
            "1.2.3.4.5",
            "256.1.1.1",
            "1.256.1.1",
            "1.2.65536",
            "4294967296",
            "0x",
            "0x1g",
            "08",
            "1..2",
            ".1",
            "+1",
            "1.+2",
            " 1",
            "1 ",
            "x1",
            "",
            "web",
            "1a",
        ] {
            assert!(ip_literal(name).is_none(), "{name:?}");
        }
    }

    #[test]
    fn ipv6_with_and_without_a_zone() {
        let lit = ip_literal("::ffff:1.2.3.4").unwrap().unwrap();
        assert_eq!(lit.addr, "::ffff:1.2.3.4".parse::<IpAddr>().unwrap());
        let lit = ip_literal("fe80::1%lo").unwrap().unwrap();
        assert_eq!((lit.addr, lit.scope_id), ("fe80::1".parse().unwrap(), 1));
        let lit = ip_literal("fe80::1%7").unwrap().unwrap();
        assert_eq!(lit.scope_id, 7);
        for unknown in ["fe80::1%no-such-if0", "fe80::1%"] {
            let e = ip_literal(unknown).unwrap().unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{unknown}");
        }
        for refused in ["::1%lo", "2001:db8::1%lo", "fe80::1%+1", "fe80::1%1x"] {
            let e = ip_literal(refused).unwrap().unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{refused}");
        }
        let lit = ip_literal("::1%3").unwrap().unwrap();
        assert_eq!(lit.scope_id, 3, "a number names any address's zone");
        let lit = ip_literal("ff02::1%lo").unwrap().unwrap();
        assert_eq!(lit.scope_id, 1, "link-local multicast");
        assert!(ip_literal("1.2.3.4%lo").is_none(), "no zone on IPv4");
        assert!(ip_literal("web%lo").is_none());
    }

    proptest! {
        #[test]
        fn any_text_is_read_without_panicking(text in "[0-9a-fA-Fx.:%lo]{0,24}") {
            let _ = ip_literal(&text);
        }

        #[test]
        fn every_dotted_quad_reads_as_itself(a: u8, b: u8, c: u8, d: u8) {
            let text = format!("{a}.{b}.{c}.{d}");
            prop_assert_eq!(v4(&text), Some(IpAddr::V4(Ipv4Addr::new(a, b, c, d))));
        }
    }
}
