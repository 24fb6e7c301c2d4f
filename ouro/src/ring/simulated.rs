//! Rings in a simulated world: making one, and stepping it as a node.

use std::io;

use super::{Ring, RunMode};
use crate::backend::sim::{Node, SimBackend, World};
use crate::backend::Backend;
use crate::mailbox::Payload;
use crate::time::Clock;

impl<S> Ring<S> {
    /// A ring whose operations the simulated `world` carries out, on the
    /// world's virtual clock; see [`sim`](crate::sim). Linux only.
    ///
    /// # Panics
    ///
    /// If the process has made 2^32 - 1 rings: ring ids are never reused.
    pub fn simulated(world: &World) -> Ring<S> {
        let backend = Backend::Sim(SimBackend::new(world));
        Ring::with_backend(backend, Clock::shared(world.now.clone()), 256)
            .expect("a ring id for the simulated ring")
    }

    /// Whether the ring has something to do without waiting: tasks to
    /// start, cancels to ask, results to deliver, messages.
    fn has_work_ready(&self) -> bool {
        !self.pending.is_empty()
            || !self.cancels.is_empty()
            || !self.ready.is_empty()
            || self.batch_pos < self.batch.len()
            || self.messaging.waiting()
            || (self.messaging.has_outgoing() && !self.messages_held())
    }

    /// Whether the messages the ring queued wait for their seeded delay.
    fn messages_held(&self) -> bool {
        matches!(&self.backend, Backend::Sim(sim) if sim.messages_held())
    }

    /// Under the planted duplicate-message bug, a copy of `payload` to
    /// deliver a second time (payloads that own something are not copied).
    pub(super) fn planted_copy(&mut self, payload: &Payload) -> Option<Payload> {
        let Backend::Sim(sim) = &mut self.backend else {
            return None;
        };
        let copy = match payload {
            Payload::None => Payload::None,
            Payload::U16(n) => Payload::U16(*n),
            Payload::U64(n) => Payload::U64(*n),
            _ => return None,
        };
        sim.planted_duplicate().then_some(copy)
    }

    /// The checker of messages: a ring never delivers more envelopes than
    /// its mailbox accepted; once `ended`, it has delivered every one.
    pub(super) fn check_messages(&self, ended: bool) {
        let (Backend::Sim(sim), Some(mailbox)) = (&self.backend, &self.messaging.mailbox) else {
            return;
        };
        let accepted = mailbox.lock().accepted;
        let delivered = self.messaging.delivered;
        let node = sim.node();
        if delivered > accepted {
            sim.world().report(format!(
                "ring {node} delivered {delivered} messages, but its mailbox accepted \
                 {accepted}: a message was delivered twice"
            ));
        } else if ended && delivered < accepted {
            sim.world().report(format!(
                "ring {node} stopped having delivered {delivered} of the {accepted} \
                 messages its mailbox accepted"
            ));
        }
    }

    /// Whether the ring drains and has nothing left: its next turn ends
    /// the drain, without waiting for the deadline.
    fn drain_ends_now(&self) -> bool {
        self.drain.is_some() && self.is_idle()
    }

    /// When the ring next has something to do, as [`Node::next_wake`].
    pub(super) fn next_wake(&self) -> Option<u64> {
        if self.has_work_ready() || self.stopped || self.drain_ends_now() {
            return Some(self.clock.now());
        }
        self.next_due()
    }

    /// Whether a [`NoWait`](RunMode::NoWait) turn now would do nothing:
    /// nothing ready in the ring or in the world for it, no timer due, no
    /// drain under way. The world then skips the turn, which is most of
    /// them when several rings share a world.
    pub(super) fn turn_is_empty(&self) -> bool {
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

impl World {
    /// Crashes the host `ring` runs on, then drops the ring: its
    /// operations in flight end (`ECANCELED`) with no further effect, and
    /// the world's files keep only what was synced, plus a seeded prefix of
    /// the unsynced blocks whose last may be torn; every open file closes
    /// (its fds, still open in the process, are then `EBADF`), and so do
    /// the sockets in the ring's table (ring fds): their peers see the
    /// connection end, or reset if data was left unread. A new ring
    /// made with [`Ring::simulated`] restarts on the same files. A ring
    /// that is not simulated is just dropped.
    pub fn crash<S>(&self, ring: Ring<S>) {
        if let Backend::Sim(sim) = &ring.backend {
            sim.crash();
        }
        drop(ring);
    }
}

/// A ring and its state, stepped by [`World::run`].
impl<S> Node for (Ring<S>, S) {
    fn step(&mut self) -> io::Result<()> {
        let (ring, state) = self;
        if ring.turn_is_empty() {
            return Ok(());
        }
        let ran = ring.run(state, RunMode::NoWait);
        ring.check_messages(false);
        ran
    }

    fn next_wake(&self) -> Option<u64> {
        let ring = &self.0;
        if ring.has_work_ready() || ring.drain_ends_now() {
            return Some(ring.clock.now());
        }
        ring.next_due()
    }
}
