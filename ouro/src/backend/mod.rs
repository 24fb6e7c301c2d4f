//! Backends: what actually performs operations. Each one has the same shape
//! — start an operation, ask to cancel one, flush, wait, reap — and the ring
//! above it does everything else (tasks, timers, deadlines, cancellation
//! bookkeeping, callbacks), so every backend behaves alike.

use std::io;

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

/// Flag: more completions follow for the same task (io_uring's
/// `IORING_CQE_F_MORE`, which every backend reports the same way).
pub(crate) const MORE: u32 = 1 << 1;

/// Flag: the completion took a buffer of a group, whose id is in the bits
/// from `BUFFER_SHIFT` up (io_uring's `IORING_CQE_F_BUFFER`).
pub(crate) const BUFFER: u32 = 1;
pub(crate) const BUFFER_SHIFT: u32 = 16;

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

/// Sets up the backend of a real ring: `kind`, or io_uring if it works and
/// else the readiness backend, with the reason io_uring was not used.
pub(crate) fn open(
    kind: Option<BackendKind>,
    entries: u32,
) -> io::Result<(Backend, Option<io::Error>)> {
    check_entries(entries)?;
    match kind {
        #[cfg(target_os = "linux")]
        Some(BackendKind::Uring) => Ok((Backend::Uring(uring::Uring::new(entries)?), None)),
        Some(BackendKind::Poll) => Ok((Backend::Poll(poll::PollBackend::new(entries)?), None)),
        Some(other) => Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("the {other:?} backend is not available on this platform"),
        )),
        None => {
            let reason = match uring_or_why(entries) {
                Ok(backend) => return Ok((backend, None)),
                Err(reason) => reason,
            };
            tracing::warn!(reason = %reason, "io_uring is unavailable: using the readiness backend");
            Ok((
                Backend::Poll(poll::PollBackend::new(entries)?),
                Some(reason),
            ))
        }
    }
}

#[cfg(target_os = "linux")]
fn uring_or_why(entries: u32) -> Result<Backend, io::Error> {
    uring::Uring::new(entries).map(Backend::Uring)
}

#[cfg(not(target_os = "linux"))]
fn uring_or_why(_entries: u32) -> Result<Backend, io::Error> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "io_uring exists only on Linux",
    ))
}

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

    /// Starts `op`, identified by `user_data` in its completion. The op's
    /// memory stays where it is (owned by the task) until that completion.
    #[inline(always)]
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

    /// What the backend is, for diagnostics.
    pub(crate) fn describe(&self) -> String {
        match self {
            #[cfg(target_os = "linux")]
            Backend::Uring(uring) => format!("io_uring ({})", uring.setup()),
            Backend::Poll(poll) => format!("readiness ({} and a file thread pool)", poll.poller()),
            Backend::Mock(_) => "mock".to_string(),
        }
    }

    pub(crate) fn mock_mut(&mut self) -> Option<&mut mock::Mock> {
        match self {
            Backend::Mock(mock) => Some(mock),
            _ => None,
        }
    }
}
