//! Moving a ring fd to another ring ([`Ring::send_fd`]).
//!
//! Between io_uring rings on a kernel that takes MSG_RING doorbells (6.3),
//! the file goes from the sender's fixed file table straight into the
//! target's with `IORING_MSG_SEND_FD`: no process fd is made on either
//! side. The message itself still travels through the target's mailbox,
//! as a *parcel*: the sender puts the envelope in the mailbox under a token
//! before it submits, the kernel installs the file in a slot of the
//! target's table that it picks and posts the target a completion naming
//! the token and the slot, and the target then takes the envelope and runs
//! its callback with the new ring fd. The sender's own completion comes
//! after the file has landed; it then settles the parcel under the
//! mailbox's lock:
//!
//! - the target took it, or its mailbox is still open (so it will): the
//!   send succeeded, and the sender's ring fd is closed;
//! - the send failed, or the file landed in a ring that has closed its
//!   mailbox meanwhile: the parcel is withdrawn and the ring fd stays the
//!   sender's (a file that landed is closed with the target's table).
//!
//! Everywhere else (another backend, an older kernel, a ring fd with no
//! fixed slot, a target without a fixed table, `msg_ring(false)`) the ring
//! fd is taken out as a process fd ([`Ring::take_fd`]) and travels in an
//! ordinary envelope; the target registers it. Either way the target's
//! callback gets [`Payload::RingFd`].

use std::io;
use std::os::fd::OwnedFd;
use std::sync::Arc;

use crate::error::closed_error;
use crate::fd::{Fd, RingFd};
use crate::mailbox::{Envelope, ErasedCallback, Handover, Mailbox, Payload, NO_TASK};
use crate::op::Op;
use crate::task::Task;

use super::{Ctx, Ring, RingHandle};

impl<S> Ring<S> {
    /// Moves ring fd `fd` to the ring behind `target`, which runs
    /// `message`'s callback with [`Outcome::Message`](crate::Outcome::Message)`(`[`Payload::RingFd`]`)`
    /// carrying a ring fd of its own for the same file (a connection
    /// accepted here, served there).
    ///
    /// This task's callback gets [`Outcome::MsgRing`](crate::Outcome::MsgRing): `Ok` once the target
    /// has the file (`fd` is then closed here, its handle stale), or an
    /// error with the ring fd given back — `EPIPE` when the target is
    /// closed, `EBUSY` when tasks still name `fd` (it must be idle),
    /// `EBADF` for a stale handle. Sent to its own ring, it stays and the
    /// message carries it as is. A ring fd that had to travel as a
    /// process fd (see below) and was refused comes back as
    /// [`Payload::Fd`]. With [`Ctx::none`], a ring fd that could not be
    /// moved is closed.
    ///
    /// Between io_uring rings (Linux 6.3) the file goes from this ring's
    /// fixed file table to the target's with `IORING_MSG_SEND_FD`, and no
    /// process fd is made: a direct descriptor stays one. Otherwise it is
    /// taken out as a process fd ([`take_fd`](Ring::take_fd), which for a
    /// direct descriptor needs Linux 6.8) and the target registers it.
    pub fn send_fd<T>(
        &mut self,
        target: &RingHandle<T>,
        fd: RingFd,
        message: Ctx<T>,
        ctx: Ctx<S>,
    ) -> Task {
        let Some(file) = self.files.lookup(fd) else {
            return self.refuse_fd(ctx, message, fd, io::Error::from_raw_os_error(libc::EBADF));
        };
        let own = self.messaging.mailbox.as_ref();
        if own.is_some_and(|own| Arc::ptr_eq(own, &target.mailbox)) {
            // Already here: the message carries the same ring fd.
            return self.msg_ring(target, message, Payload::RingFd(fd), ctx);
        }
        if target.is_closed() {
            return self.refuse_fd(ctx, message, fd, closed_error());
        }
        if self.files.busy(file) {
            return self.refuse_fd(ctx, message, fd, io::Error::from_raw_os_error(libc::EBUSY));
        }
        let fixed = self.msg_ring && self.backend.fixed_slot(file).is_some();
        if let Some(target_ring) = fixed
            .then(|| self.messaging.parcel_target(&target.mailbox))
            .flatten()
        {
            return self.send_parcel(target, file, target_ring, message, ctx);
        }
        let owned = match self.take_fd(fd) {
            Ok(owned) => owned,
            Err(err) => return self.refuse_fd(ctx, message, fd, err),
        };
        let envelope = Envelope::Moved {
            callback: message.callback.map(ErasedCallback::new),
            msg: message.msg,
            key: message.key,
            fd: owned,
        };
        self.send_envelope(&target.mailbox, envelope, ctx)
    }

    fn send_parcel<T>(
        &mut self,
        target: &RingHandle<T>,
        file: u32,
        target_ring: Arc<OwnedFd>,
        message: Ctx<T>,
        ctx: Ctx<S>,
    ) -> Task {
        let token = match target
            .mailbox
            .hold_parcel(Envelope::message(message, Payload::None))
        {
            Ok(token) => token,
            Err(_) => {
                let fd = self.files.handle(file);
                return self.refuse_fd(ctx, message, fd, closed_error());
            }
        };
        let op = Op::SendFd {
            fd: Fd::ring(file),
            token,
            target: target_ring,
            mailbox: target.mailbox.clone(),
        };
        self.schedule(op, ctx)
    }

    /// A `send_fd` that fails at once: the ring fd goes back to the caller
    /// (closed if nobody listens).
    fn refuse_fd<T>(&mut self, ctx: Ctx<S>, message: Ctx<T>, fd: RingFd, err: io::Error) -> Task {
        if ctx.callback.is_none() {
            self.close(fd, Ctx::none());
            return NO_TASK;
        }
        let envelope = Some(Envelope::message(message, Payload::RingFd(fd)));
        self.reject(Op::MsgRing { envelope }, ctx, err)
    }

    /// The sender's bookkeeping when its `IORING_MSG_SEND_FD` completed
    /// (from `settle_files`, once no task names the ring fd any more):
    /// the result the sender's callback gets.
    pub(super) fn settle_sent_fd(
        &mut self,
        file: u32,
        mailbox: &Mailbox,
        token: u32,
        result: io::Result<u32>,
        listened: bool,
    ) -> io::Result<u32> {
        let handover = mailbox.settle_parcel(token, result.is_ok());
        let result = match handover {
            Handover::Accepted => Ok(0),
            Handover::Refused => Err(closed_error()),
            Handover::Failed => result,
        };
        // Moved, or refused with nobody to give it back to: it goes (a
        // close asked for meanwhile, which waited for this task, does it).
        // The close is a task, and a task may not start while another's
        // completion is being delivered: the next turn starts it.
        if (result.is_ok() || !listened) && self.files.is_open(file) {
            self.files.close_moved(file);
        }
        result
    }

    /// Starts the closes of the ring fds moved away since the last turn.
    pub(super) fn close_moved(&mut self) {
        while let Some(file) = self.files.moved.pop() {
            let task = self.slab.insert(Op::CloseRing { file }, Ctx::none());
            self.start_waiting(task.index);
        }
    }

    /// A parcel's file has landed in this ring's fixed table, in `slot`:
    /// the message it came with is delivered with a ring fd for it. (Out
    /// of line: inlined, it would make every completion's dispatch save
    /// registers it does not need.)
    #[inline(never)]
    pub(super) fn parcel_landed(&mut self, state: &mut S, token: u32, slot: i32) -> usize {
        let Ok(slot) = u32::try_from(slot) else {
            return 0;
        };
        let envelope = self
            .messaging
            .mailbox
            .as_ref()
            .and_then(|mailbox| mailbox.take_parcel(token));
        let Some(Envelope::Message {
            callback, msg, key, ..
        }) = envelope
        else {
            // Withdrawn by its sender (this ring closed its mailbox first).
            self.backend.close_orphan(slot);
            return 0;
        };
        let file = self.files.insert();
        self.backend.adopt_fixed(file, slot);
        let fd = self.files.handle(file);
        self.deliver_ring_fd(state, callback, msg, key, fd)
    }

    /// Runs a message's callback with a ring fd that arrived; closes the
    /// ring fd if there is no callback (nothing else would).
    pub(super) fn deliver_ring_fd(
        &mut self,
        state: &mut S,
        callback: Option<ErasedCallback>,
        msg: u16,
        key: u64,
        fd: RingFd,
    ) -> usize {
        if callback.is_none() {
            self.close(fd, Ctx::none());
            return 1;
        }
        self.deliver_message(state, callback, msg, key, Payload::RingFd(fd))
    }
}
