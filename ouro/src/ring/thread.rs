//! Threads with a ring of their own: [`Ring::spawn_thread`] starts one,
//! [`RingThread`] messages it, stops it and joins it.

use std::any::Any;
use std::fmt;
use std::io;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::error::copy_error;
use crate::mailbox::{Envelope, ThreadShared};
use crate::op::Op;
use crate::task::Task;

use super::{Ctx, Ring, RingBuilder, RingHandle, RunMode};

/// A thread running a ring of state type `T`, made by
/// [`Ring::spawn_thread`].
///
/// Its [`handle`](RingThread::handle) sends it messages. It runs until asked
/// to stop ([`stop`](RingThread::stop) from a ring, or
/// [`join`](RingThread::join) / drop from anywhere), until one of its
/// callbacks calls [`Ring::stop`], until a callback returns an error, or
/// until its [drain](Ring::drain) ends (`handle().drain(deadline)`: the
/// thread finishes its live tasks first, and its result is `Ok` if they
/// all finished, `ETIME` if some were cancelled at the deadline).
/// Then it stops in this order:
///
/// 1. its mailbox closes: later messages fail with `EPIPE` and their
///    payloads go back to their senders;
/// 2. every message accepted before that is delivered, so none that was
///    acknowledged is lost; messages these callbacks send go out;
/// 3. every task still live is cancelled, and the ring runs until all have
///    completed (their callbacks see `ECANCELED` and should not start new
///    work);
/// 4. the ring and then the state are dropped;
/// 5. the rings that asked through [`stop`](RingThread::stop) hear it.
///
/// Dropping a `RingThread` stops and joins it.
pub struct RingThread<T> {
    handle: RingHandle<T>,
    shared: Arc<ThreadShared>,
    join: Option<Joiner>,
}

/// What joining the thread waits for.
enum Joiner {
    Os(JoinHandle<io::Result<()>>),
    /// A node of a simulated world, by its id there (see `sim_thread.rs`).
    #[cfg(target_os = "linux")]
    Simulated(u64),
}

impl<T> fmt::Debug for RingThread<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RingThread")
            .field("stopped", &self.is_stopped())
            .finish()
    }
}

/// Tells the waiters if the thread unwinds from a panic.
struct EndOnPanic(Arc<ThreadShared>);

impl Drop for EndOnPanic {
    fn drop(&mut self) {
        self.0
            .end(&Err(io::Error::other("the ring's thread panicked")));
    }
}

impl<S> Ring<S> {
    /// Starts a thread with a ring of its own (`entries` as in
    /// [`Ring::new`]; the backend, [`msg_ring`](RingBuilder::msg_ring) and
    /// [`fixed_files`](RingBuilder::fixed_files) settings of this ring) and
    /// returns once that ring is idle and ready to receive messages.
    ///
    /// `init` runs on the new thread, with its ring, and makes the state the
    /// ring runs with (it may schedule first tasks); its error is returned
    /// here. The thread then runs the ring until it is stopped (see
    /// [`RingThread`]).
    ///
    /// On io_uring the new ring is set up with `IORING_SETUP_ATTACH_WQ` on
    /// this one, falling back to its own when the kernel refuses (a ring
    /// built by hand gets the same with
    /// [`RingBuilder::attach_to`]). Since
    /// Linux 5.12 the kernel keeps async worker threads per thread, so what
    /// the rings share is the work hashing that serialises buffered writes
    /// to the same file across them.
    ///
    /// On a [simulated](Ring::simulated) ring no OS thread starts: the new
    /// ring is made on the same world, which steps it as a node with the
    /// others (see [`sim`](crate::sim)); its `RingThread` works the same,
    /// but [`join`](RingThread::join) can run it to its end only on the
    /// world's OS thread and outside its own callbacks (else
    /// `WouldBlock`: it stops as the world steps it).
    pub fn spawn_thread<T, F>(&self, entries: u32, init: F) -> io::Result<RingThread<T>>
    where
        T: 'static,
        F: FnOnce(&mut Ring<T>) -> io::Result<T> + Send + 'static,
    {
        #[cfg(target_os = "linux")]
        if let crate::backend::Backend::Sim(sim) = &self.backend {
            return Ring::<S>::spawn_simulated(sim.world(), init);
        }
        let builder = self.child_builder(entries);
        let shared = Arc::new(ThreadShared::default());
        let (ready, started) = mpsc::sync_channel(1);
        let join = std::thread::Builder::new()
            .name("ouro-ring".into())
            .spawn({
                let shared = shared.clone();
                move || {
                    let guard = EndOnPanic(shared);
                    let result = serve(builder, init, ready);
                    guard.0.end(&result);
                    result
                }
            })?;
        match started.recv() {
            Ok(Ok(handle)) => Ok(RingThread {
                handle,
                shared,
                join: Some(Joiner::Os(join)),
            }),
            Ok(Err(err)) => {
                let _ = join.join();
                Err(err)
            }
            Err(mpsc::RecvError) => Err(match join.join() {
                Err(panic) => io::Error::other(format!(
                    "the new ring's thread panicked while starting: {}",
                    panic_message(&*panic)
                )),
                Ok(result) => result.err().unwrap_or_else(|| {
                    io::Error::other("the new ring's thread ended while starting")
                }),
            }),
        }
    }

    /// Stops a thread's ring: see [`RingThread`], steps 1 to 3.
    fn shut_down(&mut self, state: &mut S) -> io::Result<()> {
        self.close_mailbox();
        let delivered = self.run(state, RunMode::NoWait);
        self.publish_messages();
        self.cancel_all(Ctx::none());
        let finished = loop {
            // A stop asked meanwhile (a second stop request, a callback's
            // `stop`) must not cut this run short: every live task's
            // callback runs.
            self.stopped = false;
            let ran = self.run(state, RunMode::UntilDone);
            if ran.is_err() || self.slab.live() == 0 {
                break ran;
            }
        };
        delivered.and(finished)
    }
}

/// The new thread's life: build the ring, report ready, run, shut down.
fn serve<T, F>(
    builder: RingBuilder,
    init: F,
    ready: mpsc::SyncSender<io::Result<RingHandle<T>>>,
) -> io::Result<()>
where
    F: FnOnce(&mut Ring<T>) -> io::Result<T>,
{
    let started = builder.build::<T>().and_then(|mut ring| {
        let handle = ring.handle()?;
        let state = init(&mut ring)?;
        Ok((ring, handle, state))
    });
    let (mut ring, handle, mut state) = match started {
        Ok(started) => started,
        Err(err) => {
            let copy = copy_error(&err);
            let _ = ready.send(Err(err));
            return Err(copy);
        }
    };
    // The spawner waits for this; if it is gone, nobody can stop us but
    // the handle it dropped, so stop now.
    if ready.send(Ok(handle)).is_err() {
        ring.stop();
    }
    let ran = ring.run(&mut state, RunMode::Forever);
    let stopped = ring.shut_down(&mut state);
    drop(ring);
    drop(state);
    ran.and(stopped)
}

impl<T> RingThread<T> {
    /// A thread whose ring is node `id` of a simulated world.
    #[cfg(target_os = "linux")]
    pub(super) fn simulated(handle: RingHandle<T>, shared: Arc<ThreadShared>, id: u64) -> Self {
        RingThread {
            handle,
            shared,
            join: Some(Joiner::Simulated(id)),
        }
    }

    /// The handle through which rings and threads message this thread's
    /// ring.
    pub fn handle(&self) -> &RingHandle<T> {
        &self.handle
    }

    /// Asks the thread to stop, after the messages `ring` sent it before
    /// (this request travels like a message from `ring`). `ctx` hears once
    /// the thread has stopped and its ring is gone, with
    /// [`Outcome::ThreadStopped`](crate::Outcome::ThreadStopped): `Ok`, or
    /// the error that ended the thread (also if it had ended before). The
    /// thread still has to be [joined](RingThread::join) (or dropped).
    ///
    /// Like every task, it can be [cancelled](Ring::cancel) (`ECANCELED`)
    /// or given a [deadline](Ring::set_deadline) (`ETIME`): that ends only
    /// the wait. A request that went out already (on `ring`'s next turn)
    /// still stops the thread; one cancelled before that is withdrawn.
    pub fn stop<S>(&self, ring: &mut Ring<S>, ctx: Ctx<S>) -> Task {
        let op = Op::StopThread {
            envelope: Some(Envelope::Stop),
            thread: self.shared.clone(),
        };
        // The answer comes back through `ring`'s own mailbox.
        if let Err(err) = ring.mailbox().map(|_| ()) {
            return ring.reject(op, ctx, err);
        }
        ring.queue_message(&self.handle.mailbox, op, ctx)
    }

    /// Whether the thread has stopped.
    pub fn is_stopped(&self) -> bool {
        self.shared.has_ended()
    }

    /// Asks the thread to stop (if it was not asked yet; the request goes
    /// straight to its mailbox) and waits for it to end: `Ok`, the first
    /// error a callback returned, or an error describing a panic. Called on
    /// the thread itself (from one of its callbacks), it cannot wait: it
    /// returns `WouldBlock`, and the thread stops once the callback returns.
    pub fn join(mut self) -> io::Result<()> {
        self.stop_and_join()
    }

    fn stop_and_join(&mut self) -> io::Result<()> {
        let Some(join) = self.join.take() else {
            return Ok(());
        };
        // Refused if it is stopping already, which is as good.
        let _ = self.handle.mailbox.push(Envelope::Stop);
        let join = match join {
            Joiner::Os(join) => join,
            #[cfg(target_os = "linux")]
            Joiner::Simulated(id) => {
                // Off the world's OS thread, or from the thread's own
                // callbacks, it cannot be run here: it stops as the world
                // steps it.
                crate::backend::sim::run_to_end(id);
                return self.shared.result().unwrap_or_else(|| {
                    Err(io::Error::new(
                        io::ErrorKind::WouldBlock,
                        "the simulated thread is still running (joined from its own \
                         callbacks or another OS thread); it stops as its world steps it",
                    ))
                });
            }
        };
        if join.thread().id() == std::thread::current().id() {
            // Its own state or callback holds it: a thread cannot wait for
            // itself. It stops once the callback returns (the stop request
            // is in its mailbox).
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                JOINED_FROM_ITSELF,
            ));
        }
        match join.join() {
            Ok(result) => result,
            Err(panic) => Err(io::Error::other(format!(
                "the ring's thread panicked: {}",
                panic_message(&*panic)
            ))),
        }
    }
}

const JOINED_FROM_ITSELF: &str = "joined from the ring's own thread (its state or a \
    callback holds its RingThread), which cannot wait for itself; it stops once the \
    callback returns";

impl<T> Drop for RingThread<T> {
    /// Stops the thread and waits for it; dropped on the thread itself
    /// (its state held it), only asks it to stop.
    fn drop(&mut self) {
        match self.stop_and_join() {
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
            Err(err) => tracing::warn!(error = %err, "a ring's thread ended with an error"),
            Ok(()) => {}
        }
    }
}

pub(super) fn panic_message(panic: &(dyn Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}
