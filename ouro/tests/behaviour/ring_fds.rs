//! Ring fds: files handed to the ring for good. Every operation through a
//! `RingFd`; direct descriptors and a ring fd's life are in
//! `ring_fds_direct.rs`.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use ouro::{BackendKind, Completion, Ctx, Offset, Outcome, PollMask, Ring, RunMode};

use crate::harness::{
    complete, ctx, peer, pipe, ring, run_all, socket_pair, tcp_pair, temp_file, Got,
};
use crate::ring_fds_direct::sent_through;

backend_tests![
    read_and_write,
    readv_and_writev,
    send_and_recv,
    a_short_datagram_leaves_the_next_one_to_receive,
    a_short_unix_stream_receive_leaves_the_rest_to_receive,
    sendmsg_and_recvmsg,
    recv_multishot_delivers_a_flood_in_order,
    poll_waits_for_readiness,
    splice_between_ring_fds,
    splice_waits_for_the_side_that_is_not_ready,
    fsync_and_shutdown,
    bind_listen_accept_and_connect,
    accept_multishot_on_a_ring_listener,
];

fn read_and_write(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let (reader, writer) = pipe();
    let (reader, writer) = (ring.register_fd(reader), ring.register_fd(writer));
    let outcome = complete(&mut ring, |r, c| {
        r.write(writer, &b"through ring fds"[..], Offset::Current, c)
    });
    assert_eq!(expect!(outcome, Outcome::Write(Ok(n), _) => n), 16);
    let outcome = complete(&mut ring, |r, c| {
        r.read(reader, Vec::with_capacity(64), Offset::Current, c)
    });
    let buf = expect!(outcome, Outcome::Read(Ok(16), buf) => buf);
    assert_eq!(&buf[..], b"through ring fds");
    // And a file at an offset (the handle taken by reference works too,
    // as a shared owner may be passed).
    let file = ring.register_fd(temp_file(b"0123456789").into());
    let by_ref = &file;
    let outcome = complete(&mut ring, |r, c| {
        r.read(by_ref, Vec::with_capacity(4), Offset::At(3), c)
    });
    assert_eq!(
        &expect!(outcome, Outcome::Read(Ok(4), buf) => buf)[..],
        b"3456"
    );
}

fn readv_and_writev(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let (reader, writer) = pipe();
    let (reader, writer) = (ring.register_fd(reader), ring.register_fd(writer));
    let outcome = complete(&mut ring, |r, c| {
        r.writev(writer, vec![&b"one "[..], b"two"], Offset::Current, c)
    });
    assert_eq!(expect!(outcome, Outcome::Writev(Ok(n), _) => n), 7);
    let bufs = vec![Vec::with_capacity(4), Vec::with_capacity(8)];
    let outcome = complete(&mut ring, |r, c| r.readv(reader, bufs, Offset::Current, c));
    let bufs = expect!(outcome, Outcome::Readv(Ok(7), bufs) => bufs);
    assert_eq!(bufs.downcast::<Vec<u8>>().unwrap(), [&b"one "[..], b"two"]);
}

fn send_and_recv(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let (a, b) = socket_pair();
    let (a, b) = (ring.register_fd(a), ring.register_fd(b));
    // Many rounds: a ring fd's readiness (on the readiness backend) must
    // be tracked across waits, without re-arming.
    for round in 0..50u8 {
        ring.recv(b, Vec::with_capacity(8), ctx(1));
        ring.send(a, vec![round; 3], ctx(0));
        let got = run_all(&mut ring);
        let recv = got.iter().find(|c| c.key() == 1).unwrap();
        let buf = expect!(&recv.outcome, Outcome::Recv(Ok(3), buf) => buf);
        assert_eq!(&buf[..], &[round; 3]);
    }
}

/// A datagram shorter than the buffer does not mean none is left (as a
/// short receive on a stream socket means its queue is empty): two that
/// arrive together are both received, without a new edge between them.
fn a_short_datagram_leaves_the_next_one_to_receive(kind: BackendKind) {
    let receiver = ouro::net::udp_socket(([127, 0, 0, 1], 0).into()).unwrap();
    let to = ouro::net::local_addr(&receiver).unwrap();
    let sender = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    receives_one_then_two(kind, receiver, || {
        sender.send_to(b"one", to).unwrap();
        sender.send_to(b"two", to).unwrap();
    });
}

/// Nor does a short receive on a Unix stream socket: a read stops after
/// a message that carried fds, with more bytes queued behind it (only a TCP
/// socket's short receive says that its queue is empty).
fn a_short_unix_stream_receive_leaves_the_rest_to_receive(kind: BackendKind) {
    let (receiver, sender) = socket_pair();
    let (passed, _other_end) = pipe();
    receives_one_then_two(kind, receiver, || {
        send_with_fd(&sender, b"one", &passed);
        (&UnixStream::from(sender)).write_all(b"two").unwrap();
    });
}

/// Registers `receiver` and arms a first receive (its edge too), then lets
/// `send` queue "one" and "two" at once: the first receive gets "one", and
/// a second gets "two" without a new edge between them (a stall fails at
/// its deadline instead of hanging).
fn receives_one_then_two(kind: BackendKind, receiver: OwnedFd, send: impl FnOnce()) {
    let mut ring = ring(kind, 8);
    let receiver = ring.register_fd(receiver);
    ring.recv(receiver, Vec::with_capacity(64), ctx(0));
    ring.run(&mut Vec::new(), RunMode::NoWait).unwrap();
    send();
    let first = run_all(&mut ring);
    assert_eq!(
        &expect!(&first[0].outcome, Outcome::Recv(Ok(3), buf) => buf)[..],
        b"one"
    );
    let outcome = complete(&mut ring, |r, c| {
        let task = r.recv(receiver, Vec::with_capacity(64), c);
        let deadline = r.now() + Duration::from_secs(5);
        r.set_deadline(task, deadline).unwrap();
        task
    });
    assert_eq!(
        &expect!(outcome, Outcome::Recv(Ok(3), buf) => buf)[..],
        b"two",
        "what was queued behind the first receive is received"
    );
}

/// Sends `bytes` with `fd` attached (`SCM_RIGHTS`) on a Unix socket.
fn send_with_fd(socket: &OwnedFd, bytes: &[u8], fd: &OwnedFd) {
    let raw = fd.as_raw_fd();
    // SAFETY: CMSG_SPACE only computes a size.
    let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<libc::c_int>() as u32) } as usize;
    let mut control = vec![0u8; space];
    let mut iov = libc::iovec {
        iov_base: bytes.as_ptr() as *mut libc::c_void,
        iov_len: bytes.len(),
    };
    // SAFETY: an all-zero msghdr is valid; the fields set below point to
    // live buffers of the lengths given.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = space as _;
    // SAFETY: `control` has room for one header and one int (CMSG_SPACE),
    // so CMSG_FIRSTHDR is non-null and CMSG_DATA points inside it.
    let sent = unsafe {
        let header = libc::CMSG_FIRSTHDR(&msg);
        (*header).cmsg_level = libc::SOL_SOCKET;
        (*header).cmsg_type = libc::SCM_RIGHTS;
        (*header).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<libc::c_int>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(header).cast::<libc::c_int>(), raw);
        libc::sendmsg(socket.as_raw_fd(), &msg, 0)
    };
    assert_eq!(sent, bytes.len() as isize, "{}", io::Error::last_os_error());
}

fn sendmsg_and_recvmsg(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let (a, b) = socket_pair();
    let (a, b) = (ring.register_fd(a), ring.register_fd(b));
    let outcome = complete(&mut ring, |r, c| {
        r.sendmsg(a, vec![&b"head "[..], b"tail"], None, c)
    });
    assert_eq!(expect!(outcome, Outcome::SendMsg(Ok(n), _) => n), 9);
    let outcome = complete(&mut ring, |r, c| {
        r.recvmsg(b, vec![Vec::with_capacity(16)], c)
    });
    let (meta, bufs) = expect!(outcome, Outcome::RecvMsg(Ok(meta), bufs) => (meta, bufs));
    assert_eq!(meta.len, 9);
    assert_eq!(bufs.downcast::<Vec<u8>>().unwrap(), [&b"head tail"[..]]);
}

/// More buffers than a multishot receive delivers in a row on the
/// readiness backend (32): those after go on the next turn, none lost.
fn recv_multishot_delivers_a_flood_in_order(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let group = ring.buffer_group(128, 16).unwrap();
    let (mut client, server) = tcp_pair();
    let server = ring.register_fd(server.into());
    let sent: Vec<u8> = (0..100 * 16).map(|i| (i % 251) as u8).collect();
    client.write_all(&sent).unwrap();
    let mut task = ring.recv_multishot(server, &group, ctx(0));
    let mut got = Vec::new();
    let mut received = Vec::new();
    while received.len() < sent.len() {
        ring.run(&mut got, RunMode::Once).unwrap();
        for c in got.drain(..) {
            let last = c.is_final();
            received.extend_from_slice(&expect!(c.outcome, Outcome::RecvMulti(Ok(buf)) => buf));
            if last {
                // io_uring ends a multishot receive whose completions
                // overflow the queue: re-armed, as documented.
                task = ring.recv_multishot(server, &group, ctx(0));
            }
        }
    }
    assert_eq!(received, sent);
    ring.cancel(task, Ctx::none());
    let last = run_all(&mut ring).pop().unwrap();
    let err = expect!(last.outcome, Outcome::RecvMulti(Err(e)) => e);
    assert!(ouro::is_canceled(&err), "{err}");
}

fn poll_waits_for_readiness(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let (reader, writer) = pipe();
    let reader = ring.register_fd(reader);
    ring.poll(reader, PollMask::READABLE, ctx(0));
    let mut got = Vec::new();
    ring.run(&mut got, RunMode::NoWait).unwrap();
    assert!(got.is_empty(), "nothing to read yet: {got:?}");
    let mut writer = std::fs::File::from(writer);
    writer.write_all(b"x").unwrap();
    ring.run(&mut got, RunMode::UntilDone).unwrap();
    let mask = expect!(&got[0].outcome, Outcome::Poll(Ok(mask)) => *mask);
    assert!(mask.contains(PollMask::READABLE));
}

fn splice_between_ring_fds(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let file = ring.register_fd(temp_file(b"spliced from a file").into());
    let (reader, writer) = pipe();
    let writer = ring.register_fd(writer);
    let outcome = complete(&mut ring, |r, c| {
        r.splice(file, Some(0), writer, None, 64, c)
    });
    assert_eq!(expect!(outcome, Outcome::Splice(Ok(n)) => n), 19);
    let mut got = [0u8; 19];
    std::fs::File::from(reader).read_exact(&mut got).unwrap();
    assert_eq!(&got, b"spliced from a file");
}

/// A splice from a pipe with data into a full pipe: it must wait for the
/// full one (on the readiness backend, a wait on the ready one would never
/// end, since its edge has passed), and finish once it is drained.
fn splice_waits_for_the_side_that_is_not_ready(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let (in_r, in_w) = pipe();
    let (out_r, out_w) = pipe();
    // One page of room, filled.
    // SAFETY: fcntl on a valid fd, setting the pipe's size.
    let size = unsafe { libc::fcntl(out_w.as_raw_fd(), libc::F_SETPIPE_SZ, 4096) };
    assert!(size >= 4096, "F_SETPIPE_SZ: {}", io::Error::last_os_error());
    let mut out_w = std::fs::File::from(out_w);
    out_w.write_all(&vec![b'.'; size as usize]).unwrap();
    let (input, output) = (ring.register_fd(in_r), ring.register_fd(out_w.into()));
    // The input's readiness is known and its edge has passed: a read
    // waited for it, then took a byte of what came.
    ring.read(input, Vec::with_capacity(1), Offset::Current, ctx(1));
    ring.run(&mut Vec::new(), RunMode::NoWait).unwrap();
    std::fs::File::from(in_w).write_all(b"xabc").unwrap();
    let read = run_all(&mut ring);
    assert_eq!(expect!(&read[0].outcome, Outcome::Read(Ok(n), _) => *n), 1);
    ring.splice(input, None, output, None, 3, ctx(0));
    let mut got = Vec::new();
    for _ in 0..3 {
        ring.run(&mut got, RunMode::NoWait).unwrap();
    }
    assert!(got.is_empty(), "the output is full: {got:?}");
    let mut out_r = std::fs::File::from(out_r);
    let mut filler = vec![0u8; size as usize];
    out_r.read_exact(&mut filler).unwrap();
    ring.run(&mut got, RunMode::UntilDone).unwrap();
    assert_eq!(expect!(&got[0].outcome, Outcome::Splice(Ok(n)) => *n), 3);
    let mut spliced = [0u8; 3];
    out_r.read_exact(&mut spliced).unwrap();
    assert_eq!(&spliced, b"abc");
}

fn fsync_and_shutdown(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let file = ring.register_fd(temp_file(b"data").into());
    expect!(complete(&mut ring, |r, c| r.fsync(file, c)), Outcome::Fsync(Ok(())) => ());
    expect!(complete(&mut ring, |r, c| r.fdatasync(file, c)), Outcome::Fsync(Ok(())) => ());
    let (a, b) = socket_pair();
    let (a, mut b) = (ring.register_fd(a), peer(b));
    let outcome = complete(&mut ring, |r, c| r.shutdown(a, Shutdown::Write, c));
    expect!(outcome, Outcome::Shutdown(Ok(())) => ());
    assert_eq!(b.read(&mut [0u8; 4]).unwrap(), 0, "the peer sees the end");
}

fn bind_listen_accept_and_connect(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let socket = |ring: &mut Ring<Got>| {
        let fd = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        ring.register_fd(fd.into())
    };
    let listener = socket(&mut ring);
    let any: std::net::SocketAddr = ([127, 0, 0, 1], 0).into();
    expect!(complete(&mut ring, |r, c| r.bind(listener, any, c)), Outcome::Bind(Ok(())) => ());
    expect!(complete(&mut ring, |r, c| r.listen(listener, 8, c)), Outcome::Listen(Ok(())) => ());
    let addr = ouro::net::local_addr(ring.fd(listener).unwrap()).unwrap();
    let client = socket(&mut ring);
    ring.accept(listener, ctx(0));
    ring.connect(client, addr, ctx(1));
    let mut got = run_all(&mut ring);
    got.sort_by_key(Completion::key);
    let (accepted, peer_addr) = expect!(got.remove(0).outcome, Outcome::Accept(Ok(a)) => a);
    expect!(got.remove(0).outcome, Outcome::Connect(Ok(())) => ());
    let client_addr = ouro::net::local_addr(ring.fd(client).unwrap()).unwrap();
    assert_eq!(peer_addr.as_socket(), Some(client_addr));
    let mut accepted = TcpStream::from(accepted);
    sent_through(&mut ring, client, b"hi", &mut accepted);
}

fn accept_multishot_on_a_ring_listener(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let listener = ouro::net::tcp_listener(([127, 0, 0, 1], 0).into(), 8).unwrap();
    let addr = ouro::net::local_addr(&listener).unwrap();
    let listener = ring.register_fd(listener);
    let task = ring.accept_multishot(listener, ctx(0));
    let _clients: Vec<TcpStream> = (0..3).map(|_| TcpStream::connect(addr).unwrap()).collect();
    let mut got = Vec::new();
    while got.len() < 3 {
        ring.run(&mut got, RunMode::Once).unwrap();
    }
    for c in &got {
        expect!(&c.outcome, Outcome::AcceptMulti(Ok(_)) => ());
    }
    ring.cancel(task, Ctx::none());
    run_all(&mut ring);
}
