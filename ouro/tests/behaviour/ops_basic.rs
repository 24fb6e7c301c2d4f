//! noop, timers, messages and keys, run modes.

use std::time::{Duration, Instant};

use ouro::{BackendKind, Ctx, OpKind, Outcome, Ring, RunMode};

use crate::harness::{complete, ctx, ring, run_all, run_within, Got};

backend_tests![
    noop_completes,
    completion_carries_message_key_and_kind,
    timer_fires_after_its_duration,
    zero_timer_fires_on_the_next_turn,
    timers_fire_in_time_order,
    the_longest_timer_bounds_a_wait_without_error,
    run_on_an_idle_ring_returns_at_once,
    run_once_delivers_what_is_ready_and_returns,
    stop_ends_a_forever_run,
];

fn noop_completes(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    expect!(complete(&mut ring, |r, c| r.noop(c)), Outcome::Noop(Ok(())) => ());
}

ouro::messages! { enum Msg { First, Second } }

fn completion_carries_message_key_and_kind(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    ring.noop(ctx(7).msg(Msg::Second));
    ring.timer(Duration::ZERO, ctx(9).msg(Msg::First));
    let got = run_all(&mut ring);
    assert_eq!(got.len(), 2);
    let noop = got.iter().find(|c| c.op() == OpKind::Noop).unwrap();
    assert_eq!(
        (noop.key(), noop.message::<Msg>().unwrap()),
        (7, Msg::Second)
    );
    let timer = got.iter().find(|c| c.op() == OpKind::Timer).unwrap();
    assert_eq!(
        (timer.key(), timer.message::<Msg>().unwrap()),
        (9, Msg::First)
    );
    assert!(noop.is_final() && timer.is_final());
}

fn timer_fires_after_its_duration(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let start = Instant::now();
    expect!(
        complete(&mut ring, |r, c| r.timer(Duration::from_millis(20), c)),
        Outcome::Timer(Ok(())) => ()
    );
    assert!(start.elapsed() >= Duration::from_millis(20), "fired early");
}

fn zero_timer_fires_on_the_next_turn(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    expect!(
        complete(&mut ring, |r, c| r.timer(Duration::ZERO, c)),
        Outcome::Timer(Ok(())) => ()
    );
}

fn timers_fire_in_time_order(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    for (key, ms) in [(3, 30), (1, 10), (0, 0), (2, 20), (4, 30)] {
        ring.timer(Duration::from_millis(ms), ctx(key));
    }
    let keys: Vec<u64> = run_all(&mut ring).iter().map(|c| c.key()).collect();
    assert_eq!(keys, [0, 1, 2, 3, 4]);
}

/// A timer of `Duration::MAX` is the nearest one, so it bounds the kernel
/// wait: that must simply wait (here until a recv gets data from another
/// thread), not fail. Then it can be cancelled.
fn the_longest_timer_bounds_a_wait_without_error(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let (a, b) = crate::harness::socket_pair();
    let a = std::rc::Rc::new(a);
    let timer = ring.timer(Duration::MAX, ctx(0));
    ring.recv(&a, Vec::with_capacity(8), ctx(1));
    let writer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        std::io::Write::write_all(&mut std::fs::File::from(b), b"wake").unwrap();
    });
    let mut got = Vec::new();
    ring.run(&mut got, RunMode::Once).unwrap();
    writer.join().unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(
        &expect!(&got[0].outcome, Outcome::Recv(Ok(4), buf) => buf)[..],
        b"wake"
    );
    ring.cancel(timer, ctx(2));
    let got = run_all(&mut ring);
    expect!(&got[0].outcome, Outcome::Timer(Err(e)) if ouro::is_canceled(e) => ());
}

/// `UntilDone` and `Once` on a ring without tasks return at once; the
/// watchdog turns a hang into a failure.
fn run_on_an_idle_ring_returns_at_once(kind: BackendKind) {
    run_within(Duration::from_secs(20), move || {
        let mut ring: Ring<Got> = ring(kind, 8);
        let mut got = Vec::new();
        ring.run(&mut got, RunMode::UntilDone).unwrap();
        ring.run(&mut got, RunMode::Once).unwrap();
        // Idle again after work.
        ring.noop(ctx(0));
        ring.run(&mut got, RunMode::UntilDone).unwrap();
        ring.run(&mut got, RunMode::UntilDone).unwrap();
        ring.run(&mut got, RunMode::Once).unwrap();
        assert_eq!(got.len(), 1);
    });
}

fn run_once_delivers_what_is_ready_and_returns(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    ring.noop(ctx(0));
    ring.noop(ctx(1));
    ring.timer(Duration::from_secs(3600), ctx(2));
    let mut got = Vec::new();
    ring.run(&mut got, RunMode::Once).unwrap();
    let mut keys: Vec<u64> = got.iter().map(|c| c.key()).collect();
    keys.sort();
    assert_eq!(
        keys,
        [0, 1],
        "Once waits for at least one and takes all ready"
    );
    assert_eq!(ring.live_tasks(), 1);
}

fn stop_ends_a_forever_run(kind: BackendKind) {
    fn stop_at_three(
        count: &mut u32,
        ring: &mut Ring<u32>,
        _: ouro::Completion,
    ) -> std::io::Result<()> {
        *count += 1;
        if *count == 3 {
            ring.stop();
        } else {
            ring.timer(Duration::from_millis(1), Ctx::new(stop_at_three));
        }
        Ok(())
    }
    let mut ring = ring(kind, 8);
    ring.noop(Ctx::new(stop_at_three));
    let mut count = 0;
    ring.run(&mut count, RunMode::Forever).unwrap();
    assert_eq!(count, 3);
    assert_eq!(ring.live_tasks(), 0);
    // Stopped before it runs, an idle ring's forever run returns at once.
    ring.stop();
    ring.run(&mut count, RunMode::Forever).unwrap();
}
