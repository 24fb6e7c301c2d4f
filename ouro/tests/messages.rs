//! Messages between rings and threads: delivery exactly once and in order,
//! on the MSG_RING path and on the mailbox path (forced, so it runs on every
//! kernel), stop/join with messages in flight, refused messages, fd
//! hand-over, and a ring polled from another ring. What does not depend on
//! io_uring runs on every backend (`per_backend!`), the mock included.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use ouro::{
    is_canceled, BackendKind, Completion, Ctx, Outcome, Payload, PollMask, Ring, RingHandle,
    RunMode,
};

fn builder(kind: BackendKind, msg_ring: bool) -> ouro::RingBuilder {
    Ring::builder()
        .backend(kind)
        .entries(256)
        .msg_ring(msg_ring)
}

fn ring<S>(kind: BackendKind) -> io::Result<Ring<S>> {
    builder(kind, true).build()
}

#[macro_use]
#[path = "common/mod.rs"]
mod common;

use common::backends;
use common::fds::{apart_from_other_tests, beside_other_tests, open_fds};
use common::watchdog::AbortAfter;

/// One `#[test]` per backend for each test function.
macro_rules! backend_tests {
    ($($name:ident),+ $(,)?) => {
        $(per_backend!(crate::call, $name);)+
    };
}

fn call(test: fn(BackendKind) -> io::Result<()>, kind: BackendKind) {
    let _shared = beside_other_tests();
    if backends::skipped(kind) {
        return;
    }
    if let Err(err) = test(kind) {
        panic!("on {kind:?}: {err}");
    }
}

/// Runs a test that counts the process's open fds while no other test of
/// this binary runs.
fn call_exclusive(test: fn(BackendKind) -> io::Result<()>, kind: BackendKind) {
    let _exclusive = apart_from_other_tests();
    if backends::skipped(kind) {
        return;
    }
    if let Err(err) = test(kind) {
        panic!("on {kind:?}: {err}");
    }
}

per_backend!(
    crate::call_exclusive,
    a_joined_workers_fds_are_released_without_another_message
);

backend_tests!(
    a_million_messages_arrive_once_and_in_order_over_the_mailbox,
    a_ringless_thread_and_a_ring_send_concurrently_each_in_order,
    fire_and_forget_and_acknowledged_messages_keep_one_order,
    stopping_a_thread_loses_no_acknowledged_message,
    a_message_to_a_stopped_thread_fails_and_its_fd_is_closed,
    a_dropped_ring_refuses_messages_and_closes_the_fds_it_had_accepted,
    a_message_cancelled_before_it_goes_out_gives_its_payload_back,
    owned_values_travel_both_ways_between_rings,
    a_ring_can_message_itself,
    an_fd_handed_to_a_worker_is_usable_there,
    a_callback_error_stops_the_thread_after_delivering_what_was_accepted,
    a_failing_init_is_reported_by_spawn_thread,
    a_spawned_thread_has_its_parents_fixed_table_size,
    until_done_sends_fire_and_forget_messages_and_then_returns,
    a_ring_polled_by_another_on_the_same_thread_runs_when_ready,
    a_ring_fd_moves_to_a_worker_thread,
    a_ring_fd_moves_to_a_worker_thread_over_the_mailbox,
    a_ring_fd_sent_to_a_stopped_thread_comes_back_or_is_closed,
    a_ring_fd_in_use_is_not_moved,
    a_ring_fd_sent_to_its_own_ring_stays,
    files_moved_in_and_fds_registered_meanwhile_never_share_a_slot,
    a_stop_tasks_deadline_ends_its_wait_while_the_thread_stops,
    a_stop_task_can_be_cancelled_while_the_thread_stops,
);

// -- a receiver that checks order per sender --------------------------------

/// What a receiving thread saw, shared with the test.
#[derive(Default, Debug)]
struct Tally {
    received: u64,
    /// Next number expected from each sender (the message key).
    next: HashMap<u64, u64>,
    /// Messages that did not carry the next number of their sender.
    out_of_order: u64,
}

struct Receiver {
    tally: Arc<Mutex<Tally>>,
    /// Counted locally, published when the thread stops.
    local: Tally,
    /// Stop the ring once this many have arrived.
    stop_at: u64,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        *self.tally.lock().unwrap() = std::mem::take(&mut self.local);
    }
}

fn on_number(state: &mut Receiver, ring: &mut Ring<Receiver>, c: Completion) -> io::Result<()> {
    let sender = c.key();
    let Outcome::Message(Payload::U64(n)) = c.outcome else {
        return Err(io::Error::other(format!("unexpected {:?}", c.outcome)));
    };
    let tally = &mut state.local;
    let expected = tally.next.entry(sender).or_insert(0);
    if n != *expected {
        tally.out_of_order += 1;
    }
    *expected = n + 1;
    tally.received += 1;
    if tally.received == state.stop_at {
        ring.stop();
    }
    Ok(())
}

fn spawn_receiver<S>(
    ring: &Ring<S>,
) -> io::Result<(ouro::RingThread<Receiver>, Arc<Mutex<Tally>>)> {
    let tally = Arc::new(Mutex::new(Tally::default()));
    let shared = tally.clone();
    let thread = ring.spawn_thread(256, move |_ring| {
        Ok(Receiver {
            tally: shared,
            local: Tally::default(),
            stop_at: u64::MAX,
        })
    })?;
    Ok((thread, tally))
}

// -- a sender ring that keeps a window of messages in flight ----------------

struct Sender {
    target: RingHandle<Receiver>,
    key: u64,
    next: u64,
    total: u64,
    acked: u64,
    refused: u64,
}

impl Sender {
    fn send_next(&mut self, ring: &mut Ring<Sender>) {
        if self.next == self.total {
            return;
        }
        let message = Ctx::new(on_number).key(self.key);
        ring.msg_ring(
            &self.target,
            message,
            Payload::U64(self.next),
            Ctx::new(Sender::on_ack),
        );
        self.next += 1;
    }

    fn on_ack(&mut self, ring: &mut Ring<Sender>, c: Completion) -> io::Result<()> {
        let Outcome::MsgRing(result, payload) = c.outcome else {
            return Err(io::Error::other("expected a msg_ring outcome"));
        };
        match result {
            Ok(()) => {
                assert!(payload.is_none(), "an accepted message keeps no payload");
                self.acked += 1;
                self.send_next(ring);
            }
            Err(err) => {
                assert_eq!(err.raw_os_error(), Some(libc::EPIPE));
                assert!(payload.as_u64().is_some(), "a refused payload comes back");
                self.refused += 1;
            }
        }
        Ok(())
    }
}

fn million_in_order(kind: BackendKind, msg_ring: bool) -> io::Result<()> {
    const TOTAL: u64 = 1_000_000;
    const WINDOW: u64 = 4096;
    let _watchdog = AbortAfter::new(Duration::from_secs(300));
    let mut ring: Ring<Sender> = builder(kind, msg_ring).build()?;
    let (thread, tally) = spawn_receiver(&ring)?;
    let mut sender = Sender {
        target: thread.handle().clone(),
        key: 7,
        next: 0,
        total: TOTAL,
        acked: 0,
        refused: 0,
    };
    for _ in 0..WINDOW {
        sender.send_next(&mut ring);
    }
    ring.run(&mut sender, RunMode::UntilDone)?;
    assert_eq!((sender.acked, sender.refused), (TOTAL, 0));
    thread.join()?;
    let tally = tally.lock().unwrap();
    assert_eq!(tally.received, TOTAL, "every message arrives exactly once");
    assert_eq!(tally.out_of_order, 0, "in the order sent");
    assert_eq!(tally.next.get(&7), Some(&TOTAL));
    Ok(())
}

/// io_uring rings wake each other with MSG_RING doorbells (Linux 6.3).
#[test]
fn a_million_messages_arrive_once_and_in_order_over_msg_ring() -> io::Result<()> {
    if backends::skipped(BackendKind::Uring) {
        return Ok(());
    }
    million_in_order(BackendKind::Uring, true)
}

/// The mailbox path: the target's eventfd (io_uring) or poller waker.
fn a_million_messages_arrive_once_and_in_order_over_the_mailbox(
    kind: BackendKind,
) -> io::Result<()> {
    million_in_order(kind, false)
}

fn a_ringless_thread_and_a_ring_send_concurrently_each_in_order(
    kind: BackendKind,
) -> io::Result<()> {
    const EACH: u64 = 200_000;
    let _watchdog = AbortAfter::new(Duration::from_secs(300));
    let mut ring: Ring<Sender> = ring(kind)?;
    let (thread, tally) = spawn_receiver(&ring)?;
    let handle = thread.handle().clone();
    let ringless = std::thread::spawn(move || {
        for n in 0..EACH {
            let message = Ctx::new(on_number).key(1);
            if handle.send(message, Payload::U64(n)).is_err() {
                return n;
            }
        }
        EACH
    });
    let mut sender = Sender {
        target: thread.handle().clone(),
        key: 2,
        next: 0,
        total: EACH,
        acked: 0,
        refused: 0,
    };
    for _ in 0..1024 {
        sender.send_next(&mut ring);
    }
    ring.run(&mut sender, RunMode::UntilDone)?;
    assert_eq!(ringless.join().unwrap(), EACH);
    assert_eq!(sender.acked, EACH);
    thread.join()?;
    let tally = tally.lock().unwrap();
    assert_eq!(tally.received, 2 * EACH);
    assert_eq!(tally.out_of_order, 0);
    assert_eq!((tally.next[&1], tally.next[&2]), (EACH, EACH));
    Ok(())
}

fn fire_and_forget_and_acknowledged_messages_keep_one_order(kind: BackendKind) -> io::Result<()> {
    const TOTAL: u64 = 10_000;
    let _watchdog = AbortAfter::new(Duration::from_secs(120));
    let mut ring: Ring<Sender> = ring(kind)?;
    let (thread, tally) = spawn_receiver(&ring)?;
    let mut sender = Sender {
        target: thread.handle().clone(),
        key: 3,
        next: 0,
        total: TOTAL,
        acked: 0,
        refused: 0,
    };
    for n in 0..TOTAL {
        // Every third message asks to hear back; the others take no task.
        let ctx = match n % 3 {
            0 => Ctx::new(Sender::on_ack),
            _ => Ctx::none(),
        };
        let message = Ctx::new(on_number).key(3);
        ring.msg_ring(&sender.target, message, Payload::U64(n), ctx);
    }
    sender.next = TOTAL;
    ring.run(&mut sender, RunMode::UntilDone)?;
    assert_eq!(sender.acked, TOTAL.div_ceil(3));
    thread.join()?;
    let tally = tally.lock().unwrap();
    assert_eq!((tally.received, tally.out_of_order), (TOTAL, 0));
    Ok(())
}

// -- stopping ----------------------------------------------------------------

/// A sender that never stops on its own: it sends until refused, and asks
/// the receiver to stop after `stop_after` acknowledgements.
struct Stopper {
    sender: Sender,
    thread: Option<ouro::RingThread<Receiver>>,
    stop_after: u64,
    stopped: Option<io::Result<()>>,
}

impl AsMut<Sender> for Stopper {
    fn as_mut(&mut self) -> &mut Sender {
        &mut self.sender
    }
}

fn stopper_ack(state: &mut Stopper, ring: &mut Ring<Stopper>, c: Completion) -> io::Result<()> {
    let Outcome::MsgRing(result, payload) = c.outcome else {
        return Err(io::Error::other("expected a msg_ring outcome"));
    };
    match result {
        Ok(()) => {
            state.sender.acked += 1;
            if state.sender.acked == state.stop_after {
                if let Some(thread) = &state.thread {
                    thread.stop(ring, Ctx::new(on_stopped));
                }
            }
            send_from(state, ring);
        }
        Err(err) => {
            assert_eq!(err.raw_os_error(), Some(libc::EPIPE));
            assert!(payload.as_u64().is_some(), "a refused payload comes back");
            state.sender.refused += 1;
        }
    }
    Ok(())
}

fn send_from(state: &mut Stopper, ring: &mut Ring<Stopper>) {
    let sender = &mut state.sender;
    let message = Ctx::new(on_number).key(sender.key);
    ring.msg_ring(
        &sender.target,
        message,
        Payload::U64(sender.next),
        Ctx::new(stopper_ack),
    );
    sender.next += 1;
}

fn on_stopped(state: &mut Stopper, _: &mut Ring<Stopper>, c: Completion) -> io::Result<()> {
    let Outcome::ThreadStopped(result) = c.outcome else {
        return Err(io::Error::other("expected a thread-stopped outcome"));
    };
    state.stopped = Some(result);
    Ok(())
}

fn stop_with_messages_in_flight(kind: BackendKind, msg_ring: bool) -> io::Result<()> {
    let _watchdog = AbortAfter::new(Duration::from_secs(300));
    let mut ring: Ring<Stopper> = builder(kind, msg_ring).build()?;
    let (thread, tally) = spawn_receiver(&ring)?;
    // A thread without a ring sends too, until refused.
    let handle = thread.handle().clone();
    let ringless = std::thread::spawn(move || {
        let mut accepted = 0u64;
        loop {
            let message = Ctx::new(on_number).key(99);
            match handle.send(message, Payload::U64(accepted)) {
                Ok(()) => accepted += 1,
                Err(refused) => {
                    assert_eq!(refused.into_payload().as_u64(), Some(accepted));
                    return accepted;
                }
            }
        }
    });
    let mut state = Stopper {
        sender: Sender {
            target: thread.handle().clone(),
            key: 5,
            next: 0,
            total: u64::MAX,
            acked: 0,
            refused: 0,
        },
        thread: Some(thread),
        stop_after: 20_000,
        stopped: None,
    };
    for _ in 0..2048 {
        send_from(&mut state, &mut ring);
    }
    ring.run(&mut state, RunMode::UntilDone)?;
    assert!(matches!(state.stopped, Some(Ok(()))), "{:?}", state.stopped);
    let thread = state.thread.take().unwrap();
    assert!(thread.is_stopped());
    thread.join()?;
    let accepted_ringless = ringless.join().unwrap();
    let sender = &state.sender;
    assert!(sender.refused > 0, "messages after the stop are refused");
    assert_eq!(sender.acked + sender.refused, sender.next);
    let tally = tally.lock().unwrap();
    assert_eq!(
        tally.received,
        sender.acked + accepted_ringless,
        "every acknowledged message was delivered, and no other"
    );
    assert_eq!(tally.out_of_order, 0);
    assert_eq!(tally.next.get(&5).copied().unwrap_or(0), sender.acked);
    assert_eq!(tally.next.get(&99).copied().unwrap_or(0), accepted_ringless);
    Ok(())
}

fn stopping_a_thread_loses_no_acknowledged_message(kind: BackendKind) -> io::Result<()> {
    stop_with_messages_in_flight(kind, true)
}

#[test]
fn stopping_a_thread_loses_no_acknowledged_message_over_the_mailbox() -> io::Result<()> {
    if backends::skipped(BackendKind::Uring) {
        return Ok(());
    }
    stop_with_messages_in_flight(BackendKind::Uring, false)
}

// -- refused messages and fds -------------------------------------------------

/// A socket pair: the first end is handed around, the second tells whether
/// it is still open (reading 0 bytes means every copy of the first is closed).
fn socket_pair() -> io::Result<(OwnedFd, UnixStream)> {
    let (a, b) = common::fds::socket_pair();
    let b = UnixStream::from(b);
    b.set_nonblocking(true)?;
    Ok((a, b))
}

fn peer_closed(peer: &mut UnixStream) -> bool {
    let mut byte = [0u8; 1];
    matches!(peer.read(&mut byte), Ok(0))
}

#[derive(Default)]
struct Refusals {
    returned: Vec<Payload>,
    errors: Vec<io::Error>,
}

fn on_refused(state: &mut Refusals, _: &mut Ring<Refusals>, c: Completion) -> io::Result<()> {
    let Outcome::MsgRing(result, payload) = c.outcome else {
        return Err(io::Error::other("expected a msg_ring outcome"));
    };
    state.errors.extend(result.err());
    state.returned.push(payload);
    Ok(())
}

struct Idle;

fn never_called(_: &mut Idle, _: &mut Ring<Idle>, _: Completion) -> io::Result<()> {
    Err(io::Error::other("a refused message must not be delivered"))
}

/// A handle to a thread's ring that has stopped (its mailbox closed).
fn stopped_thread<S>(ring: &Ring<S>) -> io::Result<RingHandle<Idle>> {
    let thread = ring.spawn_thread(16, |_| Ok(Idle))?;
    let target = thread.handle().clone();
    thread.join()?;
    Ok(target)
}

fn a_message_to_a_stopped_thread_fails_and_its_fd_is_closed(kind: BackendKind) -> io::Result<()> {
    let _watchdog = AbortAfter::new(Duration::from_secs(60));
    let mut ring: Ring<Refusals> = ring(kind)?;
    let target = stopped_thread(&ring)?;
    assert!(target.is_closed());

    // With a context: EPIPE, and the fd comes back.
    let (fd, mut kept_peer) = socket_pair()?;
    ring.msg_ring(
        &target,
        Ctx::new(never_called),
        Payload::Fd(fd),
        Ctx::new(on_refused),
    );
    // Without one: the runtime closes the fd.
    let (fd, mut closed_peer) = socket_pair()?;
    ring.msg_ring(
        &target,
        Ctx::new(never_called),
        Payload::Fd(fd),
        Ctx::none(),
    );
    let mut state = Refusals::default();
    ring.run(&mut state, RunMode::UntilDone)?;

    assert_eq!(state.errors.len(), 1);
    assert_eq!(state.errors[0].raw_os_error(), Some(libc::EPIPE));
    assert!(
        peer_closed(&mut closed_peer),
        "the fd of a dropped refusal is closed"
    );
    assert!(
        !peer_closed(&mut kept_peer),
        "the returned fd is still open"
    );
    let returned = state.returned.pop().and_then(Payload::into_fd);
    let mut returned = UnixStream::from(returned.expect("the fd comes back"));
    returned.write_all(b"x")?;
    drop(returned);
    let mut byte = [0u8; 1];
    kept_peer.set_nonblocking(false)?;
    kept_peer.read_exact(&mut byte)?;
    assert!(peer_closed(&mut kept_peer));

    // A thread without a ring gets the payload back the same way.
    let (fd, mut peer) = socket_pair()?;
    let refused = target.send(Ctx::new(never_called), Payload::Fd(fd));
    let payload = refused.expect_err("the target is stopped").into_payload();
    assert!(!peer_closed(&mut peer));
    drop(payload);
    assert!(peer_closed(&mut peer));
    Ok(())
}

fn a_dropped_ring_refuses_messages_and_closes_the_fds_it_had_accepted(
    kind: BackendKind,
) -> io::Result<()> {
    let mut target: Ring<Idle> = ring(kind)?;
    let handle = target.handle()?;
    let (fd, mut accepted_peer) = socket_pair()?;
    handle
        .send(Ctx::new(never_called), Payload::Fd(fd))
        .expect("the ring is open");
    drop(target);
    assert!(
        peer_closed(&mut accepted_peer),
        "an undelivered fd is closed when its ring is dropped"
    );
    let (fd, mut peer) = socket_pair()?;
    let refused = handle.send(Ctx::new(never_called), Payload::Fd(fd));
    let err = io::Error::from(refused.expect_err("the ring is gone"));
    assert_eq!(err.raw_os_error(), Some(libc::EPIPE));
    assert!(peer_closed(&mut peer), "dropping the error closes the fd");
    Ok(())
}

fn a_message_cancelled_before_it_goes_out_gives_its_payload_back(
    kind: BackendKind,
) -> io::Result<()> {
    let mut target: Ring<Idle> = ring(kind)?;
    let handle = target.handle()?;
    let mut ring: Ring<Refusals> = ring(kind)?;
    let task = ring.msg_ring(
        &handle,
        Ctx::new(never_called),
        Payload::U64(3),
        Ctx::new(on_refused),
    );
    ring.cancel(task, Ctx::none());
    let mut state = Refusals::default();
    ring.run(&mut state, RunMode::UntilDone)?;
    assert!(is_canceled(&state.errors[0]));
    assert_eq!(state.returned[0].as_u64(), Some(3));
    target.run(&mut Idle, RunMode::NoWait)?;
    Ok(())
}

// -- payloads, both directions --------------------------------------------------

/// The main ring's state: the answer it got back.
#[derive(Default)]
struct Asker {
    answer: Option<String>,
}

/// What the main ring sends: text to shout, and where to answer.
struct Question {
    text: String,
    reply_to: RingHandle<Asker>,
}

struct Shouter {
    shouted: usize,
}

fn on_question(state: &mut Shouter, ring: &mut Ring<Shouter>, c: Completion) -> io::Result<()> {
    let Outcome::Message(payload) = c.outcome else {
        return Err(io::Error::other("expected a message"));
    };
    let question: Question = payload
        .into_value()
        .map_err(|p| io::Error::other(format!("expected a question, got {p:?}")))?;
    state.shouted += 1;
    let answer = Payload::value(question.text.to_uppercase());
    ring.msg_ring(&question.reply_to, Ctx::new(on_answer), answer, Ctx::none());
    Ok(())
}

fn on_answer(state: &mut Asker, ring: &mut Ring<Asker>, c: Completion) -> io::Result<()> {
    let Outcome::Message(payload) = c.outcome else {
        return Err(io::Error::other("expected a message"));
    };
    state.answer = payload.into_value().ok();
    ring.stop();
    Ok(())
}

fn owned_values_travel_both_ways_between_rings(kind: BackendKind) -> io::Result<()> {
    let _watchdog = AbortAfter::new(Duration::from_secs(60));
    let mut ring: Ring<Asker> = ring(kind)?;
    let thread = ring.spawn_thread(16, |_| Ok(Shouter { shouted: 0 }))?;
    let question = Question {
        text: "hello".into(),
        reply_to: ring.handle()?,
    };
    let message = Ctx::new(on_question);
    ring.msg_ring(
        thread.handle(),
        message,
        Payload::value(question),
        Ctx::none(),
    );
    let mut state = Asker::default();
    ring.run(&mut state, RunMode::Forever)?;
    assert_eq!(state.answer.as_deref(), Some("HELLO"));
    thread.join()
}

fn a_ring_can_message_itself(kind: BackendKind) -> io::Result<()> {
    let mut ring: Ring<Asker> = ring(kind)?;
    let own = ring.handle()?;
    let text = Payload::value(String::from("me"));
    ring.msg_ring(&own, Ctx::new(on_answer), text, Ctx::none());
    let mut state = Asker::default();
    ring.run(&mut state, RunMode::UntilDone)?;
    assert_eq!(state.answer.as_deref(), Some("me"));
    Ok(())
}

// -- fd hand-over -------------------------------------------------------------

struct Greeter;

fn on_connection(_: &mut Greeter, ring: &mut Ring<Greeter>, c: Completion) -> io::Result<()> {
    let Outcome::Message(Payload::Fd(fd)) = c.outcome else {
        return Err(io::Error::other("expected an fd"));
    };
    // The send holds the only owner: the socket closes once it is done.
    ring.send(Rc::new(fd), &b"hello from the worker"[..], Ctx::none());
    Ok(())
}

fn an_fd_handed_to_a_worker_is_usable_there(kind: BackendKind) -> io::Result<()> {
    let _watchdog = AbortAfter::new(Duration::from_secs(60));
    let ring: Ring<()> = ring(kind)?;
    let thread = ring.spawn_thread(16, |_| Ok(Greeter))?;
    let (fd, mut peer) = socket_pair()?;
    peer.set_nonblocking(false)?;
    thread
        .handle()
        .send(Ctx::new(on_connection), Payload::Fd(fd))
        .expect("the worker is running");
    let mut got = String::new();
    peer.read_to_string(&mut got)?;
    assert_eq!(got, "hello from the worker");
    thread.join()
}

// -- ring fds moved between rings (send_fd) -----------------------------------------

/// What a worker saw of each ring fd it was sent: whether it had a process
/// fd (a file moved with IORING_MSG_SEND_FD has none).
#[derive(Default)]
struct Arrivals {
    with_process_fd: Arc<Mutex<Vec<bool>>>,
}

fn on_moved(state: &mut Arrivals, ring: &mut Ring<Arrivals>, c: Completion) -> io::Result<()> {
    let Outcome::Message(Payload::RingFd(fd)) = c.outcome else {
        return Err(io::Error::other(format!(
            "expected a ring fd, got {:?}",
            c.outcome
        )));
    };
    state
        .with_process_fd
        .lock()
        .unwrap()
        .push(ring.fd(fd).is_ok());
    ring.send(fd, &b"moved"[..], Ctx::none());
    ring.close(fd, Ctx::none());
    Ok(())
}

#[derive(Default)]
struct Mover {
    results: Vec<io::Result<()>>,
}

fn on_sent(state: &mut Mover, _: &mut Ring<Mover>, c: Completion) -> io::Result<()> {
    let Outcome::MsgRing(result, _) = c.outcome else {
        return Err(io::Error::other("expected a msg_ring outcome"));
    };
    state.results.push(result);
    Ok(())
}

fn move_ring_fds(kind: BackendKind, msg_ring: bool) -> io::Result<()> {
    let _watchdog = AbortAfter::new(Duration::from_secs(60));
    let mut ring: Ring<Mover> = builder(kind, msg_ring).build()?;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let shared = seen.clone();
    let thread = ring.spawn_thread(16, move |_| {
        Ok(Arrivals {
            with_process_fd: shared,
        })
    })?;
    let mut peers = Vec::new();
    let mut sent = Vec::new();
    for _ in 0..3 {
        let (fd, peer) = socket_pair()?;
        let fd = ring.register_fd(fd);
        ring.send_fd(thread.handle(), fd, Ctx::new(on_moved), Ctx::new(on_sent));
        peers.push(peer);
        sent.push(fd);
    }
    let mut state = Mover::default();
    ring.run(&mut state, RunMode::UntilDone)?;
    assert_eq!(state.results.len(), 3);
    for result in state.results.drain(..) {
        result?;
    }
    for fd in sent {
        let err = ring.fd(fd).expect_err("a moved ring fd is stale here");
        assert_eq!(err.raw_os_error(), Some(libc::EBADF));
    }
    assert_eq!(ring.ring_fds(), 0);
    for mut peer in peers {
        peer.set_nonblocking(false)?;
        let mut got = String::new();
        peer.read_to_string(&mut got)?;
        assert_eq!(got, "moved", "the worker wrote through it, then closed it");
    }
    thread.join()?;
    // Between io_uring rings the file moves from fixed table to fixed table
    // (IORING_MSG_SEND_FD, Linux 6.3): the worker's ring fd has no process
    // fd. Otherwise it travels as one and the worker registers it.
    let direct = kind == BackendKind::Uring && msg_ring;
    assert_eq!(*seen.lock().unwrap(), vec![!direct; 3]);
    Ok(())
}

fn a_ring_fd_moves_to_a_worker_thread(kind: BackendKind) -> io::Result<()> {
    move_ring_fds(kind, true)
}

fn a_ring_fd_moves_to_a_worker_thread_over_the_mailbox(kind: BackendKind) -> io::Result<()> {
    move_ring_fds(kind, false)
}

fn a_ring_fd_sent_to_a_stopped_thread_comes_back_or_is_closed(kind: BackendKind) -> io::Result<()> {
    let _watchdog = AbortAfter::new(Duration::from_secs(60));
    let mut ring: Ring<Refusals> = ring(kind)?;
    let target = stopped_thread(&ring)?;

    let (fd, mut kept_peer) = socket_pair()?;
    let kept = ring.register_fd(fd);
    ring.send_fd(&target, kept, Ctx::new(never_called), Ctx::new(on_refused));
    let (fd, mut closed_peer) = socket_pair()?;
    let dropped = ring.register_fd(fd);
    ring.send_fd(&target, dropped, Ctx::new(never_called), Ctx::none());
    let mut state = Refusals::default();
    ring.run(&mut state, RunMode::UntilDone)?;

    assert_eq!(state.errors.len(), 1);
    assert_eq!(state.errors[0].raw_os_error(), Some(libc::EPIPE));
    assert_eq!(
        state.returned[0].ring_fd(),
        Some(kept),
        "the same ring fd comes back"
    );
    assert!(peer_closed(&mut closed_peer), "nobody took it back: closed");
    assert!(!peer_closed(&mut kept_peer));
    ring.send(kept, &b"still mine"[..], Ctx::none());
    ring.close(kept, Ctx::none());
    ring.run(&mut state, RunMode::UntilDone)?;
    kept_peer.set_nonblocking(false)?;
    let mut got = String::new();
    kept_peer.read_to_string(&mut got)?;
    assert_eq!(got, "still mine");
    Ok(())
}

fn on_received(state: &mut Refusals, _: &mut Ring<Refusals>, c: Completion) -> io::Result<()> {
    let Outcome::Recv(result, _) = c.outcome else {
        return Err(io::Error::other("expected a receive"));
    };
    result?;
    state.returned.push(Payload::None);
    Ok(())
}

fn a_ring_fd_in_use_is_not_moved(kind: BackendKind) -> io::Result<()> {
    let _watchdog = AbortAfter::new(Duration::from_secs(60));
    let mut ring: Ring<Refusals> = ring(kind)?;
    let thread = ring.spawn_thread(16, |_| Ok(Idle))?;
    let (fd, mut peer) = socket_pair()?;
    let fd = ring.register_fd(fd);
    ring.recv(fd, Vec::with_capacity(16), Ctx::new(on_received));
    ring.send_fd(
        thread.handle(),
        fd,
        Ctx::new(never_called),
        Ctx::new(on_refused),
    );
    peer.write_all(b"x")?;
    let mut state = Refusals::default();
    ring.run(&mut state, RunMode::UntilDone)?;
    assert_eq!(state.errors.len(), 1);
    assert_eq!(state.errors[0].raw_os_error(), Some(libc::EBUSY));
    assert_eq!(state.returned.len(), 2, "the refusal and the receive");
    assert!(state.returned.iter().any(|p| p.ring_fd() == Some(fd)));
    assert!(ring.fd(fd).is_ok(), "still this ring's");
    thread.join()
}

fn on_own(state: &mut Refusals, ring: &mut Ring<Refusals>, c: Completion) -> io::Result<()> {
    let Outcome::Message(Payload::RingFd(fd)) = c.outcome else {
        return Err(io::Error::other("expected a ring fd"));
    };
    ring.fd(fd)?;
    state.returned.push(Payload::RingFd(fd));
    Ok(())
}

fn a_ring_fd_sent_to_its_own_ring_stays(kind: BackendKind) -> io::Result<()> {
    let mut ring: Ring<Refusals> = ring(kind)?;
    let own = ring.handle()?;
    let (fd, _peer) = socket_pair()?;
    let fd = ring.register_fd(fd);
    ring.send_fd(&own, fd, Ctx::new(on_own), Ctx::new(on_refused));
    let mut state = Refusals::default();
    ring.run(&mut state, RunMode::UntilDone)?;
    assert!(state.errors.is_empty());
    let arrived: Vec<_> = state.returned.iter().filter_map(Payload::ring_fd).collect();
    assert_eq!(arrived, vec![fd], "the same ring fd, still open");
    Ok(())
}

/// A worker that, as each ring fd arrives, also registers an fd of its own,
/// writes through both, and closes each once its write is done (a close
/// cancels what still waits to start).
struct Registrar {
    locals: Vec<Option<OwnedFd>>,
    /// By key: `2 i` the ring fd moved here, `2 i + 1` the local one.
    open: HashMap<u64, ouro::RingFd>,
}

fn on_moved_register(
    state: &mut Registrar,
    ring: &mut Ring<Registrar>,
    c: Completion,
) -> io::Result<()> {
    let i = c.key() as usize;
    let Outcome::Message(Payload::RingFd(moved)) = c.outcome else {
        return Err(io::Error::other("expected a ring fd"));
    };
    let local = state.locals[i]
        .take()
        .ok_or_else(|| io::Error::other("twice"))?;
    let local = ring.register_fd(local);
    for (key, fd, text) in [(2 * i, moved, "moved"), (2 * i + 1, local, "local")] {
        state.open.insert(key as u64, fd);
        let data = format!("{text} {i}").into_bytes();
        ring.send(fd, data, Ctx::new(on_written).key(key as u64));
    }
    Ok(())
}

fn on_written(state: &mut Registrar, ring: &mut Ring<Registrar>, c: Completion) -> io::Result<()> {
    let key = c.key();
    let Outcome::Send(result, _) = c.outcome else {
        return Err(io::Error::other("expected a send"));
    };
    result?;
    let fd = state
        .open
        .remove(&key)
        .ok_or_else(|| io::Error::other("no such fd"))?;
    ring.close(fd, Ctx::none());
    Ok(())
}

/// Files that other rings move into a ring's fixed table land in slots the
/// kernel picks, at any moment; the ring's own registrations must never
/// pick one of those (each would replace the other's file).
fn files_moved_in_and_fds_registered_meanwhile_never_share_a_slot(
    kind: BackendKind,
) -> io::Result<()> {
    const N: usize = 200;
    let _watchdog = AbortAfter::new(Duration::from_secs(60));
    let mut ring: Ring<Mover> = ring(kind)?;
    let mut locals = Vec::new();
    let mut local_peers = Vec::new();
    for _ in 0..N {
        let (fd, peer) = socket_pair()?;
        locals.push(Some(fd));
        local_peers.push(peer);
    }
    let thread = ring.spawn_thread(64, move |_| {
        Ok(Registrar {
            locals,
            open: HashMap::new(),
        })
    })?;
    let mut moved_peers = Vec::new();
    for i in 0..N {
        let (fd, peer) = socket_pair()?;
        let fd = ring.register_fd(fd);
        let message = Ctx::new(on_moved_register).key(i as u64);
        ring.send_fd(thread.handle(), fd, message, Ctx::new(on_sent));
        moved_peers.push(peer);
    }
    let mut state = Mover::default();
    ring.run(&mut state, RunMode::UntilDone)?;
    assert_eq!(state.results.len(), N);
    for result in state.results.drain(..) {
        result?;
    }
    for (i, (mut moved, mut local)) in moved_peers.into_iter().zip(local_peers).enumerate() {
        for (peer, expected) in [
            (&mut moved, format!("moved {i}")),
            (&mut local, format!("local {i}")),
        ] {
            peer.set_nonblocking(false)?;
            let mut got = String::new();
            peer.read_to_string(&mut got)?;
            assert_eq!(got, expected);
        }
    }
    thread.join()
}

// -- errors end a thread --------------------------------------------------------

struct Picky {
    seen: Arc<Mutex<Vec<u64>>>,
}

fn on_picky(state: &mut Picky, _: &mut Ring<Picky>, c: Completion) -> io::Result<()> {
    let Outcome::Message(Payload::U64(n)) = c.outcome else {
        return Err(io::Error::other("expected a number"));
    };
    state.seen.lock().unwrap().push(n);
    if n == 1 {
        return Err(io::Error::from_raw_os_error(libc::EBADMSG));
    }
    Ok(())
}

fn a_callback_error_stops_the_thread_after_delivering_what_was_accepted(
    kind: BackendKind,
) -> io::Result<()> {
    let _watchdog = AbortAfter::new(Duration::from_secs(60));
    let ring: Ring<()> = ring(kind)?;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let shared = seen.clone();
    let thread = ring.spawn_thread(16, move |_| Ok(Picky { seen: shared }))?;
    // The second message's callback fails, which stops the thread; every
    // message accepted until then is still delivered, later ones refused.
    let mut accepted = 0;
    for n in 0..1000u64 {
        if thread
            .handle()
            .send(Ctx::new(on_picky), Payload::U64(n))
            .is_ok()
        {
            assert_eq!(accepted, n, "once refused, always refused");
            accepted += 1;
        }
    }
    let err = thread
        .join()
        .expect_err("the callback's error ends the thread");
    assert_eq!(err.raw_os_error(), Some(libc::EBADMSG));
    assert!(accepted >= 2);
    assert_eq!(*seen.lock().unwrap(), (0..accepted).collect::<Vec<_>>());
    Ok(())
}

fn a_failing_init_is_reported_by_spawn_thread(kind: BackendKind) -> io::Result<()> {
    let ring: Ring<()> = ring(kind)?;
    let spawned =
        ring.spawn_thread::<Idle, _>(16, |_| Err(io::Error::from_raw_os_error(libc::EACCES)));
    let err = spawned.expect_err("init failed");
    assert_eq!(err.raw_os_error(), Some(libc::EACCES));
    Ok(())
}

/// A worker that tells, for the connection it accepts straight into its
/// ring, whether that has a process fd (one in a fixed table has none).
struct Acceptor {
    told: mpsc::Sender<bool>,
    _listener: Rc<OwnedFd>,
}

fn on_direct(state: &mut Acceptor, ring: &mut Ring<Acceptor>, c: Completion) -> io::Result<()> {
    match c.outcome {
        Outcome::AcceptDirect(Ok(conn)) => {
            let _ = state.told.send(ring.fd(conn).is_ok());
            Ok(())
        }
        // Stopping the thread cancels the accept.
        Outcome::AcceptDirect(Err(err)) if is_canceled(&err) => Ok(()),
        outcome => Err(io::Error::other(format!(
            "expected a connection: {outcome:?}"
        ))),
    }
}

/// A thread is built with the fixed table size of the ring that spawned
/// it: with none (`fixed_files(0)`) its direct accepts get process fds;
/// with the default, on io_uring, they go into its table and have none.
fn a_spawned_thread_has_its_parents_fixed_table_size(kind: BackendKind) -> io::Result<()> {
    let _watchdog = AbortAfter::new(Duration::from_secs(60));
    for (slots, in_table) in [(Some(0), false), (None, kind == BackendKind::Uring)] {
        let parent: Ring<()> = match slots {
            Some(slots) => builder(kind, true).fixed_files(slots).build()?,
            None => builder(kind, true).build()?,
        };
        let listener = ouro::net::tcp_listener(([127, 0, 0, 1], 0).into(), 8)?;
        let addr = ouro::net::local_addr(&listener)?;
        let (told, heard) = mpsc::channel();
        let worker = parent.spawn_thread(16, move |ring| {
            let listener = Rc::new(listener);
            ring.accept_multishot_direct(&listener, Ctx::new(on_direct));
            Ok(Acceptor {
                told,
                _listener: listener,
            })
        })?;
        let _client = TcpStream::connect(addr)?;
        let has_fd = heard
            .recv_timeout(Duration::from_secs(20))
            .map_err(io::Error::other)?;
        assert_eq!(has_fd, !in_table, "fixed_files {slots:?} on {kind:?}");
        worker.join()?;
    }
    Ok(())
}

// -- the mock backend -------------------------------------------------------------

#[test]
#[cfg_attr(
    miri,
    ignore = "20,000 messages take minutes under Miri (spawn_thread_works_on_the_mock_backend runs there)"
)]
fn a_mock_ring_receives_messages_from_other_threads() -> io::Result<()> {
    const TOTAL: u64 = 10_000;
    let _watchdog = AbortAfter::new(Duration::from_secs(60));
    let mut ring: Ring<Receiver> = Ring::builder().backend(BackendKind::Mock).build()?;
    let handle = ring.handle()?;
    let senders: Vec<_> = (0..2u64)
        .map(|key| {
            let handle = handle.clone();
            std::thread::spawn(move || {
                for n in 0..TOTAL {
                    assert!(handle
                        .send(Ctx::new(on_number).key(key), Payload::U64(n))
                        .is_ok());
                }
            })
        })
        .collect();
    let mut state = Receiver {
        tally: Arc::default(),
        local: Tally::default(),
        stop_at: 2 * TOTAL,
    };
    // The mock's wait blocks (in real time) until a message wakes it.
    ring.run(&mut state, RunMode::Forever)?;
    for sender in senders {
        sender.join().unwrap();
    }
    assert_eq!(state.local.out_of_order, 0);
    assert_eq!(state.local.received, 2 * TOTAL);
    Ok(())
}

#[test]
fn spawn_thread_works_on_the_mock_backend() -> io::Result<()> {
    let _watchdog = AbortAfter::new(Duration::from_secs(60));
    let ring: Ring<()> = Ring::mock(ouro::mock::Mock::new());
    let (thread, tally) = spawn_receiver(&ring)?;
    for n in 0..100 {
        assert!(thread
            .handle()
            .send(Ctx::new(on_number), Payload::U64(n))
            .is_ok());
    }
    thread.join()?;
    assert_eq!(tally.lock().unwrap().received, 100);
    Ok(())
}

// -- a ring polled by another ring on the same thread ---------------------------

/// The polled ring's state: what it has seen.
#[derive(Default)]
struct Priority {
    timer_fired: bool,
    read: Vec<u8>,
    messages: Vec<u64>,
}

impl Priority {
    fn done(&self) -> bool {
        self.timer_fired && self.read == b"ping" && self.messages.len() == 2
    }
}

fn on_priority(state: &mut Priority, _: &mut Ring<Priority>, c: Completion) -> io::Result<()> {
    match c.outcome {
        Outcome::Timer(result) => {
            result?;
            state.timer_fired = true;
        }
        Outcome::Read(n, buf) => {
            n?;
            state.read.extend_from_slice(&buf);
        }
        Outcome::Message(payload) => state.messages.extend(payload.as_u64()),
        other => return Err(io::Error::other(format!("unexpected {other:?}"))),
    }
    Ok(())
}

/// The polling ring's state: the polled ring and its state, and how many
/// times it was found ready.
struct Main {
    priority_ring: Ring<Priority>,
    priority: Priority,
    wakeups: usize,
}

fn on_priority_ready(state: &mut Main, ring: &mut Ring<Main>, c: Completion) -> io::Result<()> {
    let Outcome::Poll(mask) = c.outcome else {
        return Err(io::Error::other("expected a poll"));
    };
    assert!(mask?.contains(PollMask::READABLE));
    state.wakeups += 1;
    state
        .priority_ring
        .run(&mut state.priority, RunMode::NoWait)?;
    if state.priority.done() {
        ring.stop();
    } else {
        let fd = state.priority_ring.pollable_fd()?;
        ring.poll(&fd, PollMask::READABLE, Ctx::new(on_priority_ready));
    }
    Ok(())
}

struct Poker;

fn a_ring_polled_by_another_on_the_same_thread_runs_when_ready(
    kind: BackendKind,
) -> io::Result<()> {
    let _watchdog = AbortAfter::new(Duration::from_secs(60));
    let mut main: Ring<Main> = Ring::builder().backend(kind).build()?;
    let mut priority_ring: Ring<Priority> = Ring::builder()
        .backend(kind)
        .entries(16)
        .pollable(true)
        .build()?;
    assert!(
        main.pollable_fd().is_err(),
        "only a pollable ring has the fd"
    );

    // Work of every kind for the polled ring: a user-space timer, a read
    // that completes later, and messages from a ring and from a thread.
    priority_ring.timer(Duration::from_millis(50), Ctx::new(on_priority));
    let (reader, mut writer) = UnixStream::pair()?;
    let reader = Rc::new(reader);
    priority_ring.read(
        &reader,
        Vec::with_capacity(16),
        ouro::Offset::Current,
        Ctx::new(on_priority),
    );
    let handle = priority_ring.handle()?;
    let thread_handle = handle.clone();
    let ringless = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        assert!(thread_handle
            .send(Ctx::new(on_priority), Payload::U64(1))
            .is_ok());
        std::thread::sleep(Duration::from_millis(20));
        writer.write_all(b"ping")
    });
    let worker = main.spawn_thread(16, move |ring: &mut Ring<Poker>| {
        ring.msg_ring(&handle, Ctx::new(on_priority), Payload::U64(2), Ctx::none());
        Ok(Poker)
    })?;
    let mut priority = Priority::default();
    // Nothing reaches the kernel until the ring runs.
    priority_ring.run(&mut priority, RunMode::NoWait)?;

    let fd = priority_ring.pollable_fd()?;
    main.poll(&fd, PollMask::READABLE, Ctx::new(on_priority_ready));
    let mut state = Main {
        priority_ring,
        priority,
        wakeups: 0,
    };
    main.run(&mut state, RunMode::Forever)?;
    ringless.join().unwrap()?;
    worker.join()?;
    assert!(state.priority.done());
    let mut messages = state.priority.messages.clone();
    messages.sort();
    assert_eq!(messages, vec![1, 2]);
    assert!(state.wakeups >= 1);
    Ok(())
}

fn until_done_sends_fire_and_forget_messages_and_then_returns(kind: BackendKind) -> io::Result<()> {
    let _watchdog = AbortAfter::new(Duration::from_secs(60));
    let mut target: Ring<Asker> = ring(kind)?;
    let handle = target.handle()?;
    // The target is woken already, so the message below rings no doorbell
    // (whose answer would wake the sender).
    let first = Payload::value(String::from("first"));
    assert!(handle.send(Ctx::new(on_answer), first).is_ok());
    // Fire and forget: no task, but UntilDone still sends it, then
    // returns with nothing to wait for.
    let mut ring: Ring<Refusals> = ring(kind)?;
    let second = Payload::value(String::from("second"));
    let task = ring.msg_ring(&handle, Ctx::new(on_answer), second, Ctx::none());
    let mut state = Refusals::default();
    ring.run(&mut state, RunMode::UntilDone)?;
    assert_eq!(ring.live_tasks(), 0);
    // It had no task to cancel.
    ring.cancel(task, Ctx::new(on_cancelled));
    ring.run(&mut state, RunMode::UntilDone)?;
    assert_eq!(state.errors[0].raw_os_error(), Some(libc::ENOENT));

    let mut answers = Asker::default();
    target.run(&mut answers, RunMode::UntilDone)?;
    assert_eq!(answers.answer.as_deref(), Some("second"));
    Ok(())
}

fn on_cancelled(state: &mut Refusals, _: &mut Ring<Refusals>, c: Completion) -> io::Result<()> {
    let Outcome::Cancel(result) = c.outcome else {
        return Err(io::Error::other("expected a cancel outcome"));
    };
    state.errors.extend(result.err());
    Ok(())
}

// -- stop tasks can be cancelled or given a deadline --------------------------

/// A worker's state that takes 600 ms to drop (the thread's last step
/// before it reports its end), then records that it ended.
struct SlowToEnd(Arc<std::sync::atomic::AtomicBool>);

impl Drop for SlowToEnd {
    fn drop(&mut self) {
        std::thread::sleep(Duration::from_millis(600));
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// What the stopping ring saw.
struct StopWait {
    /// Set by the worker once it has ended.
    ended: Arc<std::sync::atomic::AtomicBool>,
    /// The stop task's result, and whether the worker had ended by then.
    stopped: Vec<(io::Result<()>, bool)>,
    /// The cancel task's result.
    cancel: Vec<io::Result<()>>,
    /// Completions of later tasks (a noop reusing the stop task's slot).
    later: Vec<io::Result<()>>,
}

fn on_stop_wait(state: &mut StopWait, _: &mut Ring<StopWait>, c: Completion) -> io::Result<()> {
    let Outcome::ThreadStopped(result) = c.outcome else {
        return Err(io::Error::other("expected a thread-stopped outcome"));
    };
    let ended = state.ended.load(std::sync::atomic::Ordering::SeqCst);
    state.stopped.push((result, ended));
    Ok(())
}

fn on_stop_cancel(state: &mut StopWait, _: &mut Ring<StopWait>, c: Completion) -> io::Result<()> {
    let Outcome::Cancel(result) = c.outcome else {
        return Err(io::Error::other("expected a cancel outcome"));
    };
    state.cancel.push(result);
    Ok(())
}

fn on_later(state: &mut StopWait, _: &mut Ring<StopWait>, c: Completion) -> io::Result<()> {
    state.later.push(c.result());
    Ok(())
}

/// Stops a worker that takes 600 ms to end; `end_wait` ends the stop
/// task's wait (a deadline, or a cancel) once the request went out. The
/// stop task's callback runs while the worker is still alive; the worker
/// still ends; its later "ended" reaches nobody, not even a task that
/// reuses the stop task's slot.
fn stop_and_end_the_wait(
    kind: BackendKind,
    end_wait: fn(&mut Ring<StopWait>, ouro::Task),
) -> io::Result<StopWait> {
    let _watchdog = AbortAfter::new(Duration::from_secs(60));
    let mut ring: Ring<StopWait> = ring(kind)?;
    let ended = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = ended.clone();
    let thread = ring.spawn_thread(16, move |_| Ok(SlowToEnd(flag)))?;
    let mut state = StopWait {
        ended,
        stopped: Vec::new(),
        cancel: Vec::new(),
        later: Vec::new(),
    };
    let task = thread.stop(&mut ring, Ctx::new(on_stop_wait));
    // Sends the request: from now on the task waits for the thread.
    ring.run(&mut state, RunMode::NoWait)?;
    end_wait(&mut ring, task);
    ring.run(&mut state, RunMode::UntilDone)?;
    assert_eq!(state.stopped.len(), 1, "the stop task ended once");
    assert!(
        !state.stopped[0].1,
        "the stop task ended while the thread was still stopping"
    );
    thread.join()?;
    assert!(state.ended.load(std::sync::atomic::Ordering::SeqCst));
    // The thread's end was not sent to the ring, or is ignored: new tasks
    // in the freed slots get only their own completions.
    let slot = |task: ouro::Task| format!("{task:?}").split('#').next().map(str::to_owned);
    let noops = [ring.noop(Ctx::new(on_later)), ring.noop(Ctx::new(on_later))];
    assert!(noops.iter().any(|&noop| slot(noop) == slot(task)));
    ring.run(&mut state, RunMode::UntilDone)?;
    assert_eq!(state.stopped.len(), 1);
    assert_eq!(state.later.len(), 2);
    assert!(state.later.iter().all(Result::is_ok));
    Ok(state)
}

fn a_stop_tasks_deadline_ends_its_wait_while_the_thread_stops(kind: BackendKind) -> io::Result<()> {
    let state = stop_and_end_the_wait(kind, |ring, task| {
        let at = ring.now() + Duration::from_millis(50);
        ring.set_deadline(task, at).expect("the stop task is live");
    })?;
    let err = state.stopped[0]
        .0
        .as_ref()
        .expect_err("the deadline passed");
    assert!(ouro::is_deadline(err), "{err}");
    Ok(())
}

fn a_stop_task_can_be_cancelled_while_the_thread_stops(kind: BackendKind) -> io::Result<()> {
    let state = stop_and_end_the_wait(kind, |ring, task| {
        ring.cancel(task, Ctx::new(on_stop_cancel));
    })?;
    let err = state.stopped[0].0.as_ref().expect_err("cancelled");
    assert!(is_canceled(err), "{err}");
    assert_eq!(state.cancel.len(), 1);
    assert!(state.cancel[0].is_ok(), "{:?}", state.cancel[0]);
    Ok(())
}

// -- a joined worker leaves no fd behind ----------------------------------

fn on_acked(
    acked: &mut Vec<io::Result<()>>,
    _: &mut Ring<Vec<io::Result<()>>>,
    c: Completion,
) -> io::Result<()> {
    acked.push(c.result());
    Ok(())
}

fn on_idle_number(_: &mut Idle, _: &mut Ring<Idle>, _: Completion) -> io::Result<()> {
    Ok(())
}

/// The parent messaged a worker (so it holds an outbox for it: on io_uring
/// with a duplicate of the worker's ring fd) and joined it: every fd of the
/// worker (its ring, its eventfd) is closed by then, with no further
/// message or turn of the parent.
fn a_joined_workers_fds_are_released_without_another_message(kind: BackendKind) -> io::Result<()> {
    let _watchdog = AbortAfter::new(Duration::from_secs(60));
    let mut ring: Ring<Vec<io::Result<()>>> = ring(kind)?;
    // The parent's own mailbox and waker, made before counting.
    ring.handle()?;
    let before = open_fds();
    let thread = ring.spawn_thread(16, |_| Ok(Idle))?;
    ring.msg_ring(
        thread.handle(),
        Ctx::new(on_idle_number),
        Payload::U64(7),
        Ctx::new(on_acked),
    );
    let mut acked = Vec::new();
    ring.run(&mut acked, RunMode::UntilDone)?;
    assert_eq!(acked.len(), 1);
    assert!(acked[0].is_ok(), "{:?}", acked[0]);
    thread.join()?;
    assert_eq!(open_fds(), before, "the worker's fds are all closed");
    drop(ring);
    Ok(())
}
