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
}

/// A ring and its state, stepped by [`World::run`].
impl<S> Node for (Ring<S>, S) {
    fn step(&mut self) -> io::Result<()> {
        let (ring, state) = self;
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
