//! Stopping a ring from another thread: for a ring that runs
//! [`Forever`](crate::RunMode::Forever) because the work it waits for comes
//! as messages.

use super::{Ctx, RingHandle};
use crate::completion::Completion;
use crate::mailbox::{Payload, SendError};
use crate::ring::Ring;

impl<S> RingHandle<S> {
    /// Makes the target ring's current [`run`](Ring::run) return (or its
    /// next one, if it is not running): a message whose callback calls
    /// [`Ring::stop`]. Messages this thread sent through the handle before
    /// are delivered first; tasks still live stay live (run the ring again,
    /// or drop it, to finish them; [`drain`](RingHandle::drain) instead
    /// lets them finish before `run` returns). A closed target is a
    /// [`SendError`].
    ///
    /// This is how a ring on a thread of your own keeps serving messages
    /// while no task is live (it runs [`Forever`](crate::RunMode::Forever);
    /// [`UntilDone`](crate::RunMode::UntilDone) would return at once) until
    /// told to stop. Threads from [`Ring::spawn_thread`] need none of this:
    /// [`RingThread`](crate::RingThread) stops them.
    ///
    /// ```
    /// use ouro::{Completion, Ctx, Outcome, Ring, RunMode};
    ///
    /// fn count(total: &mut u64, _: &mut Ring<u64>, c: Completion) -> std::io::Result<()> {
    ///     if let Outcome::Message(payload) = c.outcome {
    ///         *total += payload.as_u64().unwrap_or(0);
    ///     }
    ///     Ok(())
    /// }
    ///
    /// let mut ring: Ring<u64> = Ring::new(8)?;
    /// let handle = ring.handle()?;
    /// let producer = std::thread::spawn(move || {
    ///     for n in 1..=3u64 {
    ///         handle.send(Ctx::new(count), n.into()).unwrap();
    ///     }
    ///     handle.stop().unwrap(); // after the three
    /// });
    /// let mut total = 0;
    /// ring.run(&mut total, RunMode::Forever)?; // idle until messages come
    /// assert_eq!(total, 6);
    /// producer.join().unwrap();
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn stop(&self) -> Result<(), SendError> {
        self.send(Ctx::new(stop_ring::<S>), Payload::None)
    }
}

fn stop_ring<S>(_: &mut S, ring: &mut Ring<S>, _: Completion) -> std::io::Result<()> {
    ring.stop();
    Ok(())
}
