//! Unit tests on the mock backend (no kernel ring): the seed's MultiWriter
//! under scripted partial writes, deadlines and delayed replies on the
//! virtual clock, a drain that waits for a slow reply and cuts a pending
//! one, unscripted operations, fd leak reports, and replies that could
//! stand for an fd or an error no kernel gives; the file-system operations
//! reaching the mock with their fds and paths (`fs_ops.rs`); send_to and
//! recv_from (`udp.rs`); pipes, `SendFile` and signal waits (`helpers.rs`).

use std::cell::RefCell;
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::rc::Rc;
use std::time::{Duration, Instant};

use ouro::fs::OpenOptions;
use ouro::mock::{Mock, Reply};
use ouro::net::{Domain, Type};
use ouro::{is_canceled, is_deadline, Completion, Ctx, OpKind, Outcome, Ring, RunMode};

#[path = "../common/mod.rs"]
mod common;
mod fs_ops;
mod helpers;
mod interrupted;
mod mistakes;
mod udp;
mod vectored;

// The example, included as it is.
#[allow(dead_code)] // its `main`
#[path = "../../examples/multiwriter.rs"]
mod multiwriter;

// Each test runs alone (`apart_from_other_tests`): the mock reports the fds
// it handed out by number and file identity, and a file another test opens
// meanwhile can take both over (a deleted temp file's inode is reused).
use common::fds::{apart_from_other_tests, temp_file};
use multiwriter::MultiWriter;

/// What a scripted write handler has received, per fd.
type Received = Rc<RefCell<HashMap<RawFd, Vec<u8>>>>;

/// Two fds (the mock never touches them; their numbers tell the writes
/// apart).
fn two_fds() -> (OwnedFd, OwnedFd) {
    let open = || OwnedFd::from(File::open("/dev/null").unwrap());
    (open(), open())
}

/// A mock whose writes take at most `limits[fd][i % len]` bytes on their
/// i-th call for that fd, recording what each fd received.
fn partial_writes(limits: HashMap<RawFd, Vec<usize>>) -> (Mock, Received) {
    let received = Received::default();
    let record = received.clone();
    let mut calls: HashMap<RawFd, usize> = HashMap::new();
    let mut mock = Mock::new();
    mock.on(OpKind::Write, move |op| {
        let fd = op.fd().expect("a write has an fd");
        let call = calls.entry(fd).or_default();
        let pattern = &limits[&fd];
        let n = op.data().len().min(pattern[*call % pattern.len()]);
        *call += 1;
        record
            .borrow_mut()
            .entry(fd)
            .or_default()
            .extend_from_slice(&op.data()[..n]);
        Reply::Value(n as u32)
    });
    (mock, received)
}

#[test]
fn multiwriter_resubmits_partial_writes_until_each_fd_has_everything() {
    let _alone = apart_from_other_tests();
    let (fd1, fd2) = two_fds();
    let (raw1, raw2) = (fd1.as_raw_fd(), fd2.as_raw_fd());
    let limits = HashMap::from([(raw1, vec![3, 1, 5]), (raw2, vec![7])]);
    let (mock, received) = partial_writes(limits);
    let mut ring = Ring::mock(mock);
    let chunks: [&[u8]; 3] = [b"Hello, world!\n", b"Every byte goes to both fds.\n", b"!"];
    let expected = chunks.concat();

    let written = multiwriter::run(&mut ring, fd1, fd2, &chunks).unwrap();

    assert_eq!(written, [expected.len(); 2]);
    let received = received.borrow();
    assert_eq!(received[&raw1], expected, "fd 1 got every byte, in order");
    assert_eq!(received[&raw2], expected, "fd 2 got every byte, in order");
    // 44 bytes in writes of 3, 1, 5, ... (15 writes) and of 7 (7 writes).
    let writes = ring.mock_backend().unwrap().started(OpKind::Write);
    assert_eq!(writes, 15 + 7);
    assert_eq!(ring.live_tasks(), 0);
}

struct Writer {
    writer: MultiWriter,
}

impl AsMut<MultiWriter> for Writer {
    fn as_mut(&mut self) -> &mut MultiWriter {
        &mut self.writer
    }
}

/// Bytes written while a flush is under way go out when it is done.
#[test]
fn multiwriter_takes_bytes_written_during_a_flush_along() {
    let _alone = apart_from_other_tests();
    let (fd1, fd2) = two_fds();
    let (raw1, raw2) = (fd1.as_raw_fd(), fd2.as_raw_fd());
    let (mock, received) = partial_writes(HashMap::from([(raw1, vec![2]), (raw2, vec![4, 1])]));
    let mut ring = Ring::mock(mock);
    let mut state = Writer {
        writer: MultiWriter::new(fd1, fd2),
    };
    state.writer.write(b"first ");
    state.writer.flush(&mut ring);
    ring.run(&mut state, RunMode::Once).unwrap();
    assert!(!state.writer.is_idle(), "the first flush is under way");
    state.writer.write(b"second");
    state.writer.flush(&mut ring);
    ring.run(&mut state, RunMode::UntilDone).unwrap();
    assert!(state.writer.is_idle());
    let received = received.borrow();
    assert_eq!(received[&raw1], b"first second");
    assert_eq!(received[&raw2], b"first second");
}

fn collect(
    got: &mut Vec<(Completion, Instant)>,
    ring: &mut Ring<Vec<(Completion, Instant)>>,
    c: Completion,
) -> io::Result<()> {
    got.push((c, ring.now()));
    Ok(())
}

/// Runs the ring until no task is left; the one outcome it came to.
fn only_outcome(ring: &mut Ring<Vec<(Completion, Instant)>>) -> Outcome {
    let mut got = Vec::new();
    ring.run(&mut got, RunMode::UntilDone).unwrap();
    assert_eq!(got.len(), 1, "one operation, one completion");
    got.pop().unwrap().0.outcome
}

/// An fd to name in operations (the mock never touches it), shared so
/// that operations can hold it open.
fn any_fd() -> Rc<File> {
    Rc::new(File::open("/dev/null").unwrap())
}

#[test]
fn a_recv_that_never_gets_data_fails_at_its_deadline_in_virtual_time() {
    let _alone = apart_from_other_tests();
    let mut mock = Mock::new();
    mock.on(OpKind::Recv, |_| Reply::Pending);
    let mut ring = Ring::mock(mock);
    let start = ring.now();
    let fd = any_fd();
    let recv = ring.recv(&fd, Vec::with_capacity(8), Ctx::new(collect));
    ring.set_deadline(recv, start + Duration::from_secs(5))
        .unwrap();
    let mut got = Vec::new();
    ring.run(&mut got, RunMode::UntilDone).unwrap();
    assert_eq!(got.len(), 1);
    let (c, at) = &got[0];
    let err = match &c.outcome {
        Outcome::Recv(Err(err), _) => err,
        other => panic!("expected a failed recv, got {other:?}"),
    };
    assert!(is_deadline(err) && !is_canceled(err), "{err}");
    assert_eq!(
        *at - start,
        Duration::from_secs(5),
        "at the deadline's virtual time"
    );
    assert_eq!(
        ring.now() - start,
        Duration::from_secs(5),
        "the clock moved on"
    );
}

#[test]
fn delayed_replies_and_timers_fire_in_virtual_time_order() {
    let _alone = apart_from_other_tests();
    let mut mock = Mock::new();
    let later = |secs, reply| Reply::After(Duration::from_millis(secs), Box::new(reply));
    mock.push(OpKind::Noop, later(3000, Reply::Value(0)));
    mock.push(OpKind::Read, later(1500, Reply::Errno(libc::EIO)));
    let mut ring = Ring::mock(mock);
    let fd = any_fd();
    let start = ring.now();
    ring.timer(Duration::from_secs(4), Ctx::new(collect).key(4000));
    ring.noop(Ctx::new(collect).key(3000));
    ring.timer(Duration::from_secs(1), Ctx::new(collect).key(1000));
    ring.read(
        &fd,
        Vec::with_capacity(4),
        ouro::Offset::Current,
        Ctx::new(collect).key(1500),
    );
    ring.timer(Duration::from_secs(2), Ctx::new(collect).key(2000));
    let mut got = Vec::new();
    ring.run(&mut got, RunMode::UntilDone).unwrap();
    let order: Vec<(u64, Duration)> = got.iter().map(|(c, at)| (c.key(), *at - start)).collect();
    let expected: Vec<(u64, Duration)> = [1000, 1500, 2000, 3000, 4000]
        .into_iter()
        .map(|ms| (ms, Duration::from_millis(ms)))
        .collect();
    assert_eq!(order, expected);
    let read = got.iter().find(|(c, _)| c.key() == 1500).unwrap();
    assert!(
        matches!(&read.0.outcome, Outcome::Read(Err(e), _) if e.raw_os_error() == Some(libc::EIO))
    );
}

#[test]
fn an_unscripted_operation_fails_with_unsupported_and_leaves_no_task() {
    let _alone = apart_from_other_tests();
    let mut ring = Ring::mock(Mock::new());
    let fd = any_fd();
    ring.read(
        &fd,
        Vec::with_capacity(4),
        ouro::Offset::Current,
        Ctx::new(collect),
    );
    let mut got = Vec::new();
    ring.run(&mut got, RunMode::UntilDone).unwrap();
    assert_eq!(got.len(), 1);
    let err = match &got[0].0.outcome {
        Outcome::Read(Err(err), _) => err,
        other => panic!("expected a failed read, got {other:?}"),
    };
    assert_eq!(err.kind(), io::ErrorKind::Unsupported);
    assert!(
        err.to_string().contains("no reply scripted for Read"),
        "{err}"
    );
    assert_eq!(ring.live_tasks(), 0);
}

/// A reply that never comes, with nothing else to wait for, is an error
/// from `run`, not a hang.
#[test]
fn waiting_forever_on_the_mock_is_an_error() {
    let _alone = apart_from_other_tests();
    let mut mock = Mock::new();
    mock.on(OpKind::Recv, |_| Reply::Pending);
    let mut ring = Ring::mock(mock);
    let fd = any_fd();
    ring.recv(&fd, Vec::with_capacity(8), Ctx::new(collect));
    let err = ring.run(&mut Vec::new(), RunMode::UntilDone).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::WouldBlock, "{err}");
    // The recv is still there, and a cancel ends it.
    assert_eq!(ring.live_tasks(), 1);
    ring.cancel_all(Ctx::new(collect));
    let mut got = Vec::new();
    ring.run(&mut got, RunMode::UntilDone).unwrap();
    assert_eq!(got.len(), 2);
    assert!(matches!(&got[0].0.outcome, Outcome::Recv(Err(e), _) if is_canceled(e)));
    assert!(matches!(&got[1].0.outcome, Outcome::CancelAll(Ok(1))));
}

#[derive(Default)]
struct Opened {
    fds: Vec<OwnedFd>,
}

fn keep_fd(state: &mut Opened, _: &mut Ring<Opened>, c: Completion) -> io::Result<()> {
    match c.outcome {
        Outcome::Open(result) => state.fds.push(result?),
        Outcome::Close(result) => result?,
        other => panic!("unexpected {other:?}"),
    }
    Ok(())
}

#[test]
fn open_fds_reports_fds_handed_out_and_not_closed() {
    let _alone = apart_from_other_tests();
    let mut mock = Mock::new();
    // A file of its own per fd (not /dev/null, which other tests of this
    // binary open concurrently): a closed fd whose number another test
    // reuses must not look like the same file still open.
    mock.on(OpKind::Open, |_| {
        Reply::Fd(tempfile::tempfile().unwrap().into())
    });
    mock.on(OpKind::Close, |_| Reply::Value(0));
    let mut ring = Ring::mock(mock);
    let read = OpenOptions::new().read(true);
    ring.open("/first", &read, Ctx::new(keep_fd));
    ring.open("/second", &read, Ctx::new(keep_fd));
    // A completion nobody looks at drops its fd: not a leak.
    ring.open("/unseen", &read, Ctx::none());
    let mut state = Opened::default();
    ring.run(&mut state, RunMode::UntilDone).unwrap();
    let mut open: Vec<RawFd> = state.fds.iter().map(AsRawFd::as_raw_fd).collect();
    open.sort();
    let mut reported = ring.mock_backend().unwrap().open_fds();
    reported.sort();
    assert_eq!(reported, open, "the two fds kept and not closed");

    // One closed through the ring, one dropped: nothing left open.
    let first = state.fds.remove(0);
    let still_open = state.fds[0].as_raw_fd();
    ring.close(first, Ctx::new(keep_fd));
    ring.run(&mut state, RunMode::UntilDone).unwrap();
    assert_eq!(ring.mock_backend().unwrap().open_fds(), [still_open]);
    state.fds.clear();
    assert_eq!(ring.mock_backend().unwrap().open_fds(), Vec::<RawFd>::new());
}

/// A scripted direct socket and open are ring fds the ring closes, and
/// `open_fds` reports them until then; the open's script sees its path.
#[test]
fn direct_sockets_and_opens_on_the_mock_are_ring_fds() {
    let _alone = apart_from_other_tests();
    let mut mock = Mock::new();
    mock.push(
        OpKind::SocketDirect,
        Reply::Fd(tempfile::tempfile().unwrap().into()),
    );
    mock.on(OpKind::Close, |_| Reply::Value(0));
    let opened = Rc::new(RefCell::new(Vec::new()));
    let record = opened.clone();
    mock.on(OpKind::OpenDirect, move |op| {
        record.borrow_mut().push(op.path().unwrap().to_path_buf());
        Reply::Fd(tempfile::tempfile().unwrap().into())
    });
    let mut ring = Ring::mock(mock);
    ring.socket_direct(Domain::IPV4, Type::STREAM, None, Ctx::new(collect));
    ring.open_direct(
        "/some/file",
        &OpenOptions::new().read(true),
        Ctx::new(collect),
    );
    let mut got = Vec::new();
    ring.run(&mut got, RunMode::UntilDone).unwrap();
    let fds: Vec<_> = got
        .drain(..)
        .map(|(c, _)| match c.outcome {
            Outcome::SocketDirect(Ok(fd)) | Outcome::OpenDirect(Ok(fd)) => fd,
            other => panic!("expected a ring fd, got {other:?}"),
        })
        .collect();
    assert_eq!(*opened.borrow(), [std::path::PathBuf::from("/some/file")]);
    let mut raws: Vec<RawFd> = fds
        .iter()
        .map(|&fd| ring.fd(fd).unwrap().as_raw_fd())
        .collect();
    let mut open = ring.mock_backend().unwrap().open_fds();
    raws.sort_unstable();
    open.sort_unstable();
    assert_eq!(open, raws);
    for fd in fds {
        ring.close(fd, Ctx::new(collect));
    }
    ring.run(&mut got, RunMode::UntilDone).unwrap();
    assert_eq!(ring.ring_fds(), 0);
    assert_eq!(ring.mock_backend().unwrap().open_fds(), Vec::<RawFd>::new());
}

/// Connections a scripted direct accept hands to the ring are ring fds:
/// scripts see their numbers, `open_fds` reports them until the ring
/// closes them, and a closed handle fails with `EBADF` whatever the script
/// says.
#[test]
fn ring_fds_on_the_mock() {
    let _alone = apart_from_other_tests();
    let mut mock = Mock::new();
    mock.push(
        OpKind::AcceptDirect,
        Reply::Fd(tempfile::tempfile().unwrap().into()),
    );
    let sent_on = Rc::new(RefCell::new(Vec::new()));
    let record = sent_on.clone();
    mock.on(OpKind::Send, move |op| {
        record.borrow_mut().push(op.fd().expect("a send has an fd"));
        Reply::Value(op.data().len() as u32)
    });
    mock.on(OpKind::Close, |_| Reply::Value(0));
    let mut ring = Ring::mock(mock);
    let listener = any_fd();
    ring.accept_multishot_direct(&listener, Ctx::new(collect));
    let mut got = Vec::new();
    ring.run(&mut got, RunMode::UntilDone).unwrap();
    let conn = match got.remove(0).0.outcome {
        Outcome::AcceptDirect(Ok(fd)) => fd,
        other => panic!("expected a ring fd, got {other:?}"),
    };
    let raw = ring.fd(conn).unwrap().as_raw_fd();
    assert_eq!(ring.mock_backend().unwrap().open_fds(), [raw]);

    ring.send(conn, &b"hello"[..], Ctx::new(collect));
    ring.run(&mut got, RunMode::UntilDone).unwrap();
    assert_eq!(*sent_on.borrow(), [raw], "the script saw the fd's number");

    ring.close(conn, Ctx::new(collect));
    ring.send(conn, &b"closed"[..], Ctx::new(collect));
    got.clear();
    ring.run(&mut got, RunMode::UntilDone).unwrap();
    let (send, _) = got.iter().find(|(c, _)| c.op() == OpKind::Send).unwrap();
    match &send.outcome {
        Outcome::Send(Err(e), _) => assert_eq!(e.raw_os_error(), Some(libc::EBADF)),
        other => panic!("expected EBADF, got {other:?}"),
    }
    assert_eq!(
        sent_on.borrow().len(),
        1,
        "the stale send never reached the script"
    );
    assert_eq!(ring.mock_backend().unwrap().open_fds(), Vec::<RawFd>::new());
    assert_eq!(ring.ring_fds(), 0);
}

// -- fds in replies --------------------------------------------------------------

/// `file` is still open and still the file that holds `contents`.
fn assert_holds(file: &mut File, contents: &[u8]) {
    file.rewind().expect("the file is still open");
    let mut read = Vec::new();
    file.read_to_end(&mut read).expect("the file is still open");
    assert_eq!(read, contents, "the file is still the same file");
}

/// Whether every write end of the pipe `reader` reads from is closed (it
/// never blocks).
fn writer_closed(reader: &impl AsFd) -> bool {
    let mut pfd = libc::pollfd {
        fd: reader.as_fd().as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: `pfd` is one valid pollfd, and a zero timeout never blocks.
    let n = unsafe { libc::poll(&mut pfd, 1, 0) };
    assert!(n >= 0, "poll: {}", io::Error::last_os_error());
    pfd.revents & libc::POLLHUP != 0
}

fn later(reply: Reply) -> Reply {
    Reply::After(Duration::from_secs(1), Box::new(reply))
}

/// A scripted number for an operation that makes an fd would become an fd
/// the completion owns and closes: some other file's. It is an
/// `InvalidInput` error instead, for every such operation, and the file
/// behind the number stays open.
#[test]
fn a_value_reply_cannot_stand_for_an_fd() {
    let _alone = apart_from_other_tests();
    let mut file = temp_file(b"the test's own file");
    let number = file.as_raw_fd() as u32;
    let mut mock = Mock::new();
    let kinds = [
        OpKind::Open,
        OpKind::OpenDirect,
        OpKind::Accept,
        OpKind::AcceptMulti,
        OpKind::AcceptDirect,
        OpKind::Socket,
        OpKind::SocketDirect,
    ];
    for kind in kinds {
        mock.push(kind, Reply::Value(number));
    }
    let mut ring = Ring::mock(mock);
    let listener = any_fd();
    let read = OpenOptions::new().read(true);
    ring.open("/a/file", &read, Ctx::new(collect));
    ring.open_direct("/a/file", &read, Ctx::new(collect));
    ring.accept(&listener, Ctx::new(collect));
    ring.accept_multishot(&listener, Ctx::new(collect));
    ring.accept_multishot_direct(&listener, Ctx::new(collect));
    ring.socket(Domain::IPV4, Type::STREAM, None, Ctx::new(collect));
    ring.socket_direct(Domain::IPV4, Type::STREAM, None, Ctx::new(collect));
    let mut got = Vec::new();
    ring.run(&mut got, RunMode::UntilDone).unwrap();
    let mut failed: Vec<OpKind> = got.iter().map(|(c, _)| c.op()).collect();
    for (c, _) in &got {
        let err = match &c.outcome {
            Outcome::Open(Err(e))
            | Outcome::OpenDirect(Err(e))
            | Outcome::Accept(Err(e))
            | Outcome::AcceptMulti(Err(e))
            | Outcome::AcceptDirect(Err(e))
            | Outcome::Socket(Err(e))
            | Outcome::SocketDirect(Err(e)) => e,
            other => panic!("expected an error, got {other:?}"),
        };
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
        assert!(err.to_string().contains("cannot stand for an fd"), "{err}");
    }
    failed.sort_by_key(|k| format!("{k:?}"));
    let mut expected = kinds.to_vec();
    expected.sort_by_key(|k| format!("{k:?}"));
    assert_eq!(failed, expected, "each operation failed once");
    drop(got);
    assert_holds(&mut file, b"the test's own file");
    assert_eq!(ring.ring_fds(), 0);
    assert_eq!(ring.mock_backend().unwrap().open_fds(), Vec::<RawFd>::new());
    assert_eq!(ring.live_tasks(), 0);
}

/// A delayed fd reply whose operation is cancelled first is closed: the fd
/// the mock was given, and no other file the test opened meanwhile.
#[test]
#[cfg_attr(miri, ignore = "polls a pipe to see it closed: needs the kernel")]
fn a_cancelled_delayed_fd_reply_closes_the_mocks_fd_and_nothing_else() {
    let _alone = apart_from_other_tests();
    let (reader, writer) = io::pipe().unwrap();
    let (direct_reader, direct_writer) = io::pipe().unwrap();
    let mut mock = Mock::new();
    mock.push(OpKind::Accept, later(Reply::Fd(writer.into())));
    mock.push(OpKind::AcceptDirect, later(Reply::Fd(direct_writer.into())));
    let mut ring = Ring::mock(mock);
    let listener = any_fd();
    let accept = ring.accept(&listener, Ctx::new(collect));
    let direct = ring.accept_multishot_direct(&listener, Ctx::new(collect));
    let mut mine = temp_file(b"opened meanwhile");
    assert!(!writer_closed(&reader), "the mock holds the reply's fd");
    ring.cancel(accept, Ctx::new(collect));
    ring.cancel(direct, Ctx::new(collect));
    let mut got = Vec::new();
    ring.run(&mut got, RunMode::UntilDone).unwrap();
    assert_eq!(got.len(), 4);
    for (c, _) in &got {
        match &c.outcome {
            Outcome::Accept(Err(e)) | Outcome::AcceptDirect(Err(e)) => {
                assert!(is_canceled(e), "{e}")
            }
            Outcome::Cancel(Ok(())) => {}
            other => panic!("expected a cancelled accept, got {other:?}"),
        }
    }
    assert!(writer_closed(&reader), "the accept's fd is closed");
    assert!(
        writer_closed(&direct_reader),
        "the direct accept's fd is closed"
    );
    assert_holds(&mut mine, b"opened meanwhile");
    assert_eq!(ring.ring_fds(), 0);
    assert_eq!(ring.mock_backend().unwrap().open_fds(), Vec::<RawFd>::new());
}

/// A delayed count that happens to be the number of an fd the mock handed
/// out is only a count: cancelling it closes nothing.
#[test]
fn a_cancelled_delayed_value_reply_closes_nothing() {
    let _alone = apart_from_other_tests();
    let mut mock = Mock::new();
    mock.push(OpKind::Open, Reply::Fd(temp_file(b"handed out").into()));
    let mut ring = Ring::mock(mock);
    ring.open("/a/file", &OpenOptions::new().read(true), Ctx::new(collect));
    let mut got = Vec::new();
    ring.run(&mut got, RunMode::UntilDone).unwrap();
    let mut handed = match got.remove(0).0.outcome {
        Outcome::Open(Ok(fd)) => File::from(fd),
        other => panic!("expected an fd, got {other:?}"),
    };
    let number = handed.as_raw_fd();
    let mock = ring.mock_backend().unwrap();
    assert_eq!(mock.open_fds(), [number]);
    mock.push(OpKind::Read, later(Reply::Value(number as u32)));
    let fd = any_fd();
    let read = ring.read(
        &fd,
        Vec::with_capacity(4),
        ouro::Offset::Current,
        Ctx::new(collect),
    );
    ring.cancel(read, Ctx::new(collect));
    ring.run(&mut got, RunMode::UntilDone).unwrap();
    let (read, _) = got.iter().find(|(c, _)| c.op() == OpKind::Read).unwrap();
    assert!(
        matches!(&read.outcome, Outcome::Read(Err(e), _) if is_canceled(e)),
        "{:?}",
        read.outcome
    );
    assert_holds(&mut handed, b"handed out");
    assert_eq!(ring.mock_backend().unwrap().open_fds(), [number]);
}

#[test]
fn a_drain_waits_for_a_slow_reply_and_cuts_a_pending_one_at_its_deadline_in_virtual_time() {
    let _alone = apart_from_other_tests();
    let mut mock = Mock::new();
    mock.push(
        OpKind::Recv,
        Reply::After(Duration::from_secs(2), Box::new(Reply::Value(0))),
    );
    mock.push(OpKind::Recv, Reply::Pending);
    let mut ring = Ring::mock(mock);
    let start = ring.now();
    let fd = any_fd();
    let mut got = Vec::new();

    ring.recv(&fd, Vec::with_capacity(8), Ctx::new(collect));
    ring.drain(start + Duration::from_secs(10));
    ring.run(&mut got, RunMode::UntilDone).unwrap();
    assert!(
        matches!(got[0].0.outcome, Outcome::Recv(Ok(0), _)),
        "{got:?}"
    );
    assert_eq!(got[0].1 - start, Duration::from_secs(2), "it came when due");
    assert_eq!(
        ring.now() - start,
        Duration::from_secs(2),
        "no wait for the deadline"
    );

    ring.recv(&fd, Vec::with_capacity(8), Ctx::new(collect));
    ring.drain(start + Duration::from_secs(7));
    let err = ring.run(&mut got, RunMode::UntilDone).unwrap_err();
    assert!(is_deadline(&err), "{err}");
    let (c, at) = &got[1];
    let cut = match &c.outcome {
        Outcome::Recv(Err(err), _) => err,
        other => panic!("expected a cancelled recv, got {other:?}"),
    };
    assert!(is_canceled(cut), "{cut}");
    assert_eq!(
        *at - start,
        Duration::from_secs(7),
        "cut at the drain's deadline"
    );
}
