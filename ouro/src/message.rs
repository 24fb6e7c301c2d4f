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
//!   [`Outcome::MsgRing`] (or in
//!   [`SendError`]); if nobody takes it, dropping it closes the fd or drops
//!   the value.

use std::any::Any;
use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::mem;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

mod parcel;

use crate::backend::{RawCompletion, Wake};
use crate::completion::Completion;
use crate::error::closed_error;
use crate::fd::RingFd;
use crate::op::{Op, Outcome};
use crate::ring::Ring;
use crate::task::{user_data, Callback, Ctx, Slab, State, Task, NIL};

/// What a message carries besides its `u16` message: nothing, a number, an
/// fd, or an owned value.
pub enum Payload {
    /// Nothing.
    None,
    /// A small number.
    U16(u16),
    /// A number (an index, a pointer-sized token, a count).
    U64(u64),
    /// A file descriptor, e.g. an accepted connection. fds belong to the
    /// process, so it is handed over as is; an undelivered one is closed.
    Fd(OwnedFd),
    /// Any owned value that may cross threads (see [`Payload::value`]).
    Value(Box<dyn Any + Send>),
    /// A ring fd of the ring that receives it: a file another ring moved
    /// here with [`Ring::send_fd`]. Only a handle: the ring keeps the file
    /// open until the ring fd is closed (or the ring dropped).
    RingFd(RingFd),
}

impl Payload {
    /// Wraps an owned value (boxed: one allocation).
    pub fn value<T: Any + Send>(value: T) -> Payload {
        Payload::Value(Box::new(value))
    }

    /// The fd, if this is one.
    pub fn into_fd(self) -> Option<OwnedFd> {
        match self {
            Payload::Fd(fd) => Some(fd),
            _ => None,
        }
    }

    /// The value, if this is a `T`; the payload unchanged if not.
    pub fn into_value<T: Any>(self) -> Result<T, Payload> {
        match self {
            Payload::Value(value) => match value.downcast::<T>() {
                Ok(value) => Ok(*value),
                Err(value) => Err(Payload::Value(value)),
            },
            other => Err(other),
        }
    }

    /// The ring fd, if this is one.
    pub fn ring_fd(&self) -> Option<RingFd> {
        match *self {
            Payload::RingFd(fd) => Some(fd),
            _ => None,
        }
    }

    /// The number, for `U16` and `U64`.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Payload::U16(n) => Some(u64::from(n)),
            Payload::U64(n) => Some(n),
            _ => None,
        }
    }

    /// Whether this is `Payload::None`.
    pub fn is_none(&self) -> bool {
        matches!(self, Payload::None)
    }
}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Payload::None => f.write_str("None"),
            Payload::U16(n) => write!(f, "U16({n})"),
            Payload::U64(n) => write!(f, "U64({n})"),
            Payload::Fd(fd) => write!(f, "Fd({})", fd.as_raw_fd()),
            Payload::Value(_) => f.write_str("Value(..)"),
            Payload::RingFd(fd) => write!(f, "{fd:?}"),
        }
    }
}

impl From<OwnedFd> for Payload {
    fn from(fd: OwnedFd) -> Payload {
        Payload::Fd(fd)
    }
}

impl From<u64> for Payload {
    fn from(n: u64) -> Payload {
        Payload::U64(n)
    }
}

impl From<u16> for Payload {
    fn from(n: u16) -> Payload {
        Payload::U16(n)
    }
}

/// A message refused because the target ring is gone (closed its mailbox:
/// dropped, or its thread stopped); the payload is handed back.
pub struct SendError {
    payload: Payload,
}

impl SendError {
    /// The payload that was not delivered.
    pub fn into_payload(self) -> Payload {
        self.payload
    }
}

impl fmt::Debug for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SendError")
            .field("payload", &self.payload)
            .finish()
    }
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the target ring is closed (dropped, or its thread stopped)")
    }
}

impl std::error::Error for SendError {}

impl From<SendError> for io::Error {
    /// `EPIPE`, as a ring's `msg_ring` reports the same condition.
    fn from(_: SendError) -> io::Error {
        closed_error()
    }
}

/// A `Send + Sync` handle to a ring, through which any thread — with a ring
/// of its own ([`Ring::msg_ring`]) or without ([`RingHandle::send`]) — can
/// send it messages. Made by [`Ring::handle`]; cheap to clone.
///
/// The state type `S` is the target ring's: a message carries a callback
/// typed for it, so sender and receiver agree at compile time.
pub struct RingHandle<S> {
    pub(crate) mailbox: Arc<Mailbox>,
    _target: PhantomData<fn(&mut S)>,
}

impl<S> Clone for RingHandle<S> {
    fn clone(&self) -> Self {
        RingHandle {
            mailbox: self.mailbox.clone(),
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
    /// Sends a message from a thread without a ring (or from outside a
    /// ring's callbacks): the target runs `message`'s callback with
    /// [`Outcome::Message`]`(payload)`. `Ok` means
    /// accepted (see the [module guarantees](self)); a closed target gives
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

/// A callback with its state type erased, so that one mailbox type serves
/// rings of every state type. Only the ring whose state type it was erased
/// from turns it back (see [`RingHandle`]).
#[derive(Clone, Copy)]
pub(crate) struct ErasedCallback(fn());

impl ErasedCallback {
    fn new<S>(callback: Callback<S>) -> ErasedCallback {
        // SAFETY: every fn pointer has the same size and representation; the
        // value is only ever called after `restore::<S>` has turned it back
        // into exactly this type.
        ErasedCallback(unsafe { mem::transmute::<Callback<S>, fn()>(callback) })
    }

    /// # Safety
    /// `S` is the state type the callback was erased from.
    unsafe fn restore<S>(self) -> Callback<S> {
        // SAFETY: forwarded from the caller: this is the original type.
        unsafe { mem::transmute::<fn(), Callback<S>>(self.0) }
    }
}

/// What travels through a mailbox.
pub(crate) enum Envelope {
    /// A user message: run `callback` with the payload.
    Message {
        callback: Option<ErasedCallback>,
        msg: u16,
        key: u64,
        payload: Payload,
    },
    /// A ring fd moved as a process fd (see [`Ring::send_fd`]): the
    /// target registers it as a ring fd of its own and runs `callback`
    /// with it.
    Moved {
        callback: Option<ErasedCallback>,
        msg: u16,
        key: u64,
        fd: OwnedFd,
    },
    /// Stop the ring's thread (see [`RingThread`](crate::RingThread)).
    Stop,
    /// Finish the recipient's waiting task with this result (a thread it
    /// asked to stop has stopped).
    Done { task: Task, result: io::Result<()> },
    /// In an outbox, the place of a message whose envelope waits in its
    /// task's slot.
    Elsewhere,
}

impl Envelope {
    fn message<S>(ctx: Ctx<S>, payload: Payload) -> Envelope {
        Envelope::Message {
            callback: ctx.callback.map(ErasedCallback::new),
            msg: ctx.msg,
            key: ctx.key,
            payload,
        }
    }

    pub(crate) fn into_payload(self) -> Payload {
        match self {
            Envelope::Message { payload, .. } => payload,
            Envelope::Moved { fd, .. } => Payload::Fd(fd),
            _ => Payload::None,
        }
    }
}

/// A ring's mailbox; see the [module docs](self).
pub(crate) struct Mailbox {
    inbox: Mutex<Inbox>,
    /// Mirrors `Inbox::closed`, for lock-free checks.
    closed: AtomicBool,
    /// Set by the sender that rings the doorbell; cleared by the ring only
    /// when it is about to sleep. While it is set, senders do not ring: the
    /// ring is awake (or a wake-up is on its way) and will look at `mail`.
    notified: AtomicBool,
    /// Whether the queue holds envelopes: set by senders as they queue,
    /// cleared by the ring as it takes them (both under the lock).
    mail: AtomicBool,
    /// The target's io_uring fd for MSG_RING doorbells; valid while the
    /// mailbox is open (read and duplicated under the lock).
    doorbell_fd: Option<RawFd>,
    /// Whether ring fds can be moved into the target's fixed file table
    /// with `IORING_MSG_SEND_FD` (see [`parcel`]).
    accepts_fixed: bool,
}

struct Inbox {
    queue: Vec<Envelope>,
    closed: bool,
    /// Envelopes of ring fds on their way with `IORING_MSG_SEND_FD`, by
    /// token (see [`parcel`]).
    parcels: Vec<Option<Envelope>>,
    free_parcels: Vec<u32>,
    /// The target's wake-up (an eventfd), until the mailbox closes: then
    /// no message can come, and senders that keep the mailbox do not keep
    /// the target's fds open.
    waker: Option<Arc<dyn Wake>>,
    /// A duplicate of `doorbell_fd`, made for the first sender that rings
    /// through MSG_RING and dropped when the mailbox closes. A sender takes
    /// a reference while its doorbell waits in its submission queue, so
    /// the fd it names stays the target's until the kernel has it.
    doorbell: Option<Arc<OwnedFd>>,
}

impl Mailbox {
    pub(crate) fn new(
        waker: Arc<dyn Wake>,
        doorbell_fd: Option<RawFd>,
        accepts_fixed: bool,
    ) -> Arc<Mailbox> {
        Arc::new(Mailbox {
            inbox: Mutex::new(Inbox {
                queue: Vec::new(),
                closed: false,
                parcels: Vec::new(),
                free_parcels: Vec::new(),
                waker: Some(waker),
                doorbell: None,
            }),
            closed: AtomicBool::new(false),
            notified: AtomicBool::new(false),
            mail: AtomicBool::new(false),
            doorbell_fd,
            accepts_fixed,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inbox> {
        // Nothing runs user code under this lock, so a poisoned one is
        // still consistent.
        self.inbox.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues one envelope and wakes the target; gives it back if closed.
    pub(crate) fn push(&self, envelope: Envelope) -> Result<(), Envelope> {
        let waker = {
            let mut inbox = self.lock();
            if inbox.closed {
                return Err(envelope);
            }
            inbox.queue.push(envelope);
            self.mail.store(true, Ordering::SeqCst);
            // Taken under the lock (the mailbox may close right after),
            // woken outside it.
            self.claim_doorbell().then(|| inbox.waker.clone()).flatten()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(())
    }

    /// Wakes the target through its waker, unless the mailbox has closed
    /// (then there is nothing to wake it for).
    pub(crate) fn wake(&self) {
        let waker = self.lock().waker.clone();
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// A reference to the duplicate of the target's io_uring fd, made on
    /// first use; `None` once the mailbox has closed (or if the target has
    /// no such fd, or it cannot be duplicated).
    fn doorbell_locked(&self, inbox: &mut Inbox) -> Option<Arc<OwnedFd>> {
        if inbox.closed {
            return None;
        }
        if inbox.doorbell.is_none() {
            inbox.doorbell = self.doorbell_fd.and_then(duplicate).map(Arc::new);
        }
        inbox.doorbell.clone()
    }

    /// Whether the caller, having just queued something (and set `mail`),
    /// must ring the doorbell: the ring may be asleep, and no wake-up is on
    /// its way.
    ///
    /// Why no wake-up is lost (all four accesses are SeqCst): before it
    /// sleeps, the ring clears `notified` and then reads `mail`
    /// ([`before_sleep`](Mailbox::before_sleep)). If that read missed this
    /// sender's `mail`, the sender set `mail` after it, so its swap of
    /// `notified` comes after the clearing too: it (or another sender in
    /// between) finds the flag clear and rings.
    fn claim_doorbell(&self) -> bool {
        !self.notified.load(Ordering::SeqCst) && !self.notified.swap(true, Ordering::SeqCst)
    }

    /// The ring is about to sleep: from now on senders must ring. Whether
    /// mail came meanwhile (then it must not sleep).
    pub(crate) fn before_sleep(&self) -> bool {
        self.notified.store(false, Ordering::SeqCst);
        self.mail.load(Ordering::SeqCst)
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Whether envelopes wait in the queue.
    pub(crate) fn has_mail(&self) -> bool {
        self.mail.load(Ordering::Acquire)
    }

    /// Moves everything queued to the end of `into`.
    fn take(&self, into: &mut VecDeque<Envelope>) {
        if !self.has_mail() {
            return;
        }
        let mut inbox = self.lock();
        take_all(&mut inbox.queue, into);
        self.mail.store(false, Ordering::SeqCst);
    }

    /// Refuses every later message and moves what was accepted to `into`.
    fn close(&self, into: &mut VecDeque<Envelope>) {
        let (waker, doorbell) = {
            let mut inbox = self.lock();
            inbox.closed = true;
            self.closed.store(true, Ordering::Release);
            take_all(&mut inbox.queue, into);
            self.mail.store(false, Ordering::SeqCst);
            (inbox.waker.take(), inbox.doorbell.take())
        };
        // The target's fds close with the last reference: here, or when a
        // sender's doorbell in flight has reached the kernel.
        drop((waker, doorbell));
    }
}

/// Moves the inbox's envelopes to the end of the delivery queue: when that
/// is empty, by trading buffers (no copy; both keep their capacity).
fn take_all(inbox: &mut Vec<Envelope>, into: &mut VecDeque<Envelope>) {
    if into.is_empty() {
        let taken = VecDeque::from(mem::take(inbox));
        // An empty deque becomes a Vec without moving anything.
        *inbox = Vec::from(mem::replace(into, taken));
    } else {
        into.extend(inbox.drain(..));
    }
}

/// Moves every envelope of `from` to the end of `to`: by swapping the
/// buffers when `to` is empty (no copy; both keep their capacity).
fn append(from: &mut Vec<Envelope>, to: &mut Vec<Envelope>) {
    if to.is_empty() {
        mem::swap(from, to);
    } else {
        to.append(from);
    }
}

/// The messages a ring has queued for one target, and how it rings that
/// target's doorbell.
struct Outbox {
    mailbox: Arc<Mailbox>,
    /// Messages in the order sent. A fire-and-forget message (no callback
    /// to tell) is here in full and has no task; a message task's envelope
    /// waits in its slot, in case it is cancelled, and is `Elsewhere` here.
    envelopes: Vec<Envelope>,
    /// The message tasks, in the order of the `Elsewhere` place holders.
    tasks: Vec<Task>,
    /// A reference to the target's duplicated io_uring fd (see
    /// `Inbox::doorbell`), so that a doorbell queued in our submission
    /// queue never names an fd the target has closed. The kernel takes its
    /// own reference when it takes the submission, so this one is dropped
    /// once our submission queue is empty (`release_doorbells`).
    doorbell: Option<Arc<OwnedFd>>,
}

/// A ring's messaging state: its own mailbox (once a handle was made), the
/// messages taken from it, and its outboxes.
#[derive(Default)]
pub(crate) struct Messaging {
    pub(crate) mailbox: Option<Arc<Mailbox>>,
    /// Messages taken from the mailbox and not yet delivered, in order; a
    /// panicking callback leaves the rest here for the next turn.
    incoming: VecDeque<Envelope>,
    /// Slots keep their index: a failed doorbell names it in `user_data`.
    outboxes: Vec<Option<Outbox>>,
    /// The outbox used last: a sender usually talks to one target at a time.
    last: usize,
    /// Whether some outbox has messages to publish.
    queued: bool,
    /// Whether some outbox holds a reference to its target's ring fd.
    pub(crate) holds_doorbells: bool,
}

impl Messaging {
    /// Whether messages wait to be delivered (a sender rang, or some were
    /// taken and not yet delivered).
    pub(crate) fn waiting(&self) -> bool {
        !self.incoming.is_empty() || self.mailbox.as_ref().is_some_and(|m| m.has_mail())
    }

    /// The ring is about to sleep (or, pollable, to be left until its fd is
    /// readable): senders must ring from now on. Whether messages came
    /// meanwhile (then it must not sleep).
    pub(crate) fn before_sleep(&self) -> bool {
        self.mailbox.as_ref().is_some_and(|m| m.before_sleep())
    }

    /// Whether messages wait to go out (fire-and-forget ones have no task
    /// to keep the ring running).
    pub(crate) fn has_outgoing(&self) -> bool {
        self.queued
    }

    /// The outbox for `mailbox`; marks it as having something to publish.
    #[inline]
    fn outbox(&mut self, mailbox: &Arc<Mailbox>) -> &mut Outbox {
        self.queued = true;
        let cached = self.outboxes.get(self.last).and_then(Option::as_ref);
        if !cached.is_some_and(|outbox| Arc::ptr_eq(&outbox.mailbox, mailbox)) {
            self.last = self.find_outbox(mailbox);
        }
        match &mut self.outboxes[self.last] {
            Some(outbox) => outbox,
            None => unreachable!("`last` names a live outbox"),
        }
    }

    fn find_outbox(&mut self, mailbox: &Arc<Mailbox>) -> usize {
        let found = self
            .outboxes
            .iter()
            .position(|o| o.as_ref().is_some_and(|o| Arc::ptr_eq(&o.mailbox, mailbox)));
        found.unwrap_or_else(|| self.new_outbox(mailbox))
    }

    fn new_outbox(&mut self, mailbox: &Arc<Mailbox>) -> usize {
        let outbox = Outbox {
            mailbox: mailbox.clone(),
            envelopes: Vec::new(),
            tasks: Vec::new(),
            doorbell: None,
        };
        match self.outboxes.iter().position(Option::is_none) {
            Some(free) => {
                self.outboxes[free] = Some(outbox);
                free
            }
            None => {
                self.outboxes.push(Some(outbox));
                self.outboxes.len() - 1
            }
        }
    }

    /// Drops the outboxes' references to their targets' ring fds: call it
    /// once no doorbell waits in the submission queue. A stopped target's
    /// fd then closes (with the target's own), without waiting for another
    /// message to it.
    pub(crate) fn release_doorbells(&mut self) {
        self.holds_doorbells = false;
        for outbox in self.outboxes.iter_mut().flatten() {
            outbox.doorbell = None;
        }
    }

    /// During the ring's drop: what still holds user values (messages taken
    /// from the mailbox and not delivered, messages not yet published), for
    /// the ring to drop once its backend is quiesced.
    pub(crate) fn take_undelivered(&mut self) -> Undelivered {
        Undelivered {
            _incoming: mem::take(&mut self.incoming),
            _outboxes: mem::take(&mut self.outboxes),
        }
    }

    /// Drops the outboxes of closed targets with nothing left to publish,
    /// releasing their doorbell fds (which keep the target's io_uring
    /// instance alive). Only call it when no doorbell waits unsubmitted.
    fn retire_closed(&mut self) {
        for slot in &mut self.outboxes {
            if slot
                .as_ref()
                .is_some_and(|o| o.envelopes.is_empty() && o.mailbox.closed.load(Ordering::Acquire))
            {
                *slot = None;
            }
        }
    }
}

/// Messages a dropped ring did not deliver or publish; dropping them drops
/// their payloads.
pub(crate) struct Undelivered {
    _incoming: VecDeque<Envelope>,
    _outboxes: Vec<Option<Outbox>>,
}

/// Takes the envelope out of a message task that is still waiting to be
/// published.
fn take_envelope<S>(slab: &mut Slab<S>, task: Task) -> Option<Envelope> {
    let index = slab.live_index(task)?;
    let slot = &mut slab.slots[index as usize];
    if slot.state != State::Pending {
        return None;
    }
    match &mut slot.op {
        Op::MsgRing { envelope } | Op::StopThread { envelope, .. } => envelope.take(),
        _ => None,
    }
}

/// Duplicates `fd` (close-on-exec).
fn duplicate(fd: RawFd) -> Option<OwnedFd> {
    // SAFETY: `fd` is the target's io_uring fd, open while its mailbox is
    // open, which the caller holds the lock to guarantee; the borrow ends
    // before the lock is released.
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    match fd.try_clone_to_owned() {
        Ok(fd) => Some(fd),
        Err(err) => {
            tracing::debug!(error = %err, "cannot duplicate a ring fd; using its eventfd instead");
            None
        }
    }
}

/// The handle a message completion carries: it names no task.
const NO_TASK: Task = Task {
    index: NIL,
    generation: 0,
    ring: NIL,
};

impl<S> Ring<S> {
    /// A `Send` handle through which other threads and rings can message
    /// this ring. The first call sets up the ring's mailbox and wake-up (an
    /// eventfd on io_uring), which can fail like any fd creation.
    ///
    /// Messages are delivered while the ring [runs](Ring::run); with
    /// [`RunMode::UntilDone`](crate::RunMode::UntilDone) or
    /// [`Once`](crate::RunMode::Once), waiting messages count as work, but
    /// future ones are not waited for: a ring that serves messages runs
    /// [`Forever`](crate::RunMode::Forever).
    pub fn handle(&mut self) -> io::Result<RingHandle<S>> {
        Ok(RingHandle {
            mailbox: self.mailbox()?.clone(),
            _target: PhantomData,
        })
    }

    pub(crate) fn mailbox(&mut self) -> io::Result<&Arc<Mailbox>> {
        if self.messaging.mailbox.is_none() {
            let waker = self.backend.waker()?;
            let doorbell = self
                .msg_ring
                .then(|| self.backend.doorbell_target())
                .flatten();
            let accepts_fixed = doorbell.is_some() && self.backend.accepts_fixed();
            self.messaging.mailbox = Some(Mailbox::new(waker, doorbell, accepts_fixed));
        }
        match &self.messaging.mailbox {
            Some(mailbox) => Ok(mailbox),
            None => unreachable!("the mailbox was just made"),
        }
    }

    /// Sends a message to the ring behind `target`: that ring runs
    /// `message`'s callback, with its message and key, as a completion
    /// whose outcome is [`Outcome::Message`](crate::Outcome::Message)
    /// carrying `payload`.
    ///
    /// This task's own callback then gets
    /// [`Outcome::MsgRing`](crate::Outcome::MsgRing): `Ok` when the target
    /// accepted the message, or `EPIPE` and the payload back when it is
    /// closed (dropped, or its thread stopped).
    ///
    /// With [`Ctx::none`] the message is fire and forget: it goes out in
    /// order with the others but takes no task slot (the cheapest way to
    /// send), so the returned handle is already stale — it cannot be
    /// cancelled or given a deadline — and a refused payload is dropped (an
    /// fd closed).
    ///
    /// Messages go out at the start of this ring's next turn, all of them
    /// for one target under one lock and with at most one wake-up: an
    /// `IORING_OP_MSG_RING` (Linux 6.3) in the same `io_uring_enter` as the
    /// rest of the turn's submissions when both rings use io_uring, else the
    /// target's eventfd. Sending never submits onto the target's ring, so
    /// SINGLE_ISSUER rings on different threads can message each other.
    pub fn msg_ring<T>(
        &mut self,
        target: &RingHandle<T>,
        message: Ctx<T>,
        payload: Payload,
        ctx: Ctx<S>,
    ) -> Task {
        self.send_envelope(&target.mailbox, Envelope::message(message, payload), ctx)
    }

    /// Queues `envelope` for `target`: as a message task if `ctx` has a
    /// callback to tell, else fire and forget (no task, no slot).
    pub(crate) fn send_envelope(
        &mut self,
        target: &Arc<Mailbox>,
        envelope: Envelope,
        ctx: Ctx<S>,
    ) -> Task {
        if ctx.callback.is_none() {
            self.messaging.outbox(target).envelopes.push(envelope);
            return NO_TASK;
        }
        let envelope = Some(envelope);
        self.queue_message(target, Op::MsgRing { envelope }, ctx)
    }

    /// Queues a message task (`MsgRing` or `StopThread`) for `target`.
    pub(crate) fn queue_message(&mut self, target: &Arc<Mailbox>, op: Op, ctx: Ctx<S>) -> Task {
        let task = self.slab.insert(op, ctx);
        self.slab.slots[task.index as usize].state = State::Pending;
        let outbox = self.messaging.outbox(target);
        outbox.envelopes.push(Envelope::Elsewhere);
        outbox.tasks.push(task);
        task
    }

    /// Publishes every queued message, target by target, and rings each
    /// target's doorbell if needed.
    pub(crate) fn publish_messages(&mut self) {
        if !mem::take(&mut self.messaging.queued) {
            return;
        }
        if !self.backend.has_unsubmitted() {
            self.messaging.retire_closed();
        }
        let can_ring = self.msg_ring && self.backend.doorbell_target().is_some();
        for index in 0..self.messaging.outboxes.len() {
            let Some(outbox) = &mut self.messaging.outboxes[index] else {
                continue;
            };
            if outbox.envelopes.is_empty() {
                continue;
            }
            let mailbox = outbox.mailbox.clone();
            let mut tasks = mem::take(&mut outbox.tasks);
            let open = {
                let mut inbox = mailbox.lock();
                if !inbox.closed {
                    if !tasks.is_empty() {
                        // Fetch the envelopes of the tasks still waiting
                        // (not cancelled meanwhile) from their slots.
                        let mut waiting = tasks.iter();
                        outbox.envelopes.retain_mut(|envelope| {
                            if !matches!(envelope, Envelope::Elsewhere) {
                                return true;
                            }
                            let task = waiting.next().copied().unwrap_or(NO_TASK);
                            match take_envelope(&mut self.slab, task) {
                                Some(taken) => {
                                    *envelope = taken;
                                    true
                                }
                                None => false,
                            }
                        });
                    }
                    if !outbox.envelopes.is_empty() {
                        append(&mut outbox.envelopes, &mut inbox.queue);
                        mailbox.mail.store(true, Ordering::SeqCst);
                    }
                    if can_ring && outbox.doorbell.is_none() {
                        outbox.doorbell = mailbox.doorbell_locked(&mut inbox);
                        self.messaging.holds_doorbells |= outbox.doorbell.is_some();
                    }
                }
                !inbox.closed
            };
            // Refused: tasks give their payloads back; fire-and-forget ones
            // are dropped (outside the lock: a value's drop is user code).
            outbox.envelopes.clear();
            for task in tasks.drain(..) {
                self.settle_sent(task, open);
            }
            if let Some(outbox) = &mut self.messaging.outboxes[index] {
                outbox.tasks = tasks;
            }
            if open && mailbox.claim_doorbell() {
                self.ring_doorbell(index, &mailbox);
            }
        }
    }

    /// Wakes a target that has messages: through MSG_RING if possible,
    /// else its waker. This ring's own mailbox needs neither: the turn looks
    /// at it before waiting.
    fn ring_doorbell(&mut self, index: usize, mailbox: &Arc<Mailbox>) {
        if self
            .messaging
            .mailbox
            .as_ref()
            .is_some_and(|own| Arc::ptr_eq(own, mailbox))
        {
            return;
        }
        let Some(outbox) = &mut self.messaging.outboxes[index] else {
            return;
        };
        if let Some(fd) = &outbox.doorbell {
            let ud = user_data::with_kind(user_data::DOORBELL, index as u64);
            if self.backend.ring_doorbell(fd.as_raw_fd(), ud) {
                return;
            }
        }
        mailbox.wake();
    }

    /// After publishing: tells a message task whether it was accepted.
    fn settle_sent(&mut self, task: Task, accepted: bool) {
        let Some(index) = self.slab.live_index(task) else {
            return;
        };
        let slot = &self.slab.slots[index as usize];
        if slot.state != State::Pending {
            return;
        }
        let Op::StopThread { thread, .. } = &slot.op else {
            return self.make_ready(index, if accepted { 0 } else { -libc::EPIPE });
        };
        let thread = thread.clone();
        // A stop task waits for the thread to end, whether this request or
        // an earlier one made it stop.
        let Some(own) = self.messaging.mailbox.clone() else {
            return self.make_ready(index, -libc::EPIPE);
        };
        match thread.add_waiter(&own, task) {
            None => self.slab.slots[index as usize].state = State::Waiting,
            Some(Ok(())) => self.make_ready(index, 0),
            Some(Err(err)) => {
                self.rejections.push((index, err));
                self.make_ready(index, crate::error::REJECTED);
            }
        }
    }

    /// A MSG_RING doorbell this ring sent failed (the target's completion
    /// queue overflowed on an old kernel, its thread is gone): the target
    /// is woken through its eventfd instead. (If the outbox was retired and
    /// its slot reused meanwhile, the target was closed, and the wake-up
    /// lands on another ring, which finds nothing new.)
    #[cold]
    pub(crate) fn doorbell_failed(&mut self, c: RawCompletion) {
        let index = user_data::index(c.user_data) as usize;
        let Some(Some(outbox)) = self.messaging.outboxes.get(index) else {
            return;
        };
        tracing::debug!(
            error = %io::Error::from_raw_os_error(-c.res),
            "MSG_RING doorbell failed; waking the target through its eventfd"
        );
        outbox.mailbox.wake();
    }

    /// Delivers the messages waiting in the mailbox: those taken at the
    /// start (messages sent by these callbacks wait for the next turn).
    pub(crate) fn deliver_messages(&mut self, state: &mut S) -> usize {
        if self.messaging.incoming.is_empty() {
            match &self.messaging.mailbox {
                Some(mailbox) => mailbox.take(&mut self.messaging.incoming),
                None => return 0,
            }
        }
        let mut delivered = 0;
        for _ in 0..self.messaging.incoming.len() {
            let Some(envelope) = self.messaging.incoming.pop_front() else {
                break;
            };
            delivered += self.deliver_envelope(state, envelope);
        }
        delivered
    }

    fn deliver_envelope(&mut self, state: &mut S, envelope: Envelope) -> usize {
        match envelope {
            Envelope::Message {
                callback,
                msg,
                key,
                payload,
            } => self.deliver_message(state, callback, msg, key, payload),
            Envelope::Moved {
                callback,
                msg,
                key,
                fd,
            } => {
                let fd = self.register_fd(fd);
                self.deliver_ring_fd(state, callback, msg, key, fd)
            }
            Envelope::Stop => {
                // One accepted before the mailbox closed for a stop that
                // is under way already (a second request) changes nothing.
                let open = self
                    .messaging
                    .mailbox
                    .as_ref()
                    .is_some_and(|m| !m.is_closed());
                if open {
                    self.stop();
                }
                0
            }
            Envelope::Done { task, result } => self.finish_stop_task(state, task, result),
            Envelope::Elsewhere => 0,
        }
    }

    /// Runs a message's callback with its payload (dropped if there is no
    /// callback).
    pub(crate) fn deliver_message(
        &mut self,
        state: &mut S,
        callback: Option<ErasedCallback>,
        msg: u16,
        key: u64,
        payload: Payload,
    ) -> usize {
        let Some(callback) = callback else {
            return 1;
        };
        // SAFETY: this ring's mailbox is reachable only through a
        // `RingHandle<S>`, whose messages are built from `Ctx<S>` (`msg_ring`,
        // `send_fd` and `send`); internal envelopes carry no callback. So
        // `S` is the type the callback was erased from.
        let callback = unsafe { callback.restore::<S>() };
        let completion = Completion {
            task: NO_TASK,
            msg,
            key,
            more: false,
            outcome: Outcome::Message(payload),
        };
        if let Err(err) = callback(state, self, completion) {
            self.record_error(err);
        }
        1
    }

    fn finish_stop_task(&mut self, state: &mut S, task: Task, result: io::Result<()>) -> usize {
        let Some(index) = self.slab.live_index(task) else {
            return 0;
        };
        let slot = &self.slab.slots[index as usize];
        if slot.state != State::Waiting || !matches!(slot.op, Op::StopThread { .. }) {
            return 0;
        }
        match result {
            Ok(()) => self.finish(state, index, 0, 0),
            Err(err) => {
                self.rejections.push((index, err));
                self.finish(state, index, crate::error::REJECTED, 0)
            }
        }
    }

    /// Refuses every later message and moves those already accepted to
    /// the delivery queue.
    pub(crate) fn close_mailbox(&mut self) {
        if let Some(mailbox) = &self.messaging.mailbox {
            mailbox.close(&mut self.messaging.incoming);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct CountingWaker(std::sync::atomic::AtomicUsize);

    impl Wake for CountingWaker {
        fn wake(&self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn mailbox() -> (Arc<Mailbox>, Arc<CountingWaker>) {
        let waker = Arc::new(CountingWaker(Default::default()));
        (Mailbox::new(waker.clone(), None, false), waker)
    }

    fn number(n: u64) -> Envelope {
        Envelope::Message {
            callback: None,
            msg: 0,
            key: n,
            payload: Payload::None,
        }
    }

    #[test]
    fn one_wake_up_per_sleep_however_many_messages() {
        let (mailbox, waker) = mailbox();
        let wakes = || waker.0.load(Ordering::SeqCst);
        for n in 0..10u64 {
            assert!(mailbox.push(number(n)).is_ok());
        }
        assert_eq!(wakes(), 1, "the first wakes the ring, the rest need not");
        let mut taken = VecDeque::new();
        mailbox.take(&mut taken);
        assert_eq!(taken.len(), 10);
        assert!(!mailbox.has_mail());
        assert!(mailbox.push(number(10)).is_ok());
        assert_eq!(wakes(), 1, "the ring is awake: it will look again");
        assert!(mailbox.before_sleep(), "mail came: the ring must not sleep");
        mailbox.take(&mut taken);
        assert!(!mailbox.before_sleep(), "nothing came: the ring may sleep");
        assert!(mailbox.push(number(11)).is_ok());
        assert_eq!(wakes(), 2, "the ring went to sleep: a sender wakes it");
        assert_eq!(taken.len(), 11);
    }

    #[test]
    fn a_closed_mailbox_hands_the_envelope_back() {
        let (mailbox, _) = mailbox();
        assert!(mailbox.push(Envelope::Stop).is_ok());
        let mut rest = VecDeque::new();
        mailbox.close(&mut rest);
        assert_eq!(rest.len(), 1);
        let refused = mailbox.push(Envelope::Message {
            callback: None,
            msg: 3,
            key: 0,
            payload: Payload::U64(7),
        });
        let payload = refused.err().map(Envelope::into_payload);
        assert_eq!(payload.and_then(|p| p.as_u64()), Some(7));
    }

    #[test]
    fn payload_values_downcast_or_come_back() {
        let payload = Payload::value(String::from("hi"));
        let payload = payload.into_value::<u32>().unwrap_err();
        assert_eq!(payload.into_value::<String>().unwrap(), "hi");
        assert_eq!(Payload::U16(5).as_u64(), Some(5));
        assert!(Payload::None.is_none());
    }
}
