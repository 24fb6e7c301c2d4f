//! Exactly once under load and failure: a million operations through a
//! small ring, a full submission queue, an overflowing completion queue,
//! failing and panicking callbacks, `run` re-entered, and a ring dropped
//! with operations in flight.

use std::cell::Cell;
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::time::Duration;

use ouro::{BackendKind, Completion, Ctx, Offset, Outcome, Ring, RunMode};

use crate::harness::{
    ctx, open_fds, pipe, pipes_with_data, ring, run_all, socket_pair, temp_file, Got, Tracked,
};

backend_tests![
    a_million_noops_queued_before_run,
    a_million_noops_rearmed_from_callbacks,
    a_million_zero_delay_timers,
    a_failing_callback_does_not_lose_the_batch,
    run_inside_a_callback_is_an_error,
    a_full_submission_queue_keeps_every_write_in_order,
    an_overflowing_completion_queue_loses_nothing,
    a_panicking_callback_loses_nothing,
    a_panicking_target_still_lets_its_cancellers_finish,
    cancel_all_of_many_in_flight_through_a_small_ring,
    deadlines_of_many_in_flight_through_a_small_ring,
];

exclusive_backend_tests![
    cancelled_accepts_leak_no_fd,
    dropping_a_ring_with_operations_in_flight,
    dropping_a_ring_after_a_callback_panicked,
    a_ring_whose_file_operations_ran_closes_every_fd_when_dropped,
];

const MILLION: usize = 1_000_000;

/// How often each task (by key) was delivered.
struct Seen(Vec<u8>);

impl Seen {
    fn new(tasks: usize) -> Seen {
        Seen(vec![0; tasks])
    }

    fn record(&mut self, c: &Completion) -> io::Result<()> {
        c.result()?;
        self.0[c.key() as usize] += 1;
        Ok(())
    }

    fn assert_each_once(&self) {
        if let Some(key) = self.0.iter().position(|&n| n != 1) {
            panic!("task {key} was delivered {} times", self.0[key]);
        }
    }
}

fn count_by_key(seen: &mut Seen, _: &mut Ring<Seen>, c: Completion) -> io::Result<()> {
    seen.record(&c)
}

fn a_million_noops_queued_before_run(kind: BackendKind) {
    let mut ring = ring(kind, 16);
    for key in 0..MILLION {
        ring.noop(Ctx::new(count_by_key).key(key as u64));
    }
    let mut seen = Seen::new(MILLION);
    ring.run(&mut seen, RunMode::UntilDone).unwrap();
    seen.assert_each_once();
    assert_eq!(ring.live_tasks(), 0);
}

struct Rearm {
    scheduled: usize,
    seen: Seen,
}

fn rearm(state: &mut Rearm, ring: &mut Ring<Rearm>, c: Completion) -> io::Result<()> {
    state.seen.record(&c)?;
    if state.scheduled < MILLION {
        ring.noop(Ctx::new(rearm).key(state.scheduled as u64));
        state.scheduled += 1;
    }
    Ok(())
}

fn a_million_noops_rearmed_from_callbacks(kind: BackendKind) {
    let mut ring = ring(kind, 16);
    let mut state = Rearm {
        scheduled: 16,
        seen: Seen::new(MILLION),
    };
    for key in 0..16 {
        ring.noop(Ctx::new(rearm).key(key));
    }
    ring.run(&mut state, RunMode::UntilDone).unwrap();
    state.seen.assert_each_once();
}

fn a_million_zero_delay_timers(kind: BackendKind) {
    let mut ring = ring(kind, 16);
    for key in 0..MILLION {
        ring.timer(Duration::ZERO, Ctx::new(count_by_key).key(key as u64));
    }
    let mut seen = Seen::new(MILLION);
    ring.run(&mut seen, RunMode::UntilDone).unwrap();
    seen.assert_each_once();
}

fn fail_on_5_and_12(calls: &mut Vec<u64>, _: &mut Ring<Vec<u64>>, c: Completion) -> io::Result<()> {
    calls.push(c.key());
    match c.key() {
        5 => Err(io::Error::other("callback 5 failed")),
        12 => Err(io::Error::other("callback 12 failed")),
        _ => Ok(()),
    }
}

/// Two callbacks of one batch fail: the rest of the batch is delivered,
/// `run` returns the first error, and the next `run` goes on normally.
fn a_failing_callback_does_not_lose_the_batch(kind: BackendKind) {
    let mut ring = ring(kind, 32);
    for key in 0..10 {
        ring.noop(Ctx::new(fail_on_5_and_12).key(key));
    }
    for key in 10..15 {
        ring.timer(Duration::ZERO, Ctx::new(fail_on_5_and_12).key(key));
    }
    let mut calls = Vec::new();
    let err = ring
        .run(&mut calls, RunMode::UntilDone)
        .expect_err("a callback failed");
    assert_eq!(err.to_string(), "callback 5 failed");
    calls.sort();
    assert_eq!(calls, (0..15).collect::<Vec<_>>());

    for key in 15..18 {
        ring.noop(Ctx::new(fail_on_5_and_12).key(key));
    }
    ring.run(&mut calls, RunMode::UntilDone).unwrap();
    calls.sort();
    assert_eq!(calls, (0..18).collect::<Vec<_>>(), "each delivered once");
}

#[derive(Default)]
struct Reentry {
    error: Option<io::Error>,
    calls: u32,
}

fn reenter(state: &mut Reentry, ring: &mut Ring<Reentry>, _: Completion) -> io::Result<()> {
    state.calls += 1;
    if state.calls == 1 {
        state.error = ring.run(state, RunMode::Once).err();
        ring.noop(Ctx::new(reenter));
    }
    Ok(())
}

fn run_inside_a_callback_is_an_error(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    ring.noop(Ctx::new(reenter));
    let mut state = Reentry::default();
    ring.run(&mut state, RunMode::UntilDone).unwrap();
    let err = state.error.expect("run inside a callback fails");
    assert!(err.to_string().contains("inside a callback"), "{err}");
    assert_eq!(state.calls, 2, "the ring goes on");
}

/// 300 writes through a ring of 4 entries: most wait in user space for
/// room; none is lost, and one fd receives them in the order scheduled.
fn a_full_submission_queue_keeps_every_write_in_order(kind: BackendKind) {
    const WRITES: usize = 300;
    let record = |i: usize| format!("{i:07}\n").into_bytes();
    let expected: Vec<u8> = (0..WRITES).flat_map(record).collect();

    let mut ring = ring(kind, 4);
    let (reader, writer) = pipe();
    let (writer, file) = (Rc::new(writer), Rc::new(temp_file(b"")));
    for i in 0..WRITES {
        ring.write(&writer, record(i), Offset::Current, ctx(i as u64));
        ring.write(&file, record(i), Offset::Current, ctx(i as u64));
    }
    let got = run_all(&mut ring);
    assert_eq!(got.len(), 2 * WRITES);
    for c in &got {
        assert_eq!(c.bytes().unwrap(), 8);
    }
    drop(writer);
    let mut piped = Vec::new();
    std::fs::File::from(reader).read_to_end(&mut piped).unwrap();
    assert!(piped == expected, "the pipe got the records out of order");
    let path = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&file));
    assert!(
        std::fs::read(path).unwrap() == expected,
        "the file got the records out of order"
    );
}

/// 64 reads in flight on a ring whose completion queue holds 8; they all
/// complete at once.
fn an_overflowing_completion_queue_loses_nothing(kind: BackendKind) {
    const READS: usize = 64;
    let mut ring = ring(kind, 4);
    let pipes: Vec<(Rc<OwnedFd>, OwnedFd)> = (0..READS)
        .map(|_| {
            let (reader, writer) = pipe();
            (Rc::new(reader), writer)
        })
        .collect();
    for (key, (reader, _)) in pipes.iter().enumerate() {
        ring.read(
            reader,
            Vec::with_capacity(4),
            Offset::Current,
            ctx(key as u64),
        );
    }
    ring.timer(Duration::from_millis(5), ctx(u64::MAX));
    let mut got = Vec::new();
    while got.is_empty() {
        ring.run(&mut got, RunMode::Once).unwrap();
    }
    assert_eq!(got.len(), 1, "only the timer: the reads wait");
    for (key, (_, writer)) in pipes.iter().enumerate() {
        std::fs::File::from(writer.try_clone().unwrap())
            .write_all(&[key as u8])
            .unwrap();
    }
    let got = run_all(&mut ring);
    assert_eq!(got.len(), READS);
    let mut keys: Vec<u64> = got
        .iter()
        .map(|c| {
            let buf = expect!(&c.outcome, Outcome::Read(Ok(1), buf) => buf);
            assert_eq!(
                u64::from(buf[0]),
                c.key(),
                "each read got its own pipe's byte"
            );
            c.key()
        })
        .collect();
    keys.sort();
    assert_eq!(keys, (0..READS as u64).collect::<Vec<_>>());
}

fn panic_always(_: &mut (), _: &mut Ring<()>, c: Completion) -> io::Result<()> {
    panic!("callback for {} panics (on purpose)", c.key());
}

fn count(delivered: &mut u32, _: &mut Ring<u32>, _: Completion) -> io::Result<()> {
    *delivered += 1;
    Ok(())
}

/// 200 recvs in flight on a ring of 4 entries, all cancelled at once: the
/// cancel requests themselves wait for room.
fn cancel_all_of_many_in_flight_through_a_small_ring(kind: BackendKind) {
    const RECVS: u64 = 200;
    let mut ring = ring(kind, 4);
    let (a, _b) = socket_pair();
    let a = Rc::new(a);
    for key in 0..RECVS {
        ring.recv(&a, Vec::with_capacity(8), ctx(key));
    }
    ring.timer(Duration::from_millis(2), ctx(RECVS));
    let mut got = Vec::new();
    while got.is_empty() {
        ring.run(&mut got, RunMode::Once).unwrap();
    }
    assert_eq!(got.len(), 1, "only the timer");
    ring.cancel_all(ctx(RECVS + 1));
    let got = run_all(&mut ring);
    assert_eq!(got.len() as u64, RECVS + 1);
    let last = got.last().unwrap();
    expect!(&last.outcome, Outcome::CancelAll(Ok(n)) if *n as u64 == RECVS => ());
    let mut keys: Vec<u64> = got[..RECVS as usize]
        .iter()
        .map(|c| {
            let err = c.result().expect_err("cancelled");
            assert!(ouro::is_canceled(&err), "{err}");
            c.key()
        })
        .collect();
    keys.sort();
    assert_eq!(keys, (0..RECVS).collect::<Vec<_>>());
}

/// 200 recvs on a ring of 4 entries, each with a deadline: all fail with
/// `ETIME`, once each.
fn deadlines_of_many_in_flight_through_a_small_ring(kind: BackendKind) {
    const RECVS: u64 = 200;
    let mut ring = ring(kind, 4);
    let (a, _b) = socket_pair();
    let a = Rc::new(a);
    let deadline = ring.now() + Duration::from_millis(5);
    for key in 0..RECVS {
        let recv = ring.recv(&a, Vec::with_capacity(8), ctx(key));
        ring.set_deadline(recv, deadline).unwrap();
    }
    let got = run_all(&mut ring);
    let mut keys: Vec<u64> = got
        .iter()
        .map(|c| {
            let err = c.result().expect_err("past its deadline");
            assert!(ouro::is_deadline(&err), "{err}");
            c.key()
        })
        .collect();
    keys.sort();
    assert_eq!(keys, (0..RECVS).collect::<Vec<_>>());
}

/// Three reads complete in one batch; the first callback panics. The other
/// two are delivered by the next `run`.
fn a_panicking_callback_loses_nothing(kind: BackendKind) {
    let mut ring: Ring<u32> = ring(kind, 8);
    let pipes = shared_readers(pipes_with_data(3));
    fn panic_once(delivered: &mut u32, _: &mut Ring<u32>, _: Completion) -> io::Result<()> {
        *delivered += 1;
        if *delivered == 1 {
            panic!("the first callback panics (on purpose)");
        }
        Ok(())
    }
    for (reader, _) in &pipes {
        ring.read(
            reader,
            Vec::with_capacity(4),
            Offset::Current,
            Ctx::new(panic_once),
        );
    }
    let mut delivered = 0;
    let result = catch_unwind(AssertUnwindSafe(|| {
        ring.run(&mut delivered, RunMode::UntilDone)
    }));
    assert!(result.is_err(), "the panic goes through run");
    assert_eq!(delivered, 1);
    ring.noop(Ctx::new(count));
    ring.run(&mut delivered, RunMode::UntilDone).unwrap();
    assert_eq!(delivered, 4, "the two other reads and the noop, once each");
}

/// A cancelled task's callback panics, then the first of its two
/// cancellers' does: the other canceller still finishes, on the next `run`,
/// instead of waiting for ever.
fn a_panicking_target_still_lets_its_cancellers_finish(kind: BackendKind) {
    fn panic_twice(delivered: &mut u32, _: &mut Ring<u32>, c: Completion) -> io::Result<()> {
        *delivered += 1;
        if *delivered <= 2 {
            panic!("callback {delivered} panics (on purpose)");
        }
        expect!(c.outcome, Outcome::Cancel(Ok(())) => ());
        Ok(())
    }
    let mut ring: Ring<u32> = ring(kind, 8);
    let (a, _b) = socket_pair();
    let a = Rc::new(a);
    let recv = ring.recv(&a, Vec::with_capacity(8), Ctx::new(panic_twice));
    ring.cancel(recv, Ctx::new(panic_twice));
    ring.cancel(recv, Ctx::new(panic_twice));
    let mut delivered = 0;
    for panicked in 1..=2 {
        let result = catch_unwind(AssertUnwindSafe(|| {
            ring.run(&mut delivered, RunMode::UntilDone)
        }));
        assert!(result.is_err(), "the panic goes through run");
        assert_eq!(delivered, panicked);
    }
    ring.run(&mut delivered, RunMode::UntilDone).unwrap();
    assert_eq!(delivered, 3, "the second canceller finished");
    assert_eq!(ring.live_tasks(), 0);
}

/// The pipes with their read ends shared, so that each read holds its fd
/// open until it is delivered.
fn shared_readers(pipes: Vec<(OwnedFd, OwnedFd)>) -> Vec<(Rc<OwnedFd>, OwnedFd)> {
    (pipes.into_iter())
        .map(|(reader, writer)| (Rc::new(reader), writer))
        .collect()
}

/// Accepts cancelled while connections wait: each either is cancelled or
/// finishes with its fd, which reaches its callback (or, without one, is
/// closed); none leaks.
fn cancelled_accepts_leak_no_fd(kind: BackendKind) {
    let before = open_fds();
    {
        let listener = Rc::new(ouro::net::tcp_listener(([127, 0, 0, 1], 0).into(), 8).unwrap());
        let addr = ouro::net::local_addr(&listener).unwrap();
        let clients: Vec<_> = (0..4)
            .map(|_| std::net::TcpStream::connect(addr).unwrap())
            .collect();
        let mut ring: Ring<Got> = ring(kind, 8);
        for key in 0..6 {
            let accept = if key % 2 == 0 { ctx(key) } else { Ctx::none() };
            ring.accept(&listener, accept);
        }
        ring.cancel_all(ctx(99));
        let got = run_all(&mut ring);
        let count = expect!(&got.last().unwrap().outcome, Outcome::CancelAll(Ok(n)) => *n);
        assert!(count >= 2, "at most 4 accepts find a connection: {count}");
        drop(got);
        drop(clients);
    }
    assert_eq!(open_fds(), before);
}

/// Drop counters, one per buffer.
fn counters(n: usize) -> Vec<Rc<Cell<u32>>> {
    (0..n).map(|_| Rc::new(Cell::new(0))).collect()
}

fn assert_dropped_once(counters: &[Rc<Cell<u32>>]) {
    for (i, drops) in counters.iter().enumerate() {
        assert_eq!(drops.get(), 1, "buffer {i} dropped {} times", drops.get());
    }
}

/// Recvs and reads that never get data (into buffers whose drop is
/// counted), accepts nobody connects to, one accept that a client reaches,
/// timers, and tasks still waiting for room: dropping the ring frees each
/// buffer once, after the ring is gone, and closes every fd it made.
fn dropping_a_ring_with_operations_in_flight(kind: BackendKind) {
    let before = open_fds();
    {
        let sockets: Vec<_> = (0..4)
            .map(|_| {
                let (a, b) = socket_pair();
                (Rc::new(a), b)
            })
            .collect();
        let pipes: Vec<_> = (0..8)
            .map(|_| {
                let (reader, writer) = pipe();
                (Rc::new(reader), writer)
            })
            .collect();
        let listener = Rc::new(ouro::net::tcp_listener(([127, 0, 0, 1], 0).into(), 8).unwrap());
        let drops = counters(sockets.len() + pipes.len());
        let mut ring: Ring<Got> = ring(kind, 8);
        for (i, (a, _)) in sockets.iter().enumerate() {
            ring.recv(a, Tracked::new(16, &drops[i]), ctx(0));
        }
        for (i, (reader, _)) in pipes.iter().take(4).enumerate() {
            let drops = &drops[sockets.len() + i];
            ring.read(reader, Tracked::new(16, drops), Offset::Current, ctx(0));
        }
        for _ in 0..3 {
            ring.accept(&listener, ctx(0));
        }
        ring.timer(Duration::from_secs(3600), ctx(0));
        ring.timer(Duration::from_millis(2), ctx(1));
        let mut got = Vec::new();
        while got.is_empty() {
            ring.run(&mut got, RunMode::Once).unwrap();
        }
        assert_eq!(got.len(), 1, "only the short timer");
        // A client the kernel accepts while the ring is being dropped.
        let client = std::net::TcpStream::connect(ouro::net::local_addr(&listener).unwrap())
            .expect("connecting to the listener");
        // More than the ring has room for: some wait in user space.
        for (i, (reader, _)) in pipes.iter().enumerate().skip(4) {
            let drops = &drops[sockets.len() + i];
            ring.read(reader, Tracked::new(16, drops), Offset::Current, ctx(0));
        }
        ring.timer(Duration::ZERO, ctx(0));
        assert!(
            drops.iter().all(|d| d.get() == 0),
            "nothing freed while in flight"
        );
        drop(ring);
        assert_dropped_once(&drops);
        drop(client);
    }
    assert_eq!(
        open_fds(),
        before,
        "every fd the test or the ring opened is closed"
    );
}

/// A callback panics with completions of its batch undelivered; the ring
/// is dropped: their buffers are freed once, not leaked.
fn dropping_a_ring_after_a_callback_panicked(kind: BackendKind) {
    let before = open_fds();
    {
        let pipes = shared_readers(pipes_with_data(3));
        let drops = counters(pipes.len());
        let mut ring: Ring<()> = ring(kind, 8);
        for (i, (reader, _)) in pipes.iter().enumerate() {
            let buf = Tracked::new(16, &drops[i]);
            ring.read(
                reader,
                buf,
                Offset::Current,
                Ctx::new(panic_always).key(i as u64),
            );
        }
        let result = catch_unwind(AssertUnwindSafe(|| ring.run(&mut (), RunMode::UntilDone)));
        assert!(result.is_err(), "the panic goes through run");
        assert_eq!(
            drops.iter().map(|d| d.get()).sum::<u32>(),
            1,
            "the panicking callback's buffer"
        );
        drop(ring);
        assert_dropped_once(&drops);
    }
    assert_eq!(open_fds(), before);
}

/// Opens and stats (on the readiness backend, jobs of its thread pool)
/// leave nothing open once the ring is dropped: not even for a moment,
/// while idle pool threads wind down (they held the poller's wake-up fd).
fn a_ring_whose_file_operations_ran_closes_every_fd_when_dropped(kind: BackendKind) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("file");
    std::fs::write(&path, b"contents").unwrap();
    let before = open_fds();
    let mut ring: Ring<Got> = ring(kind, 8);
    let read = ouro::fs::OpenOptions::new().read(true);
    // Enough at once to start every pool thread.
    for key in 0..32 {
        ring.open(&path, &read, ctx(key));
        ring.stat(&path, ctx(key));
    }
    let got = run_all(&mut ring);
    assert_eq!(got.len(), 64);
    drop(got);
    drop(ring);
    assert_eq!(open_fds(), before, "every fd the ring opened is closed");
}
