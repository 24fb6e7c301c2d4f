//! The resolver against a scripted, hostile DNS server on loopback: every
//! case gets the right answer or an honest error, and nothing it should
//! not accept. Run on both backends (`OURO_BACKEND=poll` for the
//! readiness one).

mod support;

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::mpsc;
use std::time::Duration;

use ouro_net::dns::sort::source_address;
use ouro_net::dns::wire::MAX_CNAME_CHAIN;
use ouro_net::dns::{Hosts, Record, RecordType};
use simple_dns::rdata::RData;
use simple_dns::RCODE;
use support::*;

const GOOD: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
const SPOOFED: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 66);

fn only_good(result: io::Result<ouro_net::dns::Answer>) {
    let answer = result.expect("an answer");
    assert_eq!(answer.records, vec![Record::A(GOOD)]);
}

#[test]
fn a_plain_answer_is_accepted() {
    let server = ScriptedServer::start(
        Box::new(|_, q| vec![Send::Reply(a_reply(q, &[GOOD]))]),
        None,
    );
    only_good(resolve(
        server.config(),
        Hosts::default(),
        "www.test",
        Some(RecordType::A),
    ));
}

#[test]
fn a_reply_with_another_id_is_ignored_and_the_right_one_accepted() {
    let server = ScriptedServer::start(
        Box::new(|_, q| {
            let mut wrong = a_reply(q, &[SPOOFED]);
            wrong[0] ^= 0x55;
            vec![Send::Reply(wrong), Send::Reply(a_reply(q, &[GOOD]))]
        }),
        None,
    );
    only_good(resolve(
        server.config(),
        Hosts::default(),
        "www.test",
        Some(RecordType::A),
    ));
}

#[test]
fn a_reply_to_another_question_is_ignored() {
    let server = ScriptedServer::start(
        Box::new(|_, q| {
            let mut other = a_reply(q, &[SPOOFED]);
            let at = other.windows(3).position(|w| w == b"www").unwrap();
            other[at] = b'x'; // the question now names xww.test
            vec![Send::Reply(other), Send::Reply(a_reply(q, &[GOOD]))]
        }),
        None,
    );
    only_good(resolve(
        server.config(),
        Hosts::default(),
        "www.test",
        Some(RecordType::A),
    ));
}

#[test]
fn a_reply_from_another_port_never_arrives() {
    let server = ScriptedServer::start(
        Box::new(|_, q| {
            vec![
                Send::FromOtherPort(a_reply(q, &[SPOOFED])),
                Send::Reply(a_reply(q, &[GOOD])),
            ]
        }),
        None,
    );
    only_good(resolve(
        server.config(),
        Hosts::default(),
        "www.test",
        Some(RecordType::A),
    ));
}

#[test]
fn a_query_and_not_a_response_is_ignored() {
    let server = ScriptedServer::start(
        Box::new(|_, q| {
            let mut echo = q.to_vec();
            echo[2] &= 0x7f; // QR clear: a query
            vec![Send::Reply(echo), Send::Reply(a_reply(q, &[GOOD]))]
        }),
        None,
    );
    only_good(resolve(
        server.config(),
        Hosts::default(),
        "www.test",
        Some(RecordType::A),
    ));
}

#[test]
fn a_zero_byte_datagram_is_ignored() {
    let server = ScriptedServer::start(
        Box::new(|_, q| vec![Send::Reply(Vec::new()), Send::Reply(a_reply(q, &[GOOD]))]),
        None,
    );
    only_good(resolve(
        server.config(),
        Hosts::default(),
        "www.test",
        Some(RecordType::A),
    ));
}

/// A reply whose answer's name is a compression pointer to itself.
fn pointer_loop(query: &[u8]) -> Vec<u8> {
    let mut bytes = reply(query, RCODE::NoError, |_, _| {});
    bytes[7] = 1; // one answer
    let at = bytes.len() as u16;
    bytes.extend_from_slice(&(0xc000 | at).to_be_bytes());
    bytes.extend_from_slice(&[0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 203, 0, 113, 66]);
    bytes
}

#[test]
fn a_compression_pointer_loop_is_ignored() {
    let server = ScriptedServer::start(
        Box::new(|_, q| {
            vec![
                Send::Reply(pointer_loop(q)),
                Send::Reply(a_reply(q, &[GOOD])),
            ]
        }),
        None,
    );
    only_good(resolve(
        server.config(),
        Hosts::default(),
        "www.test",
        Some(RecordType::A),
    ));
}

#[test]
fn only_a_compression_pointer_loop_times_out() {
    let server = ScriptedServer::start(Box::new(|_, q| vec![Send::Reply(pointer_loop(q))]), None);
    let err = resolve(
        server.config(),
        Hosts::default(),
        "www.test",
        Some(RecordType::A),
    )
    .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err}");
}

#[test]
fn a_truncated_answer_is_asked_again_over_tcp_and_4_kib_arrive() {
    let addrs: Vec<Ipv4Addr> = (0..250u8).map(|i| Ipv4Addr::new(10, 0, 0, i)).collect();
    let all = addrs.clone();
    let server = ScriptedServer::start(
        Box::new(|_, q| {
            let mut tc = reply(q, RCODE::NoError, |_, _| {});
            tc[2] |= 0x02; // TC
            vec![Send::Reply(tc)]
        }),
        Some(Box::new(move |q| {
            let bytes = a_reply(q, &addrs);
            assert!(bytes.len() > 4096);
            Some(bytes)
        })),
    );
    let answer = resolve(
        server.config(),
        Hosts::default(),
        "big.test",
        Some(RecordType::A),
    )
    .unwrap();
    let got: Vec<Ipv4Addr> = answer
        .addresses()
        .iter()
        .map(|a| match a {
            IpAddr::V4(v4) => *v4,
            IpAddr::V6(_) => panic!("no AAAA asked"),
        })
        .collect();
    assert_eq!(got, all);
}

#[test]
fn servfail_moves_on_to_the_next_server() {
    let failing = ScriptedServer::start(
        Box::new(|_, q| vec![Send::Reply(reply(q, RCODE::ServerFailure, |_, _| {}))]),
        None,
    );
    let good = ScriptedServer::start(
        Box::new(|_, q| vec![Send::Reply(a_reply(q, &[GOOD]))]),
        None,
    );
    let mut config = failing.config();
    config.nameservers.push(good.addr);
    only_good(resolve(
        config,
        Hosts::default(),
        "www.test",
        Some(RecordType::A),
    ));
}

#[test]
fn servfail_then_success_on_the_same_server_with_two_attempts() {
    let server = ScriptedServer::start(
        Box::new(|n, q| match n {
            0 => vec![Send::Reply(reply(q, RCODE::ServerFailure, |_, _| {}))],
            _ => vec![Send::Reply(a_reply(q, &[GOOD]))],
        }),
        None,
    );
    let mut config = server.config();
    config.attempts = 2;
    only_good(resolve(
        config,
        Hosts::default(),
        "www.test",
        Some(RecordType::A),
    ));
}

#[test]
fn refused_everywhere_is_an_error() {
    let server = ScriptedServer::start(
        Box::new(|_, q| vec![Send::Reply(reply(q, RCODE::Refused, |_, _| {}))]),
        None,
    );
    let err = resolve(
        server.config(),
        Hosts::default(),
        "www.test",
        Some(RecordType::A),
    )
    .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused, "{err}");
}

#[test]
fn formerr_to_edns_is_asked_again_without_it() {
    let server = ScriptedServer::start(
        Box::new(|_, q| match has_edns(q) {
            true => vec![Send::Reply(reply(q, RCODE::FormatError, |_, _| {}))],
            false => vec![Send::Reply(a_reply(q, &[GOOD]))],
        }),
        None,
    );
    only_good(resolve(
        server.config(),
        Hosts::default(),
        "www.test",
        Some(RecordType::A),
    ));
}

#[test]
fn a_cname_chain_is_followed_and_a_loop_is_an_error() {
    let server = ScriptedServer::start(
        Box::new(|_, q| {
            let looping = asked_name(q).starts_with("loop");
            vec![Send::Reply(reply(q, RCODE::NoError, |p, name| {
                if looping {
                    p.answers.push(cname_record(name, "loop2.test"));
                    let loop2 = simple_dns::Name::new_unchecked("loop2.test").into_owned();
                    p.answers.push(cname_record(&loop2, "loop.test"));
                } else {
                    p.answers.push(cname_record(name, "real.test"));
                    let real = simple_dns::Name::new_unchecked("real.test").into_owned();
                    p.answers.push(a_record(&real, GOOD));
                }
            }))]
        }),
        None,
    );
    let answer = resolve(
        server.config(),
        Hosts::default(),
        "alias.test",
        Some(RecordType::A),
    )
    .unwrap();
    assert_eq!(answer.name, "real.test");
    assert_eq!(answer.records, vec![Record::A(GOOD)]);
    let err = resolve(
        server.config(),
        Hosts::default(),
        "loop.test",
        Some(RecordType::A),
    )
    .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
}

/// A server that answers `alias.test` with only a CNAME to `real.test`,
/// `real.test` with its address, `ping.test` and `pong.test` with only a
/// CNAME to each other, `hopN.test` with only a CNAME to `hopN+1.test`,
/// and `negative.test` with a CNAME to `gone.test` and an SOA saying the
/// target has no records; every name it is asked for goes to `asked`.
fn aliasing_server(asked: mpsc::Sender<String>) -> ScriptedServer {
    ScriptedServer::start(
        Box::new(move |_, q| {
            let name = asked_name(q);
            asked.send(name.clone()).unwrap();
            vec![Send::Reply(reply(q, RCODE::NoError, |p, owner| {
                let hop = name
                    .strip_prefix("hop")
                    .and_then(|n| n.strip_suffix(".test"));
                match (name.as_str(), hop.and_then(|n| n.parse::<u32>().ok())) {
                    ("real.test", _) => p.answers.push(a_record(owner, GOOD)),
                    ("alias.test", _) => p.answers.push(cname_record(owner, "real.test")),
                    ("ping.test", _) => p.answers.push(cname_record(owner, "pong.test")),
                    ("pong.test", _) => p.answers.push(cname_record(owner, "ping.test")),
                    ("negative.test", _) => {
                        p.answers.push(cname_record(owner, "gone.test"));
                        p.name_servers.push(soa_record("test"));
                    }
                    (_, Some(n)) => p
                        .answers
                        .push(cname_record(owner, &format!("hop{}.test", n + 1))),
                    _ => {}
                }
            }))]
        }),
        None,
    )
}

fn soa_record(zone: &'static str) -> simple_dns::ResourceRecord<'static> {
    let zone = simple_dns::Name::new_unchecked(zone).into_owned();
    let soa = simple_dns::rdata::SOA {
        mname: zone.clone(),
        rname: zone.clone(),
        serial: 1,
        refresh: 60,
        retry: 60,
        expire: 60,
        minimum: 60,
    };
    simple_dns::ResourceRecord::new(zone, simple_dns::CLASS::IN, 60, RData::SOA(soa))
}

#[test]
fn a_cname_target_left_out_of_the_answer_is_asked_for() {
    let (asked, names) = mpsc::channel();
    let server = aliasing_server(asked);
    let answer = resolve(
        server.config(),
        Hosts::default(),
        "alias.test",
        Some(RecordType::A),
    )
    .unwrap();
    assert_eq!(answer.name, "real.test");
    assert_eq!(answer.records, vec![Record::A(GOOD)]);
    assert_eq!(
        names.try_iter().collect::<Vec<_>>(),
        ["alias.test", "real.test"]
    );
}

#[test]
fn cname_targets_asked_for_stop_at_a_loop_and_at_the_chain_cap() {
    let (asked, names) = mpsc::channel();
    let server = aliasing_server(asked);
    let err = resolve(
        server.config(),
        Hosts::default(),
        "ping.test",
        Some(RecordType::A),
    )
    .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
    assert_eq!(
        names.try_iter().collect::<Vec<_>>(),
        ["ping.test", "pong.test"]
    );

    let err = resolve(
        server.config(),
        Hosts::default(),
        "hop0.test",
        Some(RecordType::A),
    )
    .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
    let hops: Vec<String> = (0..=MAX_CNAME_CHAIN)
        .map(|n| format!("hop{n}.test"))
        .collect();
    assert_eq!(names.try_iter().collect::<Vec<_>>(), hops);
}

#[test]
fn a_cname_target_the_answer_says_has_no_records_is_not_asked_for() {
    let (asked, names) = mpsc::channel();
    let server = aliasing_server(asked);
    let err = resolve(
        server.config(),
        Hosts::default(),
        "negative.test",
        Some(RecordType::A),
    )
    .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");
    assert_eq!(names.try_iter().collect::<Vec<_>>(), ["negative.test"]);
}

#[test]
fn nxdomain_ends_a_candidate_and_the_search_list_goes_on() {
    let server = ScriptedServer::start(
        Box::new(|_, q| match asked_name(q).as_str() {
            "web.corp.test" => vec![Send::Reply(a_reply(q, &[GOOD]))],
            _ => vec![Send::Reply(reply(q, RCODE::NameError, |_, _| {}))],
        }),
        None,
    );
    let mut config = server.config();
    config.search = vec!["lab.test".into(), "corp.test".into()];
    let answer = resolve(config.clone(), Hosts::default(), "web", Some(RecordType::A)).unwrap();
    assert_eq!(answer.name, "web.corp.test");
    let err = resolve(config, Hosts::default(), "nothing", Some(RecordType::A)).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");
}

/// Addresses whose order does not hang on this machine's routes: `::1`
/// before `127.0.0.1` (RFC 6724 precedence) wherever `::1` has a source,
/// and `fe80::7` (link-local with no interface: no source) last, against
/// the order the answers came in.
#[test]
fn a_and_aaaa_are_asked_together_and_sorted() {
    let server = ScriptedServer::start(
        Box::new(|_, q| {
            let v6 = asks_aaaa(q);
            vec![Send::Reply(reply(q, RCODE::NoError, |p, name| match v6 {
                true => {
                    p.answers
                        .push(aaaa_record(name, "fe80::7".parse().unwrap()));
                    p.answers.push(aaaa_record(name, Ipv6Addr::LOCALHOST))
                }
                false => p.answers.push(a_record(name, Ipv4Addr::LOCALHOST)),
            }))]
        }),
        None,
    );
    let answer = resolve(server.config(), Hosts::default(), "dual.test", None).unwrap();
    let (v6, v4) = (
        IpAddr::V6(Ipv6Addr::LOCALHOST),
        IpAddr::V4(Ipv4Addr::LOCALHOST),
    );
    let link_local: IpAddr = "fe80::7".parse().unwrap();
    let expected = match source_address(v6) {
        Ok(_) => vec![v6, v4, link_local],
        Err(_) => vec![v4, v6, link_local], // IPv6 is off here
    };
    assert_eq!(answer.addresses(), expected);
}

#[test]
fn txt_records_are_read() {
    let server = ScriptedServer::start(
        Box::new(|_, q| {
            vec![Send::Reply(reply(q, RCODE::NoError, |p, name| {
                p.answers.push(txt_record(name, "v=spf1 -all"))
            }))]
        }),
        None,
    );
    let answer = resolve(
        server.config(),
        Hosts::default(),
        "t.test",
        Some(RecordType::Txt),
    )
    .unwrap();
    assert_eq!(answer.records, vec![Record::Txt("v=spf1 -all".into())]);
}

#[test]
fn a_reply_after_the_deadline_is_not_taken() {
    let (late_tx, late_rx) = mpsc::channel::<()>();
    let late_rx = std::sync::Mutex::new(late_rx);
    let server = ScriptedServer::start(
        Box::new(move |_, q| {
            // Held until the test has seen the lookup time out.
            let _ = late_rx
                .lock()
                .unwrap()
                .recv_timeout(Duration::from_secs(10));
            vec![Send::Reply(a_reply(q, &[SPOOFED]))]
        }),
        None,
    );
    let err = resolve(
        server.config(),
        Hosts::default(),
        "slow.test",
        Some(RecordType::A),
    )
    .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err}");
    late_tx.send(()).unwrap();
}

#[test]
fn hosts_and_localhost_never_go_to_the_network() {
    // No server at all: the port of a socket that is then closed.
    let closed = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let config = ouro_net::dns::Config {
        nameservers: vec![closed],
        ..Default::default()
    };
    let hosts = Hosts::parse("10.1.2.3 db.internal db\n::1 db\n");
    let answer = resolve(config.clone(), hosts.clone(), "db", None).unwrap();
    assert_eq!(
        answer.addresses(),
        vec![
            "::1".parse::<IpAddr>().unwrap(),
            "10.1.2.3".parse().unwrap()
        ]
    );
    let v4 = resolve(config.clone(), hosts, "DB.internal.", Some(RecordType::A)).unwrap();
    assert_eq!(v4.addresses(), vec!["10.1.2.3".parse::<IpAddr>().unwrap()]);
    let local = resolve(config.clone(), Hosts::default(), "app.localhost", None).unwrap();
    assert_eq!(
        local.addresses(),
        vec![
            IpAddr::V6(Ipv6Addr::LOCALHOST),
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        ]
    );
    // Escapes spell the same names on the wire (`\108` is `l`).
    let db = Hosts::parse("10.1.2.3 db\n");
    let escaped = resolve(config.clone(), db, "d\\b", Some(RecordType::A)).unwrap();
    assert_eq!(
        escaped.addresses(),
        vec!["10.1.2.3".parse::<IpAddr>().unwrap()]
    );
    for name in ["\\108ocalhost", "localhos\\t", "app.\\108ocalhost"] {
        let local = resolve(config.clone(), Hosts::default(), name, Some(RecordType::A));
        let addresses = local
            .unwrap_or_else(|e| panic!("{name:?}: {e}"))
            .addresses();
        assert_eq!(addresses, vec![IpAddr::V4(Ipv4Addr::LOCALHOST)], "{name:?}");
    }
    let err = resolve(config, Hosts::default(), "localhost", Some(RecordType::Mx)).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::NotFound);
}

#[test]
fn a_name_that_cannot_be_asked_is_invalid_input() {
    let config = ouro_net::dns::Config::default();
    for name in ["", "a..b", &"x".repeat(300)] {
        let err = resolve(config.clone(), Hosts::default(), name, Some(RecordType::A)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{name:?}");
    }
}
