//! Threads in a simulated world: [`Ring::spawn_thread`] makes the new ring
//! on the spawner's world, which steps it as a node with the others (in
//! the seeded order), instead of starting an OS thread. Its
//! [`RingThread`] works as on a real thread: messages, the stop
//! handshake, the same shutdown steps, and `join`.

use std::cell::RefCell;
use std::io;
use std::mem;
use std::panic::{self, AssertUnwindSafe};
use std::rc::Rc;
use std::sync::Arc;

use super::thread::panic_message;
use super::{Ctx, Ring, RingThread, RunMode};
use crate::backend::sim::{self, Node, Spawned, World};
use crate::error::copy_error;
use crate::mailbox::ThreadShared;

/// A spawned ring and its state, as the world steps them.
struct SimThread<T> {
    /// Until the thread has ended.
    node: Option<(Ring<T>, T)>,
    shared: Arc<ThreadShared>,
    /// The first error of the thread's run and shutdown.
    result: io::Result<()>,
    /// Shutting down: the mailbox has closed and the live tasks were
    /// cancelled; the ring runs until they have completed.
    stopping: bool,
    id: u64,
}

impl<S> Ring<S> {
    /// [`Ring::spawn_thread`] in a simulated world.
    pub(super) fn spawn_simulated<T, F>(world: &World, init: F) -> io::Result<RingThread<T>>
    where
        T: 'static,
        F: FnOnce(&mut Ring<T>) -> io::Result<T>,
    {
        let mut ring: Ring<T> = Ring::simulated(world);
        let handle = ring.handle()?;
        // A panic in `init` stays with the thread, as on a real one.
        let state = match panic::catch_unwind(AssertUnwindSafe(|| init(&mut ring))) {
            Ok(state) => state?,
            Err(panic) => {
                return Err(io::Error::other(format!(
                    "the new ring's thread panicked while starting: {}",
                    panic_message(&*panic)
                )))
            }
        };
        let shared = Arc::new(ThreadShared::default());
        let thread = Rc::new(RefCell::new(SimThread {
            node: Some((ring, state)),
            shared: shared.clone(),
            result: Ok(()),
            stopping: false,
            id: 0,
        }));
        let id = world.spawn(thread.clone());
        thread.borrow_mut().id = id;
        Ok(RingThread::simulated(handle, shared, id))
    }
}

impl<T> SimThread<T> {
    fn keep_error(&mut self, result: io::Result<()>) {
        if let (Ok(()), Err(err)) = (&self.result, result) {
            self.result = Err(err);
        }
    }

    /// Runs the thread's ring; `None` if a callback panicked, which ends
    /// the thread as the panic would unwind a real one: its ring and state
    /// are dropped, and `join` says why. The panic goes no further (on a
    /// real thread it stays on that thread).
    fn run(&mut self, mode: RunMode) -> Option<io::Result<()>> {
        let (ring, state) = self.node.as_mut()?;
        match panic::catch_unwind(AssertUnwindSafe(|| ring.run(state, mode))) {
            Ok(ran) => Some(ran),
            Err(panic) => {
                let why = format!("the ring's thread panicked: {}", panic_message(&*panic));
                self.keep_error(Err(io::Error::other(why)));
                self.end();
                None
            }
        }
    }

    /// The thread's first steps of stopping (see [`RingThread`]): its
    /// mailbox closes, what it accepted is delivered, its messages go
    /// out, and its live tasks are cancelled.
    fn begin_stopping(&mut self) {
        let Some((ring, _)) = &mut self.node else {
            return;
        };
        ring.close_mailbox();
        let Some(delivered) = self.run(RunMode::NoWait) else {
            return;
        };
        let Some((ring, _)) = &mut self.node else {
            return;
        };
        ring.publish_messages();
        ring.cancel_all(Ctx::none());
        self.stopping = true;
        self.keep_error(delivered);
        self.end_if_idle();
    }

    /// Once the stopping ring has nothing left: drops it and its state,
    /// then tells the rings waiting for the end.
    fn end_if_idle(&mut self) {
        let Some((ring, _)) = &self.node else {
            return;
        };
        if !ring.is_idle() {
            return;
        }
        ring.check_messages(true);
        self.end();
    }

    fn end(&mut self) {
        drop(self.node.take());
        let result = mem::replace(&mut self.result, Ok(()));
        self.shared.end(&result);
        self.result = result;
        sim::forget(self.id);
    }
}

/// A thread the world drops while it runs (`World::finish` found it still
/// running, or the world's last outside handle went): its ring goes, and
/// whoever waits for it hears why.
impl<T> Drop for SimThread<T> {
    fn drop(&mut self) {
        if self.node.is_some() {
            self.keep_error(Err(io::Error::other(
                "the simulated world finished or was dropped with the thread still running",
            )));
            self.end();
        }
    }
}

impl<T> Node for SimThread<T> {
    fn step(&mut self) -> io::Result<()> {
        let Some((ring, _)) = &mut self.node else {
            return Ok(());
        };
        if ring.turn_is_empty() {
            return Ok(());
        }
        // A callback's stop only ends the turn here; stopping goes on.
        ring.stopped = false;
        let draining = ring.drain.is_some();
        let Some(ran) = self.run(RunMode::NoWait) else {
            return Ok(());
        };
        let Some((ring, _)) = &mut self.node else {
            return Ok(());
        };
        ring.check_messages(false);
        if self.stopping {
            ring.stopped = false;
            self.keep_error(ran);
            self.end_if_idle();
            return Ok(());
        }
        let drained = draining && ring.drain.is_none();
        if mem::take(&mut ring.stopped) || drained || ran.is_err() {
            self.keep_error(ran);
            self.begin_stopping();
        }
        Ok(())
    }

    fn next_wake(&self) -> Option<u64> {
        let (ring, _) = self.node.as_ref()?;
        ring.next_wake()
    }
}

impl<T> Spawned for SimThread<T> {
    fn has_ended(&self) -> bool {
        self.node.is_none()
    }

    /// Runs the ring on its own, as a real thread would, until it has
    /// stopped; its waits move the world's clock.
    fn run_to_end(&mut self) {
        if !self.stopping {
            if let Some(ran) = self.run(RunMode::Forever) {
                self.keep_error(ran);
            }
            self.begin_stopping();
        }
        while let Some((ring, _)) = &mut self.node {
            ring.stopped = false;
            let Some(ran) = self.run(RunMode::UntilDone) else {
                return;
            };
            if let Err(err) = ran {
                // A wait that can never end: give up on the tasks left.
                let stuck = err.kind() == io::ErrorKind::WouldBlock;
                self.keep_error(Err(copy_error(&err)));
                if stuck {
                    return self.end();
                }
            }
            self.end_if_idle();
        }
    }
}
