//! Interrupted calls under the mock: a cancel that interrupts a blocking
//! call is still a cancel, and a call interrupted by anything else starts
//! again, as an interrupted system call does.

use std::time::Duration;

use ouro::mock::{Mock, Reply};
use ouro::{Ctx, OpKind, Outcome, Ring, RunMode};

use super::{any_fd, collect};
use crate::common::fds::apart_from_other_tests;

/// A blocking call on one of io_uring's worker threads ends with `EINTR`
/// when its cancellation interrupts it (a receive racing others for
/// datagrams goes to one). The callback hears `ECANCELED` for a cancel and
/// `ETIME` for a deadline, as for any cancelled task.
#[test]
fn a_cancel_that_interrupts_a_blocking_call_is_still_a_cancel() {
    let _alone = apart_from_other_tests();
    let mut mock = Mock::new();
    mock.on(OpKind::Recv, |_| Reply::Blocked);
    let mut ring = Ring::mock(mock);
    let fd = any_fd();
    let canceled = ring.recv(&fd, Vec::with_capacity(8), Ctx::new(collect).msg(1u16));
    let timed = ring.recv(&fd, Vec::with_capacity(8), Ctx::new(collect).msg(2u16));
    ring.set_deadline(timed, ring.now() + Duration::from_secs(1))
        .unwrap();
    ring.cancel(canceled, Ctx::new(collect).msg(3u16));
    let mut got = Vec::new();
    ring.run(&mut got, RunMode::UntilDone).unwrap();
    assert_cancelled_timed_out_and_cancel_heard(&got);
}

/// A call interrupted by something else than its cancellation (a stop and
/// continue of the process, a tracer attaching) starts again, as an
/// interrupted system call does; one interrupted again and again ends
/// with `EINTR` rather than spinning.
#[test]
fn a_call_interrupted_by_no_cancel_starts_again() {
    let _alone = apart_from_other_tests();
    let mut mock = Mock::new();
    mock.push(OpKind::Read, Reply::Errno(libc::EINTR));
    mock.push(OpKind::Read, Reply::Errno(libc::EINTR));
    mock.push(OpKind::Read, Reply::Value(0));
    mock.on(OpKind::Write, |_| Reply::Errno(libc::EINTR));
    let mut ring = Ring::mock(mock);
    let fd = any_fd();
    let current = ouro::Offset::Current;
    ring.read(
        &fd,
        Vec::with_capacity(8),
        current,
        Ctx::new(collect).msg(1u16),
    );
    ring.write(&fd, &b"x"[..], current, Ctx::new(collect).msg(2u16));
    let mut got = Vec::new();
    ring.run(&mut got, RunMode::UntilDone).unwrap();
    assert_eq!(got.len(), 2, "{got:?}");
    let outcome_of = |msg: u16| &got.iter().find(|(c, _)| c.msg() == msg).unwrap().0.outcome;
    assert!(
        matches!(outcome_of(1), Outcome::Read(Ok(0), _)),
        "{:?}",
        outcome_of(1)
    );
    assert!(
        matches!(outcome_of(2), Outcome::Write(Err(e), _) if e.raw_os_error() == Some(libc::EINTR)),
        "{:?}",
        outcome_of(2)
    );
    let mock = ring.mock_backend().unwrap();
    assert_eq!(mock.started(OpKind::Read), 3);
    assert_eq!(
        mock.started(OpKind::Write),
        17,
        "the first start and 16 more"
    );
}

/// A task interrupted and waiting to start again is still one task:
/// cancelled then, or past its deadline, its callback runs once, with
/// `ECANCELED` or `ETIME`, and the cancel hears `Ok`.
#[test]
fn a_task_waiting_to_start_again_is_cancelled_and_timed_out_once() {
    let _alone = apart_from_other_tests();
    let mut mock = Mock::new();
    let mut starts = 0;
    mock.on(OpKind::Recv, move |_| {
        starts += 1;
        if starts <= 2 {
            Reply::Errno(libc::EINTR)
        } else {
            Reply::Pending
        }
    });
    let mut ring = Ring::mock(mock);
    let fd = any_fd();
    let canceled = ring.recv(&fd, Vec::with_capacity(8), Ctx::new(collect).msg(1u16));
    let timed = ring.recv(&fd, Vec::with_capacity(8), Ctx::new(collect).msg(2u16));
    ring.set_deadline(timed, ring.now() + Duration::from_secs(1))
        .unwrap();
    let mut got = Vec::new();
    // Both interrupted; the mock's clock may reach the deadline already.
    ring.run(&mut got, RunMode::Once).unwrap();
    assert!(ring.is_live(canceled), "{got:?}");
    ring.cancel(canceled, Ctx::new(collect).msg(3u16));
    ring.run(&mut got, RunMode::UntilDone).unwrap();
    let count = |msg: u16| got.iter().filter(|(c, _)| c.msg() == msg).count();
    assert_eq!((count(1), count(2), count(3)), (1, 1, 1), "{got:?}");
    assert_cancelled_timed_out_and_cancel_heard(&got);
    assert_eq!(ring.live_tasks(), 0);
}

/// The receive of message 1 was cancelled (`ECANCELED`), that of message 2
/// timed out (`ETIME`), and the cancel of message 3 heard `Ok`.
fn assert_cancelled_timed_out_and_cancel_heard(got: &[(ouro::Completion, std::time::Instant)]) {
    let outcome_of = |msg: u16| &got.iter().find(|(c, _)| c.msg() == msg).unwrap().0.outcome;
    let error_of = |msg: u16| match outcome_of(msg) {
        Outcome::Recv(Err(e), _) => e.raw_os_error(),
        other => panic!("expected a failed receive, got {other:?}"),
    };
    assert_eq!(error_of(1), Some(libc::ECANCELED));
    assert_eq!(error_of(2), Some(libc::ETIME));
    let cancel = outcome_of(3);
    assert!(matches!(cancel, Outcome::Cancel(Ok(()))), "{cancel:?}");
}
