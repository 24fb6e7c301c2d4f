//! The slab of task slots, in which the ring keeps each task until its
//! final completion, and the lists of cancel tasks waiting for one.

use std::mem;

use crate::op::Op;
use crate::task::{Task, NIL};

use super::{Callback, Ctx};

/// Where a task is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum State {
    Free,
    /// Waiting for room in the backend (its queue was full).
    Pending,
    /// Given to the backend; its completion will come from there.
    Submitted,
    /// A timer in the ring's heap.
    Timer,
    /// Finished in user space; its result waits in the ready queue.
    Ready,
    /// A cancel task waiting for its targets to finish.
    Waiting,
}

/// Why a task is being cancelled (the first reason wins).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CancelReason {
    None,
    Explicit,
    Deadline,
}

pub(crate) struct Slot<S> {
    pub(crate) op: Op,
    pub(crate) key: u64,
    pub(crate) callback: Option<Callback<S>>,
    pub(crate) generation: u32,
    /// While free, the next free slot; while live, the head of the list of
    /// cancel tasks waiting for this one (a free slot has none).
    pub(crate) link: u32,
    pub(crate) msg: u16,
    pub(crate) state: State,
    pub(crate) cancel: CancelReason,
    /// What finishing must undo besides the slot ([`HAS_TIMER`],
    /// [`HOLDS_OWNERS`]): one test for the usual task that has neither.
    pub(crate) extras: u8,
}

/// [`Slot::extras`]: the task has (or had) an entry in the ring's timers.
pub(crate) const HAS_TIMER: u8 = 1;
/// [`Slot::extras`]: the task holds shared owners of its fds.
pub(crate) const HOLDS_OWNERS: u8 = 2;
/// [`Slot::extras`]: one more time the task's call was interrupted and
/// started again; the bits above the flags count them.
pub(crate) const ONE_INTERRUPTION: u8 = 4;

/// What delivering a finished task's completion needs from its slot.
pub(crate) struct Finished<S> {
    pub(crate) task: Task,
    pub(crate) callback: Option<Callback<S>>,
    pub(crate) msg: u16,
    pub(crate) key: u64,
    /// Why it was cancelled, if it was.
    pub(crate) cancel: CancelReason,
    /// Head of the list of cancel tasks waiting for it.
    pub(crate) waiters: u32,
    /// What else finishing must undo ([`HAS_TIMER`], [`HOLDS_OWNERS`]).
    pub(crate) extras: u8,
}

/// Task slots with generation counters and a free list; grows by doubling
/// (rarely), never shrinks, so steady state does not allocate.
pub(crate) struct Slab<S> {
    pub(crate) slots: Vec<Slot<S>>,
    free_head: u32,
    live: u32,
    /// The ring's identity, carried by every handle so that another
    /// ring's handles name nothing here.
    ring: u32,
}

impl<S> Slab<S> {
    pub(super) fn with_capacity(capacity: usize, ring: u32) -> Slab<S> {
        Slab {
            slots: Vec::with_capacity(capacity),
            free_head: NIL,
            live: 0,
            ring,
        }
    }

    /// Number of tasks not yet delivered.
    pub(super) fn live(&self) -> u32 {
        self.live
    }

    /// Puts a new task in a free slot (or a new one); returns its handle.
    #[inline(always)]
    pub(super) fn insert(&mut self, op: Op, ctx: Ctx<S>) -> Task {
        self.live += 1;
        if self.free_head != NIL {
            let index = self.free_head;
            let slot = &mut self.slots[index as usize];
            self.free_head = slot.link;
            // A free slot holds `Op::Noop` (finishing takes the op out, and
            // so does every other way out of a slot), which owns nothing:
            // overwriting it needs no drop glue.
            debug_assert!(matches!(slot.op, Op::Noop));
            if matches!(op, Op::Noop) {
                // Already there (a noop is worth not copying a whole `Op`).
                mem::forget(op);
            } else {
                // SAFETY: `slot.op` is a valid, initialised `Op`; not dropping
                // it can at worst leak what it owns, never free it twice.
                unsafe { std::ptr::write(&mut slot.op, op) };
            }
            slot.key = ctx.key;
            slot.callback = ctx.callback;
            slot.msg = ctx.msg;
            slot.state = State::Submitted;
            slot.cancel = CancelReason::None;
            slot.link = NIL;
            return Task {
                index,
                generation: slot.generation,
                ring: self.ring,
            };
        }
        let index = u32::try_from(self.slots.len()).expect("more than 2^32 tasks");
        self.slots.push(Slot {
            op,
            key: ctx.key,
            callback: ctx.callback,
            generation: 0,
            link: NIL,
            msg: ctx.msg,
            state: State::Submitted,
            cancel: CancelReason::None,
            extras: 0,
        });
        Task {
            index,
            generation: 0,
            ring: self.ring,
        }
    }

    /// Whether finishing task `index` has more to undo than its slot: a
    /// deadline or shared owners, or cancels waiting for it.
    #[inline(always)]
    pub(super) fn has_extras_or_waiters(&self, index: u32) -> bool {
        let slot = &self.slots[index as usize];
        slot.extras != 0 || slot.link != NIL
    }

    /// Frees a finished task's slot (its op stays until taken) and returns
    /// what delivering its completion needs. The generation moves on, so
    /// old handles go stale.
    #[inline(always)]
    pub(super) fn release_finished(&mut self, index: u32) -> Finished<S> {
        let slot = &mut self.slots[index as usize];
        let finished = Finished {
            task: Task {
                index,
                generation: slot.generation,
                ring: self.ring,
            },
            callback: slot.callback,
            msg: slot.msg,
            key: slot.key,
            cancel: slot.cancel,
            waiters: slot.link,
            extras: mem::take(&mut slot.extras),
        };
        slot.generation = slot.generation.wrapping_add(1);
        slot.state = State::Free;
        self.live -= 1;
        if slot.generation == 0 {
            // Gone round: reused, the slot would give its first handles
            // their life back. Retired instead, one slot per 2^32 tasks.
            slot.link = NIL;
            return finished;
        }
        slot.link = self.free_head;
        self.free_head = index;
        finished
    }

    pub(super) fn handle(&self, index: u32) -> Task {
        Task {
            index,
            generation: self.slots[index as usize].generation,
            ring: self.ring,
        }
    }

    /// The slot of a task of this ring that has not finished yet.
    pub(super) fn live_index(&self, task: Task) -> Option<u32> {
        if task.ring != self.ring {
            return None;
        }
        let slot = self.slots.get(task.index as usize)?;
        (slot.generation == task.generation && slot.state != State::Free).then_some(task.index)
    }
}

/// Singly linked lists of cancel tasks waiting for a target, in one pool of
/// reusable nodes.
#[derive(Default)]
pub(crate) struct Waiters {
    nodes: Vec<WaiterNode>,
    free: Option<u32>,
}

struct WaiterNode {
    canceller: u32,
    next: u32,
}

impl Waiters {
    pub(super) fn push(&mut self, head: &mut u32, canceller: u32) {
        let node = WaiterNode {
            canceller,
            next: *head,
        };
        let index = match self.free {
            Some(index) => {
                self.free = match self.nodes[index as usize].next {
                    NIL => None,
                    next => Some(next),
                };
                self.nodes[index as usize] = node;
                index
            }
            None => {
                self.nodes.push(node);
                (self.nodes.len() - 1) as u32
            }
        };
        *head = index;
    }

    pub(super) fn pop(&mut self, head: &mut u32) -> Option<u32> {
        if *head == NIL {
            return None;
        }
        let index = *head;
        let node = &mut self.nodes[index as usize];
        *head = node.next;
        node.next = self.free.unwrap_or(NIL);
        self.free = Some(index);
        Some(node.canceller)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn released_slots_are_reused_with_a_new_generation() {
        let mut slab: Slab<()> = Slab::with_capacity(2, 0);
        let old = slab.insert(Op::Noop, Ctx::none());
        assert_eq!(slab.handle(old.index), old);
        slab.release_finished(old.index);
        assert_eq!(slab.live_index(old), None);
        let new = slab.insert(Op::Noop, Ctx::none());
        assert_eq!(new.index, old.index);
        assert_ne!(new, old);
        assert_eq!(slab.live_index(new), Some(new.index));
        assert_eq!(slab.live(), 1);
        let other: Slab<()> = Slab::with_capacity(2, 1);
        assert_eq!(other.ring, 1);
        let mut foreign = new;
        foreign.ring = 1;
        assert_eq!(
            slab.live_index(foreign),
            None,
            "another ring's handle names nothing here"
        );
    }

    /// A handle stays stale for good: a slot whose generation would go
    /// round is never used again.
    #[test]
    fn a_slot_is_retired_before_its_generation_goes_round() {
        let mut slab: Slab<()> = Slab::with_capacity(2, 0);
        let first = slab.insert(Op::Noop, Ctx::none());
        slab.slots[first.index as usize].generation = u32::MAX;
        let last = slab.handle(first.index);
        slab.release_finished(first.index);
        let next = slab.insert(Op::Noop, Ctx::none());
        assert_ne!(next.index, first.index, "the slot is retired");
        assert_eq!(slab.live_index(first), None);
        assert_eq!(slab.live_index(last), None);
        assert_eq!(slab.live(), 1);
    }

    #[test]
    fn waiter_lists_share_one_pool() {
        let mut waiters = Waiters::default();
        let (mut a, mut b) = (NIL, NIL);
        waiters.push(&mut a, 1);
        waiters.push(&mut b, 2);
        waiters.push(&mut a, 3);
        assert_eq!(waiters.pop(&mut a), Some(3));
        assert_eq!(waiters.pop(&mut a), Some(1));
        assert_eq!(waiters.pop(&mut a), None);
        waiters.push(&mut a, 4);
        assert_eq!(waiters.nodes.len(), 3);
        assert_eq!(waiters.pop(&mut b), Some(2));
        assert_eq!(waiters.pop(&mut a), Some(4));
    }

    /// docs/semantics.md's "Task slot: 120 bytes" (ourio's task is 128): the
    /// operation's owned data takes 88 of them. A change here is a change
    /// to every ring's memory and cache footprint, so it must be deliberate.
    #[test]
    fn slot_size_is_pinned() {
        assert_eq!(std::mem::size_of::<Op>(), 88);
        assert_eq!(std::mem::size_of::<Slot<()>>(), 120);
    }
}
