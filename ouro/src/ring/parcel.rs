//! Moving a ring fd to another ring ([`Ring::send_fd`]).
//!
//! Between io_uring rings on a kernel that takes MSG_RING doorbells (6.3),
//! the file goes from the sender's fixed file table straight into the
//! target's with `IORING_MSG_SEND_FD`: the file is never a process fd on
//! either side. The message travels as a *parcel*: it goes out with the
//! sender's other messages to that target, in order, while the kernel
//! installs the file in a slot of the target's table that it picks and
//! posts the target a completion naming the parcel's token and the slot.
//! The target's mailbox keeps a record per token where the two meet
//! (`mailbox/parcel.rs`): the target delivers the message, with a new ring
//! fd for the slot, when it comes up in its queue and the file has landed;
//! until then, the messages behind it wait (a file lands within the
//! sender's next submission). The sender's own completion comes after the
//! file has landed; it first publishes its outbox to that target (so the
//! message has been accepted or refused), then settles:
//!
//! - the message was accepted: the send succeeded, and the sender's ring
//!   fd is closed;
//! - the send failed (the target skips the message), or the message was
//!   refused by a target that closed its mailbox meanwhile (a file that
//!   landed there is closed with its table): the ring fd stays the
//!   sender's.
//!
//! Everywhere else (another backend, an older kernel, a ring fd with no
//! fixed slot, a target without a fixed table, `msg_ring(false)`) the ring
//! fd is taken out as a process fd ([`Ring::take_fd`]) and travels in an
//! ordinary envelope; the target registers it. Either way the target's
//! callback gets [`Payload::RingFd`], in the order the messages were sent.

use std::io;
use std::os::fd::OwnedFd;
use std::sync::Arc;

use crate::error::closed_error;
use crate::fd::{Fd, RingFd};
use crate::mailbox::{Arrival, Envelope, ErasedCallback, Handover, Mailbox, Payload, NO_TASK};
use crate::op::Op;
use crate::task::Task;

use super::{Ctx, Ring, RingHandle};

impl<S> Ring<S> {
    /// Moves ring fd `fd` to the ring behind `target`, which runs
    /// `message`'s callback with [`Outcome::Message`](crate::Outcome::Message)`(`[`Payload::RingFd`]`)`
    /// carrying a ring fd of its own for the same file (a connection
    /// accepted here, served there).
    ///
    /// From this call on, `fd` is stale here: a new operation naming it
    /// fails with `EBADF`, also while the file is on its way. This task's
    /// callback gets [`Outcome::MsgRing`](crate::Outcome::MsgRing): `Ok` once the target
    /// has the file (`fd` is then closed here), or an
    /// error with the ring fd given back, usable again — `EPIPE` when the target is
    /// closed, `EBUSY` when tasks still name `fd` (it must be idle),
    /// `EBADF` for a stale handle, `ENFILE` when the file would go kernel
    /// to kernel (below) and the target's fixed table has no slot free.
    /// Sent to its own ring, it stays and the message carries it as is. A
    /// ring fd that had to travel as a
    /// process fd (see below) and was refused comes back as
    /// [`Payload::Fd`]. With [`Ctx::none`], a ring fd that could not be
    /// moved is closed.
    ///
    /// The message goes out at the start of this ring's next turn, in
    /// order with the other messages this ring sends the target.
    ///
    /// Between io_uring rings (Linux 6.3) the file goes from this ring's
    /// fixed file table to the target's with `IORING_MSG_SEND_FD`, and the
    /// file never becomes a process fd: a direct descriptor stays one (the
    /// first move to a target duplicates the target's io_uring fd, once,
    /// which can fail with `EMFILE` like any fd). Otherwise it is taken out
    /// as a process fd ([`take_fd`](Ring::take_fd), which for a direct
    /// descriptor needs Linux 6.8) and the target registers it.
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
        let Some(token) = target.mailbox.hold_parcel() else {
            let fd = self.files.handle(file);
            return self.refuse_fd(ctx, message, fd, closed_error());
        };
        let envelope = Envelope::Parcel {
            token,
            callback: message.callback.map(ErasedCallback::new),
            msg: message.msg,
            key: message.key,
        };
        self.messaging.queue_parcel(&target.mailbox, envelope);
        // From now on the file may be the target's: no new task may read
        // or write it here (on the other paths `take_fd` made the handle
        // stale already).
        self.files.begin_move(file);
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
        mailbox: &Arc<Mailbox>,
        token: u32,
        result: io::Result<u32>,
        listened: bool,
    ) -> io::Result<u32> {
        // The kernel may have been quicker than this ring's next turn.
        self.publish_parcels_to(mailbox);
        let handover = mailbox.settle_parcel(token, result.is_ok());
        let result = match handover {
            Handover::Accepted => Ok(0),
            Handover::Refused => Err(closed_error()),
            // A target that closed meanwhile has unregistered its table,
            // and the kernel says so as `ENFILE`: the target is gone.
            Handover::Failed if result.is_err() && mailbox.is_closed() => Err(closed_error()),
            Handover::Failed => result,
        };
        // Moved, or refused with nobody to give it back to: it goes. The
        // close is a task, and a task may not start while another's
        // completion is being delivered: the next turn starts it.
        // Otherwise the ring fd is the sender's again.
        self.files.end_move(file, result.is_ok() || !listened);
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
    /// its record keeps the slot until the message comes up, or, if no
    /// message will, the file is closed.
    #[inline(never)]
    pub(super) fn parcel_landed(&mut self, token: u32, slot: i32) -> usize {
        let Ok(slot) = u32::try_from(slot) else {
            return 0;
        };
        let mailbox = self.messaging.mailbox.as_ref();
        if !mailbox.is_some_and(|mailbox| mailbox.parcel_landed(token, slot)) {
            self.backend.close_orphan(slot);
        }
        0
    }

    /// A parcel's message has come up: delivered with a ring fd if its file
    /// has landed, skipped if it never will, or given back (`Err`) to wait
    /// at the head of the queue.
    pub(super) fn open_parcel(
        &mut self,
        state: &mut S,
        envelope: Envelope,
    ) -> Result<usize, Envelope> {
        let Envelope::Parcel {
            token,
            callback,
            msg,
            key,
        } = envelope
        else {
            return Ok(0);
        };
        let arrival = match &self.messaging.mailbox {
            Some(mailbox) => mailbox.parcel_arrival(token),
            None => Arrival::Lost,
        };
        let slot = match arrival {
            Arrival::NotYet => return Err(envelope),
            Arrival::Lost => return Ok(0),
            Arrival::Landed(slot) => slot,
        };
        let file = self.files.insert();
        self.backend.adopt_fixed(file, slot);
        let fd = self.files.handle(file);
        Ok(self.deliver_ring_fd(state, callback, msg, key, fd))
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

/// A dropped ring's send that never completed (it had not reached the
/// kernel): its file will not land, which the target must learn, or a
/// message already published would hold up every one behind it for good.
pub(super) fn abandon_parcel(op: &Op) {
    if let Op::SendFd { token, mailbox, .. } = op {
        mailbox.settle_parcel(*token, false);
    }
}
