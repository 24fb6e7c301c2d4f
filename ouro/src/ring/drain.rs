//! Draining a ring: it takes no more work from messages, lets its live
//! tasks finish, cuts what is left at a deadline, and then its `run`
//! returns, saying which of the two happened.

use std::io;
use std::time::Instant;

use super::{Ctx, Ring, RingHandle};
use crate::completion::Completion;
use crate::error::ETIME;
use crate::mailbox::{Payload, SendError};
use crate::op::Outcome;

/// A drain under way.
#[derive(Clone, Copy, Debug)]
pub(super) struct Drain {
    /// When what is still live gets cancelled, on the ring's clock.
    deadline: u64,
    /// Whether it was: the drain then ends in `ETIME`.
    cut: bool,
}

impl<S> Ring<S> {
    /// Stops the ring once its live tasks have finished, waiting for them
    /// until `deadline` at most: the ring's current (or next)
    /// [`run`](Ring::run), in any [`RunMode`](crate::RunMode), returns `Ok`
    /// when no task is left, or, if some are still live at `deadline`,
    /// cancels them all, runs until their callbacks have seen `ECANCELED`,
    /// and returns `ETIME` (see [`is_deadline`](crate::is_deadline)).
    ///
    /// From the call on, the ring takes no new work from other rings and
    /// threads: its mailbox closes, so every later message, moved ring fd
    /// or stop request to it is refused with `EPIPE`, its payload going
    /// back to the sender (an acceptor can hand the connection to another
    /// worker). Messages accepted before are still delivered. Tasks the
    /// ring's own callbacks start meanwhile (a live connection's next read
    /// or write) are its live work, so it waits for them too; a task that
    /// never ends by itself, such as a multishot accept or a far timer,
    /// holds the drain until the deadline, so cancel it when
    /// [`is_draining`](Ring::is_draining) says the drain began. Deadlines
    /// and cancels of tasks work during a drain as at any time; a message
    /// the ring waits for (a reply, a stopped thread's answer) can no
    /// longer come.
    ///
    /// A later call moves the deadline. A thread from
    /// [`Ring::spawn_thread`] ends when its drain does, and
    /// [`RingThread::join`](crate::RingThread::join) returns what the drain
    /// returned. From another thread, [`RingHandle::drain`] asks for it.
    pub fn drain(&mut self, deadline: Instant) {
        self.close_mailbox();
        let cut = self.drain.is_some_and(|drain| drain.cut);
        self.drain = Some(Drain {
            deadline: self.clock.to_ns(deadline),
            cut,
        });
    }

    /// Whether the ring is [draining](Ring::drain).
    pub fn is_draining(&self) -> bool {
        self.drain.is_some()
    }

    /// Where a drain stands at the start of a turn: its end, if the ring is
    /// `idle`; else its deadline checked (and what is live cancelled once
    /// it has passed).
    pub(super) fn drain_progress(&mut self, idle: bool) -> Option<io::Result<()>> {
        let drain = self.drain?;
        if idle {
            self.drain = None;
            if drain.cut {
                return Some(Err(io::Error::from_raw_os_error(ETIME)));
            }
            return Some(Ok(()));
        }
        // Past the deadline only live tasks are cut: messages accepted
        // before the mailbox closed are still delivered, and cut nothing.
        if !drain.cut && self.clock.now() >= drain.deadline && self.slab.live() > 0 {
            self.drain = Some(Drain { cut: true, ..drain });
            self.cancel_all(Ctx::none());
        }
        None
    }

    /// The ring's next moment to wake for: its nearest timer, or a drain's
    /// deadline if that comes first.
    pub(crate) fn next_due(&self) -> Option<u64> {
        let drain = self
            .drain
            .filter(|drain| !drain.cut)
            .map(|drain| drain.deadline);
        match (self.timers.next_due(), drain) {
            (Some(timer), Some(drain)) => Some(timer.min(drain)),
            (timer, drain) => timer.or(drain),
        }
    }
}

impl<S> RingHandle<S> {
    /// Asks the target ring to [drain](Ring::drain) until `deadline`: a
    /// message whose callback starts the drain, delivered after the
    /// messages this thread sent through the handle before. A closed target
    /// is a [`SendError`].
    ///
    /// To stop a worker thread once its connections are done:
    /// `worker.handle().drain(deadline)`, then
    /// [`join`](crate::RingThread::join) it: `Ok` if it drained, `ETIME`
    /// if it was cut at the deadline.
    pub fn drain(&self, deadline: Instant) -> Result<(), SendError> {
        self.send(Ctx::new(begin_drain::<S>), Payload::value(deadline))
    }
}

fn begin_drain<S>(_: &mut S, ring: &mut Ring<S>, c: Completion) -> io::Result<()> {
    if let Outcome::Message(payload) = c.outcome {
        if let Ok(deadline) = payload.into_value::<Instant>() {
            ring.drain(deadline);
        }
    }
    Ok(())
}
