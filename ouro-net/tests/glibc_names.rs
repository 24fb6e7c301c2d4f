//! Names as glibc's `getaddrinfo` reads them, against a scripted server
//! that records what it is asked: numeric names answered with no query,
//! one-family lookups past hosts entries of the other family, canonical
//! answer names.

mod support;

use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::mpsc;

use ouro_net::dns::{Config, Hosts, RecordType};
use support::*;

const DNS_ADDR: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);

/// A server answering every A question with `DNS_ADDR` (and AAAA with
/// nothing), sending each name asked to `asked`; its config searches
/// `corp.example`.
fn server(asked: mpsc::Sender<String>) -> (ScriptedServer, Config) {
    let server = ScriptedServer::start(
        Box::new(move |_, q| {
            let _ = asked.send(asked_name(q));
            vec![Send::Reply(a_reply(q, &[DNS_ADDR]))]
        }),
        None,
    );
    let config = Config {
        search: vec!["corp.example".into()],
        ..server.config()
    };
    (server, config)
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

#[test]
fn numeric_names_are_answered_without_a_query() {
    let (tx, asked) = mpsc::channel();
    let (_server, config) = server(tx);
    for (name, addr) in [
        ("1.2.3.4", "1.2.3.4"),
        ("127.1", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("0177.0.0.01", "127.0.0.1"),
        ("::1", "::1"),
        ("::ffff:1.2.3.4", "::ffff:1.2.3.4"),
        ("fe80::1%lo", "fe80::1"),
        ("fe80::1%1", "fe80::1"),
    ] {
        let answer = resolve(config.clone(), Hosts::default(), name, None)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(answer.addresses(), [ip(addr)], "{name}");
        assert_eq!(answer.name, name);
    }
    let a = resolve(
        config.clone(),
        Hosts::default(),
        "127.1",
        Some(RecordType::A),
    )
    .unwrap();
    assert_eq!(a.addresses(), [ip("127.0.0.1")]);
    let mapped = resolve(
        config.clone(),
        Hosts::default(),
        "::ffff:1.2.3.4",
        Some(RecordType::A),
    );
    assert_eq!(
        mapped.unwrap().addresses(),
        [ip("1.2.3.4")],
        "glibc maps it"
    );
    for (name, qtype) in [("1.2.3.4", RecordType::Aaaa), ("::1", RecordType::A)] {
        let err = resolve(config.clone(), Hosts::default(), name, Some(qtype)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound, "{name}");
    }
    // A zone by name only on a link-local address; a number on any, with
    // digits alone.
    for zoned in [
        "fe80::1%no-such-if0",
        "::1%lo",
        "2001:db8::1%lo",
        "fe80::1%+1",
    ] {
        let err = resolve(config.clone(), Hosts::default(), zoned, None).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{zoned}");
    }
    assert_eq!(asked.try_iter().count(), 0, "no query");
    // Other types ask for the name as for any name.
    let _ = resolve(config, Hosts::default(), "1.2.3.4", Some(RecordType::Mx));
    assert!(asked.try_iter().any(|n| n == "1.2.3.4"));
}

#[test]
fn a_one_family_lookup_passes_over_hosts_entries_of_the_other_family() {
    let (tx, asked) = mpsc::channel();
    let (_server, config) = server(tx);
    let hosts = Hosts::parse("fd00::6 web.test\n::ffff:192.0.2.9 mapped.test\n");
    let a = resolve(
        config.clone(),
        hosts.clone(),
        "web.test",
        Some(RecordType::A),
    )
    .unwrap();
    assert_eq!(a.addresses(), [IpAddr::V4(DNS_ADDR)]);
    assert!(asked.try_iter().any(|n| n == "web.test"));
    let both = resolve(config.clone(), hosts.clone(), "web.test", None).unwrap();
    assert_eq!(
        both.addresses(),
        [ip("fd00::6")],
        "both families stop at hosts"
    );
    let mapped = resolve(
        config.clone(),
        hosts.clone(),
        "mapped.test",
        Some(RecordType::A),
    );
    assert_eq!(mapped.unwrap().addresses(), [ip("192.0.2.9")]);
    let both = resolve(config.clone(), hosts, "mapped.test", None).unwrap();
    assert_eq!(both.addresses(), [ip("::ffff:192.0.2.9")]);
    // As glibc's files module reads it, `::1` is 127.0.0.1 to an IPv4
    // lookup (Debian lists `ip6-localhost` on `::1` alone).
    let debian = Hosts::parse("::1 localhost ip6-localhost ip6-loopback\n");
    let a = resolve(config, debian, "ip6-localhost", Some(RecordType::A)).unwrap();
    assert_eq!(a.addresses(), [ip("127.0.0.1")]);
    assert_eq!(a.name, "localhost");
    assert_eq!(asked.try_iter().count(), 0, "only web.test's A was asked");
}

#[test]
fn the_answer_name_is_canonical() {
    let (tx, _asked) = mpsc::channel();
    let (_server, config) = server(tx);
    let answer = resolve(
        config.clone(),
        Hosts::default(),
        "w\\eb",
        Some(RecordType::A),
    )
    .unwrap();
    assert_eq!(answer.name, "web.corp.example");
    let hosts = Hosts::parse("10.0.0.1 web.example web alias\n");
    let answer = resolve(config.clone(), hosts.clone(), "alias", None).unwrap();
    assert_eq!(answer.name, "web.example", "the line's official name");
    let answer = resolve(config.clone(), hosts, "al\\ias", Some(RecordType::A)).unwrap();
    assert_eq!(answer.name, "web.example");
    // An official name of dots alone is no name: the one asked for is.
    let dots = Hosts::parse("10.0.0.1 ... dots.test\n");
    let answer = resolve(config, dots, "dots.test", None).unwrap();
    assert_eq!(answer.name, "dots.test");
}
