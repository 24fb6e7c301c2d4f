//! The mock backend: a test scripts what each operation returns, and the
//! ring runs user code against it without a kernel ring, on a virtual clock
//! that jumps straight to the next timer, deadline or delayed reply.
//!
//! ```
//! use ouro::{mock::{Mock, Reply}, Ctx, OpKind, Outcome, Ring, RunMode, Offset, UncheckedFd};
//! use std::os::fd::BorrowedFd;
//!
//! let mut mock = Mock::new();
//! mock.on(OpKind::Read, |op| Reply::Value(op.fill(b"hello")));
//! let mut ring = Ring::mock(mock);
//! // A mock never touches the fd: any number will do.
//! // SAFETY: nothing reads, writes or closes fd 1000 (the mock backend
//! // never uses the fds it is given).
//! let fd = unsafe { UncheckedFd::new(BorrowedFd::borrow_raw(1000)) };
//! fn done(got: &mut Vec<u8>, _: &mut Ring<Vec<u8>>, c: ouro::Completion) -> std::io::Result<()> {
//!     if let Outcome::Read(Ok(_), buf) = c.outcome { got.extend_from_slice(&buf) }
//!     Ok(())
//! }
//! ring.read(fd, Vec::with_capacity(16), Offset::Current, Ctx::new(done));
//! let mut got = Vec::new();
//! ring.run(&mut got, RunMode::UntilDone).unwrap();
//! assert_eq!(got, b"hello");
//! ```
//!
//! An operation that makes an fd (accept, socket, open, and their multishot
//! and direct forms) succeeds only with [`Reply::Fd`]: an fd the test made
//! and gives the mock, which the completion then owns. The mock never makes
//! an fd of a number, nor closes one by number; a reply no kernel could give
//! fails the operation with an `InvalidInput` error (see [`Reply`]).
//!
//! ```
//! use ouro::{fs::OpenOptions, mock::{Mock, Reply}, Ctx, OpKind, Outcome, Ring, RunMode};
//! use std::os::fd::OwnedFd;
//!
//! let mut mock = Mock::new();
//! let file = std::fs::File::open("/dev/null").unwrap();
//! mock.push(OpKind::Open, Reply::Fd(file.into()));
//! // A number is not an fd: this open fails with `InvalidInput`.
//! mock.push(OpKind::Open, Reply::Value(3));
//! let mut ring = Ring::mock(mock);
//! type Got = Vec<std::io::Result<OwnedFd>>;
//! fn done(got: &mut Got, _: &mut Ring<Got>, c: ouro::Completion) -> std::io::Result<()> {
//!     if let Outcome::Open(fd) = c.outcome { got.push(fd) }
//!     Ok(())
//! }
//! let read = OpenOptions::new().read(true);
//! let mut got = Vec::new();
//! ring.open("/any/path", &read, Ctx::new(done));
//! ring.run(&mut got, RunMode::UntilDone).unwrap();
//! ring.open("/any/path", &read, Ctx::new(done));
//! ring.run(&mut got, RunMode::UntilDone).unwrap();
//! assert!(got[0].is_ok());
//! assert_eq!(got[1].as_ref().unwrap_err().kind(), std::io::ErrorKind::InvalidInput);
//! // The opened fd is still open: a leak, were the test done with it.
//! assert_eq!(ring.mock_backend().unwrap().open_fds().len(), 1);
//! ```

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, IntoRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

use super::driver::Driver;
use super::{BackendKind, OwnedFiles, RawCompletion, Started, Wake};
use crate::error::bad_ring_fd;
use crate::fd::Fd;
use crate::op::{Op, OpKind};
use crate::time::{duration_ns, Clock};

mod op_view;

pub use op_view::MockOp;
use op_view::{prepare_vectors, zero_read_regions};

/// What a scripted operation returns.
///
/// A reply that no kernel could give is the script's mistake, and the
/// operation fails at once with an `InvalidInput` error saying so (whatever
/// delay the reply asked for): a `Value` above `i32::MAX`, an `Errno` out of
/// `1..512`, a `Value` for an operation that makes an fd, an `Fd` for one
/// that does not, a `Value` above the bytes a write, send or splice asked
/// to move. (A read's `Value` above its room is cut to the room.)
pub enum Reply {
    /// Succeeds with this value: a byte count, a readiness mask, or 0 — at
    /// most `i32::MAX`. Not for an operation that makes an fd (accept,
    /// socket, open and their multishot and direct forms): a number cannot
    /// stand for an fd, which the completion would own and close.
    Value(u32),
    /// Fails with this OS error (e.g. `libc::ECONNRESET`), from 1 to 511
    /// (0 or a negative number is no error; from 512 on, the kernel's
    /// internal codes never reach user space).
    Errno(i32),
    /// Succeeds with this fd: the only reply that succeeds for an operation
    /// that makes an fd (accept, socket, open and their multishot and
    /// direct forms). The mock owns it, and closes it if the operation is
    /// cancelled before the reply is due; once the ring reaps the reply,
    /// the completion (or, for a direct form, the ring fd) owns it.
    Fd(OwnedFd),
    /// Never finishes on its own: only a cancel or a deadline ends it.
    /// A `run` left with nothing else to wait for (no reply, timer or
    /// deadline due) fails with `WouldBlock` rather than wait for ever,
    /// even if a message from another thread could have cancelled it.
    Pending,
    /// Like `Pending`, but a cancel or a deadline ends it with `EINTR`:
    /// so ends a blocking call on one of io_uring's worker threads when
    /// its cancellation interrupts it. The ring still tells the callback
    /// `ECANCELED` (or `ETIME`).
    Blocked,
    /// Finishes like the inner reply after this much virtual time.
    After(Duration, Box<Reply>),
}

impl fmt::Debug for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reply::Value(v) => write!(f, "Value({v})"),
            Reply::Errno(e) => write!(f, "Errno({e})"),
            Reply::Fd(fd) => write!(f, "Fd({})", fd.as_raw_fd()),
            Reply::Pending => f.write_str("Pending"),
            Reply::Blocked => f.write_str("Blocked"),
            Reply::After(d, r) => write!(f, "After({d:?}, {r:?})"),
        }
    }
}

type Handler = Box<dyn FnMut(&mut MockOp<'_>) -> Reply>;

/// A scripted backend for unit tests; see the [module docs](self).
#[derive(Default)]
pub struct Mock {
    queued: HashMap<OpKind, VecDeque<Reply>>,
    handlers: HashMap<OpKind, Handler>,
    ready: VecDeque<Due>,
    /// Replies due at a virtual time, in arrival order.
    delayed: Vec<(u64, Due)>,
    /// Operations that only a cancel ends.
    /// Operations waiting for a cancel, and the error it ends them with.
    pending: Vec<(u64, i32)>,
    /// fds handed out through replies: (fd, device, inode), at most one
    /// record per number.
    produced: Vec<(RawFd, u64, u64)>,
    started: HashMap<OpKind, usize>,
    /// Set up once the ring can be messaged.
    waker: Option<Arc<MockWaker>>,
    /// The ring fds, by slot.
    pub(crate) files: OwnedFiles,
}

/// A completion the ring has not reaped yet. A reply's fd stays owned here
/// until then, so a cancelled or undelivered reply closes it by dropping it,
/// never by number.
struct Due {
    completion: RawCompletion,
    fd: Option<OwnedFd>,
}

/// A reply checked against its operation, with its delay taken off.
enum Checked {
    /// Waits for a cancel, which ends it with this error.
    Pending(i32),
    Res(i32),
    Fd(OwnedFd),
}

/// Wakes a mock ring's `wait`, which blocks (in real time) only when the
/// ring has nothing but messages to wait for.
#[derive(Default)]
struct MockWaker {
    woken: Mutex<bool>,
    signal: Condvar,
}

impl Wake for MockWaker {
    fn wake(&self) {
        *self.woken.lock().unwrap_or_else(PoisonError::into_inner) = true;
        self.signal.notify_one();
    }
}

impl MockWaker {
    /// Whether a wake came since the last call.
    fn take(&self) -> bool {
        std::mem::take(&mut *self.woken.lock().unwrap_or_else(PoisonError::into_inner))
    }

    fn block(&self) {
        let mut woken = self.woken.lock().unwrap_or_else(PoisonError::into_inner);
        while !*woken {
            woken = self
                .signal
                .wait(woken)
                .unwrap_or_else(PoisonError::into_inner);
        }
        *woken = false;
    }
}

impl fmt::Debug for Mock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mock")
            .field("queued", &self.queued)
            .field("scripted", &self.handlers.keys().collect::<Vec<_>>())
            .field("pending", &self.pending.len())
            .finish()
    }
}

impl Mock {
    /// A mock with nothing scripted: every operation fails with an
    /// `Unsupported` error naming it, until a reply is scripted.
    pub fn new() -> Mock {
        Mock::default()
    }

    /// Scripts every `kind` operation with `handler` (after any queued
    /// replies are used up).
    pub fn on(
        &mut self,
        kind: OpKind,
        handler: impl FnMut(&mut MockOp<'_>) -> Reply + 'static,
    ) -> &mut Mock {
        self.handlers.insert(kind, Box::new(handler));
        self
    }

    /// Queues one reply for the next `kind` operation.
    pub fn push(&mut self, kind: OpKind, reply: Reply) -> &mut Mock {
        self.queued.entry(kind).or_default().push_back(reply);
        self
    }

    /// How many `kind` operations were started.
    pub fn started(&self, kind: OpKind) -> usize {
        self.started.get(&kind).copied().unwrap_or(0)
    }

    /// fds handed out by scripted replies that are still open (the same
    /// file is still behind the number): a leak, if the program is done.
    /// A connection handed to the ring (a direct accept, `register_fd`)
    /// counts until the ring fd is closed. An fd counts from when the ring
    /// takes the reply: before, the mock owns it (and closes it if the
    /// operation is cancelled). An fd dropped and its number then reused
    /// for the same file (same device and inode) still counts, unless the
    /// number has come back through a close or a reply since: a false
    /// report, never a missed leak.
    pub fn open_fds(&self) -> Vec<RawFd> {
        self.produced
            .iter()
            .filter(|&&(fd, dev, ino)| identity(fd) == Some((dev, ino)))
            .map(|&(fd, ..)| fd)
            .collect()
    }

    /// Starts `op`; see [`Backend::start`](super::Backend::start).
    ///
    /// # Safety
    ///
    /// The memory `op` owns (buffers, addresses, iovecs, paths, statx and
    /// msghdr blocks) must stay alive and in place, untouched by the caller,
    /// until the operation's final completion has been reaped from this
    /// backend, or until the backend has been drained of it before it is
    /// torn down.
    pub(crate) unsafe fn start(&mut self, user_data: u64, op: &mut Op, clock: &Clock) -> Started {
        let kind = op.kind();
        *self.started.entry(kind).or_default() += 1;
        if let Op::Close { fd } = op {
            if let Some(fd) = fd.take() {
                // The op owns this fd: a record of its number is of this
                // fd, or of one closed before it was made.
                self.forget_produced(fd.as_raw_fd());
                // Closed whatever the script says, so nothing leaks.
                drop(fd);
            }
        }
        if op.fds().contains(&Some(Fd::STALE)) {
            // A stale ring fd names no file, whatever the script says.
            self.fail(user_data, libc::EBADF);
            return Started::Yes;
        }
        if let Op::RecvMulti { group, held, .. } = op {
            // Like a kernel without multishot: one receive into a free buffer.
            match group.take_free() {
                Some(bid) => *held = Some(bid),
                None => {
                    self.fail(user_data, libc::ENOBUFS);
                    return Started::Yes;
                }
            }
        }
        prepare_vectors(op);
        zero_read_regions(op);
        let mut view = MockOp {
            op,
            files: &self.files,
            filled: 0,
        };
        let reply = match self.queued.get_mut(&kind).and_then(VecDeque::pop_front) {
            Some(reply) => reply,
            None => match self.handlers.get_mut(&kind) {
                Some(handler) => handler(&mut view),
                None => {
                    return Started::Failed(io::Error::new(
                        io::ErrorKind::Unsupported,
                        format!("mock: no reply scripted for {kind:?}"),
                    ))
                }
            },
        };
        if let Op::CloseRing { file } = *op {
            // Closed whatever the script says, as any close.
            if let Some(fd) = self.files.take(file) {
                self.forget_produced(fd.as_raw_fd());
            }
        }
        let checked = check(reply, makes_fd(kind), clock.now())
            .and_then(|(at, checked)| no_more_than_asked(op, checked).map(|c| (at, c)));
        match checked {
            Ok((at, checked)) => {
                self.schedule(user_data, checked, at, clock.now());
                Started::Yes
            }
            Err(err) => Started::Failed(err),
        }
    }

    /// Fails an operation with OS error `errno` now, whatever the script
    /// says.
    fn fail(&mut self, user_data: u64, errno: i32) {
        self.ready.push_back(Due {
            completion: RawCompletion {
                user_data,
                res: -errno,
                flags: 0,
            },
            fd: None,
        });
    }

    /// Queues a checked reply: ready now, or due at virtual time `at`, or
    /// (pending) for a cancel to end.
    fn schedule(&mut self, user_data: u64, checked: Checked, at: u64, now: u64) {
        let (res, fd) = match checked {
            Checked::Pending(errno) => return self.pending.push((user_data, errno)),
            Checked::Res(res) => (res, None),
            Checked::Fd(fd) => {
                // This number is this fd's alone, which the mock owns: a
                // record of it is of an fd closed since.
                self.forget_produced(fd.as_raw_fd());
                // Its number goes in at reap time, with the ownership.
                (0, Some(fd))
            }
        };
        let due = Due {
            completion: RawCompletion {
                user_data,
                res,
                flags: 0,
            },
            fd,
        };
        if at > now {
            self.delayed.push((at, due));
        } else {
            self.ready.push_back(due);
        }
    }

    fn forget_produced(&mut self, raw: RawFd) {
        self.produced.retain(|&(p, ..)| p != raw);
    }

    pub(crate) fn cancel(&mut self, target: u64) -> bool {
        let waiting = self.pending.iter().position(|&(ud, _)| ud == target);
        let delayed = self
            .delayed
            .iter()
            .position(|(_, due)| due.completion.user_data == target);
        let errno = match (waiting, delayed) {
            (Some(i), _) => self.pending.swap_remove(i).1,
            (None, Some(i)) => {
                // Dropped with the reply: an fd it carried, which the mock
                // still owns, is closed.
                drop(self.delayed.remove(i));
                libc::ECANCELED
            }
            (None, None) => return true,
        };
        self.fail(target, errno);
        true
    }

    pub(crate) fn flush(&mut self) -> io::Result<bool> {
        Ok(true)
    }

    pub(crate) fn waker(&mut self) -> io::Result<Arc<dyn Wake>> {
        Ok(self.waker.get_or_insert_with(Arc::default).clone())
    }

    /// Jumps the virtual clock to the next reply or `timeout`, whichever is
    /// first; with neither, blocks until a message wakes the ring (if it can
    /// be messaged at all).
    pub(crate) fn wait(&mut self, timeout: Option<u64>, clock: &mut Clock) -> io::Result<()> {
        if !self.ready.is_empty() || self.waker.as_ref().is_some_and(|w| w.take()) {
            return Ok(());
        }
        let now = clock.now();
        let next_reply = self.delayed.iter().map(|&(at, _)| at).min();
        let until = match (next_reply, timeout.map(|t| now.saturating_add(t))) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) | (None, Some(a)) => a,
            (None, None) => {
                // Waiting for messages is fine; for a reply that never
                // comes it is a hang, whether or not a handle was ever made.
                if self.pending.is_empty() {
                    if let Some(waker) = &self.waker {
                        waker.block();
                    }
                    return Ok(());
                }
                return Err(io::Error::new(
                    io::ErrorKind::WouldBlock,
                    format!(
                        "mock: {} operation(s) wait for a reply that never comes, \
                         and no timer or deadline is pending",
                        self.pending.len()
                    ),
                ));
            }
        };
        clock.advance_to(until);
        let mut i = 0;
        while i < self.delayed.len() {
            if self.delayed[i].0 <= until {
                let (_, due) = self.delayed.remove(i);
                self.ready.push_back(due);
            } else {
                i += 1;
            }
        }
        Ok(())
    }

    /// Hands the ready completions to the ring; an fd a reply carried
    /// goes with it as its number, which the ring takes ownership of.
    pub(crate) fn reap(&mut self, out: &mut Vec<RawCompletion>) {
        for Due { mut completion, fd } in self.ready.drain(..) {
            if let Some(fd) = fd {
                let raw = fd.into_raw_fd();
                if let Some((dev, ino)) = identity(raw) {
                    self.produced.push((raw, dev, ino));
                }
                completion.res = raw;
            }
            out.push(completion);
        }
    }
}

fn identity(fd: RawFd) -> Option<(u64, u64)> {
    // SAFETY: fstat only writes into the zeroed struct we pass.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is a valid, writable stat buffer.
    let res = unsafe { libc::fstat(fd, &mut st) };
    #[allow(clippy::unnecessary_cast)] // dev_t and ino_t differ by platform
    (res == 0).then_some((st.st_dev as u64, st.st_ino as u64))
}

/// Whether a successful `kind` operation's result is a new fd (or, for a
/// direct form, a new fd the ring makes a ring fd of).
fn makes_fd(kind: OpKind) -> bool {
    matches!(
        kind,
        OpKind::Accept
            | OpKind::AcceptMulti
            | OpKind::AcceptDirect
            | OpKind::Socket
            | OpKind::SocketDirect
            | OpKind::Open
            | OpKind::OpenDirect
    )
}

/// Checks a scripted reply for an operation that makes an fd (`makes_fd`)
/// or not, and finds when it is due (from `now`). A reply no kernel could
/// give is an error; an fd it carries is dropped with it, as the mock owns
/// it.
fn check(reply: Reply, makes_fd: bool, now: u64) -> io::Result<(u64, Checked)> {
    let (mut at, mut reply) = (now, reply);
    let checked = loop {
        match reply {
            Reply::After(delay, next) => {
                at = at.saturating_add(duration_ns(delay));
                reply = *next;
            }
            Reply::Pending => break Checked::Pending(libc::ECANCELED),
            Reply::Blocked => break Checked::Pending(libc::EINTR),
            Reply::Value(_) if makes_fd => {
                return Err(invalid(
                    "mock: a Value reply cannot stand for an fd; script Reply::Fd(owned)".into(),
                ))
            }
            Reply::Value(v) => match i32::try_from(v) {
                Ok(v) => break Checked::Res(v),
                Err(_) => {
                    return Err(invalid(format!(
                        "mock: Value({v}) does not fit a completion's result (at most i32::MAX)"
                    )))
                }
            },
            Reply::Errno(e) if (1..512).contains(&e) => break Checked::Res(-e),
            Reply::Errno(e) => {
                return Err(invalid(format!(
                    "mock: Errno({e}) is no OS error number (1 to 511)"
                )))
            }
            Reply::Fd(fd) if makes_fd => break Checked::Fd(fd),
            Reply::Fd(_) => {
                return Err(invalid(
                    "mock: an Fd reply is only for an operation that makes an fd \
                     (accept, socket, open); script Reply::Value"
                        .into(),
                ))
            }
        }
    };
    Ok((at, checked))
}

/// Refuses a byte count above what a write, send or splice asked to move,
/// which no kernel gives. (A read's count is cut to its room instead, as
/// the ring does for every backend.)
fn no_more_than_asked(op: &Op, checked: Checked) -> io::Result<Checked> {
    let asked = match op {
        Op::Write { buf, .. } | Op::Send { buf, .. } | Op::SendTo { buf, .. } => buf.len(),
        Op::Writev { iov, .. } => iov.iter().map(|v| v.iov_len).sum(),
        Op::SendMsg { msg, .. } => msg.iov.iter().map(|v| v.iov_len).sum(),
        Op::Splice { len, .. } => *len as usize,
        _ => return Ok(checked),
    };
    match checked {
        Checked::Res(moved) if usize::try_from(moved).is_ok_and(|n| n > asked) => {
            Err(invalid(format!(
                "mock: Value({moved}) is more than the {asked} bytes the {:?} asked to move",
                op.kind()
            )))
        }
        checked => Ok(checked),
    }
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

impl Driver for Mock {
    const KIND: BackendKind = BackendKind::Mock;

    #[inline(always)]
    unsafe fn start(&mut self, user_data: u64, op: &mut Op, clock: &Clock) -> Started {
        // SAFETY: forwarded: our caller keeps what `op` owns alive and in
        // place until its final completion.
        unsafe { Mock::start(self, user_data, op, clock) }
    }

    fn cancel(&mut self, user_data: u64) -> bool {
        Mock::cancel(self, user_data)
    }

    fn flush(&mut self) -> io::Result<bool> {
        Mock::flush(self)
    }

    fn wait(&mut self, timeout: Option<u64>, clock: &mut Clock) -> io::Result<()> {
        Mock::wait(self, timeout, clock)
    }

    #[inline]
    fn reap(&mut self, out: &mut Vec<RawCompletion>) {
        Mock::reap(self, out)
    }

    fn waker(&mut self) -> io::Result<Arc<dyn Wake>> {
        Mock::waker(self)
    }

    fn describe(&self) -> String {
        "mock".to_string()
    }

    /// Kept as a plain fd (there is no fixed table to use).
    fn adopt_fd(&mut self, file: u32, fd: OwnedFd, may_use_table: bool) {
        let _ = may_use_table;
        self.files.insert(file, fd)
    }

    fn file_fd(&self, file: u32) -> io::Result<BorrowedFd<'_>> {
        self.files
            .get(file)
            .map(AsFd::as_fd)
            .ok_or_else(bad_ring_fd)
    }

    fn take_file(&mut self, file: u32, stash: &mut Vec<RawCompletion>) -> io::Result<OwnedFd> {
        let _ = stash;
        self.files.take(file).ok_or_else(bad_ring_fd)
    }

    fn forget_file(&mut self, file: u32) {
        drop(self.files.take(file));
    }

    fn close_files(&mut self) {
        self.files.close_all();
    }

    fn leak_files(&mut self) {
        self.files.leak_all();
    }
}
