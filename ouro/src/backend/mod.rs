//! Backends: what actually performs operations. Each one has the same shape
//! — start an operation, ask to cancel one, flush, wait, reap — and the ring
//! above it does everything else (tasks, timers, deadlines, cancellation
//! bookkeeping, callbacks), so every backend behaves alike.
//!
//! # What messages between rings need from a backend
//!
//! The ring keeps the messages (see `message.rs`); a backend only provides:
//!
//! - `waker`: a thread-safe [`Wake`]. After `wake()` from any thread, the
//!   backend's current `wait` returns promptly, or its next one does not
//!   block. Wakes may merge; a wake may surface as a completion whose
//!   `user_data` has the `INTERNAL` kind (the ring ignores those), or as
//!   none. io_uring: an eventfd read by an internal request; mock: a
//!   condvar; epoll: an eventfd in the interest list.
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
//!   DEFER_TASKRUN, whose completions would not make it readable); epoll:
//!   the epoll fd. Backends without one return `None`.

use std::io;
use std::os::fd::{BorrowedFd, RawFd};
use std::sync::Arc;

use crate::op::Op;
use crate::time::Clock;

pub mod mock;
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

/// Flag: more completions follow for the same task (io_uring's
/// `IORING_CQE_F_MORE`, which every backend reports the same way).
pub(crate) const MORE: u32 = 1 << 1;

/// Wakes a ring's backend from any thread: see the [module docs](self).
pub(crate) trait Wake: Send + Sync {
    /// Makes the backend's current or next `wait` return promptly.
    fn wake(&self);
}

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

/// Which backend a ring runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BackendKind {
    /// io_uring (Linux 5.11 or later).
    Uring,
    /// The scripted mock, for unit tests.
    Mock,
}

pub(crate) enum Backend {
    #[cfg(target_os = "linux")]
    Uring(uring::Uring),
    Mock(mock::Mock),
}

macro_rules! dispatch {
    ($self:expr, $b:ident => $e:expr) => {
        match $self {
            #[cfg(target_os = "linux")]
            Backend::Uring($b) => $e,
            Backend::Mock($b) => $e,
        }
    };
}

impl Backend {
    pub(crate) fn kind(&self) -> BackendKind {
        match self {
            #[cfg(target_os = "linux")]
            Backend::Uring(_) => BackendKind::Uring,
            Backend::Mock(_) => BackendKind::Mock,
        }
    }

    /// Starts `op`, identified by `user_data` in its completion. The op's
    /// memory stays where it is (owned by the task) until that completion.
    pub(crate) fn start(&mut self, user_data: u64, op: &mut Op, clock: &Clock) -> Started {
        dispatch!(self, b => b.start(user_data, op, clock))
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

    /// Appends every available completion to `out`.
    pub(crate) fn reap(&mut self, out: &mut Vec<RawCompletion>) {
        dispatch!(self, b => b.reap(out))
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
            Backend::Mock(_) => None,
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
            Backend::Mock(_) => false,
        }
    }

    /// Whether started operations wait in a queue not yet handed to the
    /// kernel (so an fd they name must stay open).
    pub(crate) fn has_unsubmitted(&mut self) -> bool {
        match self {
            #[cfg(target_os = "linux")]
            Backend::Uring(uring) => uring.has_unsubmitted(),
            Backend::Mock(_) => false,
        }
    }

    /// An fd readable while completions wait, if the backend was set up
    /// to be polled.
    pub(crate) fn pollable_fd(&self) -> Option<BorrowedFd<'_>> {
        match self {
            #[cfg(target_os = "linux")]
            Backend::Uring(uring) => uring.pollable_fd(),
            Backend::Mock(_) => None,
        }
    }

    /// Before a pollable ring stops running: submits what is queued and
    /// makes the pollable fd readable now (`now`), or after `after_ns`.
    pub(crate) fn prepare_poll(&mut self, now: bool, after_ns: Option<u64>) -> io::Result<()> {
        match self {
            #[cfg(target_os = "linux")]
            Backend::Uring(uring) => uring.prepare_poll(now, after_ns),
            Backend::Mock(_) => Ok(()),
        }
    }

    /// The io_uring fd, for rings that attach to this one's work queue.
    pub(crate) fn uring_fd(&self) -> Option<RawFd> {
        match self {
            #[cfg(target_os = "linux")]
            Backend::Uring(uring) => Some(uring.fd()),
            Backend::Mock(_) => None,
        }
    }

    /// What the backend is, for diagnostics.
    pub(crate) fn describe(&self) -> String {
        match self {
            #[cfg(target_os = "linux")]
            Backend::Uring(uring) => format!("io_uring ({})", uring.setup()),
            Backend::Mock(_) => "mock".to_string(),
        }
    }

    pub(crate) fn mock_mut(&mut self) -> Option<&mut mock::Mock> {
        match self {
            Backend::Mock(mock) => Some(mock),
            #[cfg(target_os = "linux")]
            _ => None,
        }
    }
}
