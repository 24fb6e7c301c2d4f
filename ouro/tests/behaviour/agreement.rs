//! Cases where the readiness backend once answered otherwise than
//! io_uring: a blocking eventfd's write that cannot fit (it blocked the
//! whole ring), a connect again after a refused one (`ECONNABORTED`), a
//! connect whose socket is shut down (connected again), and a poll's mask
//! (io_uring added `POLLRDHUP`, which nobody asked for).

use std::io::Write;
use std::net::{Shutdown, SocketAddr, TcpListener};
use std::os::fd::{FromRawFd, OwnedFd};
use std::rc::Rc;
use std::time::Duration;

use ouro::{is_deadline, BackendKind, Offset, Outcome, PollMask, Ring, RunMode};

use crate::common::fds::tcp_pair;
use crate::harness::{complete, os_error, ring, Got};

backend_tests![
    an_eventfd_write_that_cannot_fit_ends_at_its_deadline,
    each_connect_to_a_closed_port_is_refused,
    a_connect_whose_socket_is_shut_down_ends_and_tries_no_more,
    a_poll_reports_the_bits_asked_for_and_the_errors,
];

/// A blocking eventfd holding 5.
fn eventfd_holding_five() -> Rc<OwnedFd> {
    // SAFETY: plain system call on integers.
    let raw = unsafe { libc::eventfd(5, libc::EFD_CLOEXEC) };
    assert!(raw >= 0, "eventfd: {}", std::io::Error::last_os_error());
    // SAFETY: eventfd returned a new fd that nothing else owns.
    Rc::new(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// Adding `u64::MAX - 2` to a counter of 5 would pass its limit: the
/// kernel makes a blocking write wait for a reader. The ring must not
/// wait with it: the write ends with `ETIME` at its deadline.
fn an_eventfd_write_that_cannot_fit_ends_at_its_deadline(kind: BackendKind) {
    let mut ring: Ring<Got> = ring(kind, 8);
    let fd = eventfd_holding_five();
    let too_much = (u64::MAX - 2).to_ne_bytes().to_vec();
    let outcome = complete(&mut ring, |ring, ctx| {
        let task = ring.write(&fd, too_much, Offset::Current, ctx);
        ring.set_timeout(task, Duration::from_millis(100)).unwrap();
        task
    });
    let Outcome::Write(result, _) = outcome else {
        panic!("not a write: {outcome:?}");
    };
    let err = result.expect_err("it cannot fit");
    assert!(is_deadline(&err), "{err}");
}

/// A port just given back: nobody listens on it.
fn closed_port() -> SocketAddr {
    let taken = TcpListener::bind(("127.0.0.1", 0)).unwrap();
    taken.local_addr().unwrap()
}

/// A refused connect leaves the socket as it was: the next one is
/// refused the same way (the readiness backend's second was
/// `ECONNABORTED`).
fn each_connect_to_a_closed_port_is_refused(kind: BackendKind) {
    let mut ring: Ring<Got> = ring(kind, 8);
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let socket = Rc::new(OwnedFd::from(socket));
    let addr = closed_port();
    for attempt in 0..3 {
        let outcome = complete(&mut ring, |ring, ctx| ring.connect(&socket, addr, ctx));
        let Outcome::Connect(result) = outcome else {
            panic!("not a connect: {outcome:?}");
        };
        assert_eq!(os_error(result), libc::ECONNREFUSED, "attempt {attempt}");
    }
}

/// A socket whose peer shut its side is readable; a poll for that says
/// `READABLE` and nothing it did not ask for but the error bits.
fn a_poll_reports_the_bits_asked_for_and_the_errors(kind: BackendKind) {
    let mut ring: Ring<Got> = ring(kind, 8);
    let (ours, mut theirs) = tcp_pair();
    theirs.write_all(b"x").unwrap();
    theirs.shutdown(Shutdown::Write).unwrap();
    let ours = Rc::new(OwnedFd::from(ours));
    let outcome = complete(&mut ring, |ring, ctx| {
        ring.poll(&ours, PollMask::READABLE, ctx)
    });
    let Outcome::Poll(result) = outcome else {
        panic!("not a poll: {outcome:?}");
    };
    assert_eq!(result.unwrap(), PollMask::READABLE);
}

/// A listener whose accept queue is full: a connect to it stays in
/// `SYN_SENT` (its SYNs are dropped) until the listener makes room.
fn full_listener() -> (socket2::Socket, std::net::TcpStream) {
    use socket2::{Domain, Socket, Type};
    let listener = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    listener
        .bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .unwrap();
    listener.listen(0).unwrap();
    let addr = listener.local_addr().unwrap().as_socket().unwrap();
    let queued = std::net::TcpStream::connect(addr).unwrap();
    (listener, queued)
}

/// The TCP state of a socket (`TCP_INFO`'s first byte).
fn tcp_state(socket: &socket2::Socket) -> u8 {
    use std::os::fd::AsRawFd;
    let mut info = [0u8; 256];
    let mut len = info.len() as libc::socklen_t;
    // SAFETY: `info` is valid for `len` bytes of writes.
    let res = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            info.as_mut_ptr().cast(),
            &mut len,
        )
    };
    assert_eq!(res, 0, "TCP_INFO: {}", std::io::Error::last_os_error());
    info[0]
}

const TCP_SYN_SENT: u8 = 2;
const TCP_CLOSE: u8 = 7;

/// A socket shut down while its connect waits in `SYN_SENT` ends that
/// connect with `ECONNRESET`, and is left closed: nothing tries the peer
/// again. (The readiness backend connected again, and a new SYN went out
/// to the peer given up on.)
fn a_connect_whose_socket_is_shut_down_ends_and_tries_no_more(kind: BackendKind) {
    let mut ring: Ring<Got> = ring(kind, 8);
    let (listener, _queued) = full_listener();
    let addr = listener.local_addr().unwrap().as_socket().unwrap();
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_nonblocking(true).unwrap();
    let socket = Rc::new(socket);
    ring.connect(&socket, addr, crate::harness::ctx(1));
    let mut got = Vec::new();
    ring.run(&mut got, RunMode::NoWait).unwrap();
    assert!(got.is_empty(), "the SYN is dropped: {got:?}");
    assert_eq!(tcp_state(&socket), TCP_SYN_SENT);
    socket.shutdown(Shutdown::Both).unwrap();
    ring.run(&mut got, RunMode::UntilDone).unwrap();
    let [c] = &got[..] else {
        panic!("one completion: {got:?}");
    };
    let Outcome::Connect(result) = &c.outcome else {
        panic!("not a connect: {:?}", c.outcome);
    };
    let err = result.as_ref().expect_err("it was shut down");
    assert_eq!(err.raw_os_error(), Some(libc::ECONNRESET), "{err}");
    assert_eq!(tcp_state(&socket), TCP_CLOSE, "not connecting again");
}
