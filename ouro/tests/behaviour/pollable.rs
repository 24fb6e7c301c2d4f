//! A pollable ring (`RingBuilder::pollable`) wakes whoever polls its fd
//! when its nearest timer is due, whatever the run before the poll went
//! through: one that returned with results still to deliver, one that
//! failed to arm the timer because the process was out of fds, or one that
//! a callback's panic ended.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::Command;
use std::time::Duration;

use ouro::{BackendKind, Completion, Outcome, Payload, Ring, RunMode};

use crate::harness::{ctx, with_no_new_fds, Got};

backend_tests![
    a_pollable_ring_wakes_for_its_timer_after_a_run_left_results_to_deliver,
    a_pollable_ring_wakes_for_its_timer_after_a_run_out_of_fds_failed,
    a_pollable_ring_whose_run_a_panic_ended_is_readable_for_what_waits,
    a_pollable_ring_that_never_ran_is_readable_for_a_message,
];

const TIMER: u64 = 1;
const FIRST: u64 = 2;
const SECOND: u64 = 3;

/// How long a poll waits for a timer due in 100 ms: only long enough that
/// a ring that never wakes fails the test (the machines are shared).
const GENEROUS_MS: i32 = 5000;

fn pollable_ring(kind: BackendKind) -> Ring<Got> {
    Ring::builder()
        .backend(kind)
        .entries(8)
        .pollable(true)
        .build()
        .unwrap_or_else(|e| panic!("building a pollable {kind:?} ring: {e}"))
}

/// Whether `fd` becomes readable within `ms` milliseconds, as the loop
/// that polls a pollable ring sees it.
fn readable_within(fd: &OwnedFd, ms: i32) -> bool {
    let mut poll = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one pollfd, alive for the call.
    let n = unsafe { libc::poll(&mut poll, 1, ms) };
    assert!(n >= 0, "poll: {}", io::Error::last_os_error());
    n == 1
}

/// Polls the ring's fd and runs the ring as an event loop does, until the
/// timer has been delivered.
fn poll_until_timer(ring: &mut Ring<Got>, fd: &OwnedFd, got: &mut Got) {
    while !got.iter().any(|c| c.key() == TIMER) {
        assert!(
            readable_within(fd, GENEROUS_MS),
            "the pollable fd did not become readable for a timer due in 100 ms: {got:?}"
        );
        ring.run(got, RunMode::NoWait).expect("run");
    }
    let timer = got.iter().find(|c| c.key() == TIMER).unwrap();
    timer.result().expect("the timer fires");
}

/// Records the completion; the first one schedules another, due at once,
/// which its run leaves to the next (it delivers what was ready when it
/// started delivering).
fn again_at_once(got: &mut Got, ring: &mut Ring<Got>, c: Completion) -> io::Result<()> {
    if c.key() == FIRST {
        ring.timer(Duration::ZERO, ctx(SECOND));
    }
    got.push(c);
    Ok(())
}

/// A run that ends with a result still to deliver makes the fd readable
/// at once, and arms no timer; the runs after it must arm it.
fn a_pollable_ring_wakes_for_its_timer_after_a_run_left_results_to_deliver(kind: BackendKind) {
    let mut ring = pollable_ring(kind);
    let fd = ring.pollable_fd().unwrap();
    ring.timer(Duration::from_millis(100), ctx(TIMER));
    ring.timer(Duration::ZERO, ouro::Ctx::new(again_at_once).key(FIRST));
    let mut got = Got::new();
    ring.run(&mut got, RunMode::NoWait).unwrap();
    let keys: Vec<u64> = got.iter().map(Completion::key).collect();
    assert_eq!(keys, [FIRST], "the second timer waits for the next run");
    assert!(readable_within(&fd, GENEROUS_MS), "a result waits");
    ring.run(&mut got, RunMode::NoWait).unwrap();
    assert!(got.iter().any(|c| c.key() == SECOND), "{got:?}");
    poll_until_timer(&mut ring, &fd, &mut got);
}

fn panic_first(got: &mut Got, _: &mut Ring<Got>, c: Completion) -> io::Result<()> {
    if c.key() == FIRST {
        panic!("a callback panics");
    }
    got.push(c);
    Ok(())
}

/// Three timers due at once; the first one's callback panics, which ends
/// the run with two results undelivered: the fd must say they wait.
fn a_pollable_ring_whose_run_a_panic_ended_is_readable_for_what_waits(kind: BackendKind) {
    let mut ring = pollable_ring(kind);
    let fd = ring.pollable_fd().unwrap();
    for key in [FIRST, SECOND, TIMER] {
        ring.timer(Duration::ZERO, ouro::Ctx::new(panic_first).key(key));
    }
    let mut got = Got::new();
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        ring.run(&mut got, RunMode::NoWait)
    }));
    assert!(panicked.is_err(), "the first callback panics");
    assert!(got.is_empty(), "{got:?}");
    assert!(readable_within(&fd, GENEROUS_MS), "two results wait");
    ring.run(&mut got, RunMode::NoWait).unwrap();
    let mut keys: Vec<u64> = got.iter().map(Completion::key).collect();
    keys.sort_unstable();
    assert_eq!(keys, [TIMER, SECOND]);
}

/// Set in the child process that runs
/// `a_pollable_ring_wakes_for_its_timer_after_a_run_out_of_fds_failed`.
const OUT_OF_FDS_CHILD: &str = "OURO_TEST_POLLABLE_OUT_OF_FDS_CHILD";

/// The readiness backend makes the timerfd a pollable ring's timers need
/// on first use: a run with no fd free fails to, and the runs after it,
/// with fds free again, must arm the timer. (io_uring needs no fd for it:
/// there the run may succeed; the ring must wake all the same.) Run in a
/// child process, as `RLIMIT_NOFILE` is the whole process's.
fn a_pollable_ring_wakes_for_its_timer_after_a_run_out_of_fds_failed(kind: BackendKind) {
    if std::env::var_os(OUT_OF_FDS_CHILD).is_some() {
        return timer_after_a_run_out_of_fds(kind);
    }
    let backend = match kind {
        BackendKind::Uring => "uring",
        _ => "poll",
    };
    let name = format!(
        "pollable::a_pollable_ring_wakes_for_its_timer_after_a_run_out_of_fds_failed::{backend}"
    );
    let output = Command::new(std::env::current_exe().unwrap())
        .args([&name, "--exact", "--nocapture", "--test-threads=1"])
        .env(OUT_OF_FDS_CHILD, "1")
        .output()
        .unwrap();
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "the child failed:\n{out}");
    assert!(out.contains("1 passed"), "the child ran no test:\n{out}");
}

fn timer_after_a_run_out_of_fds(kind: BackendKind) {
    let mut ring = pollable_ring(kind);
    let fd = ring.pollable_fd().unwrap();
    ring.timer(Duration::from_millis(100), ctx(TIMER));
    let mut got = Got::new();
    let out_of_fds = with_no_new_fds(|| ring.run(&mut got, RunMode::NoWait));
    if kind == BackendKind::Poll {
        let err = out_of_fds.expect_err("the timerfd cannot be made");
        assert_eq!(err.raw_os_error(), Some(libc::EMFILE), "{err}");
    }
    ring.run(&mut got, RunMode::NoWait).unwrap();
    poll_until_timer(&mut ring, &fd, &mut got);
}

/// A message from another thread to a pollable ring that has not run yet
/// makes its fd readable: the ring's wake-up is ready from the moment it
/// can be messaged, not from its first run.
fn a_pollable_ring_that_never_ran_is_readable_for_a_message(kind: BackendKind) {
    let mut ring = pollable_ring(kind);
    let handle = ring.handle().expect("a handle");
    let fd = ring.pollable_fd().expect("the pollable fd");
    std::thread::spawn(move || handle.send(ctx(FIRST), Payload::U64(7)))
        .join()
        .expect("the sender")
        .expect("the message is taken");
    assert!(
        readable_within(&fd, GENEROUS_MS),
        "the pollable fd did not become readable for a message"
    );
    let mut got = Got::new();
    ring.run(&mut got, RunMode::NoWait).expect("run");
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(
        matches!(got[0].outcome, Outcome::Message(Payload::U64(7))),
        "{:?}",
        got[0].outcome
    );
}
