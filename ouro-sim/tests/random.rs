//! The ring's random source: seeded under the simulator (the same seed
//! gives the same numbers, another seed others), the OS CSPRNG on a real
//! ring; and its route lookups.

use ouro::sim::World;
use ouro::Ring;

fn simulated_draws(seed: u64) -> Vec<u64> {
    let world = World::new(seed);
    let mut ring: Ring<()> = Ring::simulated(&world);
    (0..8).map(|_| ring.random_u64().unwrap()).collect()
}

#[test]
fn a_simulated_rings_random_numbers_replay_from_the_seed() {
    let first = simulated_draws(5);
    assert_eq!(first, simulated_draws(5));
    assert_ne!(first, simulated_draws(6));
    let distinct: std::collections::BTreeSet<_> = first.iter().collect();
    assert_eq!(distinct.len(), first.len(), "no number repeats in 8 draws");
}

#[test]
fn the_users_stream_is_not_shifted_by_the_rings_draws() {
    let world = World::new(9);
    let untouched = World::new(9).random();
    let mut ring: Ring<()> = Ring::simulated(&world);
    ring.random_u64().unwrap();
    assert_eq!(world.random(), untouched);
}

#[test]
fn a_real_rings_random_numbers_differ_from_draw_to_draw() {
    let mut ring: Ring<()> = Ring::new(8).unwrap();
    let draws: std::collections::BTreeSet<u64> =
        (0..8).map(|_| ring.random_u64().unwrap()).collect();
    assert_eq!(draws.len(), 8);
}

/// Route lookups are the machine's on a real ring and the world's under
/// the simulator, where every address is reached from its own family and
/// scope whatever this machine's routes are (an IPv6 documentation
/// address has no route on most machines).
#[test]
fn a_simulated_rings_route_lookups_do_not_depend_on_the_machine() {
    let world = World::new(1);
    let mut ring: Ring<()> = Ring::simulated(&world);
    for dest in ["2001:db8::7", "fe80::1", "192.0.2.9", "10.0.0.1"] {
        let dest: std::net::IpAddr = dest.parse().unwrap();
        assert_eq!(ring.source_address(dest).unwrap(), dest);
    }
    let mut real: Ring<()> = Ring::new(8).unwrap();
    let loopback = std::net::IpAddr::from([127, 0, 0, 1]);
    assert_eq!(real.source_address(loopback).unwrap(), loopback);
    let link_local: std::net::IpAddr = "fe80::1".parse().unwrap();
    assert!(
        real.source_address(link_local).is_err(),
        "a link-local IPv6 address needs an interface on a real machine"
    );
}

/// The address flags RFC 6724 rules 3 and 4 read are the machine's on a
/// real ring (`::1` is among them wherever IPv6 is on) and none under the
/// simulator, so a seed orders addresses the same on every machine.
#[test]
fn a_simulated_ring_has_no_address_flags_from_the_machine() {
    let world = World::new(1);
    let mut ring: Ring<()> = Ring::simulated(&world);
    assert_eq!(ring.local_address_flags().unwrap().iter().count(), 0);
    let mut real: Ring<()> = Ring::new(8).unwrap();
    let loopback = std::net::Ipv6Addr::LOCALHOST;
    if real.source_address(loopback.into()).is_ok() {
        let table = real.local_address_flags().unwrap();
        assert!(table.iter().any(|(addr, _)| addr == loopback), "{table:?}");
    }
}
