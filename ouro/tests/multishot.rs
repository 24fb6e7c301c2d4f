//! Multishot accept and receive with buffer groups: one task, many
//! completions, buffers taken only when data arrives and recycled on drop.

use std::io::{self, Write};
use std::net::TcpStream;
use std::os::fd::OwnedFd;

use ouro::{BufferGroup, Completion, Ctx, Outcome, Ring, RunMode, Task};

#[derive(Default)]
struct Server {
    accepted: Vec<OwnedFd>,
    accept_finals: usize,
    received: Vec<u8>,
    recv_shots: usize,
    recv_final: Option<io::Result<usize>>,
    held: Vec<ouro::Buf>,
    hold: bool,
}

fn on_accept(s: &mut Server, _: &mut Ring<Server>, c: Completion) -> io::Result<()> {
    let last = c.is_final();
    let Outcome::AcceptMulti(result) = c.outcome else {
        panic!("not an accept: {:?}", c.outcome)
    };
    if last {
        s.accept_finals += 1;
        assert!(ouro::is_canceled(&result.unwrap_err()));
        return Ok(());
    }
    s.accepted.push(result?);
    Ok(())
}

fn on_recv(s: &mut Server, ring: &mut Ring<Server>, c: Completion) -> io::Result<()> {
    let last = c.is_final();
    let Outcome::RecvMulti(result) = c.outcome else {
        panic!("not a multishot recv: {:?}", c.outcome)
    };
    if last {
        s.recv_final = Some(result.map(|b| b.len()));
        return Ok(());
    }
    let buf = result?;
    s.received.extend_from_slice(&buf);
    s.recv_shots += 1;
    if s.hold {
        s.held.push(buf);
    }
    let _ = ring;
    Ok(())
}

fn ring() -> Ring<Server> {
    Ring::new(64).expect("io_uring")
}

#[test]
fn one_accept_task_accepts_many_connections_until_cancelled() {
    let mut ring = ring();
    let listener = ouro::net::tcp_listener(([127, 0, 0, 1], 0).into(), 64).unwrap();
    let addr = ouro::net::local_addr(&listener).unwrap();
    let task = ring.accept_multishot(&listener, Ctx::new(on_accept));
    let clients: Vec<TcpStream> = (0..5).map(|_| TcpStream::connect(addr).unwrap()).collect();
    let mut s = Server::default();
    while s.accepted.len() < clients.len() {
        ring.run(&mut s, RunMode::Once).unwrap();
    }
    assert_eq!(s.accept_finals, 0);
    ring.cancel(task, Ctx::none());
    ring.run(&mut s, RunMode::UntilDone).unwrap();
    assert_eq!(s.accept_finals, 1);
    assert_eq!(s.accepted.len(), 5);
    for fd in &s.accepted {
        let peer = ouro::net::peer_addr(fd).unwrap().as_socket().unwrap();
        assert!(clients.iter().any(|c| c.local_addr().unwrap() == peer));
    }
}

fn connected_pair(ring: &mut Ring<Server>) -> (TcpStream, OwnedFd) {
    let listener = ouro::net::tcp_listener(([127, 0, 0, 1], 0).into(), 4).unwrap();
    let client = TcpStream::connect(ouro::net::local_addr(&listener).unwrap()).unwrap();
    ring.accept_multishot(&listener, Ctx::new(on_accept));
    let mut s = Server::default();
    ring.run(&mut s, RunMode::Once).unwrap();
    ring.cancel_all(Ctx::none());
    ring.run(&mut s, RunMode::UntilDone).unwrap();
    (client, s.accepted.pop().unwrap())
}

#[test]
fn idle_connections_hold_no_buffer_and_buffers_come_back() {
    let mut ring = ring();
    let group: BufferGroup = ring.buffer_group(8, 64).unwrap();
    let (mut client, fd) = connected_pair(&mut ring);
    let task: Task = ring.recv_multishot(&fd, &group, Ctx::new(on_recv));
    let mut s = Server::default();
    // Nothing sent: once submitted, the armed receive takes no buffer.
    ring.noop(Ctx::none());
    ring.run(&mut s, RunMode::Once).unwrap();
    assert_eq!(group.available(), 8);
    for chunk in [&b"hello "[..], b"multishot ", b"world"] {
        client.write_all(chunk).unwrap();
        let before = s.received.len();
        while s.received.len() < before + chunk.len() {
            ring.run(&mut s, RunMode::Once).unwrap();
        }
    }
    assert_eq!(s.received, b"hello multishot world");
    assert!(s.recv_shots >= 1);
    assert_eq!(
        group.available(),
        8,
        "every delivered buffer was dropped and recycled"
    );
    drop(client);
    ring.run(&mut s, RunMode::UntilDone).unwrap();
    assert_eq!(
        s.recv_final.unwrap().unwrap(),
        0,
        "end of stream ends the task"
    );
    let _ = task;
}

#[test]
fn running_out_of_buffers_ends_the_task_with_enobufs() {
    let mut ring = ring();
    let group = ring.buffer_group(2, 4).unwrap();
    let (mut client, fd) = connected_pair(&mut ring);
    ring.recv_multishot(&fd, &group, Ctx::new(on_recv));
    let mut s = Server {
        hold: true,
        ..Server::default()
    };
    client.write_all(b"0123456789abcdef").unwrap();
    ring.run(&mut s, RunMode::UntilDone).unwrap();
    let err = s.recv_final.take().unwrap().unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENOBUFS), "{err}");
    assert_eq!(s.held.len(), 2);
    assert_eq!(group.available(), 0);
    s.held.clear();
    assert_eq!(group.available(), 2);
    // Re-armed with buffers back, it gets the rest.
    s.hold = false;
    ring.recv_multishot(&fd, &group, Ctx::new(on_recv));
    while s.received.len() < 16 {
        ring.run(&mut s, RunMode::Once).unwrap();
    }
    assert_eq!(s.received, b"0123456789abcdef");
}

#[test]
fn dropping_the_ring_with_multishot_tasks_in_flight_is_clean() {
    let mut ring = ring();
    let group = ring.buffer_group(4, 32).unwrap();
    let (_client, fd) = connected_pair(&mut ring);
    ring.recv_multishot(&fd, &group, Ctx::new(on_recv));
    let listener = ouro::net::tcp_listener(([127, 0, 0, 1], 0).into(), 4).unwrap();
    ring.accept_multishot(&listener, Ctx::new(on_accept));
    drop(ring);
    // The group outlives the ring; its buffers are intact and counted.
    assert_eq!(group.available(), 4);
}
