//! A simulated ring never acts on an fd the world did not make: from safe
//! code, a real file handed to it, or a simulated socket's number taken
//! over by a real file after the socket closed, is `EBADF`, and the real
//! file is left untouched. A socket's fd closed by its holder frees its
//! address, and a listener's refuses connections.

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::rc::Rc;
use std::time::Duration;

use ouro::net::{Domain, Type};
use ouro::sim::World;
use ouro::{Completion, Ctx, Outcome, Ring};

type Got = Vec<Completion>;

/// Two tests rely on which fd number the process hands out next, so the
/// tests that make or close fds run one at a time.
static ALONE: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn collect(got: &mut Got, _: &mut Ring<Got>, c: Completion) -> io::Result<()> {
    got.push(c);
    Ok(())
}

fn run_until_idle(ring: Ring<Got>, world: &World) -> (Ring<Got>, Got) {
    let mut node = (ring, Vec::new());
    world
        .run(&mut [&mut node], Duration::from_secs(60))
        .unwrap();
    node
}

fn recv_error(c: &Completion) -> Option<i32> {
    match &c.outcome {
        Outcome::Recv(Err(e), _) => e.raw_os_error(),
        other => panic!("expected a failed recv, got {other:?}"),
    }
}

#[test]
fn a_real_file_given_to_a_simulated_ring_is_ebadf_and_untouched() {
    let _alone = ALONE.lock().unwrap_or_else(|e| e.into_inner());
    let world = World::new(1);
    let mut ring: Ring<Got> = Ring::simulated(&world);
    let (mut reader, mut writer) = std::io::pipe().unwrap();
    writer.write_all(b"kept").unwrap();
    let reader_fd = Rc::new(reader.try_clone().unwrap());
    ring.recv(reader_fd, Vec::with_capacity(8), Ctx::new(collect));
    let (_ring, got) = run_until_idle(ring, &world);
    assert_eq!(got.len(), 1);
    assert_eq!(recv_error(&got[0]), Some(libc::EBADF));
    drop(writer);
    let mut left = Vec::new();
    reader.read_to_end(&mut left).unwrap();
    assert_eq!(left, b"kept", "the simulator read nothing from a real pipe");
}

#[test]
fn a_closed_simulated_sockets_number_reused_by_a_real_file_is_ebadf() {
    let _alone = ALONE.lock().unwrap_or_else(|e| e.into_inner());
    let world = World::new(2);
    let mut ring: Ring<Got> = Ring::simulated(&world);
    ring.socket(Domain::IPV4, Type::STREAM, None, Ctx::new(collect));
    let (mut ring, mut got) = run_until_idle(ring, &world);
    let socket = match got.remove(0).outcome {
        Outcome::Socket(Ok(fd)) => fd,
        other => panic!("expected a socket, got {other:?}"),
    };
    let number = std::os::fd::AsRawFd::as_raw_fd(&socket);
    drop(socket);
    let file = Rc::new(File::open("/dev/null").unwrap());
    assert_eq!(
        std::os::fd::AsRawFd::as_raw_fd(&*file),
        number,
        "the lowest free number is the socket's old one"
    );
    ring.recv(file, Vec::with_capacity(8), Ctx::new(collect));
    let (_ring, got) = run_until_idle(ring, &world);
    assert_eq!(recv_error(&got[0]), Some(libc::EBADF));
}

/// A ring of `world` and three TCP sockets it made.
fn three_sockets(world: &World) -> (Ring<Got>, [Rc<OwnedFd>; 3]) {
    let mut ring: Ring<Got> = Ring::simulated(world);
    for _ in 0..3 {
        ring.socket(Domain::IPV4, Type::STREAM, None, Ctx::new(collect));
    }
    let (ring, got) = run_until_idle(ring, world);
    let mut sockets = got.into_iter().map(|c| match c.outcome {
        Outcome::Socket(Ok(fd)) => Rc::new(fd),
        other => panic!("expected a socket, got {other:?}"),
    });
    (
        ring,
        [(); 3].map(|()| sockets.next().expect("three sockets")),
    )
}

/// Binds `fd` to 10.0.0.1:7000: the error, if any.
fn bind(ring: Ring<Got>, world: &World, fd: &Rc<OwnedFd>) -> (Ring<Got>, Option<i32>) {
    let mut ring = ring;
    ring.bind(
        fd,
        SocketAddr::from(([10, 0, 0, 1], 7000)),
        Ctx::new(collect),
    );
    let (ring, got) = run_until_idle(ring, world);
    match &got[0].outcome {
        Outcome::Bind(res) => (ring, res.as_ref().err().and_then(io::Error::raw_os_error)),
        other => panic!("expected a bind, got {other:?}"),
    }
}

#[test]
fn an_address_is_taken_until_its_sockets_fd_closes_even_unseen_by_the_world() {
    let _alone = ALONE.lock().unwrap_or_else(|e| e.into_inner());
    let world = World::new(3);
    let (ring, [first, second, third]) = three_sockets(&world);
    let (ring, error) = bind(ring, &world, &first);
    assert_eq!(error, None);
    let (ring, error) = bind(ring, &world, &second);
    assert_eq!(
        error,
        Some(libc::EADDRINUSE),
        "bound twice, neither listening"
    );
    // Closed by its holder, not through a ring: the world never saw it
    // close, but the address is free.
    drop(first);
    let (_ring, error) = bind(ring, &world, &third);
    assert_eq!(error, None, "the address of a closed socket is still taken");
}

#[test]
fn a_listener_whose_fd_was_dropped_unseen_by_the_world_refuses_connects() {
    let _alone = ALONE.lock().unwrap_or_else(|e| e.into_inner());
    let world = World::new(4);
    let (ring, [listener, before, after]) = three_sockets(&world);
    let (mut ring, error) = bind(ring, &world, &listener);
    assert_eq!(error, None);
    let addr = SocketAddr::from(([10, 0, 0, 1], 7000));
    ring.listen(&listener, 16, Ctx::new(collect));
    ring.connect(&before, addr, Ctx::new(collect));
    let (mut ring, got) = run_until_idle(ring, &world);
    let connected = |got: &Got| {
        let mut connects = got.iter().filter_map(|c| match &c.outcome {
            Outcome::Connect(res) => Some(res.as_ref().err().and_then(io::Error::raw_os_error)),
            _ => None,
        });
        connects.next().expect("a connect's completion")
    };
    assert_eq!(connected(&got), None, "connected while it listens");
    drop(listener);
    ring.connect(&after, addr, Ctx::new(collect));
    let (_ring, got) = run_until_idle(ring, &world);
    assert_eq!(connected(&got), Some(libc::ECONNREFUSED));
}

/// What `c` ended with: bytes or the errno, for a receive or a send.
fn bytes_or_errno(c: &Completion) -> Result<usize, i32> {
    match &c.outcome {
        Outcome::Recv(res, _) | Outcome::Send(res, _) => res
            .as_ref()
            .map(|&n| n)
            .map_err(|e| e.raw_os_error().unwrap_or(0)),
        other => panic!("expected a receive or a send, got {other:?}"),
    }
}

#[test]
fn a_connection_whose_fd_was_dropped_unseen_by_the_world_ends_at_its_peer() {
    let _alone = ALONE.lock().unwrap_or_else(|e| e.into_inner());
    let world = World::new(5);
    let (ring, [listener, client, _spare]) = three_sockets(&world);
    let (mut ring, error) = bind(ring, &world, &listener);
    assert_eq!(error, None);
    ring.listen(&listener, 16, Ctx::new(collect));
    ring.accept(&listener, Ctx::new(collect));
    ring.connect(
        &client,
        SocketAddr::from(([10, 0, 0, 1], 7000)),
        Ctx::new(collect),
    );
    let (mut ring, got) = run_until_idle(ring, &world);
    let accepted = got
        .into_iter()
        .find_map(|c| match c.outcome {
            Outcome::Accept(Ok((fd, _))) => Some(fd),
            _ => None,
        })
        .expect("an accepted connection");
    // Closed as Rust closes a file, not through the ring; a socket made
    // at once may take its number.
    drop(accepted);
    ring.socket(Domain::IPV4, Type::STREAM, None, Ctx::new(collect));
    ring.recv(&client, Vec::with_capacity(8), Ctx::new(collect));
    let (mut ring, got) = run_until_idle(ring, &world);
    let received = got
        .iter()
        .find(|c| matches!(c.outcome, Outcome::Recv(..)))
        .expect("the receive's completion");
    assert_eq!(bytes_or_errno(received), Ok(0), "the peer sees the end");
    drop(got);
    let mut first_error = None;
    for _ in 0..10 {
        ring.send(&client, b"anyone?".to_vec(), Ctx::new(collect));
        let (next, got) = run_until_idle(ring, &world);
        ring = next;
        if let Err(errno) = bytes_or_errno(&got[0]) {
            first_error = Some(errno);
            break;
        }
    }
    assert_eq!(first_error, Some(libc::EPIPE), "the closed end resets");
    drop((ring, listener, client, _spare));
    let violations = world.finish();
    assert!(violations.is_empty(), "{violations:?}");
}
