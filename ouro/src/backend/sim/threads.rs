//! Threads and messages in a simulated world: the rings that
//! `spawn_thread` makes become nodes the world steps, messages between
//! rings wait a seeded delay before they reach their target's mailbox,
//! and the world checks that every fd moved between rings has one owner.

use std::cell::RefCell;
use std::rc::{Rc, Weak};

use super::faults::{Fault, Stream};
use super::world::{Bug, Node, State, What};
use super::{SimBackend, World};

/// A ring of a spawned thread, as the world holds it.
pub(crate) trait Spawned: Node {
    /// Whether the thread has stopped and its ring is gone.
    fn has_ended(&self) -> bool;

    /// Runs the thread to its end now (its stop was requested): for
    /// `RingThread::join` outside the world's loop.
    fn run_to_end(&mut self);
}

/// A spawned thread, shared by the world (which steps it) and the
/// registry `RingThread::join` finds it in.
pub(crate) type SpawnedNode = Rc<RefCell<dyn Spawned>>;

/// A spawned thread as the registry knows it: by id, without keeping it.
type Registered = (u64, Weak<RefCell<dyn Spawned>>);

thread_local! {
    /// The live simulated threads of this OS thread's worlds, by id: a
    /// `RingThread` is `Send`, so it holds the id, not the node.
    static REGISTRY: RefCell<Vec<Registered>> =
        const { RefCell::new(Vec::new()) };
    static NEXT_ID: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

impl World {
    /// The threads spawned from the world's rings
    /// ([`Ring::spawn_thread`](crate::Ring::spawn_thread)) that have not
    /// stopped yet: the world steps their rings with the others.
    pub fn threads_running(&self) -> usize {
        let state = self.state.borrow();
        state
            .threads
            .iter()
            .filter(|t| !t.borrow().has_ended())
            .count()
    }

    /// Adds a spawned thread's node: the world steps it with the others
    /// from now on. Returns the id `RingThread::join` finds it by.
    pub(crate) fn spawn(&self, thread: SpawnedNode) -> u64 {
        let id = NEXT_ID.with(|next| {
            let id = next.get();
            next.set(id + 1);
            id
        });
        REGISTRY.with(|r| r.borrow_mut().push((id, Rc::downgrade(&thread))));
        self.state.borrow_mut().threads.push(thread);
        id
    }

    /// Puts the spawned threads not yet ended in `into` (a copy of the
    /// list, so that stepping one may spawn another).
    pub(crate) fn spawned(&self, into: &mut Vec<SpawnedNode>) {
        into.clear();
        let mut state = self.state.borrow_mut();
        state.threads.retain(|t| !t.borrow().has_ended());
        into.extend(state.threads.iter().cloned());
    }

    /// Takes the threads still running at the end out of the world,
    /// naming each as a violation; the caller drops them once the world
    /// is no longer borrowed.
    pub(crate) fn take_running(state: &mut State) -> Vec<SpawnedNode> {
        let running: Vec<SpawnedNode> = std::mem::take(&mut state.threads)
            .into_iter()
            .filter(|t| !t.borrow().has_ended())
            .collect();
        if !running.is_empty() {
            state.violations.push(format!(
                "{} spawned ring thread(s) still running at the end",
                running.len()
            ));
        }
        running
    }
}

/// The rings of spawned threads hold the world, and the world holds them:
/// when the last handle from outside goes (the user's `World`s and rings),
/// the world drops its running threads, as [`World::finish`] does, so that
/// neither keeps the other, and the fds and state of both, alive. A thread
/// being stepped, or whose state holds another handle, counts as outside:
/// the world is then still in use.
impl Drop for World {
    fn drop(&mut self) {
        let running = {
            let Ok(mut state) = self.state.try_borrow_mut() else {
                return;
            };
            let held_by_threads = state
                .threads
                .iter()
                .filter(|t| t.try_borrow().is_ok_and(|t| !t.has_ended()))
                .count();
            // This handle, and one in each running thread's ring.
            if held_by_threads == 0 || Rc::strong_count(&self.state) > held_by_threads + 1 {
                return;
            }
            std::mem::take(&mut state.threads)
        };
        // Each ring's own handle comes back here, finding no thread left.
        drop(running);
    }
}

/// Runs the simulated thread `id` to its end, if it is still running on
/// this OS thread's world; whether it was found.
pub(crate) fn run_to_end(id: u64) -> bool {
    let found = REGISTRY.with(|r| {
        let mut registry = r.borrow_mut();
        registry.retain(|(_, t)| t.strong_count() > 0);
        registry
            .iter()
            .find(|(i, _)| *i == id)
            .and_then(|(_, t)| t.upgrade())
    });
    let Some(thread) = found else {
        return false;
    };
    let Ok(mut thread) = thread.try_borrow_mut() else {
        return false;
    };
    if !thread.has_ended() {
        thread.run_to_end();
    }
    true
}

/// Forgets thread `id` once it has ended.
pub(crate) fn forget(id: u64) {
    REGISTRY.with(|r| r.borrow_mut().retain(|(i, _)| *i != id));
}

impl SimBackend {
    /// The world the ring is in.
    pub(crate) fn world(&self) -> &World {
        &self.world
    }

    /// The ring's number in the world, as violations name it.
    pub(crate) fn node(&self) -> u32 {
        self.node
    }

    /// Whether the ring's queued messages must wait: the first time it
    /// has some to publish, a delay is drawn (if message delays are on)
    /// and they go out once it has passed.
    pub(crate) fn holds_messages(&mut self) -> bool {
        let mut state = self.world.state.borrow_mut();
        let now = state.now();
        if let Some(due) = self.messages_due {
            if due > now {
                return true;
            }
            self.messages_due = None;
            return false;
        }
        let most = state.config.message_delay_ns;
        if most == 0 {
            return false;
        }
        let delay = state.streams.get(Stream::Messages).u64(0..=most);
        if delay == 0 {
            return false;
        }
        state.faults.add(Fault::MessageDelay);
        let due = now.saturating_add(delay);
        state.schedule(due, What::MessagesDue);
        self.messages_due = Some(due);
        true
    }

    /// Whether the ring's queued messages are waiting for their delay.
    pub(crate) fn messages_held(&self) -> bool {
        self.messages_due
            .is_some_and(|due| due > self.world.now.get())
    }

    /// Under the planted [`Bug::DuplicateMessage`]: whether to deliver
    /// the message at hand twice.
    pub(crate) fn planted_duplicate(&mut self) -> bool {
        let mut state = self.world.state.borrow_mut();
        state.bug == Some(Bug::DuplicateMessage) && state.streams.chance(Stream::Planted, 0.05)
    }
}

impl State {
    /// Records that ring `node` now owns socket `sock`'s fd: no other ring
    /// may own it too.
    pub(crate) fn own_socket(&mut self, sock: usize, node: u32) {
        if let Some(other) = self.owners.insert(sock, node) {
            if other != node {
                self.violations.push(format!(
                    "simulated socket {sock} is owned by ring {node} and ring {other} at once"
                ));
            }
        }
    }

    /// Records that ring `node` gave up socket `sock`'s fd.
    pub(crate) fn disown_socket(&mut self, sock: usize, node: u32) {
        if self.owners.get(&sock) == Some(&node) {
            self.owners.remove(&sock);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::sim::{Config, World};

    #[test]
    fn a_socket_owned_by_two_rings_at_once_is_a_violation() {
        let world = World::with_config(1, Config::calm());
        let mut state = world.state.borrow_mut();
        state.own_socket(4, 0);
        state.disown_socket(4, 1);
        state.own_socket(4, 0);
        assert!(state.violations.is_empty(), "{:?}", state.violations);
        state.disown_socket(4, 0);
        state.own_socket(4, 1);
        assert!(state.violations.is_empty(), "{:?}", state.violations);
        state.own_socket(4, 2);
        assert_eq!(
            state.violations,
            ["simulated socket 4 is owned by ring 2 and ring 1 at once"]
        );
    }
}
