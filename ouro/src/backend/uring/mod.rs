//! The io_uring backend, on the `io-uring` crate.
//!
//! Setup asks for the best the kernel offers — SINGLE_ISSUER with
//! DEFER_TASKRUN (6.1), else COOP_TASKRUN (5.19), with TASKRUN_FLAG (5.19:
//! the kernel flags pending completion work, so a turn with nothing to
//! submit or wait for skips the system call), and SUBMIT_ALL (5.18) — and
//! settles for less on older kernels; it needs EXT_ARG waits (5.11).
//! Each opcode is probed once; an operation the kernel lacks fails with a
//! clear `Unsupported` error, except socket, bind, listen and shutdown,
//! which never block and fall back to the plain system call.
//!
//! For messages between rings (see `ring/messages.rs`) the backend offers a waker
//! (an eventfd that an internal read request drains, so a wake-up costs the
//! ring no system call of its own) and MSG_RING doorbells, used when the
//! kernel accepts `IORING_MSG_RING_FLAGS_PASS` (6.3): MSG_RING exists since
//! 5.18, but posting into a SINGLE_ISSUER/DEFER_TASKRUN ring from another
//! thread was only made safe in the 6.2 cycle, and a flag is what can be
//! probed. Doorbells complete on the sender only when they fail
//! (`IOSQE_CQE_SKIP_SUCCESS`, 5.17). A ring meant to be polled by another
//! is set up without DEFER_TASKRUN: with it, completions wait as task work
//! until the owner enters the ring, and the ring fd does not become
//! readable.
//!
//! Ring fds live in the ring's fixed file table (registered sparse on first
//! use, 5.19), named in submissions by slot (`IOSQE_FIXED_FILE`), so the
//! kernel skips its fd lookup (`fget`/`fput`) per operation. A direct
//! accept (socket, open) lets the kernel pick the slots
//! (`IORING_FILE_INDEX_ALLOC`) as it finishes, so one goes there only if a
//! slot is left after those the direct operations in flight may take
//! (`Files::claim_slot`), and is made plain otherwise; an fd
//! given with `register_fd` goes into a slot chosen here
//! (`IORING_REGISTER_FILES_UPDATE`) — only while no direct operation runs, as
//! the kernel may have filled slots whose completions are not reaped yet.
//! The table cannot grow (re-registering it would drop the direct
//! descriptors, which have no process fd to register again): it is sized
//! once, and a ring fd that finds it full keeps working through its
//! process fd.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::rc::Rc;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, OnceLock};

use io_uring::{opcode, squeue, types, IoUring, Probe};

use super::driver::Driver;
use super::{BackendKind, Options, RawCompletion, Started, Wake};
use crate::buffers::group::GroupInner;
use crate::op::Op;
use crate::task::user_data;
use crate::time::Clock;
use files::Files;
use setup::{build, probe_doorbells, Built};

mod files;
mod prep;
mod reap;
mod setup;

pub use setup::SetupError;

/// `user_data` of the internal read that drains the waker's eventfd.
const WAKE_READ: u64 = (user_data::INTERNAL as u64) << 56 | 1;
/// `user_data` of what `prepare_poll` submits to make the ring readable.
const POLL_WAKE: u64 = (user_data::INTERNAL as u64) << 56 | 2;
/// `user_data` of the start-up probe of MSG_RING's flags.
const PROBE: u64 = (user_data::INTERNAL as u64) << 56 | 3;
/// `user_data` of the request that installs a direct descriptor as a
/// process fd (`take_file`).
const INSTALL: u64 = (user_data::INTERNAL as u64) << 56 | 4;

/// The fewest completions a turn may bring in by entering again for flagged
/// completion work (more on a ring whose completion queue is larger): far
/// more than the kernel's batch, so a small ring still delivers all that
/// its tasks have ready in one turn.
const MIN_WORK_BUDGET: usize = 4096;

/// Where the waker's internal reads put the eventfd's counter: the value
/// is never looked at, and a `static` outlives every request that names it.
static WAKE_SINK: AtomicU64 = AtomicU64::new(0);

/// Whether this kernel takes MSG_RING doorbells (probed once per process).
static DOORBELLS: OnceLock<bool> = OnceLock::new();

pub(crate) struct Uring {
    ring: IoUring,
    opcodes: Opcodes,
    setup: &'static str,
    /// Whether the ring shares another's work queue (`IORING_SETUP_ATTACH_WQ`).
    attached: bool,
    pollable: bool,
    doorbells: bool,
    waker: Option<Arc<EventfdWaker>>,
    /// Whether the read that drains the waker's eventfd is in the kernel.
    wake_read_armed: bool,
    /// The delay `prepare_poll` hands a timeout request (copied by the
    /// kernel when it is submitted).
    poll_timeout: Box<types::Timespec>,
    /// The ring fds and the fixed file table.
    files: Files,
    /// How many more completions this turn may bring in by entering the
    /// kernel for the completion work it flagged (see `enter_for_work`).
    work_budget: usize,
}

/// The opcodes this kernel supports, one bit each; turns operations into
/// submission entries.
struct Opcodes([u64; 4]);

impl Uring {
    pub(crate) fn new(entries: u32, options: Options) -> io::Result<Uring> {
        super::check_entries(entries)?;
        let Built {
            mut ring,
            setup,
            attached,
        } = build(entries, options)?;
        if !ring.params().is_feature_ext_arg() {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "ouro's io_uring backend needs IORING_FEAT_EXT_ARG (Linux 5.11 or later)",
            ));
        }
        let mut probe = Probe::new();
        ring.submitter().register_probe(&mut probe)?;
        let mut supported = [0u64; 4];
        for code in 0..=u8::MAX {
            if probe.is_supported(code) {
                supported[usize::from(code / 64)] |= 1 << (code % 64);
            }
        }
        let opcodes = Opcodes(supported);
        let doorbells = opcodes.supports(opcode::MsgRingData::CODE) && probe_doorbells(&mut ring);
        tracing::debug!(entries, setup, attached, doorbells, "io_uring ready");
        Ok(Uring {
            ring,
            opcodes,
            setup,
            attached,
            pollable: options.pollable,
            doorbells,
            waker: None,
            wake_read_armed: false,
            poll_timeout: Box::new(types::Timespec::new()),
            files: Files::new(options.fixed_files),
            work_budget: 0,
        })
    }

    /// The setup flags the kernel accepted, for diagnostics.
    pub(crate) fn setup(&self) -> &'static str {
        self.setup
    }

    /// The ring's own fd.
    pub(crate) fn fd(&self) -> RawFd {
        self.ring.as_raw_fd()
    }

    pub(crate) fn waker(&mut self) -> io::Result<Arc<dyn Wake>> {
        if let Some(waker) = &self.waker {
            return Ok(waker.clone());
        }
        // Blocking on purpose: for an O_NONBLOCK file io_uring returns
        // EAGAIN instead of waiting for it to become readable.
        // SAFETY: plain system call on integers.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: eventfd returned a new fd that nothing else owns.
        let waker = Arc::new(EventfdWaker(unsafe { OwnedFd::from_raw_fd(fd) }));
        self.waker = Some(waker.clone());
        self.arm_wake_read();
        Ok(waker)
    }

    /// Queues the read that drains the waker's eventfd, if it is not in the
    /// kernel yet and there is room.
    fn arm_wake_read(&mut self) {
        let Some(waker) = &self.waker else {
            return;
        };
        if self.wake_read_armed {
            return;
        }
        let sink = WAKE_SINK.as_ptr().cast::<u8>();
        let entry = opcode::Read::new(types::Fd(waker.0.as_raw_fd()), sink, 8)
            .build()
            .user_data(WAKE_READ);
        self.wake_read_armed = matches!(self.push(&entry), Started::Yes);
    }

    /// Makes sure the waker's read is in the submission queue before the
    /// ring sleeps, flushing a full queue to make room.
    fn ensure_wake_read(&mut self) -> io::Result<()> {
        if self.waker.is_none() || self.wake_read_armed {
            return Ok(());
        }
        self.arm_wake_read();
        if !self.wake_read_armed {
            self.flush()?;
            self.arm_wake_read();
        }
        Ok(())
    }

    pub(crate) fn doorbell_target(&self) -> Option<RawFd> {
        self.doorbells.then(|| self.ring.as_raw_fd())
    }

    pub(crate) fn ring_doorbell(&mut self, target: RawFd, user_data: u64) -> bool {
        if !self.doorbells {
            return false;
        }
        let arrival = user_data::with_kind(user_data::MESSAGE, 0);
        // Only a failure is worth a completion here: one for success would
        // end the sender's next wait at once, costing it a system call.
        let entry = opcode::MsgRingData::new(types::Fd(target), 0, arrival, None)
            .build()
            .flags(squeue::Flags::SKIP_SUCCESS)
            .user_data(user_data);
        matches!(self.push(&entry), Started::Yes)
    }

    /// Whether submissions wait in the queue, not yet taken by the kernel.
    pub(crate) fn has_unsubmitted(&mut self) -> bool {
        !self.ring.submission().is_empty()
    }

    pub(crate) fn pollable_fd(&self) -> Option<BorrowedFd<'_>> {
        // SAFETY: the ring fd lives as long as `self.ring`, which the
        // borrow does not outlive.
        self.pollable
            .then(|| unsafe { BorrowedFd::borrow_raw(self.ring.as_raw_fd()) })
    }

    pub(crate) fn prepare_poll(&mut self, now: bool, after_ns: Option<u64>) -> io::Result<bool> {
        let mut armed = false;
        if now {
            self.push_internal(&opcode::Nop::new().build().user_data(POLL_WAKE))?;
        } else if let Some(ns) = after_ns {
            *self.poll_timeout = timespec(ns);
            let entry = opcode::Timeout::new(&*self.poll_timeout)
                .build()
                .user_data(POLL_WAKE);
            armed = self.push_internal(&entry)?;
        }
        self.ensure_wake_read()?;
        self.flush()?;
        Ok(armed)
    }

    /// Pushes an internal request, flushing a full queue to make room;
    /// whether it is in the queue.
    fn push_internal(&mut self, entry: &squeue::Entry) -> io::Result<bool> {
        if matches!(self.push(entry), Started::Full) {
            self.flush()?;
            // Still full (the kernel is busy): the readiness this request
            // would give comes with the next completion instead.
            return Ok(!matches!(self.push(entry), Started::Full));
        }
        Ok(true)
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
    // Inlined into each operation's method, where the op's variant is
    // known, so that only its own submission is built there.
    #[inline(always)]
    pub(crate) unsafe fn start(&mut self, user_data: u64, op: &mut Op, _clock: &Clock) -> Started {
        // One queue handle for the check and the push: each handle reads
        // the kernel's head and publishes the tail when dropped.
        let mut sq = self.ring.submission();
        if sq.is_full() {
            return Started::Full;
        }
        match self
            .opcodes
            .prepare(op, &mut self.files, &mut sq, user_data)
        {
            Ok(started) => started,
            Err(Immediate::Done(res)) => Started::Done(res),
            Err(Immediate::Failed(err)) => Started::Failed(err),
        }
    }

    /// Registers the fixed file table if it is not yet, for an operation
    /// whose fd the kernel may put there (kept off `start`, which every
    /// operation passes through).
    pub(crate) fn ensure_fixed_table(&mut self) {
        self.files.ensure_table(&self.ring);
    }

    pub(crate) fn cancel(&mut self, target: u64) -> bool {
        let entry = opcode::AsyncCancel::new(target)
            .build()
            .user_data(user_data::with_kind(user_data::INTERNAL, 0));
        matches!(self.push(&entry), Started::Yes)
    }

    fn push(&mut self, entry: &squeue::Entry) -> Started {
        // SAFETY: every pointer in `entry` points into memory owned by the
        // task's `Op` (heap blocks that do not move), which the ring keeps
        // alive until this submission's final completion has been reaped;
        // or, for internal requests, into `WAKE_SINK` (static) or
        // `poll_timeout` (read by the kernel at submission, and owned by
        // this backend, which outlives its queue).
        match unsafe { self.ring.submission().push(entry) } {
            Ok(()) => Started::Yes,
            Err(_) => Started::Full,
        }
    }

    pub(crate) fn flush(&mut self) -> io::Result<bool> {
        loop {
            return match self.ring.submit() {
                Ok(_) => Ok(true),
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                Err(e) if is_busy(&e) => Ok(false),
                Err(e) => Err(e),
            };
        }
    }

    pub(crate) fn wait(&mut self, timeout: Option<u64>, _clock: &mut Clock) -> io::Result<()> {
        self.ensure_wake_read()?;
        let result = match timeout {
            Some(0) => self.poll(),
            None => self.ring.submit_and_wait(1),
            Some(ns) => {
                let ts = timespec(ns);
                let args = types::SubmitArgs::new().timespec(&ts);
                self.ring.submitter().submit_with_args(1, &args)
            }
        };
        match result {
            Ok(_) => {}
            Err(e) if matches!(e.raw_os_error(), Some(libc::ETIME | libc::EINTR)) => {}
            Err(e) if is_busy(&e) => {}
            Err(e) => return Err(e),
        }
        self.start_work_budget();
        Ok(())
    }

    /// Starts a turn's budget of completions brought in by entering again
    /// for flagged completion work: an enter runs a bounded amount of
    /// deferred completion work (at most 20 items on a DEFER_TASKRUN ring
    /// since Linux 6.13) and flags the rest (IORING_SQ_TASKRUN). The turn
    /// brings the rest in while it delivers (`settle_queue`), each enter
    /// after the completions before it were delivered: what their callbacks
    /// submitted (a cancel that pauses a connection's multishot receive)
    /// reaches the kernel before the work that would have completed more.
    /// The budget keeps a peer that never stops sending from holding the
    /// turn.
    fn start_work_budget(&mut self) {
        self.work_budget = self.ring.completion().capacity().max(MIN_WORK_BUDGET);
    }

    /// Enters the kernel once to run the completion work it flagged;
    /// `true` when that brought completions (there may be more flagged).
    /// Never waits, and gives up when the turn's budget is spent.
    fn enter_for_work(&mut self) -> bool {
        if self.work_budget == 0 || !self.ring.submission().taskrun() {
            return false;
        }
        let before = self.ring.completion().len();
        loop {
            // With the flag set, this enter asks for events (GETEVENTS)
            // but waits for none.
            match self.ring.submit() {
                Ok(_) => break,
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                Err(e) if is_busy(&e) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "running flagged completion work failed");
                    return false;
                }
            }
        }
        let brought = self.ring.completion().len().saturating_sub(before);
        self.work_budget = self.work_budget.saturating_sub(brought);
        brought > 0
    }

    /// Submits what is queued and brings in what has completed, without
    /// waiting; enters the kernel only when there is something to submit or
    /// the kernel flagged completion work to run (IORING_SQ_TASKRUN, or an
    /// overflow) — a turn that only delivers user-space results (zero-delay
    /// timers) costs no system call.
    fn poll(&mut self) -> io::Result<usize> {
        let sq = self.ring.submission();
        if sq.is_empty() && !sq.taskrun() && !sq.cq_overflow() {
            return Ok(0);
        }
        drop(sq);
        // Enters with GETEVENTS when the kernel flagged work (see above).
        self.ring.submit()
    }
}

/// What an operation that needs no submission comes to.
enum Immediate {
    Done(i32),
    Failed(io::Error),
}

/// Wakes a ring from any thread by adding to its eventfd.
struct EventfdWaker(OwnedFd);

impl Wake for EventfdWaker {
    fn wake(&self) {
        let one = 1u64.to_ne_bytes();
        // SAFETY: writes 8 bytes from a live buffer to an fd we own.
        let res = unsafe { libc::write(self.0.as_raw_fd(), one.as_ptr().cast(), one.len()) };
        if res < 0 {
            // Only a counter at its maximum can refuse, and then the ring
            // is awake already.
            tracing::debug!(error = %io::Error::last_os_error(), "eventfd wake-up refused");
        }
    }
}

fn timespec(ns: u64) -> types::Timespec {
    types::Timespec::new()
        .sec(ns / 1_000_000_000)
        .nsec((ns % 1_000_000_000) as u32)
}

fn clamp_len(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

fn is_busy(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EBUSY | libc::EAGAIN))
}

impl Driver for Uring {
    const KIND: BackendKind = BackendKind::Uring;

    #[inline(always)]
    unsafe fn start(&mut self, user_data: u64, op: &mut Op, clock: &Clock) -> Started {
        // SAFETY: forwarded: our caller keeps what `op` owns alive and in
        // place until its final completion.
        unsafe { Uring::start(self, user_data, op, clock) }
    }

    fn cancel(&mut self, user_data: u64) -> bool {
        Uring::cancel(self, user_data)
    }

    fn flush(&mut self) -> io::Result<bool> {
        Uring::flush(self)
    }

    fn wait(&mut self, timeout: Option<u64>, clock: &mut Clock) -> io::Result<()> {
        Uring::wait(self, timeout, clock)
    }

    #[inline]
    fn reap(&mut self, out: &mut Vec<RawCompletion>) {
        Uring::reap(self, out)
    }

    fn waker(&mut self) -> io::Result<Arc<dyn Wake>> {
        Uring::waker(self)
    }

    fn describe(&self) -> String {
        let attached = if self.attached { "+attach_wq" } else { "" };
        format!("io_uring ({}{attached})", self.setup())
    }

    fn adopt_fd(&mut self, file: u32, fd: OwnedFd, may_use_table: bool) {
        Uring::adopt_fd(self, file, fd, may_use_table)
    }

    fn file_fd(&self, file: u32) -> io::Result<BorrowedFd<'_>> {
        Uring::file_fd(self, file)
    }

    fn take_file(&mut self, file: u32, stash: &mut Vec<RawCompletion>) -> io::Result<OwnedFd> {
        Uring::take_file(self, file, stash)
    }

    fn forget_file(&mut self, file: u32) {
        Uring::forget_file(self, file)
    }

    fn close_files(&mut self) {
        Uring::close_files(self)
    }

    fn leak_files(&mut self) {
        Uring::leak_files(self)
    }

    #[inline]
    fn queued(&mut self) -> Option<usize> {
        Some(Uring::queued(self))
    }

    #[inline(always)]
    fn next_completion(&mut self) -> Option<RawCompletion> {
        Uring::next_completion(self)
    }

    fn settle_queue(&mut self) -> bool {
        Uring::settle_queue(self)
    }

    fn register_group(&mut self, group: &Rc<GroupInner>) {
        Uring::register_group(self, group)
    }

    fn unregister_group(&mut self, group: &GroupInner) {
        Uring::unregister_group(self, group)
    }

    fn ensure_fixed_table(&mut self) {
        Uring::ensure_fixed_table(self)
    }

    fn fixed_slot(&self, file: u32) -> Option<u32> {
        Uring::fixed_slot(self, file)
    }

    fn direct_ended(&mut self, op: &Op) {
        match op {
            Op::AcceptDirect {
                into_table: true, ..
            } => self.files.release(true),
            Op::SocketDirect {
                into_table: true, ..
            }
            | Op::OpenDirect {
                into_table: true, ..
            } => self.files.release(false),
            _ => {}
        }
    }

    fn fixed_table_full(&self) -> Option<(u32, u32)> {
        self.files.kernel_slots_taken()
    }

    fn accepts_fixed(&mut self) -> bool {
        Uring::accepts_fixed(self)
    }

    fn close_orphan(&mut self, slot: u32) {
        Uring::close_orphan(self, slot)
    }

    fn adopt_fixed(&mut self, file: u32, slot: u32) {
        Uring::adopt_fixed(self, file, slot)
    }

    fn doorbell_target(&self) -> Option<RawFd> {
        Uring::doorbell_target(self)
    }

    fn ring_doorbell(&mut self, target: RawFd, user_data: u64) -> bool {
        Uring::ring_doorbell(self, target, user_data)
    }

    fn has_unsubmitted(&mut self) -> bool {
        Uring::has_unsubmitted(self)
    }

    fn pollable_fd(&self) -> Option<BorrowedFd<'_>> {
        Uring::pollable_fd(self)
    }

    fn prepare_poll(&mut self, now: bool, after_ns: Option<u64>) -> io::Result<bool> {
        Uring::prepare_poll(self, now, after_ns)
    }

    fn uring_fd(&self) -> Option<RawFd> {
        Some(self.fd())
    }
}
