//! The simulated ring's queues, as io_uring's: a submission queue of
//! [`SQ_ENTRIES`] that a burst fills (the ring then keeps the rest in user
//! space and flushes), and a completion queue of the configuration's
//! capacity whose excess waits in an overflow list, as the kernel's with
//! `IORING_FEAT_NODROP`, and is moved over when the ring reaps: late but
//! never lost. A submission while the overflow list cannot be moved over
//! is refused (`EBUSY`), as the kernel refuses it.

use std::collections::VecDeque;

use super::faults::{Fault, Stream, SQ_ENTRIES};
use super::world::{Bug, Ready, State};

/// The submission queue of one ring: how many entries it holds that the
/// kernel has not taken yet.
#[derive(Default)]
pub(crate) struct Submissions {
    queued: usize,
}

impl Submissions {
    /// Takes an entry if the queue has room: `false` when it is full, or
    /// when the configuration makes it report full early.
    pub(crate) fn push(&mut self, state: &mut State) -> bool {
        if self.queued >= SQ_ENTRIES {
            return false;
        }
        if state
            .streams
            .chance(Stream::SqFull, state.config.sq_full_early)
        {
            state.faults.add(Fault::SqFull);
            return false;
        }
        self.queued += 1;
        true
    }

    /// Takes back the last entry pushed, for an operation refused before
    /// it reached the kernel.
    pub(crate) fn take_back(&mut self) {
        self.queued -= 1;
    }

    /// Enters the kernel for `node`: the overflow list is moved over as far
    /// as the completion queue has room, then the queue's entries are
    /// taken; `false` (the kernel's `EBUSY`) if completions still overflow.
    pub(crate) fn submit(&mut self, state: &mut State, node: u32) -> bool {
        state.flush_overflow(node);
        if !state.overflow[node as usize].is_empty() {
            state.faults.add(Fault::SubmitBusy);
            return false;
        }
        self.queued = 0;
        true
    }
}

impl State {
    /// Posts a completion to `node`'s completion queue, or to its overflow
    /// list when the queue is full or the list already holds some (the
    /// order is kept).
    pub(crate) fn post(&mut self, node: u32, ready: Ready) {
        let i = node as usize;
        if self.ready[i].len() < self.cq_entries() && self.overflow[i].is_empty() {
            self.ready[i].push(ready);
            return;
        }
        self.faults.add(Fault::CqOverflow);
        if self.bug == Some(Bug::DropOverflowed) && self.streams.chance(Stream::Planted, 0.01) {
            return;
        }
        self.overflow[i].push_back(ready);
    }

    /// Moves `node`'s overflowed completions to its completion queue, as
    /// far as the queue has room; whether it moved any.
    pub(crate) fn flush_overflow(&mut self, node: u32) -> bool {
        let i = node as usize;
        let room = self.cq_entries().saturating_sub(self.ready[i].len());
        let moved = room.min(self.overflow[i].len());
        let overflow: &mut VecDeque<Ready> = &mut self.overflow[i];
        self.ready[i].extend(overflow.drain(..moved));
        moved > 0
    }

    /// The completion queue's capacity; never 0, so that reaping drains
    /// the overflow list.
    fn cq_entries(&self) -> usize {
        self.config.cq_entries.max(1)
    }

    /// Whether `node` has completions in its queue or its overflow list.
    pub(crate) fn has_completions(&self, node: u32) -> bool {
        let i = node as usize;
        !self.ready[i].is_empty() || !self.overflow[i].is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::RawCompletion;
    use crate::op::OpKind;
    use crate::sim::{Config, World};

    fn completion(user_data: u64) -> Ready {
        let completion = RawCompletion {
            user_data,
            res: 0,
            flags: 0,
        };
        Ready {
            completion,
            fd: None,
        }
    }

    #[test]
    fn the_submission_queue_holds_its_entries_until_the_kernel_takes_them() {
        let world = World::with_config(1, Config::calm());
        let mut state = world.state.borrow_mut();
        state.ready.push(Vec::new());
        state.overflow.push(VecDeque::new());
        let mut sq = Submissions::default();
        for _ in 0..SQ_ENTRIES {
            assert!(sq.push(&mut state));
        }
        assert!(!sq.push(&mut state), "full at {SQ_ENTRIES}");
        assert!(sq.submit(&mut state, 0));
        assert!(sq.push(&mut state));
    }

    #[test]
    fn overflowed_completions_keep_their_order_and_make_submits_busy() {
        let config = Config {
            cq_entries: 2,
            ..Config::calm()
        };
        let world = World::with_config(1, config);
        let mut state = world.state.borrow_mut();
        state.ready.push(Vec::new());
        state.overflow.push(VecDeque::new());
        for user_data in 0..5 {
            state.started(0, user_data, OpKind::Noop);
            state.post(0, completion(user_data));
        }
        assert_eq!(state.ready[0].len(), 2);
        assert_eq!(state.overflow[0].len(), 3);
        let mut sq = Submissions::default();
        assert!(sq.push(&mut state));
        assert!(!sq.submit(&mut state, 0), "EBUSY while the queue is full");
        let mut out = Vec::new();
        state.reap(0, &mut out);
        let order: Vec<u64> = out.iter().map(|c| c.user_data).collect();
        assert_eq!(order, [0, 1, 2, 3, 4]);
        assert!(sq.submit(&mut state, 0));
        assert!(state.violations.is_empty(), "{:?}", state.violations);
    }
}
