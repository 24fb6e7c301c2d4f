use super::*;
use proptest::prelude::*;

fn destination(addr: &str, source: Option<&str>) -> Destination {
    Destination {
        addr: addr.parse().unwrap(),
        source: source.map(|s| s.parse().unwrap()),
        source_flags: AddressFlags::default(),
    }
}

const NO_FLAGS: AddressFlags = AddressFlags {
    deprecated: false,
    home: false,
};
const DEPRECATED: AddressFlags = AddressFlags {
    deprecated: true,
    home: false,
};
const HOME: AddressFlags = AddressFlags {
    deprecated: false,
    home: true,
};
const DEPRECATED_HOME: AddressFlags = AddressFlags {
    deprecated: true,
    home: true,
};

/// A destination, its source and the source's flags, as text.
type Flagged = (&'static str, &'static str, AddressFlags);

/// As [`TABLE`], for rules 3 and 4, which read the source's flags.
#[rustfmt::skip]
const FLAG_TABLE: &[(&str, Flagged, Flagged, Ordering)] = &[
    ("2 before 3: a source of another scope loses even when the other is deprecated",
        ("2001:db8::1", "fe80::1", NO_FLAGS), ("2001:db8::5", "2001:db8::2", DEPRECATED), Ordering::Greater),
    ("3: a deprecated source loses, before precedence",
        ("2001:db8::1", "2001:db8::2", DEPRECATED), ("198.51.100.7", "192.0.2.1", NO_FLAGS), Ordering::Greater),
    ("3: before the home address",
        ("2001:db8::1", "2001:db8::2", DEPRECATED_HOME), ("2001:db8:5::1", "2001:db8:5::2", NO_FLAGS), Ordering::Greater),
    ("4: a home address wins, before labels",
        ("2001:db8::1", "fd00::1", HOME), ("2001:db8:5::1", "2001:db8:5::2", NO_FLAGS), Ordering::Less),
    ("4: both deprecated, the home address wins",
        ("2001:db8:2::5", "2001:db8:1::1", DEPRECATED_HOME), ("2001:db8:1::5", "2001:db8:1::1", DEPRECATED), Ordering::Less),
    ("4: both home addresses, a later rule decides (9)",
        ("2001:db8:2::5", "2001:db8:1::1", HOME), ("2001:db8:1::5", "2001:db8:1::1", HOME), Ordering::Greater),
];

/// A destination and its source, as text (`None`: no route).
type Routed = (&'static str, Option<&'static str>);

/// Each row: the rule that decides, destination A with its source,
/// destination B with its source, and whether A goes first (`Less`), B
/// does (`Greater`) or neither (`Equal`). Each pair is chosen so that a
/// later rule would decide the other way (or not at all).
#[rustfmt::skip]
const TABLE: &[(&str, Routed, Routed, Ordering)] = &[
    ("1: no route goes last, before precedence",
        ("2001:db8::1", None), ("198.51.100.7", Some("192.0.2.1")), Ordering::Greater),
    ("1: both unroutable, precedence still counts",
        ("198.51.100.7", None), ("2001:db8::1", None), Ordering::Greater),
    ("2: a source of another scope loses, before precedence",
        ("2001:db8::1", Some("fe80::1")), ("198.51.100.7", Some("192.0.2.1")), Ordering::Greater),
    ("5: a source of another label loses, before precedence",
        ("2001:db8::1", Some("fd00::1")), ("198.51.100.7", Some("192.0.2.1")), Ordering::Greater),
    ("6: IPv6 before IPv4",
        ("2001:db8::1", Some("2001:db8::2")), ("198.51.100.7", Some("192.0.2.1")), Ordering::Less),
    ("6: ::1 before 127.0.0.1",
        ("::1", Some("::1")), ("127.0.0.1", Some("127.0.0.1")), Ordering::Less),
    ("6: IPv4 before ULA",
        ("fd00::5", Some("fd00::1")), ("198.51.100.7", Some("192.0.2.1")), Ordering::Greater),
    ("7: a 6to4 tunnel's source loses",
        ("2001:db8::1", Some("2002:c000:201::1")), ("2001:db8:5::1", Some("fd00::1")), Ordering::Greater),
    ("8: IPv4 link-local before global",
        ("169.254.1.1", Some("169.254.0.2")), ("198.51.100.7", Some("192.0.2.1")), Ordering::Less),
    ("8: IPv6 link-local before global",
        ("fe80::2", Some("fe80::1")), ("2001:db8::1", Some("2001:db8::2")), Ordering::Less),
    ("9: the longer prefix shared with the source first",
        ("2001:db8:2::5", Some("2001:db8:1::1")), ("2001:db8:1::5", Some("2001:db8:1::1")), Ordering::Greater),
    ("9: counted over 64 bits at most",
        ("2001:db8:1::1:5", Some("2001:db8:1::1")), ("2001:db8:1:0:ffff::5", Some("2001:db8:1::1")), Ordering::Equal),
    ("9: not for IPv4",
        ("203.0.113.7", Some("192.0.2.1")), ("198.51.100.7", Some("198.51.100.1")), Ordering::Equal),
    ("10: otherwise equal",
        ("2001:db8::1", None), ("2001:db8::2", None), Ordering::Equal),
];

#[test]
fn the_comparator_applies_each_rule_in_order() {
    for (rule, (a, sa), (b, sb), expected) in TABLE {
        let (a, b) = (destination(a, *sa), destination(b, *sb));
        assert_eq!(compare(&a, &b), *expected, "rule {rule}");
        assert_eq!(compare(&b, &a), expected.reverse(), "rule {rule}, reversed");
    }
}

#[test]
fn rules_3_and_4_read_the_sources_flags_in_the_rfcs_order() {
    for (rule, (a, sa, fa), (b, sb, fb), expected) in FLAG_TABLE {
        let a = Destination {
            source_flags: *fa,
            ..destination(a, Some(sa))
        };
        let b = Destination {
            source_flags: *fb,
            ..destination(b, Some(sb))
        };
        assert_eq!(compare(&a, &b), *expected, "rule {rule}");
        assert_eq!(compare(&b, &a), expected.reverse(), "rule {rule}, reversed");
    }
}

/// Made-up sources: each destination is its own source unless listed as
/// unroutable; the flags from `flags` (an error: netlink refused);
/// counts the looks at the flags.
struct Scripted {
    unroutable: Vec<IpAddr>,
    flags: Option<LocalAddressFlags>,
    looks: usize,
}

impl Scripted {
    fn new(flags: &[(&str, AddressFlags)]) -> Scripted {
        let table = flags.iter().map(|(a, f)| (a.parse().unwrap(), *f));
        Scripted {
            unroutable: Vec::new(),
            flags: Some(table.collect()),
            looks: 0,
        }
    }
}

impl Sources for Scripted {
    fn source_address(&mut self, dest: IpAddr) -> io::Result<IpAddr> {
        if self.unroutable.contains(&dest) {
            return Err(io::Error::from_raw_os_error(libc::ENETUNREACH));
        }
        Ok(dest)
    }

    fn local_address_flags(&mut self) -> io::Result<LocalAddressFlags> {
        self.looks += 1;
        self.flags
            .clone()
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EPERM))
    }
}

fn ips(texts: &[&str]) -> Vec<IpAddr> {
    texts.iter().map(|t| t.parse().unwrap()).collect()
}

#[test]
fn a_deprecated_source_puts_its_destination_after_an_ipv4_one_with_one_look() {
    let mut sources = Scripted::new(&[("2001:db8::1", DEPRECATED)]);
    let mut addrs = ips(&["2001:db8::1", "2001:db8::2", "192.0.2.1"]);
    sort_destinations(&mut addrs, &mut sources);
    assert_eq!(addrs, ips(&["2001:db8::2", "192.0.2.1", "2001:db8::1"]));
    assert_eq!(sources.looks, 1);
}

#[test]
fn a_home_address_source_goes_first() {
    let mut sources = Scripted::new(&[("2001:db8::2", HOME)]);
    let mut addrs = ips(&["2001:db8::1", "2001:db8::2"]);
    sort_destinations(&mut addrs, &mut sources);
    assert_eq!(addrs, ips(&["2001:db8::2", "2001:db8::1"]));
}

#[test]
fn no_look_at_the_flags_without_two_sources_one_of_them_ipv6() {
    let cases: [(&[&str], &[&str]); 4] = [
        (&["2001:db8::1"], &[]),
        (&["192.0.2.1", "198.51.100.1"], &[]),
        (&["2001:db8::1", "2001:db8::2"], &["2001:db8::2"]),
        (
            &["2001:db8::1", "192.0.2.1", "2001:db8::2"],
            &["2001:db8::1", "2001:db8::2"],
        ),
    ];
    for (addrs, unroutable) in cases {
        let mut sources = Scripted::new(&[("2001:db8::1", DEPRECATED)]);
        sources.unroutable = ips(unroutable);
        sort_destinations(&mut ips(addrs), &mut sources);
        assert_eq!(sources.looks, 0, "{addrs:?}, unroutable {unroutable:?}");
    }
}

#[test]
fn refused_flags_leave_the_order_to_the_other_rules() {
    let mut sources = Scripted::new(&[]);
    sources.flags = None;
    let mut addrs = ips(&["192.0.2.1", "2001:db8::1"]);
    sort_destinations(&mut addrs, &mut sources);
    assert_eq!(addrs, ips(&["2001:db8::1", "192.0.2.1"]));
    assert_eq!(sources.looks, 1);
}

#[test]
fn the_source_of_a_loopback_destination_is_itself() {
    let v4: IpAddr = "127.0.0.1".parse().unwrap();
    assert_eq!(source_address(v4).unwrap(), v4);
    let v6: IpAddr = "::1".parse().unwrap();
    if let Ok(source) = source_address(v6) {
        assert_eq!(source, v6); // unless IPv6 is off on this machine
    }
}

#[test]
fn a_link_local_destination_without_an_interface_has_no_source() {
    let err = source_address("fe80::1".parse().unwrap()).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EINVAL), "{err}");
}

#[test]
fn loopback_addresses_sort_with_their_real_sources() {
    let mut addrs: Vec<IpAddr> = vec!["127.0.0.1".parse().unwrap(), "::1".parse().unwrap()];
    let v6_works = source_address(addrs[1]).is_ok();
    sort_destinations(&mut addrs, &mut ThisMachine);
    let expected: [IpAddr; 2] = if v6_works {
        ["::1".parse().unwrap(), "127.0.0.1".parse().unwrap()]
    } else {
        ["127.0.0.1".parse().unwrap(), "::1".parse().unwrap()]
    };
    assert_eq!(addrs, expected);
}

#[test]
fn one_address_is_left_alone() {
    let mut addrs: Vec<IpAddr> = vec!["fe80::1".parse().unwrap()];
    sort_destinations(&mut addrs, &mut ThisMachine);
    assert_eq!(addrs, ["fe80::1".parse::<IpAddr>().unwrap()]);
}

fn any_destination() -> impl Strategy<Value = Destination> {
    let addr = prop_oneof![
        any::<u128>().prop_map(|n| IpAddr::V6(Ipv6Addr::from(n))),
        any::<u32>().prop_map(|n| IpAddr::V4(n.into())),
    ];
    let flags = (any::<bool>(), any::<bool>())
        .prop_map(|(deprecated, home)| AddressFlags { deprecated, home });
    (addr.clone(), proptest::option::of(addr), flags).prop_map(|(addr, source, source_flags)| {
        Destination {
            addr,
            source,
            source_flags,
        }
    })
}

proptest! {
    #[test]
    fn the_comparator_is_antisymmetric_and_transitive(
        a in any_destination(), b in any_destination(), c in any_destination()
    ) {
        prop_assert_eq!(compare(&a, &b), compare(&b, &a).reverse());
        if compare(&a, &b).is_le() && compare(&b, &c).is_le() {
            prop_assert!(compare(&a, &c).is_le());
        }
    }

    #[test]
    fn sorting_keeps_every_address(raw in proptest::collection::vec(any::<u128>(), 0..8)) {
        let mut addrs: Vec<IpAddr> = raw.iter().map(|n| IpAddr::V6(Ipv6Addr::from(*n))).collect();
        let mut before = addrs.clone();
        sort_destinations(&mut addrs, &mut ThisMachine);
        before.sort();
        let mut after = addrs.clone();
        after.sort();
        prop_assert_eq!(before, after);
    }
}
