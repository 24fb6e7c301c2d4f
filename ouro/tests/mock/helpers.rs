//! The helpers built on operations, on the mock: a pipe's ends registered
//! with the ring, a `SendFile` transfer through its pipe, and a signal
//! wait — each reaching the mock as its operations, with success and an
//! error.

use std::cell::RefCell;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::rc::Rc;

use ouro::mock::{Mock, Reply};
use ouro::signal::{self, Signals, SIGUSR2};
use ouro::{Completion, Ctx, Offset, OpKind, Outcome, Ring, RunMode, SendFile, Sent};

use crate::common::fds::apart_from_other_tests;

/// The fds the mock saw, in order.
type Seen = Rc<RefCell<Vec<Option<RawFd>>>>;

/// A mock that answers `kind` with `reply`, recording each fd it names.
fn recording(kind: OpKind, reply: impl Fn() -> Reply + 'static) -> (Mock, Seen) {
    let seen = Seen::default();
    let record = seen.clone();
    let mut mock = Mock::new();
    mock.on(kind, move |op| {
        record.borrow_mut().push(op.fd());
        reply()
    });
    (mock, seen)
}

fn keep(got: &mut Vec<Completion>, _: &mut Ring<Vec<Completion>>, c: Completion) -> io::Result<()> {
    got.push(c);
    Ok(())
}

#[test]
fn a_registered_pipe_reaches_the_mock_as_its_two_ends() {
    let _alone = apart_from_other_tests();
    let pipe = ouro::pipe().unwrap();
    let (reader, writer) = (pipe.reader.as_raw_fd(), pipe.writer.as_raw_fd());
    let (mut mock, seen) = recording(OpKind::Write, || Reply::Value(5));
    let record = seen.clone();
    mock.on(OpKind::Read, move |op| {
        record.borrow_mut().push(op.fd());
        Reply::Errno(libc::EAGAIN)
    });
    let mut ring = Ring::mock(mock);
    let ends = pipe.register(&mut ring);
    ring.write(
        ends.writer,
        b"hello".to_vec(),
        Offset::Current,
        Ctx::new(keep),
    );
    ring.read(
        ends.reader,
        Vec::with_capacity(8),
        Offset::Current,
        Ctx::new(keep),
    );
    let mut got = Vec::new();
    ring.run(&mut got, RunMode::UntilDone).unwrap();
    assert_eq!(*seen.borrow(), [Some(writer), Some(reader)]);
    assert!(
        matches!(got[0].outcome, Outcome::Write(Ok(5), _)),
        "{:?}",
        got[0]
    );
    let Outcome::Read(Err(err), _) = &got[1].outcome else {
        panic!("expected an error, got {:?}", got[1])
    };
    assert_eq!(err.raw_os_error(), Some(libc::EAGAIN));
}

/// A `SendFile` transfer and how it ended.
struct Transfer {
    files: SendFile<Transfer, Rc<std::fs::File>, Rc<OwnedFd>>,
    sent: Option<Sent>,
}

fn on_transfer(state: &mut Transfer, ring: &mut Ring<Transfer>, c: Completion) -> io::Result<()> {
    if let Some(sent) = state.files.on_completion(ring, c)? {
        state.sent = Some(sent);
    }
    Ok(())
}

/// Sends 100 bytes of a file to a socket on a mock whose splices all
/// answer `reply` (and the socket is always writable); how the transfer
/// ended, and the fds the splices named.
fn send_file_on_the_mock(reply: fn() -> Reply) -> (Sent, Vec<Option<RawFd>>, [RawFd; 2]) {
    let file = Rc::new(tempfile::tempfile().unwrap());
    let (socket, _peer) = std::os::unix::net::UnixStream::pair().unwrap();
    let socket = Rc::new(OwnedFd::from(socket));
    let fds = [file.as_raw_fd(), socket.as_raw_fd()];
    let (mut mock, seen) = recording(OpKind::Splice, reply);
    // Between its splices a transfer waits for the socket to take more.
    mock.on(OpKind::Poll, |_| Reply::Value(libc::POLLOUT as u32));
    let mut ring = Ring::mock(mock);
    let mut state = Transfer {
        files: SendFile::new(Ctx::new(on_transfer)),
        sent: None,
    };
    state
        .files
        .start(&mut ring, file, 0, 100, socket, 7)
        .unwrap();
    ring.run(&mut state, RunMode::UntilDone).unwrap();
    let seen = seen.borrow().clone();
    (state.sent.expect("the transfer ended"), seen, fds)
}

#[test]
fn send_file_reaches_the_mock_as_splices_from_the_file_then_the_pipe() {
    let _alone = apart_from_other_tests();
    let (sent, seen, [file, _]) = send_file_on_the_mock(|| Reply::Value(100));
    assert_eq!((sent.key, sent.sent), (7, 100));
    sent.result.unwrap();
    assert_eq!(seen.len(), 2, "into the pipe, out of it: {seen:?}");
    assert_eq!(seen[0], Some(file), "the first splice reads the file");
    assert_ne!(seen[1], Some(file), "the second reads the pipe");

    let (sent, seen, _) = send_file_on_the_mock(|| Reply::Errno(libc::EIO));
    assert_eq!(sent.sent, 0);
    assert_eq!(sent.result.unwrap_err().raw_os_error(), Some(libc::EIO));
    assert_eq!(seen.len(), 1, "an error ends the transfer");
}

#[test]
#[cfg_attr(miri, ignore = "signal handlers and socket ioctls: needs the kernel")]
fn a_signal_wait_reaches_the_mock_as_a_receive_on_the_signals_socket() {
    let _alone = apart_from_other_tests();
    // Only a handler is installed: no signal is raised here.
    let signals = Signals::new(&[SIGUSR2]).unwrap();
    let seen = Seen::default();
    let record = seen.clone();
    let mut mock = Mock::new();
    let mut replies = vec![Reply::Errno(libc::ECONNRESET)];
    mock.on(OpKind::Recv, move |op| {
        record.borrow_mut().push(op.fd());
        replies
            .pop()
            .unwrap_or_else(|| Reply::Value(op.fill(&[SIGUSR2 as u8])))
    });
    let mut ring = Ring::mock(mock);
    signals.wait(&mut ring, Ctx::new(keep));
    signals.wait(&mut ring, Ctx::new(keep));
    let mut got = Vec::new();
    ring.run(&mut got, RunMode::UntilDone).unwrap();
    let seen = seen.borrow();
    assert_eq!(seen.len(), 2);
    assert!(
        seen[0].is_some() && seen[0] == seen[1],
        "one socket: {seen:?}"
    );
    let err = signal::received(&got[0]).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ECONNRESET));
    let set = signal::received(&got[1]).unwrap();
    assert!(set.contains(SIGUSR2) && set.len() == 1, "{set:?}");
}
