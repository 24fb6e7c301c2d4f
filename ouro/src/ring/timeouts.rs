//! Task state and relative deadlines.

use std::io;
use std::time::Duration;

use super::Ring;
use crate::task::Task;
use crate::time::duration_ns;

impl<S> Ring<S> {
    /// Whether `task` is still live: scheduled and not yet delivered for
    /// the last time. A finished task's handle, a stale one whose slot now
    /// holds another task, and a handle from another ring all answer false.
    ///
    /// ```
    /// use ouro::{Ctx, Ring, RunMode};
    ///
    /// let mut ring: Ring<()> = Ring::new(8)?;
    /// let task = ring.noop(Ctx::none());
    /// assert!(ring.is_live(task));
    /// ring.run(&mut (), RunMode::UntilDone)?;
    /// assert!(!ring.is_live(task));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn is_live(&self, task: Task) -> bool {
        self.slab.live_index(task).is_some()
    }

    /// Gives `task` a deadline `after` from the ring's [`now`](Ring::now):
    /// [`set_deadline`](Ring::set_deadline) with a relative time (same
    /// rules: it replaces an earlier deadline, the task fails with `ETIME`
    /// if it has not finished by then). A duration too long to represent
    /// means a deadline that never comes in practice, never a panic.
    ///
    /// Fails with `NotFound` if the task is no longer live; a task just
    /// scheduled always is, so chaining it onto the schedule call is safe:
    ///
    /// ```
    /// use ouro::{is_deadline, Completion, Ctx, Ring, RunMode};
    /// use std::os::unix::net::UnixStream;
    /// use std::rc::Rc;
    /// use std::time::Duration;
    ///
    /// fn received(timed_out: &mut bool, _: &mut Ring<bool>, c: Completion) -> std::io::Result<()> {
    ///     *timed_out = c.result().is_err_and(|e| is_deadline(&e));
    ///     Ok(())
    /// }
    ///
    /// let mut ring: Ring<bool> = Ring::new(8)?;
    /// let (quiet, _peer) = UnixStream::pair()?;
    /// let quiet = Rc::new(quiet);
    /// let task = ring.recv(&quiet, Vec::with_capacity(16), Ctx::new(received));
    /// ring.set_timeout(task, Duration::from_millis(10))?;
    /// let mut timed_out = false;
    /// ring.run(&mut timed_out, RunMode::UntilDone)?;
    /// assert!(timed_out);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn set_timeout(&mut self, task: Task, after: Duration) -> io::Result<()> {
        let at = self.clock.now().saturating_add(duration_ns(after));
        self.set_deadline(task, self.clock.to_instant(at))
    }
}
