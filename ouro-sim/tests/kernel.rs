//! The kernel's behaviours the simulator reproduces: a submission queue
//! that fills, a completion queue that overflows without losing anything,
//! cancellations racing their operations, TCP giving up over a long
//! partition, spoofed datagrams that connected sockets drop, and ephemeral
//! ports that skip the ones in use.

mod common;

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use common::socket;
use ouro::net::{Domain, Type};
use ouro::sim::{Bug, Config, Partitions, World, CQ_ENTRIES};
use ouro::{Completion, Ctx, Outcome, Ring, RingFd};
use ouro_sim::{check, dns, echo, run_case, FaultClass};

const SERVER: ([u8; 4], u16) = ([10, 0, 0, 1], 5353);

fn count(world: &World, class: &str) -> u64 {
    world.faults().0.get(class).copied().unwrap_or(0)
}

#[test]
fn a_burst_beyond_both_queues_completes_every_task_exactly_once() {
    fn done(n: &mut u32, _: &mut Ring<u32>, c: Completion) -> io::Result<()> {
        assert!(matches!(c.outcome, Outcome::Noop(Ok(()))), "{c:?}");
        *n += 1;
        Ok(())
    }
    let config = Config {
        sq_full_early: 0.2,
        cq_entries: 3,
        ..Config::calm()
    };
    let world = World::with_config(11, config);
    let mut ring: Ring<u32> = Ring::simulated(&world);
    for _ in 0..1000 {
        ring.noop(Ctx::new(done));
    }
    let mut node = (ring, 0);
    world.run(&mut [&mut node], Duration::from_secs(1)).unwrap();
    assert_eq!(node.1, 1000);
    assert_eq!(world.finish(), Vec::<String>::new());
    assert!(count(&world, "sq_full_early") > 0);
    assert!(count(&world, "cq_overflow") > 0);
}

#[test]
fn a_completion_dropped_on_overflow_is_found_within_the_default_seed_count_and_replays() {
    let bug = Some(Bug::DropOverflowed);
    let summary = check(0..100, dns::run, bug, 0);
    let failure = summary
        .failures
        .first()
        .expect("the planted bug went unnoticed over 100 seeds");
    assert!(
        failure.config.cq_entries < CQ_ENTRIES,
        "only a small completion queue overflows"
    );
    let replay = run_case(&failure.case, dns::run, bug);
    assert_eq!(replay.violations, failure.violations);
    assert_eq!(replay.log_hash, failure.log_hash);
    assert!(run_case(&failure.case, dns::run, None)
        .violations
        .is_empty());
    let mut without = failure.case.clone();
    without.off.push(FaultClass::CqOverflow);
    assert!(run_case(&without, dns::run, bug).violations.is_empty());
}

fn expect_ok<S>(_: &mut S, _: &mut Ring<S>, c: Completion) -> io::Result<()> {
    assert!(
        matches!(
            c.outcome,
            Outcome::Bind(Ok(())) | Outcome::Connect(Ok(())) | Outcome::SendTo(Ok(_), _)
        ),
        "{:?}",
        c.outcome
    );
    Ok(())
}

/// How a receive and the cancel racing it ended.
#[derive(Default)]
struct Race {
    received: Option<io::Result<Vec<u8>>>,
    cancel: Option<io::Result<()>>,
}

#[test]
fn a_late_cancel_either_wins_or_loses_to_the_datagram_and_never_both() {
    fn on_recv(race: &mut Race, _: &mut Ring<Race>, c: Completion) -> io::Result<()> {
        assert!(race.cancel.is_none(), "the target's callback runs first");
        race.received = Some(match c.outcome {
            Outcome::RecvFrom(res, buf) => res.map(|_| buf.into_vec()),
            other => panic!("{other:?}"),
        });
        Ok(())
    }
    fn on_cancel(race: &mut Race, _: &mut Ring<Race>, c: Completion) -> io::Result<()> {
        race.cancel = Some(match c.outcome {
            Outcome::Cancel(res) => res,
            other => panic!("{other:?}"),
        });
        Ok(())
    }
    let (mut won, mut lost) = (0, 0);
    for seed in 0..40 {
        let config = Config {
            cancel_race: 1.0,
            ..Config::calm()
        };
        let world = World::with_config(seed, config);
        let (receiver, sender) = (socket(&world, Type::DGRAM), socket(&world, Type::DGRAM));
        let mut ring: Ring<Race> = Ring::simulated(&world);
        let receiver = ring.register_fd(receiver);
        let sender = ring.register_fd(sender);
        ring.bind(receiver, SocketAddr::from(SERVER), Ctx::new(expect_ok));
        let mut node = (ring, Race::default());
        world.run(&mut [&mut node], Duration::from_secs(1)).unwrap();
        let ring = &mut node.0;
        let target = ring.recv_from(receiver, Vec::with_capacity(64), Ctx::new(on_recv));
        ring.send_to(
            sender,
            b"raced".to_vec(),
            SocketAddr::from(SERVER),
            Ctx::new(expect_ok),
        );
        ring.cancel(target, Ctx::new(on_cancel));
        world.run(&mut [&mut node], Duration::from_secs(1)).unwrap();
        let race = &node.1;
        match (&race.received, &race.cancel) {
            (Some(Ok(data)), Some(Err(e))) => {
                assert_eq!(data, b"raced");
                assert_eq!(e.raw_os_error(), Some(libc::EALREADY), "seed {seed}");
                lost += 1;
            }
            (Some(Err(e)), Some(Ok(()))) => {
                assert!(ouro::is_canceled(e), "seed {seed}: {e}");
                won += 1;
            }
            (received, cancel) => panic!("seed {seed}: {received:?}, {cancel:?}"),
        }
        let (ring, _) = &mut node;
        ring.close(receiver, Ctx::none());
        ring.close(sender, Ctx::none());
        world.run(&mut [&mut node], Duration::from_secs(1)).unwrap();
        assert_eq!(world.finish(), Vec::<String>::new(), "seed {seed}");
        assert!(count(&world, "cancel_late") > 0);
    }
    assert!(won > 0 && lost > 0, "won {won}, lost {lost}");
}

/// A client that connects and sends 100 bytes every millisecond, a
/// limited number of times; on an error it records it and connects again,
/// up to three times.
#[derive(Default)]
struct Sender {
    fd: Option<RingFd>,
    sends_left: u32,
    errors: Vec<i32>,
}

fn on_client(client: &mut Sender, ring: &mut Ring<Sender>, c: Completion) -> io::Result<()> {
    let failed = match c.outcome {
        Outcome::Socket(fd) => {
            let fd = ring.register_fd(fd?);
            client.fd = Some(fd);
            ring.connect(fd, SocketAddr::from(SERVER), Ctx::new(on_client));
            None
        }
        Outcome::Connect(Ok(())) | Outcome::Timer(_) => {
            if let (Some(fd), true) = (client.fd, client.sends_left > 0) {
                client.sends_left -= 1;
                ring.send(fd, vec![7; 100], Ctx::new(on_client));
            }
            None
        }
        Outcome::Send(Ok(_), _) => {
            ring.timer(Duration::from_millis(1), Ctx::new(on_client));
            None
        }
        Outcome::Connect(Err(e)) | Outcome::Send(Err(e), _) => e.raw_os_error(),
        other => panic!("{other:?}"),
    };
    if let Some(errno) = failed {
        client.errors.push(errno);
        if let Some(fd) = client.fd.take() {
            ring.close(fd, Ctx::none());
        }
        if client.errors.len() < 3 {
            ring.socket(Domain::IPV4, Type::STREAM, None, Ctx::new(on_client));
        }
    }
    Ok(())
}

/// Accepts connections (the listener's key is `u64::MAX`) and reads each
/// until it ends.
fn on_server(
    conns: &mut Vec<RingFd>,
    ring: &mut Ring<Vec<RingFd>>,
    c: Completion,
) -> io::Result<()> {
    let key = c.key();
    match c.outcome {
        Outcome::Accept(accepted) => {
            let fd = ring.register_fd(accepted?.0);
            let listener = conns[0];
            ring.accept(listener, Ctx::new(on_server).key(u64::MAX));
            conns.push(fd);
            let ctx = Ctx::new(on_server).key(conns.len() as u64 - 1);
            ring.recv(fd, Vec::with_capacity(4096), ctx);
        }
        Outcome::Recv(Ok(n), buf) if n > 0 => {
            let mut buf = buf.into_vec();
            buf.clear();
            ring.recv(conns[key as usize], buf, Ctx::new(on_server).key(key));
        }
        Outcome::Recv(..) => {
            ring.close(conns[key as usize], Ctx::none());
        }
        other => panic!("{other:?}"),
    }
    Ok(())
}

#[test]
fn tcp_gives_up_with_etimedout_when_a_partition_outlasts_its_bound() {
    let (mut connects, mut data) = (0, 0);
    for seed in 0..30 {
        let config = Config {
            partitions: Partitions {
                gap_ns: 5_000_000,
                longest_ns: 2_000_000_000,
                clog_ns: 1,
            },
            tcp_give_up_ns: 50_000_000,
            ..Config::calm()
        };
        let world = World::with_config(seed, config);
        let listener = socket(&world, Type::STREAM);
        let mut server: Ring<Vec<RingFd>> = Ring::simulated(&world);
        let listener = server.register_fd(listener);
        server.bind(listener, SocketAddr::from(SERVER), Ctx::new(expect_ok));
        server.listen(listener, 16, Ctx::none());
        server.accept(listener, Ctx::new(on_server).key(u64::MAX));
        let mut client: Ring<Sender> = Ring::simulated(&world);
        client.socket(Domain::IPV4, Type::STREAM, None, Ctx::new(on_client));
        let mut server = (server, vec![listener]);
        let mut client = (
            client,
            Sender {
                sends_left: 1000,
                ..Sender::default()
            },
        );
        world
            .run(&mut [&mut server, &mut client], Duration::from_secs(3))
            .unwrap();
        for &errno in &client.1.errors {
            assert_eq!(errno, libc::ETIMEDOUT, "seed {seed}: {:?}", client.1.errors);
        }
        connects += count(&world, "tcp_timeout/connect");
        data += count(&world, "tcp_timeout/data");
        assert_eq!(
            client.1.errors.len() as u64,
            count(&world, "tcp_timeout/connect") + count(&world, "tcp_timeout/data"),
            "seed {seed}: every timeout reaches the client"
        );
    }
    assert!(
        connects > 0 && data > 0,
        "{connects} connect(s), {data} connection(s) timed out"
    );
}

/// The receivers' fds, and what each got: each datagram and its source;
/// a receive's key is its receiver's index.
type Got = (Vec<RingFd>, Vec<Vec<(SocketAddr, Vec<u8>)>>);

fn got(state: &mut Got, ring: &mut Ring<Got>, c: Completion) -> io::Result<()> {
    let key = c.key();
    if let Outcome::RecvFrom(Ok(datagram), buf) = c.outcome {
        state.1[key as usize].push((datagram.peer_addr()?, buf.into_vec()));
        let ctx = Ctx::new(got).key(key);
        ring.recv_from(state.0[key as usize], Vec::with_capacity(1024), ctx);
    }
    Ok(())
}

#[test]
fn spoofed_datagrams_reach_unconnected_sockets_and_connected_ones_drop_them() {
    let config = Config {
        spoofed: 1.0,
        ..Config::calm()
    };
    let world = World::with_config(5, config);
    let (open, connected, sender) = (
        socket(&world, Type::DGRAM),
        socket(&world, Type::DGRAM),
        socket(&world, Type::DGRAM),
    );
    let sender_addr = SocketAddr::from(([10, 0, 0, 3], 6000));
    let open_addr = SocketAddr::from(SERVER);
    let connected_addr = SocketAddr::from(([10, 0, 0, 1], 5354));
    let mut ring: Ring<Got> = Ring::simulated(&world);
    let (open, connected, sender) = (
        ring.register_fd(open),
        ring.register_fd(connected),
        ring.register_fd(sender),
    );
    ring.bind(open, open_addr, Ctx::new(expect_ok));
    ring.bind(connected, connected_addr, Ctx::new(expect_ok));
    ring.connect(connected, sender_addr, Ctx::new(expect_ok));
    ring.bind(sender, sender_addr, Ctx::new(expect_ok));
    let mut node = (ring, (vec![open, connected], vec![Vec::new(), Vec::new()]));
    world.run(&mut [&mut node], Duration::from_secs(1)).unwrap();
    let ring = &mut node.0;
    ring.recv_from(open, Vec::with_capacity(1024), Ctx::new(got).key(0));
    ring.recv_from(connected, Vec::with_capacity(1024), Ctx::new(got).key(1));
    for i in 0..50u8 {
        ring.send_to(sender, vec![i; 10], open_addr, Ctx::new(expect_ok));
        ring.send_to(sender, vec![i; 10], connected_addr, Ctx::new(expect_ok));
    }
    world.run(&mut [&mut node], Duration::from_secs(1)).unwrap();
    let expected: Vec<_> = (0..50u8).map(|i| (sender_addr, vec![i; 10])).collect();
    let [open_got, connected_got] = &node.1 .1[..] else {
        unreachable!("two receivers");
    };
    assert_eq!(
        connected_got, &expected,
        "the connected socket takes its peer's only"
    );
    let (real, spoofed): (Vec<_>, Vec<_>) =
        open_got.iter().partition(|(from, _)| *from == sender_addr);
    assert_eq!(real.len(), 50);
    assert!(!spoofed.is_empty());
    // As many spoofed ones came for the connected socket, and were dropped.
    assert!(count(&world, "udp_spoofed") > spoofed.len() as u64);
}

#[test]
fn echo_and_dns_pass_with_only_the_kernel_classes_and_partitions_on() {
    let kernel = [
        FaultClass::SqFullEarly,
        FaultClass::CqOverflow,
        FaultClass::CancelRace,
        FaultClass::TcpTimeout,
        FaultClass::Spoofed,
        FaultClass::Partitions,
    ];
    let cases: [(ouro_sim::Scenario, &[&str]); 2] = [
        (
            echo::run,
            &[
                "sq_full_early",
                "cq_overflow",
                "submit_busy",
                "partition/held",
            ],
        ),
        (
            dns::run,
            &[
                "sq_full_early",
                "cq_overflow",
                "udp_spoofed",
                "partition/udp",
            ],
        ),
    ];
    for (scenario, injected) in cases {
        let mut faults = ouro::sim::FaultCounts::default();
        for seed in 0..150 {
            let mut case = ouro_sim::Case::new(seed);
            case.off = FaultClass::ALL
                .into_iter()
                .filter(|c| !kernel.contains(c))
                .collect();
            let report = run_case(&case, scenario, None);
            assert!(
                report.violations.is_empty(),
                "{}: {:?}",
                report.replay_line(),
                report.violations
            );
            faults.merge(&report.faults);
        }
        for class in injected {
            assert!(
                faults.0.contains_key(class),
                "{class} never injected: {faults:?}"
            );
        }
    }
}

#[test]
fn the_kernel_classes_are_on_in_some_seeds_and_switch_off_by_name() {
    for name in [
        "sq_full_early",
        "cq_overflow",
        "cancel_race",
        "tcp_timeout",
        "udp_spoofed",
    ] {
        let class = FaultClass::from_name(name).expect(name);
        let seed = (0..100)
            .find(|&seed| class.is_on(&Config::from_seed(seed)))
            .expect("on in some seed");
        let mut case = ouro_sim::Case::new(seed);
        case.off.push(class);
        assert!(!class.is_on(&case.config()), "{name}");
    }
}

/// Sends datagram `i` (its number's bytes) every millisecond, 500 in all.
fn send_every_millisecond(
    state: &mut (RingFd, u32),
    ring: &mut Ring<(RingFd, u32)>,
    _: Completion,
) -> io::Result<()> {
    let (fd, sent) = *state;
    if sent < 500 {
        state.1 += 1;
        let to = SocketAddr::from(SERVER);
        ring.send_to(fd, sent.to_be_bytes().to_vec(), to, Ctx::new(expect_ok));
        ring.timer(Duration::from_millis(1), Ctx::new(send_every_millisecond));
    }
    Ok(())
}

#[test]
fn datagrams_across_a_cut_path_are_dropped_and_the_rest_arrive_in_order() {
    let mut dropped = 0;
    for seed in 0..20 {
        let config = Config {
            partitions: Partitions {
                gap_ns: 20_000_000,
                longest_ns: 100_000_000,
                clog_ns: 1,
            },
            ..Config::calm()
        };
        let world = World::with_config(seed, config);
        let (receiver, sender) = (socket(&world, Type::DGRAM), socket(&world, Type::DGRAM));
        let mut server: Ring<Got> = Ring::simulated(&world);
        let receiver = server.register_fd(receiver);
        server.bind(receiver, SocketAddr::from(SERVER), Ctx::new(expect_ok));
        server.recv_from(receiver, Vec::with_capacity(64), Ctx::new(got).key(0));
        let mut client: Ring<(RingFd, u32)> = Ring::simulated(&world);
        let sender = client.register_fd(sender);
        client.bind(
            sender,
            SocketAddr::from(([10, 0, 0, 2], 6000)),
            Ctx::new(expect_ok),
        );
        client.timer(Duration::ZERO, Ctx::new(send_every_millisecond));
        let mut server = (server, (vec![receiver], vec![Vec::new()]));
        let mut client = (client, (sender, 0));
        world
            .run(&mut [&mut server, &mut client], Duration::from_secs(1))
            .unwrap();
        let numbers: Vec<u32> = server.1 .1[0]
            .iter()
            .map(|(_, data)| u32::from_be_bytes(data[..].try_into().expect("4 bytes")))
            .collect();
        assert!(
            numbers.windows(2).all(|w| w[0] < w[1]),
            "seed {seed}: in order, once"
        );
        let cut = count(&world, "partition/udp");
        assert_eq!(
            numbers.len() as u64 + cut,
            500,
            "seed {seed}: each arrives or is cut"
        );
        dropped += cut;
    }
    assert!(dropped > 0, "no partition cut a datagram");
}

/// Binding to port 0, and listening unbound, take an ephemeral port that
/// no open socket holds, as the kernel's port search does: here the first
/// 101 of the simulator's ephemeral ports (40,000 on, on the clients'
/// 10.0.0.2) are bound by hand first.
#[test]
fn port_zero_skips_the_ephemeral_ports_in_use() {
    fn result(results: &mut Vec<i32>, _: &mut Ring<Vec<i32>>, c: Completion) -> io::Result<()> {
        let errno = |e: io::Error| -e.raw_os_error().unwrap_or(0);
        results.push(match c.outcome {
            Outcome::Bind(res) | Outcome::Listen(res) => res.map_or_else(errno, |()| 0),
            other => panic!("a bind or listen: {other:?}"),
        });
        Ok(())
    }
    let world = World::new(1);
    let mut ring: Ring<Vec<i32>> = Ring::simulated(&world);
    let mut held = Vec::new();
    for port in 40_000..=40_100u16 {
        let fd = ring.register_fd(socket(&world, Type::STREAM));
        ring.bind(
            fd,
            SocketAddr::from(([10, 0, 0, 2], port)),
            Ctx::new(result),
        );
        held.push(fd);
    }
    for _ in 0..50 {
        let fd = ring.register_fd(socket(&world, Type::STREAM));
        ring.bind(fd, SocketAddr::from(([10, 0, 0, 2], 0)), Ctx::new(result));
        let unbound = ring.register_fd(socket(&world, Type::STREAM));
        ring.listen(unbound, 16, Ctx::new(result));
        held.extend([fd, unbound]);
    }
    let mut state = Vec::new();
    while state.len() < held.len() {
        ring.run(&mut state, ouro::RunMode::Once).unwrap();
    }
    assert_eq!(state, vec![0; held.len()], "each one 0 or -errno");
}
