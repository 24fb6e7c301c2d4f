//! The end check on buffer groups: a buffer of a group that user code
//! still holds when the world finishes is a violation naming its ring and
//! group; a group whose buffers all came back passes, even while a handle
//! to it is kept; a buffer in a completion the ring has not reaped is the
//! in-flight check's.

mod common;

use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use common::socket;
use ouro::net::Type;
use ouro::sim::{Config, World};
use ouro::{Buf, BufferGroup, Completion, Ctx, Outcome, Ring};

const SERVER: ([u8; 4], u16) = ([10, 0, 0, 1], 7100);

/// What the program's callbacks keep: the accepted connection, and the
/// buffers the multishot receive filled, which user code outside the
/// rings holds on to.
#[derive(Default)]
struct Got {
    accepted: Option<std::os::fd::OwnedFd>,
    kept: Rc<RefCell<Vec<Buf>>>,
}

fn expect_ok(_: &mut Got, _: &mut Ring<Got>, c: Completion) -> io::Result<()> {
    assert!(
        matches!(
            c.outcome,
            Outcome::Bind(Ok(()))
                | Outcome::Listen(Ok(()))
                | Outcome::Connect(Ok(()))
                | Outcome::Send(Ok(_), _)
        ),
        "{:?}",
        c.outcome
    );
    Ok(())
}

fn on_accept(got: &mut Got, _: &mut Ring<Got>, c: Completion) -> io::Result<()> {
    match c.outcome {
        Outcome::Accept(Ok((fd, _))) => got.accepted = Some(fd),
        other => panic!("accepting: {other:?}"),
    }
    Ok(())
}

fn on_recv(got: &mut Got, _: &mut Ring<Got>, c: Completion) -> io::Result<()> {
    match c.outcome {
        Outcome::RecvMulti(Ok(buf)) if !buf.is_empty() => got.kept.borrow_mut().push(buf),
        Outcome::RecvMulti(_) => {}
        other => panic!("receiving: {other:?}"),
    }
    Ok(())
}

fn settle(world: &World, node: &mut (Ring<Got>, Got)) {
    world.run(&mut [node], Duration::from_secs(10)).unwrap();
}

/// One ring accepts a connection from itself and receives `hello` into a
/// group of 4 buffers with a multishot receive; the ring is dropped with
/// the receive still armed (which cancels it). Returns the buffers user
/// code received, still held, and a handle to the group.
fn receive_and_keep(world: &World) -> (Rc<RefCell<Vec<Buf>>>, BufferGroup) {
    let (listener, client) = (socket(world, Type::STREAM), socket(world, Type::STREAM));
    let mut ring: Ring<Got> = Ring::simulated(world);
    let (listener, client) = (ring.register_fd(listener), ring.register_fd(client));
    ring.bind(listener, SocketAddr::from(SERVER), Ctx::new(expect_ok));
    ring.listen(listener, 8, Ctx::new(expect_ok));
    let group = ring.buffer_group(4, 64).unwrap();
    let mut node = (ring, Got::default());
    settle(world, &mut node);
    node.0.accept(listener, Ctx::new(on_accept));
    node.0
        .connect(client, SocketAddr::from(SERVER), Ctx::new(expect_ok));
    settle(world, &mut node);
    let accepted = node.1.accepted.take().expect("a connection");
    node.0
        .recv_multishot(Rc::new(accepted), &group, Ctx::new(on_recv));
    node.0.send(client, &b"hello"[..], Ctx::new(expect_ok));
    settle(world, &mut node);
    let kept = node.1.kept.clone();
    let bytes: Vec<u8> = kept
        .borrow()
        .iter()
        .flat_map(|b| b.iter().copied())
        .collect();
    assert_eq!(bytes, b"hello");
    drop(node);
    (kept, group)
}

#[test]
fn a_group_buffer_held_past_the_end_is_a_violation_naming_its_ring_and_group() {
    let world = World::with_config(1, Config::calm());
    let (kept, group) = receive_and_keep(&world);
    drop(group);
    assert_eq!(kept.borrow().len(), 1, "one arrival, one buffer");
    assert_eq!(
        world.finish(),
        [
            "ring 2: 1 of the 4 buffers of its group 0 not returned at the end \
          (user code still holds them)"
        ]
    );
    drop(kept);
}

#[test]
fn the_same_program_dropping_its_buffer_before_the_end_passes() {
    let world = World::with_config(1, Config::calm());
    let (kept, group) = receive_and_keep(&world);
    kept.borrow_mut().clear();
    // The group outlives the end, but every buffer of it came back.
    assert_eq!(group.available(), 4);
    assert_eq!(world.finish(), Vec::<String>::new());
    drop(group);
}

#[test]
fn a_buffer_in_a_completion_not_yet_reaped_is_left_to_the_in_flight_check() {
    let world = World::with_config(1, Config::calm());
    let (listener, client) = (socket(&world, Type::STREAM), socket(&world, Type::STREAM));
    let mut server: Ring<Got> = Ring::simulated(&world);
    let mut sender: Ring<Got> = Ring::simulated(&world);
    let (listener, client) = (server.register_fd(listener), sender.register_fd(client));
    server.bind(listener, SocketAddr::from(SERVER), Ctx::new(expect_ok));
    server.listen(listener, 8, Ctx::new(expect_ok));
    let group = server.buffer_group(4, 64).unwrap();
    let mut server = (server, Got::default());
    settle(&world, &mut server);
    server.0.accept(listener, Ctx::new(on_accept));
    sender.connect(client, SocketAddr::from(SERVER), Ctx::new(expect_ok));
    let mut sender = (sender, Got::default());
    let both: &mut [&mut dyn ouro::sim::Node] = &mut [&mut server, &mut sender];
    world.run(both, Duration::from_secs(10)).unwrap();
    let accepted = server.1.accepted.take().expect("a connection");
    server
        .0
        .recv_multishot(Rc::new(accepted), &group, Ctx::new(on_recv));
    settle(&world, &mut server);
    sender.0.send(client, &b"hello"[..], Ctx::new(expect_ok));
    // Only the sender runs: the bytes arrive in a buffer of the group, in
    // a completion the server's ring does not reap.
    settle(&world, &mut sender);
    assert_eq!(group.available(), 3);
    assert!(server.1.kept.borrow().is_empty());
    let found = world.finish();
    assert!(
        found
            .iter()
            .any(|v| v.starts_with("in flight at the end: RecvMulti of ring 2")),
        "{found:?}"
    );
    assert!(
        !found.iter().any(|v| v.contains("not returned")),
        "{found:?}"
    );
}
