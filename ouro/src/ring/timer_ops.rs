//! The operations of time and cancellation: a no-op, timers, cancels and
//! deadlines.

use std::io;
use std::time::{Duration, Instant};

use super::slab::State;
use super::Ctx;
use super::Ring;
use crate::op::Op;
use crate::task::Task;
use crate::time::duration_ns;

impl<S> Ring<S> {
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
    /// before the cancellation took effect (or its deadline did: `ETIME`);
    /// then this task's callback runs, with
    /// [`Outcome::Cancel`](crate::Outcome::Cancel): `Ok` (cancelled),
    /// `ENOENT` (no such live task: finished already, or a stale handle —
    /// nothing else is touched) or `EALREADY` (it finished anyway, on its
    /// own or by its deadline).
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
}
