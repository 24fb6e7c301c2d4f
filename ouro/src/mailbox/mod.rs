//! Mailboxes: what travels between rings (payloads and envelopes) and the
//! queue a ring receives them in. The ring that sends and delivers them is
//! in `ring/messages.rs`; the design is in the [`message`](crate::message)
//! module docs.

use std::any::{Any, TypeId};
use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::mem;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::{Arc, PoisonError};

#[cfg(all(test, loom))]
mod model;
mod parcel;
mod thread_end;
mod value;

pub use value::{SendAny, WrongValue};

pub(crate) use parcel::{Arrival, Handover};
pub(crate) use thread_end::ThreadShared;

use crate::error::closed_error;
use crate::fd::RingFd;
use crate::sync::atomic::{AtomicBool, Ordering};
use crate::sync::{Mutex, MutexGuard};
use crate::task::{Task, NIL};

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
    /// Any owned value that may cross threads (see [`Payload::value`]); it
    /// knows its type's name, for [`WrongValue`].
    Value(Box<dyn SendAny>),
    /// A ring fd of the ring that receives it: a file another ring moved
    /// here with [`Ring::send_fd`](crate::Ring::send_fd). Only a handle: the ring keeps the file
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

    /// The value, if this is a `T`; if not, an error naming the type sent
    /// and the type asked for, which gives the payload back unchanged.
    pub fn into_value<T: Any>(self) -> Result<T, WrongValue> {
        let Payload::Value(value) = self else {
            return Err(WrongValue::new::<T>(self));
        };
        // Through the box: the box itself is an `Any` too.
        if (*value).type_id() != TypeId::of::<T>() {
            return Err(WrongValue::new::<T>(Payload::Value(value)));
        }
        let value: Box<dyn Any + Send> = value;
        Ok(*value.downcast::<T>().expect("the type id was just checked"))
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
            Payload::Value(value) => write!(f, "Value({})", (**value).type_name()),
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
    pub(crate) payload: Payload,
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

/// Wakes a ring's backend from any thread: see the [backend module
/// docs](crate::backend). Every backend provides one; a mailbox calls it
/// when a message arrives for a ring that may be asleep.
pub(crate) trait Wake: Send + Sync {
    /// Makes the backend's current or next `wait` return promptly.
    fn wake(&self);
}

/// A callback with its state type erased, so that one mailbox type serves
/// rings of every state type. Only the ring whose state type it was erased
/// from turns it back (see [`RingHandle`](crate::RingHandle)).
#[derive(Clone, Copy)]
pub(crate) struct ErasedCallback(pub(crate) fn());

/// What travels through a mailbox.
pub(crate) enum Envelope {
    /// A user message: run `callback` with the payload.
    Message {
        callback: Option<ErasedCallback>,
        msg: u16,
        key: u64,
        payload: Payload,
    },
    /// A ring fd moved as a process fd (see [`Ring::send_fd`](crate::Ring::send_fd)): the
    /// target registers it as a ring fd of its own and runs `callback`
    /// with it.
    Moved {
        callback: Option<ErasedCallback>,
        msg: u16,
        key: u64,
        fd: OwnedFd,
    },
    /// A ring fd moved into the target's fixed table with
    /// `IORING_MSG_SEND_FD` (see [`parcel`]): when the file has landed, the
    /// target runs `callback` with a ring fd for it.
    Parcel {
        token: u32,
        callback: Option<ErasedCallback>,
        msg: u16,
        key: u64,
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
    pub(crate) closed: AtomicBool,
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
    /// The target's io_uring fd, whether or not doorbells use it, for rings
    /// that attach to its work queue; valid while the mailbox is open.
    ring_fd: Option<RawFd>,
    /// Whether ring fds can be moved into the target's fixed file table
    /// with `IORING_MSG_SEND_FD` (see [`parcel`]).
    pub(crate) accepts_fixed: bool,
}

pub(crate) struct Inbox {
    pub(crate) queue: Vec<Envelope>,
    pub(crate) closed: bool,
    /// Records of ring fds on their way with `IORING_MSG_SEND_FD`, by
    /// token (see [`parcel`]).
    parcels: Vec<parcel::Parcel>,
    free_parcels: Vec<u32>,
    /// Envelopes ever accepted: the simulator checks that no more are
    /// delivered.
    pub(crate) accepted: u64,
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
    /// A mailbox that wakes its ring through `waker`. `ring_fd` is the
    /// ring's io_uring fd, if it has one; `doorbells` says whether senders
    /// may ring through it with MSG_RING.
    pub(crate) fn new(
        waker: Arc<dyn Wake>,
        ring_fd: Option<RawFd>,
        doorbells: bool,
        accepts_fixed: bool,
    ) -> Arc<Mailbox> {
        Arc::new(Mailbox {
            inbox: Mutex::new(Inbox {
                queue: Vec::new(),
                closed: false,
                accepted: 0,
                parcels: Vec::new(),
                free_parcels: Vec::new(),
                waker: Some(waker),
                doorbell: None,
            }),
            closed: AtomicBool::new(false),
            notified: AtomicBool::new(false),
            mail: AtomicBool::new(false),
            doorbell_fd: ring_fd.filter(|_| doorbells),
            ring_fd,
            accepts_fixed,
        })
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Inbox> {
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
            inbox.accepted += 1;
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
    pub(crate) fn doorbell_locked(&self, inbox: &mut Inbox) -> Option<Arc<OwnedFd>> {
        if inbox.closed {
            return None;
        }
        if inbox.doorbell.is_none() {
            inbox.doorbell = self.doorbell_fd.and_then(duplicate).map(Arc::new);
        }
        inbox.doorbell.clone()
    }

    /// A duplicate of the target's io_uring fd, for a ring that attaches
    /// to its work queue: `Ok(None)` if the target has none (it runs on
    /// another backend), `EPIPE` once the mailbox has closed (the target is
    /// dropped or stopping, and its fd may be closed).
    pub(crate) fn duplicate_ring_fd(&self) -> io::Result<Option<OwnedFd>> {
        let inbox = self.lock();
        if inbox.closed {
            return Err(closed_error());
        }
        let Some(fd) = self.ring_fd else {
            return Ok(None);
        };
        // SAFETY: the target's io_uring fd stays open while its mailbox is
        // open, which the lock held until the borrow ends guarantees.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        fd.try_clone_to_owned().map(Some)
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
    pub(crate) fn claim_doorbell(&self) -> bool {
        !self.notified.load(Ordering::SeqCst) && !self.notified.swap(true, Ordering::SeqCst)
    }

    /// The ring is about to sleep: from now on senders must ring. Whether
    /// mail came meanwhile (then it must not sleep).
    pub(crate) fn before_sleep(&self) -> bool {
        self.notified.store(false, Ordering::SeqCst);
        self.mail.load(Ordering::SeqCst)
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Whether envelopes wait in the queue.
    pub(crate) fn has_mail(&self) -> bool {
        self.mail.load(Ordering::Acquire)
    }

    /// Moves a sending ring's batch to the end of the queue (`inbox` is
    /// this mailbox's, locked and open) and tells the ring it has mail;
    /// the sender then rings if [`claim_doorbell`](Mailbox::claim_doorbell)
    /// says so.
    pub(crate) fn queue_locked(&self, inbox: &mut Inbox, envelopes: &mut Vec<Envelope>) {
        inbox.accepted += envelopes.len() as u64;
        append(envelopes, &mut inbox.queue);
        self.mail.store(true, Ordering::SeqCst);
    }

    /// Moves everything queued to the end of `into`.
    pub(crate) fn take(&self, into: &mut VecDeque<Envelope>) {
        if !self.has_mail() {
            return;
        }
        let mut inbox = self.lock();
        take_all(&mut inbox.queue, into);
        self.mail.store(false, Ordering::SeqCst);
    }

    /// Refuses every later message and moves what was accepted to `into`.
    pub(crate) fn close(&self, into: &mut VecDeque<Envelope>) {
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
pub(crate) const NO_TASK: Task = Task {
    index: NIL,
    generation: 0,
    ring: NIL,
};

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
        (Mailbox::new(waker.clone(), None, false, false), waker)
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
        let payload = payload.into_value::<u32>().unwrap_err().into_payload();
        assert_eq!(payload.into_value::<String>().unwrap(), "hi");
        assert_eq!(Payload::U16(5).as_u64(), Some(5));
        assert!(Payload::None.is_none());
    }
}
