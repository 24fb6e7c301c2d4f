//! Ring fds moved between rings (`send_fd`): to a worker, in order with
//! the sender's other messages, back from a stopped one, refused while in
//! use, kept when sent to their own ring, stale to the sender from the
//! send on, and never sharing a slot with fds registered meanwhile.

use super::*;

backend_tests!(
    a_ring_fd_moves_to_a_worker_thread,
    a_ring_fd_moves_to_a_worker_thread_over_the_mailbox,
    moved_ring_fds_keep_their_order_with_other_messages,
    moved_ring_fds_sent_one_per_turn_keep_their_order,
    a_ring_fd_that_cannot_land_holds_up_no_message,
    a_ring_fd_sent_to_a_stopped_thread_comes_back_or_is_closed,
    a_ring_fd_sent_to_a_ring_dropped_before_it_moved_comes_back_with_epipe,
    a_ring_fd_in_use_is_not_moved,
    a_ring_fd_sent_to_its_own_ring_stays,
    a_ring_fd_is_stale_to_its_sender_from_the_send_on,
    a_sender_dropped_before_its_send_started_holds_up_no_message,
    files_moved_in_and_fds_registered_meanwhile_never_share_a_slot,
);

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

/// What a worker received, by key, in order: `true` for a ring fd.
#[derive(Default)]
struct Sequence {
    seen: Arc<Mutex<Vec<(u64, bool)>>>,
}

fn on_in_sequence(
    state: &mut Sequence,
    ring: &mut Ring<Sequence>,
    c: Completion,
) -> io::Result<()> {
    let key = c.key();
    let moved = match c.outcome {
        Outcome::Message(Payload::RingFd(fd)) => {
            ring.close(fd, Ctx::none());
            true
        }
        Outcome::Message(_) => false,
        other => return Err(io::Error::other(format!("unexpected {other:?}"))),
    };
    state.seen.lock().unwrap().push((key, moved));
    Ok(())
}

/// Sends `total` messages to a worker thread, every third a ring fd moved
/// with `send_fd` and the rest plain `msg_ring`s, running the ring for one
/// turn after every `per_turn`; every one must arrive once, in order.
fn send_mixed_in_order(kind: BackendKind, total: u64, per_turn: u64) -> io::Result<()> {
    let _watchdog = AbortAfter::new(Duration::from_secs(60));
    let mut ring: Ring<Mover> = ring(kind)?;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let shared = seen.clone();
    let thread = ring.spawn_thread(64, move |_| Ok(Sequence { seen: shared }))?;
    let mut state = Mover::default();
    let mut peers = Vec::new();
    let mut expected = Vec::new();
    for key in 0..total {
        let message = Ctx::new(on_in_sequence).key(key);
        let moved = key % 3 == 1;
        if moved {
            let (fd, peer) = socket_pair()?;
            let fd = ring.register_fd(fd);
            ring.send_fd(thread.handle(), fd, message, Ctx::new(on_sent));
            peers.push(peer);
        } else {
            ring.msg_ring(
                thread.handle(),
                message,
                Payload::U64(key),
                Ctx::new(on_sent),
            );
        }
        expected.push((key, moved));
        if (key + 1) % per_turn == 0 {
            ring.run(&mut state, RunMode::NoWait)?;
        }
    }
    ring.run(&mut state, RunMode::UntilDone)?;
    assert_eq!(state.results.len() as u64, total);
    for result in state.results.drain(..) {
        result?;
    }
    thread.join()?;
    assert_eq!(
        *seen.lock().unwrap(),
        expected,
        "once each, in the order sent"
    );
    for mut peer in peers {
        assert!(peer_closed(&mut peer), "the worker closed each moved fd");
    }
    Ok(())
}

fn moved_ring_fds_keep_their_order_with_other_messages(kind: BackendKind) -> io::Result<()> {
    send_mixed_in_order(kind, 60, 60)
}

fn moved_ring_fds_sent_one_per_turn_keep_their_order(kind: BackendKind) -> io::Result<()> {
    send_mixed_in_order(kind, 60, 1)
}

/// A target whose fixed table is full (one slot, taken): on io_uring the
/// moved file cannot land, the sender keeps its ring fd, and the messages
/// sent before and after it arrive, in order, without waiting for it.
fn a_ring_fd_that_cannot_land_holds_up_no_message(kind: BackendKind) -> io::Result<()> {
    let _watchdog = AbortAfter::new(Duration::from_secs(60));
    let mut sender: Ring<Mover> = ring(kind)?;
    let mut target: Ring<Sequence> = builder(kind, true).fixed_files(1).build()?;
    let (taken, _peer) = socket_pair()?;
    let _in_the_only_slot = target.register_fd(taken);
    let handle = target.handle()?;
    let (fd, _moved_peer) = socket_pair()?;
    let fd = sender.register_fd(fd);
    for key in 0..3 {
        let message = Ctx::new(on_in_sequence).key(key);
        match key {
            1 => sender.send_fd(&handle, fd, message, Ctx::new(on_sent)),
            _ => sender.msg_ring(&handle, message, Payload::U64(key), Ctx::new(on_sent)),
        };
    }
    let (mut state, mut arrivals) = (Mover::default(), Sequence::default());
    while state.results.len() < 3 || arrivals.seen.lock().unwrap().len() < 2 {
        sender.run(&mut state, RunMode::NoWait)?;
        target.run(&mut arrivals, RunMode::NoWait)?;
    }
    let moved = state.results.iter().filter(|r| r.is_ok()).count() == 3;
    // The readiness backend has no fixed table: the file travels as a
    // process fd and lands.
    assert_eq!(moved, kind != BackendKind::Uring, "{:?}", state.results);
    target.run(&mut arrivals, RunMode::NoWait)?;
    let seen = arrivals.seen.lock().unwrap().clone();
    let expected = match moved {
        true => vec![(0, false), (1, true), (2, false)],
        false => vec![(0, false), (2, false)],
    };
    assert_eq!(seen, expected);
    assert_eq!(
        sender.ring_fds(),
        usize::from(!moved),
        "kept when not moved"
    );
    Ok(())
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

/// The target is dropped after the `send_fd` and before the sender's next
/// turn: the file comes back with `EPIPE`, as from any closed target.
/// (On io_uring the kernel's `ENFILE` for the target's unregistered table
/// came back: "Too many open files in system".)
fn a_ring_fd_sent_to_a_ring_dropped_before_it_moved_comes_back_with_epipe(
    kind: BackendKind,
) -> io::Result<()> {
    let _watchdog = AbortAfter::new(Duration::from_secs(60));
    let mut doomed: Ring<Idle> = ring(kind)?;
    let mut ring: Ring<Refusals> = ring(kind)?;
    let target = doomed.handle()?;
    let (fd, mut peer) = socket_pair()?;
    let kept = ring.register_fd(fd);
    ring.send_fd(&target, kept, Ctx::new(never_called), Ctx::new(on_refused));
    drop(doomed);
    let mut state = Refusals::default();
    ring.run(&mut state, RunMode::UntilDone)?;
    assert_eq!(state.errors.len(), 1);
    assert_eq!(
        state.errors[0].raw_os_error(),
        Some(libc::EPIPE),
        "{:?}",
        state.errors[0]
    );
    // Back as the ring fd, or (moved as a process fd) in the payload.
    assert_eq!(state.returned.len(), 1);
    assert!(!peer_closed(&mut peer), "the file came back open");
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

/// What each side of a move saw: the sender's results by `msg`, and the
/// target's ring fd and the bytes it received.
#[derive(Default)]
struct Sides {
    results: Vec<(u16, io::Result<()>)>,
    arrived: Option<ouro::RingFd>,
    received: Vec<u8>,
}

fn on_side(state: &mut Sides, _: &mut Ring<Sides>, c: Completion) -> io::Result<()> {
    match c.outcome {
        Outcome::Message(Payload::RingFd(fd)) => state.arrived = Some(fd),
        Outcome::Recv(Ok(n), ref buf) if c.msg() == RECEIVED => {
            state.received.extend_from_slice(&buf[..n]);
        }
        _ => state.results.push((c.msg(), c.result())),
    }
    Ok(())
}

const SENT: u16 = 1;
const READ_AFTER: u16 = 2;
const CLOSED_AFTER: u16 = 3;
const RECEIVED: u16 = 4;

/// Once `send_fd` is called, the sender's handle is stale: an operation it
/// starts then fails with `EBADF`, on every path. (Between io_uring rings
/// the handle stayed open until the file landed: a receive started in
/// between read the socket that was the target's by then, and took its
/// bytes.)
fn a_ring_fd_is_stale_to_its_sender_from_the_send_on(kind: BackendKind) -> io::Result<()> {
    let _watchdog = AbortAfter::new(Duration::from_secs(60));
    let mut sender: Ring<Sides> = ring(kind)?;
    let mut target: Ring<Sides> = ring(kind)?;
    let handle = target.handle()?;
    let (fd, mut peer) = socket_pair()?;
    let fd = sender.register_fd(fd);
    sender.send_fd(&handle, fd, Ctx::new(on_side), Ctx::new(on_side).msg(SENT));
    sender.recv(
        fd,
        Vec::with_capacity(32),
        Ctx::new(on_side).msg(READ_AFTER),
    );
    sender.close(fd, Ctx::new(on_side).msg(CLOSED_AFTER));
    let stale = sender.take_fd(fd).map(drop).map_err(|e| e.raw_os_error());
    assert_eq!(stale, Err(Some(libc::EBADF)), "take_fd after the send");
    let mut sent = Sides::default();
    sender.run(&mut sent, RunMode::UntilDone)?;
    let code = |msg| {
        let (_, result) = sent.results.iter().find(|(m, _)| *m == msg).unwrap();
        result.as_ref().map(|_| ()).map_err(io::Error::raw_os_error)
    };
    assert_eq!(code(SENT), Ok(()));
    assert_eq!(code(READ_AFTER), Err(Some(libc::EBADF)));
    assert_eq!(code(CLOSED_AFTER), Err(Some(libc::EBADF)));

    let mut got = Sides::default();
    while got.arrived.is_none() {
        target.run(&mut got, RunMode::Once)?;
    }
    let arrived = got.arrived.unwrap();
    target.recv(
        arrived,
        Vec::with_capacity(32),
        Ctx::new(on_side).msg(RECEIVED),
    );
    peer.write_all(b"for the target")?;
    target.run(&mut got, RunMode::UntilDone)?;
    assert_eq!(got.received, b"for the target");
    Ok(())
}

/// A sender whose last `send_fd` waits for room in the submission queue.
struct Crowded {
    target: RingHandle<Sides>,
    last: Option<ouro::RingFd>,
}

/// The first send's callback fills the submission queue, then sends the
/// last fd: its task waits for room, while the next send's completion
/// publishes its message to the target.
fn crowd_then_send(state: &mut Crowded, ring: &mut Ring<Crowded>, _: Completion) -> io::Result<()> {
    let Some(last) = state.last.take() else {
        return Ok(());
    };
    for _ in 0..40 {
        ring.noop(Ctx::none());
    }
    let target = state.target.clone();
    let message = Ctx::new(on_side).msg(2u16);
    ring.send_fd(&target, last, message, Ctx::new(crowd_then_send));
    Ok(())
}

/// A sender dropped while a send's message was with the target but the
/// send itself had not started: the target skips that message and
/// delivers the others. (Between io_uring rings the target waited for
/// that file for good, and every message behind it with it.)
fn a_sender_dropped_before_its_send_started_holds_up_no_message(
    kind: BackendKind,
) -> io::Result<()> {
    let _watchdog = AbortAfter::new(Duration::from_secs(60));
    let mut target: Ring<Sides> = builder(kind, true).entries(16).build()?;
    let handle = target.handle()?;
    let mut sender: Ring<Crowded> = builder(kind, true).entries(16).build()?;
    let mut peers = Vec::new();
    let mut fds = Vec::new();
    for _ in 0..3 {
        let (fd, peer) = socket_pair()?;
        fds.push(sender.register_fd(fd));
        peers.push(peer);
    }
    for (msg, &fd) in fds[..2].iter().enumerate() {
        let message = Ctx::new(on_side).msg(msg as u16);
        sender.send_fd(&handle, fd, message, Ctx::new(crowd_then_send));
    }
    let mut state = Crowded {
        target: handle.clone(),
        last: Some(fds[2]),
    };
    while state.last.is_some() {
        sender.run(&mut state, RunMode::Once)?;
    }
    drop(sender);
    handle
        .send(Ctx::new(on_side).msg(3u16), Payload::U64(3))
        .map_err(|_| io::Error::other("the target refused a message"))?;
    let mut got = Sides::default();
    while !got.results.iter().any(|(msg, _)| *msg == 3) {
        target.run(&mut got, RunMode::Once)?;
    }
    Ok(())
}
