//! What every test uses: running a test on a backend under a watchdog,
//! building rings, collecting completions, and making real fds.

use std::cell::Cell;
use std::fmt::Debug;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::time::Duration;

use ouro::{BackendKind, Completion, Ctx, IoBuf, IoBufMut, Outcome, Ring, RunMode, Task};

use crate::common::fds::{apart_from_other_tests, beside_other_tests};
pub use crate::common::fds::{
    is_cloexec, open_fds, pipe, socket_pair, tcp_pair, temp_file, with_no_new_fds,
};
pub use crate::common::watchdog::run_within;

/// How long a test may take before it counts as hung. Generous: the
/// machines are shared; this only turns a hang into a failure.
const WATCHDOG: Duration = Duration::from_secs(120);

/// Runs `test` on `kind`, alongside other tests.
pub fn run(test: fn(BackendKind), kind: BackendKind) {
    let _shared = beside_other_tests();
    run_on(test, kind);
}

/// Runs `test` on `kind` while no other test of this binary runs.
pub fn run_exclusive(test: fn(BackendKind), kind: BackendKind) {
    let _exclusive = apart_from_other_tests();
    run_on(test, kind);
}

fn run_on(test: fn(BackendKind), kind: BackendKind) {
    if crate::common::backends::skipped(kind) {
        return;
    }
    run_within(WATCHDOG, move || test(kind));
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

/// Pipes with a few bytes waiting in each: (read end, write end).
pub fn pipes_with_data(n: usize) -> Vec<(OwnedFd, OwnedFd)> {
    (0..n)
        .map(|_| {
            let (reader, writer) = pipe();
            File::from(writer.try_clone().unwrap())
                .write_all(b"data")
                .unwrap();
            (reader, writer)
        })
        .collect()
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

/// An IPv4 stream socket bound to a free loopback port, not listening yet
/// (for tests that set options before `listen`).
pub fn loopback_socket() -> socket2::Socket {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    let any_port = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    socket.bind(&any_port.into()).unwrap();
    socket
}
