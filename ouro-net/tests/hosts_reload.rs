//! A resolver made from a temporary hosts file reads it again when it
//! changes (rewritten in place, replaced by a rename even at the same
//! size, removed), at the start of a lookup and at most once per interval;
//! a file that cannot be read keeps the entries in use. The lookups are
//! of names the hosts file answers (no server is asked); the entries they
//! see are the resolver's.

mod support;

#[path = "../../ouro/tests/common/watchdog.rs"]
mod watchdog;

use std::fs;
use std::io;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use ouro::{Ctx, Ring, RunMode};
use ouro_net::dns::{Hosts, Resolver};
use support::{make_fifo, on_answer, to_resolver, State};

/// A ring and a resolver watching the hosts file at `hosts` (and an empty
/// `resolv.conf` beside it), looking at them at most once per `every`.
fn watching(hosts: &Path, every: Duration) -> (Ring<State>, State) {
    let resolv_conf = hosts.with_file_name("resolv.conf");
    fs::write(&resolv_conf, "").unwrap();
    let mut ring = Ring::new(16).unwrap();
    let resolver =
        Resolver::from_files(&mut ring, resolv_conf, hosts, every, Ctx::new(to_resolver)).unwrap();
    let state = State {
        resolver: Some(resolver),
        answers: Vec::new(),
    };
    (ring, state)
}

/// The addresses of `web.test` in the entries in use, as the resolver
/// sees them when a lookup starts (which is when the file is looked at).
fn web(ring: &mut Ring<State>, state: &mut State) -> Vec<IpAddr> {
    let resolver = state.resolver.as_mut().unwrap();
    resolver.lookup_ip(ring, "localhost", Ctx::new(on_answer));
    ring.run(state, RunMode::UntilDone).unwrap();
    state.answers.pop().expect("one answer").unwrap();
    let hosts = state.resolver.as_ref().unwrap().hosts();
    hosts.addresses("web.test").to_vec()
}

/// Looks `name` up and returns its addresses (the hosts file answers it).
fn lookup(ring: &mut Ring<State>, state: &mut State, name: &str) -> Vec<IpAddr> {
    let resolver = state.resolver.as_mut().unwrap();
    resolver.lookup_ip(ring, name, Ctx::new(on_answer));
    ring.run(state, RunMode::UntilDone).unwrap();
    state
        .answers
        .pop()
        .expect("one answer")
        .unwrap()
        .addresses()
}

fn addr(text: &str) -> IpAddr {
    text.parse().unwrap()
}

#[test]
fn a_file_rewritten_in_place_is_read_again_at_the_next_lookup() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hosts");
    fs::write(&path, "192.0.2.1 web.test\n").unwrap();
    let (mut ring, mut state) = watching(&path, Duration::ZERO);
    assert_eq!(
        lookup(&mut ring, &mut state, "web.test"),
        [addr("192.0.2.1")]
    );

    fs::write(&path, "192.0.2.2 web.test\n192.0.2.3 db.test\n").unwrap();
    assert_eq!(
        lookup(&mut ring, &mut state, "web.test"),
        [addr("192.0.2.2")]
    );
    assert_eq!(
        lookup(&mut ring, &mut state, "db.test"),
        [addr("192.0.2.3")]
    );
}

#[test]
fn a_file_replaced_by_a_rename_at_the_same_size_is_read_again() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hosts");
    fs::write(&path, "192.0.2.1 web.test\n").unwrap();
    let (mut ring, mut state) = watching(&path, Duration::ZERO);
    assert_eq!(web(&mut ring, &mut state), [addr("192.0.2.1")]);

    support::replace_keeping_size_and_mtime(&path, "192.0.2.9 web.test\n");
    assert_eq!(
        lookup(&mut ring, &mut state, "web.test"),
        [addr("192.0.2.9")]
    );
}

#[test]
fn the_file_is_looked_at_at_most_once_per_interval() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hosts");
    fs::write(&path, "192.0.2.1 web.test\n").unwrap();
    let (mut ring, mut state) = watching(&path, Duration::from_secs(3600));
    fs::write(&path, "192.0.2.2 web.test\n").unwrap();
    assert_eq!(
        web(&mut ring, &mut state),
        [addr("192.0.2.1")],
        "read within the hour"
    );

    let every = Duration::from_millis(20);
    let (mut ring, mut state) = watching(&path, every);
    fs::write(&path, "192.0.2.3 web.test\n").unwrap();
    std::thread::sleep(every * 2);
    assert_eq!(web(&mut ring, &mut state), [addr("192.0.2.3")]);
}

#[test]
fn a_removed_file_has_no_entries_and_an_unreadable_one_keeps_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hosts");
    fs::write(&path, "192.0.2.1 web.test\n").unwrap();
    let (mut ring, mut state) = watching(&path, Duration::ZERO);
    assert_eq!(web(&mut ring, &mut state), [addr("192.0.2.1")]);

    // A directory in its place: it can be looked at, not read.
    fs::remove_file(&path).unwrap();
    fs::create_dir(&path).unwrap();
    assert_eq!(
        lookup(&mut ring, &mut state, "web.test"),
        [addr("192.0.2.1")]
    );

    fs::remove_dir(&path).unwrap();
    assert!(web(&mut ring, &mut state).is_empty());

    fs::write(&path, "192.0.2.4 web.test\n").unwrap();
    assert_eq!(
        lookup(&mut ring, &mut state, "web.test"),
        [addr("192.0.2.4")]
    );
}

#[test]
fn a_hosts_file_that_cannot_be_read_at_first_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let resolv_conf = dir.path().join("resolv.conf");
    fs::write(&resolv_conf, "").unwrap();
    let mut ring = Ring::<State>::new(16).unwrap();
    let made = Resolver::from_files(
        &mut ring,
        resolv_conf,
        dir.path(),
        Duration::ZERO,
        Ctx::new(to_resolver),
    );
    let err = made.err().expect("a directory was read as a hosts file");
    assert_ne!(err.kind(), io::ErrorKind::NotFound);
}

/// A FIFO in the hosts file's place is refused at once (read on the
/// ring's thread, it would block it) and the entries are kept.
#[test]
fn a_fifo_in_the_files_place_is_refused_at_once() {
    let _limit = watchdog::AbortAfter::new(Duration::from_secs(30));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hosts");
    fs::write(&path, "192.0.2.1 web.test\n").unwrap();
    let (mut ring, mut state) = watching(&path, Duration::ZERO);
    assert_eq!(web(&mut ring, &mut state), [addr("192.0.2.1")]);
    fs::remove_file(&path).unwrap();
    make_fifo(&path);
    assert_eq!(web(&mut ring, &mut state), [addr("192.0.2.1")]);
}

/// 200,000 lines listing addresses for one name parse in one pass (each
/// address once, in file order): looking for each among those before
/// took minutes, here caught by the watchdog.
#[test]
fn many_addresses_for_one_name_parse_in_one_pass() {
    let _limit = watchdog::AbortAfter::new(Duration::from_secs(60));
    let mut text = String::new();
    for i in 0..200_000u32 {
        let [low, mid, high, _] = i.to_le_bytes();
        text.push_str(&format!("10.{high}.{mid}.{low} same.test\n"));
    }
    text.push_str("10.0.0.0 same.test\n");
    let hosts = Hosts::parse(&text);
    let addrs = hosts.addresses("same.test");
    assert_eq!(addrs.len(), 200_000, "the repeated address counts once");
    assert_eq!(addrs[1], addr("10.0.0.1"));
}
