//! UDP: send_to and recv_from (the sender in the completion, truncation,
//! empty datagrams), connected UDP through connect, send and recv, and
//! their errors, cancellation and deadlines.

use std::net::{IpAddr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixDatagram;
use std::rc::Rc;
use std::time::Duration;

use ouro::net::{local_addr, udp_socket, SockAddr};
use ouro::{is_canceled, is_deadline, BackendKind, Datagram, Outcome, Ring, RunMode};

use crate::common::fds::open_fds;
use crate::harness::{bad_fd, complete, ctx, error_kind, os_error, ring, run_all, with_no_new_fds};

backend_tests![
    send_to_and_recv_from_carry_the_datagram_and_its_sender,
    a_datagram_longer_than_the_buffer_is_cut_and_marked_truncated,
    an_empty_datagram_is_a_datagram_of_length_zero,
    a_unix_sender_is_a_sock_addr_and_not_an_ip_address,
    send_to_an_address_of_another_family_fails,
    recv_from_without_room_is_invalid_input,
    send_to_and_recv_from_on_a_bad_fd_fail_with_ebadf,
    a_cancelled_recv_from_takes_no_datagram,
    recv_from_past_its_deadline_fails_with_etime,
    connected_udp_sends_and_receives_with_send_and_recv,
    a_connected_socket_gets_econnrefused_after_a_port_unreachable,
    udp_socket_is_blocking_and_close_on_exec,
    receives_racing_for_a_flood_of_datagrams_never_end_in_eagain,
    a_datagram_over_the_largest_payload_is_emsgsize,
    send_to_and_recv_from_work_on_ring_fds,
    a_ring_dropped_with_a_recv_from_in_flight_gives_the_socket_back,
];

exclusive_backend_tests![
    source_address_keeps_a_socket_per_family_and_routes_each_probe_anew,
    source_address_out_of_fds_answers_on_its_kept_socket_and_errs_honestly,
];

fn loopback() -> SocketAddr {
    ([127, 0, 0, 1], 0).into()
}

/// A blocking std socket on loopback, with a read timeout that turns a
/// lost datagram into a failure.
fn std_socket() -> UdpSocket {
    let socket = UdpSocket::bind(loopback()).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    socket
}

fn ouro_socket() -> (Rc<OwnedFd>, SocketAddr) {
    let fd = udp_socket(loopback()).unwrap();
    let addr = local_addr(&fd).unwrap();
    (Rc::new(fd), addr)
}

fn received(outcome: Outcome) -> (Datagram, Vec<u8>) {
    expect!(outcome, Outcome::RecvFrom(Ok(datagram), buf) => (datagram, buf.to_vec()))
}

fn send_to_and_recv_from_carry_the_datagram_and_its_sender(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let (fd, addr) = ouro_socket();
    let peer = std_socket();
    let outcome = complete(&mut ring, |r, c| {
        r.send_to(&fd, &b"ping"[..], peer.local_addr().unwrap(), c)
    });
    expect!(outcome, Outcome::SendTo(Ok(4), _) => ());
    let mut got = [0; 16];
    let (n, from) = peer.recv_from(&mut got).unwrap();
    assert_eq!((&got[..n], from), (&b"ping"[..], addr));

    peer.send_to(b"pong!", addr).unwrap();
    let mut buf = Vec::with_capacity(16);
    buf.extend_from_slice(b"> ");
    let outcome = complete(&mut ring, |r, c| r.recv_from(&fd, buf, c));
    let (datagram, buf) = received(outcome);
    assert_eq!(datagram.len, 5);
    assert!(!datagram.truncated);
    assert_eq!(datagram.peer_addr().unwrap(), peer.local_addr().unwrap());
    assert_eq!(datagram.from.as_socket(), Some(peer.local_addr().unwrap()));
    assert_eq!(buf, b"> pong!", "appended after what the buffer held");
}

fn a_datagram_longer_than_the_buffer_is_cut_and_marked_truncated(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let (fd, addr) = ouro_socket();
    let peer = std_socket();
    peer.send_to(b"0123456789", addr).unwrap();
    peer.send_to(b"next", addr).unwrap();
    let outcome = complete(&mut ring, |r, c| r.recv_from(&fd, Vec::with_capacity(4), c));
    let (datagram, buf) = received(outcome);
    assert_eq!((datagram.len, datagram.truncated), (4, true));
    assert_eq!(buf, b"0123");
    // The cut tail is gone: the next receive gets the next datagram.
    let outcome = complete(&mut ring, |r, c| {
        r.recv_from(&fd, Vec::with_capacity(64), c)
    });
    let (datagram, buf) = received(outcome);
    assert_eq!((datagram.len, datagram.truncated), (4, false));
    assert_eq!(buf, b"next");
}

fn an_empty_datagram_is_a_datagram_of_length_zero(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let (fd, addr) = ouro_socket();
    let peer = std_socket();
    let outcome = complete(&mut ring, |r, c| {
        r.send_to(&fd, Vec::new(), peer.local_addr().unwrap(), c)
    });
    expect!(outcome, Outcome::SendTo(Ok(0), _) => ());
    let mut got = [0; 4];
    assert_eq!(peer.recv_from(&mut got).unwrap(), (0, addr));

    peer.send_to(b"", addr).unwrap();
    let outcome = complete(&mut ring, |r, c| r.recv_from(&fd, Vec::with_capacity(8), c));
    let (datagram, buf) = received(outcome);
    assert_eq!((datagram.len, datagram.truncated), (0, false));
    assert_eq!(datagram.peer_addr().unwrap(), peer.local_addr().unwrap());
    assert!(buf.is_empty());
}

fn a_unix_sender_is_a_sock_addr_and_not_an_ip_address(kind: BackendKind) {
    let dir = std::env::temp_dir().join(format!("ouro-udp-{}-{kind:?}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir(&dir).unwrap();
    let receiver = UnixDatagram::bind(dir.join("receiver")).unwrap();
    let sender = UnixDatagram::bind(dir.join("sender")).unwrap();
    sender.send_to(b"local", dir.join("receiver")).unwrap();
    let receiver = Rc::new(OwnedFd::from(receiver));
    let mut ring = ring(kind, 8);
    let outcome = complete(&mut ring, |r, c| {
        r.recv_from(&receiver, Vec::with_capacity(8), c)
    });
    let (datagram, buf) = received(outcome);
    assert_eq!(buf, b"local");
    assert_eq!(
        datagram.from.as_pathname(),
        Some(dir.join("sender").as_path())
    );
    assert_eq!(
        datagram.peer_addr().unwrap_err().kind(),
        std::io::ErrorKind::InvalidInput
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

fn send_to_an_address_of_another_family_fails(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let (fd, _) = ouro_socket();
    let v6: SocketAddr = "[::1]:9".parse().unwrap();
    let outcome = complete(&mut ring, |r, c| r.send_to(&fd, &b"x"[..], v6, c));
    assert_eq!(
        expect!(outcome, Outcome::SendTo(res, _) => os_error(res)),
        libc::EAFNOSUPPORT
    );
    let unix = SockAddr::unix("/nonexistent/ouro-socket").unwrap();
    let outcome = complete(&mut ring, |r, c| r.send_to(&fd, &b"x"[..], unix, c));
    assert_eq!(
        expect!(outcome, Outcome::SendTo(res, _) => os_error(res)),
        libc::EAFNOSUPPORT
    );
}

fn recv_from_without_room_is_invalid_input(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let (fd, _) = ouro_socket();
    let outcome = complete(&mut ring, |r, c| r.recv_from(&fd, Vec::new(), c));
    let res = expect!(outcome, Outcome::RecvFrom(res, _) => res);
    assert_eq!(error_kind(res), std::io::ErrorKind::InvalidInput);
    let outcome = complete(&mut ring, |r, c| {
        r.recv_from(&fd, ouro::Buf::new(&b"read-only"[..]), c)
    });
    let res = expect!(outcome, Outcome::RecvFrom(res, _) => res);
    assert_eq!(error_kind(res), std::io::ErrorKind::InvalidInput);
}

fn send_to_and_recv_from_on_a_bad_fd_fail_with_ebadf(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let bad = Rc::new(bad_fd());
    let outcome = complete(&mut ring, |r, c| {
        r.send_to(&bad, &b"x"[..], SocketAddr::from(([127, 0, 0, 1], 9)), c)
    });
    assert_eq!(
        expect!(outcome, Outcome::SendTo(res, _) => os_error(res)),
        libc::EBADF
    );
    let outcome = complete(&mut ring, |r, c| {
        r.recv_from(&bad, Vec::with_capacity(4), c)
    });
    assert_eq!(
        expect!(outcome, Outcome::RecvFrom(res, _) => os_error(res)),
        libc::EBADF
    );
}

fn a_cancelled_recv_from_takes_no_datagram(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let (fd, addr) = ouro_socket();
    let recv = ring.recv_from(&fd, Vec::with_capacity(8), ctx(0));
    ring.timer(Duration::from_millis(2), ctx(9));
    let mut got = Vec::new();
    ring.run(&mut got, RunMode::Once).unwrap();
    assert_eq!(got.len(), 1, "only the timer: the recv_from waits");
    recv.cancel(&mut ring, ctx(1));
    let got = run_all(&mut ring);
    assert_eq!(got.len(), 2, "{got:?}");
    let err = expect!(&got[0].outcome, Outcome::RecvFrom(Err(err), _) => err);
    assert!(is_canceled(err), "{err}");
    expect!(&got[1].outcome, Outcome::Cancel(Ok(())) => ());

    let peer = std_socket();
    peer.send_to(b"after", addr).unwrap();
    let outcome = complete(&mut ring, |r, c| r.recv_from(&fd, Vec::with_capacity(8), c));
    assert_eq!(received(outcome).1, b"after");
}

fn recv_from_past_its_deadline_fails_with_etime(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let (fd, _) = ouro_socket();
    let recv = ring.recv_from(&fd, Vec::with_capacity(8), ctx(0));
    let deadline = ring.now() + Duration::from_millis(5);
    ring.set_deadline(recv, deadline).unwrap();
    let got = run_all(&mut ring);
    assert_eq!(got.len(), 1);
    let err = expect!(&got[0].outcome, Outcome::RecvFrom(Err(err), _) => err);
    assert!(is_deadline(err) && !is_canceled(err), "{err}");
}

fn connected_udp_sends_and_receives_with_send_and_recv(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let (a, a_addr) = ouro_socket();
    let (b, b_addr) = ouro_socket();
    let stranger = std_socket();
    expect!(complete(&mut ring, |r, c| r.connect(&a, b_addr, c)), Outcome::Connect(Ok(())) => ());
    expect!(complete(&mut ring, |r, c| r.connect(&b, a_addr, c)), Outcome::Connect(Ok(())) => ());
    let outcome = complete(&mut ring, |r, c| r.send(&a, &b"to b"[..], c));
    expect!(outcome, Outcome::Send(Ok(4), _) => ());
    // A connected socket takes datagrams from its peer only.
    stranger.send_to(b"stray", b_addr).unwrap();
    let outcome = complete(&mut ring, |r, c| r.recv(&b, Vec::with_capacity(16), c));
    let buf = expect!(outcome, Outcome::Recv(Ok(4), buf) => buf);
    assert_eq!(&buf[..], b"to b");
    let outcome = complete(&mut ring, |r, c| r.send(&b, &b"to a"[..], c));
    expect!(outcome, Outcome::Send(Ok(4), _) => ());
    let outcome = complete(&mut ring, |r, c| r.recv_from(&a, Vec::with_capacity(16), c));
    let (datagram, buf) = received(outcome);
    assert_eq!(
        (buf.as_slice(), datagram.peer_addr().unwrap()),
        (&b"to a"[..], b_addr)
    );
}

fn a_connected_socket_gets_econnrefused_after_a_port_unreachable(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let (fd, _) = ouro_socket();
    // A port that was bound a moment ago and is closed now: nobody listens.
    let closed = std_socket().local_addr().unwrap();
    expect!(complete(&mut ring, |r, c| r.connect(&fd, closed, c)), Outcome::Connect(Ok(())) => ());
    let outcome = complete(&mut ring, |r, c| r.send(&fd, &b"anyone?"[..], c));
    expect!(outcome, Outcome::Send(Ok(7), _) => ());
    // The ICMP port unreachable makes the socket's error, which the next
    // receive reports (waiting for it if it has not come yet).
    let outcome = complete(&mut ring, |r, c| r.recv(&fd, Vec::with_capacity(16), c));
    assert_eq!(
        expect!(outcome, Outcome::Recv(res, _) => os_error(res)),
        libc::ECONNREFUSED
    );
}

fn udp_socket_is_blocking_and_close_on_exec(_kind: BackendKind) {
    let (fd, addr) = ouro_socket();
    assert_eq!(addr.ip(), loopback().ip());
    assert_ne!(addr.port(), 0, "bound to a free port");
    assert!(crate::harness::is_cloexec(&*fd));
    let socket = socket2::SockRef::from(&*fd);
    assert!(!socket.nonblocking().unwrap());
    assert_eq!(socket.r#type().unwrap(), socket2::Type::DGRAM);
}

fn a_datagram_over_the_largest_payload_is_emsgsize(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let (fd, addr) = ouro_socket();
    let outcome = complete(&mut ring, |r, c| r.send_to(&fd, vec![0u8; 70_000], addr, c));
    assert_eq!(
        expect!(outcome, Outcome::SendTo(res, _) => os_error(res)),
        libc::EMSGSIZE
    );
}

fn send_to_and_recv_from_work_on_ring_fds(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let a = udp_socket(loopback()).unwrap();
    let b = udp_socket(loopback()).unwrap();
    let (a_addr, b_addr) = (local_addr(&a).unwrap(), local_addr(&b).unwrap());
    let (a, b) = (ring.register_fd(a), ring.register_fd(b));
    let outcome = complete(&mut ring, |r, c| r.send_to(a, &b"ring fds"[..], b_addr, c));
    expect!(outcome, Outcome::SendTo(Ok(8), _) => ());
    let outcome = complete(&mut ring, |r, c| r.recv_from(b, Vec::with_capacity(16), c));
    let (datagram, buf) = received(outcome);
    assert_eq!(
        (buf.as_slice(), datagram.peer_addr().unwrap()),
        (&b"ring fds"[..], a_addr)
    );
}

fn a_ring_dropped_with_a_recv_from_in_flight_gives_the_socket_back(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let (fd, addr) = ouro_socket();
    ring.recv_from(&fd, Vec::with_capacity(8), ctx(0));
    ring.timer(Duration::from_millis(2), ctx(9));
    let mut got = Vec::new();
    ring.run(&mut got, RunMode::Once).unwrap();
    assert_eq!(got.len(), 1, "only the timer: the recv_from waits");
    drop(ring);
    // The ring let go of its clone: the socket is ours alone, and works.
    let socket = UdpSocket::from(Rc::try_unwrap(fd).expect("the ring let the socket go"));
    let peer = std_socket();
    peer.send_to(b"still here", addr).unwrap();
    socket.set_nonblocking(false).unwrap();
    let mut got = [0; 16];
    assert_eq!(socket.recv(&mut got).unwrap(), 10);
}

/// The ring answers route probes with one socket per family, kept between
/// probes (a socket per probe costs the kernel an RCU-deferred free) and
/// closed with the ring, and each probe finds its own destination's
/// source: none left over from the one before, nor from a failed one.
fn source_address_keeps_a_socket_per_family_and_routes_each_probe_anew(kind: BackendKind) {
    let before = open_fds();
    let mut ring: Ring<()> = ring(kind, 8);
    let with_ring = open_fds();
    let loopback = IpAddr::from([127, 0, 0, 1]);
    let link_local: IpAddr = "fe80::1".parse().unwrap();
    // Reached from another source than loopback where there is a default
    // route (TEST-NET-2: nothing is sent).
    let routed = IpAddr::from([198, 51, 100, 1]);
    let routed_source = ouro::net::route_source(routed).ok();
    for _ in 0..50 {
        assert_eq!(ring.source_address(loopback).unwrap(), loopback);
        assert!(ring.source_address(link_local).is_err());
        if let Some(expected) = routed_source {
            assert_eq!(ring.source_address(routed).unwrap(), expected);
        }
        assert_eq!(ring.source_address(loopback).unwrap(), loopback);
    }
    let v6 = ouro::net::route_source(Ipv6Addr::LOCALHOST.into()).is_ok();
    if v6 {
        assert_eq!(
            ring.source_address(Ipv6Addr::LOCALHOST.into()).unwrap(),
            Ipv6Addr::LOCALHOST
        );
    }
    if cfg!(target_os = "linux") {
        // An IPv6 socket is made wherever the kernel has IPv6 at all.
        let families = 1 + usize::from(UdpSocket::bind("[::]:0").is_ok());
        assert_eq!(
            open_fds(),
            with_ring + families,
            "a probe socket per family"
        );
    }
    drop(ring);
    assert_eq!(open_fds(), before, "the probe sockets close with the ring");
}

/// Out of fds, a ring that already probed a family answers on the socket
/// it kept; a family it never probed fails with the kernel's `EMFILE` (no
/// panic, no wrong answer), and once fds can be made again it is probed
/// like any other, and leaves nothing open.
fn source_address_out_of_fds_answers_on_its_kept_socket_and_errs_honestly(kind: BackendKind) {
    let before = open_fds();
    let mut ring: Ring<()> = ring(kind, 8);
    let loopback = IpAddr::from([127, 0, 0, 1]);
    let v6 = IpAddr::from(Ipv6Addr::LOCALHOST);
    let has_v6 = ouro::net::route_source(v6).is_ok();
    assert_eq!(ring.source_address(loopback).unwrap(), loopback);
    let (v4_out_of_fds, v6_out_of_fds) = with_no_new_fds(|| {
        let v4: Vec<_> = (0..3).map(|_| ring.source_address(loopback)).collect();
        (v4, ring.source_address(v6))
    });
    for answer in v4_out_of_fds {
        assert_eq!(answer.unwrap(), loopback);
    }
    let err = v6_out_of_fds.expect_err("no socket can be made for IPv6");
    assert_eq!(err.raw_os_error(), Some(libc::EMFILE), "{err}");
    if has_v6 {
        assert_eq!(ring.source_address(v6).unwrap(), v6);
    }
    assert_eq!(ring.source_address(loopback).unwrap(), loopback);
    drop(ring);
    assert_eq!(open_fds(), before, "the probe sockets close with the ring");
}

/// Receives racing for one socket's datagrams.
struct Flood {
    fd: Rc<OwnedFd>,
    received: usize,
    eagain: usize,
}

const FLOOD_DATAGRAMS: usize = 50_000;

fn on_flood(flood: &mut Flood, ring: &mut Ring<Flood>, c: ouro::Completion) -> std::io::Result<()> {
    let Outcome::RecvFrom(result, _) = c.outcome else {
        return Ok(());
    };
    match result {
        Ok(_) => flood.received += 1,
        Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => flood.eagain += 1,
        Err(e) if is_canceled(&e) => return Ok(()),
        Err(e) => return Err(e),
    }
    if flood.received >= FLOOD_DATAGRAMS {
        ring.cancel_all(ouro::Ctx::none());
        return Ok(());
    }
    let ctx = ouro::Ctx::new(on_flood);
    ring.recv_from(&flood.fd, Vec::with_capacity(64), ctx);
    Ok(())
}

/// Sixteen receives wait on one socket while a sender floods it: each
/// datagram wakes them all, and all but one find nothing. A receive must
/// go on waiting, not end in `EAGAIN` (io_uring retries such a receive
/// by polling, and past a number of tries in a worker, where a
/// non-blocking socket answers `EAGAIN`: `udp_socket` made one).
fn receives_racing_for_a_flood_of_datagrams_never_end_in_eagain(kind: BackendKind) {
    let mut ring: Ring<Flood> = ring(kind, 64);
    let (fd, addr) = ouro_socket();
    let mut flood = Flood {
        fd,
        received: 0,
        eagain: 0,
    };
    for _ in 0..16 {
        ring.recv_from(&flood.fd, Vec::with_capacity(64), ouro::Ctx::new(on_flood));
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sender = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let socket = UdpSocket::bind(loopback()).unwrap();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = socket.send_to(b"flood", addr);
            }
        })
    };
    let ran = ring.run(&mut flood, RunMode::UntilDone);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    sender.join().unwrap();
    ran.unwrap();
    assert!(flood.received >= FLOOD_DATAGRAMS);
    assert_eq!(flood.eagain, 0, "after {} datagrams", flood.received);
}
