//! Backends: what actually performs operations. Each one has the same shape
//! — start an operation, ask to cancel one, flush, wait, reap — and the ring
//! above it does everything else (tasks, timers, deadlines, cancellation
//! bookkeeping, callbacks), so every backend behaves alike. That shape is
//! the [`Driver`] trait (`driver.rs`); the [`Backend`] enum forwards each
//! call to it.
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
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::rc::Rc;
use std::sync::Arc;

use crate::buffers::group::GroupInner;
use crate::op::Op;
use crate::time::Clock;
use driver::Driver;

mod driver;
pub mod mock;
pub(crate) mod poll;
mod random;
#[cfg(target_os = "linux")]
pub mod sim;
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
    /// The deterministic simulator (see [`sim`](crate::sim)).
    Sim,
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

/// The whole pages inside `len` bytes at `ptr`: the start rounded up to a
/// page boundary and the end down, so that `madvise` touches no memory
/// outside the buffer (it needs a page-aligned start). A buffer holding no
/// whole page gives a length of 0, which `madvise` takes as nothing to do.
pub(crate) fn whole_pages(ptr: *const u8, len: usize) -> (*const u8, usize) {
    let page = page_size();
    let start = ptr as usize;
    let first = start.next_multiple_of(page);
    let end = (start + len) / page * page;
    (ptr.wrapping_add(first - start), end.saturating_sub(first))
}

/// The size of a memory page, asked of the system once.
fn page_size() -> usize {
    static PAGE_SIZE: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *PAGE_SIZE.get_or_init(|| {
        // SAFETY: sysconf only reads a configuration value.
        let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        usize::try_from(size)
            .ok()
            .filter(|&size| size > 0)
            .unwrap_or(4096)
    })
}

// An explicit tag: telling the variants apart is then one byte compare on
// every operation, not a decoding of a niche in the io_uring handle.
#[repr(u8)]
pub(crate) enum Backend {
    #[cfg(target_os = "linux")]
    Uring(uring::Uring),
    Poll(poll::PollBackend),
    Mock(mock::Mock),
    #[cfg(target_os = "linux")]
    Sim(sim::SimBackend),
}

macro_rules! dispatch {
    ($self:expr, $b:ident => $e:expr) => {
        match $self {
            #[cfg(target_os = "linux")]
            Backend::Uring($b) => $e,
            Backend::Poll($b) => $e,
            Backend::Mock($b) => $e,
            #[cfg(target_os = "linux")]
            Backend::Sim($b) => $e,
        }
    };
}

/// The backend's kind, from its `Driver` impl.
fn kind_of<D: Driver>(_: &D) -> BackendKind {
    D::KIND
}

// Each method forwards to the backend's `Driver` impl (documented there).
impl Backend {
    pub(crate) fn kind(&self) -> BackendKind {
        dispatch!(self, b => kind_of(b))
    }

    /// # Safety
    ///
    /// As [`Driver::start`].
    #[inline(always)]
    pub(crate) unsafe fn start(&mut self, user_data: u64, op: &mut Op, clock: &Clock) -> Started {
        // SAFETY: our caller keeps `op`'s memory alive and in place until
        // the final completion, which is the same contract each backend's
        // `start` has.
        dispatch!(self, b => unsafe { Driver::start(b, user_data, op, clock) })
    }

    pub(crate) fn cancel(&mut self, user_data: u64) -> bool {
        dispatch!(self, b => Driver::cancel(b, user_data))
    }

    pub(crate) fn flush(&mut self) -> io::Result<bool> {
        dispatch!(self, b => Driver::flush(b))
    }

    pub(crate) fn wait(&mut self, timeout: Option<u64>, clock: &mut Clock) -> io::Result<()> {
        dispatch!(self, b => Driver::wait(b, timeout, clock))
    }

    pub(crate) fn register_group(&mut self, group: &Rc<GroupInner>) {
        dispatch!(self, b => Driver::register_group(b, group))
    }

    /// Takes a registered group back from the kernel (nothing may use it).
    pub(crate) fn unregister_group(&mut self, group: &GroupInner) {
        dispatch!(self, b => Driver::unregister_group(b, group));
        group.detach();
    }

    #[inline]
    pub(crate) fn reap(&mut self, out: &mut Vec<RawCompletion>) {
        dispatch!(self, b => Driver::reap(b, out))
    }

    #[inline]
    pub(crate) fn queued(&mut self) -> Option<usize> {
        dispatch!(self, b => Driver::queued(b))
    }

    #[inline(always)]
    pub(crate) fn next_completion(&mut self) -> Option<RawCompletion> {
        dispatch!(self, b => Driver::next_completion(b))
    }

    pub(crate) fn settle_queue(&mut self) -> bool {
        dispatch!(self, b => Driver::settle_queue(b))
    }

    pub(crate) fn ensure_fixed_table(&mut self) {
        dispatch!(self, b => Driver::ensure_fixed_table(b))
    }

    pub(crate) fn fixed_slot(&self, file: u32) -> Option<u32> {
        dispatch!(self, b => Driver::fixed_slot(b, file))
    }

    pub(crate) fn direct_ended(&mut self, op: &Op) {
        dispatch!(self, b => Driver::direct_ended(b, op))
    }

    pub(crate) fn fixed_table_full(&self) -> Option<(u32, u32)> {
        dispatch!(self, b => Driver::fixed_table_full(b))
    }

    pub(crate) fn accepts_fixed(&mut self) -> bool {
        dispatch!(self, b => Driver::accepts_fixed(b))
    }

    pub(crate) fn close_orphan(&mut self, slot: u32) {
        dispatch!(self, b => Driver::close_orphan(b, slot))
    }

    pub(crate) fn waker(&mut self) -> io::Result<Arc<dyn Wake>> {
        dispatch!(self, b => Driver::waker(b))
    }

    pub(crate) fn doorbell_target(&self) -> Option<RawFd> {
        dispatch!(self, b => Driver::doorbell_target(b))
    }

    pub(crate) fn ring_doorbell(&mut self, target: RawFd, user_data: u64) -> bool {
        dispatch!(self, b => Driver::ring_doorbell(b, target, user_data))
    }

    pub(crate) fn has_unsubmitted(&mut self) -> bool {
        dispatch!(self, b => Driver::has_unsubmitted(b))
    }

    /// Whether the ring's queued messages must wait before they go out:
    /// only in a simulated world, where they take a seeded delay.
    pub(crate) fn holds_messages(&mut self) -> bool {
        match self {
            #[cfg(target_os = "linux")]
            Backend::Sim(sim) => sim.holds_messages(),
            _ => false,
        }
    }

    pub(crate) fn pollable_fd(&self) -> Option<BorrowedFd<'_>> {
        dispatch!(self, b => Driver::pollable_fd(b))
    }

    pub(crate) fn prepare_poll(&mut self, now: bool, after_ns: Option<u64>) -> io::Result<bool> {
        dispatch!(self, b => Driver::prepare_poll(b, now, after_ns))
    }

    pub(crate) fn uring_fd(&self) -> Option<RawFd> {
        dispatch!(self, b => Driver::uring_fd(b))
    }

    pub(crate) fn describe(&self) -> String {
        dispatch!(self, b => Driver::describe(b))
    }

    pub(crate) fn random_u64(&mut self) -> io::Result<u64> {
        dispatch!(self, b => Driver::random_u64(b))
    }

    pub(crate) fn source_address(
        &mut self,
        probe: &mut crate::net::RouteProbe,
        dest: std::net::IpAddr,
    ) -> io::Result<std::net::IpAddr> {
        dispatch!(self, b => Driver::source_address(b, probe, dest))
    }

    pub(crate) fn local_address_flags(&mut self) -> io::Result<crate::net::LocalAddressFlags> {
        dispatch!(self, b => Driver::local_address_flags(b))
    }

    pub(crate) fn adopt_fd(&mut self, file: u32, fd: OwnedFd, may_use_table: bool) {
        dispatch!(self, b => Driver::adopt_fd(b, file, fd, may_use_table))
    }

    pub(crate) fn adopt_fixed(&mut self, file: u32, slot: u32) {
        dispatch!(self, b => Driver::adopt_fixed(b, file, slot))
    }

    pub(crate) fn file_fd(&self, file: u32) -> io::Result<BorrowedFd<'_>> {
        dispatch!(self, b => Driver::file_fd(b, file))
    }

    pub(crate) fn take_file(
        &mut self,
        file: u32,
        stash: &mut Vec<RawCompletion>,
    ) -> io::Result<OwnedFd> {
        dispatch!(self, b => Driver::take_file(b, file, stash))
    }

    pub(crate) fn forget_file(&mut self, file: u32) {
        dispatch!(self, b => Driver::forget_file(b, file))
    }

    pub(crate) fn close_files(&mut self) {
        dispatch!(self, b => Driver::close_files(b))
    }

    pub(crate) fn leak_files(&mut self) {
        dispatch!(self, b => Driver::leak_files(b))
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

#[cfg(test)]
mod tests {
    use super::{page_size, whole_pages};

    #[test]
    fn whole_pages_rounds_inward_and_never_leaves_the_buffer() {
        let page = page_size();
        // An address only: whole_pages does arithmetic, never a read, and
        // Miri's strict provenance refuses an integer cast to a pointer.
        let base = std::ptr::without_provenance::<u8>(page * 16);
        // From one byte into a page to one byte into the fourth: the two
        // whole pages between.
        let (start, len) = whole_pages(base.wrapping_add(1), 3 * page);
        assert_eq!((start, len), (base.wrapping_add(page), 2 * page));
        // Already aligned: all of it.
        assert_eq!(whole_pages(base, 2 * page), (base, 2 * page));
        // Inside one page, empty, or ending short of the next boundary: none.
        assert_eq!(whole_pages(base.wrapping_add(8), 100).1, 0);
        assert_eq!(whole_pages(base, 0).1, 0);
        assert_eq!(whole_pages(base.wrapping_add(1), page).1, 0);
    }
}
