//! What every test uses: running a test on a backend under a watchdog,
//! building rings, collecting completions, and making real fds.

use std::cell::Cell;
use std::fmt::Debug;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{PoisonError, RwLock};
use std::thread;
use std::time::Duration;

use ouro::{BackendKind, Completion, Ctx, IoBuf, IoBufMut, Outcome, Ring, RunMode, Task};

/// How long a test may take before it counts as hung. Generous: the
/// machines are shared; this only turns a hang into a failure.
const WATCHDOG: Duration = Duration::from_secs(120);

/// Held shared by every test, exclusively by those that count open fds.
static FD_COUNTING: RwLock<()> = RwLock::new(());

/// Runs `test` on `kind`, alongside other tests.
pub fn run(test: fn(BackendKind), kind: BackendKind) {
    let _shared = FD_COUNTING.read().unwrap_or_else(PoisonError::into_inner);
    run_on(test, kind);
}

/// Runs `test` on `kind` while no other test of this binary runs.
pub fn run_exclusive(test: fn(BackendKind), kind: BackendKind) {
    let _exclusive = FD_COUNTING.write().unwrap_or_else(PoisonError::into_inner);
    run_on(test, kind);
}

fn run_on(test: fn(BackendKind), kind: BackendKind) {
    if crate::backends::skipped(kind) {
        return;
    }
    watchdog(WATCHDOG, move || test(kind));
}

/// Runs `f` on its own thread and fails if it has not finished within
/// `limit`; a panic in `f` is passed on.
pub fn watchdog<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (finished, wait) = mpsc::channel::<()>();
    let name = thread::current().name().unwrap_or("test").to_string();
    let worker = thread::Builder::new()
        .name(name)
        .spawn(move || {
            // Dropped when `f` returns or unwinds: either ends the wait.
            let _finished = finished;
            f()
        })
        .expect("spawning the test thread");
    match wait.recv_timeout(limit) {
        Err(RecvTimeoutError::Timeout) => panic!("hung: not finished after {limit:?}"),
        Ok(()) | Err(RecvTimeoutError::Disconnected) => match worker.join() {
            Ok(value) => value,
            Err(panic) => std::panic::resume_unwind(panic),
        },
    }
}

/// A ring on `kind` with room for `entries` submissions.
pub fn ring<S>(kind: BackendKind, entries: u32) -> Ring<S> {
    Ring::builder()
        .backend(kind)
        .entries(entries)
        .build()
        .unwrap_or_else(|e| panic!("building a {kind:?} ring: {e}"))
}

/// The state of most tests: the completions, in delivery order.
pub type Got = Vec<Completion>;

/// Records a completion.
pub fn collect(got: &mut Got, _: &mut Ring<Got>, c: Completion) -> io::Result<()> {
    got.push(c);
    Ok(())
}

/// A context delivering to [`collect`], with `key`.
pub fn ctx(key: u64) -> Ctx<Got> {
    Ctx::new(collect).key(key)
}

/// Runs the ring until no task is left; every completion, in order.
pub fn run_all(ring: &mut Ring<Got>) -> Got {
    let mut got = Vec::new();
    ring.run(&mut got, RunMode::UntilDone).expect("run");
    assert_eq!(ring.live_tasks(), 0);
    got
}

/// Schedules one task, runs the ring until it is done, and returns its
/// outcome (checking that it was the only completion).
pub fn complete(
    ring: &mut Ring<Got>,
    schedule: impl FnOnce(&mut Ring<Got>, Ctx<Got>) -> Task,
) -> Outcome {
    schedule(ring, ctx(0));
    let mut got = run_all(ring);
    assert_eq!(got.len(), 1, "one task, one completion: {got:?}");
    let c = got.pop().unwrap();
    assert!(c.is_final());
    c.outcome
}

/// The OS error of a failed result.
pub fn os_error<T: Debug>(result: io::Result<T>) -> i32 {
    let err = result.expect_err("the operation should have failed");
    err.raw_os_error()
        .unwrap_or_else(|| panic!("not an OS error: {err}"))
}

/// The kind of a failed result that carries no OS error (bad input).
pub fn error_kind<T: Debug>(result: io::Result<T>) -> io::ErrorKind {
    let err = result.expect_err("the operation should have failed");
    assert_eq!(err.raw_os_error(), None, "{err}");
    err.kind()
}

/// A pipe: (read end, write end), close-on-exec.
pub fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two fds pipe2 writes.
    let res = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(res, 0, "pipe2: {}", io::Error::last_os_error());
    // SAFETY: pipe2 succeeded: both are new fds that nothing else owns.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

/// A connected pair of Unix stream sockets.
pub fn socket_pair() -> (OwnedFd, OwnedFd) {
    let (a, b) = socket2::Socket::pair(socket2::Domain::UNIX, socket2::Type::STREAM, None)
        .expect("socketpair");
    (a.into(), b.into())
}

/// The peer end of a socket pair, reading with a timeout (a hang becomes a
/// failure).
pub fn peer(fd: OwnedFd) -> UnixStream {
    let stream = UnixStream::from(fd);
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream
}

/// Whether the peer of `stream` has closed (it reads end of stream) —
/// without waiting if it has not.
pub fn peer_closed(stream: &UnixStream) -> bool {
    let mut byte = [0u8];
    // SAFETY: a one-byte receive into a live buffer, not waiting.
    let n = unsafe {
        libc::recv(
            stream.as_raw_fd(),
            byte.as_mut_ptr().cast(),
            1,
            libc::MSG_DONTWAIT | libc::MSG_PEEK,
        )
    };
    if n < 0 {
        assert_eq!(
            io::Error::last_os_error().raw_os_error(),
            Some(libc::EAGAIN),
            "peeking the peer"
        );
    }
    n == 0
}

/// A connected pair of loopback TCP sockets: (client, server side).
pub fn tcp_pair() -> (std::net::TcpStream, std::net::TcpStream) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).expect("connect");
    let (server, _) = listener.accept().expect("accept");
    (client, server)
}

/// An unnamed temporary file holding `bytes`, positioned at its start.
pub fn temp_file(bytes: &[u8]) -> File {
    use std::io::Seek;
    let mut file = tempfile::tempfile().expect("temporary file");
    file.write_all(bytes).expect("writing the temporary file");
    file.rewind().unwrap();
    file
}

/// The file position of `fd`.
pub fn position(fd: &impl AsRawFd) -> u64 {
    // SAFETY: lseek on a valid fd, moving nothing.
    let pos = unsafe { libc::lseek(fd.as_raw_fd(), 0, libc::SEEK_CUR) };
    assert!(pos >= 0, "lseek: {}", io::Error::last_os_error());
    pos as u64
}

/// An fd every I/O operation rejects with `EBADF`, as it would a closed
/// one: an `O_PATH` fd, which the kernel's fd lookup for I/O ignores.
///
/// A really closed fd number cannot be used soundly: `BorrowedFd` requires
/// an open fd, and in a test binary that runs tests on several threads the
/// number may be reused at any moment by another test's fd.
pub fn bad_fd() -> OwnedFd {
    File::options()
        .read(true)
        .custom_flags(libc::O_PATH)
        .open("/")
        .expect("opening / with O_PATH")
        .into()
}

/// Whether `fd` is close-on-exec.
pub fn is_cloexec(fd: &impl AsRawFd) -> bool {
    // SAFETY: F_GETFD on a valid fd only reads its flags.
    let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFD) };
    assert!(flags >= 0, "fcntl: {}", io::Error::last_os_error());
    flags & libc::FD_CLOEXEC != 0
}

/// How many fds the process has open.
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("listing /proc/self/fd")
        .count()
        // The listing itself holds one while it is read.
        - 1
}

/// A read buffer whose drop is counted.
pub struct Tracked {
    data: Vec<u8>,
    drops: Rc<Cell<u32>>,
}

impl Tracked {
    /// A buffer with room for `capacity` bytes, counting its drop in `drops`.
    pub fn new(capacity: usize, drops: &Rc<Cell<u32>>) -> Tracked {
        Tracked {
            data: Vec::with_capacity(capacity),
            drops: drops.clone(),
        }
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.drops.set(self.drops.get() + 1);
    }
}

// SAFETY: delegates to the Vec, whose heap block does not move with it and
// which nothing else reaches.
unsafe impl IoBuf for Tracked {
    fn stable_ptr(&self) -> *const u8 {
        self.data.stable_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.data.len()
    }
}

// SAFETY: delegates to the Vec's spare capacity.
unsafe impl IoBufMut for Tracked {
    fn spare_ptr(&mut self) -> *mut u8 {
        self.data.spare_ptr()
    }
    fn spare_len(&self) -> usize {
        self.data.spare_len()
    }
    unsafe fn advance(&mut self, n: usize) {
        // SAFETY: forwarded from the caller.
        unsafe { self.data.advance(n) }
    }
}

/// The slot a task handle names (its `Debug` form is `Task(slot#generation)`).
pub fn slot_of(task: Task) -> String {
    let text = format!("{task:?}");
    let slot = text
        .strip_prefix("Task(")
        .and_then(|rest| rest.split('#').next())
        .unwrap_or_else(|| panic!("unexpected Task debug form {text}"));
    slot.to_string()
}

/// Names `fd` for an operation by number only, for tests that keep the fd
/// open (in scope) until every task naming it has been delivered or the
/// ring has been dropped: the `UncheckedFd` contract.
pub fn unchecked(fd: &impl std::os::fd::AsFd) -> ouro::UncheckedFd {
    // SAFETY: every caller keeps `fd` alive (it is a local of the test,
    // dropped after the ring or after the tasks' final completions).
    unsafe { ouro::UncheckedFd::new(fd.as_fd()) }
}
