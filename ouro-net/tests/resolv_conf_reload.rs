//! A resolver made from a temporary `resolv.conf` reads it again when it
//! changes (rewritten in place, replaced by a rename even at the same
//! size, removed), at the start of a lookup and at most once per interval;
//! a file that cannot be read keeps the configuration in use, and a FIFO
//! or a device in its place is refused at once, never read on the ring's
//! thread (a FIFO would block it, `/dev/zero` never ends). The lookups
//! are of `localhost` (answered without a server: the file's servers are
//! on port 53, which the tests cannot own); the configuration they see is
//! the resolver's.

mod support;

#[path = "../../ouro/tests/common/watchdog.rs"]
mod watchdog;

use std::fs;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use ouro::{Ctx, Ring, RunMode};
use ouro_net::dns::{Hosts, Resolver};
use support::{make_fifo, on_answer, to_resolver, State};

/// A ring and a resolver watching `path`, looking at it at most once per
/// `every`.
fn watching(path: &Path, every: Duration) -> (Ring<State>, State) {
    let mut ring = Ring::new(16).unwrap();
    let resolver = Resolver::from_resolv_conf(
        &mut ring,
        path,
        every,
        Hosts::default(),
        Ctx::new(to_resolver),
    )
    .unwrap();
    let state = State {
        resolver: Some(resolver),
        answers: Vec::new(),
    };
    (ring, state)
}

/// Looks `localhost` up (which is when the file is looked at) and returns
/// the nameservers and search list then in use.
fn lookup(ring: &mut Ring<State>, state: &mut State) -> (Vec<SocketAddr>, Vec<String>) {
    let resolver = state.resolver.as_mut().unwrap();
    resolver.lookup_ip(ring, "localhost", Ctx::new(on_answer));
    ring.run(state, RunMode::UntilDone).unwrap();
    let answer = state.answers.pop().expect("one answer").unwrap();
    assert_eq!(answer.addresses().len(), 2);
    let config = state.resolver.as_ref().unwrap().config();
    (config.nameservers.clone(), config.search.clone())
}

fn server(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

#[test]
fn a_file_rewritten_in_place_is_read_again_at_the_next_lookup() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("resolv.conf");
    fs::write(&path, "nameserver 192.0.2.1\nsearch one.test\n").unwrap();
    let (mut ring, mut state) = watching(&path, Duration::ZERO);
    let (servers, search) = lookup(&mut ring, &mut state);
    assert_eq!(servers, vec![server("192.0.2.1:53")]);
    assert_eq!(search, vec!["one.test"]);

    fs::write(&path, "nameserver 192.0.2.2\nnameserver 192.0.2.3\n").unwrap();
    let (servers, search) = lookup(&mut ring, &mut state);
    assert_eq!(
        servers,
        vec![server("192.0.2.2:53"), server("192.0.2.3:53")]
    );
    assert_eq!(search, search_without_a_line());
    assert_eq!(lookup(&mut ring, &mut state).0.len(), 2, "unchanged");
}

#[test]
fn a_file_replaced_by_a_rename_at_the_same_size_is_read_again() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("resolv.conf");
    fs::write(&path, "nameserver 192.0.2.1\n").unwrap();
    let (mut ring, mut state) = watching(&path, Duration::ZERO);
    assert_eq!(
        lookup(&mut ring, &mut state).0,
        vec![server("192.0.2.1:53")]
    );

    support::replace_keeping_size_and_mtime(&path, "nameserver 192.0.2.9\n");
    assert_eq!(
        lookup(&mut ring, &mut state).0,
        vec![server("192.0.2.9:53")]
    );
}

#[test]
fn the_file_is_looked_at_at_most_once_per_interval() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("resolv.conf");
    fs::write(&path, "nameserver 192.0.2.1\n").unwrap();
    let (mut ring, mut state) = watching(&path, Duration::from_secs(3600));
    fs::write(&path, "nameserver 192.0.2.2\nsearch two.test\n").unwrap();
    let (servers, _) = lookup(&mut ring, &mut state);
    assert_eq!(
        servers,
        vec![server("192.0.2.1:53")],
        "read within the hour"
    );

    let every = Duration::from_millis(20);
    let (mut ring, mut state) = watching(&path, every);
    fs::write(&path, "nameserver 192.0.2.3\n").unwrap();
    std::thread::sleep(every * 2);
    assert_eq!(
        lookup(&mut ring, &mut state).0,
        vec![server("192.0.2.3:53")]
    );
}

#[test]
fn a_removed_file_gives_the_defaults_and_an_unreadable_one_keeps_the_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("resolv.conf");
    fs::write(&path, "nameserver 192.0.2.1\nsearch one.test\n").unwrap();
    let (mut ring, mut state) = watching(&path, Duration::ZERO);
    lookup(&mut ring, &mut state);

    // A directory in its place: it can be looked at, not read.
    fs::remove_file(&path).unwrap();
    fs::create_dir(&path).unwrap();
    let (servers, search) = lookup(&mut ring, &mut state);
    assert_eq!(servers, vec![server("192.0.2.1:53")]);
    assert_eq!(search, vec!["one.test"]);

    fs::remove_dir(&path).unwrap();
    let (servers, search) = lookup(&mut ring, &mut state);
    assert_eq!(servers, vec![server("127.0.0.1:53")]);
    assert_eq!(search, search_without_a_line());

    fs::write(&path, "nameserver 192.0.2.4\n").unwrap();
    assert_eq!(
        lookup(&mut ring, &mut state).0,
        vec![server("192.0.2.4:53")]
    );
}

#[test]
fn a_file_that_cannot_be_read_at_first_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut ring = Ring::<State>::new(16).unwrap();
    let made = Resolver::from_resolv_conf(
        &mut ring,
        dir.path(),
        Duration::ZERO,
        Hosts::default(),
        Ctx::new(to_resolver),
    );
    assert!(made.is_err(), "a directory was read as resolv.conf");
}

#[test]
fn a_fifo_or_a_device_in_the_files_place_is_refused_at_once() {
    let _limit = watchdog::AbortAfter::new(Duration::from_secs(30));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("resolv.conf");
    fs::write(&path, "nameserver 192.0.2.1\n").unwrap();
    let (mut ring, mut state) = watching(&path, Duration::ZERO);
    lookup(&mut ring, &mut state);
    fs::remove_file(&path).unwrap();
    make_fifo(&path);
    assert_eq!(
        lookup(&mut ring, &mut state).0,
        vec![server("192.0.2.1:53")]
    );
    fs::remove_file(&path).unwrap();
    std::os::unix::fs::symlink("/dev/zero", &path).unwrap();
    assert_eq!(
        lookup(&mut ring, &mut state).0,
        vec![server("192.0.2.1:53")]
    );

    for (what, make) in [
        ("a FIFO", make_fifo as fn(&Path)),
        ("/dev/zero", |path: &Path| {
            std::os::unix::fs::symlink("/dev/zero", path).unwrap()
        }),
    ] {
        let first = dir.path().join(format!("first-{}", what.len()));
        make(&first);
        let mut ring = Ring::<State>::new(16).unwrap();
        let made = Resolver::from_resolv_conf(
            &mut ring,
            &first,
            Duration::ZERO,
            Hosts::default(),
            Ctx::new(to_resolver),
        );
        let err = made
            .err()
            .unwrap_or_else(|| panic!("{what} was read as resolv.conf"));
        assert!(
            err.to_string().contains("not a regular file"),
            "{what}: {err}"
        );
    }
}

/// The search list of a resolv.conf with no `search` or `domain` line on
/// this machine: the domain of its host name, if the name has one.
fn search_without_a_line() -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("resolv.conf");
    fs::write(&path, "nameserver 192.0.2.9\n").unwrap();
    ouro_net::dns::Config::from_file(&path).unwrap().search
}
