//! What the readiness backend must do exactly as io_uring does, checked on
//! both backends with real fds: waiting instead of `EAGAIN` on blocking
//! fds (whose flags stay as they were), file offsets, accept and connect,
//! poll masks, cancellation and deadlines of waiting operations, several
//! operations on one fd, and the file thread pool.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::time::Duration;

use ouro::fs::OpenOptions;
use ouro::{BackendKind, Completion, Ctx, Offset, OpKind, Outcome, PollMask, Ring, RunMode};

#[macro_use]
#[path = "common/mod.rs"]
mod common;

use common::fds::{identity, is_cloexec, pipe_files};
use common::watchdog::AbortAfter;

/// One `#[test]` per backend for each test function.
macro_rules! backend_tests {
    ($($name:ident),+ $(,)?) => {
        $(per_backend!(crate::common::backends::unless_skipped, $name);)+
    };
}

backend_tests!(
    pipe_read_waits_on_a_blocking_fd,
    recv_waits_on_a_blocking_socket,
    file_offsets_current_and_at,
    offset_on_a_pipe_is_ignored,
    vectored_file_io,
    accept_gives_cloexec_fd_and_peer,
    connect_completes_and_refusal_is_reported,
    poll_reports_the_ready_mask,
    cancel_of_a_waiting_recv_is_immediate,
    deadline_of_a_waiting_read,
    recv_and_send_wait_on_one_fd,
    socket_and_close,
    splice_between_pipe_and_socket,
    dropping_a_ring_with_waiting_ops,
    open_stat_fsync_on_the_pool,
    a_reused_fd_number_is_a_new_file,
);

type State = Vec<Completion>;

fn record(done: &mut State, _: &mut Ring<State>, c: Completion) -> io::Result<()> {
    done.push(c);
    Ok(())
}

fn ring(kind: BackendKind) -> Ring<State> {
    Ring::builder()
        .entries(64)
        .backend(kind)
        .build()
        .expect("ring")
}

/// Turns a hang into a failure.
const WATCHDOG: Duration = Duration::from_secs(60);

fn run(ring: &mut Ring<State>, done: &mut State) {
    let _watchdog = AbortAfter::new(WATCHDOG);
    ring.run(done, RunMode::UntilDone).expect("run");
}

/// Runs until a 20 ms timer fires, then checks that only the timer is done:
/// the operations in flight waited rather than failing.
fn runs_only_a_timer(ring: &mut Ring<State>, done: &mut State) {
    let _watchdog = AbortAfter::new(WATCHDOG);
    ring.timer(Duration::from_millis(20), Ctx::new(record));
    while !done.iter().any(|c| c.op() == OpKind::Timer) {
        ring.run(done, RunMode::Once).expect("run");
    }
    let ops: Vec<OpKind> = done.iter().map(Completion::op).collect();
    assert_eq!(
        ops,
        [OpKind::Timer],
        "operations finished instead of waiting"
    );
    done.clear();
}

fn is_nonblocking(fd: impl AsFd) -> bool {
    // SAFETY: F_GETFL on a valid fd.
    let flags = unsafe { libc::fcntl(fd.as_fd().as_raw_fd(), libc::F_GETFL) };
    assert!(flags >= 0);
    flags & libc::O_NONBLOCK != 0
}

fn os_error<T: std::fmt::Debug>(res: &io::Result<T>) -> Option<i32> {
    res.as_ref().err().and_then(io::Error::raw_os_error)
}

fn pipe_read_waits_on_a_blocking_fd(kind: BackendKind) {
    let (reader, mut writer) = pipe_files();
    let reader = Rc::new(reader);
    let (mut ring, mut done) = (ring(kind), State::new());
    ring.read(
        &reader,
        Vec::with_capacity(16),
        Offset::Current,
        Ctx::new(record),
    );
    runs_only_a_timer(&mut ring, &mut done);
    writer.write_all(b"late data").unwrap();
    run(&mut ring, &mut done);
    match &done[0].outcome {
        Outcome::Read(Ok(9), buf) => assert_eq!(&buf[..], b"late data"),
        other => panic!("unexpected {other:?}"),
    }
    assert!(!is_nonblocking(&reader), "the reader's flags were changed");
}

fn recv_waits_on_a_blocking_socket(kind: BackendKind) {
    let (ours, mut theirs) = UnixStream::pair().unwrap();
    let ours = Rc::new(ours);
    let (mut ring, mut done) = (ring(kind), State::new());
    ring.recv(&ours, Vec::with_capacity(64), Ctx::new(record));
    runs_only_a_timer(&mut ring, &mut done);
    theirs.write_all(b"hello").unwrap();
    run(&mut ring, &mut done);
    match &done[0].outcome {
        Outcome::Recv(Ok(5), buf) => assert_eq!(&buf[..], b"hello"),
        other => panic!("unexpected {other:?}"),
    }
    drop(theirs);
    ring.recv(&ours, Vec::with_capacity(64), Ctx::new(record));
    run(&mut ring, &mut done);
    assert!(
        matches!(done[1].outcome, Outcome::Recv(Ok(0), _)),
        "{done:?}"
    );
    assert!(!is_nonblocking(&ours));
}

fn file_offsets_current_and_at(kind: BackendKind) {
    let mut file = tempfile::tempfile().unwrap();
    file.write_all(b"hello world").unwrap();
    let file = Rc::new(file);
    // The position is now 11; `At` reads leave it there.
    let (mut ring, mut done) = (ring(kind), State::new());
    ring.read(
        &file,
        Vec::with_capacity(5),
        Offset::At(6),
        Ctx::new(record),
    );
    run(&mut ring, &mut done);
    ring.read(
        &file,
        Vec::with_capacity(5),
        Offset::Current,
        Ctx::new(record),
    );
    run(&mut ring, &mut done);
    ring.write(&file, &b"HELLO"[..], Offset::At(0), Ctx::new(record));
    run(&mut ring, &mut done);
    ring.write(&file, &b"!"[..], Offset::Current, Ctx::new(record));
    run(&mut ring, &mut done);
    match &done[0].outcome {
        Outcome::Read(Ok(5), buf) => assert_eq!(&buf[..], b"world"),
        other => panic!("unexpected {other:?}"),
    }
    assert!(
        matches!(done[1].outcome, Outcome::Read(Ok(0), _)),
        "{done:?}"
    );
    assert!(matches!(done[2].outcome, Outcome::Write(Ok(5), _)));
    assert!(matches!(done[3].outcome, Outcome::Write(Ok(1), _)));
    let mut all = String::new();
    let mut again = file.try_clone().unwrap();
    io::Seek::seek(&mut again, io::SeekFrom::Start(0)).unwrap();
    again.read_to_string(&mut all).unwrap();
    assert_eq!(all, "HELLO world!");
}

fn offset_on_a_pipe_is_ignored(kind: BackendKind) {
    let (reader, mut writer) = pipe_files();
    writer.write_all(b"abc").unwrap();
    let (reader, writer) = (Rc::new(reader), Rc::new(writer));
    let (mut ring, mut done) = (ring(kind), State::new());
    ring.read(
        &reader,
        Vec::with_capacity(8),
        Offset::At(1),
        Ctx::new(record),
    );
    ring.write(&writer, &b"xyz"[..], Offset::At(7), Ctx::new(record));
    run(&mut ring, &mut done);
    match &done[0].outcome {
        Outcome::Read(Ok(3), buf) => assert_eq!(&buf[..], b"abc"),
        other => panic!("unexpected {other:?}"),
    }
    assert!(
        matches!(done[1].outcome, Outcome::Write(Ok(3), _)),
        "{done:?}"
    );
}

fn vectored_file_io(kind: BackendKind) {
    let file = Rc::new(tempfile::tempfile().unwrap());
    let (mut ring, mut done) = (ring(kind), State::new());
    let parts: Vec<&'static [u8]> = vec![b"one ", b"two ", b"three"];
    ring.writev(&file, parts, Offset::At(0), Ctx::new(record));
    run(&mut ring, &mut done);
    let bufs = vec![Vec::with_capacity(4), Vec::with_capacity(20)];
    ring.readv(&file, bufs, Offset::At(0), Ctx::new(record));
    run(&mut ring, &mut done);
    assert!(
        matches!(done[0].outcome, Outcome::Writev(Ok(13), _)),
        "{done:?}"
    );
    let Outcome::Readv(Ok(13), bufs) = done.pop().unwrap().outcome else {
        panic!("no readv");
    };
    let bufs: Vec<Vec<u8>> = bufs.downcast().unwrap();
    assert_eq!(bufs, [b"one ".to_vec(), b"two three".to_vec()]);
}

fn accept_gives_cloexec_fd_and_peer(kind: BackendKind) {
    // A blocking listener, as std makes it.
    let listener = Rc::new(TcpListener::bind("127.0.0.1:0").unwrap());
    let addr = listener.local_addr().unwrap();
    let (mut ring, mut done) = (ring(kind), State::new());
    ring.accept(&listener, Ctx::new(record));
    runs_only_a_timer(&mut ring, &mut done);
    let client = TcpStream::connect(addr).unwrap();
    run(&mut ring, &mut done);
    let Outcome::Accept(Ok((fd, peer))) = &done[0].outcome else {
        panic!("unexpected {done:?}");
    };
    assert!(is_cloexec(fd));
    assert_eq!(peer.as_socket(), Some(client.local_addr().unwrap()));
    // Blocking on io_uring; the readiness backend makes the sockets it
    // accepts non-blocking, so that nothing it does with them later can
    // block its loop.
    assert_eq!(is_nonblocking(fd), kind == BackendKind::Poll);
    let mut server_side = TcpStream::from(fd.try_clone().unwrap());
    (&client).write_all(b"ping").unwrap();
    let mut got = [0; 4];
    server_side.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"ping");
}

fn connect_completes_and_refusal_is_reported(kind: BackendKind) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let closed = {
        let spare = TcpListener::bind("127.0.0.1:0").unwrap();
        spare.local_addr().unwrap()
    };
    let (mut ring, mut done) = (ring(kind), State::new());
    // Blocking sockets, as socket2 makes them.
    let good: OwnedFd = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
        .unwrap()
        .into();
    let bad: OwnedFd = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
        .unwrap()
        .into();
    let (good, bad) = (Rc::new(good), Rc::new(bad));
    ring.connect(&good, addr, Ctx::new(record).key(1));
    ring.connect(&bad, closed, Ctx::new(record).key(2));
    run(&mut ring, &mut done);
    done.sort_by_key(Completion::key);
    assert!(
        matches!(done[0].outcome, Outcome::Connect(Ok(()))),
        "{done:?}"
    );
    match &done[1].outcome {
        Outcome::Connect(res) => assert_eq!(os_error(res), Some(libc::ECONNREFUSED)),
        other => panic!("unexpected {other:?}"),
    }
    assert!(
        !is_nonblocking(&good),
        "connect left the socket non-blocking"
    );
    let (mut accepted, _) = listener.accept().unwrap();
    // The connect is over: its clone of the socket is gone.
    TcpStream::from(Rc::try_unwrap(good).unwrap())
        .write_all(b"hi")
        .unwrap();
    let mut got = [0; 2];
    accepted.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"hi");
}

fn poll_reports_the_ready_mask(kind: BackendKind) {
    let (reader, writer) = pipe_files();
    let (reader, writer) = (Rc::new(reader), Rc::new(writer));
    let (mut ring, mut done) = (ring(kind), State::new());
    ring.poll(&writer, PollMask::WRITABLE, Ctx::new(record));
    run(&mut ring, &mut done);
    assert!(
        matches!(done[0].outcome, Outcome::Poll(Ok(m)) if m == PollMask::WRITABLE),
        "{done:?}"
    );
    done.clear();
    ring.poll(&reader, PollMask::READABLE, Ctx::new(record));
    runs_only_a_timer(&mut ring, &mut done);
    (&*writer).write_all(b"x").unwrap();
    run(&mut ring, &mut done);
    assert!(
        matches!(done[0].outcome, Outcome::Poll(Ok(m)) if m == PollMask::READABLE),
        "{done:?}"
    );
    done.clear();
    drop(writer);
    let mut byte = [0; 1];
    (&*reader).read_exact(&mut byte).unwrap();
    ring.poll(&reader, PollMask::READABLE, Ctx::new(record));
    run(&mut ring, &mut done);
    match &done[0].outcome {
        Outcome::Poll(Ok(mask)) => assert_eq!(*mask, PollMask::HANGUP),
        other => panic!("unexpected {other:?}"),
    }
}

fn cancel_of_a_waiting_recv_is_immediate(kind: BackendKind) {
    let (ours, _theirs) = UnixStream::pair().unwrap();
    let ours = Rc::new(ours);
    let (mut ring, mut done) = (ring(kind), State::new());
    let recv = ring.recv(&ours, Vec::with_capacity(8), Ctx::new(record));
    runs_only_a_timer(&mut ring, &mut done);
    ring.cancel(recv, Ctx::new(record));
    run(&mut ring, &mut done);
    match &done[0].outcome {
        Outcome::Recv(res, _) => assert_eq!(os_error(res), Some(libc::ECANCELED)),
        other => panic!("unexpected {other:?}"),
    }
    assert!(
        matches!(done[1].outcome, Outcome::Cancel(Ok(()))),
        "{done:?}"
    );
}

fn deadline_of_a_waiting_read(kind: BackendKind) {
    let (reader, _writer) = pipe_files();
    let reader = Rc::new(reader);
    let (mut ring, mut done) = (ring(kind), State::new());
    let read = ring.read(
        &reader,
        Vec::with_capacity(8),
        Offset::Current,
        Ctx::new(record),
    );
    let at = ring.now() + Duration::from_millis(10);
    ring.set_deadline(read, at).unwrap();
    run(&mut ring, &mut done);
    match &done[0].outcome {
        Outcome::Read(Err(err), _) => assert!(ouro::is_deadline(err), "{err}"),
        other => panic!("unexpected {other:?}"),
    }
}

fn recv_and_send_wait_on_one_fd(kind: BackendKind) {
    let (ours, theirs) = UnixStream::pair().unwrap();
    let (mut ring, mut done) = (ring(kind), State::new());
    // Fill the socket so the send must wait too.
    socket2::SockRef::from(&ours)
        .set_send_buffer_size(4096)
        .unwrap();
    ours.set_nonblocking(true).unwrap();
    let mut filled = 0;
    while let Ok(n) = (&ours).write(&[7; 4096]) {
        filled += n;
    }
    ours.set_nonblocking(false).unwrap();
    let ours = Rc::new(ours);
    ring.recv(&ours, Vec::with_capacity(16), Ctx::new(record).key(1));
    ring.send(&ours, vec![9u8; 100], Ctx::new(record).key(2));
    runs_only_a_timer(&mut ring, &mut done);
    // Drain what was queued, and answer.
    let mut sink = vec![0; filled];
    (&theirs).read_exact(&mut sink).unwrap();
    (&theirs).write_all(b"answer").unwrap();
    run(&mut ring, &mut done);
    done.sort_by_key(Completion::key);
    match &done[0].outcome {
        Outcome::Recv(Ok(6), buf) => assert_eq!(&buf[..], b"answer"),
        other => panic!("unexpected {other:?}"),
    }
    assert!(
        matches!(done[1].outcome, Outcome::Send(Ok(100), _)),
        "{done:?}"
    );
}

fn socket_and_close(kind: BackendKind) {
    let (mut ring, mut done) = (ring(kind), State::new());
    ring.socket(
        ouro::net::Domain::IPV4,
        ouro::net::Type::DGRAM,
        None,
        Ctx::new(record),
    );
    run(&mut ring, &mut done);
    let Outcome::Socket(Ok(fd)) = done.remove(0).outcome else {
        panic!("no socket");
    };
    assert!(is_cloexec(&fd));
    let raw = fd.as_raw_fd();
    let socket = identity(raw);
    ring.close(fd, Ctx::new(record));
    run(&mut ring, &mut done);
    assert!(
        matches!(done[0].outcome, Outcome::Close(Ok(()))),
        "{done:?}"
    );
    // The number may already be reused by a test running alongside; the
    // socket itself must be gone.
    assert_ne!(identity(raw), socket);
}

fn splice_between_pipe_and_socket(kind: BackendKind) {
    let (reader, mut writer) = pipe_files();
    let (ours, theirs) = UnixStream::pair().unwrap();
    let (reader, ours) = (Rc::new(reader), Rc::new(ours));
    let (mut ring, mut done) = (ring(kind), State::new());
    ring.splice(&reader, None, &ours, None, 64, Ctx::new(record));
    runs_only_a_timer(&mut ring, &mut done);
    writer.write_all(b"through a pipe").unwrap();
    run(&mut ring, &mut done);
    assert!(
        matches!(done[0].outcome, Outcome::Splice(Ok(14))),
        "{done:?}"
    );
    let mut got = [0; 14];
    (&theirs).read_exact(&mut got).unwrap();
    assert_eq!(&got, b"through a pipe");
}

fn dropping_a_ring_with_waiting_ops(kind: BackendKind) {
    let (ours, _theirs) = UnixStream::pair().unwrap();
    let (reader, _writer) = pipe_files();
    let (ours, reader) = (Rc::new(ours), Rc::new(reader));
    let _watchdog = AbortAfter::new(WATCHDOG);
    let mut ring = ring(kind);
    let mut done = State::new();
    ring.recv(&ours, Vec::with_capacity(8), Ctx::new(record));
    ring.read(
        &reader,
        Vec::with_capacity(8),
        Offset::Current,
        Ctx::new(record),
    );
    ring.timer(Duration::from_millis(5), Ctx::new(record));
    ring.run(&mut done, RunMode::Once).unwrap();
    assert_eq!(ring.live_tasks(), 2);
    drop(ring);
    assert_eq!(done.len(), 1, "callbacks ran during drop");
}

fn open_stat_fsync_on_the_pool(kind: BackendKind) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f");
    let (mut ring, mut done) = (ring(kind), State::new());
    let create = OpenOptions::new().write(true).create_new(true);
    ring.open(&path, &create, Ctx::new(record));
    run(&mut ring, &mut done);
    let Outcome::Open(Ok(fd)) = done.remove(0).outcome else {
        panic!("open failed");
    };
    assert!(is_cloexec(&fd));
    let fd = Rc::new(fd);
    ring.write(&fd, &b"0123456789"[..], Offset::At(0), Ctx::new(record));
    run(&mut ring, &mut done);
    ring.fsync(&fd, Ctx::new(record).key(1));
    ring.stat(&path, Ctx::new(record).key(2));
    ring.open(&path, &create, Ctx::new(record).key(3));
    ring.stat(dir.path().join("missing"), Ctx::new(record).key(4));
    run(&mut ring, &mut done);
    // Independent operations finish in any order.
    done.sort_by_key(Completion::key);
    let kinds: Vec<OpKind> = done.iter().map(Completion::op).collect();
    assert_eq!(
        kinds,
        [
            OpKind::Write,
            OpKind::Fsync,
            OpKind::Stat,
            OpKind::Open,
            OpKind::Stat
        ]
    );
    assert!(matches!(done[1].outcome, Outcome::Fsync(Ok(()))));
    match &done[2].outcome {
        Outcome::Stat(Ok(meta)) => {
            assert!(meta.is_file());
            assert_eq!(meta.size, 10);
        }
        other => panic!("unexpected {other:?}"),
    }
    match &done[3].outcome {
        Outcome::Open(res) => assert_eq!(os_error(res), Some(libc::EEXIST)),
        other => panic!("unexpected {other:?}"),
    }
    match &done[4].outcome {
        Outcome::Stat(res) => assert_eq!(os_error(res), Some(libc::ENOENT)),
        other => panic!("unexpected {other:?}"),
    }
}

/// The pool thread (if any) blocked in `openat`, from `/proc`.
#[cfg(target_os = "linux")]
fn pool_thread_in_openat() -> bool {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return false;
    };
    tasks.flatten().any(|task| {
        let read = |name: &str| std::fs::read_to_string(task.path().join(name)).unwrap_or_default();
        read("comm").trim() == "ouro-pool"
            && read("syscall").split(' ').next() == Some(&libc::SYS_openat.to_string())
    })
}

/// A pool job that has begun cannot be taken back: it finishes with its
/// own result and the cancel says so (`EALREADY`). io_uring, unlike this,
/// interrupts a worker blocked in such an open.
#[cfg(target_os = "linux")]
#[test]
fn cancelled_pool_job_that_is_running_finishes_with_its_own_result() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    let c_path = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
    let (mut ring, mut done) = (ring(BackendKind::Poll), State::new());
    // An open that may create (so never tried without blocking) blocks on
    // a FIFO until a reader comes.
    let create = OpenOptions::new().write(true).create(true);
    let open = ring.open(&fifo, &create, Ctx::new(record));
    let _watchdog = AbortAfter::new(WATCHDOG);
    ring.timer(Duration::from_millis(1), Ctx::new(record));
    ring.run(&mut done, RunMode::Once).unwrap();
    while !pool_thread_in_openat() {
        std::thread::sleep(Duration::from_millis(1));
    }
    ring.cancel(open, Ctx::new(record));
    let _reader = std::fs::OpenOptions::new().read(true).open(&fifo).unwrap();
    run(&mut ring, &mut done);
    let ops: Vec<OpKind> = done.iter().map(Completion::op).collect();
    assert_eq!(ops, [OpKind::Timer, OpKind::Open, OpKind::Cancel]);
    assert!(matches!(done[1].outcome, Outcome::Open(Ok(_))), "{done:?}");
    match &done[2].outcome {
        Outcome::Cancel(res) => assert_eq!(os_error(res), Some(libc::EALREADY)),
        other => panic!("unexpected {other:?}"),
    }
}

/// The readiness backend remembers fds (registrations, whether reads found
/// them empty); an fd number that now names another file must still work.
fn a_reused_fd_number_is_a_new_file(kind: BackendKind) {
    let (ours, theirs) = UnixStream::pair().unwrap();
    let ours = Rc::new(ours);
    let (mut ring, mut done) = (ring(kind), State::new());
    ring.recv(&ours, Vec::with_capacity(8), Ctx::new(record));
    runs_only_a_timer(&mut ring, &mut done);
    (&theirs).write_all(b"one").unwrap();
    run(&mut ring, &mut done);
    assert!(
        matches!(done[0].outcome, Outcome::Recv(Ok(3), _)),
        "{done:?}"
    );
    done.clear();
    // Atomically make `ours`' number name another socket (closing the old
    // one, which takes it out of epoll); data is already waiting there.
    let (other, other_peer) = UnixStream::pair().unwrap();
    (&other_peer).write_all(b"two").unwrap();
    assert_eq!(Rc::strong_count(&ours), 1, "the first recv let go of it");
    // SAFETY: dup2 onto an fd we own (no operation holds it: the recv is
    // over); `ours` owns the number afterwards.
    assert!(unsafe { libc::dup2(other.as_raw_fd(), ours.as_raw_fd()) } >= 0);
    drop(other);
    ring.recv(&ours, Vec::with_capacity(8), Ctx::new(record));
    run(&mut ring, &mut done);
    match &done[0].outcome {
        Outcome::Recv(Ok(3), buf) => assert_eq!(&buf[..], b"two"),
        other => panic!("unexpected {other:?}"),
    }
    done.clear();
    ring.recv(&ours, Vec::with_capacity(8), Ctx::new(record));
    runs_only_a_timer(&mut ring, &mut done);
    (&other_peer).write_all(b"three").unwrap();
    run(&mut ring, &mut done);
    match &done[0].outcome {
        Outcome::Recv(Ok(5), buf) => assert_eq!(&buf[..], b"three"),
        other => panic!("unexpected {other:?}"),
    }
}
