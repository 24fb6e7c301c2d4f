//! What a task carries to its completion (`Ctx`, `Callback`), and the
//! task handle's methods that act on a ring.

use std::fmt;
use std::io;
use std::mem;

use crate::completion::Completion;
use crate::mailbox::ErasedCallback;
use crate::task::Task;

use super::Ring;

impl Task {
    /// Cancels this task; see [`Ring::cancel`].
    pub fn cancel<S>(self, ring: &mut Ring<S>, ctx: Ctx<S>) -> Task {
        ring.cancel(self, ctx)
    }

    /// Gives this task a deadline; see [`Ring::set_deadline`].
    pub fn set_deadline<S>(self, ring: &mut Ring<S>, at: std::time::Instant) -> io::Result<()> {
        ring.set_deadline(self, at)
    }

    /// Gives this task a deadline `after` from now; see
    /// [`Ring::set_timeout`].
    pub fn set_timeout<S>(self, ring: &mut Ring<S>, after: std::time::Duration) -> io::Result<()> {
        ring.set_timeout(self, after)
    }

    /// Whether this task is still live; see [`Ring::is_live`].
    pub fn is_live<S>(self, ring: &Ring<S>) -> bool {
        ring.is_live(self)
    }
}

/// The function a completion is delivered to: the state the ring was run
/// with, the ring (to schedule more work), and the completion.
///
/// An error it returns does not stop the other completions of the batch
/// from being delivered; [`Ring::run`] returns it once they have been.
pub type Callback<S> = fn(&mut S, &mut Ring<S>, Completion) -> io::Result<()>;

/// What a task carries to its completion: the callback, a message (usually a
/// `#[repr(u16)]` enum, see [`messages!`](crate::messages)) telling the
/// callback what the task was for, and a key (e.g. a connection's index in
/// the state) telling it for whom.
pub struct Ctx<S> {
    pub(crate) callback: Option<Callback<S>>,
    pub(crate) msg: u16,
    pub(crate) key: u64,
}

impl<S> Clone for Ctx<S> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<S> Copy for Ctx<S> {}

impl<S> fmt::Debug for Ctx<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ctx")
            .field("callback", &self.callback.is_some())
            .field("msg", &self.msg)
            .field("key", &self.key)
            .finish()
    }
}

impl<S> Ctx<S> {
    /// A context delivering to `callback`, with message and key 0.
    pub const fn new(callback: Callback<S>) -> Ctx<S> {
        Ctx {
            callback: Some(callback),
            msg: 0,
            key: 0,
        }
    }

    /// A context whose completion is dropped unseen (its buffer and any fd it
    /// produced are dropped, so nothing leaks).
    pub const fn none() -> Ctx<S> {
        Ctx {
            callback: None,
            msg: 0,
            key: 0,
        }
    }

    /// Sets the message.
    pub fn msg(mut self, msg: impl Into<u16>) -> Ctx<S> {
        self.msg = msg.into();
        self
    }

    /// Sets the key.
    pub const fn key(mut self, key: u64) -> Ctx<S> {
        self.key = key;
        self
    }
}

// The mailbox sits below the ring and cannot name `Callback`: erasing
// and restoring one belongs here.
impl ErasedCallback {
    pub(super) fn new<S>(callback: Callback<S>) -> ErasedCallback {
        // SAFETY: every fn pointer has the same size and representation; the
        // value is only ever called after `restore::<S>` has turned it back
        // into exactly this type.
        ErasedCallback(unsafe { mem::transmute::<Callback<S>, fn()>(callback) })
    }

    /// # Safety
    /// `S` is the state type the callback was erased from.
    pub(super) unsafe fn restore<S>(self) -> Callback<S> {
        // SAFETY: forwarded from the caller: this is the original type.
        unsafe { mem::transmute::<fn(), Callback<S>>(self.0) }
    }
}
