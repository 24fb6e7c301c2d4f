//! The resolver against a real server: `dnsmasq`, started by each test on
//! 127.0.0.1 and a free port with its records on the command line
//! (`support/dnsmasq.rs`), every answer cross-checked with `dig`; and
//! connect by name through it to a loopback listener. Ignored by default:
//! they need `dnsmasq` and `dig` (`.ci/run` installs them). Each runs on
//! the ring's default backend (`OURO_BACKEND=poll` for the readiness one).

mod support;

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};
use std::time::Duration;

use ouro::{Completion, Ctx, Ring, RunMode};
use ouro_net::connect::{connected, Connected, Connector};
use ouro_net::dns::{Answer, Config, Hosts, Record, RecordType};
use support::dnsmasq::{dig_txt, short_form, Dnsmasq};
use support::resolve;

fn lookup(config: Config, name: &str, qtype: RecordType) -> Answer {
    resolve(config, Hosts::default(), name, Some(qtype))
        .unwrap_or_else(|e| panic!("{name} {qtype:?}: {e}"))
}

fn sorted(mut lines: Vec<String>) -> Vec<String> {
    lines.sort();
    lines
}

/// The records of `name` and `qtype` as ouro finds them (over TCP with
/// `tcp`) equal dig's, in any order; dig's lines before them (the CNAMEs
/// it followed) end at ouro's canonical name.
fn cross_check(server: &Dnsmasq, name: &str, qtype: RecordType, tcp: bool) -> Answer {
    let config = Config {
        use_vc: tcp,
        ..server.config()
    };
    let answer = lookup(config, name, qtype);
    let dig = server.dig(name, qtype, tcp);
    let aliases = dig.len() - answer.records.len();
    let (chain, records) = dig.split_at(aliases);
    let dig_records: Vec<String> = match qtype {
        RecordType::Txt => records.iter().map(|l| dig_txt(l)).collect(),
        _ => records.to_vec(),
    };
    let ours: Vec<String> = answer.records.iter().map(short_form).collect();
    assert_eq!(sorted(ours), sorted(dig_records), "{name} {qtype:?}");
    let canonical = chain
        .last()
        .map_or(name.to_string(), |c| c.trim_end_matches('.').to_string());
    assert_eq!(answer.name, canonical, "{name} {qtype:?}: dig says {dig:?}");
    answer
}

#[test]
#[ignore = "needs dnsmasq"]
fn a_and_aaaa_records_are_what_dig_finds() {
    let server = Dnsmasq::start();
    let a = cross_check(&server, "web.ouro.test", RecordType::A, false);
    assert_eq!(a.records, vec![Record::A(Ipv4Addr::new(192, 0, 2, 10))]);
    let aaaa = cross_check(&server, "web.ouro.test", RecordType::Aaaa, false);
    let v6: Ipv6Addr = "2001:db8::10".parse().unwrap();
    assert_eq!(aaaa.records, vec![Record::Aaaa(v6)]);
    let multi = cross_check(&server, "multi.ouro.test", RecordType::A, false);
    assert_eq!(multi.records.len(), 3);
    cross_check(&server, "v6only.ouro.test", RecordType::Aaaa, false);
}

#[test]
#[ignore = "needs dnsmasq"]
fn lookup_ip_gives_both_families_of_a_name() {
    let server = Dnsmasq::start();
    let answer = resolve(server.config(), Hosts::default(), "web.ouro.test", None).unwrap();
    let mut expected: Vec<IpAddr> = [
        server.dig("web.ouro.test", RecordType::Aaaa, false),
        server.dig("web.ouro.test", RecordType::A, false),
    ]
    .concat()
    .iter()
    .map(|l| l.parse().unwrap())
    .collect();
    let mut found = answer.addresses();
    expected.sort();
    found.sort();
    assert_eq!(found, expected);
    assert_eq!(answer.name, "web.ouro.test");
}

#[test]
#[ignore = "needs dnsmasq"]
fn cnames_are_followed_to_the_canonical_name_as_dig_follows_them() {
    let server = Dnsmasq::start();
    let alias = cross_check(&server, "alias.ouro.test", RecordType::A, false);
    assert_eq!(alias.name, "web.ouro.test");
    let chain = cross_check(&server, "chain.ouro.test", RecordType::Aaaa, false);
    assert_eq!(chain.name, "web.ouro.test");
    let cname = cross_check(&server, "alias.ouro.test", RecordType::Cname, false);
    assert_eq!(cname.records, vec![Record::Cname("web.ouro.test".into())]);
}

#[test]
#[ignore = "needs dnsmasq"]
fn srv_txt_and_mx_records_are_what_dig_finds() {
    let server = Dnsmasq::start();
    let srv = cross_check(&server, "_http._tcp.ouro.test", RecordType::Srv, false);
    assert_eq!(srv.records.len(), 2);
    assert!(srv.records.contains(&Record::Srv {
        priority: 10,
        weight: 5,
        port: 8080,
        target: "web.ouro.test".into(),
    }));
    let txt = cross_check(&server, "txt.ouro.test", RecordType::Txt, false);
    assert_eq!(
        txt.records,
        vec![Record::Txt("hello worldsecond string".into())]
    );
    let mx = cross_check(&server, "ouro.test", RecordType::Mx, false);
    assert!(mx.records.contains(&Record::Mx {
        preference: 20,
        exchange: "mail.ouro.test".into(),
    }));
    assert_eq!(mx.records.len(), 2);
}

#[test]
#[ignore = "needs dnsmasq"]
fn the_same_answers_come_over_tcp() {
    let server = Dnsmasq::start();
    cross_check(&server, "multi.ouro.test", RecordType::A, true);
    cross_check(&server, "chain.ouro.test", RecordType::Aaaa, true);
    cross_check(&server, "_http._tcp.ouro.test", RecordType::Srv, true);
    cross_check(&server, "txt.ouro.test", RecordType::Txt, true);
}

#[test]
#[ignore = "needs dnsmasq"]
fn a_missing_name_or_type_is_not_found_where_dig_sees_nxdomain_or_no_data() {
    let server = Dnsmasq::start();
    for (name, qtype, status) in [
        ("nothing.ouro.test", RecordType::A, "NXDOMAIN"),
        ("v6only.ouro.test", RecordType::A, "NOERROR"),
        ("web.ouro.test", RecordType::Mx, "NOERROR"),
    ] {
        assert_eq!(server.dig_status(name, qtype), status, "{name}");
        assert!(server.dig(name, qtype, false).is_empty());
        let result = resolve(server.config(), Hosts::default(), name, Some(qtype));
        let err = result.expect_err(name);
        assert_eq!(err.kind(), std::io::ErrorKind::NotFound, "{name}: {err}");
    }
}

#[test]
#[ignore = "needs dnsmasq"]
fn a_short_name_is_found_through_the_search_list() {
    let server = Dnsmasq::start();
    let config = Config {
        search: vec!["nowhere.ouro.test".into(), "ouro.test".into()],
        ..server.config()
    };
    let answer = resolve(config, Hosts::default(), "web", Some(RecordType::A)).unwrap();
    assert_eq!(answer.name, "web.ouro.test");
    let dig = server.dig("web.ouro.test", RecordType::A, false);
    let ours: Vec<String> = answer.records.iter().map(short_form).collect();
    assert_eq!(ours, dig);
}

struct Dialer {
    connector: Option<Connector<Dialer>>,
    results: Vec<std::io::Result<Connected>>,
}

fn to_connector(d: &mut Dialer, ring: &mut Ring<Dialer>, c: Completion) -> std::io::Result<()> {
    match d.connector.as_mut() {
        Some(connector) => connector.on_completion(ring, c),
        None => Ok(()),
    }
}

fn on_connected(d: &mut Dialer, _: &mut Ring<Dialer>, c: Completion) -> std::io::Result<()> {
    d.results.push(connected(c));
    Ok(())
}

fn dial(config: Config, host: &str, port: u16) -> Connected {
    let mut ring = Ring::new(64).unwrap();
    let connector = Connector::new(&mut ring, config, Hosts::default(), Ctx::new(to_connector));
    let mut dialer = Dialer {
        connector: Some(connector.unwrap()),
        results: Vec::new(),
    };
    let connector = dialer.connector.as_mut().unwrap();
    let id = connector.connect(&mut ring, host, port, Ctx::new(on_connected));
    let at = ring.now() + Duration::from_secs(10);
    connector.set_deadline(&mut ring, id, at).unwrap();
    ring.run(&mut dialer, RunMode::UntilDone).unwrap();
    assert_eq!(dialer.results.len(), 1, "exactly one completion");
    dialer.results.pop().unwrap().expect(host)
}

/// Bytes both ways over a connection made by name, checked on the
/// listener's side.
fn talk(connection: Connected, listener: &TcpListener) {
    let (mut accepted, from) = listener.accept().unwrap();
    assert_eq!(from, local_addr(&connection));
    let mut stream = std::net::TcpStream::from(connection.fd);
    stream.set_nonblocking(false).unwrap();
    stream.write_all(b"ping").unwrap();
    let mut got = [0u8; 4];
    accepted.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"ping");
    accepted.write_all(b"pong").unwrap();
    stream.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"pong");
}

fn local_addr(connection: &Connected) -> SocketAddr {
    let socket = socket2::SockRef::from(&connection.fd);
    socket.local_addr().unwrap().as_socket().unwrap()
}

#[test]
#[ignore = "needs dnsmasq"]
fn connect_by_name_reaches_the_loopback_listener_dnsmasq_names() {
    let server = Dnsmasq::start();
    assert_eq!(
        server.dig("loop4.ouro.test", RecordType::A, false),
        vec!["127.0.0.1"]
    );
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    let connection = dial(server.config(), "loop4.ouro.test", port);
    assert_eq!(
        connection.peer,
        SocketAddr::from((Ipv4Addr::LOCALHOST, port))
    );
    talk(connection, &listener);
}

#[test]
#[ignore = "needs dnsmasq"]
fn connect_by_name_to_both_families_prefers_ipv6_on_loopback() {
    let server = Dnsmasq::start();
    assert_eq!(
        server.dig("loopboth.ouro.test", RecordType::Aaaa, false),
        vec!["::1"]
    );
    let (v6, _v4, port) = loop {
        let v6 = TcpListener::bind((Ipv6Addr::LOCALHOST, 0)).unwrap();
        let port = v6.local_addr().unwrap().port();
        if let Ok(v4) = TcpListener::bind((Ipv4Addr::LOCALHOST, port)) {
            break (v6, v4, port);
        }
    };
    let connection = dial(server.config(), "loopboth.ouro.test", port);
    assert_eq!(
        connection.peer,
        SocketAddr::from((Ipv6Addr::LOCALHOST, port))
    );
    talk(connection, &v6);
}
