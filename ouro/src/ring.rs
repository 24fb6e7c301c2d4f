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
use std::mem;
use std::os::fd::{BorrowedFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::backend::{mock::Mock, Backend, BackendKind, RawCompletion, Started, MORE};
use crate::buffers::group::{BufferGroup, GroupInner};
use crate::buffers::{Buf, BufVec, IntoBuf, IntoBufMut, IoBuf, IoBufMut};
use crate::completion::{Completion, ETIME};
use crate::fd::sealed::{Closing, Source};
use crate::fd::{CloseFd, Fd, FdTable, Keeps, OpFd, RingFd};
use crate::fs::OpenOptions;
use crate::message::Messaging;
use crate::net::{Domain, Protocol, SockAddr, Type};
use crate::op::{Offset, Op, Outcome, PollMask, Pools};
use crate::task::{
    user_data, CancelReason, Ctx, Finished, Slab, State, Task, Waiters, HAS_TIMER, HOLDS_OWNERS,
    NIL,
};
use crate::time::{duration_ns, Clock, TimerHeap};

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

/// Stands for "the error is in `Ring::rejections`" in a result.
pub(crate) const REJECTED: i32 = i32::MIN;

/// An io ring: schedules operations as tasks and delivers each task's
/// completion to its callback. See the [crate docs](crate).
///
/// `S` is the state the ring is [run](Ring::run) with; every callback gets
/// `&mut S`. A ring is bound to its thread (`!Send`).
///
/// # The fds an operation names
///
/// Buffers, addresses and paths are moved into the task; the fd an
/// operation works on is named through [`OpFd`], and every kind of it keeps
/// the file open until the task's final completion, so an operation never
/// acts on another file that reused the number:
///
/// - **Owned by the ring** ([`RingFd`], from [`register_fd`](Ring::register_fd),
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
    pub(crate) backend: Backend,
    pub(crate) slab: Slab<S>,
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
    pub(crate) rejections: Vec<(u32, io::Error)>,
    /// Buffer groups made by `buffer_group`, unregistered on drop.
    groups: Vec<Rc<GroupInner>>,
    /// The ring fds: which slots are live and which tasks name them (the
    /// backend keeps the files).
    pub(crate) files: FdTable,
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
    /// The mailbox, incoming messages and outboxes (see `message.rs`).
    pub(crate) messaging: Messaging,
    /// Whether messages to and from this ring may use MSG_RING doorbells.
    pub(crate) msg_ring: bool,
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

/// Builds a [`Ring`] with a chosen backend: `Ring::builder().entries(64)
/// .backend(BackendKind::Uring).build()`.
#[derive(Clone, Copy, Debug)]
pub struct RingBuilder {
    entries: u32,
    backend: Option<BackendKind>,
    msg_ring: bool,
    options: crate::backend::Options,
}

impl RingBuilder {
    /// Room for this many submissions per turn (default 256).
    pub fn entries(mut self, entries: u32) -> RingBuilder {
        self.entries = entries;
        self
    }

    /// The backend to use, whatever `OURO_BACKEND` says. Without it: the
    /// one `OURO_BACKEND` names, else io_uring if it works, else the
    /// readiness backend (see [`Ring::fallback_reason`]).
    pub fn backend(mut self, backend: BackendKind) -> RingBuilder {
        self.backend = Some(backend);
        self
    }

    /// Whether messages to and from this ring may use
    /// `IORING_OP_MSG_RING` as their wake-up (default: yes, where the
    /// kernel has it). With `false` they use the target's eventfd — the
    /// path every other backend and older kernels take — with the same
    /// API and guarantees. [`Ring::spawn_thread`] passes the setting on.
    pub fn msg_ring(mut self, enabled: bool) -> RingBuilder {
        self.msg_ring = enabled;
        self
    }

    /// Makes the ring pollable: [`Ring::pollable_fd`] is readable whenever
    /// it has something to deliver, so another ring on the same thread can
    /// [`poll`](Ring::poll) it and run it with [`RunMode::NoWait`]. On
    /// io_uring the fd is the ring's own (set up without DEFER_TASKRUN,
    /// whose completions wait as task work and never make it readable); on
    /// the Linux readiness backend it is the epoll fd, with a timerfd for
    /// the ring's timers. kqueue and mock rings cannot be made pollable yet
    /// (`Unsupported`).
    pub fn pollable(mut self, pollable: bool) -> RingBuilder {
        self.options.pollable = pollable;
        self
    }

    /// The size of the io_uring fixed file table that holds the ring fds
    /// (see [`Ring::register_fd`]), registered when first needed. By
    /// default as many files as `RLIMIT_NOFILE` allows a process to open
    /// (the kernel's limit for the table) at that moment, up to 65536; 0
    /// keeps ring fds out of the table (they then work through their
    /// process fds). Other backends have no such table.
    /// [`Ring::spawn_thread`] passes the setting on.
    pub fn fixed_files(mut self, slots: u32) -> RingBuilder {
        self.options.fixed_files = Some(slots);
        self
    }

    /// Builds the ring; fails if the backend cannot be set up, with an
    /// error that says why, or if `OURO_BACKEND` names no backend.
    pub fn build<S>(self) -> io::Result<Ring<S>> {
        let kind = match self.backend {
            Some(kind) => Some(kind),
            None => BackendKind::from_env()?,
        };
        let mut ring = if kind == Some(BackendKind::Mock) {
            if self.options.pollable {
                return Err(crate::backend::not_pollable());
            }
            Ring::mock(Mock::new())
        } else {
            let (backend, fallback) = crate::backend::open(kind, self.entries, self.options)?;
            let mut ring = Ring::with_backend(backend, Clock::real(), self.entries);
            ring.fallback = fallback;
            ring
        };
        ring.msg_ring = self.msg_ring;
        ring.fixed_files = self.options.fixed_files;
        Ok(ring)
    }
}

impl Ring {
    /// A builder, to choose the backend (the state type is chosen by
    /// [`RingBuilder::build`]).
    pub fn builder() -> RingBuilder {
        RingBuilder {
            entries: 256,
            backend: None,
            msg_ring: true,
            options: crate::backend::Options::default(),
        }
    }
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
    pub(crate) fn child_builder(&self, entries: u32) -> RingBuilder {
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

    /// Runs the ring, delivering completions to their callbacks with
    /// `state`, until `mode` says to stop.
    ///
    /// A callback's error does not stop the other completions of its turn
    /// from being delivered; `run` returns it when the turn is over (the
    /// first one, if several failed; the others are logged through
    /// `tracing`). Calling `run` from inside a callback is an error.
    pub fn run(&mut self, state: &mut S, mode: RunMode) -> io::Result<()> {
        let _guard = RunGuard::enter(&self.running)?;
        // Left over only if a callback panicked.
        while !self.unsettled.is_empty() {
            self.settle_waiters(state);
        }
        let result = self.run_turns(state, mode);
        if self.backend.pollable_fd().is_some() {
            self.prepare_poll()?;
        }
        result
    }

    fn run_turns(&mut self, state: &mut S, mode: RunMode) -> io::Result<()> {
        loop {
            if mem::take(&mut self.stopped) {
                return Ok(());
            }
            let idle = self.slab.live() == 0
                && !self.messaging.waiting()
                && !self.messaging.has_outgoing()
                && self.files.moved.is_empty();
            if matches!(mode, RunMode::Once | RunMode::UntilDone) && idle {
                return Ok(());
            }
            let delivered = self.turn(state, mode)?;
            if let Some(err) = self.first_error.take() {
                return Err(err);
            }
            if mode == RunMode::NoWait || (mode == RunMode::Once && delivered > 0) {
                return Ok(());
            }
        }
    }

    fn turn(&mut self, state: &mut S, mode: RunMode) -> io::Result<usize> {
        self.flush_pending()?;
        let timeout = match mode {
            RunMode::NoWait => Some(0),
            // Publishing messages may have finished the last tasks: then
            // there is nothing to wait for.
            RunMode::Once | RunMode::UntilDone if self.slab.live() == 0 => Some(0),
            _ => self.wait_timeout(),
        };
        // A sleep, unless messages came since the turn looked.
        let timeout = match timeout {
            Some(0) => timeout,
            _ if self.messaging.before_sleep() => Some(0),
            _ => timeout,
        };
        self.backend.wait(timeout, &mut self.clock)?;
        if self.messaging.holds_doorbells && !self.backend.has_unsubmitted() {
            // The kernel has the doorbells: their targets' fds may close.
            self.messaging.release_doorbells();
        }
        let mut delivered = self.deliver_backend(state);
        delivered += self.deliver_messages(state);
        delivered += self.expire_timers(state);
        delivered += self.deliver_ready(state);
        Ok(delivered)
    }

    /// Before a pollable ring returns from `run`: what was queued goes to
    /// the kernel, and the ring's fd is made readable now if results wait
    /// in user space, or when its nearest timer is due (one kernel timeout
    /// per earlier deadline, not per run).
    fn prepare_poll(&mut self) -> io::Result<()> {
        self.flush_pending()?;
        let mail = self.messaging.before_sleep();
        let ready_now = mail
            || !self.ready.is_empty()
            || self.batch_pos < self.batch.len()
            || self.messaging.waiting();
        let now = self.clock.now();
        let armed = self.poll_timer.filter(|&at| at > now);
        let timer = self
            .timers
            .next_due()
            .filter(|&due| armed.is_none_or(|at| due < at));
        if let Some(due) = timer {
            self.poll_timer = Some(due);
        }
        let after = timer.map(|due| due.saturating_sub(now));
        self.backend.prepare_poll(ready_now, after)
    }

    /// How long the backend may wait: not at all when results or messages
    /// are ready, until the nearest timer, or without limit.
    fn wait_timeout(&self) -> Option<u64> {
        if !self.ready.is_empty() || self.batch_pos < self.batch.len() || self.messaging.waiting() {
            return Some(0);
        }
        let due = self.timers.next_due()?;
        Some(due.saturating_sub(self.clock.now()))
    }

    /// Hands queued cancel requests and tasks to the backend, flushing it
    /// when it is full; stops when it cannot make room.
    fn flush_pending(&mut self) -> io::Result<()> {
        if !self.files.moved.is_empty() {
            self.close_moved();
        }
        self.publish_messages();
        while let Some(&target) = self.cancels.front() {
            if self.backend.cancel(target) {
                self.cancels.pop_front();
            } else if !self.backend.flush()? {
                return Ok(());
            }
        }
        while let Some(&task) = self.pending.front() {
            let live = self.slab.live_index(task);
            if live.is_none() || self.slab.slots[task.index as usize].state != State::Pending {
                self.pending.pop_front();
                continue;
            }
            match self.start_in_backend(task) {
                Started::Full => {
                    if !self.backend.flush()? {
                        return Ok(());
                    }
                }
                started => {
                    self.pending.pop_front();
                    self.settle_start(task.index, started);
                }
            }
        }
        Ok(())
    }

    fn deliver_backend(&mut self, state: &mut S) -> usize {
        let Some(mut queued) = self.backend.queued() else {
            if self.batch_pos == self.batch.len() {
                self.batch.clear();
                self.batch_pos = 0;
                self.backend.reap(&mut self.batch);
            }
            return self.deliver_batch(state);
        };
        // Completions set aside while the ring waited for one of its own
        // (`take_fd`) come first.
        let mut delivered = self.deliver_batch(state);
        loop {
            // Only those queued now: completions that callbacks cause (by
            // flushing a full queue) wait for the next turn, after timers.
            for _ in 0..queued {
                let Some(completion) = self.backend.next_completion() else {
                    break;
                };
                delivered += self.deliver_raw(state, completion);
            }
            if !self.backend.settle_queue() {
                return delivered;
            }
            queued = self.backend.queued().unwrap_or(0);
        }
    }

    fn deliver_batch(&mut self, state: &mut S) -> usize {
        let mut delivered = 0;
        while let Some(&completion) = self.batch.get(self.batch_pos) {
            self.batch_pos += 1;
            delivered += self.deliver_raw(state, completion);
        }
        delivered
    }

    fn deliver_raw(&mut self, state: &mut S, c: RawCompletion) -> usize {
        match user_data::kind(c.user_data) {
            user_data::TASK => {
                let index = user_data::index(c.user_data);
                let known = self.slab.slots.get(index as usize).is_some_and(|slot| {
                    slot.state == State::Submitted
                        && user_data::matches(c.user_data, slot.generation)
                });
                if !known {
                    tracing::warn!(user_data = c.user_data, "completion for no known task");
                    return 0;
                }
                self.finish_inline(state, index, c.res, c.flags)
            }
            user_data::INTERNAL | user_data::MESSAGE => 0,
            user_data::PARCEL => self.parcel_landed(state, user_data::index(c.user_data), c.res),
            user_data::DOORBELL => {
                self.doorbell_failed(c);
                0
            }
            kind => {
                tracing::warn!(kind, "completion of unknown kind");
                0
            }
        }
    }

    fn expire_timers(&mut self, state: &mut S) -> usize {
        if self.timers.len() == 0 {
            return 0;
        }
        let now = self.clock.now();
        let mut delivered = 0;
        while let Some(index) = self.timers.pop_due(now) {
            let slot = &mut self.slab.slots[index as usize];
            match slot.op {
                Op::Timer { at, deadline } if slot.state == State::Timer => {
                    let res = if deadline < at {
                        slot.cancel = CancelReason::Deadline;
                        -ETIME
                    } else {
                        0
                    };
                    delivered += self.finish(state, index, res, 0);
                }
                _ => self.request_cancel(index, CancelReason::Deadline),
            }
        }
        delivered
    }

    /// Delivers the results that were ready when the turn began; those that
    /// callbacks settle now wait for the next turn, so a chain of zero-delay
    /// timers cannot starve IO.
    fn deliver_ready(&mut self, state: &mut S) -> usize {
        let mut delivered = 0;
        for _ in 0..self.ready.len() {
            let Some(ready) = self.ready.pop_front() else {
                break;
            };
            let index = ready.task.index;
            let slot = &self.slab.slots[index as usize];
            if slot.generation != ready.task.generation || slot.state != State::Ready {
                continue;
            }
            delivered += self.finish(state, index, ready.res, 0);
        }
        delivered
    }

    /// Delivers a task's completion: builds the outcome from what the task
    /// owned, frees the slot (unless more completions follow), runs the
    /// callback, then settles the cancel tasks that waited for it.
    pub(crate) fn finish(&mut self, state: &mut S, index: u32, res: i32, flags: u32) -> usize {
        self.finish_inline(state, index, res, flags)
    }

    /// [`finish`](Self::finish) inlined into the completion loop: each
    /// completion skips a call and its register saves.
    #[inline(always)]
    fn finish_inline(&mut self, state: &mut S, index: u32, res: i32, flags: u32) -> usize {
        if flags & MORE != 0 {
            return self.deliver_shot(state, index, res, flags);
        }
        // The slot keeps its op until `take_outcome`: released but not
        // reused before then.
        let Finished {
            task,
            callback,
            msg,
            key,
            deadline,
            waiters,
            extras,
        } = self.slab.release_finished(index);
        if extras != 0 {
            self.release_extras(index, extras);
        }
        let result = if res >= 0 {
            Ok(res as u32)
        } else {
            Err(self.failure(index, res, deadline))
        };
        if waiters != NIL {
            let canceled = result.as_ref().is_err_and(|e| {
                matches!(e.raw_os_error(), Some(code) if code == libc::ECANCELED || code == ETIME)
            });
            self.unsettled.push((waiters, canceled));
        }
        let result = if self.files.in_use() {
            self.settle_files(index, result, true)
        } else {
            result
        };
        match callback {
            Some(callback) => {
                // Built in place: the outcome is large, and moving it into
                // the completion would copy it on every delivery.
                let completion = Completion {
                    task,
                    msg,
                    key,
                    more: false,
                    outcome: self.take_outcome(index, result, flags),
                };
                if let Err(err) = callback(state, self, completion) {
                    self.record_error(err);
                }
            }
            None => self.drop_outcome(index, result, flags),
        }
        if waiters != NIL {
            self.settle_waiters(state);
        }
        1
    }

    /// Undoes what a finished task had besides its slot: its entry in the
    /// timers, the shared owners of its fds.
    #[inline(never)]
    fn release_extras(&mut self, index: u32, extras: u8) {
        if extras & HAS_TIMER != 0 {
            self.timers.remove(index);
        }
        if extras & HOLDS_OWNERS != 0 {
            self.keeps.release(index);
        }
    }

    /// Puts task `index` in the timers, to be woken at `at`.
    fn schedule_timer(&mut self, index: u32, at: u64) {
        self.slab.slots[index as usize].extras |= HAS_TIMER;
        self.timers.schedule(index, at);
    }

    /// The error of a failed final completion: the rejection the ring
    /// recorded, or the OS code as user space knows it (`ETIME` for a
    /// cancellation by the deadline). Out of line: the success path stays
    /// short.
    #[inline(never)]
    fn failure(&mut self, index: u32, res: i32, deadline: bool) -> io::Error {
        if res == REJECTED {
            return self.take_rejection(index);
        }
        let code = match user_space_code(res) {
            code if code == -libc::ECANCELED && deadline => ETIME,
            code => -code,
        };
        io::Error::from_raw_os_error(code)
    }

    /// Delivers one completion of a multishot task that goes on: the slot
    /// stays live until the final one.
    #[inline(never)]
    fn deliver_shot(&mut self, state: &mut S, index: u32, res: i32, flags: u32) -> usize {
        let task = self.slab.handle(index);
        let slot = &self.slab.slots[index as usize];
        let mut result = raw_result(user_space_code(res));
        if matches!(slot.op, Op::AcceptDirect { .. }) {
            result = self.settle_files(index, result, false);
        }
        let slot = &mut self.slab.slots[index as usize];
        let outcome = slot.op.shot_outcome(result, flags, &self.files);
        let Some(callback) = slot.callback else {
            return 1;
        };
        let completion = Completion {
            task,
            msg: slot.msg,
            key: slot.key,
            more: true,
            outcome,
        };
        if let Err(err) = callback(state, self, completion) {
            self.record_error(err);
        }
        1
    }

    /// A completion nobody listens to: what the op owned is dropped.
    #[inline(never)]
    fn drop_outcome(&mut self, index: u32, result: io::Result<u32>, flags: u32) {
        drop(self.take_outcome(index, result, flags));
    }

    /// Turns a finished task's op into its outcome, leaving `Op::Noop`.
    fn take_outcome(&mut self, index: u32, result: io::Result<u32>, flags: u32) -> Outcome {
        self.slab.slots[index as usize]
            .op
            .take_outcome(result, flags, &mut self.pools, &self.files)
    }

    #[cold]
    pub(crate) fn record_error(&mut self, err: io::Error) {
        if self.first_error.is_none() {
            self.first_error = Some(err);
        } else {
            tracing::error!(error = %err, "callback failed (an earlier error of this turn is returned)");
        }
    }

    #[cold]
    fn take_rejection(&mut self, index: u32) -> io::Error {
        match self.rejections.iter().position(|(i, _)| *i == index) {
            Some(pos) => self.rejections.swap_remove(pos).1,
            None => io::Error::from_raw_os_error(libc::EINVAL),
        }
    }

    /// Tells the cancel tasks on the last list of `unsettled` how their
    /// target ended, then drops the list. It stays there meanwhile, so that
    /// a panicking callback loses none of them (`run` goes on with them).
    #[inline(never)]
    fn settle_waiters(&mut self, state: &mut S) {
        let depth = self.unsettled.len();
        loop {
            let (head, canceled) = &mut self.unsettled[depth - 1];
            let canceled = *canceled;
            let Some(canceller) = self.waiters.pop(head) else {
                break;
            };
            match &mut self.slab.slots[canceller as usize].op {
                Op::Cancel => {
                    let res = if canceled { 0 } else { -libc::EALREADY };
                    self.finish(state, canceller, res, 0);
                }
                Op::CancelAll {
                    pending,
                    canceled: count,
                } => {
                    *pending -= 1;
                    *count += u32::from(canceled);
                    if *pending == 0 {
                        self.finish(state, canceller, 0, 0);
                    }
                }
                _ => {}
            }
        }
        self.unsettled.truncate(depth - 1);
    }

    // -- scheduling ---------------------------------------------------------

    /// Schedules an operation of the backend's.
    #[inline(always)]
    pub(crate) fn schedule(&mut self, op: Op, ctx: Ctx<S>) -> Task {
        let task = self.slab.insert(op, ctx);
        self.add_fd_users(task.index);
        // Behind others waiting for room: in order, after them.
        if !self.pending.is_empty() {
            self.make_pending(task);
            return task;
        }
        // A new slot is `Submitted` already: nothing to settle.
        match self.start_in_backend(task) {
            Started::Yes => {}
            Started::Full => self.make_pending(task),
            started => self.settle_start(task.index, started),
        }
        task
    }

    /// Schedules a task that fails at once with `err` (bad input).
    pub(crate) fn reject(&mut self, op: Op, ctx: Ctx<S>, err: io::Error) -> Task {
        let task = self.slab.insert(op, ctx);
        self.add_fd_users(task.index);
        self.rejections.push((task.index, err));
        self.make_ready(task.index, REJECTED);
        task
    }

    #[inline(always)]
    fn start_in_backend(&mut self, task: Task) -> Started {
        let ud = user_data::task(task.index, task.generation);
        let op = &mut self.slab.slots[task.index as usize].op;
        // SAFETY: the op lives in the task's slot until the slot is released,
        // which happens only at the task's final completion; when the slab
        // grows the `Op` moves but the heap blocks its pointers lead to do
        // not; and dropping the ring cancels and drains the backend before
        // any op is freed (leaking the memory if the kernel never answers).
        unsafe { self.backend.start(ud, op, &self.clock) }
    }

    #[cold]
    #[inline(never)]
    fn settle_start(&mut self, index: u32, started: Started) {
        match started {
            Started::Yes => self.slab.slots[index as usize].state = State::Submitted,
            Started::Done(res) => self.make_ready(index, res),
            Started::Failed(err) => {
                self.rejections.push((index, err));
                self.make_ready(index, REJECTED);
            }
            Started::Full => self.make_pending(self.slab.handle(index)),
        }
    }

    #[cold]
    #[inline(never)]
    fn make_pending(&mut self, task: Task) {
        self.slab.slots[task.index as usize].state = State::Pending;
        self.pending.push_back(task);
    }

    pub(crate) fn make_ready(&mut self, index: u32, res: i32) {
        self.slab.slots[index as usize].state = State::Ready;
        let task = self.slab.handle(index);
        self.ready.push_back(Ready { task, res });
    }

    fn start_timer(&mut self, index: u32, at: u64) {
        if at == 0 {
            return self.make_ready(index, 0);
        }
        self.slab.slots[index as usize].state = State::Timer;
        self.schedule_timer(index, at);
    }

    fn start_cancel(&mut self, index: u32, target: Task) {
        let Some(target) = self.slab.live_index(target).filter(|&t| t != index) else {
            return self.make_ready(index, -libc::ENOENT);
        };
        self.slab.slots[index as usize].state = State::Waiting;
        self.waiters
            .push(&mut self.slab.slots[target as usize].link, index);
        self.request_cancel(target, CancelReason::Explicit);
    }

    fn start_cancel_all(&mut self, index: u32) {
        self.slab.slots[index as usize].state = State::Waiting;
        let mut count = 0;
        for target in 0..self.slab.slots.len() as u32 {
            let slot = &mut self.slab.slots[target as usize];
            if target == index || slot.state == State::Free || slot.op.is_cancel() {
                continue;
            }
            self.waiters.push(&mut slot.link, index);
            self.request_cancel(target, CancelReason::Explicit);
            count += 1;
        }
        if count == 0 {
            return self.make_ready(index, 0);
        }
        if let Op::CancelAll { pending, .. } = &mut self.slab.slots[index as usize].op {
            *pending = count;
        }
    }

    /// Starts cancelling a live task; its callback will see `ECANCELED`, or
    /// `ETIME` for a deadline, unless it finishes on its own first.
    fn request_cancel(&mut self, index: u32, reason: CancelReason) {
        let slot = &mut self.slab.slots[index as usize];
        // A ring fd's close always runs: it is the file's only way out.
        if slot.cancel != CancelReason::None || matches!(slot.op, Op::CloseRing { .. }) {
            return;
        }
        let res = match reason {
            CancelReason::Deadline => -ETIME,
            _ => -libc::ECANCELED,
        };
        match slot.state {
            State::Submitted => {
                slot.cancel = reason;
                let ud = user_data::task(index, slot.generation);
                if !self.backend.cancel(ud) {
                    self.cancels.push_back(ud);
                }
            }
            State::Pending | State::Timer => {
                slot.cancel = reason;
                self.timers.remove(index);
                self.make_ready(index, res);
            }
            State::Waiting => {
                // A stop task waiting for its thread to end: only the wait
                // ends (the request went out already). The thread's later
                // "ended" finds the slot finished, or reused under another
                // generation, and is ignored.
                let Op::StopThread { thread, .. } = &slot.op else {
                    return;
                };
                slot.cancel = reason;
                let task = Task {
                    index,
                    generation: slot.generation,
                    ring: self.files.ring_id(),
                };
                if let Some(mailbox) = &self.messaging.mailbox {
                    thread.remove_waiter(mailbox, task);
                }
                self.timers.remove(index);
                self.make_ready(index, res);
            }
            State::Ready | State::Free => {}
        }
    }

    // -- operations ---------------------------------------------------------

    /// Does nothing, through the backend (an io_uring `NOP`): a round trip.
    pub fn noop(&mut self, ctx: Ctx<S>) -> Task {
        self.schedule(Op::Noop, ctx)
    }

    /// Fires after `after`. Timers live in user space and never cost a
    /// system call; a zero duration fires on the next turn.
    pub fn timer(&mut self, after: Duration, ctx: Ctx<S>) -> Task {
        let at = if after.is_zero() {
            0
        } else {
            self.clock.now().saturating_add(duration_ns(after)).max(1)
        };
        let op = Op::Timer {
            at,
            deadline: u64::MAX,
        };
        // Timers and cancels name no fd and never reach the backend.
        let task = self.slab.insert(op, ctx);
        self.start_timer(task.index, at);
        task
    }

    /// Cancels `target`. Its callback runs first, with `ECANCELED` (see
    /// [`is_canceled`](crate::is_canceled)) unless it finished on its own
    /// before the cancellation took effect; then this task's callback runs,
    /// with [`Outcome::Cancel`](crate::Outcome::Cancel): `Ok` (cancelled),
    /// `ENOENT` (no such live task: finished already, or a stale handle —
    /// nothing else is touched) or `EALREADY` (it finished anyway).
    pub fn cancel(&mut self, target: Task, ctx: Ctx<S>) -> Task {
        let task = self.slab.insert(Op::Cancel, ctx);
        self.start_cancel(task.index, target);
        task
    }

    /// Cancels every task of the ring except cancel tasks, as
    /// [`cancel`](Ring::cancel) does one; this task's callback runs after all
    /// of theirs, with how many were cancelled.
    pub fn cancel_all(&mut self, ctx: Ctx<S>) -> Task {
        let op = Op::CancelAll {
            pending: 0,
            canceled: 0,
        };
        let task = self.slab.insert(op, ctx);
        self.start_cancel_all(task.index);
        task
    }

    /// Gives `task` a deadline (replacing an earlier one): if it has not
    /// finished by `at`, it is cancelled and its callback gets `ETIME` (see
    /// [`is_deadline`](crate::is_deadline)), exactly once. A deadline in the
    /// past takes effect on the next turn. Cancel tasks ignore deadlines.
    ///
    /// Fails with `NotFound` if the task is no longer live.
    pub fn set_deadline(&mut self, task: Task, at: Instant) -> io::Result<()> {
        let index = self
            .slab
            .live_index(task)
            .ok_or_else(|| io::Error::from_raw_os_error(libc::ENOENT))?;
        let at = self.clock.to_ns(at);
        let slot = &mut self.slab.slots[index as usize];
        match (&mut slot.op, slot.state) {
            // A stop task's wait for its thread can end at a deadline too.
            (Op::StopThread { .. }, State::Waiting) => self.schedule_timer(index, at),
            (_, State::Ready | State::Waiting) => {}
            (Op::Timer { at: fire, deadline }, _) => {
                *deadline = at;
                if slot.state == State::Timer {
                    let wake = at.min(*fire);
                    self.schedule_timer(index, wake);
                }
            }
            _ => self.schedule_timer(index, at),
        }
        Ok(())
    }

    /// Accepts a connection on a listening socket; the new socket is
    /// close-on-exec. Kernel: 5.5.
    pub fn accept(&mut self, listener: impl OpFd, ctx: Ctx<S>) -> Task {
        let fd = self.op_fd(listener);
        let addr = self.pools.addr();
        self.schedule(Op::Accept { fd, addr }, ctx)
    }

    /// Connects a socket to `addr`. Kernel: 5.5.
    pub fn connect(&mut self, fd: impl OpFd, addr: impl Into<SockAddr>, ctx: Ctx<S>) -> Task {
        let fd = self.op_fd(fd);
        let mut buf = self.pools.addr();
        buf.set(&addr.into());
        self.schedule(Op::Connect { fd, addr: buf }, ctx)
    }

    /// Binds a socket to `addr`. Kernel: 6.11 for the io_uring op; older
    /// kernels do the (non-blocking) system call.
    pub fn bind(&mut self, fd: impl OpFd, addr: impl Into<SockAddr>, ctx: Ctx<S>) -> Task {
        let fd = self.op_fd(fd);
        let mut buf = self.pools.addr();
        buf.set(&addr.into());
        self.schedule(Op::Bind { fd, addr: buf }, ctx)
    }

    /// Makes a bound socket listen. Kernel: 6.11 for the io_uring op; older
    /// kernels do the system call.
    pub fn listen(&mut self, fd: impl OpFd, backlog: i32, ctx: Ctx<S>) -> Task {
        let fd = self.op_fd(fd);
        self.schedule(Op::Listen { fd, backlog }, ctx)
    }

    /// Creates a close-on-exec socket. Kernel: 5.19 for the io_uring op;
    /// older kernels do the system call.
    pub fn socket(
        &mut self,
        domain: Domain,
        ty: Type,
        protocol: Option<Protocol>,
        ctx: Ctx<S>,
    ) -> Task {
        let op = Op::Socket {
            domain: domain.into(),
            ty: ty.into(),
            protocol: protocol.map(i32::from).unwrap_or(0),
        };
        self.schedule(op, ctx)
    }

    /// Creates a socket as a ring fd ([`Outcome::SocketDirect`]), e.g. to
    /// [`connect`](Ring::connect) with. On io_uring (5.19) the kernel puts
    /// it straight into the ring's fixed file table: no process fd at all,
    /// so [`Ring::fd`] cannot lend one (set options through an op, or
    /// [take it out](Ring::take_fd)); when the table is full or missing,
    /// and on the other backends, the socket is made as
    /// [`socket`](Ring::socket) makes it and registered.
    ///
    /// [`Outcome::SocketDirect`]: crate::Outcome::SocketDirect
    pub fn socket_direct(
        &mut self,
        domain: Domain,
        ty: Type,
        protocol: Option<Protocol>,
        ctx: Ctx<S>,
    ) -> Task {
        let op = Op::SocketDirect {
            domain: domain.into(),
            ty: ty.into(),
            protocol: protocol.map(i32::from).unwrap_or(0),
            into_table: false,
        };
        self.files.directs_live += 1;
        self.backend.ensure_fixed_table();
        self.schedule(op, ctx)
    }

    /// Sends `buf` on a connected socket (with `MSG_NOSIGNAL`: a closed peer
    /// is an `EPIPE` error, not a signal). Kernel: 5.6.
    pub fn send(&mut self, fd: impl OpFd, buf: impl IntoBuf, ctx: Ctx<S>) -> Task {
        let op = Op::Send {
            fd: self.op_fd(fd),
            buf: buf.into_buf(),
            flags: libc::MSG_NOSIGNAL,
        };
        self.schedule(op, ctx)
    }

    /// Receives into `buf`'s spare room (a `Vec`'s spare capacity: give it
    /// some; a buffer without room fails with `InvalidInput`). 0 bytes means
    /// the peer closed. Kernel: 5.6.
    pub fn recv(&mut self, fd: impl OpFd, buf: impl IntoBufMut, ctx: Ctx<S>) -> Task {
        let fd = self.op_fd(fd);
        match unusable_read_buffer(buf) {
            Ok(buf) => self.schedule(Op::Recv { fd, buf, flags: 0 }, ctx),
            Err((buf, err)) => self.reject(Op::Recv { fd, buf, flags: 0 }, ctx, err),
        }
    }

    /// Reads into `buf`'s spare room at `offset` (a buffer without room,
    /// or an offset beyond `i64::MAX`, fails with `InvalidInput`). 0 bytes
    /// means end of file. Kernel: 5.6.
    pub fn read(
        &mut self,
        fd: impl OpFd,
        buf: impl IntoBufMut,
        offset: Offset,
        ctx: Ctx<S>,
    ) -> Task {
        let (fd, raw) = (self.op_fd(fd), offset.raw());
        let offset = raw.unwrap_or(0);
        let checked = match raw {
            Some(_) => unusable_read_buffer(buf),
            None => Err((buf.into_buf_mut().unwrap_or_else(|buf| buf), offset_error())),
        };
        match checked {
            Ok(buf) => self.schedule(Op::Read { fd, buf, offset }, ctx),
            Err((buf, err)) => self.reject(Op::Read { fd, buf, offset }, ctx, err),
        }
    }

    /// Writes `buf` at `offset`; a partial write is not an error (re-submit
    /// the rest: [`Buf::consume`](crate::Buf::consume) what was written and
    /// pass the `Buf` back). An offset beyond `i64::MAX` fails with
    /// `InvalidInput`. Kernel: 5.6.
    pub fn write(&mut self, fd: impl OpFd, buf: impl IntoBuf, offset: Offset, ctx: Ctx<S>) -> Task {
        let raw = offset.raw();
        let op = Op::Write {
            fd: self.op_fd(fd),
            buf: buf.into_buf(),
            offset: raw.unwrap_or(0),
        };
        if raw.is_none() {
            return self.reject(op, ctx, offset_error());
        }
        self.schedule(op, ctx)
    }

    /// Reads into the buffers' spare room, in order (buffers without any
    /// room, or an offset beyond `i64::MAX`, fail with `InvalidInput`).
    /// Kernel: 5.1.
    pub fn readv<B: IoBufMut>(
        &mut self,
        fd: impl OpFd,
        bufs: Vec<B>,
        offset: Offset,
        ctx: Ctx<S>,
    ) -> Task {
        let no_room = bufs.iter().all(|buf| buf.spare_len() == 0);
        let raw = offset.raw();
        let op = Op::Readv {
            fd: self.op_fd(fd),
            bufs: BufVec::new_mut(bufs),
            iov: self.pools.iov(),
            offset: raw.unwrap_or(0),
        };
        if raw.is_none() {
            return self.reject(op, ctx, offset_error());
        }
        if no_room {
            return self.reject(op, ctx, no_room_error());
        }
        self.schedule(op, ctx)
    }

    /// Writes the buffers, in order (an offset beyond `i64::MAX` fails with
    /// `InvalidInput`). Kernel: 5.1.
    pub fn writev<B: IoBuf>(
        &mut self,
        fd: impl OpFd,
        bufs: Vec<B>,
        offset: Offset,
        ctx: Ctx<S>,
    ) -> Task {
        let raw = offset.raw();
        let op = Op::Writev {
            fd: self.op_fd(fd),
            bufs: BufVec::new(bufs),
            iov: self.pools.iov(),
            offset: raw.unwrap_or(0),
        };
        if raw.is_none() {
            return self.reject(op, ctx, offset_error());
        }
        self.schedule(op, ctx)
    }

    /// Closes `fd`: an `OwnedFd`, closed even if the task is cancelled
    /// before it reaches the kernel; or a [`RingFd`], which goes stale at
    /// once (new operations naming it fail with `EBADF`) — the tasks still
    /// naming it are cancelled, and the file is closed once the last of
    /// them has completed (their callbacks run first, with `ECANCELED` or
    /// their own result). A ring fd's close cannot be cancelled; a stale
    /// one fails with `EBADF`. Kernel: 5.6 (a fixed file: 5.15).
    pub fn close(&mut self, fd: impl CloseFd, ctx: Ctx<S>) -> Task {
        match fd.closing() {
            Closing::Owned(fd) => self.schedule(Op::Close { fd: Some(fd) }, ctx),
            Closing::Ring(fd) => self.close_ring_fd(fd, ctx),
        }
    }

    /// Waits until `fd` is ready for `mask`; returns the bits that are set.
    /// Kernel: 5.1.
    pub fn poll(&mut self, fd: impl OpFd, mask: PollMask, ctx: Ctx<S>) -> Task {
        let op = Op::Poll {
            fd: self.op_fd(fd),
            mask: mask.bits(),
        };
        self.schedule(op, ctx)
    }

    /// Opens `path` (relative to the current directory). A path with a NUL
    /// byte fails with `InvalidInput`. Kernel: 5.6.
    pub fn open(&mut self, path: impl AsRef<Path>, options: &OpenOptions, ctx: Ctx<S>) -> Task {
        let (flags, mode) = (options.flags(), options.mode_bits());
        match self.pools.path(path.as_ref()) {
            Ok(path) => self.schedule(
                Op::Open {
                    dir: libc::AT_FDCWD,
                    path,
                    flags,
                    mode,
                },
                ctx,
            ),
            Err(err) => self.reject(
                Op::Open {
                    dir: libc::AT_FDCWD,
                    path: Vec::new(),
                    flags,
                    mode,
                },
                ctx,
                err,
            ),
        }
    }

    /// Opens `path` (relative to the current directory) as a ring fd
    /// ([`Outcome::OpenDirect`]). On io_uring (with the fixed file table,
    /// 5.19) the kernel puts the file straight into the table: no process fd at
    /// all, so [`Ring::fd`] cannot lend one ([take it out](Ring::take_fd)
    /// for calls that need one); when the table is full or missing, and on
    /// the other backends, the file is opened as [`open`](Ring::open) opens
    /// it and registered. A path with a NUL byte fails with `InvalidInput`.
    ///
    /// [`Outcome::OpenDirect`]: crate::Outcome::OpenDirect
    pub fn open_direct(
        &mut self,
        path: impl AsRef<Path>,
        options: &OpenOptions,
        ctx: Ctx<S>,
    ) -> Task {
        let (flags, mode) = (options.flags(), options.mode_bits());
        let op = |path| Op::OpenDirect {
            dir: libc::AT_FDCWD,
            path,
            flags,
            mode,
            into_table: false,
        };
        self.files.directs_live += 1;
        match self.pools.path(path.as_ref()) {
            Ok(path) => {
                self.backend.ensure_fixed_table();
                self.schedule(op(path), ctx)
            }
            Err(err) => self.reject(op(Vec::new()), ctx, err),
        }
    }

    /// The metadata of `path`, following symbolic links. Kernel: 5.6.
    pub fn stat(&mut self, path: impl AsRef<Path>, ctx: Ctx<S>) -> Task {
        self.statx(path.as_ref(), 0, ctx)
    }

    /// The metadata of `path` itself, even if it is a symbolic link.
    /// Kernel: 5.6.
    pub fn lstat(&mut self, path: impl AsRef<Path>, ctx: Ctx<S>) -> Task {
        self.statx(path.as_ref(), libc::AT_SYMLINK_NOFOLLOW, ctx)
    }

    fn statx(&mut self, path: &Path, flags: i32, ctx: Ctx<S>) -> Task {
        let out = self.pools.stat();
        match self.pools.path(path) {
            Ok(path) => self.schedule(
                Op::Stat {
                    dir: libc::AT_FDCWD,
                    path,
                    flags,
                    out,
                },
                ctx,
            ),
            Err(err) => self.reject(
                Op::Stat {
                    dir: libc::AT_FDCWD,
                    path: Vec::new(),
                    flags,
                    out,
                },
                ctx,
                err,
            ),
        }
    }

    /// Flushes a file's data and metadata to its device. Kernel: 5.1.
    pub fn fsync(&mut self, fd: impl OpFd, ctx: Ctx<S>) -> Task {
        let fd = self.op_fd(fd);
        self.schedule(
            Op::Fsync {
                fd,
                datasync: false,
            },
            ctx,
        )
    }

    /// Flushes a file's data (and the metadata needed to read it back).
    /// Kernel: 5.1.
    pub fn fdatasync(&mut self, fd: impl OpFd, ctx: Ctx<S>) -> Task {
        let fd = self.op_fd(fd);
        self.schedule(Op::Fsync { fd, datasync: true }, ctx)
    }

    /// Moves up to `len` bytes from `fd_in` to `fd_out`, one of which must
    /// be a pipe; `None` offsets use (and advance) the current position.
    /// Kernel: 5.7.
    pub fn splice(
        &mut self,
        fd_in: impl OpFd,
        off_in: Option<u64>,
        fd_out: impl OpFd,
        off_out: Option<u64>,
        len: u32,
        ctx: Ctx<S>,
    ) -> Task {
        let offset = |o: Option<u64>| o.map_or(-1, |o| i64::try_from(o).unwrap_or(i64::MAX));
        let op = Op::Splice {
            fd_in: self.op_fd(fd_in),
            off_in: offset(off_in),
            fd_out: self.op_fd(fd_out),
            off_out: offset(off_out),
            len,
            flags: 0,
        };
        self.schedule(op, ctx)
    }

    /// Shuts down one or both directions of a socket. Kernel: 5.11 for the
    /// io_uring op; older kernels do the system call.
    pub fn shutdown(&mut self, fd: impl OpFd, how: std::net::Shutdown, ctx: Ctx<S>) -> Task {
        let how = match how {
            std::net::Shutdown::Read => libc::SHUT_RD,
            std::net::Shutdown::Write => libc::SHUT_WR,
            std::net::Shutdown::Both => libc::SHUT_RDWR,
        };
        let fd = self.op_fd(fd);
        self.schedule(Op::Shutdown { fd, how }, ctx)
    }

    /// Sends the buffers as one message, to `to` on an unconnected socket
    /// (with `MSG_NOSIGNAL`). Kernel: 5.3.
    pub fn sendmsg<B: IoBuf>(
        &mut self,
        fd: impl OpFd,
        bufs: Vec<B>,
        to: Option<SockAddr>,
        ctx: Ctx<S>,
    ) -> Task {
        let mut msg = self.pools.msg();
        match &to {
            Some(addr) => msg.addr.set(addr),
            None => msg.addr.len = 0,
        }
        let op = Op::SendMsg {
            fd: self.op_fd(fd),
            bufs: BufVec::new(bufs),
            msg,
            flags: libc::MSG_NOSIGNAL,
        };
        self.schedule(op, ctx)
    }

    /// Receives one message into the buffers' spare room, with the sender's
    /// address (buffers without any room fail with `InvalidInput`).
    /// Kernel: 5.3.
    pub fn recvmsg<B: IoBufMut>(&mut self, fd: impl OpFd, bufs: Vec<B>, ctx: Ctx<S>) -> Task {
        let no_room = bufs.iter().all(|buf| buf.spare_len() == 0);
        let op = Op::RecvMsg {
            fd: self.op_fd(fd),
            bufs: BufVec::new_mut(bufs),
            msg: self.pools.msg(),
            flags: 0,
        };
        if no_room {
            return self.reject(op, ctx, no_room_error());
        }
        self.schedule(op, ctx)
    }
}

/// The kernel's own error codes (`ERESTARTSYS` = 512 and up, to
/// `MAX_ERRNO`), negated: meant never to leave it, but an io_uring request
/// can end with one (a splice interrupted on a worker thread by its
/// cancellation ends with `ERESTARTSYS`). `REJECTED` lies outside.
const KERNEL_INTERNAL: std::ops::RangeInclusive<i32> = -4095..=-512;

/// What user space would have seen for a kernel-internal error code: a
/// restart code means the call was interrupted — by its cancellation (or
/// the ring's teardown), as nothing else signals io_uring's workers — so
/// `ECANCELED`, which `finish` turns into `ETIME` for a deadline;
/// `ENOIOCTLCMD` is `ENOTTY` and `ENOTSUPP` is `EOPNOTSUPP`, as the system
/// calls answer; any other becomes `EIO` rather than a number no `errno`
/// means.
#[cold]
#[inline(never)]
fn user_space_error(res: i32) -> i32 {
    /// Linux's `include/linux/errno.h`.
    const ERESTARTSYS: i32 = 512;
    const ERESTARTNOINTR: i32 = 513;
    const ERESTARTNOHAND: i32 = 514;
    const ENOIOCTLCMD: i32 = 515;
    const ERESTART_RESTARTBLOCK: i32 = 516;
    const ENOTSUPP: i32 = 524;
    match -res {
        ERESTARTSYS | ERESTARTNOINTR | ERESTARTNOHAND | ERESTART_RESTARTBLOCK => -libc::ECANCELED,
        ENOIOCTLCMD => -libc::ENOTTY,
        ENOTSUPP => -libc::EOPNOTSUPP,
        code => {
            tracing::warn!(code, "a kernel-internal error code reached user space");
            -libc::EIO
        }
    }
}

/// `res` with a kernel-internal code replaced by what user space would see.
fn user_space_code(res: i32) -> i32 {
    if KERNEL_INTERNAL.contains(&res) {
        user_space_error(res)
    } else {
        res
    }
}

/// A backend's result as a count, fd or mask, or the OS error.
fn raw_result(res: i32) -> io::Result<u32> {
    if res < 0 {
        Err(io::Error::from_raw_os_error(-res))
    } else {
        Ok(res as u32)
    }
}

/// A buffer a read or recv cannot use: read-only, or without spare room
/// (which would read 0 bytes and look like end of file).
fn unusable_read_buffer(buf: impl IntoBufMut) -> Result<Buf, (Buf, io::Error)> {
    let mut buf = match buf.into_buf_mut() {
        Ok(buf) => buf,
        Err(buf) => {
            let err = io::Error::new(
                io::ErrorKind::InvalidInput,
                "cannot read into a read-only buffer",
            );
            return Err((buf, err));
        }
    };
    if buf.spare_parts().1 == 0 {
        return Err((buf, no_room_error()));
    }
    Ok(buf)
}

impl<S> Ring<S> {
    /// Makes a group of `count` buffers (a power of two, at most 32768) of
    /// `size` bytes (1 to 4 GiB) for this ring's
    /// [`recv_multishot`](Ring::recv_multishot). On io_uring (5.19) the
    /// kernel picks a buffer only when data arrives. Other sizes are an
    /// `InvalidInput` error; a group too large for memory is an
    /// `OutOfMemory` error.
    pub fn buffer_group(&mut self, count: u16, size: usize) -> io::Result<BufferGroup> {
        let id = u16::try_from(self.groups.len())
            .map_err(|_| io::Error::other("too many buffer groups on one ring"))?;
        let group = Rc::new(GroupInner::new(self.files.ring_id(), id, count, size)?);
        self.backend.register_group(&group);
        self.groups.push(group.clone());
        Ok(BufferGroup { inner: group })
    }

    /// Accepts connections until cancelled or an error ends it: one
    /// completion per connection ([`Outcome::AcceptMulti`]), the last one
    /// final ([`Completion::is_final`]). Kernel: 5.19; on older kernels each
    /// task accepts one connection and ends (re-arm on a final success).
    ///
    /// [`Outcome::AcceptMulti`]: crate::Outcome::AcceptMulti
    pub fn accept_multishot(&mut self, listener: impl OpFd, ctx: Ctx<S>) -> Task {
        let fd = self.op_fd(listener);
        self.schedule(Op::AcceptMulti { fd }, ctx)
    }

    /// Like [`accept_multishot`](Ring::accept_multishot), but each
    /// connection arrives as a [`RingFd`] ([`Outcome::AcceptDirect`]). On
    /// io_uring (5.19) the kernel puts each one straight into the ring's
    /// fixed file table: no process fd at all, so [`Ring::fd`] cannot lend
    /// one (socket options set on the listener, such as `TCP_NODELAY`, are
    /// inherited by accepted sockets on Linux); when the table is full or
    /// missing, connections are accepted as plain fds and registered. On the
    /// other backends they are accepted and registered. A connection the
    /// kernel accepted into a table that filled meanwhile is lost: the task
    /// ends with [`FdTableFull`](crate::FdTableFull) (the kernel's `ENFILE`;
    /// see [`is_fd_table_full`](crate::is_fd_table_full)); re-arm it: the
    /// ring then accepts plain fds.
    ///
    /// [`Outcome::AcceptDirect`]: crate::Outcome::AcceptDirect
    pub fn accept_multishot_direct(&mut self, listener: impl OpFd, ctx: Ctx<S>) -> Task {
        let fd = self.op_fd(listener);
        self.files.directs_live += 1;
        self.backend.ensure_fixed_table();
        self.schedule(
            Op::AcceptDirect {
                fd,
                into_table: false,
            },
            ctx,
        )
    }

    /// Receives until the peer closes, cancelled, or an error: one
    /// completion per arrival ([`Outcome::RecvMulti`]), each in a buffer of
    /// `group` taken only when data arrives. `ENOBUFS` ends the task when
    /// every buffer is held: drop some and re-arm. Kernel: 6.0; on older
    /// kernels each task receives once and ends (re-arm on a final success).
    /// A group made by another ring fails the task with `InvalidInput` and
    /// is left as it was.
    ///
    /// [`Outcome::RecvMulti`]: crate::Outcome::RecvMulti
    pub fn recv_multishot(&mut self, fd: impl OpFd, group: &BufferGroup, ctx: Ctx<S>) -> Task {
        let op = Op::RecvMulti {
            fd: self.op_fd(fd),
            group: group.inner.clone(),
            held: None,
        };
        if group.inner.ring() != self.files.ring_id() {
            // The backend would resolve the group's id to this ring's own
            // group of that id (or none): never let it see the group.
            let err = io::Error::new(
                io::ErrorKind::InvalidInput,
                "the buffer group belongs to another ring",
            );
            return self.reject(op, ctx, err);
        }
        self.schedule(op, ctx)
    }
}

impl<S> Ring<S> {
    /// Hands `fd` to the ring for good and returns its handle, which every
    /// operation takes in place of any other fd (see [`RingFd`]). The ring
    /// keeps the file open while tasks name it and closes it on
    /// [`close`](Ring::close), or when the ring is dropped.
    ///
    /// On io_uring the file also goes into the ring's fixed file table
    /// (5.19; set up on first use, sized by [`RingBuilder::fixed_files`]),
    /// so operations on it skip the kernel's fd lookup — unless the table
    /// is full or a [direct accept](Ring::accept_multishot_direct),
    /// [socket](Ring::socket_direct) or [open](Ring::open_direct) is
    /// running (the kernel may be filling slots not yet reported), in which
    /// case operations use its process fd instead. On the
    /// readiness backend its epoll/kqueue registration is made once and
    /// kept, instead of re-armed for every wait.
    pub fn register_fd(&mut self, fd: OwnedFd) -> RingFd {
        let file = self.files.insert();
        let may_use_table = self.files.directs_live == 0;
        self.backend.adopt_fd(file, fd, may_use_table);
        self.files.handle(file)
    }

    /// Lends the process fd behind `fd`, for synchronous calls such as
    /// `setsockopt` (to use it in an operation, pass the `RingFd` itself:
    /// the lent number is not kept open for a task). `EBADF` if `fd` is
    /// stale or closing. Every ring fd has one on the readiness and mock
    /// backends, and on io_uring those given with
    /// [`register_fd`](Ring::register_fd); a connection io_uring accepted
    /// straight into its fixed file table has none (`Unsupported`): set its
    /// options on the listener, or [take it out](Ring::take_fd).
    pub fn fd(&self, fd: RingFd) -> io::Result<BorrowedFd<'_>> {
        let file = self.files.lookup(fd).ok_or_else(bad_ring_fd)?;
        self.backend.file_fd(file)
    }

    /// Takes the file back from the ring as an `OwnedFd` (to hand it to
    /// another thread, say); `fd` goes stale. Fails with `EBADF` if `fd` is
    /// stale or closing, and `EBUSY` while tasks name it (cancel them and
    /// wait for their callbacks first). A connection io_uring accepted
    /// straight into its fixed file table needs `IORING_OP_FIXED_FD_INSTALL`
    /// (Linux 6.8) to get an fd: `Unsupported` before.
    pub fn take_fd(&mut self, fd: RingFd) -> io::Result<OwnedFd> {
        let file = self.files.lookup(fd).ok_or_else(bad_ring_fd)?;
        if self.files.busy(file) {
            return Err(io::Error::from_raw_os_error(libc::EBUSY));
        }
        let owned = self.backend.take_file(file, &mut self.batch)?;
        self.files.free(file);
        Ok(owned)
    }

    /// How many ring fds are open (or closing).
    pub fn ring_fds(&self) -> usize {
        self.files.live() as usize
    }

    /// How an operation names `fd` (a stale ring fd names no file:
    /// `EBADF`). A ring fd counts as in use by the task once it is
    /// scheduled, until its final completion; a shared owner's clone is
    /// staged here and held by the task the next `schedule` or `reject`
    /// makes (every operation method makes one right after).
    #[inline]
    fn op_fd(&mut self, fd: impl OpFd) -> Fd {
        match fd.source() {
            Source::Kept(raw) => Fd::raw(raw),
            Source::Ring(fd) => self.files.resolve(fd),
            Source::Shared(raw, keep) => {
                self.keeps.stage(keep);
                Fd::raw(raw)
            }
        }
    }

    /// Lists a new task under the ring fds its op names, and gives it the
    /// shared owners its fds were named through.
    #[inline(always)]
    fn add_fd_users(&mut self, index: u32) {
        if self.files.live() > 0 {
            let fds = self.slab.slots[index as usize].op.fds();
            self.files.add_users(index, fds);
        }
        if self.keeps.has_staged() {
            self.slab.slots[index as usize].extras |= HOLDS_OWNERS;
            self.keeps.hold(index);
        }
    }

    fn close_ring_fd(&mut self, fd: RingFd, ctx: Ctx<S>) -> Task {
        let Some(file) = self.files.lookup(fd) else {
            return self.reject(Op::Close { fd: None }, ctx, bad_ring_fd());
        };
        let task = self.slab.insert(Op::CloseRing { file }, ctx);
        if self.files.begin_close(file, task.index) {
            self.slab.slots[task.index as usize].state = State::Waiting;
            self.cancel_users(file);
        } else {
            self.start_waiting(task.index);
        }
        task
    }

    /// Cancels every live task naming ring fd `file` (asking does not
    /// finish any, so the list stays as it is meanwhile).
    fn cancel_users(&mut self, file: u32) {
        let mut at = None;
        while let Some((use_, index)) = self.files.next_user(file, at) {
            self.request_cancel(index, CancelReason::Explicit);
            at = Some(use_);
        }
    }

    /// Hands a task that waited in the ring (a ring fd's close) to the
    /// backend, behind any that wait for room.
    pub(crate) fn start_waiting(&mut self, index: u32) {
        if !self.pending.is_empty() {
            return self.make_pending(self.slab.handle(index));
        }
        let started = self.start_in_backend(self.slab.handle(index));
        self.settle_start(index, started);
    }

    /// The ring fd bookkeeping of a task's completion (`last`: its final
    /// one): what a direct accept, socket or open produced becomes a ring
    /// fd (the result is then its slot); a closed ring fd's slot is freed; a final completion
    /// no longer names its ring fds, which may start a close waiting for
    /// them.
    #[inline(never)]
    fn settle_files(&mut self, index: u32, result: io::Result<u32>, last: bool) -> io::Result<u32> {
        let op = &self.slab.slots[index as usize].op;
        let fds = op.fds();
        let result = match *op {
            Op::AcceptDirect { into_table, .. }
            | Op::SocketDirect { into_table, .. }
            | Op::OpenDirect { into_table, .. } => {
                if last {
                    self.files.directs_live -= 1;
                }
                result
                    .map_err(|e| {
                        crate::fd_table::name_full_table(e, into_table, || {
                            self.backend.fixed_table_full()
                        })
                    })
                    .map(|raw| self.adopt_produced(into_table, raw))
            }
            Op::CloseRing { file } => {
                self.backend.forget_file(file);
                self.files.free(file);
                result
            }
            _ => result,
        };
        if last {
            for closer in self.files.remove_users(index, fds).into_iter().flatten() {
                self.start_waiting(closer);
            }
        }
        let slot = &self.slab.slots[index as usize];
        if let Op::SendFd {
            fd, token, mailbox, ..
        } = &slot.op
        {
            let (file, token, mailbox) = (fd.ring_slot(), *token, mailbox.clone());
            let listened = slot.callback.is_some();
            if let Some(file) = file {
                return self.settle_sent_fd(file, &mailbox, token, result, listened);
            }
        }
        result
    }

    /// Makes what a direct accept, socket or open produced a ring fd: `raw`
    /// is a fixed-table slot the kernel filled (`into_table`) or a new fd.
    fn adopt_produced(&mut self, into_table: bool, raw: u32) -> u32 {
        let file = self.files.insert();
        if into_table {
            self.backend.adopt_fixed(file, raw);
        } else {
            // SAFETY: a successful accept, socket or open returns a new fd
            // that nothing else owns.
            let fd = unsafe { OwnedFd::from_raw_fd(raw as i32) };
            let may_use_table = self.files.directs_live == 0;
            self.backend.adopt_fd(file, fd, may_use_table);
        }
        file
    }
}

/// A ring fd that is stale, closing or another ring's.
fn bad_ring_fd() -> io::Error {
    io::Error::from_raw_os_error(libc::EBADF)
}

/// An `Offset::At` beyond `i64::MAX`: no file is that large, and io_uring
/// would read `u64::MAX` as "the current position".
#[cold]
fn offset_error() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        "a file offset must be at most i64::MAX",
    )
}

/// Reading into no room could only read 0 bytes, which would look like end
/// of file.
fn no_room_error() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        "the buffer has no spare room to read into (give the Vec some capacity)",
    )
}

/// Marks a ring as running; unmarks it when `run` returns or unwinds.
struct RunGuard(Rc<Cell<bool>>);

impl RunGuard {
    fn enter(running: &Rc<Cell<bool>>) -> io::Result<RunGuard> {
        if running.replace(true) {
            return Err(io::Error::other(
                "Ring::run called from inside a callback of the same ring",
            ));
        }
        Ok(RunGuard(running.clone()))
    }
}

impl Drop for RunGuard {
    fn drop(&mut self) {
        self.0.set(false);
    }
}

/// How long a dropping ring waits for the kernel to give back memory of
/// cancelled operations before it leaks that memory instead.
const DRAIN_LIMIT: Duration = Duration::from_secs(10);

impl<S> Drop for Ring<S> {
    /// Closes the mailbox, cancels what the backend still holds and waits
    /// for its completions before any buffer is freed, then closes the ring
    /// fds and drops what tasks and undelivered messages own (their fds
    /// closed, their values dropped); callbacks do not run. Memory of an
    /// operation that does not finish within 10 s is leaked, never freed
    /// under the kernel.
    ///
    /// What is dropped here includes user code (buffers, message values). A
    /// panic in it does not cut the drop short: the ring goes on waiting and
    /// dropping, and the first panic is resumed at the end (or, if the thread
    /// is unwinding already, logged).
    fn drop(&mut self) {
        let mut panic = None;
        self.close_mailbox();
        if self.drain_backend(&mut panic) {
            for group in mem::take(&mut self.groups) {
                self.backend.unregister_group(&group);
            }
            self.backend.close_files();
        } else {
            // Operations may still use the groups' memory and the ring
            // fds' files: keep them.
            mem::forget(mem::take(&mut self.groups));
            self.backend.leak_files();
        }
        // Nothing in the backend uses the ring's memory any more: what is
        // left is dropped one piece at a time, so that a panicking drop
        // loses none of the others.
        for index in 0..self.slab.slots.len() {
            let op = mem::replace(&mut self.slab.slots[index].op, Op::Noop);
            catch_panic(&mut panic, || drop(op));
        }
        let messages = self.messaging.take_undelivered();
        catch_panic(&mut panic, || drop(messages));
        if let Some(payload) = panic {
            if std::thread::panicking() {
                // A second unwind out of a drop would abort the process.
                tracing::error!(
                    panic = panic_text(&*payload),
                    "a drop panicked while a ring was dropped during unwinding"
                );
                drop_payload(payload);
            } else {
                std::panic::resume_unwind(payload);
            }
        }
    }
}

/// A panic payload, kept until the backend is quiesced.
type Panic = Box<dyn std::any::Any + Send>;

/// Runs `f`; if it panics, keeps the first panic in `first` (later ones
/// are dropped).
fn catch_panic(first: &mut Option<Panic>, f: impl FnOnce()) {
    if let Err(payload) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        match first {
            None => *first = Some(payload),
            Some(_) => drop_payload(payload),
        }
    }
}

/// Drops a panic payload that will not be resumed; one whose own drop
/// panics is leaked.
fn drop_payload(payload: Panic) {
    if let Err(again) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(payload))) {
        mem::forget(again);
    }
}

/// A panic's message, for the log.
fn panic_text(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

impl<S> Ring<S> {
    /// During drop: cancels what the backend holds and waits for it; false
    /// if something did not finish in time (its memory is leaked). A panic
    /// in what a finished operation owned is kept in `panic`, and the wait
    /// goes on: the kernel or a pool thread may still write into the memory
    /// of the others.
    fn drain_backend(&mut self, panic: &mut Option<Panic>) -> bool {
        // Completions reaped but not delivered (a callback panicked): their
        // operations are over, and the backend will not report them again.
        let undelivered = mem::take(&mut self.batch);
        for &c in undelivered.get(self.batch_pos..).unwrap_or_default() {
            catch_panic(panic, || self.release_drained(c));
        }
        let in_backend = |slab: &Slab<S>| {
            slab.slots
                .iter()
                .filter(|s| s.state == State::Submitted)
                .count()
        };
        if in_backend(&self.slab) == 0 {
            return true;
        }
        for index in 0..self.slab.slots.len() {
            let slot = &self.slab.slots[index];
            if slot.state == State::Submitted {
                let ud = user_data::task(index as u32, slot.generation);
                while !self.backend.cancel(ud) {
                    if !matches!(self.backend.flush(), Ok(true)) {
                        break;
                    }
                }
            }
        }
        let give_up = Instant::now() + DRAIN_LIMIT;
        let mut clock = Clock::real();
        let mut batch = Vec::new();
        while in_backend(&self.slab) > 0 {
            if Instant::now() > give_up {
                self.leak_in_flight();
                return false;
            }
            if let Err(err) = self.backend.wait(Some(50_000_000), &mut clock) {
                tracing::error!(error = %err, "draining a dropped ring failed");
                self.leak_in_flight();
                return false;
            }
            batch.clear();
            self.backend.reap(&mut batch);
            for &c in &batch {
                catch_panic(panic, || self.release_drained(c));
            }
        }
        true
    }

    /// During drop: frees what a finished operation owned.
    fn release_drained(&mut self, c: RawCompletion) {
        if user_data::kind(c.user_data) != user_data::TASK {
            return;
        }
        let index = user_data::index(c.user_data) as usize;
        let Some(slot) = self.slab.slots.get_mut(index) else {
            return;
        };
        if slot.state != State::Submitted || !user_data::matches(c.user_data, slot.generation) {
            return;
        }
        let last = c.flags & MORE == 0;
        let mut result = raw_result(c.res);
        if self.files.in_use() {
            // What a direct accept, socket or open produced joins the ring
            // fds (closed with them below); a closed ring fd leaves them.
            result = self.settle_files(index as u32, result, last);
        }
        let slot = &mut self.slab.slots[index];
        if !last {
            // A shot of a multishot task: close its fd, recycle its buffer.
            drop(slot.op.shot_outcome(result, c.flags, &self.files));
            return;
        }
        let op = mem::replace(&mut slot.op, Op::Noop);
        slot.state = State::Free;
        self.keeps.release(index as u32);
        // Dropping the outcome closes any fd the operation produced.
        drop(op.into_outcome(result, c.flags, &mut self.pools, &self.files));
    }

    fn leak_in_flight(&mut self) {
        let mut leaked = 0;
        for (index, slot) in self.slab.slots.iter_mut().enumerate() {
            if slot.state == State::Submitted {
                self.keeps.leak(index as u32);
                mem::forget(mem::replace(&mut slot.op, Op::Noop));
                slot.state = State::Free;
                leaked += 1;
            }
        }
        tracing::error!(
            leaked,
            "operations did not finish after being cancelled; their memory is leaked"
        );
    }
}

// -- task state and relative deadlines ---------------------------------------
// Kept in a block of its own so it can move as a unit when `ring.rs` is split.
impl<S> Ring<S> {
    /// Whether `task` is still live: scheduled and not yet delivered for
    /// the last time. A finished task's handle, a stale one whose slot now
    /// holds another task, and a handle from another ring all answer false.
    ///
    /// ```
    /// use ouro::{Ctx, Ring, RunMode};
    ///
    /// let mut ring: Ring<()> = Ring::new(8)?;
    /// let task = ring.noop(Ctx::none());
    /// assert!(ring.is_live(task));
    /// ring.run(&mut (), RunMode::UntilDone)?;
    /// assert!(!ring.is_live(task));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn is_live(&self, task: Task) -> bool {
        self.slab.live_index(task).is_some()
    }

    /// Gives `task` a deadline `after` from the ring's [`now`](Ring::now):
    /// [`set_deadline`](Ring::set_deadline) with a relative time (same
    /// rules: it replaces an earlier deadline, the task fails with `ETIME`
    /// if it has not finished by then). A duration too long to represent
    /// means a deadline that never comes in practice, never a panic.
    ///
    /// Fails with `NotFound` if the task is no longer live; a task just
    /// scheduled always is, so chaining it onto the schedule call is safe:
    ///
    /// ```
    /// use ouro::{is_deadline, Completion, Ctx, Ring, RunMode};
    /// use std::os::unix::net::UnixStream;
    /// use std::rc::Rc;
    /// use std::time::Duration;
    ///
    /// fn received(timed_out: &mut bool, _: &mut Ring<bool>, c: Completion) -> std::io::Result<()> {
    ///     *timed_out = c.result().is_err_and(|e| is_deadline(&e));
    ///     Ok(())
    /// }
    ///
    /// let mut ring: Ring<bool> = Ring::new(8)?;
    /// let (quiet, _peer) = UnixStream::pair()?;
    /// let quiet = Rc::new(quiet);
    /// let task = ring.recv(&quiet, Vec::with_capacity(16), Ctx::new(received));
    /// ring.set_timeout(task, Duration::from_millis(10))?;
    /// let mut timed_out = false;
    /// ring.run(&mut timed_out, RunMode::UntilDone)?;
    /// assert!(timed_out);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn set_timeout(&mut self, task: Task, after: Duration) -> io::Result<()> {
        let at = self.clock.now().saturating_add(duration_ns(after));
        self.set_deadline(task, self.clock.to_instant(at))
    }
}
