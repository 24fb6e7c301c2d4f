//! Completion dispatch: from a backend result to the task's callback,
//! then the cancel tasks that waited for it.

use std::any::Any;
use std::io;
use std::panic::{self, AssertUnwindSafe};

use super::slab::{CancelReason, Finished, HAS_TIMER, HOLDS_OWNERS, ONE_INTERRUPTION};
use super::{Ctx, Ring};
use crate::backend::MORE;
use crate::completion::Completion;
use crate::error::{is_interruption, raw_result, user_space_code, ETIME, REJECTED};
use crate::op::{Op, Outcome};
use crate::task::NIL;

/// How many times in a row a task's interrupted call starts again before
/// the task ends with `EINTR`: a stop or a tracer interrupts a call once
/// or twice, and a backend that answers nothing else would spin.
const MOST_INTERRUPTIONS: u8 = 16;

impl<S> Ring<S> {
    /// Delivers a task's completion: builds the outcome from what the task
    /// owned, frees the slot (unless more completions follow), runs the
    /// callback, then settles the cancel tasks that waited for it.
    pub(super) fn finish(&mut self, state: &mut S, index: u32, res: i32, flags: u32) -> usize {
        self.finish_inline(state, index, res, flags)
    }

    /// [`finish`](Self::finish) inlined into the completion loop: each
    /// completion skips a call and its register saves. A failure, or a
    /// task with extras (a deadline, shared owners) or cancels waiting for
    /// it, takes the longer way, out of line.
    #[inline(always)]
    pub(super) fn finish_inline(
        &mut self,
        state: &mut S,
        index: u32,
        res: i32,
        flags: u32,
    ) -> usize {
        if flags & MORE != 0 {
            return self.deliver_shot(state, index, res, flags);
        }
        // Failures take the longer way too: an interrupted call may start
        // again.
        if res < 0 || self.slab.has_extras_or_waiters(index) {
            return self.finish_full(state, index, res, flags);
        }
        // The slot keeps its op until `take_outcome`: released but not
        // reused before then.
        let finished = self.slab.release_finished(index);
        let result = Ok(res as u32);
        let result = if self.files.in_use() {
            self.settle_files(index, result, true)
        } else {
            result
        };
        self.deliver(state, index, &finished, result, flags);
        1
    }

    /// [`finish_inline`](Self::finish_inline) for a failure, or a task with
    /// extras or waiting cancels. A panic in the drop of its shared owners (user
    /// code) is resumed once the completion is delivered and its cancels
    /// told.
    #[inline(never)]
    fn finish_full(&mut self, state: &mut S, index: u32, res: i32, flags: u32) -> usize {
        if is_interruption(res) && self.start_again(index) {
            return 0;
        }
        let finished = self.slab.release_finished(index);
        let owners_panic = self.release_extras(index, finished.extras);
        let result = if res >= 0 {
            Ok(res as u32)
        } else {
            Err(self.failure(index, res, finished.cancel))
        };
        // The ring whose cancels wait for this task.
        let waiters = finished.waiters;
        let settle_on = (waiters != NIL).then(|| {
            // A task its deadline ended was not cancelled by the waiting
            // cancels: they took effect too late, as for a task that
            // finished on its own.
            let canceled = result
                .as_ref()
                .is_err_and(|e| e.raw_os_error() == Some(libc::ECANCELED));
            self.unsettled.push((waiters, canceled));
            self.files.ring_id()
        });
        let result = if self.files.in_use() {
            self.settle_files(index, result, true)
        } else {
            result
        };
        self.deliver(state, index, &finished, result, flags);
        // A callback that swapped the ring for another (`mem::swap`) left
        // the list with this one: its next `run` settles it.
        if settle_on.is_some_and(|ring| ring == self.files.ring_id()) {
            self.settle_waiters(state);
        }
        if let Some(panic) = owners_panic {
            panic::resume_unwind(panic);
        }
        1
    }

    /// Runs the callback with the task's outcome, or drops the outcome if
    /// the task has none.
    #[inline(always)]
    fn deliver(
        &mut self,
        state: &mut S,
        index: u32,
        finished: &Finished<S>,
        result: io::Result<u32>,
        flags: u32,
    ) {
        match finished.callback {
            Some(callback) => {
                // Built in place: the outcome is large, and moving it into
                // the completion would copy it on every delivery.
                let completion = Completion {
                    task: finished.task,
                    msg: finished.msg,
                    key: finished.key,
                    more: false,
                    outcome: self.take_outcome(index, result, flags),
                };
                if let Err(err) = callback(state, self, completion) {
                    self.record_error(err);
                }
            }
            None => self.drop_outcome(index, result, flags),
        }
    }

    /// Undoes what a finished task had besides its slot: its entry in the
    /// timers, the shared owners of its fds (dropped before the callback,
    /// which may then take the file out of its `Rc`). A panic in their drop
    /// is caught and given back, to be resumed after the delivery.
    fn release_extras(&mut self, index: u32, extras: u8) -> Option<Box<dyn Any + Send>> {
        if extras & HAS_TIMER != 0 {
            self.timers.remove(index);
        }
        if extras & HOLDS_OWNERS == 0 {
            return None;
        }
        let mut first = None;
        for owner in self.keeps.take(index) {
            if let Err(panic) = panic::catch_unwind(AssertUnwindSafe(|| drop(owner))) {
                first.get_or_insert(panic);
            }
        }
        first
    }

    /// The error of a failed final completion: the rejection the ring
    /// recorded, or the OS code as user space knows it. A task the ring
    /// cancelled ends with `ECANCELED`, or `ETIME` for its deadline, also
    /// when the kernel said `EINTR`: a blocking call on one of io_uring's
    /// worker threads (a receive that polled too often in vain goes to
    /// one) ends so when its cancellation interrupts it. Out of line: the
    /// success path stays short.
    #[inline(never)]
    fn failure(&mut self, index: u32, res: i32, cancel: CancelReason) -> io::Error {
        if res == REJECTED {
            return self.take_rejection(index);
        }
        let code = -user_space_code(res);
        let interrupted = code == libc::ECANCELED || code == libc::EINTR;
        let code = match cancel {
            CancelReason::Deadline if interrupted => ETIME,
            CancelReason::Explicit if interrupted => libc::ECANCELED,
            _ => code,
        };
        io::Error::from_raw_os_error(code)
    }

    /// Starts again a call the kernel interrupted on one of io_uring's
    /// worker threads for something else than the task's cancellation: a
    /// stop and continue of the process, a tracer attaching. User space
    /// would not have seen it: its system call starts again. `false` for a
    /// task the ring cancelled, an operation that may have done part of
    /// its work when interrupted, or one interrupted too often in a row.
    #[cold]
    #[inline(never)]
    fn start_again(&mut self, index: u32) -> bool {
        let slot = &mut self.slab.slots[index as usize];
        if slot.cancel != CancelReason::None
            || !slot.op.starts_again_when_interrupted()
            || slot.extras >= MOST_INTERRUPTIONS * ONE_INTERRUPTION
        {
            return false;
        }
        slot.extras += ONE_INTERRUPTION;
        tracing::debug!(op = ?slot.op.kind(), "an interrupted call starts again");
        self.make_pending(self.slab.handle(index));
        true
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
            self.drop_unheard(outcome);
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
        let outcome = self.take_outcome(index, result, flags);
        self.drop_unheard(outcome);
    }

    /// Drops an outcome nobody listens to; a ring fd it made (a direct
    /// accept, socket or open) is closed, as a dropped `OwnedFd` would be:
    /// no handle to it was ever given out.
    fn drop_unheard(&mut self, outcome: Outcome) {
        if let Outcome::AcceptDirect(Ok(fd))
        | Outcome::SocketDirect(Ok(fd))
        | Outcome::OpenDirect(Ok(fd)) = outcome
        {
            self.close(fd, Ctx::none());
        }
    }

    /// Turns a finished task's op into its outcome, leaving `Op::Noop`.
    fn take_outcome(&mut self, index: u32, result: io::Result<u32>, flags: u32) -> Outcome {
        self.slab.slots[index as usize]
            .op
            .take_outcome(result, flags, &mut self.pools, &self.files)
    }

    #[cold]
    pub(super) fn record_error(&mut self, err: io::Error) {
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
    /// a panicking callback loses none of them (`run` goes on with them),
    /// and so does a callback that swaps the ring for another: this ring's
    /// next `run` goes on with them.
    #[inline(never)]
    pub(super) fn settle_waiters(&mut self, state: &mut S) {
        let (ring, depth) = (self.files.ring_id(), self.unsettled.len());
        loop {
            if self.files.ring_id() != ring {
                return;
            }
            let Some((head, canceled)) =
                depth.checked_sub(1).and_then(|d| self.unsettled.get_mut(d))
            else {
                return;
            };
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
}
