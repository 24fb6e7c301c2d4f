//! RFC 6724 order with the sources the kernel really picks: in a network
//! namespace of its own (the test starts itself again under `unshare
//! --net`, which needs root) with loopback up and one end of a veth pair
//! holding an IPv4, a ULA, a global and a link-local IPv6 address, no
//! default routes. Each order is found twice, by the machine directly and
//! by a ring (`OURO_BACKEND` chooses its backend), and must agree. Ignored
//! by default: it needs root, `unshare` and `ip`.

use std::net::IpAddr;
use std::process::Command;

use ouro::net::{local_address_flags, AddressFlags};
use ouro::Ring;
use ouro_net::dns::sort::{sort_destinations, source_address, ThisMachine};

/// Set in the environment of the test started again in its namespace.
const IN_NAMESPACE: &str = "OURO_NET_ADDRESS_ORDER_NAMESPACE";

fn ip(args: &str) {
    let status = Command::new("ip")
        .args(args.split_whitespace())
        .status()
        .expect("ip runs");
    assert!(status.success(), "ip {args}: {status}");
}

fn addr(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn addrs(texts: &[&str]) -> Vec<IpAddr> {
    texts.iter().map(|t| addr(t)).collect()
}

fn sorted(texts: &[&str]) -> Vec<IpAddr> {
    let mut addrs = addrs(texts);
    sort_destinations(&mut addrs, &mut ThisMachine);
    let mut by_ring = self::addrs(texts);
    let mut ring = Ring::<()>::new(8).unwrap();
    sort_destinations(&mut by_ring, &mut ring);
    assert_eq!(
        by_ring,
        addrs,
        "the ring ({}) and the machine",
        ring.backend_description()
    );
    addrs
}

/// The flags the kernel's address table gives `local`.
fn flags_of(local: &str) -> AddressFlags {
    local_address_flags().unwrap().of(addr(local))
}

/// Runs `test` again under `unshare --net`, or, when already there, sets
/// the namespace's interfaces up; true when the caller is the copy in the
/// namespace.
fn in_own_namespace(test: &str) -> bool {
    if std::env::var_os(IN_NAMESPACE).is_some() {
        ip("link set lo up");
        ip("link add ouro0 type veth peer name ouro1");
        ip("addr add 192.0.2.1/24 dev ouro0");
        for v6 in ["fd00:1::1/64", "2001:db8:1::1/64", "fe80::1/64"] {
            ip(&format!("addr add {v6} dev ouro0 nodad"));
        }
        ip("link set ouro0 up");
        ip("link set ouro1 up");
        ip("route add 2001:db8:2::/64 dev ouro0");
        return true;
    }
    let status = Command::new("unshare")
        .args(["--net", "--"])
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", test, "--include-ignored", "--nocapture"])
        .env(IN_NAMESPACE, "1")
        .status()
        .expect("unshare runs");
    assert!(status.success(), "{test} in its namespace: {status}");
    false
}

#[test]
#[ignore = "needs root, unshare and ip"]
fn the_kernel_picks_each_destinations_source() {
    if !in_own_namespace("the_kernel_picks_each_destinations_source") {
        return;
    }
    let source = |dest| source_address(addr(dest)).map_err(|e| e.raw_os_error());
    assert_eq!(source("127.0.0.1"), Ok(addr("127.0.0.1")));
    assert_eq!(source("::1"), Ok(addr("::1")));
    assert_eq!(source("192.0.2.7"), Ok(addr("192.0.2.1")));
    assert_eq!(source("fd00:1::7"), Ok(addr("fd00:1::1")));
    assert_eq!(source("2001:db8:1::7"), Ok(addr("2001:db8:1::1")));
    assert_eq!(source("2001:db8:2::7"), Ok(addr("2001:db8:1::1")));
    assert_eq!(source("198.51.100.7"), Err(Some(libc::ENETUNREACH)));
    assert_eq!(source("2001:db8:99::7"), Err(Some(libc::ENETUNREACH)));
    assert_eq!(source("fe80::7"), Err(Some(libc::EINVAL)));
}

#[test]
#[ignore = "needs root, unshare and ip"]
fn loopback_link_local_ula_and_global_sort_by_their_sources() {
    if !in_own_namespace("loopback_link_local_ula_and_global_sort_by_their_sources") {
        return;
    }
    assert_eq!(
        sorted(&[
            "198.51.100.7",
            "fe80::7",
            "fd00:1::7",
            "192.0.2.7",
            "2001:db8:99::7",
            "127.0.0.1",
            "2001:db8:1::7",
            "::1",
        ]),
        addrs(&[
            "::1",           // precedence 50
            "2001:db8:1::7", // 40
            "127.0.0.1",     // 35, link-local scope
            "192.0.2.7",     // 35, global scope
            "fd00:1::7",     // 3
            "fe80::7",       // no source (no interface): last, IPv6 first
            "2001:db8:99::7",
            "198.51.100.7", // no route
        ])
    );
}

#[test]
#[ignore = "needs root, unshare and ip"]
fn the_destination_sharing_the_longer_prefix_with_its_source_goes_first() {
    if !in_own_namespace("the_destination_sharing_the_longer_prefix_with_its_source_goes_first") {
        return;
    }
    assert_eq!(
        sorted(&["2001:db8:2::7", "2001:db8:1::7"]),
        addrs(&["2001:db8:1::7", "2001:db8:2::7"])
    );
}

#[test]
#[ignore = "needs root, unshare and ip"]
fn a_global_destination_reached_from_a_ula_source_goes_after_ipv4() {
    if !in_own_namespace("a_global_destination_reached_from_a_ula_source_goes_after_ipv4") {
        return;
    }
    ip("addr del 2001:db8:1::1/64 dev ouro0");
    ip("route add 2001:db8:1::/64 dev ouro0");
    assert_eq!(
        source_address(addr("2001:db8:1::7")).unwrap(),
        addr("fd00:1::1")
    );
    assert_eq!(
        sorted(&["2001:db8:1::7", "192.0.2.7"]),
        addrs(&["192.0.2.7", "2001:db8:1::7"])
    );
}

#[test]
#[ignore = "needs root, unshare and ip"]
fn a_destination_reached_from_a_deprecated_source_goes_after_the_others() {
    if !in_own_namespace("a_destination_reached_from_a_deprecated_source_goes_after_the_others") {
        return;
    }
    ip("addr add 2001:db8:3::1/64 dev ouro0 nodad preferred_lft 0");
    ip("route add 2001:db8:3:1::/64 dev ouro0 src 2001:db8:3::1");
    assert_eq!(
        source_address(addr("2001:db8:3:1::7")).unwrap(),
        addr("2001:db8:3::1")
    );
    assert_eq!(
        source_address(addr("2001:db8:2::7")).unwrap(),
        addr("2001:db8:1::1")
    );
    assert!(flags_of("2001:db8:3::1").deprecated);
    assert!(!flags_of("2001:db8:1::1").deprecated);
    // Rule 9 alone would put 2001:db8:3:1::7 first: it shares 63 bits
    // with its source, 2001:db8:2::7 only 46.
    assert_eq!(
        sorted(&["2001:db8:3:1::7", "2001:db8:2::7"]),
        addrs(&["2001:db8:2::7", "2001:db8:3:1::7"])
    );
    // Rule 6 alone would put IPv6 first.
    assert_eq!(
        sorted(&["2001:db8:3:1::7", "192.0.2.7"]),
        addrs(&["192.0.2.7", "2001:db8:3:1::7"])
    );
}

#[test]
#[ignore = "needs root, unshare and ip"]
fn a_destination_reached_from_a_home_address_goes_first() {
    if !in_own_namespace("a_destination_reached_from_a_home_address_goes_first") {
        return;
    }
    ip("addr add 2001:db8:4::1/64 dev ouro0 nodad home");
    ip("route add 2001:db8:5::/64 dev ouro0 src 2001:db8:4::1");
    assert_eq!(
        source_address(addr("2001:db8:5::7")).unwrap(),
        addr("2001:db8:4::1")
    );
    assert_eq!(
        source_address(addr("2001:db8:1::7")).unwrap(),
        addr("2001:db8:1::1")
    );
    assert!(flags_of("2001:db8:4::1").home);
    assert!(!flags_of("2001:db8:1::1").home);
    // Rule 9 alone would keep 2001:db8:1::7 first: it shares 64 bits with
    // its source, 2001:db8:5::7 only 45.
    assert_eq!(
        sorted(&["2001:db8:1::7", "2001:db8:5::7"]),
        addrs(&["2001:db8:5::7", "2001:db8:1::7"])
    );
}

/// Makes `socket(AF_NETLINK, ...)` fail with `EPERM` on this thread, as a
/// sandbox's seccomp filter may.
#[cfg(target_os = "linux")]
fn forbid_netlink() {
    use seccompiler::{
        BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
        SeccompRule,
    };
    let netlink = SeccompCondition::new(
        0,
        SeccompCmpArgLen::Dword,
        SeccompCmpOp::Eq,
        libc::AF_NETLINK as u64,
    )
    .unwrap();
    let rules = [(
        libc::SYS_socket,
        vec![SeccompRule::new(vec![netlink]).unwrap()],
    )];
    let filter = SeccompFilter::new(
        rules.into_iter().collect(),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        std::env::consts::ARCH.try_into().unwrap(),
    )
    .unwrap();
    let program: BpfProgram = filter.try_into().unwrap();
    seccompiler::apply_filter(&program).unwrap();
}

#[cfg(target_os = "linux")]
#[test]
#[ignore = "needs root, unshare and ip"]
fn with_netlink_refused_a_deprecated_source_is_not_known_and_the_sort_goes_on() {
    if !in_own_namespace(
        "with_netlink_refused_a_deprecated_source_is_not_known_and_the_sort_goes_on",
    ) {
        return;
    }
    ip("addr add 2001:db8:3::1/64 dev ouro0 nodad preferred_lft 0");
    ip("route add 2001:db8:3:1::/64 dev ouro0 src 2001:db8:3::1");
    forbid_netlink();
    let err = local_address_flags().unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EPERM), "{err}");
    // Without the flags, rule 9 decides, as it would without rule 3.
    assert_eq!(
        sorted(&["2001:db8:2::7", "2001:db8:3:1::7"]),
        addrs(&["2001:db8:3:1::7", "2001:db8:2::7"])
    );
}
