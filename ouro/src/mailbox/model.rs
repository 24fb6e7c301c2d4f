//! Model tests of the mailbox under loom: every interleaving of a few
//! threads (up to a bound on preemptions) of the cross-thread protocol that
//! rings speak through a mailbox — sending, the doorbell handshake, closing
//! (a stop, a drain, a drop) and a ring thread's end. Built only with
//! `RUSTFLAGS="--cfg loom"` (see docs/testing.md); a lost wake-up shows as
//! loom's deadlock report, a lost or doubled message as a failed check.
//!
//! The ring's side is modelled by [`Receiver`], which follows the run loop's
//! order (`Ring::turn`: look for mail, else clear `notified` and look once
//! more, then sleep; take the queue) with a waker that remembers a wake-up
//! as an eventfd does. Senders use [`Mailbox::push`] (a thread's
//! `RingHandle::send`, a join's stop request) or [`publish`] (a ring's
//! batch, as `Ring::publish_messages` hands it over).

use std::collections::VecDeque;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, PoisonError};

use loom::sync::{Condvar, Mutex};
use loom::thread;

use super::{Arrival, Envelope, Handover, Mailbox, Payload, ThreadShared, Wake, NO_TASK};
use crate::sync::atomic::Ordering;

/// The preemptions loom tries per execution unless `LOOM_MAX_PREEMPTIONS`
/// says otherwise: enough for every race below to need at most this many
/// forced switches, and the whole suite runs in seconds.
const PREEMPTION_BOUND: usize = 3;

/// Runs `model` through every interleaving within the bound.
fn check(model: impl Fn() + Send + Sync + 'static) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(PREEMPTION_BOUND);
    }
    builder.check(model);
}

/// A ring's wake-up as the backends give it: a wake that comes while the
/// ring is awake is remembered, and its next sleep returns at once.
#[derive(Default)]
struct Waker {
    rung: Mutex<bool>,
    signal: Condvar,
}

impl Wake for Waker {
    fn wake(&self) {
        *self.rung.lock().unwrap_or_else(PoisonError::into_inner) = true;
        self.signal.notify_one();
    }
}

impl Waker {
    fn sleep(&self) {
        let mut rung = self.rung.lock().unwrap_or_else(PoisonError::into_inner);
        while !*rung {
            rung = self
                .signal
                .wait(rung)
                .unwrap_or_else(PoisonError::into_inner);
        }
        *rung = false;
    }
}

/// The receiving ring: its mailbox, its wake-up, what it took and has not
/// delivered yet, and what it delivered.
struct Receiver {
    mailbox: Arc<Mailbox>,
    waker: Arc<Waker>,
    incoming: VecDeque<Envelope>,
    delivered: Vec<(u16, u64)>,
}

impl Receiver {
    fn new() -> Receiver {
        let waker = Arc::new(Waker::default());
        let mailbox = Mailbox::new(waker.clone(), None, false, false);
        Receiver {
            mailbox,
            waker,
            incoming: VecDeque::new(),
            delivered: Vec::new(),
        }
    }

    /// One turn of the run loop, as far as messages go: sleeps unless
    /// something waits, then takes what the mailbox holds.
    fn turn(&mut self) {
        let waiting = !self.incoming.is_empty() || self.mailbox.has_mail();
        if !waiting && !self.mailbox.before_sleep() {
            self.waker.sleep();
        }
        self.mailbox.take(&mut self.incoming);
    }

    /// Delivers the next envelope taken: a message is recorded (and its
    /// payload dropped); anything else is handed back.
    fn deliver_next(&mut self) -> Option<Envelope> {
        let envelope = self.incoming.pop_front()?;
        match envelope {
            Envelope::Message { msg, key, .. } => {
                self.delivered.push((msg, key));
                None
            }
            other => Some(other),
        }
    }

    /// Turns until `count` messages have been delivered.
    fn deliver(&mut self, count: usize) {
        while self.delivered.len() < count {
            if self.incoming.is_empty() {
                self.turn();
            }
            self.deliver_next();
        }
    }

    /// Closes the mailbox (a stop, a drain or a drop) and delivers what it
    /// had accepted.
    fn close_and_deliver(&mut self) {
        self.mailbox.close(&mut self.incoming);
        while !self.incoming.is_empty() {
            self.deliver_next();
        }
    }
}

/// A message payload that counts its drops, so that a model can tell a
/// payload that was lost (never dropped: leaked) or dropped twice.
struct Token(Arc<AtomicUsize>);

impl Drop for Token {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// Message `seq` of `sender`, its payload counted in `drops`.
fn message(sender: u16, seq: u64, drops: &Arc<AtomicUsize>) -> Envelope {
    Envelope::Message {
        callback: None,
        msg: sender,
        key: seq,
        payload: Payload::value(Token(drops.clone())),
    }
}

/// Who sent a refused envelope, and its number.
fn identity(envelope: &Envelope) -> (u16, u64) {
    match envelope {
        Envelope::Message { msg, key, .. } => (*msg, *key),
        _ => panic!("only messages are sent in these models"),
    }
}

/// A thread's sends, one `push` each (`RingHandle::send`): what was
/// refused.
fn push_all(
    mailbox: &Mailbox,
    sender: u16,
    count: u64,
    drops: &Arc<AtomicUsize>,
) -> Vec<(u16, u64)> {
    let mut refused = Vec::new();
    for seq in 0..count {
        if let Err(envelope) = mailbox.push(message(sender, seq, drops)) {
            refused.push(identity(&envelope));
        }
    }
    refused
}

/// A ring's batch handed over as `Ring::publish_messages` does: queued
/// under the lock if the mailbox is open, then a wake-up if the doorbell is
/// claimed. The batch back if the mailbox has closed.
fn publish(mailbox: &Mailbox, mut batch: Vec<Envelope>) -> Result<(), Vec<Envelope>> {
    let open = {
        let mut inbox = mailbox.lock();
        mailbox.place_parcels_locked(&mut inbox, &batch);
        if !inbox.closed {
            mailbox.queue_locked(&mut inbox, &mut batch);
        }
        !inbox.closed
    };
    if !open {
        return Err(batch);
    }
    if mailbox.claim_doorbell() {
        mailbox.wake();
    }
    Ok(())
}

/// A ring's sends, one message per turn (`Ring::msg_ring`): what was
/// refused.
fn publish_each(
    mailbox: &Mailbox,
    sender: u16,
    count: u64,
    drops: &Arc<AtomicUsize>,
) -> Vec<(u16, u64)> {
    let mut refused = Vec::new();
    for seq in 0..count {
        if let Err(batch) = publish(mailbox, vec![message(sender, seq, drops)]) {
            refused.extend(batch.iter().map(identity));
        }
    }
    refused
}

/// The guarantees of docs/messages.md, checked on one execution: each of
/// `sent` was delivered or refused, exactly once; each sender's delivered
/// messages kept their order; every payload was dropped exactly once.
fn assert_each_once(
    sent: &[(u16, u64)],
    delivered: &[(u16, u64)],
    refused: &[(u16, u64)],
    drops: &AtomicUsize,
) {
    for message in sent {
        let times = delivered
            .iter()
            .chain(refused)
            .filter(|m| *m == message)
            .count();
        assert_eq!(
            times, 1,
            "{message:?} delivered {delivered:?}, refused {refused:?}"
        );
    }
    assert_eq!(delivered.len() + refused.len(), sent.len());
    for sender in sent.iter().map(|(sender, _)| *sender) {
        let order: Vec<u64> = delivered
            .iter()
            .filter(|(from, _)| *from == sender)
            .map(|(_, seq)| *seq)
            .collect();
        assert!(
            order.windows(2).all(|w| w[0] < w[1]),
            "sender {sender}: {order:?}"
        );
    }
    assert_eq!(drops.load(Ordering::SeqCst), sent.len(), "payloads dropped");
}

/// Every message of `senders`, `count` each.
fn all_sent(senders: &[u16], count: u64) -> Vec<(u16, u64)> {
    senders
        .iter()
        .flat_map(|&sender| (0..count).map(move |seq| (sender, seq)))
        .collect()
}

#[test]
fn two_senders_deliver_every_message_once_in_each_senders_order() {
    check(|| {
        let drops = Arc::new(AtomicUsize::new(0));
        let mut receiver = Receiver::new();
        let (mailbox, counted) = (receiver.mailbox.clone(), drops.clone());
        let thread_sender = thread::spawn(move || push_all(&mailbox, 0, 2, &counted));
        let (mailbox, counted) = (receiver.mailbox.clone(), drops.clone());
        let ring_sender = thread::spawn(move || publish_each(&mailbox, 1, 2, &counted));
        receiver.deliver(4);
        let mut refused = thread_sender.join().unwrap();
        refused.extend(ring_sender.join().unwrap());
        assert_each_once(&all_sent(&[0, 1], 2), &receiver.delivered, &refused, &drops);
    });
}

#[test]
fn a_message_sent_as_the_ring_goes_to_sleep_wakes_it() {
    // The ring sleeps between the two messages or not, and the second may
    // come while `notified` is still set from the first: each way, no
    // wake-up may be lost (loom reports a deadlock if one is).
    check(|| {
        let drops = Arc::new(AtomicUsize::new(0));
        let mut receiver = Receiver::new();
        let (mailbox, counted) = (receiver.mailbox.clone(), drops.clone());
        let sender = thread::spawn(move || {
            let mut refused = push_all(&mailbox, 0, 1, &counted);
            refused.extend(publish_each(&mailbox, 1, 1, &counted));
            refused
        });
        receiver.deliver(2);
        let refused = sender.join().unwrap();
        assert_each_once(&all_sent(&[0, 1], 1), &receiver.delivered, &refused, &drops);
    });
}

#[test]
fn a_send_racing_close_is_delivered_or_handed_back_never_both_never_lost() {
    check(|| {
        let drops = Arc::new(AtomicUsize::new(0));
        let mut receiver = Receiver::new();
        let (mailbox, counted) = (receiver.mailbox.clone(), drops.clone());
        let thread_sender = thread::spawn(move || push_all(&mailbox, 0, 2, &counted));
        let (mailbox, counted) = (receiver.mailbox.clone(), drops.clone());
        let ring_sender = thread::spawn(move || publish_each(&mailbox, 1, 1, &counted));
        receiver.mailbox.take(&mut receiver.incoming);
        receiver.close_and_deliver();
        let mut refused = thread_sender.join().unwrap();
        refused.extend(ring_sender.join().unwrap());
        let sent = [(0, 0), (0, 1), (1, 0)];
        assert_each_once(&sent, &receiver.delivered, &refused, &drops);
        assert_eq!(
            Arc::strong_count(&receiver.waker),
            1,
            "a closed mailbox keeps no waker"
        );
    });
}

#[test]
fn a_mailbox_dropped_by_its_ring_while_a_sender_holds_it_loses_nothing() {
    // The ring drops (closes, then lets go of its mailbox and of what it
    // had not delivered) while a sender still sends; the sender's handle
    // is the last, and every payload is dropped once all the same.
    check(|| {
        let drops = Arc::new(AtomicUsize::new(0));
        let receiver = Receiver::new();
        let (mailbox, counted) = (receiver.mailbox.clone(), drops.clone());
        let sender = thread::spawn(move || push_all(&mailbox, 0, 2, &counted));
        let Receiver {
            mailbox,
            mut incoming,
            waker,
            ..
        } = receiver;
        mailbox.close(&mut incoming);
        let undelivered: Vec<(u16, u64)> = incoming.iter().map(identity).collect();
        drop((incoming, mailbox));
        let refused = sender.join().unwrap();
        // Undelivered messages were accepted, then dropped with the ring.
        assert_each_once(&all_sent(&[0], 2), &undelivered, &refused, &drops);
        assert_eq!(
            Arc::strong_count(&waker),
            1,
            "the waker went with the close"
        );
    });
}

/// A ring thread (`spawn_thread`'s `serve` and `shut_down`): delivers
/// messages until a stop request comes, then closes its mailbox, delivers
/// what it had accepted, and tells those waiting for its end.
fn serve(mut ring: Receiver, shared: Arc<ThreadShared>) -> Vec<(u16, u64)> {
    loop {
        if ring.incoming.is_empty() {
            ring.turn();
        }
        if let Some(Envelope::Stop) = ring.deliver_next() {
            break;
        }
    }
    ring.close_and_deliver();
    shared.end(&Ok(()));
    ring.delivered
}

#[test]
fn a_stop_racing_messages_delivers_every_accepted_one_and_tells_the_stopper_once() {
    // A thread sends while another ring stops the target (`RingThread::stop`:
    // the request, then a wait for the end) and a join asks too; the
    // stopper hears the end exactly once: at once if the thread had ended,
    // else as a `Done` in its own mailbox.
    check(|| {
        let drops = Arc::new(AtomicUsize::new(0));
        let target = Receiver::new();
        let handle = target.mailbox.clone();
        let shared = Arc::new(ThreadShared::default());
        let ring_thread = thread::spawn({
            let shared = shared.clone();
            move || serve(target, shared)
        });
        let (mailbox, counted) = (handle.clone(), drops.clone());
        let sender = thread::spawn(move || push_all(&mailbox, 0, 2, &counted));
        let mut stopper = Receiver::new();
        // Refused if the target is stopping already, which is as good.
        let _ = handle.push(Envelope::Stop);
        let heard_at_once = shared.add_waiter(&stopper.mailbox, NO_TASK).is_some();
        if !heard_at_once {
            while stopper.incoming.is_empty() {
                stopper.turn();
            }
            assert!(matches!(
                stopper.incoming.pop_front(),
                Some(Envelope::Done { result: Ok(()), .. })
            ));
        }
        // The join: its request is refused (the mailbox closed), and the
        // thread ends.
        assert!(
            handle.push(Envelope::Stop).is_err(),
            "a stopped ring takes no request"
        );
        let delivered = ring_thread.join().unwrap();
        let refused = sender.join().unwrap();
        stopper.mailbox.take(&mut stopper.incoming);
        assert!(stopper.incoming.is_empty(), "the end is told once");
        assert!(shared.has_ended());
        assert_each_once(&all_sent(&[0], 2), &delivered, &refused, &drops);
    });
}

#[test]
fn a_stopper_gone_before_the_thread_ends_is_told_nothing_and_not_kept() {
    // The ring waiting for the end is dropped first (its mailbox closed):
    // the end is refused there, and the thread keeps no reference to it.
    check(|| {
        let target = Receiver::new();
        let handle = target.mailbox.clone();
        let shared = Arc::new(ThreadShared::default());
        let mut stopper = Receiver::new();
        assert!(shared.add_waiter(&stopper.mailbox, NO_TASK).is_none());
        let ring_thread = thread::spawn({
            let shared = shared.clone();
            move || serve(target, shared)
        });
        stopper.close_and_deliver();
        let _ = handle.push(Envelope::Stop);
        ring_thread.join().unwrap();
        assert_eq!(
            Arc::strong_count(&stopper.mailbox),
            1,
            "the waiters were let go"
        );
        stopper.mailbox.take(&mut stopper.incoming);
        assert!(stopper.incoming.is_empty(), "a closed mailbox takes no end");
    });
}

#[test]
fn a_drain_closing_the_mailbox_while_sends_race_loses_and_doubles_nothing() {
    // `RingHandle::drain` is a message: when the ring delivers it, its
    // mailbox closes; messages of a thread and of a ring race the close.
    check(|| {
        const DRAIN: u16 = 9;
        let drops = Arc::new(AtomicUsize::new(0));
        let mut ring = Receiver::new();
        let (mailbox, counted) = (ring.mailbox.clone(), drops.clone());
        let thread_sender = thread::spawn(move || push_all(&mailbox, 0, 1, &counted));
        let (mailbox, counted) = (ring.mailbox.clone(), drops.clone());
        let ring_sender = thread::spawn(move || publish_each(&mailbox, 1, 2, &counted));
        assert!(ring.mailbox.push(message(DRAIN, 0, &drops)).is_ok());
        while !ring.delivered.contains(&(DRAIN, 0)) {
            ring.deliver(ring.delivered.len() + 1);
        }
        ring.close_and_deliver();
        let mut refused = thread_sender.join().unwrap();
        refused.extend(ring_sender.join().unwrap());
        let mut sent = all_sent(&[0], 1);
        sent.extend(all_sent(&[1], 2));
        sent.push((DRAIN, 0));
        assert_each_once(&sent, &ring.delivered, &refused, &drops);
        assert!(ring.mailbox.is_closed() && !ring.mailbox.has_mail());
    });
}

/// When a parcel's target sees its file land, against closing its mailbox.
#[derive(Clone, Copy, Debug)]
enum Landing {
    /// It sees the file land, delivers the message, then closes.
    SeenThenClosed,
    /// It closes its mailbox (a stop), sees the file land, then delivers
    /// what the mailbox had accepted.
    ClosedThenSeen,
    /// It closes its mailbox and is dropped: the landing is never seen
    /// (the file closes with its table).
    ClosedAndDropped,
}

/// The slot the kernel put a parcel's file in, in these models.
const SLOT: u32 = 7;

/// A parcel's message, as a sending ring queues it.
fn parcel(token: u32) -> Envelope {
    Envelope::Parcel {
        token,
        callback: None,
        msg: 0,
        key: 0,
    }
}

impl Receiver {
    /// Delivers what was taken, as `Ring::deliver_messages` does: a
    /// parcel's message whose file has not landed stops the delivery (put
    /// back first). What the parcels' messages found, in order.
    fn deliver_parcels(&mut self) -> Vec<Arrival> {
        let mut found = Vec::new();
        while let Some(envelope) = self.incoming.pop_front() {
            let Envelope::Parcel { token, .. } = envelope else {
                panic!("only parcels are sent in these models");
            };
            let arrival = self.mailbox.parcel_arrival(token);
            found.push(arrival);
            if arrival == Arrival::NotYet {
                self.incoming.push_front(envelope);
                break;
            }
        }
        found
    }

    /// Turns until a parcel's message has been delivered or skipped. As in
    /// `Ring::turn`, a ring held up by a parcel whose file has not landed
    /// sleeps even if mail waits behind it.
    fn open_parcel(&mut self) -> Arrival {
        let mut blocked = false;
        loop {
            let waiting = !self.incoming.is_empty() || self.mailbox.has_mail();
            if (blocked || !waiting) && (!self.mailbox.before_sleep() || blocked) {
                self.waker.sleep();
            }
            self.mailbox.take(&mut self.incoming);
            match self.deliver_parcels().last() {
                Some(&Arrival::NotYet) => blocked = true,
                Some(&arrival) => return arrival,
                None => blocked = false,
            }
        }
    }

    /// Whether every parcel record has been freed.
    fn parcels_all_free(&self) -> bool {
        let inbox = self.mailbox.lock();
        inbox.free_parcels.len() == inbox.parcels.len()
    }
}

#[test]
fn a_parcel_is_delivered_by_its_target_or_refused_to_its_sender_never_both() {
    // A ring fd moved with `IORING_MSG_SEND_FD`: its message goes out in
    // the sender's batch while the file lands in the target's table; the
    // sender settles once it has published. The target may close its
    // mailbox meanwhile. Never both delivered and refused; never lost by
    // a target that sees the landing (`Accepted` means accepted by an open
    // mailbox, as for any message: a ring dropped after that drops it);
    // a landed file nobody will deliver is the target's to close.
    for landing in [
        Landing::SeenThenClosed,
        Landing::ClosedThenSeen,
        Landing::ClosedAndDropped,
    ] {
        check(move || {
            let mut target = Receiver::new();
            let Some(token) = target.mailbox.hold_parcel() else {
                panic!("an open mailbox holds parcels");
            };
            let mailbox = target.mailbox.clone();
            let sender = thread::spawn(move || {
                let _ = publish(&mailbox, vec![parcel(token)]);
                mailbox.settle_parcel(token, true)
            });
            let (delivered, orphaned) = match landing {
                Landing::SeenThenClosed => {
                    let wanted = target.mailbox.parcel_landed(token, SLOT);
                    let delivered = wanted && target.open_parcel() == Arrival::Landed(SLOT);
                    target.mailbox.close(&mut target.incoming);
                    (delivered, !wanted)
                }
                Landing::ClosedThenSeen => {
                    target.mailbox.close(&mut target.incoming);
                    let wanted = target.mailbox.parcel_landed(token, SLOT);
                    let found = target.deliver_parcels();
                    (found == [Arrival::Landed(SLOT)], !wanted)
                }
                Landing::ClosedAndDropped => {
                    target.mailbox.close(&mut target.incoming);
                    (false, false)
                }
            };
            let handover = sender.join().unwrap();
            assert_ne!(handover, Handover::Failed, "the file landed");
            let refused = handover == Handover::Refused;
            assert!(!(delivered && refused), "{landing:?}: both");
            assert!(
                !(delivered && orphaned),
                "{landing:?}: delivered and closed"
            );
            if !matches!(landing, Landing::ClosedAndDropped) {
                assert!(delivered || refused, "{landing:?}: lost");
                assert_eq!(refused, orphaned, "{landing:?}: a refused file is closed");
                assert!(target.parcels_all_free(), "{landing:?}: a record kept");
            }
        });
    }
}

#[test]
fn a_parcel_whose_file_did_not_land_is_skipped_not_waited_for() {
    // The target takes the message (perhaps before the sender knows the
    // send failed) and must not wait for a file that never comes: the
    // failing sender wakes it.
    check(|| {
        let mut target = Receiver::new();
        let Some(token) = target.mailbox.hold_parcel() else {
            panic!("an open mailbox holds parcels");
        };
        let mailbox = target.mailbox.clone();
        let sender = thread::spawn(move || {
            assert!(publish(&mailbox, vec![parcel(token)]).is_ok());
            mailbox.settle_parcel(token, false)
        });
        assert_eq!(target.open_parcel(), Arrival::Lost);
        assert_eq!(sender.join().unwrap(), Handover::Failed);
        assert!(target.parcels_all_free(), "the record is freed");
        let mut rest = VecDeque::new();
        target.mailbox.close(&mut rest);
        assert!(target.mailbox.hold_parcel().is_none(), "closed");
    });
}
