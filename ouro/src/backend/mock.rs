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

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, IntoRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

use super::{OwnedFiles, RawCompletion, Started, Wake};
use crate::fd::{Fd, Named};
use crate::op::{Op, OpKind};
use crate::time::{duration_ns, Clock};

/// What a scripted operation returns.
pub enum Reply {
    /// Succeeds with this value: a byte count, a readiness mask, or 0.
    Value(u32),
    /// Fails with this OS error (e.g. `libc::ECONNRESET`).
    Errno(i32),
    /// Succeeds with this fd (for accept, open and socket); the completion
    /// owns it from then on.
    Fd(OwnedFd),
    /// Never finishes on its own: only a cancel or a deadline ends it.
    Pending,
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
            Reply::After(d, r) => write!(f, "After({d:?}, {r:?})"),
        }
    }
}

/// An operation as a script sees it.
pub struct MockOp<'a> {
    op: &'a mut Op,
    files: &'a OwnedFiles,
    filled: u32,
}

impl MockOp<'_> {
    /// Which operation it is.
    pub fn kind(&self) -> OpKind {
        self.op.kind()
    }

    /// The fd it operates on, if it takes one (the first, for a splice):
    /// for a ring fd, the number of the fd the mock keeps for it.
    pub fn fd(&self) -> Option<RawFd> {
        match &*self.op {
            Op::Close { fd } => fd.as_ref().map(|fd| fd.as_raw_fd()),
            Op::CloseRing { file } => Some(self.files.raw(*file)),
            op => op.fds()[0].map(|fd| match fd.named() {
                Named::Raw(raw) => raw,
                Named::Ring(file) => self.files.raw(file),
            }),
        }
    }

    /// The bytes a write or send would write; empty for every other
    /// operation, vectored ones (writev, sendmsg) included.
    pub fn data(&self) -> &[u8] {
        match &*self.op {
            Op::Write { buf, .. } | Op::Send { buf, .. } => buf,
            _ => &[],
        }
    }

    /// The file offset of a read or write (`None`: current position).
    pub fn offset(&self) -> Option<u64> {
        match &*self.op {
            Op::Read { offset, .. } | Op::Write { offset, .. } => {
                (*offset != u64::MAX).then_some(*offset)
            }
            _ => None,
        }
    }

    /// The path of an open or stat, without its terminating NUL.
    pub fn path(&self) -> Option<&std::path::Path> {
        use std::os::unix::ffi::OsStrExt;
        match &*self.op {
            Op::Open { path, .. } | Op::OpenDirect { path, .. } | Op::Stat { path, .. } => {
                Some(std::path::Path::new(std::ffi::OsStr::from_bytes(
                    &path[..path.len().saturating_sub(1)],
                )))
            }
            _ => None,
        }
    }

    /// How many bytes a read or recv (multishot too) can take.
    pub fn room(&mut self) -> usize {
        self.op.read_target().map_or(0, |(_, room)| room)
    }

    /// Copies as much of `data` as fits into a read or recv buffer (after
    /// what earlier `fill` calls put there) and returns the total so far, to
    /// be returned as `Reply::Value`.
    pub fn fill(&mut self, data: &[u8]) -> u32 {
        let Some((ptr, room)) = self.op.read_target() else {
            return self.filled;
        };
        let at = self.filled as usize;
        let n = data.len().min(room.saturating_sub(at));
        // SAFETY: `ptr` is the buffer's spare region, `room` bytes long;
        // `[at, at + n)` lies inside it.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), ptr.add(at), n) };
        self.filled += n as u32;
        self.filled
    }
}

type Handler = Box<dyn FnMut(&mut MockOp<'_>) -> Reply>;

/// A scripted backend for unit tests; see the [module docs](self).
#[derive(Default)]
pub struct Mock {
    queued: HashMap<OpKind, VecDeque<Reply>>,
    handlers: HashMap<OpKind, Handler>,
    ready: VecDeque<RawCompletion>,
    /// Replies due at a virtual time, in arrival order.
    delayed: Vec<(u64, RawCompletion)>,
    /// Operations that only a cancel ends.
    pending: Vec<u64>,
    /// fds handed out through replies: (fd, device, inode).
    produced: Vec<(RawFd, u64, u64)>,
    started: HashMap<OpKind, usize>,
    /// Set up once the ring can be messaged.
    waker: Option<Arc<MockWaker>>,
    /// The ring fds, by slot.
    pub(crate) files: OwnedFiles,
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
    /// counts until the ring fd is closed.
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
            if let Some(fd) = fd {
                let raw = fd.as_raw_fd();
                self.produced.retain(|&(p, ..)| p != raw);
            }
            // The fd is closed whatever the script says, so nothing leaks.
            drop(fd.take());
        }
        if op.fds().contains(&Some(Fd::STALE)) {
            // A stale ring fd names no file, whatever the script says.
            self.schedule(user_data, Reply::Errno(libc::EBADF), clock.now());
            return Started::Yes;
        }
        if let Op::RecvMulti { group, held, .. } = op {
            // Like a kernel without multishot: one receive into a free buffer.
            match group.take_free() {
                Some(bid) => *held = Some(bid),
                None => {
                    self.schedule(user_data, Reply::Errno(libc::ENOBUFS), clock.now());
                    return Started::Yes;
                }
            }
        }
        zero_spare(op);
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
                let raw = fd.as_raw_fd();
                self.produced.retain(|&(p, ..)| p != raw);
            }
        }
        self.schedule(user_data, reply, clock.now());
        Started::Yes
    }

    fn schedule(&mut self, user_data: u64, reply: Reply, now: u64) {
        let (mut at, mut reply) = (now, reply);
        let res = loop {
            match reply {
                Reply::After(delay, next) => {
                    at = at.saturating_add(duration_ns(delay));
                    reply = *next;
                }
                Reply::Pending => return self.pending.push(user_data),
                Reply::Value(v) => break i32::try_from(v).unwrap_or(i32::MAX),
                Reply::Errno(e) => break -e.abs(),
                Reply::Fd(fd) => {
                    let raw = fd.into_raw_fd();
                    if let Some((dev, ino)) = identity(raw) {
                        self.produced.push((raw, dev, ino));
                    }
                    break raw;
                }
            }
        };
        let completion = RawCompletion {
            user_data,
            res,
            flags: 0,
        };
        if at > now {
            self.delayed.push((at, completion));
        } else {
            self.ready.push_back(completion);
        }
    }

    pub(crate) fn cancel(&mut self, target: u64) -> bool {
        let waiting = self.pending.iter().position(|&ud| ud == target);
        let delayed = self.delayed.iter().position(|(_, c)| c.user_data == target);
        match (waiting, delayed) {
            (Some(i), _) => {
                self.pending.swap_remove(i);
            }
            (None, Some(i)) => {
                let (_, completion) = self.delayed.remove(i);
                close_if_fd(&mut self.produced, completion.res);
            }
            (None, None) => return true,
        }
        self.ready.push_back(RawCompletion {
            user_data: target,
            res: -libc::ECANCELED,
            flags: 0,
        });
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
                if let Some(waker) = &self.waker {
                    waker.block();
                    return Ok(());
                }
                if self.pending.is_empty() {
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
                let (_, completion) = self.delayed.remove(i);
                self.ready.push_back(completion);
            } else {
                i += 1;
            }
        }
        Ok(())
    }

    pub(crate) fn reap(&mut self, out: &mut Vec<RawCompletion>) {
        out.extend(self.ready.drain(..));
    }
}

/// A read's target is zeroed first, so a script that claims more bytes
/// than it filled never exposes uninitialised memory.
fn zero_spare(op: &mut Op) {
    if let Some((ptr, len)) = op.read_target() {
        // SAFETY: the target is `len` writable bytes the operation owns.
        unsafe { std::ptr::write_bytes(ptr, 0, len) };
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

/// A cancelled delayed reply that carried an fd closes it, so nothing leaks.
fn close_if_fd(produced: &mut Vec<(RawFd, u64, u64)>, res: i32) {
    if let Some(i) = produced.iter().position(|&(fd, ..)| fd == res) {
        produced.swap_remove(i);
        // SAFETY: the mock took this fd from an `OwnedFd` reply and never
        // handed it out, so it owns it.
        drop(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(res) });
    }
}
