//! Honest errors: the kernel's internal restart codes (`ERESTARTSYS` and
//! kin, 512 to 516) never reach an outcome — a task cancelled while the
//! kernel runs it fails with `ECANCELED` (`ETIME` past its deadline) and
//! its canceller hears `Ok`; offsets io_uring cannot take are rejected, not
//! turned into something else.

use std::net::TcpListener;
use std::os::fd::OwnedFd;
use std::time::Duration;

use ouro::{BackendKind, Ctx, Offset, Outcome, PollMask, Ring, RunMode, Task};

use crate::harness::{ctx, pipe, ring, run_all, socket_pair, Got};

backend_tests![
    cancelling_a_splice_the_kernel_runs_is_ecanceled,
    a_splice_the_kernel_runs_past_its_deadline_is_etime,
    cancelling_a_read_the_kernel_runs_is_ecanceled,
    a_read_the_kernel_runs_past_its_deadline_is_etime,
    cancelling_a_recv_the_kernel_runs_is_ecanceled,
    cancelling_an_accept_the_kernel_runs_is_ecanceled,
    an_accept_the_kernel_runs_past_its_deadline_is_etime,
    cancelling_a_poll_the_kernel_runs_is_ecanceled,
];

/// Key of the task under test.
const TARGET: u64 = 0;
/// Key of its canceller.
const CANCELLER: u64 = 1;
/// Key of the timer that lets the kernel start the target.
const SETTLE: u64 = 9;

/// How long the target runs in the kernel before it is cancelled: long
/// enough for io_uring to hand a blocking call to a worker thread that
/// starts it (the case that produced `ERESTARTSYS`); the test's result does
/// not depend on it.
const RUNNING: Duration = Duration::from_millis(20);

/// The OS error of an outcome that failed; panics on success or on an
/// outcome of another family.
fn error_of(outcome: &Outcome) -> i32 {
    let err = match outcome {
        Outcome::Splice(res) => res.as_ref().err(),
        Outcome::Read(res, _) | Outcome::Recv(res, _) => res.as_ref().err(),
        Outcome::Accept(res) => res.as_ref().err(),
        Outcome::Poll(res) => res.as_ref().err(),
        Outcome::Open(res) => res.as_ref().err(),
        other => panic!("unexpected outcome {other:?}"),
    };
    let err = err.unwrap_or_else(|| panic!("the operation should have failed: {outcome:?}"));
    err.raw_os_error()
        .unwrap_or_else(|| panic!("not an OS error: {err}"))
}

/// Schedules the target, lets the kernel run it for a while (it cannot
/// finish), then cancels it; returns the target's and the canceller's
/// outcomes, checking that they come in that order.
fn cancel_while_running(
    ring: &mut Ring<Got>,
    schedule: impl FnOnce(&mut Ring<Got>, Ctx<Got>) -> Task,
) -> (Outcome, Outcome) {
    let target = schedule(ring, ctx(TARGET));
    ring.timer(RUNNING, ctx(SETTLE));
    let mut got = Vec::new();
    while got.is_empty() {
        ring.run(&mut got, RunMode::Once).unwrap();
    }
    assert_eq!(got.len(), 1, "only the timer: the target waits: {got:?}");
    assert_eq!(got[0].key(), SETTLE, "{got:?}");
    ring.cancel(target, ctx(CANCELLER));
    let mut got = run_all(ring);
    assert_eq!(got.len(), 2, "{got:?}");
    let keys: Vec<u64> = got.iter().map(|c| c.key()).collect();
    assert_eq!(
        keys,
        [TARGET, CANCELLER],
        "the target's callback runs first"
    );
    let canceller = got.pop().unwrap().outcome;
    (got.pop().unwrap().outcome, canceller)
}

/// Checks the target failed with exactly `ECANCELED` and the canceller
/// heard that it was cancelled.
fn assert_cancelled(target: &Outcome, canceller: &Outcome) {
    assert_eq!(error_of(target), libc::ECANCELED, "{target:?}");
    expect!(canceller, Outcome::Cancel(Ok(())) => ());
}

/// Schedules the target with a deadline it cannot meet; its outcome, which
/// must be exactly `ETIME`.
fn assert_deadline_while_running(
    ring: &mut Ring<Got>,
    schedule: impl FnOnce(&mut Ring<Got>, Ctx<Got>) -> Task,
) {
    let target = schedule(ring, ctx(TARGET));
    ring.set_deadline(target, ring.now() + RUNNING).unwrap();
    let got = run_all(ring);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(error_of(&got[0].outcome), libc::ETIME, "{got:?}");
}

/// A splice from a pipe nobody writes to: io_uring runs it on a worker
/// thread, blocked in the kernel.
fn splice_from_an_empty_pipe<'a>(
    from: &'a OwnedFd,
    to: &'a OwnedFd,
) -> impl FnOnce(&mut Ring<Got>, Ctx<Got>) -> Task + 'a {
    move |r, c| r.splice(from, None, to, None, 64, c)
}

fn cancelling_a_splice_the_kernel_runs_is_ecanceled(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let ((from, _writer), (_reader, to)) = (pipe(), pipe());
    let (target, canceller) =
        cancel_while_running(&mut ring, splice_from_an_empty_pipe(&from, &to));
    assert_cancelled(&target, &canceller);
}

fn a_splice_the_kernel_runs_past_its_deadline_is_etime(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let ((from, _writer), (_reader, to)) = (pipe(), pipe());
    assert_deadline_while_running(&mut ring, splice_from_an_empty_pipe(&from, &to));
}

fn cancelling_a_read_the_kernel_runs_is_ecanceled(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let (reader, _writer) = pipe();
    let (target, canceller) = cancel_while_running(&mut ring, |r, c| {
        r.read(&reader, Vec::with_capacity(8), Offset::Current, c)
    });
    assert_cancelled(&target, &canceller);
}

fn a_read_the_kernel_runs_past_its_deadline_is_etime(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let (reader, _writer) = pipe();
    assert_deadline_while_running(&mut ring, |r, c| {
        r.read(&reader, Vec::with_capacity(8), Offset::Current, c)
    });
}

fn cancelling_a_recv_the_kernel_runs_is_ecanceled(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let (a, _b) = socket_pair();
    let (target, canceller) =
        cancel_while_running(&mut ring, |r, c| r.recv(&a, Vec::with_capacity(8), c));
    assert_cancelled(&target, &canceller);
}

fn cancelling_an_accept_the_kernel_runs_is_ecanceled(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let (target, canceller) = cancel_while_running(&mut ring, |r, c| r.accept(&listener, c));
    assert_cancelled(&target, &canceller);
}

fn an_accept_the_kernel_runs_past_its_deadline_is_etime(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    assert_deadline_while_running(&mut ring, |r, c| r.accept(&listener, c));
}

fn cancelling_a_poll_the_kernel_runs_is_ecanceled(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let (a, _b) = socket_pair();
    let (target, canceller) =
        cancel_while_running(&mut ring, |r, c| r.poll(&a, PollMask::READABLE, c));
    assert_cancelled(&target, &canceller);
}
