//! Messages between rings, the ring's side: the outboxes a sending ring
//! batches them in (sent through handles, `handle.rs`), publishing them once per turn,
//! and delivering what arrives (the design is in the
//! [`message`](crate::message) module docs).

use std::collections::VecDeque;
use std::io;
use std::mem;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::backend::RawCompletion;
use crate::completion::Completion;
use crate::mailbox::{Envelope, ErasedCallback, Mailbox, Payload, NO_TASK};
use crate::op::{Op, Outcome};
use crate::task::{user_data, Task};

use super::slab::{Slab, State};
use super::{Ctx, Ring, RingHandle};

// The mailbox sits below the ring and knows no `Ctx`: sealing one into
// an envelope belongs here.
impl Envelope {
    pub(super) fn message<S>(ctx: Ctx<S>, payload: Payload) -> Envelope {
        Envelope::Message {
            callback: ctx.callback.map(ErasedCallback::new),
            msg: ctx.msg,
            key: ctx.key,
            payload,
        }
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
    /// How many of the envelopes are parcels' messages.
    parcels: usize,
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
    /// Whether the first of `incoming` is a parcel's message whose file
    /// has not landed yet: nothing can be delivered until it has (or until
    /// its sender learns that it never will, and wakes this ring).
    blocked: bool,
    /// Slots keep their index: a failed doorbell names it in `user_data`.
    outboxes: Vec<Option<Outbox>>,
    /// The outbox used last: a sender usually talks to one target at a time.
    last: usize,
    /// Whether some outbox has messages to publish.
    queued: bool,
    /// Whether some outbox holds a reference to its target's ring fd.
    pub(crate) holds_doorbells: bool,
    /// Envelopes taken from the mailbox and delivered, which the
    /// simulator compares with those the mailbox accepted.
    pub(crate) delivered: u64,
    /// The ring takes no more messages (it drained or stopped), also
    /// through a mailbox made later.
    pub(super) closed: bool,
}

impl Messaging {
    /// Whether messages wait to be delivered (a sender rang, or some were
    /// taken and not yet delivered).
    pub(super) fn waiting(&self) -> bool {
        !self.incoming.is_empty() || self.mailbox.as_ref().is_some_and(|m| m.has_mail())
    }

    /// Whether messages can be delivered now: they wait, and not behind a
    /// parcel whose file has yet to land.
    pub(super) fn deliverable(&self) -> bool {
        self.waiting() && !self.blocked
    }

    /// The ring is about to sleep (or, pollable, to be left until its fd is
    /// readable): senders must ring from now on. Whether messages came
    /// meanwhile that can be delivered (then it must not sleep).
    pub(super) fn before_sleep(&self) -> bool {
        let mail = self.mailbox.as_ref().is_some_and(|m| m.before_sleep());
        mail && !self.blocked
    }

    /// Queues a parcel's message for `mailbox`, in order with the others.
    pub(super) fn queue_parcel(&mut self, mailbox: &Arc<Mailbox>, envelope: Envelope) {
        let outbox = self.outbox(mailbox);
        outbox.envelopes.push(envelope);
        outbox.parcels += 1;
    }

    /// Whether messages wait to go out (fire-and-forget ones have no task
    /// to keep the ring running).
    pub(super) fn has_outgoing(&self) -> bool {
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

    pub(super) fn find_outbox(&mut self, mailbox: &Arc<Mailbox>) -> usize {
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
            parcels: 0,
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
    pub(super) fn release_doorbells(&mut self) {
        self.holds_doorbells = false;
        for outbox in self.outboxes.iter_mut().flatten() {
            outbox.doorbell = None;
        }
    }

    /// During the ring's drop: what still holds user values (messages taken
    /// from the mailbox and not delivered, messages not yet published), for
    /// the ring to drop once its backend is quiesced.
    pub(super) fn take_undelivered(&mut self) -> Undelivered {
        Undelivered {
            incoming: mem::take(&mut self.incoming),
            outboxes: mem::take(&mut self.outboxes),
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

// Parcels (see `parcel.rs`) use the doorbell fd too.
impl Messaging {
    /// The target's io_uring fd (duplicated once per target, as doorbells
    /// use it), if the target takes parcels and is open.
    pub(super) fn parcel_target(&mut self, mailbox: &Arc<Mailbox>) -> Option<Arc<OwnedFd>> {
        if !mailbox.accepts_fixed {
            return None;
        }
        let index = self.find_outbox(mailbox);
        let outbox = self.outboxes[index].as_mut()?;
        if outbox.doorbell.is_none() {
            outbox.doorbell = mailbox.doorbell_locked(&mut mailbox.lock());
            self.holds_doorbells |= outbox.doorbell.is_some();
        }
        outbox.doorbell.clone()
    }
}

/// Messages a dropped ring did not deliver or publish; dropping them drops
/// their payloads.
pub(crate) struct Undelivered {
    incoming: VecDeque<Envelope>,
    outboxes: Vec<Option<Outbox>>,
}

impl Undelivered {
    /// Hands each message to `drop_one`, which drops it (a panic in one
    /// value's drop then cuts none of the others short); the outboxes go
    /// when `self` does.
    pub(super) fn drop_each(&mut self, mut drop_one: impl FnMut(Envelope)) {
        self.incoming.drain(..).for_each(&mut drop_one);
        for outbox in self.outboxes.iter_mut().flatten() {
            outbox.envelopes.drain(..).for_each(&mut drop_one);
        }
    }
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
        let kind = self.backend.kind();
        Ok(RingHandle::new(self.mailbox()?.clone(), kind))
    }

    pub(super) fn mailbox(&mut self) -> io::Result<&Arc<Mailbox>> {
        if self.messaging.mailbox.is_none() {
            let waker = self.backend.waker()?;
            let doorbells = self.msg_ring && self.backend.doorbell_target().is_some();
            let accepts_fixed = doorbells && self.backend.accepts_fixed();
            let ring_fd = self.backend.uring_fd();
            let mailbox = Mailbox::new(waker, ring_fd, doorbells, accepts_fixed);
            // A ring that drained takes no messages, through handles made
            // before or after the drain began.
            if self.messaging.closed {
                mailbox.close(&mut self.messaging.incoming);
            }
            self.messaging.mailbox = Some(mailbox);
            // The wake-up's read must be in the kernel before a message
            // comes, or a pollable ring that has not run since would stay
            // unreadable for it (a `run` prepares the ring as it returns).
            if self.backend.pollable_fd().is_some() && !self.running.get() {
                self.prepare_poll()?;
            }
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
    pub(super) fn send_envelope(
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
    pub(super) fn queue_message(&mut self, target: &Arc<Mailbox>, op: Op, ctx: Ctx<S>) -> Task {
        let task = self.slab.insert(op, ctx);
        self.slab.slots[task.index as usize].state = State::Pending;
        let outbox = self.messaging.outbox(target);
        outbox.envelopes.push(Envelope::Elsewhere);
        outbox.tasks.push(task);
        task
    }

    /// Publishes every queued message, target by target, and rings each
    /// target's doorbell if needed.
    pub(super) fn publish_messages(&mut self) {
        if !mem::take(&mut self.messaging.queued) {
            return;
        }
        if self.backend.holds_messages() {
            self.messaging.queued = true;
            return;
        }
        if !self.backend.has_unsubmitted() {
            self.messaging.retire_closed();
        }
        // Fire-and-forget messages a closed mailbox refused, dropped once
        // every outbox is published and every task settled: a value's drop
        // is user code, and a panic in it must leave nothing half done.
        let mut refused = Vec::new();
        for index in 0..self.messaging.outboxes.len() {
            self.publish_outbox(index, Some(&mut refused));
        }
        drop(refused);
    }

    /// Publishes the outbox to `mailbox` now if it holds a parcel's
    /// message, so that the parcel's sender can settle. If the mailbox has
    /// closed, the parcels are marked refused and everything stays for the
    /// next turn to refuse (dropping a refused payload runs user code).
    pub(super) fn publish_parcels_to(&mut self, mailbox: &Arc<Mailbox>) {
        let found = self.messaging.outboxes.iter().position(|outbox| {
            outbox
                .as_ref()
                .is_some_and(|o| o.parcels > 0 && Arc::ptr_eq(&o.mailbox, mailbox))
        });
        if let Some(index) = found {
            self.publish_outbox(index, None);
        }
    }

    /// Publishes outbox `index` and rings its target's doorbell if needed.
    /// If the target has closed, the envelopes go to `refused`, or stay
    /// where they are if there is none.
    fn publish_outbox(&mut self, index: usize, refused: Option<&mut Vec<Envelope>>) {
        let can_ring = self.msg_ring && self.backend.doorbell_target().is_some();
        let Some(outbox) = &mut self.messaging.outboxes[index] else {
            return;
        };
        if outbox.envelopes.is_empty() {
            return;
        }
        let mailbox = outbox.mailbox.clone();
        let open = {
            let mut inbox = mailbox.lock();
            if mem::take(&mut outbox.parcels) > 0 {
                mailbox.place_parcels_locked(&mut inbox, &outbox.envelopes);
            }
            if inbox.closed && refused.is_none() {
                return;
            }
            if !inbox.closed {
                if !outbox.tasks.is_empty() {
                    // Fetch the envelopes of the tasks still waiting (not
                    // cancelled meanwhile) from their slots.
                    let mut waiting = outbox.tasks.iter();
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
                    mailbox.queue_locked(&mut inbox, &mut outbox.envelopes);
                }
                if can_ring && outbox.doorbell.is_none() {
                    outbox.doorbell = mailbox.doorbell_locked(&mut inbox);
                    self.messaging.holds_doorbells |= outbox.doorbell.is_some();
                }
            }
            !inbox.closed
        };
        // Refused: tasks give their payloads back; fire-and-forget ones
        // are dropped by the caller.
        if let Some(refused) = refused {
            refused.append(&mut outbox.envelopes);
        }
        let mut tasks = mem::take(&mut outbox.tasks);
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
    pub(super) fn doorbell_failed(&mut self, c: RawCompletion) {
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
    /// start (messages sent by these callbacks wait for the next turn), up
    /// to a parcel whose file has not landed yet.
    pub(super) fn deliver_messages(&mut self, state: &mut S) -> usize {
        self.messaging.blocked = false;
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
            if !matches!(envelope, Envelope::Parcel { .. }) {
                delivered += self.deliver_envelope(state, envelope);
                continue;
            }
            match self.open_parcel(state, envelope) {
                Ok(count) => {
                    self.messaging.delivered += 1;
                    delivered += count;
                }
                Err(waiting) => {
                    self.messaging.incoming.push_front(waiting);
                    self.messaging.blocked = true;
                    break;
                }
            }
        }
        delivered
    }

    fn deliver_envelope(&mut self, state: &mut S, envelope: Envelope) -> usize {
        self.messaging.delivered += 1;
        match envelope {
            Envelope::Message {
                callback,
                msg,
                key,
                payload,
            } => {
                #[cfg(target_os = "linux")]
                if let Some(copy) = self.planted_copy(&payload) {
                    self.messaging.delivered += 1;
                    self.deliver_message(state, callback, msg, key, copy);
                }
                self.deliver_message(state, callback, msg, key, payload)
            }
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
            Envelope::Elsewhere | Envelope::Parcel { .. } => 0,
        }
    }

    /// Runs a message's callback with its payload (dropped if there is no
    /// callback).
    pub(super) fn deliver_message(
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
    pub(super) fn close_mailbox(&mut self) {
        self.messaging.closed = true;
        if let Some(mailbox) = &self.messaging.mailbox {
            mailbox.close(&mut self.messaging.incoming);
        }
    }
}
