//! Teardown: a dropped ring quiesces its backend before freeing what
//! operations lent it.

use std::mem;
use std::time::Duration;

use super::parcel::abandon_parcel;
use super::slab::{Slab, State};
use super::Ring;
use crate::backend::{RawCompletion, MORE};
use crate::error::raw_result;
use crate::op::Op;
use crate::task::user_data;
use crate::time::{duration_ns, Clock};

/// How long a dropping ring waits for the kernel to give back memory of
/// cancelled operations before it leaks that memory instead.
const DRAIN_LIMIT: Duration = Duration::from_secs(10);

impl<S> Drop for Ring<S> {
    /// Closes the mailbox, cancels what the backend still holds and waits
    /// for its completions before any buffer is freed, then closes the ring
    /// fds and drops what tasks and undelivered messages own (their fds
    /// closed, their values dropped); callbacks do not run. Memory of an
    /// operation that does not finish within 10 s is leaked, never freed
    /// under the kernel.
    ///
    /// What is dropped here includes user code (buffers, message values). A
    /// panic in it does not cut the drop short: the ring goes on waiting and
    /// dropping, and the first panic is resumed at the end (or, if the thread
    /// is unwinding already, logged).
    fn drop(&mut self) {
        let mut panic = None;
        self.close_mailbox();
        // Unpublished messages are dropped, not sent: taken out first, so
        // that a moved ring fd's send finishing during the drain finds no
        // outbox to publish (its message is dropped with it, and the ring
        // fd stays here). Kept until the backend is quiesced: an outbox
        // keeps its target's ring fd open for doorbells still queued.
        let mut messages = self.messaging.take_undelivered();
        if self.drain_backend(&mut panic) {
            for group in mem::take(&mut self.groups) {
                self.backend.unregister_group(&group);
            }
            self.backend.close_files();
        } else {
            // Operations may still use the groups' memory and the ring
            // fds' files: keep them.
            mem::forget(mem::take(&mut self.groups));
            self.backend.leak_files();
        }
        // Nothing in the backend uses the ring's memory any more: what is
        // left is dropped one piece at a time, so that a panicking drop
        // loses none of the others.
        for index in 0..self.slab.slots.len() {
            let op = mem::replace(&mut self.slab.slots[index].op, Op::Noop);
            abandon_parcel(&op);
            catch_panic(&mut panic, || drop(op));
            for owner in self.keeps.take(index as u32) {
                catch_panic(&mut panic, || drop(owner));
            }
        }
        for owner in self.keeps.take_staged() {
            catch_panic(&mut panic, || drop(owner));
        }
        messages.drop_each(|message| catch_panic(&mut panic, || drop(message)));
        catch_panic(&mut panic, || drop(messages));
        if let Some(payload) = panic {
            if std::thread::panicking() {
                // A second unwind out of a drop would abort the process.
                tracing::error!(
                    panic = panic_text(&*payload),
                    "a drop panicked while a ring was dropped during unwinding"
                );
                drop_payload(payload);
            } else {
                std::panic::resume_unwind(payload);
            }
        }
    }
}

/// A panic payload, kept until the backend is quiesced.
type Panic = Box<dyn std::any::Any + Send>;

/// Runs `f`; if it panics, keeps the first panic in `first` (later ones
/// are dropped).
fn catch_panic(first: &mut Option<Panic>, f: impl FnOnce()) {
    if let Err(payload) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        match first {
            None => *first = Some(payload),
            Some(_) => drop_payload(payload),
        }
    }
}

/// Drops a panic payload that will not be resumed; one whose own drop
/// panics is leaked.
fn drop_payload(payload: Panic) {
    if let Err(again) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(payload))) {
        mem::forget(again);
    }
}

/// A panic's message, for the log.
fn panic_text(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

impl<S> Ring<S> {
    /// During drop: cancels what the backend holds and waits for it; false
    /// if something did not finish in time (its memory is leaked). A panic
    /// in what a finished operation owned is kept in `panic`, and the wait
    /// goes on: the kernel or a pool thread may still write into the memory
    /// of the others.
    fn drain_backend(&mut self, panic: &mut Option<Panic>) -> bool {
        // Completions reaped but not delivered (a callback panicked): their
        // operations are over, and the backend will not report them again.
        let undelivered = mem::take(&mut self.batch);
        for &c in undelivered.get(self.batch_pos..).unwrap_or_default() {
            catch_panic(panic, || self.release_drained(c));
        }
        let in_backend = |slab: &Slab<S>| {
            slab.slots
                .iter()
                .filter(|s| s.state == State::Submitted)
                .count()
        };
        if in_backend(&self.slab) == 0 {
            return true;
        }
        for index in 0..self.slab.slots.len() {
            let slot = &self.slab.slots[index];
            if slot.state == State::Submitted {
                let ud = user_data::task(index as u32, slot.generation);
                while !self.backend.cancel(ud) {
                    if !matches!(self.backend.flush(), Ok(true)) {
                        break;
                    }
                }
            }
        }
        // A clock of its own, on the OS's time: the wait is for the kernel or
        // a pool thread, and a dropped simulated ring must not move its
        // world's virtual clock.
        let mut clock = Clock::real();
        let give_up = duration_ns(DRAIN_LIMIT);
        let mut batch = Vec::new();
        while in_backend(&self.slab) > 0 {
            if clock.now() > give_up {
                self.leak_in_flight();
                return false;
            }
            if let Err(err) = self.backend.wait(Some(50_000_000), &mut clock) {
                tracing::error!(error = %err, "draining a dropped ring failed");
                self.leak_in_flight();
                return false;
            }
            batch.clear();
            self.backend.reap(&mut batch);
            for &c in &batch {
                catch_panic(panic, || self.release_drained(c));
            }
        }
        true
    }

    /// During drop: frees what a finished operation owned.
    fn release_drained(&mut self, c: RawCompletion) {
        if user_data::kind(c.user_data) != user_data::TASK {
            return;
        }
        let index = user_data::index(c.user_data) as usize;
        let Some(slot) = self.slab.slots.get_mut(index) else {
            return;
        };
        if slot.state != State::Submitted || !user_data::matches(c.user_data, slot.generation) {
            return;
        }
        let last = c.flags & MORE == 0;
        let mut result = raw_result(c.res);
        if self.files.in_use() {
            // What a direct accept, socket or open produced joins the ring
            // fds (closed with them below); a closed ring fd leaves them.
            result = self.settle_files(index as u32, result, last);
        }
        let slot = &mut self.slab.slots[index];
        if !last {
            // A shot of a multishot task: close its fd, recycle its buffer.
            drop(slot.op.shot_outcome(result, c.flags, &self.files));
            return;
        }
        let op = mem::replace(&mut slot.op, Op::Noop);
        slot.state = State::Free;
        // Dropping the outcome closes any fd the operation produced; made
        // before any user code runs (the owners' drop), so that a panic
        // there still closes it.
        let outcome = op.into_outcome(result, c.flags, &mut self.pools, &self.files);
        let owners = self.keeps.take(index as u32);
        drop(outcome);
        drop(owners);
    }

    fn leak_in_flight(&mut self) {
        let mut leaked = 0;
        for (index, slot) in self.slab.slots.iter_mut().enumerate() {
            if slot.state == State::Submitted {
                self.keeps.leak(index as u32);
                mem::forget(mem::replace(&mut slot.op, Op::Noop));
                slot.state = State::Free;
                leaked += 1;
            }
        }
        tracing::error!(
            leaked,
            "operations did not finish after being cancelled; their memory is leaked"
        );
    }
}
