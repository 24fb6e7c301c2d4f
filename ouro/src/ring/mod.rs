//! The ring: one per thread. It owns a backend, the task slots, the timer
//! heap and the queues between them, and runs the callbacks.
//!
//! One turn of the loop: hand waiting submissions to the backend, submit and
//! wait (bounded by the nearest timer) in one call, then deliver every
//! completion the backend has, every timer that is due, and every result
//! that was settled in user space — in that order. Work queued by callbacks
//! goes out with the next turn's single submit-and-wait.

use std::cell::Cell;
use std::collections::VecDeque;
use std::io;
use std::marker::PhantomData;
use std::os::fd::OwnedFd;
use std::rc::Rc;
use std::time::Instant;

use crate::backend::{mock::Mock, Backend, BackendKind, RawCompletion};
use crate::buffers::group::GroupInner;
use crate::fd::{FdTable, Keeps};
use crate::op::Pools;
use crate::task::Task;
use crate::time::{Clock, TimerHeap};
use messages::Messaging;
use slab::{Slab, Waiters};

mod builder;
mod ctx;
mod drop;
mod files;
mod finish;
mod fs_ops;
mod messages;
mod multishot;
mod ops;
mod parcel;
mod run;
mod schedule;
mod slab;
mod stop;
mod thread;
mod timeouts;

pub use builder::RingBuilder;
pub use ctx::{Callback, Ctx};
pub use messages::RingHandle;
pub use thread::RingThread;

/// How long [`Ring::run`] goes on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunMode {
    /// Submit, wait for at least one completion, deliver every completion
    /// that is ready. Returns at once if the ring has no task and no
    /// message waiting.
    Once,
    /// Until no task is left and no message waits. Returns at once if there
    /// is none (it does not wait for messages yet to be sent): a ring that
    /// must keep serving messages from other threads while no task is live
    /// runs [`Forever`](RunMode::Forever) instead, until stopped.
    UntilDone,
    /// Until [`Ring::stop`] is called (e.g. from a callback), or, from
    /// another thread, [`RingHandle::stop`](crate::RingHandle::stop). Waits
    /// for messages while no task is live.
    Forever,
    /// One turn that does not wait: submit what is queued, deliver what is
    /// ready (completions, due timers, messages). For a ring polled by
    /// another ring (see [`Ring::pollable_fd`]), run when its fd is
    /// readable.
    NoWait,
}

/// A result settled in user space, delivered on the ring's next turn.
#[derive(Clone, Copy)]
struct Ready {
    task: Task,
    res: i32,
}

/// An io ring: schedules operations as tasks and delivers each task's
/// completion to its callback. See the [crate docs](crate).
///
/// `S` is the state the ring is [run](Ring::run) with; every callback gets
/// `&mut S`. A ring is bound to its thread (`!Send`).
///
/// # The fds an operation names
///
/// Buffers, addresses and paths are moved into the task; the fd an
/// operation works on is named through [`OpFd`](crate::OpFd), and every kind of it keeps
/// the file open until the task's final completion, so an operation never
/// acts on another file that reused the number:
///
/// - **Owned by the ring** ([`RingFd`](crate::RingFd), from [`register_fd`](Ring::register_fd),
///   [`accept_multishot_direct`](Ring::accept_multishot_direct),
///   [`socket_direct`](Ring::socket_direct) or
///   [`open_direct`](Ring::open_direct)): the ring keeps the file open while
///   any task names it; [`close`](Ring::close) cancels those tasks and
///   closes the file after the last one. On io_uring the file sits in the
///   ring's fixed file table (no fd lookup per operation); on the readiness
///   backend its registration is kept (no re-arm per wait). The fastest.
/// - **Shared** (`Rc<T>` or `Arc<T>` where `T: AsFd`, or a reference to
///   one): the task holds a clone until its final completion, so the file
///   closes only once both the caller and every task naming it have let go.
/// - **Open for the whole program**: the standard streams and any
///   `BorrowedFd<'static>`.
/// - **Unchecked** ([`UncheckedFd`](crate::UncheckedFd), made by an
///   `unsafe` constructor): only the number; the caller promises to keep
///   the fd open (the contract of liburing and ourio).
///
/// fds that operations *create* (accept, open, socket) come back as
/// `OwnedFd`; `register_fd` hands one to the ring.
pub struct Ring<S = ()> {
    /// First, so that it is torn down before the slab (whose ops it may
    /// write into) and the groups are freed.
    backend: Backend,
    slab: Slab<S>,
    timers: TimerHeap,
    clock: Clock,
    /// Tasks waiting for room in the backend, in submission order.
    pending: VecDeque<Task>,
    /// Cancel requests waiting for room in the backend.
    cancels: VecDeque<u64>,
    ready: VecDeque<Ready>,
    /// Completions taken from the backend; `batch_pos` is the next one to
    /// deliver, so a panicking callback loses none of the others.
    batch: Vec<RawCompletion>,
    batch_pos: usize,
    waiters: Waiters,
    pools: Pools,
    /// Errors of tasks that failed before reaching the backend.
    rejections: Vec<(u32, io::Error)>,
    /// Buffer groups made by `buffer_group`, unregistered on drop.
    groups: Vec<Rc<GroupInner>>,
    /// The ring fds: which slots are live and which tasks name them (the
    /// backend keeps the files).
    files: FdTable,
    /// The shared owners of fds that live tasks name, so that those files
    /// stay open until the tasks' final completions.
    keeps: Keeps,
    /// Cancel tasks still to be told how their target ended (waiter list
    /// head, whether it was cancelled): kept here, not in locals, while
    /// callbacks run, so that a panicking one loses none; `run` settles
    /// what a panic left.
    unsettled: Vec<(u32, bool)>,
    first_error: Option<io::Error>,
    running: Rc<Cell<bool>>,
    stopped: bool,
    /// Why io_uring was not used, when the ring fell back from it.
    fallback: Option<io::Error>,
    /// The mailbox, incoming messages and outboxes (see `messages.rs`).
    messaging: Messaging,
    /// Whether messages to and from this ring may use MSG_RING doorbells.
    msg_ring: bool,
    /// The fixed file table's size it was built with, if one was chosen
    /// (threads spawned from it are built alike).
    fixed_files: Option<u32>,
    /// For a pollable ring: the duplicate of its fd that `pollable_fd`
    /// lends, made on first use.
    pollable: std::cell::OnceCell<Rc<OwnedFd>>,
    /// For a pollable ring: when the kernel timeout armed to make it
    /// readable for its nearest timer fires.
    poll_timer: Option<u64>,
    _not_send: PhantomData<*const ()>,
}

impl<S> Ring<S> {
    /// A ring with room for `entries` submissions per turn (1 to 32768;
    /// more can be queued, they go out over several calls), on io_uring
    /// where it works and otherwise on the readiness backend: see
    /// [`fallback_reason`](Ring::fallback_reason). The environment variable
    /// `OURO_BACKEND` (`uring` or `poll`) forces one; an unknown value is
    /// an `InvalidInput` error.
    pub fn new(entries: u32) -> io::Result<Ring<S>> {
        Ring::builder().entries(entries).build()
    }

    /// A ring on the [mock backend](crate::mock), on a virtual clock.
    pub fn mock(mock: Mock) -> Ring<S> {
        Ring::with_backend(Backend::Mock(mock), Clock::virtual_clock(), 64)
    }

    fn with_backend(backend: Backend, clock: Clock, entries: u32) -> Ring<S> {
        let capacity = (entries as usize * 2).max(64);
        let files = FdTable::new();
        Ring {
            backend,
            slab: Slab::with_capacity(capacity, files.ring_id()),
            timers: TimerHeap::with_capacity(capacity),
            clock,
            pending: VecDeque::new(),
            cancels: VecDeque::new(),
            ready: VecDeque::with_capacity(capacity),
            batch: Vec::with_capacity(capacity),
            batch_pos: 0,
            waiters: Waiters::default(),
            pools: Pools::default(),
            rejections: Vec::new(),
            groups: Vec::new(),
            files,
            keeps: Keeps::default(),
            unsettled: Vec::new(),
            first_error: None,
            running: Rc::new(Cell::new(false)),
            stopped: false,
            fallback: None,
            messaging: Messaging::default(),
            msg_ring: true,
            fixed_files: None,
            pollable: std::cell::OnceCell::new(),
            poll_timer: None,
            _not_send: PhantomData,
        }
    }

    /// How a thread spawned from this ring builds its own: same backend,
    /// message settings and fixed table size, sharing this ring's kernel
    /// work queue.
    fn child_builder(&self, entries: u32) -> RingBuilder {
        let mut builder = Ring::builder()
            .entries(entries)
            .backend(self.backend.kind())
            .msg_ring(self.msg_ring);
        builder.options.attach_wq = self.backend.uring_fd();
        builder.options.fixed_files = self.fixed_files;
        builder
    }

    /// An fd that is readable while this ring has something to deliver, for
    /// another ring on the same thread to [`poll`](Ring::poll); run this
    /// ring with [`RunMode::NoWait`] when it is. Work scheduled on this ring
    /// from outside its own `run` reaches the kernel when it next runs.
    ///
    /// It is a shared owner of a duplicate of the ring's own fd (the same
    /// file, so the same readiness), made on the first call: a `poll` on it
    /// keeps it open whatever happens to this ring, so the poll is sound
    /// even if this ring is dropped first (it then never becomes readable:
    /// cancel it).
    ///
    /// Fails with `InvalidInput` unless the ring was built
    /// [`pollable`](RingBuilder::pollable).
    pub fn pollable_fd(&self) -> io::Result<Rc<OwnedFd>> {
        if let Some(fd) = self.pollable.get() {
            return Ok(fd.clone());
        }
        let fd = self.backend.pollable_fd().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "the ring was not built pollable (RingBuilder::pollable)",
            )
        })?;
        let fd = Rc::new(fd.try_clone_to_owned()?);
        Ok(self.pollable.get_or_init(|| fd).clone())
    }

    /// Which backend the ring runs on.
    pub fn backend(&self) -> BackendKind {
        self.backend.kind()
    }

    /// The backend and how it was set up, e.g.
    /// `io_uring (single_issuer+defer_taskrun+taskrun_flag+submit_all)`.
    pub fn backend_description(&self) -> String {
        self.backend.describe()
    }

    /// Why the ring runs on the readiness backend although no backend was
    /// asked for: io_uring's setup error (e.g. `EPERM` from a seccomp
    /// filter, see [`SetupError`](crate::SetupError)). `None` when io_uring
    /// is used or a backend was chosen.
    pub fn fallback_reason(&self) -> Option<&io::Error> {
        self.fallback.as_ref()
    }

    /// The mock backend, to script more replies or check for leaked fds;
    /// `None` on any other backend.
    pub fn mock_backend(&mut self) -> Option<&mut Mock> {
        self.backend.mock_mut()
    }

    /// The ring's current time: the monotonic clock, or the mock's virtual
    /// one. Deadlines should be computed from it (`ring.now() + timeout`).
    pub fn now(&self) -> Instant {
        self.clock.to_instant(self.clock.now())
    }

    /// How many tasks have not been delivered yet.
    pub fn live_tasks(&self) -> usize {
        self.slab.live() as usize
    }

    /// Makes the current [`run`](Ring::run) return after this turn (or,
    /// called outside `run`, the next `run` return at once).
    pub fn stop(&mut self) {
        self.stopped = true;
    }
}
