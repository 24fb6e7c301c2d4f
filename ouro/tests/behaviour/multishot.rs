//! Multishot accept and receive with buffer groups: one task, many
//! completions (the last one final), buffers taken only when data arrives
//! and given back to the group when the `Buf` is dropped.

use std::io::Write;
use std::net::TcpStream;
use std::os::fd::OwnedFd;
use std::rc::Rc;

use ouro::{BackendKind, Completion, Ctx, Outcome, Ring, RunMode, Task};

use crate::harness::{ring, tcp_pair, Got};

backend_tests![
    one_accept_task_accepts_many_connections_until_cancelled,
    idle_connections_hold_no_buffer_and_buffers_come_back,
    running_out_of_buffers_ends_the_task_with_enobufs,
    a_receive_armed_with_every_buffer_held_ends_as_documented,
    dropping_the_ring_with_multishot_tasks_in_flight_is_clean,
    a_cancel_from_a_callback_stops_a_flooded_receive_within_one_kernel_batch,
    groups_nothing_holds_are_freed_and_their_ids_reused,
    a_burst_of_connections_past_the_completion_queue_loses_none,
    a_burst_of_connections_past_the_completion_queue_loses_none_direct,
    a_stream_past_the_completion_queue_loses_nothing,
];

/// Runs until `done` says so, one turn at a time.
fn run_until(ring: &mut Ring<Got>, got: &mut Got, done: impl Fn(&Got) -> bool) {
    while !done(got) {
        ring.run(got, RunMode::Once).expect("run");
    }
}

fn accepted(got: &Got) -> Vec<&OwnedFd> {
    got.iter()
        .filter_map(|c| match &c.outcome {
            Outcome::AcceptMulti(Ok(fd)) => Some(fd),
            _ => None,
        })
        .collect()
}

/// The bytes of every successful multishot receive, in order.
fn received(got: &Got) -> Vec<u8> {
    got.iter()
        .filter_map(|c| match &c.outcome {
            Outcome::RecvMulti(Ok(buf)) => Some(buf.to_vec()),
            _ => None,
        })
        .flatten()
        .collect()
}

fn one_accept_task_accepts_many_connections_until_cancelled(kind: BackendKind) {
    let mut ring = ring(kind, 64);
    let listener = Rc::new(ouro::net::tcp_listener(([127, 0, 0, 1], 0).into(), 64).unwrap());
    let addr = ouro::net::local_addr(&listener).unwrap();
    let task = ring.accept_multishot(&listener, crate::harness::ctx(0));
    let clients: Vec<TcpStream> = (0..5).map(|_| TcpStream::connect(addr).unwrap()).collect();
    let mut got = Vec::new();
    run_until(&mut ring, &mut got, |got| accepted(got).len() == 5);
    assert!(got.iter().all(|c| !c.is_final()), "{got:?}");
    ring.cancel(task, Ctx::none());
    ring.run(&mut got, RunMode::UntilDone).unwrap();
    let last = got.last().unwrap();
    assert!(last.is_final());
    let err = expect!(&last.outcome, Outcome::AcceptMulti(Err(e)) => e);
    assert!(ouro::is_canceled(err), "{err}");
    for fd in accepted(&got) {
        let peer = ouro::net::peer_addr(fd).unwrap();
        assert!(clients.iter().any(|c| c.local_addr().unwrap() == peer));
    }
}

fn idle_connections_hold_no_buffer_and_buffers_come_back(kind: BackendKind) {
    let mut ring = ring(kind, 64);
    let group = ring.buffer_group(8, 64).unwrap();
    let (mut client, server) = tcp_pair();
    let server = Rc::new(server);
    ring.recv_multishot(&server, &group, crate::harness::ctx(0));
    let mut got = Vec::new();
    // Nothing sent yet: once submitted, the armed receive takes no buffer.
    ring.noop(Ctx::none());
    ring.run(&mut got, RunMode::Once).unwrap();
    assert_eq!(group.available(), 8);
    let mut sent = Vec::new();
    for chunk in [&b"hello "[..], b"multishot ", b"world"] {
        client.write_all(chunk).unwrap();
        sent.extend_from_slice(chunk);
        run_until(&mut ring, &mut got, |got| received(got).len() == sent.len());
    }
    assert_eq!(received(&got), b"hello multishot world");
    assert!(got.iter().all(|c| !c.is_final()), "{got:?}");
    assert_eq!(
        group.available(),
        8 - got.len(),
        "each delivered Buf holds one buffer"
    );
    got.clear();
    assert_eq!(group.available(), 8, "dropped Bufs went back to the group");
    drop(client);
    ring.run(&mut got, RunMode::UntilDone).unwrap();
    let last = got.pop().unwrap();
    assert!(last.is_final());
    let buf = expect!(last.outcome, Outcome::RecvMulti(Ok(buf)) => buf);
    assert!(buf.is_empty(), "end of stream ends the task");
}

fn running_out_of_buffers_ends_the_task_with_enobufs(kind: BackendKind) {
    let mut ring = ring(kind, 64);
    let group = ring.buffer_group(2, 4).unwrap();
    let (mut client, server) = tcp_pair();
    let server = Rc::new(server);
    client.write_all(b"0123456789abcdef").unwrap();
    ring.recv_multishot(&server, &group, crate::harness::ctx(0));
    let mut got = Vec::new();
    ring.run(&mut got, RunMode::UntilDone).unwrap();
    let last = got.pop().unwrap();
    let err = expect!(last.outcome, Outcome::RecvMulti(Err(e)) => e);
    assert_eq!(err.raw_os_error(), Some(libc::ENOBUFS), "{err}");
    assert_eq!(received(&got), b"01234567", "two buffers of four bytes");
    assert_eq!(
        group.available(),
        0,
        "both buffers are held by the completions"
    );
    got.clear();
    assert_eq!(group.available(), 2);
    // Re-armed with its buffers back, the receive gets the rest.
    ring.recv_multishot(&server, &group, crate::harness::ctx(0));
    let mut rest = Vec::new();
    while rest.len() < 8 {
        run_until(&mut ring, &mut got, |got| !got.is_empty());
        rest.extend(received(&got));
        got.clear();
    }
    assert_eq!(rest, b"89abcdef");
}

/// The group's only buffer is held: a receive armed then ends with
/// `ENOBUFS` at once on io_uring (the kernel takes a buffer before it
/// waits), and waits for data on the readiness backend (here until its
/// deadline), as docs/readiness-backend.md says; when data comes, it ends
/// with `ENOBUFS` on both.
fn a_receive_armed_with_every_buffer_held_ends_as_documented(kind: BackendKind) {
    let mut ring = ring(kind, 64);
    let group = ring.buffer_group(1, 4).unwrap();
    let (mut client, server) = tcp_pair();
    let server = Rc::new(server);
    client.write_all(b"abcd").unwrap();
    let first = ring.recv_multishot(&server, &group, crate::harness::ctx(0));
    let mut held = Vec::new();
    run_until(&mut ring, &mut held, |got| !got.is_empty());
    assert_eq!(received(&held), b"abcd");
    ring.cancel(first, Ctx::none());
    let mut got = Vec::new();
    ring.run(&mut got, RunMode::UntilDone).unwrap();
    assert_eq!(group.available(), 0, "the completion holds the buffer");

    let armed = ring.recv_multishot(&server, &group, crate::harness::ctx(1));
    ring.set_timeout(armed, std::time::Duration::from_millis(100))
        .unwrap();
    got.clear();
    ring.run(&mut got, RunMode::UntilDone).unwrap();
    let err = expect!(got.pop().unwrap().outcome, Outcome::RecvMulti(Err(e)) => e);
    match kind {
        BackendKind::Uring => assert_eq!(err.raw_os_error(), Some(libc::ENOBUFS), "{err}"),
        _ => assert!(ouro::is_deadline(&err), "no data came: {err}"),
    }

    ring.recv_multishot(&server, &group, crate::harness::ctx(2));
    client.write_all(b"e").unwrap();
    ring.run(&mut got, RunMode::UntilDone).unwrap();
    let err = expect!(got.pop().unwrap().outcome, Outcome::RecvMulti(Err(e)) => e);
    assert_eq!(err.raw_os_error(), Some(libc::ENOBUFS), "{err}");
    drop(held);
    assert_eq!(group.available(), 1);
}

fn dropping_the_ring_with_multishot_tasks_in_flight_is_clean(kind: BackendKind) {
    let mut ring: Ring<Got> = ring(kind, 64);
    let group = ring.buffer_group(4, 32).unwrap();
    let (_client, server) = tcp_pair();
    let server = Rc::new(server);
    ring.recv_multishot(&server, &group, Ctx::none());
    let listener = Rc::new(ouro::net::tcp_listener(([127, 0, 0, 1], 0).into(), 4).unwrap());
    ring.accept_multishot(&listener, Ctx::none());
    let mut got = Vec::new();
    ring.noop(Ctx::none());
    ring.run(&mut got, RunMode::Once).unwrap();
    drop(ring);
    // The group outlives the ring, whole.
    assert_eq!(group.available(), 4);
}

/// A receive that pauses itself: its first buffer's callback cancels it
/// (taking `task`).
#[derive(Default)]
struct Pausing {
    task: Option<Task>,
    after_cancel: usize,
    /// The final completion's outcome: `Err` for an error, else `Ok`.
    ended: Option<std::io::Result<()>>,
    bytes: usize,
}

fn pause_on_first_buffer(
    state: &mut Pausing,
    ring: &mut Ring<Pausing>,
    c: Completion,
) -> std::io::Result<()> {
    let last = c.is_final();
    let outcome = match c.outcome {
        Outcome::RecvMulti(Ok(buf)) => {
            state.bytes += buf.len();
            match state.task.take() {
                Some(task) => {
                    ring.cancel(task, Ctx::none());
                }
                None => state.after_cancel += 1,
            }
            Ok(())
        }
        Outcome::RecvMulti(Err(e)) => Err(e),
        other => panic!("not a receive's completion: {other:?}"),
    };
    if last {
        state.ended = Some(outcome);
    }
    Ok(())
}

/// Whether this io_uring runs a bounded amount of deferred completion
/// work per system call (Linux 6.13: at most 20 items), the kernel batch
/// a callback's cancel can come after; earlier kernels run it all in the
/// first enter, before any completion is delivered.
fn kernel_batches_completion_work() -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut numbers = release.split(|c: char| !c.is_ascii_digit());
    let major: u32 = numbers.next().and_then(|n| n.parse().ok()).unwrap_or(0);
    let minor: u32 = numbers.next().and_then(|n| n.parse().ok()).unwrap_or(0);
    (major, minor) >= (6, 13)
}

/// A peer has sent as much as the group's buffers will take; the first
/// buffer's callback cancels the receive (as a server pauses a connection
/// whose echoes are not read). The turn must not bring in the rest of the
/// flood before that cancel reaches the kernel: a kernel batch of buffers
/// (io_uring retries a multishot receive 32 times per run, and runs a
/// bounded number of runs per system call) may arrive after it, not a
/// completion queue full (1,024 here), and the task ends cancelled with
/// most of the data left in the socket.
fn a_cancel_from_a_callback_stops_a_flooded_receive_within_one_kernel_batch(kind: BackendKind) {
    const BUFFERS: u16 = 4096;
    let mut ring = ring(kind, 512);
    let group = ring.buffer_group(BUFFERS, 16).unwrap();
    let (mut client, server) = tcp_pair();
    let server = Rc::new(server);
    client.write_all(&[7u8; 16 * BUFFERS as usize]).unwrap();
    let mut state = Pausing::default();
    let task = ring.recv_multishot(&server, &group, Ctx::new(pause_on_first_buffer));
    state.task = Some(task);
    while state.ended.is_none() {
        ring.run(&mut state, RunMode::Once).expect("run");
    }
    assert!(
        state.task.is_none(),
        "the first buffer's callback cancelled"
    );
    if kind == BackendKind::Uring && !kernel_batches_completion_work() {
        return;
    }
    let ended = state.ended.take().unwrap();
    assert!(
        ended.as_ref().is_err_and(ouro::is_canceled),
        "{ended:?} after {} buffers",
        state.after_cancel
    );
    assert!(
        state.after_cancel < 256,
        "{} buffers delivered after the cancel ({} bytes in all)",
        state.after_cancel,
        state.bytes
    );
}

/// A group lives while a handle, a buffer or an operation holds it. One
/// that nothing holds is freed when the ring makes the next group, which
/// takes its id: a ring can make and drop groups for ever (it stopped at
/// 65,536, keeping every group's memory). A receive whose group handle was
/// dropped keeps receiving into it, and a buffer still held keeps its
/// bytes, while other groups come and go.
fn groups_nothing_holds_are_freed_and_their_ids_reused(kind: BackendKind) {
    let mut ring = ring(kind, 64);
    let kept = ring.buffer_group(1, 8).unwrap();
    for _ in 0..70_000 {
        let group = ring.buffer_group(1, 8).unwrap();
        assert_eq!(group.id(), kept.id() + 1);
    }

    let (mut client, server) = tcp_pair();
    let server = Rc::new(server);
    let group = ring.buffer_group(4, 16).unwrap();
    let in_use = group.id();
    let task = ring.recv_multishot(&server, &group, crate::harness::ctx(0));
    drop(group);
    let mut got = Vec::new();
    for (round, word) in [&b"hello"[..], b"again"].into_iter().enumerate() {
        // The receive still holds its group: a new one takes another id.
        let other = ring.buffer_group(1, 8).unwrap();
        assert_ne!(other.id(), in_use);
        drop(other);
        client.write_all(word).unwrap();
        run_until(&mut ring, &mut got, |got| {
            received(got).len() == 5 * (round + 1)
        });
    }
    ring.cancel(task, Ctx::none());
    ring.run(&mut got, RunMode::UntilDone).unwrap();
    assert_eq!(received(&got), b"helloagain");
    // The buffers in `got` hold the group still.
    assert_ne!(ring.buffer_group(1, 8).unwrap().id(), in_use);
    drop(got);
    assert_eq!(ring.buffer_group(1, 8).unwrap().id(), in_use);
}

/// A multishot accept re-armed on a final success, as the docs ask.
struct Accepting {
    listener: Rc<OwnedFd>,
    direct: bool,
    connections: usize,
    /// Final successes: the kernel ended the task early.
    early_ends: usize,
    error: Option<std::io::Error>,
}

impl Accepting {
    fn arm(&self, ring: &mut Ring<Accepting>) {
        let ctx = Ctx::new(Accepting::on_accepted);
        if self.direct {
            ring.accept_multishot_direct(&self.listener, ctx);
        } else {
            ring.accept_multishot(&self.listener, ctx);
        }
    }

    fn on_accepted(&mut self, ring: &mut Ring<Accepting>, c: Completion) -> std::io::Result<()> {
        let last = c.is_final();
        match c.outcome {
            Outcome::AcceptMulti(Ok(_)) | Outcome::AcceptDirect(Ok(_)) => self.connections += 1,
            Outcome::AcceptMulti(Err(e)) | Outcome::AcceptDirect(Err(e)) => {
                self.error = Some(e);
                return Ok(());
            }
            other => panic!("{other:?}"),
        }
        if last {
            self.early_ends += 1;
            self.arm(ring);
        }
        Ok(())
    }
}

/// io_uring ends a multishot accept with a final success when its
/// completion queue has no room for the next completion (a ring of 8
/// entries has 16): that completion carries a connection, and the task
/// re-armed accepts the rest of the burst.
fn accepts_a_burst_past_the_completion_queue(kind: BackendKind, direct: bool) {
    const CLIENTS: usize = 200;
    let mut ring: Ring<Accepting> = ring(kind, 8);
    let listener = Rc::new(ouro::net::tcp_listener(([127, 0, 0, 1], 0).into(), 512).unwrap());
    let addr = ouro::net::local_addr(&listener).unwrap();
    let clients: Vec<TcpStream> = (0..CLIENTS)
        .map(|_| TcpStream::connect(addr).unwrap())
        .collect();
    let mut accepting = Accepting {
        listener,
        direct,
        connections: 0,
        early_ends: 0,
        error: None,
    };
    accepting.arm(&mut ring);
    while accepting.connections < CLIENTS && accepting.error.is_none() {
        ring.run(&mut accepting, RunMode::Once).unwrap();
    }
    assert!(accepting.error.is_none(), "{:?}", accepting.error);
    assert_eq!(accepting.connections, CLIENTS);
    eprintln!(
        "{kind:?}: the kernel ended the accept {} times",
        accepting.early_ends
    );
    drop(clients);
}

fn a_burst_of_connections_past_the_completion_queue_loses_none(kind: BackendKind) {
    accepts_a_burst_past_the_completion_queue(kind, false);
}

fn a_burst_of_connections_past_the_completion_queue_loses_none_direct(kind: BackendKind) {
    accepts_a_burst_past_the_completion_queue(kind, true);
}

/// A multishot receive re-armed on a final success that is not empty.
struct Receiving {
    fd: Rc<TcpStream>,
    group: ouro::BufferGroup,
    bytes: usize,
    early_ends: usize,
    closed: bool,
}

impl Receiving {
    fn on_received(&mut self, ring: &mut Ring<Receiving>, c: Completion) -> std::io::Result<()> {
        let last = c.is_final();
        let buf = expect!(c.outcome, Outcome::RecvMulti(Ok(buf)) => buf);
        self.bytes += buf.len();
        self.closed = buf.is_empty();
        if last && !self.closed {
            self.early_ends += 1;
            ring.recv_multishot(&self.fd, &self.group, Ctx::new(Receiving::on_received));
        }
        Ok(())
    }
}

/// The same for a receive: a stream of 2 MB into 4 KiB buffers, on a ring
/// of 8 entries, arrives whole, and the task ends at the peer's close.
fn a_stream_past_the_completion_queue_loses_nothing(kind: BackendKind) {
    const SENT: usize = 2 << 20;
    let mut ring: Ring<Receiving> = ring(kind, 8);
    let (mut client, server) = tcp_pair();
    let mut receiving = Receiving {
        fd: Rc::new(server),
        group: ring.buffer_group(512, 4096).unwrap(),
        bytes: 0,
        early_ends: 0,
        closed: false,
    };
    let ctx = Ctx::new(Receiving::on_received);
    ring.recv_multishot(&receiving.fd, &receiving.group, ctx);
    let sender = std::thread::spawn(move || client.write_all(&vec![7; SENT]).unwrap());
    ring.run(&mut receiving, RunMode::UntilDone).unwrap();
    sender.join().unwrap();
    assert!(receiving.closed);
    assert_eq!(receiving.bytes, SENT);
    assert_eq!(receiving.group.available(), 512, "every buffer is back");
    eprintln!(
        "{kind:?}: the kernel ended the receive {} times",
        receiving.early_ends
    );
}
