//! Connect by name with Happy Eyeballs v2 on loopback: IPv6 and IPv4
//! listeners, a hosts file mapping a name to both, a family refused, a
//! family whose connects hang (a listener with a full backlog), an AAAA
//! answer that never comes. Every test counts fds before and after, one
//! at a time.

mod support;

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use ouro::{Completion, Ctx, Ring, RunMode};
use ouro_net::connect::{connected, Connected, Connector, MAX_ATTEMPTS};
use ouro_net::dns::{Config, Hosts, Resolver};
use socket2::{Domain, Socket, Type};
use support::*;

struct Dialer {
    connector: Option<Connector<Dialer>>,
    results: Vec<io::Result<Connected>>,
}

fn to_connector(d: &mut Dialer, ring: &mut Ring<Dialer>, c: Completion) -> io::Result<()> {
    match d.connector.as_mut() {
        Some(connector) => connector.on_completion(ring, c),
        None => Ok(()),
    }
}

fn on_connected(d: &mut Dialer, _: &mut Ring<Dialer>, c: Completion) -> io::Result<()> {
    d.results.push(connected(c));
    Ok(())
}

/// Connects to `host:port` and returns the one result.
fn dial(
    config: Config,
    hosts: Hosts,
    host: &str,
    port: u16,
    deadline: Option<Duration>,
) -> io::Result<Connected> {
    let (mut ring, mut dialer) = dialer_with(config, hosts);
    let connector = dialer.connector.as_mut().unwrap();
    let id = connector.connect(&mut ring, host, port, Ctx::new(on_connected));
    if let Some(after) = deadline {
        let at = ring.now() + after;
        connector.set_deadline(&mut ring, id, at).unwrap();
    }
    ring.run(&mut dialer, RunMode::UntilDone).unwrap();
    assert_eq!(dialer.results.len(), 1, "exactly one completion");
    dialer.results.pop().unwrap()
}

/// A ring and a connector on it, resolving from `hosts` only.
fn dialer(hosts: Hosts) -> (Ring<Dialer>, Dialer) {
    dialer_with(no_server(), hosts)
}

/// A ring and a connector on it resolving through `config` and `hosts`.
fn dialer_with(config: Config, hosts: Hosts) -> (Ring<Dialer>, Dialer) {
    let mut ring = Ring::new(256).unwrap();
    let connector = Connector::new(&mut ring, config, hosts, Ctx::new(to_connector));
    let dialer = Dialer {
        connector: Some(connector.unwrap()),
        results: Vec::new(),
    };
    (ring, dialer)
}

/// No name server: the port of a closed socket (hosts answer instead).
fn no_server() -> Config {
    let closed = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    Config {
        nameservers: vec![closed],
        timeout: Duration::from_millis(200),
        attempts: 1,
        ..Config::default()
    }
}

fn both() -> Hosts {
    Hosts::parse("127.0.0.1 dual.test\n::1 dual.test\n")
}

/// Listeners on `::1` and `127.0.0.1` on one port.
fn dual_listeners() -> (TcpListener, TcpListener, u16) {
    loop {
        let v6 = TcpListener::bind((Ipv6Addr::LOCALHOST, 0)).unwrap();
        let port = v6.local_addr().unwrap().port();
        if let Ok(v4) = TcpListener::bind((Ipv4Addr::LOCALHOST, port)) {
            return (v6, v4, port);
        }
    }
}

/// A listener on `addr`'s family whose backlog is full: new connects to it
/// hang (the kernel drops their SYNs). Returns it and the connections
/// filling it.
fn hanging_listener(addr: SocketAddr) -> (Socket, Vec<Socket>) {
    let listener = Socket::new(Domain::for_address(addr), Type::STREAM, None).unwrap();
    listener.set_reuse_address(true).unwrap();
    listener.bind(&addr.into()).unwrap();
    listener.listen(0).unwrap();
    let bound = listener.local_addr().unwrap();
    let fillers = (0..2)
        .map(|_| {
            let s = Socket::new(Domain::for_address(addr), Type::STREAM, None).unwrap();
            s.set_nonblocking(true).unwrap();
            let _ = s.connect(&bound);
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(50)); // the handshakes fill the queue
    (listener, fillers)
}

/// The listeners of [`hanging_v6_listening_v4`]: connects hang on the
/// first (its backlog filled by the second) and succeed on the third.
type Listeners = (Socket, Vec<Socket>, TcpListener);

/// A port on which connects to `[::1]` hang and connects to `127.0.0.1`
/// succeed while the listeners live; `None` if the port is taken on IPv4.
fn hanging_v6_listening_v4() -> Option<(u16, Listeners)> {
    let (hanging, fillers) = hanging_listener(SocketAddr::from((Ipv6Addr::LOCALHOST, 0)));
    let port = hanging.local_addr().unwrap().as_socket().unwrap().port();
    let v4 = TcpListener::bind((Ipv4Addr::LOCALHOST, port)).ok()?;
    Some((port, (hanging, fillers, v4)))
}

/// The tests of this binary run one at a time, so that fd counts are
/// their own.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    FD_COUNTING.lock().unwrap_or_else(|e| e.into_inner())
}

fn counted<T>(test: impl FnOnce() -> T) -> T {
    let before = open_fds();
    let out = test();
    assert_eq!(open_fds(), before, "an fd leaked");
    out
}

/// A listener on a free loopback port (connects there succeed while it
/// lives), and its port.
fn listener_port() -> (TcpListener, u16) {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    (listener, port)
}

#[test]
fn a_name_on_both_families_connects_over_ipv6_first() {
    let _serial = serial();
    let (v6, _v4, port) = dual_listeners();
    counted(|| {
        let c = dial(no_server(), both(), "dual.test", port, None).unwrap();
        assert_eq!(c.peer, SocketAddr::from((Ipv6Addr::LOCALHOST, port)));
        // Non-blocking only while it connected: on io_uring a receive on
        // a non-blocking socket may end in `EAGAIN`.
        assert!(!socket2::SockRef::from(&c.fd).nonblocking().unwrap());
        let (accepted, _) = v6.accept().unwrap();
        assert_eq!(
            accepted.peer_addr().unwrap(),
            TcpStream::from(c.fd).local_addr().unwrap()
        );
    });
}

#[test]
fn a_refused_family_falls_back_to_the_other_at_once() {
    let _serial = serial();
    let (_listener, port) = listener_port();
    // Nothing listens on [::1]:port (a v6 listener on that port would be
    // needed for it to work), so its connect is refused.
    counted(|| {
        let c = dial(no_server(), both(), "dual.test", port, None).unwrap();
        assert_eq!(c.peer, SocketAddr::from((Ipv4Addr::LOCALHOST, port)));
    });
}

#[test]
fn a_family_whose_connects_hang_loses_to_the_other_after_the_attempt_delay() {
    let _serial = serial();
    let Some((port, _listeners)) = hanging_v6_listening_v4() else {
        return; // the port is taken on IPv4: nothing to check this time
    };
    counted(|| {
        let c = dial(no_server(), both(), "dual.test", port, None).unwrap();
        assert_eq!(c.peer, SocketAddr::from((Ipv4Addr::LOCALHOST, port)));
    });
}

#[test]
fn only_hanging_connects_end_at_the_deadline_with_etime() {
    let _serial = serial();
    let (hanging, _fillers) = hanging_listener(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)));
    let port = hanging.local_addr().unwrap().as_socket().unwrap().port();
    counted(|| {
        let err = dial(
            no_server(),
            Hosts::default(),
            "127.0.0.1",
            port,
            Some(Duration::from_millis(300)),
        )
        .unwrap_err();
        assert!(ouro::is_deadline(&err), "{err}");
    });
}

#[test]
fn an_unknown_name_is_not_found() {
    let _serial = serial();
    counted(|| {
        let server = ScriptedServer::start(
            Box::new(|_, q| {
                vec![Send::Reply(reply(
                    q,
                    simple_dns::RCODE::NameError,
                    |_, _| {},
                ))]
            }),
            None,
        );
        let err = dial(server.config(), Hosts::default(), "nowhere.test", 80, None).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");
    });
}

#[test]
fn an_aaaa_answer_that_never_comes_waits_only_the_resolution_delay() {
    let _serial = serial();
    let (_listener, port) = listener_port();
    counted(|| {
        let server = ScriptedServer::start(
            Box::new(|_, q| match asks_aaaa(q) {
                true => Vec::new(),
                false => vec![Send::Reply(a_reply(q, &[Ipv4Addr::LOCALHOST]))],
            }),
            None,
        );
        let mut config = server.config();
        config.timeout = Duration::from_secs(30); // the AAAA lookup would wait this long
        let c = dial(
            config,
            Hosts::default(),
            "v4only.test",
            port,
            Some(Duration::from_secs(10)),
        )
        .unwrap();
        assert_eq!(c.peer, SocketAddr::from((Ipv4Addr::LOCALHOST, port)));
    });
}

#[test]
fn a_cancelled_connect_ends_once_with_ecanceled() {
    let _serial = serial();
    let (hanging, _fillers) = hanging_listener(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)));
    let port = hanging.local_addr().unwrap().as_socket().unwrap().port();
    counted(|| {
        let (mut ring, mut dialer) = dialer(Hosts::default());
        let connector = dialer.connector.as_mut().unwrap();
        let id = connector.connect(&mut ring, "127.0.0.1", port, Ctx::new(on_connected));
        ring.run(&mut dialer, RunMode::Once).unwrap();
        assert!(dialer.connector.as_mut().unwrap().cancel(&mut ring, id));
        ring.run(&mut dialer, RunMode::UntilDone).unwrap();
        assert_eq!(dialer.results.len(), 1);
        assert!(ouro::is_canceled(dialer.results[0].as_ref().unwrap_err()));
    });
}

fn drop_connector(d: &mut Dialer, _: &mut Ring<Dialer>, c: Completion) -> io::Result<()> {
    d.results.push(connected(c));
    d.connector = None;
    Ok(())
}

#[test]
fn dropping_the_connector_from_a_callback_ends_the_others_with_ecanceled() {
    let _serial = serial();
    let (hanging, _fillers) = hanging_listener(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)));
    let port = hanging.local_addr().unwrap().as_socket().unwrap().port();
    let (_listener, open_port) = listener_port();
    counted(|| {
        let (mut ring, mut dialer) = dialer(Hosts::default());
        let connector = dialer.connector.as_mut().unwrap();
        connector.connect(&mut ring, "127.0.0.1", port, Ctx::new(on_connected));
        connector.connect(&mut ring, "127.0.0.1", open_port, Ctx::new(drop_connector));
        let deadline = ring.now() + Duration::from_secs(5);
        ring.run(&mut dialer, RunMode::UntilDone).unwrap();
        assert!(ring.now() < deadline);
        assert_eq!(dialer.results.len(), 2);
        let canceled = dialer
            .results
            .iter()
            .filter(|r| r.as_ref().is_err_and(ouro::is_canceled))
            .count();
        assert_eq!(canceled, 1);
        drop(dialer);
    });
}

#[test]
fn a_connector_on_a_resolver_watching_resolv_conf_connects_by_name() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("resolv.conf");
    std::fs::write(&path, "nameserver 192.0.2.1\n").unwrap();
    let (_listener, port) = listener_port();
    counted(|| {
        let mut ring = Ring::new(64).unwrap();
        let hosts = Hosts::parse("127.0.0.1 v4.test\n");
        let every = Duration::from_secs(5);
        let resolver =
            Resolver::from_resolv_conf(&mut ring, &path, every, hosts, Ctx::new(to_connector));
        let connector = Connector::with_resolver(&mut ring, resolver.unwrap()).unwrap();
        let mut dialer = Dialer {
            connector: Some(connector),
            results: Vec::new(),
        };
        let connector = dialer.connector.as_mut().unwrap();
        connector.connect(&mut ring, "v4.test", port, Ctx::new(on_connected));
        ring.run(&mut dialer, RunMode::UntilDone).unwrap();
        let c = dialer.results.pop().unwrap().unwrap();
        assert_eq!(c.peer, SocketAddr::from((Ipv4Addr::LOCALHOST, port)));
        assert!(dialer.results.is_empty(), "exactly one completion");
    });
}

#[test]
fn dropping_the_connector_cancels_its_deadlines_and_timers_at_once() {
    let _serial = serial();
    let (_listener, port) = listener_port();
    counted(|| {
        let (mut ring, mut dialer) = dialer(Hosts::default());
        let connector = dialer.connector.as_mut().unwrap();
        let id = connector.connect(&mut ring, "127.0.0.1", port, Ctx::new(on_connected));
        let far = ring.now() + Duration::from_secs(10);
        connector.set_deadline(&mut ring, id, far).unwrap();
        dialer.connector = None;
        let start = ring.now();
        ring.run(&mut dialer, RunMode::UntilDone).unwrap();
        let busy = ring.now() - start;
        assert!(
            busy < Duration::from_secs(2),
            "busy {busy:?} after the drop"
        );
        let canceled = dialer.results.pop().unwrap().unwrap_err();
        assert!(ouro::is_canceled(&canceled), "{canceled}");
        drop(dialer);
    });
}

/// A port nothing listens on.
fn closed_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    listener.local_addr().unwrap().port()
}

#[test]
fn a_name_with_more_addresses_than_are_tried_ends_once_when_those_tried_refuse() {
    let _serial = serial();
    let port = closed_port();
    let hosts: String = (0..=MAX_ATTEMPTS)
        .map(|i| format!("127.0.{}.{} many.test\n", i / 250, i % 250 + 1))
        .collect();
    counted(|| {
        let (mut ring, mut dialer) = dialer(Hosts::parse(&hosts));
        let connector = dialer.connector.as_mut().unwrap();
        connector.connect(&mut ring, "many.test", port, Ctx::new(on_connected));
        ring.run(&mut dialer, RunMode::UntilDone).unwrap();
        assert_eq!(dialer.results.len(), 1, "exactly one completion");
        let err = dialer.results.pop().unwrap().unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ECONNREFUSED), "{err}");
    });
}

#[test]
fn a_stale_connect_id_stays_stale_after_65536_connects_in_its_slot() {
    let _serial = serial();
    let (_listener, port) = listener_port();
    counted(|| {
        let (mut ring, mut dialer) = dialer(Hosts::default());
        let connector = dialer.connector.as_mut().unwrap();
        let stale = connector.connect(&mut ring, "127.0.0.1", port, Ctx::new(on_connected));
        assert!(connector.cancel(&mut ring, stale));
        // Each connect cancelled at once gives its slot back for the next;
        // the ring runs now and then to close their sockets.
        for i in 0..u16::MAX {
            let connector = dialer.connector.as_mut().unwrap();
            let id = connector.connect(&mut ring, "127.0.0.1", port, Ctx::new(on_connected));
            assert!(connector.cancel(&mut ring, id));
            if i % 512 == 0 {
                ring.run(&mut dialer, RunMode::UntilDone).unwrap();
            }
        }
        let connector = dialer.connector.as_mut().unwrap();
        let fresh = connector.connect(&mut ring, "127.0.0.1", port, Ctx::new(on_connected));
        assert!(!connector.is_live(stale), "a stale id names a new connect");
        assert!(!connector.cancel(&mut ring, stale));
        assert!(connector.is_live(fresh));
        ring.run(&mut dialer, RunMode::UntilDone).unwrap();
        let last = dialer.results.pop().unwrap();
        assert!(last.is_ok(), "the fresh connect: {:?}", last.err());
        assert_eq!(dialer.results.len(), 1 << 16, "one completion each");
    });
}

/// 65,536 connects to one name, each cancelled before its lookups'
/// answers are delivered, then a connect to another name in the same slot:
/// the queued answers of the cancelled ones carry its key's 16 bits of
/// generation, and none of them may be taken for its own.
#[test]
fn a_cancelled_connects_lookup_answer_is_not_taken_by_the_connect_in_its_slot() {
    let _serial = serial();
    let good = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let port = good.local_addr().unwrap().port();
    let _stale = TcpListener::bind((Ipv4Addr::new(127, 0, 0, 3), port)).unwrap();
    counted(|| {
        let hosts = Hosts::parse("127.0.0.3 stale.test\n127.0.0.1 good.test\n");
        let (mut ring, mut dialer) = dialer(hosts);
        let connector = dialer.connector.as_mut().unwrap();
        for _ in 0..=u16::MAX {
            let id = connector.connect(&mut ring, "stale.test", port, Ctx::new(on_connected));
            assert!(connector.cancel(&mut ring, id));
        }
        connector.connect(&mut ring, "good.test", port, Ctx::new(on_connected));
        ring.run(&mut dialer, RunMode::UntilDone).unwrap();
        let last = dialer.results.pop().unwrap().expect("good.test connects");
        assert_eq!(
            last.peer.ip(),
            Ipv4Addr::LOCALHOST,
            "good.test's own address"
        );
        assert_eq!(dialer.results.len(), 1 << 16, "one completion each");
    });
}

#[test]
fn a_deadline_moved_later_replaces_one_already_due() {
    let _serial = serial();
    let (hanging, _fillers) = hanging_listener(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)));
    let port = hanging.local_addr().unwrap().as_socket().unwrap().port();
    counted(|| {
        let (mut ring, mut dialer) = dialer(Hosts::default());
        let connector = dialer.connector.as_mut().unwrap();
        let id = connector.connect(&mut ring, "127.0.0.1", port, Ctx::new(on_connected));
        let (now, later) = (ring.now(), Duration::from_millis(300));
        connector.set_deadline(&mut ring, id, now).unwrap();
        connector.set_deadline(&mut ring, id, now + later).unwrap();
        ring.run(&mut dialer, RunMode::UntilDone).unwrap();
        let err = dialer.results.pop().unwrap().unwrap_err();
        assert!(ouro::is_deadline(&err), "{err}");
        assert!(
            ring.now() >= now + later,
            "ended {:?} after the start: at the deadline replaced",
            ring.now() - now
        );
    });
}

#[test]
fn numeric_hosts_in_every_form_glibc_reads_connect_without_a_lookup() {
    let _serial = serial();
    let (_listener, port) = listener_port();
    counted(|| {
        // No server answers: a lookup would fail.
        for host in ["127.1", "0x7f.1", "2130706433", "127.0.0.1"] {
            let c = dial(no_server(), Hosts::default(), host, port, None)
                .unwrap_or_else(|e| panic!("{host}: {e}"));
            assert_eq!(c.peer, SocketAddr::from((Ipv4Addr::LOCALHOST, port)));
        }
        let err = dial(
            no_server(),
            Hosts::default(),
            "fe80::1%no-such-if0",
            port,
            None,
        )
        .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
    });
}

#[test]
fn a_hosts_name_with_one_family_connects_without_asking_for_the_other() {
    let _serial = serial();
    let (_listener, port) = listener_port();
    // A server that never answers: asking it for AAAA would take its
    // whole timeout.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let config = Config {
        nameservers: vec![silent.local_addr().unwrap()],
        timeout: Duration::from_secs(5),
        attempts: 1,
        ..Config::default()
    };
    let hosts = Hosts::parse("127.0.0.1 v4only.test\n");
    counted(|| {
        let started = std::time::Instant::now();
        let c = dial(config, hosts, "v4only.test", port, None).unwrap();
        assert_eq!(c.peer, SocketAddr::from((Ipv4Addr::LOCALHOST, port)));
        assert!(started.elapsed() < Duration::from_secs(2), "no query");
    });
}

/// The AAAA answer's only address hangs; the A answer comes late (its
/// first query goes unanswered, the second is answered a timeout later),
/// after the 250 ms since the IPv6 attempt have passed: the IPv4 address
/// is tried as it arrives, and connects. (It waited for the IPv6 attempt
/// to fail, which only the deadline did.)
#[test]
fn an_address_arriving_after_the_attempt_delay_is_tried_at_once() {
    let _serial = serial();
    let Some((port, _listeners)) = hanging_v6_listening_v4() else {
        return; // the port is taken on IPv4: nothing to check this time
    };
    counted(|| {
        let mut a_queries = 0;
        let server = ScriptedServer::start(
            Box::new(move |_, q| {
                if asks_aaaa(q) {
                    let v6 = |p: &mut simple_dns::Packet<'static>, name: &_| {
                        p.answers.push(aaaa_record(name, Ipv6Addr::LOCALHOST));
                    };
                    return vec![Send::Reply(reply(q, simple_dns::RCODE::NoError, v6))];
                }
                a_queries += 1;
                match a_queries {
                    1 => Vec::new(),
                    _ => vec![Send::Reply(a_reply(q, &[Ipv4Addr::LOCALHOST]))],
                }
            }),
            None,
        );
        let mut config = server.config();
        config.timeout = Duration::from_millis(600);
        config.attempts = 2;
        let deadline = Some(Duration::from_secs(5));
        let c = dial(config, Hosts::default(), "late.test", port, deadline).unwrap();
        assert_eq!(c.peer, SocketAddr::from((Ipv4Addr::LOCALHOST, port)));
    });
}
