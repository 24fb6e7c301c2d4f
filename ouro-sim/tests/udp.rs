//! UDP under the simulator's datagram faults: every datagram that arrives
//! is one that was sent, whole; loss, duplication and reordering are
//! counted by class; and a seed replays its run exactly.

mod common;

use std::collections::BTreeSet;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use common::socket;
use ouro::net::Type;
use ouro::sim::{Config, World};
use ouro::{Completion, Ctx, Outcome, Ring, RingFd};

const SENT: usize = 200;
const SERVER: ([u8; 4], u16) = ([10, 0, 0, 1], 5353);

/// Binds `fd` on `ring`, checking it worked.
fn bind<S>(ring: &mut Ring<S>, fd: RingFd, addr: SocketAddr) {
    fn bound<S>(_: &mut S, _: &mut Ring<S>, c: Completion) -> io::Result<()> {
        assert!(
            matches!(c.outcome, Outcome::Bind(Ok(()))),
            "{:?}",
            c.outcome
        );
        Ok(())
    }
    ring.bind(fd, addr, Ctx::new(bound::<S>));
}

fn ignore<S>(_: &mut S, _: &mut Ring<S>, _: Completion) -> io::Result<()> {
    Ok(())
}

/// Echoes every datagram back to its sender.
fn echo(fd: &mut RingFd, ring: &mut Ring<RingFd>, c: Completion) -> io::Result<()> {
    if let Outcome::RecvFrom(Ok(datagram), buf) = c.outcome {
        let back = buf.into_vec();
        ring.send_to(*fd, back, datagram.from, Ctx::new(ignore::<RingFd>));
    }
    ring.recv_from(*fd, Vec::with_capacity(64), Ctx::new(echo));
    Ok(())
}

/// What the client received, in order.
type Received = (RingFd, Vec<Vec<u8>>);

fn received(got: &mut Received, ring: &mut Ring<Received>, c: Completion) -> io::Result<()> {
    if let Outcome::RecvFrom(Ok(datagram), buf) = c.outcome {
        assert!(!datagram.truncated, "every datagram fits the room");
        got.1.push(buf.into_vec());
    }
    ring.recv_from(got.0, Vec::with_capacity(64), Ctx::new(received));
    Ok(())
}

/// The datagrams a client got back, the faults by class, the log's hash.
type Exchange = (Vec<Vec<u8>>, Vec<(&'static str, u64)>, u64);

/// Runs one echo exchange under `config`; what the client got back, the
/// faults by class and the event log's hash.
fn exchange(seed: u64, config: Config) -> Exchange {
    let world = World::with_config(seed, config);
    let server_addr = SocketAddr::from(SERVER);
    let server_socket = socket(&world, Type::DGRAM);
    let client_socket = socket(&world, Type::DGRAM);
    let mut server: Ring<RingFd> = Ring::simulated(&world);
    let server_fd = server.register_fd(server_socket);
    bind(&mut server, server_fd, server_addr);
    server.recv_from(server_fd, Vec::with_capacity(64), Ctx::new(echo));
    let mut client: Ring<Received> = Ring::simulated(&world);
    let client_fd = client.register_fd(client_socket);
    bind(&mut client, client_fd, SocketAddr::from(([10, 0, 0, 2], 0)));
    client.recv_from(client_fd, Vec::with_capacity(64), Ctx::new(received));
    for i in 0..SENT {
        let payload = format!("datagram {i}").into_bytes();
        client.send_to(
            client_fd,
            payload,
            server_addr,
            Ctx::new(ignore::<Received>),
        );
    }
    let mut server = (server, server_fd);
    let mut client = (client, (client_fd, Vec::new()));
    world
        .run(&mut [&mut server, &mut client], Duration::from_secs(10))
        .unwrap();
    let faults = world.faults().0.into_iter().collect();
    (client.1 .1, faults, world.log_hash())
}

fn faulty() -> Config {
    Config {
        datagram_loss: 0.2,
        datagram_duplicate: 0.2,
        datagram_reorder: 0.3,
        ..Config::calm()
    }
}

#[test]
fn calm_network_echoes_every_datagram_once_in_order() {
    let (got, faults, _) = exchange(1, Config::calm());
    let sent: Vec<Vec<u8>> = (0..SENT)
        .map(|i| format!("datagram {i}").into_bytes())
        .collect();
    assert_eq!(got, sent);
    assert!(faults.is_empty(), "no faults when calm: {faults:?}");
}

#[test]
fn lost_duplicated_and_reordered_datagrams_arrive_whole_or_not_at_all() {
    let (got, faults, _) = exchange(7, faulty());
    let sent: BTreeSet<Vec<u8>> = (0..SENT)
        .map(|i| format!("datagram {i}").into_bytes())
        .collect();
    for datagram in &got {
        assert!(
            sent.contains(datagram),
            "a datagram nobody sent: {datagram:?}"
        );
    }
    let distinct: BTreeSet<&Vec<u8>> = got.iter().collect();
    assert!(distinct.len() < SENT, "some were lost");
    assert!(got.len() > distinct.len(), "some arrived twice");
    let numbers: Vec<usize> = got
        .iter()
        .map(|d| String::from_utf8_lossy(&d[9..]).parse().unwrap())
        .collect();
    assert!(
        numbers.windows(2).any(|w| w[0] > w[1]),
        "some were reordered"
    );
    let classes: Vec<&str> = faults.iter().map(|&(class, _)| class).collect();
    for class in ["udp_loss", "udp_duplicate", "udp_reorder"] {
        assert!(classes.contains(&class), "{class} counted: {faults:?}");
    }
}

#[test]
fn a_seed_replays_its_datagram_faults_exactly() {
    let first = exchange(11, faulty());
    let again = exchange(11, faulty());
    assert_eq!(first, again);
    let other = exchange(12, faulty());
    assert_ne!(first.2, other.2, "another seed makes another run");
}
