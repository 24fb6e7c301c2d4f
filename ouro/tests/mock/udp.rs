//! send_to and recv_from under the mock: the datagram and its fd reach the
//! script, a scripted datagram fills the buffer, errors and deadlines come
//! back as the kernel's would.

use std::cell::RefCell;
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;
use std::time::Duration;

use ouro::mock::{Mock, Reply};
use ouro::{is_canceled, is_deadline, Ctx, OpKind, Outcome, Ring, RunMode};

use super::{any_fd, collect, only_outcome};
use crate::common::fds::apart_from_other_tests;

/// What the mock saw of each send_to: its fd and datagram.
type Sent = Rc<RefCell<Vec<(Option<RawFd>, Vec<u8>)>>>;

#[test]
fn send_to_reaches_the_mock_with_its_fd_and_datagram() {
    let _alone = apart_from_other_tests();
    let seen = Sent::default();
    let record = seen.clone();
    let mut mock = Mock::new();
    mock.on(OpKind::SendTo, move |op| {
        record.borrow_mut().push((op.fd(), op.data().to_vec()));
        Reply::Value(op.data().len() as u32)
    });
    mock.push(OpKind::SendTo, Reply::Errno(libc::EHOSTUNREACH));
    let mut ring = Ring::mock(mock);
    let fd = any_fd();
    let to = std::net::SocketAddr::from(([192, 0, 2, 1], 53));

    // The queued reply answers first, then the handler.
    ring.send_to(&fd, &b"lost"[..], to, Ctx::new(collect));
    let outcome = only_outcome(&mut ring);
    let Outcome::SendTo(Err(err), _) = outcome else {
        panic!("expected a failed send_to, got {outcome:?}");
    };
    assert_eq!(err.raw_os_error(), Some(libc::EHOSTUNREACH));

    ring.send_to(&fd, &b"query"[..], to, Ctx::new(collect));
    let outcome = only_outcome(&mut ring);
    assert!(matches!(outcome, Outcome::SendTo(Ok(5), _)), "{outcome:?}");
    assert_eq!(*seen.borrow(), [(Some(fd.as_raw_fd()), b"query".to_vec())]);
}

#[test]
fn recv_from_gets_the_scripted_datagram_without_a_sender() {
    let _alone = apart_from_other_tests();
    let mut mock = Mock::new();
    mock.on(OpKind::RecvFrom, |op| Reply::Value(op.fill(b"answer")));
    let mut ring = Ring::mock(mock);
    let fd = any_fd();
    ring.recv_from(&fd, Vec::with_capacity(16), Ctx::new(collect));
    let outcome = only_outcome(&mut ring);
    let Outcome::RecvFrom(Ok(datagram), buf) = outcome else {
        panic!("expected a datagram, got {outcome:?}");
    };
    assert_eq!(&buf[..], b"answer");
    assert_eq!((datagram.len, datagram.truncated), (6, false));
    // A script gives no address: the sender is AF_UNSPEC, not an IP one.
    assert_eq!(datagram.from.family(), libc::AF_UNSPEC as libc::sa_family_t);
    assert_eq!(
        datagram.peer_addr().unwrap_err().kind(),
        std::io::ErrorKind::InvalidInput
    );
}

#[test]
fn a_recv_from_reply_past_the_buffer_counts_only_its_room() {
    let _alone = apart_from_other_tests();
    let mut mock = Mock::new();
    mock.on(OpKind::RecvFrom, |op| {
        op.fill(b"0123456789");
        Reply::Value(1000)
    });
    let mut ring = Ring::mock(mock);
    let fd = any_fd();
    ring.recv_from(&fd, Vec::with_capacity(4), Ctx::new(collect));
    let outcome = only_outcome(&mut ring);
    let Outcome::RecvFrom(Ok(datagram), buf) = outcome else {
        panic!("expected a datagram, got {outcome:?}");
    };
    assert_eq!((datagram.len, &buf[..]), (4, &b"0123"[..]));
}

#[test]
fn a_recv_from_that_never_gets_a_datagram_fails_at_its_deadline_in_virtual_time() {
    let _alone = apart_from_other_tests();
    let mut mock = Mock::new();
    mock.on(OpKind::RecvFrom, |_| Reply::Pending);
    let mut ring = Ring::mock(mock);
    let start = ring.now();
    let fd = any_fd();
    let recv = ring.recv_from(&fd, Vec::with_capacity(8), Ctx::new(collect));
    ring.set_deadline(recv, start + Duration::from_secs(3))
        .unwrap();
    let mut got = Vec::new();
    ring.run(&mut got, RunMode::UntilDone).unwrap();
    assert_eq!(got.len(), 1);
    let (c, at) = &got[0];
    let Outcome::RecvFrom(Err(err), _) = &c.outcome else {
        panic!("expected a failed recv_from, got {:?}", c.outcome);
    };
    assert!(is_deadline(err) && !is_canceled(err), "{err}");
    assert_eq!(*at - start, Duration::from_secs(3));
}
