//! Shared owners as operation fds (std's I/O safety): an operation given an
//! `Rc` or `Arc` holds a clone of it until its final completion, so the
//! caller may let go of the file at any time — the file stays open, under
//! the same number, while the operation runs, and closes once the last
//! owner (the operation's) is gone.
//!
//! The tests that look at fd numbers after their file has closed run while
//! no other test of this binary opens fds (`exclusive`). The unchecked path
//! (`UncheckedFd`, the caller's promise instead of a clone) is here too.

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::rc::Rc;
use std::sync::Arc;

use ouro::{is_canceled, BackendKind, Outcome, RunMode, UncheckedFd};

use crate::common::fds::identity;
use crate::harness::{ctx, peer, peer_closed, ring, run_all, socket_pair};

backend_tests![
    an_unchecked_fd_works_while_its_owner_keeps_it_open,
    a_finished_tasks_clone_is_let_go_before_its_callback_runs,
];

exclusive_backend_tests![
    an_operation_keeps_a_shared_fd_open_until_its_final_completion,
    a_cancelled_operation_keeps_a_shared_fd_open_until_its_final_completion,
];

/// Whether the number names no open file (`fcntl(F_GETFD)` fails with
/// `EBADF`).
fn is_closed(fd: RawFd) -> bool {
    // SAFETY: F_GETFD only reads the fd's flags, or fails on a closed one.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    flags < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EBADF)
}

/// The caller drops its `Rc` while a recv is in flight: the recv's clone
/// keeps the socket open under the same number (the peer does not see it
/// closed), the recv completes on that socket when the peer writes, and
/// the socket closes with the recv's final completion.
fn an_operation_keeps_a_shared_fd_open_until_its_final_completion(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let (a, b) = socket_pair();
    let a = Rc::new(a);
    let mut peer = peer(b);
    let raw = a.as_raw_fd();
    let socket = identity(raw).expect("the socket is open");
    ring.recv(&a, Vec::with_capacity(16), ctx(0));
    // In flight: submitted (io_uring) or armed (readiness backend).
    let mut got = Vec::new();
    ring.run(&mut got, RunMode::NoWait).unwrap();
    assert!(got.is_empty(), "the recv waits for data: {got:?}");

    let left = Rc::downgrade(&a);
    drop(a);
    assert_eq!(left.strong_count(), 1, "the recv holds the last owner");
    assert_eq!(identity(raw), Some(socket), "the number names the socket");
    assert!(!peer_closed(&peer), "the socket is open under the recv");

    peer.write_all(b"still open").unwrap();
    let got = run_all(&mut ring);
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].is_final());
    assert_eq!(
        &expect!(&got[0].outcome, Outcome::Recv(Ok(10), buf) => buf)[..],
        b"still open",
        "received on the same socket"
    );
    assert_eq!(left.strong_count(), 0, "released at the final completion");
    assert!(is_closed(raw), "the fd closed after the completion");
    let mut rest = Vec::new();
    assert_eq!(
        peer.read_to_end(&mut rest).unwrap(),
        0,
        "the peer sees the end"
    );
}

/// The same through an `Arc` given by value, with the recv cancelled
/// instead of completing: the socket stays open until the cancelled recv's
/// completion, then closes.
fn a_cancelled_operation_keeps_a_shared_fd_open_until_its_final_completion(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let (a, b) = socket_pair();
    let a = Arc::new(a);
    let peer = peer(b);
    let raw = a.as_raw_fd();
    let socket = identity(raw).expect("the socket is open");
    let recv = ring.recv(Arc::clone(&a), Vec::with_capacity(16), ctx(0));
    let mut got = Vec::new();
    ring.run(&mut got, RunMode::NoWait).unwrap();
    assert!(got.is_empty(), "the recv waits for data: {got:?}");

    let left = Arc::downgrade(&a);
    drop(a);
    assert_eq!(left.strong_count(), 1, "the recv holds the last owner");
    assert_eq!(identity(raw), Some(socket), "the number names the socket");
    assert!(!peer_closed(&peer), "the socket is open under the recv");

    ring.cancel(recv, ctx(1));
    let got = run_all(&mut ring);
    assert_eq!(got.len(), 2, "{got:?}");
    let err = expect!(&got[0].outcome, Outcome::Recv(Err(err), _) => err);
    assert!(is_canceled(err), "{err}");
    expect!(&got[1].outcome, Outcome::Cancel(Ok(())) => ());
    assert_eq!(left.strong_count(), 0, "released at the final completion");
    assert!(is_closed(raw), "the fd closed after the completion");
    assert!(peer_closed(&peer), "the peer sees the end");
}

/// An `UncheckedFd` names the fd without keeping it open: the test keeps
/// the owner alive until the operation's final completion, as its `unsafe`
/// constructor requires, and the recv works on it like on any other fd.
fn an_unchecked_fd_works_while_its_owner_keeps_it_open(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let (a, b) = socket_pair();
    let mut peer = peer(b);
    // SAFETY: `a` is dropped only at the end of this function, after
    // `run_all` has delivered the recv's final completion.
    let unchecked = unsafe { UncheckedFd::new(a.as_fd()) };
    assert_eq!(unchecked.as_raw_fd(), a.as_raw_fd());
    ring.recv(unchecked, Vec::with_capacity(16), ctx(0));
    let mut got = Vec::new();
    ring.run(&mut got, RunMode::NoWait).unwrap();
    assert!(got.is_empty(), "the recv waits for data: {got:?}");
    peer.write_all(b"unchecked").unwrap();
    let got = run_all(&mut ring);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(
        &expect!(&got[0].outcome, Outcome::Recv(Ok(9), buf) => buf)[..],
        b"unchecked"
    );
    drop(a);
    let mut rest = Vec::new();
    assert_eq!(
        peer.read_to_end(&mut rest).unwrap(),
        0,
        "closed by its owner"
    );
}

/// What the callback saw: the owner's count when it ran.
struct Owner {
    file: Option<Rc<std::fs::File>>,
    count_in_callback: Option<usize>,
}

fn count_owners(
    owner: &mut Owner,
    _: &mut ouro::Ring<Owner>,
    _: ouro::Completion,
) -> std::io::Result<()> {
    owner.count_in_callback = owner.file.as_ref().map(Rc::strong_count);
    Ok(())
}

/// The task's clone is dropped before its callback runs, so the callback
/// may take the file out of its `Rc` (`Rc::try_unwrap`), as a connect's
/// callback does with its socket.
fn a_finished_tasks_clone_is_let_go_before_its_callback_runs(kind: BackendKind) {
    let mut ring = crate::harness::ring(kind, 8);
    let (_reader, writer) = crate::common::fds::pipe_files();
    let mut owner = Owner {
        file: Some(Rc::new(writer)),
        count_in_callback: None,
    };
    let file = owner.file.as_ref().unwrap();
    ring.poll(file, ouro::PollMask::WRITABLE, ouro::Ctx::new(count_owners));
    ring.run(&mut owner, RunMode::UntilDone).unwrap();
    assert_eq!(owner.count_in_callback, Some(1));
}
