//! Ring fds made by the ring itself and the life of a ring fd: direct
//! accepts, sockets and opens (into io_uring's fixed table, or plain fds
//! without one), stale and closed handles (`EBADF`), closing while tasks
//! are in flight (they finish first, then the file closes), reused slots,
//! taking an fd back, full tables, and rings dropped with ring fds open.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::time::Duration;

use ouro::fs::OpenOptions;
use ouro::net::{Domain, Type};
use ouro::{BackendKind, Completion, Ctx, Offset, Outcome, PollMask, Ring, RingFd, RunMode};

use crate::harness::{
    complete, ctx, open_fds, os_error, peer, peer_closed, pipe, ring, run_all, socket_pair,
    tcp_pair, Got,
};

backend_tests![
    accept_multishot_direct_gives_ring_fds,
    socket_direct_gives_a_ring_fd_to_connect_with,
    a_direct_socket_without_a_fixed_table_has_a_process_fd,
    a_failed_direct_socket_makes_no_ring_fd,
    open_direct_gives_a_ring_fd_to_write_and_read,
    a_failed_direct_open_makes_no_ring_fd,
    direct_operations_nobody_hears_close_what_they_make,
    stale_and_closed_handles_fail_with_ebadf,
    a_handle_of_another_ring_is_stale,
    a_reused_slot_is_untouched_by_the_old_handle,
    close_cancels_what_is_in_flight_then_closes,
    closing_one_ring_fd_leaves_the_tasks_of_others_alone,
    close_waits_for_a_task_that_finishes_on_its_own,
    take_fd_gives_the_file_back,
    fd_lends_the_process_fd,
    a_ring_without_a_fixed_table_serves_ring_fds,
    a_full_fixed_table_leaves_ring_fds_their_process_fds,
];

exclusive_backend_tests![
    direct_opens_and_sockets_beyond_a_small_table_get_plain_fds,
    closing_a_ring_fd_with_a_recv_in_flight_leaks_nothing,
    dropping_a_ring_closes_its_ring_fds,
];

fn accept_multishot_direct_gives_ring_fds(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let listener = Rc::new(ouro::net::tcp_listener(([127, 0, 0, 1], 0).into(), 8).unwrap());
    let addr = ouro::net::local_addr(&listener).unwrap();
    let task = ring.accept_multishot_direct(&listener, ctx(0));
    let mut clients: Vec<TcpStream> = (0..3).map(|_| TcpStream::connect(addr).unwrap()).collect();
    let mut got = Vec::new();
    while got.len() < 3 {
        ring.run(&mut got, RunMode::Once).unwrap();
    }
    let conns: Vec<RingFd> = got
        .drain(..)
        .map(|c| {
            assert!(!c.is_final());
            expect!(c.outcome, Outcome::AcceptDirect(Ok(fd)) => fd)
        })
        .collect();
    assert_eq!(ring.ring_fds(), 3);
    assert_direct_on_uring(&ring, conns[0], kind);
    ring.cancel(task, Ctx::none());
    let last = run_all(&mut ring).pop().unwrap();
    assert!(last.is_final());
    // Which connection is which: each client says its number, the server
    // answers through the ring fd it came on.
    for (i, client) in clients.iter_mut().enumerate() {
        client.write_all(&[i as u8]).unwrap();
    }
    for &conn in &conns {
        let outcome = complete(&mut ring, |r, c| r.recv(conn, Vec::with_capacity(4), c));
        let buf = expect!(outcome, Outcome::Recv(Ok(1), buf) => buf);
        let who = buf[0];
        complete(&mut ring, |r, c| r.send(conn, vec![who + 100], c));
    }
    for (i, client) in clients.iter_mut().enumerate() {
        let mut answer = [0u8];
        client.read_exact(&mut answer).unwrap();
        assert_eq!(answer[0], i as u8 + 100);
    }
    for conn in conns {
        expect!(complete(&mut ring, |r, c| r.close(conn, c)), Outcome::Close(Ok(())) => ());
    }
    assert_eq!(ring.ring_fds(), 0);
    for client in &mut clients {
        assert_eq!(client.read(&mut [0u8; 1]).unwrap(), 0, "closed by the ring");
    }
}

/// A ring whose io_uring fixed file table has `slots` slots.
fn ring_with_table(kind: BackendKind, slots: u32) -> Ring<Got> {
    Ring::builder()
        .backend(kind)
        .entries(8)
        .fixed_files(slots)
        .build()
        .unwrap()
}

/// A ring fd a direct operation produced: straight into io_uring's fixed
/// file table (5.19), so it has no process fd to lend; a plain one
/// elsewhere.
fn assert_direct_on_uring(ring: &Ring<Got>, fd: RingFd, kind: BackendKind) {
    let lent = ring.fd(fd).map(drop);
    if kind == BackendKind::Uring {
        assert_eq!(lent.unwrap_err().kind(), io::ErrorKind::Unsupported);
    } else {
        lent.unwrap();
    }
}

/// Sends `bytes` through `fd` and checks that `peer` reads exactly them.
pub(super) fn sent_through(
    ring: &mut Ring<Got>,
    fd: RingFd,
    bytes: &'static [u8],
    peer: &mut impl Read,
) {
    let outcome = complete(ring, |r, c| r.send(fd, bytes, c));
    assert_eq!(expect!(outcome, Outcome::Send(Ok(n), _) => n), bytes.len());
    let mut got = vec![0u8; bytes.len()];
    peer.read_exact(&mut got).unwrap();
    assert_eq!(got, bytes);
}

/// A direct socket on `ring`, connected to a loopback listener; the server's
/// end.
fn connected_direct_socket(ring: &mut Ring<Got>) -> (RingFd, TcpStream) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let outcome = complete(ring, |r, c| {
        r.socket_direct(Domain::IPV4, Type::STREAM, None, c)
    });
    let sock = expect!(outcome, Outcome::SocketDirect(Ok(fd)) => fd);
    assert_eq!(ring.ring_fds(), 1);
    expect!(complete(ring, |r, c| r.connect(sock, addr, c)), Outcome::Connect(Ok(())) => ());
    let (server, _) = listener.accept().unwrap();
    server
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    (sock, server)
}

fn socket_direct_gives_a_ring_fd_to_connect_with(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let (sock, mut server) = connected_direct_socket(&mut ring);
    assert_direct_on_uring(&ring, sock, kind);
    sent_through(&mut ring, sock, b"ping", &mut server);
    server.write_all(b"pong").unwrap();
    let outcome = complete(&mut ring, |r, c| r.recv(sock, Vec::with_capacity(8), c));
    assert_eq!(
        &expect!(outcome, Outcome::Recv(Ok(4), buf) => buf)[..],
        b"pong"
    );
    expect!(complete(&mut ring, |r, c| r.close(sock, c)), Outcome::Close(Ok(())) => ());
    assert_eq!(ring.ring_fds(), 0);
    assert_eq!(server.read(&mut [0u8; 1]).unwrap(), 0, "closed by the ring");
}

/// With no table, the socket is made as `socket` makes it and registered.
fn a_direct_socket_without_a_fixed_table_has_a_process_fd(kind: BackendKind) {
    let mut ring: Ring<Got> = ring_with_table(kind, 0);
    let (sock, mut server) = connected_direct_socket(&mut ring);
    let fd = ring.fd(sock).expect("a process fd to lend");
    assert_eq!(
        Some(ouro::net::peer_addr(fd).unwrap()),
        Some(server.local_addr().unwrap())
    );
    sent_through(&mut ring, sock, b"ping", &mut server);
}

/// An address family nobody has: an error, and no ring fd left behind.
fn a_failed_direct_socket_makes_no_ring_fd(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let outcome = complete(&mut ring, |r, c| {
        r.socket_direct(Domain::from(4000), Type::STREAM, None, c)
    });
    let err = expect!(outcome, Outcome::SocketDirect(Err(e)) => e);
    assert_eq!(err.raw_os_error(), Some(libc::EAFNOSUPPORT));
    assert_eq!(ring.ring_fds(), 0);
}

fn open_direct_gives_a_ring_fd_to_write_and_read(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("direct.txt");
    let options = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600);
    let outcome = complete(&mut ring, |r, c| r.open_direct(&path, &options, c));
    let file = expect!(outcome, Outcome::OpenDirect(Ok(fd)) => fd);
    assert_eq!(ring.ring_fds(), 1);
    assert_direct_on_uring(&ring, file, kind);
    let outcome = complete(&mut ring, |r, c| {
        r.write(file, &b"direct"[..], Offset::At(0), c)
    });
    expect!(outcome, Outcome::Write(Ok(6), _) => ());
    let outcome = complete(&mut ring, |r, c| {
        r.read(file, Vec::with_capacity(16), Offset::At(0), c)
    });
    assert_eq!(
        &expect!(outcome, Outcome::Read(Ok(6), buf) => buf)[..],
        b"direct"
    );
    expect!(complete(&mut ring, |r, c| r.close(file, c)), Outcome::Close(Ok(())) => ());
    assert_eq!(ring.ring_fds(), 0);
    assert_eq!(std::fs::read(&path).unwrap(), b"direct");
}

/// A missing file and a path with a NUL byte: errors, and no ring fd.
fn a_failed_direct_open_makes_no_ring_fd(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let dir = tempfile::tempdir().unwrap();
    let read = OpenOptions::new().read(true);
    let missing = dir.path().join("missing");
    let outcome = complete(&mut ring, |r, c| r.open_direct(&missing, &read, c));
    let err = expect!(outcome, Outcome::OpenDirect(Err(e)) => e);
    assert_eq!(err.raw_os_error(), Some(libc::ENOENT));
    let outcome = complete(&mut ring, |r, c| r.open_direct("nul\0byte", &read, c));
    let err = expect!(outcome, Outcome::OpenDirect(Err(e)) => e);
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    assert_eq!(ring.ring_fds(), 0);
}

fn stale_and_closed_handles_fail_with_ebadf(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let (a, b) = socket_pair();
    let a = ring.register_fd(a);
    let _b = peer(b);
    expect!(complete(&mut ring, |r, c| r.close(a, c)), Outcome::Close(Ok(())) => ());
    let outcome = complete(&mut ring, |r, c| r.send(a, &b"nobody"[..], c));
    assert_eq!(
        expect!(outcome, Outcome::Send(res, _) => os_error(res)),
        libc::EBADF
    );
    let outcome = complete(&mut ring, |r, c| r.recv(a, Vec::with_capacity(8), c));
    assert_eq!(
        expect!(outcome, Outcome::Recv(res, _) => os_error(res)),
        libc::EBADF
    );
    let outcome = complete(&mut ring, |r, c| r.poll(a, PollMask::READABLE, c));
    assert_eq!(
        expect!(outcome, Outcome::Poll(res) => os_error(res)),
        libc::EBADF
    );
    let outcome = complete(&mut ring, |r, c| r.close(a, c));
    assert_eq!(
        expect!(outcome, Outcome::Close(res) => os_error(res)),
        libc::EBADF
    );
    assert_eq!(os_error(ring.fd(a).map(drop)), libc::EBADF);
    assert_eq!(os_error(ring.take_fd(a).map(drop)), libc::EBADF);
    // Closing makes the handle stale at once, before the close has run.
    let (c, _d) = socket_pair();
    let c = ring.register_fd(c);
    ring.close(c, Ctx::none());
    ring.send(c, &b"too late"[..], ctx(1));
    let got = run_all(&mut ring);
    let send = got.iter().find(|c| c.key() == 1).unwrap();
    assert_eq!(
        expect!(&send.outcome, Outcome::Send(Err(e), _) => e.raw_os_error()),
        Some(libc::EBADF)
    );
}

fn a_handle_of_another_ring_is_stale(kind: BackendKind) {
    let mut one_ring = ring(kind, 8);
    let mut other: Ring<Got> = ring(kind, 8);
    let (a, _b) = socket_pair();
    let theirs = other.register_fd(a);
    let outcome = complete(&mut one_ring, |r, c| r.send(theirs, &b"wrong ring"[..], c));
    assert_eq!(
        expect!(outcome, Outcome::Send(res, _) => os_error(res)),
        libc::EBADF
    );
    assert_eq!(os_error(one_ring.fd(theirs).map(drop)), libc::EBADF);
}

fn a_reused_slot_is_untouched_by_the_old_handle(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let (a, a_peer) = socket_pair();
    let (b, b_peer) = socket_pair();
    let (a_peer, mut b_peer) = (peer(a_peer), peer(b_peer));
    let old = ring.register_fd(a);
    expect!(complete(&mut ring, |r, c| r.close(old, c)), Outcome::Close(Ok(())) => ());
    let new = ring.register_fd(b);
    assert_eq!(
        format!("{old:?}").split('#').next(),
        format!("{new:?}").split('#').next(),
        "the slot is reused"
    );
    assert_ne!(old, new);
    let outcome = complete(&mut ring, |r, c| r.send(old, &b"for the old file"[..], c));
    assert_eq!(
        expect!(outcome, Outcome::Send(res, _) => os_error(res)),
        libc::EBADF
    );
    // Only what was sent through the new handle arrives.
    sent_through(&mut ring, new, b"new", &mut b_peer);
    assert!(peer_closed(&a_peer));
}

/// What the close tests record: the order of completions, and whether the
/// peer had seen the file closed when each callback ran.
struct Closing {
    peer: UnixStream,
    seen: Vec<(Completion, bool)>,
}

/// A ring with one end of a socket pair as a ring fd, and the state that
/// watches the other end.
fn closing_setup(kind: BackendKind) -> (Ring<Closing>, RingFd, Closing) {
    let mut ring: Ring<Closing> = ring(kind, 8);
    let (a, b) = socket_pair();
    let a = ring.register_fd(a);
    let state = Closing {
        peer: peer(b),
        seen: Vec::new(),
    };
    (ring, a, state)
}

fn note(state: &mut Closing, _: &mut Ring<Closing>, c: Completion) -> io::Result<()> {
    let closed = peer_closed(&state.peer);
    state.seen.push((c, closed));
    Ok(())
}

fn close_cancels_what_is_in_flight_then_closes(kind: BackendKind) {
    let (mut ring, a, mut state) = closing_setup(kind);
    ring.recv(a, Vec::with_capacity(8), Ctx::new(note).key(1));
    ring.poll(a, PollMask::READABLE, Ctx::new(note).key(2));
    ring.run(&mut state, RunMode::NoWait).unwrap();
    assert!(state.seen.is_empty(), "both wait for data");
    ring.close(a, Ctx::new(note).key(3));
    ring.run(&mut state, RunMode::UntilDone).unwrap();
    let keys: Vec<u64> = state.seen.iter().map(|(c, _)| c.key()).collect();
    assert_eq!(keys.len(), 3);
    assert_eq!(keys[2], 3, "the close completes last: {keys:?}");
    for (c, closed) in &state.seen[..2] {
        let err = c.result().expect_err("cancelled by the close");
        assert!(
            matches!(err.raw_os_error(), Some(libc::ECANCELED | libc::EBADF)),
            "{err}"
        );
        assert!(!closed, "the file was still open when {c:?} completed");
    }
    let (close, closed) = &state.seen[2];
    close.result().unwrap();
    assert!(closed, "closed once the close completed");
    assert_eq!(ring.ring_fds(), 0);
}

/// A close cancels the tasks of its own fd only (each fd lists its
/// tasks), also when they were scheduled between another fd's.
fn closing_one_ring_fd_leaves_the_tasks_of_others_alone(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let (a, _a_peer) = socket_pair();
    // Non-blocking, so that the readiness backend splices on its own thread
    // (a splice into a blocking socket runs on the pool, where a cancel
    // cannot reach it once it has begun: closing `a` would then wait).
    let a = UnixStream::from(a);
    a.set_nonblocking(true).unwrap();
    let (c, c_peer) = socket_pair();
    let (pipe_out, _pipe_in) = pipe();
    let (a, c) = (ring.register_fd(OwnedFd::from(a)), ring.register_fd(c));
    let pipe_out = ring.register_fd(pipe_out);
    ring.recv(c, Vec::with_capacity(8), ctx(1));
    ring.recv(a, Vec::with_capacity(8), ctx(2));
    ring.splice(pipe_out, None, a, None, 8, ctx(3)); // names two ring fds
    ring.recv(c, Vec::with_capacity(8), ctx(4));
    let mut got = Vec::new();
    ring.run(&mut got, RunMode::NoWait).unwrap();
    assert!(got.is_empty(), "all wait: {got:?}");
    ring.close(a, ctx(5));
    let run_until = |ring: &mut Ring<Got>, got: &mut Got, key| {
        while !got.iter().any(|c: &Completion| c.key() == key) {
            ring.run(got, RunMode::Once).unwrap();
        }
    };
    run_until(&mut ring, &mut got, 5);
    let mut keys: Vec<u64> = got.iter().map(Completion::key).collect();
    keys.sort_unstable();
    assert_eq!(keys, [2, 3, 5], "a's tasks and its close: {got:?}");
    (&UnixStream::from(c_peer)).write_all(b"to c").unwrap();
    run_until(&mut ring, &mut got, 1);
    assert_eq!(
        &expect!(&got[3].outcome, Outcome::Recv(Ok(4), buf) => buf)[..],
        b"to c",
        "c's first receive was not cancelled"
    );
    // The splice no longer names the pipe: closing it waits for nothing.
    ring.take_fd(pipe_out).expect("no task names the pipe now");
    ring.close(c, ctx(6));
    run_all(&mut ring);
    assert_eq!(ring.ring_fds(), 0);
}

fn close_waits_for_a_task_that_finishes_on_its_own(kind: BackendKind) {
    let (mut ring, a, mut state) = closing_setup(kind);
    // A send that completes at once, and the close right behind it: the
    // data goes out, then the file closes.
    ring.send(a, &b"last words"[..], Ctx::new(note).key(1));
    ring.close(a, Ctx::new(note).key(2));
    ring.run(&mut state, RunMode::UntilDone).unwrap();
    let (send, _) = &state.seen[0];
    assert_eq!(send.key(), 1);
    assert_eq!(send.bytes().unwrap(), 10);
    let mut got = Vec::new();
    state.peer.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"last words");
}

fn take_fd_gives_the_file_back(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let (a, b) = socket_pair();
    let (a, mut b) = (ring.register_fd(a), peer(b));
    ring.recv(a, Vec::with_capacity(8), ctx(0));
    ring.run(&mut Vec::new(), RunMode::NoWait).unwrap();
    assert_eq!(
        os_error(ring.take_fd(a).map(drop)),
        libc::EBUSY,
        "a recv names it"
    );
    b.write_all(b"x").unwrap();
    run_all(&mut ring);
    let fd = ring.take_fd(a).unwrap();
    assert_eq!(ring.ring_fds(), 0);
    assert_eq!(os_error(ring.fd(a).map(drop)), libc::EBADF, "stale");
    let mut taken = UnixStream::from(fd);
    taken.write_all(b"still the same socket").unwrap();
    let mut got = [0u8; 21];
    b.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"still the same socket");
    // A direct accept's connection, too (on io_uring: Linux 6.8).
    let (conn, mut client) = accept_one_direct(&mut ring);
    let mut taken = TcpStream::from(ring.take_fd(conn).unwrap());
    taken.write_all(b"taken").unwrap();
    let mut got = [0u8; 5];
    client.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"taken");
}

/// One loopback connection accepted with `accept_multishot_direct` (then
/// stopped): the ring fd and the client's end.
fn accept_one_direct(ring: &mut Ring<Got>) -> (RingFd, TcpStream) {
    let listener = Rc::new(ouro::net::tcp_listener(([127, 0, 0, 1], 0).into(), 8).unwrap());
    let client = TcpStream::connect(ouro::net::local_addr(&listener).unwrap()).unwrap();
    let task = ring.accept_multishot_direct(&listener, ctx(0));
    let mut got = Vec::new();
    while got.is_empty() {
        ring.run(&mut got, RunMode::Once).unwrap();
    }
    let conn = expect!(got.remove(0).outcome, Outcome::AcceptDirect(Ok(fd)) => fd);
    ring.cancel(task, Ctx::none());
    run_all(ring);
    (conn, client)
}

fn fd_lends_the_process_fd(kind: BackendKind) {
    let mut ring: Ring<Got> = ring(kind, 8);
    let (client, server) = tcp_pair();
    let server = ring.register_fd(server.into());
    let fd = ring.fd(server).unwrap();
    let sock = socket2::SockRef::from(&fd);
    sock.set_tcp_nodelay(true).unwrap();
    assert!(sock.tcp_nodelay().unwrap());
    assert_eq!(
        Some(ouro::net::peer_addr(ring.fd(server).unwrap()).unwrap()),
        Some(client.local_addr().unwrap())
    );
}

fn a_ring_without_a_fixed_table_serves_ring_fds(kind: BackendKind) {
    let mut ring: Ring<Got> = ring_with_table(kind, 0);
    let (conn, mut client) = accept_one_direct(&mut ring);
    // Not in a table: the process fd is there to lend.
    assert!(ring.fd(conn).is_ok());
    client.write_all(b"ping").unwrap();
    let outcome = complete(&mut ring, |r, c| r.recv(conn, Vec::with_capacity(8), c));
    assert_eq!(
        &expect!(outcome, Outcome::Recv(Ok(4), buf) => buf)[..],
        b"ping"
    );
}

/// A table of two: two connections go into it, then (re-armed) the ring
/// accepts plain fds; an fd registered meanwhile keeps its own too. All
/// work alike.
fn a_full_fixed_table_leaves_ring_fds_their_process_fds(kind: BackendKind) {
    let mut ring: Ring<Got> = ring_with_table(kind, 2);
    let listener = Rc::new(ouro::net::tcp_listener(([127, 0, 0, 1], 0).into(), 8).unwrap());
    let addr = ouro::net::local_addr(&listener).unwrap();
    let mut clients = Vec::new();
    let mut conns = Vec::new();
    for round in 0..2 {
        let task = ring.accept_multishot_direct(&listener, ctx(0));
        for _ in 0..2 - round {
            clients.push(TcpStream::connect(addr).unwrap());
        }
        let mut got = Vec::new();
        while conns.len() + got.len() < clients.len() {
            ring.run(&mut got, RunMode::Once).unwrap();
        }
        for c in got {
            conns.push(expect!(c.outcome, Outcome::AcceptDirect(Ok(fd)) => fd));
        }
        ring.cancel(task, Ctx::none());
        run_all(&mut ring);
    }
    let (a, a_peer) = socket_pair();
    let mut a_peer = peer(a_peer);
    conns.push(ring.register_fd(a));
    let third = ring.fd(conns[2]).map(drop);
    assert!(third.is_ok(), "the table was full: a plain fd");
    for (i, &conn) in conns.iter().enumerate() {
        let outcome = complete(&mut ring, |r, c| r.send(conn, vec![i as u8], c));
        assert_eq!(expect!(outcome, Outcome::Send(Ok(n), _) => n), 1);
    }
    for (i, client) in clients.iter_mut().enumerate() {
        let mut byte = [0u8];
        client.read_exact(&mut byte).unwrap();
        assert_eq!(byte[0], i as u8);
    }
    let mut byte = [0u8];
    a_peer.read_exact(&mut byte).unwrap();
    assert_eq!(byte[0], 3);
}

/// Three direct opens and three direct sockets in one turn, on a table of
/// one slot, then of two: the kernel picks a direct operation's slot when
/// it finishes, so the operations beyond the free slots must be made as
/// plain fds and registered, as the docs say, not fail with
/// `FdTableFull`. Every ring fd works; closing them leaves no fd open.
fn direct_opens_and_sockets_beyond_a_small_table_get_plain_fds(kind: BackendKind) {
    for slots in [1, 2] {
        let mut ring = ring_with_table(kind, slots);
        let before = open_fds();
        let dir = tempfile::tempdir().unwrap();
        let create = OpenOptions::new().read(true).write(true).create_new(true);
        for key in 0..3 {
            ring.open_direct(dir.path().join(key.to_string()), &create, ctx(key));
            ring.socket_direct(Domain::IPV4, Type::STREAM, None, ctx(10 + key));
        }
        let mut made: Vec<(u64, RingFd)> = (run_all(&mut ring).into_iter())
            .map(|c| match (c.key(), c.outcome) {
                (key, Outcome::OpenDirect(Ok(fd)) | Outcome::SocketDirect(Ok(fd))) => (key, fd),
                (key, other) => panic!("{slots} slot(s), task {key}: {other:?}"),
            })
            .collect();
        made.sort_by_key(|&(key, _)| key);
        let keys: Vec<u64> = made.iter().map(|&(key, _)| key).collect();
        assert_eq!(keys, [0, 1, 2, 10, 11, 12]);
        let in_table = made.iter().filter(|m| ring.fd(m.1).is_err()).count();
        assert!(in_table <= slots as usize, "{in_table} in {slots} slot(s)");
        let uring = kind == BackendKind::Uring;
        assert!(!uring || in_table > 0, "the table went unused");
        for (key, fd) in made {
            if key < 10 {
                written_and_read_back(&mut ring, fd, key as u8);
            } else {
                connected_and_sent_through(&mut ring, fd);
            }
            expect!(complete(&mut ring, |r, c| r.close(fd, c)), Outcome::Close(Ok(())) => ());
        }
        assert_eq!(ring.ring_fds(), 0);
        assert_eq!(open_fds(), before, "{slots} slot(s): every fd is closed");
    }
}

/// Writes `byte` at the start of file `fd` and reads it back.
fn written_and_read_back(ring: &mut Ring<Got>, fd: RingFd, byte: u8) {
    let wrote = complete(ring, |r, c| r.write(fd, vec![byte], Offset::At(0), c));
    expect!(wrote, Outcome::Write(Ok(1), _) => ());
    let buf = Vec::with_capacity(4);
    let read = complete(ring, |r, c| r.read(fd, buf, Offset::At(0), c));
    assert_eq!(&expect!(read, Outcome::Read(Ok(1), buf) => buf)[..], [byte]);
}

/// Connects socket `fd` to a loopback listener and sends through it.
fn connected_and_sent_through(ring: &mut Ring<Got>, fd: RingFd) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let connected = complete(ring, |r, c| r.connect(fd, addr, c));
    expect!(connected, Outcome::Connect(Ok(())) => ());
    let mut server = listener.accept().unwrap().0;
    sent_through(ring, fd, b"direct", &mut server);
}

/// The file closes after the recv it cancelled, and no fd is left open.
fn closing_a_ring_fd_with_a_recv_in_flight_leaks_nothing(kind: BackendKind) {
    let before = open_fds();
    {
        let (mut ring, a, mut state) = closing_setup(kind);
        ring.recv(a, Vec::with_capacity(8), Ctx::new(note).key(1));
        ring.run(&mut state, RunMode::NoWait).unwrap();
        ring.close(a, Ctx::new(note).key(2));
        ring.run(&mut state, RunMode::UntilDone).unwrap();
        let order: Vec<(u64, bool)> = state
            .seen
            .iter()
            .map(|(c, closed)| (c.key(), *closed))
            .collect();
        assert_eq!(order, [(1, false), (2, true)]);
    }
    assert_eq!(open_fds(), before, "every fd is closed");
}

/// Dropping a ring closes its ring fds (also those with tasks in flight,
/// and direct accepts' connections); nothing is left open.
fn dropping_a_ring_closes_its_ring_fds(kind: BackendKind) {
    let before = open_fds();
    {
        let mut ring: Ring<Got> = ring(kind, 8);
        let pairs: Vec<(OwnedFd, OwnedFd)> = (0..4).map(|_| socket_pair()).collect();
        let mut peers = Vec::new();
        for (i, (a, b)) in pairs.into_iter().enumerate() {
            let a = ring.register_fd(a);
            if i % 2 == 0 {
                ring.recv(a, Vec::with_capacity(8), ctx(0));
            }
            peers.push(peer(b));
        }
        let listener = Rc::new(ouro::net::tcp_listener(([127, 0, 0, 1], 0).into(), 8).unwrap());
        let mut client = TcpStream::connect(ouro::net::local_addr(&listener).unwrap()).unwrap();
        ring.accept_multishot_direct(&listener, ctx(0));
        let mut got = Vec::new();
        while got.is_empty() {
            ring.run(&mut got, RunMode::Once).unwrap();
        }
        assert_eq!(ring.ring_fds(), 5);
        drop(got);
        drop(ring);
        for mut peer in peers {
            assert_eq!(peer.read(&mut [0u8; 1]).unwrap(), 0, "closed with the ring");
        }
        client
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        assert_eq!(
            client.read(&mut [0u8; 1]).unwrap(),
            0,
            "accepted, then closed"
        );
    }
    assert_eq!(open_fds(), before, "every fd is closed");
}

/// Direct operations whose completions nobody hears (`Ctx::none()`) close
/// the ring fds they make, as a dropped `OwnedFd` closes: no handle to
/// them was given out. (They stayed open until the ring was dropped.)
fn direct_operations_nobody_hears_close_what_they_make(kind: BackendKind) {
    let mut ring: Ring<Got> = ring(kind, 16);
    let dir = tempfile::tempdir().unwrap();
    let options = OpenOptions::new().write(true).create(true);
    for i in 0..3 {
        ring.open_direct(dir.path().join(i.to_string()), &options, Ctx::none());
        ring.socket_direct(Domain::IPV4, Type::STREAM, None, Ctx::none());
    }
    let listener = Rc::new(ouro::net::tcp_listener(([127, 0, 0, 1], 0).into(), 8).unwrap());
    let addr = ouro::net::local_addr(&listener).unwrap();
    let accept = ring.accept_multishot_direct(&listener, Ctx::none());
    let mut clients: Vec<TcpStream> = (0..4).map(|_| TcpStream::connect(addr).unwrap()).collect();
    let mut got = Vec::new();
    for client in &mut clients {
        client.set_nonblocking(true).unwrap();
        // Accepted, then closed: the client reads the end.
        let mut turns = 0;
        while !matches!(client.read(&mut [0; 8]), Ok(0)) {
            turns += 1;
            assert!(turns < 10_000, "an accepted connection stays open");
            ring.run(&mut got, RunMode::NoWait).unwrap();
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    ring.cancel(accept, Ctx::none());
    run_all(&mut ring);
    assert_eq!(ring.ring_fds(), 0);
}
