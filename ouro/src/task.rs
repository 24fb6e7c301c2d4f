//! Task handles: what a caller keeps to name a task (and a completion's
//! `user_data` is made of). The slots behind them are the ring's
//! (`ring/slab.rs`); the context a task carries is `ring/ctx.rs`.

use std::fmt;

/// A handle to a scheduled task, for [`Ring::cancel`](crate::Ring::cancel) and
/// [`Ring::set_deadline`](crate::Ring::set_deadline).
///
/// It is a copyable (slot, generation, ring) triple: once the task has
/// finished, the handle is stale and every use of it answers "not found"
/// without touching whatever task now occupies the slot; on another ring it
/// names nothing at all (that ring answers "not found" too).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Task {
    pub(crate) index: u32,
    pub(crate) generation: u32,
    pub(crate) ring: u32,
}

impl fmt::Debug for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Task({}#{}@{})", self.index, self.generation, self.ring)
    }
}

pub(crate) const NIL: u32 = u32::MAX;

/// `user_data` of a submission: kind in the top byte, then 24 bits of the
/// slot's generation, then the slot index — so a completion finds its task
/// in O(1) and a mismatched one is recognised.
pub(crate) mod user_data {
    /// A task's operation.
    pub(crate) const TASK: u8 = 0;
    /// Ouro's own bookkeeping (cancel requests, wait timeouts): ignored.
    pub(crate) const INTERNAL: u8 = 1;
    /// A MSG_RING doorbell arriving from another ring: messages wait in
    /// this ring's mailbox.
    pub(crate) const MESSAGE: u8 = 2;
    /// A MSG_RING doorbell this ring sent failed (success is silent); the
    /// rest of the `user_data` is the index of the target's outbox.
    pub(crate) const DOORBELL: u8 = 3;
    /// A file another ring moved into this ring's fixed table
    /// (`IORING_MSG_SEND_FD`); the rest of the `user_data` is its parcel's
    /// token in this ring's mailbox, the result its slot.
    pub(crate) const PARCEL: u8 = 4;

    const GENERATION_MASK: u32 = 0x00FF_FFFF;

    pub(crate) fn task(index: u32, generation: u32) -> u64 {
        (u64::from(generation & GENERATION_MASK) << 32) | u64::from(index)
    }

    #[cfg_attr(not(target_os = "linux"), allow(dead_code))] // io_uring's cancel requests
    pub(crate) fn with_kind(kind: u8, payload: u64) -> u64 {
        (u64::from(kind) << 56) | (payload & 0x00FF_FFFF_FFFF_FFFF)
    }

    pub(crate) fn kind(user_data: u64) -> u8 {
        (user_data >> 56) as u8
    }

    pub(crate) fn index(user_data: u64) -> u32 {
        user_data as u32
    }

    pub(crate) fn matches(user_data: u64, generation: u32) -> bool {
        ((user_data >> 32) as u32 & GENERATION_MASK) == generation & GENERATION_MASK
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_data_roundtrips() {
        let ud = user_data::task(7, 0x1234_5678);
        assert_eq!(user_data::kind(ud), user_data::TASK);
        assert_eq!(user_data::index(ud), 7);
        assert!(user_data::matches(ud, 0x1234_5678));
        assert!(!user_data::matches(ud, 0x1234_5679));
        let internal = user_data::with_kind(user_data::INTERNAL, 99);
        assert_eq!(user_data::kind(internal), user_data::INTERNAL);
    }
}
