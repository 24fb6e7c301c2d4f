//! Backends: what actually performs operations. Each one has the same shape
//! — start an operation, ask to cancel one, flush, wait, reap — and the ring
//! above it does everything else (tasks, timers, deadlines, cancellation
//! bookkeeping, callbacks), so every backend behaves alike.
//!
//! # What messages between rings need from a backend
//!
//! The ring keeps the messages (see `ring/messages.rs` and `mailbox/`); a backend only provides:
//!
//! - `waker`: a thread-safe [`Wake`]. After `wake()` from any thread, the
//!   backend's current `wait` returns promptly, or its next one does not
//!   block. Wakes may merge; a wake may surface as a completion whose
//!   `user_data` has the `INTERNAL` kind (the ring ignores those), or as
//!   none. io_uring: an eventfd read by an internal request; readiness:
//!   its `mio::Waker` (shared with its thread pool); mock: a condvar.
//! - `doorbell_target` / `ring_doorbell` / `has_unsubmitted`: the io_uring
//!   fast path, where a sending ring wakes a target with
//!   `IORING_OP_MSG_RING` in its own submission queue. Other backends
//!   return `None` / `false` / `false`, and the ring falls back to the
//!   target's waker.
//! - `pollable_fd` / `prepare_poll`: an fd that is readable while the
//!   backend has completions to reap, so that another ring can poll this
//!   one; `prepare_poll` is called when a pollable ring stops running, to
//!   make that fd readable at once (results are waiting in user space) or
//!   after a delay (the nearest timer), and to submit what is queued.
//!   io_uring: the ring fd itself (the ring is set up without
//!   DEFER_TASKRUN, whose completions would not make it readable). The
//!   readiness backend could offer its epoll/kqueue fd, with its waker for
//!   `now` and a timer (timerfd, `EVFILT_TIMER`) for `after_ns`; until it
//!   does, it and the mock return `None` and cannot be built pollable.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::Arc;

use crate::buffers::group::GroupInner;
use crate::op::Op;
use crate::time::Clock;

pub mod mock;
pub(crate) mod poll;
#[cfg(target_os = "linux")]
pub(crate) mod uring;

/// A completion as a backend reports it: the submission's `user_data`, a
/// result (a count, fd or mask, or a negated errno) and flags.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RawCompletion {
    pub(crate) user_data: u64,
    pub(crate) res: i32,
    pub(crate) flags: u32,
}

pub(crate) use crate::op::{BUFFER, BUFFER_SHIFT, MORE};

pub(crate) use crate::mailbox::Wake;

/// What became of a request to start an operation.
pub(crate) enum Started {
    /// The backend has it; its completion will be reaped.
    Yes,
    /// No room now; try again after `flush`.
    Full,
    /// Finished at once with this result.
    Done(i32),
    /// Refused with this error (e.g. the kernel lacks the operation).
    Failed(io::Error),
}

/// The largest ring io_uring allows; every backend takes the same range.
const MAX_ENTRIES: u32 = 32768;

/// Checks a ring size: 1 to 32768 on every backend.
pub(crate) fn check_entries(entries: u32) -> io::Result<()> {
    if entries == 0 || entries > MAX_ENTRIES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("ring entries must be between 1 and {MAX_ENTRIES}, not {entries}"),
        ));
    }
    Ok(())
}

/// Which backend a ring runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BackendKind {
    /// io_uring (Linux 5.11 or later).
    Uring,
    /// Readiness notification (epoll on Linux, kqueue on macOS and the
    /// BSDs) with completions emulated on top, and a thread pool for file
    /// operations: where io_uring is missing or forbidden.
    Poll,
    /// The scripted mock, for unit tests.
    Mock,
}

impl BackendKind {
    /// The variable that chooses the backend when the program does not.
    pub const ENV_VAR: &'static str = "OURO_BACKEND";

    /// The backend `OURO_BACKEND` names (`uring` or `poll`); `None` when it
    /// is unset or empty, an `InvalidInput` error naming the valid values
    /// for anything else.
    pub fn from_env() -> io::Result<Option<BackendKind>> {
        let Some(value) = std::env::var_os(Self::ENV_VAR) else {
            return Ok(None);
        };
        match value.to_str() {
            Some("") => Ok(None),
            Some("uring") => Ok(Some(BackendKind::Uring)),
            Some("poll") => Ok(Some(BackendKind::Poll)),
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{}={value:?} names no backend: use `uring` or `poll` \
                     (or leave it unset to use io_uring where it works)",
                    Self::ENV_VAR
                ),
            )),
        }
    }
}

/// How a real ring is set up beyond its size.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Options {
    /// io_uring: share this ring's async work queue
    /// (`IORING_SETUP_ATTACH_WQ`).
    pub(crate) attach_wq: Option<RawFd>,
    /// Another ring will poll this one (see `pollable_fd`).
    pub(crate) pollable: bool,
    /// io_uring: the fixed file table's size (default: `RLIMIT_NOFILE`, up
    /// to 65536; 0: no table).
    pub(crate) fixed_files: Option<u32>,
}

/// Sets up the backend of a real ring: `kind`, or io_uring if it works and
/// else the readiness backend, with the reason io_uring was not used.
pub(crate) fn open(
    kind: Option<BackendKind>,
    entries: u32,
    options: Options,
) -> io::Result<(Backend, Option<io::Error>)> {
    check_entries(entries)?;
    match kind {
        #[cfg(target_os = "linux")]
        Some(BackendKind::Uring) => {
            Ok((Backend::Uring(uring::Uring::new(entries, options)?), None))
        }
        Some(BackendKind::Poll) => Ok((
            Backend::Poll(poll::PollBackend::new(entries, options.pollable)?),
            None,
        )),
        Some(other) => Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("the {other:?} backend is not available on this platform"),
        )),
        None => {
            let reason = match uring_or_why(entries, options) {
                Ok(backend) => return Ok((backend, None)),
                Err(reason) => reason,
            };
            tracing::warn!(reason = %reason, "io_uring is unavailable: using the readiness backend");
            Ok((
                Backend::Poll(poll::PollBackend::new(entries, options.pollable)?),
                Some(reason),
            ))
        }
    }
}

#[cfg(target_os = "linux")]
fn uring_or_why(entries: u32, options: Options) -> Result<Backend, io::Error> {
    uring::Uring::new(entries, options).map(Backend::Uring)
}

#[cfg(not(target_os = "linux"))]
fn uring_or_why(_entries: u32, _options: Options) -> Result<Backend, io::Error> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "io_uring exists only on Linux",
    ))
}

/// The rings that cannot be polled by another ring so far.
pub(crate) fn not_pollable() -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        "only io_uring and Linux readiness rings can be made pollable (not kqueue or mock ones, yet)",
    )
}

// An explicit tag: telling the variants apart is then one byte compare on
// every operation, not a decoding of a niche in the io_uring handle.
#[repr(u8)]
pub(crate) enum Backend {
    #[cfg(target_os = "linux")]
    Uring(uring::Uring),
    Poll(poll::PollBackend),
    Mock(mock::Mock),
}

macro_rules! dispatch {
    ($self:expr, $b:ident => $e:expr) => {
        match $self {
            #[cfg(target_os = "linux")]
            Backend::Uring($b) => $e,
            Backend::Poll($b) => $e,
            Backend::Mock($b) => $e,
        }
    };
}

impl Backend {
    pub(crate) fn kind(&self) -> BackendKind {
        match self {
            #[cfg(target_os = "linux")]
            Backend::Uring(_) => BackendKind::Uring,
            Backend::Poll(_) => BackendKind::Poll,
            Backend::Mock(_) => BackendKind::Mock,
        }
    }

    /// Starts `op`, identified by `user_data` in its completion.
    ///
    /// # Safety
    ///
    /// When this returns [`Started::Yes`], the backend has handed raw
    /// pointers into the memory `op` owns (buffers, socket addresses,
    /// iovecs, paths, statx and msghdr blocks) to the kernel or to a pool
    /// thread, which may read or write through them at any time until the
    /// operation ends. The caller keeps that memory alive and in place: it
    /// must not be freed, moved or reused until the operation's final
    /// completion has been reaped from this backend, or until the backend
    /// has been drained of the operation (cancelled and its completion
    /// reaped) before it is torn down. The `Op` value itself may move (its
    /// kernel-visible memory is in heap blocks it owns); what those blocks
    /// hold must not be touched meanwhile.
    #[inline(always)]
    pub(crate) unsafe fn start(&mut self, user_data: u64, op: &mut Op, clock: &Clock) -> Started {
        // SAFETY: our caller keeps `op`'s memory alive and in place until
        // the final completion, which is the same contract each backend's
        // `start` has.
        dispatch!(self, b => unsafe { b.start(user_data, op, clock) })
    }

    /// Asks to cancel the operation started with `user_data`; `false` when
    /// there is no room to ask now.
    pub(crate) fn cancel(&mut self, user_data: u64) -> bool {
        dispatch!(self, b => b.cancel(user_data))
    }

    /// Hands what was started to the kernel without waiting, to make room;
    /// `false` when that was not possible now.
    pub(crate) fn flush(&mut self) -> io::Result<bool> {
        dispatch!(self, b => b.flush())
    }

    /// Submits what was started and waits until a completion is available
    /// or `timeout` nanoseconds pass (`None`: no limit).
    pub(crate) fn wait(&mut self, timeout: Option<u64>, clock: &mut Clock) -> io::Result<()> {
        dispatch!(self, b => b.wait(timeout, clock))
    }

    /// Lets the backend share `group` with the kernel, if it can.
    pub(crate) fn register_group(&mut self, group: &GroupInner) {
        match self {
            #[cfg(target_os = "linux")]
            Backend::Uring(uring) => uring.register_group(group),
            // The readiness backend takes buffers from the free list.
            Backend::Poll(_) | Backend::Mock(_) => {
                let _ = group;
            }
        }
    }

    /// Takes a registered group back from the kernel (nothing may use it).
    pub(crate) fn unregister_group(&mut self, group: &GroupInner) {
        match self {
            #[cfg(target_os = "linux")]
            Backend::Uring(uring) => uring.unregister_group(group),
            Backend::Poll(_) | Backend::Mock(_) => {}
        }
        group.detach();
    }

    /// Appends every available completion to `out`.
    #[inline]
    pub(crate) fn reap(&mut self, out: &mut Vec<RawCompletion>) {
        dispatch!(self, b => b.reap(out))
    }

    /// io_uring's completions are delivered straight off its queue, one by
    /// one (`next_completion`): this says how many wait there now. `None`
    /// for the backends that `reap` into a batch instead.
    #[inline]
    pub(crate) fn queued(&mut self) -> Option<usize> {
        match self {
            #[cfg(target_os = "linux")]
            Backend::Uring(uring) => Some(uring.queued()),
            Backend::Poll(_) | Backend::Mock(_) => None,
        }
    }

    /// The next of the `queued` completions.
    #[inline(always)]
    pub(crate) fn next_completion(&mut self) -> Option<RawCompletion> {
        match self {
            #[cfg(target_os = "linux")]
            Backend::Uring(uring) => uring.next_completion(),
            Backend::Poll(_) | Backend::Mock(_) => None,
        }
    }

    /// After the `queued` completions have been taken: `true` when more may
    /// have arrived (an overflow moved over).
    pub(crate) fn settle_queue(&mut self) -> bool {
        match self {
            #[cfg(target_os = "linux")]
            Backend::Uring(uring) => uring.settle_queue(),
            Backend::Poll(_) | Backend::Mock(_) => false,
        }
    }

    /// Sets io_uring's fixed file table up now if it is not yet, for an
    /// operation whose fd the kernel may put there; nothing elsewhere.
    pub(crate) fn ensure_fixed_table(&mut self) {
        match self {
            #[cfg(target_os = "linux")]
            Backend::Uring(uring) => uring.ensure_fixed_table(),
            Backend::Poll(_) | Backend::Mock(_) => {}
        }
    }

    /// The fixed-table slot of ring fd `file` (io_uring), which
    /// `IORING_MSG_SEND_FD` can move.
    pub(crate) fn fixed_slot(&self, file: u32) -> Option<u32> {
        match self {
            #[cfg(target_os = "linux")]
            Backend::Uring(uring) => uring.fixed_slot(file),
            Backend::Poll(_) | Backend::Mock(_) => {
                let _ = file;
                None
            }
        }
    }

    /// Whether other rings can move files into this ring's fixed table.
    pub(crate) fn accepts_fixed(&mut self) -> bool {
        match self {
            #[cfg(target_os = "linux")]
            Backend::Uring(uring) => uring.accepts_fixed(),
            Backend::Poll(_) | Backend::Mock(_) => false,
        }
    }

    /// Empties fixed-table `slot`, filled by a parcel nobody takes.
    pub(crate) fn close_orphan(&mut self, slot: u32) {
        match self {
            #[cfg(target_os = "linux")]
            Backend::Uring(uring) => uring.close_orphan(slot),
            Backend::Poll(_) | Backend::Mock(_) => {
                let _ = slot;
            }
        }
    }

    /// The backend's thread-safe waker, set up on the first call.
    pub(crate) fn waker(&mut self) -> io::Result<Arc<dyn Wake>> {
        dispatch!(self, b => b.waker())
    }

    /// The fd other rings can aim MSG_RING doorbells at, if this backend
    /// and kernel support them (and so can also send them).
    pub(crate) fn doorbell_target(&self) -> Option<RawFd> {
        match self {
            #[cfg(target_os = "linux")]
            Backend::Uring(uring) => uring.doorbell_target(),
            Backend::Poll(_) | Backend::Mock(_) => None,
        }
    }

    /// Queues a MSG_RING doorbell to the ring `target`; if it fails, that
    /// comes back as a completion with `user_data` (success is silent).
    /// `false` when that is not possible now (no room, or no support): wake
    /// the target otherwise.
    pub(crate) fn ring_doorbell(&mut self, target: RawFd, user_data: u64) -> bool {
        match self {
            #[cfg(target_os = "linux")]
            Backend::Uring(uring) => uring.ring_doorbell(target, user_data),
            Backend::Poll(_) | Backend::Mock(_) => {
                let _ = (target, user_data);
                false
            }
        }
    }

    /// Whether started operations wait in a queue not yet handed to the
    /// kernel (so an fd they name must stay open).
    pub(crate) fn has_unsubmitted(&mut self) -> bool {
        match self {
            #[cfg(target_os = "linux")]
            Backend::Uring(uring) => uring.has_unsubmitted(),
            Backend::Poll(_) | Backend::Mock(_) => false,
        }
    }

    /// An fd readable while completions wait, if the backend was set up
    /// to be polled.
    pub(crate) fn pollable_fd(&self) -> Option<BorrowedFd<'_>> {
        match self {
            #[cfg(target_os = "linux")]
            Backend::Uring(uring) => uring.pollable_fd(),
            Backend::Poll(poll) => poll.pollable_fd(),
            Backend::Mock(_) => None,
        }
    }

    /// Before a pollable ring stops running: submits what is queued and
    /// makes the pollable fd readable now (`now`), or after `after_ns`.
    pub(crate) fn prepare_poll(&mut self, now: bool, after_ns: Option<u64>) -> io::Result<()> {
        match self {
            #[cfg(target_os = "linux")]
            Backend::Uring(uring) => uring.prepare_poll(now, after_ns),
            Backend::Poll(poll) => poll.prepare_poll(now, after_ns),
            Backend::Mock(_) => {
                let _ = (now, after_ns);
                Ok(())
            }
        }
    }

    /// The io_uring fd, for rings that attach to this one's work queue.
    pub(crate) fn uring_fd(&self) -> Option<RawFd> {
        match self {
            #[cfg(target_os = "linux")]
            Backend::Uring(uring) => Some(uring.fd()),
            Backend::Poll(_) | Backend::Mock(_) => None,
        }
    }

    /// What the backend is, for diagnostics.
    pub(crate) fn describe(&self) -> String {
        match self {
            #[cfg(target_os = "linux")]
            Backend::Uring(uring) => format!("io_uring ({})", uring.setup()),
            Backend::Poll(poll) => format!("readiness ({} and a file thread pool)", poll.poller()),
            Backend::Mock(_) => "mock".to_string(),
        }
    }

    /// Takes `fd` as ring fd `file` (a slot the ring chose). io_uring may
    /// also put it in its fixed file table, if `may_use_table` (no direct
    /// accept could be filling slots not yet reported).
    pub(crate) fn adopt_fd(&mut self, file: u32, fd: OwnedFd, may_use_table: bool) {
        match self {
            #[cfg(target_os = "linux")]
            Backend::Uring(uring) => uring.adopt_fd(file, fd, may_use_table),
            Backend::Poll(poll) => poll.adopt_fd(file, fd),
            Backend::Mock(mock) => mock.files.insert(file, fd),
        }
        // Only io_uring has a table.
        let _ = may_use_table;
    }

    /// Takes fixed-table slot `slot`, which a direct accept filled, as ring
    /// fd `file` (io_uring only: no other backend reports slots).
    pub(crate) fn adopt_fixed(&mut self, file: u32, slot: u32) {
        match self {
            #[cfg(target_os = "linux")]
            Backend::Uring(uring) => uring.adopt_fixed(file, slot),
            Backend::Poll(_) | Backend::Mock(_) => {
                tracing::error!(
                    file,
                    slot,
                    "a backend without a fixed file table reported a slot"
                );
            }
        }
    }

    /// The process fd of ring fd `file`, if it has one.
    pub(crate) fn file_fd(&self, file: u32) -> io::Result<BorrowedFd<'_>> {
        let fd = match self {
            #[cfg(target_os = "linux")]
            Backend::Uring(uring) => return uring.file_fd(file),
            Backend::Poll(poll) => poll.files.get(file),
            Backend::Mock(mock) => mock.files.get(file),
        };
        fd.map(AsFd::as_fd)
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EBADF))
    }

    /// Gives ring fd `file` back as an `OwnedFd` (no task names it).
    /// Completions the backend reaps meanwhile go to `stash`.
    pub(crate) fn take_file(
        &mut self,
        file: u32,
        stash: &mut Vec<RawCompletion>,
    ) -> io::Result<OwnedFd> {
        let fd = match self {
            #[cfg(target_os = "linux")]
            Backend::Uring(uring) => return uring.take_file(file, stash),
            Backend::Poll(poll) => poll.take_file(file),
            Backend::Mock(mock) => mock.files.take(file),
        };
        let _ = stash;
        fd.ok_or_else(|| io::Error::from_raw_os_error(libc::EBADF))
    }

    /// Ring fd `file` was closed (its close operation finished): drops
    /// whatever the backend still keeps of it.
    pub(crate) fn forget_file(&mut self, file: u32) {
        match self {
            #[cfg(target_os = "linux")]
            Backend::Uring(uring) => uring.forget_file(file),
            Backend::Poll(poll) => drop(poll.take_file(file)),
            Backend::Mock(mock) => drop(mock.files.take(file)),
        }
    }

    /// The ring is dropped and nothing is in flight: closes every ring fd.
    pub(crate) fn close_files(&mut self) {
        match self {
            #[cfg(target_os = "linux")]
            Backend::Uring(uring) => uring.close_files(),
            Backend::Poll(poll) => poll.files.close_all(),
            Backend::Mock(mock) => mock.files.close_all(),
        }
    }

    /// The ring is dropped with operations still in flight: the ring fds
    /// they may name stay open, for good.
    pub(crate) fn leak_files(&mut self) {
        match self {
            #[cfg(target_os = "linux")]
            Backend::Uring(uring) => uring.leak_files(),
            Backend::Poll(poll) => poll.files.leak_all(),
            Backend::Mock(mock) => mock.files.leak_all(),
        }
    }

    pub(crate) fn mock_mut(&mut self) -> Option<&mut mock::Mock> {
        match self {
            Backend::Mock(mock) => Some(mock),
            _ => None,
        }
    }
}

/// The ring fds of a backend that keeps them as plain fds, by slot.
#[derive(Default)]
pub(crate) struct OwnedFiles(Vec<Option<OwnedFd>>);

impl OwnedFiles {
    pub(crate) fn insert(&mut self, file: u32, fd: OwnedFd) {
        let i = file as usize;
        if i >= self.0.len() {
            self.0.resize_with(i + 1, || None);
        }
        self.0[i] = Some(fd);
    }

    pub(crate) fn get(&self, file: u32) -> Option<&OwnedFd> {
        self.0.get(file as usize)?.as_ref()
    }

    /// The fd's number; -1 (`EBADF` for any call) if there is none.
    pub(crate) fn raw(&self, file: u32) -> RawFd {
        self.get(file).map_or(-1, AsRawFd::as_raw_fd)
    }

    pub(crate) fn take(&mut self, file: u32) -> Option<OwnedFd> {
        self.0.get_mut(file as usize)?.take()
    }

    pub(crate) fn close_all(&mut self) {
        self.0.clear();
    }

    pub(crate) fn leak_all(&mut self) {
        for fd in self.0.drain(..).flatten() {
            std::mem::forget(fd);
        }
    }
}
