//! Deadlines: a task not finished by its deadline fails with `ETIME`
//! (`is_deadline`, never `is_canceled`); one finished before it is not
//! touched, and neither is the next task in its slot.

use std::io::Write;
use std::rc::Rc;
use std::time::{Duration, Instant};

use ouro::{is_canceled, is_deadline, BackendKind, Outcome, Ring, RunMode};

use crate::harness::{ctx, ring, run_all, slot_of, socket_pair, Got};

backend_tests![
    deadline_already_past,
    deadline_on_a_recv_that_never_gets_data,
    deadline_after_completion_has_no_effect,
    deadline_on_a_timer,
    a_later_deadline_replaces_an_earlier_one,
    deadline_on_a_task_waiting_for_room,
    deadline_on_a_finished_task_is_not_found,
];

fn assert_deadline(outcome: &Outcome) {
    let err = expect!(outcome, Outcome::Recv(Err(err), _) | Outcome::Timer(Err(err)) => err);
    assert!(is_deadline(err), "{err}");
    assert!(
        !is_canceled(err),
        "a deadline is not an explicit cancel: {err}"
    );
}

/// Runs the ring a turn at a time until the task with `key` is delivered.
fn run_until_key(ring: &mut Ring<Got>, key: u64) -> Got {
    let mut got = Vec::new();
    while !got.iter().any(|c: &ouro::Completion| c.key() == key) {
        ring.run(&mut got, RunMode::Once).unwrap();
    }
    got
}

fn deadline_already_past(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let (a, _b) = socket_pair();
    let a = Rc::new(a);
    let past = ring
        .now()
        .checked_sub(Duration::from_millis(5))
        .unwrap_or(ring.now());
    let recv = ring.recv(&a, Vec::with_capacity(8), ctx(0));
    ring.set_deadline(recv, past).unwrap();
    let got = run_all(&mut ring);
    assert_eq!(got.len(), 1);
    assert_deadline(&got[0].outcome);
}

fn deadline_on_a_recv_that_never_gets_data(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let (a, _b) = socket_pair();
    let a = Rc::new(a);
    let start = Instant::now();
    let recv = ring.recv(&a, Vec::with_capacity(8), ctx(0));
    let deadline = ring.now() + Duration::from_millis(20);
    recv.set_deadline(&mut ring, deadline).unwrap();
    let got = run_all(&mut ring);
    assert_eq!(got.len(), 1);
    assert_deadline(&got[0].outcome);
    assert!(
        start.elapsed() >= Duration::from_millis(20),
        "cancelled before its deadline"
    );
}

/// The deadline of a task that finished is gone with it: the next task in
/// the same slot, without a deadline, is left alone past that time.
fn deadline_after_completion_has_no_effect(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let (a, b) = socket_pair();
    let a = Rc::new(a);
    let mut peer = std::fs::File::from(b);
    peer.write_all(b"early").unwrap();
    let first = ring.recv(&a, Vec::with_capacity(8), ctx(0));
    ring.set_deadline(first, ring.now() + Duration::from_millis(10))
        .unwrap();
    let got = run_all(&mut ring);
    assert_eq!(
        &expect!(&got[0].outcome, Outcome::Recv(Ok(5), buf) => buf)[..],
        b"early"
    );

    let second = ring.recv(&a, Vec::with_capacity(8), ctx(1));
    assert_eq!(slot_of(second), slot_of(first));
    ring.timer(Duration::from_millis(40), ctx(2));
    let got = run_until_key(&mut ring, 2);
    assert_eq!(got.len(), 1, "only the timer: {got:?}");
    assert_eq!(ring.live_tasks(), 1, "the second recv still waits");
    peer.write_all(b"late").unwrap();
    let got = run_all(&mut ring);
    assert_eq!(
        &expect!(&got[0].outcome, Outcome::Recv(Ok(4), buf) => buf)[..],
        b"late"
    );
}

fn deadline_on_a_timer(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let timer = ring.timer(Duration::from_secs(3600), ctx(0));
    ring.set_deadline(timer, ring.now() + Duration::from_millis(5))
        .unwrap();
    let got = run_all(&mut ring);
    assert_deadline(&got[0].outcome);

    let timer = ring.timer(Duration::from_millis(5), ctx(0));
    ring.set_deadline(timer, ring.now() + Duration::from_secs(3600))
        .unwrap();
    let got = run_all(&mut ring);
    expect!(&got[0].outcome, Outcome::Timer(Ok(())) => ());
}

fn a_later_deadline_replaces_an_earlier_one(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let (a, _b) = socket_pair();
    let a = Rc::new(a);
    let recv = ring.recv(&a, Vec::with_capacity(8), ctx(0));
    ring.set_deadline(recv, ring.now() + Duration::from_millis(5))
        .unwrap();
    ring.set_deadline(recv, ring.now() + Duration::from_secs(3600))
        .unwrap();
    ring.timer(Duration::from_millis(30), ctx(1));
    let got = run_until_key(&mut ring, 1);
    assert_eq!(
        got.len(),
        1,
        "the recv outlives its first deadline: {got:?}"
    );
    ring.cancel(recv, ctx(2));
    let got = run_all(&mut ring);
    let err = expect!(&got[0].outcome, Outcome::Recv(Err(err), _) => err);
    assert!(is_canceled(err) && !is_deadline(err), "{err}");
}

/// A ring of one entry: the second recv waits in user space for room and
/// its deadline ends it there.
fn deadline_on_a_task_waiting_for_room(kind: BackendKind) {
    let mut ring = ring(kind, 1);
    let (a, _b) = socket_pair();
    let (c, _d) = socket_pair();
    let (a, c) = (Rc::new(a), Rc::new(c));
    let first = ring.recv(&a, Vec::with_capacity(8), ctx(0));
    let second = ring.recv(&c, Vec::with_capacity(8), ctx(1));
    ring.set_deadline(second, ring.now()).unwrap();
    ring.set_deadline(first, ring.now() + Duration::from_millis(10))
        .unwrap();
    let got = run_all(&mut ring);
    assert_eq!(got.len(), 2);
    for c in &got {
        assert_deadline(&c.outcome);
    }
}

fn deadline_on_a_finished_task_is_not_found(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let noop = ring.noop(ctx(0));
    run_all(&mut ring);
    let err = ring.set_deadline(noop, ring.now()).expect_err("finished");
    assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
}
