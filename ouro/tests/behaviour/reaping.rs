//! Reaping: one turn delivers every completion that is ready, however many
//! there are — `Once` after waiting for the first, `NoWait` without
//! waiting — even when the kernel hands them over in batches (io_uring runs
//! a bounded amount of deferred completion work per system call; the
//! readiness backend's poll reports a bounded number of ready fds per
//! call).

use std::io::Write;
use std::os::fd::OwnedFd;

use ouro::{BackendKind, Outcome, PollMask, Ring, RunMode};

use crate::harness::unchecked;
use crate::harness::{ctx, ring, socket_pair, Got};

backend_tests![
    run_once_delivers_all_200_ready_completions,
    run_once_delivers_all_1000_ready_completions,
    run_nowait_delivers_all_200_ready_completions,
    run_nowait_delivers_all_1000_ready_completions,
    run_once_on_a_small_ring_delivers_all_200_ready_completions,
    run_once_delivers_the_receives_of_300_ready_sockets,
    run_nowait_delivers_the_receives_of_300_ready_sockets,
];

/// `count` polls for input on one socket, in the kernel (not ready yet)
/// when this returns; then the peer makes the socket readable, which
/// completes them all at once. Returns the socket pair (keep it open).
fn polls_made_ready_at_once(ring: &mut Ring<Got>, count: u64) -> (OwnedFd, OwnedFd) {
    let (a, b) = socket_pair();
    for key in 0..count {
        ring.poll(unchecked(&a), PollMask::READABLE, ctx(key));
    }
    let mut got = Vec::new();
    ring.run(&mut got, RunMode::NoWait).unwrap();
    assert!(got.is_empty(), "nothing is ready yet: {got:?}");
    (&std::fs::File::from(b.try_clone().unwrap()))
        .write_all(b"x")
        .unwrap();
    (a, b)
}

fn assert_all_polls_delivered(got: &Got, count: u64) {
    assert_eq!(got.len() as u64, count, "one turn delivers them all");
    let mut keys: Vec<u64> = got.iter().map(|c| c.key()).collect();
    keys.sort_unstable();
    assert!(keys.iter().copied().eq(0..count), "each exactly once");
    for c in got {
        let mask = expect!(&c.outcome, Outcome::Poll(Ok(mask)) => *mask);
        assert!(mask.contains(PollMask::READABLE), "{mask:?}");
    }
}

fn run_once_delivers_all_ready(kind: BackendKind, entries: u32, count: u64) {
    let mut ring = ring(kind, entries);
    let _pair = polls_made_ready_at_once(&mut ring, count);
    let mut got = Vec::new();
    ring.run(&mut got, RunMode::Once).unwrap();
    assert_all_polls_delivered(&got, count);
    assert_eq!(ring.live_tasks(), 0);
}

fn run_nowait_delivers_all_ready(kind: BackendKind, count: u64) {
    let mut ring = ring(kind, 1024);
    let _pair = polls_made_ready_at_once(&mut ring, count);
    let mut got = Vec::new();
    // The peer's write completed the polls in the kernel (the wake-ups
    // happen within it): they are all ready now, with no waiting.
    ring.run(&mut got, RunMode::NoWait).unwrap();
    assert_all_polls_delivered(&got, count);
    assert_eq!(ring.live_tasks(), 0);
}

fn run_once_delivers_all_200_ready_completions(kind: BackendKind) {
    run_once_delivers_all_ready(kind, 1024, 200);
}

fn run_once_delivers_all_1000_ready_completions(kind: BackendKind) {
    run_once_delivers_all_ready(kind, 1024, 1000);
}

fn run_nowait_delivers_all_200_ready_completions(kind: BackendKind) {
    run_nowait_delivers_all_ready(kind, 200);
}

fn run_nowait_delivers_all_1000_ready_completions(kind: BackendKind) {
    run_nowait_delivers_all_ready(kind, 1000);
}

/// More ready completions than the completion queue holds: they come over
/// in several batches, all in the one turn.
fn run_once_on_a_small_ring_delivers_all_200_ready_completions(kind: BackendKind) {
    run_once_delivers_all_ready(kind, 8, 200);
}

/// Receives on 300 sockets whose peers have all written: as many ready
/// fds, more than one poll of the readiness backend reports.
fn receives_of_ready_sockets(kind: BackendKind, mode: RunMode) {
    const SOCKETS: u64 = 300;
    let mut ring = ring(kind, 4);
    let mut pairs = Vec::new();
    for key in 0..SOCKETS {
        let (a, b) = socket_pair();
        ring.recv(unchecked(&a), Vec::with_capacity(8), ctx(key));
        pairs.push((a, b));
    }
    let mut got = Vec::new();
    ring.run(&mut got, RunMode::NoWait).unwrap();
    assert!(got.is_empty(), "nothing is ready yet: {got:?}");
    for (_, b) in &pairs {
        (&std::fs::File::from(b.try_clone().unwrap()))
            .write_all(b"x")
            .unwrap();
    }
    ring.run(&mut got, mode).unwrap();
    assert_eq!(got.len() as u64, SOCKETS, "one turn delivers them all");
    for c in &got {
        assert_eq!(c.bytes().unwrap(), 1);
    }
    assert_eq!(ring.live_tasks(), 0);
}

fn run_once_delivers_the_receives_of_300_ready_sockets(kind: BackendKind) {
    receives_of_ready_sockets(kind, RunMode::Once);
}

fn run_nowait_delivers_the_receives_of_300_ready_sockets(kind: BackendKind) {
    receives_of_ready_sockets(kind, RunMode::NoWait);
}
