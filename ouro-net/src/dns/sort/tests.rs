use super::*;
use proptest::prelude::*;

fn destination(addr: &str, source: Option<&str>) -> Destination {
    Destination {
        addr: addr.parse().unwrap(),
        source: source.map(|s| s.parse().unwrap()),
    }
}

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
    sort_destinations(&mut addrs, source_address);
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
    sort_destinations(&mut addrs, source_address);
    assert_eq!(addrs, ["fe80::1".parse::<IpAddr>().unwrap()]);
}

fn any_destination() -> impl Strategy<Value = Destination> {
    let addr = prop_oneof![
        any::<u128>().prop_map(|n| IpAddr::V6(Ipv6Addr::from(n))),
        any::<u32>().prop_map(|n| IpAddr::V4(n.into())),
    ];
    (addr.clone(), proptest::option::of(addr))
        .prop_map(|(addr, source)| Destination { addr, source })
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
        sort_destinations(&mut addrs, source_address);
        before.sort();
        let mut after = addrs.clone();
        after.sort();
        prop_assert_eq!(before, after);
    }
}
