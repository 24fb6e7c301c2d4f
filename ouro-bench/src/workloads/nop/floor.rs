//! The `floor` contestant: the least work a runtime of ouro's shape can do
//! per operation, to show how much of ouro's distance from `raw` any such
//! runtime would pay.
//!
//! Its tasks keep only what ouro's contract cannot do without: a slab slot
//! per task (callback, message, key, generation) found from `user_data`
//! with a generation check, and one callback per completion, called
//! through a function pointer with a small completion (handle, message,
//! key, result). It has none of ouro's other guarantees: no cancellation
//! or deadlines, no task states, no typed outcome owning buffers, no fd
//! bookkeeping, no queue of tasks waiting for room (a full queue is
//! submitted and the push retried), no backend choice. Its ring has `raw`'s
//! setup.
//!
//! [`Tasks::run_inlined`] goes one step further down: the same tasks, but
//! each completion handled by one handler the compiler inlines into the
//! delivery loop, with no call at all (the `floor-inline` contestant). What
//! is left is the bookkeeping of the tasks alone.

use std::io;

use io_uring::{opcode, IoUring};

use crate::raw;

/// The function a completion is delivered to.
pub type Callback<S> = fn(&mut S, &mut Tasks<S>, Done) -> io::Result<()>;

/// What a callback gets: what ouro's [`ouro::Completion`] carries but
/// the outcome's owned buffer.
#[cfg_attr(
    not(test),
    expect(
        dead_code,
        reason = "delivered as ouro delivers them; the benchmark's callback reads only the result"
    )
)]
pub struct Done {
    pub index: u32,
    pub generation: u32,
    pub msg: u16,
    pub key: u64,
    pub result: io::Result<u32>,
}

struct Slot<S> {
    callback: Callback<S>,
    key: u64,
    generation: u32,
    next_free: u32,
    msg: u16,
}

const NIL: u32 = u32::MAX;

/// How `deliver` hands a completion on: to the task's callback, or to one
/// handler known at compile time.
trait Deliver<S>: Fn(Callback<S>, &mut S, &mut Tasks<S>, Done) -> io::Result<()> {}

impl<S, F: Fn(Callback<S>, &mut S, &mut Tasks<S>, Done) -> io::Result<()>> Deliver<S> for F {}

/// A ring and its task slots.
pub struct Tasks<S> {
    ring: IoUring,
    slots: Vec<Slot<S>>,
    free: u32,
    live: u32,
    error: Option<io::Error>,
}

impl<S> Tasks<S> {
    /// A ring of `entries` set up as `raw`'s, with no task yet.
    pub fn new(entries: u32) -> io::Result<Tasks<S>> {
        Ok(Tasks {
            ring: raw::ring(entries)?,
            slots: Vec::with_capacity(entries as usize),
            free: NIL,
            live: 0,
            error: None,
        })
    }

    /// Schedules a NOP whose completion goes to `callback`. Inlined, as
    /// ouro's `noop` is into its callers.
    #[inline(always)]
    pub fn noop(&mut self, callback: Callback<S>, msg: u16, key: u64) -> io::Result<()> {
        let index = self.insert(callback, msg, key);
        let generation = self.slots[index as usize].generation;
        let entry = opcode::Nop::new()
            .build()
            .user_data(u64::from(generation) << 32 | u64::from(index));
        // SAFETY: a NOP points to no memory.
        while unsafe { self.ring.submission().push(&entry) }.is_err() {
            self.ring.submit()?;
        }
        Ok(())
    }

    #[inline(always)]
    fn insert(&mut self, callback: Callback<S>, msg: u16, key: u64) -> u32 {
        self.live += 1;
        if self.free == NIL {
            self.slots.push(Slot {
                callback,
                key,
                generation: 0,
                next_free: NIL,
                msg,
            });
            return (self.slots.len() - 1) as u32;
        }
        let index = self.free;
        let slot = &mut self.slots[index as usize];
        self.free = slot.next_free;
        slot.callback = callback;
        slot.key = key;
        slot.msg = msg;
        index
    }

    /// Delivers completions to their callbacks until no task is left;
    /// returns the first callback error once its turn's other completions
    /// are delivered.
    pub fn run(&mut self, state: &mut S) -> io::Result<()> {
        self.run_with(state, |callback, state, tasks, done| {
            callback(state, tasks, done)
        })
    }

    /// As [`run`](Tasks::run), but every completion goes to `handler`
    /// (whatever callback its task names). Given a function item, not a
    /// pointer, the compiler knows which function it is and inlines it.
    pub fn run_inlined<H>(&mut self, state: &mut S, handler: H) -> io::Result<()>
    where
        H: Fn(&mut S, &mut Tasks<S>, Done) -> io::Result<()>,
    {
        self.run_with(state, |_, state, tasks, done| handler(state, tasks, done))
    }

    fn run_with<D: Deliver<S>>(&mut self, state: &mut S, deliver: D) -> io::Result<()> {
        while self.live > 0 {
            self.ring.submit_and_wait(1)?;
            let queued = self.ring.completion().len();
            self.deliver(state, queued, &deliver);
            if let Some(err) = self.error.take() {
                return Err(err);
            }
        }
        Ok(())
    }

    #[inline(never)]
    fn deliver<D: Deliver<S>>(&mut self, state: &mut S, queued: usize, deliver: &D) {
        for _ in 0..queued {
            let Some(cqe) = self.ring.completion().next() else {
                return;
            };
            let (index, generation) = (cqe.user_data() as u32, (cqe.user_data() >> 32) as u32);
            let Some(slot) = self.slots.get_mut(index as usize) else {
                continue;
            };
            if slot.generation != generation {
                continue;
            }
            slot.generation = generation.wrapping_add(1);
            slot.next_free = self.free;
            self.free = index;
            self.live -= 1;
            let res = cqe.result();
            let done = Done {
                index,
                generation,
                msg: slot.msg,
                key: slot.key,
                result: if res < 0 {
                    Err(io::Error::from_raw_os_error(-res))
                } else {
                    Ok(res as u32)
                },
            };
            if let Err(err) = deliver(slot.callback, state, self, done) {
                self.error.get_or_insert(err);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ring of `entries`, or `None` (saying why) where io_uring cannot be
    /// set up at all (no io_uring, or a seccomp filter forbids it): these
    /// tests then have nothing to run on.
    fn tasks_or_skip(entries: u32) -> Option<Tasks<Count>> {
        match Tasks::new(entries) {
            Ok(tasks) => Some(tasks),
            // ENOSYS and EPERM, named by kind: the raw ring's error says
            // which setup it tried, so it carries no OS code of its own.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::Unsupported | io::ErrorKind::PermissionDenied
                ) =>
            {
                eprintln!("skipped: io_uring is not available on this host: {e}");
                None
            }
            Err(e) => panic!("setting up io_uring failed: {e}"),
        }
    }

    struct Count {
        left: u32,
        done: Vec<(u32, u32)>,
        fail_at: Option<usize>,
    }

    fn on_noop(count: &mut Count, tasks: &mut Tasks<Count>, done: Done) -> io::Result<()> {
        assert_eq!(done.result.unwrap(), 0);
        assert_eq!((done.msg, done.key), (7, 9));
        count.done.push((done.index, done.generation));
        if count.left > 0 {
            count.left -= 1;
            tasks.noop(on_noop, 7, 9)?;
        }
        if count.fail_at == Some(count.done.len()) {
            return Err(io::Error::other("failed on purpose"));
        }
        Ok(())
    }

    /// More NOPs than the ring holds, each scheduled from a callback: every
    /// one is delivered once, slots are reused with a new generation.
    fn delivers_every_noop_once_through_a_small_ring(inlined: bool) {
        let Some(mut tasks) = tasks_or_skip(4) else {
            return;
        };
        let mut count = Count {
            left: 9_992,
            done: Vec::new(),
            fail_at: None,
        };
        for _ in 0..8 {
            tasks.noop(on_noop, 7, 9).unwrap();
        }
        match inlined {
            true => tasks.run_inlined(&mut count, on_noop).unwrap(),
            false => tasks.run(&mut count).unwrap(),
        }
        assert_eq!(count.done.len(), 10_000);
        let mut seen = count.done.clone();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), 10_000, "a (slot, generation) came twice");
        assert!(count.done.iter().all(|&(index, _)| index < 8));
    }

    #[test]
    fn callbacks_get_every_noop_once() {
        delivers_every_noop_once_through_a_small_ring(false);
    }

    #[test]
    fn the_inlined_handler_gets_every_noop_once() {
        delivers_every_noop_once_through_a_small_ring(true);
    }

    /// A callback's error comes out of `run` after the other completions
    /// of its turn, which are still delivered.
    #[test]
    fn a_callback_error_loses_no_completion() {
        let Some(mut tasks) = tasks_or_skip(8) else {
            return;
        };
        let mut count = Count {
            left: 0,
            done: Vec::new(),
            fail_at: Some(2),
        };
        for _ in 0..8 {
            tasks.noop(on_noop, 7, 9).unwrap();
        }
        let err = tasks.run(&mut count).unwrap_err();
        assert_eq!(err.to_string(), "failed on purpose");
        assert_eq!(count.done.len(), 8);
    }
}
