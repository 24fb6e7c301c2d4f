//! Rings in a simulated world: making one, and stepping it as a node.

use std::io;

use super::{Ring, RunMode};
use crate::backend::sim::{Node, SimBackend, World};
use crate::backend::Backend;
use crate::time::Clock;

impl<S> Ring<S> {
    /// A ring whose operations the simulated `world` carries out, on the
    /// world's virtual clock; see [`sim`](crate::sim). Linux only.
    pub fn simulated(world: &World) -> Ring<S> {
        let backend = Backend::Sim(SimBackend::new(world));
        Ring::with_backend(backend, Clock::shared(world.now.clone()), 256)
    }

    /// Whether the ring has something to do without waiting: tasks to
    /// start, cancels to ask, results to deliver, messages.
    fn has_work_ready(&self) -> bool {
        !self.pending.is_empty()
            || !self.cancels.is_empty()
            || !self.ready.is_empty()
            || self.batch_pos < self.batch.len()
            || self.messaging.waiting()
            || self.messaging.has_outgoing()
    }

    /// Whether a [`NoWait`](RunMode::NoWait) turn now would do nothing:
    /// nothing ready in the ring or in the world for it, no timer due, no
    /// drain under way. The world then skips the turn, which is most of
    /// them when several rings share a world.
    fn turn_is_empty(&self) -> bool {
        let Backend::Sim(sim) = &self.backend else {
            return false;
        };
        !self.has_work_ready()
            && !self.stopped
            && self.unsettled.is_empty()
            && self.drain.is_none()
            && self.files.moved.is_empty()
            && self.next_due().is_none_or(|due| due > self.clock.now())
            && sim.nothing_due()
    }
}

/// A ring and its state, stepped by [`World::run`].
impl<S> Node for (Ring<S>, S) {
    fn step(&mut self) -> io::Result<()> {
        let (ring, state) = self;
        if ring.turn_is_empty() {
            return Ok(());
        }
        ring.run(state, RunMode::NoWait)
    }

    fn next_wake(&self) -> Option<u64> {
        let ring = &self.0;
        if ring.has_work_ready() {
            return Some(ring.clock.now());
        }
        ring.next_due()
    }
}
