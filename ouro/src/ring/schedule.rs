//! Scheduling: a task into a slot, then into the backend, a timer or
//! the ready queue; cancellation requests.

use std::io;

use super::slab::{CancelReason, State, HAS_TIMER};
use super::Ctx;
use super::{Ready, Ring};
use crate::backend::Started;
use crate::error::{ETIME, REJECTED};
use crate::op::Op;
use crate::task::{user_data, Task};

impl<S> Ring<S> {
    /// Schedules an operation of the backend's.
    #[inline(always)]
    pub(super) fn schedule(&mut self, op: Op, ctx: Ctx<S>) -> Task {
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
    pub(super) fn reject(&mut self, op: Op, ctx: Ctx<S>, err: io::Error) -> Task {
        let task = self.slab.insert(op, ctx);
        self.add_fd_users(task.index);
        self.rejections.push((task.index, err));
        self.make_ready(task.index, REJECTED);
        task
    }

    #[inline(always)]
    pub(super) fn start_in_backend(&mut self, task: Task) -> Started {
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
    pub(super) fn settle_start(&mut self, index: u32, started: Started) {
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
    pub(super) fn make_pending(&mut self, task: Task) {
        self.slab.slots[task.index as usize].state = State::Pending;
        self.pending.push_back(task);
    }

    pub(super) fn make_ready(&mut self, index: u32, res: i32) {
        self.slab.slots[index as usize].state = State::Ready;
        let task = self.slab.handle(index);
        self.ready.push_back(Ready { task, res });
    }

    pub(super) fn start_timer(&mut self, index: u32, at: u64) {
        if at == 0 {
            return self.make_ready(index, 0);
        }
        self.slab.slots[index as usize].state = State::Timer;
        self.schedule_timer(index, at);
    }

    /// Puts task `index` in the timers, to be woken at `at`.
    pub(super) fn schedule_timer(&mut self, index: u32, at: u64) {
        self.slab.slots[index as usize].extras |= HAS_TIMER;
        self.timers.schedule(index, at);
    }

    pub(super) fn start_cancel(&mut self, index: u32, target: Task) {
        let Some(target) = self.slab.live_index(target).filter(|&t| t != index) else {
            return self.make_ready(index, -libc::ENOENT);
        };
        self.slab.slots[index as usize].state = State::Waiting;
        self.waiters
            .push(&mut self.slab.slots[target as usize].link, index);
        self.request_cancel(target, CancelReason::Explicit);
    }

    pub(super) fn start_cancel_all(&mut self, index: u32) {
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
    pub(super) fn request_cancel(&mut self, index: u32, reason: CancelReason) {
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
}
