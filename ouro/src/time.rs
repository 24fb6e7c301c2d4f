//! Time in user space: the ring's clock and the heap of timers and deadlines.
//!
//! Timers never go to the kernel: the nearest entry of the heap bounds how
//! long the backend may wait, and a zero-delay timer skips the heap entirely.
//! Times are nanoseconds since the ring's epoch, on the monotonic clock or,
//! for the mock backend, on a virtual clock that jumps to the next event.

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// The ring's notion of "now".
pub(crate) struct Clock {
    epoch: Instant,
    /// `Some` on a virtual clock: nanoseconds since the epoch, shared by
    /// every ring of a simulated world (a mock ring's is its own).
    virtual_now: Option<Rc<Cell<u64>>>,
}

impl Clock {
    pub(crate) fn real() -> Clock {
        Clock {
            epoch: monotonic_now(),
            virtual_now: None,
        }
    }

    pub(crate) fn virtual_clock() -> Clock {
        Clock::shared(Rc::new(Cell::new(0)))
    }

    /// A virtual clock that reads `now`, which its owner moves.
    pub(crate) fn shared(now: Rc<Cell<u64>>) -> Clock {
        Clock {
            epoch: monotonic_now(),
            virtual_now: Some(now),
        }
    }

    pub(crate) fn now(&self) -> u64 {
        match &self.virtual_now {
            Some(now) => now.get(),
            None => duration_ns(monotonic_now().saturating_duration_since(self.epoch)),
        }
    }

    /// Moves a virtual clock forward to `ns` (never backwards).
    pub(crate) fn advance_to(&mut self, ns: u64) {
        if let Some(now) = &self.virtual_now {
            now.set(now.get().max(ns));
        }
    }

    pub(crate) fn to_ns(&self, at: Instant) -> u64 {
        duration_ns(at.saturating_duration_since(self.epoch))
    }

    pub(crate) fn to_instant(&self, ns: u64) -> Instant {
        self.epoch + Duration::from_nanos(ns)
    }
}

/// The OS's monotonic clock: the one place the library reads it.
// Why allowed: the real backends' clock has to come from the OS. A virtual
// clock reads it only for its epoch, which anchors the `Instant`s users pass
// in and get back and never decides what happens when.
#[allow(clippy::disallowed_methods)]
fn monotonic_now() -> Instant {
    Instant::now()
}

pub(crate) fn duration_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

const NOT_QUEUED: u32 = u32::MAX;

#[derive(Clone, Copy)]
struct Entry {
    at: u64,
    /// Breaks ties in arrival order, so equal times fire first-in first-out.
    seq: u64,
    slot: u32,
}

impl Entry {
    fn before(&self, other: &Entry) -> bool {
        (self.at, self.seq) < (other.at, other.seq)
    }
}

/// A binary min-heap of task slots keyed by time, indexed by slot so that
/// an entry can be moved or removed in O(log n) when its task finishes
/// early (no stale entries pile up).
#[derive(Default)]
pub(crate) struct TimerHeap {
    heap: Vec<Entry>,
    /// `position[slot]`: index in `heap`, or `NOT_QUEUED`.
    position: Vec<u32>,
    seq: u64,
}

impl TimerHeap {
    pub(crate) fn with_capacity(slots: usize) -> TimerHeap {
        TimerHeap {
            heap: Vec::with_capacity(slots),
            position: vec![NOT_QUEUED; slots],
            seq: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }

    #[cfg(test)]
    fn due_time(&self, slot: u32) -> Option<u64> {
        let &pos = self.position.get(slot as usize)?;
        (pos != NOT_QUEUED).then(|| self.heap[pos as usize].at)
    }

    /// Queues `slot` at `at`, or moves it there if it is queued already.
    pub(crate) fn schedule(&mut self, slot: u32, at: u64) {
        if self.position.len() <= slot as usize {
            self.position.resize(slot as usize + 1, NOT_QUEUED);
        }
        self.seq += 1;
        let entry = Entry {
            at,
            seq: self.seq,
            slot,
        };
        match self.position[slot as usize] {
            NOT_QUEUED => {
                self.heap.push(entry);
                self.sift_up(self.heap.len() - 1);
            }
            pos => {
                self.heap[pos as usize] = entry;
                let pos = self.sift_up(pos as usize);
                self.sift_down(pos);
            }
        }
    }

    /// Removes `slot`'s entry, if any.
    #[inline]
    pub(crate) fn remove(&mut self, slot: u32) {
        let Some(&pos) = self.position.get(slot as usize) else {
            return;
        };
        if pos == NOT_QUEUED {
            return;
        }
        self.remove_at(pos as usize);
    }

    /// The earliest time queued.
    pub(crate) fn next_due(&self) -> Option<u64> {
        self.heap.first().map(|e| e.at)
    }

    /// Takes the earliest slot due at or before `now`.
    pub(crate) fn pop_due(&mut self, now: u64) -> Option<u32> {
        let first = *self.heap.first()?;
        if first.at > now {
            return None;
        }
        self.remove_at(0);
        Some(first.slot)
    }

    fn remove_at(&mut self, pos: usize) {
        let removed = self.heap.swap_remove(pos);
        self.position[removed.slot as usize] = NOT_QUEUED;
        if pos < self.heap.len() {
            self.position[self.heap[pos].slot as usize] = pos as u32;
            let pos = self.sift_up(pos);
            self.sift_down(pos);
        }
    }

    fn sift_up(&mut self, mut pos: usize) -> usize {
        while pos > 0 {
            let parent = (pos - 1) / 2;
            if !self.heap[pos].before(&self.heap[parent]) {
                break;
            }
            self.swap(pos, parent);
            pos = parent;
        }
        self.position[self.heap[pos].slot as usize] = pos as u32;
        pos
    }

    fn sift_down(&mut self, mut pos: usize) {
        loop {
            let left = 2 * pos + 1;
            let right = left + 1;
            let mut smallest = pos;
            if left < self.heap.len() && self.heap[left].before(&self.heap[smallest]) {
                smallest = left;
            }
            if right < self.heap.len() && self.heap[right].before(&self.heap[smallest]) {
                smallest = right;
            }
            if smallest == pos {
                break;
            }
            self.swap(pos, smallest);
            pos = smallest;
        }
        self.position[self.heap[pos].slot as usize] = pos as u32;
    }

    fn swap(&mut self, a: usize, b: usize) {
        self.heap.swap(a, b);
        self.position[self.heap[a].slot as usize] = a as u32;
        self.position[self.heap[b].slot as usize] = b as u32;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pops_in_time_then_arrival_order() {
        let mut heap = TimerHeap::with_capacity(8);
        heap.schedule(3, 30);
        heap.schedule(1, 10);
        heap.schedule(2, 10);
        heap.schedule(0, 5);
        assert_eq!(heap.next_due(), Some(5));
        assert_eq!(heap.pop_due(4), None);
        let order: Vec<u32> = std::iter::from_fn(|| heap.pop_due(100)).collect();
        assert_eq!(order, vec![0, 1, 2, 3]);
        assert_eq!(heap.len(), 0);
    }

    #[test]
    fn remove_and_reschedule_keep_the_heap_valid() {
        let mut heap = TimerHeap::with_capacity(4);
        for slot in 0..100u32 {
            heap.schedule(slot, u64::from((slot * 37) % 101));
        }
        for slot in (0..100u32).step_by(3) {
            heap.remove(slot);
            assert_eq!(heap.due_time(slot), None);
        }
        heap.schedule(1, 1000);
        heap.schedule(2, 0);
        assert_eq!(heap.due_time(1), Some(1000));
        let mut last = 0;
        let mut seen = 0;
        while let Some(slot) = heap.pop_due(u64::MAX) {
            let at = if slot == 1 {
                1000
            } else if slot == 2 {
                0
            } else {
                u64::from((slot * 37) % 101)
            };
            assert!(at >= last);
            last = at;
            seen += 1;
        }
        assert_eq!(seen, 100 - 34);
    }

    #[test]
    fn virtual_clock_only_moves_forward() {
        let mut clock = Clock::virtual_clock();
        clock.advance_to(50);
        clock.advance_to(20);
        assert_eq!(clock.now(), 50);
        assert_eq!(clock.to_ns(clock.to_instant(77)), 77);
    }
}
