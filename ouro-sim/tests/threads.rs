//! Threads and messages in a simulated world: a spawned thread's ring is a
//! node the world steps, its handle takes messages, the stop handshake and
//! `join` work as on a real thread, a stopped thread refuses messages with
//! `EPIPE` and hands the payload back, and message delays come from the
//! seed, and a world dropped unfinished takes its running threads with it.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use ouro::sim::{Config, World};
use ouro::{Completion, Ctx, Outcome, Payload, Ring, RingHandle, RunMode};

ouro::messages! {
    enum Msg { Number, Reply, Sent, Stopped, Refused, Timer, Panic }
}

/// The main ring's state: what it heard.
#[derive(Default)]
struct Main {
    replies: Vec<u64>,
    accepted: usize,
    stopped: Option<io::Result<()>>,
    refused: Option<(io::Result<()>, Option<u64>)>,
}

fn main_heard(main: &mut Main, _: &mut Ring<Main>, c: Completion) -> io::Result<()> {
    match (c.message::<Msg>()?, c.outcome) {
        (Msg::Reply, Outcome::Message(payload)) => main.replies.extend(payload.as_u64()),
        (Msg::Sent, Outcome::MsgRing(Ok(()), _)) => main.accepted += 1,
        (Msg::Stopped, Outcome::ThreadStopped(result)) => main.stopped = Some(result),
        (Msg::Refused, Outcome::MsgRing(result, back)) => {
            main.refused = Some((result, back.as_u64()));
        }
        (msg, outcome) => panic!("main: {msg:?} with {outcome:?}"),
    }
    Ok(())
}

/// A worker's state: where to answer.
struct Worker {
    main: RingHandle<Main>,
}

fn worker_heard(worker: &mut Worker, ring: &mut Ring<Worker>, c: Completion) -> io::Result<()> {
    match (c.message::<Msg>()?, c.outcome) {
        (Msg::Number, Outcome::Message(payload)) => {
            let doubled = payload.as_u64().unwrap_or(0) * 2;
            let reply = Ctx::new(main_heard).msg(Msg::Reply);
            ring.msg_ring(&worker.main, reply, Payload::U64(doubled), Ctx::none());
        }
        (Msg::Timer, Outcome::Timer(result)) => {
            assert_eq!(result.unwrap_err().raw_os_error(), Some(libc::ECANCELED));
        }
        (Msg::Panic, _) => panic!("the worker's callback gives up"),
        (msg, outcome) => panic!("worker: {msg:?} with {outcome:?}"),
    }
    Ok(())
}

fn spawn(ring: &mut Ring<Main>) -> io::Result<ouro::RingThread<Worker>> {
    let main = ring.handle()?;
    ring.spawn_thread(64, move |_| Ok(Worker { main }))
}

#[test]
fn a_spawned_thread_is_a_node_that_answers_stops_and_then_refuses() {
    let world = World::with_config(3, Config::calm());
    let mut ring: Ring<Main> = Ring::simulated(&world);
    let thread = spawn(&mut ring).unwrap();
    assert_eq!(world.threads_running(), 1);
    for n in 1..=3 {
        let number = Ctx::new(worker_heard).msg(Msg::Number);
        let sent = Ctx::new(main_heard).msg(Msg::Sent);
        ring.msg_ring(thread.handle(), number, Payload::U64(n), sent);
    }
    // Travels like a message, after the numbers.
    thread.stop(&mut ring, Ctx::new(main_heard).msg(Msg::Stopped));
    let mut node = (ring, Main::default());
    world.run(&mut [&mut node], Duration::from_secs(1)).unwrap();
    let (ring, main) = &mut node;
    assert_eq!(main.accepted, 3);
    assert_eq!(
        main.replies,
        [2, 4, 6],
        "every number answered once, in order"
    );
    assert!(matches!(main.stopped, Some(Ok(()))));
    assert!(thread.is_stopped());
    assert_eq!(world.threads_running(), 0);

    // The stale handle refuses, and the payload comes back.
    let number = Ctx::new(worker_heard).msg(Msg::Number);
    let refused = Ctx::new(main_heard).msg(Msg::Refused);
    ring.msg_ring(thread.handle(), number, Payload::U64(9), refused);
    world.run(&mut [&mut node], Duration::from_secs(1)).unwrap();
    let (result, back) = node.1.refused.take().expect("the refusal");
    assert_eq!(result.unwrap_err().raw_os_error(), Some(libc::EPIPE));
    assert_eq!(back, Some(9));
    thread.join().unwrap();
    drop(node);
    assert_eq!(world.finish(), Vec::<String>::new());
}

/// As on a real thread, a panic in a worker's callback ends that thread
/// (its ring and state dropped) and `join` returns it as an error; it
/// does not come out of the world's run or of `join`, and the other rings
/// go on. Whether the world steps the worker into the panic or `join`
/// runs it there.
#[test]
fn a_panic_in_a_threads_callback_ends_it_and_join_says_so() {
    for panic_while_the_world_runs in [true, false] {
        let world = World::with_config(4, Config::calm());
        let mut ring: Ring<Main> = Ring::simulated(&world);
        let thread = spawn(&mut ring).unwrap();
        let panic = Ctx::new(worker_heard).msg(Msg::Panic);
        let sent = Ctx::new(main_heard).msg(Msg::Sent);
        ring.msg_ring(thread.handle(), panic, Payload::None, sent);
        let mut node = (ring, Main::default());
        if panic_while_the_world_runs {
            world.run(&mut [&mut node], Duration::from_secs(1)).unwrap();
            assert_eq!(world.threads_running(), 0, "the panic ended it");
        } else {
            // The message goes out; the worker has not run yet.
            node.0.run(&mut node.1, RunMode::NoWait).unwrap();
            assert_eq!(world.threads_running(), 1);
        }
        let err = thread.join().expect_err("the thread panicked");
        assert!(
            err.to_string()
                .contains("thread panicked: the worker's callback gives up"),
            "{err}"
        );
        node.0.timer(Duration::from_millis(1), Ctx::none());
        world.run(&mut [&mut node], Duration::from_secs(1)).unwrap();
        assert_eq!(node.1.accepted, 1);
        drop(node);
        assert_eq!(world.finish(), Vec::<String>::new());
    }
}

/// As on a real thread, a panic in `init` is the error `spawn_thread`
/// returns, and leaves nothing running.
#[test]
fn a_panic_in_a_threads_init_is_the_error_spawn_thread_returns() {
    let world = World::with_config(6, Config::calm());
    let ring: Ring<Main> = Ring::simulated(&world);
    let spawned = ring.spawn_thread::<Worker, _>(64, |_| panic!("init gives up"));
    let err = spawned.expect_err("init panicked");
    assert!(
        err.to_string()
            .contains("thread panicked while starting: init gives up"),
        "{err}"
    );
    assert_eq!(world.threads_running(), 0);
    drop(ring);
    assert_eq!(world.finish(), Vec::<String>::new());
}

#[test]
fn join_stops_a_running_thread_and_cancels_its_tasks() {
    let world = World::with_config(5, Config::calm());
    let mut ring: Ring<Main> = Ring::simulated(&world);
    let main = ring.handle().unwrap();
    let thread = ring
        .spawn_thread(64, move |ring| {
            ring.timer(
                Duration::from_secs(60),
                Ctx::new(worker_heard).msg(Msg::Timer),
            );
            Ok(Worker { main })
        })
        .unwrap();
    assert!(!thread.is_stopped());
    thread.join().unwrap();
    assert_eq!(world.threads_running(), 0);
    assert!(
        world.now() < Duration::from_secs(60),
        "the timer was cancelled, not waited for"
    );
    drop(ring);
    assert_eq!(world.finish(), Vec::<String>::new());
}

/// When the reply to a message sent at time 0 came back, and how many
/// delays were drawn.
fn first_arrival(config: Config) -> (Duration, u64) {
    let world = World::with_config(11, config);
    let mut ring: Ring<Main> = Ring::simulated(&world);
    let thread = spawn(&mut ring).unwrap();
    let number = Ctx::new(worker_heard).msg(Msg::Number);
    ring.msg_ring(thread.handle(), number, Payload::U64(1), Ctx::none());
    let mut node = (ring, Main::default());
    world.run(&mut [&mut node], Duration::from_secs(1)).unwrap();
    assert_eq!(node.1.replies, [2]);
    let delays = world.faults().0.get("message_delay").copied().unwrap_or(0);
    let arrived = world.now();
    thread.join().unwrap();
    drop(node);
    assert_eq!(world.finish(), Vec::<String>::new());
    (arrived, delays)
}

#[test]
fn messages_wait_their_seeded_delay_only_when_it_is_on() {
    let (calm, none) = first_arrival(Config::calm());
    assert_eq!(none, 0);
    let delayed = Config {
        message_delay_ns: 2_000_000,
        ..Config::calm()
    };
    let (late, delays) = first_arrival(delayed.clone());
    assert!(delays >= 2, "both the message and the reply wait");
    assert!(late > calm, "{late:?} is not after {calm:?}");
    assert!(late <= calm + Duration::from_millis(4));
    assert_eq!(first_arrival(delayed), (late, delays), "the delays replay");
}

#[test]
fn join_from_another_os_thread_asks_the_stop_and_the_world_finishes_it() {
    let world = World::with_config(7, Config::calm());
    let mut ring: Ring<Main> = Ring::simulated(&world);
    let thread = spawn(&mut ring).unwrap();
    let joined = std::thread::spawn(move || thread.join()).join().unwrap();
    assert_eq!(
        joined.unwrap_err().kind(),
        io::ErrorKind::WouldBlock,
        "the world is not on that OS thread"
    );
    assert_eq!(world.threads_running(), 1);
    let mut node = (ring, Main::default());
    world.run(&mut [&mut node], Duration::from_secs(1)).unwrap();
    assert_eq!(
        world.threads_running(),
        0,
        "the stop it asked for was heard"
    );
    drop(node);
    assert_eq!(world.finish(), Vec::<String>::new());
}

#[test]
fn a_thread_still_running_at_the_end_is_a_violation_and_its_join_says_why() {
    let world = World::with_config(9, Config::calm());
    let mut ring: Ring<Main> = Ring::simulated(&world);
    let thread = spawn(&mut ring).unwrap();
    drop(ring);
    let violations = world.finish();
    assert_eq!(
        violations,
        ["1 spawned ring thread(s) still running at the end"]
    );
    assert!(thread.is_stopped());
    let err = thread.join().unwrap_err();
    assert!(err.to_string().contains("still running"), "{err}");
}

fn timer_fired(_: &mut Worker, _: &mut Ring<Worker>, c: Completion) -> io::Result<()> {
    // Cancelled only when the drain is cut at its deadline.
    match c.outcome {
        Outcome::Timer(Ok(())) => {}
        Outcome::Timer(Err(err)) => assert_eq!(err.raw_os_error(), Some(libc::ECANCELED)),
        other => panic!("{other:?}"),
    }
    Ok(())
}

/// Drains a thread whose one task is a 1 s timer, with a deadline `after`
/// the start: what `join` returns, and when the thread had stopped.
fn drain_with_deadline(after: Duration) -> (io::Result<()>, Duration) {
    let world = World::with_config(13, Config::calm());
    let mut ring: Ring<Main> = Ring::simulated(&world);
    let main = ring.handle().unwrap();
    let thread = ring
        .spawn_thread(64, move |ring| {
            ring.timer(Duration::from_secs(1), Ctx::new(timer_fired));
            Ok(Worker { main })
        })
        .unwrap();
    thread.handle().drain(ring.now() + after).unwrap();
    let mut node = (ring, Main::default());
    world
        .run(&mut [&mut node], Duration::from_secs(60))
        .unwrap();
    assert_eq!(world.threads_running(), 0);
    let stopped_at = world.now();
    let joined = thread.join();
    drop(node);
    assert_eq!(world.finish(), Vec::<String>::new());
    (joined, stopped_at)
}

#[test]
fn a_drained_thread_finishes_its_tasks_or_is_cut_at_the_deadline() {
    let (joined, at) = drain_with_deadline(Duration::from_secs(10));
    joined.unwrap();
    // It stops once the timer has fired, not at the deadline.
    assert_eq!(at, Duration::from_secs(1));
    // Cut at the deadline: the timer is cancelled, and the drain says so.
    let (joined, at) = drain_with_deadline(Duration::from_millis(100));
    assert_eq!(joined.unwrap_err().raw_os_error(), Some(libc::ETIME));
    assert!(at < Duration::from_secs(1), "stopped at {at:?}");
}

#[test]
fn a_world_dropped_unfinished_drops_its_running_threads_and_their_state() {
    let world = World::with_config(13, Config::calm());
    let ring: Ring<Main> = Ring::simulated(&world);
    let state = Arc::new(());
    let held = state.clone();
    let thread = ring.spawn_thread(64, move |_| Ok(held)).unwrap();
    // The ring's own handle on the world keeps it, and the thread, alive.
    let clone = world.clone();
    drop(world);
    drop(clone);
    assert!(!thread.is_stopped());
    assert_eq!(Arc::strong_count(&state), 2);
    drop(ring);
    assert_eq!(
        Arc::strong_count(&state),
        1,
        "the thread's state lives on with its world"
    );
    assert!(thread.is_stopped());
    let err = thread.join().unwrap_err();
    assert!(err.to_string().contains("still running"), "{err}");
}
