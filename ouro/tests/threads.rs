//! Rings on threads: a ring built by hand on a thread of its own that
//! attaches to a parent's kernel workers (and messages it both ways), and
//! worker threads drained (their live tasks finish, new messages are
//! refused, what is left at the deadline is cut). On every backend.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::rc::Rc;
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use ouro::{
    is_canceled, is_deadline, BackendKind, Completion, Ctx, Offset, Outcome, Payload, Ring,
    RingHandle, RunMode, Task,
};

#[macro_use]
#[path = "common/backends.rs"]
mod backends;

/// One `#[test]` per backend for each test function.
macro_rules! backend_tests {
    ($($name:ident),+ $(,)?) => {
        $(per_backend!(crate::call, $name);)+
    };
}

/// How long a test may take before it counts as hung: only turns a hang
/// into a failure.
const WATCHDOG: Duration = Duration::from_secs(120);

/// Runs `test` on `kind` on a thread of its own; fails if it errs, panics
/// or hangs.
fn call(test: fn(BackendKind) -> io::Result<()>, kind: BackendKind) {
    if backends::skipped(kind) {
        return;
    }
    let (done, finished) = mpsc::channel::<()>();
    let runner = std::thread::spawn(move || {
        let _done = done;
        test(kind)
    });
    if let Err(mpsc::RecvTimeoutError::Timeout) = finished.recv_timeout(WATCHDOG) {
        panic!("on {kind:?}: hung for {WATCHDOG:?}");
    }
    match runner.join() {
        Ok(result) => result.unwrap_or_else(|err| panic!("on {kind:?}: {err}")),
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// A pipe: (read end, write end), close-on-exec.
fn pipe() -> io::Result<(File, File)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two fds pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded: both fds are open and owned by nobody else.
    let [read, write] = fds.map(|fd| File::from(unsafe { OwnedFd::from_raw_fd(fd) }));
    Ok((read, write))
}

fn builder(kind: BackendKind) -> ouro::RingBuilder {
    Ring::builder().backend(kind).entries(16)
}

backend_tests!(
    a_ring_built_on_a_thread_attached_to_its_parent_reads_a_pipe_and_messages_both_ways,
    a_spawned_threads_ring_is_attached_to_its_parents_work_queue_on_io_uring,
    attaching_to_a_dropped_or_stopped_parent_is_an_error_not_a_panic,
    attaching_to_a_parent_on_another_backend_is_invalid_input,
    a_draining_worker_finishes_its_in_flight_read_and_refuses_new_messages,
    a_draining_worker_whose_read_never_completes_is_cut_at_the_deadline,
    a_tasks_deadline_and_cancel_still_work_during_a_drain,
    a_ring_run_by_hand_drains_when_its_handle_asks,
    an_idle_ring_drains_at_once_and_a_past_deadline_cuts_at_once,
    messages_accepted_before_a_past_deadline_drain_are_delivered_and_cut_nothing,
    a_ring_that_drained_without_ever_making_a_handle_is_closed_to_messages,
    a_drain_cut_during_a_once_or_no_wait_run_ends_that_run,
);

// ---------------------------------------------------------------------------
// A ring attached to its parent.

/// The parent's state: what the child said.
#[derive(Default)]
struct Parent {
    hello: Option<Vec<u8>>,
}

/// The child's state: the reply it got.
#[derive(Default)]
struct Child {
    read: Option<Vec<u8>>,
    reply: Option<u64>,
}

/// The child's hello: the bytes it read, and its handle for the reply.
type Hello = (Vec<u8>, RingHandle<Child>);

fn on_hello(state: &mut Parent, ring: &mut Ring<Parent>, c: Completion) -> io::Result<()> {
    let Outcome::Message(payload) = c.outcome else {
        return Err(io::Error::other(format!("not a message: {:?}", c.outcome)));
    };
    let (read, child) = payload
        .into_value::<Hello>()
        .map_err(|err| io::Error::other(err.to_string()))?;
    state.hello = Some(read);
    ring.msg_ring(
        &child,
        Ctx::new(on_reply),
        Payload::U64(42),
        Ctx::new(on_replied),
    );
    Ok(())
}

fn on_replied(_: &mut Parent, ring: &mut Ring<Parent>, c: Completion) -> io::Result<()> {
    expect_ok(c.outcome, |o| matches!(o, Outcome::MsgRing(Ok(()), _)))?;
    ring.stop();
    Ok(())
}

fn on_reply(state: &mut Child, ring: &mut Ring<Child>, c: Completion) -> io::Result<()> {
    let Outcome::Message(payload) = c.outcome else {
        return Err(io::Error::other(format!("not a message: {:?}", c.outcome)));
    };
    state.reply = payload.as_u64();
    ring.stop();
    Ok(())
}

fn on_child_read(state: &mut Child, _: &mut Ring<Child>, c: Completion) -> io::Result<()> {
    let Outcome::Read(Ok(_), buf) = c.outcome else {
        return Err(io::Error::other(format!(
            "the read failed: {:?}",
            c.outcome
        )));
    };
    state.read = Some(buf.into_vec());
    Ok(())
}

fn expect_ok(outcome: Outcome, ok: impl Fn(&Outcome) -> bool) -> io::Result<()> {
    if ok(&outcome) {
        return Ok(());
    }
    Err(io::Error::other(format!("unexpected: {outcome:?}")))
}

/// The child thread's life: build attached, read the pipe, tell the
/// parent, wait for its reply. Gives back its state and its description.
fn child_life(parent: RingHandle<Parent>, pipe: File) -> io::Result<(Child, String)> {
    let mut ring: Ring<Child> = Ring::builder().entries(8).attach_to(&parent).build()?;
    let description = ring.backend_description();
    let pipe = Rc::new(pipe);
    let mut state = Child::default();
    ring.read(
        &pipe,
        Vec::with_capacity(64),
        Offset::Current,
        Ctx::new(on_child_read),
    );
    ring.run(&mut state, RunMode::UntilDone)?;
    let read = state.read.clone().unwrap_or_default();
    let me = ring.handle()?;
    ring.msg_ring(
        &parent,
        Ctx::new(on_hello),
        Payload::value::<Hello>((read, me)),
        Ctx::none(),
    );
    ring.run(&mut state, RunMode::Forever)?;
    Ok((state, description))
}

fn a_ring_built_on_a_thread_attached_to_its_parent_reads_a_pipe_and_messages_both_ways(
    kind: BackendKind,
) -> io::Result<()> {
    let mut parent: Ring<Parent> = builder(kind).build()?;
    let handle = parent.handle()?;
    let (rx, mut tx) = pipe()?;
    tx.write_all(b"over the pipe")?;
    let child = std::thread::spawn(move || child_life(handle, rx));
    let mut state = Parent::default();
    parent.run(&mut state, RunMode::Forever)?;
    let (child, description) = child.join().expect("the child thread panicked")?;

    assert_eq!(child.read.as_deref(), Some(&b"over the pipe"[..]));
    assert_eq!(state.hello.as_deref(), Some(&b"over the pipe"[..]));
    assert_eq!(child.reply, Some(42));
    assert!(description.starts_with(&parent.backend_description()[..8]));
    // On io_uring, the kernel took ATTACH_WQ with the parent's fd (it
    // refuses any fd but an io_uring's); elsewhere there is nothing to
    // attach.
    let attached = description.ends_with("+attach_wq)");
    assert_eq!(attached, kind == BackendKind::Uring, "{description}");
    assert!(!parent.backend_description().contains("attach_wq"));
    Ok(())
}

fn a_spawned_threads_ring_is_attached_to_its_parents_work_queue_on_io_uring(
    kind: BackendKind,
) -> io::Result<()> {
    let parent: Ring<()> = builder(kind).build()?;
    let (tell, told) = mpsc::channel();
    let worker = parent.spawn_thread(8, move |ring: &mut Ring<()>| {
        let _ = tell.send(ring.backend_description());
        Ok(())
    })?;
    let description = told.recv().expect("init ran");
    worker.join()?;
    let attached = description.ends_with("+attach_wq)");
    assert_eq!(attached, kind == BackendKind::Uring, "{description}");
    Ok(())
}

fn attaching_to_a_dropped_or_stopped_parent_is_an_error_not_a_panic(
    kind: BackendKind,
) -> io::Result<()> {
    let mut parent: Ring<()> = builder(kind).build()?;
    let handle = parent.handle()?;
    drop(parent);
    let built = std::thread::spawn(move || builder(kind).attach_to(&handle).build::<()>().err());
    let err = built.join().unwrap().expect("the parent is gone");
    assert_eq!(err.kind(), io::ErrorKind::BrokenPipe, "{err}");
    assert!(err.to_string().contains("parent ring is gone"), "{err}");

    // A spawned thread's ring, once the thread has stopped.
    let spawner: Ring<()> = builder(kind).build()?;
    let worker = spawner.spawn_thread(8, |_: &mut Ring<()>| Ok(()))?;
    let handle = worker.handle().clone();
    worker.join()?;
    let err = Ring::builder()
        .attach_to(&handle)
        .build::<()>()
        .err()
        .expect("the thread has stopped");
    assert_eq!(err.kind(), io::ErrorKind::BrokenPipe, "{err}");
    Ok(())
}

fn attaching_to_a_parent_on_another_backend_is_invalid_input(kind: BackendKind) -> io::Result<()> {
    let mut parent: Ring<()> = builder(kind).build()?;
    let handle = parent.handle()?;
    let other = match kind {
        BackendKind::Uring => BackendKind::Poll,
        _ => BackendKind::Uring,
    };
    // Refused before any backend is set up, so also where `other` is
    // missing.
    let err = builder(other)
        .attach_to(&handle)
        .build::<()>()
        .err()
        .expect("the backends differ");
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
    assert!(err.to_string().contains("backend"), "{err}");
    // The parent is unharmed and still takes attached rings.
    let attached: Ring<()> = Ring::builder().attach_to(&handle).build()?;
    assert_eq!(attached.backend(), kind);
    Ok(())
}

// ---------------------------------------------------------------------------
// Draining a worker.

/// What a worker's reads ended with: (key, bytes or OS error, whether the
/// ring was draining when the callback ran).
type Reads = Arc<Mutex<Vec<(u64, Result<Vec<u8>, i32>, bool)>>>;

struct Worker {
    reads: Reads,
    /// Told when the drain has begun.
    began: mpsc::Sender<()>,
    deadline: Instant,
    /// Tasks the drain message gives a deadline of now and cancels.
    expire: Option<Task>,
    cancel: Option<Task>,
}

fn on_worker_read(state: &mut Worker, ring: &mut Ring<Worker>, c: Completion) -> io::Result<()> {
    let key = c.key();
    let result = match c.outcome {
        Outcome::Read(Ok(_), buf) => Ok(buf.into_vec()),
        Outcome::Read(Err(err), _) => Err(err.raw_os_error().unwrap_or(-1)),
        other => return Err(io::Error::other(format!("not a read: {other:?}"))),
    };
    let draining = ring.is_draining();
    state.reads.lock().unwrap().push((key, result, draining));
    Ok(())
}

/// The test's message that starts the drain, then ends the tasks it was
/// told to (during the drain).
fn start_drain(state: &mut Worker, ring: &mut Ring<Worker>, _: Completion) -> io::Result<()> {
    ring.drain(state.deadline);
    if let Some(task) = state.expire.take() {
        ring.set_deadline(task, ring.now())?;
    }
    if let Some(task) = state.cancel.take() {
        ring.cancel(task, Ctx::none());
    }
    let _ = state.began.send(());
    Ok(())
}

fn never_delivered(_: &mut Worker, _: &mut Ring<Worker>, _: Completion) -> io::Result<()> {
    Err(io::Error::other(
        "a message sent after the drain began was delivered",
    ))
}

/// A worker thread reading each pipe (key = its index); `deadline` is the
/// drain's. With `end_two`, the drain message expires the first read and
/// cancels the second.
fn worker_reading(
    kind: BackendKind,
    pipes: Vec<File>,
    deadline: Instant,
    end_two: bool,
) -> io::Result<(ouro::RingThread<Worker>, Reads, mpsc::Receiver<()>)> {
    let spawner: Ring<()> = builder(kind).build()?;
    let reads = Reads::default();
    let (began, drain_began) = mpsc::channel();
    let shared = reads.clone();
    let worker = spawner.spawn_thread(8, move |ring: &mut Ring<Worker>| {
        let mut tasks = Vec::new();
        for (key, pipe) in pipes.into_iter().enumerate() {
            let pipe = Rc::new(pipe);
            let ctx = Ctx::new(on_worker_read).key(key as u64);
            tasks.push(ring.read(&pipe, Vec::with_capacity(64), Offset::Current, ctx));
        }
        Ok(Worker {
            reads: shared,
            began,
            deadline,
            expire: tasks.first().copied().filter(|_| end_two),
            cancel: tasks.get(1).copied().filter(|_| end_two),
        })
    })?;
    Ok((worker, reads, drain_began))
}

fn a_draining_worker_finishes_its_in_flight_read_and_refuses_new_messages(
    kind: BackendKind,
) -> io::Result<()> {
    let (rx, mut tx) = pipe()?;
    // Far enough never to be reached: the drain must end because the read
    // finished.
    let deadline = Instant::now() + 10 * WATCHDOG;
    let (worker, reads, drain_began) = worker_reading(kind, vec![rx], deadline, false)?;
    let handle = worker.handle().clone();
    handle
        .send(Ctx::new(start_drain), Payload::None)
        .expect("the worker is not draining yet");
    drain_began.recv().expect("the drain began");

    // New work is refused, and its payload comes back.
    let refused = handle
        .send(Ctx::new(never_delivered), Payload::U64(7))
        .expect_err("a draining worker takes no messages");
    assert_eq!(refused.into_payload().as_u64(), Some(7));
    assert!(handle.is_closed());
    assert!(
        reads.lock().unwrap().is_empty(),
        "the read is still in flight"
    );

    tx.write_all(b"late bytes")?;
    worker.join()?;
    let reads = reads.lock().unwrap();
    assert_eq!(*reads, [(0, Ok(b"late bytes".to_vec()), true)]);
    Ok(())
}

fn a_draining_worker_whose_read_never_completes_is_cut_at_the_deadline(
    kind: BackendKind,
) -> io::Result<()> {
    let (rx, _tx) = pipe()?;
    // Any deadline will do: the read never completes by itself.
    let deadline = Instant::now() + Duration::from_millis(20);
    let (worker, reads, _) = worker_reading(kind, vec![rx], deadline, false)?;
    worker
        .handle()
        .drain(deadline)
        .expect("the worker is running");
    let err = worker.join().expect_err("cut at the deadline");
    assert!(is_deadline(&err), "{err}");
    let reads = reads.lock().unwrap();
    assert_eq!(*reads, [(0, Err(libc::ECANCELED), true)]);
    Ok(())
}

fn a_tasks_deadline_and_cancel_still_work_during_a_drain(kind: BackendKind) -> io::Result<()> {
    let (rx_a, _tx_a) = pipe()?;
    let (rx_b, _tx_b) = pipe()?;
    let deadline = Instant::now() + 10 * WATCHDOG;
    let (worker, reads, drain_began) = worker_reading(kind, vec![rx_a, rx_b], deadline, true)?;
    worker
        .handle()
        .send(Ctx::new(start_drain), Payload::None)
        .expect("the worker is running");
    drain_began.recv().expect("the drain began");
    // Both reads ended through their own deadline and cancel, so nothing
    // was left to cut: the drain ends well, long before its deadline.
    worker.join()?;
    let mut reads = reads.lock().unwrap().clone();
    reads.sort_by_key(|read| read.0);
    assert_eq!(reads.len(), 2, "{reads:?}");
    let expired = io::Error::from_raw_os_error(reads[0].1.clone().unwrap_err());
    assert!(is_deadline(&expired), "{expired}");
    let cancelled = io::Error::from_raw_os_error(reads[1].1.clone().unwrap_err());
    assert!(is_canceled(&cancelled), "{cancelled}");
    assert!(
        reads.iter().all(|read| read.2),
        "both ended during the drain"
    );
    Ok(())
}

/// A ring on a thread of the test's own: `RingHandle::drain` ends its
/// `run(Forever)`, in `Ok` once its read has finished.
fn a_ring_run_by_hand_drains_when_its_handle_asks(kind: BackendKind) -> io::Result<()> {
    let (rx, mut tx) = pipe()?;
    let (handles, handle) = mpsc::channel();
    let owner = std::thread::spawn(move || -> io::Result<(Vec<u8>, bool)> {
        let mut ring: Ring<Option<Vec<u8>>> = builder(kind).build()?;
        let _ = handles.send(ring.handle()?);
        let rx = Rc::new(rx);
        ring.read(
            &rx,
            Vec::with_capacity(16),
            Offset::Current,
            Ctx::new(on_read_by_hand),
        );
        let mut read = None;
        ring.run(&mut read, RunMode::Forever)?;
        Ok((read.unwrap_or_default(), ring.is_draining()))
    });
    let handle = handle.recv().expect("the ring was built");
    handle.drain(Instant::now() + 10 * WATCHDOG).unwrap();
    // The mailbox closes as the drain begins: only then is the read
    // allowed to finish, so that the drain has it to wait for.
    while !handle.is_closed() {
        std::thread::yield_now();
    }
    tx.write_all(b"done")?;
    let (read, still_draining) = owner.join().expect("no panic")?;
    assert_eq!(read, b"done");
    assert!(!still_draining, "the drain is over once run returns");
    assert!(handle.is_closed(), "a drained ring takes no more messages");
    Ok(())
}

fn on_read_by_hand(
    read: &mut Option<Vec<u8>>,
    _: &mut Ring<Option<Vec<u8>>>,
    c: Completion,
) -> io::Result<()> {
    if let Outcome::Read(Ok(_), buf) = c.outcome {
        *read = Some(buf.into_vec());
    }
    Ok(())
}

fn an_idle_ring_drains_at_once_and_a_past_deadline_cuts_at_once(
    kind: BackendKind,
) -> io::Result<()> {
    let mut ring: Ring<Option<Vec<u8>>> = builder(kind).build()?;
    let mut read = None;
    // No handle was made yet: one made during the drain is closed too.
    ring.drain(Instant::now() + 10 * WATCHDOG);
    assert!(ring.handle()?.is_closed());
    ring.run(&mut read, RunMode::Forever)?;
    assert!(!ring.is_draining());

    let (rx, _tx) = pipe()?;
    let rx = Rc::new(rx);
    ring.read(
        &rx,
        Vec::with_capacity(16),
        Offset::Current,
        Ctx::new(on_read_by_hand),
    );
    ring.drain(Instant::now());
    let err = ring.run(&mut read, RunMode::Forever).expect_err("cut");
    assert!(is_deadline(&err), "{err}");
    assert_eq!(ring.live_tasks(), 0, "what was cut has completed");
    assert_eq!(read, None, "the read was cancelled, not completed");

    // The ring still works, with its mailbox closed.
    ring.noop(Ctx::none());
    ring.run(&mut read, RunMode::UntilDone)?;
    // No message can come to it any more: `Forever` returns once its
    // tasks are done, as `UntilDone` does (it waited for ever).
    ring.noop(Ctx::none());
    ring.run(&mut read, RunMode::Forever)?;
    ring.run(&mut read, RunMode::Forever)?;
    Ok(())
}

/// A ring that never made a handle drains like one that did: after it,
/// `Forever` returns once no task is live (it waited for ever), and a
/// handle made then is closed.
fn a_ring_that_drained_without_ever_making_a_handle_is_closed_to_messages(
    kind: BackendKind,
) -> io::Result<()> {
    let mut ring: Ring<Option<Vec<u8>>> = builder(kind).build()?;
    let mut read = None;
    ring.noop(Ctx::none());
    ring.drain(Instant::now() + 10 * WATCHDOG);
    ring.run(&mut read, RunMode::Forever)?;
    ring.timer(Duration::from_millis(1), Ctx::none());
    ring.run(&mut read, RunMode::Forever)?;
    assert_eq!(ring.live_tasks(), 0);
    assert!(ring.handle()?.is_closed());
    Ok(())
}

/// The run that cuts a drain at its deadline and delivers the
/// cancellations returns `ETIME`, in `Once` and `NoWait` as in the other
/// modes, and the next run has nothing of it.
fn a_drain_cut_during_a_once_or_no_wait_run_ends_that_run(kind: BackendKind) -> io::Result<()> {
    for mode in [RunMode::Once, RunMode::NoWait] {
        let mut ring: Ring<Option<Vec<u8>>> = builder(kind).build()?;
        let mut read = None;
        ring.timer(Duration::from_secs(100), Ctx::new(on_cut));
        ring.drain(Instant::now());
        let ended = (0..100).find_map(|_| match ring.run(&mut read, mode) {
            Ok(()) => {
                assert_eq!(read, None, "{mode:?}: a run delivered the cut and said Ok");
                None
            }
            err => Some(err),
        });
        let err = ended
            .expect("the drain ends within 100 runs")
            .expect_err("cut at its deadline");
        assert!(is_deadline(&err), "{mode:?}: {err}");
        assert_eq!(ring.live_tasks(), 0, "{mode:?}");
        ring.run(&mut read, RunMode::UntilDone)?;
    }
    Ok(())
}

/// Notes a task the drain cut.
fn on_cut(
    cut: &mut Option<Vec<u8>>,
    _: &mut Ring<Option<Vec<u8>>>,
    c: Completion,
) -> io::Result<()> {
    if c.result().is_err_and(|e| ouro::is_canceled(&e)) {
        *cut = Some(Vec::new());
    }
    Ok(())
}

/// Messages delivered to a ring: the numbers they carried.
#[derive(Default)]
struct Inbox {
    got: Vec<u64>,
    own: Option<RingHandle<Inbox>>,
}

fn on_number(inbox: &mut Inbox, _: &mut Ring<Inbox>, c: Completion) -> io::Result<()> {
    if let Outcome::Message(payload) = c.outcome {
        inbox.got.extend(payload.as_u64());
    }
    Ok(())
}

/// Sends its ring one more number, in the turn that will close its
/// mailbox (as another thread could just before the drain).
fn send_one_more(inbox: &mut Inbox, _: &mut Ring<Inbox>, _: Completion) -> io::Result<()> {
    let own = inbox.own.as_ref().expect("set by the test");
    own.send(Ctx::new(on_number), Payload::U64(2))
        .map_err(io::Error::from)
}

/// A drain whose deadline has passed cuts live tasks, and only those:
/// messages accepted before the mailbox closed are delivered, and the
/// drain ends in `Ok`, not `ETIME`.
fn messages_accepted_before_a_past_deadline_drain_are_delivered_and_cut_nothing(
    kind: BackendKind,
) -> io::Result<()> {
    let mut ring: Ring<Inbox> = builder(kind).build()?;
    let handle = ring.handle()?;
    let mut inbox = Inbox {
        own: Some(handle.clone()),
        ..Inbox::default()
    };
    handle.send(Ctx::new(on_number), Payload::U64(1)).unwrap();
    handle.send(Ctx::new(send_one_more), Payload::None).unwrap();
    handle.drain(Instant::now()).unwrap();
    ring.run(&mut inbox, RunMode::Forever)?;
    assert_eq!(inbox.got, [1, 2]);
    assert!(!ring.is_draining());
    Ok(())
}
