//! A handle to a ring, for other threads to send it messages.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use crate::backend::BackendKind;
use crate::mailbox::{Envelope, Mailbox, Payload, SendError};

use super::Ctx;

/// A `Send + Sync` handle to a ring, through which any thread — with a ring
/// of its own ([`Ring::msg_ring`](super::Ring::msg_ring)) or without ([`RingHandle::send`]) — can
/// send it messages. Made by [`Ring::handle`](super::Ring::handle); cheap to clone.
///
/// The state type `S` is the target ring's: a message carries a callback
/// typed for it, so sender and receiver agree at compile time.
pub struct RingHandle<S> {
    pub(crate) mailbox: Arc<Mailbox>,
    /// The target's backend, for rings that attach to it
    /// ([`RingBuilder::attach_to`](crate::RingBuilder::attach_to)).
    pub(crate) backend: BackendKind,
    _target: PhantomData<fn(&mut S)>,
}

impl<S> Clone for RingHandle<S> {
    fn clone(&self) -> Self {
        RingHandle {
            mailbox: self.mailbox.clone(),
            backend: self.backend,
            _target: PhantomData,
        }
    }
}

impl<S> fmt::Debug for RingHandle<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RingHandle")
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl<S> RingHandle<S> {
    pub(super) fn new(mailbox: Arc<Mailbox>, backend: BackendKind) -> RingHandle<S> {
        RingHandle {
            mailbox,
            backend,
            _target: PhantomData,
        }
    }

    /// Sends a message from a thread without a ring (or from outside a
    /// ring's callbacks): the target runs `message`'s callback with
    /// [`Outcome::Message`](crate::Outcome::Message)`(payload)`. `Ok` means
    /// accepted (see the [module guarantees](crate::message)); a closed target gives
    /// the payload back. Messages sent through one handle from one thread
    /// arrive in order. Costs a lock and, if the target has no wake-up
    /// outstanding, one `write` to its eventfd.
    pub fn send(&self, message: Ctx<S>, payload: Payload) -> Result<(), SendError> {
        match self.mailbox.push(Envelope::message(message, payload)) {
            Ok(()) => Ok(()),
            Err(envelope) => Err(SendError {
                payload: envelope.into_payload(),
            }),
        }
    }

    /// Whether the target has closed its mailbox (every send now fails).
    pub fn is_closed(&self) -> bool {
        self.mailbox.is_closed()
    }

    /// Whether both handles reach the same ring.
    pub fn same_ring(&self, other: &RingHandle<S>) -> bool {
        Arc::ptr_eq(&self.mailbox, &other.mailbox)
    }
}
