//! Cancellation: of a live task, of a finished one, of one that finishes
//! anyway, through a stale handle, of everything; the target's callback
//! always runs before the canceller's.

use std::io::Write;
use std::rc::Rc;
use std::time::Duration;

use ouro::{is_canceled, is_deadline, BackendKind, OpKind, Outcome, RunMode};

use crate::harness::{complete, ctx, os_error, ring, run_all, slot_of, socket_pair};

backend_tests![
    cancel_a_pending_recv,
    cancel_a_recv_in_flight,
    cancel_a_timer,
    cancel_a_finished_task_is_enoent,
    cancel_a_task_that_finishes_anyway_is_ealready,
    cancel_a_task_its_deadline_is_ending_is_ealready,
    stale_handle_does_not_touch_the_slots_new_task,
    another_rings_task_is_enoent_and_touches_nothing,
    two_cancels_of_one_task,
    cancel_a_task_waiting_for_room,
    a_close_cancelled_before_reaching_the_kernel_still_closes,
    cancel_all_cancels_everything_and_counts,
    cancel_all_on_an_idle_ring_counts_zero,
];

/// Checks a cancelled recv, then its canceller, in that order.
fn assert_target_then_canceller(got: &[ouro::Completion]) {
    assert_eq!(got.len(), 2, "{got:?}");
    let res = expect!(&got[0].outcome, Outcome::Recv(res, _) => res);
    let err = res.as_ref().expect_err("the target is cancelled");
    assert!(is_canceled(err) && !is_deadline(err), "{err}");
    expect!(&got[1].outcome, Outcome::Cancel(Ok(())) => ());
}

fn cancel_a_pending_recv(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let (a, _b) = socket_pair();
    let a = Rc::new(a);
    let recv = ring.recv(&a, Vec::with_capacity(8), ctx(0));
    ring.cancel(recv, ctx(1));
    assert_target_then_canceller(&run_all(&mut ring));
}

fn cancel_a_recv_in_flight(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let (a, _b) = socket_pair();
    let a = Rc::new(a);
    let recv = ring.recv(&a, Vec::with_capacity(8), ctx(0));
    ring.timer(Duration::from_millis(2), ctx(9));
    let mut got = Vec::new();
    ring.run(&mut got, RunMode::Once).unwrap();
    assert_eq!(got.len(), 1, "only the timer: the recv waits");
    recv.cancel(&mut ring, ctx(1));
    let got = run_all(&mut ring);
    assert_target_then_canceller(&got);
    let buf = expect!(&got[0].outcome, Outcome::Recv(_, buf) => buf);
    assert!(buf.is_empty(), "the buffer comes back untouched");
}

fn cancel_a_timer(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let timer = ring.timer(Duration::from_secs(3600), ctx(0));
    ring.cancel(timer, ctx(1));
    let got = run_all(&mut ring);
    assert_eq!(got.len(), 2);
    let err = expect!(&got[0].outcome, Outcome::Timer(Err(err)) => err);
    assert!(is_canceled(err), "{err}");
    expect!(&got[1].outcome, Outcome::Cancel(Ok(())) => ());
}

fn cancel_a_finished_task_is_enoent(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let noop = ring.noop(ctx(0));
    run_all(&mut ring);
    let outcome = complete(&mut ring, |r, c| r.cancel(noop, c));
    assert_eq!(
        expect!(outcome, Outcome::Cancel(res) => os_error(res)),
        libc::ENOENT
    );
}

/// The target is done (its result settled) before the cancellation can take
/// effect: it keeps its own result and the canceller gets `EALREADY`.
fn cancel_a_task_that_finishes_anyway_is_ealready(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let timer = ring.timer(Duration::ZERO, ctx(0));
    ring.cancel(timer, ctx(1));
    let got = run_all(&mut ring);
    assert_eq!(got.len(), 2);
    expect!(&got[0].outcome, Outcome::Timer(Ok(())) => ());
    assert_eq!(
        expect!(&got[1].outcome, Outcome::Cancel(Err(e)) => e.raw_os_error()),
        Some(libc::EALREADY)
    );

    let noop = ring.noop(ctx(0));
    ring.cancel(noop, ctx(1));
    let got = run_all(&mut ring);
    assert_eq!(got.len(), 2);
    expect!(&got[0].outcome, Outcome::Noop(Ok(())) => ());
    assert_eq!(
        expect!(&got[1].outcome, Outcome::Cancel(Err(e)) => e.raw_os_error()),
        Some(libc::EALREADY)
    );
}

/// A deadline that took effect first decides: the target ends with
/// `ETIME`, and a cancel made while that was under way finished nothing.
fn cancel_a_task_its_deadline_is_ending_is_ealready(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let (a, _b) = socket_pair();
    let a = Rc::new(a);
    let recv = ring.recv(&a, Vec::with_capacity(8), ctx(0));
    ring.set_deadline(recv, ring.now()).unwrap();
    let mut got = Vec::new();
    ring.run(&mut got, RunMode::NoWait).unwrap();
    assert!(
        recv.is_live(&ring),
        "the deadline's cancel is under way: {got:?}"
    );
    ring.cancel(recv, ctx(1));
    got.extend(run_all(&mut ring));
    assert_eq!(got.len(), 2, "{got:?}");
    let err = expect!(&got[0].outcome, Outcome::Recv(Err(e), _) => e);
    assert!(is_deadline(err), "{err}");
    assert_eq!(
        expect!(&got[1].outcome, Outcome::Cancel(Err(e)) => e.raw_os_error()),
        Some(libc::EALREADY)
    );
}

fn stale_handle_does_not_touch_the_slots_new_task(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let (a, b) = socket_pair();
    let a = Rc::new(a);
    let old = ring.noop(ctx(0));
    run_all(&mut ring);
    let new = ring.recv(&a, Vec::with_capacity(8), ctx(1));
    assert_eq!(slot_of(new), slot_of(old), "the slot is reused");
    assert_ne!(new, old);

    let error = ring
        .set_deadline(old, ring.now())
        .expect_err("the old task is gone");
    assert_eq!(error.raw_os_error(), Some(libc::ENOENT));
    ring.cancel(old, ctx(2));
    let mut got = Vec::new();
    ring.run(&mut got, RunMode::Once).unwrap();
    assert_eq!(got.len(), 1, "only the stale cancel: {got:?}");
    assert_eq!(
        expect!(&got[0].outcome, Outcome::Cancel(res) => res.as_ref().unwrap_err().raw_os_error()),
        Some(libc::ENOENT)
    );
    assert_eq!(ring.live_tasks(), 1, "the new task lives on");

    std::fs::File::from(b).write_all(b"for new").unwrap();
    let got = run_all(&mut ring);
    assert_eq!(got[0].key(), 1);
    assert_eq!(
        &expect!(&got[0].outcome, Outcome::Recv(Ok(7), buf) => buf)[..],
        b"for new"
    );
}

fn two_cancels_of_one_task(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let (a, _b) = socket_pair();
    let a = Rc::new(a);
    let recv = ring.recv(&a, Vec::with_capacity(8), ctx(0));
    ring.cancel(recv, ctx(1));
    ring.cancel(recv, ctx(2));
    let got = run_all(&mut ring);
    assert_eq!(got.len(), 3);
    assert_eq!(got[0].op(), OpKind::Recv);
    for c in &got[1..] {
        expect!(&c.outcome, Outcome::Cancel(Ok(())) => ());
    }
}

/// A ring of one entry: the second recv waits in user space for room, and
/// is cancelled there, before the kernel ever sees it.
fn cancel_a_task_waiting_for_room(kind: BackendKind) {
    let mut ring = ring(kind, 1);
    let (a, _b) = socket_pair();
    let (c, _d) = socket_pair();
    let (a, c) = (Rc::new(a), Rc::new(c));
    let first = ring.recv(&a, Vec::with_capacity(8), ctx(0));
    let second = ring.recv(&c, Vec::with_capacity(8), ctx(1));
    ring.cancel(second, ctx(2));
    ring.cancel(first, ctx(3));
    let got = run_all(&mut ring);
    assert_eq!(got.len(), 4, "{got:?}");
    let at = |key| got.iter().position(|c| c.key() == key).unwrap();
    for (target, canceller) in [(0, 3), (1, 2)] {
        assert!(at(target) < at(canceller), "the target first");
        let err = expect!(&got[at(target)].outcome, Outcome::Recv(Err(err), _) => err);
        assert!(is_canceled(err), "{err}");
        expect!(&got[at(canceller)].outcome, Outcome::Cancel(Ok(())) => ());
    }
}

fn a_close_cancelled_before_reaching_the_kernel_still_closes(kind: BackendKind) {
    let mut ring = ring(kind, 1);
    let (a, _b) = socket_pair();
    let a = Rc::new(a);
    let (reader, writer) = crate::harness::pipe();
    let recv = ring.recv(&a, Vec::with_capacity(8), ctx(0));
    let close = ring.close(writer, ctx(1));
    ring.cancel(close, ctx(2));
    ring.cancel(recv, ctx(3));
    let got = run_all(&mut ring);
    let closed = got.iter().find(|c| c.key() == 1).unwrap();
    let err = expect!(&closed.outcome, Outcome::Close(Err(err)) => err);
    assert!(is_canceled(err), "{err}");
    let mut rest = Vec::new();
    let read = std::io::Read::read_to_end(&mut std::fs::File::from(reader), &mut rest).unwrap();
    assert_eq!(
        read, 0,
        "end of file: the write end was closed all the same"
    );
}

fn cancel_all_cancels_everything_and_counts(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let pairs: Vec<_> = (0..3)
        .map(|_| {
            let (a, b) = socket_pair();
            (Rc::new(a), b)
        })
        .collect();
    for (key, (a, _)) in pairs.iter().enumerate() {
        ring.recv(a, Vec::with_capacity(8), ctx(key as u64));
    }
    ring.timer(Duration::from_secs(3600), ctx(3));
    ring.cancel_all(ctx(4));
    let got = run_all(&mut ring);
    assert_eq!(got.len(), 5);
    for c in &got[..4] {
        let err = c.result().expect_err("cancelled");
        assert!(is_canceled(&err), "{err}");
    }
    assert_eq!(got[4].key(), 4, "the canceller comes last");
    expect!(&got[4].outcome, Outcome::CancelAll(Ok(4)) => ());
}

fn cancel_all_on_an_idle_ring_counts_zero(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    expect!(complete(&mut ring, |r, c| r.cancel_all(c)), Outcome::CancelAll(Ok(0)) => ());
}

/// Stale and foreign handles are harmless: ring A's `Task` given to ring
/// B's `cancel` or `set_deadline` names nothing there, even though B has a
/// live task in the same slot with the same generation.
fn another_rings_task_is_enoent_and_touches_nothing(kind: BackendKind) {
    let mut a = ring(kind, 8);
    let mut b = ring(kind, 8);
    let foreign = a.timer(Duration::from_secs(3600), ctx(0));
    let own = b.timer(Duration::from_millis(20), ctx(7));
    assert_eq!(slot_of(foreign), slot_of(own), "same slot on both rings");
    let err = b
        .set_deadline(foreign, b.now())
        .expect_err("a foreign task has no deadline to set");
    assert_eq!(err.raw_os_error(), Some(libc::ENOENT));
    b.cancel(foreign, ctx(1));
    let got = run_all(&mut b);
    assert_eq!(got.len(), 2, "{got:?}");
    let res = expect!(&got[0].outcome, Outcome::Cancel(res) => res);
    assert_eq!(res.as_ref().unwrap_err().raw_os_error(), Some(libc::ENOENT));
    assert_eq!(got[1].key(), 7, "B's own timer fires on its own time");
    expect!(&got[1].outcome, Outcome::Timer(Ok(())) => ());
    assert_eq!(a.live_tasks(), 1, "A's task is untouched");
    a.cancel(foreign, ctx(2));
    let got = run_all(&mut a);
    assert!(is_canceled(
        expect!(&got[0].outcome, Outcome::Timer(Err(e)) => e)
    ));
}
