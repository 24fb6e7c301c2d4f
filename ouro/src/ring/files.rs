//! Ring fds: files the ring owns, kept open while tasks name them.

use std::io;
use std::os::fd::{BorrowedFd, FromRawFd, OwnedFd};

use super::slab::{CancelReason, State, HOLDS_OWNERS};
use super::Ctx;
use super::Ring;
use crate::error::bad_ring_fd;
use crate::fd::sealed::Source;
use crate::fd::{Fd, OpFd, RingFd};
use crate::op::Op;
use crate::task::Task;

impl<S> Ring<S> {
    /// Hands `fd` to the ring for good and returns its handle, which every
    /// operation takes in place of any other fd (see [`RingFd`]). The ring
    /// keeps the file open while tasks name it and closes it on
    /// [`close`](Ring::close), or when the ring is dropped.
    ///
    /// On io_uring the file also goes into the ring's fixed file table
    /// (5.19; set up on first use, sized by [`RingBuilder::fixed_files`](crate::RingBuilder::fixed_files)),
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
    pub(super) fn op_fd(&mut self, fd: impl OpFd) -> Fd {
        let source = fd.source();
        self.keeps.discard_staged();
        self.stage(source)
    }

    /// [`op_fd`](Self::op_fd) for an operation naming two fds: both are
    /// looked at (user code: `as_fd`) before either is staged.
    pub(super) fn op_fds(&mut self, first: impl OpFd, second: impl OpFd) -> (Fd, Fd) {
        let (first, second) = (first.source(), second.source());
        self.keeps.discard_staged();
        (self.stage(first), self.stage(second))
    }

    #[inline(always)]
    fn stage(&mut self, source: Source) -> Fd {
        match source {
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
    pub(super) fn add_fd_users(&mut self, index: u32) {
        if self.files.live() > 0 {
            let fds = self.slab.slots[index as usize].op.fds();
            self.files.add_users(index, fds);
        }
        if self.keeps.has_staged() {
            self.slab.slots[index as usize].extras |= HOLDS_OWNERS;
            self.keeps.hold(index);
        }
    }

    pub(super) fn close_ring_fd(&mut self, fd: RingFd, ctx: Ctx<S>) -> Task {
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
    pub(super) fn start_waiting(&mut self, index: u32) {
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
    pub(super) fn settle_files(
        &mut self,
        index: u32,
        result: io::Result<u32>,
        last: bool,
    ) -> io::Result<u32> {
        let op = &self.slab.slots[index as usize].op;
        let fds = op.fds();
        let result = match *op {
            Op::AcceptDirect { into_table, .. }
            | Op::SocketDirect { into_table, .. }
            | Op::OpenDirect { into_table, .. } => {
                if last {
                    self.files.directs_live -= 1;
                    self.backend.direct_ended(op);
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
