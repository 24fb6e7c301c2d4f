//! What messages carry: payloads refused with their fds closed or given
//! back, owned values both ways, a ring messaging itself, fds handed over.

use super::*;

backend_tests!(
    a_message_to_a_stopped_thread_fails_and_its_fd_is_closed,
    a_dropped_ring_refuses_messages_and_closes_the_fds_it_had_accepted,
    a_message_cancelled_before_it_goes_out_gives_its_payload_back,
    a_refused_value_whose_drop_panics_strands_no_other_message,
    owned_values_travel_both_ways_between_rings,
    a_ring_can_message_itself,
    an_fd_handed_to_a_worker_is_usable_there,
);

// -- refused messages and fds -------------------------------------------------

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

/// A value whose drop panics, as user code may.
struct PanicsOnDrop;

impl Drop for PanicsOnDrop {
    fn drop(&mut self) {
        panic!("a refused value's drop panics");
    }
}

/// A fire-and-forget message refused by a dropped ring drops its value in
/// the sender's turn; that drop panicking must not lose the messages
/// published with it: the other refused one still reports `EPIPE`, and
/// the one to an open ring is delivered.
fn a_refused_value_whose_drop_panics_strands_no_other_message(kind: BackendKind) -> io::Result<()> {
    let _watchdog = AbortAfter::new(Duration::from_secs(60));
    let gone = ring::<Idle>(kind)?.handle()?;
    let mut open: Ring<Delivered> = ring(kind)?;
    let open_handle = open.handle()?;
    let mut ring: Ring<Refusals> = ring(kind)?;
    let value = Payload::value(PanicsOnDrop);
    ring.msg_ring(&gone, Ctx::new(never_called), value, Ctx::none());
    let refused = Payload::U64(1);
    ring.msg_ring(&gone, Ctx::new(never_called), refused, Ctx::new(on_refused));
    let delivered = Payload::U64(2);
    ring.msg_ring(
        &open_handle,
        Ctx::new(on_delivered),
        delivered,
        Ctx::new(on_refused),
    );
    let mut state = Refusals::default();
    let turn = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        ring.run(&mut state, RunMode::UntilDone)
    }));
    assert!(turn.is_err(), "the drop's panic comes out of run");
    ring.run(&mut state, RunMode::UntilDone)?;
    assert_eq!(ring.live_tasks(), 0);
    assert_eq!(state.errors.len(), 1, "{:?}", state.errors);
    assert_eq!(state.errors[0].raw_os_error(), Some(libc::EPIPE));
    let returned: Vec<_> = state.returned.iter().map(Payload::as_u64).collect();
    assert_eq!(returned.len(), 2, "each message task completes once");
    assert!(returned.contains(&Some(1)), "{returned:?}");
    let mut got = Delivered::default();
    open.run(&mut got, RunMode::NoWait)?;
    assert_eq!(got.0, [2]);
    Ok(())
}

#[derive(Default)]
struct Delivered(Vec<u64>);

fn on_delivered(got: &mut Delivered, _: &mut Ring<Delivered>, c: Completion) -> io::Result<()> {
    let Outcome::Message(payload) = c.outcome else {
        return Err(io::Error::other("expected a message"));
    };
    got.0.extend(payload.as_u64());
    Ok(())
}

// -- payloads, both directions --------------------------------------------------

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
