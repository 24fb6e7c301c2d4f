//! Multishot operations in the simulated world: an accept that completes
//! once per connection and a receive that completes once per arrival, each
//! in a buffer taken from the operation's buffer group only when bytes
//! arrive. As on io_uring, every completion but the last carries the
//! "more" flag, a received one carries the id of its buffer, and an empty
//! group ends the receive with `ENOBUFS` (the user re-arms it once buffers
//! are back). Two fault classes draw from streams of their own: a
//! multishot ending early (a success without "more", as when the kernel
//! runs short of completion-queue room) and a group found empty although
//! buffers are free (as when another receive sharing it took them all).
//!
//! A group is not shared with anything here: it stays the free list that
//! every backend without provided buffer rings takes buffers from. The
//! world only remembers it, to check at the end that every buffer came
//! back (`groups.rs`).

use std::os::fd::OwnedFd;

use super::faults::{Fault, Stream};
use super::net::Parked;
use super::world::{Ready, State, What};
use crate::backend::{RawCompletion, BUFFER, BUFFER_SHIFT, MORE};
use crate::buffers::group::GroupInner;

/// How many times a parked accept or receive completes.
#[derive(Clone, Copy)]
pub(crate) enum Shot {
    /// Once (accept, recv).
    Once,
    /// Once per connection until it ends (multishot accept, direct or not).
    Accept,
    /// Once per arrival, each in a buffer of this group, until it ends.
    /// The operation holds the group (an `Rc`) while it is parked.
    Recv(*const GroupInner),
}

/// Where a receive puts the bytes that arrived, and the flags its
/// completion carries.
pub(crate) struct Target {
    pub(crate) ptr: *mut u8,
    pub(crate) room: usize,
    pub(crate) flags: u32,
}

impl State {
    /// Where `parked`'s receive writes: its own room, or a buffer of its
    /// group, taken now that bytes are there. `None`: the group is empty
    /// (or seems so, under the exhaustion fault), and the receive ends
    /// with `ENOBUFS`.
    pub(crate) fn recv_target(&mut self, parked: &Parked) -> Option<Target> {
        let Shot::Recv(group) = parked.shot else {
            return Some(Target {
                ptr: parked.ptr,
                room: parked.room,
                flags: 0,
            });
        };
        if self
            .streams
            .chance(Stream::BuffersExhausted, self.config.buffers_exhausted)
        {
            self.faults.add(Fault::BuffersExhausted);
            return None;
        }
        // SAFETY: the receive's operation holds the group alive while it
        // is parked (see `Shot::Recv`).
        let group = unsafe { &*group };
        let bid = group.take_free()?;
        Some(Target {
            ptr: group.buffer_ptr(bid),
            room: group.size(),
            flags: BUFFER | u32::from(bid) << BUFFER_SHIFT,
        })
    }

    /// Whether a multishot `parked` goes on after a successful completion
    /// (which then carries `MORE`), unless the early-end fault ends it.
    pub(crate) fn shot_goes_on(&mut self, parked: &Parked) -> bool {
        if matches!(parked.shot, Shot::Once) {
            return false;
        }
        if self
            .streams
            .chance(Stream::MultishotEnd, self.config.multishot_end)
        {
            self.faults.add(Fault::MultishotEnd);
            return false;
        }
        true
    }

    /// Completes `user_data` of `node` now with `flags`: one completion of
    /// a multishot task, which keeps the order of the task's completions
    /// (they are all due now, and the queue keeps the order of equal
    /// times).
    pub(crate) fn complete_now(
        &mut self,
        node: u32,
        user_data: u64,
        res: i32,
        flags: u32,
        fd: Option<OwnedFd>,
    ) {
        let completion = RawCompletion {
            user_data,
            res,
            flags,
        };
        let ready = Ready { completion, fd };
        let now = self.now();
        self.schedule(now, What::Complete { node, ready });
    }
}

/// Hands `ready` over in a shuffled order drawn from `rng`, keeping the
/// completions of one multishot task in the order they were made (the
/// kernel posts them so: the bytes of a stream, then the final one). The
/// same draws as shuffling `ready` itself, so that a batch without a
/// multishot completion is shuffled as before.
pub(crate) fn shuffle_keeping_shots(ready: &mut Vec<Ready>, rng: &mut fastrand::Rng) {
    if !ready.iter().any(|r| r.completion.flags & MORE != 0) {
        rng.shuffle(ready);
        return;
    }
    let mut order: Vec<usize> = (0..ready.len()).collect();
    rng.shuffle(&mut order);
    let task = |i: usize| ready[i].completion.user_data;
    // Each task's places in the shuffled order, filled with its own
    // completions in the order they were made.
    let mut places: Vec<(u64, usize)> = (order.iter().enumerate())
        .map(|(place, &i)| (task(i), place))
        .collect();
    let mut made: Vec<(u64, usize)> = order.iter().map(|&i| (task(i), i)).collect();
    places.sort_unstable();
    made.sort_unstable();
    for (&(_, place), &(_, i)) in places.iter().zip(&made) {
        order[place] = i;
    }
    let mut taken: Vec<Option<Ready>> = ready.drain(..).map(Some).collect();
    ready.extend(order.into_iter().filter_map(|i| taken[i].take()));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ready(user_data: u64, res: i32, flags: u32) -> Ready {
        let completion = RawCompletion {
            user_data,
            res,
            flags,
        };
        Ready {
            completion,
            fd: None,
        }
    }

    #[test]
    fn a_shuffle_keeps_each_multishot_tasks_completions_in_order() {
        let mut moved = false;
        for seed in 0..50 {
            // Task 7's shots 0..4 then its final one, among single shots.
            let mut batch: Vec<Ready> = (0..4).map(|n| ready(7, n, MORE)).collect();
            batch.push(ready(7, 4, 0));
            batch.extend((10..16).map(|ud| ready(ud, 0, 0)));
            shuffle_keeping_shots(&mut batch, &mut fastrand::Rng::with_seed(seed));
            let shots: Vec<i32> = (batch.iter())
                .filter(|r| r.completion.user_data == 7)
                .map(|r| r.completion.res)
                .collect();
            assert_eq!(shots, [0, 1, 2, 3, 4], "seed {seed}");
            moved |= batch[0].completion.user_data != 7;
        }
        assert!(moved, "never shuffled");
    }

    #[test]
    fn a_batch_without_multishot_completions_is_shuffled_as_before() {
        let batch = || (0..9).map(|ud| ready(ud, 0, 0)).collect::<Vec<_>>();
        let (mut kept, mut plain) = (batch(), batch());
        shuffle_keeping_shots(&mut kept, &mut fastrand::Rng::with_seed(3));
        fastrand::Rng::with_seed(3).shuffle(&mut plain);
        let order = |b: &[Ready]| b.iter().map(|r| r.completion.user_data).collect::<Vec<_>>();
        assert_eq!(order(&kept), order(&plain));
    }
}
