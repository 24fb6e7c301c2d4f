//! Scenarios of UDP sockets: datagram boundaries, truncation, connected
//! sockets filtering other senders, a connected send to a closed port,
//! `sendmsg` and `recvmsg`, and `shutdown`.

use std::net::{Shutdown, SocketAddr};

use ouro::net::{Domain, Type};
use ouro::{Outcome, RingFd};

use crate::env::{Env, Step};
use crate::scenarios::close;

/// A UDP socket made and noted as `step`.
fn udp_socket(env: &mut Env, step: &'static str) -> RingFd {
    let made = env.op(|ring, ctx| ring.socket(Domain::IPV4, Type::DGRAM, None, ctx));
    env.note_outcome(step, made).expect("a socket")
}

/// A UDP socket bound to the leg's address, and that address.
fn bound_socket(env: &mut Env) -> (RingFd, SocketAddr) {
    let sock = udp_socket(env, "server socket");
    let asked = env.listen_addr();
    let bound = env.op(|ring, ctx| ring.bind(sock, asked, ctx));
    env.note_outcome("bind", bound);
    (sock, env.bound_addr(sock, asked))
}

fn send_to(env: &mut Env, fd: RingFd, data: Vec<u8>, to: SocketAddr, step: &'static str) {
    let sent = env.op(|ring, ctx| ring.send_to(fd, data, to, ctx));
    env.note_outcome(step, sent);
}

/// Receives one datagram on `fd` into `room` bytes; notes its length,
/// whether it was cut short and its bytes; returns its sender.
fn recv_from(env: &mut Env, fd: RingFd, room: usize, step: &'static str) -> Option<SocketAddr> {
    let got = env.op(|ring, ctx| ring.recv_from(fd, Vec::with_capacity(room), ctx));
    let Outcome::RecvFrom(Ok(datagram), buf) = got else {
        env.note_outcome(step, got);
        return None;
    };
    let bytes = buf.into_vec();
    env.note(
        step,
        Step::Fact(format!(
            "{} bytes, truncated: {}, bytes {:?}",
            datagram.len,
            datagram.truncated,
            String::from_utf8_lossy(&bytes)
        )),
    );
    datagram.peer_addr().ok()
}

pub fn udp_datagrams_keep_their_boundaries(env: &mut Env) {
    let (server, addr) = bound_socket(env);
    let client = udp_socket(env, "client socket");
    send_to(env, client, b"hello".to_vec(), addr, "send 5 bytes");
    send_to(env, client, Vec::new(), addr, "send an empty datagram");
    send_to(env, client, b"x".repeat(300), addr, "send 300 bytes");
    let from = recv_from(env, server, 1024, "first datagram");
    recv_from(env, server, 1024, "second datagram");
    recv_from(env, server, 1024, "third datagram");
    let from = from.expect("a sender");
    send_to(env, server, b"back".to_vec(), from, "reply to the sender");
    let replier = recv_from(env, client, 1024, "the reply");
    let from_server = replier == Some(addr);
    env.note(
        "the reply came from the server",
        Step::Fact(from_server.to_string()),
    );
    close(env, client, "close client");
    close(env, server, "close server");
}

pub fn udp_long_datagrams_are_cut_to_the_room(env: &mut Env) {
    let (server, addr) = bound_socket(env);
    let client = udp_socket(env, "client socket");
    send_to(
        env,
        client,
        b"0123456789abcdef".to_vec(),
        addr,
        "send 16 bytes",
    );
    send_to(
        env,
        client,
        b"ABCDEFGHIJKLMNOP".to_vec(),
        addr,
        "send 16 more",
    );
    send_to(env, client, b"next".to_vec(), addr, "send 4 bytes");
    recv_from(env, server, 10, "receive_from into 10 bytes");
    // A plain receive cuts the datagram as well, without saying so.
    let cut = env.op(|ring, ctx| ring.recv(server, Vec::with_capacity(10), ctx));
    env.note_outcome("receive into 10 bytes", cut);
    recv_from(env, server, 64, "the next datagram is whole");
    close(env, client, "close client");
    close(env, server, "close server");
}

pub fn udp_connected_socket_takes_its_peer_only(env: &mut Env) {
    let (server, addr) = bound_socket(env);
    let client = udp_socket(env, "client socket");
    let stranger = udp_socket(env, "stranger socket");
    let connected = env.op(|ring, ctx| ring.connect(client, addr, ctx));
    env.note_outcome("client connects", connected);
    let sent = env.op(|ring, ctx| ring.send(client, b"ping".to_vec(), ctx));
    env.note_outcome("client sends without an address", sent);
    let from = recv_from(env, server, 64, "server receives").expect("a sender");
    send_to(
        env,
        stranger,
        b"spoof".to_vec(),
        from,
        "a stranger sends to the client",
    );
    send_to(env, server, b"pong".to_vec(), from, "server replies");
    let got = env.op(|ring, ctx| ring.recv(client, Vec::with_capacity(64), ctx));
    let Outcome::Recv(res, buf) = got else {
        unreachable!("a receive ends as one")
    };
    let bytes = buf.into_vec();
    let fact = format!("{:?} {:?}", res.ok(), String::from_utf8_lossy(&bytes));
    env.note("client receives the server's reply only", Step::Fact(fact));
    close(env, stranger, "close stranger");
    close(env, client, "close client");
    close(env, server, "close server");
}

pub fn udp_sends_the_kernel_refuses(env: &mut Env) {
    let sock = udp_socket(env, "unconnected socket");
    let sent = env.op(|ring, ctx| ring.send(sock, b"x".to_vec(), ctx));
    env.note_outcome("send on it", sent);
    let port_zero = SocketAddr::new(env.listen_addr().ip(), 0);
    let refused = env.op(|ring, ctx| ring.send_to(sock, b"x".to_vec(), port_zero, ctx));
    env.note_outcome("send_to port 0", refused);
    let to = env.refused_addr();
    let too_long = env.op(|ring, ctx| ring.send_to(sock, vec![0; 65_508], to, ctx));
    env.note_outcome("send_to of 65,508 bytes", too_long);
    close(env, sock, "close it");
}

pub fn udp_connected_send_to_a_closed_port(env: &mut Env) {
    let client = udp_socket(env, "client socket");
    let nobody = env.refused_addr();
    let connected = env.op(|ring, ctx| ring.connect(client, nobody, ctx));
    env.note_outcome("connect to a port nothing is bound to", connected);
    let sent = env.op(|ring, ctx| ring.send(client, b"anyone?".to_vec(), ctx));
    env.note_outcome("send", sent);
    let refused = env.op(|ring, ctx| ring.recv(client, Vec::with_capacity(64), ctx));
    env.note_outcome("receive", refused);
    close(env, client, "close client");
}

pub fn udp_cancel_a_pending_recv_from(env: &mut Env) {
    let (server, _) = bound_socket(env);
    let (pending, task) =
        env.start(|ring, ctx| ring.recv_from(server, Vec::with_capacity(64), ctx));
    let cancel = env.op(|ring, ctx| ring.cancel(task, ctx));
    env.note_outcome("cancel", cancel);
    let canceled = env.wait(pending);
    env.note_outcome("the receive", canceled);
    close(env, server, "close server");
}

/// Receives one datagram on `fd` with `recvmsg` into buffers of the given
/// rooms; notes its length, whether it was cut short, whether it named a
/// sender and what each buffer got.
fn recvmsg(env: &mut Env, fd: RingFd, rooms: &[usize], step: &'static str) {
    let bufs: Vec<Vec<u8>> = rooms.iter().map(|&room| Vec::with_capacity(room)).collect();
    let got = env.op(|ring, ctx| ring.recvmsg(fd, bufs, ctx));
    let Outcome::RecvMsg(res, bufs) = got else {
        unreachable!("a recvmsg ends as one")
    };
    let fact = match res {
        Ok(meta) => {
            let bufs: Vec<Vec<u8>> = bufs.downcast().expect("the buffers given");
            let parts: Vec<_> = bufs.iter().map(|b| String::from_utf8_lossy(b)).collect();
            format!(
                "{} bytes, truncated: {}, a sender: {}, buffers {parts:?}",
                meta.len,
                meta.flags & libc::MSG_TRUNC != 0,
                meta.addr.is_some()
            )
        }
        Err(err) => format!("{:?}", crate::env::error(&err)),
    };
    env.note(step, Step::Fact(fact));
}

pub fn udp_sendmsg_gathers_and_recvmsg_scatters(env: &mut Env) {
    let (server, addr) = bound_socket(env);
    let client = udp_socket(env, "client socket");
    let parts = vec![b"hel".to_vec(), b"lo, ".to_vec(), b"world".to_vec()];
    let sent = env.op(|ring, ctx| ring.sendmsg(client, parts, Some(addr.into()), ctx));
    env.note_outcome("sendmsg of three buffers to the server", sent);
    let sent = env
        .op(|ring, ctx| ring.sendmsg(client, vec![b"0123456789".to_vec()], Some(addr.into()), ctx));
    env.note_outcome("sendmsg of ten bytes", sent);
    recvmsg(env, server, &[4, 64], "recvmsg into 4 and 64 bytes");
    recvmsg(env, server, &[3, 2], "recvmsg into 3 and 2 bytes");
    let unaddressed = env.op(|ring, ctx| ring.sendmsg(client, vec![b"x".to_vec()], None, ctx));
    env.note_outcome("sendmsg without an address, unconnected", unaddressed);
    let connected = env.op(|ring, ctx| ring.connect(client, addr, ctx));
    env.note_outcome("client connects", connected);
    let sent = env.op(|ring, ctx| ring.sendmsg(client, vec![b"to my peer".to_vec()], None, ctx));
    env.note_outcome("sendmsg without an address, connected", sent);
    recvmsg(env, server, &[64], "recvmsg of it");
    close(env, client, "close client");
    close(env, server, "close server");
}

/// The address `client` sends from, as `server` sees it.
fn client_addr(env: &mut Env, client: RingFd, server: RingFd) -> SocketAddr {
    let sent = env.op(|ring, ctx| ring.send(client, b"hello".to_vec(), ctx));
    env.note_outcome("the client says hello", sent);
    recv_from(env, server, 64, "the server hears it").expect("a sender")
}

pub fn udp_shutdown(env: &mut Env) {
    let (server, addr) = bound_socket(env);
    let unconnected = udp_socket(env, "unconnected socket");
    let shut = env.op(|ring, ctx| ring.shutdown(unconnected, Shutdown::Write, ctx));
    env.note_outcome("shut an unconnected socket for writing", shut);
    send_to(env, unconnected, b"x".to_vec(), addr, "send_to after it");
    let client = udp_socket(env, "client socket");
    let connected = env.op(|ring, ctx| ring.connect(client, addr, ctx));
    env.note_outcome("client connects", connected);
    let shut = env.op(|ring, ctx| ring.shutdown(client, Shutdown::Read, ctx));
    env.note_outcome("shut the client for reading", shut);
    let from = client_addr(env, client, server);
    send_to(
        env,
        server,
        b"after".to_vec(),
        from,
        "the server sends to it",
    );
    let got = env.op(|ring, ctx| ring.recv(client, Vec::with_capacity(64), ctx));
    env.note_outcome("the client still receives", got);
    let sent = env.op(|ring, ctx| ring.send(client, b"still".to_vec(), ctx));
    env.note_outcome("the client still sends", sent);
    recvmsg(env, server, &[64], "the server gets it");
    let shut = env.op(|ring, ctx| ring.shutdown(client, Shutdown::Write, ctx));
    env.note_outcome("shut the client for writing", shut);
    let refused = env.op(|ring, ctx| ring.send(client, b"no more".to_vec(), ctx));
    env.note_outcome("a send after it", refused);
    close(env, unconnected, "close unconnected");
    close(env, client, "close client");
    close(env, server, "close server");
}

/// The unspecified address as a destination is this host: a datagram
/// sent to `0.0.0.0` reaches the socket bound on loopback, and one sent
/// to loopback reaches a socket bound to the wildcard.
pub fn udp_to_and_from_the_unspecified_address(env: &mut Env) {
    let on_loopback = udp_socket(env, "socket on loopback");
    let asked = SocketAddr::from(([127, 0, 0, 1], if env.simulated() { 7003 } else { 0 }));
    let bound = env.op(|ring, ctx| ring.bind(on_loopback, asked, ctx));
    env.note_outcome("bind it", bound);
    let port = env.bound_addr(on_loopback, asked).port();
    let client = udp_socket(env, "client socket");
    let unspecified = SocketAddr::from(([0, 0, 0, 0], port));
    send_to(
        env,
        client,
        b"to 0.0.0.0".to_vec(),
        unspecified,
        "send to 0.0.0.0",
    );
    recv_from(env, on_loopback, 64, "the loopback socket receives");
    let on_wildcard = udp_socket(env, "socket on the wildcard");
    let asked = SocketAddr::from(([0, 0, 0, 0], if env.simulated() { 7004 } else { 0 }));
    let bound = env.op(|ring, ctx| ring.bind(on_wildcard, asked, ctx));
    env.note_outcome("bind it", bound);
    let port = env.bound_addr(on_wildcard, asked).port();
    let loopback = SocketAddr::from(([127, 0, 0, 1], port));
    send_to(
        env,
        client,
        b"to loopback".to_vec(),
        loopback,
        "send to loopback",
    );
    recv_from(env, on_wildcard, 64, "the wildcard socket receives");
    close(env, client, "close client");
    close(env, on_loopback, "close the loopback socket");
    close(env, on_wildcard, "close the wildcard socket");
}
