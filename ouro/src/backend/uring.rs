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
//! For messages between rings (see `message.rs`) the backend offers a waker
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
//! accept lets the kernel pick the slots (`IORING_FILE_INDEX_ALLOC`); an fd
//! given with `register_fd` goes into a slot chosen here
//! (`IORING_REGISTER_FILES_UPDATE`) — only while no direct accept runs, as
//! the kernel may have filled slots whose completions are not reaped yet.
//! The table cannot grow (re-registering it would drop the direct
//! descriptors, which have no process fd to register again): it is sized
//! once, and a ring fd that finds it full keeps working through its
//! process fd.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, OnceLock};

use io_uring::squeue::SubmissionQueue;
use io_uring::{opcode, squeue, types, IoUring, Probe};

use super::{Options, RawCompletion, Started, Wake};
use crate::buffers::group::GroupInner;
use crate::fd::{Fd, Named};
use crate::op::Op;
use crate::task::user_data;
use crate::time::Clock;

/// `IORING_REGISTER_FILE_ALLOC_RANGE` (Linux 6.0), which the io-uring crate
/// does not wrap.
const REGISTER_FILE_ALLOC_RANGE: libc::c_long = 25;

/// The kernel's `struct io_uring_file_index_range`.
#[repr(C)]
struct FileIndexRange {
    off: u32,
    len: u32,
    resv: u64,
}

/// Makes the kernel allocate fixed-table slots (`IORING_FILE_INDEX_ALLOC`)
/// only in `from..size`.
fn restrict_allocations(ring: &IoUring, from: u32, size: u32) -> io::Result<()> {
    let range = FileIndexRange {
        off: from,
        len: size - from,
        resv: 0,
    };
    // SAFETY: the kernel reads one `io_uring_file_index_range` (the layout
    // of `FileIndexRange`) from the pointer, which is valid for the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_io_uring_register,
            ring.as_raw_fd(),
            REGISTER_FILE_ALLOC_RANGE,
            &range as *const FileIndexRange,
            0,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `user_data` of the completion a parcel's file posts on arrival.
fn parcel_arrival(token: u32) -> u64 {
    user_data::with_kind(user_data::PARCEL, u64::from(token))
}

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
        let (mut ring, setup) = build(entries, options)?;
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
        tracing::debug!(entries, setup, doorbells, "io_uring ready");
        Ok(Uring {
            ring,
            opcodes,
            setup,
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

    pub(crate) fn prepare_poll(&mut self, now: bool, after_ns: Option<u64>) -> io::Result<()> {
        if now {
            self.push_internal(&opcode::Nop::new().build().user_data(POLL_WAKE))?;
        } else if let Some(ns) = after_ns {
            *self.poll_timeout = timespec(ns);
            let entry = opcode::Timeout::new(&*self.poll_timeout)
                .build()
                .user_data(POLL_WAKE);
            self.push_internal(&entry)?;
        }
        self.ensure_wake_read()?;
        self.flush().map(|_| ())
    }

    /// Pushes an internal request, flushing a full queue to make room.
    fn push_internal(&mut self, entry: &squeue::Entry) -> io::Result<()> {
        if matches!(self.push(entry), Started::Full) {
            self.flush()?;
            // Still full (the kernel is busy): the readiness this request
            // would give comes with the next completion instead.
            let _ = self.push(entry);
        }
        Ok(())
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
        self.run_flagged_work();
        Ok(())
    }

    /// Brings in every completion that is ready, not only the kernel's
    /// first batch: an enter runs a bounded amount of deferred completion
    /// work (at most 20 items on a DEFER_TASKRUN ring since Linux 6.13)
    /// and flags the rest (IORING_SQ_TASKRUN). Enters again while the
    /// completion queue has room for more; the turn's budget keeps a peer
    /// that never stops sending from holding the turn.
    fn run_flagged_work(&mut self) {
        self.work_budget = self.ring.completion().capacity().max(MIN_WORK_BUDGET);
        loop {
            let completion = self.ring.completion();
            if completion.is_full() {
                return;
            }
            drop(completion);
            if !self.enter_for_work() {
                return;
            }
        }
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

    pub(crate) fn reap(&mut self, out: &mut Vec<RawCompletion>) {
        loop {
            self.take_completions(out);
            // Completions that did not fit the queue wait in the kernel's
            // overflow list; entering with GETEVENTS moves them over.
            if !self.settle_queue() {
                return;
            }
        }
    }

    /// How many completions wait in the completion queue now.
    pub(crate) fn queued(&mut self) -> usize {
        self.ring.completion().len()
    }

    /// Takes the next completion straight off the queue, with no copy into
    /// a batch: the head moves on before the completion is delivered, so a
    /// callback that panics loses none (the rest stay queued for the
    /// ring's drop to drain). The waker's reads are settled here.
    #[inline(always)]
    pub(crate) fn next_completion(&mut self) -> Option<RawCompletion> {
        loop {
            let cqe = self.ring.completion().next()?;
            match cqe.user_data() {
                WAKE_READ => self.wake_read_armed = false,
                // Only `install` waits for one, and it takes its own.
                INSTALL => {}
                user_data => {
                    return Some(RawCompletion {
                        user_data,
                        res: cqe.result(),
                        flags: cqe.flags(),
                    })
                }
            }
        }
    }

    /// After the queue has been taken: re-arms the waker's read and, when
    /// completions overflowed into the kernel's list, moves them over, or
    /// runs completion work the kernel still flags (the queue was full);
    /// `true` when there may be more to take now.
    pub(crate) fn settle_queue(&mut self) -> bool {
        self.arm_wake_read();
        if !self.ring.submission().cq_overflow() {
            return self.enter_for_work();
        }
        if let Err(e) = self.ring.submit_and_wait(0) {
            tracing::warn!(error = %e, "flushing overflowed completions failed");
            return false;
        }
        true
    }

    /// Moves the completion queue's entries to `out`, but the waker's own
    /// reads and the result of an install (returned).
    fn take_completions(&mut self, out: &mut Vec<RawCompletion>) -> Option<i32> {
        let mut installed = None;
        for cqe in self.ring.completion() {
            match cqe.user_data() {
                WAKE_READ => self.wake_read_armed = false,
                INSTALL => installed = Some(cqe.result()),
                user_data => out.push(RawCompletion {
                    user_data,
                    res: cqe.result(),
                    flags: cqe.flags(),
                }),
            }
        }
        installed
    }

    /// Makes fixed-table slot `slot` a process fd too, waiting for it
    /// (`IORING_OP_FIXED_FD_INSTALL`, 6.8: done at submission); the other
    /// completions that arrive meanwhile go to `stash`.
    fn install(&mut self, slot: u32, stash: &mut Vec<RawCompletion>) -> io::Result<OwnedFd> {
        if !self.opcodes.supports(opcode::FixedFdInstall::CODE) {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "this ring fd is a direct descriptor (io_uring accepted it straight into its \
                 fixed file table), and making it a process fd needs \
                 IORING_OP_FIXED_FD_INSTALL (Linux 6.8)",
            ));
        }
        // Close-on-exec, as every fd ouro makes.
        let entry = opcode::FixedFdInstall::new(types::Fixed(slot), 0)
            .build()
            .user_data(INSTALL);
        while matches!(self.push(&entry), Started::Full) {
            if !self.flush()? {
                // The kernel is busy until completions are taken.
                self.take_completions(stash);
            }
        }
        let res = loop {
            match self.ring.submit_and_wait(1) {
                Ok(_) => {}
                Err(e) if matches!(e.raw_os_error(), Some(libc::EINTR)) || is_busy(&e) => {}
                Err(e) => return Err(e),
            }
            if let Some(res) = self.take_completions(stash) {
                break res;
            }
        };
        if res < 0 {
            return Err(io::Error::from_raw_os_error(-res));
        }
        // SAFETY: a successful install returns a new fd that nothing else
        // owns.
        Ok(unsafe { OwnedFd::from_raw_fd(res) })
    }

    /// Shares `group` with the kernel as a provided buffer ring (5.19);
    /// on failure it stays a free list that `start` takes from.
    pub(crate) fn register_group(&mut self, group: &GroupInner) {
        if !self.opcodes.has_multishot_accept() {
            return;
        }
        let Some(ring) = group.kernel_ring() else {
            tracing::warn!("no memory for a provided buffer ring; using a free list");
            return;
        };
        // SAFETY: the ring's memory is page aligned, holds `count` entries
        // and stays allocated until `unregister_group` (or, if operations
        // are leaked, forever).
        let registered = unsafe {
            self.ring.submitter().register_buf_ring_with_flags(
                GroupInner::ring_address(&ring),
                group.count(),
                group.id,
                0,
            )
        };
        match registered {
            Ok(()) => group.set_kernel_ring(ring),
            Err(e) => {
                tracing::warn!(error = %e, "provided buffer ring refused; using a free list");
                group.discard_kernel_ring(ring);
            }
        }
    }

    pub(crate) fn unregister_group(&mut self, group: &GroupInner) {
        if group.is_kernel_ring() {
            if let Err(e) = self.ring.submitter().unregister_buf_ring(group.id) {
                tracing::warn!(error = %e, "unregistering a buffer ring failed");
            }
        }
    }
}

impl Uring {
    pub(crate) fn adopt_fd(&mut self, file: u32, fd: OwnedFd, may_use_table: bool) {
        let slot = if may_use_table {
            self.files.ensure_table(&self.ring);
            self.files.register(&self.ring, fd.as_raw_fd())
        } else {
            None
        };
        self.files.set(file, File::new(slot, Some(fd)));
        if let Some(slot) = slot {
            self.files.table_mut().occupy(slot, file);
        }
    }

    /// The fixed-table slot of ring fd `file`, if it has one.
    pub(crate) fn fixed_slot(&self, file: u32) -> Option<u32> {
        self.files
            .get(file)
            .map(|record| record.slot)
            .filter(|&slot| slot != NO_SLOT)
    }

    /// The fixed table's used slots and size if the kernel finds no free
    /// slot to give a direct operation.
    pub(crate) fn fixed_table_full(&self) -> Option<(u32, u32)> {
        self.files.kernel_slots_taken()
    }

    /// Whether other rings can move files into this ring's fixed table
    /// (MSG_RING doorbells work, and the table is registered and split).
    pub(crate) fn accepts_fixed(&mut self) -> bool {
        self.doorbells && self.files.ensure_table(&self.ring) && self.files.split_table(&self.ring)
    }

    /// Empties `slot`, filled by a parcel whose message was withdrawn,
    /// unless a ring fd holds it already (the file was then replaced).
    pub(crate) fn close_orphan(&mut self, slot: u32) {
        let Table::Registered(slots) = &self.files.table else {
            return;
        };
        if slots
            .owners
            .get(slot as usize)
            .is_some_and(|&o| o != NO_SLOT)
        {
            return;
        }
        if let Err(e) = self.ring.submitter().register_files_update(slot, &[-1]) {
            tracing::warn!(error = %e, slot, "closing a withdrawn parcel's file failed");
        }
    }

    pub(crate) fn adopt_fixed(&mut self, file: u32, slot: u32) {
        self.files.set(file, File::new(Some(slot), None));
        self.files.table_mut().occupy(slot, file);
    }

    pub(crate) fn file_fd(&self, file: u32) -> io::Result<BorrowedFd<'_>> {
        match self.files.get(file) {
            Some(File { fd: Some(fd), .. }) => Ok(fd.as_fd()),
            Some(File { slot, .. }) if *slot != NO_SLOT => Err(no_process_fd()),
            _ => Err(io::Error::from_raw_os_error(libc::EBADF)),
        }
    }

    /// Gives ring fd `file` back: its process fd, or for a direct
    /// descriptor a new one installed from the table; its slot is emptied.
    pub(crate) fn take_file(
        &mut self,
        file: u32,
        stash: &mut Vec<RawCompletion>,
    ) -> io::Result<OwnedFd> {
        let (slot, has_fd) = match self.files.get(file) {
            Some(record) => (record.slot, record.fd.is_some()),
            None => (NO_SLOT, false),
        };
        let fd = match (has_fd, slot) {
            (true, _) => self.files.take(file).fd,
            (false, NO_SLOT) => None,
            (false, slot) => {
                let fd = self.install(slot, stash)?;
                self.files.take(file);
                Some(fd)
            }
        };
        let fd = fd.ok_or_else(|| io::Error::from_raw_os_error(libc::EBADF))?;
        if slot != NO_SLOT {
            self.files.unregister(&self.ring, slot, file);
        }
        Ok(fd)
    }

    /// Ring fd `file`'s close finished: its slot is free again (the kernel
    /// emptied it); whatever a close that never ran left is closed now.
    pub(crate) fn forget_file(&mut self, file: u32) {
        let record = self.files.take(file);
        if record.closing != NO_SLOT {
            self.files.table_mut().vacate(record.closing, file);
        }
        if record.slot != NO_SLOT {
            self.files.unregister(&self.ring, record.slot, file);
        }
    }

    /// Closes every ring fd: their process fds, and the fixed table at
    /// once (nothing is in flight), rather than when the kernel tears the
    /// ring down later.
    pub(crate) fn close_files(&mut self) {
        self.files.records.clear();
        if matches!(self.files.table, Table::Registered(_)) {
            if let Err(e) = self.ring.submitter().unregister_files() {
                tracing::warn!(error = %e, "unregistering the fixed file table failed");
            }
        }
    }

    /// Leaves every ring fd open: operations in flight may name them.
    pub(crate) fn leak_files(&mut self) {
        for record in self.files.records.drain(..) {
            std::mem::forget(record);
        }
    }
}

/// What an operation's fd is to the kernel: a plain fd or a fixed file.
#[derive(Clone, Copy)]
enum Target {
    Fd(RawFd),
    Fixed(u32),
}

impl Target {
    /// The number an entry names, and the flag that makes it a fixed-table
    /// slot: what the `io-uring` crate sets for a `types::Fixed` in every
    /// opcode but close and splice's input.
    #[inline(always)]
    fn parts(self) -> (types::Fd, squeue::Flags) {
        match self {
            Target::Fd(fd) => (types::Fd(fd), squeue::Flags::empty()),
            Target::Fixed(slot) => (types::Fd(slot as RawFd), squeue::Flags::FIXED_FILE),
        }
    }
}

/// Builds an entry for a [`Target`]: once, with the target's number, then
/// flagged fixed if it is one — not once per kind of target, which doubles
/// every arm of the submission path and leaves the compiler copying
/// entries between them.
macro_rules! with_target {
    ($target:expr, |$t:ident| $build:expr) => {{
        let ($t, fixed) = $target.parts();
        $build.flags(fixed)
    }};
}

/// Builds an entry with a [`Target`] as the `io-uring` crate's type for
/// it, for the opcodes that name a fixed file otherwise than with
/// `FIXED_FILE` (close, splice's input).
macro_rules! with_typed_target {
    ($target:expr, |$t:ident| $build:expr) => {
        match $target {
            Target::Fd(fd) => {
                let $t = types::Fd(fd);
                $build
            }
            Target::Fixed(slot) => {
                let $t = types::Fixed(slot);
                $build
            }
        }
    };
}

/// Marks "no slot of the fixed table".
const NO_SLOT: u32 = u32::MAX;

/// A ring fd as this backend keeps it.
struct File {
    /// Its slot in the fixed file table, or `NO_SLOT`.
    slot: u32,
    /// Its process fd: given with `register_fd`, or accepted as a plain fd.
    /// A direct descriptor has none.
    fd: Option<OwnedFd>,
    /// The slot a close was sent for, freed when the close has finished.
    closing: u32,
}

impl File {
    const EMPTY: File = File {
        slot: NO_SLOT,
        fd: None,
        closing: NO_SLOT,
    };

    fn new(slot: Option<u32>, fd: Option<OwnedFd>) -> File {
        File {
            slot: slot.unwrap_or(NO_SLOT),
            fd,
            closing: NO_SLOT,
        }
    }
}

/// The fixed file table: set up on first use, or refused by the kernel.
enum Table {
    /// Not needed yet; this many slots when it is (0: never).
    Unused(u32),
    Registered(Slots),
    Refused,
}

/// Which ring fd holds each slot of the fixed table, as far as this side
/// knows: slots the kernel filled for a direct accept are known once its
/// completion is reaped, and a closed slot stays taken until its close has
/// finished.
struct Slots {
    owners: Vec<u32>,
    size: u32,
    /// ouro's own registrations take slots below this; the kernel's
    /// allocations (direct accepts, files other rings move here) the rest,
    /// once the table is split (see `Files::split_table`).
    own_end: u32,
    used: u32,
    /// Where the search for a free slot starts.
    hint: u32,
}

impl Slots {
    fn occupy(&mut self, slot: u32, file: u32) {
        let i = slot as usize;
        if i >= self.owners.len() {
            self.owners.resize(i + 1, NO_SLOT);
        }
        if self.owners[i] == NO_SLOT {
            self.used += 1;
        }
        self.owners[i] = file;
    }

    /// Frees `slot` if `file` still holds it (a direct accept may have been
    /// given it since its close was issued).
    fn vacate(&mut self, slot: u32, file: u32) {
        if let Some(owner) = self.owners.get_mut(slot as usize) {
            if *owner == file {
                *owner = NO_SLOT;
                self.used -= 1;
                self.hint = self.hint.min(slot);
            }
        }
    }

    fn free_slot(&mut self) -> Option<u32> {
        if self.used >= self.size {
            return None;
        }
        let start = self.hint.min(self.own_end);
        let slot = (start..self.own_end)
            .chain(0..start)
            .find(|&slot| self.owners.get(slot as usize).is_none_or(|&o| o == NO_SLOT))?;
        self.hint = slot + 1;
        Some(slot)
    }
}

/// The ring fds, by the slot the ring chose for each, and the fixed table.
struct Files {
    records: Vec<File>,
    table: Table,
}

impl Files {
    fn new(size: Option<u32>) -> Files {
        Files {
            records: Vec::new(),
            table: Table::Unused(size.unwrap_or_else(default_table_size)),
        }
    }

    fn get(&self, file: u32) -> Option<&File> {
        self.records.get(file as usize)
    }

    fn set(&mut self, file: u32, record: File) {
        let i = file as usize;
        if i >= self.records.len() {
            self.records.resize_with(i + 1, || File::EMPTY);
        }
        self.records[i] = record;
    }

    fn take(&mut self, file: u32) -> File {
        match self.records.get_mut(file as usize) {
            Some(record) => std::mem::replace(record, File::EMPTY),
            None => File::EMPTY,
        }
    }

    fn table_mut(&mut self) -> &mut Slots {
        match &mut self.table {
            Table::Registered(slots) => slots,
            // Slots are only handed out by a registered table.
            _ => unreachable!("a fixed-table slot without a table"),
        }
    }

    /// Registers the fixed table (sparse) if it is not yet; whether there
    /// is one.
    fn ensure_table(&mut self, ring: &IoUring) -> bool {
        let Table::Unused(size) = self.table else {
            return matches!(self.table, Table::Registered(_));
        };
        if size == 0 {
            self.table = Table::Refused;
            return false;
        }
        match ring.submitter().register_files_sparse(size) {
            Ok(()) => {
                tracing::debug!(size, "fixed file table registered");
                self.table = Table::Registered(Slots {
                    owners: Vec::new(),
                    size,
                    own_end: size,
                    used: 0,
                    hint: 0,
                });
                true
            }
            Err(e) => {
                tracing::debug!(error = %e, size, "no fixed file table: ring fds use their fds");
                self.table = Table::Refused;
                false
            }
        }
    }

    /// Splits the table so that the kernel allocates slots (for direct
    /// accepts, and for files other rings move here, which may arrive at
    /// any moment) only above an eighth of it, and ouro's own
    /// registrations take the slots below: the two can then never pick the
    /// same slot. Whether the table is split.
    fn split_table(&mut self, ring: &IoUring) -> bool {
        let Table::Registered(slots) = &mut self.table else {
            return false;
        };
        if slots.own_end < slots.size {
            return true;
        }
        let own_end = slots.size / 8;
        if let Err(e) = restrict_allocations(ring, own_end, slots.size) {
            tracing::debug!(error = %e, "cannot split the fixed table: no files from other rings");
            return false;
        }
        slots.own_end = own_end;
        true
    }

    /// The table's used slots and size if every slot the kernel allocates
    /// from (all of them, or those above ouro's own once split) is taken.
    fn kernel_slots_taken(&self) -> Option<(u32, u32)> {
        let Table::Registered(slots) = &self.table else {
            return None;
        };
        let first = if slots.own_end < slots.size {
            slots.own_end
        } else {
            0
        };
        let taken = |slot: u32| {
            slots
                .owners
                .get(slot as usize)
                .is_some_and(|&owner| owner != NO_SLOT)
        };
        (first..slots.size)
            .all(taken)
            .then_some((slots.used, slots.size))
    }

    /// Whether a direct accept can expect a free slot.
    fn table_has_room(&self) -> bool {
        matches!(&self.table, Table::Registered(slots) if slots.used < slots.size)
    }

    /// Puts `fd` into a free slot of the table; `None` if there is no
    /// table, no room, or the kernel refused.
    fn register(&mut self, ring: &IoUring, fd: RawFd) -> Option<u32> {
        let Table::Registered(slots) = &mut self.table else {
            return None;
        };
        let slot = slots.free_slot()?;
        match ring.submitter().register_files_update(slot, &[fd]) {
            Ok(1) => Some(slot),
            result => {
                tracing::debug!(
                    ?result,
                    slot,
                    "registering a ring fd in the fixed table failed"
                );
                None
            }
        }
    }

    /// Empties `slot` of ring fd `file` at once (nothing may use it).
    fn unregister(&mut self, ring: &IoUring, slot: u32, file: u32) {
        if let Err(e) = ring.submitter().register_files_update(slot, &[-1]) {
            tracing::warn!(error = %e, slot, "emptying a fixed-table slot failed");
        }
        self.table_mut().vacate(slot, file);
    }

    /// How the kernel sees `fd`.
    #[inline(always)]
    fn target(&self, fd: Fd) -> Target {
        match fd.named() {
            Named::Raw(raw) => Target::Fd(raw),
            Named::Ring(file) => match self.get(file) {
                Some(record) if record.slot != NO_SLOT => Target::Fixed(record.slot),
                Some(File { fd: Some(fd), .. }) => Target::Fd(fd.as_raw_fd()),
                _ => Target::Fd(-1),
            },
        }
    }

    /// A process fd for a system call made in place of an operation the
    /// kernel lacks.
    fn process_fd(&self, fd: Fd) -> Result<RawFd, Immediate> {
        match fd.named() {
            Named::Raw(raw) => Ok(raw),
            Named::Ring(file) => match self.get(file) {
                Some(File { fd: Some(fd), .. }) => Ok(fd.as_raw_fd()),
                Some(File { slot, .. }) if *slot != NO_SLOT => {
                    Err(Immediate::Failed(io::Error::new(
                        io::ErrorKind::Unsupported,
                        "this kernel's io_uring lacks the operation, and a direct \
                         descriptor has no fd for the system call",
                    )))
                }
                _ => Ok(-1),
            },
        }
    }

    /// What the close of ring fd `file` closes: its slot (its process fd,
    /// an extra reference, is closed here), or else its process fd.
    fn begin_close(&mut self, file: u32) -> Option<Target> {
        let record = self.records.get_mut(file as usize)?;
        if record.slot != NO_SLOT {
            drop(record.fd.take());
            record.closing = std::mem::replace(&mut record.slot, NO_SLOT);
            return Some(Target::Fixed(record.closing));
        }
        let fd = record.fd.take()?;
        Some(Target::Fd(fd.into_raw_fd()))
    }
}

/// The fixed table's size unless the ring was built with another: as many
/// files as the process may have open (the kernel's limit for the table),
/// up to 65536 (about 0.5 MiB of kernel memory).
fn default_table_size() -> u32 {
    const CAP: u32 = 1 << 16;
    // SAFETY: getrlimit writes into the struct we pass.
    let mut limit: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return 1024;
    }
    u32::try_from(limit.rlim_cur).unwrap_or(CAP).min(CAP)
}

/// Why a direct descriptor cannot be lent or given back.
fn no_process_fd() -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        "this ring fd is a direct descriptor: io_uring accepted it straight into its \
         fixed file table, and the process has no fd for it",
    )
}

impl Opcodes {
    /// Multishot accept and provided buffer rings came with Linux 5.19,
    /// which also brought `IORING_OP_SOCKET`: the probe shows the release.
    fn has_multishot_accept(&self) -> bool {
        self.supports(opcode::Socket::CODE)
    }

    /// Multishot receive came with Linux 6.0, as did `IORING_OP_SEND_ZC`.
    fn has_multishot_recv(&self) -> bool {
        self.supports(opcode::SendZc::CODE)
    }

    fn supports(&self, code: u8) -> bool {
        self.0[usize::from(code / 64)] & (1 << (code % 64)) != 0
    }

    /// A close-on-exec socket's submission, or the system call made in its
    /// place on kernels without `IORING_OP_SOCKET` (before 5.19).
    fn socket(&self, domain: i32, ty: i32, protocol: i32) -> Result<squeue::Entry, Immediate> {
        let ty = ty | libc::SOCK_CLOEXEC;
        if !self.supports(opcode::Socket::CODE) {
            // SAFETY: plain system call on integers.
            let res = unsafe { libc::socket(domain, ty, protocol) };
            return Err(Immediate::Done(syscall_result(res)));
        }
        Ok(opcode::Socket::new(domain, ty, protocol).build())
    }

    fn require(&self, code: u8, name: &str, kernel: &str) -> Result<(), Immediate> {
        if self.supports(code) {
            return Ok(());
        }
        Err(Immediate::Failed(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("this kernel's io_uring lacks {name} (it needs Linux {kernel})"),
        )))
    }

    /// Pushes the submission for `op` onto `sq`, or gives the result `op`
    /// comes to without one (a system call made in its place, or bad input).
    #[inline(always)]
    fn prepare(
        &self,
        op: &mut Op,
        files: &mut Files,
        sq: &mut SubmissionQueue<'_>,
        user_data: u64,
    ) -> Result<Started, Immediate> {
        // Each arm pushes its own entry. Arms that joined on one entry value
        // made the compiler carry each of its fields through the join apart
        // (some twenty moves per submission, 10 % of a noop's instructions).
        macro_rules! submit {
            ($entry:expr) => {
                return Ok(push_to(sq, $entry.user_data(user_data)))
            };
        }
        let entry = match op {
            Op::Noop => submit!(opcode::Nop::new().build()),
            Op::Accept { fd, addr } => {
                addr.clear();
                let (addr, len) = (addr.as_mut_ptr(), &mut addr.len as *mut _);
                submit!(with_target!(files.target(*fd), |t| opcode::Accept::new(
                    t, addr, len
                )
                .flags(libc::SOCK_CLOEXEC)
                .build()))
            }
            Op::Connect { fd, addr } => {
                submit!(with_target!(files.target(*fd), |t| opcode::Connect::new(
                    t,
                    addr.as_ptr(),
                    addr.len
                )
                .build()))
            }
            Op::Bind { fd, addr } => {
                if !self.supports(opcode::Bind::CODE) {
                    let fd = files.process_fd(*fd)?;
                    // SAFETY: `addr` holds `len` bytes of a valid sockaddr.
                    let res = unsafe { libc::bind(fd, addr.as_ptr(), addr.len) };
                    return Err(Immediate::Done(syscall_result(res)));
                }
                submit!(with_target!(files.target(*fd), |t| opcode::Bind::new(
                    t,
                    addr.as_ptr(),
                    addr.len
                )
                .build()))
            }
            Op::Listen { fd, backlog } => {
                if !self.supports(opcode::Listen::CODE) {
                    let fd = files.process_fd(*fd)?;
                    // SAFETY: plain system call on integers.
                    let res = unsafe { libc::listen(fd, *backlog) };
                    return Err(Immediate::Done(syscall_result(res)));
                }
                submit!(with_target!(files.target(*fd), |t| opcode::Listen::new(
                    t, *backlog
                )
                .build()))
            }
            Op::Socket {
                domain,
                ty,
                protocol,
            } => self.socket(*domain, *ty, *protocol)?,
            Op::SocketDirect {
                domain,
                ty,
                protocol,
                into_table,
            } => {
                *into_table = self.supports(opcode::Socket::CODE) && files.table_has_room();
                if !*into_table {
                    self.socket(*domain, *ty, *protocol)?
                } else {
                    // No SOCK_CLOEXEC: a direct descriptor has no process
                    // fd, and the kernel refuses the flag with a slot.
                    opcode::Socket::new(*domain, *ty & !libc::SOCK_CLOEXEC, *protocol)
                        .file_index(Some(types::DestinationSlot::auto_target()))
                        .build()
                }
            }
            Op::Send { fd, buf, flags } => {
                let (ptr, len) = buf.raw_parts();
                submit!(with_target!(files.target(*fd), |t| opcode::Send::new(
                    t,
                    ptr,
                    clamp_len(len)
                )
                .flags(*flags)
                .build()))
            }
            Op::Recv { fd, buf, flags } => {
                let (ptr, len) = buf.spare_parts();
                submit!(with_target!(files.target(*fd), |t| opcode::Recv::new(
                    t,
                    ptr,
                    clamp_len(len)
                )
                .flags(*flags)
                .build()))
            }
            Op::Read { fd, buf, offset } => {
                let (ptr, len) = buf.spare_parts();
                submit!(with_target!(files.target(*fd), |t| opcode::Read::new(
                    t,
                    ptr,
                    clamp_len(len)
                )
                .offset(*offset)
                .build()))
            }
            Op::Write { fd, buf, offset } => {
                let (ptr, len) = buf.raw_parts();
                submit!(with_target!(files.target(*fd), |t| opcode::Write::new(
                    t,
                    ptr,
                    clamp_len(len)
                )
                .offset(*offset)
                .build()))
            }
            Op::Readv {
                fd,
                bufs,
                iov,
                offset,
            } => {
                bufs.fill_iovecs(iov, true);
                let (ptr, len) = (iov.as_ptr(), clamp_len(iov.len()));
                submit!(with_target!(files.target(*fd), |t| opcode::Readv::new(
                    t, ptr, len
                )
                .offset(*offset)
                .build()))
            }
            Op::Writev {
                fd,
                bufs,
                iov,
                offset,
            } => {
                bufs.fill_iovecs(iov, false);
                let (ptr, len) = (iov.as_ptr(), clamp_len(iov.len()));
                submit!(with_target!(files.target(*fd), |t| opcode::Writev::new(
                    t, ptr, len
                )
                .offset(*offset)
                .build()))
            }
            Op::Close { fd } => {
                let Some(owned) = fd.take() else {
                    return Err(Immediate::Done(-libc::EBADF));
                };
                opcode::Close::new(types::Fd(owned.into_raw_fd())).build()
            }
            Op::CloseRing { file } => match files.begin_close(*file) {
                Some(target) => {
                    submit!(with_typed_target!(target, |t| opcode::Close::new(t).build()))
                }
                None => return Err(Immediate::Done(-libc::EBADF)),
            },
            Op::Poll { fd, mask } => {
                submit!(with_target!(files.target(*fd), |t| opcode::PollAdd::new(
                    t, *mask
                )
                .build()))
            }
            Op::Open {
                dir,
                path,
                flags,
                mode,
            } => opcode::OpenAt::new(types::Fd(*dir), path.as_ptr().cast())
                .flags(*flags)
                .mode(*mode)
                .build(),
            Op::OpenDirect {
                dir,
                path,
                flags,
                mode,
                into_table,
            } => {
                *into_table = files.table_has_room();
                let open = opcode::OpenAt::new(types::Fd(*dir), path.as_ptr().cast()).mode(*mode);
                if !*into_table {
                    open.flags(*flags).build()
                } else {
                    // No O_CLOEXEC: a direct descriptor has no process fd,
                    // and the kernel refuses the flag with a slot.
                    open.flags(*flags & !libc::O_CLOEXEC)
                        .file_index(Some(types::DestinationSlot::auto_target()))
                        .build()
                }
            }
            Op::Stat {
                dir,
                path,
                flags,
                out,
            } => {
                let out: *mut libc::statx = &mut **out;
                opcode::Statx::new(types::Fd(*dir), path.as_ptr().cast(), out.cast())
                    .flags(*flags)
                    .mask(libc::STATX_BASIC_STATS | libc::STATX_BTIME)
                    .build()
            }
            Op::Fsync { fd, datasync } => {
                let flags = if *datasync {
                    types::FsyncFlags::DATASYNC
                } else {
                    types::FsyncFlags::empty()
                };
                submit!(with_target!(files.target(*fd), |t| opcode::Fsync::new(t)
                    .flags(flags)
                    .build()))
            }
            Op::Splice {
                fd_in,
                off_in,
                fd_out,
                off_out,
                len,
                flags,
            } => {
                self.require(opcode::Splice::CODE, "IORING_OP_SPLICE", "5.7")?;
                let (off_in, off_out, len, flags) = (*off_in, *off_out, *len, *flags);
                let (fd_in, fd_out) = (files.target(*fd_in), files.target(*fd_out));
                submit!(with_typed_target!(fd_in, |input| with_typed_target!(
                    fd_out,
                    |output| {
                        opcode::Splice::new(input, off_in, output, off_out, len)
                            .flags(flags)
                            .build()
                    }
                )))
            }
            Op::Shutdown { fd, how } => {
                if !self.supports(opcode::Shutdown::CODE) {
                    let fd = files.process_fd(*fd)?;
                    // SAFETY: plain system call on integers.
                    let res = unsafe { libc::shutdown(fd, *how) };
                    return Err(Immediate::Done(syscall_result(res)));
                }
                submit!(with_target!(files.target(*fd), |t| opcode::Shutdown::new(
                    t, *how
                )
                .build()))
            }
            Op::SendMsg {
                fd,
                bufs,
                msg,
                flags,
            } => {
                bufs.fill_iovecs(&mut msg.iov, false);
                msg.prepare(false);
                let hdr: *const libc::msghdr = &msg.hdr;
                submit!(with_target!(files.target(*fd), |t| opcode::SendMsg::new(
                    t, hdr
                )
                .flags(*flags as u32)
                .build()))
            }
            Op::RecvMsg {
                fd,
                bufs,
                msg,
                flags,
            } => {
                bufs.fill_iovecs(&mut msg.iov, true);
                msg.prepare(true);
                let hdr: *mut libc::msghdr = &mut msg.hdr;
                submit!(with_target!(files.target(*fd), |t| opcode::RecvMsg::new(
                    t, hdr
                )
                .flags(*flags as u32)
                .build()))
            }
            Op::AcceptMulti { fd } => self.accept_multi(files.target(*fd)),
            Op::AcceptDirect { fd, into_table } => {
                let target = files.target(*fd);
                *into_table = self.has_multishot_accept() && files.table_has_room();
                if !*into_table {
                    self.accept_multi(target)
                } else {
                    // No SOCK_CLOEXEC: a direct descriptor has no process
                    // fd, and the kernel refuses the flag with a slot.
                    submit!(with_target!(target, |t| opcode::AcceptMulti::new(t)
                        .allocate_file_index(true)
                        .build()))
                }
            }
            Op::RecvMulti { fd, group, held } => {
                let target = files.target(*fd);
                if group.is_kernel_ring() && self.has_multishot_recv() {
                    submit!(with_target!(target, |t| opcode::RecvMulti::new(
                        t, group.id
                    )
                    .build()))
                } else if group.is_kernel_ring() {
                    let size = group.size() as u32;
                    submit!(with_target!(target, |t| opcode::Recv::new(
                        t,
                        std::ptr::null_mut(),
                        size
                    )
                    .buf_group(group.id)
                    .build()
                    .flags(squeue::Flags::BUFFER_SELECT)))
                } else {
                    let Some(bid) = group.take_free() else {
                        return Err(Immediate::Done(-libc::ENOBUFS));
                    };
                    *held = Some(bid);
                    let (ptr, size) = (group.buffer_ptr(bid), clamp_len(group.size()));
                    submit!(with_target!(target, |t| opcode::Recv::new(t, ptr, size).build()))
                }
            }
            Op::SendFd {
                fd, token, target, ..
            } => {
                let Target::Fixed(slot) = files.target(*fd) else {
                    // `send_fd` sends only ring fds that have a slot.
                    return Err(Immediate::Done(-libc::EBADF));
                };
                submit!(opcode::MsgRingSendFd::new(
                    types::Fd(target.as_raw_fd()),
                    types::Fixed(slot),
                    types::DestinationSlot::auto_target(),
                    parcel_arrival(*token),
                )
                .build())
            }
            Op::Timer { .. }
            | Op::Cancel
            | Op::CancelAll { .. }
            | Op::MsgRing { .. }
            | Op::StopThread { .. } => {
                return Err(Immediate::Done(-libc::EINVAL));
            }
        };
        submit!(entry)
    }

    /// A multishot accept of plain fds; on kernels without multishot
    /// accept, a single accept.
    fn accept_multi(&self, target: Target) -> squeue::Entry {
        if self.has_multishot_accept() {
            with_target!(target, |t| opcode::AcceptMulti::new(t)
                .flags(libc::SOCK_CLOEXEC)
                .build())
        } else {
            with_target!(target, |t| opcode::Accept::new(
                t,
                std::ptr::null_mut(),
                std::ptr::null_mut()
            )
            .flags(libc::SOCK_CLOEXEC)
            .build())
        }
    }
}

/// Pushes a task's entry onto a queue that has room.
#[inline(always)]
fn push_to(sq: &mut SubmissionQueue<'_>, entry: squeue::Entry) -> Started {
    // SAFETY: as in `Uring::push`.
    match unsafe { sq.push(&entry) } {
        Ok(()) => Started::Yes,
        Err(_) => Started::Full,
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

/// Whether MSG_RING takes flags (6.3): one self-addressed message, once per
/// process. Its completions carry `PROBE` and are consumed here.
fn probe_doorbells(ring: &mut IoUring) -> bool {
    if let Some(&known) = DOORBELLS.get() {
        return known;
    }
    let entry = opcode::MsgRingData::new(types::Fd(ring.as_raw_fd()), 0, PROBE, Some(0))
        .build()
        .user_data(PROBE);
    // SAFETY: a MSG_RING data request points to no memory.
    if unsafe { ring.submission().push(&entry) }.is_err() {
        return false;
    }
    let supported = match ring.submit_and_wait(1) {
        Ok(_) => {
            let results: Vec<i32> = ring.completion().map(|cqe| cqe.result()).collect();
            !results.is_empty() && results.iter().all(|&res| res >= 0)
        }
        Err(_) => false,
    };
    *DOORBELLS.get_or_init(|| supported)
}

fn timespec(ns: u64) -> types::Timespec {
    types::Timespec::new()
        .sec(ns / 1_000_000_000)
        .nsec((ns % 1_000_000_000) as u32)
}

fn clamp_len(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

fn syscall_result(res: libc::c_int) -> i32 {
    if res < 0 {
        -io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO)
    } else {
        res
    }
}

fn is_busy(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EBUSY | libc::EAGAIN))
}

/// Builds a ring with the best setup the kernel accepts; one that must
/// share a work queue and cannot is built without.
fn build(entries: u32, options: Options) -> io::Result<(IoUring, &'static str)> {
    if options.attach_wq.is_none() {
        return build_with(entries, options);
    }
    build_with(entries, options).or_else(|err| {
        tracing::debug!(error = %err, "IORING_SETUP_ATTACH_WQ refused; setting up a ring of its own");
        build_with(
            entries,
            Options {
                attach_wq: None,
                ..options
            },
        )
    })
}

fn build_with(entries: u32, options: Options) -> io::Result<(IoUring, &'static str)> {
    type Setup = (&'static str, fn(&mut io_uring::Builder));
    const SETUPS: [Setup; 5] = [
        ("single_issuer+defer_taskrun+taskrun_flag+submit_all", |b| {
            b.setup_single_issuer()
                .setup_defer_taskrun()
                .setup_taskrun_flag()
                .setup_submit_all();
        }),
        // For a pollable ring (see the module docs).
        ("single_issuer+coop_taskrun+taskrun_flag+submit_all", |b| {
            b.setup_single_issuer()
                .setup_coop_taskrun()
                .setup_taskrun_flag()
                .setup_submit_all();
        }),
        ("coop_taskrun+taskrun_flag+submit_all", |b| {
            b.setup_coop_taskrun()
                .setup_taskrun_flag()
                .setup_submit_all();
        }),
        ("coop_taskrun+taskrun_flag", |b| {
            b.setup_coop_taskrun().setup_taskrun_flag();
        }),
        ("plain", |_| {}),
    ];
    let mut last = None;
    for (name, configure) in SETUPS {
        if options.pollable && name.contains("defer_taskrun") {
            continue;
        }
        let mut builder = IoUring::builder();
        builder.setup_clamp();
        configure(&mut builder);
        if let Some(fd) = options.attach_wq {
            builder.setup_attach_wq(fd);
        }
        match builder.build(entries) {
            Ok(ring) => return Ok((ring, name)),
            // EINVAL: this kernel does not know a flag; try fewer.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => last = Some(e),
            Err(e) => return Err(explain_setup_error(e)),
        }
    }
    Err(explain_setup_error(last.unwrap_or_else(|| {
        io::Error::from_raw_os_error(libc::EINVAL)
    })))
}

/// Why `io_uring_setup` failed, in words, keeping the OS error.
pub(crate) fn explain_setup_error(e: io::Error) -> io::Error {
    let why = match e.raw_os_error() {
        Some(libc::ENOSYS) => {
            "the kernel has no io_uring (older than 5.1, built without CONFIG_IO_URING, \
             or a sandbox such as gVisor that does not offer it)"
        }
        Some(libc::EPERM) => {
            "io_uring is not permitted: a seccomp filter blocks it (Docker's default \
             profile does since 25.0), or sysctl kernel.io_uring_disabled is 2 \
             (or 1 and this process is not in kernel.io_uring_group)"
        }
        Some(libc::ENOMEM) => {
            "not enough locked memory for the ring: raise RLIMIT_MEMLOCK (ulimit -l) \
             or use fewer entries (kernels before 5.12 charge rings to it)"
        }
        Some(libc::EINVAL) => "the kernel rejected every io_uring setup ouro tried",
        _ => "io_uring_setup failed",
    };
    io::Error::new(e.kind(), SetupError { why, source: e })
}

/// An `io_uring_setup` failure with its likely cause.
#[derive(Debug)]
pub struct SetupError {
    why: &'static str,
    source: io::Error,
}

impl SetupError {
    /// The OS error `io_uring_setup` returned.
    pub fn os_error(&self) -> Option<i32> {
        self.source.raw_os_error()
    }

    /// The setup error inside `err`, when `err` is what building an
    /// io_uring ring returned because `io_uring_setup` failed (or a ring's
    /// [`fallback_reason`](crate::Ring::fallback_reason)). The `io::Error`
    /// keeps the OS error's kind, not its code, so this is how to get at it.
    pub fn find(err: &io::Error) -> Option<&SetupError> {
        err.get_ref()?.downcast_ref()
    }

    /// Whether io_uring cannot be used on this host at all: the kernel or a
    /// sandbox lacks it (`ENOSYS`), or a seccomp filter or sysctl forbids it
    /// (`EPERM`). Other failures (e.g. `ENOMEM` from a low `RLIMIT_MEMLOCK`)
    /// may go away with a smaller ring or a higher limit.
    pub fn is_unavailable(&self) -> bool {
        matches!(self.os_error(), Some(libc::ENOSYS | libc::EPERM))
    }
}

impl std::fmt::Display for SetupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "io_uring setup failed ({}): {}", self.source, self.why)
    }
}

impl std::error::Error for SetupError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}
