//! Threads and rings: a callback error ends a thread, spawn_thread's
//! init and table size, the mock backend, a ring polled by another on the
//! same thread, and a joined worker's fds released.

use super::*;
use ouro::RingThread;

per_backend!(
    crate::call_exclusive,
    a_joined_workers_fds_are_released_without_another_message
);

backend_tests!(
    a_callback_error_stops_the_thread_after_delivering_what_was_accepted,
    a_failing_init_is_reported_by_spawn_thread,
    a_spawned_thread_has_its_parents_fixed_table_size,
    until_done_sends_fire_and_forget_messages_and_then_returns,
    a_ring_polled_by_another_on_the_same_thread_runs_when_ready,
    a_thread_whose_state_holds_its_own_ring_thread_stops_cleanly,
);

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

// -- a thread that holds itself ---------------------------------------------------

/// A thread's state that holds the thread's own `RingThread`, and says
/// when dropping it is over (not reached if the drop panicked).
struct HoldsItself {
    itself: Option<RingThread<HoldsItself>>,
    dropped: mpsc::Sender<()>,
}

impl Drop for HoldsItself {
    fn drop(&mut self) {
        drop(self.itself.take());
        let _ = self.dropped.send(());
    }
}

fn keep_itself(
    state: &mut HoldsItself,
    _: &mut Ring<HoldsItself>,
    c: Completion,
) -> io::Result<()> {
    let Outcome::Message(payload) = c.outcome else {
        return Err(io::Error::other("expected a message"));
    };
    let itself = payload
        .into_value::<RingThread<HoldsItself>>()
        .map_err(|_| io::Error::other("not a thread"))?;
    state.itself = Some(itself);
    Ok(())
}

/// Dropping the state on the thread drops its own `RingThread`, which
/// cannot join itself: it only asks the thread to stop, never panics.
fn a_thread_whose_state_holds_its_own_ring_thread_stops_cleanly(
    kind: BackendKind,
) -> io::Result<()> {
    let _watchdog = AbortAfter::new(Duration::from_secs(60));
    let ring: Ring<()> = ring(kind)?;
    let (dropped, was_dropped) = mpsc::channel();
    let thread = ring.spawn_thread(16, move |_| {
        Ok(HoldsItself {
            itself: None,
            dropped,
        })
    })?;
    let handle = thread.handle().clone();
    let refused = |_| io::Error::from(io::ErrorKind::BrokenPipe);
    handle
        .send(Ctx::new(keep_itself), Payload::value(thread))
        .map_err(refused)?;
    handle.stop().map_err(refused)?;
    was_dropped
        .recv_timeout(Duration::from_secs(30))
        .expect("the state, and the RingThread in it, dropped without a panic");
    Ok(())
}
