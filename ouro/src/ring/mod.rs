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

use crate::backend::{Backend, RawCompletion};
use crate::buffers::group::GroupInner;
use crate::fd::FdTable;
use crate::op::Pools;
use crate::task::Task;
use crate::time::{Clock, TimerHeap};
use keeps::Keeps;
use messages::Messaging;
use slab::{Slab, Waiters};

pub use builder::RingBuilder;
pub use ctx::{Callback, Ctx};
pub use handle::RingHandle;
pub use thread::RingThread;

/// How long [`Ring::run`] goes on.
///
/// Whatever the mode, `run` also returns when a [drain](Ring::drain) ends:
/// `Ok` once no task is left, `ETIME` if what was live at its deadline had
/// to be cancelled. Stopping ([`Ring::stop`], [`RingHandle::stop`]) leaves
/// live tasks live; a [`RingThread`] that stops cancels them; a drain lets
/// them finish first.
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
    /// another thread, [`RingHandle::stop`](crate::RingHandle::stop), or
    /// until a drain ([`Ring::drain`], [`RingHandle::drain`]) ends. Waits
    /// for messages while no task is live; on a ring that has drained (its
    /// mailbox closed, so no message can come) it returns once no task is
    /// live, as `UntilDone` does.
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
    /// Buffer groups made by `buffer_group`: freed once only the ring
    /// holds them (at the next `buffer_group`) or on drop.
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
    /// The drain under way, if any (see `drain.rs`).
    drain: Option<drain::Drain>,
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
    /// The sockets `source_address` asks the kernel's routes with.
    route_probe: crate::net::RouteProbe,
    _not_send: PhantomData<*const ()>,
}

// The order of the `mod` declarations below is the order of `Ring`'s
// methods in rustdoc (which lists the impls of submodules in the order they
// are declared): making and running a ring, what it is, then operations by
// family, then messages and threads.
mod construct;
#[cfg(target_os = "linux")]
mod simulated;

mod builder;
mod run;

mod drain;

mod accessors;

// The operations, by family: sockets (with the buffer groups their
// multishot receives use), files and the file system, ring fds, then time:
// timers, cancellation, task state and deadlines.
mod net_ops;

mod multishot;

mod file_ops;
mod fs_ops;

mod files;

mod timer_ops;

mod timeouts;

// Messages and threads.
mod handle;
mod keeps;
mod messages;
mod parcel;
#[cfg(target_os = "linux")]
mod sim_thread;
mod stop;
mod thread;

// Internals: no public methods of `Ring`.
mod ctx;
mod drop;
mod finish;
mod schedule;
mod slab;
