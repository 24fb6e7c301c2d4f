//! Messages between rings: a task sent from one ring (or any thread) to
//! another, whose callback the target runs as a completion.
//!
//! # How a message travels
//!
//! Every ring that can be messaged has a `Mailbox` behind an `Arc`: a
//! queue of envelopes under a mutex, a `closed` flag, `mail` and `notified`
//! flags and a doorbell. An envelope holds the target's callback (its state type
//! erased; the typed [`RingHandle`] guarantees it matches), the `u16`
//! message, the key and the [`Payload`]. A sending *ring* does not touch
//! the mailbox per message: it appends the envelope to its own outbox for
//! that target (a message whose sender wants to hear back is also a task,
//! and its envelope waits in the task's slot until then, so that it can be
//! cancelled), and at the start of its next turn hands each target the
//! whole outbox under one lock — swapping buffers when the target's queue
//! is empty, and setting `mail` — then rings that target's doorbell once,
//! and only if `notified` was clear (the target may be asleep, and no
//! doorbell is on its way). The doorbell is an
//! `IORING_OP_MSG_RING` submission when both rings are io_uring rings and the
//! kernel is recent enough: it rides in the sender's next `io_uring_enter`,
//! which the sender makes anyway, so a hand-off costs no system call of its
//! own. Otherwise — another backend, an old kernel, a sender without a ring
//! ([`RingHandle::send`]), or a ring built with
//! [`RingBuilder::msg_ring(false)`](crate::RingBuilder::msg_ring) — it is the
//! target backend's waker (an eventfd that the io_uring backend reads with
//! an internal request). Either way the message itself travels in the
//! mailbox, so both paths give the same guarantees, and MSG_RING carries
//! only a wake-up marked by its `user_data` kind.
//!
//! The target takes the whole queue whenever `mail` is set (swapping
//! buffers, so steady state does not allocate) and runs each message's
//! callback in order. It clears `notified` only when it is about to sleep,
//! and then looks at `mail` once more: while it is awake, senders need not
//! ring, and do not.
//!
//! # Guarantees
//!
//! - **Exactly once, in order.** A message is either delivered to the
//!   target's callback exactly once, or refused: the sender's task then
//!   fails with `EPIPE` and gives the payload back. Messages from one sender
//!   (one ring, or one thread using a handle) arrive in the order sent.
//! - **Acknowledged means accepted.** The sender's task succeeds once the
//!   message is in the target's mailbox while that mailbox was open. From
//!   then on the target runs the message's callback on its next turn. A ring
//!   closes its mailbox when it is dropped (undelivered payloads are then
//!   dropped: fds closed, values dropped) or when its thread stops
//!   ([`RingThread`](crate::RingThread)), which delivers every accepted
//!   message first — so stopping a thread loses nothing acknowledged.
//! - **Refused means returned.** A message to a closed mailbox fails with
//!   `EPIPE` and the payload comes back in
//!   [`Outcome::MsgRing`](crate::Outcome::MsgRing) (or in
//!   [`SendError`]); if nobody takes it, dropping it closes the fd or drops
//!   the value.

pub use crate::mailbox::{Payload, SendAny, SendError, WrongValue};
pub use crate::ring::RingHandle;
