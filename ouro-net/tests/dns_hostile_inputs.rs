//! The resolver given hostile inputs by its caller and its files rather
//! than by a server: extreme durations, files that are not all UTF-8,
//! names with escapes or empty labels. Each gets an answer or an honest
//! error, never a panic or a time-out.

mod support;

use std::fs;
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::mpsc;
use std::time::Duration;

use ouro::{Ctx, Ring, RunMode};
use ouro_net::dns::{Hosts, RecordType, Resolver};
use support::*;

const GOOD: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);

/// A server answering every A question with `GOOD`, telling `asked` the
/// names it was asked for.
fn answering_server(asked: mpsc::Sender<String>) -> ScriptedServer {
    ScriptedServer::start(
        Box::new(move |_, q| {
            let _ = asked.send(asked_name(q));
            vec![Send::Reply(a_reply(q, &[GOOD]))]
        }),
        None,
    )
}

#[test]
fn a_try_timeout_of_duration_max_waits_for_the_answer() {
    let (asked, _) = mpsc::channel();
    let server = answering_server(asked);
    let mut config = server.config();
    config.timeout = Duration::MAX;
    let answer = resolve(config, Hosts::default(), "www.test", Some(RecordType::A));
    assert_eq!(answer.unwrap().addresses(), [IpAddr::V4(GOOD)]);
}

#[test]
fn a_reload_interval_of_duration_max_reads_the_file_once() {
    let dir = tempfile::tempdir().unwrap();
    let (resolv_conf, hosts) = (dir.path().join("resolv.conf"), dir.path().join("hosts"));
    fs::write(&resolv_conf, "nameserver 127.0.0.9\n").unwrap();
    fs::write(&hosts, "10.1.2.3 db\n").unwrap();
    let mut ring = Ring::<State>::new(8).unwrap();
    let ctx = Ctx::new(to_resolver);
    let resolver = Resolver::from_files(&mut ring, resolv_conf, &hosts, Duration::MAX, ctx);
    let mut state = State {
        resolver: Some(resolver.unwrap()),
        answers: Vec::new(),
    };
    fs::write(&hosts, "10.9.9.9 db\n").unwrap();
    let found = addresses_of(&mut ring, &mut state, "db");
    assert_eq!(found, [addr("10.1.2.3")], "never looked at again");
}

fn addr(text: &str) -> IpAddr {
    text.parse().unwrap()
}

/// The addresses a lookup of `name` finds.
fn addresses_of(ring: &mut Ring<State>, state: &mut State, name: &str) -> Vec<IpAddr> {
    let resolver = state.resolver.as_mut().unwrap();
    resolver.lookup_ip(ring, name, Ctx::new(on_answer));
    ring.run(state, RunMode::UntilDone).unwrap();
    state.answers.pop().unwrap().unwrap().addresses()
}

#[test]
fn a_resolv_conf_with_bytes_that_are_not_utf8_keeps_its_other_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("resolv.conf");
    let text: &[u8] = b"# r\xe9seau du bureau\nnameserver 127.0.0.9 # \xff\n\
        search caf\xe9.example\nsearch corp.example\nnameserver 127.0.\xe9.1\noptions ndots:3\n";
    fs::write(&path, text).unwrap();
    let mut ring = Ring::<State>::new(8).unwrap();
    let every = Duration::from_secs(5);
    let ctx = Ctx::new(to_resolver);
    let resolver = Resolver::from_resolv_conf(&mut ring, &path, every, Hosts::default(), ctx);
    let config = resolver.expect("read as glibc reads it").config().clone();
    assert_eq!(config.nameservers, ["127.0.0.9:53".parse().unwrap()]);
    assert_eq!(config.search, ["corp.example"]);
    assert_eq!(config.ndots, 3);
}

/// A ring and a resolver watching `hosts` (and an empty `resolv.conf`),
/// looking at them before every lookup.
fn watching_hosts(hosts: &std::path::Path) -> io::Result<(Ring<State>, State)> {
    let resolv_conf = hosts.with_file_name("resolv.conf");
    fs::write(&resolv_conf, "").unwrap();
    let mut ring = Ring::new(8).unwrap();
    let ctx = Ctx::new(to_resolver);
    let resolver = Resolver::from_files(&mut ring, resolv_conf, hosts, Duration::ZERO, ctx)?;
    let state = State {
        resolver: Some(resolver),
        answers: Vec::new(),
    };
    Ok((ring, state))
}

#[test]
fn a_hosts_file_with_bytes_that_are_not_utf8_keeps_its_other_lines() {
    let dir = tempfile::tempdir().unwrap();
    let hosts = dir.path().join("hosts");
    let text: &[u8] = b"10.1.2.3 db # serveur de donn\xe9es\n10.4.5.6 caf\xe9 web\n10.7.8.9 web\n";
    fs::write(&hosts, text).unwrap();
    let (_ring, state) = watching_hosts(&hosts).expect("read as glibc reads it");
    let entries = state.resolver.as_ref().unwrap().hosts();
    assert_eq!(entries.addresses("db"), [addr("10.1.2.3")]);
    assert_eq!(entries.addresses("web"), [addr("10.7.8.9")]);
}

#[test]
fn a_hosts_file_edited_to_hold_a_byte_that_is_not_utf8_is_read_again() {
    let dir = tempfile::tempdir().unwrap();
    let hosts = dir.path().join("hosts");
    fs::write(&hosts, "10.1.2.3 db\n").unwrap();
    let (mut ring, mut state) = watching_hosts(&hosts).unwrap();
    fs::write(&hosts, b"10.9.9.9 db # d\xe9plac\xe9\n").unwrap();
    let found = addresses_of(&mut ring, &mut state, "db");
    assert_eq!(found, [addr("10.9.9.9")], "the edit was ignored");
}

#[test]
fn a_name_with_escapes_takes_the_answer_to_its_question() {
    let (asked, names) = mpsc::channel();
    let server = answering_server(asked);
    // A label holding a dot, as `\046` and as `\.`.
    for name in ["\\046.test", "a\\.b.test", "A\\.B.test."] {
        let answer = resolve(server.config(), Hosts::default(), name, Some(RecordType::A));
        let answer = answer.unwrap_or_else(|e| panic!("{name:?}: {e}"));
        assert_eq!(answer.addresses(), [IpAddr::V4(GOOD)], "{name:?}");
    }
    let asked: Vec<String> = names.try_iter().collect();
    assert_eq!(asked, ["\\..test", "a\\.b.test", "a\\.b.test"]);
}

#[test]
fn a_dangling_escape_is_invalid_input_and_never_asked_for() {
    let (asked, names) = mpsc::channel();
    let server = answering_server(asked);
    let mut config = server.config();
    config.search = vec!["corp.test".to_string()];
    for name in ["a\\", "\\", "a\\\\\\", "\\999.test"] {
        let err = resolve(config.clone(), Hosts::default(), name, Some(RecordType::A));
        let err = err.expect_err(name);
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{name:?}: {err}");
    }
    let asked: Vec<String> = names.try_iter().collect();
    assert!(asked.is_empty(), "asked for {asked:?}");
}

#[test]
fn names_that_are_not_printable_ascii_are_invalid_input_and_never_asked_for() {
    let (asked, names) = mpsc::channel();
    let server = answering_server(asked);
    let hosts = Hosts::parse("10.1.2.3 a\n");
    for name in [
        "a b.test",
        "a\0.test",
        "a\r\nb.test",
        "a\t",
        "bücher.test",
        "a\\\u{7f}.test",
        "a\0.localhost",
        "a ",
    ] {
        let err = resolve(server.config(), hosts.clone(), name, None).expect_err(name);
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{name:?}: {err}");
    }
    let err = resolve(server.config(), hosts, "bücher.test", None).unwrap_err();
    assert!(err.to_string().contains("xn--"), "{err}");
    let asked: Vec<String> = names.try_iter().collect();
    assert!(asked.is_empty(), "asked for {asked:?}");
}

#[test]
fn an_escaped_backslash_is_joined_with_the_search_domains() {
    let (asked, names) = mpsc::channel();
    let server = answering_server(asked);
    let mut config = server.config();
    config.search = vec!["corp.test".to_string()];
    let answer = resolve(config, Hosts::default(), "a\\\\", Some(RecordType::A));
    assert_eq!(answer.unwrap().addresses(), [IpAddr::V4(GOOD)]);
    let asked: Vec<String> = names.try_iter().collect();
    assert_eq!(asked, ["a\\\\.corp.test"]);
}

#[test]
fn names_with_empty_labels_are_invalid_input_under_localhost_too() {
    let (asked, names) = mpsc::channel();
    let server = answering_server(asked);
    let hosts = Hosts::parse("10.1.2.3 a\n");
    for name in [
        ".localhost",
        "..localhost",
        "LOCALHOST..",
        "a..",
        ".a",
        "a..b",
        ".",
        "",
    ] {
        let err = resolve(server.config(), hosts.clone(), name, None).expect_err(name);
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{name:?}: {err}");
    }
    let asked: Vec<String> = names.try_iter().collect();
    assert!(asked.is_empty(), "asked for {asked:?}");
}
