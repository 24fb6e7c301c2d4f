//! Socket operations on loopback and socketpairs: accept, connect, socket,
//! bind, listen, send, recv, shutdown, sendmsg, recvmsg — and their errors.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::OwnedFd;
use std::rc::Rc;

use ouro::net::{Domain, Type};
use ouro::{BackendKind, Outcome};

use crate::harness::{
    bad_fd, complete, error_kind, is_cloexec, os_error, pipe, ring, socket_pair, tcp_pair,
};

backend_tests![
    accept_gives_the_connection_and_the_peer_address,
    accept_errors,
    socket_creates_close_on_exec_sockets,
    socket_with_an_unknown_domain_fails,
    connect_connects,
    connect_to_a_closed_port_is_refused,
    bind_and_listen,
    bind_and_listen_errors,
    send_and_recv,
    recv_returns_zero_when_the_peer_closes,
    send_and_recv_errors,
    shutdown_ends_a_direction,
    shutdown_of_an_unconnected_socket_is_enotconn,
    sendmsg_and_recvmsg_carry_addresses,
    recvmsg_reports_truncation,
    recvmsg_without_room_is_invalid_input,
    sendmsg_without_an_address_needs_a_connected_socket,
    socket_ops_on_a_bad_fd_fail_with_ebadf,
];

fn loopback() -> SocketAddr {
    ([127, 0, 0, 1], 0).into()
}

fn accept_gives_the_connection_and_the_peer_address(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let listener = Rc::new(ouro::net::tcp_listener(loopback(), 8).unwrap());
    let mut client = TcpStream::connect(ouro::net::local_addr(&listener).unwrap()).unwrap();
    let outcome = complete(&mut ring, |r, c| r.accept(&listener, c));
    let (fd, peer) = expect!(outcome, Outcome::Accept(Ok(accepted)) => accepted);
    assert_eq!(peer.as_socket(), Some(client.local_addr().unwrap()));
    assert!(is_cloexec(&fd));
    let mut server = TcpStream::from(fd);
    client.write_all(b"over the accepted socket").unwrap();
    let mut got = [0; 24];
    server.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"over the accepted socket");
}

fn accept_errors(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let not_listening =
        Rc::new(socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap());
    let outcome = complete(&mut ring, |r, c| r.accept(&not_listening, c));
    assert_eq!(
        expect!(outcome, Outcome::Accept(res) => os_error(res)),
        libc::EINVAL
    );
    let (reader, _writer) = pipe();
    let reader = Rc::new(reader);
    let outcome = complete(&mut ring, |r, c| r.accept(&reader, c));
    assert_eq!(
        expect!(outcome, Outcome::Accept(res) => os_error(res)),
        libc::ENOTSOCK
    );
}

fn socket_creates_close_on_exec_sockets(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    for ty in [Type::STREAM, Type::DGRAM] {
        let outcome = complete(&mut ring, |r, c| r.socket(Domain::IPV4, ty, None, c));
        let fd: OwnedFd = expect!(outcome, Outcome::Socket(Ok(fd)) => fd);
        assert!(is_cloexec(&fd));
        let socket = socket2::Socket::from(fd);
        assert_eq!(socket.r#type().unwrap(), ty);
        assert_eq!(socket.domain().unwrap(), Domain::IPV4);
    }
}

fn socket_with_an_unknown_domain_fails(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let outcome = complete(&mut ring, |r, c| {
        r.socket(Domain::from(4000), Type::STREAM, None, c)
    });
    assert_eq!(
        expect!(outcome, Outcome::Socket(res) => os_error(res)),
        libc::EAFNOSUPPORT
    );
}

fn connect_connects(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let listener = std::net::TcpListener::bind(loopback()).unwrap();
    let outcome = complete(&mut ring, |r, c| {
        r.socket(Domain::IPV4, Type::STREAM, None, c)
    });
    let fd = Rc::new(expect!(outcome, Outcome::Socket(Ok(fd)) => fd));
    let addr = listener.local_addr().unwrap();
    expect!(complete(&mut ring, |r, c| r.connect(&fd, addr, c)), Outcome::Connect(Ok(())) => ());
    let (mut server, peer) = listener.accept().unwrap();
    assert_eq!(peer, ouro::net::local_addr(&fd).unwrap());
    // The connect is over: its clone of the socket is gone.
    let mut client = TcpStream::from(Rc::try_unwrap(fd).unwrap());
    client.write_all(b"hi").unwrap();
    let mut got = [0; 2];
    server.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"hi");
}

fn connect_to_a_closed_port_is_refused(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    // Bound but not listening: the port is ours, and nobody accepts on it.
    let closed = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    closed.bind(&loopback().into()).unwrap();
    let addr = closed.local_addr().unwrap();
    let client =
        Rc::new(socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap());
    let outcome = complete(&mut ring, |r, c| r.connect(&client, addr, c));
    assert_eq!(
        expect!(outcome, Outcome::Connect(res) => os_error(res)),
        libc::ECONNREFUSED
    );
}

fn bind_and_listen(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let socket =
        Rc::new(socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap());
    expect!(complete(&mut ring, |r, c| r.bind(&socket, loopback(), c)), Outcome::Bind(Ok(())) => ());
    let addr = ouro::net::local_addr(&socket).unwrap();
    assert_ne!(addr.port(), 0, "bound to a port");
    expect!(complete(&mut ring, |r, c| r.listen(&socket, 8, c)), Outcome::Listen(Ok(())) => ());
    let client = TcpStream::connect(addr).unwrap();
    let (_, peer) = socket.accept().unwrap();
    assert_eq!(peer.as_socket(), Some(client.local_addr().unwrap()));
}

fn bind_and_listen_errors(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let listener = ouro::net::tcp_listener(loopback(), 8).unwrap();
    let taken = ouro::net::local_addr(&listener).unwrap();
    let socket =
        Rc::new(socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap());
    let outcome = complete(&mut ring, |r, c| r.bind(&socket, taken, c));
    assert_eq!(
        expect!(outcome, Outcome::Bind(res) => os_error(res)),
        libc::EADDRINUSE
    );
    let udp = Rc::new(ouro::net::udp_socket(loopback()).unwrap());
    let outcome = complete(&mut ring, |r, c| r.listen(&udp, 8, c));
    assert_eq!(
        expect!(outcome, Outcome::Listen(res) => os_error(res)),
        libc::EOPNOTSUPP
    );
}

fn send_and_recv(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let (a, b) = socket_pair();
    let (a, b) = (Rc::new(a), Rc::new(b));
    let outcome = complete(&mut ring, |r, c| r.send(&a, &b"ping"[..], c));
    let buf = expect!(outcome, Outcome::Send(Ok(4), buf) => buf);
    assert_eq!(&buf[..], b"ping");
    let outcome = complete(&mut ring, |r, c| r.recv(&b, Vec::with_capacity(16), c));
    let buf = expect!(outcome, Outcome::Recv(Ok(4), buf) => buf);
    assert_eq!(&buf[..], b"ping");

    // Over TCP, a recv with less room than what arrived takes what fits.
    let (client, server) = tcp_pair();
    let (client, server) = (Rc::new(client), Rc::new(server));
    let outcome = complete(&mut ring, |r, c| r.send(&client, &b"0123456789"[..], c));
    expect!(outcome, Outcome::Send(Ok(10), _) => ());
    let outcome = complete(&mut ring, |r, c| r.recv(&server, Vec::with_capacity(4), c));
    assert_eq!(
        &expect!(outcome, Outcome::Recv(Ok(4), buf) => buf)[..],
        b"0123"
    );
    let outcome = complete(&mut ring, |r, c| r.recv(&server, Vec::with_capacity(16), c));
    assert_eq!(
        &expect!(outcome, Outcome::Recv(Ok(6), buf) => buf)[..],
        b"456789"
    );
}

fn recv_returns_zero_when_the_peer_closes(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let (a, b) = socket_pair();
    drop(a);
    let b = Rc::new(b);
    let outcome = complete(&mut ring, |r, c| r.recv(&b, Vec::with_capacity(16), c));
    expect!(outcome, Outcome::Recv(Ok(0), _) => ());
}

fn send_and_recv_errors(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let (a, b) = socket_pair();
    drop(b);
    let a = Rc::new(a);
    // MSG_NOSIGNAL: an error, not a SIGPIPE.
    let outcome = complete(&mut ring, |r, c| r.send(&a, &b"x"[..], c));
    assert_eq!(
        expect!(outcome, Outcome::Send(res, _) => os_error(res)),
        libc::EPIPE
    );

    let (reader, writer) = pipe();
    let (reader, writer) = (Rc::new(reader), Rc::new(writer));
    let outcome = complete(&mut ring, |r, c| r.recv(&reader, Vec::with_capacity(4), c));
    assert_eq!(
        expect!(outcome, Outcome::Recv(res, _) => os_error(res)),
        libc::ENOTSOCK
    );
    let outcome = complete(&mut ring, |r, c| r.send(&writer, &b"x"[..], c));
    assert_eq!(
        expect!(outcome, Outcome::Send(res, _) => os_error(res)),
        libc::ENOTSOCK
    );

    let (a, _b) = socket_pair();
    let a = Rc::new(a);
    let outcome = complete(&mut ring, |r, c| r.recv(&a, Vec::new(), c));
    let res = expect!(outcome, Outcome::Recv(res, _) => res);
    assert_eq!(error_kind(res), std::io::ErrorKind::InvalidInput);
}

fn shutdown_ends_a_direction(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let (client, mut server) = tcp_pair();
    let client = Rc::new(client);
    let outcome = complete(&mut ring, |r, c| r.shutdown(&client, Shutdown::Write, c));
    expect!(outcome, Outcome::Shutdown(Ok(())) => ());
    let mut rest = Vec::new();
    assert_eq!(
        server.read_to_end(&mut rest).unwrap(),
        0,
        "the server sees end of stream"
    );
    // The other direction still works.
    server.write_all(b"still open").unwrap();
    let outcome = complete(&mut ring, |r, c| r.recv(&client, Vec::with_capacity(16), c));
    assert_eq!(
        &expect!(outcome, Outcome::Recv(Ok(10), buf) => buf)[..],
        b"still open"
    );
}

fn shutdown_of_an_unconnected_socket_is_enotconn(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let socket =
        Rc::new(socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap());
    let outcome = complete(&mut ring, |r, c| r.shutdown(&socket, Shutdown::Both, c));
    assert_eq!(
        expect!(outcome, Outcome::Shutdown(res) => os_error(res)),
        libc::ENOTCONN
    );
}

fn sendmsg_and_recvmsg_carry_addresses(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let sender = Rc::new(ouro::net::udp_socket(loopback()).unwrap());
    let receiver = Rc::new(ouro::net::udp_socket(loopback()).unwrap());
    let to = ouro::net::local_addr(&receiver).unwrap();
    let outcome = complete(&mut ring, |r, c| {
        r.sendmsg(&sender, vec![&b"ab"[..], b"cd"], Some(to.into()), c)
    });
    let bufs = expect!(outcome, Outcome::SendMsg(Ok(4), bufs) => bufs);
    assert_eq!(bufs.downcast::<&[u8]>().unwrap(), [b"ab", b"cd"]);

    let bufs = vec![Vec::with_capacity(3), Vec::with_capacity(8)];
    let outcome = complete(&mut ring, |r, c| r.recvmsg(&receiver, bufs, c));
    let (meta, bufs) = expect!(outcome, Outcome::RecvMsg(Ok(meta), bufs) => (meta, bufs));
    assert_eq!(meta.len, 4);
    assert_eq!(meta.flags & libc::MSG_TRUNC, 0);
    let from = meta.addr.and_then(|a| a.as_socket());
    assert_eq!(from, Some(ouro::net::local_addr(&sender).unwrap()));
    assert_eq!(bufs.downcast::<Vec<u8>>().unwrap(), [&b"abc"[..], b"d"]);
}

fn recvmsg_reports_truncation(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let sender = std::net::UdpSocket::bind(loopback()).unwrap();
    let receiver = Rc::new(ouro::net::udp_socket(loopback()).unwrap());
    sender
        .send_to(b"too long", ouro::net::local_addr(&receiver).unwrap())
        .unwrap();
    let outcome = complete(&mut ring, |r, c| {
        r.recvmsg(&receiver, vec![Vec::with_capacity(3)], c)
    });
    let (meta, bufs) = expect!(outcome, Outcome::RecvMsg(Ok(meta), bufs) => (meta, bufs));
    assert_eq!(meta.len, 3);
    assert_ne!(meta.flags & libc::MSG_TRUNC, 0, "flags {:#x}", meta.flags);
    assert_eq!(bufs.downcast::<Vec<u8>>().unwrap(), [b"too"]);
}

fn recvmsg_without_room_is_invalid_input(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let receiver = Rc::new(ouro::net::udp_socket(loopback()).unwrap());
    let outcome = complete(&mut ring, |r, c| r.recvmsg(&receiver, vec![Vec::new()], c));
    let res = expect!(outcome, Outcome::RecvMsg(res, _) => res);
    assert_eq!(error_kind(res), std::io::ErrorKind::InvalidInput);
}

fn sendmsg_without_an_address_needs_a_connected_socket(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let unconnected = Rc::new(ouro::net::udp_socket(loopback()).unwrap());
    let outcome = complete(&mut ring, |r, c| {
        r.sendmsg(&unconnected, vec![&b"x"[..]], None, c)
    });
    assert_eq!(
        expect!(outcome, Outcome::SendMsg(res, _) => os_error(res)),
        libc::EDESTADDRREQ
    );

    let receiver = std::net::UdpSocket::bind(loopback()).unwrap();
    let connected = std::net::UdpSocket::bind(loopback()).unwrap();
    connected.connect(receiver.local_addr().unwrap()).unwrap();
    let connected = Rc::new(connected);
    let outcome = complete(&mut ring, |r, c| {
        r.sendmsg(&connected, vec![&b"xyz"[..]], None, c)
    });
    expect!(outcome, Outcome::SendMsg(Ok(3), _) => ());
    let mut got = [0; 8];
    let (n, from) = receiver.recv_from(&mut got).unwrap();
    assert_eq!(
        (&got[..n], from),
        (&b"xyz"[..], connected.local_addr().unwrap())
    );
}

fn socket_ops_on_a_bad_fd_fail_with_ebadf(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let bad = Rc::new(bad_fd());
    let somewhere = SocketAddr::from(([127, 0, 0, 1], 9));
    let outcome = complete(&mut ring, |r, c| r.accept(&bad, c));
    assert_eq!(
        expect!(outcome, Outcome::Accept(res) => os_error(res)),
        libc::EBADF
    );
    let outcome = complete(&mut ring, |r, c| r.connect(&bad, somewhere, c));
    assert_eq!(
        expect!(outcome, Outcome::Connect(res) => os_error(res)),
        libc::EBADF
    );
    let outcome = complete(&mut ring, |r, c| r.bind(&bad, loopback(), c));
    assert_eq!(
        expect!(outcome, Outcome::Bind(res) => os_error(res)),
        libc::EBADF
    );
    let outcome = complete(&mut ring, |r, c| r.listen(&bad, 8, c));
    assert_eq!(
        expect!(outcome, Outcome::Listen(res) => os_error(res)),
        libc::EBADF
    );
    let outcome = complete(&mut ring, |r, c| r.send(&bad, &b"x"[..], c));
    assert_eq!(
        expect!(outcome, Outcome::Send(res, _) => os_error(res)),
        libc::EBADF
    );
    let outcome = complete(&mut ring, |r, c| r.recv(&bad, Vec::with_capacity(4), c));
    assert_eq!(
        expect!(outcome, Outcome::Recv(res, _) => os_error(res)),
        libc::EBADF
    );
    let outcome = complete(&mut ring, |r, c| r.shutdown(&bad, Shutdown::Both, c));
    assert_eq!(
        expect!(outcome, Outcome::Shutdown(res) => os_error(res)),
        libc::EBADF
    );
    let outcome = complete(&mut ring, |r, c| {
        r.sendmsg(&bad, vec![&b"x"[..]], Some(somewhere.into()), c)
    });
    assert_eq!(
        expect!(outcome, Outcome::SendMsg(res, _) => os_error(res)),
        libc::EBADF
    );
    let outcome = complete(&mut ring, |r, c| {
        r.recvmsg(&bad, vec![Vec::with_capacity(4)], c)
    });
    assert_eq!(
        expect!(outcome, Outcome::RecvMsg(res, _) => os_error(res)),
        libc::EBADF
    );
}
