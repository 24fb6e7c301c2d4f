//! The run loop: one submit-and-wait per turn, then every completion,
//! due timer and user-space result, in that order.

use std::cell::Cell;
use std::io;
use std::mem;
use std::panic::{self, AssertUnwindSafe};
use std::rc::Rc;

use super::slab::{CancelReason, State};
use super::{Ring, RunMode};
use crate::backend::{RawCompletion, Started};
use crate::error::ETIME;
use crate::op::Op;
use crate::task::user_data;

impl<S> Ring<S> {
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
        // A pollable ring's fd must tell its poller what waits, also when a
        // callback's panic ends the run: results left undelivered then
        // wait in user space, which only `prepare_poll` signals. (Every
        // ring takes the same path: one call of the turns keeps them
        // inlined here.)
        let turns = panic::catch_unwind(AssertUnwindSafe(|| self.run_turns(state, mode)));
        let prepared = match self.backend.pollable_fd() {
            Some(_) => self.prepare_poll(),
            None => Ok(()),
        };
        match turns {
            Ok(result) => prepared.and(result),
            Err(panic) => panic::resume_unwind(panic),
        }
    }

    /// Makes the current [`run`](Ring::run) return after this turn (or,
    /// called outside `run`, the next `run` return at once).
    pub fn stop(&mut self) {
        self.stopped = true;
    }

    fn run_turns(&mut self, state: &mut S, mode: RunMode) -> io::Result<()> {
        loop {
            if mem::take(&mut self.stopped) {
                return Ok(());
            }
            let idle = self.is_idle();
            if let Some(drained) = self.drain_progress(idle) {
                return drained;
            }
            if idle && (matches!(mode, RunMode::Once | RunMode::UntilDone) || self.drained()) {
                return Ok(());
            }
            let delivered = self.turn(state, mode)?;
            if let Some(err) = self.first_error.take() {
                return Err(err);
            }
            if mode == RunMode::NoWait || (mode == RunMode::Once && delivered > 0) {
                // A drain this turn finished ends with this run, which
                // returns its result (not the next run).
                if self.is_draining() && self.is_idle() {
                    return self.drain_progress(true).unwrap_or(Ok(()));
                }
                return Ok(());
            }
        }
    }

    /// Whether no task is live and no message waits to be delivered or
    /// to go out: what [`RunMode::UntilDone`] runs until.
    pub(super) fn is_idle(&self) -> bool {
        self.slab.live() == 0
            && !self.messaging.waiting()
            && !self.messaging.has_outgoing()
            && self.files.moved.is_empty()
    }

    /// Whether a drain (or a stop) closed the ring to messages, mailbox or not:
    /// none can come, so an idle ring has nothing to wait for, in any mode.
    #[cold]
    fn drained(&self) -> bool {
        self.messaging.closed
    }

    fn turn(&mut self, state: &mut S, mode: RunMode) -> io::Result<usize> {
        self.flush_pending()?;
        let timeout = match mode {
            RunMode::NoWait => Some(0),
            // Publishing messages may have finished the last tasks: then
            // there is nothing to wait for.
            // (Messages a simulated ring holds back are waited for.)
            RunMode::Once | RunMode::UntilDone
                if self.slab.live() == 0
                    && !self.messaging.has_outgoing()
                    && !self.messaging.waiting() =>
            {
                Some(0)
            }
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
    pub(super) fn prepare_poll(&mut self) -> io::Result<()> {
        self.flush_pending()?;
        let mail = self.messaging.before_sleep();
        let ready_now = mail
            || !self.ready.is_empty()
            || self.batch_pos < self.batch.len()
            || self.messaging.deliverable();
        let now = self.clock.now();
        let armed = self.poll_timer.filter(|&at| at > now);
        let timer = self
            .next_due()
            .filter(|&due| armed.is_none_or(|at| due < at));
        let after = timer.map(|due| due.saturating_sub(now));
        // Recorded only once armed: a backend that failed to arm it (the
        // readiness backend's timerfd cannot be made) or woke the fd now
        // instead must be asked again, or no run would arm it.
        if self.backend.prepare_poll(ready_now, after)? {
            self.poll_timer = timer;
        }
        Ok(())
    }

    /// How long the backend may wait: not at all when results or messages
    /// are ready, until the nearest timer (or a drain's deadline), or
    /// without limit.
    fn wait_timeout(&self) -> Option<u64> {
        let ready = !self.ready.is_empty() || self.batch_pos < self.batch.len();
        if ready || self.messaging.deliverable() {
            return Some(0);
        }
        let due = self.next_due()?;
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

    // Inlined into each delivery loop: as a call it saved and restored six
    // registers and took the completion through memory, a tenth of a NOP's
    // instructions.
    #[inline(always)]
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
            user_data::PARCEL => self.parcel_landed(user_data::index(c.user_data), c.res),
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
        let (now, ring) = (self.clock.now(), self.files.ring_id());
        let mut delivered = 0;
        // A callback that swapped the ring for another (`mem::swap`) ends
        // the loop: `now` is this ring's clock, not the other's.
        while self.files.ring_id() == ring {
            let Some(index) = self.timers.pop_due(now) else {
                break;
            };
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
